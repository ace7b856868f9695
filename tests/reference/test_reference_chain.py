"""End-to-end physics of the reference chain on small samples (tens of seconds in all)."""

from __future__ import annotations

import awkward as ak
import numpy as np
import pytest
import uproot

from hepfastsim.cli.main import main
from hepfastsim.reference.chain import block_plan, make_tasks, run_block
from hepfastsim.reference.config import ChainConfig, GeneratorConfig, PileupConfig
from hepfastsim.reference.generate import generate
from hepfastsim.reference.jec import load_jec
from hepfastsim.reference.nanoaod_output import COLLECTIONS, EVENT_SCALARS, to_writer_branches
from hepfastsim.reference.pileup import load_or_build_pool
from hepfastsim.reference.pythia_events import PYTHIA_SEED_MAX, pythia_seed

POOL_SIZE = 40


@pytest.fixture(scope="module")
def pool_dir(tmp_path_factory):
    path = tmp_path_factory.mktemp("pileup")
    load_or_build_pool(path, PileupConfig(pool_size=POOL_SIZE), GeneratorConfig())
    return path


@pytest.fixture(scope="module")
def qcd():
    """400 pT-hat-biased QCD events (pT-hat > 40 GeV), no pileup, corrected jets."""
    cfg = ChainConfig(generator=GeneratorConfig(process="qcd", pthat_min=40.0), pileup=PileupConfig(mu=0.0),
                      block_size=400)
    return to_writer_branches(run_block(make_tasks(cfg, 400, 11, None)[0]))


def matched_response(ev):
    jets = ak.zip({"pt": ev["Jet_pt"], "eta": ev["Jet_eta"], "g": ev["Jet_genJetIdx"]})
    jets = jets[jets.g >= 0]
    gen_pt = ev["GenJet_pt"][jets.g]
    gen_eta = ev["GenJet_eta"][jets.g]
    return (ak.to_numpy(ak.flatten(gen_pt)), ak.to_numpy(ak.flatten(gen_eta)),
            ak.to_numpy(ak.flatten(jets.pt / gen_pt)))


def test_response_median_near_one(qcd):
    gpt, geta, r = matched_response(qcd)
    sel = (gpt > 30) & (np.abs(geta) < 4.7)
    assert sel.sum() > 500
    assert abs(np.median(r[sel]) - 1) < 0.03
    for lo, hi in ((30, 60), (60, 150), (150, 400), (400, 1e5)):
        b = (gpt > lo) & (gpt < hi) & (np.abs(geta) < 2.5)
        assert b.sum() > 60, (lo, hi)
        assert abs(np.median(r[b]) - 1) < 0.03, (lo, hi, np.median(r[b]))


def test_resolution_falls_with_pt(qcd):
    gpt, geta, r = matched_response(qcd)
    res = []
    for lo, hi in ((30, 60), (60, 150), (150, 400), (400, 1e5)):
        b = (gpt > lo) & (gpt < hi) & (np.abs(geta) < 2.5)
        q16, q84 = np.percentile(r[b], [16, 84])
        res.append(0.5 * (q84 - q16))
    assert all(a > b for a, b in zip(res, res[1:])), res
    assert 0.01 < res[-1] < res[0] < 0.4


def test_jets_are_matched_and_flavoured(qcd):
    n_jets = ak.sum(ak.num(qcd["Jet_pt"]))
    high = qcd["Jet_pt"] > 50
    matched = qcd["Jet_genJetIdx"][high] >= 0
    assert ak.mean(matched) > 0.9
    hflav = ak.to_numpy(ak.flatten(qcd["GenJet_hadronFlavour"]))
    assert set(np.unique(hflav)) <= {0, 4, 5} and (hflav == 5).any()
    pflav = np.abs(ak.to_numpy(ak.flatten(qcd["GenJet_partonFlavour"])))
    assert np.mean(pflav == 21) > 0.3 and np.mean((pflav >= 1) & (pflav <= 5)) > 0.2
    # constituents: the candidates of a jet sum to its raw pT
    ev = 0
    while len(qcd["Jet_pt"][ev]) == 0:
        ev += 1
    jidx = ak.to_numpy(qcd["JetPFCands_jetIdx"][ev])
    cidx = ak.to_numpy(qcd["JetPFCands_pFCandsIdx"][ev])
    pt = ak.to_numpy(qcd["PFCands_pt"][ev])[cidx[jidx == 0]]
    phi = ak.to_numpy(qcd["PFCands_phi"][ev])[cidx[jidx == 0]]
    raw = qcd["Jet_pt"][ev][0] * (1 - qcd["Jet_rawFactor"][ev][0])
    assert np.hypot((pt * np.cos(phi)).sum(), (pt * np.sin(phi)).sum()) == pytest.approx(raw, rel=1e-4)
    assert n_jets > 0


