"""Jet images split by particle species, for the tower generator of seed 000.

The reference detector measures charged particles with the tracker, one pixel each, and puts
photons and neutral hadrons at random points of their ECAL and HCAL towers
(:mod:`hepfastsim.jets.towers`). The tower generator
(:mod:`hepfastsim.models.image_towers`) therefore sees the gen image by species and learns
the reco image in the same parts:

* :func:`gen_species_images`: charged, photons, other neutrals (``GenCands_charge``,
  ``GenCands_pdgId``); the three images add up to the gen image;
* :func:`reco_species_images`: the per-pixel part (charged PF candidates, and neutral ones
  outside the image window, which the pixelisation folds onto the border), the in-window
  photons (PF pdgId 22) and the in-window neutral hadrons; they add up to the reco image.

Both take jagged constituents ``[jet][candidate]`` with ``pt`` (GeV), ``eta``, ``phi`` (rad),
``charge`` and ``pdgId``, and one axis record per jet (the gen jet: ``pt``, ``eta``, ``phi``),
and return ``(n_jets, 3, 32, 32)`` float64 images of
:data:`~hepfastsim.jets.images.SEED000_DETECTOR` (intensity = pT / gen pT).
"""

from __future__ import annotations

from typing import Any

import awkward as ak
import numpy as np

from hepfastsim.jets.images import SEED000_DETECTOR, pixelise

__all__ = ["SPECIES_FIELDS", "gen_species_images", "reco_species_images"]

#: The constituent fields the species split reads, beside pt, eta, phi.
SPECIES_FIELDS = ("charge", "pdgId")
PHOTON = 22


def _split(constituents: Any, axis: Any, masks: tuple[Any, ...]) -> np.ndarray:
    """One image per mask: the constituents where the mask is true (the others at pT 0)."""
    images = []
    for m in masks:
        part = ak.zip({"pt": ak.where(m, constituents.pt, 0.0), "eta": constituents.eta, "phi": constituents.phi})
        images.append(pixelise(part, axis, SEED000_DETECTOR))
    if not images[0].size:
        return np.zeros((0, len(masks), SEED000_DETECTOR.n_eta, SEED000_DETECTOR.n_phi))
    return np.stack(images, axis=1)


def gen_species_images(constituents: Any, axis: Any) -> np.ndarray:
    """Gen images of the charged particles, the photons and the other neutrals ``(n, 3, 32, 32)``."""
    charged = constituents.charge != 0
    photon = ~charged & (abs(constituents.pdgId) == PHOTON)
    return _split(constituents, axis, (charged, photon, ~charged & ~photon))


def reco_species_images(constituents: Any, axis: Any) -> np.ndarray:
    """Reco images ``(n, 3, 32, 32)`` of the per-pixel part (charged candidates, and neutral
    ones outside the window), the in-window photons and the in-window neutral hadrons."""
    cfg = SEED000_DETECTOR
    charged = constituents.charge != 0
    photon = ~charged & (abs(constituents.pdgId) == PHOTON)
    d_eta = constituents.eta - axis.eta
    d_phi = (constituents.phi - axis.phi + np.pi) % (2 * np.pi) - np.pi
    inside = (abs(d_eta) < cfg.half_eta) & (abs(d_phi) < cfg.half_phi)
    return _split(constituents, axis, (charged | ~inside, photon & inside, ~charged & ~photon & inside))
