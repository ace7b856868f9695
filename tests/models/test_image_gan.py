"""Seed-000 image GAN: networks, mask estimator, training step, weights I/O, simulator through convert."""

from __future__ import annotations

import json
from pathlib import Path

import awkward as ak
import numpy as np
import pytest
import torch
import uproot

from hepfastsim.errors import ModelError
from hepfastsim.kernels.rng import event_keys
from hepfastsim.models.image_gan import (
    ImageGANConfig,
    PatchDiscriminator,
    TotalDiscriminator,
    UNetGenerator,
    condition_features,
    load_generator,
    sample_hard_mask,
    conserve_total,
    save_generator,
    widen_input,
)
from hepfastsim.models.image_gan_train import (
    ImagePairs,
    SparseImages,
    CRITERION_OBSERVABLES,
    SCORE_OBSERVABLES,
    TrainConfig,
    build_pairs,
    extract_pairs,
    generator_losses,
    train_image_gan,
)
from hepfastsim.simulators.base import GenEvents
from hepfastsim.simulators.image_gan import ImageGANSimulator

EXAMPLE = Path(__file__).parents[2] / "examples" / "qcd_small.root"


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def pairs() -> ImagePairs:
    return build_pairs([str(EXAMPLE)])


@pytest.fixture(scope="module")
def example_arrays() -> dict:
    return uproot.open(EXAMPLE)["Events"].arrays(how=dict)


def test_unet_shapes_and_ranges() -> None:
    torch.manual_seed(0)
    g, d, dt = UNetGenerator(), PatchDiscriminator(), TotalDiscriminator()
    x, c = torch.rand(6, 1, 32, 32), condition_features(np.array([[50.0, 0.1, 1.0, 30.0]] * 6))
    g0, g1 = g(x, c)
    assert g0.shape == g1.shape == (6, 1, 32, 32)
    assert torch.all(g0 >= 0) and torch.all((g1 > 0) & (g1 < 1))
    assert d(g0, x, c).shape == (6,) and dt(g0.sum(dim=(1, 2, 3)), c).shape == (6,)
    # the paper's U-Net: 5 stride-2 encoders of 16..256 filters down to 1 x 1, 5 decoders back to 32 x 32
    widths = [enc[0].out_channels for enc in g.encoders]
    assert widths == [16, 32, 64, 128, 256]
    assert [type(m).__name__ for m in g.decoders[0]][-1] == "Dropout" and [type(m).__name__ for m in g.decoders[2]][-1] != "Dropout"
    assert g.cond_conv.kernel_size == (1, 1) and g.cond_conv.out_channels == 256


def test_hard_mask_is_exact_and_gradient_is_straight_through() -> None:
    soft = torch.tensor([0.1, 0.5, 0.9, 0.3], requires_grad=True)
    z = torch.tensor([0.2, 0.4, 0.95, 0.3])
    hard = sample_hard_mask(soft, z)
    assert hard.tolist() == [0.0, 1.0, 0.0, 0.0]  # 1[z < soft]
    (hard * torch.tensor([1.0, 2.0, 3.0, 4.0])).sum().backward()
    assert soft.grad.tolist() == [1.0, 2.0, 3.0, 4.0]  # d hard / d soft replaced by 1


def test_conditions_change_the_output() -> None:
    torch.manual_seed(1)
    g = UNetGenerator()
    g.train()
    g(torch.rand(64, 1, 32, 32), condition_features(np.random.default_rng(0).uniform([20, -2, -3, 10], [900, 2, 3, 50], (64, 4))))
    g.eval()
    x = torch.rand(1, 1, 32, 32).repeat(2, 1, 1, 1)
    c = condition_features(np.array([[30.0, 0.0, 0.0, 20.0], [800.0, 0.0, 0.0, 20.0]]))
    with torch.no_grad():
        g0, g1 = g(x, c)
    assert not torch.allclose(g0[0], g0[1]) and not torch.allclose(g1[0], g1[1])


