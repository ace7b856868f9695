"""Jets, areas, rho, flavour and matching against fastjet's classic interface and by hand."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest

from hepfastsim.reference.clustering import (
    JetBlock,
    cluster,
    fixed_grid_rho,
    ghost_flavours,
    jet_areas,
    match_closest,
)
from hepfastsim.reference.pythia_events import heavy_flavour

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    import fastjet


HARD = ((200.0, 0.5, 1.0), (120.0, -1.0, -2.0), (40.0, 0.9, 1.6))


def toy_event(rng: np.random.Generator, n_soft: int = 400, hard=HARD):
    """Soft uniform background (|eta| < 4.5) plus collimated hard sprays; returns pt, eta, phi, mass."""
    pts = [rng.exponential(0.8, n_soft)]
    etas = [rng.uniform(-4.5, 4.5, n_soft)]
    phis = [rng.uniform(-np.pi, np.pi, n_soft)]
    for pt, eta, phi in hard:
        k = 12
        pts.append(np.full(k, pt / k) * rng.uniform(0.5, 1.5, k))
        etas.append(eta + rng.normal(0, 0.08, k))
        phis.append(phi + rng.normal(0, 0.08, k))
    pt, eta, phi = np.concatenate(pts), np.concatenate(etas), np.concatenate(phis)
    phi = (phi + np.pi) % (2 * np.pi) - np.pi
    mass = np.where(rng.random(len(pt)) < 0.6, 0.13957, 0.0)
    return pt, eta, phi, mass


def to_cartesian(pt, eta, phi, mass):
    px, py, pz = pt * np.cos(phi), pt * np.sin(phi), pt * np.sinh(eta)
    return px, py, pz, np.sqrt(px**2 + py**2 + pz**2 + mass**2)


def pseudojets(px, py, pz, e):
    return [fastjet.PseudoJet(float(a), float(b), float(c), float(d)) for a, b, c, d in zip(px, py, pz, e)]


def test_cluster_matches_classic_fastjet():
    rng = np.random.default_rng(3)
    events = [toy_event(rng) for _ in range(3)]
    cart = [to_cartesian(*ev) for ev in events]
    offsets = np.cumsum([0] + [len(c[0]) for c in cart]).astype(np.int64)
    px, py, pz, e = (np.concatenate([c[i] for c in cart]) for i in range(4))
    jets = cluster(offsets, px, py, pz, e, 0.4, 5.0)
    jetdef = fastjet.JetDefinition(fastjet.antikt_algorithm, 0.4)
    for ev, c in enumerate(cart):
        cs = fastjet.ClusterSequence(pseudojets(*c), jetdef)
        ref = sorted((j.pt() for j in cs.inclusive_jets(5.0)), reverse=True)
        ours = jets.pt[jets.offsets[ev]:jets.offsets[ev + 1]]
        np.testing.assert_allclose(ours, ref, rtol=1e-10)
        # constituents reproduce the jet momentum
        j0 = jets.offsets[ev]
        idx = jets.const_index[jets.const_offsets[j0]:jets.const_offsets[j0 + 1]]
        base = offsets[ev]
        assert math.hypot(px[base + idx].sum(), py[base + idx].sum()) == pytest.approx(ours[0], rel=1e-10)


def test_rho_matches_fastjet_grid_median():
    rng = np.random.default_rng(5)
    events = [toy_event(rng, n_soft=n) for n in (50, 400, 1500)]
    offsets = np.cumsum([0] + [len(ev[0]) for ev in events]).astype(np.int64)
    pt, eta, phi, mass = (np.concatenate([ev[i] for ev in events]) for i in range(4))
    ours = fixed_grid_rho(offsets, pt, eta, phi, mass, 5.0, 0.55)
    for k, ev in enumerate(events):
        est = fastjet.GridMedianBackgroundEstimator(5.0, 0.55)
        est.set_particles(pseudojets(*to_cartesian(*ev)))
        assert ours[k] == pytest.approx(est.rho(), rel=1e-9, abs=1e-12)
    assert ours[2] > ours[1] > 0.0


def test_area_matches_fastjet_active_area():
    rng = np.random.default_rng(11)
    pt, eta, phi, mass = toy_event(rng, n_soft=300)
    px, py, pz, e = to_cartesian(pt, eta, phi, mass)
    offsets = np.array([0, len(pt)], np.int64)
    for radius in (0.4, 0.8):
        jets = cluster(offsets, px, py, pz, e, radius, 1.0)
        areas = jet_areas(jets, radius, 0.05, 5.0)
        spec = fastjet.GhostedAreaSpec(5.0, 1, 0.01)
        area_def = fastjet.AreaDefinition(fastjet.active_area_explicit_ghosts, spec)
        jetdef = fastjet.JetDefinition(fastjet.antikt_algorithm, radius)
        cs = fastjet.ClusterSequenceArea(pseudojets(px, py, pz, e), jetdef, area_def)
        ref = {round(j.pt(), 6): j.area() for j in cs.inclusive_jets(20.0)}
        hard = jets.pt > 20.0
        assert hard.sum() >= 2
        for p, a in zip(jets.pt[hard], areas[hard]):
            assert a == pytest.approx(ref[round(p, 6)], rel=0.06), (radius, p)


def test_match_closest_against_naive_loop():
    rng = np.random.default_rng(2)
    def block(n_per):
        off = np.cumsum([0] + n_per).astype(np.int64)
        n = off[-1]
        z = np.zeros(n)
        return JetBlock(off, rng.uniform(10, 100, n), rng.uniform(-2, 2, n), rng.uniform(-np.pi, np.pi, n),
                        z, z, np.zeros(1, np.int64), np.zeros(0, np.int64))
    reco, gen = block([5, 0, 7, 3]), block([6, 4, 0, 9])
    got = match_closest(reco, gen, 0.6)
    for ev in range(4):
        for j in range(reco.offsets[ev], reco.offsets[ev + 1]):
            best, best_d = -1, 0.6
            for g in range(gen.offsets[ev], gen.offsets[ev + 1]):
                dphi = (reco.phi[j] - gen.phi[g] + np.pi) % (2 * np.pi) - np.pi
                d = math.hypot(reco.eta[j] - gen.eta[g], dphi)
                if d < best_d:
                    best, best_d = g - gen.offsets[ev], d
            assert got[j] == best


def test_ghost_flavour_rules():
    # one event, two jets: jet A holds a b hadron ghost, a soft b parton and a hard gluon;
    # jet B holds only a hard u-quark and a c hadron.
    real = [(100.0, 0.0, 0.0), (80.0, 0.0, 2.5)]
    ghosts = [(5000, 30.0, 0.05, 0.05), (5, 10.0, -0.05, 0.0), (21, 60.0, 0.0, 0.1),
              (2, 50.0, 0.0, 2.45), (4000, 20.0, 0.05, 2.5)]
    pt = np.array([r[0] for r in real] + [g[1] * 1e-18 for g in ghosts])
    eta = np.array([r[1] for r in real] + [g[2] for g in ghosts])
    phi = np.array([r[2] for r in real] + [g[3] for g in ghosts])
    px, py, pz, e = to_cartesian(pt, eta, phi, np.zeros(len(pt)))
    jets = cluster(np.array([0, len(pt)], np.int64), px, py, pz, e, 0.4, 1.0)
    g_pdg = np.array([g[0] for g in ghosts], np.int32)
    g_pt = np.array([g[1] for g in ghosts])
    parton, hadron = ghost_flavours(jets, np.array([2]), np.array([0, len(ghosts)], np.int64), g_pdg, g_pt)
    assert list(hadron) == [5, 4]
    assert list(parton) == [5, 2]  # b wins over the harder gluon when the jet has a b hadron


def test_heavy_flavour_of_hadrons():
    codes = np.array([511, -521, 5122, 553, 421, -4122, 443, 211, 2212, 22, 5, 130])
    assert list(heavy_flavour(codes)) == [5, 5, 5, 5, 4, 4, 4, 0, 0, 0, 0, 0]


def test_softdrop_matches_fastjet_contrib():
    from hepfastsim.reference.clustering import softdrop_mass, softdrop_mass_fastjet

    rng = np.random.default_rng(4)
    offsets, parts = [0], []
    for j in range(120):
        n = int(rng.integers(1, 120))
        pt, eta, phi = rng.exponential(5, n), rng.normal(0, 0.3, n), rng.normal(0, 0.3, n)
        if j % 2 and n >= 2:  # a two-prong "W jet"
            pt[:2], eta[:2], phi[:2] = (200.0, 100.0), (0.0, 0.25), (0.0, 0.2)
        parts.append(to_cartesian(pt, eta, phi, np.where(rng.random(n) < 0.5, 0.13957, 0.0)))
        offsets.append(offsets[-1] + n)
    offsets = np.array(offsets)
    px, py, pz, e = (np.concatenate([p[i] for p in parts]) for i in range(4))
    ours = softdrop_mass(offsets, px, py, pz, e)
    ref = softdrop_mass_fastjet(offsets, px, py, pz, e)
    np.testing.assert_allclose(ours, ref, rtol=1e-9, atol=1e-6)
    # grooming never adds mass
    plain = np.sqrt(np.maximum(np.add.reduceat(e, offsets[:-1]) ** 2 - np.add.reduceat(px, offsets[:-1]) ** 2
                               - np.add.reduceat(py, offsets[:-1]) ** 2 - np.add.reduceat(pz, offsets[:-1]) ** 2, 0))
    assert np.all(ours <= plain * (1 + 1e-9) + 1e-9)
