"""Drop-in coffea processor: run any hepfastsim ``Simulator`` on the events of each chunk.

Usable with coffea's ``Runner`` and its iterative, futures and dask executors. It holds
no physics: it turns NanoEvents into the branches the simulator reads, keys the random
numbers on (seed, file UUID, entry) exactly as ``hepfastsim convert`` does (so both give the
same jets for the same file), and returns the reco jets; optionally it writes one ROOT file
per chunk. The simulator is built lazily on the worker and kept out of the pickle.
"""

from __future__ import annotations

import os
from pathlib import Path
from collections.abc import Sequence
from typing import Any

import awkward as ak
import numpy as np
from coffea import processor

from hepfastsim.io.nanoaod import (
    CONSTITUENT_FIELDS,
    GENJET_FLAVOUR,
    GENPART_ORIGIN,
    PILEUP_BRANCH,
    RHO_BRANCHES,
    constituent_branch_names,
    file_key,
)
from hepfastsim.io.schema import DEFAULT_COLLECTION, collection_branches, counter_name, extra_collection_name
from hepfastsim.io.writer import AtomicRootWriter
from hepfastsim.kernels.rng import event_keys
from hepfastsim.simulators.base import DEFAULT_MODEL, GenEvents, Simulator, make_simulator

__all__ = ["FastSimProcessor", "nanoevents_branches", "collect_jets"]

_EVENT_ID = ("run", "luminosityBlock", "event")


def _materialize(array: Any) -> Any:
    # coffea's Runner hands out lazily loaded ("virtual") arrays; numba needs real buffers
    return ak.materialize(array) if hasattr(ak, "materialize") else array


def _field(events: Any, branch: str) -> Any | None:
    """A NanoAOD branch from NanoEvents (``Pileup_nPU`` -> ``events.Pileup.nPU``), or None."""
    fields = events.fields
    if branch in fields:
        return events[branch]
    if "_" in branch:
        collection, name = branch.split("_", 1)
        if collection in fields and name in events[collection].fields:
            return events[collection][name]
    return None


def nanoevents_branches(events: Any, constituents: bool = False,
                        constituent_fields: Sequence[str] = CONSTITUENT_FIELDS) -> dict[str, Any]:
    """The branches a simulator needs, by NanoAOD name, from a NanoEvents chunk.

    With ``constituents``, also the PFNano ``GenCands_<constituent_fields>`` and ``GenJetCands_*`` branches.
    """
    genjet = events.GenJet
    out: dict[str, Any] = {f"GenJet_{f}": genjet[f] for f in ("pt", "eta", "phi", "mass")}
    for branch in GENJET_FLAVOUR:
        name = branch.split("_", 1)[1]
        if name in genjet.fields:
            out[branch] = genjet[name]
    for branch in (PILEUP_BRANCH, *RHO_BRANCHES):
        value = _field(events, branch)
        if value is not None:
            out[branch] = value
    origin = {branch: _field(events, branch) for branch in GENPART_ORIGIN}  # the gen jets' origin, if there
    if all(v is not None for v in origin.values()):
        out.update(origin)
    if constituents:
        for branch in constituent_branch_names(constituent_fields):
            value = _field(events, branch)
            if value is None:
                raise KeyError(f"the model needs gen constituents, but the events have no {branch!r}")
            out[branch] = value
    return {k: _materialize(v) for k, v in out.items()}


