"""End-to-end tests of ``hepfastsim convert`` through the console entry point."""

from __future__ import annotations

import subprocess
import sys

import pytest
import uproot

from hepfastsim.cli.main import main
from nanoaod_factory import make_events, write_nanoaod


def test_convert_prints_summary(toy_file, tmp_path, capsys) -> None:
    out = tmp_path / "out.root"
    assert main(["convert", str(toy_file), str(out), "--seed", "3", "--quiet"]) == 0
    printed = capsys.readouterr().out
    assert "events: 60 in" in printed and "reco jets out" in printed and "events/s" in printed
    assert "nFastJet" in uproot.open(out)["Events"].keys()


def test_console_script_runs(toy_file, tmp_path) -> None:
    out = tmp_path / "out.root"
    result = subprocess.run(
        [sys.executable, "-m", "hepfastsim.cli.main", "convert", str(toy_file), str(out), "--chunk-size", "25"],
        capture_output=True, text=True,
    )
    assert result.returncode == 0, result.stderr
    assert out.exists()


def _bad_inputs(tmp_path, toy_file):
    text = tmp_path / "text.root"
    text.write_text("not root")
    truncated = tmp_path / "truncated.root"
    truncated.write_bytes(toy_file.read_bytes()[:3000])
    events = make_events(5)
    for key in [k for k in events if k.startswith("GenJet_")]:
        del events[key]
    nogen = write_nanoaod(tmp_path / "nogen.root", events=events)
    return [
        (tmp_path / "missing.root", [], "missing.root", "no such file"),
        (text, [], "text.root", "not a ROOT file"),
        (truncated, [], "truncated.root", "truncated"),
        (toy_file, ["--tree", "Evts"], "'Evts'", "no tree"),
        (nogen, [], "'GenJet_pt'", "no branch"),
    ]


def test_bad_input_one_line_and_nothing_written(toy_file, tmp_path, capsys) -> None:
    for path, extra, name, reason in _bad_inputs(tmp_path, toy_file):
        dest = tmp_path / "out" / "dest.root"
        dest.parent.mkdir(exist_ok=True)
        code = main(["convert", str(path), str(dest), "--quiet", *extra])
        err = capsys.readouterr().err.strip()
        assert code != 0
        assert len(err.splitlines()) == 1, err
        assert name in err and reason in err, err
        assert list(dest.parent.iterdir()) == []


def test_bad_destinations(toy_file, tmp_path, capsys) -> None:
    existing = tmp_path / "exists.root"
    existing.write_bytes(b"keep me")
    assert main(["convert", str(toy_file), str(existing), "--quiet"]) != 0
    assert "already exists" in capsys.readouterr().err and existing.read_bytes() == b"keep me"
    assert main(["convert", str(toy_file), str(tmp_path / "no" / "dir" / "o.root"), "--quiet"]) != 0
    assert "does not exist" in capsys.readouterr().err
    # /proc accepts no new files, even for root (file permissions would not stop root)
    assert main(["convert", str(toy_file), "/proc/hepfastsim-out.root", "--quiet"]) != 0
    err = capsys.readouterr().err
    assert "/proc/hepfastsim-out.root" in err and len(err.strip().splitlines()) == 1


def test_bad_numbers(toy_file, tmp_path, capsys) -> None:
    with pytest.raises(SystemExit):  # argparse rejects a zero chunk size
        main(["convert", str(toy_file), str(tmp_path / "o.root"), "--chunk-size=0", "--quiet"])
    assert main(["convert", str(toy_file), str(tmp_path / "o.root"), "--oversample=0", "--quiet"]) != 0
    assert "oversample" in capsys.readouterr().err
    assert not (tmp_path / "o.root").exists()
