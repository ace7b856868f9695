"""Benchmark of the particle VAE (seed 003): time per jet and per event, against the paper.

The paper (arXiv:2203.00520, Sec. 6) reports 0.007 s per event on an Intel Xeon Silver 4216
CPU, measured on 1000 generator-level jets; our goal is at least 20x faster per event.

The events of ``--input`` (NanoAOD-like with GenCands / GenJetCands) are read once; then,
for each architecture with weights available, after a warm-up call:

- ``model``: the VAE alone (encoder + sampling + decoder) on the padded gen constituents of
  every gen jet in the input phase space (:func:`simulate_constituents`);
- ``full``: ``ParticleVAESimulator.simulate_with_extras``: constituents from the links,
  VAE, acceptance cuts, jets and observables (N-subjettiness, flows), PFNano links.

Per jet = per gen jet sent through the VAE; per event = per input event (all events,
including those without a jet in the phase space) and per event with at least one such
jet. Best of ``--repeat``; torch uses ``--threads`` threads (default 2).

Usage: python benchmarks/particle_vae.py --input /work/samples/qcd_mu30/qcd_mu30_part25.root
       [--events 5000] [--threads 2] [--weights set=PATH --weights conv=PATH]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import awkward as ak
import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

PAPER_SECONDS_PER_EVENT = 0.007
GOAL_SPEEDUP = 20.0


def load_events(path: str, n_events: int):  # noqa: ANN201
    from hepfastsim.io.nanoaod import constituent_branches, gen_branches, iterate_chunks, open_tree
    from hepfastsim.kernels.rng import event_keys
    from hepfastsim.simulators.base import GenEvents

    source = open_tree(path)
    stop = min(n_events, source.num_entries)
    branches = gen_branches(source) + constituent_branches(source)
    chunk = next(iterate_chunks(source, branches, step_size=stop, entry_stop=stop))
    return GenEvents.from_branches(chunk.arrays, event_keys(1, 2, np.arange(len(chunk))), constituents=True)


def best_of(fn, repeat: int) -> float:  # noqa: ANN001
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return min(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--input", required=True)
    parser.add_argument("--events", type=int, default=5000)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--weights", action="append", default=[], metavar="ARCH=PATH",
                        help="weights per architecture (default: the shipped ones that exist)")
    args = parser.parse_args()

    import torch

    torch.set_num_threads(args.threads)
    from hepfastsim.models.particle_vae import N_MAX
    from hepfastsim.models.particle_vae_train import padded_constituents
    from hepfastsim.simulators.particle_vae import DEFAULT_WEIGHTS, ParticleVAESimulator, simulate_constituents

    weights = {a: p for a, p in DEFAULT_WEIGHTS.items() if p.with_suffix(".safetensors").exists()}
    weights.update(dict(w.split("=", 1) for w in args.weights))
    events = load_events(args.input, args.events)
    print(f"input: {args.input}; {len(events):,} events; torch threads {torch.get_num_threads()}, "
          f"cpu count {os.cpu_count()}")
    results = {}
    for arch, path in weights.items():
        sim = ParticleVAESimulator(weights=path)
        sim.simulate_with_extras(_head(events, 200))  # warm-up: load the model, compile numba
        m = sim.model
        jets = events.jets
        cands = ak.flatten(events.constituents, axis=1)
        pt, eta = ak.to_numpy(ak.flatten(jets.pt)), ak.to_numpy(ak.flatten(jets.eta))
        sel = np.flatnonzero((pt > sim.gen_pt_min) & (np.abs(eta) < sim.gen_eta_max) & (ak.to_numpy(ak.num(cands)) > 0))
        n_jets = len(sel)
        events_with = int(np.sum(ak.to_numpy(ak.sum((jets.pt > sim.gen_pt_min) & (abs(jets.eta) < sim.gen_eta_max),
                                                     axis=1)) > 0))
        cpt, ceta, cphi, cn = padded_constituents(cands[sel], N_MAX)
        jet = {f: ak.to_numpy(ak.flatten(jets[f]))[sel].astype(np.float64) for f in ("pt", "eta", "phi", "mass")}
        rng = np.random.default_rng(0)
        eps, u = rng.standard_normal((n_jets, m.config.latent)), rng.random(n_jets)
        k = m.config.slot_latent
        slot_eps = rng.standard_normal((n_jets, N_MAX, k)) if k else None
        t_model = best_of(lambda: simulate_constituents(m, cpt, ceta, cphi, cn, jet, eps, u, slot_eps), args.repeat)
        t_full = best_of(lambda: sim.simulate_with_extras(events), args.repeat)
        r = {"jets": n_jets, "events": len(events), "events_with_jets": events_with,
             "model_ms_per_jet": 1e3 * t_model / n_jets, "full_ms_per_jet": 1e3 * t_full / n_jets,
             "full_ms_per_event": 1e3 * t_full / len(events),
             "full_ms_per_event_with_jets": 1e3 * t_full / max(events_with, 1)}
        r["speedup_vs_paper_per_event"] = PAPER_SECONDS_PER_EVENT * 1e3 / r["full_ms_per_event"]
        r["speedup_vs_paper_per_event_with_jets"] = PAPER_SECONDS_PER_EVENT * 1e3 / r["full_ms_per_event_with_jets"]
        results[arch] = r
        print(f"{arch:5s} {n_jets:,} jets in the phase space ({events_with:,} of {len(events):,} events): "
              f"VAE {r['model_ms_per_jet']:.3f} ms/jet; full simulate {r['full_ms_per_jet']:.3f} ms/jet, "
              f"{r['full_ms_per_event']:.3f} ms/event ({r['full_ms_per_event_with_jets']:.3f} ms per event with jets); "
              f"paper 7 ms/event -> {r['speedup_vs_paper_per_event']:.0f}x per event "
              f"({r['speedup_vs_paper_per_event_with_jets']:.0f}x per event with jets; goal {GOAL_SPEEDUP:.0f}x)")
    print(json.dumps(results))


def _head(events, n: int):  # noqa: ANN001, ANN202
    from hepfastsim.simulators.base import GenEvents

    return GenEvents(jets=events.jets[:n], n_pu=events.n_pu[:n], rho=events.rho[:n], keys=events.keys[:n],
                     constituents=events.constituents[:n])


if __name__ == "__main__":
    main()
