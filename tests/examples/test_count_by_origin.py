"""The gen-jet origin of examples/kinematics_validation/count_by_origin.py on hand-made events."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import awkward as ak
import numpy as np

SCRIPT = Path(__file__).resolve().parents[2] / "examples" / "kinematics_validation" / "count_by_origin.py"


def _module():  # noqa: ANN202
    spec = importlib.util.spec_from_file_location("count_by_origin", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_origin_of_each_gen_jet() -> None:
    """W daughter, top daughter, a hard gluon without mother, a jet far from every parton; an
    event without hard partons; an event without gen jets."""
    m = _module()
    events = ak.Array({
        "GenPart_pdgId": [[24, 2, 6, 5, 21], [21], []],
        "GenPart_status": [[22, 23, 22, 23, 23], [71], []],
        "GenPart_genPartIdxMother": [[-1, 0, -1, 2, -1], [-1], []],
        "GenPart_eta": [[0.0, 0.0, 1.0, 1.0, -2.0], [0.0], []],
        "GenPart_phi": [[0.0, 0.0, 1.0, 1.0, 3.1], [0.0], []],
        "GenJet_eta": [[0.1, 1.0, -2.0, 3.0], [0.0], []],
        "GenJet_phi": [[0.0, 1.1, -3.1, -2.0], [0.0], []],  # the third jet is across phi = pi
    })
    assert np.array_equal(m.gen_jet_origin(events), [0, 1, 2, 3, 3])
    counts = ak.Array({"GenJet_pt": [[50.0, 40, 30, 20], [25.0], []], "Jet_genJetIdx": [[1, -1, 7], [0], [0]],
                       "Jet_nConstituents": [[10, 3, 4], [5], [6]]})
    gen, n = m.matched_counts(counts, "Jet")
    assert np.array_equal(gen, [1, 4]) and np.array_equal(n, [10, 5])  # unmatched and out-of-range dropped
