"""The one declaration of what hepfastsim adds to an output file (names, dtypes, counters)."""

from __future__ import annotations

from collections.abc import Mapping

import awkward as ak
import numpy as np

__all__ = [
    "DEFAULT_COLLECTION",
    "OVERSAMPLE_INDEX_BRANCH",
    "OVERSAMPLE_WEIGHT_BRANCH",
    "counter_name",
    "collection_branches",
    "extra_collection_name",
]

#: Default name of the fast-simulated reco jet collection (``nFastJet``, ``FastJet_pt``, ...).
DEFAULT_COLLECTION = "FastJet"
#: Event-level branches written with ``--oversample K``: which of the K draws a row is
#: (int32, 0..K-1), and the event weight divided by K (genWeight / K, or 1 / K without genWeight).
OVERSAMPLE_INDEX_BRANCH = "FastSim_oversampleIdx"
OVERSAMPLE_WEIGHT_BRANCH = "FastSim_weight"


def counter_name(collection: str) -> str:
    """NanoAOD counter branch of a collection: ``FastJet`` -> ``nFastJet``."""
    return f"n{collection}"


def extra_collection_name(template: str, collection: str) -> str:
    """Name of a simulator's extra collection (see ``Simulator.extra_collections``) next to the
    jet collection ``collection``: ``{prefix}PFCands`` -> ``FastPFCands`` and
    ``{collection}PFCands`` -> ``FastJetPFCands`` for ``FastJet`` (PFNano's ``PFCands`` and
    ``JetPFCands`` next to ``Jet``)."""
    prefix = collection[: -len("Jet")] if collection.endswith("Jet") and collection != "Jet" else collection
    return template.format(collection=collection, prefix=prefix)


def collection_branches(
    collection: str, objects: ak.Array, fields: Mapping[str, np.dtype]
) -> dict[str, ak.Array]:
    """Flatten a per-event list of records into ``<collection>_<field>`` jagged branches.

    Every field of ``fields`` must be present in ``objects``; it is cast to the declared dtype.
    """
    missing = [f for f in fields if f not in objects.fields]
    if missing:
        raise ValueError(f"collection {collection!r}: expected fields {list(fields)}, missing {missing}")
    return {f"{collection}_{name}": ak.values_astype(objects[name], dtype) for name, dtype in fields.items()}