def test_wprime_fat_jets_peak_at_w_mass():
    cfg = ChainConfig(generator=GeneratorConfig(process="wprime"), pileup=PileupConfig(mu=0.0), block_size=250)
    ev = to_writer_branches(run_block(make_tasks(cfg, 250, 5, None)[0]))
    for prefix in ("GenJetAK8", "FatJet"):
        sel = ev[f"{prefix}_pt"] > 250
        mass = ak.to_numpy(ak.flatten(ev[f"{prefix}_mass"][sel]))
        assert len(mass) > 200
        counts, edges = np.histogram(mass, bins=np.arange(30, 150, 7.5))
        peak = 0.5 * (edges[np.argmax(counts)] + edges[np.argmax(counts) + 1])
        assert 70 < peak < 100, (prefix, peak)
        # the W/Z bosons are hadronic: most leading fat jets are heavy
        assert np.mean((mass > 60) & (mass < 110)) > 0.3
        # grooming removes the underlying event: the soft-drop mass peaks at the W / Z masses
        msd = ak.to_numpy(ak.flatten(ev[f"{prefix}_msoftdrop"][sel]))
        counts, edges = np.histogram(msd, bins=np.arange(30, 150, 5.0))
        peak = 0.5 * (edges[np.argmax(counts)] + edges[np.argmax(counts) + 1])
        assert 72 < peak < 95, (prefix, peak)
        assert np.median(msd[(msd > 60) & (msd < 110)]) < np.median(mass[(mass > 60) & (mass < 110)])


def test_pileup_overlay(pool_dir):
    cfg = ChainConfig(generator=GeneratorConfig(process="qcd", pthat_min=30.0),
                      pileup=PileupConfig(mu=20.0, pool_size=POOL_SIZE), block_size=60)
    _, path = load_or_build_pool(pool_dir, cfg.pileup, cfg.generator)
    ev = to_writer_branches(run_block(make_tasks(cfg, 60, 3, str(path))[0]))
    npu = ev["Pileup_nPU"]
    assert abs(npu.mean() - 20.0) < 4 * np.sqrt(20.0 / 60)
    rho = ev["fixedGridRhoFastjetAll"]
    assert 5.0 < rho.mean() < 25.0  # about 0.6 GeV per interaction, as CMS measures
    assert np.corrcoef(npu, rho)[0, 1] > 0.3


def test_seeds_and_blocks():
    s = {pythia_seed(1, b) for b in range(200)}
    assert len(s) == 200 and all(1 <= x <= PYTHIA_SEED_MAX for x in s)
    assert pythia_seed(1, 0) == pythia_seed(1, 0) != pythia_seed(2, 0)
    assert block_plan(1050, 500) == [(0, 0, 500), (1, 500, 500), (2, 1000, 50)]


def read_all(path):
    with uproot.open(path) as f:
        return {k: f["Events"][k].array(library="np") for k in f["Events"].keys()}


def test_same_seed_same_file_whatever_the_workers(tmp_path, pool_dir):
    cfg = ChainConfig(generator=GeneratorConfig(process="ttbar"), pileup=PileupConfig(mu=3.0, pool_size=POOL_SIZE),
                      block_size=10)
    for d in ("a", "b", "c"):
        (tmp_path / d).mkdir()
    a, b, c = (tmp_path / d / "out.root" for d in ("a", "b", "c"))
    generate(cfg, 30, a, seed=9, workers=1, pool_dir=pool_dir)
    generate(cfg, 30, b, seed=9, workers=2, pool_dir=pool_dir)
    generate(cfg, 30, c, seed=10, workers=1, pool_dir=pool_dir)
    da, db, dc = read_all(a), read_all(b), read_all(c)
    assert da.keys() == db.keys()
    for k in da:
        for x, y in zip(da[k], db[k]):
            assert np.array_equal(x, y), k
    assert not np.array_equal(np.concatenate(list(da["Jet_pt"])), np.concatenate(list(dc["Jet_pt"])))
    assert a.read_bytes() == b.read_bytes()  # the very same file, byte for byte


