"""Jet energy corrections of the reference chain, derived from the reference itself.

Two factorised levels, as in CMS (arXiv:1607.03663):

- L1 (pileup offset): ``pT_L1 = pT_raw - kappa(eta) * rho * A``. ``kappa`` is measured
  by running the detector on the same hard events with and without the pileup overlay
  and taking, per |eta| bin, the median of (pT_PU - pT_noPU) / (rho A) of matched jets
  (the CMS "overlay" offset method). It is the fraction of rho that survives CHS.
- L2L3 (simulated response): ``pT_corr = pT_L1 * c(pT_L1, |eta|)`` with ``c`` = 1 / median
  response in bins of gen pT, placed at the median L1 pT of the bin and interpolated
  linearly in log pT (constant beyond the first and last nodes); one residual iteration.

The tables are shipped as ``hepfastsim/reference/data/jec_ak4.json`` and ``jec_ak8.json``
and are re-derived with::

    python -m hepfastsim.reference.jec --events 20000 --pileup 30 --workers 2

(``--save-pairs FILE`` keeps the matched jets; ``--from-pairs FILE`` refits without
generating).

Units: GeV.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import numpy as np

from hepfastsim.errors import HepfastsimError

__all__ = ["JetCorrection", "load_jec", "derive_from_pairs", "ETA_EDGES", "GEN_PT_EDGES"]

#: |eta| bins of the corrections (HF starts at 3.0; jets are stored to |eta| 5).
ETA_EDGES = (0.0, 0.5, 1.0, 1.5, 2.0, 2.5, 3.0, 3.5, 4.0, 4.5, 5.0)
#: gen pT bins (GeV) where the response is measured.
GEN_PT_EDGES = tuple(float(x) for x in np.round(np.geomspace(8.0, 4000.0, 28), 2))
_MIN_JETS = 25


@dataclass(frozen=True)
class JetCorrection:
    """L1 + L2L3 corrections of one jet collection (``ak4`` or ``ak8``)."""

    name: str
    eta_edges: tuple[float, ...]
    kappa: tuple[float, ...]  # per |eta| bin: offset per unit rho*A
    log_pt_nodes: tuple[tuple[float, ...], ...]  # per |eta| bin: ln(pT_L1 / GeV) nodes
    factors: tuple[tuple[float, ...], ...]  # per |eta| bin: L2L3 factor at the nodes
    provenance: str = ""

    def _bin(self, eta: np.ndarray) -> np.ndarray:
        edges = np.asarray(self.eta_edges)
        return np.clip(np.searchsorted(edges, np.abs(eta), side="right") - 1, 0, len(edges) - 2)

    def l1(self, pt_raw: np.ndarray, eta: np.ndarray, area: np.ndarray, rho: np.ndarray) -> np.ndarray:
        """L1-corrected pT (GeV), floored at 1% of the raw pT."""
        kappa = np.asarray(self.kappa)[self._bin(eta)]
        return np.maximum(pt_raw - kappa * rho * area, 0.01 * pt_raw)

    def l2l3(self, pt_l1: np.ndarray, eta: np.ndarray) -> np.ndarray:
        """L2L3 factor at L1-corrected pT (GeV) and eta."""
        b = self._bin(eta)
        out = np.ones(len(pt_l1))
        logpt = np.log(np.maximum(pt_l1, 1e-3))
        for k in range(len(self.eta_edges) - 1):
            sel = b == k
            if not sel.any() or not self.log_pt_nodes[k]:
                continue
            out[sel] = np.interp(logpt[sel], self.log_pt_nodes[k], self.factors[k])
        return out

    def factor(self, pt_raw: np.ndarray, eta: np.ndarray, area: np.ndarray, rho: np.ndarray) -> np.ndarray:
        """Total correction pT_corr / pT_raw for each jet (``rho`` per jet, GeV)."""
        pt_raw = np.asarray(pt_raw, dtype=np.float64)
        if len(pt_raw) == 0:
            return np.ones(0)
        pt_l1 = self.l1(pt_raw, eta, area, rho)
        return pt_l1 / np.maximum(pt_raw, 1e-12) * self.l2l3(pt_l1, eta)

    def to_json(self) -> dict:
        return {
            "name": self.name,
            "eta_edges": list(self.eta_edges),
            "kappa": list(self.kappa),
            "log_pt_nodes": [list(x) for x in self.log_pt_nodes],
            "factors": [list(x) for x in self.factors],
            "provenance": self.provenance,
        }

    @classmethod
    def from_json(cls, data: dict) -> JetCorrection:
        try:
            return cls(
                data["name"], tuple(data["eta_edges"]), tuple(data["kappa"]),
                tuple(tuple(x) for x in data["log_pt_nodes"]), tuple(tuple(x) for x in data["factors"]),
                data.get("provenance", ""),
            )
        except (KeyError, TypeError) as err:
            raise HepfastsimError(f"malformed jet-correction table: missing or bad field {err}") from err


def identity(name: str) -> JetCorrection:
    """No correction (used while deriving)."""
    n = len(ETA_EDGES) - 1
    return JetCorrection(name, ETA_EDGES, (0.0,) * n, ((),) * n, ((),) * n, "identity")


def load_jec(name: str) -> JetCorrection:
    """The shipped table ``jec_<name>.json`` (``name`` is ``ak4`` or ``ak8``)."""
    if name not in ("ak4", "ak8"):
        raise HepfastsimError(f"jet-correction set must be 'ak4' or 'ak8', got {name!r}")
    try:
        text = resources.files("hepfastsim.reference").joinpath("data", f"jec_{name}.json").read_text()
    except FileNotFoundError as err:
        raise HepfastsimError(
            f"no shipped jet-correction table jec_{name}.json; derive it with "
            "'python -m hepfastsim.reference.jec'"
        ) from err
    return JetCorrection.from_json(json.loads(text))


def _median_in_bins(x: np.ndarray, values: np.ndarray, edges: np.ndarray, min_n: int):
    idx = np.searchsorted(edges, x, side="right") - 1
    out = []
    for k in range(len(edges) - 1):
        sel = idx == k
        if sel.sum() >= min_n:
            out.append((k, sel))
    return out


def _smooth(x: np.ndarray, f: np.ndarray, n: np.ndarray) -> np.ndarray:
    """Weighted polynomial in ln pT through the node factors (degree 4 with >= 10 nodes)."""
    if len(x) < 3:
        return f
    deg = 4 if len(x) >= 10 else min(2, len(x) - 1)
    coef = np.polyfit(x, f, deg, w=np.sqrt(n))
    return np.polyval(coef, x)


def derive_from_pairs(name: str, pu: dict[str, np.ndarray], offset: dict[str, np.ndarray],
                      provenance: str = "") -> JetCorrection:
    """Fit the corrections.

    ``pu``: matched jets of the pileup run with keys ``pt_raw, eta, area, rho, pt_gen``.
    ``offset``: jets of the pileup run matched to the same jets without pileup, keys
    ``delta`` (pT_PU - pT_noPU), ``rho_area``, ``eta``, ``pt_nopu``.
    """
    edges = np.asarray(ETA_EDGES)
    n_eta = len(edges) - 1
    kappa = []
    for k in range(n_eta):
        sel = (np.abs(offset["eta"]) >= edges[k]) & (np.abs(offset["eta"]) < edges[k + 1])
        sel &= (offset["pt_nopu"] > 20.0) & (offset["rho_area"] > 0.5)
        if sel.sum() >= _MIN_JETS:
            kappa.append(float(np.median(offset["delta"][sel] / offset["rho_area"][sel])))
        else:
            kappa.append(kappa[-1] if kappa else 0.0)
    kappa = [max(0.0, x) for x in kappa]
    tmp = JetCorrection(name, ETA_EDGES, tuple(kappa), ((),) * n_eta, ((),) * n_eta)
    pt_l1 = tmp.l1(pu["pt_raw"], pu["eta"], pu["area"], pu["rho"])
    gen_edges = np.asarray(GEN_PT_EDGES)
    nodes: list[tuple[float, ...]] = []
    factors: list[tuple[float, ...]] = []
    for k in range(n_eta):
        sel_eta = (np.abs(pu["eta"]) >= edges[k]) & (np.abs(pu["eta"]) < edges[k + 1])
        x = pt_l1[sel_eta]
        g = pu["pt_gen"][sel_eta]
        xs, fs, ns = [], [], []
        for _, sel in _median_in_bins(g, x, gen_edges, _MIN_JETS):
            r = np.median(x[sel] / g[sel])
            if r <= 0.05:
                continue
            xs.append(float(np.log(np.median(x[sel]))))
            fs.append(float(1.0 / r))
            ns.append(int(sel.sum()))
        if xs:
            order = np.argsort(xs)
            xs_a = np.asarray(xs)[order]
            fs_a = _smooth(xs_a, np.asarray(fs)[order], np.asarray(ns)[order])
            # one residual iteration: apply, remeasure in gen-pT bins, fold back in, smooth
            corr = x * np.interp(np.log(np.maximum(x, 1e-3)), xs_a, fs_a)
            for _, sel in _median_in_bins(g, x, gen_edges, _MIN_JETS):
                r2 = np.median(corr[sel] / g[sel])
                node = np.log(np.median(x[sel]))
                j = int(np.argmin(np.abs(xs_a - node)))
                fs_a[j] /= r2
            fs_a = _smooth(xs_a, fs_a, np.asarray(ns)[order])
            nodes.append(tuple(float(v) for v in xs_a))
            factors.append(tuple(float(v) for v in fs_a))
        else:
            nodes.append(nodes[-1] if nodes else ())
            factors.append(factors[-1] if factors else ())
    return JetCorrection(name, ETA_EDGES, tuple(kappa), tuple(nodes), tuple(factors), provenance)


def main(argv: list[str] | None = None) -> int:
    """Re-derive the shipped tables (see the module docstring)."""
    from hepfastsim.reference.chain import derive_jec_tables

    parser = argparse.ArgumentParser(prog="python -m hepfastsim.reference.jec", description=__doc__.split("\n")[0])
    parser.add_argument("--events", type=int, default=30000)
    parser.add_argument("--pileup", type=float, default=30.0)
    parser.add_argument("--seed", type=int, default=424242)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--pthat-min", type=float, default=10.0)
    parser.add_argument("--cache-dir", default=None)
    parser.add_argument("--out-dir", default=str(Path(__file__).parent / "data"))
    parser.add_argument("--save-pairs", default=None, help="also save the matched jets (.npz) for refits")
    parser.add_argument("--from-pairs", default=None, help="refit from a --save-pairs file, no generation")
    args = parser.parse_args(argv)
    if args.from_pairs:
        from hepfastsim.reference.chain import tables_from_pairs

        with np.load(args.from_pairs) as data:
            prov = str(data["provenance"])
            tables = tables_from_pairs({k: data[k] for k in data.files if k != "provenance"}, prov)
    else:
        tables = derive_jec_tables(
            n_events=args.events, mu=args.pileup, seed=args.seed, workers=args.workers,
            pthat_min=args.pthat_min, cache_dir=args.cache_dir, save_pairs=args.save_pairs,
        )
    out = Path(args.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    for name, table in tables.items():
        (out / f"jec_{name}.json").write_text(json.dumps(table.to_json(), indent=1) + "\n")
        print(f"wrote {out / f'jec_{name}.json'}; kappa = {[round(k, 3) for k in table.kappa]}")
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
