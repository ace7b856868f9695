"""25 x 25 LAGAN jet images per class (boosted W / QCD) from reference NanoAOD files.

Seed 004 (arXiv:1701.05927) trains on particle-level Pythia jets with
250 < pT < 300 GeV. We do the same at generator level: anti-kt R = 0.8 gen jets
(``GenJetAK8``) and their constituents (``GenFatJetCands`` -> ``GenCands``), pixelised
with the :data:`hepfastsim.jets.images.LAGAN` preset (0.1 x 0.1 pixels, leading kT
subjet at the centre, second subjet rotated below, parity flip, intensity = pT in GeV).
Differences from the seed, on purpose: R = 0.8 instead of 1.0 (our reference jets), and
no trimming (the preset does not trim; gen constituents carry no pileup, so only the
underlying event is left in the images).

* W jets: gen jets within Delta R < ``match_dr`` of a generator W boson (``GenPart``,
  |pdgId| = 24, last copy) whose daughters are quarks (hadronic decay), from W' -> WZ.
* QCD jets: every gen jet in the window from the QCD files. Those files are pT-hat
  biased; each jet keeps its event ``genWeight`` so that distributions can be made
  physical (:func:`unweight` draws an unweighted subset).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import awkward as ak
import numpy as np
import uproot

from hepfastsim.errors import BranchNotFoundError, HepfastsimError, InputFileError
from hepfastsim.io.nanoaod import jet_constituents
from hepfastsim.jets.images import LAGAN, pixelise

__all__ = ["CLASSES", "ImageSampleConfig", "ImageSample", "images_from_file", "parse_file_spec", "build_images", "hadronic_w", "unweight", "save_npz", "load_npz"]

CLASSES: tuple[str, str] = ("qcd", "w")
"""Class names; the label of a jet is its index here (QCD = 0, W = 1)."""


@dataclass(frozen=True)
class ImageSampleConfig:
    """Selection of the jets that become images (pT in GeV)."""

    pt_min: float = 250.0
    pt_max: float = 300.0
    abs_eta_max: float = 2.0
    match_dr: float = 0.6

    def __post_init__(self) -> None:
        if not 0.0 <= self.pt_min < self.pt_max:
            raise ValueError(f"expected 0 <= pt_min < pt_max, got {self.pt_min!r}, {self.pt_max!r}")
        if not self.match_dr > 0.0 or not self.abs_eta_max > 0.0:
            raise ValueError(f"expected positive match_dr and abs_eta_max, got {self.match_dr!r}, {self.abs_eta_max!r}")


@dataclass
class ImageSample:
    """Images ``(n, 25, 25)`` float32 (GeV per pixel) with per-jet gen-jet kinematics.

    ``jet``: columns pt (GeV), eta, phi (rad), mass (GeV) of the gen jet; ``weight``:
    event genWeight; ``file_index``: which input file each jet came from.
    """

    images: np.ndarray
    jet: dict[str, np.ndarray]
    weight: np.ndarray
    file_index: np.ndarray

    def __len__(self) -> int:
        return int(self.images.shape[0])

    def subset(self, mask: np.ndarray) -> ImageSample:
        return ImageSample(
            self.images[mask], {k: v[mask] for k, v in self.jet.items()}, self.weight[mask], self.file_index[mask]
        )

    @staticmethod
    def concatenate(parts: Sequence[ImageSample]) -> ImageSample:
        if not parts:
            return ImageSample(np.zeros((0, 25, 25), np.float32), {k: np.zeros(0) for k in ("pt", "eta", "phi", "mass")},
                               np.zeros(0), np.zeros(0, np.int64))
        return ImageSample(
            np.concatenate([p.images for p in parts]),
            {k: np.concatenate([p.jet[k] for p in parts]) for k in parts[0].jet},
            np.concatenate([p.weight for p in parts]),
            np.concatenate([p.file_index for p in parts]),
        )


_JET_BRANCHES = [f"GenJetAK8_{f}" for f in ("pt", "eta", "phi", "mass")]
_LINK_BRANCHES = ["GenFatJetCands_jetIdx", "GenFatJetCands_pFCandsIdx"]
_CAND_BRANCHES = [f"GenCands_{f}" for f in ("pt", "eta", "phi", "mass")]
_GENPART_BRANCHES = [f"GenPart_{f}" for f in ("pt", "eta", "phi", "pdgId", "genPartIdxMother")]


def hadronic_w(genpart: ak.Array) -> ak.Array:
    """W bosons of which some quark is a direct daughter (hadronic W), per event.

    ``genpart``: per-event records with ``pdgId`` and ``genPartIdxMother`` (index of the
    mother within the event). Our reference files store the hard-process record
    (W' -> W Z -> q q' q q), so each W appears once, with its decay quarks.
    """
    pdg = genpart.pdgId
    is_w = abs(pdg) == 24
    local = ak.local_index(pdg, axis=1)
    mother = genpart.genPartIdxMother
    quark_daughter = (abs(pdg) >= 1) & (abs(pdg) <= 5)
    # a W is hadronic if some quark has it as mother
    w_idx = local[is_w]
    q_mothers = mother[quark_daughter]
    pairs = ak.cartesian([w_idx, q_mothers], axis=1, nested=True)
    had = ak.any(pairs["0"] == pairs["1"], axis=2)
    return genpart[is_w][had]


def _read(path: str, branches: list[str], entry_start: int | None, entry_stop: int | None) -> dict[str, ak.Array]:
    try:
        tree = uproot.open(path)["Events"]
    except FileNotFoundError as err:
        raise InputFileError(path, "no such file") from err
    except Exception as err:  # uproot raises several types for broken files
        raise InputFileError(path, str(err)) from err
    keys = set(tree.keys())
    for b in branches:
        if b not in keys:
            raise BranchNotFoundError(path, "Events", b, keys)
    arrays = tree.arrays(branches, entry_start=entry_start, entry_stop=entry_stop, how=dict)
    return arrays


def images_from_file(
    path: str | os.PathLike[str],
    kind: str,
    config: ImageSampleConfig = ImageSampleConfig(),
    file_index: int = 0,
    entry_stop: int | None = None,
    entry_start: int | None = None,
) -> ImageSample:
    """LAGAN images of the selected gen jets of one file (events ``[entry_start, entry_stop)``);
    ``kind`` is ``"w"`` or ``"qcd"``."""
    if kind not in CLASSES:
        raise HepfastsimError(f"expected kind in {CLASSES}, got {kind!r}")
    path = str(path)
    branches = _JET_BRANCHES + _LINK_BRANCHES + _CAND_BRANCHES + ["genWeight"]
    if kind == "w":
        branches += _GENPART_BRANCHES
    arrays = _read(path, branches, entry_start, entry_stop)
    jets = ak.zip({f: arrays[f"GenJetAK8_{f}"] for f in ("pt", "eta", "phi", "mass")})
    sel = (jets.pt > config.pt_min) & (jets.pt < config.pt_max) & (abs(jets.eta) < config.abs_eta_max)
    if kind == "w":
        gp = ak.zip({f: arrays[f"GenPart_{f}"] for f in ("pt", "eta", "phi", "pdgId", "genPartIdxMother")})
        ws = hadronic_w(gp)
        pairs = ak.cartesian([jets, ws], axis=1, nested=True)
        deta = pairs["0"].eta - pairs["1"].eta
        dphi = (pairs["0"].phi - pairs["1"].phi + np.pi) % (2 * np.pi) - np.pi
        dr = np.sqrt(deta**2 + dphi**2)
        matched = ak.fill_none(ak.min(dr, axis=2), np.inf) < config.match_dr
        sel = sel & matched
    cons = jet_constituents(arrays, candidates="GenCands", links="GenFatJetCands", jets="GenJetAK8")
    weight = ak.broadcast_arrays(arrays["genWeight"], jets.pt)[0]
    flat_sel = ak.to_numpy(ak.flatten(sel))
    flat_cons = ak.flatten(cons, axis=1)[flat_sel]
    images = pixelise(flat_cons, None, LAGAN).astype(np.float32)
    jet_cols = {f: ak.to_numpy(ak.flatten(jets[f]))[flat_sel].astype(np.float64) for f in ("pt", "eta", "phi", "mass")}
    w = ak.to_numpy(ak.flatten(weight))[flat_sel].astype(np.float64)
    return ImageSample(images, jet_cols, w, np.full(images.shape[0], file_index, np.int64))


def parse_file_spec(spec: str) -> tuple[str, int | None, int | None]:
    """``"file.root"`` or ``"file.root@START:STOP"`` (event range, either end optional)."""
    if "@" not in spec:
        return spec, None, None
    path, rng = spec.rsplit("@", 1)
    try:
        lo, hi = rng.split(":")
        return path, (int(lo) if lo else None), (int(hi) if hi else None)
    except ValueError:
        raise HepfastsimError(f"expected FILE or FILE@START:STOP, got {spec!r}") from None


def build_images(
    specs: Sequence[str | os.PathLike[str]],
    kind: str,
    config: ImageSampleConfig = ImageSampleConfig(),
    cache_dir: str | os.PathLike[str] | None = None,
) -> ImageSample:
    """Images of all files (``FILE`` or ``FILE@START:STOP``), ``file_index`` = position in
    ``specs``. With ``cache_dir``, each file's images are kept there as npz and reused."""
    parts = []
    for i, spec in enumerate(specs):
        path, lo, hi = parse_file_spec(str(spec))
        cache = None
        if cache_dir is not None:
            tag = f"{Path(path).stem}_{kind}_{lo or 0}_{hi or 'end'}_{config.pt_min:g}_{config.pt_max:g}_{config.match_dr:g}"
            cache = Path(cache_dir) / f"{tag}.npz"
        if cache is not None and cache.exists():
            s = load_npz(cache)
        else:
            s = images_from_file(path, kind, config, i, entry_stop=hi, entry_start=lo)
            if cache is not None:
                save_npz(cache, s, source=str(spec))
        s.file_index = np.full(len(s), i, np.int64)
        parts.append(s)
    return ImageSample.concatenate(parts)


