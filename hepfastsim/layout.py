"""awkward <-> (flat numpy arrays + int64 offsets) conversion.

The layer between the awkward world (``io``, coffea) and the numba kernels: a jagged
array ``[[a, b], [], [c]]`` becomes ``flat = [a, b, c]`` and ``offsets = [0, 2, 2, 3]``
(jet ``j`` owns ``flat[offsets[j]:offsets[j+1]]``). Coffea virtual / lazy arrays are
materialised first (``ak.materialize`` where awkward has it, else ``ak.to_packed``).
The returned numpy arrays are contiguous and never alias memory the caller will see
change: kernels may read them freely.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import awkward as ak
import numpy as np

__all__ = ["materialize", "to_flat", "to_flat_fields", "from_flat", "from_flat_fields", "per_item"]


def materialize(array: Any) -> ak.Array:
    """Return a fully materialised, packed awkward array (accepts coffea virtual arrays)."""
    arr = array if isinstance(array, ak.Array) else ak.Array(array)
    if hasattr(ak, "materialize"):
        arr = ak.materialize(arr)
    return ak.to_packed(arr)


def to_flat(jagged: Any, dtype: Any = np.float64) -> tuple[np.ndarray, np.ndarray]:
    """``(flat, offsets)`` of a one-level jagged numeric array.

    ``flat`` is a contiguous ``dtype`` array, ``offsets`` int64 of length ``len + 1``.
    Raises ValueError for anything but ``var * number`` (missing values are not
    allowed: fill them first, e.g. ``ak.fill_none``).
    """
    arr = materialize(jagged)
    if arr.ndim != 2:
        raise ValueError(f"expected a jagged array of type 'n * var * number', got type {arr.type}")
    counts = ak.to_numpy(ak.num(arr, axis=1)).astype(np.int64, copy=False)
    flat_ak = ak.flatten(arr, axis=1)
    try:
        flat = ak.to_numpy(flat_ak, allow_missing=False)
    except ValueError as err:
        raise ValueError(f"expected no missing values in {arr.type}, got None entries") from err
    if flat.dtype.kind not in "biuf":
        raise ValueError(f"expected a numeric jagged array, got type {arr.type}")
    offsets = np.zeros(counts.size + 1, dtype=np.int64)
    np.cumsum(counts, out=offsets[1:])
    return np.ascontiguousarray(flat, dtype=dtype), offsets


def to_flat_fields(
    records: Any, fields: Sequence[str], optional: Sequence[str] = ()
) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """Flatten the named fields of a jagged record array (e.g. constituents).

    Returns ``({field: flat float64}, offsets)``. Fields in ``optional`` that the
    records lack are left out of the dict; missing required fields raise ValueError
    naming the fields that exist.
    """
    arr = materialize(records)
    available = set(ak.fields(arr))
    missing = [f for f in fields if f not in available and f not in optional]
    if missing:
        raise ValueError(f"expected fields {list(fields)}, got {sorted(available)} (missing {missing})")
    out: dict[str, np.ndarray] = {}
    offsets: np.ndarray | None = None
    for name in fields:
        if name not in available:
            continue
        flat, off = to_flat(arr[name])
        if offsets is None:
            offsets = off
        out[name] = flat
    if offsets is None:
        offsets = np.zeros(len(arr) + 1, dtype=np.int64)
    return out, offsets


def from_flat(flat: np.ndarray, offsets: np.ndarray) -> ak.Array:
    """Jagged awkward array from ``(flat, offsets)`` (no copy of ``flat``)."""
    flat = np.asarray(flat)
    offsets = np.asarray(offsets, dtype=np.int64)
    if offsets.ndim != 1 or offsets.size < 1 or offsets[-1] != flat.shape[0] or offsets[0] != 0:
        raise ValueError(
            f"expected offsets from 0 to {flat.shape[0]} (the flat length), got shape {offsets.shape}"
            + (f" ending at {offsets[-1]}" if offsets.size else "")
        )
    layout = ak.contents.ListOffsetArray(ak.index.Index64(offsets), ak.contents.NumpyArray(flat))
    return ak.Array(layout)


def from_flat_fields(columns: Mapping[str, np.ndarray], offsets: np.ndarray, with_name: str | None = None) -> ak.Array:
    """Jagged record array from flat columns sharing ``offsets``."""
    offsets = np.asarray(offsets, dtype=np.int64)
    contents = []
    for name, col in columns.items():
        col = np.asarray(col)
        if col.shape[0] != offsets[-1]:
            raise ValueError(f"expected column {name!r} of length {offsets[-1]}, got {col.shape[0]}")
        contents.append(ak.contents.NumpyArray(col))
    parameters = {"__record__": with_name} if with_name else None
    record = ak.contents.RecordArray(contents, list(columns.keys()), length=int(offsets[-1]), parameters=parameters)
    return ak.Array(ak.contents.ListOffsetArray(ak.index.Index64(offsets), record))


def per_item(values: Any, field: str | None = None) -> np.ndarray:
    """A flat float64 numpy array from a one-value-per-jet awkward/numpy array (or a record field)."""
    arr = materialize(values) if not isinstance(values, np.ndarray) else values
    if field is not None:
        arr = arr[field]
    try:
        out = ak.to_numpy(arr, allow_missing=False) if isinstance(arr, ak.Array) else np.asarray(arr)
    except ValueError as err:
        raise ValueError(f"expected one number per jet with no missing values, got type {ak.type(arr)}") from err
    if out.ndim != 1:
        raise ValueError(f"expected one number per jet (1-d), got shape {out.shape}")
    return np.ascontiguousarray(out, dtype=np.float64)
