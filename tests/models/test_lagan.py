"""LAGAN pieces: locally connected layers against explicit loops, minibatch discrimination,
networks' shapes, the fused inference generator, save/load and deterministic sampling,
and the W / QCD image samples."""

from __future__ import annotations

from pathlib import Path

import awkward as ak
import numpy as np
import pytest
import torch
from torch.nn import functional as F

from hepfastsim.errors import ModelError
from hepfastsim.models.image_samples import hadronic_w, images_from_file, parse_file_spec
from hepfastsim.models.lagan import (
    DcganDiscriminator,
    DcganGenerator,
    FusedLaganGenerator,
    ImageGenerator,
    LaganConfig,
    LaganDiscriminator,
    LaganGenerator,
    MinibatchDiscrimination,
)
from hepfastsim.models.locally_connected import LocallyConnected2d, UpsampledLocallyConnected2d

SMALL = Path(__file__).parents[2] / "examples" / "qcd_small.root"


def _lc_loops(x: np.ndarray, w: np.ndarray, b: np.ndarray | None, k: int, stride: int, pad: int) -> np.ndarray:
    """Naive locally connected layer: x (B, C, H, W), w (L, C*k*k, O) in unfold order."""
    bsz, c, h, wd = x.shape
    xp = np.pad(x, ((0, 0), (0, 0), (pad, pad), (pad, pad)))
    ho, wo = (h + 2 * pad - k) // stride + 1, (wd + 2 * pad - k) // stride + 1
    o = w.shape[2]
    out = np.zeros((bsz, o, ho, wo))
    for n in range(bsz):
        for i in range(ho):
            for j in range(wo):
                pos = i * wo + j
                for oc in range(o):
                    acc = 0.0
                    for ci in range(c):
                        for a in range(k):
                            for bb in range(k):
                                acc += xp[n, ci, i * stride + a, j * stride + bb] * w[pos, ci * k * k + a * k + bb, oc]
                    out[n, oc, i, j] = acc + (b[oc, i, j] if b is not None else 0.0)
    return out


@pytest.mark.parametrize("c,o,size,k,stride,pad,bias", [(2, 3, 6, 3, 1, 0, True), (3, 2, 7, 5, 2, 2, True), (1, 1, 5, 2, 1, 0, False)])
def test_locally_connected_matches_loops(c: int, o: int, size: int, k: int, stride: int, pad: int, bias: bool) -> None:
    torch.manual_seed(1)
    lc = LocallyConnected2d(c, o, (size, size), k, stride=stride, padding=pad, bias=bias).double()
    if bias:
        with torch.no_grad():
            lc.bias.normal_()
    x = torch.randn(2, c, size, size, dtype=torch.float64)
    ref = _lc_loops(x.numpy(), lc.weight.detach().numpy(), lc.bias.detach().numpy() if bias else None, k, stride, pad)
    np.testing.assert_allclose(lc(x).detach().numpy(), ref, rtol=1e-12, atol=1e-12)


def test_locally_connected_is_not_translation_invariant() -> None:
    # a convolution would give the same response to a shifted impulse; LC layers must not
    torch.manual_seed(0)
    lc = LocallyConnected2d(1, 1, (6, 6), 3, bias=False)
    x1 = torch.zeros(1, 1, 6, 6)
    x1[0, 0, 1, 1] = 1.0
    x2 = torch.roll(x1, shifts=(2, 2), dims=(2, 3))
    assert not torch.allclose(lc(x1)[0, 0, 0, 0], lc(x2)[0, 0, 2, 2])


