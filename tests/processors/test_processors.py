"""The coffea processors through coffea's Runner, against ``hepfastsim convert``."""

from __future__ import annotations

import warnings

import awkward as ak
import numpy as np
import pytest
import uproot
from coffea import processor
from coffea.nanoevents import NanoAODSchema

from hepfastsim.convert import ConvertConfig, convert
from processors.dijet import DijetProcessor
from processors.fastsim import FastSimProcessor, collect_jets
from nanoaod_factory import write_nanoaod

pytestmark = pytest.mark.filterwarnings("ignore::RuntimeWarning")


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    d = tmp_path_factory.mktemp("proc")
    inputs = [write_nanoaod(d / f"in{i}.root", 80, seed=10 + i) for i in range(2)]
    converted = []
    for path in inputs:
        out = d / f"{path.stem}_fast.root"
        convert(path, out, ConvertConfig(seed=11))
        converted.append(out)
    return inputs, converted


def _run(executor, fileset, proc, chunksize=25):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return processor.Runner(executor=executor, schema=NanoAODSchema, chunksize=chunksize)(
            fileset, proc, treename="Events"
        )


def _executors():
    yield "iterative", processor.IterativeExecutor(status=False)
    yield "futures", processor.FuturesExecutor(workers=2, status=False)


@pytest.mark.parametrize("name", ["iterative", "futures"])
def test_fastsim_processor_equals_convert(files, name, tmp_path) -> None:
    inputs, converted = files
    executor = dict(_executors())[name]
    out = _run(executor, {"toy": [str(p) for p in inputs]}, FastSimProcessor(seed=11, output_dir=tmp_path))
    jets = collect_jets(out, "toy")
    expected = ak.concatenate([uproot.open(p)["Events"]["FastJet_pt"].array() for p in sorted(converted)])
    assert jets.pt.tolist() == ak.values_astype(expected, np.float32).tolist()
    assert out["toy"]["events"] == 160 and out["toy"]["reco_jets"] == ak.sum(ak.num(expected))
    parts = sorted(tmp_path.glob("in0_*.root"), key=lambda p: int(p.stem.split("_")[1].split("-")[0]))
    ranges = [tuple(int(x) for x in p.stem.split("_")[1].split("-")) for p in parts]
    assert len(ranges) > 1 and ranges[0][0] == 0 and ranges[-1][1] == 80
    assert all(a[1] == b[0] for a, b in zip(ranges, ranges[1:]))  # one file per chunk, contiguous
    written = ak.concatenate([uproot.open(p)["Events"]["FastJet_pt"].array() for p in parts])
    assert written.tolist() == uproot.open(converted[0])["Events"]["FastJet_pt"].array().tolist()


def test_dask_executor(files) -> None:
    distributed = pytest.importorskip("distributed")
    inputs, converted = files
    with distributed.LocalCluster(n_workers=1, threads_per_worker=1, processes=False, dashboard_address=None) as cluster:
        with distributed.Client(cluster) as client:
            out = _run(processor.DaskExecutor(client=client, status=False), {"toy": [str(inputs[0])]}, FastSimProcessor(seed=11))
    expected = uproot.open(converted[0])["Events"]["FastJet_pt"].array()
    assert collect_jets(out, "toy").pt.tolist() == expected.tolist()


def test_dijet_on_fly_equals_converted_collection(files) -> None:
    inputs, converted = files
    iterative = processor.IterativeExecutor(status=False)
    on_fly = _run(iterative, {"d": [str(p) for p in inputs]}, DijetProcessor(fastsim=FastSimProcessor(seed=11)))
    from_file = _run(iterative, {"d": [str(p) for p in converted]}, DijetProcessor(collection="FastJet"))
    h1, h2 = on_fly["d"]["mjj"], from_file["d"]["mjj"]
    assert h1.sum().value > 0 and on_fly["d"]["selected"] == from_file["d"]["selected"] > 0
    np.testing.assert_allclose(h1.values(), h2.values(), rtol=1e-6)
    sumw = sum(ak.sum(uproot.open(p)["Events"]["genWeight"].array()) for p in inputs)
    assert on_fly["d"]["sumw"] == pytest.approx(sumw, rel=1e-6)
    # weights: the histogram holds genWeight-weighted counts, not raw counts
    assert h1.sum().value != pytest.approx(on_fly["d"]["selected"])


def test_dijet_missing_collection_is_clear(files) -> None:
    inputs, _ = files
    with pytest.raises(Exception, match="no collection 'FastJet'"):
        _run(processor.IterativeExecutor(status=False), {"d": [str(inputs[0])]}, DijetProcessor(collection="FastJet"))


def test_dijet_histogram_same_under_iterative_and_futures(files) -> None:
    _, converted = files
    fileset = {"d": [str(p) for p in converted]}
    hists = [_run(ex, fileset, DijetProcessor(collection="FastJet"), chunksize=30)["d"]["mjj"] for _, ex in _executors()]
    assert hists[0].sum().value > 0
    np.testing.assert_allclose(hists[0].values(), hists[1].values(), rtol=1e-12)
    np.testing.assert_allclose(hists[0].variances(), hists[1].variances(), rtol=1e-12)
