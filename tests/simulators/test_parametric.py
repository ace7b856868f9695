from __future__ import annotations

import awkward as ak
import numpy as np
import pytest

from hepfastsim.errors import ModelError
from hepfastsim.kernels.rng import event_keys
from hepfastsim.simulators import GenEvents, ParametricConfig, ParametricSimulator, make_simulator


def _events(pt: float, eta: float, n: int = 20000, jets_per_event: int = 2, rho: float = 20.0, seed: int = 0) -> GenEvents:
    total = n * jets_per_event
    jets = ak.unflatten(
        ak.zip(
            {
                "pt": np.full(total, pt, np.float32),
                "eta": np.full(total, eta, np.float32),
                "phi": np.tile(np.linspace(-3.0, 3.0, jets_per_event, dtype=np.float32), n),
                "mass": np.full(total, 10.0, np.float32),
                "partonFlavour": np.zeros(total, np.int32),
                "hadronFlavour": np.zeros(total, np.int32),
            }
        ),
        jets_per_event,
    )
    return GenEvents(jets, np.full(n, 30, np.float32), np.full(n, rho, np.float32), event_keys(seed, 1, np.arange(n)))


@pytest.mark.parametrize(("pt", "eta"), [(50.0, 0.3), (200.0, 1.8), (800.0, 0.0), (100.0, 3.5)])
def test_response_and_resolution_follow_the_formula(pt, eta) -> None:
    sim = ParametricSimulator()
    reco = sim.simulate(_events(pt, eta))
    gen_pt = np.float32(pt)
    response = ak.to_numpy(ak.flatten(reco.pt)) / gen_pt
    expected_sigma = sim.relative_resolution(np.array([pt]), np.array([eta]), np.array([20.0]))[0]
    assert abs(np.median(response) - 1.0) < 0.01
    q16, q84 = np.percentile(response, [16, 84])
    # the min_pt cut only touches the low tail at 50 GeV; compare the central width
    assert (q84 - q16) / 2 == pytest.approx(expected_sigma, rel=0.05)


def test_resolution_falls_with_pt_and_rises_with_pileup() -> None:
    sim = ParametricSimulator()
    pts = np.array([30.0, 100.0, 300.0, 1000.0])
    s = sim.relative_resolution(pts, np.zeros(4), np.full(4, 20.0))
    assert np.all(np.diff(s) < 0)
    assert sim.relative_resolution(pts, np.zeros(4), np.full(4, 40.0))[0] > s[0]


def test_efficiency_turn_on() -> None:
    sim = ParametricSimulator(ParametricConfig(min_pt=-np.inf))  # isolate the efficiency
    for pt in (8.0, 10.0, 14.0, 60.0):
        reco = sim.simulate(_events(pt, 0.5, n=20000, jets_per_event=1))
        measured = ak.sum(ak.num(reco)) / 20000
        assert measured == pytest.approx(sim.efficiency(np.array([pt]), np.array([0.5]))[0], abs=0.01)


def test_angles_and_links() -> None:
    sim = ParametricSimulator()
    events = _events(300.0, 1.0, n=5000, jets_per_event=3)
    reco = sim.simulate(events)
    gen = events.jets[reco.genJetIdx]
    deta = ak.to_numpy(ak.flatten(reco.eta - gen.eta))
    expected = np.hypot(sim.config.angular_a_gev / 300.0, sim.config.angular_b)
    assert np.std(deta) == pytest.approx(expected, rel=0.05)
    dphi = ak.to_numpy(ak.flatten(reco.phi - gen.phi))
    dphi = (dphi + np.pi) % (2 * np.pi) - np.pi
    assert np.abs(dphi).max() < 10 * expected
    assert ak.all(reco.phi >= -np.pi) and ak.all(reco.phi <= np.pi)
    assert ak.all(reco.pt[:, :-1] >= reco.pt[:, 1:])  # sorted by decreasing pT


def test_non_finite_and_empty_events() -> None:
    jets = ak.Array(
        [
            [],
            [{"pt": np.nan, "eta": 0.0, "phi": 0.0, "mass": 1.0}, {"pt": 100.0, "eta": 0.0, "phi": 0.0, "mass": 1.0}],
            [{"pt": 100.0, "eta": np.inf, "phi": 0.0, "mass": 1.0}, {"pt": -5.0, "eta": 0.0, "phi": 0.0, "mass": 1.0}],
        ]
    )
    events = GenEvents(jets, np.zeros(3, np.float32), np.zeros(3, np.float32), event_keys(0, 0, np.arange(3)))
    reco = ParametricSimulator().simulate(events)
    assert ak.num(reco).tolist() == [0, 1, 0]
    assert reco.genJetIdx.tolist() == [[], [1], []]
    assert ak.all(np.isfinite(ak.flatten(reco.pt)))


def test_registry() -> None:
    assert isinstance(make_simulator("parametric"), ParametricSimulator)
    with pytest.raises(ModelError, match="unknown model 'nope'.*parametric"):
        make_simulator("nope")