def test_noise_channels_need_noise_change_the_output_and_start_at_zero_weight() -> None:
    torch.manual_seed(3)
    plain = UNetGenerator().eval()
    noisy = UNetGenerator(ImageGANConfig(noise_channels=2)).eval()
    noisy.load_state_dict(widen_input(plain.state_dict(), 2))
    x, c = torch.rand(4, 1, 32, 32), condition_features(np.array([[80.0, 0.3, -1.0, 25.0]] * 4))
    n1, n2 = torch.randn(4, 2, 32, 32), torch.randn(4, 2, 32, 32)
    with torch.no_grad():
        ref, a, b = plain(x, c), noisy(x, c, n1), noisy(x, c, n2)
        # widened from a generator without noise: exactly that generator, whatever the noise
        assert torch.equal(a[0], ref[0]) and torch.equal(b[1], ref[1])
        noisy.encoders[0][0].weight[:, 1:] = 0.3  # once the noise has weight, it moves the outputs
        a, b = noisy(x, c, n1), noisy(x, c, n2)
    assert not torch.allclose(a[0], b[0]) and not torch.allclose(a[1], b[1])
    with pytest.raises(ValueError, match="noise of shape"):
        noisy(x, c)
    with pytest.raises(ValueError, match="noise_channels"):
        ImageGANConfig(noise_channels=-1)
    with pytest.raises(ValueError, match="at most 1 inputs"):
        widen_input(noisy.state_dict(), 0)


def test_noisy_generator_output_does_not_depend_on_chunking(example_arrays: dict, tmp_path: Path) -> None:
    """The noise maps are keyed on the event and the jet's index in it, like the mask."""
    torch.manual_seed(4)
    g = UNetGenerator(ImageGANConfig(noise_channels=2)).eval()
    with torch.no_grad():
        g.encoders[0][0].weight[:, 1:] = 0.5
    save_generator(g, tmp_path / "noisy", {"retrain_command": "test"})
    sim = ImageGANSimulator(weights=tmp_path / "noisy", outside="skip", min_reco_pt=0.0)
    whole = sim.simulate(_events(example_arrays, 0, 8))
    split = ak.concatenate([sim.simulate(_events(example_arrays, 0, 3)), sim.simulate(_events(example_arrays, 3, 8))])
    for f in ("pt", "mass", "tau21", "ring1", "nPixels"):
        assert np.array_equal(ak.to_numpy(ak.flatten(whole[f])), ak.to_numpy(ak.flatten(split[f])), equal_nan=True), f
    # and the noise is used: other event keys give other jets from the same gen jets
    sub = {k: v[0:8] for k, v in example_arrays.items()}
    other = sim.simulate(GenEvents.from_branches(sub, event_keys(8, 11, np.arange(8)), constituents=True))
    assert not np.array_equal(ak.to_numpy(ak.flatten(whole.pt)), ak.to_numpy(ak.flatten(other.pt)))


def test_conserve_total_moves_the_total_and_keeps_the_pattern() -> None:
    rng = np.random.default_rng(5)
    img = (rng.random((6, 32, 32)) < 0.05) * rng.random((6, 32, 32)).astype(np.float32)
    img[2] = 0.0  # an empty image stays empty
    expected = np.full(6, 0.4, np.float32)
    sampled = img.sum(axis=(1, 2))
    assert np.array_equal(conserve_total(img, expected, 1.0), img)
    np.testing.assert_allclose(conserve_total(img, expected, 0.0).sum(axis=(1, 2))[sampled > 0], 0.4, rtol=1e-5)
    half = conserve_total(img, expected, 0.5)
    np.testing.assert_allclose(half.sum(axis=(1, 2))[sampled > 0], (0.4 + 0.5 * (sampled - 0.4))[sampled > 0], rtol=1e-5)
    assert not half[2].any() and half.dtype == img.dtype
    lit = img > 0
    assert np.array_equal(half > 0, lit)  # same pixels, same ratios
    ratio = half[lit] / img[lit]
    rows = np.nonzero(lit)[0]
    for r in np.unique(rows):
        np.testing.assert_allclose(ratio[rows == r], ratio[rows == r][0], rtol=1e-5)


class _FakeModel:
    """soft outputs with a known spread: a fixed G0 and a soft mask ``p`` on 40 pixels."""

    def __init__(self, p: float) -> None:
        self.config = ImageGANConfig()
        self.p = p

    def soft_outputs(self, x: np.ndarray, cond: np.ndarray, noise: object = None, species: object = None
                     ) -> tuple[np.ndarray, np.ndarray]:
        g0 = np.zeros_like(x)
        g1 = np.full_like(x, 1e-6)
        g0[:, 10:14, 5:15] = 1.0 / (40 * self.p)  # expected total 1
        g1[:, 10:14, 5:15] = self.p
        return g0, g1


