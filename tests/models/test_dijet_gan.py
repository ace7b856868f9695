from __future__ import annotations

import numpy as np
import pytest
import torch
import uproot

from hepfastsim.cli.main import main
from hepfastsim.models.dijet_gan import (
    FEATURES,
    DijetGAN,
    DijetGANConfig,
    FeatureScaler,
    chi2_per_feature,
    dijet_mass,
    feature_mjj,
    from_features,
    tail_weights,
    to_features,
    train_dijet_gan,
)


def _toy(n: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    j1 = {"pt": 800 + rng.exponential(200, n), "eta": rng.normal(0, 1, n), "phi": rng.uniform(-3, 3, n), "mass": rng.gamma(4, 20, n)}
    j2 = {"pt": j1["pt"] * rng.uniform(0.7, 1, n), "eta": rng.normal(0, 1, n),
          "phi": j1["phi"] + np.pi + rng.normal(0, 0.2, n), "mass": rng.gamma(4, 20, n)}
    return j1, j2


def test_symmetry_reduction_keeps_the_physics() -> None:
    j1, j2 = _toy(2000)
    x = to_features(j1, j2)
    assert x.shape == (2000, len(FEATURES)) and np.all((x[:, 5] >= 0) & (x[:, 5] <= np.pi))
    back = from_features(x, np.random.default_rng(1))
    import vector

    original = (vector.array(j1) + vector.array(j2)).mass
    np.testing.assert_allclose(dijet_mass(back), original, rtol=1e-9)  # rotations and eta flip keep mjj
    assert np.all(back["j1_pt"] >= back["j2_pt"])
    assert abs(np.mean(back["j1_eta"] > 0) - 0.5) < 0.05  # eta flipped at random


def test_scaler_round_trip() -> None:
    x = to_features(*_toy(500))
    scaler = FeatureScaler.fit(x)
    z = scaler.transform(x)
    assert z.min() >= -1 - 1e-12 and z.max() <= 1 + 1e-12
    np.testing.assert_allclose(scaler.inverse(z), x, rtol=1e-9, atol=1e-9)


def test_chi2_metric() -> None:
    x = to_features(*_toy(4000, 0))
    y = to_features(*_toy(4000, 1))
    same = chi2_per_feature(x, y)
    assert all(0.4 < v < 2.0 for v in same.values())
    shifted = y.copy()
    shifted[:, 0] *= 1.2
    assert chi2_per_feature(x, shifted)["j1_pt"] > 10


def test_training_improves_and_weights_load_without_pickle(tmp_path) -> None:
    torch.set_num_threads(1)
    x = to_features(*_toy(1500))
    untrained, _ = train_dijet_gan(x[:1000], DijetGANConfig(iterations=1, eval_every=1), validation=x[1000:])
    trained, history = train_dijet_gan(x[:1000], DijetGANConfig(iterations=300, eval_every=100, lr=1e-3), validation=x[1000:])
    before = np.mean(list(chi2_per_feature(x[1000:], untrained.sample_features(500, seed=3)).values()))
    after = min(h["mean_chi2"] for h in history)
    assert after < before
    path = tmp_path / "gan.safetensors"
    trained.metadata = {"training_data": ["toy"]}
    trained.save(path)
    assert b"pickle" not in path.read_bytes()[:64]
    loaded = DijetGAN.load(path)
    np.testing.assert_array_equal(loaded.sample_features(100, seed=5), trained.sample_features(100, seed=5))
    assert loaded.metadata["training_data"] == ["toy"]


def test_generate_cli_writes_nanoaod_like_dijets(tmp_path) -> None:
    torch.set_num_threads(1)
    x = to_features(*_toy(600))
    gan, _ = train_dijet_gan(x, DijetGANConfig(iterations=20, eval_every=10), validation=x[:200])
    gan.metadata = {"selection": {"min_pt": 0.0, "max_abs_eta": 10.0}}
    gan.save(tmp_path / "gan.safetensors")
    out = tmp_path / "gan.root"
    assert main(["dijet-gan", "generate", "--model", str(tmp_path / "gan.safetensors"), "--events", "1000", "--out", str(out)]) == 0
    events = uproot.open(out)["Events"].arrays()
    assert len(events) == 1000 and np.all(events.nJet == 2)
    assert np.all(events.Jet_pt[:, 0] >= events.Jet_pt[:, 1])
    with pytest.raises(SystemExit):
        main(["dijet-gan", "generate", "--events", "10", "--out", str(tmp_path / "x.root")])  # --model missing


def test_feature_mjj_is_the_dijet_mass() -> None:
    x = to_features(*_toy(1000))
    np.testing.assert_allclose(feature_mjj(x), dijet_mass(from_features(x, np.random.default_rng(3))), rtol=1e-9)


def test_tail_weights_restore_the_physical_spectrum() -> None:
    """Events drawn ~ mjj^k (as tail-enhanced training draws them), weighted by tail_weights,
    give back the physical mjj histogram; unweighted they over-populate the tail."""
    physical = to_features(*_toy(200_000, seed=4))
    k = 5.0
    p = tail_weights(physical, -k)
    rows = np.random.default_rng(5).choice(len(physical), 200_000, p=p / p.sum())
    enhanced = physical[rows]
    w = tail_weights(enhanced, k)
    assert abs(w.mean() - 1.0) < 1e-12
    edges = np.quantile(feature_mjj(physical), [0, 0.5, 0.9, 0.99, 0.999])
    ref, _ = np.histogram(feature_mjj(physical), edges)
    raw, _ = np.histogram(feature_mjj(enhanced), edges)
    got, _ = np.histogram(feature_mjj(enhanced), edges, weights=w)
    err = np.sqrt(np.histogram(feature_mjj(enhanced), edges, weights=w**2)[0])
    assert raw[-1] > 3 * ref[-1]  # the enhanced sample has many more tail events
    assert np.all(np.abs(got - ref) < 5 * err + 5 * np.sqrt(ref))
    chi2 = chi2_per_feature(physical[:20000], enhanced[:40000], candidate_weights=w[:40000])
    assert all(v < 3.0 for v in chi2.values())
    assert np.all(tail_weights(physical[:10], 0.0) == 1.0)


def test_tail_enhanced_generation_writes_weights(tmp_path) -> None:
    torch.set_num_threads(1)
    x = to_features(*_toy(600))
    gan, history = train_dijet_gan(x, DijetGANConfig(iterations=20, eval_every=10, tail_power=4.0), validation=x[:200])
    assert gan.tail_power == 4.0 and len(history) == 2
    gan.metadata = {"selection": {"min_pt": 0.0, "max_abs_eta": 10.0}, "config": {"tail_power": 4.0}}
    gan.save(tmp_path / "gan.safetensors")
    out = tmp_path / "gan.root"
    assert main(["dijet-gan", "generate", "--model", str(tmp_path / "gan.safetensors"), "--events", "1000", "--seed", "2",
                 "--out", str(out)]) == 0
    events = uproot.open(out)["Events"].arrays()
    expected = DijetGAN.load(tmp_path / "gan.safetensors")
    features = expected.sample_features(1000, seed=2)
    np.testing.assert_allclose(np.asarray(events.genWeight), expected.weights(features), rtol=1e-6)
    assert np.std(np.asarray(events.genWeight)) > 0


def test_shipped_tail_model_is_documented_and_weighted() -> None:
    from pathlib import Path

    path = Path(__file__).parents[2] / "hepfastsim" / "models" / "data" / "dijet_gan_reco_tail.safetensors"
    assert path.stat().st_size < 2_000_000
    gan = DijetGAN.load(path)
    assert gan.tail_power > 0 and "--tail-power" in gan.metadata["retrain_command"]
    assert set(gan.metadata["validation_chi2_per_ndf"]) >= set(FEATURES)
    features = gan.sample_features(20000, seed=1)
    w = gan.weights(features)
    mjj = feature_mjj(features)
    # heavier events carry smaller weights, and the weights average to 1
    assert abs(w.mean() - 1) < 1e-9 and np.all(np.diff(w[np.argsort(mjj)]) <= 1e-12)


def test_negative_tail_power_is_refused(tmp_path, capsys) -> None:
    out = tmp_path / "gan.safetensors"
    assert main(["dijet-gan", "train", "--data", "x.root", "--tail-power", "-1", "--out", str(out)]) == 1
    assert "--tail-power" in capsys.readouterr().err and not out.exists()


def test_train_refuses_to_overwrite_either_model_file(tmp_path, capsys) -> None:
    (tmp_path / "gan.json").write_text("{}")  # the metadata half of an earlier model
    out = tmp_path / "gan.safetensors"
    assert main(["dijet-gan", "train", "--data", "x.root", "--out", str(out)]) == 1
    assert "gan.json" in capsys.readouterr().err and not out.exists()
    assert (tmp_path / "gan.json").read_text() == "{}"
