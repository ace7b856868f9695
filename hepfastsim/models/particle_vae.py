"""Particle-level jet VAE (seed 003, Touranakou et al., arXiv:2203.00520) and a set variant.

Both map the list of generator-level constituents of a jet to the list after detector and
reconstruction. The encoder reads the gen jet; at inference ``z = mu + sigma * eps`` with
``eps`` from the per-event keys (the paper samples from the encoder's posterior of the gen
jet), and the decoder returns the reco constituents.

``conv`` (the paper, Sec. 4): a single-channel 3 x 50 table of standardised (px, py, pz)
of the 50 leading constituents, zero-padded; Conv2d 32 (3x5), max-pool (1x2), 64 (1x5),
max-pool, 128 (1x5), dense 640 and 150, 20-d latent; mirrored decoder with bilinear
upsampling before the last two transposed convolutions; leaky ReLU 0.1, dropout 0.2.

``set`` (our variant, answering the paper's diagnosis that zero-padding ghosts spoil the
momentum flows): constituents as a masked set in the gen jet frame
(log pT/pT_jet, Delta eta, Delta phi); a permutation-invariant masked encoder
(per-particle MLP + masked mean/max pooling, DeepSets); a DeepSets permutation-equivariant
decoder whose output slot i starts from gen particle i (learned empty slots beyond the gen
multiplicity) plus the latent, so each reco particle is a smeared image of a gen particle;
and a predicted reco multiplicity: only the first ``n`` slots are real particles, so there
are no ghosts. Chamfer distances are masked to real particles on both sides. Optionally
(``slot_latent``) each slot also gets its own latent, so that each reco particle is smeared by
its own draw rather than all of them by the one jet latent.

Loss (paper eq. 1): ``beta * KL + (1 - beta) * (Chamfer + alpha_m (m - m_hat)^2 +
alpha_pT (pT - pT_hat)^2)``, with jet pT and mass computed from the output constituents
(massless) in units of ``VAEConfig.jet_scale_gev`` (default :data:`JET_SCALE_GEV`; the paper
chose its alphas so that the terms have similar magnitudes); the set variant adds the
multiplicity cross-entropy and, optionally (``alpha_dist``), a batch term that matches the
jet mass and pT response distributions of jets decoded as at inference (prior z, sampled
multiplicity, constituent acceptance) to the reco ones.
Chamfer is mode-seeking: a decoder trained on it alone places each reco particle at the
centre of its smearing, which makes low-mass jets too light and too narrow in mass when z is
drawn from the prior; the distribution term acts on exactly what inference produces.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

from hepfastsim.models.weights_file import load_state, read_model, write_model

if TYPE_CHECKING:
    from hepfastsim.models.particle_vae_calibration import MassCalibration

__all__ = [
    "N_MAX",
    "JET_SCALE_GEV",
    "VAEConfig",
    "Standardiser",
    "LoadedVAE",
    "build_model",
    "chamfer",
    "to_cartesian",
    "to_polar",
    "encode_conv",
    "encode_set",
    "decode_conv",
    "decode_set",
    "save_model",
    "load_model",
]

#: Constituents kept per jet (paper: the 50 leading in pT).
N_MAX = 50
#: Jet pT and mass enter the loss divided by this (GeV), so the terms are O(1).
JET_SCALE_GEV = 100.0
#: Half-width (rad) by which Delta eta / Delta phi are divided in the set representation.
ANGLE_SCALE = 0.2
#: The paper's constituent acceptance, applied after inference (seed 003, Sec. 5): pT (GeV), |eta|.
CAND_PT_MIN = 0.25
CAND_ETA_MAX = 3.2

Architecture = Literal["conv", "set"]


@dataclass(frozen=True)
class VAEConfig:
    """Architecture and loss weights (paper defaults; ``set_*`` only used by ``set``)."""

    architecture: Architecture = "conv"
    latent: int = 20
    dropout: float = 0.2
    slope: float = 0.1
    beta: float = 1.0 / 9.0
    alpha_m: float = 1.0
    alpha_pt: float = 0.1
    n_max: int = N_MAX
    set_width: int = 64
    set_layers: int = 2
    # set variant only: "gen" = the paper's scheme (z from the encoder of the gen jet, also at
    # inference); "reco" = conditional VAE: at training z ~ q(z | reco jet, gen jet), at
    # inference z ~ N(0, 1), so z carries the detector fluctuations and not the gen jet
    posterior: Literal["gen", "reco"] = "gen"
    # set variant only: slot i outputs gen particle i's features plus a learned correction
    residual: bool = False
    multiplicity_weight: float = 0.05
    jet_scale_gev: float = JET_SCALE_GEV  # jet pT and mass enter the loss in this unit (GeV)
    # set variant with posterior "reco" only: weight of a batch distribution term on jets decoded
    # as at inference (z from the prior, multiplicity sampled, constituent acceptance applied):
    # squared distance between the sorted log responses (jet mass and pT over the gen jet's) of
    # those jets and of the accepted reco jets (1-d W2^2 over the reco variance)
    alpha_dist: float = 0.0
    # set variant with posterior "reco" only: per-slot latent dimensions (0: none). Slot i gets
    # its own z_i from a learned Gaussian prior p(z_i | slot i) at inference, so each reco
    # particle is smeared independently; at training z_i ~ q(z_i | slot i, reco set), an
    # attention of the slot over the reco particles, and the KL is KL(q || p)
    slot_latent: int = 0

    def __post_init__(self) -> None:
        if self.slot_latent < 0 or (self.slot_latent > 0 and (self.architecture, self.posterior) != ("set", "reco")):
            raise ValueError(f"slot_latent must be >= 0 and needs the set architecture with posterior 'reco', got "
                             f"{self.slot_latent} with {self.architecture}/{self.posterior}")

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> VAEConfig:
        return cls(**{k: v for k, v in d.items() if k in cls.__dataclass_fields__})


@dataclass(frozen=True)
class Standardiser:
    """Per-feature mean and standard deviation (paper: "feature-dependent standardization")."""

    mean: tuple[float, ...]
    std: tuple[float, ...]

    @classmethod
    def fit(cls, x: np.ndarray) -> Standardiser:
        """``x``: (n_particles, n_features) of real (not padded) particles."""
        return cls(tuple(float(v) for v in x.mean(axis=0)), tuple(float(v) for v in np.maximum(x.std(axis=0), 1e-6)))

    def forward(self, x: np.ndarray) -> np.ndarray:
        return (x - np.asarray(self.mean, x.dtype)) / np.asarray(self.std, x.dtype)

    def inverse(self, x: np.ndarray) -> np.ndarray:
        return x * np.asarray(self.std, x.dtype) + np.asarray(self.mean, x.dtype)


# ----------------------------------------------------------------------------- features
def to_cartesian(pt: np.ndarray, eta: np.ndarray, phi: np.ndarray) -> np.ndarray:
    """(px, py, pz) in GeV of massless particles, stacked on a new last axis."""
    return np.stack([pt * np.cos(phi), pt * np.sin(phi), pt * np.sinh(eta)], axis=-1)


def to_polar(p: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(pt, eta, phi) of (..., 3) momenta (px, py, pz) in GeV; eta is +-inf-safe (pt = 0 -> 0)."""
    px, py, pz = p[..., 0], p[..., 1], p[..., 2]
    pt = np.hypot(px, py)
    with np.errstate(divide="ignore", invalid="ignore"):
        eta = np.where(pt > 0, np.arcsinh(pz / np.where(pt > 0, pt, 1.0)), 0.0)
    return pt, eta, np.arctan2(py, px)


