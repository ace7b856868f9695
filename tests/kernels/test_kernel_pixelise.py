"""hepfastsim.kernels.pixelise against naive loops and hand-worked images."""

from __future__ import annotations

import math

import numba
import numpy as np
import pytest
import vector

from hepfastsim.kernels import pixelise as kp
from hepfastsim.kernels.geometry import delta_phi

SEED000 = {"n_eta": 32, "n_phi": 32, "half_eta": 0.15, "half_phi": 0.15}
LAGAN = {"n_eta": 25, "n_phi": 25, "half_eta": 1.25, "half_phi": 1.25, "centre_on_subjet": True, "rotate": True, "flip": True}


def _naive_image(pt, eta, phi, ce, cp, norm, n, half, fold):
    img = np.zeros((n, n))
    w = 2 * half / n
    for p, e, f in zip(pt, eta, phi, strict=True):
        if p <= 0:
            continue
        ie = math.floor((e - ce + half) / w)
        ip = math.floor((delta_phi(f, cp) + half) / w)
        if fold:
            ie, ip = min(max(ie, 0), n - 1), min(max(ip, 0), n - 1)
        elif not (0 <= ie < n and 0 <= ip < n):
            continue
        img[ie, ip] += p / norm
    return img


def _one(pt, eta, phi, **kw):
    pt = np.asarray(pt, dtype=float)
    return kp.pixelise(pt, np.asarray(eta, float), np.asarray(phi, float), np.array([0, pt.size]), **kw)[0]


@pytest.mark.parametrize("fold", [True, False])
def test_seed000_matches_naive_pixelisation(random_jets, fold):
    j = random_jets
    rng = np.random.default_rng(5)
    # axis near the constituent centroid, so that part of each jet falls outside the window
    ce = np.array([np.average(j.jet(k)[1], weights=j.jet(k)[0]) for k in range(j.n_jets)]) + rng.normal(0, 0.05, j.n_jets)
    cp = np.full(j.n_jets, 1.0)
    norm = rng.uniform(100, 300, j.n_jets)
    images = kp.pixelise(j.pt, j.eta, j.phi, j.offsets, centre_eta=ce, centre_phi=cp, norm=norm, fold_overflow=fold, **SEED000)
    assert images.shape == (j.n_jets, 32, 32)
    n_outside = 0
    for k in range(j.n_jets):
        pt, eta, phi, _ = j.jet(k)
        ref = _naive_image(pt, eta, phi, ce[k], cp[k], norm[k], 32, 0.15, fold)
        np.testing.assert_allclose(images[k], ref, rtol=1e-12, atol=1e-15)
        total = images[k].sum()
        if fold:  # pixel sum = pT fraction of the whole input
            assert total == pytest.approx(pt.sum() / norm[k], rel=1e-12)
        else:
            inside = (np.abs(eta - ce[k]) < 0.15) & (np.abs([delta_phi(f, cp[k]) for f in phi]) < 0.15)
            n_outside += int((~inside).sum())
            assert total == pytest.approx(pt[inside].sum() / norm[k], rel=1e-12, abs=1e-15)
    assert fold or n_outside > 0


def test_outside_window_folds_onto_border_pixel():
    img = _one([10.0, 5.0], [1.0, -0.01], [-1.0, 3.0], centre_eta=0.0, centre_phi=0.0, norm=20.0, **SEED000)
    assert img[31, 0] == pytest.approx(0.5)
    # eta = -0.01 -> pixel floor((-0.01 + 0.15) / 0.009375) = 14; phi = 3.0 -> top border
    assert img[14, 31] == pytest.approx(0.25)
    assert img.sum() == pytest.approx(0.75)
    dropped = _one([10.0], [1.0], [-1.0], centre_eta=0.0, centre_phi=0.0, fold_overflow=False, **SEED000)
    assert dropped.sum() == 0.0


def test_phi_wrap_at_pi():
    img = _one([7.0], [0.0], [-math.pi + 0.01], centre_eta=0.0, centre_phi=math.pi - 0.01, **SEED000)
    # dphi = +0.02 -> pixel floor((0.02 + 0.15) / 0.009375) = 18
    assert img[16, 18] == pytest.approx(7.0)
    assert img.sum() == pytest.approx(7.0)


def test_nan_constituent_and_empty_jet():
    pt = np.array([1.0, np.nan, 2.0])
    eta = np.zeros(3)
    phi = np.zeros(3)
    images = kp.pixelise(pt, eta, phi, np.array([0, 2, 2, 3]), centre_eta=0.0, centre_phi=0.0, **SEED000)
    assert np.all(np.isnan(images[0]))
    assert np.all(images[1] == 0.0)
    assert images[2].sum() == pytest.approx(2.0)


