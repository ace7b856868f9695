"""Evaluation metrics against known distributions, and validate end to end on toy files."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest

from hepfastsim.cli.main import main
from hepfastsim.errors import HepfastsimError
from hepfastsim.evaluation.metrics import (
    auc_error,
    classifier_auc,
    efficiency_curve,
    mean_with_error,
    response_table,
    w1_ratio,
    wasserstein1,
)
from hepfastsim.evaluation.validate import read_jets, summary_markdown, validate

from paired_factory import write_paired


def test_w1_of_shifted_gaussians_is_the_shift() -> None:
    rng = np.random.default_rng(0)
    a, b = rng.normal(0, 1, 50_000), rng.normal(0.3, 1, 50_000)
    assert wasserstein1(a, b) == pytest.approx(0.3, abs=0.02)
    assert wasserstein1(a, a) == 0.0
    # against a naive loop: W1 of equal-size samples is the mean |sorted difference|
    x, y = rng.normal(size=200), rng.exponential(size=200)
    assert wasserstein1(x, y) == pytest.approx(np.mean(np.abs(np.sort(x) - np.sort(y))), rel=1e-12)


def test_w1_ratio_is_one_for_the_same_distribution_and_large_for_a_shift() -> None:
    rng = np.random.default_rng(1)
    n = 20_000
    ev = np.arange(n)
    ref, same = rng.normal(0, 1, n), rng.normal(0, 1, n)
    r = w1_ratio(ref, same, ev, ev)
    assert 0.7 < r.value < 1.4
    assert r.error < 0.3
    shifted = w1_ratio(ref, rng.normal(0.2, 1, n), ev, ev)
    assert shifted.value > 5
    assert shifted.w1 == pytest.approx(0.2, abs=0.03)
    with pytest.raises(ValueError, match="one event id per entry"):
        w1_ratio(ref, same, ev[:-1], ev)


def test_w1_ratio_splits_events_without_reference_entries_too() -> None:
    """Pileup-like entries: a per-event level u sets both how many entries an event has and
    their values. A candidate drawn from the same process must score ~1, although many events
    have candidate entries but no reference entry (splitting only the events that have
    reference entries sent all of those to one half and gave 6.5 here)."""
    rng = np.random.default_rng(3)
    n = 40_000
    u = rng.normal(size=n)

    def draw() -> tuple[np.ndarray, np.ndarray]:
        counts = rng.poisson(np.exp(u))
        ev = np.repeat(np.arange(n), counts)
        return u[ev] + rng.normal(0, 0.3, len(ev)), ev

    (ref, ref_ev), (cand, cand_ev) = draw(), draw()
    assert len(np.setdiff1d(cand_ev, ref_ev)) > 0.1 * n
    r = w1_ratio(ref, cand, ref_ev, cand_ev)
    assert 0.7 < r.value < 1.4


def test_classifier_auc_half_for_identical_one_for_separable() -> None:
    rng = np.random.default_rng(2)
    n = 4000
    gen = rng.normal(size=(n, 2))
    ev = np.arange(n)
    ref = np.column_stack([gen, gen[:, 0] + rng.normal(0, 0.1, n)])
    same = np.column_stack([gen, gen[:, 0] + rng.normal(0, 0.1, n)])
    auc, err = classifier_auc(ref, same, ev, ev, seed=1, threads=1)
    assert abs(auc - 0.5) < 0.04 and 0 < err < 0.02
    # the same marginal, a wrong conditional: only the gen-conditioned test can see it
    wrong = np.column_stack([gen, -gen[:, 0] + rng.normal(0, 0.1, n)])
    assert classifier_auc(ref, wrong, ev, ev, threads=1)[0] > 0.95


def test_auc_error_hanley_mcneil() -> None:
    # by hand: AUC 0.8, 50 + 50 -> Q1 = 0.8/1.2 = 0.6667, Q2 = 1.28/1.8 = 0.7111,
    # var = (0.16 + 49 * 0.02667 + 49 * 0.07111) / 2500 = 0.001980, SE = 0.0445
    assert auc_error(0.8, 50, 50) == pytest.approx(0.0445, abs=2e-4)


def test_response_table_of_a_gaussian_response() -> None:
    rng = np.random.default_rng(3)
    n = 40_000
    pt = rng.uniform(20, 200, n)
    eta = rng.uniform(-2.0, 2.0, n)
    sigma = np.where(pt < 100, 0.2, 0.1)
    bins = response_table(pt, eta, pt * rng.normal(1.0, sigma), pt_edges=(20, 100, 200), eta_edges=(0, 1.3, 2.5))
    assert [b.n for b in bins] == [
        int(np.sum((np.abs(eta) >= e0) & (np.abs(eta) < e1) & (pt >= p0) & (pt < p1)))
        for e0, e1 in ((0, 1.3), (1.3, 2.5)) for p0, p1 in ((20, 100), (100, 200))
    ]
    for b, s in zip(bins, (0.2, 0.1, 0.2, 0.1)):
        assert b.median == pytest.approx(1.0, abs=4 * b.median_error + 1e-3)
        assert b.resolution == pytest.approx(s, rel=0.05)
        assert 0 < b.median_error < 0.01


def test_efficiency_curve_against_a_loop() -> None:
    rng = np.random.default_rng(4)
    x = rng.uniform(0, 10, 1000)
    passed = rng.random(1000) < x / 10
    edges = [0, 2, 5, 10]
    eff, err, total = efficiency_curve(x, passed, edges)
    for i in range(3):
        sel = (x >= edges[i]) & (x < edges[i + 1])
        assert total[i] == sel.sum()
        assert eff[i] == pytest.approx(passed[sel].mean())
        assert err[i] == pytest.approx(np.sqrt(eff[i] * (1 - eff[i]) / sel.sum()))
    m, e = mean_with_error(np.array([1.0, 2.0, 3.0]))
    assert (m, e) == pytest.approx((2.0, 1.0 / np.sqrt(3)))


@pytest.fixture(scope="module")
def toy_pair(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A reference file and one with the same gen events but wider response and lower efficiency."""
    d = tmp_path_factory.mktemp("val")
    ref = write_paired(d / "ref.root", 1500, seed=5)
    wide = write_paired(d / "wide.root", 1500, seed=5, resolution=0.25, eff=0.6)
    return ref, wide


