"""Training of the kinematics model on any NanoAOD-like files with gen and reco jets.

Input: ``GenJet_{pt,eta,phi,mass}`` (flavours optional), ``Jet_{pt,eta,phi,mass,genJetIdx,
nConstituents,area}``, and when present ``Pileup_nPU`` and the rho branch. A gen jet is
*matched* when a reco jet points to it through ``Jet_genJetIdx`` (the leading one if
several do); reco jets with ``genJetIdx < 0`` (or pointing outside the GenJet list) are the
unmatched (pileup and fake) jets. Events are split into training and held-out sets by a
seeded draw per event; the held-out loss picks the best epoch of each network.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field, replace
from typing import Any

import awkward as ak
import numpy as np

from hepfastsim.errors import HepfastsimError
from hepfastsim.evaluation.metrics import DEFAULT_ETA_EDGES, DEFAULT_PT_EDGES
from hepfastsim.io.nanoaod import (
    GENJET_KINEMATICS,
    PILEUP_BRANCH,
    RHO_BRANCHES,
    gen_branches,
    iterate_chunks,
    open_tree,
)
from hepfastsim.jets.origin import singlet_daughter
from hepfastsim.models.kinematics_calibration import fit_response_calibration
from hepfastsim.models.kinematics_flow import (
    ARCH_DEFAULTS,
    CONTEXT_NAMES,
    Architecture,
    LoadedModel,
    QuantileScaler,
    Scaler,
    area_inputs,
    build_model,
    decode_matched,
    extend_context,
    fake_context,
    fake_targets,
    find_lattice,
    flow_inverse,
    gen_context,
    lattice_index,
    matched_targets,
    n_parameters,
    nearest_neighbour_dr,
)
from hepfastsim.models.moving_average import check_decay, moving_average

__all__ = ["NETWORKS", "RECO_BRANCHES", "TrainConfig", "TrainingData", "balance_weights", "calibrate_fake_flow",
           "calibrate_response", "load_training_data", "train_kinematics"]

#: The networks of the model, in training order (attribute names of the torch module).
NETWORKS: tuple[str, ...] = ("flow", "efficiency", "fake_count", "fake_flow", "area")

RECO_BRANCHES: tuple[str, ...] = (
    "Jet_pt", "Jet_eta", "Jet_phi", "Jet_mass", "Jet_genJetIdx", "Jet_nConstituents", "Jet_area",
)


@dataclass(frozen=True)
class TrainConfig:
    """Options of ``hepfastsim train kinematics``."""

    epochs: int = 30
    batch_size: int = 4096
    learning_rate: float = 2e-3
    holdout_fraction: float = 0.1
    max_events: int | None = None  # per file
    seed: int = 0
    arch: Architecture = ARCH_DEFAULTS
    # wall-clock budget of each network's training (the flow gets the share ``flow_share``)
    max_minutes: float | None = None
    flow_share: float = 0.6
    tree: str = "Events"
    # the efficiency and count networks are cheap: they get this many times the epochs
    small_net_epoch_factor: int = 3
    # networks trained by this run; with ``init`` the others keep its weights unchanged
    networks: tuple[str, ...] = NETWORKS
    # with ``init``: networks rebuilt from scratch (weights, and for the flows their target
    # quantile maps and lattices refitted to ``data``) before training
    fresh: tuple[str, ...] = ()
    # with ``init``: refit the target quantile maps of the flows trained here to ``data`` (at
    # the current knot spacing) and start from the old weights (the new map differs from the
    # old one by small wiggles that the continued training absorbs)
    refit_maps: bool = False
    # decay of an exponential moving average of the weights, updated every step; the average
    # is what the held-out loss scores and what is kept (None: the raw weights)
    ema_decay: float | None = None
    # with ``init``: context columns to add to its networks (zero input weights, so the model
    # starts from exactly what ``init`` computes), e.g. ("singlet_daughter",)
    add_context: tuple[str, ...] = ()
    # matched flow: weight each jet's loss by how rare its gen (ln pT, |eta|) cell is
    # (:func:`balance_weights`, at most this weight); 1 = every jet counts the same
    balance_max_weight: float = 1.0

    def __post_init__(self) -> None:
        check_decay(self.ema_decay)
        if not self.balance_max_weight >= 1.0:
            raise HepfastsimError(f"balance_max_weight must be at least 1, got {self.balance_max_weight}")
        for option in ("networks", "fresh"):
            unknown = sorted(set(getattr(self, option)) - set(NETWORKS))
            if unknown:
                raise HepfastsimError(f"unknown network(s) {unknown} in {option}; choose from {list(NETWORKS)}")
        if not self.networks:
            raise HepfastsimError("no network to train: networks is empty")
        untrained = sorted(set(self.fresh) - set(self.networks))
        if untrained:
            raise HepfastsimError(f"network(s) {untrained} would be rebuilt but not trained: add them to networks")


@dataclass
class TrainingData:
    """Flat numpy arrays extracted from the training files (float64 unless stated)."""

    context: np.ndarray  # (n_gen_jets, C)
    matched: np.ndarray  # (n_gen_jets,) bool
    jet_holdout: np.ndarray  # (n_gen_jets,) bool
    targets: np.ndarray  # (n_matched, 6), column 4 holds the integer count (dequantised later)
    matched_holdout: np.ndarray  # (n_matched,) bool
    matched_context_rows: np.ndarray  # (n_matched,) int64 rows of ``context``
    event_context: np.ndarray  # (n_events, 3)
    fake_counts: np.ndarray  # (n_events,) int64
    event_holdout: np.ndarray  # (n_events,) bool
    fake_jets: np.ndarray  # (n_fakes, 5), column 3 holds the integer count
    fake_event: np.ndarray  # (n_fakes,) int64 rows of ``event_context``
    fake_pt_floor: float
    files: list[dict[str, Any]] = field(default_factory=list)

    def summary(self) -> dict[str, Any]:
        return {
            "events": int(len(self.event_context)),
            "gen_jets": int(len(self.context)),
            "matched_jets": int(self.matched.sum()),
            "unmatched_reco_jets": int(len(self.fake_jets)),
            "holdout_events": int(self.event_holdout.sum()),
            "efficiency": float(self.matched.mean()) if len(self.matched) else float("nan"),
            "mean_unmatched_per_event": float(self.fake_counts.mean()) if len(self.fake_counts) else float("nan"),
        }


def _np(a: Any, dtype: Any = np.float64) -> np.ndarray:
    return np.asarray(ak.to_numpy(a), dtype=dtype)


def _flat(a: Any, dtype: Any = np.float64) -> np.ndarray:
    return np.asarray(ak.to_numpy(ak.flatten(a, axis=1)), dtype=dtype)


def load_training_data(
    files: Sequence[str],
    *,
    tree: str = "Events",
    max_events: int | None = None,
    holdout_fraction: float = 0.1,
    seed: int = 0,
    on_progress: Callable[[str, int, int], None] | None = None,
) -> TrainingData:
    """Read gen/reco jet pairs from ``files`` (see the module docstring); raises
    :class:`~hepfastsim.errors.BranchNotFoundError` naming file, tree and branch if one is missing."""
    if not files:
        raise HepfastsimError("no training files given")
    rng = np.random.default_rng(seed)
    parts: dict[str, list[np.ndarray]] = {k: [] for k in (
        "gen_pt", "gen_eta", "gen_phi", "gen_mass", "parton", "hadron", "npu_j", "rho_j", "dr", "singlet", "matched",
        "jet_hold", "reco_idx_pt", "reco_eta", "reco_phi", "reco_mass", "reco_n", "reco_area",
        "ev_npu", "ev_rho", "ev_ngen", "ev_nfake", "ev_hold",
        "f_pt", "f_eta", "f_mass", "f_n", "f_area", "f_event",
    )}
    file_info: list[dict[str, Any]] = []
    event_base = 0
    for path in files:
        source = open_tree(path, tree)
        source.require([*GENJET_KINEMATICS, *RECO_BRANCHES])
        rho_branch = source.first_present(RHO_BRANCHES)
        branches = [*gen_branches(source), *RECO_BRANCHES]  # what convert reads of the gen side, + reco
        stop = source.num_entries if max_events is None else min(max_events, source.num_entries)
        n_file = 0
        for chunk in iterate_chunks(source, branches, step_size="100 MB", entry_stop=stop):
            a = chunk.arrays
            n = len(chunk)
            if n == 0:
                continue
            n_gen = _np(ak.num(a["GenJet_pt"], axis=1), np.int64)
            gen_off = np.concatenate([[0], np.cumsum(n_gen)])
            n_reco = _np(ak.num(a["Jet_pt"], axis=1), np.int64)
            ev_of_gen = np.repeat(np.arange(n), n_gen)
            ev_of_reco = np.repeat(np.arange(n), n_reco)
            npu = _np(a[PILEUP_BRANCH]) if PILEUP_BRANCH in a else np.zeros(n)
            rho = _np(a[rho_branch]) if rho_branch else np.zeros(n)
            hold = rng.random(n) < holdout_fraction
            gidx = _flat(a["Jet_genJetIdx"], np.int64)
            matched_reco = (gidx >= 0) & (gidx < n_gen[ev_of_reco])
            global_gen = gen_off[ev_of_reco] + np.where(matched_reco, gidx, 0)
            reco_of_gen = np.full(int(gen_off[-1]), -1, np.int64)
            rows = np.flatnonzero(matched_reco)[::-1]  # reversed: the leading reco jet is written last and wins
            reco_of_gen[global_gen[rows]] = rows
            gen = {f: _flat(a[f"GenJet_{f}"]) for f in ("pt", "eta", "phi", "mass")}
            jets = ak.zip({"eta": a["GenJet_eta"], "phi": a["GenJet_phi"]})
            parts["gen_pt"].append(gen["pt"])
            parts["gen_eta"].append(gen["eta"])
            parts["gen_phi"].append(gen["phi"])
            parts["gen_mass"].append(gen["mass"])
            for name, key in (("GenJet_partonFlavour", "parton"), ("GenJet_hadronFlavour", "hadron")):
                parts[key].append(_flat(a[name], np.int64) if name in a else np.zeros(int(gen_off[-1]), np.int64))
            parts["npu_j"].append(npu[ev_of_gen])
            parts["rho_j"].append(rho[ev_of_gen])
            parts["dr"].append(nearest_neighbour_dr(jets))
            parts["singlet"].append(singlet_daughter(a))  # zeros without a GenPart record
            parts["matched"].append(reco_of_gen >= 0)
            parts["jet_hold"].append(hold[ev_of_gen])
            reco = {f: _flat(a[f"Jet_{f}"]) for f in ("pt", "eta", "phi", "mass", "nConstituents", "area")}
            sel = reco_of_gen[reco_of_gen >= 0]
            parts["reco_idx_pt"].append(reco["pt"][sel])
            parts["reco_eta"].append(reco["eta"][sel])
            parts["reco_phi"].append(reco["phi"][sel])
            parts["reco_mass"].append(reco["mass"][sel])
            parts["reco_n"].append(reco["nConstituents"][sel])
            parts["reco_area"].append(reco["area"][sel])
            fake = ~matched_reco
            parts["ev_npu"].append(npu)
            parts["ev_rho"].append(rho)
            parts["ev_ngen"].append(n_gen.astype(np.float64))
            parts["ev_nfake"].append(np.bincount(ev_of_reco[fake], minlength=n))
            parts["ev_hold"].append(hold)
            parts["f_pt"].append(reco["pt"][fake])
            parts["f_eta"].append(reco["eta"][fake])
            parts["f_mass"].append(reco["mass"][fake])
            parts["f_n"].append(reco["nConstituents"][fake])
            parts["f_area"].append(reco["area"][fake])
            parts["f_event"].append(event_base + ev_of_reco[fake])
            event_base += n
            n_file += n
            if on_progress is not None:
                on_progress(str(path), n, stop)
        file_info.append({"path": str(path), "events": n_file, "uuid": str(source.tree.file.uuid)})
    c = {k: (np.concatenate(v) if v else np.zeros(0)) for k, v in parts.items()}
    valid = np.isfinite(c["gen_pt"]) & (c["gen_pt"] > 0) & np.isfinite(c["gen_eta"]) & np.isfinite(c["gen_mass"])
    if not valid.any():
        raise HepfastsimError(f"no valid gen jets in {', '.join(map(str, files))}")
    context = gen_context(c["gen_pt"], c["gen_eta"], c["gen_mass"], c["parton"], c["hadron"], c["npu_j"], c["rho_j"],
                          c["dr"], c["singlet"])
    matched = c["matched"].astype(bool)
    m_rows = np.flatnonzero(matched)
    targets = matched_targets(
        c["gen_pt"][m_rows], c["gen_eta"][m_rows], c["gen_phi"][m_rows], c["gen_mass"][m_rows], c["rho_j"][m_rows],
        c["reco_idx_pt"], c["reco_eta"], c["reco_phi"], c["reco_mass"], c["reco_n"], c["reco_area"],
        dequant=np.zeros(len(m_rows)),
    )
    targets[:, 4] = c["reco_n"]
    keep_jet = valid
    keep_m = valid[m_rows] & np.all(np.isfinite(targets), axis=1)
    # re-index matched rows into the kept context rows
    new_row = np.cumsum(keep_jet) - 1
    pt_floor = float(0.98 * c["f_pt"].min()) if len(c["f_pt"]) else 0.0
    fakes = fake_targets(c["f_pt"], c["f_eta"], c["f_mass"], c["f_n"], c["f_area"], np.zeros(len(c["f_pt"])), pt_floor)
    fakes[:, 3] = c["f_n"]
    return TrainingData(
        context=context[keep_jet],
        matched=matched[keep_jet],
        jet_holdout=c["jet_hold"].astype(bool)[keep_jet],
        targets=targets[keep_m],
        matched_holdout=c["jet_hold"].astype(bool)[m_rows][keep_m],
        matched_context_rows=new_row[m_rows][keep_m],
        event_context=fake_context(c["ev_npu"], c["ev_rho"], c["ev_ngen"]),
        fake_counts=c["ev_nfake"].astype(np.int64),
        event_holdout=c["ev_hold"].astype(bool),
        fake_jets=fakes,
        fake_event=c["f_event"].astype(np.int64),
        fake_pt_floor=pt_floor,
        files=file_info,
    )


# --------------------------------------------------------------------------- training


def _gaussianise(y: Any, knots_x: Any, knots_z: Any) -> Any:
    """Torch version of :meth:`QuantileScaler.forward` (piecewise linear, linear ends)."""
    import torch

    cols = []
    for j in range(y.shape[1]):
        xk = knots_x[j]
        i = torch.clamp(torch.searchsorted(xk, y[:, j].contiguous()) - 1, 0, len(xk) - 2)
        x0, x1, z0, z1 = xk[i], xk[i + 1], knots_z[i], knots_z[i + 1]
        cols.append(z0 + (y[:, j] - x0) * (z1 - z0) / (x1 - x0))
    return torch.stack(cols, dim=1)


ProgressFn = Callable[[str, int, int, float, float], None]  # (stage, epoch, epochs, train loss, held-out loss)


def _dequantise(y: Any, count_column: int, area_column: int, area_step: float, gen: Any) -> Any:
    """Counts n -> log(n + u); lattice areas a -> a + (u - 1/2) step; u uniform in [0, 1)."""
    import torch

    out = y.clone()
    out[:, count_column] = torch.log(torch.clamp(y[:, count_column], min=0.0) + torch.rand(len(y), generator=gen))
    if area_step > 0:
        out[:, area_column] = y[:, area_column] + (torch.rand(len(y), generator=gen) - 0.5) * area_step
    return out


def _dequantise_np(y: np.ndarray, count_column: int, area_column: int, area_step: float, rng: Any) -> np.ndarray:
    out = y.copy()
    out[:, count_column] = np.log(np.maximum(y[:, count_column], 0) + rng.random(len(y)))
    if area_step > 0:
        out[:, area_column] = y[:, area_column] + (rng.random(len(y)) - 0.5) * area_step
    return out


@contextmanager
def _swapped_in(net: Any, weights_of: Any) -> Iterator[None]:
    """Within the block ``net`` holds the weights of ``weights_of`` (the loss functions close
    over ``net``); its own come back after."""
    if weights_of is net:
        yield
        return
    own = {k: v.clone() for k, v in net.state_dict().items()}
    net.load_state_dict(weights_of.state_dict())
    try:
        yield
    finally:
        net.load_state_dict(own)


def _fit(
    stage: str,
    net: Any,
    loss_fn: Callable[[Any, Any], Any],
    train: tuple[Any, ...],
    held: tuple[Any, ...],
    config: TrainConfig,
    seconds: float | None,
    gen: Any,
    on_progress: ProgressFn | None,
) -> dict[str, Any]:
    """Adam with a cosine learning rate; keeps the parameters of the best held-out epoch
    (of the moving average of the weights with ``config.ema_decay``).

    The cosine runs over whichever ends first, the epochs or the wall-clock budget
    ``seconds``: a budget-limited run still anneals to the small final rate (with a cosine
    over the epochs alone, a run stopped by its budget after 16 of 100 epochs had never
    lowered its rate).
    """
    import torch

    n = len(train[0])
    if n == 0:
        raise HepfastsimError(f"no training examples for the {stage} network")
    steps_per_epoch = max(1, math.ceil(n / config.batch_size))
    opt = torch.optim.Adam(net.parameters(), lr=config.learning_rate)
    total = config.epochs * steps_per_epoch
    lr_min = config.learning_rate * 0.02
    step_count = 0

    def set_rate() -> None:
        done = step_count / total
        if seconds is not None and seconds > 0:
            done = max(done, (time.perf_counter() - start) / seconds)
        rate = lr_min + 0.5 * (config.learning_rate - lr_min) * (1.0 + math.cos(math.pi * min(done, 1.0)))
        for group in opt.param_groups:
            group["lr"] = rate

    # torch's own weight averaging; scored and kept in place of the raw weights
    ema = moving_average(net, config.ema_decay)
    scored = net if ema is None else ema.module
    best = (math.inf, {k: v.clone() for k, v in scored.state_dict().items()}, 0)
    start = time.perf_counter()
    history = []
    epochs_done = 0
    for epoch in range(config.epochs):
        net.train()
        perm = torch.randperm(n, generator=gen)
        running, count = 0.0, 0
        for s in range(steps_per_epoch):
            idx = perm[s * config.batch_size:(s + 1) * config.batch_size]
            loss = loss_fn(*(t[idx] for t in train))
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(net.parameters(), 5.0)
            opt.step()
            if ema is not None:
                ema.update_parameters(net)
            step_count += 1
            set_rate()
            running += float(loss.detach()) * len(idx)
            count += len(idx)
        net.eval()
        with torch.no_grad(), _swapped_in(net, scored):
            losses = []
            for s in range(0, len(held[0]), 65536):
                sl = slice(s, s + 65536)
                losses.append(float(loss_fn(*(t[sl] for t in held))) * len(held[0][sl]))
            val = sum(losses) / max(1, len(held[0]))
        history.append((running / count, val))
        epochs_done = epoch + 1
        if val < best[0]:
            best = (val, {k: v.clone() for k, v in scored.state_dict().items()}, epoch + 1)
        if on_progress is not None:
            on_progress(stage, epoch + 1, config.epochs, running / count, val)
        if seconds is not None and time.perf_counter() - start > seconds:
            break
    net.load_state_dict(best[1])
    return {
        "epochs_run": epochs_done,
        "best_epoch": best[2],
        "best_heldout_loss": best[0],
        "final_train_loss": history[-1][0],
        "seconds": round(time.perf_counter() - start, 1),
        "train_examples": int(n),
        "heldout_examples": int(len(held[0])),
    }


def train_kinematics(
    data: TrainingData,
    config: TrainConfig = TrainConfig(),
    on_progress: ProgressFn | None = None,
    init: LoadedModel | None = None,
) -> LoadedModel:
    """Train the networks of :mod:`hepfastsim.models.kinematics_flow` on ``data``.

    ``init``: continue from this model (its weights, architecture, scalers and lattices)
    instead of starting from scratch, e.g. to extend a run that its budget stopped.
    """
    import copy

    import torch

    gen = torch.Generator().manual_seed(config.seed)
    torch.manual_seed(config.seed)
    f32 = lambda x: torch.as_tensor(np.asarray(x, np.float32))  # noqa: E731
    rng = np.random.default_rng(config.seed)
    if config.add_context:
        if init is None:
            raise HepfastsimError("adding context columns needs a model to continue from (init); a new model "
                                  "reads the context of its architecture")
        init = extend_context(init, config.add_context)
    if init is None and config.fresh:
        raise HepfastsimError("fresh networks need a model to continue from (init)")
    if init is None and set(config.networks) != set(NETWORKS):
        raise HepfastsimError("training only some networks needs a model to continue from (init)")
    fresh = set(NETWORKS) if init is None else set(config.fresh)
    refit = fresh | (set(config.networks) & {"flow", "fake_flow"} if config.refit_maps else set())
    if init is not None:
        arch = init.arch
        module = copy.deepcopy(init.module).float()
        for p in module.parameters():
            p.requires_grad_(True)
        ctx_scaler, tgt_scaler = init.context_scaler, init.target_scaler
        ev_scaler, fake_tgt_scaler = init.fake_context_scaler, init.fake_target_scaler
        area_lattice, fake_area_lattice = init.area_lattice, init.fake_area_lattice
        if "area" in fresh and arch.area_values == 0:  # a model from before the area network: add it
            arch = replace(arch, area_values=config.arch.area_values or ARCH_DEFAULTS.area_values,
                           area_hidden=config.arch.area_hidden)
        if "area" in config.networks and arch.area_values == 0 and config.networks != NETWORKS:
            raise HepfastsimError("the model has no area network to train: add it with fresh (--fresh area)")
        if fresh:
            rebuilt = build_model(arch)
            for name in fresh:
                if hasattr(rebuilt, name):  # an area network of -1 categories is built below
                    setattr(module, name, getattr(rebuilt, name))
    else:
        arch = config.arch
        module = build_model(arch)
        ctx_scaler = Scaler.fit(data.context[:, arch.context_columns])
        ev_scaler = Scaler.fit(data.event_context)
    # dequantised copies only to fit the quantile maps of the targets
    if "flow" in refit:
        area_lattice = find_lattice(data.targets[:, 5])
        tgt_scaler = QuantileScaler.fit(_dequantise_np(data.targets, 4, 5, area_lattice[0], rng))
    if "fake_flow" in refit:
        fake_area_lattice = find_lattice(data.fake_jets[:, 4]) if len(data.fake_jets) else (0.0, 0.0, ())
        if len(data.fake_jets) >= 10:
            fake_tgt_scaler = QuantileScaler.fit(_dequantise_np(data.fake_jets, 3, 4, fake_area_lattice[0], rng))
        else:
            fake_tgt_scaler = QuantileScaler.fit(rng.normal(size=(100, 5)))
    # the area network has one category per area-lattice value: sized once the lattice is known
    n_values = len(area_lattice[2]) if len(area_lattice) > 2 else 0
    if arch.area_values < 0 or ("area" in fresh and arch.area_values > 0 and arch.area_values != n_values):
        arch = replace(arch, area_values=n_values)
        if n_values:
            module.area = build_model(arch).area
        elif hasattr(module, "area"):
            del module.area
    elif arch.area_values > 0 and arch.area_values != n_values:
        raise HepfastsimError(f"the area network has {arch.area_values} categories but the refitted area lattice "
                              f"{n_values} values: rebuild it too (--fresh area)")
    ctx = f32(ctx_scaler.forward(data.context[:, arch.context_columns]))
    ev_ctx = f32(ev_scaler.forward(data.event_context))

    # the wall-clock budget is shared by the networks trained: the flow gets ``flow_share``
    # of it when trained, the others equal parts of the rest
    weight = {name: (config.flow_share if name == "flow" else (1.0 - config.flow_share) / 3.0) for name in NETWORKS}
    trained = [name for name in config.networks if name != "area" or arch.area_values != 0]
    total_weight = sum(weight[name] for name in trained)

    def seconds(name: str) -> float | None:
        return None if config.max_minutes is None else 60.0 * config.max_minutes * weight[name] / total_weight

    report: dict[str, Any] = {}

    # 1. matched flow
    # the quantile maps are fixed, piecewise linear: apply them to dequantised targets in torch
    t_knots = (f32(np.array(tgt_scaler.knots_x)), f32(tgt_scaler.knots_z))
    f_knots = (f32(np.array(fake_tgt_scaler.knots_x)), f32(fake_tgt_scaler.knots_z))

    def flow_loss(c: Any, y: Any, w: Any) -> Any:
        y = _gaussianise(_dequantise(y, 4, 5, area_lattice[0], gen), *t_knots)
        return -(w * module.flow(c).log_prob(y)).sum() / w.sum()

    m_ctx = ctx[torch.as_tensor(data.matched_context_rows)]
    y = f32(data.targets)
    hm = torch.as_tensor(data.matched_holdout)
    if "flow" in config.networks:
        g = data.context[data.matched_context_rows]
        w = f32(balance_weights(g[:, CONTEXT_NAMES.index("log_pt")], g[:, CONTEXT_NAMES.index("abs_eta")],
                                config.balance_max_weight))
        report["flow"] = _fit("flow", module.flow, flow_loss, (m_ctx[~hm], y[~hm], w[~hm]), (m_ctx[hm], y[hm], w[hm]),
                              config, seconds("flow"), gen, on_progress)
        if config.balance_max_weight > 1.0:
            report["flow"]["balance_weights"] = {"max": config.balance_max_weight, "mean": float(w.mean()),
                                                 "share_above_1": float((w > 1).float().mean())}

    # 2. efficiency
    bce = torch.nn.BCEWithLogitsLoss()

    def eff_loss(c: Any, m: Any) -> Any:
        return bce(module.efficiency(c)[:, 0], m)

    matched = f32(data.matched)
    hj = torch.as_tensor(data.jet_holdout)
    small = replace(config, epochs=config.epochs * config.small_net_epoch_factor)
    if "efficiency" in config.networks:
        report["efficiency"] = _fit("efficiency", module.efficiency, eff_loss, (ctx[~hj], matched[~hj]),
                                    (ctx[hj], matched[hj]), small, seconds("efficiency"), gen, on_progress)

    # 3. number of unmatched jets per event
    ce = torch.nn.CrossEntropyLoss()
    counts = torch.as_tensor(np.minimum(data.fake_counts, arch.fake_max))

    def count_loss(c: Any, k: Any) -> Any:
        return ce(module.fake_count(c), k)

    he = torch.as_tensor(data.event_holdout)
    if "fake_count" in config.networks:
        report["fake_count"] = _fit("fake_count", module.fake_count, count_loss, (ev_ctx[~he], counts[~he]),
                                    (ev_ctx[he], counts[he]), small, seconds("fake_count"), gen, on_progress)

    # 4. unmatched-jet kinematics
    def fake_loss(c: Any, y: Any) -> Any:
        y = _gaussianise(_dequantise(y, 3, 4, fake_area_lattice[0], gen), *f_knots)
        return -module.fake_flow(c).log_prob(y).mean()

    f_ctx = ev_ctx[torch.as_tensor(data.fake_event)]
    fy = f32(data.fake_jets)
    hf = torch.as_tensor(data.event_holdout[data.fake_event])
    if len(fy) and "fake_flow" in config.networks:
        report["fake_flow"] = _fit("fake_flow", module.fake_flow, fake_loss, (f_ctx[~hf], fy[~hf]), (f_ctx[hf], fy[hf]),
                                   config, seconds("fake_flow"), gen, on_progress)
    # 5. area of a matched jet (a lattice value) given the context and the flow's first four outputs
    if "area" in config.networks and arch.area_values > 0:
        a_class = torch.as_tensor(lattice_index(data.targets[:, 5], area_lattice))

        def area_loss(c: Any, y: Any, k: Any) -> Any:
            return ce(module.area(area_inputs(c, _gaussianise(_dequantise(y, 4, 5, area_lattice[0], gen), *t_knots))), k)

        report["area"] = _fit("area", module.area, area_loss, (m_ctx[~hm], y[~hm], a_class[~hm]),
                              (m_ctx[hm], y[hm], a_class[hm]), config, seconds("area"), gen, on_progress)
    module.eval()
    for p in module.parameters():
        p.requires_grad_(False)
    metadata = {
        "training": {
            "files": data.files,
            "data": data.summary(),
            "config": {k: v for k, v in asdict(config).items() if k != "arch"},
            "networks": report,
            "parameters": n_parameters(module),
        }
    }
    return LoadedModel(
        module=module,
        arch=arch,
        context_scaler=ctx_scaler,
        target_scaler=tgt_scaler,
        fake_context_scaler=ev_scaler,
        fake_target_scaler=fake_tgt_scaler,
        fake_pt_floor=data.fake_pt_floor,
        metadata=metadata,
        area_lattice=area_lattice,
        fake_area_lattice=fake_area_lattice,
        # a calibration fitted to the unmatched-jet flow holds only for those weights and that map
        # (refitted maps and fresh networks are among those trained)
        fake_flow_calibration=None if init is None or "fake_flow" in config.networks else init.fake_flow_calibration,
        # likewise the response calibration holds only for the matched flow's weights
        response_calibration=None if init is None or "flow" in config.networks else init.response_calibration,
    )


def balance_weights(log_pt: np.ndarray, abs_eta: np.ndarray, max_weight: float) -> np.ndarray:
    """Loss weight per matched jet (n,): ``n_mean / n_cell`` of its cell in a 16 x 10 grid of
    ln(gen pT / GeV) in [ln 15, ln 3500] x |eta| in [0, 5] (values beyond go to the end cells),
    clipped to [1, ``max_weight``]; ``n_mean`` is the mean count of the occupied cells. Rare
    regions (forward jets of a few hundred GeV: ~0.1% of QCD jets) then weigh up to
    ``max_weight`` times more in the flow's likelihood; 1 leaves every weight at 1."""
    if max_weight <= 1.0:
        return np.ones(len(log_pt))
    i = np.clip(np.floor((np.asarray(log_pt) - np.log(15.0)) / (np.log(3500.0 / 15.0) / 16)), 0, 15).astype(np.int64)
    j = np.clip(np.floor(np.asarray(abs_eta) / 0.5), 0, 9).astype(np.int64)
    cell = i * 10 + j
    counts = np.bincount(cell, minlength=160)
    mean = counts[counts > 0].mean()
    return np.clip(mean / counts[cell], 1.0, max_weight)


