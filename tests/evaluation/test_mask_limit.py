"""The independent-mask limit: reference images with tower-placed candidates redrawn pixel by pixel."""

from __future__ import annotations

from pathlib import Path

import awkward as ak
import numpy as np
import pytest

from hepfastsim.evaluation.mask_limit import independent_tower_images, mask_limit_table, reference_constituents
from hepfastsim.jets.images import SEED000_DETECTOR, pixelise
from hepfastsim.jets.towers import tower_labels
from hepfastsim.models.image_gan_train import build_pairs
from hepfastsim.reference.config import hcal_geometry

EXAMPLE = Path(__file__).parents[2] / "examples" / "qcd_small.root"
HCAL_PHI = 2 * np.pi / 72


def _jets(n: int) -> tuple[ak.Array, ak.Array]:
    """n copies of one jet at a barrel HCAL tower centre: a charged hadron, a neutral hadron
    (in the axis' tower), a photon, and a neutral hadron outside the window (folded)."""
    one = [{"pt": 60.0, "eta": 0.0435, "phi": 0.5 * HCAL_PHI + 0.001, "mass": 0.14, "pdgId": 211},
           {"pt": 30.0, "eta": 0.0435 + 0.02, "phi": 0.5 * HCAL_PHI - 0.03, "mass": 0.0, "pdgId": 130},
           {"pt": 10.0, "eta": 0.0435 - 0.06, "phi": 0.5 * HCAL_PHI + 0.05, "mass": 0.0, "pdgId": 22},
           {"pt": 5.0, "eta": 0.0435 + 0.3, "phi": 0.5 * HCAL_PHI, "mass": 0.0, "pdgId": 130}]
    cands = ak.Array([one] * n)
    axis = ak.zip({"pt": np.full(n, 100.0), "eta": np.full(n, 0.0435), "phi": np.full(n, 0.5 * HCAL_PHI)})
    return cands, axis


def test_a_neutral_hadron_is_spread_over_its_tower_with_the_same_expectation() -> None:
    cands, axis = _jets(4000)
    ref = pixelise(cands, axis, SEED000_DETECTOR)
    got = independent_tower_images(cands, axis, np.random.default_rng(1), {130: "hcal"})
    labels, _ = tower_labels(np.array([0.0435]), np.array([0.5 * HCAL_PHI]), hcal_geometry())
    tower = labels[0] == labels[0, 18, 12]  # the pixel of the in-window neutral hadron (+0.02, -0.03)
    # everything else is kept exactly: the charged hadron, the photon and the folded neutral hadron
    without = ref - pixelise(cands[:, 1:2], axis, SEED000_DETECTOR)
    np.testing.assert_allclose(got[:, ~tower], without[:, ~tower], atol=1e-12)
    nh = got[:, tower] - without[:, tower]
    assert set(np.unique(np.round(nh, 12))) <= {0.0, 0.3}  # lit pixels carry the candidate's intensity
    # the expectation: 0.3 over the tower; each pixel of 100 lit with probability 1 / 100
    assert nh.sum(axis=1).mean() == pytest.approx(0.3, rel=0.05)
    assert nh.mean(axis=0) == pytest.approx(np.full(tower.sum(), 0.3 / tower.sum()), abs=0.002)
    # the joint is an independent mask's: a binomial count of lit pixels, not exactly one
    n_lit = (nh > 0).sum(axis=1)
    assert np.mean(n_lit == 0) == pytest.approx((1 - 1 / tower.sum()) ** tower.sum(), abs=0.03)
    assert np.mean(n_lit >= 2) > 0.2


def test_photons_use_ecal_towers_and_the_default_redraws_both() -> None:
    cands, axis = _jets(2000)
    ref = pixelise(cands, axis, SEED000_DETECTOR)
    only_photons = independent_tower_images(cands, axis, np.random.default_rng(2), {22: "ecal"})
    both = independent_tower_images(cands, axis, np.random.default_rng(2))
    photon_pixel = (int((-0.06 + 0.15) / (0.3 / 32)), int((0.05 + 0.15) / (0.3 / 32)))  # (9, 21)
    changed = np.any(only_photons != ref, axis=0)
    # ECAL towers are about 2 x 2 pixels: only pixels next to the photon's change
    ie, ip = np.nonzero(changed)
    assert changed[photon_pixel] and np.all(np.abs(ie - photon_pixel[0]) <= 2) and np.all(np.abs(ip - photon_pixel[1]) <= 2)
    assert only_photons.sum(axis=(1, 2)).mean() == pytest.approx(ref.sum(axis=(1, 2)).mean(), rel=0.01)
    assert np.any(both[:, 18, :] != ref[:, 18, :])  # the neutral hadron's row changes too
    with pytest.raises(ValueError, match="'ecal' or 'hcal'"):
        independent_tower_images(cands, axis, np.random.default_rng(2), {22: "preshower"})


def test_reference_jets_are_those_of_the_image_validation() -> None:
    cands, axis, event = reference_constituents(str(EXAMPLE))
    pairs = build_pairs([str(EXAMPLE)])
    assert len(axis) == len(pairs) > 500
    np.testing.assert_array_equal(event, pairs.event)
    np.testing.assert_allclose(pixelise(cands, axis, SEED000_DETECTOR), pairs.reco.dense(), atol=1e-6)
    few, _, _ = reference_constituents(str(EXAMPLE), max_jets=100)
    assert len(few) == 100


def test_table_measures_the_redrawn_images_against_the_reference() -> None:
    cands, axis, event = reference_constituents(str(EXAMPLE))
    ref = pixelise(cands, axis, SEED000_DETECTOR)
    redrawn = independent_tower_images(cands, axis, np.random.default_rng(4))
    table = mask_limit_table(ref, {"same": ref, "redrawn": redrawn}, axis, event)
    same, red = table["same"], table["redrawn"]
    assert same["w1_ratio"]["ring1"] == pytest.approx(1.0, abs=1e-9)  # identical images: the floor itself
    assert same["total_half_width"] == pytest.approx(same["reference_total_half_width"])
    # the redrawn totals are wider: a tower gets 0, 1, 2, ... copies of its candidate
    assert red["total_half_width"] > 1.2 * red["reference_total_half_width"]
    assert red["w1_ratio"]["total"] > 2.0 and red["criterion_max"] >= red["criterion_mean"] > 1.0


def test_a_file_without_pf_candidates_names_the_missing_branch(tmp_path: Path) -> None:
    from hepfastsim.errors import BranchNotFoundError
    from nanoaod_factory import write_nanoaod

    path = write_nanoaod(tmp_path / "gen_only.root", 20)
    with pytest.raises(BranchNotFoundError, match="gen_only.root") as err:
        reference_constituents(str(path))
    assert err.value.branch.startswith(("Jet_", "PFCands_", "JetPFCands_"))
