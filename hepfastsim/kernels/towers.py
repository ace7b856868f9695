"""Calorimeter towers on jet-image grids (numba, parallel over jets).

Which tower of a calorimeter (sorted eta edges, phi cells per eta ring) every pixel centre of
a jet image lies in, numbered per jet in the order of each tower's first pixel (raster order,
``i_eta`` major), and the per-tower summary a batch of images needs (first pixel, pixel count,
width in columns). A tower covers a rectangle of pixels: a run of equal phi cells along a row,
repeated over the contiguous rows of one eta ring (eta grows with the row, phi with the column,
and an image window is far narrower than 2 pi), so no sorting is needed. Written by hand
because no library maps image grids onto calorimeter towers; the numpy version this replaces
(and the tests check against) sorted ``n_jets x n_pixels`` keys.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit, prange

__all__ = ["tower_grid", "tower_summary"]

_TWO_PI = 2.0 * math.pi


@njit(cache=True, parallel=True)
def tower_grid(axis_eta: np.ndarray, axis_phi: np.ndarray, edges: np.ndarray, n_phi_cells: np.ndarray,
               centres_eta: np.ndarray, centres_phi: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``labels`` ``(n, n_eta, n_phi)`` int64 (per jet, from 0) and ``n_towers`` ``(n,)``; pixel
    centres beyond the outermost eta edge count in the outermost ring."""
    n, n_eta, n_phi = axis_eta.shape[0], centres_eta.shape[0], centres_phi.shape[0]
    n_rings = n_phi_cells.shape[0]
    labels = np.empty((n, n_eta, n_phi), np.int64)
    n_towers = np.empty(n, np.int64)
    for j in prange(n):
        base = 0  # towers of the rings before this row's
        done = 0  # towers of the rings up to and including this row's
        prev_ring = -1
        for i in range(n_eta):
            ring = np.searchsorted(edges, axis_eta[j] + centres_eta[i], side="right") - 1
            ring = min(max(ring, 0), n_rings - 1)
            if ring != prev_ring:
                base = done
            width = _TWO_PI / n_phi_cells[ring]
            run = 0
            prev_cell = -1
            for k in range(n_phi):
                phi = (axis_phi[j] + centres_phi[k] + math.pi) % _TWO_PI
                cell = int(math.floor(phi / width))
                if k > 0 and cell != prev_cell:
                    run += 1
                prev_cell = cell
                labels[j, i, k] = base + run
            done = base + run + 1
            prev_ring = ring
        n_towers[j] = done
    return labels, n_towers


@njit(cache=True, parallel=True)
def tower_summary(labels: np.ndarray, n_towers: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """For per-jet ``labels`` ``(n, n_eta, n_phi)`` and ``n_towers`` ``(n,)``: the batch-wide
    tower of every pixel ``(n * n_eta * n_phi,)`` (jet-major, raster order) and per tower its
    first pixel (flat index), pixel count and width in columns."""
    n, n_eta, n_phi = labels.shape
    shift = np.zeros(n, np.int64)
    for j in range(1, n):
        shift[j] = shift[j - 1] + n_towers[j - 1]
    total = shift[n - 1] + n_towers[n - 1] if n else 0
    pixel_tower = np.empty(n * n_eta * n_phi, np.int64)
    first = np.full(total, -1, np.int64)
    size = np.zeros(total, np.float32)
    width = np.zeros(total, np.int64)
    for j in prange(n):
        for i in range(n_eta):
            for k in range(n_phi):
                p = (j * n_eta + i) * n_phi + k
                t = shift[j] + labels[j, i, k]
                pixel_tower[p] = t
                if first[t] < 0:
                    first[t] = p
                size[t] += 1.0
                if (first[t] // n_phi) % n_eta == i:
                    width[t] += 1
    return pixel_tower, first, size, width
