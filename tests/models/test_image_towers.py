"""The tower generator of seed 000: neutral energy sampled per calorimeter tower, gen species inputs."""

from __future__ import annotations

import json
from pathlib import Path

import awkward as ak
import numpy as np
import pytest
import torch
import uproot

from hepfastsim.jets.species import gen_species_images, reco_species_images
from hepfastsim.kernels.rng import event_keys
from hepfastsim.models.image_gan import (
    ImageGANConfig,
    LoadedImageGAN,
    UNetGenerator,
    condition_features,
    continued_state,
    image_towers,
    sample_images,
    save_generator,
)
from hepfastsim.models.image_gan_train import ImagePairs, build_pairs
from hepfastsim.models.image_towers import (
    ImageDraws,
    TowerIndex,
    TowerOutputs,
    batch_towers,
    expected_total,
    sample_image,
    supervised_loss,
    tower_outputs,
)
from hepfastsim.simulators.base import GenEvents
from hepfastsim.simulators.image_gan import ImageGANSimulator

EXAMPLE = Path(__file__).parents[2] / "examples" / "qcd_small.root"
TOWERS = ImageGANConfig(species_channels=3, species_scale=50.0, output="towers")


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def pairs() -> ImagePairs:
    return build_pairs([str(EXAMPLE)], species=True)


@pytest.fixture(scope="module")
def example_arrays() -> dict:
    return uproot.open(EXAMPLE)["Events"].arrays(how=dict)


def _one_tower_batch(n: int) -> tuple[TowerIndex, ...]:
    """n jets at a barrel axis, with the reference's ECAL and HCAL towers."""
    return batch_towers(np.full(n, 0.3), np.full(n, 1.0))


def _outputs(n: int, towers: tuple[TowerIndex, ...], energy: float, fire: float, width: float) -> TowerOutputs:
    """No per-pixel part; every HCAL tower with the same energy, fire probability and width; no ECAL energy."""
    zero = torch.zeros(n, 1, 32, 32)
    ecal, hcal = towers
    return TowerOutputs(zero, zero, (torch.zeros(ecal.n_towers), torch.full((hcal.n_towers,), energy)),
                        (torch.zeros(ecal.n_towers), torch.full((hcal.n_towers,), fire)),
                        (torch.ones(ecal.n_towers), torch.full((hcal.n_towers,), width)))


