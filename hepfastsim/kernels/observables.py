"""Jet observables from constituents, as numba kernels parallel over jets.

Input layout (shared by every kernel here): constituents as flat, contiguous float64
arrays ``pt`` (GeV), ``eta``, ``phi`` (rad), ``mass`` (GeV) and int64 ``offsets`` of
length ``n_jets + 1`` (jet ``j`` owns ``[offsets[j], offsets[j+1])``), as produced by
:func:`hepfastsim.layout.to_flat`. Kernels return NEW arrays and never write into
their inputs.

Constituent conventions
-----------------------
* constituents with ``pt == 0`` are padding and are skipped (seed 003 zero-pads jets
  to 50 particles);
* a non-finite value (NaN, inf) in any field of a constituent makes every observable
  of its jet NaN: bad input stays visible instead of being silently dropped;
* negative ``pt`` or ``mass`` is rejected by the public wrapper (ValueError).

Observables (one column each, order of :data:`OBSERVABLE_FIELDS`, then the rings)
--------------------------------------------------------------------------------
``pt, eta, phi, mass``
    Four-vector sum of the constituents (GeV, -, rad in [-pi, pi), GeV). A space-like
    sum from rounding gives ``mass = 0``.
``n_constituents``
    Number of constituents with ``pt > 0``.
``tau1, tau2, tau3, tau21, tau32``
    N-subjettiness, Thaler & Van Tilburg, arXiv:1011.2268 (JHEP 03 (2011) 015), with
    the normalised measure ``tau_N = sum_i pt_i min_k dR_ik / (R0 sum_i pt_i)``,
    ``beta = 1``, distances in rapidity-azimuth as in fastjet-contrib Nsubjettiness.
    Axes: exclusive kT (``E_scheme``) or exclusive kT with winner-take-all
    recombination (arXiv:1401.2158), optionally refined by the contrib "one-pass"
    minimisation (``OnePass_KT_Axes`` / ``OnePass_WTA_KT_Axes``: iterate the beta=1
    axis update until the mean axis shift is below 1e-4, at most 1000 times).
    ``tau_N = 0`` when the jet has at most N constituents (as fastjet-contrib);
    ratios are 0 when the denominator is 0.
``ptd``
    ``sqrt(sum pt_i^2) / sum pt_i`` (CMS quark/gluon discrimination, CMS-PAS-JME-13-002 /
    arXiv:1209.6086), as used by seed 000 (Musella & Pandolfi, Comput. Softw. Big Sci. 2
    (2018) 8, arXiv:1805.00850).
``major, minor``
    Square roots of the eigenvalues (largest, smallest) of the pT-weighted covariance
    matrix of (eta, phi) about the pT-weighted centroid, i.e. the RMS widths along the
    principal axes (the CMS "axis1/axis2" convention, in units of eta-phi distance),
    as used by seed 000 (arXiv:1805.00850, "eigenvalues of the eta-phi covariance").
``girth``
    ``sum_i pt_i dR_i / pt_norm`` (CMS, arXiv:1209.6086), ``dR`` to the jet axis.
``flow1 .. flowN``
    Momentum flows of seed 003 (Touranakou et al., Mach. Learn.: Sci. Technol. 3 (2022)
    035003, arXiv:2203.00520, after ref. [51] there):
    ``Flow_n = sum pt_i / pt_norm`` over constituents with
    ``(n-1)/N * R <= dR < n/N * R`` around the jet axis, ``R`` the jet size
    (N = 4 in the seed).
``ring0 .. ringK``
    Ring intensities of seed 000 (arXiv:1805.00850, Fig. 4-5): the same sums over
    caller-chosen ``dR`` annuli ``[edges[k], edges[k+1])``.

``dR`` for girth, flows and rings is measured in (eta, phi) from the jet axis, which is
either given per jet (e.g. the gen-jet axis) or, when given as NaN, the constituent sum.
``pt_norm`` is likewise given per jet or (NaN) the constituent-sum pT.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
from numba import njit, prange

from hepfastsim.kernels.geometry import (
    delta_phi,
    delta_r2_wrapped,
    ptetaphim_to_pxpypze,
    rapidity,
    rapidity_from_pxpypze,
    wrap_phi,
)

__all__ = [
    "OBSERVABLE_FIELDS",
    "OBSERVABLES",
    "ObservableSpec",
    "observable_fields",
    "jet_observables",
    "four_momentum",
    "ptd",
    "girth",
    "principal_widths",
    "momentum_fractions",
    "nsubjettiness",
    "exclusive_kt_axes",
    "inclusive_kt_jets",
    "check_constituents",
    "check_offsets",
    "flow_edges",
]

#: Fixed leading columns of :func:`jet_observables`; ``flow{n}`` and ``ring{k}`` follow.
OBSERVABLE_FIELDS: tuple[str, ...] = (
    "pt",
    "eta",
    "phi",
    "mass",
    "n_constituents",
    "tau1",
    "tau2",
    "tau3",
    "tau21",
    "tau32",
    "ptd",
    "major",
    "minor",
    "girth",
)
_N_FIXED = len(OBSERVABLE_FIELDS)
_N_TAU = 3
# fastjet-contrib AxesDefinition::setNPass defaults for one-pass minimisation.
_ONEPASS_ACCURACY = 1.0e-4
_ONEPASS_ATTEMPTS = 1000
_TWO_PI = 2.0 * math.pi


def observable_fields(n_flows: int, n_rings: int) -> tuple[str, ...]:
    """Column names of :func:`jet_observables` for ``n_flows`` flows and ``n_rings`` rings."""
    flows = tuple(f"flow{n + 1}" for n in range(n_flows))
    rings = tuple(f"ring{k}" for k in range(n_rings))
    return OBSERVABLE_FIELDS + flows + rings


# ---------------------------------------------------------------------------
# per-jet building blocks (one small kernel per quantity)
# ---------------------------------------------------------------------------


@njit(cache=True, nogil=True)
def four_momentum(px: np.ndarray, py: np.ndarray, pz: np.ndarray, e: np.ndarray) -> tuple[float, float, float, float]:
    """(pt GeV, eta, phi rad, mass GeV) of the sum of one jet's constituent four-vectors.

    Empty jet: ``(0, nan, nan, 0)``; zero-pT sum: ``eta = +-inf``.
    """
    sx = 0.0
    sy = 0.0
    sz = 0.0
    se = 0.0
    for i in range(px.size):
        sx += px[i]
        sy += py[i]
        sz += pz[i]
        se += e[i]
    if px.size == 0:
        return 0.0, math.nan, math.nan, 0.0
    pt = math.sqrt(sx * sx + sy * sy)
    if pt > 0.0:
        eta = math.asinh(sz / pt)
    else:
        eta = math.inf if sz >= 0.0 else -math.inf
    phi = math.atan2(sy, sx)
    m2 = se * se - sx * sx - sy * sy - sz * sz
    mass = math.sqrt(m2) if m2 > 0.0 else 0.0
    return pt, eta, phi, mass


@njit(cache=True, nogil=True)
def ptd(pt: np.ndarray) -> float:
    """``sqrt(sum pt^2) / sum pt`` (CMS, arXiv:1209.6086); NaN for an empty jet."""
    s1 = 0.0
    s2 = 0.0
    for i in range(pt.size):
        s1 += pt[i]
        s2 += pt[i] * pt[i]
    if s1 <= 0.0:
        return math.nan
    return math.sqrt(s2) / s1


@njit(cache=True, nogil=True)
def girth(pt: np.ndarray, dr: np.ndarray, pt_norm: float) -> float:
    """``sum pt_i dR_i / pt_norm`` (CMS, arXiv:1209.6086); NaN when ``pt_norm <= 0``."""
    if pt_norm <= 0.0:
        return math.nan
    s = 0.0
    for i in range(pt.size):
        s += pt[i] * dr[i]
    return s / pt_norm


@njit(cache=True, nogil=True)
def weighted_moments(pt: np.ndarray, deta: np.ndarray, dphi: np.ndarray) -> tuple[float, float, float, float, float, float]:
    """``(sum_pt, mean_eta, mean_phi, c_ee, c_pp, c_ep)``: the pT-weighted centroid and
    (eta, phi) covariance of the constituents; all zero when ``sum_pt <= 0``.

    ``deta``, ``dphi`` are coordinates relative to any fixed point (wrapped in phi). Shared
    by :func:`principal_widths` (jet axes) and the image rotation of ``kernels.pixelise``.
    """
    sw = 0.0
    me = 0.0
    mp = 0.0
    for i in range(pt.size):
        sw += pt[i]
        me += pt[i] * deta[i]
        mp += pt[i] * dphi[i]
    if sw <= 0.0:
        return 0.0, 0.0, 0.0, 0.0, 0.0, 0.0
    me /= sw
    mp /= sw
    cee = 0.0
    cpp = 0.0
    cep = 0.0
    for i in range(pt.size):
        a = deta[i] - me
        b = dphi[i] - mp
        cee += pt[i] * a * a
        cpp += pt[i] * b * b
        cep += pt[i] * a * b
    return sw, me, mp, cee / sw, cpp / sw, cep / sw


@njit(cache=True, nogil=True)
def principal_widths(pt: np.ndarray, deta: np.ndarray, dphi: np.ndarray) -> tuple[float, float]:
    """(major, minor): sqrt of the eigenvalues of the pT-weighted (eta, phi) covariance.

    ``deta``, ``dphi`` are coordinates relative to any fixed point (wrapped in phi);
    the covariance is taken about the pT-weighted centroid. NaN for an empty jet.
    """
    sw, _me, _mp, cee, cpp, cep = weighted_moments(pt, deta, dphi)
    if sw <= 0.0:
        return math.nan, math.nan
    half_tr = 0.5 * (cee + cpp)
    disc = math.sqrt(0.25 * (cee - cpp) * (cee - cpp) + cep * cep)
    lam1 = half_tr + disc
    lam2 = half_tr - disc
    return math.sqrt(max(lam1, 0.0)), math.sqrt(max(lam2, 0.0))


@njit(cache=True, nogil=True)
def momentum_fractions(pt: np.ndarray, dr: np.ndarray, edges: np.ndarray, pt_norm: float) -> np.ndarray:
    """``sum pt_i / pt_norm`` in each annulus ``edges[k] <= dR < edges[k+1]`` (new array).

    Momentum flows of seed 003 (arXiv:2203.00520) and ring intensities of seed 000
    (arXiv:1805.00850). All zeros when ``pt_norm <= 0``.
    """
    nbins = edges.size - 1
    out = np.zeros(nbins)
    if pt_norm <= 0.0 or nbins <= 0:
        return out
    for i in range(pt.size):
        d = dr[i]
        if d < edges[0] or d >= edges[nbins]:
            continue
        # few bins: linear scan is faster than bisection
        for k in range(nbins):
            if d < edges[k + 1]:
                out[k] += pt[i]
                break
    for k in range(nbins):
        out[k] /= pt_norm
    return out


# ---------------------------------------------------------------------------
# kT clustering (pairwise nearest-neighbour, O(n^2)), as fastjet's kt_algorithm
# ---------------------------------------------------------------------------


@njit(cache=True, nogil=True)
def _nearest(i, active, kt2, d2, n):
    """Nearest active neighbour of ``i`` in the kT distance ``min(kt2) dR^2``."""
    best = math.inf
    bj = -1
    for j in range(n):
        if j != i and active[j]:
            d = min(kt2[i], kt2[j]) * d2[i, j]
            if d < best:
                best = d
                bj = j
    return bj, best


@njit(cache=True, nogil=True)
def _merge(i, j, px, py, pz, e, kt2, y, phi, wta):
    """Recombine pseudojet ``j`` into ``i`` (E_scheme or contrib WinnerTakeAllRecombiner)."""
    if wta:
        pti = math.sqrt(kt2[i])
        ptj = math.sqrt(kt2[j])
        pt = pti + ptj
        if ptj > pti:
            y[i] = y[j]
            phi[i] = phi[j]
        # reset_PtYPhiM(pt, y, phi, m=0)
        px[i] = pt * math.cos(phi[i])
        py[i] = pt * math.sin(phi[i])
        pz[i] = pt * math.sinh(y[i])
        e[i] = pt * math.cosh(y[i])
        kt2[i] = pt * pt
    else:
        px[i] += px[j]
        py[i] += py[j]
        pz[i] += pz[j]
        e[i] += e[j]
        kt2[i] = px[i] * px[i] + py[i] * py[i]
        y[i] = rapidity_from_pxpypze(px[i], py[i], pz[i], e[i])
        phi[i] = math.atan2(py[i], px[i])


@njit(cache=True, nogil=True)
def _cluster_state(px, py, pz, e):
    """Copies of the four-vectors plus kt2, rapidity, phi in [-pi, pi] and the dR^2 matrix."""
    n = px.size
    cpx = px.copy()
    cpy = py.copy()
    cpz = pz.copy()
    ce = e.copy()
    kt2 = np.empty(n)
    y = np.empty(n)
    phi = np.empty(n)
    for i in range(n):
        kt2[i] = cpx[i] * cpx[i] + cpy[i] * cpy[i]
        y[i] = rapidity_from_pxpypze(cpx[i], cpy[i], cpz[i], ce[i])
        phi[i] = math.atan2(cpy[i], cpx[i])
    d2 = np.empty((n, n))
    for i in range(n):
        d2[i, i] = 0.0
        for j in range(i + 1, n):
            d = delta_r2_wrapped(y[i], phi[i], y[j], phi[j])
            d2[i, j] = d
            d2[j, i] = d
    return cpx, cpy, cpz, ce, kt2, y, phi, d2


@njit(cache=True, nogil=True)
def _update_neighbours(i, j, active, kt2, y, phi, d2, nn, nnd, n):
    """After merging ``j`` into ``i`` (``i = -1``: ``j`` left as a final jet), refresh."""
    if i >= 0:
        for k in range(n):
            if active[k] and k != i:
                d = delta_r2_wrapped(y[i], phi[i], y[k], phi[k])
                d2[i, k] = d
                d2[k, i] = d
        nn[i], nnd[i] = _nearest(i, active, kt2, d2, n)
    for k in range(n):
        if not active[k] or k == i:
            continue
        if nn[k] == i or nn[k] == j:
            nn[k], nnd[k] = _nearest(k, active, kt2, d2, n)
        elif i >= 0:
            d = min(kt2[k], kt2[i]) * d2[k, i]
            if d < nnd[k]:
                nn[k] = i
                nnd[k] = d


@njit(cache=True, nogil=True)
def exclusive_kt_axes(
    px: np.ndarray, py: np.ndarray, pz: np.ndarray, e: np.ndarray, wta: bool, n_max: int
) -> tuple[np.ndarray, np.ndarray]:
    """Exclusive-kT axes for N = 1 .. n_max (fastjet ``kt_algorithm``, R -> infinity).

    Returns new arrays ``(rap, phi)`` of shape ``(n_max, n_max)``: row ``N-1`` holds the
    rapidities / azimuths of the N exclusive jets in its first N entries (NaN where the
    jet has fewer than N + 1 constituents). ``wta`` selects winner-take-all
    recombination (contrib ``WTA_KT_Axes``) instead of ``E_scheme`` (``KT_Axes``).
    """
    n = px.size
    ax_y = np.full((n_max, n_max), math.nan)
    ax_phi = np.full((n_max, n_max), math.nan)
    if n == 0:
        return ax_y, ax_phi
    cpx, cpy, cpz, ce, kt2, y, phi, d2 = _cluster_state(px, py, pz, e)
    active = np.ones(n, dtype=np.bool_)
    nn = np.empty(n, dtype=np.int64)
    nnd = np.empty(n)
    for i in range(n):
        nn[i], nnd[i] = _nearest(i, active, kt2, d2, n)
    n_active = n
    while n_active > 1:
        i = -1
        best = math.inf
        for k in range(n):
            if active[k] and (i < 0 or nnd[k] < best):
                best = nnd[k]
                i = k
        j = nn[i]
        _merge(i, j, cpx, cpy, cpz, ce, kt2, y, phi, wta)
        active[j] = False
        n_active -= 1
        if n_active <= n_max:
            row = n_active - 1
            c = 0
            for k in range(n):
                if active[k]:
                    ax_y[row, c] = y[k]
                    ax_phi[row, c] = phi[k]
                    c += 1
        if n_active > 1:
            _update_neighbours(i, j, active, kt2, y, phi, d2, nn, nnd, n)
    return ax_y, ax_phi


@njit(cache=True, nogil=True)
def inclusive_kt_jets(
    px: np.ndarray, py: np.ndarray, pz: np.ndarray, e: np.ndarray, radius: float
) -> np.ndarray:
    """Inclusive kT jets of radius ``radius`` (fastjet ``kt_algorithm``, ``E_scheme``).

    Returns a new ``(n_jets, 4)`` array of ``(px, py, pz, E)`` (GeV) sorted by
    decreasing pT. Used for the subjets of the LAGAN preprocessing (seed 004).
    """
    n = px.size
    out = np.empty((n, 4))
    if n == 0:
        return out[:0]
    cpx, cpy, cpz, ce, kt2, y, phi, d2 = _cluster_state(px, py, pz, e)
    r2 = radius * radius
    active = np.ones(n, dtype=np.bool_)
    nn = np.empty(n, dtype=np.int64)
    nnd = np.empty(n)
    for i in range(n):
        nn[i], nnd[i] = _nearest(i, active, kt2, d2, n)
    n_active = n
    n_out = 0
    while n_active > 0:
        i = -1
        best = math.inf
        b = -1
        best_b = math.inf
        for k in range(n):
            if active[k]:
                if i < 0 or nnd[k] < best:
                    best = nnd[k]
                    i = k
                if b < 0 or kt2[k] < best_b:
                    best_b = kt2[k]
                    b = k
        if n_active > 1 and best / r2 < best_b:
            j = nn[i]
            _merge(i, j, cpx, cpy, cpz, ce, kt2, y, phi, False)
            active[j] = False
            n_active -= 1
            _update_neighbours(i, j, active, kt2, y, phi, d2, nn, nnd, n)
        else:
            out[n_out, 0] = cpx[b]
            out[n_out, 1] = cpy[b]
            out[n_out, 2] = cpz[b]
            out[n_out, 3] = ce[b]
            n_out += 1
            active[b] = False
            n_active -= 1
            if n_active > 0:
                _update_neighbours(-1, b, active, kt2, y, phi, d2, nn, nnd, n)
    res = out[:n_out]
    order = np.argsort(-(res[:, 0] * res[:, 0] + res[:, 1] * res[:, 1]))
    sorted_out = np.empty((n_out, 4))
    for k in range(n_out):
        sorted_out[k, :] = res[order[k], :]
    return sorted_out


@njit(cache=True, nogil=True)
def _one_pass_axes(pt, y, phi, ax_y, ax_phi, n_axes):
    """fastjet-contrib ``DefaultMeasure::get_one_pass_axes`` for beta = 1 (new arrays)."""
    old_y = ax_y[:n_axes].copy()
    old_phi = ax_phi[:n_axes].copy()
    new_y = np.empty(n_axes)
    new_phi = np.empty(n_axes)
    sw = np.empty(n_axes)
    sy = np.empty(n_axes)
    sp = np.empty(n_axes)
    prec2 = _ONEPASS_ACCURACY * _ONEPASS_ACCURACY
    for _ in range(_ONEPASS_ATTEMPTS):
        sw[:] = 0.0
        sy[:] = 0.0
        sp[:] = 0.0
        for i in range(pt.size):
            best = math.inf
            kbest = 0
            for k in range(n_axes):
                d = delta_r2_wrapped(old_y[k], old_phi[k], y[i], phi[i])
                if d < best:
                    best = d
                    kbest = k
            w = pt[i] / math.sqrt(prec2 + best)
            sw[kbest] += w
            sy[kbest] += w * y[i]
            # phi unwrapped to within pi of the old axis
            sp[kbest] += w * (old_phi[kbest] + delta_phi(phi[i], old_phi[kbest]))
        cmp = 0.0
        for k in range(n_axes):
            if sw[k] == 0.0:
                new_y[k] = old_y[k]
                new_phi[k] = old_phi[k]
            else:
                new_y[k] = sy[k] / sw[k]
                new_phi[k] = wrap_phi(sp[k] / sw[k])
            cmp += math.sqrt(delta_r2_wrapped(old_y[k], old_phi[k], new_y[k], new_phi[k]))
        cmp /= n_axes
        old_y[:] = new_y
        old_phi[:] = new_phi
        if cmp <= _ONEPASS_ACCURACY:
            break
    return old_y, old_phi


@njit(cache=True, nogil=True)
def _tau_value(pt, y, phi, ax_y, ax_phi, n_axes, r0):
    num = 0.0
    den = 0.0
    for i in range(pt.size):
        best = math.inf
        for k in range(n_axes):
            d = delta_r2_wrapped(ax_y[k], ax_phi[k], y[i], phi[i])
            if d < best:
                best = d
        num += pt[i] * math.sqrt(best)
        den += pt[i]
    if den <= 0.0:
        return 0.0
    return num / (den * r0)


@njit(cache=True, nogil=True)
def nsubjettiness(
    pt: np.ndarray,
    y: np.ndarray,
    phi: np.ndarray,
    px: np.ndarray,
    py: np.ndarray,
    pz: np.ndarray,
    e: np.ndarray,
    r0: float,
    wta: bool,
    one_pass: bool,
) -> np.ndarray:
    """``[tau1, tau2, tau3]`` of one jet (normalised measure, beta = 1, arXiv:1011.2268).

    ``pt`` (GeV), rapidity ``y`` and ``phi`` (rad, within ``[-pi, pi]``) per constituent, plus their
    four-vectors (GeV) for the E-scheme clustering. New array of length 3.
    """
    out = np.zeros(_N_TAU)
    n = pt.size
    if n <= 1:
        return out
    ax_y, ax_phi = exclusive_kt_axes(px, py, pz, e, wta, _N_TAU)
    for nax in range(1, _N_TAU + 1):
        if n <= nax:
            break  # tau_N = 0 when N >= number of constituents (fastjet-contrib)
        row_y = ax_y[nax - 1, :nax]
        row_phi = ax_phi[nax - 1, :nax]
        if one_pass:
            row_y, row_phi = _one_pass_axes(pt, y, phi, row_y, row_phi, nax)
        out[nax - 1] = _tau_value(pt, y, phi, row_y, row_phi, nax, r0)
    return out


# ---------------------------------------------------------------------------
# batch kernel
# ---------------------------------------------------------------------------


@njit(cache=True, nogil=True)
def _jet_row(pt, eta, phi, mass, axis_eta, axis_phi, pt_norm, r0, wta, one_pass, flow_edges, ring_edges, row):
    """Fill one output row (a view owned by the batch kernel) for one jet."""
    n_all = pt.size
    # validity: NaN/inf anywhere -> NaN row; pt == 0 -> padding
    n = 0
    for i in range(n_all):
        if not (
            math.isfinite(pt[i]) and math.isfinite(eta[i]) and math.isfinite(phi[i]) and math.isfinite(mass[i])
        ):
            row[:] = math.nan
            return
        if pt[i] > 0.0:
            n += 1
    lpt = np.empty(n)
    leta = np.empty(n)
    lphi = np.empty(n)
    ly = np.empty(n)
    lpx = np.empty(n)
    lpy = np.empty(n)
    lpz = np.empty(n)
    le = np.empty(n)
    c = 0
    for i in range(n_all):
        if pt[i] > 0.0:
            lpt[c] = pt[i]
            leta[c] = eta[i]
            lphi[c] = wrap_phi(phi[i])
            ly[c] = rapidity(pt[i], eta[i], mass[i])
            lpx[c], lpy[c], lpz[c], le[c] = ptetaphim_to_pxpypze(pt[i], eta[i], phi[i], mass[i])
            c += 1
    jpt, jeta, jphi, jm = four_momentum(lpx, lpy, lpz, le)
    aeta = axis_eta if math.isfinite(axis_eta) else jeta
    aphi = axis_phi if math.isfinite(axis_phi) else jphi
    norm = pt_norm if math.isfinite(pt_norm) else jpt

    deta = np.empty(n)
    dphi = np.empty(n)
    dr = np.empty(n)
    for i in range(n):
        deta[i] = leta[i] - aeta
        dphi[i] = delta_phi(lphi[i], aphi)
        dr[i] = math.sqrt(deta[i] * deta[i] + dphi[i] * dphi[i])

    taus = nsubjettiness(lpt, ly, lphi, lpx, lpy, lpz, le, r0, wta, one_pass)
    major, minor = principal_widths(lpt, deta, dphi)
    flows = momentum_fractions(lpt, dr, flow_edges, norm)
    rings = momentum_fractions(lpt, dr, ring_edges, norm)

    row[0] = jpt
    row[1] = jeta
    row[2] = jphi
    row[3] = jm
    row[4] = n
    row[5] = taus[0]
    row[6] = taus[1]
    row[7] = taus[2]
    row[8] = taus[1] / taus[0] if taus[0] > 0.0 else 0.0
    row[9] = taus[2] / taus[1] if taus[1] > 0.0 else 0.0
    row[10] = ptd(lpt)
    row[11] = major
    row[12] = minor
    row[13] = girth(lpt, dr, norm)
    for k in range(flows.size):
        row[_N_FIXED + k] = flows[k]
    for k in range(rings.size):
        row[_N_FIXED + flows.size + k] = rings[k]


@njit(cache=True, parallel=True)
def _jet_observables_kernel(
    pt, eta, phi, mass, offsets, axis_eta, axis_phi, pt_norm, r0, wta, one_pass, flow_edges, ring_edges
):
    n_jets = offsets.size - 1
    n_cols = _N_FIXED + (flow_edges.size - 1) + (ring_edges.size - 1)
    out = np.empty((n_jets, n_cols))
    for j in prange(n_jets):
        a = offsets[j]
        b = offsets[j + 1]
        _jet_row(
            pt[a:b],
            eta[a:b],
            phi[a:b],
            mass[a:b],
            axis_eta[j],
            axis_phi[j],
            pt_norm[j],
            r0,
            wta,
            one_pass,
            flow_edges,
            ring_edges,
            out[j],
        )
    return out


# ---------------------------------------------------------------------------
# public wrappers (input checks, raise in Python only)
# ---------------------------------------------------------------------------


def _as_float_array(name: str, value: Any, length: int | None = None) -> np.ndarray:
    arr = np.ascontiguousarray(value, dtype=np.float64)
    if arr.ndim != 1:
        raise ValueError(f"expected {name} to be a 1-d array, got shape {arr.shape}")
    if length is not None and arr.size != length:
        raise ValueError(f"expected {name} of length {length}, got length {arr.size}")
    return arr


def check_offsets(offsets: Any, n_flat: int) -> np.ndarray:
    """Validate ``offsets`` (int64, starts at 0, non-decreasing, ends at ``n_flat``)."""
    off = np.asarray(offsets)
    if off.ndim != 1 or off.size < 1:
        raise ValueError(f"expected offsets to be a 1-d array of length n_jets + 1 >= 1, got shape {off.shape}")
    if not np.issubdtype(off.dtype, np.integer):
        raise ValueError(f"expected integer offsets, got dtype {off.dtype}")
    off = np.ascontiguousarray(off, dtype=np.int64)
    if off[0] != 0 or off[-1] != n_flat:
        raise ValueError(f"expected offsets from 0 to {n_flat} (the flat length), got {off[0]} to {off[-1]}")
    if off.size > 1 and np.any(np.diff(off) < 0):
        raise ValueError("expected non-decreasing offsets, got a decreasing step")
    return off


def check_constituents(
    pt: Any, eta: Any, phi: Any, mass: Any | None, offsets: Any
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Convert and validate flat constituent arrays; returns contiguous float64 copies/views.

    ``mass=None`` means massless constituents. Raises ValueError on shape mismatches,
    bad offsets, or negative pt / mass (NaN is allowed and propagates to the jet).
    """
    pt_a = _as_float_array("pt", pt)
    n = pt_a.size
    eta_a = _as_float_array("eta", eta, n)
    phi_a = _as_float_array("phi", phi, n)
    mass_a = np.zeros(n) if mass is None else _as_float_array("mass", mass, n)
    off = check_offsets(offsets, n)
    if np.any(pt_a < 0.0):
        raise ValueError(f"expected pt >= 0 GeV, got minimum {np.nanmin(pt_a)}")
    if np.any(mass_a < 0.0):
        raise ValueError(f"expected mass >= 0 GeV, got minimum {np.nanmin(mass_a)}")
    return pt_a, eta_a, phi_a, mass_a, off


