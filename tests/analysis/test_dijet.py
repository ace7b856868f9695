from __future__ import annotations

import awkward as ak
import numpy as np
import pytest
import vector

from hepfastsim.analysis.dijet import CMS_DIJET_MASS_BINS, DijetSelection, mass_bins, select_dijets


def _jet(pt, eta, phi, mass=0.0):
    return {"pt": pt, "eta": eta, "phi": phi, "mass": mass}


def test_back_to_back_massless_pair() -> None:
    jets = ak.Array([[_jet(500.0, 0.0, 0.0), _jet(500.0, 0.0, np.pi)]])
    result = select_dijets(jets)
    assert result.selected.tolist() == [True]
    assert result.mjj[0] == pytest.approx(1000.0, rel=1e-9)  # m = 2 pT cosh(deta/2) at deta = 0


def test_mass_matches_vector_and_cuts_apply() -> None:
    jets = ak.Array(
        [
            [_jet(400.0, 0.5, 0.1, 30.0), _jet(350.0, -0.4, 3.0, 20.0), _jet(20.0, 0.0, 0.0)],  # third below 30 GeV
            [_jet(400.0, 1.0, 0.1), _jet(350.0, -1.0, 3.0)],  # |deta| = 2 > 1.3
            [_jet(400.0, 0.0, 0.1), _jet(350.0, 2.7, 3.0)],  # second outside |eta| < 2.5
            [_jet(400.0, 0.0, 0.1)],
            [],
        ]
    )
    result = select_dijets(jets)
    assert result.selected.tolist() == [True, False, False, False, False]
    a = vector.obj(pt=400.0, eta=0.5, phi=0.1, mass=30.0)
    b = vector.obj(pt=350.0, eta=-0.4, phi=3.0, mass=20.0)
    assert result.mjj[0] == pytest.approx((a + b).mass, rel=1e-9)
    loose = select_dijets(jets, DijetSelection(max_delta_eta=2.5))
    assert loose.selected.tolist() == [True, True, False, False, False]


def test_wide_jets_recover_radiation() -> None:
    fsr = _jet(100.0, 0.3, 0.5)  # Delta R = 0.58 from the leading jet
    far = _jet(80.0, 0.0, 1.6)  # Delta R = 1.6 from both: not added
    jets = ak.Array([[_jet(500.0, 0.0, 0.0), _jet(450.0, 0.2, np.pi), fsr, far]])
    wide = select_dijets(jets)
    narrow = select_dijets(jets, DijetSelection(wide_jet_radius=None))
    j1 = vector.obj(pt=500.0, eta=0.0, phi=0.0, mass=0.0) + vector.obj(pt=100.0, eta=0.3, phi=0.5, mass=0.0)
    j2 = vector.obj(pt=450.0, eta=0.2, phi=np.pi, mass=0.0)
    assert wide.mjj[0] == pytest.approx((j1 + j2).mass, rel=1e-9)
    assert narrow.mjj[0] < wide.mjj[0]


def test_binning() -> None:
    assert np.all(np.diff(CMS_DIJET_MASS_BINS) > 0)
    assert mass_bins(1000, 2000).tolist() == [1000, 1058, 1118, 1181, 1246, 1313, 1383, 1455, 1530, 1607, 1687, 1770, 1856, 1945]
