"""Particle VAE (seed 003): losses against hand-worked cases, architecture shapes, paired data,
save/load without pickle, a training step."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from hepfastsim.errors import ModelError
from hepfastsim.models.particle_vae import (
    N_MAX,
    LoadedVAE,
    Standardiser,
    VAEConfig,
    build_model,
    decode_set,
    chamfer,
    jet_pt_mass,
    load_model,
    save_model,
    set_features,
    set_to_polar,
    symmetric_kl,
    to_cartesian,
    to_polar,
)
from hepfastsim.models.particle_vae_train import (
    PairData,
    TrainConfig,
    fit_standardiser,
    load_pairs,
    response_w2,
    train_vae,
)

SMALL = Path(__file__).resolve().parents[2] / "examples" / "qcd_small.root"


@pytest.fixture(scope="module")
def pairs() -> PairData:
    return load_pairs([str(SMALL)], pt_min=30.0)


def test_chamfer_identical_sets_is_zero_and_permutation_invariant() -> None:
    a = torch.randn(3, 7, 3)
    assert torch.allclose(chamfer(a, a), torch.zeros(3))
    perm = a[:, torch.randperm(7)]
    assert torch.allclose(chamfer(a, perm), torch.zeros(3), atol=1e-6)
    b = torch.randn(3, 7, 3)
    assert torch.allclose(chamfer(a, b), chamfer(b, a))


def test_chamfer_small_case_by_hand() -> None:
    # target {(0,0), (1,0)}, output {(0,0), (0,2)}:
    # target -> output: 0 + min(1, 1 + 4) = 1; output -> target: 0 + min(4, 1 + 4) = 4
    a = torch.tensor([[[0.0, 0.0], [1.0, 0.0]]])
    b = torch.tensor([[[0.0, 0.0], [0.0, 2.0]]])
    assert chamfer(a, b).item() == pytest.approx(5.0)
    # masks: a padded ghost at (9, 9) in the target and the output is ignored
    a_pad = torch.tensor([[[0.0, 0.0], [1.0, 0.0], [9.0, 9.0]]])
    b_pad = torch.tensor([[[0.0, 0.0], [0.0, 2.0], [9.0, 9.0]]])
    ma = torch.tensor([[True, True, False]])
    assert chamfer(a_pad, b_pad, ma, ma).item() == pytest.approx(5.0)
    # ... whereas unmasked it pairs with itself and changes nothing, and a lone ghost costs
    assert chamfer(a_pad, b).item() > 5.0


def test_jet_pt_mass_back_to_back_photons() -> None:
    # two massless 50 GeV particles along +x and +y: pT = 50 sqrt(2), m^2 = 2 E1 E2 (1 - cos 90) = 5000
    px = torch.tensor([[50.0, 0.0]])
    py = torch.tensor([[0.0, 50.0]])
    pz = torch.zeros(1, 2)
    pt, m = jet_pt_mass(px, py, pz)
    assert pt.item() == pytest.approx(50 * np.sqrt(2), rel=1e-5)
    assert m.item() == pytest.approx(np.sqrt(5000.0), rel=1e-4)
    pt_w, m_w = jet_pt_mass(px, py, pz, weight=torch.tensor([[1.0, 0.0]]))
    assert pt_w.item() == pytest.approx(50.0, rel=1e-5) and m_w.item() == pytest.approx(0.0, abs=1e-3)


def test_cartesian_and_set_features_round_trip() -> None:
    rng = np.random.default_rng(1)
    pt, eta, phi = rng.uniform(1, 100, (4, 5)), rng.uniform(-2, 2, (4, 5)), rng.uniform(-np.pi, np.pi, (4, 5))
    p2, e2, f2 = to_polar(to_cartesian(pt, eta, phi))
    np.testing.assert_allclose(p2, pt, rtol=1e-12)
    np.testing.assert_allclose(e2, eta, atol=1e-12)
    np.testing.assert_allclose(np.cos(f2 - phi), 1.0, atol=1e-12)
    jpt, jeta, jphi = np.full(4, 300.0), eta[:, 0], phi[:, 0]
    f = set_features(pt, eta, phi, jpt, jeta, jphi).astype(np.float64)
    p3, e3, f3 = set_to_polar(f, jpt, jeta, jphi)
    np.testing.assert_allclose(p3, pt, rtol=1e-5)
    np.testing.assert_allclose(e3, eta, atol=1e-5)
    np.testing.assert_allclose(np.cos(f3 - phi), 1.0, atol=1e-8)


def test_symmetric_kl() -> None:
    rng = np.random.default_rng(2)
    a = rng.normal(size=20000)
    assert symmetric_kl(a, a) == pytest.approx(0.0, abs=1e-12)
    near, far = symmetric_kl(rng.normal(size=20000), a), symmetric_kl(rng.normal(0.5, 1, 20000), a)
    assert 0 < near < far


def test_conv_architecture_is_the_papers() -> None:
    m = build_model(VAEConfig(architecture="conv"))
    convs = [mod for mod in m.enc if isinstance(mod, torch.nn.Conv2d)]
    assert [tuple(c.weight.shape) for c in convs] == [(32, 1, 3, 5), (64, 32, 1, 5), (128, 64, 1, 5)]
    dense = [mod for mod in m.enc if isinstance(mod, torch.nn.Linear)]
    assert [d.out_features for d in dense] == [640, 150] and m.mu.out_features == 20
    assert sum(isinstance(mod, torch.nn.ConvTranspose2d) for mod in m.dec_conv) == 3
    assert sum(isinstance(mod, torch.nn.Upsample) for mod in m.dec_conv) == 2
    m.eval()
    x = torch.randn(5, N_MAX, 3)
    mu, logvar = m.encode(x)
    assert mu.shape == logvar.shape == (5, 20)
    assert m.decode(mu).shape == (5, N_MAX, 3)


def test_set_variant_is_permutation_invariant_in_the_encoder() -> None:
    torch.manual_seed(0)
    m = build_model(VAEConfig(architecture="set"))
    m.eval()
    x = torch.randn(2, N_MAX, 3)
    mask = torch.zeros(2, N_MAX, dtype=torch.bool)
    mask[0, :10], mask[1, :3] = True, True
    ctx = torch.randn(2, 4)
    mu, _, mem, pooled = m.encode(x, mask, ctx)
    perm = torch.cat([torch.randperm(10), torch.arange(10, N_MAX)])
    mu_p, _, _, _ = m.encode(x[:, perm], mask[:, perm], ctx)
    torch.testing.assert_close(mu, mu_p, rtol=1e-5, atol=1e-5)
    # padded entries do not matter at all (no ghosts): change them, same latent
    x2 = x.clone()
    x2[~mask] = 100.0
    torch.testing.assert_close(m.encode(x2, mask, ctx)[0], mu)
    f, logits, slot_kl = m.decode(mu, ctx, mem, mask, pooled)
    assert f.shape == (2, N_MAX, 3) and logits.shape == (2, N_MAX + 1) and slot_kl is None


def test_slot_latents_smear_each_slot_and_start_from_the_model_without_them(pairs: PairData) -> None:
    """A model given per-slot latents with --init computes exactly what the initial model does
    (zero input weights); once they have weight, slot i's output depends on z_i alone among the
    slot latents at the first layer, and the per-slot posterior gives a KL per slot."""
    import dataclasses

    from hepfastsim.models.particle_vae_train import _features

    torch.manual_seed(0)
    cfg = VAEConfig(architecture="set", posterior="reco")
    base = LoadedVAE(build_model(cfg), cfg, fit_standardiser(pairs, cfg))
    base.module.eval()
    slot_cfg = dataclasses.replace(cfg, slot_latent=3)
    grown = train_vae(pairs, slot_cfg, TrainConfig(epochs=1, batch_size=16, learning_rate=0.0, eval_every=1), init=base)
    f = _features(pairs, cfg)
    rng = np.random.default_rng(1)
    n = len(pairs)
    eps, u, slot_eps = rng.normal(size=(n, 20)), rng.random(n), rng.normal(size=(n, N_MAX, 3))
    a = decode_set(base, f["x"], f["mx"], f["ctx"], eps, u)
    b = decode_set(grown, f["x"], f["mx"], f["ctx"], eps, u, slot_eps=slot_eps)
    np.testing.assert_array_equal(a[0], b[0])
    np.testing.assert_array_equal(a[1], b[1])
    with pytest.raises(ValueError, match="slot_eps"):
        decode_set(grown, f["x"], f["mx"], f["ctx"], eps, u)
    # with weight on the slot latents, different draws move the particles
    with torch.no_grad():
        grown.module.slot_in.weight.normal_()
    c = decode_set(grown, f["x"], f["mx"], f["ctx"], eps, u, slot_eps=rng.normal(size=(n, N_MAX, 3)))
    assert np.abs(c[0] - b[0]).max() > 1e-3
    # the posterior: one KL (>= 0) per slot
    m = grown.module
    x, y = (torch.from_numpy(f[k]) for k in ("x", "y"))
    mx, my, ctx = (torch.from_numpy(f[k]) for k in ("mx", "my", "ctx"))
    mean, sd = torch.tensor(grown.standardiser.mean), torch.tensor(grown.standardiser.std)
    xs, ys = ((v - mean) / sd for v in (x, y))
    _, _, mem, pooled = m.encode(xs.float(), mx, ctx)
    _, _, slot_kl = m.decode(torch.zeros(n, 20), ctx, mem, mx, pooled, xs.float(), reco=(ys.float(), my))
    assert slot_kl.shape == (n, N_MAX) and bool((slot_kl >= 0).all())
    with pytest.raises(ValueError, match="slot_latent"):
        VAEConfig(architecture="set", posterior="gen", slot_latent=2)


def test_pairs_from_pfnano_links(pairs: PairData) -> None:
    import uproot

    assert len(pairs) > 20
    assert pairs.gen_pt.shape == (len(pairs), N_MAX)
    # sorted by decreasing pT, zero-padded, counts consistent with the padding
    assert np.all(np.diff(pairs.reco_pt, axis=1) <= 0) and np.all(np.diff(pairs.gen_pt, axis=1) <= 0)
    np.testing.assert_array_equal((pairs.reco_pt > 0).sum(1), np.minimum(pairs.reco_n, N_MAX))
    assert np.all(pairs.recojet_pt > 30.0) and np.all(np.abs(pairs.recojet_eta) < 2.5)
    # the gen jet is the one Jet_genJetIdx points to: check the first pair against the file
    t = uproot.open(SMALL)["Events"].arrays(["GenJet_pt", "Jet_genJetIdx"], entry_stop=int(pairs.event[0]) + 1)
    ev = int(pairs.event[0])
    assert pairs.genjet_pt[0] in set(np.asarray(t.GenJet_pt[ev])[np.asarray(t.Jet_genJetIdx[ev])].tolist())
    # reco and gen jets agree roughly: constituent-sum pT within a factor 2
    assert 0.5 < np.median(pairs.recojet_pt / pairs.genjet_pt) < 1.5


@pytest.mark.parametrize("arch", ["conv", "set"])
def test_training_steps_and_save_load_without_pickle(arch: str, pairs: PairData, tmp_path: Path) -> None:
    torch.manual_seed(0)
    cfg = VAEConfig(architecture=arch)
    few = pairs.subset(np.arange(40))
    model = train_vae(few, cfg, TrainConfig(epochs=1, batch_size=8, holdout_fraction=0.3, eval_every=1))
    hist = model.metadata["training"]["history"]
    assert hist and all(np.isfinite(h["held_out"]) for h in hist)
    st, js = save_model(model, tmp_path / "vae")
    meta_format = "hepfastsim.particle_vae/1"
    raw = st.read_bytes()  # safetensors: 8-byte header length + JSON header (not a pickle)
    assert json.loads(raw[8 : 8 + int.from_bytes(raw[:8], "little")])["__metadata__"]["format"] == meta_format
    meta = json.loads(js.read_text())
    assert meta["format"] == meta_format and meta["config"]["architecture"] == arch
    loaded = load_model(tmp_path / "vae.safetensors")
    for k, v in model.module.state_dict().items():
        torch.testing.assert_close(loaded.module.state_dict()[k], v)
    assert loaded.standardiser == model.standardiser


def test_load_errors_name_the_file(tmp_path: Path) -> None:
    with pytest.raises(ModelError, match="vae.safetensors"):
        load_model(tmp_path / "vae")
    m = LoadedVAE(build_model(VAEConfig(architecture="set")), VAEConfig(architecture="set"), Standardiser((0.0,) * 3, (1.0,) * 3))
    save_model(m, tmp_path / "vae")
    (tmp_path / "vae.json").write_text(json.dumps({"format": "other"}))
    with pytest.raises(ModelError, match="expected format"):
        load_model(tmp_path / "vae")


def test_residual_set_decoder_starts_from_the_gen_particles() -> None:
    m = build_model(VAEConfig(architecture="set", residual=True, posterior="reco"))
    m.eval()
    last = m.out[-1]
    torch.nn.init.zeros_(last.weight)
    torch.nn.init.zeros_(last.bias)
    x = torch.randn(2, N_MAX, 3)
    mask = torch.zeros(2, N_MAX, dtype=torch.bool)
    mask[0, :5], mask[1, :12] = True, True
    ctx = torch.randn(2, 4)
    _, _, mem, pooled = m.encode(x, mask, ctx)
    out, _, _ = m.decode(torch.randn(2, 20), ctx, mem, mask, pooled, x)
    torch.testing.assert_close(out[mask], x[mask])  # zero correction: each slot is its gen particle
    assert torch.all(out[~mask] == 0)
    mu, logvar = m.encode_reco(x, mask, ctx, pooled)  # conditional-VAE posterior from the reco set
    assert mu.shape == logvar.shape == (2, 20)


def test_warm_start_keeps_weights_and_standardiser(pairs: PairData) -> None:
    cfg = VAEConfig(architecture="set", posterior="reco", jet_scale_gev=5.0)
    few = pairs.subset(np.arange(40))
    first = train_vae(few, cfg, TrainConfig(epochs=1, batch_size=8, holdout_fraction=0.3, eval_every=100))
    again = train_vae(few, cfg, TrainConfig(epochs=1, batch_size=8, holdout_fraction=0.3, eval_every=100,
                                            learning_rate=0.0), init=first)
    assert again.standardiser == first.standardiser
    for k, v in first.module.state_dict().items():  # learning rate 0: nothing moves
        torch.testing.assert_close(again.module.state_dict()[k], v)


def test_response_w2_is_the_sorted_distance_of_the_log_responses() -> None:
    g = torch.Generator().manual_seed(1)
    gen_pt = 200.0 + 100.0 * torch.rand(64, generator=g)
    gen_log_m = torch.log(torch.full((64,), 3.0))  # m_gen = 30 GeV
    pt = gen_pt * torch.exp(0.1 * torch.randn(64, generator=g)) / 5.0  # in units of 5 GeV
    m = 30.0 * torch.exp(0.2 * torch.randn(64, generator=g)) / 5.0
    same = response_w2(pt, m, pt, m, gen_pt, gen_log_m, 5.0)
    assert same.item() == 0.0
    # a pure shift of the log pT response by 0.05 (mass unchanged): W2^2 = 0.05^2, in units of
    # the variance of the reference's log pT response
    shifted = response_w2(pt * np.exp(0.05), m, pt, m, gen_pt, gen_log_m, 5.0)
    assert shifted.item() == pytest.approx(0.05**2 / torch.log(pt * 5.0 / gen_pt).var().item(), rel=1e-4)
    # a distance of distributions, not of jets: responses handed to the wrong jets cost nothing
    perm = torch.randperm(64, generator=g)
    pt_swapped = gen_pt * (pt * 5.0 / gen_pt)[perm] / 5.0
    assert response_w2(pt_swapped, m[perm], pt, m, gen_pt, gen_log_m, 5.0).item() == pytest.approx(0.0, abs=1e-10)
    # and it has gradients (through the sort) towards the reference
    m_hat = (m * 0.8).clone().requires_grad_(True)
    response_w2(pt, m_hat, pt, m, gen_pt, gen_log_m, 5.0).backward()
    assert torch.all(m_hat.grad < 0)  # every generated mass is too low: the loss pushes each up


def test_set_jet_acceptance_drops_soft_and_forward_constituents() -> None:
    """``accept=True`` sums only constituents with pT > 0.25 GeV and |eta| < 3.2, as the
    simulator does after inference."""
    from hepfastsim.models.particle_vae import ANGLE_SCALE
    from hepfastsim.models.particle_vae_train import _set_jet

    jet = torch.tensor([[100.0, 2.9, 0.0]])  # gen jet pT (GeV), eta, phi
    # three constituents: 50 GeV at the jet axis, 0.2 GeV (too soft), 10 GeV at eta 3.3 (too forward)
    f = torch.tensor([[[np.log(0.5), 0.0, 0.0], [np.log(0.002), 0.0, 0.0], [np.log(0.1), 0.4 / ANGLE_SCALE, 0.0]]])
    mask = torch.ones(1, 3, dtype=torch.bool)
    pt_all, _ = _set_jet(f, jet, mask, 1.0)
    pt_acc, m_acc = _set_jet(f, jet, mask, 1.0, accept=True)
    assert pt_acc.item() == pytest.approx(50.0, rel=1e-5) and m_acc.item() == pytest.approx(0.0, abs=1e-3)
    assert pt_all.item() > 60.0


def test_prior_distribution_term_is_trained_and_reported(pairs: PairData) -> None:
    cfg = VAEConfig(architecture="set", posterior="reco", jet_scale_gev=5.0, alpha_dist=100.0)
    few = pairs.subset(np.arange(40))
    model = train_vae(few, cfg, TrainConfig(epochs=1, batch_size=8, holdout_fraction=0.3, eval_every=1))
    hist = model.metadata["training"]["history"]
    assert hist and all(np.isfinite(h["dist"]) and h["dist"] >= 0 for h in hist)
    off = train_vae(few, VAEConfig(architecture="set", posterior="reco", jet_scale_gev=5.0),
                    TrainConfig(epochs=1, batch_size=8, holdout_fraction=0.3, eval_every=1))
    assert "dist" not in off.metadata["training"]["history"][0]


def test_shipped_weights_load_and_carry_their_metadata() -> None:
    from hepfastsim.simulators.particle_vae import DEFAULT_WEIGHTS

    base = DEFAULT_WEIGHTS["set"]
    assert base.with_suffix(".safetensors").stat().st_size < 2_000_000
    model = load_model(base)
    assert model.config.architecture == "set"
    assert model.metadata["retrain_command"].startswith("hepfastsim train particle-vae")
    assert model.mass_calibration is not None and model.mass_calibration.record["reference_jets"] > 10_000
    assert model.metadata["validation"]  # one entry per held-out sample
    for validation in model.metadata["validation"].values():
        assert set(validation["w1_ratio"]) >= {"pt", "mass", "flow1", "flow4", "px"}
    # the network before its calibration, beside the paper's conv VAE on the same jets
    before = {k: v for k, v in model.metadata["validation_before_mass_calibration"].items() if k != "note"}
    assert before
    for validation in before.values():
        assert validation["w1_ratio"]["pt"] < validation["paper_conv_same_sample"]["w1_ratio"]["pt"]
    chain = model.metadata["retrain_commands"]
    assert chain[-1] == model.metadata["retrain_command"] and all(c.startswith("hepfastsim train") for c in chain)
