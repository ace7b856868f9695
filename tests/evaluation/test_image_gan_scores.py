"""The seed-004 score: exact 2-D EMD against analytic cases, (m, tau21) grid and observables."""

from __future__ import annotations

import numpy as np
import pytest

from hepfastsim.errors import HepfastsimError
from hepfastsim.evaluation.image_gan_scores import ScoreGrid, emd_2d, lagan_observables, lagan_score, pmf_2d


def _point(i: int, j: int, n: int = 40) -> np.ndarray:
    h = np.zeros((n, n))
    h[i, j] = 1.0
    return h


def test_emd_identical_is_zero() -> None:
    rng = np.random.default_rng(0)
    p = rng.random((40, 40)) * (rng.random((40, 40)) < 0.1)
    p /= p.sum()
    assert emd_2d(p, p) == pytest.approx(0.0, abs=1e-9)


@pytest.mark.parametrize("shift,expected", [((3, 0), 3.0), ((0, 7), 7.0), ((3, 4), 5.0)])
def test_emd_of_a_shift_is_the_shift(shift: tuple[int, int], expected: float) -> None:
    rng = np.random.default_rng(1)
    p = np.zeros((40, 40))
    p[5:15, 5:12] = rng.random((10, 7))
    p /= p.sum()
    q = np.roll(p, shift, axis=(0, 1))
    assert emd_2d(p, q) == pytest.approx(expected, rel=1e-9)
    assert emd_2d(q, p) == pytest.approx(expected, rel=1e-9)


def test_emd_split_mass() -> None:
    # half the mass moves 2 bins, the other half stays: EMD = 1
    p = _point(10, 10)
    q = 0.5 * _point(10, 10) + 0.5 * _point(12, 10)
    assert emd_2d(p, q) == pytest.approx(1.0)


def test_emd_rejects_bad_input() -> None:
    with pytest.raises(HepfastsimError, match="normalised"):
        emd_2d(2 * _point(1, 1), _point(1, 1))
    with pytest.raises(HepfastsimError, match="shape"):
        emd_2d(_point(1, 1), _point(1, 1, n=20))


def test_pmf_grid_overflow_goes_to_edges() -> None:
    grid = ScoreGrid(bins=4, mass_range=(0.0, 100.0), tau21_range=(0.0, 1.0))
    h = pmf_2d(np.array([-5.0, 10.0, 500.0, np.nan]), np.array([0.5, 0.1, 2.0, 0.3]), grid)
    assert h.sum() == pytest.approx(1.0)
    assert h[0, 2] == pytest.approx(1 / 3) and h[0, 0] == pytest.approx(1 / 3) and h[3, 3] == pytest.approx(1 / 3)


def test_lagan_score_is_max_over_classes() -> None:
    rng = np.random.default_rng(2)
    ref = {c: {"mass": rng.uniform(20, 120, 2000), "tau21": rng.uniform(0.1, 0.9, 2000)} for c in ("qcd", "w")}
    gen = {"qcd": ref["qcd"], "w": {"mass": ref["w"]["mass"] + 25.0, "tau21": ref["w"]["tau21"]}}
    out = lagan_score(gen, ref)
    assert out["emd_qcd"] == pytest.approx(0.0, abs=1e-9)
    assert out["emd_w"] == pytest.approx(5.0, abs=0.3)  # 25 GeV = 5 bins of 5 GeV
    assert out["score"] == out["emd_w"]


def test_two_prong_image_observables() -> None:
    # two equal deposits 0.4 apart in eta at pT 100 GeV each: m = 2 pT sinh(d/2) ~ pT * d = 40 GeV
    img = np.zeros((1, 25, 25))
    img[0, 10, 12] = 100.0
    img[0, 14, 12] = 100.0
    obs = lagan_observables(img)
    assert obs["mass"][0] == pytest.approx(2 * 100.0 * np.sinh(0.2), rel=1e-6)
    assert obs["tau21"][0] == pytest.approx(0.0, abs=1e-9)  # two axes on the two deposits
    assert obs["pt"][0] == pytest.approx(200.0, rel=1e-3)
