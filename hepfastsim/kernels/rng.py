"""Counter-based random numbers: reproducible whatever the chunking or the workers.

Every random number is a pure function of (seed, file, entry, draw, object index,
stream), hashed with the SplitMix64 finaliser (Steele, Lea & Flood, OOPSLA 2014). A
simulator therefore gives bit-identical output for an event whether it is processed in
a chunk of 1 or of 10^6 events, on one core or on a cluster, with no generator state to
carry between chunks. numpy's ``Generator`` cannot do this cheaply: one generator per
event costs tens of microseconds, more than the whole simulation of the event.

All functions take and return numpy arrays only.
"""

from __future__ import annotations

import numba as nb
import numpy as np

__all__ = ["event_keys", "uniforms", "normals", "uniforms_at", "normals_at"]

_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_M1 = np.uint64(0xBF58476D1CE4E5B9)
_M2 = np.uint64(0x94D049BB133111EB)
_S30, _S27, _S31, _S11 = np.uint64(30), np.uint64(27), np.uint64(31), np.uint64(11)
_TWO_M53 = 1.0 / 9007199254740992.0  # 2**-53


@nb.njit(cache=True, inline="always")
def _mix(x: np.uint64) -> np.uint64:
    z = x + _GOLDEN
    z = (z ^ (z >> _S30)) * _M1
    z = (z ^ (z >> _S27)) * _M2
    return z ^ (z >> _S31)


@nb.njit(cache=True, inline="always")
def _unit(x: np.uint64) -> float:
    # 53 random bits mapped to the open interval (0, 1)
    return (np.float64(x >> _S11) + 0.5) * _TWO_M53


@nb.njit(cache=True)
def _event_keys_kernel(seed: np.uint64, file_key: np.uint64, entries: np.ndarray, draws: np.ndarray) -> np.ndarray:
    out = np.empty(entries.shape[0], dtype=np.uint64)
    base = _mix(_mix(seed) ^ file_key)
    for i in range(entries.shape[0]):
        out[i] = _mix(_mix(base ^ np.uint64(entries[i])) ^ np.uint64(draws[i]))
    return out


@nb.njit(cache=True)
def _uniforms_kernel(keys: np.ndarray, offsets: np.ndarray, n_streams: int, domain: np.uint64) -> np.ndarray:
    n_items = offsets[-1] - offsets[0]
    out = np.empty((n_items, n_streams), dtype=np.float64)
    for ev in range(keys.shape[0]):
        k = _mix(keys[ev] ^ _mix(domain))
        for local in range(offsets[ev + 1] - offsets[ev]):
            row = offsets[ev] - offsets[0] + local
            for s in range(n_streams):
                counter = np.uint64(local) * np.uint64(n_streams) + np.uint64(s)
                out[row, s] = _unit(_mix(k + counter * _GOLDEN))
    return out


@nb.njit(cache=True)
def _uniforms_at_kernel(keys: np.ndarray, offsets: np.ndarray, n_streams: int, domain: np.uint64,
                        items: np.ndarray, streams: np.ndarray) -> np.ndarray:
    out = np.empty(items.shape[0], dtype=np.float64)
    mixed = _mix(domain)
    for i in range(items.shape[0]):
        row = items[i] + offsets[0]
        ev = np.searchsorted(offsets, row, side="right") - 1
        local = row - offsets[ev]
        counter = np.uint64(local) * np.uint64(n_streams) + np.uint64(streams[i])
        out[i] = _unit(_mix(_mix(keys[ev] ^ mixed) + counter * _GOLDEN))
    return out


