"""Seed 000 (Musella & Pandolfi, arXiv:1805.00850): detector response to jet images as a conditional GAN.

``y' = G(z, x, c)``: the reconstruction-level jet image ``y'`` (32 x 32, intensity = pT /
gen pT, :data:`~hepfastsim.jets.images.SEED000_DETECTOR`) from the particle-level image
``x`` and the conditions ``c = (gen pT [GeV], gen eta, gen phi [rad], nPU)``.

Networks (section 2.2 of the paper):

* :class:`UNetGenerator`: batch norm on the input image, 5 encoding layers (3x3
  convolutions, stride 2, 16 filters doubling to 256, batch norm, leaky ReLU 0.2) down to
  1 x 1, the conditions through batch norm and a 1x1 convolution to 256 channels
  concatenated at the bottleneck, 5 decoding layers (concatenation of the skip connection,
  3x3 up-convolution with stride 2, batch norm, leaky ReLU; dropout in the first two),
  two output channels: ``G0`` the pixel intensity (softplus, >= 0) and ``G1`` the soft
  mask (sigmoid). The hard mask ``1[z < G1]`` (``z`` uniform per pixel, the only noise of
  the model, as in the paper) multiplies ``G0``; gradients pass through ``G1``
  (straight-through estimator, Bengio et al. arXiv:1308.3432, the paper's ref. [32]).
* :class:`PatchDiscriminator` D on (image, gen image, c): 4 layers of 3x3 convolutions
  (strides 1, 2, 1, 2: field of view 13 x 13 pixels), batch norm, leaky ReLU, then a
  fully connected layer with the conditions (batch-normalised) appended and a sigmoid.
* :class:`TotalDiscriminator` D_T on (total image intensity, c): dense 64-64-32-16 with
  batch norm and leaky ReLU, sigmoid output.

Deviation from the paper, kept small: the gen pT enters the conditions as ln(pT / GeV)
(the batch norm then sees a spread of a few units instead of 20-3000 GeV); dropout is off at
inference (the paper injects noise only through the mask sampling).

Option beyond the paper (off in the shipped generator): ``noise_channels`` standard-normal
32 x 32 maps beside the gen image, a source of noise correlated across pixels, which the
independent per-pixel mask cannot give (continued from a generator without them by
:func:`widen_input`: zero weights, so training starts from exactly that generator).

Beyond the paper, the tower generator (``output="towers"``, ``species_channels=3``): the gen
image split by species (charged, photons, other neutrals) as 3 more input channels, and the
neutral energy sampled per calorimeter tower instead of per pixel
(:mod:`hepfastsim.models.image_towers`), as the reference detector places its neutral
candidates. The paper's independent mask cannot reproduce that placement
(``examples/image_gan_mask_limit.py``); this is the generator ``convert`` ships.

Weights are stored as safetensors (no pickle; convolution weights in float16 to keep the
file small, batch-norm statistics in float32) with a JSON metadata file next to them.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from hepfastsim.errors import ModelError
from hepfastsim.models.image_towers import TOWER_BIAS, ImageDraws, TowerIndex
from hepfastsim.models.weights_file import load_state, read_model, write_model

__all__ = [
    "ImageGANConfig",
    "UNetGenerator",
    "PatchDiscriminator",
    "TotalDiscriminator",
    "condition_features",
    "sample_hard_mask",
    "widen_input",
    "continued_state",
    "conserve_total",
    "sample_images",
    "image_towers",
    "LoadedImageGAN",
    "save_generator",
    "load_generator",
    "n_parameters",
]

N_COND = 4
IMAGE_SIZE = 32
#: ``ImageGANConfig.output`` -> channels of the generator's last layer
OUTPUT_CHANNELS = {"mask": 2, "towers": 8}
#: ``ImageGANConfig.species_channels`` of a generator with species inputs: charged, photons, other neutrals
SPECIES = ("charged", "photon", "neutral")


@dataclass(frozen=True)
class ImageGANConfig:
    """Architecture: ``base_filters`` in the first encoding layer, doubling ``depth`` times;
    ``dropout`` probability in the first two decoding layers; discriminator widths;
    ``noise_channels`` standard-normal 32 x 32 noise maps given to the generator beside the
    gen image (0: the paper's generator, whose only noise is the mask sampling);
    ``species_channels`` 0 or 3: the gen image split by :data:`SPECIES` as more inputs,
    multiplied by ``species_scale`` (fixed; the input batch norm's factor of the generator
    they were added to, so that they enter at the gen image's scale); ``output``: ``"mask"``
    (the paper's G0, G1) or ``"towers"`` (neutral energy sampled per calorimeter tower,
    :mod:`~hepfastsim.models.image_towers`)."""

    base_filters: int = 16
    depth: int = 5
    dropout: float = 0.5
    disc_filters: tuple[int, ...] = (16, 32, 32, 64)
    total_widths: tuple[int, ...] = (64, 64, 32, 16)
    noise_channels: int = 0
    species_channels: int = 0
    species_scale: float = 1.0
    output: str = "mask"

    def __post_init__(self) -> None:
        if self.noise_channels < 0:
            raise ValueError(f"expected noise_channels >= 0, got {self.noise_channels}")
        if self.species_channels not in (0, len(SPECIES)):
            raise ValueError(f"expected species_channels 0 or {len(SPECIES)}, got {self.species_channels}")
        if self.output not in OUTPUT_CHANNELS:
            raise ValueError(f"expected output in {sorted(OUTPUT_CHANNELS)}, got {self.output!r}")
        if IMAGE_SIZE >> self.depth < 1:
            raise ValueError(f"expected depth <= 5 for 32 x 32 images, got {self.depth}")
        if len(self.disc_filters) != 4:
            raise ValueError(f"expected 4 discriminator layers, got {self.disc_filters}")


def condition_features(cond: np.ndarray | torch.Tensor) -> torch.Tensor:
    """Network conditions from raw ``(n, 4)`` = gen pT [GeV], eta, phi [rad], nPU:
    ``(ln pT, eta, phi, nPU)`` as float32."""
    c = torch.as_tensor(np.asarray(cond, dtype=np.float32) if isinstance(cond, np.ndarray) else cond,
                        dtype=torch.float32)
    return torch.cat([torch.log(torch.clamp(c[:, :1], min=1e-3)), c[:, 1:]], dim=1)


def _lrelu() -> nn.Module:
    return nn.LeakyReLU(0.2)


class UNetGenerator(nn.Module):
    """x ``(n, 1, 32, 32)``, c ``(n, 4)`` (from :func:`condition_features`), when
    ``config.noise_channels`` > 0 standard-normal ``noise (n, noise_channels, 32, 32)`` and,
    when ``config.species_channels`` > 0, the gen image by species ``(n, 3, 32, 32)`` ->
    ``(G0, G1)``, each ``(n, 1, 32, 32)``: pixel intensity (>= 0) and soft mask (probability
    in (0, 1)); for a tower generator, those of the per-pixel part (:meth:`head` gives all
    outputs)."""

    def __init__(self, config: ImageGANConfig = ImageGANConfig()) -> None:
        super().__init__()
        self.config = config
        widths = [config.base_filters * 2**i for i in range(config.depth)]
        self.input_norm = nn.BatchNorm2d(1)
        self.encoders = nn.ModuleList()
        cin = 1 + config.noise_channels + config.species_channels
        for w in widths:
            self.encoders.append(nn.Sequential(nn.Conv2d(cin, w, 3, stride=2, padding=1), nn.BatchNorm2d(w), _lrelu()))
            cin = w
        self.cond_norm = nn.BatchNorm1d(N_COND)
        self.cond_conv = nn.Conv2d(N_COND, widths[-1], 1)
        self.decoders = nn.ModuleList()
        cin = 2 * widths[-1]  # bottleneck + conditions
        outs = widths[-2::-1] + [OUTPUT_CHANNELS[config.output]]
        for k, w in enumerate(outs):
            last = k == len(outs) - 1
            layers: list[nn.Module] = [nn.ConvTranspose2d(cin, w, 3, stride=2, padding=1, output_padding=1)]
            if not last:
                layers += [nn.BatchNorm2d(w), _lrelu()]
                if k < 2:
                    layers.append(nn.Dropout(config.dropout))
            self.decoders.append(nn.Sequential(*layers))
            if not last:
                cin = 2 * w  # up-convolution output + skip connection of the same size
        self.softplus = nn.Softplus(beta=20.0)
        with torch.no_grad():  # start near the data: ~2% occupied pixels of intensity ~0.035
            self.decoders[-1][0].weight.mul_(0.05)
            bias = (0.0, -4.0) if config.output == "mask" else TOWER_BIAS
            self.decoders[-1][0].bias.copy_(torch.tensor(bias))

    def forward(self, x: torch.Tensor, c: torch.Tensor, noise: torch.Tensor | None = None,
                species: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        h = self.head(x, c, noise, species)
        return self.softplus(h[:, :1]), torch.sigmoid(h[:, 1:2])

    def head(self, x: torch.Tensor, c: torch.Tensor, noise: torch.Tensor | None = None,
             species: torch.Tensor | None = None) -> torch.Tensor:
        """The raw last-layer output ``(n, 2 or 8, 32, 32)`` (see :data:`OUTPUT_CHANNELS`)."""
        h = self.input_norm(x)
        for name, k, extra, scale in (("noise", self.config.noise_channels, noise, 1.0),
                                      ("species", self.config.species_channels, species, self.config.species_scale)):
            if not k:
                continue
            if extra is None or extra.shape != (x.shape[0], k, *x.shape[2:]):
                got = None if extra is None else tuple(extra.shape)
                raise ValueError(f"expected {name} of shape {(x.shape[0], k, *x.shape[2:])}, got {got}")
            h = torch.cat([h, extra * scale if scale != 1.0 else extra], dim=1)
        skips = []
        for enc in self.encoders:
            h = enc(h)
            skips.append(h)
        cc = self.cond_conv(self.cond_norm(c)[:, :, None, None])
        h = torch.cat([skips[-1], cc], dim=1)
        for k, dec in enumerate(self.decoders):
            h = dec(h)
            if k < len(self.decoders) - 1:
                h = torch.cat([h, skips[-2 - k]], dim=1)
        return h


def sample_hard_mask(soft: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
    """Hard mask ``1[z < soft]`` in the forward pass, gradient of ``soft`` in the backward pass."""
    hard = (z < soft).to(soft.dtype)
    return hard + soft - soft.detach()


class PatchDiscriminator(nn.Module):
    """D(image, gen image, c) -> probability that the image is a real reco image, ``(n,)``."""

    def __init__(self, config: ImageGANConfig = ImageGANConfig()) -> None:
        super().__init__()
        f = config.disc_filters
        strides = (1, 2, 1, 2)  # receptive field 1 + 2 * (1 + 1 + 2 + 2) = 13 pixels
        layers: list[nn.Module] = []
        cin = 2
        for k, (w, s) in enumerate(zip(f, strides)):
            layers.append(nn.Conv2d(cin, w, 3, stride=s, padding=1))
            if k > 0:
                layers.append(nn.BatchNorm2d(w))
            layers.append(_lrelu())
            cin = w
        self.conv = nn.Sequential(*layers)
        self.cond_norm = nn.BatchNorm1d(N_COND)
        side = IMAGE_SIZE // 4
        self.head = nn.Linear(f[-1] * side * side + N_COND, 1)

    def logits(self, y: torch.Tensor, x: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        """The logit of :meth:`forward`'s probability, ``(n,)``."""
        h = self.conv(torch.cat([y, x], dim=1)).flatten(1)
        return self.head(torch.cat([h, self.cond_norm(c)], dim=1)).squeeze(1)

    def forward(self, y: torch.Tensor, x: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.logits(y, x, c))


class TotalDiscriminator(nn.Module):
    """D_T(total intensity ``(n,)``, c) -> probability of a real reco image, ``(n,)``."""

    def __init__(self, config: ImageGANConfig = ImageGANConfig()) -> None:
        super().__init__()
        layers: list[nn.Module] = [nn.BatchNorm1d(1 + N_COND)]
        cin = 1 + N_COND
        for w in config.total_widths:
            layers += [nn.Linear(cin, w), nn.BatchNorm1d(w), _lrelu()]
            cin = w
        layers += [nn.Linear(cin, 1)]
        self.net = nn.Sequential(*layers)

    def logits(self, total: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        """The logit of :meth:`forward`'s probability, ``(n,)``."""
        return self.net(torch.cat([total[:, None], c], dim=1)).squeeze(1)

    def forward(self, total: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.logits(total, c))


def widen_input(state: dict[str, torch.Tensor], noise_channels: int) -> dict[str, torch.Tensor]:
    """A generator state dict with ``noise_channels`` zero input weights added to the first
    convolution: a generator trained without noise channels, continued with them, starts as
    exactly itself (the noise is ignored until training gives it weight)."""
    name = "encoders.0.0.weight"
    w = state[name]
    missing = 1 + noise_channels - w.shape[1]
    if missing < 0:
        raise ValueError(f"expected a first convolution with at most {1 + noise_channels} inputs, got {w.shape[1]}")
    if missing == 0:
        return state
    return {**state, name: torch.cat([w, torch.zeros(w.shape[0], missing, *w.shape[2:], dtype=w.dtype)], dim=1)}


def continued_state(generator: UNetGenerator, state: dict[str, torch.Tensor], from_config: ImageGANConfig
                    ) -> dict[str, torch.Tensor]:
    """``state``, of a generator with configuration ``from_config``, made to fit ``generator``
    (which may add noise channels, species channels and the tower outputs): new input channels
    get zero weights (ignored at first; noise before species, as :meth:`UNetGenerator.head`
    orders them), and the tower outputs of a mask generator keep ``generator``'s own initial
    weights beside its G0, G1, so the per-pixel part starts as the old generator."""
    to = generator.config
    if to.noise_channels < from_config.noise_channels or to.species_channels < from_config.species_channels:
        raise ValueError(f"cannot continue a generator with {from_config.noise_channels} noise and "
                         f"{from_config.species_channels} species channels with fewer ({to.noise_channels}, "
                         f"{to.species_channels})")
    if (from_config.output, to.output) not in (("mask", "mask"), ("mask", "towers"), ("towers", "towers")):
        raise ValueError(f"cannot continue a {from_config.output!r} generator as a {to.output!r} one")
    name = "encoders.0.0.weight"
    w = state[name]
    split = 1 + from_config.noise_channels

    def zeros(k: int) -> torch.Tensor:
        return torch.zeros(w.shape[0], k, *w.shape[2:], dtype=w.dtype)

    state = {**state, name: torch.cat([w[:, :split], zeros(to.noise_channels - from_config.noise_channels),
                                       w[:, split:], zeros(to.species_channels - from_config.species_channels)], dim=1)}
    if from_config.output != to.output:
        own = generator.state_dict()
        for part in ("weight", "bias"):
            key = f"decoders.{len(generator.decoders) - 1}.0.{part}"
            merged = own[key].clone()
            if merged.dim() == 1:
                merged[:2] = state[key]
            else:
                merged[:, :2] = state[key]
            state[key] = merged
    return state


def conserve_total(images: np.ndarray, expected: np.ndarray, spread: float) -> np.ndarray:
    """Rescale sampled reco images ``(n, 32, 32)`` so that each total intensity becomes
    ``expected + spread * (sampled - expected)``, with ``expected`` ``(n,)`` = sum of G0 * G1.

    ``spread`` = 1 keeps the images; 0 gives every image its expected total. The pixel
    pattern (which pixels are lit, their ratios) is kept, so pTD and the axes are unchanged,
    and tau_N too but for exact ties between pixel distances in its kT clustering, which
    rounding can break the other way; empty images stay empty. This narrows the response that the independent
    per-pixel mask makes too wide (see :func:`~hepfastsim.models.image_gan_train.fit_total_spread`).
    """
    sampled = images.sum(axis=(1, 2))
    target = expected + spread * (sampled - expected)
    scale = np.divide(target, sampled, out=np.zeros_like(sampled), where=sampled > 0)
    return (images * scale[:, None, None]).astype(images.dtype, copy=False)


def n_parameters(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


@dataclass
class LoadedImageGAN:
    """A generator in eval mode with its configuration and metadata."""

    generator: UNetGenerator
    config: ImageGANConfig
    metadata: dict[str, Any] = field(default_factory=dict)

    @property
    def total_spread(self) -> float | None:
        """The fitted ``spread`` of :func:`conserve_total` (``None``: the images as sampled)."""
        cal = self.metadata.get("total_calibration")
        return None if cal is None else float(cal["spread"])

    def soft_outputs(self, x: np.ndarray, cond: np.ndarray, noise: np.ndarray | None = None,
                     species: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """``(G0, G1)`` as float32 arrays ``(n, 32, 32)`` for images ``x`` ``(n, 32, 32)``, raw
        conditions ``(n, 4)``, for a generator with noise channels standard-normal
        ``noise (n, noise_channels, 32, 32)`` and for one with species inputs the gen image by
        species ``(n, 3, 32, 32)``; one torch call (callers batch). For a tower generator,
        those of the per-pixel part."""
        with torch.inference_mode():
            g0, g1 = self.generator(*self._inputs(x, cond, noise, species))
        return g0[:, 0].numpy(), g1[:, 0].numpy()

    def _inputs(self, x: np.ndarray, cond: np.ndarray, noise: np.ndarray | None, species: np.ndarray | None
                ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None, torch.Tensor | None]:
        def tensor(a: np.ndarray | None) -> torch.Tensor | None:
            return None if a is None else torch.from_numpy(np.ascontiguousarray(a, np.float32))

        return tensor(x)[:, None], condition_features(cond), tensor(noise), tensor(species)


def image_towers(config: ImageGANConfig, cond: np.ndarray) -> tuple[TowerIndex, ...]:
    """The calorimeter towers of the images of raw conditions ``cond`` ``(n, 4)`` (around gen
    eta, phi) for a tower generator (:func:`~hepfastsim.models.image_towers.batch_towers`); none
    for a mask generator."""
    if config.output == "mask":
        return ()
    from hepfastsim.models.image_towers import batch_towers

    return batch_towers(np.asarray(cond[:, 1], np.float64), np.asarray(cond[:, 2], np.float64))


def sample_images(
    model: Any, x: np.ndarray, cond: np.ndarray, towers: tuple[TowerIndex, ...], draws: ImageDraws,
    noise: np.ndarray | None = None, species: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Sampled reco images ``(n, 32, 32)`` float32 and their expected totals ``(n,)`` float64.

    ``model``: a :class:`LoadedImageGAN`; ``x`` gen images ``(n, 32, 32)``; ``cond`` raw
    conditions ``(n, 4)`` (gen pT [GeV], eta, phi [rad], nPU); ``towers`` those of
    :func:`image_towers`; ``draws`` the random numbers (:class:`ImageDraws`, with those
    towers); ``noise`` and ``species`` as for :meth:`LoadedImageGAN.soft_outputs`. A mask
    generator gives ``G0 * 1[u < G1]`` with expectation ``sum G0 G1``; a tower generator adds
    the sampled towers (:func:`~hepfastsim.models.image_towers.sample_image`).
    """
    if model.config.output == "mask":
        g0, g1 = model.soft_outputs(x, cond, noise, species)
        u = draws.mask.numpy()
        return np.where(u < g1, g0, 0.0).astype(np.float32), (g0 * g1).sum(axis=(1, 2), dtype=np.float64)
    from hepfastsim.models.image_towers import expected_total, sample_image, tower_outputs

    with torch.inference_mode():
        out = tower_outputs(model.generator.head(*model._inputs(x, cond, noise, species)), towers)
        image = sample_image(out, towers, draws)[:, 0]
        return image.numpy(), expected_total(out, towers).double().numpy()


FORMAT = "hepfastsim-image-gan-1"


def save_generator(generator: UNetGenerator, base: str | Path, metadata: dict[str, Any]) -> tuple[Path, Path]:
    """Write ``base.safetensors`` (no pickle; convolution kernels in float16) and ``base.json``."""
    meta = {**metadata, "architecture": {**asdict(generator.config)}, "format": FORMAT}
    return write_model(base, generator.state_dict(), meta, half=lambda _name, t: t.dim() == 4)


def load_generator(base: str | Path) -> LoadedImageGAN:
    """Load a generator written by :func:`save_generator` (eval mode, float32)."""
    what = "image-GAN model"
    state, meta = read_model(base, FORMAT, what=what, hint=" (train one with 'hepfastsim train image-gan')")
    arch = meta.get("architecture", {})
    config = ImageGANConfig(**{k: tuple(v) if isinstance(v, list) else v for k, v in arch.items()})
    gen = UNetGenerator(config)
    load_state(gen, state, base, what=what)
    # channels-last convolutions: 1.2x (paper's generator) to 1.9x (tower generator, 4 input
    # channels) faster on CPU (benchmarks/image_gan.py); the outputs differ from the default
    # layout's by float rounding only (~1e-5)
    gen = gen.eval().to(memory_format=torch.channels_last)
    loaded = LoadedImageGAN(gen, config, meta)
    try:
        spread = loaded.total_spread
    except (KeyError, TypeError, ValueError) as err:
        raise ModelError(f"cannot read the total calibration of {what} {str(base)!r}: {err!r}") from err
    if spread is not None and not 0.0 <= spread <= 1.0:
        raise ModelError(f"{what} {str(base)!r}: expected a total-calibration spread in [0, 1], got {spread}")
    return loaded
