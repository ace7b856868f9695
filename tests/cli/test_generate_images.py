"""``hepfastsim generate-images`` end to end on a tiny random LAGAN."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
import uproot

from hepfastsim.cli.main import main
from hepfastsim.models.lagan import ImageGenerator, LaganGenerator


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    torch.manual_seed(0)
    g = LaganGenerator()
    with torch.no_grad():
        g.bn1.running_var.fill_(0.5)
        g.bn2.running_mean.fill_(-0.3)
    path = tmp_path_factory.mktemp("model") / "tiny"
    ImageGenerator(g.eval().fused(), g.config, {"retrain_command": "test"}).save(path)
    return path


def test_writes_n_images_of_the_class_npz(tiny_model: Path, tmp_path: Path) -> None:
    out = tmp_path / "w.npz"
    assert main(["generate-images", "--class", "w", "--n", "37", "--out", str(out), "--model", str(tiny_model), "--quiet"]) == 0
    with np.load(out) as f:
        assert f["images"].shape == (37, 25, 25) and (f["images"] >= 0).all()
        assert (f["label"] == 1).all()
        assert '"class": "w"' in str(f["metadata"])


def test_root_output_and_determinism(tiny_model: Path, tmp_path: Path) -> None:
    a, b = tmp_path / "a.root", tmp_path / "b.npz"
    args = ["generate-images", "--class", "qcd", "--model", str(tiny_model), "--quiet", "--seed", "5"]
    assert main([*args, "--n", "20", "--out", str(a)]) == 0
    assert main([*args, "--n", "10", "--out", str(b)]) == 0
    tree = uproot.open(a)["JetImages"]
    img = tree["image"].array(library="np")
    assert img.shape == (20, 25, 25) and (tree["label"].array(library="np") == 0).all()
    with np.load(b) as f:
        np.testing.assert_array_equal(f["images"], img[:10])  # same seed: same first images
    c = tmp_path / "c.npz"
    assert main([*args[:-1], "6", "--n", "10", "--out", str(c)]) == 0
    with np.load(c) as f:
        assert not np.array_equal(f["images"], img[:10])


@pytest.mark.parametrize(
    "extra,message",
    [
        (["--class", "z", "--n", "5", "--out", "x.npz"], "invalid choice"),
        (["--class", "w", "--n", "0", "--out", "x.npz"], "positive integer"),
        (["--class", "w", "--n", "-3", "--out", "x.npz"], "positive integer"),
    ],
)
def test_bad_arguments_exit_2(extra: list[str], message: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["generate-images", *extra])
    assert exc.value.code == 2
    assert message in capsys.readouterr().err


def test_bad_output_exits_1(tiny_model: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    base = ["generate-images", "--class", "w", "--n", "3", "--model", str(tiny_model), "--quiet"]
    assert main([*base, "--out", str(tmp_path / "x.txt")]) == 1
    assert ".npz or .root" in capsys.readouterr().err
    assert main([*base, "--out", str(tmp_path / "nodir" / "x.npz")]) == 1
    assert "does not exist" in capsys.readouterr().err
    existing = tmp_path / "e.npz"
    existing.write_bytes(b"")
    assert main([*base, "--out", str(existing)]) == 1
    assert "--overwrite" in capsys.readouterr().err
    assert main([*base, "--out", str(tmp_path / "m.npz"), "--model", str(tmp_path / "missing")]) == 1
    assert "no file" in capsys.readouterr().err
