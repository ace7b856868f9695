"""Tower-sampled neutral energy for the seed-000 generator (``ImageGANConfig(output="towers")``).

The reference detector puts every neutral PF candidate at one uniformly random point of its
calorimeter tower (photons: ECAL, neutral hadrons: HCAL; Delphes ``SmearTowerCenter``), so a
tower's neutral energy lands in exactly one pixel of the tower's block of the jet image. The
paper's independent per-pixel mask cannot draw "exactly one pixel per tower": on the
reference itself it costs W1 ratios up to 7.5 (``examples/image_gan_mask_limit.py``).

With ``output="towers"`` the U-Net's last layer gives 8 channels per pixel:

* 0, 1: the paper's ``G0`` / ``G1`` (intensity, soft mask) for the per-pixel part of the image:
  charged candidates and the neutrals outside the 0.3 x 0.3 window (folded onto the border);
* per calorimeter (2-4: ECAL for photons, 5-7: HCAL for neutral hadrons): a density ``N``
  (softplus), a fire logit ``a`` and a log-width ``s``, pooled over each tower ``t`` of the
  jet's image (:func:`~hepfastsim.jets.towers.tower_labels`): the tower energy
  ``E_t = sum N`` (fraction of gen pT), the fire probability ``P_t = sigmoid(mean a)`` and the
  log-normal width ``sigma_t = exp(mean s)``.

A fired tower (``u_t < P_t``) puts ``E_t exp(sigma_t eps_t - sigma_t^2 / 2)`` (mean ``E_t``)
into one pixel of the tower chosen uniformly at random (the ``floor(v_t n_t)``-th of its
``n_t`` pixels in raster order, ``v_t`` uniform), as the reference places its neutral
candidates. The random numbers (:class:`ImageDraws`) are one uniform per pixel for the mask
and ``u_t``, ``v_t``, ``eps_t`` per tower; the simulator keys a tower's on the event, the jet
and the tower's first pixel, so they do not depend on the chunking.

Training (:func:`supervised_loss`): the paper's mask term on the per-pixel part, and per tower
the cross-entropy of ``P_t`` against "the reference tower has neutral energy" plus the
log-normal negative log-likelihood of the reference tower energy where it has.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from hepfastsim.jets.towers import tower_labels

__all__ = ["CALORIMETERS", "TOWER_BIAS", "TowerIndex", "ImageDraws", "TowerOutputs", "batch_towers",
           "tower_outputs", "sample_image", "expected_total", "supervised_loss"]

#: The calorimeters whose towers hold the sampled neutral energy, in channel order.
CALORIMETERS = ("ecal", "hcal")
#: Initial biases of the 8 output channels: charged as the paper's generator (~2% lit pixels);
#: ECAL density ~0.005 per pixel, fire ~2.7%, width 0.5; HCAL density ~0.001 per pixel, fire ~9%,
#: width 0.5 (medians of the reference on QCD part 20).
TOWER_BIAS = (0.0, -4.0, -0.113, -3.6, -0.7, -0.195, -2.3, -0.7)
_SOFTPLUS_BETA = 20.0
N_SIDE = 32
N_PIXELS = N_SIDE * N_SIDE


@dataclass(frozen=True)
class TowerIndex:
    """The towers of one calorimeter over a batch of n jet images.

    ``pixel_tower`` ``(n * 1024,)`` int64: the batch-wide tower of every pixel (jet-major,
    then ``i_eta * 32 + i_phi``); ``n_towers``: towers in the batch; ``first_pixel``
    ``(n_towers,)``: the flat index of each tower's first pixel; ``size`` ``(n_towers,)``
    float32: its number of pixels; ``width`` ``(n_towers,)`` int64: its number of columns
    (a tower covers a rectangle of pixels: a run of columns over the rows of one eta ring)."""

    pixel_tower: torch.Tensor
    n_towers: int
    first_pixel: torch.Tensor
    size: torch.Tensor
    width: torch.Tensor

    @classmethod
    def from_labels(cls, labels: np.ndarray, n_towers: np.ndarray) -> TowerIndex:
        """From :func:`~hepfastsim.jets.towers.tower_labels`' per-jet ``labels`` ``(n, 32, 32)``."""
        from hepfastsim.kernels.towers import tower_summary

        flat, first, size, width = tower_summary(np.ascontiguousarray(labels, np.int64),
                                                 np.ascontiguousarray(n_towers, np.int64))
        return cls(torch.from_numpy(flat), len(first), torch.from_numpy(first), torch.from_numpy(size),
                   torch.from_numpy(width))

    def to(self, device: torch.device | str) -> TowerIndex:
        return TowerIndex(self.pixel_tower.to(device), self.n_towers, self.first_pixel.to(device), self.size.to(device),
                          self.width.to(device))

    @property
    def jet(self) -> torch.Tensor:
        """The jet (row of the batch) of each tower, ``(n_towers,)``."""
        return torch.div(self.first_pixel, N_PIXELS, rounding_mode="floor")

    def pool(self, values: torch.Tensor) -> torch.Tensor:
        """Sum of per-pixel ``values`` ``(n * 1024,)`` over each tower, ``(n_towers,)``."""
        return torch.zeros(self.n_towers, dtype=values.dtype, device=values.device).index_add(0, self.pixel_tower, values)


