"""Location-Aware GAN for 25 x 25 jet images (seed 004, arXiv:1701.05927) and a DCGAN variant.

Generator (paper Sec. 4.1 and Fig. 4): ``z in R^200 ~ N(0, 1)`` times a learned
class embedding (Hadamard product), a DCGAN project-and-reshape to 7 x 7 x 128, a
'same' 5 x 5 convolution (64 maps), then 2x upsampling and locally connected layers
5 x 5 (6 maps, 14 x 14) and 3 x 3 (6 maps, 26 x 26) with batch norm, and a final
ReLU locally connected 2 x 2 layer (1 map, no bias) giving ``R_{>=0}^{25 x 25}``.
Discriminator: a 'same' 5 x 5 convolution (32 maps), three locally connected layers
(8 maps; 5 x 5, 5 x 5, 3 x 3) with batch norm, minibatch discrimination (20 kernels of
10 dimensions, arXiv:1606.03498) and two sigmoid heads: primary (real / fake) and
auxiliary (W / QCD). Strides, paddings and dropout follow the authors' code.

Images are in GeV per pixel; the networks work on ``image / pixel_scale``.

For inference, :meth:`LaganGenerator.fused` folds the linear chain project -> conv into
one matrix, batch norms into the next layer, and each 2x nearest upsampling into the
following locally connected layer (a window over the upsampled grid reads a smaller
window of the original grid). :class:`FusedLaganGenerator` gives the same images
(to float rounding) with ~10x fewer multiply-adds; it is what is shipped and run.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from hepfastsim.errors import ModelError
from hepfastsim.kernels.rng import event_keys, normals
from hepfastsim.models.locally_connected import LocallyConnected2d, UpsampledLocallyConnected2d
from hepfastsim.models.weights_file import load_state, model_paths, read_model, write_model

__all__ = [
    "LaganConfig",
    "LaganGenerator",
    "LaganDiscriminator",
    "DcganGenerator",
    "DcganDiscriminator",
    "MinibatchDiscrimination",
    "FusedLaganGenerator",
    "ImageGenerator",
    "make_networks",
]

Architecture = Literal["lagan", "dcgan"]
LATENT_FILE_KEY = 0x4C4147414E  # "LAGAN": the rng "file" key of generated images (+ class label)
LATENT_DOMAIN = 4004
SAMPLE_BLOCK = 2048  # images per network call in ImageGenerator.sample


@dataclass(frozen=True)
class LaganConfig:
    """Network sizes. ``pixel_scale``: GeV per network unit; ``dcgan_width``: channel
    multiplier of the DCGAN variant (1.0 = the authors' widths)."""

    architecture: Architecture = "lagan"
    latent_dim: int = 200
    n_classes: int = 2
    pixel_scale: float = 100.0
    dcgan_width: float = 0.5
    minibatch_kernels: int = 20
    minibatch_dims: int = 10
    leaky_slope: float = 0.3  # Keras LeakyReLU default, as in the authors' code
    dropout: float = 0.2

    def __post_init__(self) -> None:
        if self.architecture not in ("lagan", "dcgan"):
            raise ValueError(f"expected architecture 'lagan' or 'dcgan', got {self.architecture!r}")
        if self.latent_dim < 1 or self.n_classes < 1 or not self.pixel_scale > 0:
            raise ValueError(f"expected positive latent_dim, n_classes, pixel_scale, got {self}")


class _Conditioned(nn.Module):
    """z * embedding(class), the ACGAN-style conditioning of the paper."""

    def __init__(self, latent_dim: int, n_classes: int) -> None:
        super().__init__()
        self.embedding = nn.Embedding(n_classes, latent_dim)
        nn.init.xavier_normal_(self.embedding.weight)

    def forward(self, z: torch.Tensor, label: torch.Tensor) -> torch.Tensor:
        return z * self.embedding(label)


class LaganGenerator(nn.Module):
    """``(z (B, 200), label (B,)) -> images (B, 1, 25, 25)`` in network units (>= 0)."""

    def __init__(self, config: LaganConfig = LaganConfig()) -> None:
        super().__init__()
        self.config = config
        s = config.leaky_slope
        self.cond = _Conditioned(config.latent_dim, config.n_classes)
        self.project = nn.Linear(config.latent_dim, 128 * 7 * 7)
        self.conv = nn.Conv2d(128, 64, 5, padding=2)
        nn.init.kaiming_uniform_(self.conv.weight, nonlinearity="linear")
        self.bn1 = nn.BatchNorm2d(64)
        self.lc1 = UpsampledLocallyConnected2d(64, 6, (14, 14), 5, padding=2)  # after 2x upsampling 7 -> 14
        self.bn2 = nn.BatchNorm2d(6)
        self.lc2 = UpsampledLocallyConnected2d(6, 6, (28, 28), 3)  # after 2x upsampling 14 -> 28
        self.lc3 = LocallyConnected2d(6, 1, (26, 26), 2, bias=False, init="glorot_normal")
        self.slope = s

    def forward(self, z: torch.Tensor, label: torch.Tensor) -> torch.Tensor:
        h = self.project(self.cond(z, label)).view(-1, 128, 7, 7)
        h = self.bn1(F.leaky_relu(self.conv(h), self.slope))
        h = self.bn2(F.leaky_relu(self.lc1(h), self.slope))  # upsample 2x + LC 5 x 5 (6 maps)
        h = F.leaky_relu(self.lc2(h), self.slope)  # upsample 2x + LC 3 x 3 (6 maps)
        return F.relu(self.lc3(h))

    @torch.no_grad()
    def fused(self) -> FusedLaganGenerator:
        """The exact inference form (eval-mode batch norm) with fewer operations."""
        return FusedLaganGenerator.from_generator(self)


class DcganGenerator(nn.Module):
    """DCGAN variant of the authors' code: transposed convolutions instead of upsampling +
    locally connected layers; same conditioning, same ReLU output."""

    def __init__(self, config: LaganConfig = LaganConfig(architecture="dcgan")) -> None:
        super().__init__()
        self.config = config
        w = config.dcgan_width
        c1, c2, c3 = max(1, round(64 * w)), max(1, round(32 * w)), max(1, round(8 * w))
        self.cond = _Conditioned(config.latent_dim, config.n_classes)
        self.project = nn.Linear(config.latent_dim, 128 * 7 * 7)
        self.up1 = nn.ConvTranspose2d(128, c1, 5, stride=2, padding=2, output_padding=1)  # 7 -> 14
        self.bn1 = nn.BatchNorm2d(c1)
        self.up2 = nn.ConvTranspose2d(c1, c2, 5, stride=2, padding=2, output_padding=1)  # 14 -> 28
        self.bn2 = nn.BatchNorm2d(c2)
        self.conv3 = nn.Conv2d(c2, c3, 3)  # 28 -> 26
        self.conv4 = nn.Conv2d(c3, 1, 2)  # 26 -> 25
        self.slope = config.leaky_slope

    def forward(self, z: torch.Tensor, label: torch.Tensor) -> torch.Tensor:
        h = self.project(self.cond(z, label)).view(-1, 128, 7, 7)
        h = self.bn1(F.leaky_relu(self.up1(h), self.slope))
        h = self.bn2(F.leaky_relu(self.up2(h), self.slope))
        h = F.leaky_relu(self.conv3(h), self.slope)
        return F.relu(self.conv4(h))


class MinibatchDiscrimination(nn.Module):
    """Salimans et al. (arXiv:1606.03498) minibatch features: ``(B, A) -> (B, kernels)``.

    ``M = x T`` reshaped to ``(B, kernels, dims)``; feature ``o_b,k = sum_j exp(-|M_b,k -
    M_j,k|_1)`` over the batch (the sample itself included, as in the authors' code).
    """

    def __init__(self, in_features: int, kernels: int = 20, dims: int = 10) -> None:
        super().__init__()
        self.kernels, self.dims = kernels, dims
        self.T = nn.Parameter(torch.randn(in_features, kernels * dims) * 0.05)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        m = (x @ self.T).view(-1, self.kernels, self.dims)
        l1 = (m.unsqueeze(0) - m.unsqueeze(1)).abs().sum(dim=3)  # (B, B, kernels)
        return torch.exp(-l1).sum(dim=1)


class _Heads(nn.Module):
    def __init__(self, n_features: int, config: LaganConfig) -> None:
        super().__init__()
        self.mbd = MinibatchDiscrimination(n_features, config.minibatch_kernels, config.minibatch_dims)
        self.primary = nn.Linear(n_features + config.minibatch_kernels, 1)
        self.auxiliary = nn.Linear(n_features + config.minibatch_kernels, 1)

    def forward(self, h: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        f = torch.cat([self.mbd(h), h], dim=1)
        return self.primary(f).squeeze(1), self.auxiliary(f).squeeze(1)


class LaganDiscriminator(nn.Module):
    """``images (B, 1, 25, 25) -> (primary logit (B,), auxiliary logit (B,))``.

    Logits: the sigmoids of the paper are applied in the loss (numerically stable).
    """

    def __init__(self, config: LaganConfig = LaganConfig()) -> None:
        super().__init__()
        s, p = config.leaky_slope, config.dropout
        self.features = nn.Sequential(
            nn.Conv2d(1, 32, 5, padding=2),
            nn.LeakyReLU(s),
            nn.Dropout(p),
            LocallyConnected2d(32, 8, (25, 25), 5, stride=2, padding=2),  # -> 13 x 13
            nn.LeakyReLU(s),
            nn.BatchNorm2d(8),
            nn.Dropout(p),
            LocallyConnected2d(8, 8, (13, 13), 5, padding=2),  # -> 13 x 13
            nn.LeakyReLU(s),
            nn.BatchNorm2d(8),
            nn.Dropout(p),
            LocallyConnected2d(8, 8, (13, 13), 3, stride=2, padding=1),  # -> 7 x 7
            nn.LeakyReLU(s),
            nn.BatchNorm2d(8),
            nn.Dropout(p),
            nn.AvgPool2d(2),  # -> 3 x 3
            nn.Flatten(),
        )
        self.heads = _Heads(8 * 3 * 3, config)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.heads(self.features(x))


class DcganDiscriminator(nn.Module):
    """Convolutional discriminator of the authors' DCGAN (widths times ``dcgan_width``)."""

    def __init__(self, config: LaganConfig = LaganConfig(architecture="dcgan")) -> None:
        super().__init__()
        s, p, w = config.leaky_slope, config.dropout, config.dcgan_width
        c1, c2, c3, c4 = (max(1, round(c * w)) for c in (32, 64, 128, 256))
        self.features = nn.Sequential(
            nn.Conv2d(1, c1, 5, padding=2),
            nn.LeakyReLU(s),
            nn.Dropout(p),
            nn.Conv2d(c1, c2, 5, stride=2, padding=2),  # -> 13
            nn.LeakyReLU(s),
            nn.BatchNorm2d(c2),
            nn.Dropout(p),
            nn.Conv2d(c2, c3, 5, padding=2),
            nn.LeakyReLU(s),
            nn.BatchNorm2d(c3),
            nn.Dropout(p),
            nn.Conv2d(c3, c4, 3, stride=2),  # -> 6
            nn.LeakyReLU(s),
            nn.BatchNorm2d(c4),
            nn.Dropout(p),
            nn.AvgPool2d(2),  # -> 3
            nn.Flatten(),
        )
        self.heads = _Heads(c4 * 3 * 3, config)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.heads(self.features(x))


def make_networks(config: LaganConfig) -> tuple[nn.Module, nn.Module]:
    """(generator, discriminator) of ``config.architecture``."""
    if config.architecture == "lagan":
        return LaganGenerator(config), LaganDiscriminator(config)
    return DcganGenerator(config), DcganDiscriminator(config)


# --------------------------------------------------------------------------- inference


def _bn_affine(bn: nn.BatchNorm2d) -> tuple[torch.Tensor, torch.Tensor]:
    scale = bn.weight / torch.sqrt(bn.running_var + bn.eps)
    return scale, bn.bias - bn.running_mean * scale


def _fold_upsample_lc(
    lc: LocallyConnected2d, in_side: int, scale: torch.Tensor, shift: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """LC(pad(upsample2x(a x + b))) as a gather + per-position weights over ``x``.

    Returns ``index (L, K)`` into the flattened ``(C, in_side, in_side)`` input (``-1``
    for taps that only see padding), ``weight (L, K, C_out)`` and ``bias (L, C_out)``,
    exact for nearest upsampling, zero padding and the per-channel affine ``(a, b)``.
    """
    c_in, k, pad, stride = lc.in_channels, lc.kernel_size, lc.padding, lc.stride
    h_out, w_out = lc.output_size
    w_full = lc.weight.detach().double().view(h_out * w_out, c_in, k, k, lc.out_channels)
    up_side = 2 * in_side
    idx_rows, w_rows, b_rows = [], [], []
    for pos in range(h_out * w_out):
        i, j = divmod(pos, w_out)
        acc: dict[tuple[int, int], torch.Tensor] = {}
        for a in range(k):
            ui = i * stride + a - pad
            if not 0 <= ui < up_side:
                continue
            for b in range(k):
                uj = j * stride + b - pad
                if not 0 <= uj < up_side:
                    continue
                key = (ui // 2, uj // 2)
                acc[key] = acc.get(key, 0) + w_full[pos, :, a, b, :]  # (C_in, C_out)
        keys = sorted(acc)
        idx_rows.append([c * in_side * in_side + r * in_side + q for c in range(c_in) for (r, q) in keys])
        wk = torch.stack([acc[key] for key in keys], dim=1)  # (C_in, n_keys, C_out)
        w_rows.append(wk * scale.double().view(-1, 1, 1))
        b_rows.append((wk * shift.double().view(-1, 1, 1)).sum(dim=(0, 1)))
    n_k = max(len(r) for r in idx_rows)
    index = torch.full((len(idx_rows), n_k), -1, dtype=torch.long)
    weight = torch.zeros(len(idx_rows), n_k, lc.out_channels, dtype=torch.float64)
    for pos, (r, wk) in enumerate(zip(idx_rows, w_rows)):
        index[pos, : len(r)] = torch.tensor(r)
        weight[pos, : len(r)] = wk.reshape(len(r), lc.out_channels)
    bias = torch.stack(b_rows)
    if lc.bias is not None:
        bias = bias + lc.bias.detach().double().reshape(lc.out_channels, -1).T
    return index, weight, bias


def _dense_from_gather(idx: torch.Tensor, w: torch.Tensor, n_in: int) -> torch.Tensor:
    """Dense ``(L * C_out, n_in)`` matrix of a gathered LC layer, rows in (position, channel) order."""
    n_pos, n_k, c_out = w.shape
    dense = torch.zeros(n_pos, c_out, n_in, dtype=w.dtype)
    rows = torch.arange(n_pos).view(-1, 1).expand(n_pos, n_k)
    safe = idx.clamp(min=0)
    for o in range(c_out):
        plane = torch.zeros(n_pos, n_in, dtype=w.dtype)
        plane.index_put_((rows.reshape(-1), safe.reshape(-1)), (w[:, :, o] * (idx >= 0)).reshape(-1), accumulate=True)
        dense[:, o] = plane
    return dense.reshape(n_pos * c_out, n_in)


def _row_blocks(dense: torch.Tensor, out_rows: int, rows_per_block: int, in_rows: int) -> list[tuple[int, int, torch.Tensor]]:
    """Cut a dense map between image-row-major layouts into row blocks.

    ``dense (n_out, n_in)`` with outputs ordered (row, ...) in ``out_rows`` rows and inputs
    (row, ...) in ``in_rows`` rows. Returns ``(in_lo, in_hi, M)`` per block of
    ``rows_per_block`` output rows: those outputs read only input features
    ``[in_lo, in_hi)`` (a contiguous slice), ``M`` is that sub-matrix.
    """
    n_out, n_in = dense.shape
    per_out, per_in = n_out // out_rows, n_in // in_rows
    blocks = []
    for r0 in range(0, out_rows, rows_per_block):
        sub = dense[r0 * per_out : min(out_rows, r0 + rows_per_block) * per_out]
        used = torch.nonzero(sub.abs().sum(dim=0) > 0).flatten()
        if used.numel() == 0:
            lo, hi = 0, per_in
        else:
            lo = int(used.min()) // per_in * per_in
            hi = (int(used.max()) // per_in + 1) * per_in
        blocks.append((lo, hi, sub[:, lo:hi].contiguous()))
    return blocks


def _fused_gather_indices() -> tuple[torch.Tensor, torch.Tensor]:
    """``idx1``, ``idx2`` of :class:`FusedLaganGenerator`: they depend on the layer geometry only."""
    lc1 = UpsampledLocallyConnected2d(64, 6, (14, 14), 5, padding=2)
    lc2 = UpsampledLocallyConnected2d(6, 6, (28, 28), 3)
    idx1 = _fold_upsample_lc(lc1, 7, torch.ones(64), torch.zeros(64))[0]
    idx2 = _fold_upsample_lc(lc2, 14, torch.ones(6), torch.zeros(6))[0]
    return idx1, idx2


class FusedLaganGenerator(nn.Module):
    """Inference form of :class:`LaganGenerator` (identical function, eval mode).

    Stored tensors (the compact form that is shipped): ``embedding (n_classes, 200)``;
    ``w0 (200, 3136)``, ``b0 (3136,)`` - project and 5 x 5 conv fused (output ``(64, 7, 7)``
    flattened); ``idx1 (196, K1)``, ``w1 (196, K1, 6)``, ``b1 (196, 6)`` - bn1 + upsample +
    LC 5 x 5 as a gather over the 7 x 7 grid; ``idx2 (676, K2)``, ``w2 (676, K2, 6)``,
    ``b2 (676, 6)`` - bn2 + upsample + LC 3 x 3 over the 14 x 14 grid; ``w3 (625, 24)`` -
    LC 2 x 2 (no bias). ``-1`` indices are padding taps.

    At construction these are expanded into dense matrices between row-major
    ``(row, column, channel)`` layouts, cut into blocks of output rows: each block reads a
    contiguous slice of input rows, so the forward pass is a few dense GEMMs on
    feature-major ``(features, batch)`` activations with no gathers.
    """

    def __init__(self, tensors: dict[str, torch.Tensor], config: LaganConfig, precision: str = "float32") -> None:
        super().__init__()
        self.config = config
        for name, t in tensors.items():
            self.register_buffer(name, t.contiguous())
        self.slope = config.leaky_slope
        self._build_blocks()
        self.set_precision(precision)

    def set_precision(self, precision: str) -> None:
        """``"float32"`` (default, the trained function to float rounding) or ``"bfloat16"``
        (GEMMs in bfloat16 with float32 accumulation: ~3x faster on CPUs with AVX512-BF16,
        pixel values change at the 1% level)."""
        dtypes = {"float32": torch.float32, "bfloat16": torch.bfloat16}
        if precision not in dtypes:
            raise ModelError(f"expected precision in {sorted(dtypes)}, got {precision!r}")
        dt = dtypes[precision]
        self.precision = precision
        self._run = {
            "w0": self.w0_t.to(dt), "b0": self.b0_hwc.to(dt),
            "blocks1": [(lo, hi, m.to(dt)) for lo, hi, m in self.blocks1], "bias1": self.bias1.to(dt),
            "blocks2": [(lo, hi, m.to(dt)) for lo, hi, m in self.blocks2], "bias2": self.bias2.to(dt),
            "blocks3": [(lo, hi, m.to(dt)) for lo, hi, m in self.blocks3],
        }
        self._dtype = dt

    @staticmethod
    def _chw_to_hwc(n_c: int, n_h: int, n_w: int) -> torch.Tensor:
        """perm such that x_hwc = x_chw[perm] (flat indices)."""
        return torch.arange(n_c * n_h * n_w).view(n_c, n_h, n_w).permute(1, 2, 0).reshape(-1)

    def _build_blocks(self) -> None:
        d = torch.float64
        p0 = self._chw_to_hwc(64, 7, 7)
        self.w0_t = self.w0.to(d)[:, p0].T.contiguous().float()  # (3136, 200), rows (r, q, c)
        self.b0_hwc = self.b0.to(d)[p0].view(-1, 1).float()
        # LC1: inputs (c, r, q) over 7x7x64 -> outputs (pos=(i, j), o) over 14x14x6
        m1 = _dense_from_gather(self.idx1, self.w1.to(d), 3136)[:, p0]  # inputs now (r, q, c)
        self.blocks1 = [(lo, hi, m.float()) for lo, hi, m in _row_blocks(m1, 14, 2, 7)]
        self.bias1 = self.b1.to(d).reshape(-1, 1).float()  # (pos, o) = (i, j, o): row-major
        # LC2: inputs (c, r, q) over 14x14x6 -> outputs (i, j, o) over 26x26x6
        p1 = self._chw_to_hwc(6, 14, 14)
        m2 = _dense_from_gather(self.idx2, self.w2.to(d), 6 * 196)[:, p1]
        self.blocks2 = [(lo, hi, m.float()) for lo, hi, m in _row_blocks(m2, 26, 2, 14)]
        self.bias2 = self.b2.to(d).reshape(-1, 1).float()
        # LC3: 2x2 over (c, r, q) 26x26x6 -> 25x25
        ii, jj = torch.meshgrid(torch.arange(25), torch.arange(25), indexing="ij")
        taps = [c * 676 + (ii + a) * 26 + (jj + b) for c in range(6) for a in range(2) for b in range(2)]
        idx3 = torch.stack(taps, dim=-1).reshape(625, 24)
        p2 = self._chw_to_hwc(6, 26, 26)
        m3 = _dense_from_gather(idx3, self.w3.to(d).unsqueeze(-1), 6 * 676)[:, p2]
        self.blocks3 = [(lo, hi, m.float()) for lo, hi, m in _row_blocks(m3, 25, 1, 26)]

    @classmethod
    @torch.no_grad()
    def from_generator(cls, g: LaganGenerator) -> FusedLaganGenerator:
        g = g.eval()
        # project + conv are both linear: push the identity basis through them
        eye = torch.eye(g.config.latent_dim, dtype=torch.float64)
        proj = copy.deepcopy(g.project).double()
        conv = copy.deepcopy(g.conv).double()
        b0 = conv(proj.bias.view(1, 128, 7, 7)).view(-1)
        w0 = conv(proj(eye).view(-1, 128, 7, 7)).view(g.config.latent_dim, -1) - b0
        s1, t1 = _bn_affine(g.bn1)
        idx1, w1, b1 = _fold_upsample_lc(g.lc1, 7, s1, t1)
        s2, t2 = _bn_affine(g.bn2)
        idx2, w2, b2 = _fold_upsample_lc(g.lc2, 14, s2, t2)
        w3 = g.lc3.weight.detach().double().view(625, 24)
        tensors = {
            "embedding": g.cond.embedding.weight.detach(),
            "w0": w0, "b0": b0, "idx1": idx1, "w1": w1, "b1": b1, "idx2": idx2, "w2": w2, "b2": b2, "w3": w3,
        }
        tensors = {k: (v if v.dtype == torch.long else v.float()) for k, v in tensors.items()}
        return cls(tensors, g.config)

    @staticmethod
    def _blocks(h: torch.Tensor, blocks: list[tuple[int, int, torch.Tensor]], bias: torch.Tensor | None) -> torch.Tensor:
        out = torch.cat([m @ h[lo:hi] for lo, hi, m in blocks])
        return out if bias is None else out.add_(bias)

    def forward(self, z: torch.Tensor, label: torch.Tensor) -> torch.Tensor:
        """``(B, 200), (B,) -> (B, 25, 25)`` in network units."""
        r = self._run
        x = (z * self.embedding[label]).T.to(self._dtype)
        h = F.leaky_relu_(torch.addmm(r["b0"], r["w0"], x), self.slope)  # (7*7*64, B), rows (r, q, c)
        h = F.leaky_relu_(self._blocks(h, r["blocks1"], r["bias1"]), self.slope)  # (14*14*6, B)
        h = F.leaky_relu_(self._blocks(h, r["blocks2"], r["bias2"]), self.slope)  # (26*26*6, B)
        out = self._blocks(h, r["blocks3"], None)  # (625, B)
        return F.relu_(out).T.float().reshape(-1, 25, 25)


# --------------------------------------------------------------------------- shipped model


class ImageGenerator:
    """A trained image generator with its metadata: ``generate(z, labels) -> GeV images``.

    Stored as ``MODEL.safetensors`` (float16 tensors by default, to keep the file small;
    computations run in float32) plus ``MODEL.json`` (architecture, training data,
    validation figures, retrain command).
    """

    FORMAT = "hepfastsim-lagan-v1"

    def __init__(self, network: nn.Module, config: LaganConfig, metadata: dict | None = None) -> None:
        self.network = network.eval()
        self.config = config
        self.metadata = metadata or {}

    @torch.inference_mode()
    def generate(self, z: np.ndarray | torch.Tensor, labels: np.ndarray | torch.Tensor) -> np.ndarray:
        """Images ``(B, 25, 25)`` float32 in GeV from latents ``(B, 200)`` and class labels (0 QCD, 1 W)."""
        z_t = torch.as_tensor(z, dtype=torch.float32)
        lab = torch.as_tensor(labels, dtype=torch.long)
        if z_t.dim() != 2 or z_t.shape[1] != self.config.latent_dim or lab.shape != (z_t.shape[0],):
            raise ModelError(
                f"expected z (B, {self.config.latent_dim}) and labels (B,), got {tuple(z_t.shape)} and {tuple(lab.shape)}"
            )
        if lab.numel() and (int(lab.min()) < 0 or int(lab.max()) >= self.config.n_classes):
            raise ModelError(f"expected labels in [0, {self.config.n_classes}), got {lab.min()}..{lab.max()}")
        out = self.network(z_t, lab)
        return (out.reshape(-1, 25, 25) * self.config.pixel_scale).numpy()

    def latent(self, label: int, seed: int, start: int, n: int) -> np.ndarray:
        """Latent vectors ``(n, latent_dim)`` of images ``start .. start+n-1`` of a class.

        Counter-based (:mod:`hepfastsim.kernels.rng`): image ``i`` of class ``label`` with
        ``seed`` always gets the same ``z``, whatever the batch size.
        """
        keys = event_keys(seed, LATENT_FILE_KEY + int(label), np.arange(start, start + n, dtype=np.int64))
        return normals(keys, np.arange(n + 1, dtype=np.int64), self.config.latent_dim, LATENT_DOMAIN).astype(np.float32)

    def sample(self, label: int, n: int, seed: int = 0, start: int = 0,
               on_block: Callable[[int], None] | None = None) -> np.ndarray:
        """Images ``start .. start+n-1`` ``(n, 25, 25)`` float32 in GeV of class ``label`` (0 QCD, 1 W).

        The network always runs on whole blocks of :data:`SAMPLE_BLOCK` images aligned at
        multiples of the block size, so image ``i`` is computed with identical inputs and
        shapes however many images are asked for: bit-identical output for a given seed
        (and thread count).
        """
        if n < 0 or start < 0:
            raise ModelError(f"expected n >= 0 and start >= 0, got n={n}, start={start}")
        if not 0 <= int(label) < self.config.n_classes:
            raise ModelError(f"expected a class label in [0, {self.config.n_classes}), got {label}")
        out = np.empty((n, 25, 25), dtype=np.float32)
        first = start // SAMPLE_BLOCK * SAMPLE_BLOCK
        for b0 in range(first, start + n, SAMPLE_BLOCK):
            imgs = self.generate(self.latent(label, seed, b0, SAMPLE_BLOCK), np.full(SAMPLE_BLOCK, int(label)))
            lo, hi = max(b0, start), min(b0 + SAMPLE_BLOCK, start + n)
            out[lo - start : hi - start] = imgs[lo - b0 : hi - b0]
            if on_block is not None:
                on_block(hi - lo)
        return out

    def save(self, path: str | Path, half: bool = True) -> None:
        tensors = {}
        for k, v in self.network.state_dict().items():
            if k in ("idx1", "idx2") and isinstance(self.network, FusedLaganGenerator):
                continue  # geometry only: rebuilt by load()
            tensors[k] = v.to(torch.int32) if v.dtype == torch.long else v
        meta = {"format": self.FORMAT, "config": asdict(self.config), "fused": isinstance(self.network, FusedLaganGenerator),
                **self.metadata}
        write_model(path, tensors, meta, half=half)

    @classmethod
    def load(cls, path: str | Path | None = None, precision: str = "float32") -> ImageGenerator:
        """Load ``PATH.safetensors`` + ``PATH.json`` (default: the shipped LAGAN)."""
        path = DEFAULT_MODEL if path is None else path
        what = "LAGAN model"
        raw, meta = read_model(path, cls.FORMAT, what=what, hint=" (train one with 'hepfastsim train lagan')")
        config = LaganConfig(**meta["config"])
        tensors = {k: t.long() if t.dtype == torch.int32 else t for k, t in raw.items()}
        if meta.get("fused"):
            if "idx1" not in tensors:
                tensors["idx1"], tensors["idx2"] = _fused_gather_indices()
            net: nn.Module = FusedLaganGenerator(tensors, config, precision)
        else:
            if precision != "float32":
                raise ModelError(f"precision {precision!r} needs a fused LAGAN model, {str(model_paths(path)[1])!r} is not one")
            net = make_networks(config)[0]
            load_state(net, tensors, path, what=what)
        meta = {k: v for k, v in meta.items() if k not in ("format", "config", "fused")}
        return cls(net, config, meta)


DEFAULT_MODEL = Path(__file__).parent / "data" / "lagan"