def test_lagan_centre_rotation_and_renormalisation():
    # leading prong (200 GeV) at (0.5, 1.0); second prong (80 GeV) at (+0.3, +0.4) from it
    pt = [100.0, 100.0, 40.0, 40.0]
    eta = [0.5, 0.5, 0.8, 0.8]
    phi = [1.0, 1.0, 1.4, 1.4]
    img = _one(pt, eta, phi, **LAGAN)
    # proper rotation about x keeps the opening angle: the second prong ends at eta' = 0,
    # phi' = -arccos(cos 0.4 / cosh 0.3), with pt' = 80 cosh 0.3 before renormalisation
    theta = math.acos(math.cos(0.4) / math.cosh(0.3))
    i_phi = math.floor((-theta + 1.25) / 0.1)
    assert i_phi == 7
    scale = 280.0 / (200.0 + 80.0 * math.cosh(0.3))
    assert img[12, 12] == pytest.approx(200.0 * scale, rel=1e-9)
    assert img[12, i_phi] == pytest.approx(80.0 * math.cosh(0.3) * scale, rel=1e-9)
    assert img.sum() == pytest.approx(280.0, rel=1e-12)  # total intensity preserved


def test_lagan_flip_puts_more_pt_on_the_right():
    # second subjet already straight down; a 30 GeV particle on the left must be flipped
    img = _one([200.0, 80.0, 30.0], [0.0, 0.0, -0.4], [0.0, -0.5, 0.0], **LAGAN)
    assert img[12, 12] == pytest.approx(200.0, rel=1e-9)
    assert img[12, 7] == pytest.approx(80.0, rel=1e-9)
    assert img[16, 12] == pytest.approx(30.0, rel=1e-9)
    assert img[8, 12] == 0.0
    no_flip = _one([200.0, 80.0, 30.0], [0.0, 0.0, -0.4], [0.0, -0.5, 0.0], **{**LAGAN, "flip": False})
    assert no_flip[8, 12] == pytest.approx(30.0, rel=1e-9)


def test_lagan_principal_axis_when_no_second_subjet():
    # one subjet elongated along eta: rotated so the principal axis is vertical
    img = _one([10.0, 50.0, 10.0], [-0.1, 0.0, 0.1], [0.0, 0.0, 0.0], **LAGAN)
    # a 90 degree rotation about x turns pz = 10 sinh(0.1) into py: pt' = 10 cosh(0.1)
    scale = 70.0 / (50.0 + 20.0 * math.cosh(0.1))
    assert img[12, 12] == pytest.approx(50.0 * scale, rel=1e-9)
    assert img[12, 11] == pytest.approx(10.0 * math.cosh(0.1) * scale, rel=1e-9)
    assert img[12, 13] == pytest.approx(10.0 * math.cosh(0.1) * scale, rel=1e-9)
    assert img[11, 12] == 0.0 and img[13, 12] == 0.0
    assert img.sum() == pytest.approx(70.0, rel=1e-12)


def test_lagan_total_intensity_preserved_on_random_jets(random_jets):
    j = random_jets
    images = kp.pixelise(j.pt, j.eta, j.phi, j.offsets, **LAGAN)
    totals = np.add.reduceat(j.pt, j.offsets[:-1])
    np.testing.assert_allclose(images.sum(axis=(1, 2)), totals, rtol=1e-12)
    # the leading subjet sits in the central pixel: it is the brightest region on average
    mean = images.mean(axis=0)
    assert np.unravel_index(np.argmax(mean), mean.shape) == (12, 12)
    # with an even grid the column boundary is eta = 0: after the flip every jet has at
    # least as much intensity on the right (eta >= 0) as on the left
    even = {**LAGAN, "n_eta": 24, "n_phi": 24, "half_eta": 1.2, "half_phi": 1.2}
    flipped = kp.pixelise(j.pt, j.eta, j.phi, j.offsets, **even)
    unflipped = kp.pixelise(j.pt, j.eta, j.phi, j.offsets, **{**even, "flip": False})
    right, left = flipped[:, 12:].sum(axis=(1, 2)), flipped[:, :12].sum(axis=(1, 2))
    assert np.all(right >= left - 1e-9 * totals)
    assert np.any(unflipped[:, 12:].sum(axis=(1, 2)) < unflipped[:, :12].sum(axis=(1, 2)))


def test_image_to_particles_matches_naive():
    rng = np.random.default_rng(9)
    images = rng.exponential(1.0, (4, 32, 32)) * (rng.uniform(size=(4, 32, 32)) < 0.1)
    images[2] = 0.0
    ce = rng.normal(0, 1, 4)
    cp = np.array([0.0, 3.1, -3.1, 1.0])
    scale = rng.uniform(50, 100, 4)
    pt, eta, phi, offsets = kp.image_to_particles(images, half_eta=0.15, half_phi=0.15, centre_eta=ce, centre_phi=cp, scale=scale)
    centres = kp.pixel_centres(32, 0.15)
    for k in range(4):
        ie, ip = np.nonzero(images[k] > 0)
        a, b = offsets[k], offsets[k + 1]
        assert b - a == ie.size
        np.testing.assert_allclose(pt[a:b], images[k][ie, ip] * scale[k], rtol=1e-14)
        np.testing.assert_allclose(eta[a:b], ce[k] + centres[ie], rtol=1e-14, atol=1e-14)
        np.testing.assert_allclose(np.cos(phi[a:b]), np.cos(cp[k] + centres[ip]), atol=1e-12)
        assert np.all((phi[a:b] >= -np.pi) & (phi[a:b] < np.pi))
    assert offsets[3] == offsets[2]