def _check_keys_offsets(keys: np.ndarray, offsets: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    keys = np.ascontiguousarray(keys, dtype=np.uint64)
    offsets = np.ascontiguousarray(offsets, dtype=np.int64)
    if offsets.ndim != 1 or offsets.shape[0] != keys.shape[0] + 1:
        raise ValueError(f"expected offsets of length n_events + 1 = {keys.shape[0] + 1}, got {offsets.shape}")
    if np.any(np.diff(offsets) < 0):
        raise ValueError("expected non-decreasing offsets")
    return keys, offsets


def event_keys(seed: int, file_key: int, entries: np.ndarray, draws: np.ndarray | int = 0) -> np.ndarray:
    """One 64-bit key per event from (seed, file key, entry number in the file, draw index).

    ``draws`` distinguishes independent simulations of the same event (oversampling).
    Returns uint64, shape (n_events,).
    """
    entries = np.ascontiguousarray(entries, dtype=np.int64)
    draws_arr = np.broadcast_to(np.asarray(draws, dtype=np.int64), entries.shape)
    mask = 0xFFFFFFFFFFFFFFFF
    return _event_keys_kernel(
        np.uint64(int(seed) & mask), np.uint64(int(file_key) & mask), entries, np.ascontiguousarray(draws_arr)
    )


def uniforms(keys: np.ndarray, offsets: np.ndarray, n_streams: int, domain: int) -> np.ndarray:
    """Uniform numbers in (0, 1), shape (n_items, n_streams), for the objects of each event.

    Object ``j`` of event ``i`` (``offsets[i] <= j < offsets[i+1]``) gets numbers that depend
    only on ``keys[i]``, its index within the event, the stream and ``domain`` (use a
    different domain for each independent use inside one simulator).
    """
    keys, offsets = _check_keys_offsets(keys, offsets)
    if n_streams < 1:
        raise ValueError(f"expected n_streams >= 1, got {n_streams}")
    return _uniforms_kernel(keys, offsets, int(n_streams), np.uint64(domain))


def uniforms_at(keys: np.ndarray, offsets: np.ndarray, n_streams: int, domain: int, items: np.ndarray,
                streams: np.ndarray) -> np.ndarray:
    """``uniforms(keys, offsets, n_streams, domain)[items, streams]``, computed only there
    (``items``, ``streams`` int arrays of one shape (m,)); float64 (m,)."""
    keys, offsets = _check_keys_offsets(keys, offsets)
    items = np.ascontiguousarray(items, dtype=np.int64)
    streams = np.ascontiguousarray(streams, dtype=np.int64)
    if items.shape != streams.shape or items.ndim != 1:
        raise ValueError(f"expected items and streams of one shape (m,), got {items.shape} and {streams.shape}")
    n_items = int(offsets[-1] - offsets[0])
    if items.size and (items.min() < 0 or items.max() >= n_items or streams.min() < 0 or streams.max() >= n_streams):
        raise ValueError(f"expected 0 <= items < {n_items} and 0 <= streams < {n_streams}")
    return _uniforms_at_kernel(keys, offsets, int(n_streams), np.uint64(domain), items, streams)


def normals_at(keys: np.ndarray, offsets: np.ndarray, n_streams: int, domain: int, items: np.ndarray,
               streams: np.ndarray) -> np.ndarray:
    """``normals(keys, offsets, n_streams, domain)[items, streams]``, computed only there."""
    streams = np.asarray(streams, dtype=np.int64)
    return _box_muller(uniforms_at(keys, offsets, 2 * n_streams, domain, items, 2 * streams),
                       uniforms_at(keys, offsets, 2 * n_streams, domain, items, 2 * streams + 1))


def normals(keys: np.ndarray, offsets: np.ndarray, n_streams: int, domain: int) -> np.ndarray:
    """Standard normal numbers, shape (n_items, n_streams), by Box-Muller on :func:`uniforms`."""
    u = uniforms(keys, offsets, 2 * n_streams, domain)
    return _box_muller(u[:, 0::2], u[:, 1::2])


def _box_muller(u1: np.ndarray, u2: np.ndarray) -> np.ndarray:
    """Standard normals from pairs of uniforms in (0, 1)."""
    return np.sqrt(-2.0 * np.log(u1)) * np.cos(2.0 * np.pi * u2)
