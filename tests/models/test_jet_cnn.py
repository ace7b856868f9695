"""Jet-image CNN (seed 002): shapes, preprocessing, a learnable toy task, AUC bookkeeping, save/load."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from hepfastsim.cli.train_jet_cnn import tagger_aucs
from hepfastsim.errors import ModelError
from hepfastsim.models.jet_cnn import JetCnn, JetCnnConfig, load_jet_cnn, predict, preprocess, save_jet_cnn, train_jet_cnn


def _toy_images(n: int, two_prong: bool, rng: np.random.Generator) -> np.ndarray:
    img = rng.exponential(0.05, (n, 25, 25)) * (rng.random((n, 25, 25)) < 0.05)
    img[:, 12, 12] += 150.0
    if two_prong:
        img[np.arange(n), 12 + rng.integers(3, 6, n), 12] += 100.0
    else:
        img[:, 11:14, 11:14] += rng.exponential(10.0, (n, 3, 3))
    return img.astype(np.float32)


def test_output_shape_and_preprocess() -> None:
    torch.manual_seed(0)
    model = JetCnn(JetCnnConfig(filters=4, hidden=8))
    x = preprocess(np.ones((3, 25, 25)) * 2.0)
    assert x.shape == (3, 1, 25, 25)
    torch.testing.assert_close(x, torch.full((3, 1, 25, 25), float(np.log1p(1000.0 / 625.0))))
    assert model(x).shape == (3,)
    assert preprocess(np.zeros((1, 25, 25))).abs().sum() == 0  # empty image: no NaN
    with pytest.raises(ModelError, match="25, 25"):
        preprocess(np.zeros((2, 24, 25)))


def test_learns_two_prong_vs_one_prong(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    w, q = _toy_images(400, True, rng), _toy_images(400, False, rng)
    wv, qv = _toy_images(100, True, rng), _toy_images(100, False, rng)
    model, hist = train_jet_cnn(w, q, wv, qv, JetCnnConfig(filters=4, hidden=8, epochs=3, batch_size=64, learning_rate=3e-3))
    p = predict(model, np.concatenate([wv, qv]))
    assert p.shape == (200,) and ((p >= 0) & (p <= 1)).all()
    from sklearn.metrics import roc_auc_score

    assert roc_auc_score(np.r_[np.ones(100), np.zeros(100)], p) > 0.95
    assert hist["val_loss"][hist["best_epoch"]] == min(hist["val_loss"])
    save_jet_cnn(model, tmp_path / "cnn", {"note": "toy"})
    loaded, meta = load_jet_cnn(tmp_path / "cnn")
    np.testing.assert_allclose(predict(loaded, wv), predict(model, wv), rtol=1e-6)
    assert meta["note"] == "toy" and meta["config"]["filters"] == 4


def test_tagger_aucs_known_cases() -> None:
    is_w = np.array([1, 1, 0, 0], bool)
    out = tagger_aucs(np.array([0.9, 0.8, 0.1, 0.2]), np.array([80.0, 81.0, 30.0, 150.0]),
                      np.array([0.9, 0.8, 0.2, 0.1]), is_w)
    assert out["cnn"][0] == 1.0 and out["mass_window"][0] == 1.0 and out["tau21"][0] == 0.0
