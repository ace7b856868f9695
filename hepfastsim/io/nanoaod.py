"""Reading NanoAOD-like ROOT files as chunks of awkward arrays.

Handles CMS-written files (jagged ``Jet_pt`` counted by ``nJet``), uproot-written files
whose jagged branches each carry their own counter (``nJet_pt``), Run 2 and Run 3 names
of the event energy density (``fixedGridRhoFastjetAll`` / ``Rho_fixedGridRhoFastjetAll``),
and PFNano constituents (``GenCands_*`` linked to jets by ``GenJetCands_{jetIdx,pFCandsIdx}``).

Memory is bounded by the chunk size: nothing here reads a whole file at once.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import awkward as ak
import numpy as np
import uproot

from hepfastsim.errors import BranchNotFoundError, HepfastsimError, InputFileError, TreeNotFoundError

__all__ = [
    "RHO_BRANCHES",
    "GENJET_KINEMATICS",
    "GENCAND_KINEMATICS",
    "CONSTITUENT_FIELDS",
    "constituent_branch_names",
    "GENJET_LINKS",
    "constituent_branches",
    "InputTree",
    "Chunk",
    "open_tree",
    "iterate_chunks",
    "collection",
    "gen_jets",
    "event_rho",
    "event_npu",
    "gen_branches",
    "GENPART_ORIGIN",
    "file_key",
    "jet_constituents",
]

#: Event energy density (GeV per unit area), Run 2 name first, then Run 3 (NanoAOD v12+).
RHO_BRANCHES: tuple[str, ...] = ("fixedGridRhoFastjetAll", "Rho_fixedGridRhoFastjetAll")
#: Branches every input of ``convert`` must have.
GENJET_KINEMATICS: tuple[str, ...] = ("GenJet_pt", "GenJet_eta", "GenJet_phi", "GenJet_mass")
#: Read when present; zero when absent.
GENJET_FLAVOUR: tuple[str, ...] = ("GenJet_partonFlavour", "GenJet_hadronFlavour")
#: The GenPart hard-process record a gen jet's origin is read from (hepfastsim.jets.origin); optional.
GENPART_ORIGIN: tuple[str, ...] = (
    "GenPart_eta", "GenPart_phi", "GenPart_pdgId", "GenPart_status", "GenPart_genPartIdxMother",
)
PILEUP_BRANCH = "Pileup_nPU"
# PFNano gen constituents: candidate kinematics and the (jet, candidate) links of each GenJet
GENCAND_KINEMATICS: tuple[str, ...] = ("GenCands_pt", "GenCands_eta", "GenCands_phi", "GenCands_mass")
#: The constituent fields read by default (those of GENCAND_KINEMATICS).
CONSTITUENT_FIELDS: tuple[str, ...] = ("pt", "eta", "phi", "mass")
GENJET_LINKS: tuple[str, ...] = ("GenJetCands_jetIdx", "GenJetCands_pFCandsIdx")

ChunkSize = int | str


def file_key(file_uuid: str | uuid.UUID) -> int:
    """A 64-bit key for per-event seeds: the file's ROOT UUID folded to 64 bits.

    The UUID is written once when the file is created, so the key survives renames and
    copies and does not depend on where the file is read from. coffea passes the same UUID
    to processors as ``events.metadata["fileuuid"]``.
    """
    value = int(uuid.UUID(str(file_uuid)))
    return (value ^ (value >> 64)) & 0xFFFFFFFFFFFFFFFF


def _jagged_counters(tree: Any) -> dict[str, str]:
    """Map every jagged branch to its counter branch name.

    Uses the branch's own counter when ROOT recorded one, else the NanoAOD convention
    (``nJet`` for ``Jet_pt``, ``nJet_pt`` as uproot writes, ``nLHEPdfWeight``), else a new
    counter ``n<branch>`` that the writer will create.
    """
    flat = {b.name for b in tree.branches if not isinstance(b.interpretation, uproot.AsJagged)}
    counters: dict[str, str] = {}
    for branch in tree.branches:
        if not isinstance(branch.interpretation, uproot.AsJagged):
            continue
        name = branch.name
        if branch.count_branch is not None:
            counters[name] = branch.count_branch.name
            continue
        prefix = name.split("_", 1)[0]
        for candidate in (f"n{name}", f"n{prefix}"):
            if candidate in flat:
                counters[name] = candidate
                break
        else:
            counters[name] = f"n{name}"
    return counters


@dataclass(frozen=True)
class InputTree:
    """An opened, validated input tree."""

    path: str
    name: str
    tree: Any = field(repr=False)
    file_key: int
    counters: Mapping[str, str] = field(repr=False)

    @property
    def num_entries(self) -> int:
        return int(self.tree.num_entries)

    @property
    def branch_names(self) -> list[str]:
        return [b.name for b in self.tree.branches]

    def require(self, branches: Sequence[str]) -> None:
        """Raise :class:`BranchNotFoundError` for the first of ``branches`` that is missing."""
        present = set(self.branch_names)
        for branch in branches:
            if branch not in present:
                raise BranchNotFoundError(self.path, self.name, branch, present)

    def unwritable_branches(self) -> dict[str, str]:
        """Branches uproot can read but cannot write as TTree branches (name -> type name):
        anything other than numbers, booleans, and variable-length lists of them."""
        out = {}
        for branch in self.tree.branches:
            interp = branch.interpretation
            if isinstance(interp, uproot.AsJagged):
                interp = interp.content
            if not isinstance(interp, uproot.AsDtype) or interp.from_dtype.names is not None:
                out[branch.name] = branch.typename
        return out

    def first_present(self, candidates: Sequence[str]) -> str | None:
        present = set(self.branch_names)
        return next((c for c in candidates if c in present), None)


def open_tree(path: str | os.PathLike[str], tree: str = "Events") -> InputTree:
    """Open ``tree`` of a ROOT file, turning every failure into a one-line error naming the file."""
    path_str = str(path)
    p = Path(path_str)
    if not p.exists():
        raise InputFileError(path_str, "no such file")
    if p.is_dir():
        raise InputFileError(path_str, "it is a directory")
    if not os.access(p, os.R_OK):
        raise InputFileError(path_str, "permission denied")
    _check_header(p)
    try:
        file = uproot.open(path_str)
        classnames = file.classnames(recursive=False)
    except Exception as err:  # uproot raises ValueError, OSError, DeserializationError, ...
        raise InputFileError(path_str, _describe(err)) from err
    trees = {k.split(";")[0]: v for k, v in classnames.items() if v in ("TTree", "ROOT::RNTuple")}
    if tree not in trees:
        raise TreeNotFoundError(path_str, tree, trees)
    if trees[tree] != "TTree":
        raise InputFileError(path_str, f"{tree!r} is an {trees[tree]}, expected a TTree")
    try:
        ttree = file[tree]
        counters = _jagged_counters(ttree)
    except Exception as err:
        raise InputFileError(path_str, f"tree {tree!r} cannot be read: {_describe(err)}") from err
    return InputTree(path=path_str, name=tree, tree=ttree, file_key=file_key(file.file.uuid), counters=counters)


def _check_header(path: Path) -> None:
    """Recognise non-ROOT and truncated files from the ROOT file header (TFile format:
    magic ``root``, version, fBEGIN, then fEND as 32- or, from version 1000000, 64-bit)."""
    size = path.stat().st_size
    with open(path, "rb") as f:
        header = f.read(20)
    if header[:4] != b"root":
        raise InputFileError(str(path), "not a ROOT file (it does not start with 'root')")
    if len(header) < 20:
        raise InputFileError(str(path), f"truncated: only {size} bytes")
    version = int.from_bytes(header[4:8], "big", signed=True)
    end = int.from_bytes(header[12:20] if version >= 1000000 else header[12:16], "big")
    if size < end:
        raise InputFileError(str(path), f"truncated: the header says {end:,} bytes, the file has {size:,}")


def _describe(err: BaseException) -> str:
    text = str(err).strip().splitlines()
    first = text[0] if text else ""
    return f"{type(err).__name__}: {first}" if first else type(err).__name__


@dataclass(frozen=True)
class Chunk:
    """Entries ``[entry_start, entry_stop)`` of a tree, one array per branch name."""

    entry_start: int
    entry_stop: int
    arrays: dict[str, Any]

    def __len__(self) -> int:
        return self.entry_stop - self.entry_start


def iterate_chunks(
    source: InputTree,
    branches: Sequence[str] | None = None,
    step_size: ChunkSize = "100 MB",
    entry_start: int = 0,
    entry_stop: int | None = None,
) -> Iterator[Chunk]:
    """Yield chunks of ``branches`` (all when None) with at most ``step_size`` entries (or bytes).

    An empty range yields a single chunk of length 0 (with typed, empty arrays).

    Counter branches of jagged collections are not returned separately (they are the
    lengths of the jagged arrays). Read errors (a truncated or corrupt file) become
    :class:`InputFileError` naming the file.
    """
    if branches is None:
        counters = set(source.counters.values())
        branches = [b for b in source.branch_names if b not in counters]
    else:
        source.require(branches)
    if isinstance(step_size, int) and step_size < 1:
        raise HepfastsimError(f"chunk size must be a positive number of events, got {step_size}")
    stop = source.num_entries if entry_stop is None else entry_stop
    if not branches:
        return
    if stop <= entry_start:
        # An empty range still yields one empty chunk, so that writers learn the types.
        try:
            empty = source.tree.arrays(list(branches), entry_start=0, entry_stop=0, library="ak", how=dict)
        except Exception as err:
            raise InputFileError(source.path, f"reading tree {source.name!r} failed: {_describe(err)}") from err
        yield Chunk(entry_start, entry_start, empty)
        return
    iterator = source.tree.iterate(
        list(branches),
        step_size=step_size,
        entry_start=entry_start,
        entry_stop=stop,
        library="ak",
        how=dict,
        report=True,
    )
    while True:
        try:
            arrays, report = next(iterator)
        except StopIteration:
            return
        except Exception as err:
            raise InputFileError(
                source.path, f"reading tree {source.name!r} failed (truncated or corrupt file?): {_describe(err)}"
            ) from err
        yield Chunk(int(report.tree_entry_start), int(report.tree_entry_stop), arrays)


def collection(arrays: Mapping[str, Any], name: str, fields: Sequence[str] | None = None) -> ak.Array:
    """Zip the jagged branches ``<name>_<field>`` of a chunk into one record per object.

    Works whether the fields share one counter (CMS files) or each has its own
    (``nJet_pt`` style): awkward checks the per-event lengths agree.
    """
    prefix = f"{name}_"
    selected = fields if fields is not None else [k[len(prefix):] for k in arrays if k.startswith(prefix)]
    if not selected:
        raise HepfastsimError(f"no branches '{prefix}*' in this chunk")
    try:
        return ak.zip({f: arrays[prefix + f] for f in selected}, depth_limit=2)
    except ValueError as err:
        raise HepfastsimError(f"the branches of collection {name!r} have different lengths per event") from err


def gen_jets(arrays: Mapping[str, Any]) -> ak.Array:
    """Generator-level AK4 jets: records of pt (GeV), eta, phi (rad), mass (GeV), and the
    parton and hadron flavours (int32; 0 where the file does not have them)."""
    jets = collection(arrays, "GenJet", [b.split("_", 1)[1] for b in GENJET_KINEMATICS])
    jets = ak.zip({f: ak.values_astype(jets[f], np.float32) for f in jets.fields}, depth_limit=2)
    for branch in GENJET_FLAVOUR:
        flavour = branch.split("_", 1)[1]
        values = arrays[branch] if branch in arrays else ak.zeros_like(jets.pt, dtype=np.int32)
        jets = ak.with_field(jets, ak.values_astype(values, np.int32), flavour)
    if all(b in arrays for b in GENPART_ORIGIN):
        from hepfastsim.jets.origin import singlet_daughter

        flag = singlet_daughter(arrays).astype(np.int8)
        jets = ak.with_field(jets, ak.unflatten(flag, ak.num(jets.pt, axis=1)), "singletDaughter")
    return jets


def event_rho(arrays: Mapping[str, Any], n_events: int) -> np.ndarray:
    """Event energy density rho in GeV (float32, shape (n_events,)); zero when absent."""
    for branch in RHO_BRANCHES:
        if branch in arrays:
            return np.asarray(ak.to_numpy(arrays[branch]), dtype=np.float32)
    return np.zeros(n_events, dtype=np.float32)


def event_npu(arrays: Mapping[str, Any], n_events: int) -> np.ndarray:
    """Number of pileup interactions (float32, shape (n_events,)); zero when absent (data)."""
    if PILEUP_BRANCH in arrays:
        return np.asarray(ak.to_numpy(arrays[PILEUP_BRANCH]), dtype=np.float32)
    return np.zeros(n_events, dtype=np.float32)


def gen_branches(source: InputTree) -> list[str]:
    """The branches a simulator needs from ``source`` (raises if a GenJet kinematic is missing)."""
    source.require(GENJET_KINEMATICS)
    present = set(source.branch_names)
    optional = [b for b in (*GENJET_FLAVOUR, PILEUP_BRANCH) if b in present]
    origin = list(GENPART_ORIGIN) if present.issuperset(GENPART_ORIGIN) else []
    rho = source.first_present(RHO_BRANCHES)
    return [*GENJET_KINEMATICS, *optional, *([rho] if rho else []), *origin]


def constituent_branch_names(fields: Sequence[str] = CONSTITUENT_FIELDS) -> list[str]:
    """The PFNano branches that give each GenJet its constituents with ``fields``: the
    kinematics, ``GenCands_<field>`` of the other fields, and the links."""
    extra = [f"GenCands_{f}" for f in fields if f"GenCands_{f}" not in GENCAND_KINEMATICS]
    return [*GENCAND_KINEMATICS, *extra, *GENJET_LINKS]


def constituent_branches(source: InputTree, fields: Sequence[str] = CONSTITUENT_FIELDS) -> list[str]:
    """:func:`constituent_branch_names` of ``fields``; raises naming a missing one."""
    names = constituent_branch_names(fields)
    source.require(names)
    return names


def jet_constituents(
    arrays: Mapping[str, Any],
    candidates: str = "GenCands",
    links: str = "GenJetCands",
    jets: str = "GenJet",
    fields: Sequence[str] = CONSTITUENT_FIELDS,
) -> ak.Array:
    """Constituents of each jet from PFNano links, shape [event][jet][constituent].

    ``<links>_jetIdx`` and ``<links>_pFCandsIdx`` point into the ``<jets>`` and
    ``<candidates>`` collections of the same event; constituents keep the order of the
    links within each jet.
    """
    cands = collection(arrays, candidates, list(fields))
    jet_idx = arrays[f"{links}_jetIdx"]
    cand_idx = arrays[f"{links}_pFCandsIdx"]
    n_jets = ak.to_numpy(ak.num(arrays[f"{jets}_pt"], axis=1)).astype(np.int64)
    n_cands = ak.to_numpy(ak.num(cands, axis=1)).astype(np.int64)
    n_links = ak.to_numpy(ak.num(jet_idx, axis=1)).astype(np.int64)
    event = np.repeat(np.arange(len(n_links)), n_links)
    local_jet = ak.to_numpy(ak.flatten(jet_idx)).astype(np.int64)
    local_cand = ak.to_numpy(ak.flatten(cand_idx)).astype(np.int64)
    bad_jet = (local_jet < 0) | (local_jet >= n_jets[event])
    bad_cand = (local_cand < 0) | (local_cand >= n_cands[event])
    if bad_jet.any() or bad_cand.any():
        which = f"{links}_jetIdx" if bad_jet.any() else f"{links}_pFCandsIdx"
        raise HepfastsimError(f"branch {which!r} has indices outside its target collection")
    jet_offsets = np.concatenate([[0], np.cumsum(n_jets)])
    cand_offsets = np.concatenate([[0], np.cumsum(n_cands)])
    global_jet = jet_offsets[event] + local_jet
    global_cand = cand_offsets[event] + local_cand
    order = np.argsort(global_jet, kind="stable")
    per_jet = np.bincount(global_jet, minlength=int(jet_offsets[-1]))
    flat = {f: ak.to_numpy(ak.flatten(cands[f]))[global_cand[order]] for f in fields}
    per_jet_lists = ak.unflatten(ak.zip(flat), per_jet)
    return ak.unflatten(per_jet_lists, n_jets)
