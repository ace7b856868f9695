"""The shared safetensors + JSON model file: round trips, float16 storage, clear errors."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from hepfastsim.errors import ModelError
from hepfastsim.models.weights_file import load_state, model_paths, read_model, record_validation, write_model


def test_paths_accept_either_suffix(tmp_path: Path) -> None:
    expected = (tmp_path / "m.safetensors", tmp_path / "m.json")
    for given in ("m", "m.safetensors", "m.json"):
        assert model_paths(tmp_path / given) == expected


def test_round_trip_half_selection_and_numpy_metadata(tmp_path: Path) -> None:
    tensors = {"w": torch.randn(3, 4), "k": torch.randn(2, 1, 3, 3), "i": torch.arange(5)}
    doc = {"format": "test-v1", "figures": {"w1": np.float64(1.25), "edges": np.array([0.0, 1.0])}}
    st, js = write_model(tmp_path / "sub" / "m", tensors, doc, half=lambda _n, t: t.dim() == 4)
    assert st.is_file() and js.is_file()
    back, meta = read_model(tmp_path / "sub" / "m.json", "test-v1", what="test model")
    assert meta["figures"] == {"w1": 1.25, "edges": [0.0, 1.0]}
    torch.testing.assert_close(back["w"], tensors["w"], rtol=0, atol=0)  # float32 kept exact
    assert back["k"].dtype == torch.float32  # stored float16, restored as float32
    torch.testing.assert_close(back["k"], tensors["k"].half().float(), rtol=0, atol=0)
    assert not torch.equal(back["k"], tensors["k"])
    assert back["i"].dtype == torch.int64 and torch.equal(back["i"], tensors["i"])


def test_errors_name_the_file(tmp_path: Path) -> None:
    with pytest.raises(ModelError, match=r"no file .*none\.safetensors.*train it"):
        read_model(tmp_path / "none", "test-v1", what="test model", hint=" (train it)")
    with pytest.raises(ModelError, match="has no 'format'"):
        write_model(tmp_path / "m", {"w": torch.zeros(2)}, {})
    write_model(tmp_path / "m", {"w": torch.zeros(2)}, {"format": "test-v1"})
    with pytest.raises(ModelError, match=r"m\.json.*expected format 'other-v2', got 'test-v1'"):
        read_model(tmp_path / "m", "other-v2", what="test model")
    (tmp_path / "m.json").write_text("{not json")
    with pytest.raises(ModelError, match=r"cannot read test model metadata .*m\.json"):
        read_model(tmp_path / "m", "test-v1", what="test model")
    (tmp_path / "m.json").write_text(json.dumps({"format": "test-v1"}))
    (tmp_path / "m.safetensors").write_bytes(b"\x00garbage")
    with pytest.raises(ModelError, match=r"cannot load test model weights .*m\.safetensors"):
        read_model(tmp_path / "m", "test-v1", what="test model")


def test_load_state_mismatch_names_both_files(tmp_path: Path) -> None:
    module = torch.nn.Linear(3, 2)
    write_model(tmp_path / "m", {"weight": torch.zeros(2, 4), "bias": torch.zeros(2)}, {"format": "test-v1"})
    state, _ = read_model(tmp_path / "m", "test-v1", what="test model")
    with pytest.raises(ModelError, match=r"m\.safetensors.*do not match the architecture in .*m\.json"):
        load_state(module, state, tmp_path / "m", what="test model")
    good = {"weight": torch.ones(2, 3), "bias": torch.ones(2)}
    load_state(module, good, tmp_path / "m", what="test model")
    assert torch.equal(module.weight, torch.ones(2, 3))


def test_record_validation_keeps_the_rest_and_names_a_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ModelError, match=r"no model metadata .*none\.json"):
        record_validation(tmp_path / "none", "held-out", {"auc": 0.5})
    assert not (tmp_path / "none.json").exists()
    write_model(tmp_path / "m", {"w": torch.zeros(2)}, {"format": "test-v1", "validation": {"old": {"auc": 0.6}}})
    meta = record_validation(tmp_path / "m.safetensors", "new", {"auc": np.float32(0.5), "n": np.int64(3)})
    assert meta == tmp_path / "m.json"
    _, doc = read_model(tmp_path / "m", "test-v1", what="test model")
    assert doc["validation"] == {"old": {"auc": 0.6}, "new": {"auc": 0.5, "n": 3}}
