"""Jet images from constituents, and pseudo-particles from jet images (numba, parallel over jets).

Image layout: ``images[j, i_eta, i_phi]`` (float64), ``n_eta x n_phi`` pixels covering
``[-half_eta, half_eta) x [-half_phi, half_phi)`` around the image centre; pixel
``(i, k)`` has its centre at ``eta = -half_eta + (i + 0.5) * 2 half_eta / n_eta`` and
likewise in phi. Plot with ``imshow(image.T, origin="lower")`` to get eta horizontal
and phi vertical ("down" = negative phi).

Two preprocessing recipes are supported (presets live in :mod:`hepfastsim.jets.images`):

* seed 000 (Musella & Pandolfi, arXiv:1805.00850): 32 x 32 pixels over 0.3 x 0.3,
  centred on a given (gen-jet) axis, intensity = pT / gen-jet pT, constituents outside
  the window folded onto the border pixel;
* seed 004 (LAGAN, de Oliveira, Paganini, Nachman, arXiv:1701.05927, preprocessing of
  arXiv:1511.05190 with its Appendix B): 25 x 25 pixels of 0.1 x 0.1, centred on the
  leading kT subjet (R = 0.3), rotated so that the second subjet (or, without one,
  the principal axis) points to phi < 0 ("down"), flipped in eta so that the
  positive-eta half carries more pT, total intensity preserved.

The rotation is the proper rotation about the x axis of Appendix B of arXiv:1701.05927
(applied to massless constituents after translating the leading subjet to eta = phi = 0),
not the mass-changing rotation in the eta-phi plane; afterwards the intensities are
rescaled so that their sum equals the pT sum before rotation (the paper's "Renorm").

Constituent conventions as in :mod:`hepfastsim.kernels.observables`: ``pt == 0`` is
padding; a non-finite constituent makes the whole image NaN.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from numba import njit, prange

from hepfastsim.kernels.geometry import delta_phi, wrap_phi
from hepfastsim.kernels.observables import _per_jet, check_constituents, inclusive_kt_jets, weighted_moments

__all__ = ["pixelise", "image_to_particles", "pixel_centres"]


@njit(cache=True, nogil=True)
def _principal_direction(pt, deta, dphi):
    """Unit (eta, phi) direction of the major principal axis, oriented towards the pT side."""
    sw, me, mp, cee, cpp, cep = weighted_moments(pt, deta, dphi)
    if sw <= 0.0 or (cee == 0.0 and cpp == 0.0):
        return 0.0, 0.0
    # angle of the major axis of [[cee, cep], [cep, cpp]]
    theta = 0.5 * math.atan2(2.0 * cep, cee - cpp)
    ue = math.cos(theta)
    up = math.sin(theta)
    # orient along the pT-weighted centroid offset (deterministic sign)
    if ue * me + up * mp < 0.0:
        ue = -ue
        up = -up
    return ue, up


@njit(cache=True, nogil=True)
def _bin(deta, dphi, value, n_eta, n_phi, half_eta, half_phi, step_eta, step_phi, fold, img):
    fe = math.floor((deta + half_eta) / step_eta)
    fp = math.floor((dphi + half_phi) / step_phi)
    if fold:
        ie = int(min(max(fe, 0.0), n_eta - 1.0))
        ip = int(min(max(fp, 0.0), n_phi - 1.0))
    else:
        if fe < 0.0 or fe >= n_eta or fp < 0.0 or fp >= n_phi:
            return
        ie = int(fe)
        ip = int(fp)
    img[ie, ip] += value


@njit(cache=True, nogil=True)
def _image_row_simple(pt, eta, phi, c_eta, c_phi, norm, n_eta, n_phi, half_eta, half_phi, fold, img):
    """Translate and bin only (seed 000): one pass, no temporaries."""
    img[:, :] = 0.0
    for i in range(pt.size):
        if not (math.isfinite(pt[i]) and math.isfinite(eta[i]) and math.isfinite(phi[i])):
            img[:, :] = math.nan
            return
    inv_norm = 1.0 / norm
    step_eta = 2.0 * half_eta / n_eta
    step_phi = 2.0 * half_phi / n_phi
    for i in range(pt.size):
        if pt[i] > 0.0:
            _bin(
                eta[i] - c_eta,
                delta_phi(phi[i], c_phi),
                pt[i] * inv_norm,
                n_eta,
                n_phi,
                half_eta,
                half_phi,
                step_eta,
                step_phi,
                fold,
                img,
            )


@njit(cache=True, nogil=True)
def _image_row(
    pt, eta, phi, c_eta, c_phi, norm, n_eta, n_phi, half_eta, half_phi, subjet_centre, rotate, flip, subjet_r, fold, img
):
    img[:, :] = 0.0
    n_all = pt.size
    n = 0
    for i in range(n_all):
        if not (math.isfinite(pt[i]) and math.isfinite(eta[i]) and math.isfinite(phi[i])):
            img[:, :] = math.nan
            return
        if pt[i] > 0.0:
            n += 1
    if n == 0:
        return
    lpt = np.empty(n)
    leta = np.empty(n)
    lphi = np.empty(n)
    c = 0
    for i in range(n_all):
        if pt[i] > 0.0:
            lpt[c] = pt[i]
            leta[c] = eta[i]
            lphi[c] = phi[i]
            c += 1

    has_second = False
    s2_eta = 0.0
    s2_phi = 0.0
    if subjet_centre or rotate:
        px = np.empty(n)
        py = np.empty(n)
        pz = np.empty(n)
        e = np.empty(n)
        for i in range(n):
            px[i] = lpt[i] * math.cos(lphi[i])
            py[i] = lpt[i] * math.sin(lphi[i])
            pz[i] = lpt[i] * math.sinh(leta[i])
            e[i] = lpt[i] * math.cosh(leta[i])
        subjets = inclusive_kt_jets(px, py, pz, e, subjet_r)
        if subjet_centre:
            sj_pt = math.hypot(subjets[0, 0], subjets[0, 1])
            if sj_pt > 0.0:
                c_eta = math.asinh(subjets[0, 2] / sj_pt)
                c_phi = math.atan2(subjets[0, 1], subjets[0, 0])
            else:  # pathological zero-pT subjet: fall back to the hardest constituent
                k = np.argmax(lpt)
                c_eta = leta[k]
                c_phi = lphi[k]
        if subjets.shape[0] > 1:
            sj_pt = math.hypot(subjets[1, 0], subjets[1, 1])
            if sj_pt > 0.0:
                has_second = True
                s2_eta = math.asinh(subjets[1, 2] / sj_pt) - c_eta
                s2_phi = delta_phi(math.atan2(subjets[1, 1], subjets[1, 0]), c_phi)

    # translate
    deta = np.empty(n)
    dphi = np.empty(n)
    w = np.empty(n)
    for i in range(n):
        deta[i] = leta[i] - c_eta
        dphi[i] = delta_phi(lphi[i], c_phi)
        w[i] = lpt[i]

    if rotate:
        if has_second:
            # direction of the translated second subjet: py ~ sin(dphi), pz ~ sinh(deta)
            dir_y = math.sin(s2_phi)
            dir_z = math.sinh(s2_eta)
        else:
            ue, up = _principal_direction(lpt, deta, dphi)
            dir_y = up
            dir_z = ue
        if dir_y != 0.0 or dir_z != 0.0:
            # beta such that the direction ends at py < 0, pz = 0 (arXiv:1701.05927 eq. B.5)
            beta = math.atan2(dir_z, dir_y) - math.pi
            cb = math.cos(beta)
            sb = math.sin(beta)
            sum_before = 0.0
            sum_after = 0.0
            for i in range(n):
                qx = lpt[i] * math.cos(dphi[i])
                qy = lpt[i] * math.sin(dphi[i])
                qz = lpt[i] * math.sinh(deta[i])
                ry = qy * cb + qz * sb
                rz = qz * cb - qy * sb
                rpt = math.hypot(qx, ry)
                sum_before += lpt[i]
                if rpt > 0.0:
                    deta[i] = math.asinh(rz / rpt)
                    dphi[i] = math.atan2(ry, qx)
                    w[i] = rpt
                else:
                    deta[i] = math.inf if rz >= 0.0 else -math.inf
                    dphi[i] = 0.0
                    w[i] = 0.0
                sum_after += w[i]
            if sum_after > 0.0:
                scale = sum_before / sum_after
                for i in range(n):
                    w[i] *= scale

    if flip:
        left = 0.0
        right = 0.0
        for i in range(n):
            if deta[i] < 0.0:
                left += w[i]
            elif deta[i] > 0.0:
                right += w[i]
        if left > right:
            for i in range(n):
                deta[i] = -deta[i]

    inv_norm = 1.0 / norm
    step_eta = 2.0 * half_eta / n_eta
    step_phi = 2.0 * half_phi / n_phi
    for i in range(n):
        _bin(deta[i], dphi[i], w[i] * inv_norm, n_eta, n_phi, half_eta, half_phi, step_eta, step_phi, fold, img)


@njit(cache=True, parallel=True)
def _pixelise_kernel(
    pt, eta, phi, offsets, c_eta, c_phi, norm, n_eta, n_phi, half_eta, half_phi,
    subjet_centre, rotate, flip, subjet_r, fold,
):  # fmt: skip
    n_jets = offsets.size - 1
    # np.empty + zeroing inside prange: the threads first-touch (and fault in) their own pages
    out = np.empty((n_jets, n_eta, n_phi))
    simple = not (subjet_centre or rotate or flip)
    for j in prange(n_jets):
        a = offsets[j]
        b = offsets[j + 1]
        if simple:
            _image_row_simple(
                pt[a:b], eta[a:b], phi[a:b], c_eta[j], c_phi[j], norm[j], n_eta, n_phi, half_eta, half_phi, fold, out[j]
            )
            continue
        _image_row(
            pt[a:b],
            eta[a:b],
            phi[a:b],
            c_eta[j],
            c_phi[j],
            norm[j],
            n_eta,
            n_phi,
            half_eta,
            half_phi,
            subjet_centre,
            rotate,
            flip,
            subjet_r,
            fold,
            out[j],
        )
    return out


def pixelise(
    pt: Any,
    eta: Any,
    phi: Any,
    offsets: Any,
    *,
    n_eta: int,
    n_phi: int,
    half_eta: float,
    half_phi: float,
    centre_eta: Any = None,
    centre_phi: Any = None,
    norm: Any = None,
    centre_on_subjet: bool = False,
    rotate: bool = False,
    flip: bool = False,
    subjet_radius: float = 0.3,
    fold_overflow: bool = True,
) -> np.ndarray:
    """Jet images ``(n_jets, n_eta, n_phi)`` (new float64 array) from flat constituents.

    Parameters
    ----------
    pt, eta, phi, offsets
        Flat constituents (GeV, -, rad), int64 offsets of length ``n_jets + 1``.
    n_eta, n_phi, half_eta, half_phi
        Grid: ``n_eta x n_phi`` pixels over ``[-half_eta, half_eta) x [-half_phi, half_phi)``.
    centre_eta, centre_phi
        Per-jet (or scalar) image centre; required unless ``centre_on_subjet``.
    norm
        Per-jet (or scalar) divisor of the intensities (e.g. gen-jet pT in GeV for
        seed 000); ``None`` means 1 (intensity in GeV).
    centre_on_subjet, rotate, flip, subjet_radius
        The LAGAN preprocessing (arXiv:1701.05927): centre on the leading kT subjet of
        radius ``subjet_radius``, rotate the second subjet (or the principal axis) to
        phi < 0, flip eta so the right half has more pT. ``rotate`` without
        ``centre_on_subjet`` rotates the second kT subjet about the given centre.
    fold_overflow
        Fold constituents outside the window onto the border pixels (seed 000) instead
        of dropping them.
    """
    p, et, ph, _m, off = check_constituents(pt, eta, phi, None, offsets)
    n_jets = off.size - 1
    for name, value in (("n_eta", n_eta), ("n_phi", n_phi)):
        if int(value) != value or value < 1:
            raise ValueError(f"expected a positive integer {name}, got {value!r}")
    for name, value in (("half_eta", half_eta), ("half_phi", half_phi), ("subjet_radius", subjet_radius)):
        if not (value > 0.0 and math.isfinite(value)):
            raise ValueError(f"expected a positive finite {name}, got {value!r}")
    if not centre_on_subjet and (centre_eta is None or centre_phi is None):
        raise ValueError("expected centre_eta and centre_phi (or centre_on_subjet=True), got None")
    ce = _per_jet("centre_eta", 0.0 if centre_eta is None else centre_eta, n_jets)
    cp = _per_jet("centre_phi", 0.0 if centre_phi is None else centre_phi, n_jets)
    nm = _per_jet("norm", 1.0 if norm is None else norm, n_jets)
    if not centre_on_subjet and (not np.all(np.isfinite(ce)) or not np.all(np.isfinite(cp))):
        raise ValueError("expected finite centre_eta and centre_phi, got NaN or inf")
    if np.any(~(nm > 0.0)):
        raise ValueError(f"expected norm > 0, got minimum {np.nanmin(nm) if nm.size else nm}")
    return _pixelise_kernel(
        p,
        et,
        ph,
        off,
        ce,
        cp,
        nm,
        int(n_eta),
        int(n_phi),
        float(half_eta),
        float(half_phi),
        bool(centre_on_subjet),
        bool(rotate),
        bool(flip),
        float(subjet_radius),
        bool(fold_overflow),
    )


def pixel_centres(n: int, half: float) -> np.ndarray:
    """Pixel-centre coordinates ``-half + (i + 0.5) * 2 half / n`` (new array of length n)."""
    return -half + (np.arange(n, dtype=np.float64) + 0.5) * (2.0 * half / n)


@njit(cache=True, parallel=True)
def _image_to_particles_kernel(images, half_eta, half_phi, c_eta, c_phi, scale):
    n_jets, n_eta, n_phi = images.shape
    counts = np.zeros(n_jets, dtype=np.int64)
    for j in prange(n_jets):
        c = 0
        for ie in range(n_eta):
            for ip in range(n_phi):
                v = images[j, ie, ip]
                if v > 0.0 or math.isnan(v):
                    c += 1
        counts[j] = c
    offsets = np.zeros(n_jets + 1, dtype=np.int64)
    for j in range(n_jets):
        offsets[j + 1] = offsets[j] + counts[j]
    total = offsets[n_jets]
    pt = np.empty(total)
    eta = np.empty(total)
    phi = np.empty(total)
    step_eta = 2.0 * half_eta / n_eta
    step_phi = 2.0 * half_phi / n_phi
    for j in prange(n_jets):
        k = offsets[j]
        for ie in range(n_eta):
            for ip in range(n_phi):
                v = images[j, ie, ip]
                if v > 0.0 or math.isnan(v):
                    pt[k] = v * scale[j]
                    eta[k] = c_eta[j] - half_eta + (ie + 0.5) * step_eta
                    phi[k] = wrap_phi(c_phi[j] - half_phi + (ip + 0.5) * step_phi)
                    k += 1
    return pt, eta, phi, offsets


def image_to_particles(
    images: Any,
    *,
    half_eta: float,
    half_phi: float,
    centre_eta: Any = 0.0,
    centre_phi: Any = 0.0,
    scale: Any = 1.0,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Massless pseudo-particles at the centres of the non-empty pixels (seed 000's recipe).

    ``images`` has shape ``(n_jets, n_eta, n_phi)``; pixels with intensity ``> 0`` (or
    NaN, which propagates) become particles with ``pt = intensity * scale`` (GeV when
    ``scale`` is the jet pT used as image normalisation), at
    ``eta = centre_eta + pixel centre`` and ``phi = wrap(centre_phi + pixel centre)``.
    Returns new flat arrays ``(pt, eta, phi, offsets)``, pixels in (i_eta, i_phi) order.
    """
    img = np.asarray(images)
    if img.ndim != 3:
        raise ValueError(f"expected images of shape (n_jets, n_eta, n_phi), got shape {img.shape}")
    img = np.ascontiguousarray(img, dtype=np.float64)
    for name, value in (("half_eta", half_eta), ("half_phi", half_phi)):
        if not (value > 0.0 and math.isfinite(value)):
            raise ValueError(f"expected a positive finite {name}, got {value!r}")
    n_jets = img.shape[0]
    ce = _per_jet("centre_eta", centre_eta, n_jets)
    cp = _per_jet("centre_phi", centre_phi, n_jets)
    sc = _per_jet("scale", scale, n_jets)
    return _image_to_particles_kernel(img, float(half_eta), float(half_phi), ce, cp, sc)
