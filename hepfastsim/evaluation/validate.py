"""Compare reco jet collections of candidate fast simulations with a reference, on the same gen events.

The usual inputs are a reference file (``Jet_*`` from the full/reference simulation) and
the output of ``hepfastsim convert REF.root OUT.root`` (which keeps ``Jet_*`` and adds
``FastJet_*``); the reference and candidate collections may come from one file or two, as
long as they hold the same events in the same order. With ``--oversample K`` outputs, the
W1 ratios and the classifier AUC use draw 0 (``FastSim_oversampleIdx == 0``: their floor and
event splits assume one draw per event), while the response medians and resolutions, the
efficiency and the unmatched multiplicity pool all K draws: each draw is an independent
simulation of the same events, so pooling removes (K - 1)/K of the candidate's sampling
variance from those figures and leaves the reference's own statistical error.

Criteria (issue 5): every W1 ratio <= 1.5; classifier AUC <= 0.55; response median within
1% and resolution within 5% (relative) of the reference in every gen pT x |eta| bin with
enough jets; efficiency and unmatched-jet multiplicity within 2%. A bin is judged when it holds
at least ``min_bin_jets`` reference jets. Each shift carries its statistical error (bootstrap of
both samples); a bin too small to resolve the tolerance (error above ``max_error_fraction`` of
it) fails only if its shift lies beyond the tolerance by more than twice the error, and is
reported as within errors otherwise.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import awkward as ak
import numpy as np

from hepfastsim.errors import HepfastsimError
from hepfastsim.evaluation.metrics import (
    DEFAULT_ETA_EDGES,
    DEFAULT_PT_EDGES,
    ResponseBin,
    W1Result,
    classifier_auc,
    efficiency_curve,
    mean_with_error,
    response_table,
    w1_ratio,
)
from hepfastsim.io.nanoaod import GENJET_KINEMATICS, PILEUP_BRANCH, RHO_BRANCHES, iterate_chunks, open_tree
from hepfastsim.io.schema import OVERSAMPLE_INDEX_BRANCH

__all__ = [
    "RECO_VARIABLES", "JetTable", "Criteria", "ValidationResult", "read_jets", "validate", "write_report",
    "summary_markdown", "make_plots", "record_in_metadata", "candidate_label_path",
]

def candidate_label_path(text: str) -> tuple[str, str]:
    """``(label, path)`` of a ``--candidate [LABEL=]FILE`` argument (an existing file whose
    name holds ``=`` is a path; without a label, the file's stem is the label)."""
    if "=" in text and not Path(text).exists():
        label, path = text.split("=", 1)
        return label, path
    return Path(text).stem, text


#: Reco variables compared when both collections have them.
RECO_VARIABLES: tuple[str, ...] = ("pt", "eta", "phi", "mass", "nConstituents", "area")
_VAR_LABELS = {
    "pt": ("jet $p_T$ [GeV]", True), "eta": (r"jet $\eta$", False), "phi": (r"jet $\phi$", False),
    "mass": ("jet mass [GeV]", True), "nConstituents": ("number of constituents", False), "area": ("jet area", False),
}


@dataclass
class JetTable:
    """One reco collection of one file with its gen jets, flattened (numpy, float64 unless stated)."""

    path: str
    collection: str
    n_events: int
    gen: dict[str, np.ndarray]  # pt, eta, phi, mass per gen jet; "event" (int64)
    reco: dict[str, np.ndarray]  # reco variables per reco jet; "event", "gen_row" (global gen row or -1)
    n_pu: np.ndarray
    rho: np.ndarray
    draw: np.ndarray  # per event (row): its --oversample draw index (0 without oversampling)
    n_draws: int = 1  # oversampled draws per event in the file (rows here: all of them, or draw 0 only)
    all_draws: bool = False  # True: the table holds every draw (n_events = n_draws x the file's events)

    def first_draw(self) -> JetTable:
        """The table of draw 0 only (``self`` if it holds no other draw), events renumbered."""
        if not self.all_draws:
            return self
        keep = self.draw == 0
        new_event = np.cumsum(keep) - 1
        g, r = keep[self.gen["event"]], keep[self.reco["event"]]
        new_gen_row = np.cumsum(g) - 1
        gen = {k: v[g] for k, v in self.gen.items()}
        reco = {k: v[r] for k, v in self.reco.items()}
        gen["event"], reco["event"] = new_event[gen["event"]], new_event[reco["event"]]
        reco["gen_row"] = np.where(reco["gen_row"] >= 0, new_gen_row[np.maximum(reco["gen_row"], 0)], -1)
        return replace(self, n_events=int(keep.sum()), gen=gen, reco=reco, n_pu=self.n_pu[keep], rho=self.rho[keep],
                       draw=self.draw[keep], all_draws=False)

    @property
    def variables(self) -> list[str]:
        return [v for v in RECO_VARIABLES if v in self.reco]

    @property
    def matched_gen(self) -> np.ndarray:
        """Per gen jet: has a reco jet pointing to it."""
        out = np.zeros(len(self.gen["pt"]), bool)
        out[self.reco["gen_row"][self.reco["gen_row"] >= 0]] = True
        return out

    @property
    def unmatched_per_event(self) -> np.ndarray:
        return np.bincount(self.reco["event"][self.reco["gen_row"] < 0], minlength=self.n_events)


def read_jets(
    path: str | os.PathLike[str], collection: str, *, tree: str = "Events", max_events: int | None = None,
    all_draws: bool = False,
) -> JetTable:
    """Read ``<collection>_*`` reco jets (with ``genJetIdx``) and the GenJets of ``path``.

    Of an ``--oversample`` output only draw 0 is read unless ``all_draws`` (then every row is
    an event; ``max_events`` still counts the file's events). ``n_draws`` is set either way."""
    source = open_tree(path, tree)
    present = set(source.branch_names)
    source.require([*GENJET_KINEMATICS, f"{collection}_pt", f"{collection}_genJetIdx"])
    reco_vars = [v for v in RECO_VARIABLES if f"{collection}_{v}" in present]
    rho_branch = source.first_present(RHO_BRANCHES)
    extra = [b for b in (PILEUP_BRANCH, rho_branch, OVERSAMPLE_INDEX_BRANCH) if b and b in present]
    branches = [*GENJET_KINEMATICS, *(f"{collection}_{v}" for v in reco_vars), f"{collection}_genJetIdx", *extra]
    stop = source.num_entries
    gen: dict[str, list[np.ndarray]] = {k: [] for k in ("pt", "eta", "phi", "mass", "event")}
    reco: dict[str, list[np.ndarray]] = {k: [] for k in (*reco_vars, "event", "gen_row")}
    n_pu, rho, draws = [], [], []
    n_events = 0
    n_gen_total = 0
    n_draws = 1
    for chunk in iterate_chunks(source, branches, step_size="100 MB", entry_stop=stop):
        a = chunk.arrays
        draw = ak.to_numpy(a[OVERSAMPLE_INDEX_BRANCH]).astype(np.int64) if OVERSAMPLE_INDEX_BRANCH in a else np.zeros(len(chunk), np.int64)
        n_draws = max(n_draws, int(draw.max()) + 1 if len(draw) else 1)
        if max_events is not None:  # max_events counts the file's events, not its rows
            n_take = max(0, min(len(draw), max_events * n_draws - n_events))
            a, draw = {k: v[:n_take] for k, v in a.items()}, draw[:n_take]
        n = len(draw)
        if n == 0:
            continue
        n_gen = ak.to_numpy(ak.num(a["GenJet_pt"], axis=1)).astype(np.int64)
        n_reco = ak.to_numpy(ak.num(a[f"{collection}_pt"], axis=1)).astype(np.int64)
        gen_off = np.concatenate([[0], np.cumsum(n_gen)])
        ev_gen = np.repeat(np.arange(n), n_gen)
        ev_reco = np.repeat(np.arange(n), n_reco)
        for f in ("pt", "eta", "phi", "mass"):
            gen[f].append(np.asarray(ak.to_numpy(ak.flatten(a[f"GenJet_{f}"])), np.float64))
        gen["event"].append(ev_gen + n_events)
        for v in reco_vars:
            reco[v].append(np.asarray(ak.to_numpy(ak.flatten(a[f"{collection}_{v}"])), np.float64))
        idx = np.asarray(ak.to_numpy(ak.flatten(a[f"{collection}_genJetIdx"])), np.int64)
        ok = (idx >= 0) & (idx < n_gen[ev_reco])
        reco["gen_row"].append(np.where(ok, n_gen_total + gen_off[ev_reco] + idx, -1))
        reco["event"].append(ev_reco + n_events)
        n_pu.append(np.asarray(ak.to_numpy(a[PILEUP_BRANCH]), np.float64) if PILEUP_BRANCH in a else np.zeros(n))
        rho.append(np.asarray(ak.to_numpy(a[rho_branch]), np.float64) if rho_branch in a else np.zeros(n))
        draws.append(draw)
        n_events += n
        n_gen_total += int(gen_off[-1])
        if max_events is not None and n_events >= max_events * n_draws:
            break
    cat = lambda parts, dt=np.float64: np.concatenate(parts).astype(dt) if parts else np.zeros(0, dt)  # noqa: E731
    table = JetTable(
        path=str(path),
        collection=collection,
        n_events=n_events,
        gen={k: cat(v, np.int64 if k == "event" else np.float64) for k, v in gen.items()},
        reco={k: cat(v, np.int64 if k in ("event", "gen_row") else np.float64) for k, v in reco.items()},
        n_pu=cat(n_pu),
        rho=cat(rho),
        draw=cat(draws, np.int64),
        n_draws=n_draws,
        all_draws=True,
    )
    return table if all_draws else table.first_draw()


@dataclass(frozen=True)
class Criteria:
    """Pass thresholds (issue 5)."""

    max_w1_ratio: float = 1.5
    max_auc: float = 0.55
    max_median_shift: float = 0.01
    max_resolution_shift: float = 0.05
    max_efficiency_shift: float = 0.02
    max_fake_shift: float = 0.02
    min_bin_jets: int = 500
    #: a response bin whose shift has a statistical error above this fraction of the tolerance
    #: cannot resolve it, and fails only if the shift exceeds the tolerance by > 2 errors
    max_error_fraction: float = 0.5


@dataclass
class CandidateResult:
    label: str
    path: str
    collection: str
    w1: dict[str, W1Result]
    auc: tuple[float, float]
    auc_features: list[str]
    auc_kinematic: tuple[float, float]  # on (pt, eta, phi, mass) only, comparable between models
    response: list[ResponseBin]
    efficiency: tuple[float, float]
    unmatched_per_event: tuple[float, float]
    median_shift: list[float] = field(default_factory=list)  # per bin, cand/ref - 1 (NaN if too few jets)
    resolution_shift: list[float] = field(default_factory=list)
    median_shift_error: list[float] = field(default_factory=list)  # per bin, statistical error of the shift
    resolution_shift_error: list[float] = field(default_factory=list)
    pooled_draws: int = 1  # draws pooled for the response, efficiency and unmatched multiplicity


@dataclass
class ValidationResult:
    reference_label: str
    reference_path: str
    reference_collection: str
    n_events: int
    pt_edges: tuple[float, ...]
    eta_edges: tuple[float, ...]
    reference_response: list[ResponseBin]
    reference_efficiency: tuple[float, float]
    reference_unmatched_per_event: tuple[float, float]
    candidates: dict[str, CandidateResult]
    criteria: Criteria
    plots: list[str] = field(default_factory=list)

    def checks(self, label: str) -> dict[str, tuple[float, bool]]:
        """Worst value of each criterion for candidate ``label`` and whether it passes."""
        c, k = self.candidates[label], self.criteria
        out: dict[str, tuple[float, bool]] = {}
        w1 = [r.value for r in c.w1.values() if np.isfinite(r.value)]
        out["max W1 ratio"] = (max(w1) if w1 else float("nan"), bool(w1) and max(w1) <= k.max_w1_ratio)
        out["AUC"] = (c.auc[0], c.auc[0] <= k.max_auc)
        med = np.abs(self.judged_shifts(label, "median")[0])
        res = np.abs(self.judged_shifts(label, "resolution")[0])
        out["max |median shift|"] = (float(med.max()) if len(med) else float("nan"),
                                     bool(len(med)) and float(med.max()) <= k.max_median_shift)
        out["max |resolution shift|"] = (float(res.max()) if len(res) else float("nan"),
                                         bool(len(res)) and float(res.max()) <= k.max_resolution_shift)
        eff = c.efficiency[0] / self.reference_efficiency[0] - 1
        out["efficiency shift"] = (eff, abs(eff) <= k.max_efficiency_shift)
        fake = c.unmatched_per_event[0] / self.reference_unmatched_per_event[0] - 1 if self.reference_unmatched_per_event[0] > 0 else float("nan")
        out["unmatched multiplicity shift"] = (fake, bool(np.isfinite(fake)) and abs(fake) <= k.max_fake_shift)
        return out

    def within_errors(self, label: str, kind: str) -> np.ndarray:
        """Per bin, whether the shift of ``kind`` ("median" or "resolution") of candidate
        ``label`` exceeds the tolerance only within its statistical error: the error is above
        max_error_fraction x tolerance and the excess is below twice the error."""
        c, k = self.candidates[label], self.criteria
        shift = np.abs(np.asarray(getattr(c, f"{kind}_shift"), np.float64))
        error = np.asarray(getattr(c, f"{kind}_shift_error"), np.float64)
        limit = k.max_median_shift if kind == "median" else k.max_resolution_shift
        with np.errstate(invalid="ignore"):
            return (shift > limit) & (error > k.max_error_fraction * limit) & (shift - limit <= 2 * error)

    def judged_shifts(self, label: str, kind: str) -> tuple[np.ndarray, int]:
        """Shifts of ``kind`` of candidate ``label`` in the bins with enough jets, less those
        beyond the tolerance within errors (see :meth:`within_errors`), and how many those were."""
        shift = np.asarray(getattr(self.candidates[label], f"{kind}_shift"), np.float64)
        excused = self.within_errors(label, kind)
        return shift[np.isfinite(shift) & ~excused], int(excused.sum())

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["checks"] = {label: self.checks(label) for label in self.candidates}
        return d


def _auc_rows(table: JetTable, variables: Sequence[str]) -> tuple[np.ndarray, np.ndarray, list[str]]:
    m = table.reco["gen_row"] >= 0
    rows = table.reco["gen_row"][m]
    g = {f: table.gen[f][rows] for f in ("pt", "eta", "phi", "mass")}
    r = {v: table.reco[v][m] for v in variables}
    cols = [np.log(g["pt"]), g["eta"], g["phi"], np.log1p(np.maximum(g["mass"], 0))]
    names = ["gen_log_pt", "gen_eta", "gen_phi", "gen_log1p_mass"]
    for v in variables:
        x = r[v]
        if v == "pt":
            cols += [np.log(np.maximum(x, 1e-3)), x / g["pt"]]
            names += ["log_pt", "response"]
        elif v == "eta":
            cols += [x, x - g["eta"]]
            names += ["eta", "deta"]
        elif v == "phi":
            cols += [x, np.mod(x - g["phi"] + np.pi, 2 * np.pi) - np.pi]
            names += ["phi", "dphi"]
        elif v == "mass":
            cols += [np.log1p(np.maximum(x, 0)), np.log1p(np.maximum(x, 0)) - np.log1p(np.maximum(g["mass"], 0))]
            names += ["log1p_mass", "dlog1p_mass"]
        else:
            cols.append(x)
            names.append(v)
    return np.column_stack(cols), table.reco["event"][m], names


def _response(table: JetTable, pt_edges: Sequence[float], eta_edges: Sequence[float]) -> list[ResponseBin]:
    m = table.reco["gen_row"] >= 0
    rows = table.reco["gen_row"][m]
    return response_table(table.gen["pt"][rows], table.gen["eta"][rows], table.reco["pt"][m], pt_edges, eta_edges)


def _check_same_events(ref: JetTable, cand: JetTable) -> None:
    if ref.n_events != cand.n_events or len(ref.gen["pt"]) != len(cand.gen["pt"]) or not np.allclose(
        ref.gen["pt"], cand.gen["pt"], rtol=1e-6, equal_nan=True
    ):
        raise HepfastsimError(
            f"{cand.path!r} ({cand.n_events} events, {len(cand.gen['pt'])} gen jets) does not hold the same gen events "
            f"as the reference {ref.path!r} ({ref.n_events} events, {len(ref.gen['pt'])} gen jets); "
            "validate compares fast simulations of the reference's own gen events"
        )


def _check_pooled(ref: JetTable, pooled: JetTable) -> JetTable:
    """``pooled`` (all draws of a candidate) must hold each of the reference's events n_draws times."""
    k = pooled.n_draws
    if not pooled.all_draws or pooled.n_events != k * ref.n_events or len(pooled.gen["pt"]) != k * len(ref.gen["pt"]):
        raise HepfastsimError(
            f"{pooled.path!r}: expected {k} draws of each of the reference's {ref.n_events} events, "
            f"got {pooled.n_events} rows ({len(pooled.gen['pt'])} gen jets)"
        )
    return pooled


def validate(
    reference: JetTable,
    candidates: Mapping[str, JetTable],
    *,
    pt_edges: Sequence[float] = DEFAULT_PT_EDGES,
    eta_edges: Sequence[float] = DEFAULT_ETA_EDGES,
    criteria: Criteria = Criteria(),
    reference_label: str = "reference",
    seed: int = 0,
    threads: int | None = None,
    pooled: Mapping[str, JetTable] | None = None,
) -> ValidationResult:
    """All metrics of every candidate against the reference (see the module docstring);
    ``threads`` limits the classifier's threads (None: library default). ``pooled[label]``:
    the same candidate read with ``all_draws=True`` (an ``--oversample`` output), used for the
    response, efficiency and unmatched multiplicity."""
    if reference.n_events == 0:
        raise HepfastsimError(f"reference {reference.path!r} has no events")
    ref_resp = _response(reference, pt_edges, eta_edges)
    ref_eff = mean_with_error(reference.matched_gen.astype(np.float64))
    ref_fake = mean_with_error(reference.unmatched_per_event)
    results: dict[str, CandidateResult] = {}
    for label, cand in candidates.items():
        _check_same_events(reference, cand)
        variables = [v for v in reference.variables if v in cand.variables]
        w1 = {
            v: w1_ratio(reference.reco[v], cand.reco[v], reference.reco["event"], cand.reco["event"], seed=seed)
            for v in variables
        }
        xr, er, names = _auc_rows(reference, variables)
        xc, ec, _ = _auc_rows(cand, variables)
        auc = classifier_auc(xr, xc, er, ec, seed=seed, threads=threads)
        kin = [v for v in ("pt", "eta", "phi", "mass") if v in variables]
        xr4, er4, _ = _auc_rows(reference, kin)
        xc4, ec4, _ = _auc_rows(cand, kin)
        auc4 = classifier_auc(xr4, xc4, er4, ec4, seed=seed, threads=threads) if kin != variables else auc
        pool = _check_pooled(reference, pooled[label]) if pooled and label in pooled else cand
        resp = _response(pool, pt_edges, eta_edges)
        med_shift, res_shift, med_err, res_err = [], [], [], []
        for rb, cb in zip(ref_resp, resp):
            enough = rb.n >= criteria.min_bin_jets and cb.n >= 2
            for shifts, errors, value, error, ref_value, ref_error in (
                (med_shift, med_err, cb.median, cb.median_error, rb.median, rb.median_error),
                (res_shift, res_err, cb.resolution, cb.resolution_error, rb.resolution, rb.resolution_error),
            ):
                ratio = value / ref_value if enough else float("nan")
                shifts.append(ratio - 1)
                # statistical error of the ratio, from the bootstrap errors of both samples
                errors.append(ratio * float(np.hypot(error / value, ref_error / ref_value)) if enough else float("nan"))
        results[label] = CandidateResult(
            label=label, path=cand.path, collection=cand.collection, w1=w1, auc=auc, auc_features=names,
            auc_kinematic=auc4, response=resp,
            efficiency=mean_with_error(pool.matched_gen.astype(np.float64)),
            unmatched_per_event=mean_with_error(pool.unmatched_per_event),
            median_shift=med_shift, resolution_shift=res_shift, median_shift_error=med_err,
            resolution_shift_error=res_err, pooled_draws=pool.n_draws if pool.all_draws else 1,
        )
    return ValidationResult(
        reference_label=reference_label, reference_path=reference.path, reference_collection=reference.collection,
        n_events=reference.n_events, pt_edges=tuple(pt_edges), eta_edges=tuple(eta_edges),
        reference_response=ref_resp, reference_efficiency=ref_eff, reference_unmatched_per_event=ref_fake,
        candidates=results, criteria=criteria,
    )


# --------------------------------------------------------------------------- report


def _fmt(v: float, e: float | None = None, digits: int = 3) -> str:
    if not np.isfinite(v):
        return "n/a"
    return f"{v:.{digits}f} ± {e:.{digits}f}" if e is not None and np.isfinite(e) else f"{v:.{digits}f}"


def summary_markdown(result: ValidationResult) -> str:
    """The summary table (markdown): one column per candidate, then the per-bin response table."""
    labels = list(result.candidates)
    k = result.criteria
    head = "| metric | criterion | " + " | ".join(labels) + " |\n|---|---|" + "---|" * len(labels) + "\n"
    rows = []
    all_vars = [v for v in RECO_VARIABLES if any(v in c.w1 for c in result.candidates.values())]
    for v in all_vars:
        cells = [_fmt(c.w1[v].value, c.w1[v].error, 2) if v in c.w1 else "n/a" for c in result.candidates.values()]
        rows.append(f"| W1 ratio {v} | <= {k.max_w1_ratio} | " + " | ".join(cells) + " |")
    rows.append(f"| classifier AUC (all common reco variables) | <= {k.max_auc} | "
                + " | ".join(_fmt(*c.auc) for c in result.candidates.values()) + " |")
    rows.append(f"| classifier AUC (pt, eta, phi, mass) | <= {k.max_auc} | "
                + " | ".join(_fmt(*c.auc_kinematic) for c in result.candidates.values()) + " |")
    for name, limit in (("median", k.max_median_shift), ("resolution", k.max_resolution_shift)):
        cells = []
        for label in labels:
            vals, excused = result.judged_shifts(label, name)
            vals = np.abs(vals)
            cells.append((f"{np.max(vals):.4f} ({np.sum(vals <= limit)}/{len(vals)} bins pass" if len(vals) else "n/a (")
                         + (f"; {excused} more beyond it within errors" if excused else "") + ")")
        rows.append(f"| max abs. rel. {name} shift (bins >= {k.min_bin_jets} jets) | <= {limit} | " + " | ".join(cells) + " |")
    rows.append(f"| efficiency (ref. {_fmt(*result.reference_efficiency, 4)}) | rel. shift <= {k.max_efficiency_shift} | "
                + " | ".join(f"{_fmt(*c.efficiency, 4)} ({c.efficiency[0] / result.reference_efficiency[0] - 1:+.4f})"
                             for c in result.candidates.values()) + " |")
    rf = result.reference_unmatched_per_event
    rows.append(f"| unmatched jets / event (ref. {_fmt(*rf)}) | rel. shift <= {k.max_fake_shift} | "
                + " | ".join(f"{_fmt(*c.unmatched_per_event)} ({(c.unmatched_per_event[0] / rf[0] - 1) if rf[0] > 0 else float('nan'):+.4f})"
                             for c in result.candidates.values()) + " |")
    passes = []
    for label in labels:
        checks = result.checks(label)
        passes.append("all pass" if all(ok for _, ok in checks.values()) else "fails: " + ", ".join(n for n, (_, ok) in checks.items() if not ok))
    rows.append("| **verdict** | | " + " | ".join(passes) + " |")
    table = head + "\n".join(rows) + "\n"

    # per-bin response table
    bins = ("\nShifts are candidate / reference - 1, ± their statistical error (bootstrap of both samples); "
            "\"within errors\": beyond the tolerance by less than twice an error that exceeds "
            f"{k.max_error_fraction:g} x the tolerance, so not counted as failing.\n"
            "\n| gen pT [GeV] | abs(eta) | n ref | median ref | res. ref | ") + " | ".join(
        f"median {l} (shift) | res. {l} (shift)" for l in labels) + " |\n|---|---|---|---|---|" + "---|---|" * len(labels) + "\n"
    for i, rb in enumerate(result.reference_response):
        if rb.n < 2:
            continue
        cells = []
        for label, c in result.candidates.items():
            cb = c.response[i]
            for kind, value, shift, stat in (
                ("median", cb.median, c.median_shift[i], c.median_shift_error[i]),
                ("resolution", cb.resolution, c.resolution_shift[i], c.resolution_shift_error[i]),
            ):
                if not np.isfinite(shift):
                    cells.append(f"{value:.4f} (few jets)")
                    continue
                excused = ", within errors" if result.within_errors(label, kind)[i] else ""
                cells.append(f"{value:.4f} ({shift:+.4f} ± {stat:.4f}{excused})")
        bins += (f"| {rb.pt_low:g}-{rb.pt_high:g} | {rb.eta_low:g}-{rb.eta_high:g} | {rb.n} | {rb.median:.4f} | "
                 f"{rb.resolution:.4f} | " + " | ".join(cells) + " |\n")
    header = (f"Reference: `{result.reference_path}` ({result.reference_collection}), {result.n_events:,} events; "
              + "; ".join(f"{l}: `{c.path}` ({c.collection}"
                          + (f"; {c.pooled_draws} draws pooled for response, efficiency and unmatched jets, "
                             "draw 0 for W1 and AUC" if c.pooled_draws > 1 else "") + ")"
                          for l, c in result.candidates.items()) + "\n\n")
    return header + table + bins


def make_plots(result: ValidationResult, reference: JetTable, candidates: Mapping[str, JetTable], out_dir: Path) -> list[str]:
    """PNG figures of distributions, response, efficiency and unmatched jets."""
    from hepfastsim.evaluation import plots

    out_dir.mkdir(parents=True, exist_ok=True)
    paths: list[Path] = []
    edges = {
        "pt": np.geomspace(15, max(3000.0, float(np.percentile(reference.reco["pt"], 99.9)) if len(reference.reco["pt"]) else 3000.0), 41),
        "eta": np.linspace(-5, 5, 51), "phi": np.linspace(-np.pi, np.pi, 33), "mass": np.geomspace(0.5, 500, 41),
        "nConstituents": np.arange(0.5, 100.5, 2.0), "area": np.linspace(0, 1.0, 51),
    }
    for v in reference.variables:
        cands = {l: t.reco[v] for l, t in candidates.items() if v in t.reco}
        label, logy = _VAR_LABELS[v]
        paths.append(plots.plot_distribution(out_dir / f"dist_{v}.png", v, reference.reco[v], cands, edges[v],
                                             xlabel=label, logy=logy, logx=v in ("pt", "mass"),
                                             reference_label=result.reference_label))
    pe = np.asarray(result.pt_edges)
    n_pt = len(pe) - 1
    for j, (e0, e1) in enumerate(zip(result.eta_edges[:-1], result.eta_edges[1:])):
        sl = slice(j * n_pt, (j + 1) * n_pt)

        def series(bins: list[ResponseBin]) -> dict[str, tuple[np.ndarray, np.ndarray]]:
            return {"median": (np.array([b.median for b in bins]), np.array([b.median_error for b in bins])),
                    "resolution": (np.array([b.resolution for b in bins]), np.array([b.resolution_error for b in bins]))}

        paths.append(plots.plot_response(
            out_dir / f"response_eta{j}.png", pe, series(result.reference_response[sl]),
            {l: series(c.response[sl]) for l, c in result.candidates.items()},
            eta_label=f"{e0:g} < |η| < {e1:g}", reference_label=result.reference_label))
    eff_edges = np.array([10, 15, 20, 25, 30, 40, 50, 70, 100, 150, 200, 300, 500, 1000, 3000], np.float64)
    curve = lambda t: efficiency_curve(t.gen["pt"], t.matched_gen, eff_edges)[:2]  # noqa: E731
    paths.append(plots.plot_curve(out_dir / "efficiency_pt.png", eff_edges, curve(reference),
                                  {l: curve(t) for l, t in candidates.items()}, xlabel="gen jet $p_T$ [GeV]",
                                  ylabel="matching efficiency", logx=True, reference_label=result.reference_label))
    eta_e = np.linspace(-5, 5, 21)
    curve_eta = lambda t: efficiency_curve(t.gen["eta"], t.matched_gen, eta_e)[:2]  # noqa: E731
    paths.append(plots.plot_curve(out_dir / "efficiency_eta.png", eta_e, curve_eta(reference),
                                  {l: curve_eta(t) for l, t in candidates.items()}, xlabel=r"gen jet $\eta$",
                                  ylabel="matching efficiency", reference_label=result.reference_label))
    npu_edges = np.unique(np.percentile(reference.n_pu, np.linspace(0, 100, 11))) if reference.n_events else np.array([0.0, 1.0])
    if len(npu_edges) < 2:
        npu_edges = np.array([npu_edges[0] - 0.5, npu_edges[0] + 0.5])
    npu_edges[-1] += 1e-6

    def fakes(t: JetTable) -> tuple[np.ndarray, np.ndarray]:
        b = np.clip(np.searchsorted(npu_edges, t.n_pu, side="right") - 1, 0, len(npu_edges) - 2)
        u = t.unmatched_per_event
        n = np.bincount(b, minlength=len(npu_edges) - 1).astype(np.float64)
        s = np.bincount(b, weights=u, minlength=len(npu_edges) - 1)
        s2 = np.bincount(b, weights=u * u, minlength=len(npu_edges) - 1)
        with np.errstate(invalid="ignore", divide="ignore"):
            mean = s / n
            return mean, np.sqrt(np.maximum(s2 / n - mean**2, 0) / n)

    paths.append(plots.plot_curve(out_dir / "unmatched_vs_npu.png", npu_edges, fakes(reference),
                                  {l: fakes(t) for l, t in candidates.items()}, xlabel="number of pileup interactions",
                                  ylabel="unmatched reco jets / event", reference_label=result.reference_label,
                                  ratio_range=(0.0, 2.0)))
    return [str(p) for p in paths]


def write_report(result: ValidationResult, out_dir: str | os.PathLike[str]) -> tuple[Path, Path]:
    """Write ``summary.md`` and ``summary.json`` into ``out_dir``."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    md, js = out / "summary.md", out / "summary.json"
    md.write_text(summary_markdown(result))
    js.write_text(json.dumps(result.to_dict(), indent=1, default=lambda o: o.item() if isinstance(o, np.generic) else str(o)) + "\n")
    return md, js


def compact_summary(result: ValidationResult) -> dict[str, Any]:
    """The headline figures of every candidate (for model metadata)."""
    out: dict[str, Any] = {"reference": result.reference_path, "events": result.n_events,
                           "reference_efficiency": result.reference_efficiency[0],
                           "reference_unmatched_per_event": result.reference_unmatched_per_event[0]}
    for label, c in result.candidates.items():
        out[label] = {
            "w1_ratio": {v: round(r.value, 3) for v, r in c.w1.items()},
            "auc": round(c.auc[0], 4),
            "auc_pt_eta_phi_mass": round(c.auc_kinematic[0], 4),
            "checks": {k: [float(v), bool(ok)] for k, (v, ok) in result.checks(label).items()},
            # response bins beyond the tolerance within their statistical errors (not failing)
            "bins_within_errors": {kind: result.judged_shifts(label, kind)[1] for kind in ("median", "resolution")},
        }
    return out


def record_in_metadata(result: ValidationResult, model: str | os.PathLike[str], name: str) -> Path:
    """Add :func:`compact_summary` under ``validation[name]`` of a kinematics model's JSON metadata."""
    from hepfastsim.models.weights_file import record_validation

    return record_validation(model, name, compact_summary(result))
