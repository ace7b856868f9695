"""Paired gen / reco constituent lists and the training loop of the particle VAE (seed 003).

Pairs: every reco jet (``Jet``) inside the training phase space (constituent-sum pT above
``pt_min``, |eta| below ``eta_max``) that points to a gen jet through ``Jet_genJetIdx``.
Its constituents are the ``PFCands`` linked by ``JetPFCands``; the gen jet's are the
``GenCands`` linked by ``GenJetCands``. Both lists are sorted by decreasing pT and cut
or zero-padded to 50 (paper Sec. 3). The paper trains in an extended phase space
(jet pT > 130 GeV, constituents down to 0) and applies the analysis cuts (jet pT > 200 GeV,
constituent pT > 250 MeV, |eta| < 3.2) after inference (Sec. 5): ``pt_min`` defaults to 130.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import awkward as ak
import numpy as np

from hepfastsim.errors import HepfastsimError
from hepfastsim.io.nanoaod import iterate_chunks, jet_constituents, open_tree
from hepfastsim.models.particle_vae import (
    CAND_ETA_MAX,
    CAND_PT_MIN,
    N_MAX,
    LoadedVAE,
    Standardiser,
    VAEConfig,
    build_model,
    chamfer,
    jet_pt_mass,
    kl_divergence,
    set_context,
    set_features,
    to_cartesian,
)

__all__ = ["PairData", "TrainConfig", "PAIR_BRANCHES", "load_pairs", "padded_constituents", "response_w2", "train_vae"]

PAIR_BRANCHES: tuple[str, ...] = (
    "GenJet_pt", "GenJet_eta", "GenJet_phi", "GenJet_mass",
    "Jet_pt", "Jet_eta", "Jet_phi", "Jet_mass", "Jet_genJetIdx",
    "GenCands_pt", "GenCands_eta", "GenCands_phi", "GenCands_mass", "GenJetCands_jetIdx", "GenJetCands_pFCandsIdx",
    "PFCands_pt", "PFCands_eta", "PFCands_phi", "PFCands_mass", "JetPFCands_jetIdx", "JetPFCands_pFCandsIdx",
)

_ARRAYS = ("gen_pt", "gen_eta", "gen_phi", "reco_pt", "reco_eta", "reco_phi", "gen_n", "reco_n",
           "genjet_pt", "genjet_eta", "genjet_phi", "genjet_mass", "recojet_pt", "recojet_eta", "recojet_phi",
           "recojet_mass", "event")


@dataclass
class PairData:
    """Paired jets; constituent arrays are (n_jets, 50) float32 sorted by decreasing pT, zero-padded.

    ``gen_n`` / ``reco_n``: full constituent counts; ``genjet_*``: the GenJet record;
    ``recojet_*``: the reco jet as the sum of all its (massive) constituents; ``event``: a
    global event id (file index * 10^8 + entry).
    """

    gen_pt: np.ndarray
    gen_eta: np.ndarray
    gen_phi: np.ndarray
    reco_pt: np.ndarray
    reco_eta: np.ndarray
    reco_phi: np.ndarray
    gen_n: np.ndarray
    reco_n: np.ndarray
    genjet_pt: np.ndarray
    genjet_eta: np.ndarray
    genjet_phi: np.ndarray
    genjet_mass: np.ndarray
    recojet_pt: np.ndarray
    recojet_eta: np.ndarray
    recojet_phi: np.ndarray
    recojet_mass: np.ndarray
    event: np.ndarray

    def __len__(self) -> int:
        return len(self.gen_pt)

    def subset(self, idx: np.ndarray) -> PairData:
        return PairData(**{k: getattr(self, k)[idx] for k in _ARRAYS})

    def save(self, path: str | Path) -> None:
        np.savez(path, **{k: getattr(self, k) for k in _ARRAYS})

    @classmethod
    def load(cls, path: str | Path) -> PairData:
        with np.load(path) as f:
            return cls(**{k: f[k] for k in _ARRAYS})

    @classmethod
    def concatenate(cls, parts: Sequence[PairData]) -> PairData:
        return cls(**{k: np.concatenate([getattr(p, k) for p in parts]) for k in _ARRAYS})


def padded_constituents(cands: ak.Array, n_max: int = N_MAX) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """[jet][constituent] records (pt, eta, phi) -> pt, eta, phi (n_jets, n_max) float32 sorted by
    decreasing pT and zero-padded, and the full counts (n_jets,) int64."""
    order = ak.argsort(cands.pt, axis=1, ascending=False)
    c = cands[order]
    out = []
    for f in ("pt", "eta", "phi"):
        padded = ak.fill_none(ak.pad_none(c[f], n_max, axis=1, clip=True), 0.0)
        out.append(np.asarray(ak.to_numpy(padded), dtype=np.float32).reshape(len(cands), n_max))
    return out[0], out[1], out[2], ak.to_numpy(ak.num(cands, axis=1)).astype(np.int64)


def constituent_jets(cands: ak.Array) -> dict[str, np.ndarray]:
    """pt, eta, phi, mass (GeV, rad; float64) of the four-vector sum of each jet's constituents."""
    pt, eta, phi = cands.pt, cands.eta, cands.phi
    mass = cands.mass if "mass" in cands.fields else ak.zeros_like(pt)
    px, py, pz = pt * np.cos(phi), pt * np.sin(phi), pt * np.sinh(eta)
    e = np.sqrt(px**2 + py**2 + pz**2 + mass**2)
    sx, sy, sz, se = (np.asarray(ak.to_numpy(ak.sum(v, axis=1)), np.float64) for v in (px, py, pz, e))
    jpt = np.hypot(sx, sy)
    with np.errstate(divide="ignore", invalid="ignore"):
        jeta = np.where(jpt > 0, np.arcsinh(sz / np.where(jpt > 0, jpt, 1.0)), 0.0)
    return {"pt": jpt, "eta": jeta, "phi": np.arctan2(sy, sx),
            "mass": np.sqrt(np.maximum(se**2 - sx**2 - sy**2 - sz**2, 0.0))}


