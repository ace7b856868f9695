"""``validate --level images``: reference images from JetPFCands, metrics on the same gen jets."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from hepfastsim.evaluation.validate_images import SEED_CRITERION, VARIABLES, _quantiles, compare, reference_jets

EXAMPLE = Path(__file__).parents[2] / "examples" / "qcd_small.root"


@pytest.fixture(scope="module")
def reference():  # noqa: ANN201
    return reference_jets(str(EXAMPLE))


def test_reference_observables_are_physical(reference) -> None:  # noqa: ANN001
    ref, pairs = reference
    v = ref.values
    assert len(ref.event) == len(pairs) > 500
    # the reco image keeps all of the reco jet's PF pT: its total is the raw reco pT / gen pT
    raw = pairs.reco_jet[:, 0] * (1 - pairs.reco_jet[:, 4])
    np.testing.assert_allclose(v["total"], pairs.reco.dense().sum(axis=(1, 2)), rtol=1e-5)
    assert np.median(v["total"] / (raw / ref.gen_pt)) == pytest.approx(1.0, abs=0.03)
    assert np.all((v["pTD"] > 0) & (v["pTD"] <= 1)) and np.all(v["majorAxis"] >= v["minorAxis"])


def test_identical_samples_give_ratio_one_and_auc_one_half(reference) -> None:  # noqa: ANN001
    ref, _ = reference
    result, r, c = compare(ref, ref.select(np.ones(len(ref.event), bool)), threads=1)
    assert result.n_common == len(ref.event)
    for v in VARIABLES:
        assert result.w1[v]["value"] == pytest.approx(1.0, abs=1e-9)  # W1(ref_A, ref_B) is the floor itself
    assert abs(result.auc[0] - 0.5) < 0.1
    assert result.to_dict()["criterion"]["pass"] and set(SEED_CRITERION) <= set(result.w1)


def test_shifted_candidate_is_flagged(reference) -> None:  # noqa: ANN001
    ref, _ = reference
    cand = ref.select(np.ones(len(ref.event), bool))
    cand.values = {k: v * (1.3 if k == "pTD" else 1.0) for k, v in cand.values.items()}
    result, _, _ = compare(ref, cand, threads=1)
    assert result.w1["pTD"]["value"] > 3 and result.w1["tau21"]["value"] == pytest.approx(1.0)
    assert not result.to_dict()["criterion"]["pass"]


def test_quantiles_match_numpy() -> None:
    rng = np.random.default_rng(0)
    x, y = rng.uniform(0, 10, 5000), rng.normal(size=5000)
    q = _quantiles(x, y, np.array([0.0, 5.0, 10.0]))
    np.testing.assert_allclose(q[0], np.percentile(y[x < 5], [10, 25, 50, 75, 90]))


def test_cli_end_to_end(tmp_path: Path) -> None:
    from hepfastsim.cli.main import main
    from hepfastsim.convert import ConvertConfig, convert

    convert(EXAMPLE, tmp_path / "out.root", ConvertConfig(model="image-gan"))
    rc = main(["validate", "--level", "images", "--reference", str(EXAMPLE), "--candidate", str(tmp_path / "out.root"),
               "--out", str(tmp_path / "val"), "--no-plots", "--threads", "1"])
    assert rc == 0
    summary = json.loads((tmp_path / "val" / "summary.json").read_text())
    assert set(VARIABLES) <= set(summary["w1_ratio"]) and np.isfinite(summary["classifier_auc"][0])
    assert summary["n_common_gen_jets"] > 500
    # --record-in: the headline figures go into a model JSON (a copy of the shipped one here)
    import shutil

    from hepfastsim.simulators.image_gan import DEFAULT_WEIGHTS

    model = tmp_path / "model"
    shutil.copy(DEFAULT_WEIGHTS.with_suffix(".json"), model.with_suffix(".json"))
    rc = main(["validate", "--level", "images", "--reference", str(EXAMPLE), "--candidate", str(tmp_path / "out.root"),
               "--out", str(tmp_path / "val2"), "--no-plots", "--threads", "1", "--record-in", str(model),
               "--record-name", "toy"])
    assert rc == 0
    recorded = json.loads(model.with_suffix(".json").read_text())["validation"]["toy"]
    assert recorded["w1_ratio"]["pTD"] == round(summary["w1_ratio"]["pTD"]["value"], 3)
    assert recorded["n_common_gen_jets"] == summary["n_common_gen_jets"]