def unweight(weight: np.ndarray, rng: np.random.Generator, cap_quantile: float = 0.99) -> np.ndarray:
    """Indices of an unweighted subset: keep jet i with probability min(1, w_i / w_cap).

    ``w_cap`` is the ``cap_quantile`` quantile of the weights, so the few jets with
    weights above it are kept with probability 1 (a small, stated bias) instead of
    letting one event set the acceptance of all others.
    """
    w = np.asarray(weight, dtype=np.float64)
    if w.size == 0:
        return np.zeros(0, np.int64)
    cap = float(np.quantile(w, cap_quantile))
    if not cap > 0:
        raise HepfastsimError(f"expected positive weights, got quantile {cap_quantile} = {cap}")
    keep = rng.random(w.size) < np.minimum(1.0, w / cap)
    return np.flatnonzero(keep)


def save_npz(path: str | os.PathLike[str], sample: ImageSample, **meta: str) -> None:
    """Write a sample as compressed npz (``images``, ``jet_pt`` ..., ``weight``, ``file_index``)."""
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(
        path,
        images=sample.images,
        weight=sample.weight,
        file_index=sample.file_index,
        **{f"jet_{k}": v for k, v in sample.jet.items()},
        **{f"meta_{k}": np.array(v) for k, v in meta.items()},
    )


def load_npz(path: str | os.PathLike[str]) -> ImageSample:
    """Read a sample written by :func:`save_npz`."""
    try:
        with np.load(path) as f:
            return ImageSample(
                f["images"].astype(np.float32),
                {k: f[f"jet_{k}"] for k in ("pt", "eta", "phi", "mass")},
                f["weight"],
                f["file_index"],
            )
    except FileNotFoundError as err:
        raise InputFileError(str(path), "no such file") from err
    except KeyError as err:
        raise InputFileError(str(path), f"not an image sample (missing {err})") from err
