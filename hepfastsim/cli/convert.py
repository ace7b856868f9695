"""``hepfastsim convert``: add a fast-simulated reco jet collection to NanoAOD-like files.

``hepfastsim convert IN OUT`` converts one file; ``hepfastsim convert IN... --output-dir DIR``
converts many (paths, quoted globs such as ``"data/*.root"``, coffea fileset JSONs), one
output per input, with ``--executor iterative|futures|dask`` (``--scheduler ADDRESS`` for a
running dask cluster, else a local one of ``--workers`` processes).
"""

from __future__ import annotations

import argparse

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from hepfastsim.convert import ConvertConfig, ConvertSummary, convert
from hepfastsim.distributed import EXECUTORS, ConvertManyError, TaskFailure, convert_many, expand_inputs
from hepfastsim.errors import HepfastsimError
from hepfastsim.io.nanoaod import open_tree
from hepfastsim.io.schema import DEFAULT_COLLECTION
from hepfastsim.simulators.base import DEFAULT_MODEL


def _chunk_size(text: str) -> int | str:
    """Events per chunk (``50000``) or a memory size (``"200 MB"``)."""
    if text.strip().isdigit():
        value = int(text)
        if value < 1:
            raise argparse.ArgumentTypeError(f"expected a positive number of events, got {text}")
        return value
    return text


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "convert",
        help="add reco-level jets (fast simulation) to a NanoAOD-like ROOT file",
        description="Copy IN to OUT, every tree and branch, adding a fast-simulated reco jet "
        "collection (nFastJet, FastJet_pt, ...) made from the GenJet collection. With --output-dir, "
        "every IN (files, quoted globs, coffea fileset .json) becomes DIR/<its name>.",
        usage="%(prog)s IN OUT [options]\n       %(prog)s IN [IN ...] --output-dir DIR [options]",
    )
    p.add_argument("paths", nargs="+", metavar="IN",
                   help="NanoAOD-like ROOT file(s) with GenJet_* branches; without --output-dir: IN OUT")
    p.add_argument("-o", "--output-dir", metavar="DIR", help="convert every IN into DIR/<name of IN>")
    p.add_argument("--executor", choices=EXECUTORS, default=None,
                   help="how files are spread over cores (default: dask with --scheduler, else iterative)")
    p.add_argument("--scheduler", metavar="ADDRESS", help="dask scheduler address (tcp://host:8786); "
                   "with --executor dask and no address a local cluster is started")
    p.add_argument("--workers", type=int, default=None, metavar="N",
                   help="worker processes for futures or a local dask cluster (default: all cores); "
                   "with --scheduler, wait for N workers")
    p.add_argument("--resume", action="store_true",
                   help="skip inputs whose output exists (outputs only appear complete), convert the rest")
    p.add_argument("--reproducible", action="store_true",
                   help="byte-for-byte reproducible files: UUID from the input's and the options, fixed timestamps")
    p.add_argument("--model", default=DEFAULT_MODEL,
                   help="simulator: kinematics (learned, default), parametric (resolution-formula baseline), "
                   "or a model that reads gen constituents (default: %(default)s)")
    p.add_argument("--collection", default=DEFAULT_COLLECTION, help="name of the new collection (default: %(default)s)")
    p.add_argument("--seed", type=int, default=0, help="random seed (default: %(default)s)")
    p.add_argument(
        "--chunk-size",
        type=_chunk_size,
        default="100 MB",
        help="events per chunk, or a memory size such as '200 MB' (default: %(default)s)",
    )
    p.add_argument("--oversample", type=int, default=1, metavar="K", help="K independent reco draws per event")
    p.add_argument("--overwrite", action="store_true", help="replace OUT if it exists")
    p.add_argument("--tree", default="Events", help="events tree (default: %(default)s)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=run)


def print_summary(summary: ConvertSummary, console: Console) -> None:
    console.print(f"[bold]{summary.output}[/bold] written by model [bold]{summary.model}[/bold]")
    console.print(
        f"  events: {summary.events:,} in, {summary.events_written:,} out "
        f"({summary.events_without_gen_jets:,} without gen jets)"
    )
    console.print(
        f"  gen jets in: {summary.gen_jets:,} ({summary.invalid_gen_jets:,} with NaN/inf kinematics skipped); "
        f"reco jets out: {summary.reco_jets:,}"
    )
    console.print(f"  trees copied: {', '.join(summary.trees_copied)}" + (
        f"; objects copied: {', '.join(summary.objects_copied)}" if summary.objects_copied else ""))
    for name, reason in summary.not_copied.items():
        console.print(f"  [yellow]not copied[/yellow]: {name} ({reason})")
    console.print(f"  {summary.seconds:.2f} s, {summary.events_per_second:,.0f} events/s")


def run(args: argparse.Namespace) -> int:
    if args.executor is None:
        args.executor = "dask" if args.scheduler is not None else "iterative"
    if args.output_dir is None and len(args.paths) != 2:
        raise HepfastsimError(
            f"expected IN OUT, or inputs with --output-dir DIR; got {len(args.paths)} path(s) and no --output-dir"
        )
    if args.output_dir is not None or args.executor != "iterative" or args.resume or args.scheduler is not None:
        return run_many(args)
    args.input, args.output = args.paths
    config = _config(args)
    console = Console(stderr=True)
    total = open_tree(args.input, args.tree).num_entries
    with Progress(
        TextColumn("converting"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeRemainingColumn(),
        console=console,
        disable=args.quiet,
        transient=True,
    ) as progress:
        task = progress.add_task("convert", total=total)
        summary = convert(args.input, args.output, config, on_progress=lambda n: progress.advance(task, n))
    print_summary(summary, Console())
    return 0


def _config(args: argparse.Namespace) -> ConvertConfig:
    """The ConvertConfig of the parsed flags (one place for both the single and many-file paths)."""
    return ConvertConfig(
        model=args.model,
        collection=args.collection,
        seed=args.seed,
        chunk_size=args.chunk_size,
        oversample=args.oversample,
        overwrite=args.overwrite,
        tree=args.tree,
        reproducible=args.reproducible,
    )


def run_many(args: argparse.Namespace) -> int:
    """Several inputs (or one, through an executor): a progress bar over files, a summary each."""
    config = _config(args)
    if args.output_dir is not None:
        inputs: list[str] | dict[str, str] = expand_inputs(args.paths)
        target = args.output_dir
    else:
        inputs, target = {args.paths[0]: args.paths[1]}, None
    console = Console(stderr=True)
    failed: list[TaskFailure] = []
    with Progress(
        TextColumn(f"converting ({args.executor})"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("files"),
        TimeRemainingColumn(),
        console=console,
        disable=args.quiet,
        transient=True,
    ) as progress:
        task = progress.add_task("files", total=len(inputs))

        def done(result: ConvertSummary | TaskFailure) -> None:
            progress.advance(task)
            if isinstance(result, TaskFailure):
                failed.append(result)

        try:
            summaries = convert_many(
                inputs, target, config, executor=args.executor, scheduler=args.scheduler,
                workers=args.workers, resume=args.resume, on_done=done,
            )
            error: ConvertManyError | None = None
        except ConvertManyError as err:
            summaries, error = err.summaries, err
    out = Console()
    for summary in summaries:
        print_summary(summary, out)
    if not summaries and error is None:
        out.print("every output already exists; nothing to convert")
    if len(summaries) > 1:
        events = sum(s.events for s in summaries)
        out.print(f"[bold]{len(summaries)} files[/bold], {events:,} events converted")
    if error is not None:
        raise error
    return 0