def load_pairs(
    paths: Sequence[str],
    *,
    pt_min: float = 130.0,
    eta_max: float = 2.5,
    n_max: int = N_MAX,
    max_events: int | None = None,
    tree: str = "Events",
    on_progress: Callable[[str, int, int], None] | None = None,
) -> PairData:
    """Paired gen / reco constituent lists of every matched reco jet in the phase space (module doc)."""
    parts: list[PairData] = []
    for i_file, path in enumerate(paths):
        source = open_tree(path, tree)
        source.require(PAIR_BRANCHES)
        total = source.num_entries if max_events is None else min(max_events, source.num_entries)
        for chunk in iterate_chunks(source, list(PAIR_BRANCHES), step_size=50_000, entry_stop=total):
            a = chunk.arrays
            reco_c = jet_constituents(a, candidates="PFCands", links="JetPFCands", jets="Jet")
            gen_c = jet_constituents(a)
            rj = {k: ak.unflatten(v, ak.num(a["Jet_pt"], axis=1)) for k, v in
                  constituent_jets(ak.flatten(reco_c, axis=1)).items()}
            gidx = a["Jet_genJetIdx"]
            n_gen = ak.num(a["GenJet_pt"], axis=1)
            sel = (rj["pt"] > pt_min) & (np.abs(rj["eta"]) < eta_max) & (gidx >= 0) & (gidx < n_gen)
            n_sel = ak.to_numpy(ak.sum(sel, axis=1))
            gen_offsets = np.concatenate([[0], np.cumsum(ak.to_numpy(n_gen))])
            ev = np.repeat(np.arange(len(n_sel)), n_sel)
            g = gen_offsets[ev] + ak.to_numpy(ak.flatten(gidx[sel])).astype(np.int64)  # global gen jet index
            entries = np.arange(chunk.entry_start, chunk.entry_stop, dtype=np.int64)
            gpt, geta, gphi, gn = padded_constituents(ak.flatten(gen_c, axis=1)[g], n_max)
            rpt, reta, rphi, rn = padded_constituents(ak.flatten(reco_c[sel], axis=1), n_max)

            def jet_field(name: str) -> np.ndarray:
                return np.asarray(ak.to_numpy(ak.flatten(a[name])), np.float32)[g]

            parts.append(PairData(
                gen_pt=gpt, gen_eta=geta, gen_phi=gphi, reco_pt=rpt, reco_eta=reta, reco_phi=rphi,
                gen_n=gn, reco_n=rn,
                genjet_pt=jet_field("GenJet_pt"), genjet_eta=jet_field("GenJet_eta"),
                genjet_phi=jet_field("GenJet_phi"), genjet_mass=jet_field("GenJet_mass"),
                **{f"recojet_{k}": np.asarray(ak.to_numpy(ak.flatten(v[sel])), np.float32) for k, v in rj.items()},
                event=np.repeat(entries + i_file * 10**8, n_sel),
            ))
            if on_progress is not None:
                on_progress(path, len(chunk), total)
    if not parts or sum(len(p) for p in parts) == 0:
        raise HepfastsimError(f"no matched reco jets with pT > {pt_min} GeV and |eta| < {eta_max} in {list(paths)}")
    return PairData.concatenate(parts)


