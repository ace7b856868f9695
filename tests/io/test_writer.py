from __future__ import annotations

import awkward as ak
import numpy as np
import pytest
import uproot

from hepfastsim.errors import HepfastsimError, OutputError
from hepfastsim.io.writer import AtomicRootWriter, default_counter


def _chunk(offset: int = 0) -> dict[str, object]:
    return {
        "Jet_pt": ak.Array([[1.5 + offset, 2.5], [], [3.5]]),
        "Jet_idx": ak.values_astype(ak.Array([[0, 1], [], [2]]), np.int16),
        "Other_x": ak.Array([[True], [False, True], []]),
        "rho": np.array([1.0, 2.0, 3.0], np.float32) + offset,
    }


def test_default_counter_follows_nanoaod() -> None:
    assert default_counter("Jet_pt") == "nJet"
    assert default_counter("GenJetAK8_mass") == "nGenJetAK8"
    assert default_counter("LHEPdfWeight") == "nLHEPdfWeight"


def test_round_trip_groups_by_counter(tmp_path) -> None:
    dest = tmp_path / "out.root"
    with AtomicRootWriter(dest) as out:
        out.extend("Events", _chunk(0))
        out.extend("Events", _chunk(10))
        out.extend("Runs", {"run": np.array([7], np.uint32)})
    tree = uproot.open(dest)["Events"]
    assert set(tree.keys()) == {"Jet_pt", "Jet_idx", "nJet", "Other_x", "nOther", "rho"}
    got = tree.arrays(library="ak")
    assert got.Jet_pt.tolist() == [[1.5, 2.5], [], [3.5], [11.5, 2.5], [], [3.5]]
    assert got.nJet.tolist() == [2, 0, 1, 2, 0, 1]
    assert got.Other_x.tolist() == [[True], [False, True], [], [True], [False, True], []]
    assert tree["Jet_idx"].interpretation.content.from_dtype == np.dtype(">i2")
    assert uproot.open(dest)["Runs"]["run"].array(library="np").tolist() == [7]
    assert [p.name for p in tmp_path.iterdir()] == ["out.root"]  # no temporary left


def test_explicit_counters_keep_names(tmp_path) -> None:
    dest = tmp_path / "out.root"
    with AtomicRootWriter(dest) as out:
        out.extend("Events", {"Jet_pt": ak.Array([[1.0], []])}, counters={"Jet_pt": "nJet_pt"})
    assert set(uproot.open(dest)["Events"].keys()) == {"nJet_pt", "Jet_pt"}


def test_exception_leaves_nothing(tmp_path) -> None:
    dest = tmp_path / "out.root"
    with pytest.raises(RuntimeError):
        with AtomicRootWriter(dest) as out:
            out.extend("Events", _chunk())
            raise RuntimeError("boom")
    assert list(tmp_path.iterdir()) == []


def test_existing_destination_needs_overwrite(tmp_path) -> None:
    dest = tmp_path / "out.root"
    dest.write_bytes(b"precious")
    with pytest.raises(OutputError, match="already exists"):
        AtomicRootWriter(dest)
    assert dest.read_bytes() == b"precious"
    with AtomicRootWriter(dest, overwrite=True) as out:
        out.extend("Events", _chunk())
    assert uproot.open(dest)["Events"].num_entries == 3


def test_mismatched_counts_and_schema_are_errors(tmp_path) -> None:
    with pytest.raises(HepfastsimError, match="share counter 'nJet'"):
        with AtomicRootWriter(tmp_path / "a.root") as out:
            out.extend("Events", {"Jet_pt": ak.Array([[1.0], []]), "Jet_eta": ak.Array([[], [1.0]])})
    with pytest.raises(HepfastsimError, match="missing"):
        with AtomicRootWriter(tmp_path / "b.root") as out:
            out.extend("Events", _chunk())
            out.extend("Events", {"rho": np.ones(3, np.float32)})
    assert list(tmp_path.iterdir()) == []


def test_missing_directory_is_an_output_error(tmp_path) -> None:
    with pytest.raises(OutputError, match="does not exist"):
        AtomicRootWriter(tmp_path / "no" / "out.root")
