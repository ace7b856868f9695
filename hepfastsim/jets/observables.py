"""Jet observables as awkward records, from constituents or from jet images.

One call returns a record per jet with the fields of
:func:`hepfastsim.kernels.observables.observable_fields`: ``pt`` (GeV), ``eta``,
``phi`` (rad), ``mass`` (GeV), ``n_constituents``, ``tau1 tau2 tau3 tau21 tau32``
(N-subjettiness, arXiv:1011.2268), ``ptd`` (arXiv:1209.6086), ``major minor`` (seed 000,
arXiv:1805.00850), ``girth``, ``flow1..flow4`` (seed 003, arXiv:2203.00520) and
``ring0..ringK`` (seed 000). Definitions and conventions are in
:mod:`hepfastsim.kernels.observables`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

import awkward as ak
import numpy as np

from hepfastsim import layout
from hepfastsim.jets.images import SEED000_DETECTOR, ImageConfig, _axis_columns, _resolve
from hepfastsim.kernels import observables as _ko
from hepfastsim.kernels import pixelise as _kp

#: Observable name -> (per-jet numba kernel, unit, arXiv source); see
#: :data:`hepfastsim.kernels.observables.OBSERVABLES`.
OBSERVABLES = _ko.OBSERVABLES

__all__ = ["OBSERVABLES", "ObservablesConfig", "jet_observables", "image_observables"]


@dataclass(frozen=True)
class ObservablesConfig:
    """Settings of :func:`jet_observables` / :func:`image_observables`.

    ``axes``: N-subjettiness axes, exclusive kT (``"kt"``, E-scheme) or winner-take-all
    (``"wta"``); ``one_pass`` refines them with fastjet-contrib's one-pass minimisation
    (``OnePass_KT_Axes`` / ``OnePass_WTA_KT_Axes``; LAGAN uses one-pass WTA kT).
    ``r0``: N-subjettiness normalisation radius. ``ring_edges``: Delta R edges of the
    seed-000 ring intensities. ``flow_jet_radius`` / ``n_flows``: seed-003 momentum
    flows in annuli of width ``flow_jet_radius / n_flows`` (0.1 for R = 0.4).
    """

    axes: Literal["kt", "wta"] = "kt"
    one_pass: bool = True
    r0: float = 0.4
    ring_edges: tuple[float, ...] = (0.0, 0.05, 0.10, 0.15, 0.25)
    flow_jet_radius: float = 0.4
    n_flows: int = 4

    def __post_init__(self) -> None:
        if self.axes not in ("kt", "wta"):
            raise ValueError(f"expected axes 'kt' or 'wta', got {self.axes!r}")
        if not self.r0 > 0.0:
            raise ValueError(f"expected r0 > 0, got {self.r0!r}")
        edges = np.asarray(self.ring_edges, dtype=np.float64)
        if edges.ndim != 1 or edges.size < 2 or np.any(np.diff(edges) <= 0) or edges[0] < 0:
            raise ValueError(f"expected at least 2 increasing non-negative ring_edges, got {self.ring_edges!r}")
        if not self.flow_jet_radius > 0.0 or self.n_flows < 1:
            raise ValueError(
                f"expected flow_jet_radius > 0 and n_flows >= 1, got {self.flow_jet_radius!r} and {self.n_flows!r}"
            )

    @property
    def fields(self) -> tuple[str, ...]:
        """Output field names, in column order."""
        return _ko.observable_fields(self.n_flows, len(self.ring_edges) - 1)


def _to_record(table: np.ndarray, fields: tuple[str, ...]) -> ak.Array:
    columns: dict[str, np.ndarray] = {}
    for k, name in enumerate(fields):
        col = np.ascontiguousarray(table[:, k])
        if name == "n_constituents":
            col = np.where(np.isfinite(col), col, -1).astype(np.int64)
        columns[name] = col
    return ak.zip(columns, depth_limit=1)


def _run(
    pt: np.ndarray,
    eta: np.ndarray,
    phi: np.ndarray,
    mass: np.ndarray | None,
    offsets: np.ndarray,
    config: ObservablesConfig,
    axis_eta: Any,
    axis_phi: Any,
    pt_norm: Any,
) -> ak.Array:
    table = _ko.jet_observables(
        pt,
        eta,
        phi,
        mass,
        offsets,
        axis_eta=axis_eta,
        axis_phi=axis_phi,
        pt_norm=pt_norm,
        r0=config.r0,
        axes=config.axes,
        one_pass=config.one_pass,
        flow_edges=_ko.flow_edges(config.flow_jet_radius, config.n_flows),
        ring_edges=np.asarray(config.ring_edges, dtype=np.float64),
    )
    return _to_record(table, config.fields)


def jet_observables(constituents: Any, config: ObservablesConfig = ObservablesConfig(), jet: Any = None) -> ak.Array:
    """One record of observables per jet from jagged constituents.

    ``constituents``: jagged records with ``pt`` (GeV), ``eta``, ``phi`` (rad) and
    optionally ``mass`` (GeV; massless if absent). ``jet``: optional one record per
    jet with ``eta``, ``phi`` and ``pt`` (GeV), e.g. the gen jet; when given, girth,
    flows and rings are measured around its axis and normalised to its pT, otherwise
    around / to the constituent sum. (N-subjettiness, pTD and the axes do not use it.)
    A constituent with NaN gives a jet of NaN; n_constituents is then -1.
    """
    cols, offsets = layout.to_flat_fields(constituents, ("pt", "eta", "phi", "mass"), optional=("mass",))
    n_jets = offsets.size - 1
    if jet is not None:
        axis = _axis_columns(jet, n_jets, ("eta", "phi", "pt"))
        ae, ap, pn = axis["eta"], axis["phi"], axis["pt"]
    else:
        ae = ap = pn = None
    return _run(cols["pt"], cols["eta"], cols["phi"], cols.get("mass"), offsets, config, ae, ap, pn)


def image_observables(
    images: Any,
    image_config: ImageConfig | str = SEED000_DETECTOR,
    config: ObservablesConfig = ObservablesConfig(),
    jet: Any = None,
) -> ak.Array:
    """One record of observables per jet image (seed 000 / seed 004 recipe).

    Each non-empty pixel becomes a massless pseudo-particle at the pixel centre (as
    seed 000 does for its substructure variables), then the constituent kernels run.
    ``jet`` (records with ``eta``, ``phi``, ``pt`` in GeV) places the image at the jet
    axis and, for normalised presets, converts intensities to GeV; rings and flows are
    around the image centre, normalised to the jet pT (so ``ring_k`` is the plain sum of
    the intensities in the ring for seed-000 images). Without ``jet`` the image centre
    is (0, 0) and intensities are used as they are.
    """
    cfg = _resolve(image_config)
    img = np.asarray(images)
    if img.ndim != 3 or img.shape[1:] != (cfg.n_eta, cfg.n_phi):
        raise ValueError(f"expected images of shape (n_jets, {cfg.n_eta}, {cfg.n_phi}), got shape {img.shape}")
    n_jets = img.shape[0]
    if jet is not None:
        axis = _axis_columns(jet, n_jets, ("eta", "phi", "pt"))
        ce, cp = axis["eta"], axis["phi"]
        scale = axis["pt"] if cfg.normalise else np.ones(n_jets)
    else:
        ce, cp, scale = np.zeros(n_jets), np.zeros(n_jets), np.ones(n_jets)
    pt, eta, phi, offsets = _kp.image_to_particles(
        img, half_eta=cfg.half_eta, half_phi=cfg.half_phi, centre_eta=ce, centre_phi=cp, scale=scale
    )
    pt_norm = scale if cfg.normalise else None
    return _run(pt, eta, phi, None, offsets, config, ce, cp, pt_norm)
