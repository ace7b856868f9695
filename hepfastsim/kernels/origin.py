"""Numba kernel: the origin category of each gen jet from the GenPart hard-process record.

Flat arrays plus per-event offsets in, one int64 per jet out; the awkward-facing wrapper is
:func:`hepfastsim.jets.origin.gen_jet_origin`, which documents the categories. Angles in radians.
"""

from __future__ import annotations

from numba import njit

from hepfastsim.kernels.geometry import delta_r2

__all__ = ["gen_jet_origin_kernel"]


@njit(cache=True, nogil=True)
def gen_jet_origin_kernel(jet_eta, jet_phi, jet_offsets, part_eta, part_phi, part_pdg, part_status, part_mother,
                          part_offsets, hard_status, singlet_pdg, max_dr, out):
    """For each jet, the category of the nearest particle with status ``hard_status`` closer
    than ``max_dr`` (first one on ties): 0 if its mother's |pdgId| is in ``singlet_pdg``, 1 if
    the mother is a top quark, 2 otherwise (or no mother); 3 when there is no such particle.
    ``part_mother`` indexes into the particles of the same event (-1: none)."""
    max_dr2 = max_dr * max_dr
    for e in range(len(jet_offsets) - 1):
        p0, p1 = part_offsets[e], part_offsets[e + 1]
        for j in range(jet_offsets[e], jet_offsets[e + 1]):
            best = max_dr2
            category = 3
            for p in range(p0, p1):
                if part_status[p] != hard_status:
                    continue
                d2 = delta_r2(jet_eta[j], jet_phi[j], part_eta[p], part_phi[p])
                if d2 < best:
                    best = d2
                    m = part_mother[p]
                    category = 2
                    if 0 <= m < p1 - p0:
                        mother_pdg = abs(part_pdg[p0 + m])
                        if mother_pdg == 6:
                            category = 1
                        for s in singlet_pdg:
                            if mother_pdg == s:
                                category = 0
            out[j] = category
    return out
