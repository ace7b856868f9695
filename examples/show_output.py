"""Print what ``hepfastsim convert`` produced: the new branches, the jets of a few events,
and the reco / gen response of the matched jets.

Usage: python examples/show_output.py OUT.root [--collection FastJet]
"""

from __future__ import annotations

import argparse

import awkward as ak
import numpy as np
import uproot


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("output")
    parser.add_argument("--collection", default="FastJet")
    args = parser.parse_args()
    name = args.collection

    events = uproot.open(args.output)["Events"]
    new = [b for b in events.keys() if b.startswith(f"{name}_") or b == f"n{name}"]
    print(f"{args.output}: {events.num_entries} events, {len(events.keys())} branches, new: {', '.join(new)}")
    jets = events.arrays([b for b in new if b != f"n{name}"] + ["GenJet_pt"], library="ak")
    for i in range(min(3, len(jets))):
        reco = jets[i]
        print(f"  event {i}: {len(reco[f'{name}_pt'])} reco jets, pT [GeV] = "
              + ", ".join(f"{pt:.1f}" for pt in reco[f"{name}_pt"][:5])
              + "; gen jets pT = " + ", ".join(f"{pt:.1f}" for pt in reco["GenJet_pt"][:5]))
    idx = jets[f"{name}_genJetIdx"]
    matched = idx >= 0
    response = ak.to_numpy(ak.flatten(jets[f"{name}_pt"][matched] / jets["GenJet_pt"][idx[matched]]))
    if len(response):
        q16, q50, q84 = np.percentile(response, [16, 50, 84])
        print(f"  matched jets: {len(response)}; response reco pT / gen pT: median {q50:.3f}, "
              f"resolution (q84 - q16) / 2 = {(q84 - q16) / 2:.3f}")


if __name__ == "__main__":
    main()
