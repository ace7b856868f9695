"""Response and resolution table of a reference file (the DESIGN's accuracy figures).

Response = reco pT / gen pT of ``Jet`` matched to ``GenJet`` (``Jet_genJetIdx``);
median and resolution (half the 16-84% interval) in bins of gen pT and gen |eta|.
Unweighted (the raw sample, biased or not).

    python -m hepfastsim.reference.validation FILE.root [--collection Jet]
"""

from __future__ import annotations

import argparse
import sys

import awkward as ak
import numpy as np

__all__ = ["PT_EDGES", "ETA_EDGES", "response_table", "format_table"]

PT_EDGES = (30.0, 50.0, 100.0, 200.0, 500.0, 1000.0, 3000.0)
ETA_EDGES = (0.0, 1.3, 2.5, 3.0, 4.7)


def response_table(gen_pt: np.ndarray, gen_eta: np.ndarray, response: np.ndarray,
                   pt_edges=PT_EDGES, eta_edges=ETA_EDGES, min_jets: int = 20) -> list[dict]:
    """One row per (pT bin, |eta| bin): n, median, resolution (NaN below ``min_jets``)."""
    rows = []
    aeta = np.abs(gen_eta)
    for i in range(len(pt_edges) - 1):
        for k in range(len(eta_edges) - 1):
            sel = (gen_pt >= pt_edges[i]) & (gen_pt < pt_edges[i + 1])
            sel &= (aeta >= eta_edges[k]) & (aeta < eta_edges[k + 1])
            n = int(sel.sum())
            if n >= min_jets:
                q16, q50, q84 = np.percentile(response[sel], [16, 50, 84])
                rows.append({"pt": (pt_edges[i], pt_edges[i + 1]), "eta": (eta_edges[k], eta_edges[k + 1]),
                             "n": n, "median": float(q50), "resolution": float(0.5 * (q84 - q16))})
            else:
                rows.append({"pt": (pt_edges[i], pt_edges[i + 1]), "eta": (eta_edges[k], eta_edges[k + 1]),
                             "n": n, "median": float("nan"), "resolution": float("nan")})
    return rows


def format_table(rows: list[dict], eta_edges=ETA_EDGES) -> str:
    """Markdown table: rows gen pT bins, columns |eta| bins, cells ``median / resolution (n)``."""
    etas = [(eta_edges[k], eta_edges[k + 1]) for k in range(len(eta_edges) - 1)]
    head = "| gen pT (GeV) | " + " | ".join(f"|eta| {a:g}-{b:g}" for a, b in etas) + " |"
    lines = [head, "|" + "---|" * (len(etas) + 1)]
    pts = sorted({r["pt"] for r in rows})
    for pt in pts:
        cells = []
        for eta in etas:
            r = next(x for x in rows if x["pt"] == pt and x["eta"] == eta)
            cells.append("-" if np.isnan(r["median"]) else f"{r['median']:.3f} / {r['resolution']:.3f} ({r['n']})")
        lines.append(f"| {pt[0]:g}-{pt[1]:g} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def matched_response(path: str, collection: str = "Jet", gen: str = "GenJet", idx: str = "genJetIdx",
                     max_events: int | None = None):
    """(gen pT, gen eta, response) of matched jets in a file written by ``hepfastsim generate``."""
    import uproot

    from hepfastsim.errors import BranchNotFoundError, InputFileError

    try:
        f = uproot.open(path)
    except (OSError, ValueError) as err:
        raise InputFileError(path, str(err)) from err
    with f:
        tree = f["Events"]
        names = [f"{collection}_pt", f"{collection}_{idx}", f"{gen}_pt", f"{gen}_eta"]
        for n in names:
            if n not in tree.keys():
                raise BranchNotFoundError(path, "Events", n, tree.keys())
        arrays = tree.arrays(names, entry_stop=max_events)
    reco_pt = arrays[f"{collection}_pt"]
    j = arrays[f"{collection}_{idx}"]
    ok = j >= 0
    g = j[ok]
    gpt = arrays[f"{gen}_pt"][g]
    geta = arrays[f"{gen}_eta"][g]
    r = reco_pt[ok] / gpt
    return (ak.to_numpy(ak.flatten(gpt)), ak.to_numpy(ak.flatten(geta)), ak.to_numpy(ak.flatten(r)))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m hepfastsim.reference.validation",
                                     description=__doc__.split("\n")[0])
    parser.add_argument("file")
    parser.add_argument("--collection", default="Jet", choices=["Jet", "FatJet"])
    parser.add_argument("--max-events", type=int, default=None)
    args = parser.parse_args(argv)
    gen, idx = ("GenJet", "genJetIdx") if args.collection == "Jet" else ("GenJetAK8", "genJetAK8Idx")
    gpt, geta, r = matched_response(args.file, args.collection, gen, idx, args.max_events)
    sel = gpt > 30
    print(f"{args.file}: {sel.sum()} matched {args.collection} with gen pT > 30 GeV; "
          f"median response {np.median(r[sel]):.4f}")
    print(format_table(response_table(gpt, geta, r)))
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