def batch_towers(axis_eta: np.ndarray, axis_phi: np.ndarray) -> tuple[TowerIndex, TowerIndex]:
    """ECAL and HCAL :class:`TowerIndex` of jet images centred on ``axis_eta``, ``axis_phi``
    (rad), ``(n,)`` each, with the reference chain's tower geometry."""
    from hepfastsim.reference.config import ecal_geometry, hcal_geometry

    geometries = {"ecal": ecal_geometry(), "hcal": hcal_geometry()}
    return tuple(TowerIndex.from_labels(*tower_labels(axis_eta, axis_phi, geometries[name])) for name in CALORIMETERS)


@dataclass(frozen=True)
class ImageDraws:
    """The random numbers of one image per jet.

    ``mask`` ``(n, 32, 32)`` uniforms of the per-pixel mask; for a tower generator also, one
    tensor ``(n_towers,)`` per calorimeter of its :class:`TowerIndex`: ``fire`` and ``place``
    uniforms and ``energy`` standard normals (see the module docstring)."""

    mask: torch.Tensor
    fire: tuple[torch.Tensor, ...] = ()
    place: tuple[torch.Tensor, ...] = ()
    energy: tuple[torch.Tensor, ...] = ()

    @classmethod
    def torch_random(cls, n: int, towers: tuple[TowerIndex, ...] = (), generator: torch.Generator | None = None,
                     device: torch.device | str = "cpu") -> ImageDraws:
        """Draws from torch's generator (training)."""
        def u(shape: tuple[int, ...]) -> torch.Tensor:
            return torch.rand(shape, generator=generator, device=device)

        return cls(u((n, 32, 32)), tuple(u((t.n_towers,)) for t in towers), tuple(u((t.n_towers,)) for t in towers),
                   tuple(torch.randn((t.n_towers,), generator=generator, device=device) for t in towers))

    @classmethod
    def from_numpy(cls, rng: np.random.Generator, n: int, towers: tuple[TowerIndex, ...] = ()) -> ImageDraws:
        """Draws from a numpy generator (checkpoint scores, calibration fits)."""
        mask = torch.from_numpy(rng.random((n, 32, 32), dtype=np.float32))
        fire = tuple(torch.from_numpy(rng.random(t.n_towers, dtype=np.float32)) for t in towers)
        place = tuple(torch.from_numpy(rng.random(t.n_towers, dtype=np.float32)) for t in towers)
        energy = tuple(torch.from_numpy(rng.standard_normal(t.n_towers, dtype=np.float32)) for t in towers)
        return cls(mask, fire, place, energy)


@dataclass(frozen=True)
class TowerOutputs:
    """The generator's outputs: per-pixel ``g0``, ``g1`` ``(n, 1, 32, 32)``, and per
    calorimeter the tower energies ``energy``, fire probabilities ``fire`` and log-normal
    widths ``width``, each ``(n_towers,)``."""

    g0: torch.Tensor
    g1: torch.Tensor
    energy: tuple[torch.Tensor, ...]
    fire: tuple[torch.Tensor, ...]
    width: tuple[torch.Tensor, ...]


