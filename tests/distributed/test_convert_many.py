"""convert_many: every executor gives the same files; failures, interrupts and reruns."""

from __future__ import annotations

import shutil
from pathlib import Path

import awkward as ak
import numpy as np
import pytest
import uproot

from hepfastsim.convert import ConvertConfig
from hepfastsim.distributed import ConvertManyError, _in_order, convert_many, expand_inputs, map_tasks, plan_outputs
from hepfastsim.errors import HepfastsimError, OutputError
from nanoaod_factory import write_nanoaod
from slow_simulator import CrashOnceSimulator, InterruptingSimulator

# the slow test simulator behaves as the parametric model, so the reference runs use that model
CONFIG = ConvertConfig(reproducible=True, chunk_size=40, seed=5, model="parametric")


@pytest.fixture(scope="module")
def inputs(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    d = tmp_path_factory.mktemp("many")
    return [write_nanoaod(d / f"f{i}.root", 120, seed=7 + i) for i in range(3)]


@pytest.fixture(scope="module")
def reference(inputs: list[Path], tmp_path_factory: pytest.TempPathFactory) -> dict[str, bytes]:
    out = tmp_path_factory.mktemp("ref")
    convert_many(inputs, out, CONFIG)
    return _contents(out)


def _contents(directory: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(directory.iterdir())}


def _all_arrays(path: Path) -> dict[str, dict[str, np.ndarray]]:
    out = {}
    with uproot.open(path) as f:
        for name in ("Events", "Runs"):
            tree = f[name]
            out[name] = {b: ak.to_list(tree[b].array()) for b in tree.keys()}
    return out


@pytest.mark.slow
def test_process_pool_gives_the_iterative_bytes_and_a_bad_input_fails_alone(inputs, reference, tmp_path) -> None:
    bad = tmp_path / "in" / "broken.root"
    bad.parent.mkdir()
    bad.write_text("not a ROOT file")
    out = tmp_path / "out"
    out.mkdir()
    with pytest.raises(ConvertManyError) as info:
        convert_many([inputs[0], bad, *inputs[1:]], out, CONFIG, executor="futures", workers=2)
    err = info.value
    assert isinstance(err, HepfastsimError)
    assert [f.input for f in err.failures] == [str(bad)] and err.failures[0].error == "InputFileError"
    assert "broken.root" in str(err) and "not a ROOT file" in str(err) and "1 of 4 inputs failed" in str(err)
    assert [Path(s.output).name for s in err.summaries] == ["f0.root", "f1.root", "f2.root"]
    assert _contents(out) == reference  # the good files, byte for byte, and nothing else


@pytest.mark.slow
def test_local_dask_cluster_with_other_chunks_gives_the_same_arrays(inputs, reference, tmp_path) -> None:
    """Other chunk sizes make other baskets (other bytes) but every branch is equal."""
    config = ConvertConfig(reproducible=True, chunk_size=1000, seed=5, model="parametric")
    convert_many(inputs, tmp_path, config, executor="dask", workers=2)  # embedded LocalCluster
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(reference)
    for name, data in reference.items():
        ref_path = tmp_path.parent / f"ref-{name}"
        ref_path.write_bytes(data)
        mine, theirs = _all_arrays(tmp_path / name), _all_arrays(ref_path)
        assert mine.keys() == theirs.keys() and mine["Events"].keys() == theirs["Events"].keys()
        assert "FastJet_pt" in mine["Events"]
        assert mine == theirs


@pytest.mark.slow
def test_worker_process_crash_is_retried(inputs, reference, tmp_path) -> None:
    markers = tmp_path / "markers"
    markers.mkdir()
    out = tmp_path / "out"
    out.mkdir()
    convert_many(inputs, out, CONFIG, executor="futures", workers=2, simulator=CrashOnceSimulator(str(markers)))
    assert (markers / "crashed").exists()  # one worker did die
    assert _contents(out) == reference


def test_crash_every_time_is_reported_naming_the_file(inputs, tmp_path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    with pytest.raises(ConvertManyError) as info:
        # retries=0: the first crash is final; the simulator crashes once, on one file
        convert_many(inputs[:1], out, CONFIG, executor="futures", workers=1, retries=0,
                     simulator=CrashOnceSimulator(str(tmp_path)))
    assert "f0.root" in str(info.value) and "died" in str(info.value)
    assert list(out.iterdir()) == []


def test_interrupted_run_leaves_no_partial_file_and_resumes(inputs, reference, tmp_path) -> None:
    with pytest.raises(KeyboardInterrupt):
        # 3 chunks per file: interrupted in the middle of the second file
        convert_many(inputs, tmp_path, CONFIG, simulator=InterruptingSimulator(after=5))
    assert _contents(tmp_path) == {"f0.root": reference["f0.root"]}  # no partial f1, no temporaries
    with pytest.raises(OutputError, match="f0.root"):
        convert_many(inputs, tmp_path, CONFIG)  # a finished output is never silently replaced
    before = (tmp_path / "f0.root").stat().st_mtime_ns
    summaries = convert_many(inputs, tmp_path, CONFIG, resume=True)
    assert [Path(s.input).name for s in summaries] == ["f1.root", "f2.root"]
    assert (tmp_path / "f0.root").stat().st_mtime_ns == before
    assert _contents(tmp_path) == reference


def test_existing_user_file_needs_overwrite(inputs, reference, tmp_path) -> None:
    (tmp_path / "f1.root").write_bytes(b"user data")
    with pytest.raises(OutputError, match="already exists"):
        convert_many(inputs, tmp_path, CONFIG)
    assert _contents(tmp_path) == {"f1.root": b"user data"}  # checked before any work
    convert_many(inputs, tmp_path, ConvertConfig(reproducible=True, chunk_size=40, seed=5, overwrite=True, model="parametric"))
    assert _contents(tmp_path) == reference


def test_stale_temporaries_of_killed_tasks_are_removed(inputs, reference, tmp_path) -> None:
    stale_file = tmp_path / ".f0.root.999-deadbeef.partial"
    stale_file.write_bytes(b"half")
    stale_dir = tmp_path / ".f1.root.999-cafe0000.partial"
    stale_dir.mkdir()
    (stale_dir / "f1.root").write_bytes(b"half")
    convert_many(inputs, tmp_path, CONFIG)
    assert _contents(tmp_path) == reference


def test_mapping_inputs_and_planning_errors(inputs, tmp_path) -> None:
    out = tmp_path / "a.root"
    [summary] = convert_many({inputs[0]: out}, None, CONFIG)
    assert summary.output == str(out) and out.exists()
    other = tmp_path / "other"
    other.mkdir()
    twin = write_nanoaod(other / "f0.root", 5)
    with pytest.raises(HepfastsimError, match="f0.root.*f0.root.*different output directories"):
        plan_outputs([str(inputs[0]), str(twin)], tmp_path)
    with pytest.raises(HepfastsimError, match="both mapped to output"):
        convert_many({inputs[0]: out, inputs[1]: tmp_path / "." / "a.root"}, None, CONFIG)
    with pytest.raises(OutputError, match="does not exist"):
        convert_many(inputs, tmp_path / "missing", CONFIG)
    with pytest.raises(HepfastsimError, match="needs --executor dask"):
        convert_many(inputs, tmp_path, CONFIG, executor="futures", scheduler="tcp://127.0.0.1:1")
    with pytest.raises(HepfastsimError, match="expected one of iterative, futures, dask, got 'spark'"):
        convert_many(inputs, tmp_path, CONFIG, executor="spark")  # type: ignore[arg-type]
    with pytest.raises(HepfastsimError, match="--overwrite and --resume"):
        convert_many(inputs, tmp_path, ConvertConfig(overwrite=True), resume=True)


def test_expand_inputs_globs_and_filesets(inputs, tmp_path) -> None:
    d = inputs[0].parent
    assert expand_inputs([str(d / "f*.root")]) == [str(p) for p in inputs]
    fileset = tmp_path / "fileset.json"
    fileset.write_text('{"qcd": {"files": {"%s": "Events"}}, "tt": ["%s"]}' % (inputs[2], inputs[0]))
    assert expand_inputs([str(fileset), str(inputs[0])]) == [str(inputs[2]), str(inputs[0])]
    with pytest.raises(HepfastsimError, match="no input file matches"):
        expand_inputs([str(d / "nothing*.root")])
    fileset.write_text('{"qcd": {"files": 3}}')
    with pytest.raises(HepfastsimError, match="fileset.*'qcd'"):
        expand_inputs([str(fileset)])


def _slow_first(x: int) -> int:
    import time

    time.sleep(1.0 if x == 0 else 0.0)
    return x * x


def test_map_tasks_as_completed_or_in_order() -> None:
    got = list(map_tasks(_slow_first, list(range(7)), executor="futures", workers=2))
    assert sorted(got) == [(i, i * i) for i in range(7)]
    assert got[0][0] != 0  # as completed: the slow first task is not first
    assert list(_in_order(iter(got))) == [(i, i * i) for i in range(7)]
    assert list(map_tasks(_slow_first, [3, 1], executor="iterative", ordered=True)) == [(0, 9), (1, 1)]


@pytest.mark.slow
def test_interrupted_dask_run_leaves_only_complete_outputs(inputs, reference, tmp_path) -> None:
    """Ctrl-C in the client while workers are mid-file: queued files are cancelled, the
    LocalCluster is closed; destinations hold complete files only; a rerun with resume
    finishes the rest."""
    from slow_simulator import SlowSimulator

    copies = tmp_path / "copies"
    copies.mkdir()
    plan = {}
    for p in inputs:  # six files: each input twice (a copy keeps the ROOT UUID, so the output bytes)
        shutil.copy(p, copies / p.name)
        plan[str(p)] = tmp_path / "out" / "a" / p.name
        plan[str(copies / p.name)] = tmp_path / "out" / "b" / p.name
    for sub in ("a", "b"):
        (tmp_path / "out" / sub).mkdir(parents=True)
    markers = tmp_path / "markers"
    markers.mkdir()

    def interrupt(result) -> None:
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        convert_many(plan, None, CONFIG, executor="dask", workers=2, on_done=interrupt,
                     simulator=SlowSimulator(str(markers), delay=0.5))
    finished = {p: p.read_bytes() for p in (tmp_path / "out").glob("*/*.root")}
    assert 1 <= len(finished) < len(plan)
    assert all(data == reference[p.name] for p, data in finished.items())  # no partial destination
    convert_many(plan, None, CONFIG, resume=True)
    for sub in ("a", "b"):
        assert _contents(tmp_path / "out" / sub) == reference  # killed workers' temporaries gone too