def test_validate_reference_against_itself_passes(toy_pair: tuple[Path, Path]) -> None:
    ref_path, wide_path = toy_pair
    ref = read_jets(ref_path, "Jet")
    res = validate(ref, {"self": read_jets(ref_path, "Jet"), "wide": read_jets(wide_path, "Jet")},
                   pt_edges=(20, 60, 1000), eta_edges=(0, 2.5, 5), seed=0, threads=1)
    own = res.checks("self")
    assert own["max |median shift|"][0] == 0 and own["efficiency shift"][0] == 0
    assert abs(res.candidates["self"].auc[0] - 0.5) < 0.05
    assert all(0.6 < r.value < 1.6 for r in res.candidates["self"].w1.values())
    wide = res.checks("wide")
    assert wide["efficiency shift"][0] == pytest.approx(0.6 / 0.8 - 1, abs=0.05)
    assert wide["max |resolution shift|"][0] > 0.5 and not wide["max |resolution shift|"][1]
    assert res.candidates["wide"].auc[0] > 0.6
    text = summary_markdown(res)
    assert "| W1 ratio pt |" in text and "self" in text and "wide" in text
    # the per-bin shifts carry their statistical error: for the reference against itself both
    # samples' bootstrap errors are the reference's, so the error is sqrt(2) x its relative error
    rb = next(b for b in res.reference_response if b.n >= res.criteria.min_bin_jets)
    stat = np.sqrt(2) * rb.resolution_error / rb.resolution
    assert stat > 0 and f"{rb.resolution:.4f} (+0.0000 ± {stat:.4f})" in text


