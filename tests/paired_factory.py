"""Toy NanoAOD-like files with paired gen and reco jets (Jet_genJetIdx), for model and evaluation tests.

Gen jets as in :mod:`nanoaod_factory`; each is reconstructed with probability ``eff`` with a
Gaussian response; ``Poisson(fake_mean * nPU / 30)`` unmatched reco jets are added per
event (genJetIdx = -1); reco jets are sorted by decreasing pT.
"""

from __future__ import annotations

from pathlib import Path

import awkward as ak
import numpy as np
import uproot

from nanoaod_factory import make_events


def make_paired_events(n_events: int, seed: int = 3, eff: float = 0.8, fake_mean: float = 1.5,
                       resolution: float = 0.1) -> dict[str, object]:
    branches = make_events(n_events, seed)
    rng = np.random.default_rng(seed + 100)
    gen_pt = branches["GenJet_pt"]
    n_gen = ak.to_numpy(ak.num(gen_pt)).astype(np.int64)
    flat = {f: ak.to_numpy(ak.flatten(branches[f"GenJet_{f}"])).astype(np.float64) for f in ("pt", "eta", "phi", "mass")}
    ev_gen = np.repeat(np.arange(n_events), n_gen)
    local = np.arange(len(ev_gen)) - np.concatenate([[0], np.cumsum(n_gen)])[ev_gen]
    keep = rng.random(len(ev_gen)) < eff
    npu = np.asarray(branches["Pileup_nPU"], np.float64)
    n_fake = rng.poisson(fake_mean * npu / 30.0)
    ev_fake = np.repeat(np.arange(n_events), n_fake)
    nf = len(ev_fake)
    pt = np.concatenate([flat["pt"][keep] * rng.normal(1.0, resolution, keep.sum()), 15 + rng.exponential(5.0, nf)])
    eta = np.concatenate([flat["eta"][keep] + rng.normal(0, 0.02, keep.sum()), rng.uniform(-4.7, 4.7, nf)])
    phi = np.concatenate([flat["phi"][keep] + rng.normal(0, 0.02, keep.sum()), rng.uniform(-np.pi, np.pi, nf)])
    phi = np.mod(phi + np.pi, 2 * np.pi) - np.pi
    mass = np.concatenate([flat["mass"][keep] * rng.normal(1.0, 0.1, keep.sum()), rng.uniform(1, 6, nf)])
    ncon = np.concatenate([rng.integers(5, 40, keep.sum()), rng.integers(1, 6, nf)])
    area = np.concatenate([rng.normal(0.5, 0.03, keep.sum()), rng.normal(0.45, 0.05, nf)])
    area = np.round(area / 0.01) * 0.01  # counted in ghosts, as FastJet's active areas: a lattice
    gidx = np.concatenate([local[keep], np.full(nf, -1)])
    event = np.concatenate([ev_gen[keep], ev_fake])
    order = np.lexsort((-pt, event))
    counts = np.bincount(event, minlength=n_events)
    un = lambda a, dt: ak.values_astype(ak.unflatten(a[order], counts), dt)  # noqa: E731
    branches.update({
        "Jet_pt": un(pt, np.float32), "Jet_eta": un(eta, np.float32), "Jet_phi": un(phi, np.float32),
        "Jet_mass": un(np.abs(mass), np.float32), "Jet_genJetIdx": un(gidx, np.int32),
        "Jet_nConstituents": un(ncon, np.int32), "Jet_area": un(area, np.float32),
    })
    for k in [k for k in branches if k.startswith(("GenCands_", "GenJetCands_"))]:
        del branches[k]
    return branches


def write_paired(path: Path, n_events: int = 400, seed: int = 3, drop: tuple[str, ...] = (), **kwargs) -> Path:
    branches = make_paired_events(n_events, seed, **kwargs)
    for name in drop:
        del branches[name]
    groups: dict[str, dict[str, object]] = {}
    flat: dict[str, object] = {}
    for name, arr in branches.items():
        if isinstance(arr, ak.Array) and arr.ndim == 2:
            prefix, field = name.split("_", 1)
            groups.setdefault(prefix, {})[field] = arr
        else:
            flat[name] = arr
    with uproot.recreate(path) as f:
        f.mktree("Events", {**flat, **{p: ak.zip(fields) for p, fields in groups.items()}})
    return path