def _per_jet(name: str, value: Any, n_jets: int) -> np.ndarray:
    """A scalar or one value per jet as a new contiguous float64 array (None -> NaN)."""
    if value is None:
        return np.full(n_jets, math.nan)
    arr = np.asarray(value, dtype=np.float64)
    if arr.ndim == 0:
        return np.full(n_jets, float(arr))
    if arr.shape != (n_jets,):
        raise ValueError(f"expected {name} as a scalar or one value per jet ({n_jets},), got shape {arr.shape}")
    return np.array(arr, dtype=np.float64, order="C")


def _edges(name: str, edges: Any) -> np.ndarray:
    arr = _as_float_array(name, edges)
    if arr.size < 2:
        raise ValueError(f"expected at least 2 {name}, got {arr.size}")
    if np.any(~np.isfinite(arr[:-1])) or np.any(np.diff(arr) <= 0.0) or arr[0] < 0.0:
        raise ValueError(f"expected strictly increasing, non-negative {name}, got {arr.tolist()}")
    return arr


def flow_edges(jet_radius: float, n_flows: int = 4) -> np.ndarray:
    """Annulus edges ``n / n_flows * R`` (n = 0 .. n_flows) of the seed-003 Flow_n."""
    if not (jet_radius > 0.0) or n_flows < 1:
        raise ValueError(f"expected jet_radius > 0 and n_flows >= 1, got {jet_radius} and {n_flows}")
    return np.arange(n_flows + 1, dtype=np.float64) * (jet_radius / n_flows)