@pytest.mark.parametrize("c,o,small,k,pad", [(4, 6, 7, 5, 2), (6, 6, 14, 3, 0), (2, 3, 5, 3, 1)])
def test_upsampled_lc_equals_lc_of_upsampled_input(c: int, o: int, small: int, k: int, pad: int) -> None:
    torch.manual_seed(2)
    lc = LocallyConnected2d(c, o, (2 * small, 2 * small), k, padding=pad).double()
    ul = UpsampledLocallyConnected2d(c, o, (2 * small, 2 * small), k, padding=pad).double()
    ul.load_state_dict(lc.state_dict())
    x = torch.randn(3, c, small, small, dtype=torch.float64, requires_grad=True)
    a = lc(F.interpolate(x, scale_factor=2, mode="nearest"))
    b = ul(x)
    torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-10)
    ga = torch.autograd.grad(a.square().sum(), [x, lc.weight])
    gb = torch.autograd.grad(b.square().sum(), [x, ul.weight])
    for u, v in zip(ga, gb):
        torch.testing.assert_close(u, v, rtol=1e-9, atol=1e-9)


def test_minibatch_discrimination_matches_loops() -> None:
    torch.manual_seed(3)
    mbd = MinibatchDiscrimination(5, kernels=4, dims=3).double()
    x = torch.randn(6, 5, dtype=torch.float64)
    out = mbd(x)
    assert out.shape == (6, 4)
    m = (x @ mbd.T).view(6, 4, 3).detach().numpy()
    ref = np.array([[sum(np.exp(-np.abs(m[i, k] - m[j, k]).sum()) for j in range(6)) for k in range(4)] for i in range(6)])
    np.testing.assert_allclose(out.detach().numpy(), ref, rtol=1e-12)
    # identical samples: every feature equals the batch size (what mode collapse looks like)
    same = mbd(x[:1].repeat(6, 1))
    torch.testing.assert_close(same, torch.full((6, 4), 6.0, dtype=torch.float64))


@pytest.mark.parametrize("arch", ["lagan", "dcgan"])
def test_network_shapes_and_non_negative_images(arch: str) -> None:
    torch.manual_seed(4)
    cfg = LaganConfig(architecture=arch)
    g = LaganGenerator(cfg) if arch == "lagan" else DcganGenerator(cfg)
    d = LaganDiscriminator(cfg) if arch == "lagan" else DcganDiscriminator(cfg)
    z, lab = torch.randn(8, 200), torch.tensor([0, 1] * 4)
    img = g(z, lab)
    assert img.shape == (8, 1, 25, 25)
    assert (img >= 0).all() and (img == 0).any() and (img > 0).any()  # ReLU output: sparse, non-negative
    p, a = d(img)
    assert p.shape == (8,) and a.shape == (8,)
    # the class embedding conditions the image
    assert not torch.allclose(g(z, torch.zeros(8, dtype=torch.long)), g(z, torch.ones(8, dtype=torch.long)))


def _generator_with_bn_stats(seed: int = 5) -> LaganGenerator:
    torch.manual_seed(seed)
    g = LaganGenerator()
    with torch.no_grad():
        for bn in (g.bn1, g.bn2):
            bn.running_mean.uniform_(-0.5, 0.5)
            bn.running_var.uniform_(0.5, 2.0)
            bn.weight.uniform_(0.5, 1.5)
            bn.bias.uniform_(-0.2, 0.2)
        g.lc1.bias.normal_(0, 0.1)
        g.lc2.bias.normal_(0, 0.1)
    return g.eval()


def test_fused_generator_equals_training_form() -> None:
    g = _generator_with_bn_stats()
    fused = g.fused()
    z, lab = torch.randn(32, 200), torch.randint(0, 2, (32,))
    with torch.no_grad():
        a = g(z, lab)[:, 0]
        b = fused(z, lab)
    assert (a > 0).float().mean() > 0.05
    torch.testing.assert_close(b, a, rtol=1e-4, atol=1e-5)


def test_fused_bfloat16_is_close_on_average() -> None:
    fused = _generator_with_bn_stats().fused()
    z, lab = torch.randn(256, 200), torch.randint(0, 2, (256,))
    with torch.no_grad():
        a = fused(z, lab)
        fused.set_precision("bfloat16")
        b = fused(z, lab)
    assert b.dtype == torch.float32 and (b >= 0).all()
    assert abs(float(b.sum() / a.sum()) - 1.0) < 0.05
    with pytest.raises(ModelError, match="precision"):
        fused.set_precision("float16")


