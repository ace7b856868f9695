"""Plumbing of the kinematics model: training data, save/load without pickle, simulate, convert, CLI."""

from __future__ import annotations

import dataclasses
import json
import pickle
import time
from pathlib import Path

import awkward as ak
import numpy as np
import pytest
import torch
import uproot

from hepfastsim.cli.main import main
from hepfastsim.convert import ConvertConfig, convert
from hepfastsim.errors import BranchNotFoundError, ModelError
from hepfastsim.kernels.rng import event_keys
from hepfastsim.models.kinematics_flow import (
    CONTEXT_NAMES,
    LEGACY_CONTEXT_NAMES,
    Architecture,
    QuantileScaler,
    decode_matched,
    extend_context,
    find_lattice,
    load_model,
    matched_targets,
    nearest_neighbour_dr,
    save_model,
    snap,
)
from hepfastsim.models.kinematics_train import TrainConfig, load_training_data, train_kinematics
from hepfastsim.simulators import GenEvents, KinematicsSimulator, make_simulator
from hepfastsim.simulators.kinematics import DEFAULT_WEIGHTS

from paired_factory import make_paired_events, write_paired

TINY = Architecture(flow_transforms=2, flow_hidden=(16,), flow_bins=4, eff_hidden=(16,), fake_count_hidden=(16,),
                    fake_max=8, fake_flow_transforms=2, fake_flow_hidden=(16,))


@pytest.fixture(scope="module")
def paired_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_paired(tmp_path_factory.mktemp("kin") / "paired.root", 400)


