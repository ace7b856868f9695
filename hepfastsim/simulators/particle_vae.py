"""The particle VAE fast simulation (seed 003): gen constituents -> reco constituents -> reco jets.

Per event, every gen jet inside the model's input phase space (pT > ``gen_pt_min``,
|eta| < ``gen_eta_max``, at least one constituent) goes through the VAE:

1. its 50 leading gen constituents are encoded, ``z = mu + sigma * eps`` (``z = eps`` for a
   conditional VAE, ``posterior="reco"``, the shipped set model) with ``eps`` from
   ``normals(domain=DOMAIN_LATENT)`` (one stream per latent dimension, indexed by the gen
   jet's position in the event), and decoded into at most 50 reco constituents (the ``set``
   variant draws its multiplicity by inverse CDF from ``uniforms(domain=DOMAIN_MULTIPLICITY)``,
   and a model with per-slot latents takes them from ``normals(domain=DOMAIN_SLOT_LATENT)``);
2. the paper's acceptance is applied after inference (seed 003, Sec. 5): constituents with
   pT > ``cand_pt_min`` (0.25 GeV) and |eta| < ``cand_eta_max`` (3.2), then jets (the
   four-vector sum of the accepted constituents, massless) with pT > ``jet_pt_min``
   (200 GeV) and |eta| < ``jet_eta_max`` (2.5);
3. with a model that carries a jet-mass calibration
   (:mod:`hepfastsim.models.particle_vae_calibration`, the shipped set model does), each jet's
   accepted constituents are moved away from (or towards) its axis until the jet mass is the
   calibrated one; their pT are unchanged;
4. jet observables (pT, eta, phi, mass, N-subjettiness, pTD, Flow_1..4, ...) come from
   :func:`hepfastsim.jets.observables.jet_observables` on the accepted constituents.

Jets are sorted by decreasing pT; ``genJetIdx`` points to the gen jet. The constituents are
written as ``{prefix}PFCands_{pt,eta,phi,mass}`` and linked by
``{collection}PFCands_{jetIdx,pFCandsIdx}`` (PFNano's ``JetPFCands`` -> ``PFCands``). No
pileup-only jets are produced (the model maps gen jets; pileup jets above 200 GeV are rare).
Torch calls always see blocks of exactly :data:`_BLOCK` rows, so the output does not depend
on the chunking.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Literal

import awkward as ak
import numpy as np

from hepfastsim.kernels.rng import normals, uniforms
from hepfastsim.models.kinematics_flow import PAD_ROWS, padded_rows
from hepfastsim.models.particle_vae import CAND_ETA_MAX, CAND_PT_MIN
from hepfastsim.simulators.base import GenEvents, LearnedSimulator, register

__all__ = ["ParticleVAESimulator", "DEFAULT_WEIGHTS", "WEIGHTS_ENV", "simulate_constituents",
           "fit_mass_calibration_on_files"]

_DATA = Path(__file__).resolve().parents[1] / "models" / "data"
#: Shipped weights per architecture (``.safetensors`` + ``.json``); ``None`` = best measured.
DEFAULT_WEIGHTS: dict[str, Path] = {"set": _DATA / "particle_vae_set", "conv": _DATA / "particle_vae_conv"}
DEFAULT_ARCHITECTURE = "set"
WEIGHTS_ENV = "HEPFASTSIM_PARTICLE_VAE_WEIGHTS"

DOMAIN_LATENT = 301
DOMAIN_MULTIPLICITY = 302
DOMAIN_SLOT_LATENT = 303
_BLOCK = PAD_ROWS  # rows of every torch call (padded), so results do not depend on the chunking


def _flat(array: ak.Array, dtype: Any = np.float64) -> np.ndarray:
    return np.asarray(ak.to_numpy(ak.flatten(array, axis=1)), dtype=dtype)


def _blocks(x: np.ndarray) -> np.ndarray:
    return padded_rows(x, x.dtype)  # whole blocks of _BLOCK rows, dtype kept


def simulate_constituents(model: Any, gen_pt: np.ndarray, gen_eta: np.ndarray, gen_phi: np.ndarray,
                          gen_n: np.ndarray, jet: dict[str, np.ndarray], eps: np.ndarray, u_mult: np.ndarray,
                          slot_eps: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Reco constituents (pt GeV, eta, phi rad), each (n_jets, 50), pt = 0 for no particle.

    ``gen_*``: (n_jets, 50) padded gen constituents sorted by decreasing pT; ``gen_n`` their
    full counts; ``jet``: gen jet ``pt``, ``eta``, ``phi``, ``mass`` (n_jets,); ``eps``
    (n_jets, latent) normals; ``u_mult`` (n_jets,) uniforms (set variant only); ``slot_eps``
    (n_jets, 50, slot_latent) normals (models with per-slot latents only).
    """
    from hepfastsim.models import particle_vae as pv

    n = len(gen_pt)
    if model.config.architecture == "conv":
        p = pv.to_cartesian(gen_pt, gen_eta, gen_phi).astype(np.float32)
        out = pv.decode_conv(model, _blocks(p), _blocks(eps), batch=_BLOCK)[:n]
        return pv.to_polar(out.astype(np.float64))
    feats = pv.set_features(gen_pt, gen_eta, gen_phi, jet["pt"], jet["eta"], jet["phi"])
    ctx = pv.set_context(jet["pt"], jet["eta"], jet["mass"], gen_n)
    f, n_out = pv.decode_set(model, _blocks(feats), _blocks(gen_pt > 0), _blocks(ctx), _blocks(eps),
                             _blocks(u_mult), batch=_BLOCK, slot_eps=None if slot_eps is None else _blocks(slot_eps))
    f, n_out = f[:n].astype(np.float64), n_out[:n]
    pt, eta, phi = pv.set_to_polar(f, jet["pt"].astype(np.float64), jet["eta"].astype(np.float64),
                                   jet["phi"].astype(np.float64))
    pt = np.where(np.arange(pt.shape[1])[None, :] < n_out[:, None], pt, 0.0)
    return pt, eta, phi