def calibrate_fake_flow(model: LoadedModel, data: TrainingData, *, draws: int = 4, seed: int = 0) -> LoadedModel:
    """``model`` with its unmatched-jet outputs calibrated to the marginals of ``data``.

    The unmatched-jet flow reproduces the marginal of each output only as well as it was
    trained: on 350k held-out QCD events the shipped flow's eta spectrum is a few per cent off
    in places, although its target map holds the data's quantiles. Here the target map is
    refitted to the unmatched jets of ``data``, and a second per-column quantile map
    (:attr:`LoadedModel.fake_flow_calibration`) takes the flow's Gaussianised samples onto exact
    standard normals. It is fitted on ``draws`` flow samples for the event context of every
    unmatched jet of ``data``, so that its marginals are those of ``data`` up to their statistics;
    the flow still gives how the outputs depend on each other and on nPU, rho and the number of
    gen jets. A 1-d quantile map per column is what CMS's quantile-morphing corrections of
    simulation do; numpy's quantiles suffice and the map reuses :class:`QuantileScaler`.
    """
    if len(data.fake_jets) < 1000:
        raise HepfastsimError(f"calibrating the unmatched-jet flow needs at least 1000 unmatched jets, "
                              f"the data have {len(data.fake_jets)}")
    if draws < 1:
        raise HepfastsimError(f"draws must be at least 1, got {draws}")
    rng = np.random.default_rng(seed)
    target = QuantileScaler.fit(_dequantise_np(data.fake_jets, 3, 4, model.fake_area_lattice[0], rng))
    ctx = model.fake_context_scaler.forward(data.event_context[np.tile(data.fake_event, draws)])
    gauss = flow_inverse(model.module.fake_flow, ctx, rng.standard_normal((len(ctx), len(target.knots_x))))
    record = {"unmatched_jets": int(len(data.fake_jets)), "events": int(len(data.event_context)), "draws": draws,
              "seed": seed, "files": data.files}
    metadata = {**model.metadata, "fake_flow_calibration": record}
    return replace(model, fake_target_scaler=target, fake_flow_calibration=QuantileScaler.fit(gauss), metadata=metadata)


