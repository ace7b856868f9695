"""The seed-000 image-GAN fast simulation (arXiv:1805.00850): gen-jet image -> reco-jet image -> observables.

For every gen jet inside the model's domain (gen pT >= 20 GeV, |eta| < 2.5: the tracker
acceptance and the selection the model was trained on, with at least one constituent):

1. its constituents (GenCands via GenJetCands) are pixelised with
   :data:`~hepfastsim.jets.images.SEED000_DETECTOR` (32 x 32 pixels, 0.3 x 0.3 around the
   gen-jet axis, intensity = pT / gen pT, overflow folded onto the border);
2. the U-Net generator gives the pixel intensity ``G0`` and the soft mask ``G1`` from the
   image and (gen pT, eta, phi, nPU); the reco image is ``G0 * 1[u < G1]`` with one uniform
   ``u`` per pixel from :func:`hepfastsim.kernels.rng.uniforms` keyed on the event (the
   model's only noise, as in the paper; a generator trained with ``--noise-channels`` also
   gets standard-normal maps from :func:`~hepfastsim.kernels.rng.normals`, keyed the same
   way), so the output does not depend on the chunking. The shipped generator is the tower
   generator (:mod:`hepfastsim.models.image_towers`): it also reads the gen image by species
   (``GenCands_charge``, ``GenCands_pdgId``), its ``G0 * 1[u < G1]`` is the charged part, and
   photons and neutral hadrons are added per ECAL / HCAL tower at one random pixel of the
   tower, with the tower's fire, placement and energy numbers keyed on the event, the jet and
   the tower's first pixel; the paper's generator is shipped beside it
   (:data:`PAPER_WEIGHTS`, for files without those two branches); a model with a total calibration
   (``train image-gan --calibrate-total``) then rescales each image's total intensity toward
   its expectation, ``E + spread (S - E)``
   (:func:`~hepfastsim.models.image_gan.conserve_total`), which gives the reco pT the
   reference's resolution and keeps the lit pixels;
3. each non-empty pixel becomes a massless pseudo-particle at the pixel centre with
   ``pT = intensity * gen pT`` (the paper's recipe) and the numba observables kernel
   (:func:`hepfastsim.jets.observables.image_observables`) gives the raw jet ``pt``,
   ``eta``, ``phi``, ``mass`` (four-vector sum of the pseudo-particles, GeV, rad), ``tau21``,
   ``tau32`` (one-pass kT axes, R0 = 0.4), ``pTD``, ``majorAxis``, ``minorAxis``, the ring
   intensities ``ring0..ring3`` (Delta R edges 0, 0.05, 0.10, 0.15, 0.25 around the gen
   axis, fractions of gen pT) and ``nPixels``;
4. the raw pT and mass are corrected with the reference chain's AK4 jet-energy corrections
   (L1 with the event rho and the nominal area pi 0.4^2, then L2L3), as NanoAOD ``Jet_pt``
   is; ``rawFactor = 1 - raw / corrected``. The generated images are trained on the reco
   jets' own PF candidates, which are uncorrected;
5. jets with corrected pT below ``min_reco_pt`` (15 GeV, the reference ``Jet`` threshold)
   are not written, as the reference chain does not store them.

Gen jets outside the domain (pT < 20 GeV, |eta| >= 2.5, no constituents, non-finite) are
not dropped silently: with ``outside="parametric"`` (the default) they go through the
classical smearing baseline (:class:`~hepfastsim.simulators.parametric.ParametricSimulator`),
with ``fromImage = 0`` and NaN substructure; with ``outside="skip"`` they give no reco jet.
``fromImage = 1`` marks the jets made by the GAN. No pileup/fake jets are produced.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Literal

import awkward as ak
import numpy as np

from hepfastsim.kernels.rng import normals, normals_at, uniforms, uniforms_at
from hepfastsim.simulators.base import GenEvents, LearnedSimulator, register

__all__ = ["DEFAULT_WEIGHTS", "PAPER_WEIGHTS", "WEIGHTS_ENV", "ImageGANSimulator", "generate_images", "keyed_tower_draws"]

DEFAULT_WEIGHTS = Path(__file__).resolve().parents[1] / "models" / "data" / "image_gan"
#: The paper's generator (independent per-pixel mask, gen image only: no charge or pdgId needed).
PAPER_WEIGHTS = Path(__file__).resolve().parents[1] / "models" / "data" / "image_gan_mask"
WEIGHTS_ENV = "HEPFASTSIM_IMAGE_GAN_WEIGHTS"
DOMAIN_MASK = 301
DOMAIN_NOISE = 302
DOMAIN_TOWER_FIRE = 303
DOMAIN_TOWER_PLACE = 304
DOMAIN_TOWER_ENERGY = 305
_BLOCK = 256  # rows of every generator call (padded): bit-identical rows whatever the chunking
_NOMINAL_AREA = float(np.pi * 0.4**2)

#: output field -> image_observables field
_OBSERVABLES = {"tau21": "tau21", "tau32": "tau32", "pTD": "ptd", "majorAxis": "major", "minorAxis": "minor",
                "ring0": "ring0", "ring1": "ring1", "ring2": "ring2", "ring3": "ring3"}


def generate_images(
    model: Any, images: np.ndarray, cond: np.ndarray, keys: np.ndarray, counts: np.ndarray,
    species: np.ndarray | None = None,
) -> np.ndarray:
    """Reco images ``(n, 32, 32)`` float32 from gen images ``(n, 32, 32)`` and conditions ``(n, 4)``
    (and, for a generator with species inputs, the gen images by species ``(n, 3, 32, 32)``).

    ``keys`` (one per event) and ``counts`` (jets per event, summing to n) key the per-pixel
    uniforms of the hard mask and the normal noise maps of a generator with noise channels:
    jet ``j`` of an event uses stream block ``j`` of that event. The fire, placement and
    energy draws of a tower generator's towers
    (:class:`~hepfastsim.models.image_towers.ImageDraws`) are the numbers of such per-pixel
    streams (one per calorimeter) at each tower's first pixel, computed only there.
    Generator calls take blocks of events of at most ~``_BLOCK`` jets, padded to ``_BLOCK`` rows.
    A model with a total calibration rescales each image (:func:`~hepfastsim.models.image_gan.conserve_total`).
    """
    import torch

    from hepfastsim.models.image_gan import conserve_total, image_towers, sample_images
    from hepfastsim.models.image_towers import ImageDraws

    n = len(images)
    k_noise = model.config.noise_channels
    k_species = model.config.species_channels
    if k_species and (species is None or species.shape != (n, k_species, *images.shape[1:])):
        raise ValueError(f"expected species images of shape {(n, k_species, *images.shape[1:])}, got "
                         f"{None if species is None else species.shape}")
    spread = model.total_spread
    out = np.zeros((n, *images.shape[1:]), np.float32)
    offsets = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
    ev = 0
    n_events = len(counts)
    while ev < n_events:
        stop = int(np.searchsorted(offsets, offsets[ev] + _BLOCK, side="right")) - 1
        stop = max(stop, ev + 1)
        j0, j1 = int(offsets[ev]), int(offsets[stop])
        if j1 > j0:
            for s in range(j0, j1, _BLOCK):
                e = min(s + _BLOCK, j1)
                x = np.zeros((_BLOCK, *images.shape[1:]), np.float32)
                c = np.zeros((_BLOCK, cond.shape[1]), np.float32)
                c[:, 0] = 100.0  # padding rows: any valid condition
                x[: e - s], c[: e - s] = images[s:e], cond[s:e]

                def block(draw: Any, domain: int, shape: tuple[int, ...]) -> np.ndarray:
                    full = np.zeros((_BLOCK, *shape), np.float32)
                    full[: e - s] = _stream_block(draw, domain, keys, offsets, ev, stop, s, e, shape)
                    return full

                noise = block(normals, DOMAIN_NOISE, (k_noise, *images.shape[1:])) if k_noise else None
                sp = None
                if k_species:
                    sp = np.zeros((_BLOCK, k_species, *images.shape[1:]), np.float32)
                    sp[: e - s] = species[s:e]
                towers = image_towers(model.config, c)
                draws = ImageDraws(torch.from_numpy(block(uniforms, DOMAIN_MASK, images.shape[1:])),
                                   *keyed_tower_draws(towers, keys[ev:stop], offsets[ev:stop + 1] - offsets[ev],
                                                      s - offsets[ev], e - s))
                img, expected = sample_images(model, x, c, towers, draws, noise, sp)
                out[s:e] = img[: e - s]
                if spread is not None:
                    out[s:e] = conserve_total(out[s:e], expected[: e - s], spread)
        ev = stop
    return out


def keyed_tower_draws(
    towers: tuple[Any, ...], keys: np.ndarray, offsets: np.ndarray, first_item: int, n_real: int,
) -> tuple[tuple[Any, ...], tuple[Any, ...], tuple[Any, ...]]:
    """The ``fire``, ``place`` and ``energy`` draws of :class:`~hepfastsim.models.image_towers.ImageDraws`
    for the towers of a block of images: per calorimeter ``k`` and tower, the per-pixel stream
    ``k * 1024 + first pixel`` of its jet. ``keys`` and ``offsets`` (starting at 0): the events
    holding the block's jets; the block's row ``r`` is their jet ``first_item + r``; rows from
    ``n_real`` on are padding (0.5)."""
    import torch

    from hepfastsim.models.image_towers import N_PIXELS

    def at(draw: Any, domain: int) -> tuple[torch.Tensor, ...]:
        out = []
        for k, index in enumerate(towers):
            jet = index.jet.numpy()
            first = index.first_pixel.numpy() % N_PIXELS
            real = jet < n_real
            values = np.full(index.n_towers, 0.5, np.float32)
            values[real] = draw(keys, offsets, len(towers) * N_PIXELS, domain, first_item + jet[real],
                                k * N_PIXELS + first[real])
            out.append(torch.from_numpy(values))
        return tuple(out)

    return at(uniforms_at, DOMAIN_TOWER_FIRE), at(uniforms_at, DOMAIN_TOWER_PLACE), at(normals_at, DOMAIN_TOWER_ENERGY)


def _stream_block(
    draw: Any, domain: int, keys: np.ndarray, offsets: np.ndarray, ev0: int, ev1: int, j0: int, j1: int,
    shape: tuple[int, ...],
) -> np.ndarray:
    """``draw`` (:func:`uniforms` or :func:`normals`) numbers of ``shape`` per jet for jets
    ``j0:j1``, which lie in events ``ev0:ev1``, keyed on each event and the jet's index in it."""
    local = offsets[ev0:ev1 + 1] - offsets[ev0]
    u = draw(keys[ev0:ev1], local, int(np.prod(shape)), domain=domain)
    base = int(offsets[ev0])
    return u[j0 - base:j1 - base].reshape(j1 - j0, *shape).astype(np.float32)


