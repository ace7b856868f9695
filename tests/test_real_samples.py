"""``convert`` on the real CMS NanoAOD files of the coffea source distribution."""

from __future__ import annotations

import warnings

import awkward as ak
import pytest
import uproot
from coffea.nanoevents import NanoAODSchema, NanoEventsFactory

from hepfastsim.convert import convert
from hepfastsim.io.coffea_schema import FastSimNanoAODSchema
from coffea_samples import REAL_SAMPLES

# CMSSW provenance trees hold EDM classes that uproot can read only partly and cannot write.
UNWRITABLE_TREES = {"MetaData", "ParameterSets"}


def _events(path, schema):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # coffea's missing cross-reference notes
        return NanoEventsFactory.from_root({str(path): "Events"}, schemaclass=schema, mode="eager").events()


@pytest.mark.network
@pytest.mark.parametrize("name", REAL_SAMPLES)
def test_convert_real_sample(name, coffea_samples, tmp_path) -> None:
    src, out = coffea_samples / name, tmp_path / name
    summary = convert(src, out)
    before, after = uproot.open(src), uproot.open(out)

    trees = {k.split(";")[0] for k, c in before.classnames().items() if c == "TTree"}
    assert set(summary.not_copied) == trees & UNWRITABLE_TREES
    for tree in sorted(trees - UNWRITABLE_TREES):
        b, a = before[tree], after[tree]
        assert a.num_entries == b.num_entries
        missing = set(b.keys()) - set(a.keys())
        assert not missing, f"{tree}: {sorted(missing)[:5]}"
        arrays_b, arrays_a = b.arrays(library="ak"), a.arrays(b.keys(), library="ak")
        for branch in b.keys():
            x, y = arrays_b[branch], arrays_a[branch]
            assert ak.array_equal(x, y, equal_nan=True, dtype_exact=not branch.startswith("n")), f"{tree}/{branch}"

    events = after["Events"].arrays(["nFastJet", "FastJet_pt", "FastJet_genJetIdx", "GenJet_pt"])
    assert ak.all(events.nFastJet == ak.num(events.FastJet_pt))
    assert summary.reco_jets == ak.sum(events.nFastJet) > 0
    assert ak.all(events.FastJet_genJetIdx < ak.num(events.GenJet_pt))

    plain = _events(out, NanoAODSchema)  # coffea's own schema reads the new collection
    assert {"pt", "eta", "phi", "mass", "genJetIdx"} <= set(plain.FastJet.fields)
    fast = _events(out, FastSimNanoAODSchema)
    dijet = fast.FastJet[ak.num(fast.FastJet) >= 2]
    pair = dijet[:, 0] + dijet[:, 1]  # four-vector behaviour
    assert ak.all(pair.mass > 0)
    reco = fast.FastJet[fast.FastJet.genJetIdx >= 0]  # -1: pileup/fake jets
    matched = fast.GenJet[reco.genJetIdx]
    assert ak.all(abs(matched.eta - reco.eta) < 0.5)
