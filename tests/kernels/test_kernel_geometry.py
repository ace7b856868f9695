"""hepfastsim.kernels.geometry against numpy / vector references."""

from __future__ import annotations

import math

import numpy as np
import pytest
import vector

from hepfastsim.kernels import geometry as g


def test_wrap_phi_range_and_values() -> None:
    rng = np.random.default_rng(1)
    xs = np.concatenate([rng.uniform(-50, 50, 2000), [math.pi, -math.pi, 3 * math.pi, 0.0, 2 * math.pi]])
    for x in xs:
        w = g.wrap_phi(x)
        assert -math.pi <= w < math.pi
        # same angle
        assert math.isclose(math.cos(w), math.cos(x), abs_tol=1e-12)
        assert math.isclose(math.sin(w), math.sin(x), abs_tol=1e-12)
    assert g.wrap_phi(math.pi) == -math.pi
    assert g.wrap_phi(-math.pi) == -math.pi
    assert g.wrap_phi(0.25) == 0.25


def test_delta_phi_and_delta_r_across_the_pi_boundary() -> None:
    assert g.delta_phi(math.pi - 0.1, -math.pi + 0.1) == pytest.approx(-0.2, abs=1e-12)
    assert g.delta_phi(-math.pi + 0.1, math.pi - 0.1) == pytest.approx(0.2, abs=1e-12)
    assert g.delta_r(0.3, math.pi - 0.1, 0.0, -math.pi + 0.1) == pytest.approx(math.hypot(0.3, 0.2), abs=1e-12)
    assert g.delta_r2(1.0, 0.5, 1.0, 0.5) == 0.0


def test_rapidity_matches_vector() -> None:
    rng = np.random.default_rng(2)
    pt = rng.exponential(20, 500) + 0.1
    eta = rng.uniform(-4, 4, 500)
    mass = rng.uniform(0, 5, 500)
    ref = vector.array({"pt": pt, "eta": eta, "phi": np.zeros(500), "mass": mass}).rapidity
    mine = np.array([g.rapidity(a, b, c) for a, b, c in zip(pt, eta, mass, strict=True)])
    np.testing.assert_allclose(mine, ref, rtol=1e-10, atol=1e-12)
    assert g.rapidity(10.0, 1.7, 0.0) == 1.7  # massless: y == eta


def test_rapidity_from_four_vector_matches_definition() -> None:
    rng = np.random.default_rng(3)
    for _ in range(300):
        pt, eta, phi, m = rng.exponential(20) + 0.1, rng.uniform(-3, 3), rng.uniform(-3, 3), rng.uniform(0, 3)
        px, py, pz, e = g.ptetaphim_to_pxpypze(pt, eta, phi, m)
        ref = 0.5 * math.log((e + pz) / (e - pz))
        assert g.rapidity_from_pxpypze(px, py, pz, e) == pytest.approx(ref, rel=1e-9, abs=1e-12)
        assert math.hypot(px, py) == pytest.approx(pt, rel=1e-12)
        assert math.sqrt(max(e * e - px * px - py * py - pz * pz, 0.0)) == pytest.approx(m, abs=1e-6 * e)
