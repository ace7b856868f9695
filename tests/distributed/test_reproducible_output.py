"""AtomicRootWriter(reproducible_uuid=...) and ConvertConfig(reproducible=True): equal content,
equal bytes; the default keeps uproot's random UUIDs."""

from __future__ import annotations

import threading
import uuid

import awkward as ak
import numpy as np
import uproot

from hepfastsim.convert import ConvertConfig, convert, output_uuid
from hepfastsim.io.writer import REPRODUCIBLE_DATETIME, AtomicRootWriter

FIXED = uuid.UUID("12345678-1234-5678-1234-567812345678")


def _write(path, fixed):
    with AtomicRootWriter(path, reproducible_uuid=fixed) as out:
        out.extend("Events", {"x": np.arange(5, dtype=np.int32), "Jet_pt": ak.Array([[1.5, 2.5]] * 5)})
        out.write_object("tag", "hello")
    return path


def test_same_content_same_bytes_in_other_directories(tmp_path) -> None:
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    first = _write(tmp_path / "a" / "out.root", FIXED).read_bytes()
    second = _write(tmp_path / "b" / "out.root", FIXED).read_bytes()
    assert first == second
    with uproot.open(tmp_path / "a" / "out.root") as f:
        assert f.file.uuid == FIXED
        assert f["Events"]["Jet_pt"].array().tolist() == [[1.5, 2.5]] * 5
    assert sorted(p.name for p in (tmp_path / "a").iterdir()) == ["out.root"]  # temporary directory gone
    other = _write(tmp_path / "other.root", uuid.UUID(int=1))
    with uproot.open(other) as f:
        assert f.file.uuid == uuid.UUID(int=1)


def _stamps(path) -> set[int]:
    """ROOT datime codes of the root directory (created, modified) and of every key."""
    with uproot.open(path) as f:
        d = f.file.root_directory
        return {d._fDatimeC, d._fDatimeM, *(f.key(k)._fDatime for k in f.keys(cycle=False))}


def test_timestamps_are_fixed_only_for_reproducible_writers(tmp_path) -> None:
    fixed_code = uproot._util.datetime_to_code(REPRODUCIBLE_DATETIME)
    assert _stamps(_write(tmp_path / "fixed.root", FIXED)) == {fixed_code}
    plain = _write(tmp_path / "now.root", None)
    assert fixed_code not in _stamps(plain)
    with uproot.open(plain) as f:
        assert f.file.uuid != FIXED


def test_other_threads_keep_real_timestamps(tmp_path) -> None:
    """The fixed timestamp is per thread: a reproducible writer does not stamp other files."""
    seen = []
    barrier = threading.Barrier(2)

    def plain() -> None:
        barrier.wait()
        seen.extend(_stamps(_write(tmp_path / "plain.root", None)))

    t = threading.Thread(target=plain)
    t.start()
    barrier.wait()
    _write(tmp_path / "repro.root", FIXED)
    t.join()
    assert seen and uproot._util.datetime_to_code(REPRODUCIBLE_DATETIME) not in seen


def test_reproducible_convert_is_byte_identical_and_uuid_depends_on_options(toy_file, tmp_path) -> None:
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    config = ConvertConfig(reproducible=True, seed=3, chunk_size=25)
    convert(toy_file, tmp_path / "a" / "o.root", config)
    convert(toy_file, tmp_path / "b" / "o.root", config)
    assert (tmp_path / "a" / "o.root").read_bytes() == (tmp_path / "b" / "o.root").read_bytes()
    with uproot.open(toy_file) as f:
        source_uuid = f.file.uuid
    with uproot.open(tmp_path / "a" / "o.root") as f:
        assert f.file.uuid == output_uuid(source_uuid, config, config.model) != source_uuid
    assert output_uuid(source_uuid, ConvertConfig(seed=4), "parametric") != output_uuid(source_uuid, ConvertConfig(seed=3), "parametric")
    convert(toy_file, tmp_path / "plain.root", ConvertConfig(seed=3, chunk_size=25))
    with uproot.open(tmp_path / "plain.root") as f:
        assert f.file.uuid != output_uuid(source_uuid, config, config.model)
