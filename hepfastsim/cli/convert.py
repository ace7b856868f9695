"""``hepfastsim convert IN OUT``: add a fast-simulated reco jet collection to a NanoAOD-like file."""

from __future__ import annotations

import argparse

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from hepfastsim.convert import ConvertConfig, ConvertSummary, convert
from hepfastsim.io.nanoaod import open_tree
from hepfastsim.io.schema import DEFAULT_COLLECTION


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
        "collection (nFastJet, FastJet_pt, ...) made from the GenJet collection.",
    )
    p.add_argument("input", metavar="IN", help="NanoAOD-like ROOT file with GenJet_* branches")
    p.add_argument("output", metavar="OUT", help="output ROOT file (written atomically)")
    p.add_argument("--model", default="parametric", help="simulator to use (default: %(default)s)")
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
    config = ConvertConfig(
        model=args.model,
        collection=args.collection,
        seed=args.seed,
        chunk_size=args.chunk_size,
        oversample=args.oversample,
        overwrite=args.overwrite,
        tree=args.tree,
    )
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
