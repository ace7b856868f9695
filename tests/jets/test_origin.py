"""A gen jet's origin from the GenPart hard-process record, on hand-made events; and the
matched counts of examples/kinematics_validation/count_by_origin.py."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import awkward as ak
import numpy as np

from hepfastsim.io.nanoaod import gen_jets
from hepfastsim.jets.origin import gen_jet_origin, singlet_daughter

SCRIPT = Path(__file__).resolve().parents[2] / "examples" / "kinematics_validation" / "count_by_origin.py"


def _events() -> dict[str, ak.Array]:
    """A W daughter, a top daughter, a hard gluon without mother, a jet far from every parton;
    an event without hard partons; an event without gen jets."""
    return {
        "GenPart_pdgId": ak.Array([[24, 2, 6, 5, 21], [21], []]),
        "GenPart_status": ak.Array([[22, 23, 22, 23, 23], [71], []]),
        "GenPart_genPartIdxMother": ak.Array([[-1, 0, -1, 2, -1], [-1], []]),
        "GenPart_eta": ak.Array([[0.0, 0.0, 1.0, 1.0, -2.0], [0.0], []]),
        "GenPart_phi": ak.Array([[0.0, 0.0, 1.0, 1.0, 3.1], [0.0], []]),
        "GenJet_pt": ak.Array([[50.0, 40, 30, 20], [25.0], []]),
        "GenJet_eta": ak.Array([[0.1, 1.0, -2.0, 3.0], [0.0], []]),
        "GenJet_phi": ak.Array([[0.0, 1.1, -3.1, -2.0], [0.0], []]),  # the third jet is across phi = pi
        "GenJet_mass": ak.Array([[5.0, 5, 5, 5], [5.0], []]),
    }


def test_origin_of_each_gen_jet() -> None:
    events = _events()
    assert np.array_equal(gen_jet_origin(events), [0, 1, 2, 3, 3])
    assert np.array_equal(singlet_daughter(events), [1.0, 0, 0, 0, 0])
    assert np.array_equal(singlet_daughter(events, max_dr=0.05), [0.0, 0, 0, 0, 0])  # the W daughter is 0.1 away
    no_record = {k: v for k, v in events.items() if not k.startswith("GenPart")}
    assert np.array_equal(singlet_daughter(no_record), np.zeros(5))


def test_gen_jets_carry_the_flag_where_the_file_has_the_record() -> None:
    events = _events()
    assert gen_jets(events).singletDaughter.tolist() == [[1, 0, 0, 0], [0], []]
    assert "singletDaughter" not in gen_jets({k: v for k, v in events.items() if not k.startswith("GenPart")}).fields


def test_matched_counts_of_the_example_script() -> None:
    spec = importlib.util.spec_from_file_location("count_by_origin", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    counts = ak.Array({"GenJet_pt": [[50.0, 40, 30, 20], [25.0], []], "Jet_genJetIdx": [[1, -1, 7], [0], [0]],
                       "Jet_nConstituents": [[10, 3, 4], [5], [6]]})
    gen, n = module.matched_counts(counts, "Jet")
    assert np.array_equal(gen, [1, 4]) and np.array_equal(n, [10, 5])  # unmatched and out-of-range dropped
