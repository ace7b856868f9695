"""Benchmark of ``hepfastsim generate``: events/s per stage and overall.

Runs the reference chain on N events of each requested process with the given number of
workers (default 2, the cores of the target machine) and prints, per stage, the event
rate of one worker (events / CPU seconds spent in the stage, summed over workers; CPU time
so that the figure does not depend on other load of a shared machine) and the overall
wall-clock rate of the run, which does. Stages: Pythia (hard process), pileup overlay,
detector (tracking, calorimeters, particle flow, rho, CHS), clustering (AK4/AK8 gen and
reco jets, areas, flavour), output (JEC, matching, NanoAOD branches) and writing (ROOT).
The pileup pool is built (or loaded from the cache) before timing starts.

Usage: python benchmarks/generate.py [--events 2000] [--workers 2] [--pileup 30]
                                     [--process qcd wprime ttbar] [--cache-dir DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

from hepfastsim.reference.config import ChainConfig, GeneratorConfig, PileupConfig
from hepfastsim.reference.generate import default_pool_dir, generate
from hepfastsim.reference.pileup import load_or_build_pool

HERE = Path(__file__).resolve().parent
STAGE_NAMES = {"pythia": "Pythia", "pileup": "pileup overlay", "detector": "detector + PF",
               "clustering": "clustering", "output": "JEC/matching/branches", "writing": "writing"}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--events", type=int, default=2000)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--pileup", type=float, default=30.0)
    parser.add_argument("--process", nargs="+", default=["qcd", "wprime", "ttbar"])
    parser.add_argument("--block-size", type=int, default=250)
    parser.add_argument("--cache-dir", default=None)
    parser.add_argument("--json", default=str(HERE / "output" / "generate.json"))
    args = parser.parse_args(argv)
    pool_dir = Path(args.cache_dir) if args.cache_dir else default_pool_dir()
    results = {}
    print(f"hepfastsim generate benchmark: {args.events} events per process, {args.workers} workers, "
          f"pileup mu = {args.pileup}, {os.cpu_count()} CPUs visible")
    for process in args.process:
        config = ChainConfig(generator=GeneratorConfig(process=process), pileup=PileupConfig(mu=args.pileup),
                             block_size=args.block_size)
        if args.pileup > 0:
            t0 = time.perf_counter()
            load_or_build_pool(pool_dir, config.pileup, config.generator)
            print(f"  pileup pool ready in {time.perf_counter() - t0:.1f} s")
        with tempfile.TemporaryDirectory() as tmp:
            out = Path(tmp) / f"{process}.root"
            s = generate(config, args.events, out, seed=1, workers=args.workers, pool_dir=pool_dir)
            size = out.stat().st_size
        rates = {k: s.n_events / v for k, v in s.stage_s.items() if v > 0}
        cpu = sum(s.stage_s.values())
        print(f"\n{process}: {s.n_events} events in {s.wall_s:.1f} s wall -> {s.n_events / s.wall_s:.1f} events/s "
              f"overall on {args.workers} workers; {size / s.n_events / 1024:.1f} kB/event")
        print(f"  {'stage':<24}{'events/CPU-s (1 core)':>22}{'share of CPU':>14}")
        for k, v in s.stage_s.items():
            if v > 0:
                print(f"  {STAGE_NAMES.get(k, k):<24}{rates[k]:>22.1f}{100 * v / cpu:>13.1f}%")
        print(f"  {'all stages, 1 core':<24}{s.n_events / cpu:>22.1f}")
        print(f"  -> on 2 free cores: about {2 * s.n_events / cpu:.0f} events/s")
        results[process] = {"events": s.n_events, "wall_s": s.wall_s, "overall_events_per_s": s.n_events / s.wall_s,
                            "workers": args.workers, "pileup": args.pileup, "stage_events_per_s": rates,
                            "bytes_per_event": size / s.n_events}
    Path(args.json).parent.mkdir(parents=True, exist_ok=True)
    Path(args.json).write_text(json.dumps(results, indent=1) + "\n")
    print(f"\nwrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