# ----------------------------------------------------------------------------- training
@dataclass(frozen=True)
class TrainConfig:
    """Options of ``hepfastsim train particle-vae``.

    The paper trains with Adam at 1e-4 for 300 epochs (best epoch 100); within a CPU budget we
    use a larger rate with cosine decay and keep the best held-out epoch.
    """

    epochs: int = 20
    batch_size: int = 256
    learning_rate: float = 1e-3
    holdout_fraction: float = 0.1
    max_minutes: float | None = None
    seed: int = 0
    max_holdout_jets: int = 5000
    eval_every: int = 200  # steps between held-out evaluations (the best is kept)


def _features(data: PairData, cfg: VAEConfig) -> dict[str, np.ndarray]:
    """Model inputs/targets (unstandardised) for every jet of ``data``."""
    if cfg.architecture == "conv":
        return {"x": to_cartesian(data.gen_pt, data.gen_eta, data.gen_phi).astype(np.float32),
                "y": to_cartesian(data.reco_pt, data.reco_eta, data.reco_phi).astype(np.float32)}
    jpt, jeta, jphi = data.genjet_pt, data.genjet_eta, data.genjet_phi
    return {
        "x": set_features(data.gen_pt, data.gen_eta, data.gen_phi, jpt, jeta, jphi),
        "y": set_features(data.reco_pt, data.reco_eta, data.reco_phi, jpt, jeta, jphi),
        "mx": data.gen_pt > 0, "my": data.reco_pt > 0,
        "ctx": set_context(jpt, jeta, data.genjet_mass, data.gen_n),
        "jet": np.stack([jpt, jeta, jphi], 1).astype(np.float32),
    }


def fit_standardiser(data: PairData, cfg: VAEConfig) -> Standardiser:
    f = _features(data, cfg)
    real = np.concatenate([f["x"][data.gen_pt > 0], f["y"][data.reco_pt > 0]])
    return Standardiser.fit(real.astype(np.float64))