def test_tower_index_pools_per_tower_and_knows_each_towers_first_pixel() -> None:
    ecal, hcal = _one_tower_batch(3)
    for index in (ecal, hcal):
        tower = index.pixel_tower.numpy()
        assert len(tower) == 3 * 1024 and index.n_towers == tower.max() + 1
        assert np.array_equal(tower[index.first_pixel.numpy()], np.arange(index.n_towers))
        for t in range(index.n_towers):  # the first pixel is the lowest of its tower, all in one jet
            where = np.flatnonzero(tower == t)
            assert where[0] == index.first_pixel[t] and len(np.unique(where // 1024)) == 1
            rows, cols = np.unique(where // 32), np.unique(where % 32)  # a rectangle, width columns wide
            assert len(where) == len(rows) * len(cols) and len(cols) == index.width[t]
        assert index.size.sum() == 3 * 1024
        np.testing.assert_allclose(index.pool(torch.ones(3 * 1024)).numpy(), index.size.numpy())
    assert 3 * 9 <= hcal.n_towers <= 3 * 25 and ecal.n_towers > 3 * 250  # ~9 x 9 and ~2 x 2 pixels per tower


def test_a_fired_tower_puts_its_energy_in_one_uniformly_chosen_pixel_of_the_tower() -> None:
    n = 4000
    towers = _one_tower_batch(n)
    hcal = towers[1]
    out = _outputs(n, towers, energy=0.2, fire=1.0, width=1e-3)
    img = sample_image(out, towers, ImageDraws.from_numpy(np.random.default_rng(1), n, towers)).reshape(-1).numpy()
    tower = hcal.pixel_tower.numpy()
    lit = np.flatnonzero(img)
    # exactly one lit pixel per tower, holding the tower's energy
    assert np.array_equal(np.sort(tower[lit]), np.arange(hcal.n_towers))
    np.testing.assert_allclose(img[lit], 0.2, rtol=1e-2)
    # uniform over the tower: the first jet's biggest tower, each pixel chosen ~n / size times
    t = int(np.argmax(hcal.size.numpy()[: hcal.n_towers // n]))
    size = int(hcal.size[t])
    per_jet = hcal.n_towers // n
    chosen = (lit[np.isin(tower[lit] - (lit // 1024) * per_jet, [t])] % 1024)
    counts = np.bincount(chosen, minlength=1024)[np.flatnonzero(tower[:1024] == t)]
    assert counts.sum() == n and len(counts) == size
    chi2 = np.sum((counts - n / size) ** 2 / (n / size))
    assert chi2 < size + 5 * np.sqrt(2 * size)


def test_fire_probability_energy_spread_and_expected_total() -> None:
    n = 3000
    towers = _one_tower_batch(n)
    hcal = towers[1]
    per_jet = hcal.n_towers // n
    out = _outputs(n, towers, energy=0.1, fire=0.3, width=0.5)
    img = sample_image(out, towers, ImageDraws.from_numpy(np.random.default_rng(2), n, towers)).reshape(-1).numpy()
    lit = img[img > 0]
    assert len(lit) / hcal.n_towers == pytest.approx(0.3, abs=0.02)
    assert np.mean(lit) == pytest.approx(0.1, rel=0.03)  # the log-normal's mean is E
    assert np.std(np.log(lit)) == pytest.approx(0.5, rel=0.05)
    expected = expected_total(out, towers).numpy()
    np.testing.assert_allclose(expected, 0.3 * 0.1 * per_jet, rtol=1e-5)
    assert img.reshape(n, -1).sum(axis=1).mean() == pytest.approx(expected.mean(), rel=0.03)


def test_the_placement_uniform_picks_the_towers_pixels_in_raster_order() -> None:
    n = 2
    towers = _one_tower_batch(n)
    out = _outputs(n, towers, energy=0.2, fire=1.0, width=1e-3)
    draws = ImageDraws.from_numpy(np.random.default_rng(3), n, towers)
    hcal = towers[1]
    tower = hcal.pixel_tower.numpy()
    for v, pick in ((0.0, lambda where: where[0]), (1.0 - 1e-7, lambda where: where[-1]),
                    (0.5, lambda where: where[len(where) // 2])):
        place = tuple(torch.full_like(p, v) for p in draws.place)
        img = sample_image(out, towers, ImageDraws(draws.mask, draws.fire, place, draws.energy)).reshape(-1).numpy()
        expect = [pick(np.flatnonzero(tower == t)) for t in range(hcal.n_towers)]
        assert np.array_equal(np.flatnonzero(img), np.sort(expect))


def test_supervised_loss_trains_every_output_and_prefers_the_right_fire_probability() -> None:
    torch.manual_seed(0)
    n = 8
    towers = _one_tower_batch(n)
    head = torch.randn(n, 8, 32, 32, requires_grad=True)
    out = tower_outputs(head, towers)
    per_pixel = torch.zeros(n, 1, 32, 32)
    per_pixel[:, 0, 16, 16] = 0.5
    neutral = torch.zeros(n, 2, 32, 32)
    neutral[:, 1, 10, 10] = 0.2  # one HCAL tower per jet has energy
    neutral[:, 0, 20, 20] = 0.1  # and one ECAL tower
    loss = supervised_loss(out, towers, per_pixel, neutral)
    loss.backward()
    assert torch.isfinite(loss)
    assert all(head.grad[:, k].abs().sum() > 0 for k in range(8))

    hcal_only = neutral * torch.tensor([0.0, 1.0])[None, :, None, None]

    def fire_loss(p: float) -> float:
        o = _outputs(n, towers, energy=0.2, fire=p, width=0.5)
        return float(supervised_loss(o, towers, per_pixel, hcal_only))

    right = n / towers[1].n_towers  # one HCAL tower of each jet has energy
    assert fire_loss(right) < fire_loss(0.5) and fire_loss(right) < fire_loss(0.01)


def test_a_mask_generator_continued_as_a_tower_generator_keeps_its_per_pixel_part() -> None:
    torch.manual_seed(1)
    mask = UNetGenerator(ImageGANConfig()).eval()
    towers = UNetGenerator(TOWERS).eval()
    towers.load_state_dict(continued_state(towers, mask.state_dict(), ImageGANConfig()))
    x = torch.rand(4, 1, 32, 32) * (torch.rand(4, 1, 32, 32) < 0.1)
    c = condition_features(np.array([[100.0, 0.5, 1.0, 25.0]] * 4, np.float32))
    species = torch.rand(4, 3, 32, 32)
    with torch.no_grad():
        a, b = mask(x, c), towers(x, c, species=species)
        assert towers.head(x, c, species=species).shape == (4, 8, 32, 32)
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
    with pytest.raises(ValueError, match="species"):
        towers(x, c)
    with pytest.raises(ValueError, match="cannot continue"):
        continued_state(mask, towers.state_dict(), TOWERS)
    with pytest.raises(ValueError, match="output"):
        ImageGANConfig(output="pixels")
    with pytest.raises(ValueError, match="species_channels"):
        ImageGANConfig(species_channels=2)


def test_species_images_split_a_single_particle_by_kind_and_window() -> None:
    axis = ak.zip({"pt": [100.0] * 4, "eta": [0.0] * 4, "phi": [0.0] * 4})
    cands = ak.Array([
        [{"pt": 10.0, "eta": 0.05, "phi": 0.0, "charge": 1, "pdgId": 211}],
        [{"pt": 10.0, "eta": 0.05, "phi": 0.0, "charge": 0, "pdgId": 22}],
        [{"pt": 10.0, "eta": 0.05, "phi": 0.0, "charge": 0, "pdgId": 130}],
        [{"pt": 10.0, "eta": 0.2, "phi": 0.0, "charge": 0, "pdgId": 130}],  # outside the 0.3 x 0.3 window
    ])
    gen, reco = gen_species_images(cands, axis), reco_species_images(cands, axis)
    assert gen.shape == reco.shape == (4, 3, 32, 32)
    totals_gen, totals_reco = gen.sum(axis=(2, 3)), reco.sum(axis=(2, 3))
    np.testing.assert_allclose(totals_gen, [[0.1, 0, 0], [0, 0.1, 0], [0, 0, 0.1], [0, 0, 0.1]])
    np.testing.assert_allclose(totals_reco, [[0.1, 0, 0], [0, 0.1, 0], [0, 0, 0.1], [0.1, 0, 0]])
    assert reco[3, 0, -1].sum() == pytest.approx(0.1)  # folded onto the border row


def test_pairs_by_species_add_up_and_survive_saving(pairs: ImagePairs, tmp_path: Path) -> None:
    plain = build_pairs([str(EXAMPLE)])
    assert pairs.has_species and not plain.has_species
    rows = np.arange(len(pairs))
    for side in ("gen", "reco"):
        np.testing.assert_allclose(pairs.species(side, rows).sum(axis=1), getattr(plain, side).dense(rows), atol=1e-6)
    assert pairs.species("reco", rows)[:, 1:].sum() > 0  # in-window neutrals exist
    pairs.save(tmp_path / "p.npz")
    again = ImagePairs.load(tmp_path / "p.npz")
    assert np.array_equal(again.species("reco", rows), pairs.species("reco", rows))
    both = ImagePairs.concatenate([pairs, again])
    assert len(both) == 2 * len(pairs) and both.has_species
    assert not ImagePairs.concatenate([pairs, plain]).has_species
    from hepfastsim.errors import HepfastsimError

    with pytest.raises(HepfastsimError, match="species"):
        plain.species("gen", rows)


@pytest.fixture(scope="module")
def tower_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    torch.manual_seed(2)
    g = UNetGenerator(TOWERS).eval()
    base = tmp_path_factory.mktemp("towers") / "towers"
    save_generator(g, base, {"model": "image-gan", "note": "untrained, for tests"})
    return base


def _events(arrays: dict, start: int, stop: int, fields: tuple[str, ...]) -> GenEvents:
    sub = {k: v[start:stop] for k, v in arrays.items()}
    return GenEvents.from_branches(sub, event_keys(7, 11, np.arange(start, stop)), constituents=True,
                                   constituent_fields=fields)


def test_tower_simulator_output_does_not_depend_on_chunking(example_arrays: dict, tower_model: Path) -> None:
    sim = ImageGANSimulator(weights=tower_model, min_reco_pt=0.0)
    fields = sim.constituent_fields()
    assert "pdgId" in fields and "charge" in fields
    whole = sim.simulate(_events(example_arrays, 0, 12, fields))
    split = ak.concatenate([sim.simulate(_events(example_arrays, 0, 5, fields)),
                            sim.simulate(_events(example_arrays, 5, 12, fields))])
    assert ak.sum(ak.num(whole)) > 20
    for f in ImageGANSimulator.output_fields:
        assert np.array_equal(ak.to_numpy(ak.flatten(whole[f])), ak.to_numpy(ak.flatten(split[f])), equal_nan=True), f
    from hepfastsim.errors import ModelError

    with pytest.raises(ModelError, match="pdgId"):
        sim.simulate(_events(example_arrays, 0, 5, ("pt", "eta", "phi", "mass")))


def test_sample_images_of_a_tower_generator_match_the_simulators_draw(pairs: ImagePairs, tower_model: Path) -> None:
    from hepfastsim.models.image_gan import load_generator
    from hepfastsim.simulators.image_gan import generate_images

    model = load_generator(tower_model)
    rows = np.arange(20)
    x, cond, species = pairs.gen.dense(rows), pairs.cond[rows], pairs.species("gen", rows)
    keys = event_keys(1, 0, np.arange(20))
    counts = np.ones(20, np.int64)
    a = generate_images(model, x, cond, keys, counts, species)
    b = generate_images(model, x, cond, keys, counts, species)
    assert np.array_equal(a, b) and a.sum() > 0
    with pytest.raises(ValueError, match="species"):
        generate_images(model, x, cond, keys, counts)
    towers = image_towers(model.config, cond)
    assert len(towers) == 2 and towers[0].n_towers > towers[1].n_towers > 20
    img, expected = sample_images(model, x, cond, towers, ImageDraws.from_numpy(np.random.default_rng(0), 20, towers),
                                  species=species)
    assert img.shape == (20, 32, 32) and expected.shape == (20,) and np.all(expected > 0)
    assert isinstance(model, LoadedImageGAN) and model.config.output == "towers"


def test_convert_names_the_missing_species_branch(tmp_path: Path, example_arrays: dict, tower_model: Path) -> None:
    from hepfastsim.convert import ConvertConfig, convert
    from hepfastsim.errors import BranchNotFoundError

    src = tmp_path / "no_pdgid.root"
    with uproot.recreate(src) as f:
        arrays = {k: v for k, v in example_arrays.items() if k != "GenCands_pdgId" and not k.startswith("n")}
        f.mktree("Events", {k: v.type if hasattr(v, "type") else v.dtype for k, v in arrays.items()})
        f["Events"].extend(arrays)
    out = tmp_path / "out.root"
    with pytest.raises(BranchNotFoundError, match="GenCands_pdgId"):
        convert(src, out, ConvertConfig(model="image-gan"), simulator=ImageGANSimulator(weights=tower_model))
    assert not out.exists()


def test_train_cli_continues_a_mask_generator_as_a_tower_generator(tmp_path: Path) -> None:
    from hepfastsim.cli.main import main
    from hepfastsim.models.image_gan import load_generator

    torch.manual_seed(3)
    save_generator(UNetGenerator(ImageGANConfig()), tmp_path / "mask", {"model": "image-gan"})
    args = ["train", "image-gan", "--data", str(EXAMPLE), "--out", str(tmp_path / "t"), "--init", str(tmp_path / "mask"),
            "--output", "towers", "--species", "--epochs", "1", "--batch-size", "32", "--eval-every", "3",
            "--eval-jets", "40", "--w-l2", "0", "--w-sum", "0", "--score-calibrated", "--threads", "1", "--quiet"]
    assert main(args) == 0
    meta = json.loads((tmp_path / "t.json").read_text())
    assert meta["architecture"]["output"] == "towers" and meta["architecture"]["species_channels"] == 3
    assert "--output towers" in meta["retrain_command"] and "--species" in meta["retrain_command"]
    assert "--score-calibrated" in meta["retrain_command"] and meta["training"]["config"]["score_calibrated"]
    assert meta["training"]["history"] and np.isfinite(meta["training"]["best_heldout_score"])
    loaded = load_generator(tmp_path / "t")
    # the species enter at the scale of the gen image in --init (an untrained batch norm: factor 1)
    assert loaded.config.output == "towers" and loaded.config.species_scale == pytest.approx(1.0, rel=1e-4)
    assert (tmp_path / "t.discriminators.safetensors").exists()
