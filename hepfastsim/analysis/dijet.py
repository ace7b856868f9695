"""The dijet resonance-search selection (CMS style), as pure functions on awkward jets.

Two leading jets (pT > 30 GeV, |eta| < 2.5), optional wide-jet recombination (every such
jet within Delta R < 1.1 of one of the two leading jets is added to the closer one, which
recovers final-state radiation; CMS, arXiv:1911.03947), |Delta eta| < 1.3 between the two
(wide) jets, and the dijet invariant mass mjj.
"""

from __future__ import annotations

from dataclasses import dataclass

import awkward as ak
import numpy as np
import vector

__all__ = ["SQRT_S_GEV", "CMS_DIJET_MASS_BINS", "DijetSelection", "DijetResult", "select_dijets", "mass_bins"]

SQRT_S_GEV = 13000.0

#: Dijet-mass bin edges (GeV) of the CMS dijet searches: bin widths follow the dijet mass
#: resolution (CMS, arXiv:1010.0203 and every CMS dijet search since).
CMS_DIJET_MASS_BINS = np.array(
    [1, 3, 6, 10, 16, 23, 31, 40, 50, 61, 74, 88, 103, 119, 137, 156, 176, 197, 220, 244, 270, 296, 325,
     354, 386, 419, 453, 489, 526, 565, 606, 649, 693, 740, 788, 838, 890, 944, 1000, 1058, 1118, 1181,
     1246, 1313, 1383, 1455, 1530, 1607, 1687, 1770, 1856, 1945, 2037, 2132, 2231, 2332, 2438, 2546,
     2659, 2775, 2895, 3019, 3147, 3279, 3416, 3558, 3704, 3854, 4010, 4171, 4337, 4509, 4686, 4869,
     5058, 5253, 5455, 5663, 5877, 6099, 6328, 6564, 6808, 7060, 7320, 7589, 7866, 8152, 8447, 8752,
     9067, 9391, 9726, 10072, 10430, 10798, 11179, 11571, 11977, 12395, 12827, 13272, 13732, 14000],
    dtype=np.float64,
)


def mass_bins(low: float = 0.0, high: float = np.inf) -> np.ndarray:
    """The CMS dijet-mass edges between ``low`` and ``high`` GeV (inclusive)."""
    edges = CMS_DIJET_MASS_BINS
    return edges[(edges >= low) & (edges <= high)]


@dataclass(frozen=True)
class DijetSelection:
    """Cuts of the dijet selection (GeV, radians)."""

    min_pt: float = 30.0
    max_abs_eta: float = 2.5
    max_delta_eta: float = 1.3
    wide_jet_radius: float | None = 1.1  # None: no wide-jet recombination
    min_mjj: float = 0.0


@dataclass(frozen=True)
class DijetResult:
    """Per-event outcome: ``selected`` (bool, n_events); for selected events only, ``mjj``
    (GeV), ``delta_eta`` and the two (wide) jets as vector Momentum4D arrays."""

    selected: np.ndarray
    mjj: np.ndarray
    delta_eta: np.ndarray
    jet1: ak.Array
    jet2: ak.Array


def select_dijets(jets: ak.Array, selection: DijetSelection = DijetSelection()) -> DijetResult:
    """Apply the dijet selection to jets (records with pt, eta, phi, mass per event, any order)."""
    p4 = vector.zip({"pt": jets.pt, "eta": jets.eta, "phi": jets.phi, "mass": jets.mass})
    good = p4[(p4.pt > selection.min_pt) & (abs(p4.eta) < selection.max_abs_eta)]
    good = good[ak.argsort(good.pt, ascending=False)]
    two = ak.num(good) >= 2
    good = good[two]
    lead, sub = good[:, 0], good[:, 1]
    if selection.wide_jet_radius is not None:
        dr1, dr2 = good.deltaR(lead), good.deltaR(sub)
        radius = selection.wide_jet_radius
        lead = ak.sum(good[(dr1 < radius) & (dr1 <= dr2)], axis=1)
        sub = ak.sum(good[(dr2 < radius) & (dr2 < dr1)], axis=1)
    delta_eta = ak.to_numpy(abs(lead.eta - sub.eta))
    mjj = ak.to_numpy((lead + sub).mass)
    passed = (delta_eta < selection.max_delta_eta) & (mjj > selection.min_mjj)
    selected = np.zeros(len(jets), dtype=bool)
    selected[np.flatnonzero(ak.to_numpy(two))[passed]] = True
    return DijetResult(selected, mjj[passed], delta_eta[passed], lead[passed], sub[passed])
