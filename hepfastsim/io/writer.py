"""Atomic, chunked writing of NanoAOD-like TTrees with uproot.

Everything is written to a hidden temporary file beside the destination and renamed
into place only when the ``with`` block ends without error, so a crash, an interrupt or
a bad input never leaves a half-written file at the destination.

With ``reproducible_uuid`` the file is a pure function of what is written: that UUID
replaces the random ones, every ROOT timestamp is fixed at :data:`REPRODUCIBLE_DATETIME`, and
the name recorded inside the file is the destination's (not the temporary's), so two writes
of the same content are byte-for-byte identical (used by distributed runs to check them).

Trees are written with ``mktree``/``extend`` (TTrees, not RNTuples). Jagged branches are
grouped by their counter branch so that, for instance, ``Jet_pt`` and ``Jet_eta`` share
``nJet`` exactly as in CMS NanoAOD, which is what coffea's ``NanoAODSchema`` needs.
"""

from __future__ import annotations

import contextlib
import datetime
import os
import secrets
import shutil
import threading
import uuid
from collections.abc import Iterator, Mapping
from pathlib import Path
from types import TracebackType
from typing import Any

import awkward as ak
import numpy as np
import uproot

from hepfastsim.errors import HepfastsimError, OutputError

__all__ = ["AtomicRootWriter", "default_counter", "check_destination", "REPRODUCIBLE_DATETIME"]

BranchData = ak.Array | np.ndarray

#: Timestamp (fDatime of every key and directory) of files written with ``reproducible_uuid``.
REPRODUCIBLE_DATETIME = datetime.datetime(2000, 1, 1, 0, 0, 0)

# uproot stamps keys and directories with ``datetime.now()`` and has no option to fix it;
# every stamp goes through ``uproot._util.datetime_to_code``, which we wrap once (on the first
# reproducible writer, never at import) with a per-thread override. Other threads and other
# writers are unaffected.
_FIXED_DATIME = threading.local()
_HOOK_LOCK = threading.Lock()


def _install_datime_hook() -> None:
    with _HOOK_LOCK:
        original = uproot._util.datetime_to_code
        if getattr(original, "_hepfastsim_hook", False):
            return

        def datetime_to_code(dt: datetime.datetime) -> int:
            fixed = getattr(_FIXED_DATIME, "value", None)
            return original(fixed if fixed is not None else dt)

        datetime_to_code._hepfastsim_hook = True  # type: ignore[attr-defined]
        uproot._util.datetime_to_code = datetime_to_code


def default_counter(branch: str) -> str:
    """NanoAOD counter of a jagged branch: ``Jet_pt`` -> ``nJet``, ``LHEPdfWeight`` -> ``nLHEPdfWeight``."""
    return "n" + branch.split("_", 1)[0]


def check_destination(destination: str | os.PathLike[str], *, overwrite: bool) -> Path:
    """Raise :class:`OutputError` unless ``destination`` can be created; return it as a Path."""
    path = Path(destination)
    if path.is_dir():
        raise OutputError(str(path), "it is a directory")
    if path.exists() and not overwrite:
        raise OutputError(str(path), "it already exists (pass --overwrite to replace it)")
    parent = path.parent if str(path.parent) else Path(".")
    if not parent.is_dir():
        raise OutputError(str(path), f"directory {str(parent)!r} does not exist")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise OutputError(str(path), f"directory {str(parent)!r} is not writable")
    return path


def _is_jagged(array: BranchData) -> bool:
    if isinstance(array, np.ndarray):
        return False
    return array.ndim == 2 and isinstance(ak.type(array).content, ak.types.ListType)


def _as_writable(name: str, array: Any) -> BranchData:
    """Normalise one branch to a numpy array (scalars per event) or a packed awkward list."""
    if isinstance(array, np.ndarray):
        return array
    if not isinstance(array, ak.Array):
        return np.asarray(array)
    if array.ndim == 1:
        return ak.to_numpy(array)
    if _is_jagged(array):
        return ak.to_packed(array)
    raise HepfastsimError(
        f"branch {name!r}: expected a flat array or a list per event of numbers, got type {ak.type(array)}"
    )