@dataclass
class ParticleVAESimulator(LearnedSimulator):
    """Particle VAE of seed 003 (see the module docstring).

    ``architecture``: ``"set"`` (our masked set variant, the default and the shipped weights:
    a conditional VAE whose latent is drawn from N(0, 1); on held-out QCD its Flow_1..3 W1
    ratios are 1.3-1.8 against 10-22 for the paper's architecture) or ``"conv"`` (the paper's,
    not shipped); ``weights``: a model written by ``hepfastsim
    train particle-vae`` (overrides ``architecture``), else ``$HEPFASTSIM_PARTICLE_VAE_WEIGHTS``
    or the shipped weights of ``architecture``.
    """

    weights: str | os.PathLike[str] | None = None
    architecture: Literal["set", "conv"] | None = None
    gen_pt_min: float = 130.0
    gen_eta_max: float = 2.7
    cand_pt_min: float = CAND_PT_MIN
    cand_eta_max: float = CAND_ETA_MAX
    jet_pt_min: float = 200.0
    jet_eta_max: float = 2.5
    _model: Any = field(default=None, init=False, repr=False, compare=False)

    name: ClassVar[str] = "particle-vae"
    weights_env: ClassVar[str] = WEIGHTS_ENV
    needs_constituents: ClassVar[bool] = True
    output_fields: ClassVar[dict[str, np.dtype]] = {
        "pt": np.dtype(np.float32),
        "eta": np.dtype(np.float32),
        "phi": np.dtype(np.float32),
        "mass": np.dtype(np.float32),
        "genJetIdx": np.dtype(np.int32),
        "nConstituents": np.dtype(np.int32),
        "tau21": np.dtype(np.float32),
        "tau32": np.dtype(np.float32),
        "ptd": np.dtype(np.float32),
        "flow1": np.dtype(np.float32),
        "flow2": np.dtype(np.float32),
        "flow3": np.dtype(np.float32),
        "flow4": np.dtype(np.float32),
    }
    extra_collections: ClassVar[dict[str, dict[str, np.dtype]]] = {
        "{prefix}PFCands": {f: np.dtype(np.float32) for f in ("pt", "eta", "phi", "mass")},
        "{collection}PFCands": {"jetIdx": np.dtype(np.int32), "pFCandsIdx": np.dtype(np.int32)},
    }

    @property
    def weights_path(self) -> Path:  # the shipped default depends on the architecture
        if self.weights is not None:
            return Path(self.weights)
        if self.architecture is None and os.environ.get(WEIGHTS_ENV):  # set but empty: the default
            return Path(os.environ[WEIGHTS_ENV])
        return DEFAULT_WEIGHTS[self.architecture or DEFAULT_ARCHITECTURE]

    @property
    def model(self) -> Any:
        if self._model is None:
            from hepfastsim.errors import ModelError
            from hepfastsim.models.particle_vae import load_model

            path = self.weights_path
            if path == DEFAULT_WEIGHTS["conv"] and not path.with_suffix(".safetensors").exists():
                raise ModelError(
                    "the paper's conv VAE (6.2M parameters, 25 MB) is not shipped; train it with 'hepfastsim train "
                    "particle-vae --architecture conv --data FILES --out MODEL' and pass weights=MODEL "
                    f"(or ${WEIGHTS_ENV}=MODEL)")
            self._model = load_model(path)
        return self._model

    def simulate(self, events: GenEvents) -> ak.Array:
        return self.simulate_with_extras(events)[0]

    def simulate_with_extras(self, events: GenEvents) -> tuple[ak.Array, dict[str, ak.Array]]:
        from hepfastsim.errors import ModelError
        from hepfastsim.jets.observables import ObservablesConfig, jet_observables
        from hepfastsim.models.particle_vae import N_MAX
        from hepfastsim.models.particle_vae_train import padded_constituents

        if events.constituents is None:
            raise ModelError("the particle-vae model needs gen constituents (GenEvents.constituents)")
        m = self.model
        jets = events.jets
        n_events = len(events)
        counts = ak.to_numpy(ak.num(jets, axis=1)).astype(np.int64)
        offsets = np.concatenate([[0], np.cumsum(counts)])
        event_of_jet = np.repeat(np.arange(n_events), counts)
        local_idx = np.arange(offsets[-1]) - offsets[event_of_jet]
        gpt, geta, gphi, gmass = (_flat(jets[f]) for f in ("pt", "eta", "phi", "mass"))
        cands = ak.flatten(events.constituents, axis=1)
        n_cands = ak.to_numpy(ak.num(cands, axis=1)).astype(np.int64)
        with np.errstate(invalid="ignore"):
            sel = np.flatnonzero(np.isfinite(gpt) & np.isfinite(geta) & np.isfinite(gphi) & (gpt > self.gen_pt_min)
                                 & (np.abs(geta) < self.gen_eta_max) & (n_cands > 0))
        eps = normals(events.keys, offsets, m.config.latent, domain=DOMAIN_LATENT)[sel]
        u_mult = uniforms(events.keys, offsets, 1, domain=DOMAIN_MULTIPLICITY)[sel, 0]
        k = m.config.slot_latent
        slot_eps = None if k == 0 else normals(events.keys, offsets, N_MAX * k, domain=DOMAIN_SLOT_LATENT)[sel].reshape(
            len(sel), N_MAX, k)
        if len(sel):
            cpt, ceta, cphi, cn = padded_constituents(cands[sel], N_MAX)
            jet = {"pt": gpt[sel], "eta": geta[sel], "phi": gphi[sel], "mass": gmass[sel]}
            pt, eta, phi = simulate_constituents(m, cpt, ceta, cphi, cn, jet, eps, u_mult, slot_eps)
        else:
            pt = eta = phi = np.zeros((0, N_MAX))
        # acceptance after inference (paper Sec. 5), constituents sorted by decreasing pT per jet
        with np.errstate(invalid="ignore"):
            ok = np.isfinite(pt) & np.isfinite(eta) & (pt > self.cand_pt_min) & (np.abs(eta) < self.cand_eta_max)
        order = np.argsort(np.where(ok, -pt, np.inf), axis=1, kind="stable")
        pt, eta, phi, ok = (np.take_along_axis(a, order, 1) for a in (pt, eta, phi, ok))
        n_ok = ok.sum(1)
        w = np.where(ok, pt, 0.0)
        if m.mass_calibration is not None and len(sel):  # jet mass onto the reference's (see the docstring)
            from hepfastsim.models.particle_vae_calibration import jet_mass, stretch_to_mass

            target = m.mass_calibration.target_mass(gpt[sel], gmass[sel], jet_mass(w, eta, phi))
            eta, phi = stretch_to_mass(w, eta, phi, target)
        sx, sy, sz = (w * np.cos(phi)).sum(1), (w * np.sin(phi)).sum(1), (w * np.sinh(np.where(ok, eta, 0.0))).sum(1)
        jpt = np.hypot(sx, sy)
        with np.errstate(invalid="ignore", divide="ignore"):
            jeta = np.arcsinh(sz / np.where(jpt > 0, jpt, 1.0))
            keep = (n_ok > 0) & (jpt > self.jet_pt_min) & (np.abs(jeta) < self.jet_eta_max)
        k = np.flatnonzero(keep)
        ev = event_of_jet[sel][k]
        order_j = np.lexsort((-jpt[k], ev))
        k, ev = k[order_j], ev[order_j]
        out_counts = np.bincount(ev, minlength=n_events)
        n_per_kept = n_ok[k]
        c_pt, c_eta, c_phi = pt[k][ok[k]], eta[k][ok[k]], phi[k][ok[k]]  # kept jets' constituents, in order
        obs = jet_observables(ak.unflatten(ak.zip({"pt": c_pt, "eta": c_eta, "phi": c_phi}), n_per_kept),
                              ObservablesConfig(flow_jet_radius=0.4, n_flows=4))
        cols = {"pt": obs.pt, "eta": obs.eta, "phi": obs.phi, "mass": obs.mass, "nConstituents": n_per_kept,
                "tau21": obs.tau21, "tau32": obs.tau32, "ptd": obs.ptd,
                **{f"flow{i}": obs[f"flow{i}"] for i in range(1, 5)}}
        cols = {name: np.asarray(v) for name, v in cols.items()}
        cols["genJetIdx"] = local_idx[sel][k]
        record = {f: cols[f].astype(dt) for f, dt in self.output_fields.items()}
        reco = ak.unflatten(ak.zip(record), out_counts)

        # PFNano links: jet index within the event's output jets, candidate index within the event
        per_event_cands = np.bincount(ev, weights=n_per_kept, minlength=n_events).astype(np.int64)
        ev_cand_off = np.concatenate([[0], np.cumsum(per_event_cands)])
        jet_off = np.concatenate([[0], np.cumsum(out_counts)])
        jet_idx_local = np.repeat(np.arange(len(k)) - jet_off[ev], n_per_kept)
        cand_idx_local = np.arange(len(c_pt)) - ev_cand_off[np.repeat(ev, n_per_kept)]
        pf = ak.unflatten(ak.zip({"pt": c_pt.astype(np.float32), "eta": c_eta.astype(np.float32),
                                  "phi": c_phi.astype(np.float32), "mass": np.zeros(len(c_pt), np.float32)}),
                          per_event_cands)
        links = ak.unflatten(ak.zip({"jetIdx": jet_idx_local.astype(np.int32),
                                     "pFCandsIdx": cand_idx_local.astype(np.int32)}), per_event_cands)
        return reco, {"{prefix}PFCands": pf, "{collection}PFCands": links}