def calibrate_response(
    model: LoadedModel,
    data: TrainingData,
    *,
    draws: int = 4,
    seed: int = 0,
    pt_edges: Sequence[float] = DEFAULT_PT_EDGES,
    eta_edges: Sequence[float] = DEFAULT_ETA_EDGES,
    min_jets: int = 1000,
) -> LoadedModel:
    """``model`` with a residual correction of its matched jets' pT response (median and half
    16-84% width) per gen pT x |eta| bin, fitted on the matched jets of ``data`` and on
    ``draws`` of the matched flow's samples for each of their gen jets
    (:mod:`hepfastsim.models.kinematics_calibration`; any earlier one is replaced). Bins with
    fewer than ``min_jets`` jets are left as they are."""
    if draws < 1:
        raise HepfastsimError(f"draws must be at least 1, got {draws}")
    if int(data.matched.sum()) < min_jets:
        raise HepfastsimError(f"calibrating the jet response needs at least {min_jets} matched jets, "
                              f"the data have {int(data.matched.sum())}")
    g = data.context[data.matched_context_rows]
    gen_pt, gen_eta = np.exp(g[:, CONTEXT_NAMES.index("log_pt")]), g[:, CONTEXT_NAMES.index("eta")]
    rho = g[:, CONTEXT_NAMES.index("rho")]
    zeros = np.zeros(len(g))
    reference = decode_matched(data.targets, gen_pt, gen_eta, zeros, zeros, rho)["pt"]
    rows = np.tile(np.arange(len(g)), draws)
    rng = np.random.default_rng(seed)
    gauss = flow_inverse(model.module.flow, model.context_scaler.forward(g[rows][:, model.arch.context_columns]),
                         rng.standard_normal((len(rows), len(model.target_scaler.knots_x))))
    drawn = decode_matched(model.target_scaler.inverse(gauss), gen_pt[rows], gen_eta[rows], zeros[rows], zeros[rows],
                           rho[rows])["pt"]
    record = {"draws": draws, "seed": seed}
    calibration = fit_response_calibration(
        {"gen_pt": gen_pt[rows], "gen_eta": gen_eta[rows], "pt": drawn},
        {"gen_pt": gen_pt, "gen_eta": gen_eta, "pt": reference}, pt_edges, eta_edges, min_jets=min_jets, record=record)
    summary = {**{k: v for k, v in calibration.record.items() if k != "bins"}, "files": data.files}
    return replace(model, response_calibration=calibration,
                   metadata={**model.metadata, "response_calibration": summary})
