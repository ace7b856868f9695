"""``hepfastsim generate``: paired gen/reco jets from the reference chain.

Examples::

    hepfastsim generate --process qcd --events 300000 --pileup 30 --workers 2 --out qcd.root
    hepfastsim generate --process wprime --events 100000 --out wprime.root
    hepfastsim generate --process zprime --mass 3000 --events 20000 --pileup 0 --out zp.root
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from hepfastsim.reference.config import PROCESSES, ChainConfig, GeneratorConfig, PileupConfig

__all__ = ["add_parser", "run"]

DEFAULT_PILEUP = 30.0  # close to the 2017-2018 CMS average; the default for training samples


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        "generate",
        help="generate paired gen/reco jets with the reference chain (Pythia 8 + CMS-like detector)",
        description=(
            "Generate events with Pythia 8 (13 TeV), overlay pileup, simulate a CMS-like detector "
            "with particle flow, cluster anti-kt 0.4/0.8 jets with fastjet, correct them, and write "
            "a NanoAOD-like ROOT file (GenJet, Jet, GenJetAK8, FatJet, PFNano candidates)."
        ),
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument("--process", choices=PROCESSES, required=True, help="hard process")
    p.add_argument("--events", type=int, required=True, help="number of events")
    p.add_argument("--out", required=True, help="output ROOT file")
    p.add_argument("--pileup", type=float, default=DEFAULT_PILEUP, metavar="MU",
                   help="mean number of pileup interactions (Poisson); 0 for none")
    p.add_argument("--seed", type=int, default=1, help="run seed; the same seed gives the same file")
    p.add_argument("--workers", type=int, default=1, help="worker processes")
    p.add_argument("--executor", choices=("iterative", "futures", "dask"), default=None,
                   help="map event blocks through this executor (default: a local process pool of --workers; "
                        "dask with no --scheduler starts a LocalCluster)")
    p.add_argument("--scheduler", default=None, metavar="ADDRESS",
                   help="dask scheduler address (implies --executor dask); the pileup pool must be readable by the workers")
    p.add_argument("--pthat-min", type=float, default=15.0, metavar="X", help="QCD: minimum pT-hat (GeV)")
    p.add_argument("--bias", action=argparse.BooleanOptionalAction, default=True,
                   help="QCD: pT-hat biasing (pT-hat/X)^4.5 with compensating event weights")
    p.add_argument("--mass", type=float, default=None,
                   help="W' / Z' mass in GeV (defaults: W' 1000, Z' 2000)")
    p.add_argument("--block-size", type=int, default=500,
                   help="events per block (the unit of seeding and of parallel work)")
    p.add_argument("--cache-dir", default=None,
                   help="directory of the cached pileup pool (default: $HEPFASTSIM_CACHE/pileup "
                        "or ~/.cache/hepfastsim/pileup)")
    p.add_argument("--pool-size", type=int, default=5000, help="minimum-bias events in the pileup pool")
    p.add_argument("--overwrite", action="store_true", help="replace an existing output file")
    p.add_argument("--quiet", action="store_true", help="no progress bar or summary")
    p.set_defaults(func=run)
    return p


def _config(args: argparse.Namespace) -> ChainConfig:
    gen_kw: dict = {"process": args.process, "pthat_min": args.pthat_min, "bias": bool(args.bias)}
    if args.mass is not None:
        if args.process == "wprime":
            gen_kw["wprime_mass"] = args.mass
        elif args.process == "zprime":
            gen_kw["zprime_mass"] = args.mass
    return ChainConfig(
        generator=GeneratorConfig(**gen_kw),
        pileup=PileupConfig(mu=max(args.pileup, 0.0), pool_size=args.pool_size),
        block_size=args.block_size,
    )


def run(args: argparse.Namespace) -> int:
    from hepfastsim.errors import HepfastsimError
    from hepfastsim.reference.generate import default_pool_dir, generate

    if args.block_size < 1:
        raise HepfastsimError(f"--block-size must be at least 1, got {args.block_size}")
    if args.pool_size < 1:
        raise HepfastsimError(f"--pool-size must be at least 1, got {args.pool_size}")
    if args.pileup < 0:
        raise HepfastsimError(f"--pileup must be >= 0, got {args.pileup}")
    config = _config(args)
    pool_dir = Path(args.cache_dir).expanduser() if args.cache_dir else default_pool_dir()
    if args.quiet:
        summary = generate(config, args.events, args.out, seed=args.seed, workers=args.workers,
                           pool_dir=pool_dir, overwrite=args.overwrite, executor=args.executor,
                           scheduler=args.scheduler)
        return 0
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, \
        TimeRemainingColumn

    console = Console(stderr=True)
    columns = (TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
               TextColumn("{task.fields[rate]}"), TimeElapsedColumn(), TimeRemainingColumn())
    with Progress(*columns, console=console, transient=False) as bar:
        from hepfastsim.reference.pileup import pool_filename

        pool_task = None
        if config.pileup.mu > 0 and not (pool_dir / pool_filename(config.pileup, config.generator)).exists():
            pool_task = bar.add_task("pileup pool", total=config.pileup.pool_size, rate="")
        ev_task = bar.add_task(f"{args.process} events", total=args.events, rate="")
        import time

        start = {"t": time.perf_counter()}

        def on_events(done: int) -> None:
            bar.update(ev_task, completed=done)
            elapsed = time.perf_counter() - start["t"]
            if elapsed > 0:
                bar.update(ev_task, rate=f"{done / elapsed:.0f} ev/s")

        def on_pool(done: int) -> None:
            if pool_task is not None:
                bar.update(pool_task, completed=done)

        summary = generate(config, args.events, args.out, seed=args.seed, workers=args.workers,
                           pool_dir=pool_dir, overwrite=args.overwrite, progress=on_events,
                           pool_progress=on_pool, executor=args.executor, scheduler=args.scheduler)
    stages = ", ".join(f"{k} {summary.n_events / v:.0f} ev/s" for k, v in summary.stage_s.items() if v > 0)
    console.print(
        f"wrote {summary.n_events} events to {os.fspath(args.out)} in {summary.wall_s:.1f} s "
        f"({summary.n_events / summary.wall_s:.1f} ev/s overall); per stage (CPU of one worker): {stages}"
    )
    return 0
