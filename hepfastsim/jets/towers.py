"""Calorimeter towers on the jet-image grid: the tower each pixel centre lies in.

The reference detector (:mod:`hepfastsim.reference.detector`) puts every neutral PF candidate
at a uniformly random position inside its calorimeter tower (Delphes ``SmearTowerCenter``):
photons in ECAL towers (0.0174 x 1 degree in the barrel, about 2 x 2 pixels of the seed-000
image), neutral hadrons in HCAL towers (0.087 x 5 degrees, about 9 x 9 pixels). Which pixels
share a tower depends on where the jet axis falls on the tower grid; :func:`tower_labels`
gives it for a batch of jet axes.
"""

from __future__ import annotations

import numpy as np

from hepfastsim.jets.images import SEED000_DETECTOR, ImageConfig
from hepfastsim.kernels.pixelise import pixel_centres
from hepfastsim.kernels.towers import tower_grid

__all__ = ["tower_labels"]


def tower_labels(
    axis_eta: np.ndarray,
    axis_phi: np.ndarray,
    geometry: tuple[tuple[float, ...], tuple[int, ...]],
    config: ImageConfig = SEED000_DETECTOR,
) -> tuple[np.ndarray, np.ndarray]:
    """Per jet, the tower of every pixel centre and the number of towers.

    ``axis_eta``, ``axis_phi`` (rad): the image centres, shape ``(n,)``; ``geometry``: the
    calorimeter's sorted eta edges and phi cells per eta ring
    (:func:`~hepfastsim.reference.config.ecal_geometry`,
    :func:`~hepfastsim.reference.config.hcal_geometry`). Returns ``labels`` ``(n, n_eta,
    n_phi)`` int64, numbering each jet's towers 0, 1, ... in the order of their lowest
    (i_eta, i_phi) pixel, and ``n_towers`` ``(n,)``. Pixel centres beyond the outermost eta
    edge count in the outermost ring.
    """
    edges = np.asarray(geometry[0], np.float64)
    n_phi_cells = np.asarray(geometry[1], np.int64)
    axis_eta = np.asarray(axis_eta, np.float64)
    axis_phi = np.asarray(axis_phi, np.float64)
    if axis_eta.shape != axis_phi.shape or axis_eta.ndim != 1:
        raise ValueError(f"expected axis_eta and axis_phi of the same shape (n,), got {axis_eta.shape} "
                         f"and {axis_phi.shape}")
    if len(edges) != len(n_phi_cells) + 1:
        raise ValueError(f"expected one more eta edge than phi-cell counts, got {len(edges)} and {len(n_phi_cells)}")
    return tower_grid(axis_eta, axis_phi, edges, n_phi_cells, pixel_centres(config.n_eta, config.half_eta),
                      pixel_centres(config.n_phi, config.half_phi))
