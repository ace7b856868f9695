"""A small coffea processor for the executor tests, importable by dask workers (PYTHONPATH)."""

from __future__ import annotations

from typing import Any

import awkward as ak
import hist
import numpy as np
from coffea import processor


class GenJetPt(processor.ProcessorABC):
    """Weighted GenJet pT histogram (GeV) and event count per dataset."""

    def process(self, events: Any) -> dict[str, Any]:
        h = hist.Hist(hist.axis.Regular(20, 0.0, 400.0, name="pt"), storage=hist.storage.Weight())
        pt = events.GenJet.pt
        weight = ak.broadcast_arrays(events.genWeight, pt)[0]
        h.fill(pt=np.asarray(ak.flatten(pt)), weight=np.asarray(ak.flatten(weight)))
        return {events.metadata["dataset"]: {"events": len(events), "pt": h}}

    def postprocess(self, accumulator: Any) -> Any:
        return accumulator
