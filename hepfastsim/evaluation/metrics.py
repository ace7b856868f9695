"""Accuracy metrics shared by every model (see DESIGN.md, "How accuracy is measured").

All functions take numpy arrays and return plain numbers or ``(value, error)`` pairs.

* :func:`w1_ratio` -- Wasserstein-1 distance of a reco variable between reference and
  candidate, as a ratio to the statistical floor. Events are split at random into halves A
  and B; the ratio is ``W1(ref_A, cand_B) / W1(ref_A, ref_B)`` (and A <-> B), averaged over
  splits, so numerator and floor compare samples of independent gen events of the same
  size: 1 is perfect, whatever the sample size.
* :func:`classifier_auc` -- classifier two-sample test (Friedman 2003; Lopez-Paz & Oquab,
  arXiv:1610.06545): gradient-boosted trees trained to tell reference from candidate reco
  jets given their gen jets, ROC AUC on held-out events (0.5 is perfect), with the
  Hanley-McNeil (1982) error.
* :func:`response_table` -- median and resolution (half the 16-84% interval) of reco/gen pT
  in bins of gen pT x |eta|, with bootstrap errors.
* :func:`efficiency_curve`, :func:`mean_with_error` -- efficiency and fake multiplicity.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

__all__ = [
    "W1Result",
    "wasserstein1",
    "w1_ratio",
    "classifier_auc",
    "auc_error",
    "ResponseBin",
    "response_table",
    "efficiency_curve",
    "mean_with_error",
    "DEFAULT_PT_EDGES",
    "DEFAULT_ETA_EDGES",
]

#: Gen pT (GeV) and |eta| bin edges of the response tables.
DEFAULT_PT_EDGES: tuple[float, ...] = (20.0, 30.0, 50.0, 100.0, 200.0, 500.0, 1000.0, 3000.0)
DEFAULT_ETA_EDGES: tuple[float, ...] = (0.0, 1.3, 2.5, 3.0, 5.0)


def wasserstein1(a: np.ndarray, b: np.ndarray) -> float:
    """W1 distance between the empirical distributions of ``a`` and ``b`` (same units)."""
    from scipy.stats import wasserstein_distance

    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    if len(a) == 0 or len(b) == 0:
        return float("nan")
    return float(wasserstein_distance(a, b))


@dataclass(frozen=True)
class W1Result:
    """W1 ratio to the floor (``value`` +- ``error``), and the mean W1 and floor themselves."""

    value: float
    error: float
    w1: float
    floor: float


_SPLIT_DOMAIN = 901  # random stream of the event halves of w1_ratio


def w1_ratio(
    ref: np.ndarray,
    cand: np.ndarray,
    ref_event: np.ndarray,
    cand_event: np.ndarray,
    n_splits: int = 8,
    seed: int = 0,
) -> W1Result:
    """W1 ratio to the statistical floor (module docstring); ``*_event`` are the event ids of
    each entry (the reference and the candidate share gen events)."""
    ref, cand = np.asarray(ref, np.float64), np.asarray(cand, np.float64)
    ref_event, cand_event = np.asarray(ref_event), np.asarray(cand_event)
    if len(ref) != len(ref_event) or len(cand) != len(cand_event):
        raise ValueError(f"expected one event id per entry, got {len(ref)}/{len(ref_event)} and {len(cand)}/{len(cand_event)}")
    from hepfastsim.kernels.rng import event_keys, uniforms

    # the halves are sets of events, drawn among every event of either side (an event with
    # candidate entries but no reference entry still belongs to exactly one half); each
    # event's half comes from its id alone, so every candidate compared with one reference
    # meets the same halves, and the same floor
    events = np.union1d(ref_event, cand_event).astype(np.int64)
    halves = uniforms(event_keys(seed, 0, events), np.arange(len(events) + 1), n_splits, domain=_SPLIT_DOMAIN) < 0.5
    ref_pos, cand_pos = np.searchsorted(events, ref_event), np.searchsorted(events, cand_event)
    nums, floors, ratios = [], [], []
    for split in range(n_splits):
        in_a, cand_in_a = halves[ref_pos, split], halves[cand_pos, split]
        floor = wasserstein1(ref[in_a], ref[~in_a])
        num = 0.5 * (wasserstein1(ref[in_a], cand[~cand_in_a]) + wasserstein1(ref[~in_a], cand[cand_in_a]))
        nums.append(num)
        floors.append(floor)
        ratios.append(num / floor if floor > 0 else np.nan)
    ratios_arr = np.asarray(ratios)
    value = float(np.mean(nums) / np.mean(floors)) if np.mean(floors) > 0 else float("nan")
    error = float(np.nanstd(ratios_arr, ddof=1) / np.sqrt(n_splits)) if n_splits > 1 else float("nan")
    return W1Result(value, error, float(np.mean(nums)), float(np.mean(floors)))


def auc_error(auc: float, n_pos: int, n_neg: int) -> float:
    """Standard error of a ROC AUC (Hanley & McNeil, Radiology 143 (1982) 29, eq. 2)."""
    q1, q2 = auc / (2 - auc), 2 * auc * auc / (1 + auc)
    var = (auc * (1 - auc) + (n_pos - 1) * (q1 - auc**2) + (n_neg - 1) * (q2 - auc**2)) / (n_pos * n_neg)
    return float(np.sqrt(max(var, 0.0)))


def classifier_auc(
    x_ref: np.ndarray,
    x_cand: np.ndarray,
    ref_event: np.ndarray,
    cand_event: np.ndarray,
    *,
    max_rows: int = 200_000,
    seed: int = 0,
    threads: int | None = None,
) -> tuple[float, float]:
    """ROC AUC (and error) of a classifier telling candidate rows from reference rows.

    ``x_*`` are (n, n_features) rows of [gen features, reco features] (the gen features make
    it a test of the conditional distribution). Train and test sets are split by event (half
    each), so the same gen jet is never in both. At most ``max_rows`` rows per class are used.
    ``threads`` limits the OpenMP threads of the classifier (None: the library default).
    """
    from contextlib import nullcontext

    from threadpoolctl import threadpool_limits

    from sklearn.ensemble import HistGradientBoostingClassifier
    from sklearn.metrics import roc_auc_score

    x_ref, x_cand = np.asarray(x_ref, np.float64), np.asarray(x_cand, np.float64)
    if x_ref.ndim != 2 or x_cand.ndim != 2 or x_ref.shape[1] != x_cand.shape[1]:
        raise ValueError(f"expected two (n, f) arrays with the same f, got {x_ref.shape} and {x_cand.shape}")
    rng = np.random.default_rng(seed)
    events = np.union1d(np.unique(ref_event), np.unique(cand_event))
    test_events = events[rng.random(len(events)) < 0.5]

    def take(x: np.ndarray, ev: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        if len(x) > max_rows:
            keep = np.sort(rng.choice(len(x), max_rows, replace=False))
            x, ev = x[keep], ev[keep]
        return x, np.isin(ev, test_events)

    xr, tr = take(x_ref, np.asarray(ref_event))
    xc, tc = take(x_cand, np.asarray(cand_event))
    x = np.concatenate([xr, xc])
    y = np.concatenate([np.zeros(len(xr)), np.ones(len(xc))])
    test = np.concatenate([tr, tc])
    clf = HistGradientBoostingClassifier(max_iter=200, learning_rate=0.1, max_leaf_nodes=31,
                                         early_stopping=True, validation_fraction=0.15, random_state=seed)
    with threadpool_limits(threads) if threads is not None else nullcontext():
        clf.fit(x[~test], y[~test])
        score = clf.predict_proba(x[test])[:, 1]
    auc = float(roc_auc_score(y[test], score))
    return auc, auc_error(auc, int(y[test].sum()), int((1 - y[test]).sum()))


@dataclass(frozen=True)
class ResponseBin:
    """Response of one gen pT x |eta| bin: median and resolution (half 16-84%) with errors."""

    pt_low: float
    pt_high: float
    eta_low: float
    eta_high: float
    n: int
    median: float
    median_error: float
    resolution: float
    resolution_error: float


def median_resolution(r: np.ndarray) -> tuple[float, float]:
    """Median and resolution (half the 16-84% interval) of a response ``r``."""
    q16, q50, q84 = np.percentile(r, [16, 50, 84])
    return float(q50), float((q84 - q16) / 2)


def response_table(
    gen_pt: np.ndarray,
    gen_eta: np.ndarray,
    reco_pt: np.ndarray,
    pt_edges: Sequence[float] = DEFAULT_PT_EDGES,
    eta_edges: Sequence[float] = DEFAULT_ETA_EDGES,
    n_bootstrap: int = 30,
    seed: int = 0,
) -> list[ResponseBin]:
    """Median and resolution of reco pT / gen pT of matched jets in bins of gen pT x |eta|
    (row-major: |eta| outer, pT inner); bootstrap errors. Empty bins have n = 0 and NaNs."""
    rng = np.random.default_rng(seed)
    gen_pt, gen_eta, reco_pt = (np.asarray(a, np.float64) for a in (gen_pt, gen_eta, reco_pt))
    response = reco_pt / gen_pt
    abs_eta = np.abs(gen_eta)
    out = []
    for e0, e1 in zip(eta_edges[:-1], eta_edges[1:]):
        for p0, p1 in zip(pt_edges[:-1], pt_edges[1:]):
            r = response[(abs_eta >= e0) & (abs_eta < e1) & (gen_pt >= p0) & (gen_pt < p1)]
            if len(r) < 2:
                out.append(ResponseBin(p0, p1, e0, e1, len(r), *(float("nan"),) * 4))
                continue
            med, res = median_resolution(r)
            boots = np.array([median_resolution(r[rng.integers(0, len(r), len(r))]) for _ in range(n_bootstrap)])
            out.append(ResponseBin(p0, p1, e0, e1, len(r), med, float(boots[:, 0].std()), res, float(boots[:, 1].std())))
    return out


def efficiency_curve(
    x: np.ndarray, passed: np.ndarray, edges: Sequence[float]
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Fraction of entries with ``passed`` in bins of ``x``: (efficiency, binomial error, counts)."""
    x, passed = np.asarray(x, np.float64), np.asarray(passed, bool)
    total = np.histogram(x, bins=edges)[0].astype(np.float64)
    good = np.histogram(x[passed], bins=edges)[0].astype(np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        eff = good / total
        err = np.sqrt(eff * (1 - eff) / total)
    return eff, err, total


def mean_with_error(x: np.ndarray) -> tuple[float, float]:
    """Mean and its standard error."""
    x = np.asarray(x, np.float64)
    if len(x) == 0:
        return float("nan"), float("nan")
    return float(x.mean()), float(x.std(ddof=1) / np.sqrt(len(x))) if len(x) > 1 else float("nan")
