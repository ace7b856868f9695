r"""The learned gen -> reco jet kinematics model (FlashSim-like, arXiv:2402.13684).

Four small torch networks conditioned on generator-level information only, and an optional
fifth that also reads the matched flow's output:

* ``flow``: a conditional neural spline flow (coupling rational-quadratic splines, Durkan
  et al. arXiv:1906.04032, built with ``zuko``) over the six reco features of a *matched*
  gen jet, sampled jointly:

  ====  ==========================================================================
  dim   target (before robust standardisation)
  ====  ==========================================================================
  0     :math:`\log(p_T^{reco}/p_T^{gen}) / \sigma_{p_T}(p_T^{gen}, \eta^{gen}, \rho)`
  1     :math:`(\eta^{reco} - \eta^{gen}) / \sigma_\theta(p_T^{gen})`
  2     :math:`\Delta\phi(\phi^{reco}, \phi^{gen}) / \sigma_\theta(p_T^{gen})` (wrapped)
  3     :math:`\log(1 + m^{reco}) - \log(1 + m^{gen})` (GeV)
  4     :math:`\log(n_{const} + u)`, :math:`u \sim U[0, 1)` (dequantised count)
  5     jet area
  ====  ==========================================================================

  :math:`\sigma_{p_T}` and :math:`\sigma_\theta` are fixed smooth CMS-like resolution
  functions (:func:`_pt_scale`, :func:`_angle_scale`), used only as a pre-scaling so that
  the flow sees targets of similar width at every pT. Each target is then mapped to a
  standard normal marginal by a monotonic piecewise-linear quantile map
  (:class:`QuantileScaler`), so that the splines (defined on [-5, 5]) cover the tails.
  Quantised targets are dequantised in training and snapped back when sampling: counts
  by flooring ``exp``, the jet area (a lattice of ghost areas) to its lattice.
* ``efficiency``: an MLP giving the probability that a gen jet has a reco jet.
* ``fake_count``: an MLP giving a categorical distribution of the number of unmatched
  (pileup and fake) reco jets per event, given (nPU, rho, number of gen jets).
* ``fake_flow``: a conditional spline flow over (log(pT - pT_floor), eta, log(1 + m),
  log(n_const + u), area) of an unmatched jet; its phi is uniform.
* ``area`` (when ``Architecture.area_values`` > 0): an MLP giving a categorical distribution
  over the jet-area lattice values seen in training, given the gen-jet context and the flow's
  first four outputs (:data:`AREA_INPUT_COLUMNS`, in the flow's Gaussianised coordinates).
  The simulator draws a matched jet's area from it in place of the flow's snapped area. A
  continuous density cannot put its mass exactly on the lattice values: snapping the flow's
  area gave single values 2-20% off. The flow's nConstituents stays; it no longer sees the
  drawn area beyond the four outputs the two share.

Gen-jet context (in this order, standardised): log pT, eta, |eta|, log(1 + m), m / pT, flavour
one-hot (b, c, g, light quark, other), nPU, rho, Delta R to the nearest other gen jet
(capped at 5). Everything is float32. Nothing here draws random numbers: samplers take the
base-distribution noise as arguments, so callers key it per event
(:mod:`hepfastsim.kernels.rng`).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any, Sequence

import awkward as ak
import numpy as np

from hepfastsim.errors import ModelError
from hepfastsim.models.kinematics_calibration import ResponseCalibration
from hepfastsim.models.weights_file import load_state, read_model, write_model

__all__ = [
    "ARCH_DEFAULTS",
    "Architecture",
    "CONTEXT_NAMES",
    "LEGACY_CONTEXT_NAMES",
    "extend_context",
    "TARGET_NAMES",
    "FAKE_TARGET_NAMES",
    "FAKE_CONTEXT_NAMES",
    "AREA_INPUT_COLUMNS",
    "area_inputs",
    "gen_context",
    "nearest_neighbour_dr",
    "matched_targets",
    "decode_matched",
    "fake_targets",
    "decode_fakes",
    "fake_context",
    "build_model",
    "save_model",
    "load_model",
    "LoadedModel",
    "Scaler",
    "QuantileScaler",
    "find_lattice",
    "snap",
    "lattice_index",
    "n_parameters",
]

#: The context of models written before the choice of context was stored (and the default's first columns).
LEGACY_CONTEXT_NAMES: tuple[str, ...] = (
    "log_pt", "eta", "abs_eta", "log1p_mass", "mass_over_pt",
    "flav_b", "flav_c", "flav_g", "flav_light", "flav_other",
    "n_pu", "rho", "nearest_dr",
)
#: Every context column :func:`gen_context` builds; a model uses ``Architecture.context`` of them.
#: ``singlet_daughter``: the gen jet comes from a colour-singlet decay (:mod:`hepfastsim.jets.origin`).
CONTEXT_NAMES: tuple[str, ...] = (*LEGACY_CONTEXT_NAMES, "singlet_daughter")
TARGET_NAMES: tuple[str, ...] = ("log_response", "deta", "dphi", "dlog1p_mass", "log_nconst", "area")
FAKE_CONTEXT_NAMES: tuple[str, ...] = ("n_pu", "rho", "n_gen")
FAKE_TARGET_NAMES: tuple[str, ...] = ("log_pt_above_floor", "eta", "log1p_mass", "log_nconst", "area")
#: Columns of the matched flow's (Gaussianised) output that condition the area network.
AREA_INPUT_COLUMNS: tuple[int, ...] = (0, 1, 2, 3)

# Fixed analytic pre-scalings (the parametric baseline's resolutions), see module docstring.
_ANGULAR_A_GEV = 0.8
_ANGULAR_B = 0.005
_NEAREST_DR_CAP = 5.0


@dataclass(frozen=True)
class Architecture:
    """Sizes of the networks (stored in the metadata; the weights need the same sizes).

    Keep hidden widths >= 16: the simulator's padded float32 batches are bit-identical
    whatever the chunking for these sizes (tested), but CPU matrix kernels for very narrow
    layers (8) were seen to round differently with the batch composition.
    """

    flow_transforms: int = 6
    flow_hidden: tuple[int, ...] = (64, 64)
    flow_bins: int = 8
    eff_hidden: tuple[int, ...] = (64, 64)
    fake_count_hidden: tuple[int, ...] = (32, 32)
    fake_max: int = 24  # categories 0..fake_max unmatched jets per event
    fake_flow_transforms: int = 4
    fake_flow_hidden: tuple[int, ...] = (48, 48)
    area_values: int = -1  # categories of the area network: -1 as many as the area lattice has; 0: none
    area_hidden: tuple[int, ...] = (64, 64)
    context: tuple[str, ...] = CONTEXT_NAMES  # the context columns the networks read, in order

    def __post_init__(self) -> None:
        unknown = [c for c in self.context if c not in CONTEXT_NAMES]
        if unknown or len(set(self.context)) != len(self.context):
            raise ValueError(f"context {self.context}: unknown or repeated names {unknown} (known: {CONTEXT_NAMES})")

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Architecture:
        kw = {k: (tuple(v) if isinstance(v, list) else v) for k, v in d.items() if k in cls.__dataclass_fields__}
        kw.setdefault("area_values", 0)  # written before the area network existed: it has none
        kw.setdefault("context", LEGACY_CONTEXT_NAMES)  # written before the context was stored
        return cls(**kw)

    @property
    def context_columns(self) -> list[int]:
        """Columns of :func:`gen_context`'s output that these networks read."""
        return [CONTEXT_NAMES.index(c) for c in self.context]


