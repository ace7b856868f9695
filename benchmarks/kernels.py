"""Throughput of the numba kernels: pixelise and observables on 50-constituent jets.

Prints jets/s single-threaded and on 2 threads, and the speed ratio against computing
the same quantities in the same run with the usual tools:

* pixelise (seed-000 preset) against a fully vectorised numpy ``bincount`` over all
  jets (on the same jets as the kernel), and against a per-jet ``numpy.histogram2d`` loop (what analysis code often does);
  LAGAN preprocessing (subjet clustering + rotation + flip) is timed as well;
* observables (all of them: kinematics, tau1..3 with one-pass kT axes, pTD, major/minor,
  girth, 4 flows, 4 rings) against fastjet-contrib's ``njettiness`` through the
  scikit-hep ``fastjet`` package (multi-event interface) plus ``vector`` and numpy for
  the rest. Outputs are cross-checked in the same run.

Run:  .venv/bin/python benchmarks/kernels.py [--n-jets 20000] [--n-ref 2000]
"""

from __future__ import annotations

import argparse
import os
import time
import warnings
from collections.abc import Callable

import awkward as ak
import numba
import numpy as np
import vector

from hepfastsim.kernels import observables as ko
from hepfastsim.kernels import pixelise as kp

N_CONSTITUENTS = 50
RING_EDGES = np.array([0.0, 0.05, 0.10, 0.15, 0.25])
FLOW_EDGES = ko.flow_edges(0.4, 4)
SEED000 = {"n_eta": 32, "n_phi": 32, "half_eta": 0.15, "half_phi": 0.15}
LAGAN = {"n_eta": 25, "n_phi": 25, "half_eta": 1.25, "half_phi": 1.25, "centre_on_subjet": True, "rotate": True, "flip": True}


def make_jets(n_jets: int, seed: int = 1) -> dict[str, np.ndarray]:
    """n_jets jets of exactly 50 massless constituents around 1-3 prongs (R ~ 0.4)."""
    rng = np.random.default_rng(seed)
    n = n_jets * N_CONSTITUENTS
    n_prongs = rng.integers(1, 4, n_jets)
    prong = rng.integers(0, 3, n) % np.repeat(n_prongs, N_CONSTITUENTS)
    prong_eta = rng.normal(0.0, 0.12, (n_jets, 3))
    prong_phi = rng.normal(0.0, 0.12, (n_jets, 3))
    jet_idx = np.repeat(np.arange(n_jets), N_CONSTITUENTS)
    axis_eta = rng.uniform(-2.0, 2.0, n_jets)
    axis_phi = rng.uniform(-np.pi, np.pi, n_jets)
    eta = axis_eta[jet_idx] + prong_eta[jet_idx, prong] + rng.normal(0, 0.04, n)
    phi = axis_phi[jet_idx] + prong_phi[jet_idx, prong] + rng.normal(0, 0.04, n)
    phi = (phi + np.pi) % (2 * np.pi) - np.pi
    pt = rng.exponential(8.0, n) + 0.3
    offsets = np.arange(n_jets + 1, dtype=np.int64) * N_CONSTITUENTS
    jet_pt = np.add.reduceat(pt, offsets[:-1])
    return {"pt": pt, "eta": eta, "phi": phi, "mass": np.zeros(n), "offsets": offsets,
            "axis_eta": axis_eta, "axis_phi": axis_phi, "jet_pt": jet_pt}


def best_time(fn: Callable[[], object], repeats: int) -> float:
    best = np.inf
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


def chunk(jets: dict[str, np.ndarray], start: int, stop: int) -> dict[str, np.ndarray]:
    """Jets ``start:stop`` (every jet has exactly N_CONSTITUENTS constituents)."""
    a, b = start * N_CONSTITUENTS, stop * N_CONSTITUENTS
    out = {k: jets[k][a:b] for k in ("pt", "eta", "phi", "mass")}
    out.update({k: jets[k][start:stop] for k in ("axis_eta", "axis_phi", "jet_pt")})
    out["offsets"] = np.arange(stop - start + 1, dtype=np.int64) * N_CONSTITUENTS
    return out


def subset(jets: dict[str, np.ndarray], n: int) -> dict[str, np.ndarray]:
    return chunk(jets, 0, n)


def batched(fn: Callable[[dict[str, np.ndarray]], object], jets: dict[str, np.ndarray], batch: int) -> Callable[[], None]:
    """Run ``fn`` over all jets in batches (as a GAN / VAE pipeline would feed them).

    Batching also keeps each output below glibc's mmap threshold: a single 20000-image
    float64 output is 164 MB, which is mmap-ed and page-faulted afresh on every call and
    would measure the kernel's page faults rather than its arithmetic.
    """
    n = jets["offsets"].size - 1
    parts = [chunk(jets, a, min(a + batch, n)) for a in range(0, n, batch)]

    def run() -> None:
        for part in parts:
            fn(part)

    return run


