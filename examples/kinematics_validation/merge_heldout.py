"""Merge several held-out NanoAOD-like files into one, so that ``hepfastsim validate`` (one
reference file) judges the model on all of them at once.

    python examples/kinematics_validation/merge_heldout.py qcd_25-29.root qcd_mu30_part{25..29}.root

Every branch of each input's ``Events`` tree is copied, jagged collections keep their
``n<Collection>`` counters, and the output appears only once complete (``AtomicRootWriter``).
"""

from __future__ import annotations

import argparse

import uproot

from hepfastsim.io.writer import AtomicRootWriter


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("out")
    ap.add_argument("inputs", nargs="+")
    ap.add_argument("--tree", default="Events")
    ap.add_argument("--overwrite", action="store_true")
    args = ap.parse_args()
    with AtomicRootWriter(args.out, overwrite=args.overwrite) as out:
        for path in args.inputs:
            with uproot.open(path) as f:
                tree = f[args.tree]
                # counters (nJet, ...) are rewritten by the writer from the jagged branches
                names = [b for b in tree.keys() if not (b.startswith("n") and "_" not in b)]
                out.extend(args.tree, tree.arrays(names, library="ak", how=dict))
            print(f"merged {path}", flush=True)


if __name__ == "__main__":
    main()