def jet_observables(
    pt: Any,
    eta: Any,
    phi: Any,
    mass: Any | None,
    offsets: Any,
    *,
    axis_eta: Any = None,
    axis_phi: Any = None,
    pt_norm: Any = None,
    r0: float = 0.4,
    axes: str = "kt",
    one_pass: bool = True,
    flow_edges: Any = (0.0, 0.1, 0.2, 0.3, 0.4),
    ring_edges: Any = (0.0, 0.05, 0.1, 0.15, 0.25),
) -> np.ndarray:
    """All observables of every jet, as a new ``(n_jets, n_fields)`` float64 array.

    Columns are :func:`observable_fields` ``(len(flow_edges) - 1, len(ring_edges) - 1)``
    (see the module docstring for definitions, units and references).

    Parameters
    ----------
    pt, eta, phi, mass, offsets
        Flat constituents (GeV, -, rad, GeV; ``mass=None`` for massless) and int64
        offsets of length ``n_jets + 1``.
    axis_eta, axis_phi, pt_norm
        Optional per-jet (or scalar) jet axis and normalisation pT (GeV) for girth,
        flows and rings; NaN or None means "from the constituent sum".
    r0
        N-subjettiness normalisation radius R0.
    axes
        ``"kt"`` (exclusive kT, E-scheme) or ``"wta"`` (exclusive kT, winner-take-all).
    one_pass
        Refine the axes with fastjet-contrib's one-pass minimisation.
    """
    p, et, ph, m, off = check_constituents(pt, eta, phi, mass, offsets)
    n_jets = off.size - 1
    if axes not in ("kt", "wta"):
        raise ValueError(f"expected axes 'kt' or 'wta', got {axes!r}")
    if not (r0 > 0.0):
        raise ValueError(f"expected r0 > 0, got {r0}")
    fe = _edges("flow_edges", flow_edges)
    re = _edges("ring_edges", ring_edges)
    ae = _per_jet("axis_eta", axis_eta, n_jets)
    ap = _per_jet("axis_phi", axis_phi, n_jets)
    pn = _per_jet("pt_norm", pt_norm, n_jets)
    return _jet_observables_kernel(p, et, ph, m, off, ae, ap, pn, float(r0), axes == "wta", bool(one_pass), fe, re)