ARCH_DEFAULTS = Architecture()


# --------------------------------------------------------------------------- features


def _wrap(dphi: np.ndarray) -> np.ndarray:
    return np.mod(dphi + np.pi, 2 * np.pi) - np.pi


def _pt_scale(pt: np.ndarray, eta: np.ndarray, rho: np.ndarray) -> np.ndarray:
    """Smooth sigma(pT)/pT, eta-independent: sqrt((N^2 + k^2 rho A)/pT^2 + S^2/pT + C^2) with
    N = 2.5 GeV, k = 1 GeV^1/2, A = pi 0.4^2, S = 1 GeV^1/2, C = 0.05 (a pre-scaling only)."""
    del eta  # kept in the signature: the flow learns the eta dependence from the context
    noise2 = 2.5**2 + np.maximum(rho, 0.0) * np.pi * 0.16
    return np.sqrt(noise2 / pt**2 + 1.0 / pt + 0.05**2)


def _angle_scale(pt: np.ndarray) -> np.ndarray:
    return np.hypot(_ANGULAR_A_GEV / pt, _ANGULAR_B)


def nearest_neighbour_dr(jets: ak.Array) -> np.ndarray:
    """Delta R from each gen jet to the nearest other gen jet of its event (flat, float64;
    ``5`` where the jet is alone or the nearest is farther)."""
    pairs = ak.cartesian([jets[["eta", "phi"]], jets[["eta", "phi"]]], axis=1, nested=True)
    a, b = ak.unzip(pairs)
    deta = a.eta - b.eta
    dphi = (a.phi - b.phi + np.pi) % (2 * np.pi) - np.pi
    dr = np.sqrt(deta * deta + dphi * dphi)
    idx = ak.local_index(jets.eta, axis=1)
    same = idx[:, :, None] == ak.local_index(dr, axis=2)
    dr = ak.where(same, _NEAREST_DR_CAP, dr)
    nearest = ak.fill_none(ak.min(dr, axis=2), _NEAREST_DR_CAP)
    out = np.asarray(ak.to_numpy(ak.flatten(nearest, axis=1)), dtype=np.float64)
    return np.minimum(np.nan_to_num(out, nan=_NEAREST_DR_CAP), _NEAREST_DR_CAP)