def test_save_load_sample_deterministic(tmp_path: Path) -> None:
    g = _generator_with_bn_stats()
    model = ImageGenerator(g.fused(), g.config, {"note": "test"})
    model.save(tmp_path / "m")
    loaded = ImageGenerator.load(tmp_path / "m")
    assert isinstance(loaded.network, FusedLaganGenerator) and loaded.metadata["note"] == "test"
    a = loaded.sample(1, 50, seed=3)
    b = np.concatenate([loaded.sample(1, 20, seed=3), loaded.sample(1, 30, seed=3, start=20)])
    np.testing.assert_array_equal(a, b)  # same images whatever the chunking
    np.testing.assert_array_equal(a[:5], loaded.sample(1, 5, seed=3))
    assert a.shape == (50, 25, 25) and a.dtype == np.float32 and (a >= 0).all()
    assert not np.array_equal(a, loaded.sample(1, 50, seed=4))
    assert not np.array_equal(a, loaded.sample(0, 50, seed=3))
    # float16 storage: close to the float32 model (GeV per pixel)
    ref = model.sample(1, 50, seed=3)
    np.testing.assert_allclose(a.sum(axis=(1, 2)), ref.sum(axis=(1, 2)), rtol=0.02)
    with pytest.raises(ModelError, match="label"):
        loaded.sample(2, 5)
    with pytest.raises(ModelError, match="no file .*missing.safetensors"):
        ImageGenerator.load(tmp_path / "missing")


def test_shipped_lagan_loads_and_generates() -> None:
    model = ImageGenerator.load()
    assert model.metadata["retrain_command"].startswith("hepfastsim train lagan")
    assert {"emd", "emd_floor", "w_mass_peak_GeV"} <= set(model.metadata["validation"])
    img = model.sample(1, 200, seed=0)
    assert img.shape == (200, 25, 25) and img.dtype == np.float32 and (img >= 0).all()
    np.testing.assert_array_equal(img[:50], model.sample(1, 50, seed=0))


def test_hadronic_w_selection() -> None:
    # event 0: W' -> W Z, W -> q q'; event 1: W -> l nu (not hadronic); event 2: no W
    gp = ak.zip({
        "pdgId": ak.Array([[34, 24, 23, 2, -1, 1, -1], [34, -24, 23, 11, -12], [21, 21]]),
        "genPartIdxMother": ak.Array([[-1, 0, 0, 1, 1, 2, 2], [-1, 0, 0, 1, 1], [-1, -1]]),
        "eta": ak.Array([[0.0, 0.5, -0.3, 0.6, 0.4, -0.2, -0.4], [0.0, 1.0, 0.2, 1.1, 0.9], [0.0, 0.0]]),
    })
    w = hadronic_w(gp)
    assert ak.num(w).tolist() == [1, 0, 0]
    assert w.eta.tolist() == [[0.5], [], []]


def test_images_from_small_sample() -> None:
    s = images_from_file(SMALL, "qcd")
    assert len(s) > 10
    assert s.images.shape[1:] == (25, 25) and (s.images >= 0).all()
    assert ((s.jet["pt"] > 250) & (s.jet["pt"] < 300)).all()
    # overflow is folded into the border, so each image holds the constituents' scalar pT sum;
    # for a jet that is close to the constituents' vector sum pT, within a few percent
    ratio = s.images.sum(axis=(1, 2)) / s.jet["pt"]
    assert np.median(ratio) == pytest.approx(1.0, abs=0.05)
    # the leading subjet sits at the centre pixel region
    mean = s.images.mean(axis=0)
    assert np.unravel_index(mean.argmax(), mean.shape) == (12, 12)


def test_parse_file_spec() -> None:
    assert parse_file_spec("a.root") == ("a.root", None, None)
    assert parse_file_spec("a.root@10:20") == ("a.root", 10, 20)
    assert parse_file_spec("a.root@:20") == ("a.root", None, 20)