@dataclass(frozen=True)
class ObservableSpec:
    """Registry entry: which per-jet kernel computes an observable, its unit and source."""

    kernel: Any
    unit: str
    reference: str


#: Observable name -> (per-jet kernel, unit, arXiv source). The CLI and configs refer
#: to observables by these names; :func:`jet_observables` computes them all in one pass.
OBSERVABLES: dict[str, ObservableSpec] = {
    "pt": ObservableSpec(four_momentum, "GeV", "four-vector sum"),
    "eta": ObservableSpec(four_momentum, "", "four-vector sum"),
    "phi": ObservableSpec(four_momentum, "rad", "four-vector sum"),
    "mass": ObservableSpec(four_momentum, "GeV", "four-vector sum"),
    "n_constituents": ObservableSpec(None, "", "count of constituents with pt > 0"),
    "tau1": ObservableSpec(nsubjettiness, "", "arXiv:1011.2268"),
    "tau2": ObservableSpec(nsubjettiness, "", "arXiv:1011.2268"),
    "tau3": ObservableSpec(nsubjettiness, "", "arXiv:1011.2268"),
    "tau21": ObservableSpec(nsubjettiness, "", "arXiv:1011.2268"),
    "tau32": ObservableSpec(nsubjettiness, "", "arXiv:1011.2268"),
    "ptd": ObservableSpec(ptd, "", "arXiv:1209.6086 (CMS); seed 000 arXiv:1805.00850"),
    "major": ObservableSpec(principal_widths, "", "seed 000 arXiv:1805.00850"),
    "minor": ObservableSpec(principal_widths, "", "seed 000 arXiv:1805.00850"),
    "girth": ObservableSpec(girth, "", "arXiv:1209.6086 (CMS)"),
    "flow": ObservableSpec(momentum_fractions, "", "seed 003 arXiv:2203.00520"),
    "ring": ObservableSpec(momentum_fractions, "", "seed 000 arXiv:1805.00850"),
}