def test_cli_writes_nanoaod_that_coffea_reads(tmp_path, pool_dir):
    out = tmp_path / "ttbar.root"
    rc = main(["generate", "--process", "ttbar", "--events", "12", "--pileup", "2", "--pool-size", str(POOL_SIZE),
               "--cache-dir", str(pool_dir), "--block-size", "6", "--out", str(out), "--quiet"])
    assert rc == 0 and out.exists()
    with uproot.open(out) as f:
        keys = set(f["Events"].keys())
        for name in EVENT_SCALARS:
            assert name in keys
        for prefix, fields in COLLECTIONS.items():
            assert f"n{prefix}" in keys
            assert {f"{prefix}_{x}" for x in fields} <= keys
        assert f["Runs"]["genEventCount"].array(library="np")[0] == 12
    # refuses to overwrite without --overwrite
    assert main(["generate", "--process", "ttbar", "--events", "2", "--pileup", "0", "--out", str(out), "--quiet"]) == 1
    # a generated file is a valid input to `hepfastsim convert`
    converted = tmp_path / "converted.root"
    assert main(["convert", str(out), str(converted), "--quiet"]) == 0
    with uproot.open(converted) as f:
        n_fast, n_gen = f["Events"]["nFastJet"].array(), f["Events"]["nGenJet"].array()
        assert ak.sum(n_fast) > 0 and ak.all(n_fast <= n_gen + 5)
        assert "Jet_genJetIdx" in f["Events"].keys()  # the input's branches are kept
    coffea_nano = pytest.importorskip("coffea.nanoevents")
    events = coffea_nano.NanoEventsFactory.from_root(
        {str(out): "Events"}, schemaclass=coffea_nano.NanoAODSchema, mode="eager"
    ).events()
    assert len(events) == 12
    matched = events.Jet[events.Jet.genJetIdx >= 0]
    assert ak.all(matched.matched_gen.pt > 0)
    fat = events.FatJet[events.FatJet.genJetAK8Idx >= 0]
    assert ak.all(fat.matched_gen.pt > 0)
    # the pruned hard process holds the top quarks and their W bosons
    tops = events.GenPart[abs(events.GenPart.pdgId) == 6]
    assert ak.all(ak.num(tops) >= 2)
    from_top = ak.fill_none(abs(events.GenPart.parent.pdgId) == 6, False)
    ws = events.GenPart[(abs(events.GenPart.pdgId) == 24) & from_top]
    assert ak.all(ak.num(ws) == 2)
    # PFNano naming: coffea's PFNanoAODSchema links jets to their PF candidates
    pfnano = coffea_nano.NanoEventsFactory.from_root(
        {str(out): "Events"}, schemaclass=coffea_nano.PFNanoAODSchema, mode="eager"
    ).events()
    assert ak.all(ak.num(pfnano.Jet.constituents.pf, axis=2) == pfnano.Jet.nConstituents)


def test_response_table_against_hand_counts():
    from hepfastsim.reference.validation import response_table

    gpt = np.array([40.0] * 101 + [150.0] * 101)
    geta = np.array([0.5] * 202)
    r = np.concatenate([np.linspace(0.9, 1.1, 101), np.linspace(0.95, 1.05, 101)])
    rows = {(x["pt"], x["eta"]): x for x in response_table(gpt, geta, r)}
    a, b = rows[((30.0, 50.0), (0.0, 1.3))], rows[((100.0, 200.0), (0.0, 1.3))]
    assert a["n"] == 101 and a["median"] == pytest.approx(1.0) and a["resolution"] == pytest.approx(0.068, abs=1e-3)
    assert b["resolution"] == pytest.approx(0.034, abs=1e-3)
    assert np.isnan(rows[((500.0, 1000.0), (0.0, 1.3))]["median"])