def test_a_bin_fails_only_where_its_errors_can_tell(toy_pair: tuple[Path, Path]) -> None:
    """A resolution shift beyond the 5% tolerance fails when the bin resolves the tolerance
    (error <= 2.5%) or the excess is over 2 errors; a poorly measured bin 1 error beyond it is
    reported as within errors and not counted."""
    ref = read_jets(toy_pair[0], "Jet")
    res = validate(ref, {"self": read_jets(toy_pair[0], "Jet")}, pt_edges=(20, 60, 1000), eta_edges=(0, 2.5, 5),
                   seed=0, threads=1)
    c = res.candidates["self"]
    assert len(c.resolution_shift) == 4 and all(np.isfinite(c.resolution_shift))

    def verdict(shift: float, error: float) -> tuple[float, bool]:
        res.candidates["self"] = dataclasses.replace(c, resolution_shift=[0.0, 0.01, shift, -0.02],
                                                     resolution_shift_error=[0.01, 0.01, error, 0.01])
        return res.checks("self")["max |resolution shift|"]

    assert verdict(0.065, 0.060) == (pytest.approx(0.02), True)  # 1 error beyond, error > 2.5%
    assert "+0.0650 ± 0.0600, within errors" in summary_markdown(res)
    assert "1 more beyond it within errors" in summary_markdown(res)
    assert verdict(0.065, 0.006) == (pytest.approx(0.065), False)  # the bin resolves the tolerance
    assert verdict(0.300, 0.060) == (pytest.approx(0.300), False)  # 4 errors beyond
    assert verdict(-0.065, 0.060) == (pytest.approx(0.02), True)
    res.candidates["self"] = c


def test_validate_rejects_different_events(toy_pair: tuple[Path, Path], tmp_path: Path) -> None:
    other = write_paired(tmp_path / "other.root", 300, seed=9)
    with pytest.raises(HepfastsimError, match="same gen events"):
        validate(read_jets(toy_pair[0], "Jet"), {"x": read_jets(other, "Jet")}, threads=1)


