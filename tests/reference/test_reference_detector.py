"""Single-particle physics of the detector: efficiencies and resolutions match the card."""

from __future__ import annotations

import math

import numpy as np
import pytest

from hepfastsim.reference.config import DetectorConfig, calorimeter_arrays
from hepfastsim.reference.detector import _impact, detector_arrays, simulate_detector
from hepfastsim.reference.pythia_events import ParticleBlock

CFG = DetectorConfig()
ARR = detector_arrays(CFG)


def shoot(pdg: int, charge: int, pt: float, eta: float, n: int, mass: float = 0.0, seed: int = 0) -> ParticleBlock:
    """``n`` events with one particle each, uniform in phi."""
    phi = np.random.default_rng(seed).uniform(-np.pi, np.pi, n)
    px, py = pt * np.cos(phi), pt * np.sin(phi)
    pz = np.full(n, pt * math.sinh(eta))
    e = np.sqrt(px**2 + py**2 + pz**2 + mass**2)
    return ParticleBlock(np.arange(n + 1, dtype=np.int64), px, py, pz, e,
                         np.full(n, pdg, np.int32), np.full(n, charge, np.int8))


def run(block: ParticleBlock, seed: int = 1, pileup: bool = False):
    return simulate_detector(block, np.full(len(block.px), pileup), ARR, seed)


@pytest.mark.parametrize(
    ("pdg", "charge", "pt", "eta", "mass"),
    [
        (211, 1, 0.5, 0.4, 0.1396),  # barrel, below 1 GeV: 0.70
        (211, 1, 5.0, 0.4, 0.1396),  # barrel: 0.95
        (-211, -1, 5.0, 2.0, 0.1396),  # endcap: 0.85
        (211, 1, 0.5, 2.2, 0.1396),  # endcap, below 1 GeV: 0.60
        (11, -1, 150.0, 1.0, 0.000511),  # electron above 100 GeV, barrel: 0.99
        (11, -1, 20.0, 2.0, 0.000511),  # electron endcap: 0.83
        (13, -1, 20.0, 2.0, 0.10566),  # muon endcap: 0.98
        (211, 1, 5.0, 2.7, 0.1396),  # outside the tracker: 0
    ],
)
def test_tracking_efficiency_matches_card(pdg, charge, pt, eta, mass):
    n = 20000
    pf = run(shoot(pdg, charge, pt, eta, n, mass))
    measured = np.count_nonzero(pf.charge != 0) / n
    expected = CFG.tracker.efficiency(abs(pdg), pt, eta)
    tol = 4 * math.sqrt(max(expected * (1 - expected), 1e-4) / n)
    assert abs(measured - expected) < tol, (measured, expected)


@pytest.mark.parametrize(("eta", "pt"), [(0.2, 20.0), (1.0, 100.0), (2.0, 50.0)])
def test_muon_momentum_resolution_matches_card(eta, pt):
    n = 20000
    pf = run(shoot(13, 1, pt, eta, n, 0.10566))
    tracks = pf.pt[pf.charge != 0]
    expected = CFG.tracker.resolution(13, pt, eta)
    assert abs(np.mean(tracks) / pt - 1) < 3 * expected / math.sqrt(len(tracks)) + 1e-4  # log-normal keeps the mean
    assert np.std(tracks) / pt == pytest.approx(expected, rel=0.04)
    assert np.count_nonzero(pf.charge == 0) == 0  # muons leave nothing in the calorimeters


@pytest.mark.parametrize(("energy", "eta"), [(20.0, 0.3), (100.0, 1.2), (100.0, 2.0), (200.0, 3.5)])
def test_ecal_resolution_matches_card(energy, eta):
    n = 20000
    pf = run(shoot(22, 0, energy / math.cosh(eta), eta, n))
    assert np.all(pf.pdg == 22)
    assert len(pf.pt) > 0.99 * n
    e_meas = pf.pt * np.cosh(pf.eta)
    # the resolution is evaluated at the tower centre, within 0.01 of eta
    expected = CFG.ecal.sigma(energy, eta)
    assert np.std(e_meas) == pytest.approx(expected, rel=0.05)
    assert np.mean(e_meas) == pytest.approx(energy, rel=0.01)


