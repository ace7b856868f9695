"""2-D locally connected layer (a convolution without weight sharing), on ``unfold``.

torch has no locally connected layer. Each output position ``(i, j)`` has its own
filter bank over its ``k x k`` receptive field: with ``unfold`` giving the patches
``(B, C k k, L)``, ``L = H_out W_out``, the layer is ``L`` independent small matrix
products, run as one batched ``bmm`` over positions. LAGAN (arXiv:1701.05927, seed
004) uses it in both generator and discriminator.
"""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn import functional as F

__all__ = ["LocallyConnected2d", "UpsampledLocallyConnected2d", "lc_output_size"]


def lc_output_size(size: int, kernel: int, stride: int = 1, padding: int = 0) -> int:
    """Output side length of a 'valid' window of ``kernel`` after ``padding`` zeros."""
    out = (size + 2 * padding - kernel) // stride + 1
    if out < 1:
        raise ValueError(f"expected kernel {kernel} to fit in size {size} + 2 x padding {padding}, got output {out}")
    return out


class LocallyConnected2d(nn.Module):
    """Locally connected 2-D layer: input ``(B, C_in, H, W)`` -> ``(B, C_out, H_out, W_out)``.

    ``weight``: ``(L, C_in k k, C_out)`` with ``L = H_out W_out`` and the patch order of
    :func:`torch.nn.functional.unfold` (channel-major, then kernel row, kernel column);
    ``bias``: ``(C_out, H_out, W_out)`` or ``None``. ``init`` is ``"he_uniform"`` or
    ``"glorot_normal"`` (the Keras initialisers LAGAN uses).
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        input_size: tuple[int, int],
        kernel_size: int,
        stride: int = 1,
        padding: int = 0,
        bias: bool = True,
        init: str = "he_uniform",
    ) -> None:
        super().__init__()
        self.in_channels, self.out_channels = int(in_channels), int(out_channels)
        self.input_size = (int(input_size[0]), int(input_size[1]))
        self.kernel_size, self.stride, self.padding = int(kernel_size), int(stride), int(padding)
        self.output_size = (
            lc_output_size(self.input_size[0], self.kernel_size, self.stride, self.padding),
            lc_output_size(self.input_size[1], self.kernel_size, self.stride, self.padding),
        )
        n_pos = self.output_size[0] * self.output_size[1]
        fan_in = self.in_channels * self.kernel_size**2
        self.weight = nn.Parameter(torch.empty(n_pos, fan_in, self.out_channels))
        self.bias = nn.Parameter(torch.zeros(self.out_channels, *self.output_size)) if bias else None
        with torch.no_grad():
            if init == "he_uniform":
                bound = math.sqrt(6.0 / fan_in)
                self.weight.uniform_(-bound, bound)
            elif init == "glorot_normal":
                self.weight.normal_(0.0, math.sqrt(2.0 / (fan_in + self.out_channels)))
            else:
                raise ValueError(f"expected init 'he_uniform' or 'glorot_normal', got {init!r}")

    def extra_repr(self) -> str:
        return (
            f"{self.in_channels}, {self.out_channels}, input_size={self.input_size}, kernel_size={self.kernel_size}, "
            f"stride={self.stride}, padding={self.padding}, bias={self.bias is not None}"
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() != 4 or x.shape[1] != self.in_channels or tuple(x.shape[2:]) != self.input_size:
            raise ValueError(
                f"expected input (B, {self.in_channels}, {self.input_size[0]}, {self.input_size[1]}), got {tuple(x.shape)}"
            )
        patches = F.unfold(x, self.kernel_size, padding=self.padding, stride=self.stride)  # (B, CKK, L)
        out = torch.bmm(patches.permute(2, 0, 1), self.weight)  # (L, B, C_out)
        out = out.permute(1, 2, 0).reshape(x.shape[0], self.out_channels, *self.output_size)
        if self.bias is not None:
            out = out + self.bias
        return out


def _tap_map(n_out: int, kernel: int, stride: int, padding: int, n_small: int) -> tuple[torch.Tensor, list[int], int, int]:
    """For LC over the 2x-upsampled grid of side ``2 n_small``: per output row ``i``, the
    matrix ``A_i[a, d] = 1`` if kernel tap ``a`` reads small-grid row ``origin_i + d``.

    Returns ``A (n_out, kernel, K)``, the origins (small-grid rows, may be negative),
    the window size ``K`` and the zero padding needed before the small grid.
    """
    rows = []
    for i in range(n_out):
        rows.append({a: (i * stride + a - padding) // 2 for a in range(kernel) if 0 <= i * stride + a - padding < 2 * n_small})
    # the window starts where the unclipped taps would start, so neighbours share windows
    origins = [(i * stride - padding) // 2 for i in range(n_out)]
    size = max(max(r.values()) - o + 1 for r, o in zip(rows, origins) if r)
    a_mat = torch.zeros(n_out, kernel, size)
    for i, (r, o) in enumerate(zip(rows, origins)):
        for a, s in r.items():
            a_mat[i, a, s - o] = 1.0
    pad_before = max(0, -min(origins))
    return a_mat, origins, size, pad_before


class UpsampledLocallyConnected2d(LocallyConnected2d):
    """``LocallyConnected2d`` applied to the 2x nearest-upsampled input, computed on the small grid.

    Same parameters and same function as ``LC(upsample2x(x))`` with ``input_size`` the
    upsampled size, but each output reads its receptive field from the small grid: the
    taps that read the same small pixel have their weights summed (a fixed linear map of
    the weights, so gradients are those of the plain layer). Output positions that share a
    small-grid window are computed together, so the patches are ~``(k/2)^2``x fewer.
    ``forward(x)`` takes the small input ``(B, C_in, H/2, W/2)``.
    """

    def __init__(self, *args, **kwargs) -> None:  # type: ignore[no-untyped-def]
        super().__init__(*args, **kwargs)
        h_up, w_up = self.input_size
        if h_up % 2 or w_up % 2:
            raise ValueError(f"expected an even upsampled input_size, got {self.input_size}")
        self.small_size = (h_up // 2, w_up // 2)
        a_r, org_r, k_r, pad_r = _tap_map(self.output_size[0], self.kernel_size, self.stride, self.padding, self.small_size[0])
        a_c, org_c, k_c, pad_c = _tap_map(self.output_size[1], self.kernel_size, self.stride, self.padding, self.small_size[1])
        self.register_buffer("a_rows", a_r, persistent=False)
        self.register_buffer("a_cols", a_c, persistent=False)
        self.window = (k_r, k_c)
        # padded small grid: before = pad_r / pad_c; after: enough for the last window
        after_r = max(0, max(org_r) + k_r - self.small_size[0])
        after_c = max(0, max(org_c) + k_c - self.small_size[1])
        self.small_pad = (pad_c, after_c, pad_r, after_r)  # F.pad order: last dim first
        n_cols_c = self.small_size[1] + pad_c + after_c - k_c + 1
        col = [(o_r + pad_r) * n_cols_c + (o_c + pad_c) for o_r in org_r for o_c in org_c]
        uniq = sorted(set(col))
        groups = [[p for p, c in enumerate(col) if c == u] for u in uniq]
        sizes = {len(g) for g in groups}
        if len(sizes) != 1:  # uneven sharing: one window per position (gathered, may repeat)
            uniq, groups = col, [[p] for p in range(len(col))]
        self.group_size = len(groups[0])
        self.register_buffer("window_cols", torch.tensor(uniq), persistent=False)
        order = torch.tensor([p for g in groups for p in g])
        self.register_buffer("position_order", order, persistent=False)  # group-major -> positions
        self.register_buffer("inverse_order", torch.argsort(order), persistent=False)

    def effective_weight(self) -> torch.Tensor:
        """Weights over the small-grid windows, ``(L, C_in * K_r * K_c, C_out)``, position order."""
        h, w = self.output_size
        k = self.kernel_size
        wt = self.weight.view(h, w, self.in_channels, k, k, self.out_channels)
        eff = torch.einsum("ijcabo,iar,jbq->ijcrqo", wt, self.a_rows, self.a_cols)
        return eff.reshape(h * w, -1, self.out_channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() != 4 or x.shape[1] != self.in_channels or tuple(x.shape[2:]) != self.small_size:
            raise ValueError(
                f"expected input (B, {self.in_channels}, {self.small_size[0]}, {self.small_size[1]}), got {tuple(x.shape)}"
            )
        b = x.shape[0]
        patches = F.unfold(F.pad(x, self.small_pad), self.window)[:, :, self.window_cols]  # (B, CK, G)
        n_groups = self.window_cols.numel()
        w = self.effective_weight()[self.position_order]  # (L, CK, O) grouped
        w = w.view(n_groups, self.group_size, -1, self.out_channels).permute(0, 2, 1, 3)
        w = w.reshape(n_groups, -1, self.group_size * self.out_channels)
        out = torch.bmm(patches.permute(2, 0, 1), w)  # (G, B, P*O)
        out = out.view(n_groups, b, self.group_size, self.out_channels).permute(1, 0, 2, 3)
        out = out.reshape(b, -1, self.out_channels)[:, self.inverse_order]  # (B, L, O)
        out = out.permute(0, 2, 1).reshape(b, self.out_channels, *self.output_size)
        if self.bias is not None:
            out = out + self.bias
        return out
