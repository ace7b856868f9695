"""Scores of generated jet images (seed 004, arXiv:1701.05927, Sec. 5.1 and 5.6).

* :func:`lagan_observables`: ``m(I)`` (GeV), ``pT(I)`` (GeV) and ``tau21(I)`` (one-pass
  WTA kT axes, as the seed) of each image, via
  :func:`hepfastsim.jets.observables.image_observables` (pixels as massless particles).
* :func:`emd_2d`: the exact Earth Mover's Distance between two histograms on a grid,
  ground distance = Euclidean distance between bin indices, solved as the transport
  linear program with :func:`scipy.optimize.linprog` (HiGHS).
* :func:`lagan_score`: the seed's score, Eq. 5.5: for each class, the EMD between the
  generated and reference ``(m, tau21)`` probability mass functions on a 40 x 40 grid,
  and the maximum over classes.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
from scipy import sparse
from scipy.optimize import linprog

from hepfastsim.errors import HepfastsimError
from hepfastsim.jets.observables import ObservablesConfig, image_observables

__all__ = ["ScoreGrid", "LAGAN_GRID", "lagan_observables", "pmf_2d", "emd_2d", "lagan_score"]

#: N-subjettiness as in the seed: one-pass kT axes with winner-take-all recombination.
LAGAN_OBSERVABLES = ObservablesConfig(axes="wta", one_pass=True, r0=1.0)


@dataclass(frozen=True)
class ScoreGrid:
    """The ``(m, tau21)`` grid of the score: ``bins`` x ``bins`` over the given ranges
    (mass in GeV); values outside are put in the edge bins so the grid holds the full
    support."""

    bins: int = 40
    mass_range: tuple[float, float] = (0.0, 200.0)
    tau21_range: tuple[float, float] = (0.0, 1.0)


LAGAN_GRID = ScoreGrid()


def lagan_observables(images: np.ndarray) -> dict[str, np.ndarray]:
    """``{"mass", "pt", "tau21"}`` per image; ``images (n, 25, 25)`` in GeV per pixel.

    Empty images get NaN ``tau21`` (kept NaN; :func:`pmf_2d` drops them).
    """
    img = np.asarray(images, dtype=np.float64)
    if img.ndim != 3 or img.shape[1:] != (25, 25):
        raise HepfastsimError(f"expected images of shape (n, 25, 25), got {img.shape}")
    obs = image_observables(img, "lagan", LAGAN_OBSERVABLES)
    return {k: np.asarray(obs[k], dtype=np.float64) for k in ("mass", "pt", "tau21")}


def pmf_2d(mass: np.ndarray, tau21: np.ndarray, grid: ScoreGrid = LAGAN_GRID) -> np.ndarray:
    """Normalised ``(bins, bins)`` histogram of ``(m, tau21)``, edge bins holding the overflow."""
    m, t = np.asarray(mass, np.float64), np.asarray(tau21, np.float64)
    ok = np.isfinite(m) & np.isfinite(t)
    if not ok.any():
        raise HepfastsimError("expected at least one finite (m, tau21) pair, got none")
    def idx(x: np.ndarray, lo: float, hi: float) -> np.ndarray:
        return np.clip(np.floor((x - lo) / (hi - lo) * grid.bins), 0, grid.bins - 1).astype(np.int64)
    i = idx(m[ok], *grid.mass_range)
    j = idx(t[ok], *grid.tau21_range)
    h = np.bincount(i * grid.bins + j, minlength=grid.bins**2).astype(np.float64).reshape(grid.bins, grid.bins)
    return h / h.sum()


def emd_2d(p: np.ndarray, q: np.ndarray) -> float:
    """Exact EMD between two normalised 2-D histograms of equal shape (distance in bins).

    Transport problem over the non-empty bins only: minimise ``sum f_ij d_ij`` with
    ``sum_j f_ij = p_i``, ``sum_i f_ij = q_j``, ``f >= 0``.
    """
    p, q = np.asarray(p, np.float64), np.asarray(q, np.float64)
    if p.shape != q.shape or p.ndim != 2:
        raise HepfastsimError(f"expected two 2-D histograms of equal shape, got {p.shape} and {q.shape}")
    if not (np.isclose(p.sum(), 1.0) and np.isclose(q.sum(), 1.0)) or (p < 0).any() or (q < 0).any():
        raise HepfastsimError(f"expected normalised non-negative histograms, got sums {p.sum()} and {q.sum()}")
    ip, iq = np.flatnonzero(p), np.flatnonzero(q)
    a, b = p.ravel()[ip], q.ravel()[iq]
    b = b * (a.sum() / b.sum())  # exact balance for the solver
    cp = np.stack(np.unravel_index(ip, p.shape), axis=1).astype(np.float64)
    cq = np.stack(np.unravel_index(iq, q.shape), axis=1).astype(np.float64)
    cost = np.sqrt(((cp[:, None, :] - cq[None, :, :]) ** 2).sum(axis=2)).ravel()
    n, m = ip.size, iq.size
    rows = np.concatenate([np.repeat(np.arange(n), m), n + np.tile(np.arange(m), n)])
    cols = np.concatenate([np.arange(n * m), np.arange(n * m)])
    a_eq = sparse.csr_matrix((np.ones(2 * n * m), (rows, cols)), shape=(n + m, n * m))
    res = linprog(cost, A_eq=a_eq, b_eq=np.concatenate([a, b]), bounds=(0, None), method="highs")
    if res.status != 0:
        raise HepfastsimError(f"EMD linear program did not converge: {res.message}")
    return float(res.fun)


def lagan_score(
    generated: Mapping[str, Mapping[str, np.ndarray]],
    reference: Mapping[str, Mapping[str, np.ndarray]],
    grid: ScoreGrid = LAGAN_GRID,
) -> dict[str, float]:
    """Seed-004 score: ``{"emd_<class>": ..., "score": max over classes}``.

    ``generated`` / ``reference``: class name -> observables with ``mass`` and ``tau21``
    (as from :func:`lagan_observables`). EMD in units of grid bins.
    """
    if set(generated) != set(reference) or not generated:
        raise HepfastsimError(f"expected the same classes, got {sorted(generated)} and {sorted(reference)}")
    out = {}
    for c in sorted(reference):
        out[f"emd_{c}"] = emd_2d(
            pmf_2d(generated[c]["mass"], generated[c]["tau21"], grid),
            pmf_2d(reference[c]["mass"], reference[c]["tau21"], grid),
        )
    out["score"] = max(out.values())
    return out