@dataclass
class ImageGANSimulator(LearnedSimulator):
    """Seed-000 image GAN (see the module docstring).

    ``weights``: a model written by ``hepfastsim train image-gan`` (with or without suffix);
    None for ``$HEPFASTSIM_IMAGE_GAN_WEIGHTS`` or the shipped default.
    """

    weights: str | os.PathLike[str] | None = None
    min_gen_pt: float = 20.0
    max_abs_eta: float = 2.5
    min_reco_pt: float = 15.0
    outside: Literal["parametric", "skip"] = "parametric"
    _model: Any = field(default=None, init=False, repr=False, compare=False)

    name: ClassVar[str] = "image-gan"
    weights_env: ClassVar[str] = WEIGHTS_ENV
    default_weights: ClassVar[Path] = DEFAULT_WEIGHTS
    needs_constituents: ClassVar[bool] = True
    output_fields: ClassVar[dict[str, np.dtype]] = {
        "pt": np.dtype(np.float32),
        "eta": np.dtype(np.float32),
        "phi": np.dtype(np.float32),
        "mass": np.dtype(np.float32),
        "rawFactor": np.dtype(np.float32),
        "genJetIdx": np.dtype(np.int32),
        "tau21": np.dtype(np.float32),
        "tau32": np.dtype(np.float32),
        "pTD": np.dtype(np.float32),
        "majorAxis": np.dtype(np.float32),
        "minorAxis": np.dtype(np.float32),
        "ring0": np.dtype(np.float32),
        "ring1": np.dtype(np.float32),
        "ring2": np.dtype(np.float32),
        "ring3": np.dtype(np.float32),
        "nPixels": np.dtype(np.int32),
        "fromImage": np.dtype(np.int32),
    }

    def __post_init__(self) -> None:
        if self.outside not in ("parametric", "skip"):
            raise ValueError(f"expected outside 'parametric' or 'skip', got {self.outside!r}")

    @property
    def model(self) -> Any:
        """The :class:`~hepfastsim.models.image_gan.LoadedImageGAN` (loaded on first use)."""
        if self._model is None:
            from hepfastsim.models.image_gan import load_generator

            self._model = load_generator(self.weights_path)
        return self._model

    def constituent_fields(self) -> tuple[str, ...]:
        """pt, eta, phi, mass, and for a generator with species inputs charge and pdgId."""
        from hepfastsim.jets.species import SPECIES_FIELDS
        from hepfastsim.simulators.base import CONSTITUENT_FIELDS

        return (*CONSTITUENT_FIELDS, *SPECIES_FIELDS) if self.model.config.species_channels else CONSTITUENT_FIELDS

    def domain(self, pt: np.ndarray, eta: np.ndarray, n_constituents: np.ndarray) -> np.ndarray:
        """True for gen jets the image model simulates (finite, pT >= min_gen_pt, |eta| < max_abs_eta)."""
        with np.errstate(invalid="ignore"):
            return np.isfinite(pt) & np.isfinite(eta) & (pt >= self.min_gen_pt) & (np.abs(eta) < self.max_abs_eta) \
                & (n_constituents > 0)

    def simulate(self, events: GenEvents) -> ak.Array:
        from hepfastsim.jets.images import SEED000_DETECTOR, pixelise
        from hepfastsim.jets.observables import ObservablesConfig, image_observables
        from hepfastsim.reference.jec import load_jec

        if events.constituents is None:
            from hepfastsim.errors import ModelError

            raise ModelError("the image-gan model needs the gen-jet constituents (GenCands, GenJetCands)")
        jets = events.jets
        n_events = len(events)
        counts = ak.to_numpy(ak.num(jets, axis=1)).astype(np.int64)
        offsets = np.concatenate([[0], np.cumsum(counts)])
        flat = ak.flatten(jets, axis=1)
        pt, eta, phi = (np.asarray(ak.to_numpy(flat[f]), np.float64) for f in ("pt", "eta", "phi"))
        cands = ak.flatten(events.constituents, axis=1)
        n_const = ak.to_numpy(ak.num(cands, axis=1)).astype(np.int64)
        event_of_jet = np.repeat(np.arange(n_events), counts)
        local_idx = np.arange(offsets[-1]) - offsets[event_of_jet]
        inside = self.domain(pt, eta, n_const)
        sel = np.flatnonzero(inside)
        sel_counts = np.bincount(event_of_jet[sel], minlength=n_events).astype(np.int64)

        axis = ak.zip({"pt": pt[sel], "eta": eta[sel], "phi": phi[sel]})
        x = pixelise(cands[sel], axis, SEED000_DETECTOR).astype(np.float32)
        cond = np.stack([pt[sel], eta[sel], phi[sel], events.n_pu.astype(np.float64)[event_of_jet[sel]]],
                        axis=1).astype(np.float32)
        species = None
        if self.model.config.species_channels:
            from hepfastsim.jets.species import SPECIES_FIELDS, gen_species_images

            missing = [f for f in SPECIES_FIELDS if f not in ak.fields(cands)]
            if missing:
                from hepfastsim.errors import ModelError

                raise ModelError(f"this image-gan model needs the gen constituents' {', '.join(missing)} "
                                 f"(GenCands_{missing[0]}); without them, use the paper's generator: "
                                 f"{WEIGHTS_ENV}={PAPER_WEIGHTS}")
            species = gen_species_images(cands[sel], axis).astype(np.float32)
        img = generate_images(self.model, x, cond, events.keys, sel_counts, species)
        obs = image_observables(img.astype(np.float64), SEED000_DETECTOR, ObservablesConfig(), jet=axis)
        raw_pt = np.asarray(ak.to_numpy(obs.pt), np.float64)
        raw_mass = np.asarray(ak.to_numpy(obs.mass), np.float64)
        reco_eta = np.asarray(ak.to_numpy(obs.eta), np.float64)
        rho = events.rho.astype(np.float64)[event_of_jet[sel]]
        with np.errstate(invalid="ignore", divide="ignore"):
            empty = ~(raw_pt > 0)
            factor = load_jec("ak4").factor(np.where(empty, 1.0, raw_pt), np.where(empty, eta[sel], reco_eta),
                                            np.full(len(sel), _NOMINAL_AREA), rho)
            keep = ~empty & (raw_pt * factor > self.min_reco_pt)
        columns: dict[str, np.ndarray] = {
            "pt": (raw_pt * factor)[keep],
            "eta": reco_eta[keep],
            "phi": np.asarray(ak.to_numpy(obs.phi), np.float64)[keep],
            "mass": (raw_mass * factor)[keep],
            "rawFactor": (1.0 - 1.0 / factor)[keep],
            "genJetIdx": local_idx[sel][keep],
            "nPixels": np.asarray(ak.to_numpy(obs.n_constituents))[keep],
            "fromImage": np.ones(int(keep.sum()), np.int32),
        }
        for out_name, obs_name in _OBSERVABLES.items():
            columns[out_name] = np.asarray(ak.to_numpy(obs[obs_name]), np.float64)[keep]
        event_all = event_of_jet[sel][keep]

        if self.outside == "parametric":
            fallback = self._outside_jets(events, inside, counts, offsets)
            if fallback is not None:
                f_cols, f_event = fallback
                for k in columns:
                    columns[k] = np.concatenate([columns[k], f_cols[k]])
                event_all = np.concatenate([event_all, f_event])
        order = np.lexsort((-columns["pt"], event_all))
        out_counts = np.bincount(event_all, minlength=n_events)
        record = {k: columns[k][order].astype(dt) for k, dt in self.output_fields.items()}
        return ak.unflatten(ak.zip(record), out_counts)

    def _outside_jets(
        self, events: GenEvents, inside: np.ndarray, counts: np.ndarray, offsets: np.ndarray
    ) -> tuple[dict[str, np.ndarray], np.ndarray] | None:
        """Parametric smearing of the gen jets outside the image domain (columns, event index)."""
        from hepfastsim.simulators.parametric import ParametricSimulator

        if inside.all():
            return None
        outside_mask = ak.unflatten(~inside, counts)
        original_idx = ak.unflatten(np.arange(offsets[-1]) - np.repeat(offsets[:-1], counts), counts)[outside_mask]
        sub = GenEvents(jets=events.jets[outside_mask], n_pu=events.n_pu, rho=events.rho, keys=events.keys)
        reco = ParametricSimulator().simulate(sub)
        n_out = ak.to_numpy(ak.num(reco, axis=1))
        event = np.repeat(np.arange(len(events)), n_out)
        gen_idx = ak.to_numpy(ak.flatten(original_idx[reco.genJetIdx]))
        n = len(event)
        cols = {f: np.asarray(ak.to_numpy(ak.flatten(reco[f])), np.float64) for f in ("pt", "eta", "phi", "mass")}
        cols.update({"rawFactor": np.full(n, np.nan), "genJetIdx": gen_idx.astype(np.int64),
                     "nPixels": np.full(n, -1, np.int64), "fromImage": np.zeros(n, np.int32)})
        for out_name in _OBSERVABLES:
            cols[out_name] = np.full(n, np.nan)
        return cols, event


register("image-gan")(ImageGANSimulator)
