"""The particle-VAE simulator through convert: FastPFCands + PFNano links that rebuild the
jets, the seed-003 acceptance after inference, chunk and oversampling independence, and
``validate --level particles``."""

from __future__ import annotations

import json
import pickle
from pathlib import Path

import awkward as ak
import numpy as np
import pytest
import torch
import uproot

from hepfastsim.cli.main import main
from hepfastsim.convert import ConvertConfig, convert
from hepfastsim.errors import HepfastsimError
from hepfastsim.models.particle_vae import LoadedVAE, VAEConfig, build_model, save_model
from hepfastsim.models.particle_vae_train import fit_standardiser, load_pairs
from hepfastsim.simulators.particle_vae import ParticleVAESimulator

EXAMPLE = Path(__file__).parents[2] / "examples" / "qcd_small.root"
LOW = {"gen_pt_min": 20.0, "jet_pt_min": 15.0}  # thresholds low enough for an untrained model


@pytest.fixture(scope="module", params=["set", "conv", "set_slots"])
def weights(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An untrained (random) model with a standardiser fitted on the example file; ``set_slots``:
    the conditional set VAE with per-slot latents, their input weights made non-zero."""
    torch.manual_seed(3)
    cfg = (VAEConfig(architecture="set", posterior="reco", slot_latent=2) if request.param == "set_slots"
           else VAEConfig(architecture=request.param))
    pairs = load_pairs([str(EXAMPLE)], pt_min=30.0)
    module = build_model(cfg).eval()
    if cfg.slot_latent:
        with torch.no_grad():
            module.slot_in.weight.normal_()
    model = LoadedVAE(module, cfg, fit_standardiser(pairs, cfg))
    base = tmp_path_factory.mktemp("vae") / f"vae_{request.param}"
    save_model(model, base)
    return base


@pytest.fixture(scope="module")
def converted(weights: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("out") / "out.root"
    convert(EXAMPLE, out, ConvertConfig(model="particle-vae", seed=5), simulator=ParticleVAESimulator(weights, **LOW))
    return out


def _read(path: Path) -> ak.Array:
    return uproot.open(path)["Events"].arrays(filter_name=["nFast*", "FastJet_*", "FastPFCands_*", "FastJetPFCands_*",
                                                           "GenJet_pt"])


def test_links_rebuild_the_jets(converted: Path) -> None:
    a = _read(converted)
    assert ak.sum(a.nFastJet) > 50
    assert ak.all(a.nFastPFCands == ak.num(a.FastPFCands_pt)) and ak.all(a.nFastJetPFCands == a.nFastPFCands)
    # every link points inside its event's collections
    assert ak.all(a.FastJetPFCands_jetIdx < a.nFastJet) and ak.all(a.FastJetPFCands_pFCandsIdx < a.nFastPFCands)
    # four-vector sums over the links, in float64, against the written jets
    c = {f: ak.values_astype(a[f"FastPFCands_{f}"], np.float64)[a.FastJetPFCands_pFCandsIdx] for f in
         ("pt", "eta", "phi", "mass")}
    pt, eta, phi, mass = (ak.to_numpy(ak.flatten(c[f])) for f in ("pt", "eta", "phi", "mass"))
    jet_offsets = np.concatenate([[0], np.cumsum(ak.to_numpy(a.nFastJet))])
    n_links = ak.to_numpy(ak.num(a.FastJetPFCands_jetIdx))
    jet = np.repeat(jet_offsets[:-1], n_links) + ak.to_numpy(ak.flatten(a.FastJetPFCands_jetIdx))
    comps = (pt * np.cos(phi), pt * np.sin(phi), pt * np.sinh(eta), np.sqrt((pt * np.cosh(eta)) ** 2 + mass**2))
    sx, sy, sz, se = (np.bincount(jet, weights=v, minlength=jet_offsets[-1]) for v in comps)
    np.testing.assert_allclose(np.hypot(sx, sy), ak.to_numpy(ak.flatten(a.FastJet_pt)), rtol=1e-4)
    # (float32-rounded constituents: the mass of near-collinear ones is known to ~0.1 GeV)
    np.testing.assert_allclose(np.sqrt(np.maximum(se**2 - sx**2 - sy**2 - sz**2, 0)),
                               ak.to_numpy(ak.flatten(a.FastJet_mass)), rtol=1e-3, atol=0.1)
    np.testing.assert_array_equal(np.bincount(jet, minlength=jet_offsets[-1]),
                                  ak.to_numpy(ak.flatten(a.FastJet_nConstituents)))
    # jets sorted by decreasing pT, linked to a gen jet
    assert ak.all(a.FastJet_pt[:, :-1] >= a.FastJet_pt[:, 1:])
    assert ak.all((a.FastJet_genJetIdx >= 0) & (a.FastJet_genJetIdx < ak.num(a.GenJet_pt)))


def test_acceptance_cuts_after_inference(converted: Path) -> None:
    a = _read(converted)
    sim = ParticleVAESimulator(**LOW)
    assert ak.all(a.FastPFCands_pt > sim.cand_pt_min) and ak.all(abs(a.FastPFCands_eta) < sim.cand_eta_max)
    assert ak.all(a.FastJet_pt > sim.jet_pt_min) and ak.all(abs(a.FastJet_eta) < sim.jet_eta_max)
    # Flow_n: scalar pT in annuli / jet pT, so their sum is at most (scalar pT sum / jet pT)
    flows = sum(a[f"FastJet_flow{i}"] for i in range(1, 5))
    scalar = ak.Array([[float(np.sum(np.asarray(a.FastPFCands_pt[e])[np.asarray(a.FastJetPFCands_pFCandsIdx[e])][
        np.asarray(a.FastJetPFCands_jetIdx[e]) == j])) for j in range(a.nFastJet[e])] for e in range(len(a))])
    assert ak.all(flows >= 0) and ak.all(flows <= scalar / a.FastJet_pt * (1 + 1e-4))


def test_output_does_not_depend_on_chunking_and_oversampling(weights: Path, converted: Path, tmp_path: Path) -> None:
    sim = ParticleVAESimulator(weights, **LOW)
    out = tmp_path / "chunks.root"
    convert(EXAMPLE, out, ConvertConfig(model="particle-vae", seed=5, chunk_size=23), simulator=sim)
    a, b = _read(converted), _read(out)
    for f in a.fields:
        assert ak.all(a[f] == b[f]), f
    over = tmp_path / "over.root"
    convert(EXAMPLE, over, ConvertConfig(model="particle-vae", seed=5, oversample=2, chunk_size=50), simulator=sim)
    c = _read(over)
    for f in a.fields:  # draw 0 of each event is the plain conversion
        assert ak.all(c[f][0::2] == a[f]), f
    assert ak.to_list(c.FastPFCands_pt[1::2]) != ak.to_list(a.FastPFCands_pt)  # draw 1 differs


def test_simulator_pickles_without_the_model(weights: Path) -> None:
    sim = ParticleVAESimulator(weights, **LOW)
    _ = sim.model
    again = pickle.loads(pickle.dumps(sim))
    assert again._model is None and again.weights == weights


def test_collection_clash_is_refused(weights: Path, tmp_path: Path) -> None:
    # with --collection Jet the candidate collection would be 'JetPFCands', as the links
    with pytest.raises(HepfastsimError, match="collection"):
        convert(EXAMPLE, tmp_path / "x.root", ConvertConfig(model="particle-vae", collection="Jet"),
                simulator=ParticleVAESimulator(weights, **LOW))
    assert not (tmp_path / "x.root").exists()


def test_validate_particles_cli(weights: Path, converted: Path, tmp_path: Path) -> None:
    if not weights.name.endswith("_set"):
        pytest.skip("one architecture is enough for the CLI")
    out = tmp_path / "val"
    rc = main(["validate", "--level", "particles", "--reference", str(EXAMPLE), "--candidate", f"vae={converted}",
               "--out", str(out), "--threads", "1"])
    assert rc == 0
    s = json.loads((out / "summary.json").read_text())
    entry = s["candidates"]["vae"]
    for v in ("pt", "mass", "flow1", "flow4", "px", "pz"):
        assert np.isfinite(entry["w1_ratio"][v]) and entry["symmetric_kl"][v] >= 0
    assert 0.0 <= entry["classifier_auc"] <= 1.0
    assert (out / "particles_flow1.png").stat().st_size > 1000
    assert s["reference"]["jets"] > 0
    # --record-in stores the same figures in the model's JSON, beside what it held
    args = ["validate", "--level", "particles", "--reference", str(EXAMPLE), "--candidate", f"vae={converted}",
            "--out", str(tmp_path / "val2"), "--threads", "1", "--no-plots", "--record-in", str(weights),
            "--record-name", "toy"]
    assert main(args) == 0
    meta = json.loads(weights.with_suffix(".json").read_text())
    assert meta["validation"]["toy"]["w1_ratio"] == entry["w1_ratio"]
    assert meta["format"] == "hepfastsim.particle_vae/1"


def test_train_cli_continues_and_records_the_chain(weights: Path, tmp_path: Path) -> None:
    if not weights.name.endswith("_set"):
        pytest.skip("one architecture is enough for the CLI")
    common = ["train", "particle-vae", "--data", str(EXAMPLE), "--architecture", "set", "--pt-min", "30",
              "--epochs", "1", "--batch-size", "16", "--threads", "1", "--quiet"]
    assert main([*common, "--out", str(tmp_path / "a")]) == 0
    assert main([*common, "--out", str(tmp_path / "b"), "--init", str(tmp_path / "a")]) == 0
    assert main([*common, "--out", str(tmp_path / "c"), "--init", str(tmp_path / "b")]) == 0
    meta = json.loads((tmp_path / "c.json").read_text())
    chain = meta["retrain_commands"]
    assert len(chain) == 3 and chain[-1] == meta["retrain_command"]
    assert [c.split("--out ")[1].split()[0] for c in chain] == [str(tmp_path / n) for n in "abc"]
    assert meta["training"]["init"]["model"] == str(tmp_path / "b")


def test_train_cli_prior_distribution_term(weights: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    if not weights.name.endswith("_set"):
        pytest.skip("one architecture is enough for the CLI")
    common = ["train", "particle-vae", "--data", str(EXAMPLE), "--architecture", "set", "--pt-min", "30",
              "--epochs", "1", "--batch-size", "16", "--threads", "1", "--quiet", "--alpha-dist", "50"]
    # the term decodes from the prior, so it needs the conditional VAE: refused before any reading
    assert main([*common, "--out", str(tmp_path / "gen")]) == 1
    assert "--posterior reco" in capsys.readouterr().err and not (tmp_path / "gen.json").exists()
    assert main([*common, "--posterior", "reco", "--out", str(tmp_path / "reco")]) == 0
    meta = json.loads((tmp_path / "reco.json").read_text())
    assert meta["config"]["alpha_dist"] == 50.0 and "--alpha-dist 50.0" in meta["retrain_command"]
    assert all("dist" in h for h in meta["training"]["history"])


def test_train_cli_slot_latents(weights: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """--slot-latent needs the conditional set VAE (refused before any reading) and can grow a
    model without slot latents through --init; the command and config record it."""
    if not weights.name.endswith("_set"):
        pytest.skip("one architecture is enough for the CLI")
    common = ["train", "particle-vae", "--data", str(EXAMPLE), "--architecture", "set", "--pt-min", "30",
              "--epochs", "1", "--batch-size", "16", "--threads", "1", "--quiet"]
    assert main([*common, "--slot-latent", "2", "--out", str(tmp_path / "gen")]) == 1
    assert "--posterior reco" in capsys.readouterr().err and not (tmp_path / "gen.json").exists()
    assert main([*common, "--posterior", "reco", "--out", str(tmp_path / "plain")]) == 0
    assert main([*common, "--posterior", "reco", "--slot-latent", "2", "--init", str(tmp_path / "plain"),
                 "--out", str(tmp_path / "slots")]) == 0
    meta = json.loads((tmp_path / "slots.json").read_text())
    assert meta["config"]["slot_latent"] == 2 and "--slot-latent 2" in meta["retrain_command"]
    # a model with slot latents cannot continue with another number of them (or none): named, nothing written
    capsys.readouterr()
    assert main([*common, "--posterior", "reco", "--slot-latent", "3", "--init", str(tmp_path / "slots"),
                 "--out", str(tmp_path / "other")]) == 1
    assert str(tmp_path / "slots") in capsys.readouterr().err and not (tmp_path / "other.json").exists()


def _low_cut_fit(monkeypatch: pytest.MonkeyPatch) -> None:
    """Let the CLI's calibration run on the example file with an untrained model: the low
    thresholds of these tests and a single bin of at least 20 jets."""
    import hepfastsim.simulators.particle_vae as sim_module

    real = sim_module.fit_mass_calibration_on_files

    def low(model: LoadedVAE, paths: list[str], **kwargs: object) -> object:
        return real(model, paths, **{**kwargs, "cuts_from": ParticleVAESimulator(**LOW), "min_jets": 20})

    monkeypatch.setattr(sim_module, "fit_mass_calibration_on_files", low)


def test_mass_calibration_moves_the_constituents_to_the_calibrated_mass(
        weights: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    """``train particle-vae --epochs 0 --init M --calibrate-mass`` adds the calibration to M's
    weights; convert then writes jets whose constituents have the calibrated mass (the map of
    the uncalibrated jets' mass), with the same gen jets; training further drops it."""
    if not weights.name.endswith("_set"):
        pytest.skip("one architecture is enough")
    from hepfastsim.models.particle_vae import load_model

    common = ["train", "particle-vae", "--data", str(EXAMPLE), "--threads", "1", "--quiet"]
    # --epochs 0 means calibrating an --init model: refused without either, nothing written
    assert main([*common, "--epochs", "0", "--out", str(tmp_path / "x"), "--init", str(weights)]) == 1
    assert "--calibrate-mass" in capsys.readouterr().err and not (tmp_path / "x.json").exists()
    # at the real thresholds an untrained model on 200 events has too few jets: named, nothing written
    assert main([*common, "--epochs", "0", "--init", str(weights), "--calibrate-mass", "--out", str(tmp_path / "y")]) == 1
    assert "fewer than 500" in capsys.readouterr().err and not (tmp_path / "y.json").exists()

    _low_cut_fit(monkeypatch)
    cal_path = tmp_path / "cal"
    assert main([*common, "--epochs", "0", "--init", str(weights), "--calibrate-mass", "--calibration-bins", "1", "1",
                 "--out", str(cal_path)]) == 0
    meta = json.loads(cal_path.with_suffix(".json").read_text())
    assert meta["mass_calibration"]["record"]["files"] == [str(EXAMPLE)]
    assert meta["retrain_commands"][-1] == meta["retrain_command"] and "--epochs 0" in meta["retrain_command"]
    assert meta["config"] == json.loads(weights.with_suffix(".json").read_text())["config"]
    assert "validation" not in meta  # those of the uncalibrated model no longer apply
    calibrated = load_model(cal_path)
    assert calibrated.mass_calibration is not None and load_model(weights).mass_calibration is None

    # the untrained model's jets are far from the reference's, so convert is checked with a
    # calibration of known effect: the reference is the model's own jets, 10% heavier
    from dataclasses import replace

    from hepfastsim.models.particle_vae_calibration import fit_mass_calibration

    plain_out, cal_out = tmp_path / "plain.root", tmp_path / "cal.root"
    convert(EXAMPLE, plain_out, ConvertConfig(model="particle-vae", seed=5), simulator=ParticleVAESimulator(weights, **LOW))
    plain = _read(plain_out)
    gen = uproot.open(EXAMPLE)["Events"].arrays(["GenJet_pt", "GenJet_mass"])
    jets = {"gen_pt": ak.to_numpy(ak.flatten(gen.GenJet_pt[plain.FastJet_genJetIdx])),
            "gen_mass": ak.to_numpy(ak.flatten(gen.GenJet_mass[plain.FastJet_genJetIdx])),
            "mass": ak.to_numpy(ak.flatten(plain.FastJet_mass)).astype(np.float64)}
    heavier = fit_mass_calibration(jets, {**jets, "mass": 1.1 * jets["mass"]}, bins=(1, 1), min_jets=20)
    save_model(replace(calibrated, mass_calibration=heavier), tmp_path / "heavier")
    convert(EXAMPLE, cal_out, ConvertConfig(model="particle-vae", seed=5),
            simulator=ParticleVAESimulator(tmp_path / "heavier", **LOW))
    cal = _read(cal_out)

    def by_gen(a: ak.Array) -> dict[tuple[int, int], tuple[float, float]]:
        return {(e, int(g)): (float(m), float(p)) for e in range(len(a))
                for g, m, p in zip(a.FastJet_genJetIdx[e], a.FastJet_mass[e], a.FastJet_pt[e])}

    p, c = by_gen(plain), by_gen(cal)
    common_jets = [k for k in sorted(set(p) & set(c)) if p[k][0] > 0]
    assert len(common_jets) > 0.95 * max(len(p), len(c)) > 50
    got, before = np.array([c[k][0] for k in common_jets]), np.array([p[k][0] for k in common_jets])
    # an untrained model's nearly collinear constituents: light jets lose the last digits to the
    # float32 constituents, and a few need more than the largest move (a = 10)
    massive = before > 1.0
    assert massive.sum() > 20 and np.mean(np.isclose(got[massive], 1.1 * before[massive], rtol=2e-3)) > 0.95
    assert np.all((got >= before * (1 - 1e-3)) & (got <= 1.1 * before * (1 + 2e-3)))
    assert np.allclose([c[k][1] for k in common_jets], [p[k][1] for k in common_jets], rtol=0.02)  # pT kept

    # a model trained further from the calibrated one has no calibration
    assert main([*common, "--architecture", "set", "--pt-min", "30", "--epochs", "1", "--batch-size", "16",
                 "--init", str(cal_path), "--out", str(tmp_path / "more")]) == 0
    assert "mass_calibration" not in json.loads((tmp_path / "more.json").read_text())


def test_empty_weights_variable_means_the_shipped_weights(monkeypatch: pytest.MonkeyPatch) -> None:
    """``HEPFASTSIM_..._WEIGHTS=`` (set but empty, as a shell leaves it) is not a path."""
    from hepfastsim.simulators.base import make_simulator
    from hepfastsim.simulators.particle_vae import DEFAULT_WEIGHTS, WEIGHTS_ENV

    monkeypatch.setenv(WEIGHTS_ENV, "")
    assert ParticleVAESimulator().weights_path == DEFAULT_WEIGHTS["set"]
    kinematics = make_simulator("kinematics")
    monkeypatch.setenv(kinematics.weights_env, "")
    assert kinematics.weights_path == Path(kinematics.default_weights)
