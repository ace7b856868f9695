"""The residual jet-response calibration per gen pT x |eta| bin, on known distributions."""

from __future__ import annotations

import numpy as np
import pytest

from hepfastsim.errors import HepfastsimError
from hepfastsim.evaluation.metrics import response_table
from hepfastsim.models.kinematics_calibration import ResponseCalibration, fit_response_calibration

PT_EDGES = (20.0, 100.0, 1000.0)
ETA_EDGES = (0.0, 3.0, 5.0)


def _jets(rng: np.random.Generator, n: int, widths: dict[int, float], medians: dict[int, float]) -> dict[str, np.ndarray]:
    """Jets in the four bins (|eta|-major), ln(response) normal with the bin's median and width."""
    gen_pt = np.where(rng.random(n) < 0.5, rng.uniform(25, 95, n), rng.uniform(150, 900, n))
    gen_eta = np.where(rng.random(n) < 0.5, rng.uniform(-2.9, 2.9, n), rng.choice([-1, 1], n) * rng.uniform(3.1, 4.9, n))
    k = (np.abs(gen_eta) > 3).astype(int) * 2 + (gen_pt > 100).astype(int)
    log_r = np.log(np.array([medians[i] for i in k])) + rng.normal(0, 1, n) * np.array([widths[i] for i in k])
    return {"gen_pt": gen_pt, "gen_eta": gen_eta, "pt": gen_pt * np.exp(log_r)}


def test_calibrated_model_has_the_reference_median_and_resolution_in_every_bin() -> None:
    """A model 10% too narrow and 2% low in the forward high-pT bin and right elsewhere: after the
    calibration, fresh model jets have the reference's median (within 0.3%) and resolution
    (within 2%) in every bin, where before the forward bin's resolution was 10% off; the bins
    that were right get width factors within 2% of 1."""
    ref_w = {0: 0.10, 1: 0.06, 2: 0.15, 3: 0.12}
    mod_w = {**ref_w, 3: 0.108}
    ref_m = {0: 1.0, 1: 1.0, 2: 1.0, 3: 1.02}
    mod_m = {**ref_m, 3: 1.0}
    rng = np.random.default_rng(1)
    cal = fit_response_calibration(_jets(rng, 160_000, mod_w, mod_m), _jets(rng, 40_000, ref_w, ref_m), PT_EDGES,
                                   ETA_EDGES)
    assert abs(cal.scale[3] - 1.11) < 0.03 and all(abs(s - 1) < 0.02 for s in cal.scale[:3]), cal.scale
    ref, fresh = _jets(rng, 100_000, ref_w, ref_m), _jets(rng, 100_000, mod_w, mod_m)
    table = lambda j: response_table(j["gen_pt"], j["gen_eta"], j["pt"], PT_EDGES, ETA_EDGES, n_bootstrap=2)  # noqa: E731
    before = table(fresh)
    after = table({**fresh, "pt": cal.apply(fresh["gen_pt"], fresh["gen_eta"], fresh["pt"])})
    for r, b, a in zip(table(ref), before, after):
        assert abs(a.median / r.median - 1) < 0.003 and abs(a.resolution / r.resolution - 1) < 0.02, (r, a)
    assert before[3].resolution / table(ref)[3].resolution < 0.92


def test_the_map_is_monotone_and_leaves_bad_rows_alone() -> None:
    cal = ResponseCalibration(PT_EDGES, ETA_EDGES, (0.0, 0.01, 0.0, -0.02), (0.0, 0.02, 0.0, 0.01), (1.0, 1.3, 0.9, 1.1))
    pt = np.linspace(50, 500, 101)
    out = cal.apply(np.full(101, 200.0), np.full(101, 3.5), pt)
    assert np.all(np.diff(out) > 0)
    # the pivot (median) of a bin moves by the shift only
    assert np.isclose(cal.apply(np.array([200.0]), np.array([-3.5]), np.array([200.0 * np.exp(-0.02)]))[0],
                      200.0 * np.exp(-0.02 + 0.01))
    bad = cal.apply(np.array([0.0, 50.0, np.nan, 50.0]), np.array([0.0, 0.0, 0.0, np.inf]), np.array([10.0, -1.0, 5.0, 7.0]))
    assert np.array_equal(bad, [10.0, -1.0, 5.0, 7.0])
    # beyond the outer edges: the end bins
    assert list(cal.bin_index(np.array([5.0, 5000.0, 50.0]), np.array([0.0, 9.0, -3.0]))) == [0, 3, 2]


def test_small_bins_stay_unchanged_and_the_record_says_so() -> None:
    rng = np.random.default_rng(2)
    w, m = {i: 0.1 for i in range(4)}, {i: 1.0 for i in range(4)}
    ref = _jets(rng, 3000, w, m)
    cal = fit_response_calibration(ref, ref, PT_EDGES, ETA_EDGES, min_jets=1000)
    assert cal.scale == (1.0,) * 4 and cal.shift == (0.0,) * 4
    assert [b["reference_jets"] for b in cal.record["bins"]] == [int(x) for x in np.bincount(
        cal.bin_index(ref["gen_pt"], ref["gen_eta"]), minlength=4)]
    assert not any("scale" in b for b in cal.record["bins"])
    same = fit_response_calibration(ref, ref, PT_EDGES, ETA_EDGES, min_jets=500)
    assert np.allclose(same.scale, 1.0) and np.allclose(same.shift, 0.0)
    with pytest.raises(HepfastsimError, match="0 reference"):
        fit_response_calibration({**ref, "pt": -ref["pt"]}, ref, PT_EDGES, ETA_EDGES)
    with pytest.raises(HepfastsimError, match="no width factor"):
        fit_response_calibration(ref, {**ref, "pt": ref["pt"] * np.exp(20 * (np.log(ref["pt"] / ref["gen_pt"])))},
                                 PT_EDGES, ETA_EDGES, min_jets=500)


def test_dict_round_trip_and_shape_check() -> None:
    cal = ResponseCalibration(PT_EDGES, ETA_EDGES, (0.0, 0.01, 0.0, -0.02), (0.0, 0.02, 0.0, 0.01), (1.0, 1.3, 0.9, 1.1),
                              {"draws": 4})
    assert ResponseCalibration.from_dict(cal.to_dict()) == cal
    with pytest.raises(ValueError, match="4 bins"):
        ResponseCalibration(PT_EDGES, ETA_EDGES, (0.0,), (0.0,), (1.0,))
