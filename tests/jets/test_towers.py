"""Calorimeter towers on the jet-image grid."""

from __future__ import annotations

import numpy as np
import pytest

from hepfastsim.jets.images import SEED000_DETECTOR
from hepfastsim.jets.towers import tower_labels
from hepfastsim.kernels.pixelise import pixel_centres
from hepfastsim.reference.config import ecal_geometry, hcal_geometry

HCAL_PHI = 2 * np.pi / 72  # barrel HCAL: 0.087 x 5 degrees


def test_axis_at_a_barrel_hcal_tower_centre() -> None:
    # tower [0, 0.087) x [0, 5 deg): its pixels are those whose centres lie within half a tower of the axis
    labels, n = tower_labels(np.array([0.0435]), np.array([0.5 * HCAL_PHI]), hcal_geometry())
    c = pixel_centres(SEED000_DETECTOR.n_eta, SEED000_DETECTOR.half_eta)
    expected = (np.abs(c)[:, None] < 0.0435) & (np.abs(c)[None, :] < 0.5 * HCAL_PHI)
    np.testing.assert_array_equal(labels[0] == labels[0, 16, 16], expected)
    assert expected.sum() == 100  # centres at odd multiples of 0.0047: 10 of them within +-0.0435 a side
    # 0.3 / 0.087 = 3.4 towers a side: 4 x 4 or 5 x 5 towers, partly covered
    assert n[0] == len(np.unique(labels[0])) and 16 <= n[0] <= 25


def test_labels_count_up_in_pixel_order_and_do_not_mix_jets() -> None:
    rng = np.random.default_rng(3)
    eta, phi = rng.uniform(-2.4, 2.4, 50), rng.uniform(-np.pi, np.pi, 50)
    for geometry in (ecal_geometry(), hcal_geometry()):
        labels, n = tower_labels(eta, phi, geometry)
        assert labels.shape == (50, 32, 32) and n.shape == (50,)
        for j in range(50):
            flat = labels[j].ravel()
            _, first = np.unique(flat, return_index=True)
            np.testing.assert_array_equal(np.sort(first), first)  # tower k first appears before tower k + 1
            assert flat.min() == 0 and flat.max() == n[j] - 1 == len(first) - 1
            # the pixels of one tower form a rectangle (towers are eta x phi cells)
            for t in range(n[j]):
                ie, ip = np.nonzero(labels[j] == t)
                assert len(ie) == (ie.max() - ie.min() + 1) * (ip.max() - ip.min() + 1)


def test_ecal_towers_are_about_two_pixels_wide() -> None:
    _, n = tower_labels(np.array([0.3, -1.0]), np.array([0.1, 2.0]), ecal_geometry())
    # pixel centres span 31 x 0.3 / 32 = 0.29, that is 16.7 barrel ECAL towers a side: 17 or 18 of them
    assert np.all((n >= 17**2) & (n <= 18**2))


def test_phi_wraps_around() -> None:
    a, _ = tower_labels(np.array([0.5]), np.array([3.13]), hcal_geometry())
    b, _ = tower_labels(np.array([0.5]), np.array([3.13 - 2 * np.pi]), hcal_geometry())
    np.testing.assert_array_equal(a, b)
    # the image crosses phi = +-pi: the pixels just below and just above it are in different towers
    c = 3.13 + pixel_centres(32, SEED000_DETECTOR.half_phi)
    below, above = np.flatnonzero(c < np.pi)[-1], np.flatnonzero(c >= np.pi)[0]
    assert a[0, 16, below] != a[0, 16, above]


def test_no_jets_give_empty_labels() -> None:
    labels, n = tower_labels(np.zeros(0), np.zeros(0), hcal_geometry())
    assert labels.shape == (0, 32, 32) and n.shape == (0,) and labels.dtype == n.dtype == np.int64


def test_bad_input_is_refused() -> None:
    with pytest.raises(ValueError, match="same shape"):
        tower_labels(np.zeros(3), np.zeros(2), hcal_geometry())
    with pytest.raises(ValueError, match="one more eta edge"):
        tower_labels(np.zeros(1), np.zeros(1), ((0.0, 1.0), (72, 72)))


@pytest.mark.parametrize("geometry", [ecal_geometry(), hcal_geometry()])
def test_labels_match_a_sorting_reference_on_random_axes(geometry) -> None:  # noqa: ANN001
    """Towers numbered by np.unique over (ring, phi cell) keys per jet, ranked by first pixel."""
    rng = np.random.default_rng(5)
    eta = np.concatenate([rng.uniform(-2.6, 2.6, 300), [1.479, -1.479, 1.566, 1.653, 1.74, -1.74, 3.0, 4.9, -4.95]])
    phi = rng.uniform(-np.pi, np.pi, len(eta))
    phi[:4] = [np.pi - 0.01, -np.pi + 0.02, 3.14, -3.1]  # windows across +-pi
    labels, n_towers = tower_labels(eta, phi, geometry)
    edges, cells = np.asarray(geometry[0]), np.asarray(geometry[1])
    centres = (np.arange(32) + 0.5) * 0.3 / 32 - 0.15
    for k in range(len(eta)):
        ring = np.clip(np.searchsorted(edges, eta[k] + centres, side="right") - 1, 0, len(cells) - 1)
        cell = np.floor(np.mod(phi[k] + centres[None, :] + np.pi, 2 * np.pi) / (2 * np.pi / cells[ring])[:, None])
        key = (ring[:, None] * 10_000 + cell).ravel()
        _, first, inverse = np.unique(key, return_index=True, return_inverse=True)
        rank = np.argsort(np.argsort(first))
        assert np.array_equal(labels[k].ravel(), rank[inverse]) and n_towers[k] == len(first)
