"""coffea NanoEvents schema that knows the fast-simulated collections.

coffea's ``NanoAODSchema`` reads ``FastJet`` as a plain collection (it only gives
four-vector behaviour to the collection names it lists). The subclass below adds the
output collection as a ``PtEtaPhiMCollection`` and cross-references ``genJetIdx`` to
``GenJet``, without mutating coffea's own class at import time.
"""

from __future__ import annotations

from functools import lru_cache

from coffea.nanoevents import NanoAODSchema

from hepfastsim.io.schema import DEFAULT_COLLECTION

__all__ = ["FastSimNanoAODSchema", "fastsim_schema"]


@lru_cache(maxsize=None)
def fastsim_schema(collection: str = DEFAULT_COLLECTION) -> type[NanoAODSchema]:
    """A ``NanoAODSchema`` subclass in which ``collection`` is a four-vector collection."""
    return type(
        f"FastSimNanoAODSchema_{collection}",
        (NanoAODSchema,),
        {
            "__doc__": f"NanoAODSchema with {collection!r} as a PtEtaPhiM collection linked to GenJet.",
            "mixins": {**NanoAODSchema.mixins, collection: "PtEtaPhiMCollection"},
            "all_cross_references": {
                **NanoAODSchema.all_cross_references,
                f"{collection}_genJetIdx": "GenJet",
            },
        },
    )


#: The schema for the default ``FastJet`` collection.
FastSimNanoAODSchema = fastsim_schema(DEFAULT_COLLECTION)
