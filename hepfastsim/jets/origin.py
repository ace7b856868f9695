"""Where a gen jet comes from, read off the ``GenPart`` hard-process record of a NanoAOD.

A jet whose nearest outgoing hard-process particle (Pythia status 23, within Delta R < 0.4) is a
daughter of a colour-singlet boson (W, Z, H, Z', W', ...) radiates less into its cone than a
jet from a QCD parton colour-connected to the beams: at the same gen pT, eta, mass and flavour
it has 6-10% fewer reco constituents (measured by
``examples/kinematics_validation/count_by_origin.py``). Gen-jet kinematics cannot tell the
two apart, the hard-process record can, and every NanoAOD with generator information has it.
The daughters include leptons: a gen jet made by a lepton of a W or Z decay (gen jets are
clustered from every visible particle) is flagged too, and differs from QCD jets as much.
"""

from __future__ import annotations

from typing import Any, Mapping

import awkward as ak
import numpy as np

from hepfastsim.io.nanoaod import GENPART_ORIGIN

__all__ = ["GENPART_ORIGIN", "SINGLET_BOSONS", "ORIGIN_CATEGORIES", "gen_jet_origin", "singlet_daughter"]

#: |pdgId| of colour-singlet bosons whose decay products count as singlet daughters.
SINGLET_BOSONS: tuple[int, ...] = (22, 23, 24, 25, 32, 33, 34, 35, 36, 37)
ORIGIN_CATEGORIES: tuple[str, ...] = ("colour-singlet daughter", "top daughter", "other hard particle", "no hard particle")
_HARD_OUTGOING = 23  # Pythia 8 status of the outgoing particles of the hard process and its resonance decays


def gen_jet_origin(arrays: Mapping[str, Any], jets: str = "GenJet", max_dr: float = 0.4) -> np.ndarray:
    """Category (index into :data:`ORIGIN_CATEGORIES`, int64) of every jet of ``jets``,
    flattened over events: that of the nearest outgoing hard-process particle within ``max_dr``
    (by its mother: colour-singlet boson, top quark, anything else or none), or 3 if there is none.

    ``arrays``: the ``<jets>_eta``, ``<jets>_phi`` and :data:`GENPART_ORIGIN` branches of a chunk.
    """
    mother = arrays["GenPart_genPartIdxMother"]
    pdg = arrays["GenPart_pdgId"]
    has_mother = mother >= 0
    mother_pdg = ak.where(has_mother, abs(pdg[ak.where(has_mother, mother, 0)]), 0)
    flat = ak.to_numpy(ak.flatten(mother_pdg))
    category = np.where(np.isin(flat, SINGLET_BOSONS), 0, np.where(flat == 6, 1, 2))
    category = ak.unflatten(category, ak.num(mother_pdg))
    hard = arrays["GenPart_status"] == _HARD_OUTGOING
    jet_eta, jet_phi = arrays[f"{jets}_eta"], arrays[f"{jets}_phi"]
    eta = ak.cartesian([jet_eta, arrays["GenPart_eta"][hard]], nested=True)
    phi = ak.cartesian([jet_phi, arrays["GenPart_phi"][hard]], nested=True)
    dphi = (phi["0"] - phi["1"] + np.pi) % (2 * np.pi) - np.pi
    dr = np.hypot(eta["0"] - eta["1"], dphi)
    nearest = ak.argmin(dr, axis=2, keepdims=True)
    parton_category = ak.broadcast_arrays(jet_eta[..., None], category[hard][:, None, :])[1]
    dr_min = ak.to_numpy(ak.flatten(ak.fill_none(ak.flatten(dr[nearest], axis=2), np.inf)))
    origin = ak.to_numpy(ak.flatten(ak.fill_none(ak.flatten(parton_category[nearest], axis=2), 3)))
    return np.where(dr_min < max_dr, origin, 3).astype(np.int64)


def singlet_daughter(arrays: Mapping[str, Any], jets: str = "GenJet", max_dr: float = 0.4) -> np.ndarray:
    """1.0 for each jet (flat, float64) whose nearest outgoing hard-process particle within
    ``max_dr`` is a daughter of a colour-singlet boson, else 0.0; all 0.0 if ``arrays`` has no GenPart record."""
    n = int(ak.sum(ak.num(arrays[f"{jets}_eta"], axis=1)))
    present = arrays.fields if isinstance(arrays, ak.Array) else arrays
    if not all(b in present for b in GENPART_ORIGIN):
        return np.zeros(n, np.float64)
    return (gen_jet_origin(arrays, jets, max_dr) == 0).astype(np.float64)
