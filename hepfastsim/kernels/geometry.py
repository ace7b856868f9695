"""Shared scalar geometry helpers, written once as ``@njit`` functions.

Every kernel in :mod:`hepfastsim.kernels` builds on these; none of them is copied
elsewhere. Angles are in radians, momenta and masses in GeV. Azimuthal differences
are wrapped to ``[-pi, pi)``.

The functions are plain numba scalar functions: they are callable from Python (for
tests and debugging) and inlined into the batch kernels by numba.
"""

from __future__ import annotations

import math

from numba import njit

__all__ = [
    "wrap_phi",
    "delta_phi",
    "delta_r2",
    "delta_r2_wrapped",
    "delta_r",
    "rapidity",
    "rapidity_from_pxpypze",
    "ptetaphim_to_pxpypze",
]

_TWO_PI = 2.0 * math.pi
# fastjet's MaxRap: the rapidity assigned to a pseudojet with zero transverse mass.
_MAX_RAPIDITY = 1.0e5


@njit(cache=True, nogil=True)
def wrap_phi(phi: float) -> float:
    """Wrap an angle (rad) to ``[-pi, pi)``."""
    out = phi - _TWO_PI * math.floor((phi + math.pi) / _TWO_PI)
    # rounding can land exactly on the excluded end of the interval
    if out >= math.pi:
        out -= _TWO_PI
    elif out < -math.pi:
        out += _TWO_PI
    return out


@njit(cache=True, nogil=True)
def delta_phi(phi1: float, phi2: float) -> float:
    """``phi1 - phi2`` (rad) wrapped to ``[-pi, pi)``."""
    return wrap_phi(phi1 - phi2)


@njit(cache=True, nogil=True)
def delta_r2(eta1: float, phi1: float, eta2: float, phi2: float) -> float:
    """Squared angular distance ``(eta1 - eta2)^2 + dphi^2`` (eta may be rapidity)."""
    deta = eta1 - eta2
    dphi = delta_phi(phi1, phi2)
    return deta * deta + dphi * dphi


@njit(cache=True, nogil=True)
def delta_r2_wrapped(eta1: float, phi1: float, eta2: float, phi2: float) -> float:
    """:func:`delta_r2` for azimuths already in ``[-pi, pi]`` (no division, for hot loops).

    Uses ``|dphi| -> 2 pi - |dphi|`` when ``|dphi| > pi``, exact for inputs in range.
    """
    deta = eta1 - eta2
    dphi = abs(phi1 - phi2)
    if dphi > math.pi:
        dphi = _TWO_PI - dphi
    return deta * deta + dphi * dphi


@njit(cache=True, nogil=True)
def delta_r(eta1: float, phi1: float, eta2: float, phi2: float) -> float:
    """Angular distance ``sqrt(deta^2 + dphi^2)`` (dimensionless; eta may be rapidity)."""
    return math.sqrt(delta_r2(eta1, phi1, eta2, phi2))


@njit(cache=True, nogil=True)
def rapidity(pt: float, eta: float, mass: float) -> float:
    """Rapidity ``y = 0.5 ln((E + pz) / (E - pz))`` of a particle given (pt, eta, mass).

    ``pt`` and ``mass`` in GeV. Exact and numerically stable: ``y = asinh(pz / mT)``
    with ``pz = pt sinh(eta)`` and ``mT = sqrt(pt^2 + m^2)``. Equals ``eta`` when
    ``mass == 0``.
    """
    if mass == 0.0:
        return eta
    mt = math.sqrt(pt * pt + mass * mass)
    if mt == 0.0:
        return _MAX_RAPIDITY if eta >= 0.0 else -_MAX_RAPIDITY
    return math.asinh(pt * math.sinh(eta) / mt)


@njit(cache=True, nogil=True)
def rapidity_from_pxpypze(px: float, py: float, pz: float, e: float) -> float:
    """Rapidity of a four-vector (GeV), computed as fastjet's ``PseudoJet::rap``.

    ``y = sign(pz) * 0.5 * ln(mT^2 / (E + |pz|)^2)`` with ``mT^2 = pt^2 + max(m^2, 0)``,
    which is stable for large ``|y|``; ``+-1e5`` when ``mT == 0``.
    """
    kt2 = px * px + py * py
    m2 = (e + pz) * (e - pz) - kt2
    if m2 < 0.0:
        m2 = 0.0
    mt2 = kt2 + m2
    if mt2 == 0.0:
        return _MAX_RAPIDITY if pz >= 0.0 else -_MAX_RAPIDITY
    ea = e + abs(pz)
    y = 0.5 * math.log(mt2 / (ea * ea))
    return -y if pz > 0.0 else y


@njit(cache=True, nogil=True)
def ptetaphim_to_pxpypze(pt: float, eta: float, phi: float, mass: float) -> tuple[float, float, float, float]:
    """Cartesian components ``(px, py, pz, E)`` in GeV from (pt GeV, eta, phi rad, mass GeV)."""
    px = pt * math.cos(phi)
    py = pt * math.sin(phi)
    pz = pt * math.sinh(eta)
    e = math.sqrt(px * px + py * py + pz * pz + mass * mass)
    return px, py, pz, e
