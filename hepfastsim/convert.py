"""``convert``: gen jets of a NanoAOD-like file in, the same file plus a reco jet collection out.

Every branch of the events tree and every other tree is copied; the new collection is
added with its own counter (``nFastJet``, ``FastJet_pt``, ...), and so are the extra
collections a model declares (``Simulator.extra_collections``, e.g. the particle VAE's
``FastPFCands_*`` constituents with ``FastJetPFCands_{jetIdx,pFCandsIdx}`` links). The output is written to a
temporary file and renamed into place only when complete. Random numbers are keyed on
(seed, file UUID, entry, draw), so the output does not depend on the chunk size.
"""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import awkward as ak
import numpy as np
import uproot

from hepfastsim.errors import HepfastsimError, InputFileError, OutputError
from hepfastsim.io.nanoaod import (
    ChunkSize,
    InputTree,
    constituent_branches,
    gen_branches,
    iterate_chunks,
    open_tree,
)
from hepfastsim.io.schema import (
    DEFAULT_COLLECTION,
    OVERSAMPLE_INDEX_BRANCH,
    OVERSAMPLE_WEIGHT_BRANCH,
    collection_branches,
    counter_name,
    extra_collection_name,
)
from hepfastsim.io.writer import AtomicRootWriter, check_destination
from hepfastsim.kernels.rng import event_keys
from hepfastsim.simulators.base import DEFAULT_MODEL, GenEvents, Simulator, make_simulator

__all__ = ["ConvertConfig", "ConvertSummary", "convert", "output_uuid"]


@dataclass(frozen=True)
class ConvertConfig:
    """Options of :func:`convert` (the CLI flags of ``hepfastsim convert``)."""

    model: str = DEFAULT_MODEL
    collection: str = DEFAULT_COLLECTION
    seed: int = 0
    chunk_size: ChunkSize = "100 MB"  # events per chunk, or a memory size per chunk
    oversample: int = 1
    overwrite: bool = False
    tree: str = "Events"
    # byte-for-byte reproducible output: ROOT UUID from (input UUID, options), fixed timestamps
    reproducible: bool = False


@dataclass
class ConvertSummary:
    """What a conversion did; counts are of input events and jets unless stated."""

    input: str
    output: str
    model: str
    events: int = 0
    events_written: int = 0
    events_without_gen_jets: int = 0
    gen_jets: int = 0
    invalid_gen_jets: int = 0  # NaN/inf kinematics or pT <= 0: no reco jet made
    reco_jets: int = 0
    trees_copied: list[str] = field(default_factory=list)
    objects_copied: list[str] = field(default_factory=list)
    not_copied: dict[str, str] = field(default_factory=dict)  # name -> reason
    seconds: float = 0.0

    @property
    def events_per_second(self) -> float:
        return self.events / self.seconds if self.seconds > 0 else float("nan")


def output_uuid(input_uuid: uuid.UUID | str, config: ConvertConfig, model: str) -> uuid.UUID:
    """ROOT UUID of a reproducible output: a name-based (v5) UUID of the input file's UUID and
    every option that changes the content, so different seeds or models never share one."""
    name = f"{uuid.UUID(str(input_uuid))}|{model}|{config.collection}|{config.seed}|{config.oversample}|{config.tree}"
    return uuid.uuid5(uuid.NAMESPACE_URL, f"hepfastsim:convert:{name}")


def _check_paths(input_path: str, output_path: str, config: ConvertConfig) -> None:
    if config.oversample < 1:
        raise HepfastsimError(f"--oversample must be at least 1, got {config.oversample}")
    if not config.collection.isidentifier() or "_" in config.collection:
        raise HepfastsimError(
            f"--collection must be a name without underscores like 'FastJet', got {config.collection!r}"
        )
    check_destination(output_path, overwrite=config.overwrite)
    if Path(input_path).exists() and Path(output_path).exists() and os.path.samefile(input_path, output_path):
        raise OutputError(output_path, "it is the input file")


def _check_collection_free(source: InputTree, collection: str, extras: tuple[str, ...] = ()) -> None:
    if len({collection, *extras}) != 1 + len(extras):
        raise HepfastsimError(
            f"--collection {collection!r} gives the model's collections clashing names {[collection, *extras]}; "
            "choose another --collection"
        )
    for name in (collection, *extras):
        taken = [
            b
            for b in source.branch_names
            if b.startswith(f"{name}_") or b in (counter_name(name), OVERSAMPLE_INDEX_BRANCH)
        ]
        if taken:
            raise HepfastsimError(
                f"tree {source.name!r} of {source.path!r} already has branch {taken[0]!r}; "
                f"choose another --collection than {collection!r}"
            )


def _other_objects(path: str, events_tree: str) -> dict[str, str]:
    try:
        classnames = uproot.open(path).classnames(recursive=False)
    except Exception as err:  # already opened once by open_tree, so this is unexpected
        raise InputFileError(path, str(err)) from err
    latest: dict[str, str] = {}
    for key, cls in classnames.items():
        name = key.split(";")[0]
        if name != events_tree and name not in latest:  # keys are listed highest cycle first
            latest[name] = cls
    return latest


def _copy_tree(out: AtomicRootWriter, source: InputTree, chunk_size: ChunkSize) -> None:
    keep = [b for b in source.branch_names if b not in set(source.counters.values())]
    for chunk in iterate_chunks(source, keep, step_size=chunk_size):
        out.extend(source.name, chunk.arrays, counters=source.counters)


