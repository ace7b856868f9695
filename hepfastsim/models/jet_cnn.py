"""CNN W / QCD tagger on 25 x 25 jet images (seed 002, "Deep convolutional architectures
for jet-images at the LHC"; architecture of arXiv:1511.05190: large first-layer filters).

Input: each image divided by its total intensity (the seed normalises the images), then
``log1p(1000 x)`` to tame the dynamic range. Network: conv 11 x 11 (32 maps, 'same') ->
max-pool 2 -> conv 3 x 3 (32) -> max-pool 2 -> conv 3 x 3 (32) -> max-pool 2 -> dense 64
-> dropout -> one logit (W = 1). Trained with Adam on balanced classes; the epoch with the
best validation loss is kept.
"""

from __future__ import annotations

import copy
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from hepfastsim.errors import ModelError
from hepfastsim.models.weights_file import load_state, read_model, write_model

__all__ = ["JetCnnConfig", "JetCnn", "preprocess", "train_jet_cnn", "predict", "save_jet_cnn", "load_jet_cnn"]

FORMAT = "hepfastsim-jet-cnn-v1"


@dataclass(frozen=True)
class JetCnnConfig:
    """Architecture and training settings."""

    filters: int = 32
    first_kernel: int = 11
    hidden: int = 64
    dropout: float = 0.3
    epochs: int = 10
    batch_size: int = 256
    learning_rate: float = 1e-3
    max_minutes: float = 15.0
    seed: int = 0


def preprocess(images: np.ndarray) -> torch.Tensor:
    """``(n, 25, 25)`` GeV images -> ``(n, 1, 25, 25)`` network input (unit sum, then log1p(1000 x))."""
    img = np.asarray(images, dtype=np.float32)
    if img.ndim != 3 or img.shape[1:] != (25, 25):
        raise ModelError(f"expected images (n, 25, 25), got {img.shape}")
    total = img.sum(axis=(1, 2), keepdims=True)
    norm = np.divide(img, total, out=np.zeros_like(img), where=total > 0)
    return torch.from_numpy(np.log1p(1000.0 * norm)).unsqueeze(1)


class JetCnn(nn.Module):
    """``(B, 1, 25, 25) -> (B,)`` logits of P(W)."""

    def __init__(self, config: JetCnnConfig = JetCnnConfig()) -> None:
        super().__init__()
        f = config.filters
        self.config = config
        self.conv1 = nn.Conv2d(1, f, config.first_kernel, padding=config.first_kernel // 2)
        self.conv2 = nn.Conv2d(f, f, 3, padding=1)
        self.conv3 = nn.Conv2d(f, f, 3, padding=1)
        self.dense = nn.Linear(f * 3 * 3, config.hidden)
        self.out = nn.Linear(config.hidden, 1)
        self.drop = nn.Dropout(config.dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = F.max_pool2d(F.relu(self.conv1(x)), 2)  # 12
        h = F.max_pool2d(F.relu(self.conv2(h)), 2)  # 6
        h = F.max_pool2d(F.relu(self.conv3(h)), 2)  # 3
        h = self.drop(F.relu(self.dense(h.flatten(1))))
        return self.out(h).squeeze(1)


@torch.inference_mode()
def predict(model: JetCnn, images: np.ndarray, batch: int = 4096) -> np.ndarray:
    """P(W) per image, ``(n,)``."""
    model.eval()
    x = preprocess(images)
    return np.concatenate([torch.sigmoid(model(x[s : s + batch])).numpy() for s in range(0, len(x), batch)]) if len(x) else np.zeros(0)


def train_jet_cnn(
    w_images: np.ndarray,
    qcd_images: np.ndarray,
    w_val: np.ndarray,
    qcd_val: np.ndarray,
    config: JetCnnConfig = JetCnnConfig(),
    on_epoch: Callable[[dict], None] | None = None,
) -> tuple[JetCnn, dict]:
    """Train on W (label 1) and QCD (label 0) images; classes weighted to equal totals."""
    torch.manual_seed(config.seed)
    gen = torch.Generator().manual_seed(config.seed)
    x = torch.cat([preprocess(w_images), preprocess(qcd_images)])
    y = torch.cat([torch.ones(len(w_images)), torch.zeros(len(qcd_images))])
    wt = torch.cat([torch.full((len(w_images),), 0.5 / max(len(w_images), 1)),
                    torch.full((len(qcd_images),), 0.5 / max(len(qcd_images), 1))]) * len(y)
    xv = torch.cat([preprocess(w_val), preprocess(qcd_val)])
    yv = torch.cat([torch.ones(len(w_val)), torch.zeros(len(qcd_val))])
    wv = torch.cat([torch.full((len(w_val),), 0.5 / max(len(w_val), 1)),
                    torch.full((len(qcd_val),), 0.5 / max(len(qcd_val), 1))]) * len(yv)
    model = JetCnn(config)
    opt = torch.optim.Adam(model.parameters(), lr=config.learning_rate)
    best = (np.inf, copy.deepcopy(model.state_dict()), -1)
    history: dict = {"train_loss": [], "val_loss": []}
    start = time.perf_counter()
    for epoch in range(config.epochs):
        model.train()
        perm = torch.randperm(len(y), generator=gen)
        losses = []
        for s in range(0, len(y), config.batch_size):
            i = perm[s : s + config.batch_size]
            loss = F.binary_cross_entropy_with_logits(model(x[i]), y[i], weight=wt[i])
            opt.zero_grad()
            loss.backward()
            opt.step()
            losses.append(loss.item())
        model.eval()
        with torch.inference_mode():
            vl = float(F.binary_cross_entropy_with_logits(model(xv), yv, weight=wv))
        history["train_loss"].append(float(np.mean(losses)))
        history["val_loss"].append(vl)
        if vl < best[0]:
            best = (vl, copy.deepcopy(model.state_dict()), epoch)
        if on_epoch is not None:
            on_epoch({"epoch": epoch, "train_loss": history["train_loss"][-1], "val_loss": vl})
        if time.perf_counter() - start > 60.0 * config.max_minutes:
            break
    model.load_state_dict(best[1])
    model.eval()
    history["best_epoch"] = best[2]
    return model, history


def save_jet_cnn(model: JetCnn, path: str | Path, metadata: dict) -> None:
    """``PATH.safetensors`` (float32 weights) + ``PATH.json`` (config and metadata)."""
    write_model(path, model.state_dict(), {"format": FORMAT, "config": asdict(model.config), **metadata})


def load_jet_cnn(path: str | Path) -> tuple[JetCnn, dict]:
    state, meta = read_model(path, FORMAT, what="jet-CNN model", hint=" (train one with 'hepfastsim train jet-cnn')")
    model = JetCnn(JetCnnConfig(**meta["config"]))
    load_state(model, state, path, what="jet-CNN model")
    model.eval()
    return model, meta