class AtomicRootWriter:
    """Write one ROOT file tree by tree, chunk by chunk, and publish it atomically.

    Usage::

        with AtomicRootWriter("out.root", overwrite=False) as out:
            out.extend("Events", {"GenJet_pt": jagged, "Pileup_nPU": flat, ...})
            out.extend("Runs", {...})

    The first :meth:`extend` of a tree fixes its branches and types; later calls must carry
    the same branches. Jagged branches are grouped by counter: ``counters`` maps a branch
    name to its counter name, defaulting to :func:`default_counter`.

    ``reproducible_uuid``: when given, the file's (and its directory's) ROOT UUID, all
    timestamps and the recorded file name are fixed, so equal content gives equal bytes.
    """

    def __init__(
        self,
        destination: str | os.PathLike[str],
        *,
        overwrite: bool = False,
        compression: uproot.compression.Compression | None = None,
        reproducible_uuid: uuid.UUID | None = None,
    ) -> None:
        self.destination = check_destination(destination, overwrite=overwrite)
        self.overwrite = overwrite
        self._compression = compression if compression is not None else uproot.ZLIB(1)
        self._uuid = reproducible_uuid
        partial = self.destination.with_name(f".{self.destination.name}.{os.getpid()}-{secrets.token_hex(4)}.partial")
        # reproducible: a hidden directory holding a file with the destination's own name,
        # because uproot records the file name inside the file
        self._tmp_dir = partial if reproducible_uuid is not None else None
        self._tmp_path = partial / self.destination.name if reproducible_uuid is not None else partial
        self._file: uproot.WritableDirectory | None = None
        self._trees: dict[str, Any] = {}
        self._groups: dict[str, tuple[list[str], dict[str, str]]] = {}

    # -- context manager ---------------------------------------------------------------
    @contextlib.contextmanager
    def _stamped(self) -> Iterator[None]:
        """Fix uproot's timestamps in this thread while writing a reproducible file."""
        if self._uuid is None:
            yield
            return
        previous = getattr(_FIXED_DATIME, "value", None)
        _FIXED_DATIME.value = REPRODUCIBLE_DATETIME
        try:
            yield
        finally:
            _FIXED_DATIME.value = previous

    def __enter__(self) -> AtomicRootWriter:
        options: dict[str, Any] = {"compression": self._compression}
        if self._uuid is not None:
            _install_datime_hook()
            fixed = self._uuid
            options["uuid_function"] = lambda: fixed
        try:
            if self._tmp_dir is not None:
                self._tmp_dir.mkdir()
            with self._stamped():
                self._file = uproot.recreate(self._tmp_path, **options)
        except OSError as err:
            self._remove_tmp()
            raise OutputError(str(self.destination), f"cannot create a temporary file there ({err})") from err
        return self

    def _remove_tmp(self) -> None:
        if self._tmp_dir is not None:
            shutil.rmtree(self._tmp_dir, ignore_errors=True)
        else:
            self._tmp_path.unlink(missing_ok=True)

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        try:
            if self._file is not None:
                with self._stamped():
                    self._file.close()
        finally:
            if exc_type is not None:
                self._remove_tmp()
        if exc_type is None:
            self._publish()

    def _publish(self) -> None:
        try:
            if self.destination.exists() and not self.overwrite:
                raise OutputError(str(self.destination), "it appeared while writing (pass --overwrite to replace it)")
            os.replace(self._tmp_path, self.destination)
        except OSError as err:
            raise OutputError(str(self.destination), str(err)) from err
        finally:
            self._remove_tmp()

    # -- writing ----------------------------------------------------------------------
    @property
    def file(self) -> uproot.WritableDirectory:
        if self._file is None:
            raise HepfastsimError("AtomicRootWriter used outside its 'with' block")
        return self._file

    def write_object(self, key: str, obj: Any) -> None:
        """Copy a non-tree object (histogram, TObjString, ...) that uproot can write."""
        with self._stamped():
            self.file[key] = obj

    def extend(
        self,
        tree: str,
        branches: Mapping[str, Any],
        counters: Mapping[str, str] | None = None,
    ) -> None:
        """Append one chunk of entries to ``tree`` (created on the first call).

        ``branches`` maps TBranch names to per-event arrays: 1-D numpy/awkward arrays for
        scalars, ``var * number`` awkward arrays for collections. All arrays must have the
        same length (the number of events in the chunk).
        """
        data = {name: _as_writable(name, arr) for name, arr in branches.items()}
        lengths = {len(arr) for arr in data.values()}
        if len(lengths) > 1:
            sizes = ", ".join(f"{n}={len(a)}" for n, a in list(data.items())[:6])
            raise HepfastsimError(f"tree {tree!r}: branches have different numbers of entries ({sizes}, ...)")
        grouped = self._group(tree, data, counters or {})
        with self._stamped():
            if tree not in self._trees:
                keys, counter_of_group = self._groups[tree]
                self._trees[tree] = self.file.mktree(
                    tree,
                    {k: (grouped[k] if isinstance(grouped[k], np.ndarray) else grouped[k]) for k in keys},
                    counter_name=lambda group: counter_of_group[group],
                    field_name=lambda outer, inner: inner,
                )
            else:
                self._trees[tree].extend(grouped)

    def _group(
        self, tree: str, data: dict[str, BranchData], counters: Mapping[str, str]
    ) -> dict[str, Any]:
        """Zip jagged branches that share a counter into one record per counter."""
        by_counter: dict[str, dict[str, ak.Array]] = {}
        flat: dict[str, BranchData] = {}
        for name, arr in data.items():
            if _is_jagged(arr):
                by_counter.setdefault(counters.get(name, default_counter(name)), {})[name] = arr
            else:
                flat[name] = arr
        clashes = sorted(set(by_counter) & set(flat))
        if clashes:
            raise HepfastsimError(
                f"tree {tree!r}: {clashes[0]!r} is both a branch and the counter of jagged branches"
            )
        grouped: dict[str, Any] = dict(flat)
        counter_of_group: dict[str, str] = {}
        for counter, fields in by_counter.items():
            names = list(fields)
            counts = ak.num(fields[names[0]], axis=1)
            for other in names[1:]:
                if not np.array_equal(ak.to_numpy(ak.num(fields[other], axis=1)), ak.to_numpy(counts)):
                    raise HepfastsimError(
                        f"tree {tree!r}: branches {names[0]!r} and {other!r} share counter {counter!r} "
                        "but have different numbers of entries per event"
                    )
            group_key = f"\x00{counter}"  # never a real branch name; only field/counter names are written
            grouped[group_key] = ak.zip(fields, depth_limit=2)
            counter_of_group[group_key] = counter
        keys = list(grouped)
        if tree not in self._groups:
            self._groups[tree] = (keys, counter_of_group)
        elif set(keys) != set(self._groups[tree][0]):
            expected = set(self._groups[tree][0])
            missing = sorted(k.lstrip("\x00") for k in expected - set(keys))
            extra = sorted(k.lstrip("\x00") for k in set(keys) - expected)
            raise HepfastsimError(
                f"tree {tree!r}: every chunk must carry the same branches; missing {missing}, unexpected {extra}"
            )
        return grouped