def _loss_conv(module: Any, b: dict[str, Any], std: Any, cfg: VAEConfig) -> tuple[Any, dict[str, float]]:
    torch = __import__("torch")
    mean, sd = std
    x = (b["x"] - mean) / sd
    y = (b["y"] - mean) / sd
    mu, logvar = module.encode(x)
    z = mu + torch.exp(0.5 * logvar) * torch.randn_like(mu)
    out = module.decode(z)
    rec = chamfer(y, out)
    p = (out * sd + mean) / cfg.jet_scale_gev
    t = b["y"] / cfg.jet_scale_gev
    pt_hat, m_hat = jet_pt_mass(p[..., 0], p[..., 1], p[..., 2])
    pt, m = jet_pt_mass(t[..., 0], t[..., 1], t[..., 2])
    kl = kl_divergence(mu, logvar)
    lm, lpt = (m - m_hat) ** 2, (pt - pt_hat) ** 2
    loss = cfg.beta * kl + (1 - cfg.beta) * (rec + cfg.alpha_m * lm + cfg.alpha_pt * lpt)
    parts = {"kl": kl.mean().item(), "chamfer": rec.mean().item(), "mass": lm.mean().item(), "pt": lpt.mean().item()}
    return loss.mean(), parts


def _set_jet(f: Any, jet: Any, mask: Any, scale: float, accept: bool = False) -> tuple[Any, Any]:
    """Jet pT, mass (/ ``scale`` GeV) of unstandardised set features (B, n, 3) with mask;
    ``accept``: only constituents inside the paper's acceptance (:data:`CAND_PT_MIN`, :data:`CAND_ETA_MAX`)."""
    torch = __import__("torch")
    from hepfastsim.models.particle_vae import ANGLE_SCALE

    pt = torch.exp(torch.clamp(f[..., 0], max=5.0)) * jet[:, :1]
    eta = f[..., 1] * ANGLE_SCALE + jet[:, 1:2]
    dphi = f[..., 2] * ANGLE_SCALE
    if accept:
        mask = mask & (pt.detach() > CAND_PT_MIN) & (eta.detach().abs() < CAND_ETA_MAX)
    pt = pt / scale
    return jet_pt_mass(pt * torch.cos(dphi), pt * torch.sin(dphi), pt * torch.sinh(eta), weight=mask.to(f.dtype))


def _loss_set(module: Any, b: dict[str, Any], std: Any, cfg: VAEConfig) -> tuple[Any, dict[str, float]]:
    torch = __import__("torch")
    mean, sd = std
    x = (b["x"] - mean) / sd
    y = (b["y"] - mean) / sd
    mx, my = b["mx"], b["my"]
    mu, logvar, mem, pooled = module.encode(x, mx, b["ctx"])
    if cfg.posterior == "reco":  # conditional VAE: posterior from the reco jet, N(0, 1) prior
        mu, logvar = module.encode_reco(y, my, b["ctx"], pooled)
    z = mu + torch.exp(0.5 * logvar) * torch.randn_like(mu)
    out, logits, slot_kl = module.decode(z, b["ctx"], mem, mx, pooled, x, reco=(y, my) if cfg.slot_latent else None)
    n_true = my.sum(1)
    slot_mask = torch.arange(out.shape[1])[None] < n_true[:, None]  # teacher-forced multiplicity
    rec = chamfer(y, out, my, slot_mask)
    pt_hat, m_hat = _set_jet(out * sd + mean, b["jet"], slot_mask, cfg.jet_scale_gev)
    pt, m = _set_jet(b["y"], b["jet"], my, cfg.jet_scale_gev)
    kl = kl_divergence(mu, logvar)
    if slot_kl is not None:  # the per-slot latents of the live slots (teacher-forced multiplicity)
        kl = kl + (slot_kl * slot_mask).sum(1)
    lm, lpt = (m - m_hat) ** 2, (pt - pt_hat) ** 2
    ce = torch.nn.functional.cross_entropy(logits, n_true, reduction="none")
    loss = cfg.beta * kl + (1 - cfg.beta) * (rec + cfg.alpha_m * lm + cfg.alpha_pt * lpt) + cfg.multiplicity_weight * ce
    parts = {"kl": kl.mean().item(), "chamfer": rec.mean().item(), "mass": lm.mean().item(), "pt": lpt.mean().item(),
             "multiplicity": ce.mean().item()}
    loss = loss.mean()
    if cfg.alpha_dist > 0 and cfg.posterior == "reco":
        # jets decoded as at inference (prior z, sampled multiplicity, acceptance) against the
        # accepted reco jets of the batch; the multiplicity draw itself is not differentiated
        z_slots = torch.randn(*out.shape[:2], cfg.slot_latent) if cfg.slot_latent else None
        out_p, logits_p, _ = module.decode(torch.randn_like(mu), b["ctx"], mem, mx, pooled, x, slot_z=z_slots)
        with torch.no_grad():
            n_p = torch.multinomial(torch.softmax(logits_p, 1), 1)[:, 0]
        slot_p = torch.arange(out_p.shape[1])[None] < n_p[:, None]
        pt_p, m_p = _set_jet(out_p * sd + mean, b["jet"], slot_p, cfg.jet_scale_gev, accept=True)
        pt_a, m_a = _set_jet(b["y"], b["jet"], my, cfg.jet_scale_gev, accept=True)
        dist = response_w2(pt_p, m_p, pt_a, m_a, b["jet"][:, 0], b["ctx"][:, 2], cfg.jet_scale_gev)
        loss = loss + (1 - cfg.beta) * cfg.alpha_dist * dist
        parts["dist"] = dist.item()
    return loss, parts