def _flavour_onehot(parton: np.ndarray, hadron: np.ndarray) -> np.ndarray:
    b = hadron == 5
    c = (hadron == 4) & ~b
    g = (parton == 21) & ~b & ~c
    light = (np.abs(parton) >= 1) & (np.abs(parton) <= 3) & ~b & ~c
    other = ~(b | c | g | light)
    return np.stack([b, c, g, light, other], axis=1).astype(np.float64)


def gen_context(
    pt: np.ndarray,
    eta: np.ndarray,
    mass: np.ndarray,
    parton: np.ndarray,
    hadron: np.ndarray,
    n_pu: np.ndarray,
    rho: np.ndarray,
    nearest_dr: np.ndarray,
    singlet_daughter: np.ndarray | None = None,
) -> np.ndarray:
    """Unstandardised context (n_jets, len(CONTEXT_NAMES)), float64; pt, mass in GeV;
    ``singlet_daughter`` (n_jets,) 0 or 1, zeros if None (a file without a GenPart record)."""
    pt = np.asarray(pt, np.float64)
    mass = np.maximum(np.asarray(mass, np.float64), 0.0)
    eta = np.asarray(eta, np.float64)
    cols = [
        np.log(pt),
        eta,
        np.abs(eta),  # the detector is symmetric in eta; its regions are in |eta|
        np.log1p(mass),
        mass / pt,
    ]
    singlet = np.zeros(len(pt)) if singlet_daughter is None else np.asarray(singlet_daughter, np.float64)
    return np.column_stack(
        [*cols, _flavour_onehot(np.asarray(parton), np.asarray(hadron)), n_pu, rho, nearest_dr, singlet]
    ).astype(np.float64)


def matched_targets(
    gen_pt: np.ndarray, gen_eta: np.ndarray, gen_phi: np.ndarray, gen_mass: np.ndarray, rho: np.ndarray,
    pt: np.ndarray, eta: np.ndarray, phi: np.ndarray, mass: np.ndarray, n_const: np.ndarray, area: np.ndarray,
    dequant: np.ndarray,
) -> np.ndarray:
    """Flow targets (n, 6) of matched pairs, before standardisation; ``dequant`` in [0, 1)."""
    s_pt = _pt_scale(gen_pt, gen_eta, rho)
    s_ang = _angle_scale(gen_pt)
    return np.column_stack([
        np.log(pt / gen_pt) / s_pt,
        (eta - gen_eta) / s_ang,
        _wrap(phi - gen_phi) / s_ang,
        np.log1p(np.maximum(mass, 0.0)) - np.log1p(np.maximum(gen_mass, 0.0)),
        np.log(np.maximum(n_const, 0) + dequant),
        area,
    ]).astype(np.float64)


