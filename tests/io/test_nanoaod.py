from __future__ import annotations

import awkward as ak
import numpy as np
import pytest
import uproot
import vector

from hepfastsim.errors import BranchNotFoundError, InputFileError, TreeNotFoundError
from hepfastsim.io.nanoaod import (
    event_npu,
    event_rho,
    gen_branches,
    gen_jets,
    iterate_chunks,
    jet_constituents,
    open_tree,
)
from nanoaod_factory import make_events, write_nanoaod


@pytest.mark.parametrize("fixture", ["toy_file", "toy_file_per_branch"])
def test_chunks_cover_every_entry_once(fixture, request) -> None:
    path = request.getfixturevalue(fixture)
    source = open_tree(path)
    chunks = list(iterate_chunks(source, gen_branches(source), step_size=7))
    assert [c.entry_start for c in chunks] == list(range(0, 60, 7))
    assert chunks[-1].entry_stop == 60
    whole = uproot.open(path)["Events"]["GenJet_pt"].array()
    assert ak.concatenate([gen_jets(c.arrays).pt for c in chunks]).tolist() == whole.tolist()


def test_run2_and_run3_rho_names(toy_file, toy_file_per_branch) -> None:
    for path, name in ((toy_file, "fixedGridRhoFastjetAll"), (toy_file_per_branch, "Rho_fixedGridRhoFastjetAll")):
        source = open_tree(path)
        assert name in gen_branches(source)
        chunk = next(iterate_chunks(source, gen_branches(source), step_size=100))
        expected = uproot.open(path)["Events"][name].array(library="np")
        np.testing.assert_array_equal(event_rho(chunk.arrays, 60), expected)
        assert event_npu(chunk.arrays, 60).mean() > 20  # Poisson(30)


def test_counter_detection_both_styles(toy_file, toy_file_per_branch) -> None:
    assert open_tree(toy_file).counters["GenJet_pt"] == "nGenJet"
    assert open_tree(toy_file_per_branch).counters["GenJet_pt"] == "nGenJet_pt"


def test_gen_jets_defaults_missing_flavour(tmp_path) -> None:
    events = make_events(10)
    del events["GenJet_partonFlavour"], events["GenJet_hadronFlavour"]
    path = write_nanoaod(tmp_path / "f.root", events=events)
    source = open_tree(path)
    jets = gen_jets(next(iterate_chunks(source, gen_branches(source))).arrays)
    assert ak.all(jets.partonFlavour == 0) and ak.all(jets.hadronFlavour == 0)
    assert jets.pt.type.content.content.primitive == "float32"


def test_constituents_sum_to_jet(toy_file) -> None:
    source = open_tree(toy_file)
    chunk = next(iterate_chunks(source, None, step_size=100))
    cons = jet_constituents(chunk.arrays)
    assert ak.all(ak.num(cons, axis=1) == ak.num(chunk.arrays["GenJet_pt"], axis=1))
    v = vector.zip({k: cons[k] for k in ("pt", "eta", "phi", "mass")})
    summed = ak.sum(v, axis=2)
    # toy constituents are split in pT around the jet axis, so their scalar sum is the jet pT
    np.testing.assert_allclose(ak.flatten(ak.sum(cons.pt, axis=2)), ak.flatten(chunk.arrays["GenJet_pt"]), rtol=1e-5)
    assert ak.all(ak.flatten(summed.pt) <= ak.flatten(ak.sum(cons.pt, axis=2)) * (1 + 1e-6))


def test_constituents_reject_bad_links(toy_file) -> None:
    source = open_tree(toy_file)
    arrays = dict(next(iterate_chunks(source, None, step_size=100)).arrays)
    arrays["GenJetCands_pFCandsIdx"] = arrays["GenJetCands_pFCandsIdx"] + 1000
    with pytest.raises(Exception, match="GenJetCands_pFCandsIdx"):
        jet_constituents(arrays)


def test_missing_genjet_branch_names_file_tree_branch(tmp_path) -> None:
    events = make_events(5)
    events["GenJet_ptt"] = events.pop("GenJet_pt")
    path = write_nanoaod(tmp_path / "nogen.root", events=events)
    with pytest.raises(BranchNotFoundError) as info:
        gen_branches(open_tree(path))
    message = str(info.value)
    assert "'GenJet_pt'" in message and "'Events'" in message and "nogen.root" in message
    assert "GenJet_ptt" in message  # close match


def test_bad_files(tmp_path, toy_file) -> None:
    with pytest.raises(InputFileError, match="no such file"):
        open_tree(tmp_path / "missing.root")
    text = tmp_path / "text.root"
    text.write_text("hello")
    with pytest.raises(InputFileError, match="not a ROOT file"):
        open_tree(text)
    truncated = tmp_path / "trunc.root"
    truncated.write_bytes(toy_file.read_bytes()[: toy_file.stat().st_size // 2])
    with pytest.raises(InputFileError, match="truncated"):
        open_tree(truncated)
    with pytest.raises(TreeNotFoundError, match="'Evts'.*Events"):
        open_tree(toy_file, "Evts")


def test_empty_tree_yields_one_typed_chunk(tmp_path) -> None:
    path = write_nanoaod(tmp_path / "empty.root", events={k: v[:0] for k, v in make_events(5).items()})
    source = open_tree(path)
    chunks = list(iterate_chunks(source, gen_branches(source)))
    assert len(chunks) == 1 and len(chunks[0]) == 0
    assert len(gen_jets(chunks[0].arrays)) == 0