def response_w2(pt_hat: Any, m_hat: Any, pt: Any, m: Any, gen_pt: Any, gen_log_m: Any, scale: float) -> Any:
    """Sum over jet pT and mass of the squared 1-d Wasserstein-2 distance between the batch
    distributions of the log responses of generated (``*_hat``) and reco jets, each divided by
    the variance of the reco responses (the pT response is ~4x narrower than the mass one and
    would otherwise carry ~1/16 of the weight).

    ``pt*``, ``m*``: (B,) in units of ``scale`` GeV; ``gen_pt``: (B,) GeV; ``gen_log_m``: the
    set context's log(m_gen / 10 GeV). 1-d W2 between equal-size samples is the mean squared
    difference of the sorted values, so the term is differentiable through ``torch.sort``.
    """
    torch = __import__("torch")
    gen_m = 10.0 * torch.exp(gen_log_m)
    r_pt = lambda p: torch.log((p * scale).clamp(min=1e-3) / gen_pt)  # noqa: E731  (a jet left empty by the acceptance)
    r_m = lambda q: torch.log1p(q * scale) - torch.log1p(gen_m)  # noqa: E731
    w2 = lambda a, c: ((torch.sort(a).values - torch.sort(c).values) ** 2).mean() / c.var().clamp(min=1e-6)  # noqa: E731
    return w2(r_pt(pt_hat), r_pt(pt)) + w2(r_m(m_hat), r_m(m))