def tower_outputs(head: torch.Tensor, towers: tuple[TowerIndex, ...]) -> TowerOutputs:
    """Pool the raw last-layer output ``head`` ``(n, 8, 32, 32)`` per tower (module docstring)."""
    def softplus(t: torch.Tensor) -> torch.Tensor:
        return torch.nn.functional.softplus(t, beta=_SOFTPLUS_BETA)

    energy, fire, width = [], [], []
    for k, index in enumerate(towers):
        density = softplus(head[:, 2 + 3 * k]).reshape(-1)
        energy.append(index.pool(density) + 1e-6)
        fire.append(torch.sigmoid(index.pool(head[:, 3 + 3 * k].reshape(-1)) / index.size))
        width.append(torch.exp((index.pool(head[:, 4 + 3 * k].reshape(-1)) / index.size).clamp(-4.0, 1.5)))
    return TowerOutputs(softplus(head[:, :1]), torch.sigmoid(head[:, 1:2]), tuple(energy), tuple(fire), tuple(width))


def sample_image(out: TowerOutputs, towers: tuple[TowerIndex, ...], draws: ImageDraws,
                 straight_through: bool = False) -> torch.Tensor:
    """The sampled image ``(n, 1, 32, 32)``: ``G0 * 1[mask < G1]`` plus each fired tower's
    energy in its chosen pixel. ``straight_through``: hard draws forward, gradients of ``G1``
    and ``P_t`` backward (training)."""
    from hepfastsim.models.image_gan import sample_hard_mask

    g1 = out.g1[:, 0]
    mask = sample_hard_mask(g1, draws.mask) if straight_through else (draws.mask < g1).to(g1.dtype)
    image = (out.g0[:, 0] * mask).reshape(-1)
    for k, index in enumerate(towers):
        p = out.fire[k]
        fired = (draws.fire[k] < p).to(p.dtype)
        if straight_through:
            fired = fired + p - p.detach()
        sigma = out.width[k]
        energy = out.energy[k] * torch.exp(sigma * draws.energy[k] - sigma**2 / 2) * fired
        # the tower's pixels in raster order: nth is at row nth // width, column nth % width of its rectangle
        nth = torch.minimum((draws.place[k] * index.size).long(), index.size.long() - 1)
        chosen = index.first_pixel + torch.div(nth, index.width, rounding_mode="floor") * N_SIDE + nth % index.width
        image = image.index_add(0, chosen, energy)
    return image.reshape(out.g0.shape)


def expected_total(out: TowerOutputs, towers: tuple[TowerIndex, ...]) -> torch.Tensor:
    """The expected total intensity of each image ``(n,)``: sum of ``G0 G1`` plus ``P_t E_t``."""
    total = (out.g0 * out.g1).sum(dim=(1, 2, 3))
    for k, index in enumerate(towers):
        total = total.index_add(0, index.jet, out.fire[k] * out.energy[k])
    return total


def supervised_loss(out: TowerOutputs, towers: tuple[TowerIndex, ...], per_pixel: torch.Tensor,
                    neutral: torch.Tensor) -> torch.Tensor:
    """Per jet mean of the paper's mask term on ``per_pixel`` ``(n, 1, 32, 32)`` (the reference
    charged image plus its out-of-window neutrals) and, per calorimeter, the fire cross-entropy
    and the log-normal NLL of the reference tower energies pooled from ``neutral``
    ``(n, 2, 32, 32)`` (in-window photons, neutral hadrons)."""
    n = per_pixel.shape[0]
    occupied = (per_pixel > 0).to(per_pixel.dtype)
    bce = torch.nn.functional.binary_cross_entropy
    loss = bce(out.g1.clamp(1e-6, 1 - 1e-6), occupied, reduction="sum") / n
    loss = loss + (occupied * (out.g0 - per_pixel) ** 2 / 2).sum() / n
    for k, index in enumerate(towers):
        reference = index.pool(neutral[:, k].reshape(-1))
        has = (reference > 0).to(reference.dtype)
        loss = loss + bce(out.fire[k].clamp(1e-6, 1 - 1e-6), has, reduction="sum") / n
        sigma = out.width[k]
        mu = torch.log(out.energy[k]) - sigma**2 / 2
        nll = torch.log(sigma) + (torch.log(reference.clamp(min=1e-6)) - mu) ** 2 / (2 * sigma**2)
        loss = loss + torch.where(reference > 0, nll, 0.0).sum() / n
    return loss
