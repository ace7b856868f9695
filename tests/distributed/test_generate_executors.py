"""``hepfastsim generate`` through executors: the same bytes whatever runs the event blocks."""

from __future__ import annotations

from hepfastsim.cli.main import main

ARGS = ["generate", "--process", "qcd", "--events", "60", "--block-size", "20", "--pileup", "0",
        "--pthat-min", "100", "--seed", "5", "--quiet"]


def test_generate_identical_under_every_executor(loopback_cluster, tmp_path, capsys) -> None:
    outputs = {}
    for name, extra in (
        ("pool", []),
        ("futures", ["--executor", "futures", "--workers", "2"]),
        ("cluster", ["--scheduler", loopback_cluster.address]),
    ):
        out = tmp_path / name / "gen.root"  # same file name: ROOT records it inside the file
        out.parent.mkdir()
        assert main([*ARGS, "--out", str(out), *extra]) == 0, capsys.readouterr().err
        outputs[name] = out.read_bytes()
    assert outputs["futures"] == outputs["pool"]
    assert outputs["cluster"] == outputs["pool"]


def test_scheduler_needs_dask(tmp_path, capsys) -> None:
    code = main([*ARGS, "--out", str(tmp_path / "x.root"), "--executor", "futures", "--scheduler", "tcp://127.0.0.1:1"])
    assert code != 0 and "--scheduler needs --executor dask" in capsys.readouterr().err
    assert not (tmp_path / "x.root").exists()
