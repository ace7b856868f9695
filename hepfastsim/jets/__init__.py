"""Awkward-facing jet tools: jet images and jet observables.

Thin wrappers over :mod:`hepfastsim.kernels`: they convert awkward constituents with
:mod:`hepfastsim.layout`, call the numba kernels, and return awkward records (or
numpy images, which are regular).
"""

from __future__ import annotations

from hepfastsim.jets.images import IMAGE_PRESETS, LAGAN, SEED000_DETECTOR, ImageConfig, image_to_particles, pixelise
from hepfastsim.jets.observables import OBSERVABLES, ObservablesConfig, image_observables, jet_observables

__all__ = [
    "IMAGE_PRESETS",
    "LAGAN",
    "OBSERVABLES",
    "SEED000_DETECTOR",
    "ImageConfig",
    "ObservablesConfig",
    "image_observables",
    "image_to_particles",
    "jet_observables",
    "pixelise",
]
