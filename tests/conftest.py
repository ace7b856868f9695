"""Shared fixtures: toy NanoAOD files and the real CMS samples of the coffea sdist."""

from __future__ import annotations

import os
import subprocess
import sys
import tarfile
from importlib.metadata import version
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from nanoaod_factory import write_nanoaod  # noqa: E402

#: Real CMS NanoAOD files shipped in coffea's source distribution (tests/samples/).
REAL_SAMPLES = ("nano_dy.root", "nano_tt_v12.root", "nano_tt_v15.root", "pfnano.root", "nano_tree.root")


@pytest.fixture(scope="session")
def toy_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_nanoaod(tmp_path_factory.mktemp("toy") / "toy.root", 60)


@pytest.fixture(scope="session")
def toy_file_per_branch(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_nanoaod(tmp_path_factory.mktemp("toy") / "toy_nJet_pt.root", 60, per_branch_counters=True, run3=True)


def _samples_cache() -> Path:
    root = Path(os.environ.get("HEPFASTSIM_TEST_CACHE", Path.home() / ".cache" / "hepfastsim-tests"))
    return root / f"coffea-{version('coffea')}-samples"


@pytest.fixture(scope="session")
def coffea_samples() -> Path:
    """Directory with the real CMS NanoAOD samples, fetched once with pip and cached."""
    target = _samples_cache()
    if all((target / name).exists() for name in REAL_SAMPLES):
        return target
    download = target.parent / "download"
    download.mkdir(parents=True, exist_ok=True)
    cmd = [sys.executable, "-m", "pip", "download", "--no-binary", ":all:", "--no-deps", "--quiet",
           f"coffea=={version('coffea')}", "-d", str(download)]
    result = subprocess.run(cmd, capture_output=True, text=True)
    archives = sorted(download.glob("coffea-*.tar.gz"))
    if result.returncode != 0 or not archives:
        pytest.fail(f"could not fetch the coffea sdist with pip: {result.stderr[-2000:]}")
    target.mkdir(parents=True, exist_ok=True)
    with tarfile.open(archives[-1]) as tar:
        for member in tar.getmembers():
            name = Path(member.name).name
            if "/tests/samples/" in member.name and (name in REAL_SAMPLES or name == "nano_dy_empty.root"):
                member.name = name
                tar.extract(member, target, filter="data")
    return target
