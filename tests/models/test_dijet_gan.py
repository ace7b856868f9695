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
    from_features,
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
