"""``hepfastsim convert IN... --output-dir DIR --executor ...`` end to end."""

from __future__ import annotations

import pytest

from hepfastsim.cli.main import main
from nanoaod_factory import write_nanoaod


@pytest.fixture(scope="module")
def indir(tmp_path_factory: pytest.TempPathFactory):
    d = tmp_path_factory.mktemp("cli_in")
    for i in range(3):
        write_nanoaod(d / f"s{i}.root", 50, seed=30 + i)
    return d


def _bytes(d):
    return {p.name: p.read_bytes() for p in sorted(d.iterdir())}


def test_glob_to_output_dir_same_bytes_for_every_executor(indir, tmp_path, capsys) -> None:
    outs = {}
    for executor in ("iterative", "futures"):
        out = tmp_path / executor
        out.mkdir()
        code = main(["convert", str(indir / "s*.root"), "--output-dir", str(out), "--executor", executor,
                     "--workers", "2", "--reproducible", "--chunk-size", "20", "--seed", "9", "--quiet"])
        assert code == 0, capsys.readouterr().err
        printed = capsys.readouterr().out
        assert "3 files, 150 events converted" in printed and "s2.root" in printed
        outs[executor] = _bytes(out)
    assert sorted(outs["iterative"]) == ["s0.root", "s1.root", "s2.root"]
    assert outs["iterative"] == outs["futures"]


def test_resume_and_overwrite(indir, tmp_path, capsys) -> None:
    args = ["convert", str(indir / "s0.root"), str(indir / "s1.root"), "-o", str(tmp_path), "--quiet"]
    assert main(args) == 0
    capsys.readouterr()
    assert main(args) == 1
    err = capsys.readouterr().err
    assert "s0.root" in err and "already exists" in err and len(err.strip().splitlines()) == 1
    assert main([*args, "--resume"]) == 0
    assert "nothing to convert" in capsys.readouterr().out
    assert main([*args, "--overwrite"]) == 0


def test_usage_errors(indir, tmp_path, capsys) -> None:
    assert main(["convert", str(indir / "s0.root"), str(indir / "s1.root"), str(tmp_path / "x.root"), "--quiet"]) == 1
    assert "--output-dir" in capsys.readouterr().err
    assert main(["convert", str(indir / "s0.root"), str(tmp_path / "x.root"), "--executor", "futures",
                 "--scheduler", "tcp://127.0.0.1:1", "--quiet"]) == 1
    assert "needs --executor dask" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["convert", str(indir / "s0.root"), str(tmp_path / "x.root"), "--executor", "spark"])
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "broken.root").write_text("text")
    assert main(["convert", str(bad / "broken.root"), str(indir / "s0.root"), "-o", str(tmp_path), "--quiet"]) == 1
    err = capsys.readouterr().err
    assert "broken.root" in err and "1 of 2 inputs failed" in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad", "s0.root"]


def test_single_file_through_an_executor(indir, tmp_path, capsys) -> None:
    out = tmp_path / "one.root"
    assert main(["convert", str(indir / "s1.root"), str(out), "--executor", "futures", "--workers", "1", "--quiet"]) == 0
    assert out.exists() and "events: 50 in" in capsys.readouterr().out