@pytest.fixture(scope="module")
def tiny_model(paired_file: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    data = load_training_data([str(paired_file)], holdout_fraction=0.2)
    model = train_kinematics(data, TrainConfig(epochs=2, batch_size=256, arch=TINY))
    base = tmp_path_factory.mktemp("kin_model") / "tiny"
    save_model(model, base)
    return base


def test_training_data_counts_match_the_file(paired_file: Path) -> None:
    data = load_training_data([str(paired_file)], holdout_fraction=0.25, seed=1)
    a = uproot.open(paired_file)["Events"].arrays(["GenJet_pt", "Jet_genJetIdx"])
    n_matched = int(ak.sum(a.Jet_genJetIdx >= 0))
    assert data.matched.sum() == n_matched == len(data.targets)
    assert len(data.fake_jets) == int(ak.sum(a.Jet_genJetIdx < 0)) == data.fake_counts.sum()
    assert len(data.context) == int(ak.sum(ak.num(a.GenJet_pt)))
    assert 0.1 < data.event_holdout.mean() < 0.4
    # the nConstituents column holds integer counts before dequantisation
    assert np.all(data.targets[:, 4] == np.round(data.targets[:, 4]))


def test_missing_reco_branch_names_file_and_branch(tmp_path: Path) -> None:
    path = write_paired(tmp_path / "no_area.root", 30, drop=("Jet_area",))
    with pytest.raises(BranchNotFoundError, match="Jet_area.*no_area.root"):
        load_training_data([str(path)])


def test_targets_round_trip() -> None:
    rng = np.random.default_rng(0)
    n = 500
    g = {"pt": rng.uniform(20, 500, n), "eta": rng.uniform(-4, 4, n), "phi": rng.uniform(-3, 3, n), "mass": rng.uniform(0, 40, n)}
    rho = rng.uniform(5, 30, n)
    reco = {"pt": g["pt"] * rng.normal(1, 0.1, n), "eta": g["eta"] + 0.01, "phi": np.mod(g["phi"] + 0.3 + np.pi, 2 * np.pi) - np.pi,
            "mass": g["mass"] * 1.1, "n": rng.integers(1, 60, n).astype(float), "area": rng.uniform(0.3, 0.6, n)}
    y = matched_targets(g["pt"], g["eta"], g["phi"], g["mass"], rho, reco["pt"], reco["eta"], reco["phi"], reco["mass"],
                        reco["n"], reco["area"], dequant=np.full(n, 0.5))
    back = decode_matched(y, g["pt"], g["eta"], g["phi"], g["mass"], rho)
    for k, ref in (("pt", reco["pt"]), ("eta", reco["eta"]), ("phi", reco["phi"]), ("mass", reco["mass"]),
                   ("nConstituents", reco["n"]), ("area", reco["area"])):
        np.testing.assert_allclose(back[k], ref, rtol=1e-9, atol=1e-9, err_msg=k)


def test_quantile_scaler_gaussianises_and_inverts() -> None:
    rng = np.random.default_rng(2)
    x = np.column_stack([rng.standard_cauchy(20000), rng.exponential(size=20000), rng.integers(0, 3, 20000)])
    q = QuantileScaler.fit(x)
    z = q.forward(x)
    assert np.all(np.abs(z[:, :2].mean(axis=0)) < 0.02) and np.all(np.abs(z[:, :2].std(axis=0) - 1) < 0.02)
    assert np.abs(z[:, :2]).max() < 4.5  # heavy tails inside the spline domain [-5, 5]
    np.testing.assert_allclose(q.inverse(z), x, atol=1e-9)
    far = np.array([[1e6, 50.0, 5.0]])  # beyond the end knots: linear, still invertible
    np.testing.assert_allclose(q.inverse(q.forward(far)), far, rtol=1e-9)


def test_quantile_map_keeps_a_narrow_gap() -> None:
    """Sharp structure (a detector edge) survives the map alone: a gap 0.6% of the range wide
    in uniform data gets < 0.25% of the mapped normals (knots 0.2% apart; 1.5% gave 0.44%)."""
    rng = np.random.default_rng(0)
    x = rng.random(400_000)
    x = x[(x < 0.497) | (x > 0.503)]
    q = QuantileScaler.fit(x[:, None])
    g = q.inverse(rng.normal(size=(400_000, 1)))[:, 0]
    assert np.mean((g > 0.497) & (g < 0.503)) < 0.0025


def test_lattice_detection_and_snap() -> None:
    rng = np.random.default_rng(3)
    step, origin = 0.002494, 0.5037
    area = origin + step * rng.integers(-80, 10, 5000)
    found = find_lattice(area)
    assert found[0] == pytest.approx(step, rel=1e-6)
    np.testing.assert_allclose(snap(area + rng.uniform(-0.4, 0.4, 5000) * step, found), area, atol=1e-9)
    assert found[2] == tuple(np.unique(area))
    assert find_lattice(rng.normal(size=5000)) == (0.0, 0.0, ())
    # snapping gives exactly the observed values, and leaves data without a lattice alone
    assert set(snap(np.array([0.0, 0.5037 + 0.4 * step, 10.0]), found)) <= set(found[2])
    x = rng.normal(size=10)
    assert snap(x, (0.0, 0.0, ())) is x


def test_nearest_neighbour_dr_against_a_loop() -> None:
    jets = ak.Array([[{"eta": 0.0, "phi": 3.1}, {"eta": 0.0, "phi": -3.1}, {"eta": 1.0, "phi": 0.0}], [{"eta": 2.0, "phi": 0.0}], []])
    got = nearest_neighbour_dr(jets)
    dphi = 2 * np.pi - 6.2
    np.testing.assert_allclose(got, [dphi, dphi, np.hypot(1.0, 3.1), 5.0], rtol=1e-6)


def test_save_load_without_pickle(tiny_model: Path) -> None:
    from safetensors import safe_open

    weights = tiny_model.with_suffix(".safetensors")
    meta = json.loads(tiny_model.with_suffix(".json").read_text())
    raw = weights.read_bytes()
    header_len = int.from_bytes(raw[:8], "little")
    assert json.loads(raw[8:8 + header_len])["__metadata__"]["format"] == "hepfastsim-kinematics-v3"  # a JSON header, no pickle
    with safe_open(str(weights), framework="pt") as f:
        assert any(k.startswith("flow.") for k in f.keys())
    assert meta["format"] == "hepfastsim-kinematics-v3"
    assert meta["training"]["files"][0]["events"] == 400
    assert meta["architecture"]["flow_hidden"] == [16]
    model = load_model(tiny_model)
    assert model.arch == dataclasses.replace(TINY, area_values=len(model.area_lattice[2])) and model.arch.area_values > 5
    assert model.fake_pt_floor > 0


def test_bad_weights_raise_model_error(tmp_path: Path, tiny_model: Path) -> None:
    with pytest.raises(ModelError, match="no file"):
        load_model(tmp_path / "missing")
    bad = tmp_path / "bad"
    bad.with_suffix(".json").write_text(tiny_model.with_suffix(".json").read_text())
    bad.with_suffix(".safetensors").write_bytes(b"not a safetensors file")
    with pytest.raises(ModelError, match="cannot load kinematics model weights"):
        load_model(bad)
    broken = tmp_path / "broken_calibration"
    doc = json.loads(tiny_model.with_suffix(".json").read_text())
    doc["scalers"]["response_calibration"] = {"pt_edges": [20, 30], "eta_edges": [0, 5], "pivot": [0, 0], "shift": [0],
                                              "scale": [1]}
    broken.with_suffix(".json").write_text(json.dumps(doc))
    broken.with_suffix(".safetensors").write_bytes(tiny_model.with_suffix(".safetensors").read_bytes())
    with pytest.raises(ModelError, match="unreadable 'response_calibration'"):
        load_model(broken)


def _gen_events(n: int, seed: int = 5) -> GenEvents:
    branches = make_paired_events(n, seed)
    return GenEvents.from_branches(branches, event_keys(7, 11, np.arange(n)))


def test_simulate_output_structure(tiny_model: Path) -> None:
    sim = KinematicsSimulator(tiny_model)
    events = _gen_events(200)
    reco = sim.simulate(events)
    assert len(reco) == len(events)
    assert set(reco.fields) == set(sim.output_fields)
    for name, dtype in sim.output_fields.items():
        assert ak.to_numpy(ak.flatten(reco[name])).dtype == dtype, name
    pt = reco.pt
    assert ak.all(pt[:, 1:] <= pt[:, :-1])  # sorted by decreasing pT
    n_gen = ak.num(events.jets)
    idx = reco.genJetIdx
    assert ak.all((idx >= -1) & (idx < n_gen))
    assert ak.any(idx == -1) and ak.any(idx >= 0)
    # each gen jet yields at most one reco jet
    matched = idx[idx >= 0]
    assert ak.all(ak.num(matched) == ak.num(ak.run_lengths(ak.sort(matched))) )
    assert ak.all(reco.nConstituents >= 1) and ak.all(reco.area >= 0) and ak.all(reco.mass >= 0)
    assert ak.all(np.abs(reco.phi) <= np.pi + 1e-6)


def test_simulate_is_a_function_of_the_keys(tiny_model: Path) -> None:
    sim = KinematicsSimulator(tiny_model)
    events = _gen_events(120)
    a = sim.simulate(events)
    # the same events in two halves give the same jets
    first = GenEvents(events.jets[:50], events.n_pu[:50], events.rho[:50], events.keys[:50])
    second = GenEvents(events.jets[50:], events.n_pu[50:], events.rho[50:], events.keys[50:])
    b = ak.concatenate([sim.simulate(first), sim.simulate(second)])
    for f in sim.output_fields:
        np.testing.assert_array_equal(ak.to_numpy(ak.flatten(a[f])), ak.to_numpy(ak.flatten(b[f])), err_msg=f)
    # other keys give other jets
    other = GenEvents(events.jets, events.n_pu, events.rho, events.keys + np.uint64(1))
    c = sim.simulate(other)
    assert not np.array_equal(ak.to_numpy(ak.flatten(a.pt))[:20], ak.to_numpy(ak.flatten(c.pt))[:20])


def test_invalid_gen_jets_give_no_reco_jet(tiny_model: Path) -> None:
    sim = KinematicsSimulator(tiny_model)
    jets = ak.Array([[{"pt": np.nan, "eta": 0.0, "phi": 0.0, "mass": 1.0, "partonFlavour": 0, "hadronFlavour": 0},
                      {"pt": -5.0, "eta": 0.0, "phi": 0.0, "mass": 1.0, "partonFlavour": 0, "hadronFlavour": 0}]] * 50)
    reco = sim.simulate(GenEvents(jets, np.full(50, 30, np.float32), np.full(50, 20, np.float32), event_keys(1, 2, np.arange(50))))
    assert ak.all(reco.genJetIdx == -1)


def test_simulator_pickles_without_the_torch_model(tiny_model: Path) -> None:
    sim = KinematicsSimulator(tiny_model)
    sim.simulate(_gen_events(10))
    assert sim._model is not None
    clone = pickle.loads(pickle.dumps(sim))
    assert clone._model is None and clone.weights == sim.weights
    assert len(pickle.dumps(sim)) < 2000


def test_convert_does_not_depend_on_chunking(tiny_model: Path, paired_file: Path, tmp_path: Path) -> None:
    sim = KinematicsSimulator(tiny_model)
    outs = []
    for chunk in (1, 37, 1000):
        out = tmp_path / f"out_{chunk}.root"
        convert(paired_file, out, ConvertConfig(chunk_size=chunk, seed=3), simulator=sim)
        outs.append(uproot.open(out)["Events"].arrays(filter_name="FastJet_*"))
    for f in outs[0].fields:  # bit-identical (torch calls are padded to whole row blocks)
        np.testing.assert_array_equal(ak.to_numpy(ak.flatten(outs[0][f])), ak.to_numpy(ak.flatten(outs[1][f])), err_msg=f)


def test_oversampled_draws_differ(tiny_model: Path, paired_file: Path, tmp_path: Path) -> None:
    out = tmp_path / "over.root"
    convert(paired_file, out, ConvertConfig(oversample=2), simulator=KinematicsSimulator(tiny_model))
    a = uproot.open(out)["Events"].arrays(["FastJet_pt", "FastSim_oversampleIdx", "FastSim_weight", "genWeight"])
    d0, d1 = a[a.FastSim_oversampleIdx == 0], a[a.FastSim_oversampleIdx == 1]
    assert len(d0) == len(d1) == 400
    assert not np.array_equal(ak.to_numpy(ak.flatten(d0.FastJet_pt))[:50], ak.to_numpy(ak.flatten(d1.FastJet_pt))[:50])
    np.testing.assert_allclose(a.FastSim_weight, a.genWeight / 2, rtol=1e-6)


def test_cli_train_writes_weights_and_metadata(paired_file: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    out = tmp_path / "cli_model"
    rc = main(["train", "kinematics", "--data", str(paired_file), "--out", str(out), "--epochs", "1", "--quiet",
               "--batch-size", "512"])
    assert rc == 0
    meta = json.loads(out.with_suffix(".json").read_text())
    assert meta["retrain_command"].startswith("hepfastsim train kinematics --data ")
    assert meta["training"]["networks"]["flow"]["epochs_run"] == 1
    assert "parameters" in capsys.readouterr().out
    # refuses to overwrite without --overwrite
    assert main(["train", "kinematics", "--data", str(paired_file), "--out", str(out), "--epochs", "1", "--quiet"]) == 1
    assert "exists" in capsys.readouterr().err


def test_cli_train_missing_branch(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    path = write_paired(tmp_path / "no_idx.root", 20, drop=("Jet_genJetIdx",))
    assert main(["train", "kinematics", "--data", str(path), "--out", str(tmp_path / "m"), "--quiet"]) == 1
    err = capsys.readouterr().err
    assert "Jet_genJetIdx" in err and "no_idx.root" in err


@pytest.mark.skipif(not DEFAULT_WEIGHTS.with_suffix(".safetensors").exists(), reason="no shipped weights")
def test_shipped_weights_are_small_and_documented() -> None:
    weights = DEFAULT_WEIGHTS.with_suffix(".safetensors")
    assert weights.stat().st_size < 2_000_000
    model = load_model(DEFAULT_WEIGHTS)
    meta = model.metadata
    assert meta["retrain_command"].startswith("hepfastsim train kinematics")
    assert meta["training"]["files"] and all(f["events"] > 0 for f in meta["training"]["files"])
    assert "validation" in meta and meta["validation"]
    sim = make_simulator("kinematics")
    reco = sim.simulate(_gen_events(100))
    assert ak.sum(ak.num(reco)) > 0


def test_training_continues_from_an_initial_model(paired_file: Path, tiny_model: Path, tmp_path: Path) -> None:
    """--init keeps the model's scalers and architecture and starts from its weights."""
    from hepfastsim.models.kinematics_flow import load_model

    init = load_model(tiny_model)
    data = load_training_data([str(paired_file)], holdout_fraction=0.2)
    # zero epochs of learning rate: the continued model equals its start
    same = train_kinematics(data, TrainConfig(epochs=1, batch_size=256, learning_rate=0.0), init=init)
    for (name, a), b in zip(init.module.state_dict().items(), same.module.state_dict().values()):
        assert torch.equal(a.float(), b.float()), name
    assert same.target_scaler == init.target_scaler and same.arch == init.arch
    assert same.context_scaler == init.context_scaler and same.area_lattice == init.area_lattice
    # through the CLI: the chain of commands is recorded
    out = tmp_path / "continued"
    assert main(["train", "kinematics", "--data", str(paired_file), "--out", str(out), "--epochs", "1", "--quiet",
                 "--init", str(tiny_model)]) == 0
    meta = json.loads(out.with_suffix(".json").read_text())
    assert meta["retrain_commands"][-1].endswith(f"--init {tiny_model}")


def test_only_the_chosen_networks_train_and_fresh_ones_are_rebuilt(paired_file: Path, tiny_model: Path,
                                                                     tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    """--networks trains a subset of an --init model (the others keep its weights exactly);
    --fresh rebuilds a network and refits its target quantile map."""
    from hepfastsim.errors import HepfastsimError
    from hepfastsim.models.kinematics_flow import load_model

    init = load_model(tiny_model)
    data = load_training_data([str(paired_file)], holdout_fraction=0.2)
    part = train_kinematics(data, TrainConfig(epochs=1, batch_size=256, networks=("fake_flow",), fresh=("fake_flow",)),
                            init=init)
    assert set(part.metadata["training"]["networks"]) == {"fake_flow"}
    for name in ("flow", "efficiency", "fake_count"):
        for a, b in zip(getattr(init.module, name).state_dict().values(), getattr(part.module, name).state_dict().values()):
            assert torch.equal(a.float(), b.float()), name
    moved = [not torch.equal(a.float(), b.float()) for a, b in
             zip(init.module.fake_flow.state_dict().values(), part.module.fake_flow.state_dict().values())]
    assert any(moved)
    assert part.target_scaler == init.target_scaler  # the matched flow is not fresh: its map is kept
    # --refit-maps: a stale map is refitted to the data (the same seed gives the same dequantisation
    # as the original fit), the weights start where they were (learning rate 0: unchanged)
    stale = dataclasses.replace(init, target_scaler=QuantileScaler.fit(np.random.default_rng(5).normal(size=(100, 6))))
    refit = train_kinematics(data, TrainConfig(epochs=1, batch_size=256, learning_rate=0.0, networks=("flow",),
                                               refit_maps=True), init=stale)
    assert refit.target_scaler == init.target_scaler and refit.fake_target_scaler == init.fake_target_scaler
    for a, b in zip(init.module.flow.state_dict().values(), refit.module.flow.state_dict().values()):
        assert torch.equal(a.float(), b.float())
    with pytest.raises(HepfastsimError, match="rebuilt but not trained"):
        TrainConfig(networks=("flow",), fresh=("fake_flow",))
    with pytest.raises(HepfastsimError, match="unknown network"):
        TrainConfig(networks=("flows",))
    with pytest.raises(HepfastsimError, match="init"):
        train_kinematics(data, TrainConfig(epochs=1, networks=("flow",)))
    # CLI: recorded in the retrain command, refused without --init
    out = tmp_path / "fake_only"
    assert main(["train", "kinematics", "--data", str(paired_file), "--out", str(out), "--epochs", "1", "--quiet",
                 "--init", str(tiny_model), "--networks", "fake_flow", "--fresh", "fake_flow", "--ema", "0.99"]) == 0
    meta = json.loads(out.with_suffix(".json").read_text())
    assert meta["retrain_commands"][-1].endswith("--networks fake_flow --fresh fake_flow --ema 0.99")
    assert main(["train", "kinematics", "--data", str(paired_file), "--out", str(tmp_path / "x"), "--quiet",
                 "--networks", "flow"]) == 1
    assert "--init" in capsys.readouterr().err


def test_budget_limited_training_anneals_the_learning_rate(monkeypatch: pytest.MonkeyPatch) -> None:
    """The cosine follows the wall-clock budget when it ends before the epochs."""
    from hepfastsim.models.kinematics_train import _fit

    net = torch.nn.Linear(2, 1)
    x, y = torch.randn(4096, 2), torch.randn(4096)
    rates = []

    def loss(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        time.sleep(0.002)
        return ((net(a)[:, 0] - b) ** 2).mean()

    class Spy(torch.optim.Adam):
        def step(self, *args, **kwargs):  # noqa: ANN002, ANN003, ANN202
            rates.append(self.param_groups[0]["lr"])
            return super().step(*args, **kwargs)

    monkeypatch.setattr(torch.optim, "Adam", Spy)
    report = _fit("toy", net, loss, (x, y), (x[:64], y[:64]), TrainConfig(epochs=1000, batch_size=64, learning_rate=1e-2),
                  0.5, torch.Generator().manual_seed(0), None)
    assert report["epochs_run"] < 1000  # stopped by the budget
    assert rates[0] == pytest.approx(1e-2) and rates[-1] < 0.1 * 1e-2  # annealed nonetheless


def test_ema_keeps_the_moving_average_of_the_weights(monkeypatch: pytest.MonkeyPatch) -> None:
    """With ema_decay the kept weights are the exponential moving average of the weights after
    each step (recomputed here), not the last raw weights; invalid decays are refused."""
    from hepfastsim.errors import HepfastsimError
    from hepfastsim.models.kinematics_train import _fit

    torch.manual_seed(3)
    net = torch.nn.Linear(2, 1)
    x, y = torch.randn(512, 2), torch.randn(512)
    after_steps = []

    class Spy(torch.optim.Adam):
        def step(self, *args, **kwargs):  # noqa: ANN002, ANN003, ANN202
            out = super().step(*args, **kwargs)
            after_steps.append([p.detach().clone() for p in net.parameters()])
            return out

    def loss(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        return ((net(a)[:, 0] - b) ** 2).mean()

    monkeypatch.setattr(torch.optim, "Adam", Spy)
    decay = 0.8
    config = TrainConfig(epochs=1, batch_size=64, learning_rate=5e-2, ema_decay=decay)
    _fit("toy", net, loss, (x, y), (x[:64], y[:64]), config, None, torch.Generator().manual_seed(0), None)
    assert len(after_steps) == 8
    average = after_steps[0]
    for step in after_steps[1:]:
        average = [decay * a + (1 - decay) * s for a, s in zip(average, step)]
    kept = [p.detach() for p in net.parameters()]
    for k, a, last in zip(kept, average, after_steps[-1]):
        assert torch.allclose(k, a, atol=1e-6)
        assert not torch.allclose(k, last, atol=1e-4)
    with pytest.raises(HepfastsimError, match="ema_decay"):
        TrainConfig(ema_decay=1.0)


def test_the_area_network_draws_the_area(tiny_model: Path) -> None:
    """A model with the area network takes a matched jet's area from it (a value of the area
    lattice): with every category but one switched off every matched jet gets that value;
    unmatched jets keep the unmatched-jet flow's areas."""
    sim = KinematicsSimulator(tiny_model)
    values = np.asarray(sim.model.area_lattice[2])
    head = sim.model.module.area
    assert head[-1].out_features == len(values) > 5
    j = len(values) // 3
    with torch.no_grad():
        head[-1].weight.zero_()
        head[-1].bias.fill_(-50.0)
        head[-1].bias[j] = 50.0
    reco = sim.simulate(_gen_events(150))
    area = ak.to_numpy(ak.flatten(reco.area[reco.genJetIdx >= 0]))
    assert len(area) > 50 and np.all(area == np.float32(values[j]))
    unmatched = ak.to_numpy(ak.flatten(reco.area[reco.genJetIdx < 0]))
    assert len(np.unique(unmatched)) > 3


def test_categorical_draw_is_the_inverse_cdf_whatever_the_blocks(tiny_model: Path) -> None:
    """A network whose logits do not depend on its input gives fixed probabilities p: a uniform
    u must land in the first category whose cumulative probability reaches u (u just below and
    just above each boundary), and rows on both sides of a block boundary (4096 rows) must get
    the same draws as when drawn alone."""
    sim = KinematicsSimulator(tiny_model)
    p = np.array([0.1, 0.2, 0.3, 0.4])
    net = torch.nn.Sequential(torch.nn.Linear(3, 4)).double()
    with torch.no_grad():
        net[0].weight.zero_()
        net[0].bias.copy_(torch.from_numpy(np.log(p)))
    edges = np.cumsum(p)[:-1]
    u = np.concatenate([[0.0, 1.0 - 1e-12], edges - 1e-9, edges + 1e-9])
    expected = np.concatenate([[0, 3], [0, 1, 2], [1, 2, 3]])
    x = np.random.default_rng(0).normal(size=(len(u), 3))
    assert np.array_equal(sim.categorical_draw(net, x, u), expected)
    # many rows: the frequencies follow p, and the draws of rows do not depend on the others
    rng = np.random.default_rng(1)
    u_many = rng.random(10_000)
    draws = sim.categorical_draw(net, rng.normal(size=(10_000, 3)), u_many)
    assert np.allclose(np.bincount(draws, minlength=4) / 10_000, p, atol=0.015)
    area_net = sim.model.module.area
    xa = rng.normal(size=(9_000, area_net[0].in_features))
    whole = sim.categorical_draw(area_net, xa, u_many[:9_000])
    rows = np.r_[0:5, 4090:4100, 8995:9000]
    alone = sim.categorical_draw(area_net, xa[rows], u_many[rows])
    assert np.array_equal(whole[rows], alone) and len(np.unique(whole)) > 3


def test_models_without_the_area_network_still_load(tiny_model: Path, tmp_path: Path) -> None:
    doc = json.loads(tiny_model.with_suffix(".json").read_text())
    state = load_model(tiny_model)
    old = _without_area_network(state)
    base = tmp_path / "old"
    save_model(old, base)
    written = json.loads(base.with_suffix(".json").read_text())
    del written["architecture"]["area_values"]  # as files written before the network existed
    base.with_suffix(".json").write_text(json.dumps(written))
    loaded = load_model(base)
    assert loaded.arch.area_values == 0 and not hasattr(loaded.module, "area")
    reco = KinematicsSimulator(base).simulate(_gen_events(150))
    area = ak.to_numpy(ak.flatten(reco.area[reco.genJetIdx >= 0]))
    assert len(np.unique(area)) > 3 and np.all(np.isin(area, np.float32(state.area_lattice[2])))  # the snapped flow
    assert doc["architecture"]["area_values"] == len(state.area_lattice[2])


def _without_area_network(model):  # noqa: ANN001, ANN202
    old = dataclasses.replace(model, arch=dataclasses.replace(model.arch, area_values=0))
    del old.module.area
    return old


def test_fresh_adds_the_area_network_to_an_older_model(paired_file: Path, tiny_model: Path) -> None:
    """--networks area --fresh area on a model without the network adds it, sized to the
    model's area lattice, and trains it; the other networks and the scalers stay as they were;
    without --fresh it is refused."""
    from hepfastsim.errors import HepfastsimError

    old = _without_area_network(load_model(tiny_model))
    data = load_training_data([str(paired_file)], holdout_fraction=0.2)
    with pytest.raises(HepfastsimError, match="--fresh area"):
        train_kinematics(data, TrainConfig(epochs=1, batch_size=256, networks=("area",)), init=old)
    config = TrainConfig(epochs=30, batch_size=256, learning_rate=1e-2, networks=("area",), fresh=("area",), arch=TINY)
    new = train_kinematics(data, config, init=old)
    n_values = len(old.area_lattice[2])
    assert new.arch.area_values == n_values and new.module.area[-1].out_features == n_values
    assert set(new.metadata["training"]["networks"]) == {"area"}
    for name in ("flow", "efficiency", "fake_count", "fake_flow"):
        for a, b in zip(getattr(old.module, name).state_dict().values(), getattr(new.module, name).state_dict().values()):
            assert torch.equal(a.float(), b.float()), name
    assert new.target_scaler == old.target_scaler and new.area_lattice == old.area_lattice
    # better than a uniform guess over the lattice values
    assert new.metadata["training"]["networks"]["area"]["best_heldout_loss"] < np.log(n_values)


def test_added_context_starts_from_the_same_model(paired_file: Path, tmp_path: Path) -> None:
    """--add-context singlet_daughter widens the networks that read the context with zero input
    weights: the flow, efficiency and area networks compute what they did, whatever the new
    column; training then goes on with it, and the model records its context. A model file from
    before the context was stored loads with the old thirteen columns."""
    data = load_training_data([str(paired_file)], holdout_fraction=0.2)
    legacy = train_kinematics(data, TrainConfig(epochs=1, batch_size=256,
                                                arch=dataclasses.replace(TINY, context=LEGACY_CONTEXT_NAMES)))
    assert len(legacy.arch.context) == 13 and legacy.module.efficiency[0].in_features == 13
    wide = extend_context(legacy, ["singlet_daughter"])
    assert wide.arch.context == CONTEXT_NAMES and wide.arch.context_columns == list(range(14))
    rng = np.random.default_rng(3)
    ctx = torch.as_tensor(rng.normal(size=(64, 13)), dtype=torch.float32)
    flag = torch.as_tensor(rng.integers(0, 2, size=(64, 1)), dtype=torch.float32)
    y = torch.as_tensor(rng.normal(size=(64, 6)), dtype=torch.float32)
    with torch.no_grad():
        assert torch.allclose(legacy.module.flow(ctx).log_prob(y), wide.module.flow(torch.cat([ctx, flag], 1)).log_prob(y),
                              atol=1e-5)
        assert torch.allclose(legacy.module.efficiency(ctx), wide.module.efficiency(torch.cat([ctx, flag], 1)), atol=1e-6)
        gauss = torch.as_tensor(rng.normal(size=(64, 4)), dtype=torch.float32)
        assert torch.allclose(legacy.module.area(torch.cat([ctx, gauss], 1)),
                              wide.module.area(torch.cat([ctx, flag, gauss], 1)), atol=1e-6)
    assert wide.context_scaler.center[-1] == 0.0 and wide.context_scaler.scale[-1] == 1.0
    # training with the added column, through the same option as the CLI
    trained = train_kinematics(data, TrainConfig(epochs=1, batch_size=256, networks=("flow",),
                                                 add_context=("singlet_daughter",)), init=legacy)
    assert trained.arch.context == CONTEXT_NAMES
    base = tmp_path / "wide"
    save_model(trained, base)
    assert json.loads(base.with_suffix(".json").read_text())["context_names"] == list(CONTEXT_NAMES)
    assert len(KinematicsSimulator(base).simulate(_gen_events(50))) == 50
    # a file written before the context was stored
    old = tmp_path / "old"
    save_model(legacy, old)
    doc = json.loads(old.with_suffix(".json").read_text())
    del doc["architecture"]["context"]
    old.with_suffix(".json").write_text(json.dumps(doc))
    assert load_model(old).arch.context == LEGACY_CONTEXT_NAMES
    assert len(KinematicsSimulator(old).simulate(_gen_events(50))) == 50
    with pytest.raises(ValueError, match="unknown"):
        Architecture(context=("log_pt", "colour"))
    doc["architecture"]["context"] = ["log_pt", "colour"]  # a hand-edited file names itself in the error
    old.with_suffix(".json").write_text(json.dumps(doc))
    with pytest.raises(ModelError, match="old.*unknown"):
        load_model(old)


def test_cli_add_context_needs_init(paired_file: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    out = tmp_path / "m"
    assert main(["train", "kinematics", "--data", str(paired_file), "--out", str(out), "--epochs", "1", "--quiet",
                 "--add-context", "singlet_daughter"]) == 1
    assert "--add-context" in capsys.readouterr().err and not out.with_suffix(".json").exists()


def _ks(a: np.ndarray, b: np.ndarray) -> float:
    """Kolmogorov-Smirnov distance of two samples."""
    grid = np.sort(np.concatenate([a, b]))
    return float(np.max(np.abs(np.searchsorted(np.sort(a), grid, "right") / len(a)
                               - np.searchsorted(np.sort(b), grid, "right") / len(b))))


def test_calibrated_unmatched_jets_have_the_marginals_of_the_data(tiny_model: Path, tmp_path: Path,
                                                                   capsys: pytest.CaptureFixture) -> None:
    """calibrate_fake_flow: fresh samples of the (barely trained) unmatched-jet flow, through
    the calibration, follow the data's marginal of every output; without it they do not. It is
    saved with the model, used by simulate, kept by training other networks and dropped by
    training the unmatched-jet flow; the CLI runs it alone with --networks none."""
    from hepfastsim.errors import HepfastsimError
    from hepfastsim.models.kinematics_flow import flow_inverse
    from hepfastsim.models.kinematics_train import calibrate_fake_flow

    init = load_model(tiny_model)
    cal_file = write_paired(tmp_path / "cal.root", 1500, seed=11)
    data = load_training_data([str(cal_file)], holdout_fraction=0.2)
    cal = calibrate_fake_flow(init, data, draws=8, seed=1)
    assert cal.metadata["fake_flow_calibration"]["unmatched_jets"] == len(data.fake_jets) > 1000
    ctx = init.fake_context_scaler.forward(data.event_context[np.tile(data.fake_event, 4)])
    gauss = flow_inverse(init.module.fake_flow, ctx, np.random.default_rng(99).standard_normal((len(ctx), 5)))
    ref = data.fake_jets.copy()
    ref[:, 3] = np.log(np.maximum(ref[:, 3], 0) + np.random.default_rng(2).random(len(ref)))  # dequantised count
    ks_cal = [_ks(cal.fake_flow_outputs(gauss)[:, j], ref[:, j]) for j in range(5)]
    ks_raw = [_ks(init.fake_flow_outputs(gauss)[:, j], ref[:, j]) for j in range(5)]
    assert max(ks_cal) < 0.05, ks_cal  # statistics of ~2,000 jets
    assert max(ks_raw) > 3 * max(ks_cal), (ks_raw, ks_cal)
    # saved and loaded; simulate changes the unmatched jets only
    save_model(cal, tmp_path / "cal")
    loaded = load_model(tmp_path / "cal")
    assert loaded.fake_flow_calibration == cal.fake_flow_calibration and loaded.fake_target_scaler == cal.fake_target_scaler
    events = GenEvents.from_branches(make_paired_events(200), event_keys(3, 0, np.arange(200)))
    a = KinematicsSimulator(weights=tiny_model).simulate(events)
    b = KinematicsSimulator(weights=tmp_path / "cal").simulate(events)
    matched_a, matched_b = a[a.genJetIdx >= 0], b[b.genJetIdx >= 0]
    assert ak.all(matched_a.pt == matched_b.pt) and ak.all(ak.num(a) == ak.num(b))
    assert not ak.all(a[a.genJetIdx < 0].eta == b[b.genJetIdx < 0].eta)
    # training other networks keeps it; training the unmatched-jet flow drops it
    cfg = dict(epochs=1, batch_size=256, learning_rate=0.0)
    assert train_kinematics(data, TrainConfig(networks=("efficiency",), **cfg), init=cal).fake_flow_calibration \
        == cal.fake_flow_calibration
    assert train_kinematics(data, TrainConfig(networks=("fake_flow",), **cfg), init=cal).fake_flow_calibration is None
    with pytest.raises(HepfastsimError, match="1000 unmatched jets"):
        calibrate_fake_flow(init, load_training_data([str(write_paired(tmp_path / "few.root", 50))]))
    # CLI: calibration alone, recorded in the chain of commands
    out = tmp_path / "cli_cal"
    assert main(["train", "kinematics", "--data", str(cal_file), "--out", str(out), "--quiet", "--init", str(tiny_model),
                 "--networks", "none", "--calibrate-fakes"]) == 0
    meta = json.loads(out.with_suffix(".json").read_text())
    assert "fake_flow_calibration" in meta["scalers"] and meta["fake_flow_calibration"]["draws"] == 4
    assert meta["retrain_commands"][-1].endswith("--networks none --calibrate-fakes")
    assert meta["training"] == json.loads(tiny_model.with_suffix(".json").read_text())["training"]
    assert main(["train", "kinematics", "--data", str(cal_file), "--out", str(tmp_path / "y"), "--quiet",
                 "--init", str(tiny_model), "--networks", "none"]) == 1
    assert "--calibrate-fakes" in capsys.readouterr().err and not (tmp_path / "y.json").exists()


def test_balance_weights_favour_rare_cells_and_reach_the_flow(paired_file: Path, tiny_model: Path,
                                                              tmp_path: Path) -> None:
    """A cell with 1% of the jets weighs ``max_weight`` times a common one; weights stay in
    [1, max]; 1 switches them off. Through the CLI the flow trains with them and records them."""
    from hepfastsim.models.kinematics_train import balance_weights

    rng = np.random.default_rng(0)
    common = np.full(9900, np.log(40.0)), rng.uniform(0.0, 0.4, 9900)  # one cell
    rare = np.full(100, np.log(400.0)), rng.uniform(3.5, 3.9, 100)  # another, 1% of the jets
    log_pt, abs_eta = np.concatenate([common[0], rare[0]]), np.concatenate([common[1], rare[1]])
    w = balance_weights(log_pt, abs_eta, 10.0)
    assert np.all(w[:9900] == 1.0) and np.all(w[9900:] == 10.0)
    assert np.all(balance_weights(log_pt, abs_eta, 1.0) == 1.0)
    assert np.allclose(balance_weights(log_pt, abs_eta, 1000.0)[9900:], 5000.0 / 100)  # mean of the 2 cells / 100
    out = tmp_path / "balanced"
    assert main(["train", "kinematics", "--data", str(paired_file), "--out", str(out), "--epochs", "1", "--quiet",
                 "--init", str(tiny_model), "--networks", "flow", "--balance-max-weight", "5"]) == 0
    meta = json.loads(out.with_suffix(".json").read_text())
    assert "--balance-max-weight 5.0" in meta["retrain_command"]
    assert meta["training"]["networks"]["flow"]["balance_weights"]["max"] == 5.0
    assert meta["training"]["config"]["balance_max_weight"] == 5.0
    assert main(["train", "kinematics", "--data", str(paired_file), "--out", str(tmp_path / "bad"), "--quiet",
                 "--init", str(tiny_model), "--balance-max-weight", "0.5"]) == 1


def test_response_calibration_gives_the_data_resolution(tiny_model: Path, tmp_path: Path,
                                                        capsys: pytest.CaptureFixture) -> None:
    """calibrate_response on toy files with a 20% Gaussian response: the (barely trained)
    model's matched jets then have the data's response resolution per bin on fresh events of
    the same kind, where before they did not. It is saved with the model, used by simulate
    (matched pT only), kept by training other networks and dropped by training the matched
    flow; the CLI runs it alone with --networks none."""
    from hepfastsim.errors import HepfastsimError
    from hepfastsim.evaluation.metrics import response_table
    from hepfastsim.models.kinematics_train import calibrate_response

    edges = {"pt_edges": (10.0, 60.0, 1e4), "eta_edges": (0.0, 2.5, 5.0)}
    init = load_model(tiny_model)
    cal_file = write_paired(tmp_path / "wide.root", 1500, seed=11, resolution=0.2)
    data = load_training_data([str(cal_file)], holdout_fraction=0.2)
    cal = calibrate_response(init, data, draws=8, seed=1, min_jets=300, **edges)
    assert all("scale" in b for b in cal.response_calibration.record["bins"])
    save_model(cal, tmp_path / "cal")
    assert load_model(tmp_path / "cal").response_calibration == cal.response_calibration

    fresh = make_paired_events(3000, seed=21, resolution=0.2)
    events = GenEvents.from_branches(fresh, event_keys(3, 0, np.arange(3000)))

    def table(pt: ak.Array, gen_idx: ak.Array) -> list:  # noqa: ANN001
        gen = events.jets[gen_idx[gen_idx >= 0]]
        return response_table(ak.flatten(gen.pt), ak.flatten(gen.eta), ak.flatten(pt[gen_idx >= 0]),
                              edges["pt_edges"], edges["eta_edges"], n_bootstrap=2)

    ref = table(fresh["Jet_pt"], fresh["Jet_genJetIdx"])
    a = KinematicsSimulator(weights=tiny_model).simulate(events)
    b = KinematicsSimulator(weights=tmp_path / "cal").simulate(events)
    raw, after = table(a.pt, a.genJetIdx), table(b.pt, b.genJetIdx)
    for r, x, y in zip(ref, raw, after):
        assert abs(y.resolution / r.resolution - 1) < 0.1 and abs(y.median / r.median - 1) < 0.03, (r, y)
    assert max(abs(x.resolution / r.resolution - 1) for r, x in zip(ref, raw)) > 0.3
    # only the matched jets' pT moves
    assert ak.all(ak.num(a) == ak.num(b)) and ak.all(ak.sort(a.eta[a.genJetIdx < 0]) == ak.sort(b.eta[b.genJetIdx < 0]))
    assert ak.all(ak.sort(a.mass[a.genJetIdx >= 0]) == ak.sort(b.mass[b.genJetIdx >= 0]))
    # training other networks keeps it; training the matched flow drops it
    cfg = dict(epochs=1, batch_size=256, learning_rate=0.0)
    assert train_kinematics(data, TrainConfig(networks=("efficiency",), **cfg), init=cal).response_calibration \
        == cal.response_calibration
    assert train_kinematics(data, TrainConfig(networks=("flow",), **cfg), init=cal).response_calibration is None
    with pytest.raises(HepfastsimError, match="1000 matched jets"):
        calibrate_response(init, load_training_data([str(write_paired(tmp_path / "few.root", 50))]))
    # CLI: calibration alone, recorded in the chain of commands
    out, validated = tmp_path / "cli_cal", tmp_path / "validated"
    save_model(dataclasses.replace(init, metadata={**init.metadata, "validation": {"held-out": {}}}), validated)
    assert main(["train", "kinematics", "--data", str(cal_file), "--out", str(out), "--init", str(validated),
                 "--networks", "none", "--calibrate-response"]) == 0
    assert "jet response: no bin with enough jets" in capsys.readouterr().out  # toy files: < 1000 jets per bin
    meta = json.loads(out.with_suffix(".json").read_text())
    assert "response_calibration" in meta["scalers"] and meta["response_calibration"]["draws"] == 4
    assert meta["retrain_commands"][-1].endswith("--networks none --calibrate-response")
    assert "validation" not in meta  # those of the uncalibrated model no longer apply