def decode_matched(
    y: np.ndarray, gen_pt: np.ndarray, gen_eta: np.ndarray, gen_phi: np.ndarray, gen_mass: np.ndarray, rho: np.ndarray
) -> dict[str, np.ndarray]:
    """Inverse of :func:`matched_targets`: reco pt, eta, phi, mass (GeV, rad), nConstituents, area."""
    s_pt = _pt_scale(gen_pt, gen_eta, rho)
    s_ang = _angle_scale(gen_pt)
    with np.errstate(over="ignore"):
        return {
            "pt": gen_pt * np.exp(np.clip(y[:, 0] * s_pt, -20, 5)),
            "eta": gen_eta + y[:, 1] * s_ang,
            "phi": _wrap(gen_phi + y[:, 2] * s_ang),
            "mass": np.maximum(np.expm1(np.log1p(np.maximum(gen_mass, 0.0)) + np.clip(y[:, 3], -20, 10)), 0.0),
            "nConstituents": np.maximum(np.floor(np.exp(np.clip(y[:, 4], -5, 8))), 1.0),
            "area": np.maximum(y[:, 5], 0.0),
        }


def fake_context(n_pu: np.ndarray, rho: np.ndarray, n_gen: np.ndarray) -> np.ndarray:
    """Unstandardised event context (n_events, 3) of the unmatched-jet models."""
    return np.column_stack([n_pu, rho, n_gen]).astype(np.float64)


def fake_targets(
    pt: np.ndarray, eta: np.ndarray, mass: np.ndarray, n_const: np.ndarray, area: np.ndarray,
    dequant: np.ndarray, pt_floor: float,
) -> np.ndarray:
    """Unmatched-jet flow targets (n, 5), before standardisation."""
    return np.column_stack([
        np.log(np.maximum(pt - pt_floor, 1e-3)),
        eta,
        np.log1p(np.maximum(mass, 0.0)),
        np.log(np.maximum(n_const, 0) + dequant),
        area,
    ]).astype(np.float64)


def decode_fakes(y: np.ndarray, phi_uniform: np.ndarray, pt_floor: float) -> dict[str, np.ndarray]:
    """Inverse of :func:`fake_targets`; phi = pi (2 u - 1)."""
    with np.errstate(over="ignore"):
        return {
            "pt": pt_floor + np.exp(np.clip(y[:, 0], -20, 9)),
            "eta": y[:, 1],
            "phi": np.pi * (2.0 * phi_uniform - 1.0),
            "mass": np.maximum(np.expm1(np.clip(y[:, 2], -20, 10)), 0.0),
            "nConstituents": np.maximum(np.floor(np.exp(np.clip(y[:, 3], -5, 8))), 1.0),
            "area": np.maximum(y[:, 4], 0.0),
        }


# --------------------------------------------------------------------------- networks


#: Rows per torch call of a network or flow (bounds memory; rows are independent).
BATCH_ROWS = 1 << 15
#: Rows of every torch call are padded to a multiple of this.
PAD_ROWS = 256


