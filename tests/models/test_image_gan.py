"""Seed-000 image GAN: networks, mask estimator, training step, weights I/O, simulator through convert."""

from __future__ import annotations

import json
from pathlib import Path

import awkward as ak
import numpy as np
import pytest
import torch
import uproot

from hepfastsim.kernels.rng import event_keys
from hepfastsim.models.image_gan import (
    ImageGANConfig,
    PatchDiscriminator,
    TotalDiscriminator,
    UNetGenerator,
    condition_features,
    load_generator,
    sample_hard_mask,
    save_generator,
)
from hepfastsim.models.image_gan_train import (
    ImagePairs,
    SparseImages,
    TrainConfig,
    build_pairs,
    generator_losses,
)
from hepfastsim.simulators.base import GenEvents
from hepfastsim.simulators.image_gan import ImageGANSimulator

EXAMPLE = Path(__file__).parents[2] / "examples" / "qcd_small.root"


@pytest.fixture(autouse=True, scope="module")
def one_torch_thread():  # noqa: ANN201
    """Small tensors: one thread is fastest and avoids oversubscribing shared CI machines."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


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


def test_shipped_weights_have_metadata() -> None:
    from hepfastsim.simulators.image_gan import DEFAULT_WEIGHTS

    meta = json.loads(DEFAULT_WEIGHTS.with_suffix(".json").read_text())
    assert meta["retrain_command"].startswith("hepfastsim train image-gan")
    assert meta["training_data"]["files"] and "validation" in meta
    assert DEFAULT_WEIGHTS.with_suffix(".safetensors").stat().st_size < 3_000_000


def _events(arrays: dict, start: int, stop: int) -> GenEvents:
    sub = {k: v[start:stop] for k, v in arrays.items()}
    return GenEvents.from_branches(sub, event_keys(7, 11, np.arange(start, stop)), constituents=True)


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
    img = generate_images(sim.model, x.astype(np.float32), cond, ev.keys, np.bincount(event[sel], minlength=len(counts)))
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