def test_shipped_corrections_are_sane():
    for name in ("ak4", "ak8"):
        jec = load_jec(name)
        assert all(0.0 <= k < 1.5 for k in jec.kappa)
        f = jec.factor(np.array([30.0, 100.0, 1000.0]), np.array([0.0, 1.0, 2.0]), np.full(3, 0.5), np.zeros(3))
        assert np.all((f > 0.8) & (f < 1.6))


@pytest.mark.parametrize(("process", "resonance", "mass"),
                         [("zprime", 32, 2000.0), ("wprime", 34, 1000.0), ("ttbar", 6, 172.5)])
def test_processes_produce_their_resonance(process, resonance, mass):
    from hepfastsim.reference.pythia_events import PythiaGenerator

    gen = PythiaGenerator(GeneratorConfig(process=process), pythia_seed(4, 0)).generate(8)
    h = gen.hard
    sel = np.abs(h.pdg) == resonance
    per_event = np.add.reduceat(sel.astype(int), h.offsets[:-1])
    assert np.all(per_event >= 1)
    m = np.sqrt(np.maximum(h.e[sel] ** 2 - h.px[sel] ** 2 - h.py[sel] ** 2 - h.pz[sel] ** 2, 0))
    assert np.median(m) == pytest.approx(mass, rel=0.1)
    assert np.all(gen.weight == 1.0)


def test_qcd_bias_weights_follow_pthat():
    from hepfastsim.reference.pythia_events import PythiaGenerator

    cfg = GeneratorConfig(process="qcd", pthat_min=20.0, bias=True)
    gen = PythiaGenerator(cfg, pythia_seed(4, 1)).generate(30)
    np.testing.assert_allclose(gen.weight, (20.0 / gen.pthat) ** 4.5)
    assert gen.pthat.min() >= 20.0 and np.median(gen.pthat) > 60.0  # biased towards high pT-hat


def test_response_with_pileup_is_corrected(pool_dir):
    """With mu = 15 the L1 (kappa rho A) + L2L3 corrections still give a median response near 1."""
    cfg = ChainConfig(generator=GeneratorConfig(process="qcd", pthat_min=40.0),
                      pileup=PileupConfig(mu=15.0, pool_size=POOL_SIZE), block_size=300)
    _, path = load_or_build_pool(pool_dir, cfg.pileup, cfg.generator)
    ev = to_writer_branches(run_block(make_tasks(cfg, 300, 21, str(path))[0]))
    gpt, geta, r = matched_response(ev)
    sel = (gpt > 30) & (np.abs(geta) < 2.5)
    assert sel.sum() > 300
    assert abs(np.median(r[sel]) - 1) < 0.03
    low = sel & (gpt < 60)  # where the pileup offset matters most
    assert abs(np.median(r[low]) - 1) < 0.05
    # corrections were applied: rawFactor = 1 - raw / corrected is mostly positive at low pT
    assert ak.mean(ev["Jet_rawFactor"][ev["Jet_pt"] < 60]) > 0.02


def test_pileup_pool_is_cached(pool_dir):
    from hepfastsim.errors import HepfastsimError
    from hepfastsim.reference.pileup import pool_filename

    cfg = PileupConfig(pool_size=POOL_SIZE)
    pool_a, path = load_or_build_pool(pool_dir, cfg, GeneratorConfig())
    mtime = path.stat().st_mtime_ns
    pool_b, _ = load_or_build_pool(pool_dir, cfg, GeneratorConfig())
    assert path.stat().st_mtime_ns == mtime and path.name == pool_filename(cfg, GeneratorConfig())
    assert np.array_equal(pool_a.px, pool_b.px) and pool_a.n_events == POOL_SIZE
    # minimum-bias events: a few hundred particles, about 2/3 charged, little pT
    n = np.diff(pool_a.offsets)
    assert 50 < n.mean() < 400
    assert 0.4 < np.mean(pool_a.charge != 0) < 0.8
    bad = pool_dir / "bad"
    bad.mkdir(exist_ok=True)
    (bad / pool_filename(cfg, GeneratorConfig())).write_bytes(b"not a zip file")
    with pytest.raises(HepfastsimError, match="unreadable"):
        load_or_build_pool(bad, cfg, GeneratorConfig())