class _WideExpectation(_FakeModel):
    """As :class:`_FakeModel`, with expected totals spread far wider than the reference's (0.4 to 1.6)."""

    def soft_outputs(self, x: np.ndarray, cond: np.ndarray, noise: object = None, species: object = None
                     ) -> tuple[np.ndarray, np.ndarray]:
        g0, g1 = super().soft_outputs(x, cond, noise, species)
        return g0 * (0.4 + 1.2 * (np.arange(len(x)) % 7 / 6.0))[:, None, None], g1


def test_fit_total_spread_gives_the_reference_resolution(pairs: ImagePairs) -> None:
    from hepfastsim.errors import HepfastsimError
    from hepfastsim.models.image_gan_train import fit_total_spread

    many = ImagePairs.concatenate([pairs] * (1000 // len(pairs) + 1))
    totals = many.reco.dense().sum(axis=(1, 2))
    ref_hw = np.diff(np.percentile(totals, [16, 84]))[0] / 2
    # 40 pixels lit with p = 0.5: the sampled total has a half-width of about 1/sqrt(40) = 0.16,
    # the expected total none, so the reference's lies between
    assert 0.01 < ref_hw < 0.15
    rec = fit_total_spread(_FakeModel(0.5), many, seed=3)
    assert 0.0 < rec["spread"] < 1.0 and rec["jets"] == len(many)
    assert rec["half_width_expected"] < rec["half_width_reference"] < rec["half_width_sampled"]
    assert rec["half_width_calibrated"] == pytest.approx(ref_hw, rel=1e-3)
    assert rec["half_width_calibrated"] == pytest.approx(rec["half_width_reference"], rel=1e-3)
    wide = fit_total_spread(_WideExpectation(0.5), many, seed=3)  # the expectations alone are too wide already
    assert wide["spread"] == 0.0 and wide["half_width_expected"] > wide["half_width_reference"]
    assert wide["half_width_calibrated"] == pytest.approx(wide["half_width_expected"])
    with pytest.raises(HepfastsimError, match="cannot reach the reference"):
        fit_total_spread(_FakeModel(1.0), many)  # no sampling spread at all: out of reach
    with pytest.raises(HepfastsimError, match="at least 1000"):
        fit_total_spread(_FakeModel(0.5), pairs)


def test_train_cli_calibrates_the_total_and_convert_applies_it(tmp_path: Path, example_arrays: dict,
                                                                capsys: pytest.CaptureFixture[str]) -> None:
    from hepfastsim.cli.main import main
    from hepfastsim.simulators.image_gan import PAPER_WEIGHTS as DEFAULT_WEIGHTS  # the paper's generator

    common = ["train", "image-gan", "--data", str(EXAMPLE), "--threads", "1", "--quiet"]
    code = main([*common, "--out", str(tmp_path / "x"), "--calibrate-total"])
    assert code != 0 and "--calibrate-total needs --init" in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []
    # the example file alone has ~600 pairs: too few
    code = main([*common, "--out", str(tmp_path / "x"), "--calibrate-total", "--init", str(DEFAULT_WEIGHTS)])
    assert code != 0 and "at least 1000" in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []
    data = [str(EXAMPLE)] * 3
    assert main(["train", "image-gan", "--data", *data, "--threads", "1", "--quiet", "--out", str(tmp_path / "c"),
                 "--calibrate-total", "--init", str(DEFAULT_WEIGHTS), "--seed", "2"]) == 0
    meta = json.loads((tmp_path / "c.json").read_text())
    cal = meta["total_calibration"]
    assert 0.0 <= cal["spread"] <= 1.0 and cal["half_width_calibrated"] == pytest.approx(cal["half_width_reference"], rel=1e-2)
    assert meta["retrain_commands"][-1] == meta["retrain_command"] and "--calibrate-total" in meta["retrain_command"]
    assert "validation" not in meta  # recorded for the uncalibrated generator
    shipped, calibrated = load_generator(DEFAULT_WEIGHTS), load_generator(tmp_path / "c")
    for a, b in zip(shipped.generator.state_dict().values(), calibrated.generator.state_dict().values()):
        assert torch.equal(a, b)  # the same weights
    assert calibrated.total_spread == cal["spread"] and shipped.total_spread is None
    # the simulator applies it: same lit pixels, so the same substructure, another pT
    plain = ImageGANSimulator(weights=DEFAULT_WEIGHTS, outside="skip", min_reco_pt=0.0).simulate(_events(example_arrays, 0, 30))
    sim = ImageGANSimulator(weights=tmp_path / "c", outside="skip", min_reco_pt=0.0)
    cal_out = sim.simulate(_events(example_arrays, 0, 30))
    def by_gen_jet(jets: ak.Array, f: str) -> np.ndarray:  # the output is pT ordered, the calibration moves pT
        return ak.to_numpy(ak.flatten(jets[f][ak.argsort(jets.genJetIdx, axis=1)]))

    assert np.array_equal(by_gen_jet(plain, "genJetIdx"), by_gen_jet(cal_out, "genJetIdx"))
    assert np.array_equal(by_gen_jet(plain, "nPixels"), by_gen_jet(cal_out, "nPixels"))
    for f in ("pTD", "majorAxis", "minorAxis"):
        np.testing.assert_allclose(by_gen_jet(plain, f), by_gen_jet(cal_out, f), rtol=1e-4, atol=1e-6)
    # tau_N too, but for exact ties between grid distances in the kT clustering, which rounding breaks
    same = np.isclose(by_gen_jet(plain, "tau21"), by_gen_jet(cal_out, "tau21"), rtol=1e-4)
    assert same.mean() > 0.9
    assert not np.allclose(by_gen_jet(plain, "pt"), by_gen_jet(cal_out, "pt"))
    split = ak.concatenate([sim.simulate(_events(example_arrays, 0, 11)), sim.simulate(_events(example_arrays, 11, 30))])
    assert np.array_equal(ak.to_numpy(ak.flatten(split.pt)), ak.to_numpy(ak.flatten(cal_out.pt)))
    # a calibration out of range is refused on load
    meta["total_calibration"]["spread"] = 1.5
    (tmp_path / "c.json").write_text(json.dumps(meta))
    with pytest.raises(ModelError, match="spread in"):
        load_generator(tmp_path / "c")


def test_sparse_images_round_trip(pairs: ImagePairs, tmp_path: Path) -> None:
    dense = pairs.reco.dense()
    assert np.array_equal(SparseImages.from_dense(dense).dense(), dense)
    rows = np.array([5, 0, 17])
    assert np.array_equal(pairs.gen.dense(rows), pairs.gen.dense()[rows])
    # gen images are normalised to the gen pT and keep all of it (overflow folded): the scalar
    # pT sum of the constituents is just above the jet's (vector) pT
    sums = pairs.gen.dense().sum(axis=(1, 2))
    assert np.all(sums > 0.999) and np.all(sums < 1.05)
    pairs.save(tmp_path / "p.npz")
    back = ImagePairs.load(tmp_path / "p.npz")
    assert np.array_equal(back.reco.dense(), dense) and np.array_equal(back.gen_jet_index, pairs.gen_jet_index)
    assert np.all(pairs.cond[:, 0] > 20) and np.all(np.abs(pairs.cond[:, 1]) < 2.5)


def test_pairs_of_a_chunk_ending_in_an_event_without_gen_jets(example_arrays: dict) -> None:
    """An unmatched reco jet (genJetIdx -1) in the chunk's last event, which has no gen jets,
    has no gen row to point at: it is skipped, not an IndexError (seen on QCD part 20)."""
    n = 5
    chunk = {k: v[:n] for k, v in example_arrays.items()}
    for k, v in chunk.items():
        if k.startswith(("GenJet_", "GenJetCands_")):
            chunk[k] = ak.concatenate([v[:-1], v[-1:][:, :0]])
    chunk["nGenJet"] = np.concatenate([np.asarray(chunk["nGenJet"][:-1]), [0]]).astype(np.asarray(chunk["nGenJet"]).dtype)
    chunk["Jet_genJetIdx"] = ak.concatenate([chunk["Jet_genJetIdx"][:-1], ak.full_like(chunk["Jet_genJetIdx"][-1:], -1)])
    assert ak.num(chunk["Jet_pt"])[-1] > 0
    got = extract_pairs(chunk, np.arange(n))
    without_last = extract_pairs({k: v[: n - 1] for k, v in example_arrays.items()}, np.arange(n - 1))
    assert len(got) == len(without_last) > 0
    assert np.array_equal(got.reco.dense(), without_last.reco.dense())
    assert np.array_equal(got.cond, without_last.cond)


def test_training_steps_reduce_the_loss(pairs: ImagePairs) -> None:
    torch.manual_seed(0)
    rows = np.arange(8)
    x, y = torch.from_numpy(pairs.gen.dense(rows))[:, None], torch.from_numpy(pairs.reco.dense(rows))[:, None]
    c = condition_features(pairs.cond[rows])
    arch = ImageGANConfig(base_filters=8, dropout=0.0, disc_filters=(8, 8, 8, 8))
    g, d, dt = UNetGenerator(arch), PatchDiscriminator(arch), TotalDiscriminator(arch)
    opt = torch.optim.Adam(g.parameters(), lr=2e-3)
    z = torch.rand(8, 1, 32, 32)
    cfg = TrainConfig()
    losses = []
    for _ in range(10):
        g0, g1 = g(x, c)
        loss, g2, terms = generator_losses(g0, g1, z, x, y, c, d, dt, cfg)
        assert set(terms) == {"adv", "adv_T", "l2", "mask", "sum_mse"} and g2.shape == y.shape
        losses.append(loss.item())
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert losses[-1] < 0.9 * losses[0]


class _SureDiscriminator(torch.nn.Module):
    """Rejects every image with logit about -30 (probability 1e-13), still a function of it."""

    def logits(self, y: torch.Tensor, *_: torch.Tensor) -> torch.Tensor:
        return -30.0 + 1e-3 * y.reshape(len(y), -1).sum(dim=1)

    def forward(self, *args: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.logits(*args))


@pytest.mark.parametrize("logit_loss", [False, True])
def test_logit_loss_keeps_the_generator_gradient_when_d_is_sure(pairs: ImagePairs, logit_loss: bool) -> None:
    """The paper's clipped cross-entropy gives the generator no adversarial gradient once D
    rejects a fake below probability 1e-6; the logit form gives d(-log sigmoid(l))/dl = -1."""
    rows = np.arange(4)
    x, y = torch.from_numpy(pairs.gen.dense(rows))[:, None], torch.from_numpy(pairs.reco.dense(rows))[:, None]
    c = condition_features(pairs.cond[rows])
    g0 = y.clone().requires_grad_(True)
    g1 = torch.full_like(y, 0.99)
    z = torch.zeros_like(y)  # every pixel kept: G2 = G0
    cfg = TrainConfig(w_total_adv=0.0, w_l2=0.0, w_mask=0.0, w_sum=0.0, logit_loss=logit_loss)
    loss, _, terms = generator_losses(g0, g1, z, x, y, c, _SureDiscriminator(), _SureDiscriminator(), cfg)
    loss.backward()
    grad = g0.grad.abs().max().item()
    if logit_loss:
        assert terms["adv"] == pytest.approx(30.0, abs=0.5)
        assert grad == pytest.approx(1e-3 / len(rows), rel=1e-3)  # -1 x 1e-3 per pixel / batch mean
    else:
        assert terms["adv"] == pytest.approx(-np.log(1e-6), rel=1e-6) and grad == 0.0


def test_ema_generator_is_the_moving_average_of_the_steps(pairs: ImagePairs, monkeypatch: pytest.MonkeyPatch) -> None:
    """With ema_decay the returned generator holds the exponential moving average of the
    generator's weights after each of its optimizer steps (recomputed here), not the last ones."""
    from hepfastsim.errors import HepfastsimError

    optimizers: list[list[list[torch.Tensor]]] = []

    class Spy(torch.optim.Adam):
        def __init__(self, *args, **kwargs):  # noqa: ANN002, ANN003, ANN204
            super().__init__(*args, **kwargs)
            self.after_steps: list[list[torch.Tensor]] = []
            optimizers.append(self.after_steps)

        def step(self, *args, **kwargs):  # noqa: ANN002, ANN003, ANN202
            out = super().step(*args, **kwargs)
            self.after_steps.append([p.detach().clone() for g in self.param_groups for p in g["params"]])
            return out

    monkeypatch.setattr(torch.optim, "Adam", Spy)
    arch = ImageGANConfig(base_filters=8, dropout=0.0, disc_filters=(8, 8, 8, 8))
    decay = 0.7
    # about 70% of the jets train: 48 / len(pairs) epochs are 4 steps of 8 jets
    config = TrainConfig(batch_size=8, epochs=48 / len(pairs), eval_every=10_000, eval_jets=16, holdout_fraction=0.3,
                         learning_rate=1e-2, ema_decay=decay)
    generator, report = train_image_gan(pairs, config, arch=arch)
    after_g = optimizers[0]  # the generator's optimizer is created first
    assert len(after_g) == report["steps_run"] >= 3 and report["best_step"] == report["steps_run"]
    average = after_g[0]
    for step in after_g[1:]:
        average = [decay * a + (1 - decay) * s for a, s in zip(average, step)]
    for kept, avg, last in zip(generator.parameters(), average, after_g[-1]):
        assert torch.allclose(kept.detach(), avg, atol=1e-6)
    assert not all(torch.allclose(k.detach(), last, atol=1e-5) for k, last in zip(generator.parameters(), after_g[-1]))
    with pytest.raises(HepfastsimError, match="ema_decay"):
        TrainConfig(ema_decay=1.0)


def test_save_load_without_pickle_keeps_metadata(tmp_path: Path) -> None:
    from safetensors import safe_open

    torch.manual_seed(2)
    g = UNetGenerator().eval()
    w, js = save_generator(g, tmp_path / "m", {"training_data": ["x.root"], "retrain_command": "hepfastsim train image-gan"})
    with safe_open(str(w), framework="pt") as f:  # plain tensors, no pickle
        assert "encoders.0.0.weight" in set(f.keys())
    meta = json.loads(js.read_text())
    assert meta["architecture"]["base_filters"] == 16 and meta["retrain_command"].startswith("hepfastsim train")
    loaded = load_generator(tmp_path / "m.safetensors")
    assert loaded.metadata["training_data"] == ["x.root"]
    x, c = np.random.default_rng(0).random((3, 32, 32), dtype=np.float32), np.array([[100.0, 0.5, 1.0, 25.0]] * 3)
    with torch.no_grad():
        ref = g(torch.from_numpy(x)[:, None], condition_features(c))
    g0, g1 = loaded.soft_outputs(x, c)
    np.testing.assert_allclose(g1, ref[1][:, 0].numpy(), atol=2e-3)  # float16 storage of the convolutions


@pytest.mark.parametrize("which", ["DEFAULT_WEIGHTS", "PAPER_WEIGHTS"])
def test_shipped_weights_have_metadata(which: str) -> None:
    import hepfastsim.simulators.image_gan as sim_module

    base = getattr(sim_module, which)
    meta = json.loads(base.with_suffix(".json").read_text())
    assert meta["retrain_command"].startswith("hepfastsim train image-gan")
    assert meta["training_data"]["files"] and "validation" in meta
    assert base.with_suffix(".safetensors").stat().st_size < 3_000_000
    # the default is the tower generator, continued from the paper's one (whose chain it carries)
    loaded = load_generator(base)
    assert loaded.config.output == ("towers" if which == "DEFAULT_WEIGHTS" else "mask")
    if which == "DEFAULT_WEIGHTS":
        paper = json.loads(sim_module.PAPER_WEIGHTS.with_suffix(".json").read_text())
        assert meta["retrain_commands"][:len(paper["retrain_commands"])] == paper["retrain_commands"]


def _events(arrays: dict, start: int, stop: int) -> GenEvents:
    """With the constituents' charge and pdgId, which the shipped (tower) generator reads."""
    sub = {k: v[start:stop] for k, v in arrays.items()}
    return GenEvents.from_branches(sub, event_keys(7, 11, np.arange(start, stop)), constituents=True,
                                   constituent_fields=("pt", "eta", "phi", "mass", "charge", "pdgId"))


def test_output_does_not_depend_on_chunking(example_arrays: dict) -> None:
    sim = ImageGANSimulator()
    whole = sim.simulate(_events(example_arrays, 0, 12))
    pieces = [sim.simulate(_events(example_arrays, i, i + 1)) for i in range(12)]
    split = ak.concatenate([sim.simulate(_events(example_arrays, 0, 5)), sim.simulate(_events(example_arrays, 5, 12))])
    for other in (ak.concatenate(pieces), split):
        for f in ImageGANSimulator.output_fields:
            a, b = ak.to_numpy(ak.flatten(whole[f])), ak.to_numpy(ak.flatten(other[f]))
            assert np.array_equal(a, b, equal_nan=True), f


def test_observables_match_an_independent_recomputation(example_arrays: dict) -> None:
    """Rings, raw pT and pTD of the output recomputed with numpy from the generated images."""
    from hepfastsim.jets.images import SEED000_DETECTOR, pixelise
    from hepfastsim.jets.species import gen_species_images
    from hepfastsim.simulators.image_gan import generate_images

    sim = ImageGANSimulator(outside="skip", min_reco_pt=0.0)
    ev = _events(example_arrays, 0, 40)
    reco = sim.simulate(ev)
    # the image path by hand
    flat = ak.flatten(ev.jets)
    pt, eta, phi = (ak.to_numpy(flat[k]).astype(np.float64) for k in ("pt", "eta", "phi"))
    cands = ak.flatten(ev.constituents, axis=1)
    inside = sim.domain(pt, eta, ak.to_numpy(ak.num(cands, axis=1)))
    counts = ak.to_numpy(ak.num(ev.jets))
    event = np.repeat(np.arange(len(counts)), counts)
    local = np.concatenate([np.arange(n) for n in counts])
    sel = np.flatnonzero(inside)
    x = pixelise(cands[sel], ak.zip({"pt": pt[sel], "eta": eta[sel], "phi": phi[sel]}), SEED000_DETECTOR)
    cond = np.stack([pt[sel], eta[sel], phi[sel], ev.n_pu[event[sel]]], axis=1).astype(np.float32)
    axis = ak.zip({"pt": pt[sel], "eta": eta[sel], "phi": phi[sel]})
    species = gen_species_images(cands[sel], axis).astype(np.float32) if sim.model.config.species_channels else None
    img = generate_images(sim.model, x.astype(np.float32), cond, ev.keys, np.bincount(event[sel], minlength=len(counts)),
                          species)
    centres = (np.arange(32) + 0.5) * 0.3 / 32 - 0.15
    deta, dphi = np.meshgrid(centres, centres, indexing="ij")
    dr = np.hypot(deta, dphi)
    by_key = {(e, j): k for k, (e, j) in enumerate(zip(event[sel], local[sel]))}
    out_event = np.repeat(np.arange(len(counts)), ak.to_numpy(ak.num(reco)))
    out = ak.flatten(reco)
    assert len(out) == len(sel) > 50  # outside='skip', no pT cut: one jet per in-domain gen jet
    for n, (e, j) in enumerate(zip(out_event, ak.to_numpy(out.genJetIdx))):
        k = by_key[(e, j)]
        im = img[k].astype(np.float64)
        for r, (lo, hi) in enumerate([(0, 0.05), (0.05, 0.10), (0.10, 0.15), (0.15, 0.25)]):
            assert out[f"ring{r}"][n] == pytest.approx(im[(dr >= lo) & (dr < hi)].sum(), abs=1e-5)
        p = im[im > 0] * pt[sel][k]
        assert out.pTD[n] == pytest.approx(np.sqrt((p**2).sum()) / p.sum(), rel=1e-5)
        gphi = phi[sel][k] + dphi[im > 0]
        raw = np.hypot((p * np.cos(gphi)).sum(), (p * np.sin(gphi)).sum())
        assert out.pt[n] * (1 - out.rawFactor[n]) == pytest.approx(raw, rel=1e-4)
        assert out.nPixels[n] == int((im > 0).sum())


def test_convert_writes_image_gan_jets(tmp_path: Path) -> None:
    from hepfastsim.convert import ConvertConfig, convert

    convert(EXAMPLE, tmp_path / "out.root", ConvertConfig(model="image-gan", chunk_size=64))
    t = uproot.open(tmp_path / "out.root")["Events"]
    a = t.arrays(filter_name=["FastJet_*", "GenJet_pt", "GenJet_eta"])
    for name in ("tau21", "tau32", "pTD", "majorAxis", "minorAxis", "ring0", "genJetIdx", "fromImage"):
        assert f"FastJet_{name}" in a.fields
    img = a.FastJet_fromImage == 1
    gen_pt = a.GenJet_pt[a.FastJet_genJetIdx]
    gen_eta = a.GenJet_eta[a.FastJet_genJetIdx]
    assert ak.all(gen_pt[img] >= 20) and ak.all(abs(gen_eta[img]) < 2.5)
    assert ak.all(~((gen_pt >= 20) & (abs(gen_eta) < 2.5)) | img)  # in-domain jets come from the image model
    assert ak.all(np.isnan(a.FastJet_tau21[~img]))  # parametric fallback: no substructure
    tau21 = ak.to_numpy(ak.flatten(a.FastJet_tau21[img]))
    assert np.all((tau21 >= 0) & (tau21 <= 1.0001))
    response = ak.to_numpy(ak.flatten(a.FastJet_pt[img] / gen_pt[img]))
    assert 0.85 < np.median(response) < 1.15  # corrected pT, as NanoAOD Jet_pt
    assert ak.all(a.FastJet_pt[:, :-1] >= a.FastJet_pt[:, 1:])  # pT ordered


def test_train_cli_continues_and_records_the_chain(tmp_path: Path) -> None:
    from hepfastsim.cli.main import main

    common = ["train", "image-gan", "--data", str(EXAMPLE), "--epochs", "0.05", "--batch-size", "16",
              "--eval-every", "1000", "--threads", "1", "--quiet"]
    assert main([*common, "--out", str(tmp_path / "a")]) == 0
    assert (tmp_path / "a.discriminators.safetensors").exists()
    assert main([*common, "--out", str(tmp_path / "b"), "--init", str(tmp_path / "a")]) == 0
    first = json.loads((tmp_path / "a.json").read_text())
    meta = json.loads((tmp_path / "b.json").read_text())
    assert meta["retrain_commands"] == [first["retrain_command"], meta["retrain_command"]]
    assert meta["training"]["initialised_from"] == str(tmp_path / "a")
    assert "--device cpu" in meta["retrain_command"] and meta["training"]["config"]["device"] == "cpu"
    assert meta["training"]["config"]["score_observables"] == list(SCORE_OBSERVABLES)


def test_train_cli_records_score_observables_logit_loss_and_ema(tmp_path: Path) -> None:
    from hepfastsim.cli.main import main

    assert main(["train", "image-gan", "--data", str(EXAMPLE), "--out", str(tmp_path / "a"), "--epochs", "0.05",
                 "--batch-size", "16", "--eval-every", "1000", "--threads", "1", "--quiet", "--logit-loss",
                 "--ema", "0.9", "--score-observables", "criterion", "pt"]) == 0
    meta = json.loads((tmp_path / "a.json").read_text())
    config = meta["training"]["config"]
    assert config["score_observables"] == [*CRITERION_OBSERVABLES, "pt"]
    assert config["logit_loss"] is True and config["ema_decay"] == 0.9
    assert "--logit-loss" in meta["retrain_command"] and "--ema 0.9" in meta["retrain_command"]
    assert meta["retrain_command"].endswith("--score-observables criterion pt")
    assert set(meta["training"]["history"][-1]) >= {f"heldout_{n}" for n in CRITERION_OBSERVABLES}


def test_train_cli_adds_noise_channels_to_a_generator_and_keeps_them(tmp_path: Path,
                                                                     capsys: pytest.CaptureFixture[str]) -> None:
    from hepfastsim.cli.main import main

    common = ["train", "image-gan", "--data", str(EXAMPLE), "--epochs", "0.05", "--batch-size", "16",
              "--eval-every", "1000", "--threads", "1", "--quiet"]
    assert main([*common, "--out", str(tmp_path / "a")]) == 0
    assert main([*common, "--out", str(tmp_path / "b"), "--init", str(tmp_path / "a"), "--noise-channels", "2"]) == 0
    meta = json.loads((tmp_path / "b.json").read_text())
    assert meta["architecture"]["noise_channels"] == 2 and "--noise-channels 2" in meta["retrain_command"]
    assert load_generator(tmp_path / "b").config.noise_channels == 2
    assert main([*common, "--out", str(tmp_path / "c"), "--init", str(tmp_path / "b")]) == 0  # kept from --init
    assert load_generator(tmp_path / "c").config.noise_channels == 2
    code = main([*common, "--out", str(tmp_path / "d"), "--init", str(tmp_path / "b"), "--noise-channels", "1"])
    assert code != 0 and "already has 2" in capsys.readouterr().err
    assert not list(tmp_path.glob("d*"))


@pytest.mark.parametrize(("extra", "message"), [
    (["--score-observables", "ring9"], "unknown ring9"),
    (["--ema", "1.5"], "--ema"),
    (["--eval-jets", "0"], "--eval-jets"),
    (["--noise-channels", "-1"], "--noise-channels"),
])
def test_train_cli_refuses_bad_training_options(extra: list[str], message: str, tmp_path: Path,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    from hepfastsim.cli.main import main

    code = main(["train", "image-gan", "--data", str(EXAMPLE), "--out", str(tmp_path / "m"), "--quiet", *extra])
    assert code != 0 and message in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("device", ["cuda", "tpu-9"])
def test_train_cli_refuses_a_device_it_cannot_use(device: str, tmp_path: Path,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    from hepfastsim.cli.main import main

    if device == "cuda" and torch.cuda.is_available():
        pytest.skip("this machine has a CUDA GPU")
    code = main(["train", "image-gan", "--data", str(EXAMPLE), "--out", str(tmp_path / "m"), "--epochs", "0.05",
                 "--device", device, "--quiet"])
    assert code != 0 and repr(device) in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []
