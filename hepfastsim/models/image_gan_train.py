"""Training data and training loop of the seed-000 jet-image GAN (arXiv:1805.00850).

Dataset (section 2 of the paper, on our reference chain): gen jets with pT > 20 GeV and
|eta| < 2.5 that have a matched reco jet (``Jet_genJetIdx``, Delta R < 0.2 in the
reference chain; the paper uses 0.3). Each pair is

* ``x``: the gen-jet image, from ``GenCands`` via ``GenJetCands``;
* ``y``: the matched reco-jet image, from ``PFCands`` via ``JetPFCands``;

both pixelised with :data:`~hepfastsim.jets.images.SEED000_DETECTOR` (32 x 32 pixels over
0.3 x 0.3, centred on the GEN jet axis, intensity = pT / gen pT, overflow folded onto the
border), plus the conditions ``c = (gen pT [GeV], gen eta, gen phi [rad], nPU)``. With
``species``, also both images split by particle species (:mod:`hepfastsim.jets.species`),
which the tower generator (``ImageGANConfig(output="towers")``) trains on.

Images are stored sparse (CSR over the 1024 pixels of each jet) in ``.npz`` caches and made
dense batch by batch. Training follows section 2.1: two Adam optimisers, the patch
discriminator D and the total-intensity discriminator D_T, generator loss
``adv + w_T adv_T + w_L2 L2 + w_mask L_pix + w_sum MSE(sum)`` (see
:func:`generator_losses`).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import awkward as ak
import numpy as np

from hepfastsim.jets.images import SEED000_DETECTOR, pixelise
from hepfastsim.models.moving_average import check_decay, moving_average

__all__ = [
    "MIN_GEN_PT",
    "MAX_ABS_ETA",
    "SCORE_OBSERVABLES",
    "CRITERION_OBSERVABLES",
    "SparseImages",
    "ImagePairs",
    "matched_jets",
    "extract_pairs",
    "build_pairs",
    "TrainConfig",
    "generator_losses",
    "tower_generator_losses",
    "training_device",
    "fit_total_spread",
    "train_image_gan",
]

#: Gen-jet selection of the paper (GeV, pseudorapidity): the model's domain.
MIN_GEN_PT = 20.0
MAX_ABS_ETA = 2.5
N_PIX = SEED000_DETECTOR.n_eta * SEED000_DETECTOR.n_phi

_BRANCHES_GEN = ("GenJet_pt", "GenJet_eta", "GenJet_phi", "GenJet_mass")
_BRANCHES_RECO = ("Jet_pt", "Jet_eta", "Jet_phi", "Jet_mass", "Jet_genJetIdx", "Jet_rawFactor", "Jet_area")
_BRANCHES_CANDS = (
    "GenCands_pt", "GenCands_eta", "GenCands_phi", "GenCands_mass", "GenJetCands_jetIdx", "GenJetCands_pFCandsIdx",
    "PFCands_pt", "PFCands_eta", "PFCands_phi", "PFCands_mass", "JetPFCands_jetIdx", "JetPFCands_pFCandsIdx",
)
_BRANCHES_SPECIES = ("GenCands_charge", "GenCands_pdgId", "PFCands_charge", "PFCands_pdgId")


@dataclass(frozen=True)
class SparseImages:
    """Images ``(n, 32, 32)`` stored as CSR rows over the flattened pixels.

    ``offsets`` (n + 1,), ``index`` (uint16 pixel index ``i_eta * 32 + i_phi``), ``value``
    (float32 intensity).
    """

    offsets: np.ndarray
    index: np.ndarray
    value: np.ndarray

    @classmethod
    def from_dense(cls, images: np.ndarray) -> SparseImages:
        flat = images.reshape(len(images), -1)
        rows, cols = np.nonzero(flat)
        counts = np.bincount(rows, minlength=len(flat))
        return cls(np.concatenate([[0], np.cumsum(counts)]).astype(np.int64), cols.astype(np.uint16),
                   flat[rows, cols].astype(np.float32))

    def __len__(self) -> int:
        return len(self.offsets) - 1

    def dense(self, rows: np.ndarray | None = None) -> np.ndarray:
        """Dense float32 images ``(len(rows), 32, 32)`` of the selected rows (all when None)."""
        rows = np.arange(len(self)) if rows is None else np.asarray(rows)
        start, stop = self.offsets[rows], self.offsets[rows + 1]
        counts = stop - start
        out = np.zeros((len(rows), N_PIX), np.float32)
        which = np.repeat(np.arange(len(rows)), counts)
        src = np.repeat(start - np.concatenate([[0], np.cumsum(counts)[:-1]]), counts) + np.arange(counts.sum())
        out[which, self.index[src].astype(np.int64)] = self.value[src]
        return out.reshape(len(rows), SEED000_DETECTOR.n_eta, SEED000_DETECTOR.n_phi)

    @staticmethod
    def concatenate(parts: Sequence[SparseImages]) -> SparseImages:
        offs, shift = [np.zeros(1, np.int64)], 0
        for p in parts:
            offs.append(p.offsets[1:] + shift)
            shift += int(p.offsets[-1])
        return SparseImages(np.concatenate(offs), np.concatenate([p.index for p in parts]),
                            np.concatenate([p.value for p in parts]))


@dataclass(frozen=True)
class ImagePairs:
    """Gen/reco image pairs with conditions (see the module docstring).

    ``cond``: (n, 4) float32 ``gen pT [GeV], gen eta, gen phi [rad], nPU``; ``reco``: (n, 5)
    float32 reference reco jet ``pt, eta, phi, mass`` (GeV, corrected as in NanoAOD) and
    ``rawFactor``; ``rho`` (n,) GeV; ``event`` (n,) int64 event id (file index * 10^7 + entry);
    ``gen_jet_index`` (n,) index of the gen jet in its event's GenJet collection;
    ``gen_species``, ``reco_species``: empty, or the 3 images by species of
    :func:`~hepfastsim.jets.species.gen_species_images` and
    :func:`~hepfastsim.jets.species.reco_species_images`.
    """

    gen: SparseImages
    reco: SparseImages
    cond: np.ndarray
    reco_jet: np.ndarray
    rho: np.ndarray
    event: np.ndarray
    gen_jet_index: np.ndarray
    gen_species: tuple[SparseImages, ...] = ()
    reco_species: tuple[SparseImages, ...] = ()

    def __len__(self) -> int:
        return len(self.cond)

    @property
    def has_species(self) -> bool:
        return bool(self.gen_species) and bool(self.reco_species)

    def species(self, side: str, rows: np.ndarray) -> np.ndarray:
        """Dense float32 images by species ``(len(rows), 3, 32, 32)`` of ``side`` "gen" or "reco"."""
        parts = self.gen_species if side == "gen" else self.reco_species
        if not parts:
            from hepfastsim.errors import HepfastsimError

            raise HepfastsimError("these image pairs have no images by species: build them with species=True "
                                  "(files with GenCands_charge, GenCands_pdgId, PFCands_charge, PFCands_pdgId)")
        return np.stack([p.dense(rows) for p in parts], axis=1)

    def save(self, path: str | Path) -> None:
        species = {f"{side}_species{k}_{name}": v for side in ("gen", "reco")
                   for k, part in enumerate(getattr(self, f"{side}_species")) for name, v in asdict(part).items()}
        np.savez(path, **{f"gen_{k}": v for k, v in asdict(self.gen).items()},
                 **{f"reco_{k}": v for k, v in asdict(self.reco).items()}, **species,
                 cond=self.cond, reco_jet=self.reco_jet, rho=self.rho, event=self.event, gen_jet_index=self.gen_jet_index)

    @classmethod
    def load(cls, path: str | Path) -> ImagePairs:
        with np.load(path) as f:
            def images(prefix: str) -> SparseImages:
                return SparseImages(f[f"{prefix}_offsets"], f[f"{prefix}_index"], f[f"{prefix}_value"])

            idx = f["gen_jet_index"] if "gen_jet_index" in f else np.full(len(f["cond"]), -1, np.int64)
            species = [tuple(images(f"{side}_species{k}") for k in range(3) if f"{side}_species{k}_offsets" in f)
                       for side in ("gen", "reco")]
            return cls(images("gen"), images("reco"), f["cond"], f["reco_jet"], f["rho"], f["event"], idx, *species)

    @staticmethod
    def concatenate(parts: Sequence[ImagePairs]) -> ImagePairs:
        species = [tuple(SparseImages.concatenate([getattr(p, side)[k] for p in parts]) for k in range(3))
                   if parts and all(getattr(p, side) for p in parts) else () for side in ("gen_species", "reco_species")]
        return ImagePairs(
            SparseImages.concatenate([p.gen for p in parts]), SparseImages.concatenate([p.reco for p in parts]),
            *(np.concatenate([getattr(p, k) for p in parts]) for k in ("cond", "reco_jet", "rho", "event", "gen_jet_index")),
            *species,
        )


def matched_jets(arrays: dict[str, Any]) -> tuple[np.ndarray, np.ndarray, np.ndarray, ak.Array]:
    """The reco jets of one chunk matched (``Jet_genJetIdx``) to a gen jet inside the model's
    domain: their flat indices among the chunk's reco jets, their gen jets' flat indices among
    its gen jets, their event (0-based in the chunk) and the flat gen-jet records (pt, eta, phi, mass)."""
    gen = ak.zip({f: arrays[f"GenJet_{f}"] for f in ("pt", "eta", "phi", "mass")})
    n_gen = ak.to_numpy(ak.num(gen.pt)).astype(np.int64)
    n_reco = ak.to_numpy(ak.num(arrays["Jet_genJetIdx"])).astype(np.int64)
    gen_off = np.concatenate([[0], np.cumsum(n_gen)])
    ev_reco = np.repeat(np.arange(len(n_gen)), n_reco)
    idx = ak.to_numpy(ak.flatten(arrays["Jet_genJetIdx"])).astype(np.int64)
    ok = (idx >= 0) & (idx < n_gen[ev_reco])
    g_flat = ak.flatten(gen)
    g_global = gen_off[ev_reco] + np.where(ok, idx, 0)
    # looked up for matched jets only: an unmatched jet in an event without gen jets (the
    # last event of a chunk, say) has no gen row to point at
    gpt, geta = np.zeros(len(idx)), np.zeros(len(idx))
    gpt[ok] = ak.to_numpy(g_flat.pt).astype(np.float64)[g_global[ok]]
    geta[ok] = ak.to_numpy(g_flat.eta).astype(np.float64)[g_global[ok]]
    ok &= (gpt > MIN_GEN_PT) & (np.abs(geta) < MAX_ABS_ETA)
    sel_reco = np.flatnonzero(ok)
    return sel_reco, g_global[sel_reco], ev_reco[sel_reco], g_flat


def extract_pairs(arrays: dict[str, Any], event_ids: np.ndarray, species: bool = False) -> ImagePairs:
    """Image pairs from one chunk of NanoAOD branches (see the module docstring); with
    ``species`` also the images by species (``arrays`` then holds ``GenCands_charge``,
    ``GenCands_pdgId``, ``PFCands_charge``, ``PFCands_pdgId``)."""
    from hepfastsim.io.nanoaod import event_npu, event_rho, jet_constituents
    from hepfastsim.jets.species import SPECIES_FIELDS, gen_species_images, reco_species_images

    n_events = len(event_ids)
    fields = ("pt", "eta", "phi", "mass", *(SPECIES_FIELDS if species else ()))
    reco = ak.zip({f: arrays[f"Jet_{f}"] for f in ("pt", "eta", "phi", "mass", "genJetIdx", "rawFactor")})
    gen_c = jet_constituents(arrays, fields=fields)
    reco_c = jet_constituents(arrays, candidates="PFCands", links="JetPFCands", jets="Jet", fields=fields)
    sel_reco, sel_gen, ev, g_flat = matched_jets(arrays)
    idx = ak.to_numpy(ak.flatten(reco.genJetIdx)).astype(np.int64)
    axis = g_flat[sel_gen]
    gen_sel, reco_sel = ak.flatten(gen_c, axis=1)[sel_gen], ak.flatten(reco_c, axis=1)[sel_reco]
    gen_img = pixelise(gen_sel, axis, SEED000_DETECTOR)
    reco_img = pixelise(reco_sel, axis, SEED000_DETECTOR)
    by_species: list[tuple[SparseImages, ...]] = [(), ()]
    if species:
        by_species = [tuple(SparseImages.from_dense(images[:, k]) for k in range(images.shape[1]))
                      for images in (gen_species_images(gen_sel, axis), reco_species_images(reco_sel, axis))]
    npu = event_npu(arrays, n_events)[ev]
    rho = event_rho(arrays, n_events)[ev]
    cond = np.stack([ak.to_numpy(axis.pt).astype(np.float64), ak.to_numpy(axis.eta).astype(np.float64),
                     ak.to_numpy(axis.phi), npu], axis=1).astype(np.float32)
    r_flat = ak.flatten(reco)[sel_reco]
    reco_jet = np.stack([ak.to_numpy(r_flat[f]) for f in ("pt", "eta", "phi", "mass", "rawFactor")],
                        axis=1).astype(np.float32)
    return ImagePairs(SparseImages.from_dense(gen_img), SparseImages.from_dense(reco_img), cond, reco_jet,
                      rho.astype(np.float32), event_ids[ev].astype(np.int64), idx[sel_reco], *by_species)


def build_pairs(
    files: Sequence[str],
    tree: str = "Events",
    max_events: int | None = None,
    on_progress: Callable[[str, int, int], None] | None = None,
    species: bool = False,
) -> ImagePairs:
    """Image pairs of all ``files`` (at most ``max_events`` per file), read chunk by chunk;
    ``species``: with the images by species (see :func:`extract_pairs`)."""
    from hepfastsim.io.nanoaod import iterate_chunks, open_tree

    parts = []
    for k, path in enumerate(files):
        source = open_tree(path, tree)
        branches = [*_BRANCHES_GEN, *_BRANCHES_RECO, *_BRANCHES_CANDS, *(_BRANCHES_SPECIES if species else ())]
        source.require(branches)
        branches += [b for b in ("Pileup_nPU", "fixedGridRhoFastjetAll", "Rho_fixedGridRhoFastjetAll")
                     if b in set(source.branch_names)]
        stop = source.num_entries if max_events is None else min(max_events, source.num_entries)
        for chunk in iterate_chunks(source, branches, step_size=2000, entry_stop=stop):
            ids = k * 10_000_000 + np.arange(chunk.entry_start, chunk.entry_stop, dtype=np.int64)
            parts.append(extract_pairs(chunk.arrays, ids, species=species))
            if on_progress is not None:
                on_progress(str(path), len(chunk), stop)
    if not parts:
        raise ValueError("expected at least one input file")
    return ImagePairs.concatenate(parts)


# ------------------------------------------------------------------------------------------
# training


#: Observables of the default checkpoint score: total and ring intensities, pTD, axes, tau21, mass.
SCORE_OBSERVABLES = ("pt", "ring0", "ring1", "ring2", "ring3", "ptd", "major", "minor", "tau21", "mass")
#: The observables the image-GAN validation criterion is on (ring intensities and substructure).
CRITERION_OBSERVABLES = ("ring0", "ring1", "ring2", "ring3", "ptd", "major", "minor", "tau21", "tau32")


@dataclass(frozen=True)
class TrainConfig:
    """Training settings. Loss weights (section 2.1 of the paper; the paper does not give
    their values): ``w_adv`` patch-GAN term, ``w_total_adv`` the D_T game (the paper's tau),
    ``w_l2`` the L2 term (summed over pixels), ``w_mask`` the paper's lambda (mask
    cross-entropy + intensity L2 on the non-empty reco pixels, both summed over pixels),
    ``w_sum`` the MSE of the total intensities (the paper's mu). ``device``: the torch device
    the three networks train on (``"cpu"``, ``"cuda"``, ``"cuda:1"``); checkpoints are scored
    and returned on the CPU. ``score_observables``: the image observables whose W1 (over the
    reco standard deviation) the checkpoint score averages (see :func:`_score`).
    ``logit_loss``: the adversarial cross-entropies from the discriminators' logits, with no
    clipping; by default they are on probabilities clipped to [1e-6, 1 - 1e-6] as in the
    paper's Keras losses, whose generator gradient vanishes once D rejects a fake with
    probability below 1e-6. ``ema_decay``: score and keep an exponential moving average of
    the generator's weights and batch-norm statistics (updated after every generator step)
    instead of the raw weights. ``score_calibrated``: score the images with the total
    calibration fitted on the held-out jets (``--calibrate-total``), as they will be shipped."""

    batch_size: int = 128
    learning_rate: float = 2e-4
    betas: tuple[float, float] = (0.5, 0.999)
    epochs: float = 10.0
    max_minutes: float | None = None
    w_adv: float = 1.0
    w_total_adv: float = 1.0
    w_l2: float = 20.0
    w_mask: float = 1.0
    w_sum: float = 50.0
    eval_every: int = 500
    eval_jets: int = 4000
    holdout_fraction: float = 0.02
    seed: int = 0
    device: str = "cpu"
    score_observables: tuple[str, ...] = SCORE_OBSERVABLES
    score_calibrated: bool = False
    logit_loss: bool = False
    ema_decay: float | None = None

    def __post_init__(self) -> None:
        check_decay(self.ema_decay)


def _bce(p: Any, target: float) -> Any:
    import torch

    return torch.nn.functional.binary_cross_entropy(p.clamp(1e-6, 1 - 1e-6), torch.full_like(p, target))


def _adversarial(net: Any, inputs: tuple[Any, ...], target: float, config: TrainConfig) -> Any:
    """Cross-entropy of discriminator ``net`` on ``inputs`` against label ``target`` (see
    ``TrainConfig.logit_loss``)."""
    import torch

    if config.logit_loss:
        logits = net.logits(*inputs)
        return torch.nn.functional.binary_cross_entropy_with_logits(logits, torch.full_like(logits, target))
    return _bce(net(*inputs), target)


def generator_losses(
    g0: Any, g1: Any, z: Any, x: Any, y: Any, c: Any, disc: Any, disc_total: Any, config: TrainConfig
) -> tuple[Any, Any, dict[str, float]]:
    """Total generator loss, the generated image ``G2`` and the terms (floats).

    ``G2 = G0 * 1[z < G1]`` (straight-through); terms: ``adv = BCE(D(G2, x, c), 1)``,
    ``adv_T = BCE(D_T(sum G2, c), 1)``, ``l2 = E sum_pix (G2 - y)^2``, ``mask = E_pix
    sum_pix BCE(G1, 1[y > 0]) + E sum_{y > 0} (G0 - y)^2 / 2`` (eq. 2, summed over pixels like
    the L2 term so that the mask gets a per-pixel gradient of the same size), ``sum = E (sum G2 - sum y)^2``.
    """
    import torch

    from hepfastsim.models.image_gan import sample_hard_mask

    g2 = g0 * sample_hard_mask(g1, z)
    occupied = (y > 0).to(y.dtype)
    mask_bce = torch.nn.functional.binary_cross_entropy(g1.clamp(1e-6, 1 - 1e-6), occupied,
                                                        reduction="none").sum(dim=(1, 2, 3)).mean()
    mask_int = (occupied * (g0 - y) ** 2 / 2).sum(dim=(1, 2, 3)).mean()
    loss, terms = _generator_terms(g2, mask_bce + mask_int, x, y, c, disc, disc_total, config)
    return loss, g2, terms


def tower_generator_losses(
    out: Any, towers: Any, g2: Any, species: Any, x: Any, y: Any, c: Any, disc: Any, disc_total: Any,
    config: TrainConfig,
) -> tuple[Any, Any, dict[str, float]]:
    """:func:`generator_losses` of a tower generator: ``g2`` sampled from its outputs ``out``
    with :func:`~hepfastsim.models.image_towers.sample_image` (straight-through), and the mask
    term replaced by :func:`~hepfastsim.models.image_towers.supervised_loss` against the reco
    images by species ``species`` ``(n, 3, 32, 32)``."""
    from hepfastsim.models.image_towers import supervised_loss

    mask = supervised_loss(out, towers, species[:, :1], species[:, 1:])
    loss, terms = _generator_terms(g2, mask, x, y, c, disc, disc_total, config)
    return loss, g2, terms


def _generator_terms(g2: Any, mask: Any, x: Any, y: Any, c: Any, disc: Any, disc_total: Any, config: TrainConfig
                     ) -> tuple[Any, dict[str, float]]:
    """The weighted sum of the adversarial, L2, ``mask`` and total-MSE terms (see :func:`generator_losses`)."""
    adv = _adversarial(disc, (g2, x, c), 1.0, config)
    tot_g, tot_y = g2.sum(dim=(1, 2, 3)), y.sum(dim=(1, 2, 3))
    adv_t = _adversarial(disc_total, (tot_g, c), 1.0, config)
    l2 = ((g2 - y) ** 2).sum(dim=(1, 2, 3)).mean()
    summse = ((tot_g - tot_y) ** 2).mean()
    loss = (config.w_adv * adv + config.w_total_adv * adv_t + config.w_l2 * l2
            + config.w_mask * mask + config.w_sum * summse)
    terms = {"adv": adv.item(), "adv_T": adv_t.item(), "l2": l2.item(), "mask": mask.item(),
             "sum_mse": summse.item()}
    return loss, terms


def _score(model: Any, pairs: ImagePairs, rows: np.ndarray, seed: int,
           observables: Sequence[str] = SCORE_OBSERVABLES, calibrated: bool = False) -> dict[str, float]:
    """Checkpoint score: W1 of each of ``observables`` between generated and reco images of
    ``rows``, divided by the reco standard deviation, and their mean (``"score"``). With
    ``calibrated``, of the images with the total calibration fitted on these rows
    (:func:`fit_total_spread`), as the shipped model would give them."""
    from hepfastsim.evaluation.metrics import wasserstein1
    from hepfastsim.jets.observables import image_observables

    y = pairs.reco.dense(rows)
    img, expected = _sample_images(model, pairs, rows, np.random.default_rng(seed))
    if calibrated:
        from hepfastsim.models.image_gan import conserve_total

        spread = _matching_spread(img.sum(axis=(1, 2), dtype=np.float64), expected, y.sum(axis=(1, 2), dtype=np.float64))
        img = conserve_total(img, expected, 1.0 if spread is None else spread)
    ref = image_observables(y.astype(np.float64))
    got = image_observables(img.astype(np.float64))
    out = {}
    for name in observables:
        r, g = ak.to_numpy(ref[name]), ak.to_numpy(got[name])
        r, g = r[np.isfinite(r)], g[np.isfinite(g)]
        out[name] = wasserstein1(r, g) / max(float(np.std(r)), 1e-12)
    out["score"] = float(np.mean(list(out.values())))
    return out


def _sample_images(model: Any, pairs: ImagePairs, rows: np.ndarray, rng: np.random.Generator
                   ) -> tuple[np.ndarray, np.ndarray]:
    """Sampled images ``(n, 32, 32)`` and expected totals ``(n,)`` of the pairs ``rows``
    (:func:`~hepfastsim.models.image_gan.sample_images`), the noise maps (a generator with noise
    channels) and then the draws taken from ``rng``."""
    from hepfastsim.models.image_gan import image_towers, sample_images
    from hepfastsim.models.image_towers import ImageDraws

    x = pairs.gen.dense(rows)
    k = model.config.noise_channels
    noise = rng.standard_normal((len(x), k, *x.shape[1:]), dtype=np.float32) if k else None
    species = pairs.species("gen", rows) if model.config.species_channels else None
    towers = image_towers(model.config, pairs.cond[rows])
    return sample_images(model, x, pairs.cond[rows], towers, ImageDraws.from_numpy(rng, len(x), towers), noise,
                         species)


def fit_total_spread(model: Any, pairs: ImagePairs, seed: int = 0, batch: int = 2048) -> dict[str, float]:
    """The ``spread`` of :func:`~hepfastsim.models.image_gan.conserve_total` that gives the
    generated total image intensity (raw reco pT / gen pT) the reference's resolution.

    Each pair's image is generated once (mask uniforms and noise from ``seed``); with ``S`` the
    sampled and ``E`` the expected total, the calibrated total ``E + a (S - E)`` has a 16-84%
    half-width that grows with ``a``, and ``a`` in [0, 1] is solved (:func:`scipy.optimize.brentq`)
    so that it equals the reference images' half-width (0 when the expected totals alone are
    already as wide: the closest it comes). Returns ``spread`` and the record
    (half-widths and medians of the reference, as sampled, expected and calibrated; jets).
    """
    from hepfastsim.errors import HepfastsimError
    from hepfastsim.evaluation.metrics import median_resolution

    if len(pairs) < 1000:
        raise HepfastsimError(f"expected at least 1000 image pairs to fit the total calibration, got {len(pairs)}")
    rng = np.random.default_rng(seed)
    sampled, expected, reference = [], [], []
    for start in range(0, len(pairs), batch):
        rows = np.arange(start, min(start + batch, len(pairs)))
        img, total = _sample_images(model, pairs, rows, rng)
        sampled.append(img.sum(axis=(1, 2), dtype=np.float64))
        expected.append(total)
        reference.append(pairs.reco.dense(rows).sum(axis=(1, 2), dtype=np.float64))
    s, e, r = np.concatenate(sampled), np.concatenate(expected), np.concatenate(reference)
    median_reference, target = median_resolution(r)
    spread = _matching_spread(s, e, r)
    if spread is None:
        raise HepfastsimError(
            f"cannot reach the reference total-intensity resolution {target:.4f}: the generated totals give "
            f"{median_resolution(e)[1]:.4f} at their expectation and {median_resolution(s)[1]:.4f} as sampled")
    median_calibrated, half_width_calibrated = median_resolution(e + spread * (s - e))
    return {"spread": spread, "jets": int(len(r)), "seed": int(seed), "half_width_reference": target,
            "half_width_sampled": median_resolution(s)[1], "half_width_expected": median_resolution(e)[1],
            "half_width_calibrated": half_width_calibrated,
            "median_reference": median_reference, "median_sampled": median_resolution(s)[0],
            "median_calibrated": median_calibrated}


def _matching_spread(sampled: np.ndarray, expected: np.ndarray, reference: np.ndarray) -> float | None:
    """The ``a`` in [0, 1] that gives ``expected + a (sampled - expected)`` the 16-84%
    half-width of ``reference``: 0 when the expected totals alone are already as wide (the
    tower generator's; the closest it comes), None when even the sampled ones are narrower."""
    from scipy.optimize import brentq

    from hepfastsim.evaluation.metrics import median_resolution

    target = median_resolution(reference)[1]

    def excess(a: float) -> float:
        return median_resolution(expected + a * (sampled - expected))[1] - target

    if excess(1.0) < 0:
        return None
    return 0.0 if excess(0.0) >= 0 else float(brentq(excess, 0.0, 1.0, xtol=1e-6))


def training_device(name: str) -> Any:
    """The torch device called ``name``; a clear error when it does not exist here."""
    import torch

    from hepfastsim.errors import HepfastsimError

    try:
        device = torch.device(name)
    except RuntimeError as err:
        raise HepfastsimError(f"unknown torch device {name!r} ({err})") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise HepfastsimError(f"device {name!r} asked for, but torch {torch.__version__} sees no CUDA GPU here")
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
    return device


def train_image_gan(
    pairs: ImagePairs,
    config: TrainConfig = TrainConfig(),
    arch: Any = None,
    on_step: Callable[[int, int, dict[str, float]], None] | None = None,
    init: dict[str, dict[str, Any]] | None = None,
    init_arch: Any = None,
) -> tuple[Any, dict[str, Any]]:
    """Train G, D and D_T on ``pairs``; returns the generator (eval mode) of the best held-out
    checkpoint score (see :func:`_score`) and a training report (its ``"discriminators"``
    entry holds the final D and D_T state dicts). Held-out jets are a ``holdout_fraction`` of
    whole events. ``init``: state dicts ``{"G": ..., "D": ..., "DT": ...}`` (any subset) to
    continue a previous training of architecture ``init_arch`` (default: the paper's with the
    noise channels of ``init["G"]``), which ``arch`` may widen
    (:func:`~hepfastsim.models.image_gan.continued_state`). A tower generator
    (``arch.output == "towers"``) and one with species inputs train on pairs with images by
    species."""
    import copy

    import torch

    from hepfastsim.models.image_gan import (
        ImageGANConfig,
        LoadedImageGAN,
        PatchDiscriminator,
        TotalDiscriminator,
        UNetGenerator,
        condition_features,
        continued_state,
        image_towers,
    )
    from hepfastsim.models.image_towers import ImageDraws, sample_image, tower_outputs

    arch = arch or ImageGANConfig()
    device = training_device(config.device)
    torch.manual_seed(config.seed)
    rng = np.random.default_rng(config.seed)
    events = np.unique(pairs.event)
    held_events = events[rng.random(len(events)) < config.holdout_fraction]
    held = np.isin(pairs.event, held_events)
    train_rows, held_rows = np.flatnonzero(~held), np.flatnonzero(held)
    eval_rows = held_rows[:config.eval_jets]
    towers_out = arch.output == "towers"
    if (towers_out or arch.species_channels) and not pairs.has_species:
        from hepfastsim.errors import HepfastsimError

        raise HepfastsimError("a tower generator or one with species inputs trains on image pairs with images by "
                              "species (build_pairs(..., species=True))")
    G, D, DT = UNetGenerator(arch), PatchDiscriminator(arch), TotalDiscriminator(arch)
    for name, net in (("G", G), ("D", D), ("DT", DT)):
        if init and name in init:
            if name == "G":
                from_arch = init_arch or ImageGANConfig(noise_channels=init["G"]["encoders.0.0.weight"].shape[1] - 1)
                net.load_state_dict(continued_state(G, init["G"], from_arch))
            else:
                net.load_state_dict(init[name])
        net.to(device)
    ema = moving_average(G, config.ema_decay)
    if ema is not None:
        ema.module.eval()
    kept = G if ema is None else ema.module  # the generator scored and returned
    opt_g = torch.optim.Adam(G.parameters(), lr=config.learning_rate, betas=config.betas)
    opt_d = torch.optim.Adam([*D.parameters(), *DT.parameters()], lr=config.learning_rate, betas=config.betas)
    n_steps = int(config.epochs * len(train_rows) / config.batch_size)
    start = time.perf_counter()
    history: list[dict[str, float]] = []
    best: dict[str, Any] = {"score": np.inf, "state": None, "step": 0}
    step = 0
    for step in range(1, n_steps + 1):
        rows = np.sort(rng.choice(train_rows, config.batch_size, replace=False))
        x = torch.from_numpy(pairs.gen.dense(rows))[:, None].to(device)
        y = torch.from_numpy(pairs.reco.dense(rows))[:, None].to(device)
        c = condition_features(pairs.cond[rows]).to(device)
        noise = torch.randn(len(rows), arch.noise_channels, *x.shape[2:], device=device) if arch.noise_channels else None
        species = torch.from_numpy(pairs.species("gen", rows)).to(device) if arch.species_channels else None
        if towers_out:
            towers = tuple(t.to(device) for t in image_towers(arch, pairs.cond[rows]))
            out = tower_outputs(G.head(x, c, noise, species), towers)
            g2 = sample_image(out, towers, ImageDraws.torch_random(len(rows), towers, device=device), straight_through=True)
            reco_species = torch.from_numpy(pairs.species("reco", rows)).to(device)
            fake = g2.detach()
        else:
            g0, g1 = G(x, c, noise, species)
            z = torch.rand_like(g1)
            with torch.no_grad():
                fake = g0 * (z < g1).to(g0.dtype)
        # discriminators
        loss_d = (_adversarial(D, (y, x, c), 1.0, config) + _adversarial(D, (fake, x, c), 0.0, config)
                  + _adversarial(DT, (y.sum(dim=(1, 2, 3)), c), 1.0, config)
                  + _adversarial(DT, (fake.sum(dim=(1, 2, 3)), c), 0.0, config))
        opt_d.zero_grad()
        loss_d.backward()
        opt_d.step()
        # generator
        if towers_out:
            loss_g, _, terms = tower_generator_losses(out, towers, g2, reco_species, x, y, c, D, DT, config)
        else:
            loss_g, _, terms = generator_losses(g0, g1, z, x, y, c, D, DT, config)
        opt_g.zero_grad()
        loss_g.backward()
        opt_g.step()
        if ema is not None:
            ema.update_parameters(G)
        out_of_time = config.max_minutes is not None and time.perf_counter() - start > 60 * config.max_minutes
        if step % config.eval_every == 0 or step == n_steps or out_of_time:
            kept.eval()
            scored = kept if device.type == "cpu" else copy.deepcopy(kept).cpu()
            score = _score(LoadedImageGAN(scored, arch), pairs, eval_rows, config.seed + step,
                           config.score_observables, config.score_calibrated)
            G.train()
            entry = {"step": step, "seconds": round(time.perf_counter() - start, 1), "loss_d": loss_d.item(),
                     "loss_g": loss_g.item(), **terms, **{f"heldout_{k}": v for k, v in score.items()}}
            history.append(entry)
            if score["score"] < best["score"]:
                best = {"score": score["score"], "state": copy.deepcopy(kept.state_dict()), "step": step}
            if on_step is not None:
                on_step(step, n_steps, entry)
        elif on_step is not None and step % 50 == 0:
            on_step(step, n_steps, {"loss_d": loss_d.item(), "loss_g": loss_g.item(), **terms})
        if out_of_time:
            break
    G.load_state_dict(best["state"] if best["state"] is not None else kept.state_dict())
    G.cpu().eval()
    report = {
        "config": asdict(config),
        "train_jets": int(len(train_rows)),
        "heldout_jets": int(len(held_rows)),
        "steps_run": step,
        "epochs_run": round(step * config.batch_size / max(len(train_rows), 1), 3),
        "best_step": best["step"],
        "best_heldout_score": best["score"],
        "seconds": round(time.perf_counter() - start, 1),
        "history": history,
        "discriminators": {"D": D.cpu().state_dict(), "DT": DT.cpu().state_dict()},
    }
    return G, report
