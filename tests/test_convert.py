from __future__ import annotations

import awkward as ak
import numpy as np
import pytest
import uproot

from hepfastsim.convert import ConvertConfig, convert
from hepfastsim.errors import HepfastsimError
from hepfastsim.simulators import ParametricSimulator
from nanoaod_factory import make_events, write_nanoaod


def _read(path, tree="Events"):
    return uproot.open(path)[tree].arrays(library="ak")


@pytest.mark.parametrize("fixture", ["toy_file", "toy_file_per_branch"])
def test_round_trip_keeps_everything(fixture, request, tmp_path) -> None:
    src = request.getfixturevalue(fixture)
    out = tmp_path / "out.root"
    summary = convert(src, out, ConvertConfig(chunk_size=17))
    before, after = uproot.open(src), uproot.open(out)
    for name in before["Events"].keys():
        assert name in after["Events"].keys(), name
        a, b = before["Events"][name].array(), after["Events"][name].array()
        assert a.tolist() == b.tolist(), name
        assert ak.type(a).content == ak.type(b).content or name.startswith("n"), name  # counters become int32
    assert after["Runs"]["genEventSumw"].array(library="np").tolist() == [123.5]
    assert str(after["tag"]) == "toy-nanoaod"
    reco = _read(out)
    assert ak.all(reco.nFastJet == ak.num(reco.FastJet_pt))
    assert summary.events == 60 and summary.events_without_gen_jets >= 2
    assert summary.gen_jets == ak.sum(ak.num(before["Events"]["GenJet_pt"].array()))
    assert summary.reco_jets == ak.sum(reco.nFastJet) > 0
    assert ak.all(reco.FastJet_genJetIdx < ak.num(reco.GenJet_pt))
    matched = reco.FastJet_genJetIdx >= 0  # -1: pileup/fake jets of the (default) kinematics model
    matched_gen = reco.GenJet_pt[reco.FastJet_genJetIdx[matched]]
    ratio = ak.to_numpy(ak.flatten(reco.FastJet_pt[matched] / matched_gen))
    assert 0.9 < np.median(ratio) < 1.1


def test_output_does_not_depend_on_chunk_size(toy_file, tmp_path) -> None:
    outputs = []
    for i, chunk in enumerate((1, 7, 1000, "1 MB")):
        out = tmp_path / f"out{i}.root"
        convert(toy_file, out, ConvertConfig(chunk_size=chunk, seed=5))
        outputs.append(_read(out)[["FastJet_pt", "FastJet_eta", "FastJet_phi", "FastJet_mass", "FastJet_genJetIdx"]])
    for other in outputs[1:]:
        assert other.tolist() == outputs[0].tolist()
    convert(toy_file, tmp_path / "seed6.root", ConvertConfig(seed=6))
    assert _read(tmp_path / "seed6.root").FastJet_pt.tolist() != outputs[0].FastJet_pt.tolist()


def test_oversample(toy_file, tmp_path) -> None:
    out = tmp_path / "over.root"
    summary = convert(toy_file, out, ConvertConfig(oversample=3, seed=1))
    reco, src = _read(out), _read(toy_file)
    assert len(reco) == 3 * len(src) and summary.events == len(src) and summary.events_written == 3 * len(src)
    assert reco.FastSim_oversampleIdx.tolist() == [0, 1, 2] * len(src)
    np.testing.assert_allclose(ak.to_numpy(reco.FastSim_weight), np.repeat(ak.to_numpy(src.genWeight), 3) / 3, rtol=1e-6)
    assert reco.event.tolist() == np.repeat(ak.to_numpy(src.event), 3).tolist()
    # draw 0 equals a plain conversion with the same seed; the other draws differ
    convert(toy_file, tmp_path / "one.root", ConvertConfig(seed=1))
    one = _read(tmp_path / "one.root")
    assert reco.FastJet_pt[0::3].tolist() == one.FastJet_pt.tolist()
    assert reco.FastJet_pt[1::3].tolist() != one.FastJet_pt.tolist()
    assert summary.gen_jets == ak.sum(ak.num(src.GenJet_pt))


def test_nan_and_inf_are_counted(tmp_path) -> None:
    events = make_events(20)
    pt = ak.to_numpy(ak.flatten(events["GenJet_pt"])).copy()
    pt[:3] = [np.nan, np.inf, -np.inf]
    events["GenJet_pt"] = ak.unflatten(pt, ak.num(events["GenJet_pt"]))
    src = write_nanoaod(tmp_path / "nan.root", events=events)
    summary = convert(src, tmp_path / "out.root")
    assert summary.invalid_gen_jets == 3
    assert ak.all(np.isfinite(ak.flatten(_read(tmp_path / "out.root").FastJet_pt)))


def test_failure_mid_run_leaves_nothing(toy_file, tmp_path) -> None:
    class Failing(ParametricSimulator):
        calls = 0

        def simulate(self, events):
            Failing.calls += 1
            if Failing.calls == 3:
                raise RuntimeError("worker died")
            return super().simulate(events)

    with pytest.raises(RuntimeError):
        convert(toy_file, tmp_path / "out.root", ConvertConfig(chunk_size=10), simulator=Failing())
    assert list(tmp_path.iterdir()) == []


def test_collection_clash_and_bad_options(toy_file, tmp_path) -> None:
    with pytest.raises(HepfastsimError, match="already has branch '(nGenJet|GenJet_pt)'"):
        convert(toy_file, tmp_path / "a.root", ConvertConfig(collection="GenJet"))
    with pytest.raises(HepfastsimError, match="oversample"):
        convert(toy_file, tmp_path / "a.root", ConvertConfig(oversample=0))
    with pytest.raises(HepfastsimError, match="it is the input file"):
        convert(toy_file, toy_file, ConvertConfig(overwrite=True))
    assert list(tmp_path.iterdir()) == []
