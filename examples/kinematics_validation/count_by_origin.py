"""Mean reco nConstituents of matched jets, reference (``Jet``) against fast simulation
(``FastJet``), split by where the gen jet comes from: the nearest hard-process particle of the
``GenPart`` record within Delta R < 0.4 (status 23) and its mother.

    python examples/kinematics_validation/count_by_origin.py out_ttbar.root out_wprime.root ...

Each input is a ``hepfastsim convert`` output of a reference file (it keeps ``Jet_*`` and
``GenPart_*`` and adds ``FastJet_*``). Categories: daughters of a colour-singlet boson (W, Z,
H, Z', W'), daughters of a top quark, other hard particles (QCD 2 -> 2), and jets with no hard
particle nearby. Only matched jets with gen pT > ``--min-gen-pt`` (30 GeV) count. This is how the
README's table of the count's process dependence was measured.
"""

from __future__ import annotations

import argparse

import awkward as ak
import numpy as np

from hepfastsim.errors import HepfastsimError
from hepfastsim.io.nanoaod import open_tree
from hepfastsim.jets.origin import GENPART_ORIGIN, ORIGIN_CATEGORIES, gen_jet_origin

def matched_counts(events: ak.Array, collection: str) -> tuple[np.ndarray, np.ndarray]:
    """(flat gen-jet index, nConstituents) of the matched jets of ``collection``."""
    gen_offsets = np.concatenate([[0], np.cumsum(ak.to_numpy(ak.num(events.GenJet_pt)))])
    idx = events[f"{collection}_genJetIdx"]
    event = ak.to_numpy(ak.flatten(ak.broadcast_arrays(np.arange(len(events)), idx)[0]))
    idx = ak.to_numpy(ak.flatten(idx))
    count = ak.to_numpy(ak.flatten(events[f"{collection}_nConstituents"]))
    ok = (idx >= 0) & (idx < gen_offsets[event + 1] - gen_offsets[event])  # genJetIdx may point past nGenJet
    return gen_offsets[event[ok]] + idx[ok], count[ok]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("files", nargs="+")
    p.add_argument("--min-gen-pt", type=float, default=30.0, help="GeV")
    args = p.parse_args()
    branches = [*GENPART_ORIGIN, "GenJet_pt", "GenJet_eta", "GenJet_phi", "Jet_genJetIdx", "Jet_nConstituents",
                "FastJet_genJetIdx", "FastJet_nConstituents"]
    for path in args.files:
        source = open_tree(path)
        source.require(branches)  # a missing branch names the file and the branch
        events = source.tree.arrays(branches)
        origin = gen_jet_origin(events)
        gen_pt = ak.to_numpy(ak.flatten(events.GenJet_pt))
        means = {}
        for collection in ("Jet", "FastJet"):
            gen, count = matched_counts(events, collection)
            keep = gen_pt[gen] > args.min_gen_pt
            means[collection] = {k: (count[keep & (origin[gen] == k)].mean(), int(np.sum(keep & (origin[gen] == k))))
                                 for k in range(len(ORIGIN_CATEGORIES)) if np.any(keep & (origin[gen] == k))}
        print(path)
        for k, (ref, n) in means["Jet"].items():
            sim = means["FastJet"][k][0]
            print(f"  {ORIGIN_CATEGORIES[k]:24s} reference {ref:7.3f}  fast sim {sim:7.3f}  ({sim / ref - 1:+.1%}, {n} jets)")


if __name__ == "__main__":
    try:
        main()
    except HepfastsimError as err:
        raise SystemExit(f"error: {err}") from None