# --------------------------------------------------------------------------- numba


def numba_pixelise(j):
    return kp.pixelise(j["pt"], j["eta"], j["phi"], j["offsets"], centre_eta=j["axis_eta"],
                       centre_phi=j["axis_phi"], norm=j["jet_pt"], **SEED000)


def numba_lagan(j):
    return kp.pixelise(j["pt"], j["eta"], j["phi"], j["offsets"], **LAGAN)


def numba_observables(j):
    return ko.jet_observables(j["pt"], j["eta"], j["phi"], j["mass"], j["offsets"], r0=0.4, axes="kt",
                              one_pass=True, flow_edges=FLOW_EDGES, ring_edges=RING_EDGES)


# --------------------------------------------------------------------------- references


def numpy_pixelise(j):
    """Vectorised numpy: bin indices for all constituents, one bincount for all images."""
    n_jets = j["offsets"].size - 1
    jet_idx = np.repeat(np.arange(n_jets), np.diff(j["offsets"]))
    step = 2 * SEED000["half_eta"] / SEED000["n_eta"]
    deta = j["eta"] - j["axis_eta"][jet_idx]
    dphi = (j["phi"] - j["axis_phi"][jet_idx] + np.pi) % (2 * np.pi) - np.pi
    ie = np.clip(np.floor((deta + SEED000["half_eta"]) / step), 0, SEED000["n_eta"] - 1).astype(np.int64)
    ip = np.clip(np.floor((dphi + SEED000["half_phi"]) / step), 0, SEED000["n_phi"] - 1).astype(np.int64)
    flat = (jet_idx * SEED000["n_eta"] + ie) * SEED000["n_phi"] + ip
    w = j["pt"] / j["jet_pt"][jet_idx]
    size = n_jets * SEED000["n_eta"] * SEED000["n_phi"]
    return np.bincount(flat, weights=w, minlength=size).reshape(n_jets, SEED000["n_eta"], SEED000["n_phi"])


def numpy_histogram2d_pixelise(j):
    """Per-jet numpy.histogram2d (overflow clipped onto the border first)."""
    n_jets = j["offsets"].size - 1
    edges = np.linspace(-0.15, 0.15, 33)
    out = np.empty((n_jets, 32, 32))
    lim = 0.15 - 1e-12
    for k in range(n_jets):
        a, b = j["offsets"][k], j["offsets"][k + 1]
        deta = np.clip(j["eta"][a:b] - j["axis_eta"][k], -0.15, lim)
        dphi = np.clip((j["phi"][a:b] - j["axis_phi"][k] + np.pi) % (2 * np.pi) - np.pi, -0.15, lim)
        out[k] = np.histogram2d(deta, dphi, bins=(edges, edges), weights=j["pt"][a:b] / j["jet_pt"][k])[0]
    return out


def reference_observables(j):
    """fastjet-contrib njettiness + vector kinematics + numpy/awkward for the shapes."""
    import fastjet

    counts = np.diff(j["offsets"])
    v = vector.array({"pt": j["pt"], "eta": j["eta"], "phi": j["phi"], "mass": j["mass"]})
    parts = ak.unflatten(ak.Array({"px": v.px, "py": v.py, "pz": v.pz, "E": v.E}), counts)
    cs = fastjet.ClusterSequence(parts, fastjet.JetDefinition(fastjet.antikt_algorithm, 100.0))
    taus = np.asarray(ak.to_numpy(ak.flatten(cs.njettiness(axes_definition="OnePass_KT_Axes", njets=[1, 2, 3], R0=0.4),
                                             axis=1))).reshape(-1, 3)
    vector.register_awkward()
    p4 = ak.unflatten(ak.zip({"pt": j["pt"], "eta": j["eta"], "phi": j["phi"], "mass": j["mass"]},
                             with_name="Momentum4D"), counts)
    jet = ak.sum(p4, axis=1)
    pt = p4.pt
    deta = p4.eta - jet.eta
    dphi = (p4.phi - jet.phi + np.pi) % (2 * np.pi) - np.pi
    dr = np.sqrt(deta**2 + dphi**2)
    sum_pt = ak.sum(pt, axis=1)
    ptd = np.sqrt(ak.sum(pt**2, axis=1)) / sum_pt
    girth = ak.sum(pt * dr, axis=1) / jet.pt
    me = ak.sum(pt * deta, axis=1) / sum_pt
    mp = ak.sum(pt * dphi, axis=1) / sum_pt
    cee = ak.sum(pt * (deta - me) ** 2, axis=1) / sum_pt
    cpp = ak.sum(pt * (dphi - mp) ** 2, axis=1) / sum_pt
    cep = ak.sum(pt * (deta - me) * (dphi - mp), axis=1) / sum_pt
    cov = np.stack([np.stack([ak.to_numpy(cee), ak.to_numpy(cep)], -1), np.stack([ak.to_numpy(cep), ak.to_numpy(cpp)], -1)], -1)
    lam = np.linalg.eigvalsh(cov)
    fractions = []
    for edges in (FLOW_EDGES, RING_EDGES):
        for lo, hi in zip(edges[:-1], edges[1:], strict=True):
            fractions.append(ak.to_numpy(ak.sum(pt * ((dr >= lo) & (dr < hi)), axis=1) / jet.pt))
    return {"pt": ak.to_numpy(jet.pt), "mass": ak.to_numpy(jet.mass), "taus": taus, "ptd": ak.to_numpy(ptd),
            "girth": ak.to_numpy(girth), "major": np.sqrt(np.maximum(lam[:, 1], 0)), "fractions": np.stack(fractions, -1)}