def test_image_particle_round_trip_preserves_pt_and_mass(random_jets):
    j = random_jets
    jets = [vector.array({"pt": p, "eta": e, "phi": f, "mass": np.zeros(p.size)}).sum() for p, e, f, _ in map(j.jet, range(j.n_jets))]
    jet_pt = np.array([v.pt for v in jets])
    jet_eta = np.array([v.eta for v in jets])
    jet_phi = np.array([v.phi for v in jets])
    # a wide window so that nothing is folded: the round trip is then exact to pixel precision
    grid = {"n_eta": 200, "n_phi": 200, "half_eta": 3.0, "half_phi": 3.0}
    images = kp.pixelise(j.pt, j.eta, j.phi, j.offsets, centre_eta=jet_eta, centre_phi=jet_phi, norm=jet_pt, **grid)
    pt, eta, phi, offsets = kp.image_to_particles(images, half_eta=3.0, half_phi=3.0, centre_eta=jet_eta, centre_phi=jet_phi, scale=jet_pt)
    centres = kp.pixel_centres(200, 3.0)
    w = 6.0 / 200
    for k in range(j.n_jets):
        a, b = offsets[k], offsets[k + 1]
        back = vector.array({"pt": pt[a:b], "eta": eta[a:b], "phi": phi[a:b], "mass": np.zeros(b - a)}).sum()
        # exact reference: each constituent moved to its pixel centre
        p0, e0, f0, _ = j.jet(k)
        ie = np.floor((e0 - jet_eta[k] + 3.0) / w).astype(int)
        ip = np.floor((np.array([delta_phi(f, jet_phi[k]) for f in f0]) + 3.0) / w).astype(int)
        moved = vector.array({"pt": p0, "eta": jet_eta[k] + centres[ie], "phi": jet_phi[k] + centres[ip], "mass": np.zeros(p0.size)}).sum()
        assert back.pt == pytest.approx(moved.pt, rel=1e-10)
        assert back.mass == pytest.approx(moved.mass, rel=1e-8, abs=1e-8)
        # and the original jet to pixel precision: m^2 = sum_ij pt_i pt_j (cosh deta_ij -
        # cos dphi_ij) and every coordinate difference moves by <= w (first order plus a
        # Taylor remainder bound)
        deta = np.abs(e0[:, None] - e0[None, :])
        dphi = np.abs(np.array([[delta_phi(a, b) for b in f0] for a in f0]))
        per_pair = w * (np.sinh(deta) + np.minimum(dphi, 1.0)) + w**2 * np.cosh(deta + w)
        bound = np.sum(np.outer(p0, p0) * per_pair)
        assert abs(back.mass**2 - jets[k].mass ** 2) <= bound
        assert abs(back.pt - jet_pt[k]) <= w * jet_pt[k]


def test_inputs_not_modified_and_serial_equals_parallel(random_jets):
    j = random_jets
    before = [a.copy() for a in (j.pt, j.eta, j.phi, j.offsets)]
    threads = numba.get_num_threads()
    try:
        numba.set_num_threads(1)
        serial = kp.pixelise(j.pt, j.eta, j.phi, j.offsets, **LAGAN)
        numba.set_num_threads(min(2, numba.config.NUMBA_NUM_THREADS))
        parallel = kp.pixelise(j.pt, j.eta, j.phi, j.offsets, **LAGAN)
    finally:
        numba.set_num_threads(threads)
    np.testing.assert_array_equal(serial, parallel)
    for a, b in zip(before, (j.pt, j.eta, j.phi, j.offsets), strict=True):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({}, "expected centre_eta and centre_phi"),
        ({"centre_eta": 0.0, "centre_phi": 0.0, "n_eta": 0}, "expected a positive integer n_eta"),
        ({"centre_eta": 0.0, "centre_phi": 0.0, "half_phi": -1.0}, "expected a positive finite half_phi"),
        ({"centre_eta": 0.0, "centre_phi": 0.0, "norm": 0.0}, "expected norm > 0"),
        ({"centre_eta": np.nan, "centre_phi": 0.0}, "expected finite centre_eta"),
    ],
)
def test_pixelise_rejects_bad_input(kwargs, message):
    grid = {**SEED000, **{k: v for k, v in kwargs.items() if k in SEED000}}
    rest = {k: v for k, v in kwargs.items() if k not in SEED000}
    with pytest.raises(ValueError, match=message):
        kp.pixelise(np.ones(2), np.zeros(2), np.zeros(2), np.array([0, 2]), **grid, **rest)


def test_image_to_particles_rejects_bad_shape():
    with pytest.raises(ValueError, match=r"expected images of shape \(n_jets, n_eta, n_phi\)"):
        kp.image_to_particles(np.zeros((32, 32)), half_eta=0.15, half_phi=0.15)
