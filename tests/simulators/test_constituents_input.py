"""Models that read gen constituents get them from convert and from the coffea processor."""

from __future__ import annotations

import shutil
from pathlib import Path

import awkward as ak
import numpy as np
import pytest
import uproot
import vector

from hepfastsim.convert import ConvertConfig, convert
from hepfastsim.errors import BranchNotFoundError
from hepfastsim.io.writer import AtomicRootWriter
from hepfastsim.simulators.base import GenEvents, Simulator

EXAMPLE = Path(__file__).parents[2] / "examples" / "qcd_small.root"


class ConstituentSum(Simulator):
    """Reco jet = four-vector sum of the gen jet's constituents (a model that needs them)."""

    name = "constituent-sum"
    output_fields = {"pt": np.dtype(np.float32), "mass": np.dtype(np.float32), "genJetIdx": np.dtype(np.int32)}
    needs_constituents = True

    def simulate(self, events: GenEvents) -> ak.Array:
        assert events.constituents is not None
        c = events.constituents
        p4 = vector.zip({"pt": c.pt, "eta": c.eta, "phi": c.phi, "mass": c.mass})
        total = ak.sum(p4, axis=2)
        idx = ak.local_index(events.jets.pt, axis=1)
        return ak.zip({"pt": ak.values_astype(total.pt, np.float32), "mass": ak.values_astype(total.mass, np.float32),
                       "genJetIdx": ak.values_astype(idx, np.int32)})


def test_convert_hands_constituents_to_the_model(tmp_path: Path) -> None:
    out = tmp_path / "out.root"
    convert(EXAMPLE, out, ConvertConfig(chunk_size=37), simulator=ConstituentSum())
    t = uproot.open(out)["Events"]
    got = t.arrays(["FastJet_pt", "FastJet_mass", "FastJet_genJetIdx"])
    gen = t.arrays(["GenJet_pt", "GenJet_mass"])
    # the constituents of a gen jet add up to the gen jet itself (fastjet E-scheme)
    gen_pt = gen.GenJet_pt[got.FastJet_genJetIdx]
    assert ak.sum(ak.num(got.FastJet_pt)) > 1000
    np.testing.assert_allclose(ak.to_numpy(ak.flatten(got.FastJet_pt)), ak.to_numpy(ak.flatten(gen_pt)), rtol=2e-3)


def test_missing_constituent_branches_are_named(tmp_path: Path) -> None:
    src = tmp_path / "no_cands.root"
    arrays = uproot.open(EXAMPLE)["Events"].arrays(["GenJet_pt", "GenJet_eta", "GenJet_phi", "GenJet_mass"])
    with AtomicRootWriter(src) as out:
        out.extend("Events", {f: arrays[f] for f in arrays.fields}, counters={f: "nGenJet" for f in arrays.fields})
    dest = tmp_path / "out.root"
    with pytest.raises(BranchNotFoundError, match="GenCands_pt.*no_cands.root"):
        convert(src, dest, simulator=ConstituentSum())
    assert not dest.exists() and sorted(p.name for p in tmp_path.iterdir()) == ["no_cands.root"]


def test_processor_hands_constituents_to_the_model(tmp_path: Path) -> None:
    from coffea.nanoevents import NanoAODSchema, NanoEventsFactory

    from processors.fastsim import FastSimProcessor

    shutil.copy(EXAMPLE, tmp_path / "in.root")
    path = str(tmp_path / "in.root")
    n = uproot.open(path)["Events"].num_entries
    events = NanoEventsFactory.from_root({path: "Events"}, schemaclass=NanoAODSchema, mode="eager",
                                         metadata={"entrystart": 0, "entrystop": n,
                                                   "fileuuid": str(uproot.open(path).file.uuid)}).events()
    proc = FastSimProcessor()
    proc._simulator = ConstituentSum()
    reco = proc.simulate(events)
    convert(tmp_path / "in.root", tmp_path / "out.root", simulator=ConstituentSum())
    ref = uproot.open(tmp_path / "out.root")["Events"]["FastJet_pt"].array()
    assert ak.all(reco.pt == ref)


class ChargedSum(ConstituentSum):
    """Reco jet pT = scalar sum of the charged constituents' pT (a model that needs their charge and pdgId)."""

    def constituent_fields(self) -> tuple[str, ...]:
        return ("pt", "eta", "phi", "mass", "charge", "pdgId")

    def simulate(self, events: GenEvents) -> ak.Array:
        c = events.constituents
        assert set(ak.fields(c)) == set(self.constituent_fields())
        charged = ak.sum(ak.where(c.charge != 0, c.pt, 0.0), axis=2)
        idx = ak.local_index(events.jets.pt, axis=1)
        return ak.zip({"pt": ak.values_astype(charged, np.float32), "mass": ak.values_astype(0.0 * charged, np.float32),
                       "genJetIdx": ak.values_astype(idx, np.int32)})


def test_extra_constituent_fields_reach_the_model_from_convert_and_the_processor(tmp_path: Path) -> None:
    from coffea.nanoevents import NanoAODSchema, NanoEventsFactory

    from processors.fastsim import FastSimProcessor

    shutil.copy(EXAMPLE, tmp_path / "in.root")
    path = str(tmp_path / "in.root")
    n = uproot.open(path)["Events"].num_entries
    convert(path, tmp_path / "out.root", ConvertConfig(chunk_size=37), simulator=ChargedSum())
    written = uproot.open(tmp_path / "out.root")["Events"]["FastJet_pt"].array()
    events = NanoEventsFactory.from_root({path: "Events"}, schemaclass=NanoAODSchema, mode="eager",
                                         metadata={"entrystart": 0, "entrystop": n,
                                                   "fileuuid": str(uproot.open(path).file.uuid)}).events()
    proc = FastSimProcessor()
    proc._simulator = ChargedSum()
    assert ak.all(proc.simulate(events).pt == written)
    total = uproot.open(tmp_path / "out.root")["Events"]["GenJet_pt"].array()
    assert 0.3 < ak.sum(written) / ak.sum(total) < 0.9  # charged particles carry about 2/3 of the jet pT
    # a file without GenCands_pdgId: named before anything is written
    arrays = uproot.open(EXAMPLE)["Events"].arrays(filter_name=["GenJet_*", "GenCands_*", "GenJetCands_*"])
    src = tmp_path / "no_pdgid.root"
    with AtomicRootWriter(src) as out:
        fields = [f for f in arrays.fields if f != "GenCands_pdgId"]
        counters = {f: "n" + f.split("_")[0] for f in fields}
        out.extend("Events", {f: arrays[f] for f in fields}, counters=counters)
    with pytest.raises(BranchNotFoundError, match="GenCands_pdgId"):
        convert(src, tmp_path / "out2.root", simulator=ChargedSum())
    assert not (tmp_path / "out2.root").exists()