def _copy_others(out: AtomicRootWriter, path: str, events_tree: str, chunk_size: ChunkSize, summary: ConvertSummary) -> None:
    for name, cls in _other_objects(path, events_tree).items():
        if cls == "TTree":
            source = open_tree(path, name)
            unwritable = source.unwritable_branches()
            if unwritable:
                branch, typename = next(iter(unwritable.items()))
                summary.not_copied[name] = f"branch {branch!r} has type {typename}, which uproot cannot write"
                continue
            _copy_tree(out, source, chunk_size)
            summary.trees_copied.append(name)
            continue
        try:
            obj = uproot.open(path)[name]
            out.write_object(name, str(obj) if cls == "TObjString" else obj)
            summary.objects_copied.append(name)
        except Exception as err:  # uproot can write histograms and strings, not every class
            summary.not_copied[name] = f"{cls} cannot be written by uproot ({type(err).__name__})"


def convert(
    input_path: str | os.PathLike[str],
    output_path: str | os.PathLike[str],
    config: ConvertConfig = ConvertConfig(),
    *,
    simulator: Simulator | None = None,
    on_progress: Callable[[int], None] | None = None,
) -> ConvertSummary:
    """Add a fast-simulated reco jet collection to a copy of ``input_path`` at ``output_path``.

    ``on_progress`` is called with the number of input events of each finished chunk.
    Raises a :class:`~hepfastsim.errors.HepfastsimError` (and leaves nothing at
    ``output_path``) on bad input.
    """
    start = time.perf_counter()
    input_path, output_path = str(input_path), str(output_path)
    _check_paths(input_path, output_path, config)
    source = open_tree(input_path, config.tree)
    gen_branches(source)  # raises BranchNotFoundError naming file, tree and branch
    sim = simulator if simulator is not None else make_simulator(config.model)
    extras = {t: extra_collection_name(t, config.collection) for t in sim.extra_collections}
    _check_collection_free(source, config.collection, tuple(extras.values()))
    if sim.needs_constituents:
        constituent_branches(source, sim.constituent_fields())  # the model reads gen constituents: name a missing branch now
    summary = ConvertSummary(input=input_path, output=output_path, model=sim.name)

    unwritable = source.unwritable_branches()
    for branch, typename in unwritable.items():
        summary.not_copied[f"{source.name}/{branch}"] = f"type {typename}, which uproot cannot write"
    counters = set(source.counters.values())
    keep = [b for b in source.branch_names if b not in counters and b not in unwritable]
    new_counters = {f"{config.collection}_{f}": counter_name(config.collection) for f in sim.output_fields}
    for template, name in extras.items():
        new_counters.update({f"{name}_{f}": counter_name(name) for f in sim.extra_collections[template]})
    K = config.oversample

    fixed_uuid = output_uuid(source.tree.file.uuid, config, sim.name) if config.reproducible else None
    with AtomicRootWriter(output_path, overwrite=config.overwrite, reproducible_uuid=fixed_uuid) as out:
        for chunk in iterate_chunks(source, keep, step_size=config.chunk_size):
            arrays: dict[str, Any] = chunk.arrays
            n = len(chunk)
            entries = np.arange(chunk.entry_start, chunk.entry_stop, dtype=np.int64)
            draws = np.zeros(n, dtype=np.int64)
            if K > 1:
                rows = np.repeat(np.arange(n), K)
                arrays = {name: arr[rows] for name, arr in arrays.items()}
                entries, draws = entries[rows], np.tile(np.arange(K, dtype=np.int64), n)
            events = GenEvents.from_branches(arrays, event_keys(config.seed, source.file_key, entries, draws),
                                            constituents=sim.needs_constituents,
                                            constituent_fields=sim.constituent_fields())
            jets = events.jets
            if extras:
                reco, extra_objects = sim.simulate_with_extras(events)
            else:
                reco, extra_objects = sim.simulate(events), {}
            branches = {**arrays, **collection_branches(config.collection, reco, sim.output_fields)}
            for template, name in extras.items():
                branches.update(collection_branches(name, extra_objects[template], sim.extra_collections[template]))
            if K > 1:
                weight = ak.to_numpy(arrays["genWeight"]).astype(np.float32) if "genWeight" in arrays else np.ones(len(entries), np.float32)
                branches[OVERSAMPLE_INDEX_BRANCH] = draws.astype(np.int32)
                branches[OVERSAMPLE_WEIGHT_BRANCH] = weight / np.float32(K)
            out.extend(source.name, branches, counters={**source.counters, **new_counters})

            n_gen = ak.to_numpy(ak.num(jets, axis=1))[::K] if K > 1 else ak.to_numpy(ak.num(jets, axis=1))
            finite = np.isfinite(ak.flatten(jets.pt)) & np.isfinite(ak.flatten(jets.eta))
            finite = finite & np.isfinite(ak.flatten(jets.phi)) & np.isfinite(ak.flatten(jets.mass))
            finite = finite & (ak.flatten(jets.pt) > 0)
            summary.events += n
            summary.events_written += len(entries)
            summary.events_without_gen_jets += int(np.sum(n_gen == 0))
            summary.gen_jets += int(n_gen.sum())
            summary.invalid_gen_jets += int(np.sum(~ak.to_numpy(finite))) // K
            summary.reco_jets += int(ak.sum(ak.num(reco, axis=1)))
            if on_progress is not None:
                on_progress(n)
        summary.trees_copied.append(source.name)
        _copy_others(out, input_path, source.name, config.chunk_size, summary)
    summary.seconds = time.perf_counter() - start
    return summary
