"""The particle VAE's jet-mass calibration: the radial move to a target mass (analytic two-prong
jet), the conditional quantile map (known distributions), and its JSON round trip."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.stats import ks_2samp

from hepfastsim.errors import HepfastsimError
from hepfastsim.models.particle_vae_calibration import MassCalibration, fit_mass_calibration, jet_mass, stretch_to_mass


def test_two_prong_jet_reaches_the_target_mass_with_its_pts_kept() -> None:
    """Two massless prongs of pT p1, p2 at Delta R = d have m^2 = 2 p1 p2 (cosh deta - cos dphi)
    ~ p1 p2 d^2: asking for 1.3 m moves them apart along their axis, the softer one further."""
    pt = np.array([[300.0, 100.0, 0.0]])
    eta = np.array([[0.5, 0.7, 9.0]])  # the third entry is padding and must stay as it is
    phi = np.array([[0.1, 0.1, -2.0]])
    m = jet_mass(pt, eta, phi)
    d_eta = 0.2
    assert m[0] == pytest.approx(np.sqrt(2 * 300 * 100 * (np.cosh(d_eta) - 1)), rel=1e-12)
    new_eta, new_phi = stretch_to_mass(pt, eta, phi, 1.3 * m)
    assert jet_mass(pt, new_eta, new_phi)[0] == pytest.approx(1.3 * m[0], rel=1e-9)
    assert np.allclose(new_phi[0, :2], 0.1) and new_eta[0, 2] == 9.0 and new_phi[0, 2] == -2.0
    axis = np.arcsinh((300 * np.sinh(0.5) + 100 * np.sinh(0.7)) / 400)
    moved = np.abs(new_eta[0, :2] - axis) / np.abs(eta[0, :2] - axis)
    assert moved[1] > moved[0] > 1.0  # the outer (soft) prong moves most
    # no target (NaN) or a massless jet: unchanged
    same_eta, same_phi = stretch_to_mass(pt, eta, phi, np.array([np.nan]))
    assert np.allclose(same_eta[0, :2], eta[0, :2]) and np.allclose(same_phi[0, :2], phi[0, :2])


def test_lighter_target_pulls_constituents_in() -> None:
    rng = np.random.default_rng(0)
    pt = rng.exponential(10.0, (500, 30))
    eta, phi = rng.normal(0, 0.1, (500, 30)), rng.normal(0, 0.1, (500, 30))
    m = jet_mass(pt, eta, phi)
    target = m * rng.uniform(0.8, 1.25, 500)
    new_eta, new_phi = stretch_to_mass(pt, eta, phi, target)
    assert np.allclose(jet_mass(pt, new_eta, new_phi), target, rtol=1e-6)


def _jets(rng: np.random.Generator, n: int, shift: float, width: float) -> dict[str, np.ndarray]:
    """Gen jets with log-uniform pT in 200-1000 GeV and m/pT in 0.02-0.3; reco mass response
    ln(m / m_gen) ~ N(shift + 0.5 (m/pT - 0.1), width): it depends on the gen jet."""
    gen_pt = np.exp(rng.uniform(np.log(200), np.log(1000), n))
    gen_mass = gen_pt * rng.uniform(0.02, 0.3, n)
    log_r = rng.normal(shift + 0.5 * (gen_mass / gen_pt - 0.1), width)
    return {"gen_pt": gen_pt, "gen_mass": gen_mass, "mass": gen_mass * np.exp(log_r)}


def test_calibrated_masses_follow_the_reference_response() -> None:
    rng = np.random.default_rng(1)
    reference, model = _jets(rng, 40_000, -0.08, 0.15), _jets(rng, 40_000, -0.10, 0.10)
    cal = fit_mass_calibration(model, reference, bins=(2, 3), record={"files": ["a.root"]})
    assert cal.record["bins"] == [2, 3] and cal.record["files"] == ["a.root"]
    fresh_ref, fresh_model = _jets(rng, 20_000, -0.08, 0.15), _jets(rng, 20_000, -0.10, 0.10)
    calibrated = cal.target_mass(fresh_model["gen_pt"], fresh_model["gen_mass"], fresh_model["mass"])

    def log_r(m: np.ndarray, jets: dict[str, np.ndarray]) -> np.ndarray:
        return np.log(m / jets["gen_mass"])

    before = ks_2samp(log_r(fresh_model["mass"], fresh_model), log_r(fresh_ref["mass"], fresh_ref)).statistic
    after = ks_2samp(log_r(calibrated, fresh_model), log_r(fresh_ref["mass"], fresh_ref)).statistic
    assert before > 0.05 and after < 0.02
    # conditionally too: the heaviest third of the gen jets (m/pT > 0.2)
    heavy_m, heavy_r = fresh_model["gen_mass"] / fresh_model["gen_pt"] > 0.2, fresh_ref["gen_mass"] / fresh_ref["gen_pt"] > 0.2
    r_ref = log_r(fresh_ref["mass"], fresh_ref)[heavy_r]
    assert ks_2samp(log_r(calibrated, fresh_model)[heavy_m], r_ref).statistic < 0.03
    # a jet without a positive mass keeps it; the JSON form gives the same map
    zero = cal.target_mass(np.array([300.0]), np.array([30.0]), np.array([0.0]))
    assert zero[0] == 0.0
    again = MassCalibration.from_dict(cal.to_dict())
    assert np.array_equal(again.target_mass(fresh_model["gen_pt"], fresh_model["gen_mass"], fresh_model["mass"]), calibrated)


def test_too_few_jets_per_bin_is_refused() -> None:
    rng = np.random.default_rng(2)
    jets = _jets(rng, 1000, 0.0, 0.1)
    with pytest.raises(HepfastsimError, match="fewer than 500"):
        fit_mass_calibration(jets, jets, bins=(4, 4))
    with pytest.raises(HepfastsimError, match="at least 1 x 1"):
        fit_mass_calibration(jets, jets, bins=(0, 4))