@pytest.mark.parametrize(("energy", "eta"), [(100.0, 0.5), (300.0, 3.5)])
def test_hcal_resolution_matches_card(energy, eta):
    n = 20000
    pf = run(shoot(130, 0, energy / math.cosh(eta), eta, n, 0.4976))
    assert np.all(pf.pdg == 130)
    e_meas = pf.pt * np.cosh(pf.eta)
    expected = CFG.hcal.sigma(energy, eta)
    assert np.std(e_meas) == pytest.approx(expected, rel=0.05)


def test_neutrinos_are_invisible():
    pf = run(shoot(14, 0, 50.0, 0.5, 1000))
    assert len(pf.pt) == 0


def test_chs_removes_pileup_tracks_only():
    block = shoot(211, 1, 5.0, 0.4, 2000, 0.1396)
    pf = run(block, pileup=True)
    assert np.all(pf.from_pu[pf.charge != 0])
    chs = pf.select(~pf.from_pu)
    assert np.count_nonzero(chs.charge != 0) == 0


def test_charged_hadron_energy_flow():
    """A tracked 30 GeV pion gives a track and, in most events, no neutral candidate."""
    n = 5000
    pf = run(shoot(211, 1, 30.0, 0.3, n, 0.1396))
    n_tracks = np.count_nonzero(pf.charge != 0)
    n_neutral = np.count_nonzero(pf.charge == 0)
    assert n_tracks > 0.93 * n
    assert n_neutral < 0.2 * n  # only when the calorimeter fluctuates up significantly
    # untracked pions (5%) reappear as neutral hadrons: the energy is not lost
    total = np.bincount(np.repeat(np.arange(n), np.diff(pf.offsets)), weights=pf.pt * np.cosh(pf.eta), minlength=n)
    assert np.median(total) == pytest.approx(30.0 * math.cosh(0.3), rel=0.02)


def test_helix_loopers_miss_the_barrel_calorimeter():
    # 2 r = 2 pT / (0.3 B) = 0.88 m < 1.29 m: a 0.5 GeV track at eta 0 never reaches the barrel
    _, _, reached = _impact(0.5, 0.0, 0.0, 1, 1.29, 3.0, 3.8)
    assert not reached
    eta_c, phi_c, reached = _impact(10.0, 0.0, 0.0, 1, 1.29, 3.0, 3.8)
    assert reached and eta_c == pytest.approx(0.0, abs=1e-12)
    # bending of a positive track is clockwise: phi decreases by asin(0.3 B R / (2 pT))
    assert phi_c == pytest.approx(-math.asin(0.299792458 * 3.8 * 1.29 / 20.0), rel=1e-9)
    eta_n, phi_n, reached = _impact(1.0, 1.0, 0.3, 0, 1.29, 3.0, 3.8)
    assert reached and (eta_n, phi_n) == (1.0, 0.3)


def test_calorimeter_segmentation_follows_card():
    e_edges, e_nphi, _ = calorimeter_arrays(CFG.ecal)
    h_edges, h_nphi, _ = calorimeter_arrays(CFG.hcal)
    ring = np.searchsorted(e_edges, 0.3) - 1
    assert e_edges[ring + 1] - e_edges[ring] == pytest.approx(0.0174, abs=1e-6)
    assert e_nphi[ring] == 360  # 1 degree
    ring = np.searchsorted(h_edges, 0.3) - 1
    assert h_edges[ring + 1] - h_edges[ring] == pytest.approx(0.087, abs=1e-6)
    assert h_nphi[ring] == 72  # 5 degrees
    assert e_edges[0] == -5.0 and e_edges[-1] == 5.0 and h_edges[0] == -5.0 and h_edges[-1] == 5.0


def test_same_seed_same_candidates():
    block = shoot(211, 1, 8.0, 0.4, 500, 0.1396)
    a, b = run(block, seed=7), run(block, seed=7)
    c = run(block, seed=8)
    assert np.array_equal(a.pt, b.pt) and np.array_equal(a.offsets, b.offsets)
    assert not np.array_equal(a.pt, c.pt)