def padded_rows(x: np.ndarray, dtype: Any = np.float32) -> np.ndarray:
    """Copy of ``x`` (float32) with zero rows appended up to a multiple of :data:`PAD_ROWS` rows.

    Matrix products of float32 on CPU round differently for very small batches or ragged
    tails; with whole blocks of ``PAD_ROWS`` rows each row's result is bit-identical whatever the
    other rows, so the output does not depend on the chunking (tested through ``convert``).
    """
    n = len(x)
    out = np.zeros(((n + PAD_ROWS - 1) // PAD_ROWS * PAD_ROWS,) + x.shape[1:], dtype=dtype)
    out[:n] = x
    return out


def flow_inverse(flow: Any, context: np.ndarray, z: np.ndarray) -> np.ndarray:
    """Samples of a conditional flow in its Gaussianised target space: standard normals ``z``
    (n, features) pushed through the inverse transform given standardised ``context`` (n, C)."""
    import torch

    out = np.empty(z.shape, dtype=np.float64)
    with torch.inference_mode():
        for s in range(0, len(z), BATCH_ROWS):
            c = padded_rows(context[s:s + BATCH_ROWS])
            zz = padded_rows(z[s:s + BATCH_ROWS])
            n = min(BATCH_ROWS, len(z) - s)
            out[s:s + n] = flow(torch.from_numpy(c)).transform.inv(torch.from_numpy(zz)).numpy()[:n]
    return out


def _coupling_masks(features: int, transforms: int) -> list[list[bool]]:
    """Alternating checkered and half-split masks, so every pair of features conditions each other."""
    patterns = [
        [i % 2 == 1 for i in range(features)],
        [i % 2 == 0 for i in range(features)],
        [i < features // 2 for i in range(features)],
        [i >= features // 2 for i in range(features)],
    ]
    return [patterns[t % len(patterns)] for t in range(transforms)]


def _fast_rqs_class() -> Any:
    """zuko's monotonic RQS transform with the bin softmax written as exp / sum.

    torch's CPU softmax over a last axis of 8 bins costs ~13 ns per element (per-row
    overhead) and took 43% of the flow's inference time (profiled on 100k jets); exp / sum
    is 3x faster. zuko squashes the unconstrained widths and heights to
    |w| < |log(slope)| / 2 before the softmax, so exp cannot overflow and no max
    subtraction is needed. Everything else is zuko's.
    """
    import math

    import torch
    import torch.nn.functional as F
    from zuko.transforms import MonotonicRQSTransform

    class FastRQSTransform(MonotonicRQSTransform):
        def __init__(self, widths: Any, heights: Any, derivatives: Any, bound: float = 5.0,
                     slope: float = 1e-3, **kwargs: Any) -> None:
            super(MonotonicRQSTransform, self).__init__(**kwargs)
            log_slope = math.log(slope)
            widths = torch.exp(widths / (1 + abs(2 * widths / log_slope)))
            heights = torch.exp(heights / (1 + abs(2 * heights / log_slope)))
            derivatives = derivatives / (1 + abs(derivatives / log_slope))
            widths = F.pad(widths / widths.sum(dim=-1, keepdim=True), (1, 0), value=0)
            heights = F.pad(heights / heights.sum(dim=-1, keepdim=True), (1, 0), value=0)
            derivatives = F.pad(derivatives, (1, 1), value=0)
            self.horizontal = bound * (2 * torch.cumsum(widths, dim=-1) - 1)
            self.vertical = bound * (2 * torch.cumsum(heights, dim=-1) - 1)
            self.derivatives = torch.exp(derivatives)

    return FastRQSTransform


def _spline_flow(features: int, context: int, transforms: int, hidden: tuple[int, ...], bins: int) -> Any:
    import torch
    import zuko
    from functools import partial

    from zuko.flows.coupling import GeneralCouplingTransform

    layers = [
        GeneralCouplingTransform(
            features=features,
            context=context,
            mask=torch.tensor(mask),
            univariate=partial(_fast_rqs_class(), slope=1e-3),
            shapes=[(bins,), (bins,), (bins - 1,)],
            hidden_features=hidden,
            activation=torch.nn.SiLU,
        )
        for mask in _coupling_masks(features, transforms)
    ]
    base = zuko.flows.UnconditionalDistribution(
        zuko.distributions.DiagNormal, loc=torch.zeros(features), scale=torch.ones(features), buffer=True
    )
    return zuko.flows.Flow(layers, base)


def _mlp(inputs: int, outputs: int, hidden: tuple[int, ...]) -> Any:
    import torch

    layers: list[Any] = []
    width = inputs
    for h in hidden:
        layers += [torch.nn.Linear(width, h), torch.nn.SiLU()]
        width = h
    layers.append(torch.nn.Linear(width, outputs))
    return torch.nn.Sequential(*layers)


def build_model(arch: Architecture = ARCH_DEFAULTS) -> Any:
    """The networks in one ``torch.nn.Module`` (float32, untrained); ``area`` only when
    ``arch.area_values`` > 0."""
    import torch

    model = torch.nn.Module()
    n_context = len(arch.context)
    model.flow = _spline_flow(len(TARGET_NAMES), n_context, arch.flow_transforms, arch.flow_hidden, arch.flow_bins)
    model.efficiency = _mlp(n_context, 1, arch.eff_hidden)
    model.fake_count = _mlp(len(FAKE_CONTEXT_NAMES), arch.fake_max + 1, arch.fake_count_hidden)
    model.fake_flow = _spline_flow(
        len(FAKE_TARGET_NAMES), len(FAKE_CONTEXT_NAMES), arch.fake_flow_transforms, arch.fake_flow_hidden, arch.flow_bins
    )
    if arch.area_values > 0:
        model.area = _mlp(n_context + len(AREA_INPUT_COLUMNS), arch.area_values, arch.area_hidden)
    return model.float()


def area_inputs(context_std: Any, flow_gauss: Any) -> Any:
    """Inputs (n, C + 4) of the area network: the standardised gen context and the matched
    flow's outputs (n, 6) in its Gaussianised coordinates, count and area dropped (numpy or torch)."""
    cols = list(AREA_INPUT_COLUMNS)
    if isinstance(context_std, np.ndarray):
        return np.concatenate([context_std, flow_gauss[:, cols]], axis=1)
    import torch

    return torch.cat([context_std, flow_gauss[:, cols]], dim=1)


@dataclass(frozen=True)
class Scaler:
    """Standardisation x -> (x - center) / scale, per column."""

    center: tuple[float, ...]
    scale: tuple[float, ...]

    @classmethod
    def fit(cls, x: np.ndarray, robust: bool = False) -> Scaler:
        if robust:
            q16, q50, q84 = np.percentile(x, [16, 50, 84], axis=0)
            center, scale = q50, (q84 - q16) / 2
        else:
            center, scale = x.mean(axis=0), x.std(axis=0)
        scale = np.where(scale > 1e-6, scale, 1.0)
        return cls(tuple(float(c) for c in center), tuple(float(s) for s in scale))

    def forward(self, x: np.ndarray) -> np.ndarray:
        return (x - np.asarray(self.center)) / np.asarray(self.scale)

    def inverse(self, z: np.ndarray) -> np.ndarray:
        return z * np.asarray(self.scale) + np.asarray(self.center)


# Knots every 0.2% of probability: the unmatched-jet eta has sharp detector structure
# (tracker edge at 2.5, forward calorimeter at 3.0) that the 1.5% spacing used before
# smoothed out by itself (W1 to held-out jets 1.9x the floor from the map alone, 1.0x now).
_QUANTILE_LEVELS = np.concatenate([[1e-5, 1e-4, 5e-4, 1e-3], np.linspace(0.002, 0.998, 499), [0.999, 0.9995, 0.9999, 1 - 1e-5]])


@dataclass(frozen=True)
class QuantileScaler:
    """Per column, a monotonic piecewise-linear map of data quantiles ``knots_x`` onto standard
    normal quantiles ``knots_z``, linear beyond the end knots (marginal Gaussianisation)."""

    knots_x: tuple[tuple[float, ...], ...]
    knots_z: tuple[float, ...]

    @classmethod
    def fit(cls, x: np.ndarray, levels: np.ndarray | None = None) -> QuantileScaler:
        """Knots at the probabilities ``levels`` (default: every 0.2%, finer in the tails)."""
        from scipy.special import ndtri

        levels = _QUANTILE_LEVELS if levels is None else np.asarray(levels, np.float64)
        cols = []
        for j in range(x.shape[1]):
            q = np.quantile(x[:, j], levels)
            span = max(float(q[-1] - q[0]), 1e-6)
            for i in range(1, len(q)):  # strictly increasing knots (discrete values repeat quantiles)
                q[i] = max(q[i], q[i - 1] + 1e-6 * span)
            cols.append(tuple(float(v) for v in q))
        return cls(tuple(cols), tuple(float(v) for v in ndtri(levels)))

    @staticmethod
    def _map(v: np.ndarray, xp: np.ndarray, fp: np.ndarray) -> np.ndarray:
        out = np.interp(v, xp, fp)
        lo, hi = v < xp[0], v > xp[-1]
        out[lo] = fp[0] + (v[lo] - xp[0]) * (fp[1] - fp[0]) / (xp[1] - xp[0])
        out[hi] = fp[-1] + (v[hi] - xp[-1]) * (fp[-1] - fp[-2]) / (xp[-1] - xp[-2])
        return out

    def forward(self, x: np.ndarray) -> np.ndarray:
        z = np.asarray(self.knots_z)
        return np.column_stack([self._map(x[:, j], np.asarray(k), z) for j, k in enumerate(self.knots_x)])

    def inverse(self, z: np.ndarray) -> np.ndarray:
        zk = np.asarray(self.knots_z)
        return np.column_stack([self._map(z[:, j], zk, np.asarray(k)) for j, k in enumerate(self.knots_x)])


def find_lattice(x: np.ndarray, max_values: int = 5000) -> tuple[float, float, tuple[float, ...]]:
    """(step, origin, values) if the values of ``x`` lie on a lattice origin + k step (as jet
    areas counted in ghosts do), with ``values`` the distinct values seen; else (0, 0, ())."""
    x = np.asarray(x, np.float64)[:2_000_000]
    values, counts = np.unique(x, return_counts=True)
    if len(values) < 3 or len(values) > max_values:
        return 0.0, 0.0, ()
    diffs = np.diff(values)
    step = float(np.min(diffs[diffs > 1e-9 * max(1.0, abs(values).max())])) if np.any(diffs > 0) else 0.0
    if step <= 0:
        return 0.0, 0.0, ()
    origin = float(values[np.argmax(counts)])
    k = (values - origin) / step
    if not np.all(np.abs(k - np.round(k)) < 0.05):
        return 0.0, 0.0, ()
    return step, origin, tuple(float(v) for v in values)


def lattice_index(x: np.ndarray, lattice: tuple[Any, ...]) -> np.ndarray:
    """Index (int64) of the lattice's observed value nearest to each ``x``; the lattice must
    have values."""
    values = np.asarray(lattice[2], np.float64)
    i = np.clip(np.searchsorted(values, x), 1, len(values) - 1)
    return np.where(np.abs(x - values[i - 1]) <= np.abs(values[i] - x), i - 1, i).astype(np.int64)


def snap(x: np.ndarray, lattice: tuple[float, ...] | tuple[float, float, tuple[float, ...]]) -> np.ndarray:
    """Replace ``x`` by the nearest of the lattice's observed values (exactly those values, so
    that no classifier can tell them apart by rounding); unchanged when there is no lattice."""
    values = np.asarray(lattice[2] if len(lattice) > 2 else (), np.float64)
    if len(values) == 0:
        return x
    return values[lattice_index(x, lattice)]


@dataclass
class LoadedModel:
    """A trained model: the torch module, its scalers and its metadata."""

    module: Any
    arch: Architecture
    context_scaler: Scaler
    target_scaler: QuantileScaler
    fake_context_scaler: Scaler
    fake_target_scaler: QuantileScaler
    fake_pt_floor: float
    metadata: dict[str, Any]
    area_lattice: tuple[Any, ...] = (0.0, 0.0, ())
    fake_area_lattice: tuple[Any, ...] = (0.0, 0.0, ())
    # optional per-column map of the unmatched-jet flow's Gaussianised samples onto exact
    # standard normals, fitted on the flow's own samples (``calibrate_fake_flow``): with it the
    # unmatched-jet marginals are those of the data ``fake_target_scaler`` was fitted on, and the
    # flow supplies their dependence on each other and on the event context
    fake_flow_calibration: QuantileScaler | None = None
    # optional residual correction of the matched jets' pT response median and width per gen
    # pT x |eta| bin (``calibrate_response``); fitted for these flow weights
    response_calibration: ResponseCalibration | None = None

    def fake_flow_outputs(self, gauss: np.ndarray) -> np.ndarray:
        """Unmatched-jet targets (n, 5) (see :func:`fake_targets`) of the unmatched-jet flow's
        samples ``gauss`` (n, 5) in its Gaussianised space, through the calibration if any."""
        if self.fake_flow_calibration is not None:
            gauss = self.fake_flow_calibration.forward(gauss)
        return self.fake_target_scaler.inverse(gauss)

    def scalers_dict(self) -> dict[str, Any]:
        out = {
            "context": asdict(self.context_scaler),
            "target": asdict(self.target_scaler),
            "fake_context": asdict(self.fake_context_scaler),
            "fake_target": asdict(self.fake_target_scaler),
            "fake_pt_floor": self.fake_pt_floor,
            "area_lattice": list(self.area_lattice),
            "fake_area_lattice": list(self.fake_area_lattice),
        }
        if self.fake_flow_calibration is not None:
            out["fake_flow_calibration"] = asdict(self.fake_flow_calibration)
        if self.response_calibration is not None:
            out["response_calibration"] = self.response_calibration.to_dict()
        return out


FORMAT = "hepfastsim-kinematics-v3"


def save_model(model: LoadedModel, path: str | Path) -> tuple[Path, Path]:
    """Write ``<path>.safetensors`` (weights) and ``<path>.json`` (architecture, scalers, metadata).

    ``path`` may be given with or without either suffix. No pickle is involved.
    """
    doc = {
        "format": FORMAT,
        "architecture": asdict(model.arch),
        "scalers": model.scalers_dict(),
        "context_names": list(model.arch.context),
        "target_names": list(TARGET_NAMES),
        "fake_context_names": list(FAKE_CONTEXT_NAMES),
        "fake_target_names": list(FAKE_TARGET_NAMES),
        **model.metadata,
    }
    return write_model(path, model.module.state_dict(), doc)


def load_model(path: str | Path) -> LoadedModel:
    """Load weights and metadata written by :func:`save_model` (safetensors + JSON, no pickle)."""
    state, doc = read_model(path, FORMAT, what="kinematics model")
    try:
        arch = Architecture.from_dict(doc["architecture"])
    except ValueError as err:
        raise ModelError(f"kinematics model {str(path)!r}: {err}") from err
    module = build_model(arch)
    load_state(module, state, path, what="kinematics model")
    module.eval()
    for p in module.parameters():
        p.requires_grad_(False)
    s = doc["scalers"]
    mk = lambda d: Scaler(tuple(d["center"]), tuple(d["scale"]))  # noqa: E731
    mq = lambda d: QuantileScaler(tuple(tuple(k) for k in d["knots_x"]), tuple(d["knots_z"]))  # noqa: E731
    meta_only = {k: v for k, v in doc.items() if k not in ("format", "architecture", "scalers")}
    return LoadedModel(
        module=module,
        arch=arch,
        context_scaler=mk(s["context"]),
        target_scaler=mq(s["target"]),
        fake_context_scaler=mk(s["fake_context"]),
        fake_target_scaler=mq(s["fake_target"]),
        fake_pt_floor=float(s["fake_pt_floor"]),
        metadata=meta_only,
        area_lattice=_lattice(s["area_lattice"]),
        fake_area_lattice=_lattice(s["fake_area_lattice"]),
        fake_flow_calibration=mq(s["fake_flow_calibration"]) if "fake_flow_calibration" in s else None,
        response_calibration=_response_calibration(s, path),
    )


def _response_calibration(scalers: dict[str, Any], path: str | Path) -> ResponseCalibration | None:
    if "response_calibration" not in scalers:
        return None
    try:
        return ResponseCalibration.from_dict(scalers["response_calibration"])
    except (KeyError, TypeError, ValueError) as err:
        raise ModelError(f"kinematics model {str(path)!r}: unreadable 'response_calibration' in its JSON ({err})") from err


def _lattice(v: list[Any]) -> tuple[Any, ...]:
    return (float(v[0]), float(v[1]), tuple(float(x) for x in (v[2] if len(v) > 2 else ())))


def n_parameters(module: Any) -> int:
    return int(sum(p.numel() for p in module.parameters()))


def extend_context(model: LoadedModel, names: Sequence[str]) -> LoadedModel:
    """``model`` with context columns ``names`` added after its own, read by the flow, the
    efficiency and the area networks through new input weights of zero: it computes exactly
    what ``model`` does until trained further. The new columns are standardised as (x - 0) / 1."""
    import copy

    import torch

    new = [n for n in names if n not in model.arch.context]
    if not new:
        return model
    arch = replace(model.arch, context=(*model.arch.context, *new))
    module = copy.deepcopy(model.module)
    n_old, k = len(model.arch.context), len(new)

    def widen(linear: Any, at: int) -> None:
        w = linear.weight.data
        linear.weight = torch.nn.Parameter(torch.cat([w[:, :at], w.new_zeros(w.shape[0], k), w[:, at:]], dim=1))
        linear.in_features += k

    for transform in module.flow.transform.transforms:  # coupling hyper-networks read [x_a, context]
        first = transform.hyper[0]
        widen(first, first.in_features)
    widen(module.efficiency[0], n_old)
    if arch.area_values > 0:
        widen(module.area[0], n_old)  # the area network reads [context, flow outputs]
    scaler = Scaler(model.context_scaler.center + (0.0,) * k, model.context_scaler.scale + (1.0,) * k)
    return replace(model, module=module, arch=arch, context_scaler=scaler)
