"""``hepfastsim dijet FILES... --out mjj.root``: the dijet selection and mjj spectrum via coffea."""

from __future__ import annotations

import argparse
import glob
import warnings
from pathlib import Path

import uproot
from rich.console import Console

from hepfastsim.analysis.dijet import DijetSelection
from hepfastsim.errors import HepfastsimError
from hepfastsim.io.writer import AtomicRootWriter, check_destination


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "dijet",
        help="dijet selection and mjj histogram (coffea processor) of NanoAOD-like files",
        description="Run the dijet selection on a jet collection and write the mjj histogram "
        "(CMS dijet binning, event weights) to a ROOT file, ready for 'hepfastsim fit'.",
    )
    p.add_argument("inputs", nargs="+", metavar="FILE", help="input ROOT files or globs")
    p.add_argument("--out", required=True, help="output ROOT file with the histogram 'mjj'")
    p.add_argument("--collection", default="Jet", help="jet collection: Jet, FastJet, ... (default: %(default)s)")
    p.add_argument("--simulate", metavar="MODEL", default=None,
                   help="simulate the collection on the fly from GenJets with this model instead of reading it")
    p.add_argument("--seed", type=int, default=0, help="seed for --simulate")
    p.add_argument("--no-wide-jets", action="store_true", help="no wide-jet recombination")
    p.add_argument("--max-delta-eta", type=float, default=1.3)
    p.add_argument("--executor", choices=("iterative", "futures"), default="iterative")
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--chunk-size", type=int, default=100_000)
    p.add_argument("--overwrite", action="store_true")
    p.set_defaults(func=run)


def _expand(patterns: list[str]) -> list[str]:
    files: list[str] = []
    for pattern in patterns:
        matches = sorted(glob.glob(pattern)) if any(c in pattern for c in "*?[") else [pattern]
        if not matches:
            raise HepfastsimError(f"no input file matches {pattern!r}")
        files += matches
    missing = [f for f in files if not Path(f).is_file()]
    if missing:
        raise HepfastsimError(f"cannot read input file {missing[0]!r}: no such file")
    return files


def run(args: argparse.Namespace) -> int:
    from coffea import processor
    from coffea.nanoevents import NanoAODSchema

    from processors.dijet import DijetProcessor
    from processors.fastsim import FastSimProcessor

    check_destination(args.out, overwrite=args.overwrite)
    files = _expand(args.inputs)
    selection = DijetSelection(
        max_delta_eta=args.max_delta_eta, wide_jet_radius=None if args.no_wide_jets else 1.1
    )
    fastsim = FastSimProcessor(model=args.simulate, seed=args.seed) if args.simulate else None
    proc = DijetProcessor(collection=args.collection, selection=selection, fastsim=fastsim)
    executor = (
        processor.IterativeExecutor(status=False)
        if args.executor == "iterative"
        else processor.FuturesExecutor(workers=args.workers, status=False)
    )
    runner = processor.Runner(executor=executor, schema=NanoAODSchema, chunksize=args.chunk_size)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # coffea notes on cross-references absent from the file
        try:
            out = runner({"dijet": files}, proc, treename="Events")
        except KeyError as err:
            raise HepfastsimError(str(err).strip("'\"")) from err
    result = out["dijet"]
    with AtomicRootWriter(args.out, overwrite=args.overwrite) as writer:
        writer.write_object("mjj", result["mjj"])
    Console().print(
        f"{args.out}: {result['selected']:,} of {result['events']:,} events selected "
        f"({'jets simulated from GenJets by ' + args.simulate if args.simulate else args.collection}); "
        f"histogram 'mjj' with {result['mjj'].sum().value:.4g} weighted events"
    )
    return 0


def read_histogram(path: str, name: str = "mjj"):
    """The histogram ``name`` of a ROOT file as a ``hist.Hist``."""
    try:
        return uproot.open(path)[name].to_hist()
    except FileNotFoundError as err:
        raise HepfastsimError(f"cannot read input file {path!r}: no such file") from err
    except Exception as err:
        raise HepfastsimError(f"cannot read histogram {name!r} from {path!r}: {err}") from err
