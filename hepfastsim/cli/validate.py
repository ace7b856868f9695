"""``hepfastsim validate``: compare fast-simulated reco jets with a reference on the same gen events.

Examples::

    hepfastsim convert ref.root out.root
    hepfastsim validate --reference ref.root --candidate out.root --out validation/

    # two models side by side (LABEL=FILE), reference and candidates from different files
    hepfastsim validate --reference ref.root --candidate kinematics=kin.root \\
        --candidate parametric=par.root --out validation/
"""

from __future__ import annotations

import argparse
from pathlib import Path

from rich.console import Console

__all__ = ["add_parser", "LEVEL_MODULES"]

# ``--level`` other than ``jets``: the module that validates it, exposing ``run(args) -> int``
# (it reads the same --reference/--candidate/--out flags). A module not written yet is refused.
LEVEL_MODULES: dict[str, str] = {
    "images": "hepfastsim.evaluation.validate_images",
    "particles": "hepfastsim.evaluation.validate_particles",
}


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        "validate",
        help="compare fast-simulated jets with a reference (W1, classifier AUC, response, efficiency, fakes)",
        description="Compare the candidate reco jet collection(s) with the reference collection on the same gen "
        "events: W1 per variable as a ratio to the statistical floor, a classifier two-sample AUC, response median "
        "and resolution in gen pT x |eta| bins, efficiency and unmatched-jet multiplicity. Writes PNG plots, "
        "summary.md and summary.json into --out.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument("--reference", required=True, metavar="REF.root", help="file with the reference collection")
    p.add_argument("--candidate", required=True, action="append", metavar="[LABEL=]OUT.root",
                   help="file with the candidate collection (repeat for several models)")
    p.add_argument("--level", choices=("jets", *LEVEL_MODULES), default="jets",
                   help="jets: reco jet kinematics; images: jet images and substructure (image GAN); "
                   "particles: reco constituents (particle VAE)")
    p.add_argument("--reference-collection", default="Jet")
    p.add_argument("--candidate-collection", default="FastJet")
    p.add_argument("--out", default="validation", help="output directory for plots and tables")
    p.add_argument("--max-events", type=int, default=None, help="use at most this many events")
    p.add_argument("--min-bin-jets", type=int, default=500, help="response bins with fewer reference jets are not judged")
    p.add_argument("--max-error-fraction", type=float, default=0.5,
                   help="a response bin whose shift has a statistical error above this fraction of the tolerance "
                        "(1%% median, 5%% resolution) cannot resolve it: it fails only if its shift lies beyond "
                        "the tolerance by more than twice the error (default 0.5)")
    p.add_argument("--no-plots", action="store_true")
    p.add_argument("--record-in", metavar="MODEL", default=None,
                   help="also record the summary under 'validation' in the metadata MODEL.json of a kinematics model")
    p.add_argument("--record-name", default=None, help="key of this validation in --record-in (default: reference file name)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=None, help="threads of the classifier (default: all cores)")
    p.add_argument("--tree", default="Events")
    p.set_defaults(func=run)
    return p


def run(args: argparse.Namespace) -> int:
    from hepfastsim.errors import HepfastsimError

    if args.level != "jets":
        import importlib

        try:
            module = importlib.import_module(LEVEL_MODULES[args.level])
        except ModuleNotFoundError as err:
            if err.name == LEVEL_MODULES[args.level]:
                raise HepfastsimError(f"--level {args.level} is not available in this version") from None
            raise
        return int(module.run(args) or 0)
    from hepfastsim.evaluation.validate import (
        Criteria,
        candidate_label_path,
        make_plots,
        read_jets,
        summary_markdown,
        validate,
        write_report,
    )

    if not args.max_error_fraction > 0:
        raise HepfastsimError(f"--max-error-fraction must be positive, got {args.max_error_fraction}")
    console = Console(stderr=True)
    reference = read_jets(args.reference, args.reference_collection, tree=args.tree, max_events=args.max_events)
    candidates, pooled = {}, {}
    for text in args.candidate:
        label, path = candidate_label_path(text)
        if label in candidates:
            raise HepfastsimError(f"candidate label {label!r} given twice; use LABEL=FILE")
        table = read_jets(path, args.candidate_collection, tree=args.tree, max_events=args.max_events, all_draws=True)
        candidates[label] = table.first_draw()
        if table.n_draws > 1:  # --oversample output: pool the draws where that is sound
            pooled[label] = table
    with console.status("computing metrics (W1, classifier AUC, response, efficiency)"):
        result = validate(reference, candidates, criteria=Criteria(min_bin_jets=args.min_bin_jets,
                                                                      max_error_fraction=args.max_error_fraction),
                          reference_label=f"reference ({args.reference_collection})", seed=args.seed,
                          threads=args.threads, pooled=pooled)
    out = Path(args.out)
    if not args.no_plots:
        with console.status("plotting"):
            result.plots = make_plots(result, reference, candidates, out)
    md, js = write_report(result, out)
    if args.record_in:
        from hepfastsim.evaluation.validate import record_in_metadata

        record_in_metadata(result, args.record_in, args.record_name or Path(args.reference).name)
    Console().print(summary_markdown(result), markup=False, highlight=False)
    Console().print(f"written: {md}, {js}" + (f" and {len(result.plots)} PNG plots" if result.plots else ""))
    return 0
