"""Merge several held-out NanoAOD-like files into one, so that ``hepfastsim validate`` (one
reference file) judges the model on all of them at once.

    python examples/kinematics_validation/merge_heldout.py qcd_25-29.root qcd_mu30_part{25..29}.root

Every branch of each input's ``Events`` tree is copied, jagged collections keep their
``n<Collection>`` counters, and the output appears only once complete (``AtomicRootWriter``).
"""

from __future__ import annotations

import argparse

from hepfastsim.errors import HepfastsimError
from hepfastsim.io.nanoaod import open_tree
from hepfastsim.io.writer import AtomicRootWriter


def merge(out: str, inputs: list[str], tree: str = "Events", overwrite: bool = False) -> None:
    # open every input first: a missing file or tree fails before anything is written
    sources = [open_tree(path, tree) for path in inputs]
    with AtomicRootWriter(out, overwrite=overwrite) as writer:
        for source in sources:
            # counters (nJet, ...) are rewritten by the writer from the jagged branches
            names = [b for b in source.branch_names if b not in set(source.counters.values())]
            writer.extend(tree, source.tree.arrays(names, library="ak", how=dict), counters=source.counters)
            print(f"merged {source.path}", flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("out")
    ap.add_argument("inputs", nargs="+")
    ap.add_argument("--tree", default="Events")
    ap.add_argument("--overwrite", action="store_true")
    args = ap.parse_args()
    try:
        merge(args.out, args.inputs, args.tree, args.overwrite)
    except HepfastsimError as err:
        raise SystemExit(f"error: {err}") from None


if __name__ == "__main__":
    main()
