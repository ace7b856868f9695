"""convert_many through a real dask scheduler + two workers on loopback, and a killed worker.

Outputs are compared byte for byte with the iterative executor's: ``ConvertConfig(
reproducible=True)`` fixes the ROOT UUID (derived from the input's UUID and the options),
the timestamps and the recorded file name; with the same chunk size (chunks are baskets)
nothing else in the file depends on where or when it was written.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path

import numpy as np
import pytest

from conftest import start_cluster
from hepfastsim.convert import ConvertConfig
from hepfastsim.distributed import convert_many
from nanoaod_factory import write_nanoaod
from slow_simulator import SlowSimulator

pytestmark = pytest.mark.slow  # starts dask schedulers and workers

# the slow test simulator behaves as the parametric model, so the reference runs use that model
CONFIG = ConvertConfig(reproducible=True, chunk_size=40, seed=11, model="parametric")


@pytest.fixture(scope="module")
def inputs(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    d = tmp_path_factory.mktemp("inputs")
    return [write_nanoaod(d / f"sample_{i}.root", 160, seed=100 + i, run3=i % 2 == 1) for i in range(4)]


@pytest.fixture(scope="module")
def reference(inputs: list[Path], tmp_path_factory: pytest.TempPathFactory) -> dict[str, bytes]:
    out = tmp_path_factory.mktemp("iterative")
    convert_many(inputs, out, CONFIG, executor="iterative")
    return {p.name: p.read_bytes() for p in sorted(out.iterdir())}


def _contents(directory: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(directory.iterdir())}


def test_scheduler_and_two_workers_give_the_iterative_bytes(loopback_cluster, inputs, reference, tmp_path) -> None:
    summaries = convert_many(inputs, tmp_path, CONFIG, executor="dask", scheduler=loopback_cluster.address, workers=2)
    assert [s.input for s in summaries] == [str(p) for p in inputs]
    assert [s.events for s in summaries] == [160] * 4
    assert sorted(reference) == [p.name for p in inputs]
    assert _contents(tmp_path) == reference  # byte for byte, nothing else left in the directory


def test_killed_worker_is_retried_and_outputs_are_identical(inputs, reference, tmp_path) -> None:
    cluster = start_cluster(tmp_path / "cluster")
    try:
        markers = tmp_path / "markers"
        markers.mkdir()
        out = tmp_path / "out"
        out.mkdir()
        slow = SlowSimulator(str(markers), delay=0.4)  # 4 chunks per file: ~1.6 s per file
        result: dict[str, object] = {}

        def run() -> None:
            try:
                result["summaries"] = convert_many(
                    inputs, out, CONFIG, executor="dask", scheduler=cluster.address, workers=2, simulator=slow
                )
            except BaseException as err:  # reported by the assertions below
                result["error"] = err

        thread = threading.Thread(target=run)
        thread.start()
        deadline = time.monotonic() + 60
        while not list(markers.iterdir()):
            assert time.monotonic() < deadline and thread.is_alive(), f"no task started: {result}"
            time.sleep(0.05)
        victim_pid = int(next(markers.iterdir()).name.split("-")[1])
        done_before_kill = [p.name for p in out.glob("*.root")]
        killed = cluster.kill_worker_of(victim_pid)
        thread.join(timeout=120)
        assert not thread.is_alive(), "the run did not finish after a worker was killed"
        assert "error" not in result, result.get("error")
        assert killed.poll() is not None
        assert len(done_before_kill) < len(inputs)  # the kill happened mid-run
        assert [s.events for s in result["summaries"]] == [160] * 4  # type: ignore[union-attr]
        # complete, identical outputs, and no temporaries of the killed task left behind
        assert _contents(out) == reference
        surviving = {p.name.split("-")[1] for p in markers.iterdir()} - {str(victim_pid)}
        assert surviving, "the other worker should have taken over the killed worker's file"
    finally:
        cluster.stop()


def test_processor_histograms_merge_the_same_on_the_cluster(loopback_cluster, inputs) -> None:
    from hepfastsim.distributed import run_processor
    from toy_processor import GenJetPt

    fileset = {"even": [str(p) for p in inputs[::2]], "odd": [str(p) for p in inputs[1::2]]}
    local = run_processor(fileset, GenJetPt(), executor="iterative", chunksize=50)
    remote = run_processor(fileset, GenJetPt(), executor="dask", scheduler=loopback_cluster.address, chunksize=70)
    assert local.keys() == remote.keys() == {"even", "odd"}
    for dataset in fileset:
        assert local[dataset]["events"] == remote[dataset]["events"] == 320
        h_local, h_remote = local[dataset]["pt"], remote[dataset]["pt"]
        assert h_local.sum().value > 0
        # the same entries, summed in another order: equal to rounding
        np.testing.assert_allclose(h_remote.values(), h_local.values(), rtol=1e-12)
        np.testing.assert_allclose(h_remote.variances(), h_local.variances(), rtol=1e-12)


def test_cli_with_scheduler_address(loopback_cluster, inputs, reference, tmp_path, capsys) -> None:
    """``--scheduler`` alone selects the dask executor."""
    from hepfastsim.cli.main import main

    code = main(["convert", *map(str, inputs), "-o", str(tmp_path), "--scheduler", loopback_cluster.address,
                 "--reproducible", "--chunk-size", "40", "--seed", "11", "--model", CONFIG.model, "--quiet"])
    assert code == 0, capsys.readouterr().err
    assert "4 files, 640 events converted" in capsys.readouterr().out
    assert _contents(tmp_path) == reference
