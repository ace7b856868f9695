"""Where the real CMS NanoAOD samples of coffea's source distribution are fetched and cached."""

from __future__ import annotations

import os
import subprocess
import sys
import tarfile
from importlib.metadata import version
from pathlib import Path

#: Real CMS NanoAOD files shipped in coffea's source distribution (tests/samples/).
REAL_SAMPLES = ("nano_dy.root", "nano_tt_v12.root", "nano_tt_v15.root", "pfnano.root", "nano_tree.root")


def samples_cache() -> Path:
    root = Path(os.environ.get("HEPFASTSIM_TEST_CACHE", Path.home() / ".cache" / "hepfastsim-tests"))
    return root / f"coffea-{version('coffea')}-samples"


def fetch_samples() -> Path:
    """Directory with the samples; downloads coffea's sdist with pip once. Raises RuntimeError."""
    target = samples_cache()
    if all((target / name).exists() for name in REAL_SAMPLES):
        return target
    download = target.parent / "download"
    download.mkdir(parents=True, exist_ok=True)
    cmd = [sys.executable, "-m", "pip", "download", "--no-binary", ":all:", "--no-deps", "--quiet",
           f"coffea=={version('coffea')}", "-d", str(download)]
    result = subprocess.run(cmd, capture_output=True, text=True)
    archives = sorted(download.glob("coffea-*.tar.gz"))
    if result.returncode != 0 or not archives:
        raise RuntimeError(f"could not fetch the coffea sdist with pip: {result.stderr[-2000:]}")
    target.mkdir(parents=True, exist_ok=True)
    with tarfile.open(archives[-1]) as tar:
        for member in tar.getmembers():
            name = Path(member.name).name
            if "/tests/samples/" in member.name and name in REAL_SAMPLES:
                member.name = name
                tar.extract(member, target, filter="data")
    return target