register("particle-vae")(ParticleVAESimulator)


def fit_mass_calibration_on_files(
    model: Any,
    paths: Sequence[str | os.PathLike[str]],
    *,
    seed: int = 0,
    tree: str = "Events",
    max_events: int | None = None,
    bins: tuple[int, int] = (4, 4),
    min_jets: int = 500,
    cuts_from: ParticleVAESimulator | None = None,
    on_progress: Callable[[str, int, int], None] | None = None,
) -> Any:
    """Jet-mass calibration (:class:`~hepfastsim.models.particle_vae_calibration.MassCalibration`)
    of ``model`` (a :class:`~hepfastsim.models.particle_vae.LoadedVAE`; any calibration it has is
    ignored) fitted on the gen-matched reco jets of ``paths`` (PFNano: ``Jet`` linked to
    ``PFCands`` by ``JetPFCands``, jets built as in ``validate --level particles``) and on the
    model's own jets for the gen jets of the same events (keys from ``seed``). The input
    phase space and acceptance are those of ``cuts_from`` (default: the simulator's defaults);
    every one of the ``bins`` (gen pT x gen m/pT) needs ``min_jets`` jets on each side.
    ``on_progress(path, events_done, events_total)`` after each chunk.
    """
    from dataclasses import replace

    from hepfastsim.evaluation.validate_particles import ParticleCuts, read_particle_jets
    from hepfastsim.io.nanoaod import constituent_branches, gen_branches, iterate_chunks, open_tree
    from hepfastsim.kernels.rng import event_keys
    from hepfastsim.models.particle_vae_calibration import fit_mass_calibration

    sim = replace(cuts_from or ParticleVAESimulator(), weights=None)
    sim._model = replace(model, mass_calibration=None)
    cuts = ParticleCuts(sim.cand_pt_min, sim.cand_eta_max, sim.jet_pt_min, sim.jet_eta_max)
    ref: dict[str, list[np.ndarray]] = {"gen_pt": [], "gen_mass": [], "mass": []}
    out: dict[str, list[np.ndarray]] = {"gen_pt": [], "gen_mass": [], "mass": []}
    for path in paths:
        jets = read_particle_jets(path, "Jet", "PFCands", "JetPFCands", tree=tree, max_events=max_events, cuts=cuts).jets
        for key in ref:
            ref[key].append(jets[key])
        source = open_tree(path, tree)
        stop = source.num_entries if max_events is None else min(max_events, source.num_entries)
        for chunk in iterate_chunks(source, gen_branches(source) + constituent_branches(source), entry_stop=stop):
            entries = np.arange(chunk.entry_start, chunk.entry_stop, dtype=np.int64)
            events = GenEvents.from_branches(chunk.arrays, event_keys(seed, source.file_key, entries), constituents=True)
            reco = sim.simulate(events)
            gen = events.jets[reco.genJetIdx]
            out["gen_pt"].append(_flat(gen.pt))
            out["gen_mass"].append(_flat(gen.mass))
            out["mass"].append(_flat(reco.mass))
            if on_progress is not None:
                on_progress(str(path), int(chunk.entry_stop), stop)
    record = {"files": [str(p) for p in paths], "seed": seed, "max_events_per_file": max_events,
              "cuts": {"constituent_pt_min_gev": cuts.cand_pt_min, "constituent_abs_eta_max": cuts.cand_eta_max,
                       "jet_pt_min_gev": cuts.jet_pt_min, "jet_abs_eta_max": cuts.jet_eta_max}}
    return fit_mass_calibration({k: np.concatenate(v) for k, v in out.items()},
                                {k: np.concatenate(v) for k, v in ref.items()}, bins=bins, min_jets=min_jets,
                                record=record)
