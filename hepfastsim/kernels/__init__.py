"""Numba kernels: jet-image pixelisation and jet observables.

Pure functions on contiguous numpy arrays and int64 offsets (see
:mod:`hepfastsim.layout`); they return new arrays, never import awkward, torch or
uproot, and run in parallel over jets with ``numba.prange`` (the thread count is
decided by the caller, e.g. the CLI or a benchmark, never here).
"""

from __future__ import annotations

from hepfastsim.kernels.observables import OBSERVABLE_FIELDS, OBSERVABLES, jet_observables, observable_fields
from hepfastsim.kernels.pixelise import image_to_particles, pixel_centres, pixelise

__all__ = [
    "OBSERVABLE_FIELDS",
    "OBSERVABLES",
    "jet_observables",
    "observable_fields",
    "pixelise",
    "image_to_particles",
    "pixel_centres",
]
