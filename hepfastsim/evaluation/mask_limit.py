"""What an independent per-pixel mask costs against the reference jet images (image GAN, seed 000).

The seed-000 generator samples its hard mask independently pixel by pixel. The reference
detector instead puts every neutral PF candidate at one uniformly random point inside its
calorimeter tower (Delphes ``SmearTowerCenter``; photons in ECAL towers of about 2 x 2
pixels, neutral hadrons in HCAL towers of about 9 x 9): exactly one lit pixel per tower,
anywhere in it. :func:`independent_tower_images` takes the reference reco images themselves
and redraws each such candidate inside the image window independently on every pixel of its
tower, lit with probability ``1 / n_pixels`` at the candidate's intensity. Every pixel keeps
the reference's expected intensity; only the joint of the lit pixels changes, to that of an
independent mask. The W1 ratios of these images against the reference
(:func:`mask_limit_table`) measure what the independence alone costs a generator that gets
every per-pixel probability and intensity right.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import awkward as ak
import numpy as np

from hepfastsim.jets.images import SEED000_DETECTOR, ImageConfig, pixelise

__all__ = ["PF_TOWERS", "reference_constituents", "independent_tower_images", "mask_limit_table"]

#: PF candidate pdgId -> the calorimeter whose tower it is placed in ("ecal" or "hcal").
PF_TOWERS: dict[int, str] = {22: "ecal", 130: "hcal"}
_CHUNK = 4096  # candidates per vectorised draw (4096 x 1024 booleans)


def _geometry(name: str) -> tuple[tuple[float, ...], tuple[int, ...]]:
    from hepfastsim.reference.config import ecal_geometry, hcal_geometry

    return {"ecal": ecal_geometry, "hcal": hcal_geometry}[name]()


def reference_constituents(
    path: str, tree: str = "Events", max_jets: int | None = None
) -> tuple[ak.Array, ak.Array, np.ndarray]:
    """The reco jets of ``path`` that the image GAN is validated on (matched to an in-domain gen
    jet, :func:`~hepfastsim.models.image_gan_train.matched_jets`), in file order: their PF
    candidates ``[jet][candidate]`` (pt GeV, eta, phi rad, mass GeV, pdgId), their gen jets
    (pt, eta, phi: the image axes) and their event numbers (entries of ``tree``)."""
    from hepfastsim.io.nanoaod import iterate_chunks, jet_constituents, open_tree
    from hepfastsim.models.image_gan_train import _BRANCHES_CANDS, _BRANCHES_GEN, _BRANCHES_RECO, matched_jets

    source = open_tree(path, tree)
    branches = [*_BRANCHES_GEN, *_BRANCHES_RECO, *_BRANCHES_CANDS, "PFCands_pdgId"]
    source.require(branches)
    cands, axes, events, n = [], [], [], 0
    for chunk in iterate_chunks(source, branches, step_size=2000):
        sel_reco, sel_gen, ev, gen = matched_jets(chunk.arrays)
        reco_c = jet_constituents(chunk.arrays, candidates="PFCands", links="JetPFCands", jets="Jet",
                                  fields=("pt", "eta", "phi", "mass", "pdgId"))
        cands.append(ak.flatten(reco_c, axis=1)[sel_reco])
        axes.append(gen[sel_gen])
        events.append(chunk.entry_start + ev)
        n += len(sel_reco)
        if max_jets is not None and n >= max_jets:
            break
    if not cands:
        return ak.Array([]), ak.Array([]), np.zeros(0, np.int64)
    stop = n if max_jets is None else min(n, max_jets)
    return ak.concatenate(cands)[:stop], ak.concatenate(axes)[:stop], np.concatenate(events)[:stop].astype(np.int64)


def independent_tower_images(
    constituents: ak.Array,
    axis: ak.Array,
    rng: np.random.Generator,
    towers: Mapping[int, str] = PF_TOWERS,
    config: ImageConfig = SEED000_DETECTOR,
) -> np.ndarray:
    """Jet images ``(n, n_eta, n_phi)`` (intensity = pT / axis pT) of ``constituents``
    ``[jet][candidate]`` (pt, eta, phi, mass, pdgId) around ``axis`` (pt GeV, eta, phi rad), with
    every candidate whose ``|pdgId|`` is a key of ``towers`` and which falls inside the window
    redrawn independently on each pixel of its tower (the tower of the pixel it falls in):
    lit with probability ``1 / n_pixels`` at the candidate's intensity. The expected image is
    that of the constituents; candidates outside the window (folded onto the border) are kept
    as they are."""
    from hepfastsim.jets.towers import tower_labels

    unknown = {v for v in towers.values() if v not in ("ecal", "hcal")}
    if unknown:
        raise ValueError(f"expected towers of 'ecal' or 'hcal', got {sorted(unknown)}")
    pdg = abs(constituents.pdgId)
    d_eta = constituents.eta - axis.eta
    d_phi = (constituents.phi - axis.phi + np.pi) % (2 * np.pi) - np.pi
    inside = (abs(d_eta) < config.half_eta) & (abs(d_phi) < config.half_phi)
    redrawn = ak.zeros_like(pdg, dtype=bool)
    for code in towers:
        redrawn = redrawn | ((pdg == code) & inside)
    kept = ak.zip({"pt": ak.where(redrawn, 0.0, constituents.pt), "eta": constituents.eta,
                   "phi": constituents.phi, "mass": constituents.mass})
    images = pixelise(kept, axis, config)
    axis_eta = np.asarray(ak.to_numpy(axis.eta), np.float64)
    axis_phi = np.asarray(ak.to_numpy(axis.phi), np.float64)
    axis_pt = np.asarray(ak.to_numpy(axis.pt), np.float64)
    n_cand = ak.to_numpy(ak.num(constituents.pt)).astype(np.int64)
    jet = np.repeat(np.arange(len(n_cand)), n_cand)
    flat_pt = np.asarray(ak.to_numpy(ak.flatten(constituents.pt)), np.float64)
    flat_pdg = np.asarray(ak.to_numpy(ak.flatten(pdg)), np.int64)
    flat_redrawn = np.asarray(ak.to_numpy(ak.flatten(redrawn)), bool)
    flat_d_eta = np.asarray(ak.to_numpy(ak.flatten(d_eta)), np.float64)
    flat_d_phi = np.asarray(ak.to_numpy(ak.flatten(d_phi)), np.float64)
    for code, calorimeter in towers.items():
        labels, _ = tower_labels(axis_eta, axis_phi, _geometry(calorimeter), config)
        which = np.flatnonzero(flat_redrawn & (flat_pdg == code))
        i_eta = np.clip(((flat_d_eta[which] + config.half_eta) / config.pixel_eta).astype(np.int64), 0, config.n_eta - 1)
        i_phi = np.clip(((flat_d_phi[which] + config.half_phi) / config.pixel_phi).astype(np.int64), 0, config.n_phi - 1)
        for s in range(0, len(which), _CHUNK):
            c = slice(s, s + _CHUNK)
            j = jet[which[c]]
            tower = labels[j] == labels[j, i_eta[c], i_phi[c]][:, None, None]  # (k, n_eta, n_phi)
            n_pix = tower.sum(axis=(1, 2))
            lit = tower & (rng.random(tower.shape) < (1.0 / n_pix)[:, None, None])
            np.add.at(images, j, lit * (flat_pt[which[c]] / axis_pt[j])[:, None, None])
    return images


def mask_limit_table(
    reference: np.ndarray, variants: Mapping[str, np.ndarray], axis: ak.Array, event: np.ndarray,
    variables: Sequence[str] | None = None, seed: int = 0,
) -> dict[str, dict[str, Any]]:
    """W1 ratios (:func:`~hepfastsim.evaluation.metrics.w1_ratio`) of each variant's image
    observables against the ``reference`` images of the same jets, per variable of the
    image validation (rings, pTD, axes, tau21, tau32, total intensity, nPixels), with the
    16-84% half-width of the total intensity (reference and variant)."""
    from hepfastsim.evaluation.metrics import median_resolution, w1_ratio
    from hepfastsim.evaluation.validate_images import SEED_CRITERION, _image_obs

    variables = list(variables or (*SEED_CRITERION, "total", "nPixels"))
    cond = np.stack([ak.to_numpy(axis.pt), ak.to_numpy(axis.eta), ak.to_numpy(axis.phi)], axis=1).astype(np.float32)

    def observables(images: np.ndarray) -> dict[str, np.ndarray]:
        out = _image_obs(images.astype(np.float32), cond)
        out["total"] = images.sum(axis=(1, 2), dtype=np.float64)
        return out

    ref = observables(reference)
    table: dict[str, dict[str, Any]] = {}
    for name, images in variants.items():
        got = observables(images)
        ratios = {}
        for v in variables:
            a, b = ref[v], got[v]
            ok_a, ok_b = np.isfinite(a), np.isfinite(b)
            ratios[v] = w1_ratio(a[ok_a], b[ok_b], event[ok_a], event[ok_b], seed=seed).value
        crit = [ratios[v] for v in SEED_CRITERION if v in ratios]
        table[name] = {"w1_ratio": ratios, "criterion_mean": float(np.mean(crit)) if crit else float("nan"),
                       "criterion_max": float(np.max(crit)) if crit else float("nan"),
                       "total_half_width": median_resolution(got["total"])[1],
                       "reference_total_half_width": median_resolution(ref["total"])[1]}
    return table