class FastSimProcessor(processor.ProcessorABC):
    """Run the simulator ``model`` on each chunk; return its reco jets and counts.

    The output of a run is ``{dataset: {"events", "gen_jets", "reco_jets", "jets"}}`` where
    ``jets`` maps ``(filename, entrystart)`` to the chunk's reco jets (see :func:`collect_jets`).
    With ``output_dir``, each chunk is also written to
    ``<output_dir>/<file stem>_<entrystart>-<entrystop>.root`` (run, luminosityBlock, event
    and the reco collection), atomically and idempotently, so a retried chunk rewrites the
    same file.
    """

    def __init__(
        self,
        model: str = DEFAULT_MODEL,
        seed: int = 0,
        collection: str = DEFAULT_COLLECTION,
        output_dir: str | os.PathLike[str] | None = None,
    ) -> None:
        self.model = model
        self.seed = seed
        self.collection = collection
        self.output_dir = None if output_dir is None else str(output_dir)
        self._simulator: Simulator | None = None

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "_simulator": None}

    @property
    def simulator(self) -> Simulator:
        if self._simulator is None:
            self._simulator = make_simulator(self.model)
        return self._simulator

    def simulate(self, events: Any) -> ak.Array:
        """Reco jets (records per event, sorted by decreasing pT) for a NanoEvents chunk."""
        meta = events.metadata
        entries = np.arange(meta["entrystart"], meta["entrystop"], dtype=np.int64)
        keys = event_keys(self.seed, file_key(meta["fileuuid"]), entries)
        sim = self.simulator
        return sim.simulate(self._gen_events(events, keys))

    def _gen_events(self, events: Any, keys: np.ndarray) -> GenEvents:
        sim = self.simulator
        fields = sim.constituent_fields()
        branches = nanoevents_branches(events, constituents=sim.needs_constituents, constituent_fields=fields)
        return GenEvents.from_branches(branches, keys, constituents=sim.needs_constituents, constituent_fields=fields)

    def simulate_with_extras(self, events: Any) -> tuple[ak.Array, dict[str, ak.Array]]:
        """Reco jets and the simulator's extra collections (``Simulator.extra_collections``)."""
        meta = events.metadata
        entries = np.arange(meta["entrystart"], meta["entrystop"], dtype=np.int64)
        keys = event_keys(self.seed, file_key(meta["fileuuid"]), entries)
        return self.simulator.simulate_with_extras(self._gen_events(events, keys))

    def process(self, events: Any) -> dict[str, Any]:
        meta = events.metadata
        if self.output_dir is not None and self.simulator.extra_collections:
            reco, extras = self.simulate_with_extras(events)
            self._write_chunk(events, reco, extras)
        else:
            reco = self.simulate(events)
            if self.output_dir is not None:
                self._write_chunk(events, reco)
        n_gen = int(ak.sum(ak.num(events.GenJet)))
        return {
            meta["dataset"]: {
                "events": len(events),
                "gen_jets": n_gen,
                "reco_jets": int(ak.sum(ak.num(reco))),
                "jets": {(meta["filename"], int(meta["entrystart"])): reco},
            }
        }

    def _write_chunk(self, events: Any, reco: ak.Array, extras: dict[str, ak.Array] | None = None) -> None:
        meta = events.metadata
        stem = Path(meta["filename"]).name.removesuffix(".root")
        dest = Path(self.output_dir) / f"{stem}_{meta['entrystart']}-{meta['entrystop']}.root"
        branches: dict[str, Any] = {
            name: ak.to_numpy(_materialize(events[name])) for name in _EVENT_ID if name in events.fields
        }
        branches.update(collection_branches(self.collection, reco, self.simulator.output_fields))
        counters = {b: counter_name(self.collection) for b in branches if b.startswith(f"{self.collection}_")}
        for template, fields in self.simulator.extra_collections.items() if extras else ():
            name = extra_collection_name(template, self.collection)
            extra = collection_branches(name, extras[template], fields)
            branches.update(extra)
            counters.update({b: counter_name(name) for b in extra})
        with AtomicRootWriter(dest, overwrite=True) as out:
            out.extend("Events", branches, counters=counters)

    def postprocess(self, accumulator: dict[str, Any]) -> dict[str, Any]:
        return accumulator


def collect_jets(output: dict[str, Any], dataset: str) -> ak.Array:
    """Concatenate a dataset's reco jets in (file, entry) order, whatever the executor's order."""
    chunks = output[dataset]["jets"]
    return ak.concatenate([chunks[key] for key in sorted(chunks)])
