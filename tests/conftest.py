"""Shared fixtures: toy NanoAOD files and the real CMS samples of the coffea sdist."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from coffea_samples import fetch_samples  # noqa: E402
from nanoaod_factory import write_nanoaod  # noqa: E402


@pytest.fixture(scope="session")
def toy_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_nanoaod(tmp_path_factory.mktemp("toy") / "toy.root", 60)


@pytest.fixture(scope="session")
def toy_file_per_branch(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_nanoaod(tmp_path_factory.mktemp("toy") / "toy_nJet_pt.root", 60, per_branch_counters=True, run3=True)


@pytest.fixture(scope="session")
def coffea_samples() -> Path:
    """Directory with the real CMS NanoAOD samples, fetched once with pip and cached."""
    try:
        return fetch_samples()
    except RuntimeError as err:
        pytest.fail(str(err))