def test_cli_validate_writes_plots_and_tables(toy_pair: tuple[Path, Path], tmp_path: Path, capsys) -> None:
    ref, wide = toy_pair
    out = tmp_path / "val"
    rc = main(["validate", "--reference", str(ref), "--candidate", f"wide={wide}", "--candidate-collection", "Jet",
               "--out", str(out), "--min-bin-jets", "100", "--threads", "1"])
    assert rc == 0
    summary = json.loads((out / "summary.json").read_text())
    assert set(summary["candidates"]) == {"wide"}
    pngs = sorted(p.name for p in out.glob("*.png"))
    assert {"dist_pt.png", "efficiency_pt.png", "unmatched_vs_npu.png", "response_eta0.png"} <= set(pngs)
    assert all((out / p).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" for p in pngs)
    assert "classifier AUC" in capsys.readouterr().out
    # --record-in adds the headline figures to a model's JSON metadata
    meta = tmp_path / "model.json"
    meta.write_text(json.dumps({"format": "x"}))
    assert main(["validate", "--reference", str(ref), "--candidate", f"wide={wide}", "--candidate-collection", "Jet",
                 "--out", str(out), "--no-plots", "--threads", "1", "--record-in", str(tmp_path / "model"),
                 "--record-name", "toy"]) == 0
    recorded = json.loads(meta.read_text())["validation"]["toy"]
    assert recorded["wide"]["checks"]["efficiency shift"][1] is False
    assert set(recorded["wide"]["w1_ratio"]) == {"pt", "eta", "phi", "mass", "nConstituents", "area"}
    assert set(recorded["wide"]["bins_within_errors"]) == {"median", "resolution"}
    assert main(["validate", "--reference", str(ref), "--candidate", str(wide), "--out", str(out)]) == 1
    assert "FastJet_pt" in capsys.readouterr().err
    assert main(["validate", "--reference", str(ref), "--candidate", f"wide={wide}", "--candidate-collection", "Jet",
                 "--out", str(tmp_path / "bad"), "--max-error-fraction", "0"]) == 1
    assert "--max-error-fraction must be positive" in capsys.readouterr().err and not (tmp_path / "bad").exists()


def test_validate_pools_oversampled_draws_for_response_and_efficiency(toy_pair: tuple[Path, Path], tmp_path: Path) -> None:
    import awkward as ak
    import uproot

    from hepfastsim.convert import ConvertConfig, convert

    ref_path = toy_pair[0]
    over, once = tmp_path / "over.root", tmp_path / "once.root"
    convert(ref_path, over, ConvertConfig(model="parametric", seed=3, oversample=4))
    convert(ref_path, once, ConvertConfig(model="parametric", seed=3))
    ref = read_jets(ref_path, "Jet")
    first = read_jets(over, "FastJet")
    pooled = read_jets(over, "FastJet", all_draws=True)
    assert first.n_draws == pooled.n_draws == 4 and pooled.n_events == 4 * ref.n_events
    kw = dict(pt_edges=(20, 60, 1000), eta_edges=(0, 2.5, 5), seed=0, threads=1)
    res = validate(ref, {"x": first}, pooled={"x": pooled}, **kw)
    alone = validate(ref, {"x": first}, **kw)
    c, a = res.candidates["x"], alone.candidates["x"]
    # W1 and AUC: draw 0 only, as without pooling
    assert {v: r.value for v, r in c.w1.items()} == {v: r.value for v, r in a.w1.items()} and c.auc == a.auc
    # efficiency and response: every draw, counted independently from the file
    t = uproot.open(over)["Events"].arrays(["FastJet_genJetIdx", "GenJet_pt", "FastSim_oversampleIdx"])
    matched = ak.sum(t.FastJet_genJetIdx >= 0)
    assert c.pooled_draws == 4 and c.efficiency[0] == pytest.approx(matched / ak.sum(ak.num(t.GenJet_pt)))
    assert sum(b.n for b in c.response) == pytest.approx(4 * sum(b.n for b in a.response), rel=0.1)
    assert c.efficiency[1] == pytest.approx(a.efficiency[1] / 2, rel=0.1)  # 4x the gen jets: half the error
    assert "4 draws pooled" in summary_markdown(res)
    # a single draw pools to itself; a table that is not K draws of the reference's events is refused
    single = validate(ref, {"x": read_jets(once, "FastJet")}, pooled={"x": read_jets(once, "FastJet", all_draws=True)}, **kw)
    assert single.candidates["x"].pooled_draws == 1
    part = read_jets(over, "FastJet", all_draws=True, max_events=100)
    assert part.n_events == 400
    with pytest.raises(HepfastsimError, match="4 draws of each of the reference's 1500 events"):
        validate(ref, {"x": first}, pooled={"x": part}, **kw)
    # the CLI pools an --oversample output by itself
    assert main(["validate", "--reference", str(ref_path), "--candidate", f"x={over}", "--out", str(tmp_path / "v"),
                 "--no-plots", "--threads", "1", "--min-bin-jets", "100"]) == 0
    assert json.loads((tmp_path / "v" / "summary.json").read_text())["candidates"]["x"]["pooled_draws"] == 4


def test_w1_ratio_halves_depend_on_the_event_ids_alone() -> None:
    """Two candidates with different sets of events meet the same reference halves, so their
    floors are equal (before, one missing event reshuffled every half of the other events:
    the ratios of a far-off variable moved by half their value between identical candidates)."""
    rng = np.random.default_rng(4)
    n = 5000
    ev = np.arange(n)
    ref, cand = rng.normal(0, 1, n), rng.normal(0.5, 1, n)
    # the reference has no entry in events 0-9, one candidate has
    full = w1_ratio(ref[10:], cand, ev[10:], ev, seed=2)
    fewer = w1_ratio(ref[10:], cand[10:], ev[10:], ev[10:], seed=2)
    assert fewer.floor == full.floor
    assert fewer.value == pytest.approx(full.value, rel=0.02)
    assert w1_ratio(ref[10:], cand, ev[10:], ev, seed=3).floor != full.floor
