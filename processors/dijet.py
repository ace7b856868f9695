"""coffea processor of the dijet resonance search: selection and the mjj histogram.

Physics lives in :mod:`hepfastsim.analysis.dijet`; this processor only feeds it the chosen
jet collection (``Jet`` from the file, ``FastJet`` from a converted file, or ``FastJet``
simulated on the fly by a :class:`~processors.fastsim.FastSimProcessor`) and fills a
``hist`` histogram with the CMS dijet-mass binning and the event weights.
"""

from __future__ import annotations

from typing import Any

import awkward as ak
import hist
import numpy as np
from coffea import processor

from hepfastsim.analysis.dijet import CMS_DIJET_MASS_BINS, DijetSelection, select_dijets
from processors.fastsim import FastSimProcessor, _materialize

__all__ = ["DijetProcessor", "mjj_histogram"]


def mjj_histogram() -> hist.Hist:
    """Empty weighted mjj histogram (GeV) with the CMS dijet binning."""
    return hist.Hist(
        hist.axis.Variable(CMS_DIJET_MASS_BINS, name="mjj", label=r"$m_{jj}$ [GeV]"),
        storage=hist.storage.Weight(),
    )


class DijetProcessor(processor.ProcessorABC):
    """Dijet selection on ``collection``; returns ``{dataset: {"mjj", "events", "selected", "sumw"}}``.

    ``fastsim``: when given, the collection is simulated from the GenJets of each chunk
    instead of read from the file. ``weight``: event-weight branch (``genWeight``; unit
    weights if the file has none).
    """

    def __init__(
        self,
        collection: str = "Jet",
        selection: DijetSelection = DijetSelection(),
        fastsim: FastSimProcessor | None = None,
        weight: str = "genWeight",
    ) -> None:
        self.collection = collection
        self.selection = selection
        self.fastsim = fastsim
        self.weight = weight

    def jets(self, events: Any) -> ak.Array:
        if self.fastsim is not None:
            return self.fastsim.simulate(events)
        if self.collection not in events.fields:
            raise KeyError(
                f"no collection {self.collection!r} in {events.metadata.get('filename')!r}; "
                "convert the file first or pass fastsim=FastSimProcessor(...)"
            )
        coll = events[self.collection]
        return ak.zip({f: _materialize(coll[f]) for f in ("pt", "eta", "phi", "mass")})

    def process(self, events: Any) -> dict[str, Any]:
        jets = self.jets(events)
        if self.weight in events.fields:
            weights = np.asarray(ak.to_numpy(_materialize(events[self.weight])), dtype=np.float64)
        else:
            weights = np.ones(len(events))
        result = select_dijets(jets, self.selection)
        h = mjj_histogram()
        h.fill(mjj=result.mjj, weight=weights[result.selected])
        return {
            events.metadata["dataset"]: {
                "mjj": h,
                "events": len(events),
                "selected": int(result.selected.sum()),
                "sumw": float(weights.sum()),
            }
        }

    def postprocess(self, accumulator: dict[str, Any]) -> dict[str, Any]:
        return accumulator
