"""Jet images from awkward constituents (and back), with the seed presets.

``images[j, i_eta, i_phi]``: see :mod:`hepfastsim.kernels.pixelise` for the pixel
geometry. Presets:

* :data:`SEED000_DETECTOR` - arXiv:1805.00850 (seed 000): 32 x 32 pixels over
  0.3 x 0.3 in eta-phi centred on the gen-jet axis, intensity = pT / gen-jet pT,
  constituents outside the window folded onto the border pixels;
* :data:`LAGAN` - arXiv:1701.05927 (seed 004): 25 x 25 pixels of 0.1 x 0.1, centred
  on the leading kT (R = 0.3) subjet, second subjet rotated to phi < 0, flipped so
  the positive-eta side carries more pT, intensity = pT in GeV (total preserved).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

import awkward as ak
import numpy as np

from hepfastsim import layout
from hepfastsim.kernels import pixelise as _kp

__all__ = ["ImageConfig", "SEED000_DETECTOR", "LAGAN", "IMAGE_PRESETS", "pixelise", "image_to_particles"]


@dataclass(frozen=True)
class ImageConfig:
    """Jet-image grid and preprocessing.

    ``width_eta`` x ``width_phi`` is the full window (rad-like eta-phi units), split into
    ``n_eta`` x ``n_phi`` pixels. ``centre="axis"`` centres on the given jet axis,
    ``"leading_subjet"`` on the leading kT subjet of radius ``subjet_radius``.
    ``normalise`` divides intensities by the jet pT (GeV) given with the axis.
    """

    n_eta: int = 32
    n_phi: int = 32
    width_eta: float = 0.3
    width_phi: float = 0.3
    centre: Literal["axis", "leading_subjet"] = "axis"
    normalise: bool = True
    rotate: bool = False
    flip: bool = False
    subjet_radius: float = 0.3
    fold_overflow: bool = True

    def __post_init__(self) -> None:
        if self.centre not in ("axis", "leading_subjet"):
            raise ValueError(f"expected centre 'axis' or 'leading_subjet', got {self.centre!r}")
        for name in ("n_eta", "n_phi"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"expected a positive integer {name}, got {value!r}")
        for name in ("width_eta", "width_phi", "subjet_radius"):
            value = getattr(self, name)
            if not value > 0.0:
                raise ValueError(f"expected a positive {name}, got {value!r}")

    @property
    def half_eta(self) -> float:
        return 0.5 * self.width_eta

    @property
    def half_phi(self) -> float:
        return 0.5 * self.width_phi

    @property
    def pixel_eta(self) -> float:
        """Pixel width in eta."""
        return self.width_eta / self.n_eta

    @property
    def pixel_phi(self) -> float:
        """Pixel width in phi (rad)."""
        return self.width_phi / self.n_phi


SEED000_DETECTOR = ImageConfig()
LAGAN = ImageConfig(
    n_eta=25,
    n_phi=25,
    width_eta=2.5,
    width_phi=2.5,
    centre="leading_subjet",
    normalise=False,
    rotate=True,
    flip=True,
    subjet_radius=0.3,
    fold_overflow=True,
)
IMAGE_PRESETS: dict[str, ImageConfig] = {"seed000_detector": SEED000_DETECTOR, "lagan": LAGAN}


def _resolve(preset: ImageConfig | str) -> ImageConfig:
    if isinstance(preset, ImageConfig):
        return preset
    try:
        return IMAGE_PRESETS[preset]
    except KeyError:
        raise ValueError(f"expected an ImageConfig or one of {sorted(IMAGE_PRESETS)}, got {preset!r}") from None


def _axis_columns(jet_axis: Any, n_jets: int, need: tuple[str, ...]) -> dict[str, np.ndarray]:
    if jet_axis is None:
        raise ValueError(f"expected jet_axis with fields {list(need)}, got None")
    arr = layout.materialize(jet_axis)
    fields = ak.fields(arr)
    missing = [f for f in need if f not in fields]
    if missing:
        raise ValueError(f"expected jet_axis fields {list(need)}, got {fields}")
    out = {f: layout.per_item(arr, f) for f in need}
    for f, col in out.items():
        if col.size != n_jets:
            raise ValueError(f"expected one jet_axis entry per jet ({n_jets}), got {col.size} for {f!r}")
    return out


def pixelise(constituents: Any, jet_axis: Any = None, preset: ImageConfig | str = SEED000_DETECTOR) -> np.ndarray:
    """Jet images ``(n_jets, n_eta, n_phi)`` (float64) from jagged constituents.

    ``constituents``: jagged records with ``pt`` (GeV), ``eta``, ``phi`` (rad) per jet.
    ``jet_axis``: one record per jet with ``eta``, ``phi`` (needed for ``centre="axis"``)
    and ``pt`` in GeV (needed when ``normalise``), typically the gen jets.
    """
    cfg = _resolve(preset)
    cols, offsets = layout.to_flat_fields(constituents, ("pt", "eta", "phi"))
    n_jets = offsets.size - 1
    need: tuple[str, ...] = ()
    if cfg.centre == "axis":
        need += ("eta", "phi")
    if cfg.normalise:
        need += ("pt",)
    axis = _axis_columns(jet_axis, n_jets, need) if need else {}
    return _kp.pixelise(
        cols["pt"],
        cols["eta"],
        cols["phi"],
        offsets,
        n_eta=cfg.n_eta,
        n_phi=cfg.n_phi,
        half_eta=cfg.half_eta,
        half_phi=cfg.half_phi,
        centre_eta=axis.get("eta", 0.0),
        centre_phi=axis.get("phi", 0.0),
        norm=axis.get("pt"),
        centre_on_subjet=cfg.centre == "leading_subjet",
        rotate=cfg.rotate,
        flip=cfg.flip,
        subjet_radius=cfg.subjet_radius,
        fold_overflow=cfg.fold_overflow,
    )


def image_to_particles(images: Any, preset: ImageConfig | str = SEED000_DETECTOR, jet_axis: Any = None) -> ak.Array:
    """Massless pseudo-particles at the centres of the non-empty pixels (seed 000).

    Returns jagged records ``(pt, eta, phi, mass)``. With ``jet_axis`` (fields ``eta``,
    ``phi`` and, for normalised presets, ``pt`` in GeV) the particles are placed around
    the jet axis and ``pt = intensity * jet pT``; without it around (0, 0) with
    ``pt = intensity``.
    """
    cfg = _resolve(preset)
    img = np.asarray(images)
    if img.ndim != 3 or img.shape[1:] != (cfg.n_eta, cfg.n_phi):
        raise ValueError(f"expected images of shape (n_jets, {cfg.n_eta}, {cfg.n_phi}), got shape {img.shape}")
    if jet_axis is not None:
        need = ("eta", "phi", "pt") if cfg.normalise else ("eta", "phi")
        axis = _axis_columns(jet_axis, img.shape[0], need)
        ce, cp, sc = axis["eta"], axis["phi"], axis.get("pt", 1.0)
    else:
        ce, cp, sc = 0.0, 0.0, 1.0
    pt, eta, phi, offsets = _kp.image_to_particles(
        img, half_eta=cfg.half_eta, half_phi=cfg.half_phi, centre_eta=ce, centre_phi=cp, scale=sc
    )
    return layout.from_flat_fields({"pt": pt, "eta": eta, "phi": phi, "mass": np.zeros_like(pt)}, offsets)
