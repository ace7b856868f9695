"""Benchmark of the kinematics model: inference jets/s, and ``convert`` time over a plain uproot copy.

1. Inference: the GenJets of ``--input`` (a NanoAOD-like file; events are repeated to reach
   ``--jets`` gen jets) are simulated in one call of ``KinematicsSimulator.simulate`` (the
   whole chunk through the flows at once), after a warm-up call; torch uses ``--threads``
   threads. Reported: gen jets in per second (and reco jets out per second), best of
   ``--repeat``; the parametric baseline is timed the same way for comparison.
2. ``convert --model kinematics`` of ``--input`` against a plain uproot copy of the same file
   (iterate + mktree/extend), each in a fresh process with the same thread settings.

Usage: python benchmarks/kinematics.py --input /work/samples/qcd_300k.root [--threads 2]
       [--jets 200000] [--weights PATH]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import awkward as ak
import numpy as np

HERE = Path(__file__).resolve().parent
OUTPUT = HERE / "output"
sys.path.insert(0, str(HERE.parent))


def gen_events(path: str, n_jets: int):  # noqa: ANN201
    from hepfastsim.io.nanoaod import gen_branches, iterate_chunks, open_tree
    from hepfastsim.kernels.rng import event_keys
    from hepfastsim.simulators.base import GenEvents

    source = open_tree(path)
    chunk = next(iterate_chunks(source, gen_branches(source), step_size=source.num_entries))
    n_ev = len(chunk)
    per_event = float(ak.mean(ak.num(chunk.arrays["GenJet_pt"])))
    reps = max(1, int(np.ceil(n_jets / (per_event * n_ev))))
    rows = np.tile(np.arange(n_ev), reps)
    arrays = {k: v[rows] for k, v in chunk.arrays.items()}
    return GenEvents.from_branches(arrays, event_keys(1, 2, np.arange(len(rows))))


def time_simulate(sim, events, repeat: int) -> tuple[float, int, int]:  # noqa: ANN001
    sim.simulate(_head(events, 2000))  # warm-up (loads the model, compiles numba)
    best = np.inf
    n_out = 0
    for _ in range(repeat):
        t0 = time.perf_counter()
        reco = sim.simulate(events)
        best = min(best, time.perf_counter() - t0)
        n_out = int(ak.sum(ak.num(reco)))
    return best, int(ak.sum(ak.num(events.jets))), n_out


def _head(events, n: int):  # noqa: ANN001, ANN202
    from hepfastsim.simulators.base import GenEvents

    return GenEvents(events.jets[:n], events.n_pu[:n], events.rho[:n], events.keys[:n])


# the same plain uproot copy as benchmarks/convert.py (this script's directory is on sys.path)
from convert import PLAIN_COPY  # noqa: E402

CONVERT = """
import time, torch
torch.set_num_threads({threads})
from hepfastsim.convert import convert, ConvertConfig
t0 = time.perf_counter()
s = convert({src!r}, {dst!r}, ConvertConfig(model="kinematics", overwrite=True))
RESULT = {{"seconds": time.perf_counter() - t0, "events": s.events, "reco_jets": s.reco_jets, "gen_jets": s.gen_jets}}
"""


def child(code: str, env: dict[str, str]) -> dict[str, float]:
    wrapper = code + "\nimport json; print(json.dumps(RESULT))"
    out = subprocess.run([sys.executable, "-c", wrapper], capture_output=True, text=True, check=True, env=env,
                         cwd=str(HERE.parent))
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--input", required=True, help="NanoAOD-like file with GenJet_* (e.g. a generate output)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--jets", type=int, default=200_000, help="gen jets per inference call")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--weights", default=None, help="kinematics weights (default: shipped)")
    parser.add_argument("--skip-convert", action="store_true")
    args = parser.parse_args()

    import torch

    torch.set_num_threads(args.threads)
    from hepfastsim.simulators import KinematicsSimulator, ParametricSimulator

    events = gen_events(args.input, args.jets)
    print(f"input: {args.input}; {len(events):,} events, {int(ak.sum(ak.num(events.jets))):,} gen jets per call; "
          f"torch threads {torch.get_num_threads()}, cpu count {os.cpu_count()}")
    results = {}
    for label, sim in (("kinematics", KinematicsSimulator(args.weights)), ("parametric", ParametricSimulator())):
        sec, n_in, n_out = time_simulate(sim, events, args.repeat)
        results[label] = {"seconds": sec, "gen_jets": n_in, "reco_jets": n_out, "jets_per_s": n_in / sec}
        print(f"{label:11s} {n_in:>9,} gen jets in {sec:6.3f} s: {n_in / sec:>12,.0f} gen jets/s "
              f"({n_out / sec:,.0f} reco jets/s out)")
    if not args.skip_convert:
        OUTPUT.mkdir(exist_ok=True)
        env = {**os.environ, "OMP_NUM_THREADS": str(args.threads)}
        if args.weights:
            env["HEPFASTSIM_KINEMATICS_WEIGHTS"] = str(args.weights)
        dst = str(OUTPUT / "bench_kin_out.root")
        copy = child(PLAIN_COPY.format(src=args.input, dst=dst), env)
        conv = child(CONVERT.format(src=args.input, dst=dst, threads=args.threads), env)
        Path(dst).unlink(missing_ok=True)
        ratio = conv["seconds"] / copy["seconds"]
        results["convert"] = {"copy_seconds": copy["seconds"], "convert_seconds": conv["seconds"], "ratio": ratio,
                              "events": conv["events"]}
        print(f"plain uproot copy {copy['seconds']:.2f} s; convert --model kinematics {conv['seconds']:.2f} s "
              f"({conv['events']:,} events, {conv['gen_jets']:,} gen jets); ratio {ratio:.2f}")
    print(json.dumps(results))


if __name__ == "__main__":
    main()