def train_vae(
    data: PairData,
    cfg: VAEConfig = VAEConfig(),
    train_cfg: TrainConfig = TrainConfig(),
    on_epoch: Callable[[int, int, float, float, dict[str, float]], None] | None = None,  # (step, steps, train, held, parts)
    init: LoadedVAE | None = None,
) -> LoadedVAE:
    """Train on ``data`` (events split by a seeded draw into training / held-out); keep the best
    held-out epoch. Metadata records the per-epoch losses."""
    import torch

    torch.manual_seed(train_cfg.seed)
    rng = np.random.default_rng(train_cfg.seed)
    events = np.unique(data.event)
    held_events = events[rng.random(len(events)) < train_cfg.holdout_fraction]
    held = np.isin(data.event, held_events)
    train_idx, held_idx = np.flatnonzero(~held), np.flatnonzero(held)[: train_cfg.max_holdout_jets]
    if len(train_idx) == 0 or len(held_idx) == 0:
        raise HepfastsimError(f"need jets for training and held-out sets, got {len(train_idx)} and {len(held_idx)}")
    standardiser = init.standardiser if init is not None else fit_standardiser(data.subset(train_idx), cfg)
    feats = {k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in _features(data, cfg).items()}
    std_t = (torch.tensor(standardiser.mean, dtype=torch.float32), torch.tensor(standardiser.std, dtype=torch.float32))
    module = build_model(cfg)
    if init is not None:
        # a model gaining slot latents (or their learned prior) keeps every weight of ``init``;
        # its new slot_* modules start as built: zero input weights and a prior that starts as
        # N(0, 1), so it decodes exactly what ``init`` does
        missing, unexpected = module.load_state_dict(init.module.state_dict(), strict=False)
        grows = cfg.slot_latent > 0 and init.config.slot_latent in (0, cfg.slot_latent)
        new = [k for k in missing if not (k.startswith("slot_") and grows)]
        if new or unexpected:
            raise HepfastsimError(f"the initial model does not fit this architecture: missing {new}, "
                                  f"unexpected {list(unexpected)}")
    loss_fn = _loss_conv if cfg.architecture == "conv" else _loss_set
    opt = torch.optim.Adam(module.parameters(), lr=train_cfg.learning_rate)
    steps_per_epoch = max(1, len(train_idx) // train_cfg.batch_size)
    total_steps = train_cfg.epochs * steps_per_epoch
    start = time.perf_counter()
    budget = None if train_cfg.max_minutes is None else 60.0 * train_cfg.max_minutes
    best: tuple[float, dict[str, Any], int] | None = None
    history: list[dict[str, Any]] = []
    held_batch = {k: v[torch.from_numpy(held_idx)] for k, v in feats.items()}
    step, total, n_b, done = 0, 0.0, 0, False
    while not done:
        order = torch.from_numpy(rng.permutation(train_idx))
        for s in range(0, steps_per_epoch * train_cfg.batch_size, train_cfg.batch_size):
            # cosine decay over whichever runs out first: the epochs or the wall-clock budget
            progress = step / total_steps
            if budget is not None:
                progress = max(progress, (time.perf_counter() - start) / budget)
            if progress >= 1.0:
                done = True
                break
            for group in opt.param_groups:
                group["lr"] = train_cfg.learning_rate * 0.5 * (1.0 + math.cos(math.pi * progress))
            module.train()
            idx = order[s:s + train_cfg.batch_size]
            loss, _ = loss_fn(module, {k: v[idx] for k, v in feats.items()}, std_t, cfg)
            opt.zero_grad()
            loss.backward()
            torch.nn.utils.clip_grad_norm_(module.parameters(), 10.0)
            opt.step()
            total += loss.item()
            n_b += 1
            step += 1
            if step % train_cfg.eval_every == 0 or step == total_steps:
                module.eval()
                with torch.no_grad():
                    torch.manual_seed(train_cfg.seed + 1000)
                    held_loss, parts = loss_fn(module, held_batch, std_t, cfg)
                h = float(held_loss.item())
                history.append({"step": step, "epoch": round(step / steps_per_epoch, 3), "train": total / n_b,
                                "held_out": h, **parts, "seconds": round(time.perf_counter() - start, 1)})
                if best is None or h < best[0]:
                    best = (h, {k: v.detach().clone() for k, v in module.state_dict().items()}, step)
                if on_epoch is not None:
                    on_epoch(step, total_steps, total / n_b, h, parts)
                total, n_b = 0.0, 0
    if best is None:  # budget ran out before the first evaluation
        module.eval()
        with torch.no_grad():
            held_loss, _ = loss_fn(module, held_batch, std_t, cfg)
        best = (float(held_loss.item()), {k: v.detach().clone() for k, v in module.state_dict().items()}, step)
    assert best is not None
    module.load_state_dict(best[1])
    module.eval()
    meta = {"training": {
        "config": asdict(train_cfg), "jets": int(len(train_idx)), "held_out_jets": int(held.sum()),
        "best_step": best[2], "steps": step, "steps_per_epoch": steps_per_epoch, "best_held_out_loss": best[0], "history": history,
        "seconds": round(time.perf_counter() - start, 1),
    }}
    return LoadedVAE(module, cfg, standardiser, meta)
