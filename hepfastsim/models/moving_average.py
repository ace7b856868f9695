"""Exponential moving average of a network's weights, for the trainings that keep one
(``--ema DECAY`` of ``hepfastsim train kinematics`` and ``train image-gan``)."""

from __future__ import annotations

from typing import Any

from hepfastsim.errors import HepfastsimError

__all__ = ["check_decay", "moving_average"]


def check_decay(decay: float | None) -> None:
    """Refuse a decay outside (0, 1); None (no average) is fine."""
    if decay is not None and not 0.0 < decay < 1.0:
        raise HepfastsimError(f"ema_decay (--ema) must be between 0 and 1, got {decay}")


def moving_average(net: Any, decay: float | None) -> Any:
    """torch's own ``AveragedModel`` of ``net`` (parameters and buffers, such as batch-norm
    statistics) with decay ``decay``, updated by ``.update_parameters(net)``; None without a decay."""
    import torch

    if decay is None:
        return None
    swa = torch.optim.swa_utils
    return swa.AveragedModel(net, multi_avg_fn=swa.get_ema_multi_avg_fn(decay), use_buffers=True)
