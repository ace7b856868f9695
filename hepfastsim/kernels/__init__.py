"""Numba kernels: jet-image pixelisation and jet observables.

Pure functions on contiguous numpy arrays and int64 offsets (see
:mod:`hepfastsim.layout`); they return new arrays, never import awkward, torch or
uproot, and run in parallel over jets with ``numba.prange`` (the thread count is
decided by the caller, e.g. the CLI or a benchmark, never here).
"""

from __future__ import annotations

# Submodules only: re-exporting ``pixelise`` the function would shadow the module.
from hepfastsim.kernels import geometry, observables, pixelise

__all__ = ["geometry", "observables", "pixelise"]