def cross_check(ours: np.ndarray, ref: dict[str, np.ndarray]) -> float:
    col = {name: k for k, name in enumerate(ko.observable_fields(4, 4))}
    worst = 0.0
    pairs = [
        (ours[:, col["pt"]], ref["pt"]),
        (ours[:, [col["tau1"], col["tau2"], col["tau3"]]], ref["taus"]),
        (ours[:, col["ptd"]], ref["ptd"]),
        (ours[:, col["girth"]], ref["girth"]),
        (ours[:, col["major"]], ref["major"]),
        (ours[:, col["flow1"]: col["ring3"] + 1], ref["fractions"]),
    ]
    for a, b in pairs:
        worst = max(worst, float(np.max(np.abs(a - b) / np.maximum(np.abs(b), 1e-12))))
    return worst


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n-jets", type=int, default=20000, help="jets for the numba kernels")
    parser.add_argument("--n-ref", type=int, default=2000, help="jets for the fastjet / numpy references")
    parser.add_argument("--batch", type=int, default=2000, help="jets per kernel call")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    warnings.filterwarnings("ignore", message="dcut and exclusive jets")

    jets = make_jets(args.n_jets)
    ref_jets = subset(jets, args.n_ref)
    small = subset(jets, 64)
    t0 = time.perf_counter()
    numba_pixelise(small), numba_lagan(small), numba_observables(small)  # compile / load cache
    print(f"numba {numba.__version__}; compile or cache load: {time.perf_counter() - t0:.1f} s; "
          f"{args.n_jets} jets x {N_CONSTITUENTS} constituents in batches of {args.batch} "
          f"(fastjet / histogram2d references on {args.n_ref} jets); load average {os.getloadavg()[0]:.2f}")

    # same-run correctness checks
    np.testing.assert_allclose(numba_pixelise(ref_jets), numpy_pixelise(ref_jets), rtol=1e-12, atol=1e-15)
    ref_obs = reference_observables(ref_jets)
    worst = cross_check(numba_observables(ref_jets), ref_obs)
    print(f"cross-check: images identical to numpy; observables max relative difference vs references {worst:.1e}")

    rates: dict[tuple[str, int], float] = {}
    max_threads = min(2, numba.config.NUMBA_NUM_THREADS)
    for threads in sorted({1, max_threads}):
        numba.set_num_threads(threads)
        for name, fn in (("pixelise", numba_pixelise), ("lagan", numba_lagan), ("observables", numba_observables)):
            rates[(name, threads)] = args.n_jets / best_time(batched(fn, jets, args.batch), args.repeats)
    numba.set_num_threads(1)
    ref_rates = {
        # vectorised numpy scales like the kernel: time it on the same jets
        "numpy bincount": args.n_jets / best_time(batched(numpy_pixelise, jets, args.batch), args.repeats),
        "numpy histogram2d": args.n_ref / best_time(lambda: numpy_histogram2d_pixelise(ref_jets), args.repeats),
        "fastjet+vector+numpy": args.n_ref / best_time(lambda: reference_observables(ref_jets), args.repeats),
    }

    print(f"\n{'kernel':<34}{'1 thread':>14}{f'{max_threads} threads':>14}   jets/s")
    for name, label in (("pixelise", "pixelise seed000 32x32"), ("lagan", "pixelise LAGAN 25x25 (subjets)"),
                        ("observables", "observables (all, one-pass kT)")):
        print(f"{label:<34}{rates[(name, 1)]:>14,.0f}{rates[(name, max_threads)]:>14,.0f}")
    print(f"\n{'reference (same run, 1 thread)':<34}{'jets/s':>14}{'numba/ref 1t':>14}{f'numba/ref {max_threads}t':>14}")
    for label, kernel in (("numpy bincount", "pixelise"), ("numpy histogram2d", "pixelise"),
                          ("fastjet+vector+numpy", "observables")):
        r = ref_rates[label]
        print(f"{label + ' (' + kernel + ')':<34}{r:>14,.0f}{rates[(kernel, 1)] / r:>14.1f}"
              f"{rates[(kernel, max_threads)] / r:>14.1f}")


if __name__ == "__main__":
    main()
