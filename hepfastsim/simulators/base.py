"""The one interface every fast-simulation model implements.

The CLI, the coffea processors and the dask runs only talk to :class:`Simulator`;
nothing else knows which model is behind it.
"""

from __future__ import annotations

import abc
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import awkward as ak
import numpy as np

from hepfastsim.errors import ModelError
from hepfastsim.io.nanoaod import CONSTITUENT_FIELDS  # the fields every simulator with needs_constituents gets

__all__ = ["DEFAULT_MODEL", "CONSTITUENT_FIELDS", "GenEvents", "Simulator", "LearnedSimulator", "SIMULATORS", "register", "make_simulator"]

#: The model ``convert``, the processors and the CLI use when none is named.
DEFAULT_MODEL = "kinematics"


@dataclass(frozen=True)
class GenEvents:
    """Generator-level input of a chunk of events.

    jets:
        awkward array, one list per event of records ``pt`` (GeV), ``eta``, ``phi`` (rad),
        ``mass`` (GeV), ``partonFlavour``, ``hadronFlavour`` (int32); any order.
    n_pu:
        number of pileup interactions, float32, shape (n_events,).
    rho:
        event energy density in GeV, float32, shape (n_events,).
    keys:
        per-event random keys (uint64, shape (n_events,)) from
        :func:`hepfastsim.kernels.rng.event_keys`; the only source of randomness.
    constituents:
        optional [event][jet][constituent] records (pt, eta, phi, mass; and what else the
        simulator's ``constituent_fields`` name) of each gen jet.
    """

    jets: ak.Array
    n_pu: np.ndarray
    rho: np.ndarray
    keys: np.ndarray
    constituents: ak.Array | None = None

    def __post_init__(self) -> None:
        n = len(self.jets)
        for name in ("n_pu", "rho", "keys"):
            if len(getattr(self, name)) != n:
                raise ValueError(f"GenEvents.{name}: expected {n} events, got {len(getattr(self, name))}")

    def __len__(self) -> int:
        return len(self.jets)

    @classmethod
    def from_branches(cls, arrays: Mapping[str, Any], keys: np.ndarray, constituents: bool = False,
                      constituent_fields: Sequence[str] = CONSTITUENT_FIELDS) -> GenEvents:
        """Build from NanoAOD branches (``GenJet_*``, ``Pileup_nPU``, rho) of one chunk.

        With ``constituents``, also each gen jet's constituents (records of
        ``constituent_fields``) from the PFNano ``GenCands_*`` and ``GenJetCands_*`` branches
        (which must be in ``arrays``).
        """
        from hepfastsim.io.nanoaod import event_npu, event_rho, gen_jets, jet_constituents

        n = len(keys)
        cands = jet_constituents(arrays, fields=tuple(constituent_fields)) if constituents else None
        return cls(jets=gen_jets(arrays), n_pu=event_npu(arrays, n), rho=event_rho(arrays, n), keys=keys,
                   constituents=cands)


class Simulator(abc.ABC):
    """Gen jets + event information in, reco jet collection out; seeded through ``keys``.

    ``simulate`` returns one list per event of records whose fields are ``output_fields``
    (name -> numpy dtype), sorted by decreasing ``pt``, with ``genJetIdx`` the index of the
    originating gen jet in the input collection (-1 for pileup/fake jets).
    """

    name: ClassVar[str]
    output_fields: ClassVar[Mapping[str, np.dtype]]
    # True: ``simulate`` reads ``GenEvents.constituents``; convert and the processors then
    # require the PFNano GenCands/GenJetCands branches and build them.
    needs_constituents: ClassVar[bool] = False
    # Collections written besides the jets: name template -> {field: dtype}. Templates may use
    # ``{collection}`` (the jet collection, e.g. ``FastJet``) and ``{prefix}`` (it without a
    # trailing ``Jet``, e.g. ``Fast``): ``{prefix}PFCands`` -> ``FastPFCands_pt``. Such a simulator
    # overrides :meth:`simulate_with_extras`.
    extra_collections: ClassVar[Mapping[str, Mapping[str, np.dtype]]] = {}

    @abc.abstractmethod
    def simulate(self, events: GenEvents) -> ak.Array:
        """Reco jets for each event of ``events`` (see class docstring)."""

    def constituent_fields(self) -> tuple[str, ...]:
        """The ``GenCands`` fields ``simulate`` reads from ``GenEvents.constituents``."""
        return CONSTITUENT_FIELDS

    def simulate_with_extras(self, events: GenEvents) -> tuple[ak.Array, dict[str, ak.Array]]:
        """Reco jets and, per template of ``extra_collections``, one list of records per event."""
        return self.simulate(events), {}


class LearnedSimulator(Simulator):
    """A simulator with trained weights, loaded on first use into ``self._model``.

    The torch model is never pickled (coffea/dask workers reload it where it is used), and
    the weights come from ``self.weights`` when given, else from ``$<weights_env>``, else
    from the shipped ``default_weights``. Subclasses are dataclasses with the fields
    ``weights`` and ``_model``.
    """

    weights_env: ClassVar[str]
    default_weights: ClassVar[Path]

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state["_model"] = None
        return state

    @property
    def weights_path(self) -> Path:
        weights = getattr(self, "weights", None)
        if weights is not None:
            return Path(weights)
        return Path(os.environ.get(self.weights_env) or self.default_weights)  # set but empty: the default


SIMULATORS: dict[str, Callable[[], Simulator]] = {}


def register(name: str) -> Callable[[Callable[[], Simulator]], Callable[[], Simulator]]:
    """Register a zero-argument simulator factory under ``name`` (used by ``--model``)."""

    def decorator(factory: Callable[[], Simulator]) -> Callable[[], Simulator]:
        SIMULATORS[name] = factory
        return factory

    return decorator


# Modules whose import registers a built-in model; a module not written yet is skipped.
SIMULATOR_MODULES: tuple[str, ...] = (
    "hepfastsim.simulators.parametric",
    "hepfastsim.simulators.kinematics",
    "hepfastsim.simulators.image_gan",
    "hepfastsim.simulators.particle_vae",
)


def _register_builtin() -> None:
    import importlib

    for module_name in SIMULATOR_MODULES:
        try:
            importlib.import_module(module_name)
        except ModuleNotFoundError as err:
            if err.name != module_name:
                raise


def make_simulator(name: str) -> Simulator:
    """Build the simulator registered as ``name``."""
    _register_builtin()
    if name not in SIMULATORS:
        raise ModelError(f"unknown model {name!r}; expected one of: {', '.join(sorted(SIMULATORS))}")
    return SIMULATORS[name]()
