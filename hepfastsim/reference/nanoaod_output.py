"""The one declaration of what ``hepfastsim generate`` writes (NanoAOD / PFNano naming).

Collections (jagged, counter ``n<Prefix>``) and event scalars of the ``Events`` tree,
with their dtypes and units; the ``Runs`` tree carries the sums of weights. A block of
the chain is turned into writer input by :func:`to_writer_branches`.

- ``GenJet_*`` / ``GenJetAK8_*``: anti-kt 0.4 / 0.8 on visible stable particles of the
  hard event (no pileup, no neutrinos); pT > 10 / 100 GeV.
- ``Jet_*`` / ``FatJet_*``: anti-kt 0.4 / 0.8 on CHS particle-flow candidates, corrected
  (L1 + L2L3); pT > 15 / 100 GeV; ``rawFactor = 1 - raw/corrected`` as in NanoAOD;
  ``Jet_genJetIdx`` / ``FatJet_genJetAK8Idx``: closest gen jet within dR < 0.2 / 0.4;
  ``Jet_partonFlavour`` / ``Jet_hadronFlavour`` are those of the matched GenJet (0 if none).
- ``FatJet_msoftdrop`` / ``GenJetAK8_msoftdrop`` (the latter a hepfastsim extension):
  soft-drop mass (z_cut 0.1, beta 0) of the jet's constituents, uncorrected, GeV.
- ``GenPart_*``: the pruned hard-process record (Pythia |status| 22, 23: resonances,
  outgoing partons and resonance decays), ``statusFlags`` = isHardProcess (bit 7) |
  fromHardProcess (bit 8); coffea treats a file with ``GenPart`` as simulation.
- ``GenCands_*`` / ``PFCands_*``: the constituents of the stored jets only (PFNano
  "jets only" mode); ``GenJetCands``, ``GenFatJetCands``, ``JetPFCands`` and
  ``FatJetPFCands`` map jets to candidates (``jetIdx``, ``pFCandsIdx``).
- ``fixedGridRhoFastjetAll`` (Run-2 name), ``Pileup_nPU``, ``Pileup_nTrueInt`` (mu),
  ``genWeight``, ``Generator_weight``, ``Generator_binvar`` (pT-hat).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import awkward as ak
import numpy as np

__all__ = ["EVENT_SCALARS", "COLLECTIONS", "RUNS_BRANCHES", "BlockOutput", "to_writer_branches", "runs_branches"]

#: event-level branches: name -> (dtype, unit / meaning)
EVENT_SCALARS: dict[str, tuple[type, str]] = {
    "run": (np.uint32, "always 1"),
    "luminosityBlock": (np.uint32, "block index + 1 (the unit of seeding)"),
    "event": (np.uint64, "1-based event number in the file"),
    "genWeight": (np.float32, "generator weight (pT-hat bias weight for biased QCD, else 1)"),
    "Generator_weight": (np.float32, "same as genWeight"),
    "Generator_binvar": (np.float32, "pT-hat of the hard 2 -> 2 scattering (GeV)"),
    "Pileup_nPU": (np.int32, "number of overlaid minimum-bias interactions"),
    "Pileup_nTrueInt": (np.float32, "Poisson mean mu of the pileup"),
    "fixedGridRhoFastjetAll": (np.float32, "median pT density of all PF candidates, |y|<5 (GeV)"),
}

_KIN = {"pt": np.float32, "eta": np.float32, "phi": np.float32, "mass": np.float32}
#: jagged collections: prefix -> {field: dtype}
COLLECTIONS: dict[str, dict[str, type]] = {
    "GenJet": {**_KIN, "partonFlavour": np.int32, "hadronFlavour": np.int32, "nConstituents": np.int32},
    "GenJetAK8": {**_KIN, "partonFlavour": np.int32, "hadronFlavour": np.int32, "nConstituents": np.int32,
                  "msoftdrop": np.float32},
    "Jet": {**_KIN, "area": np.float32, "rawFactor": np.float32, "genJetIdx": np.int32,
            "nConstituents": np.int32, "partonFlavour": np.int32, "hadronFlavour": np.int32},
    "FatJet": {**_KIN, "area": np.float32, "rawFactor": np.float32, "genJetAK8Idx": np.int32,
               "nConstituents": np.int32, "msoftdrop": np.float32},
    "GenPart": {**_KIN, "pdgId": np.int32, "status": np.int32, "genPartIdxMother": np.int32,
                "statusFlags": np.int32},
    "GenCands": {**_KIN, "charge": np.int32, "pdgId": np.int32},
    "PFCands": {**_KIN, "charge": np.int32, "pdgId": np.int32},
    "GenJetCands": {"jetIdx": np.int32, "pFCandsIdx": np.int32},
    "GenFatJetCands": {"jetIdx": np.int32, "pFCandsIdx": np.int32},
    "JetPFCands": {"jetIdx": np.int32, "pFCandsIdx": np.int32},
    "FatJetPFCands": {"jetIdx": np.int32, "pFCandsIdx": np.int32},
}

RUNS_BRANCHES: dict[str, type] = {
    "run": np.uint32,
    "genEventCount": np.int64,
    "genEventSumw": np.float64,
    "genEventSumw2": np.float64,
    "genXsec_pb": np.float64,  # Pythia's cross-section estimate, event-weighted over blocks
}


@dataclass
class BlockOutput:
    """What a worker returns for one block: flat arrays, cheap to pickle.

    ``scalars``: name -> array (n_events); ``collections``: prefix -> (counts, {field: values}).
    ``timings``: seconds per stage; ``sumw``, ``sumw2``; ``sigma_pb``; ``extra`` for derivation.
    """

    block: int
    n_events: int
    scalars: dict[str, np.ndarray]
    collections: dict[str, tuple[np.ndarray, dict[str, np.ndarray]]]
    timings: dict[str, float]
    sumw: float
    sumw2: float
    sigma_pb: float
    extra: dict = field(default_factory=dict)


def to_writer_branches(out: BlockOutput) -> dict[str, np.ndarray | ak.Array]:
    """Branches for :meth:`AtomicRootWriter.extend`, in the declared dtypes and order."""
    branches: dict[str, np.ndarray | ak.Array] = {}
    for name, (dtype, _) in EVENT_SCALARS.items():
        branches[name] = np.ascontiguousarray(out.scalars[name], dtype=dtype)
    for prefix, fields in COLLECTIONS.items():
        counts, values = out.collections[prefix]
        counts = np.asarray(counts, dtype=np.int64)
        for fname, dtype in fields.items():
            branches[f"{prefix}_{fname}"] = ak.unflatten(np.asarray(values[fname], dtype=dtype), counts)
    return branches


def runs_branches(n_events: int, sumw: float, sumw2: float, xsec_pb: float) -> dict[str, np.ndarray]:
    """The one-entry ``Runs`` tree."""
    values = {"run": 1, "genEventCount": n_events, "genEventSumw": sumw, "genEventSumw2": sumw2,
              "genXsec_pb": xsec_pb}
    return {k: np.array([values[k]], dtype=dt) for k, dt in RUNS_BRANCHES.items()}