def _wrap(dphi: np.ndarray) -> np.ndarray:
    return (dphi + np.pi) % (2 * np.pi) - np.pi


def set_features(pt: np.ndarray, eta: np.ndarray, phi: np.ndarray, jet_pt: np.ndarray, jet_eta: np.ndarray,
                 jet_phi: np.ndarray) -> np.ndarray:
    """Set representation (..., 3): log(pT / pT_jet), Delta eta / 0.2, Delta phi / 0.2 (wrapped).

    ``pt, eta, phi``: (n_jets, n) constituents; ``jet_*``: (n_jets,) axis of the gen jet.
    Padded entries (pt = 0) get 0 features (they are masked).
    """
    real = pt > 0
    with np.errstate(divide="ignore", invalid="ignore"):
        lpt = np.where(real, np.log(np.where(real, pt, 1.0) / jet_pt[:, None]), 0.0)
    deta = np.where(real, (eta - jet_eta[:, None]) / ANGLE_SCALE, 0.0)
    dphi = np.where(real, _wrap(phi - jet_phi[:, None]) / ANGLE_SCALE, 0.0)
    return np.stack([lpt, deta, dphi], axis=-1).astype(np.float32)


def set_to_polar(f: np.ndarray, jet_pt: np.ndarray, jet_eta: np.ndarray, jet_phi: np.ndarray
                 ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Inverse of :func:`set_features` for (n_jets, n, 3) features -> (pt GeV, eta, phi rad)."""
    pt = np.exp(np.clip(f[..., 0], -30.0, 5.0)) * jet_pt[:, None]
    eta = f[..., 1] * ANGLE_SCALE + jet_eta[:, None]
    phi = _wrap(f[..., 2] * ANGLE_SCALE + jet_phi[:, None])
    return pt, eta, phi


# ----------------------------------------------------------------------------- torch model
def _torch() -> Any:
    import torch

    return torch


def chamfer(a: Any, b: Any, mask_a: Any = None, mask_b: Any = None) -> Any:
    """Chamfer distance (paper eq. 2) per jet: sum_i min_j |a_i - b_j|^2 + sum_j min_i |a_i - b_j|^2.

    ``a``: (B, n, F) target, ``b``: (B, m, F) output; optional boolean masks (B, n) / (B, m)
    select real particles (the set variant); a jet with no real particle on one side gets 0.
    Returns a (B,) tensor.
    """
    torch = _torch()
    d = ((a[:, :, None, :] - b[:, None, :, :]) ** 2).sum(-1)  # (B, n, m)
    if mask_a is None and mask_b is None:
        return d.min(2).values.sum(1) + d.min(1).values.sum(1)
    big = torch.finfo(d.dtype).max / 4
    ma = mask_a if mask_a is not None else torch.ones(d.shape[:2], dtype=torch.bool, device=d.device)
    mb = mask_b if mask_b is not None else torch.ones((d.shape[0], d.shape[2]), dtype=torch.bool, device=d.device)
    d = d.masked_fill(~mb[:, None, :], big).masked_fill(~ma[:, :, None], big)
    to_b = d.min(2).values
    to_a = d.min(1).values
    ok = (ma.any(1) & mb.any(1)).to(d.dtype)
    return ((to_b * ma).sum(1) + (to_a * mb).sum(1)) * ok


def jet_pt_mass(px: Any, py: Any, pz: Any, weight: Any = None) -> tuple[Any, Any]:
    """Jet pT and mass (same units as the inputs) of massless constituents, torch (B, n) -> (B,)."""
    torch = _torch()
    e = torch.sqrt(px * px + py * py + pz * pz + 1e-12)
    if weight is not None:
        px, py, pz, e = px * weight, py * weight, pz * weight, e * weight
    sx, sy, sz, se = px.sum(1), py.sum(1), pz.sum(1), e.sum(1)
    pt = torch.sqrt(sx * sx + sy * sy + 1e-12)
    m2 = se * se - sx * sx - sy * sy - sz * sz
    return pt, torch.sqrt(torch.clamp(m2, min=0.0) + 1e-8)


def _conv_module(cfg: VAEConfig) -> Any:
    torch = _torch()
    nn = torch.nn
    n = cfg.n_max
    w1, w2 = n // 2, n // 4  # widths after the two poolings (50 -> 25 -> 12)
    act = lambda: nn.LeakyReLU(cfg.slope)  # noqa: E731

    class ConvVAE(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.enc = nn.Sequential(
                nn.Conv2d(1, 32, (3, 5), padding=(1, 2)), act(), nn.MaxPool2d((1, 2), stride=(1, 2)),
                nn.Conv2d(32, 64, (1, 5), padding=(0, 2)), act(), nn.MaxPool2d((1, 2), stride=(1, 2)),
                nn.Conv2d(64, 128, (1, 5), padding=(0, 2)), act(), nn.Flatten(),
                nn.Linear(128 * 3 * w2, 640), act(), nn.Dropout(cfg.dropout),
                nn.Linear(640, 150), act(),
            )
            self.mu = nn.Linear(150, cfg.latent)
            self.logvar = nn.Linear(150, cfg.latent)
            self.dec_dense = nn.Sequential(
                nn.Linear(cfg.latent, 150), act(), nn.Dropout(cfg.dropout),
                nn.Linear(150, 640), act(), nn.Dropout(cfg.dropout),
                nn.Linear(640, 128 * 3 * w2), act(),
            )
            self.dec_conv = nn.Sequential(
                nn.ConvTranspose2d(128, 64, (1, 5), padding=(0, 2)), act(),
                nn.Upsample(size=(3, w1), mode="bilinear", align_corners=False),
                nn.ConvTranspose2d(64, 32, (1, 5), padding=(0, 2)), act(),
                nn.Upsample(size=(3, n), mode="bilinear", align_corners=False),
                nn.ConvTranspose2d(32, 1, (3, 5), padding=(1, 2)),
            )
            self.w2 = w2

        def encode(self, x: Any) -> tuple[Any, Any]:
            """``x``: (B, 50, 3) standardised (px, py, pz) -> mu, logvar (B, latent)."""
            h = self.enc(x.transpose(1, 2)[:, None])
            return self.mu(h), self.logvar(h)

        def decode(self, z: Any) -> Any:
            """(B, latent) -> (B, 50, 3) standardised (px, py, pz)."""
            h = self.dec_dense(z).view(-1, 128, 3, self.w2)
            return self.dec_conv(h)[:, 0].transpose(1, 2)

    return ConvVAE()


def _set_module(cfg: VAEConfig) -> Any:
    torch = _torch()
    nn = torch.nn
    d = cfg.set_width
    act = lambda: nn.LeakyReLU(cfg.slope)  # noqa: E731

    def masked_pool(e: Any, mask: Any) -> Any:
        """Masked mean and max over the particle axis: (B, n, d) -> (B, 2d)."""
        m = mask[..., None].to(e.dtype)
        mean = (e * m).sum(1) / m.sum(1).clamp(min=1.0)
        mx = e.masked_fill(~mask[..., None], -1e4).max(1).values
        return torch.cat([mean, torch.where(mask.any(1, keepdim=True), mx, torch.zeros_like(mx))], 1)

    class Equivariant(nn.Module):
        """DeepSets permutation-equivariant layer: h_i -> act(A h_i + B mean_j h_j) + h_i."""

        def __init__(self) -> None:
            super().__init__()
            self.a = nn.Linear(d, d)
            self.b = nn.Linear(d, d, bias=False)
            self.act = act()

        def forward(self, h: Any, mask: Any) -> Any:
            m = mask[..., None].to(h.dtype)
            mean = (h * m).sum(1, keepdim=True) / m.sum(1, keepdim=True).clamp(min=1.0)
            return h + self.act(self.a(h) + self.b(mean))

    class SetVAE(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.phi = nn.Sequential(nn.Linear(3, d), act(), nn.Linear(d, d), act())
            # pooled (mean, max) + gen jet context (log pT, eta, log m, log n)
            self.rho = nn.Sequential(nn.Linear(2 * d + 4, 150), act(), nn.Dropout(cfg.dropout), nn.Linear(150, 150), act())
            self.mu = nn.Linear(150, cfg.latent)
            self.logvar = nn.Linear(150, cfg.latent)
            self.lat = nn.Sequential(nn.Linear(cfg.latent + 4, d), act())
            self.empty = nn.Parameter(torch.zeros(cfg.n_max, d))  # slots beyond the gen multiplicity
            self.inp = nn.Linear(2 * d, d)
            self.layers = nn.ModuleList([Equivariant() for _ in range(cfg.set_layers)])
            self.out = nn.Sequential(act(), nn.Linear(d, 3))
            self.mult = nn.Sequential(nn.Linear(cfg.latent + 4 + 2 * d, 150), act(), nn.Linear(150, cfg.n_max + 1))
            if cfg.posterior == "reco":
                self.phi_r = nn.Sequential(nn.Linear(3, d), act(), nn.Linear(d, d), act())
                self.rho_r = nn.Sequential(nn.Linear(4 * d + 4, 150), act(), nn.Linear(150, 150), act())
                self.mu_r = nn.Linear(150, cfg.latent)
                self.logvar_r = nn.Linear(150, cfg.latent)
            if cfg.slot_latent > 0:
                k = cfg.slot_latent
                self.slot_phi = nn.Sequential(nn.Linear(3, d), act(), nn.Linear(d, d))
                self.slot_attn = nn.MultiheadAttention(d, 4, batch_first=True)
                # slot state, attention over the reco set, offset + distance of the nearest reco particle, flag
                self.slot_post = nn.Sequential(nn.Linear(2 * d + 5, d), act(), nn.Linear(d, 2 * k))
                # zero weights: a model given slot latents starts from exactly the model without them
                self.slot_in = nn.Linear(k, d, bias=False)
                nn.init.zeros_(self.slot_in.weight)
                # learned prior p(z_i | slot state): starts as N(0, 1) (zero last layer)
                self.slot_prior = nn.Sequential(nn.Linear(d, d), act(), nn.Linear(d, 2 * k))
                nn.init.zeros_(self.slot_prior[2].weight)
                nn.init.zeros_(self.slot_prior[2].bias)

        def slot_posterior(self, h: Any, x: Any, gen_mask: Any, y: Any, mask: Any) -> tuple[Any, Any]:
            """q(z_i | slot state ``h`` (B, n_max, d), reco set ``y`` (B, n, 3) with ``mask``) ->
            mu, logvar (B, n_max, slot_latent). Slot i attends to the reco particles and, when it
            starts from gen particle i (``x`` (B, n_max, 3) standardised, ``gen_mask``), also reads
            the offset of the reco particle nearest to it (the one it most likely became)."""
            r = self.slot_phi(y)
            # a jet without reco particles (not in the training phase space) attends to nothing useful
            # but must not give NaN: unmask its first entry
            keys_off = ~mask
            keys_off[:, 0] = keys_off[:, 0] & mask.any(1)
            a, _ = self.slot_attn(h, r, r, key_padding_mask=keys_off, need_weights=False)
            d2 = ((x[:, :, None, :] - y[:, None, :, :]) ** 2).sum(-1).masked_fill(~mask[:, None, :], float("inf"))
            d2_min, j = d2.min(2)
            near = torch.gather(y, 1, j[..., None].expand(-1, -1, y.shape[2])) - x
            has = (gen_mask & mask.any(1, keepdim=True))[..., None].to(y.dtype)
            near = torch.cat([near, torch.sqrt(d2_min.clamp(max=100.0))[..., None]], 2) * has
            mu, logvar = self.slot_post(torch.cat([h, a, near, has], 2)).chunk(2, dim=2)
            return mu, logvar

        def encode_reco(self, y: Any, mask: Any, ctx: Any, pooled_gen: Any) -> tuple[Any, Any]:
            """Posterior q(z | reco set ``y`` (B, n, 3) with ``mask``, gen jet) -> mu, logvar."""
            e = self.phi_r(y) * mask[..., None].to(y.dtype)
            h = self.rho_r(torch.cat([masked_pool(e, mask), pooled_gen, ctx], 1))
            return self.mu_r(h), self.logvar_r(h)

        def encode(self, x: Any, mask: Any, ctx: Any) -> tuple[Any, Any, Any, Any]:
            """``x`` (B, n, 3) set features, ``mask`` (B, n) real, ``ctx`` (B, 4) -> mu, logvar, embeddings, pooled."""
            e = self.phi(x) * mask[..., None].to(x.dtype)
            pooled = masked_pool(e, mask)
            h = self.rho(torch.cat([pooled, ctx], 1))
            return self.mu(h), self.logvar(h), e, pooled

        def decode(self, z: Any, ctx: Any, mem: Any, mask: Any, pooled: Any, x: Any = None, slot_z: Any = None,
                   reco: tuple[Any, Any] | None = None) -> tuple[Any, Any, Any]:
            """Slot i starts from gen particle i (or a learned empty slot); -> slot features
            (B, n_max, 3), multiplicity logits (B, n_max + 1) and, with ``reco``, the KL
            divergence of each slot's latent (B, n_max) (else None).

            With ``slot_latent``: ``slot_z`` (B, n_max, slot_latent) standard normals that the
            learned prior maps to the per-slot latents (inference), or ``reco`` = (reco set
            (B, n, 3), its mask) to draw them from the per-slot posterior (training)."""
            g = self.lat(torch.cat([z, ctx], 1))
            e = torch.where(mask[..., None], mem, self.empty[None, : mem.shape[1]])
            h = self.inp(torch.cat([e, g[:, None].expand(-1, e.shape[1], -1)], 2))
            slot_kl = None
            if cfg.slot_latent > 0:
                mu_p, logvar_p = self.slot_prior(h).chunk(2, dim=2)
                if reco is not None:
                    if x is None:
                        raise ValueError("the per-slot posterior needs the gen features x")
                    mu_s, logvar_s = self.slot_posterior(h, x, mask, *reco)
                    z_s = mu_s + torch.exp(0.5 * logvar_s) * torch.randn_like(mu_s)
                    # KL(N(mu_s, var_s) || N(mu_p, var_p)) per slot
                    slot_kl = 0.5 * (logvar_p - logvar_s + (logvar_s.exp() + (mu_s - mu_p) ** 2) / logvar_p.exp()
                                     - 1.0).sum(2)
                elif slot_z is None:
                    raise ValueError("a model with slot latents needs slot_z (normals) or reco to decode")
                else:
                    z_s = mu_p + torch.exp(0.5 * logvar_p) * slot_z
                h = h + self.slot_in(z_s)
            live = torch.ones_like(mask)
            for layer in self.layers:
                h = layer(h, live)
            out = self.out(h)
            if cfg.residual:  # x: the standardised gen features the slots start from
                out = out + x * mask[..., None].to(x.dtype)
            return out, self.mult(torch.cat([z, ctx, pooled], 1)), slot_kl

    return SetVAE()


def build_model(cfg: VAEConfig = VAEConfig()) -> Any:
    """A fresh torch module of ``cfg.architecture``."""
    if cfg.architecture == "conv":
        return _conv_module(cfg)
    if cfg.architecture == "set":
        return _set_module(cfg)
    raise ValueError(f"expected architecture 'conv' or 'set', got {cfg.architecture!r}")


def set_context(jet_pt: np.ndarray, jet_eta: np.ndarray, jet_mass: np.ndarray, n: np.ndarray) -> np.ndarray:
    """(n_jets, 4) gen-jet context of the set variant: log(pT/100 GeV), eta, log(m/10 GeV), log n."""
    return np.stack([
        np.log(np.maximum(jet_pt, 1e-3) / 100.0), jet_eta, np.log(np.maximum(jet_mass, 0.1) / 10.0),
        np.log(np.maximum(n, 1.0)),
    ], axis=1).astype(np.float32)


# ----------------------------------------------------------------------------- persistence
@dataclass
class LoadedVAE:
    """A model with everything inference needs: torch module, config, standardiser, metadata."""

    module: Any
    config: VAEConfig
    standardiser: Standardiser
    metadata: dict[str, Any] = field(default_factory=dict)
    # jet-mass calibration of the reco jets; fitted for these weights, so a model trained
    # further starts without one
    mass_calibration: MassCalibration | None = None


FORMAT = "hepfastsim.particle_vae/1"


def save_model(model: LoadedVAE, path: str | Path, half: bool = False) -> tuple[Path, Path]:
    """Write ``path.safetensors`` (weights, float16 with ``half``) and ``path.json`` (config, scaler, metadata)."""
    doc = {"format": FORMAT, "config": asdict(model.config), "standardiser": asdict(model.standardiser), **model.metadata}
    if model.mass_calibration is not None:
        doc["mass_calibration"] = model.mass_calibration.to_dict()
    return write_model(path, model.module.state_dict(), doc, half=half)


def load_model(path: str | Path) -> LoadedVAE:
    """Read a model written by :func:`save_model` (safetensors + JSON; no pickle)."""
    what = "particle-VAE model"
    state, meta = read_model(path, FORMAT, what=what, hint=" (train one with 'hepfastsim train particle-vae')")
    cfg = VAEConfig.from_dict(meta["config"])
    module = build_model(cfg)
    load_state(module, state, path, what=what)
    module.eval()
    std = Standardiser(tuple(meta["standardiser"]["mean"]), tuple(meta["standardiser"]["std"]))
    rest = {k: v for k, v in meta.items() if k not in ("format", "config", "standardiser", "mass_calibration")}
    calibration = None
    if "mass_calibration" in meta:
        from hepfastsim.errors import ModelError
        from hepfastsim.models.particle_vae_calibration import MassCalibration

        try:
            calibration = MassCalibration.from_dict(meta["mass_calibration"])
        except (KeyError, TypeError, ValueError) as err:
            raise ModelError(f"{what} {path}: unreadable 'mass_calibration' in its JSON ({err})") from err
    return LoadedVAE(module, cfg, std, rest, calibration)


def n_parameters(module: Any) -> int:
    return int(sum(p.numel() for p in module.parameters()))


# ----------------------------------------------------------------------------- inference
def _batches(n: int, size: int) -> Any:
    for s in range(0, n, size):
        yield s, min(n, s + size)


def decode_conv(model: LoadedVAE, gen_p: np.ndarray, eps: np.ndarray, batch: int = 4096) -> np.ndarray:
    """Reco (px, py, pz) in GeV (n_jets, 50, 3) from gen (px, py, pz) (n_jets, 50, 3), zero-padded.

    ``eps``: (n_jets, latent) standard normals; ``z = mu + exp(logvar / 2) * eps``.
    """
    torch = _torch()
    std = model.standardiser
    x = std.forward(gen_p.astype(np.float32))
    out = np.empty_like(x)
    with torch.inference_mode():
        for s, e in _batches(len(x), batch):
            mu, logvar = model.module.encode(torch.from_numpy(x[s:e]))
            z = mu + torch.exp(0.5 * logvar) * torch.from_numpy(eps[s:e].astype(np.float32))
            out[s:e] = model.module.decode(z).numpy()
    return std.inverse(out)


def encode_conv(model: LoadedVAE, gen_p: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Encoder mean and log-variance (n_jets, latent) of gen (px, py, pz) (n_jets, 50, 3)."""
    torch = _torch()
    with torch.inference_mode():
        mu, logvar = model.module.encode(torch.from_numpy(model.standardiser.forward(gen_p.astype(np.float32))))
    return mu.numpy(), logvar.numpy()


def encode_set(model: LoadedVAE, feats: np.ndarray, mask: np.ndarray, ctx: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    torch = _torch()
    with torch.inference_mode():
        mu, logvar, _, _ = model.module.encode(torch.from_numpy(model.standardiser.forward(feats)),
                                               torch.from_numpy(mask), torch.from_numpy(ctx))
    return mu.numpy(), logvar.numpy()


def decode_set(model: LoadedVAE, feats: np.ndarray, mask: np.ndarray, ctx: np.ndarray, eps: np.ndarray,
               u_mult: np.ndarray, batch: int = 4096, slot_eps: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Reco set features (n_jets, n_max, 3) (unstandardised, see :func:`set_features`) and the
    multiplicity (n_jets,) drawn by inverse CDF from ``u_mult`` (uniforms in (0, 1)).

    ``z = mu + sigma * eps`` from the gen encoder, or ``z = eps`` for ``posterior="reco"``;
    ``slot_eps`` (n_jets, n_max, slot_latent) normals: the per-slot latents of a model with
    ``slot_latent`` (required there)."""
    if model.config.slot_latent > 0 and slot_eps is None:
        raise ValueError("this particle-VAE model has per-slot latents: pass slot_eps")
    torch = _torch()
    std = model.standardiser
    x = std.forward(feats.astype(np.float32))
    out = np.empty_like(x)
    n_out = np.empty(len(x), np.int64)
    with torch.inference_mode():
        for s, e in _batches(len(x), batch):
            m = torch.from_numpy(mask[s:e])
            c = torch.from_numpy(ctx[s:e])
            mu, logvar, mem, pooled = model.module.encode(torch.from_numpy(x[s:e]), m, c)
            noise = torch.from_numpy(eps[s:e].astype(np.float32))
            z = noise if model.config.posterior == "reco" else mu + torch.exp(0.5 * logvar) * noise
            sz = None if slot_eps is None else torch.from_numpy(slot_eps[s:e].astype(np.float32))
            f, logits, _ = model.module.decode(z, c, mem, m, pooled, torch.from_numpy(x[s:e]), slot_z=sz)
            out[s:e] = f.numpy()
            cdf = torch.cumsum(torch.softmax(logits.double(), 1), 1).numpy()
            n_out[s:e] = np.sum(cdf < u_mult[s:e, None], axis=1)
    return std.inverse(out), np.minimum(n_out, model.config.n_max)


def kl_divergence(mu: Any, logvar: Any) -> Any:
    """KL(N(mu, sigma) || N(0, 1)) per jet, summed over the latent dimensions."""
    return -0.5 * (1 + logvar - mu * mu - logvar.exp()).sum(1)


def symmetric_kl(p: np.ndarray, q: np.ndarray, bins: int = 50) -> float:
    """Symmetrised KL divergence KL(P||Q) + KL(Q||P) of two samples, as seed 003 (Sec. 6): both
    rescaled with the min/max of ``q`` (the prediction) into [0, 1], histogrammed in ``bins``
    bins on [0, 1]; empty bins get 1e-10 probability."""
    p, q = np.asarray(p, np.float64), np.asarray(q, np.float64)
    lo, hi = np.min(q), np.max(q)
    scale = hi - lo if hi > lo else 1.0
    hp, _ = np.histogram((p - lo) / scale, bins=bins, range=(0.0, 1.0))
    hq, _ = np.histogram((q - lo) / scale, bins=bins, range=(0.0, 1.0))
    pp = np.maximum(hp / max(hp.sum(), 1), 1e-10)
    qq = np.maximum(hq / max(hq.sum(), 1), 1e-10)
    return float(np.sum(pp * np.log(pp / qq)) + np.sum(qq * np.log(qq / pp)))

