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
