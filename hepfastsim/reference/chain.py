"""The reference chain, block by block: Pythia -> pileup -> detector/PF -> jets -> NanoAOD.

A run of N events is cut into fixed blocks of ``ChainConfig.block_size`` events. Block
``b`` uses Pythia seed ``pythia_seed(seed, b)`` and numpy / numba streams derived from
(seed, b) only, so the output is the same whatever the number of workers; blocks are
written in block order.

Units: GeV, rad.
"""

from __future__ import annotations

import functools
import math
import multiprocessing as mp
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numba as nb
import numpy as np

from hepfastsim.errors import HepfastsimError
from hepfastsim.reference.clustering import (
    JetBlock,
    cluster,
    fixed_grid_rho,
    gather_constituents,
    ghost_flavours,
    jet_areas,
    match_closest,
    softdrop_mass,
)
from hepfastsim.reference.config import ChainConfig, DetectorConfig
from hepfastsim.reference.detector import PFBlock, detector_arrays, simulate_detector
from hepfastsim.reference.jec import JetCorrection, derive_from_pairs, identity, load_jec
from hepfastsim.reference.nanoaod_output import BlockOutput
from hepfastsim.reference.pileup import PileupPool, overlay_pileup
from hepfastsim.reference.pythia_events import INVISIBLE_PDG, ParticleBlock, PythiaGenerator, pythia_seed

__all__ = ["BlockTask", "block_plan", "make_tasks", "run_block", "iter_blocks", "derive_jec_tables", "STAGES"]

STAGES = ("pythia", "pileup", "detector", "clustering", "output")


@dataclass(frozen=True)
class BlockTask:
    """One unit of work: ``n_events`` events of block ``block`` of a run with ``seed``."""

    config: ChainConfig
    seed: int
    block: int
    first_event: int
    n_events: int
    pool_path: str | None = None
    derive: bool = False


def block_plan(n_events: int, block_size: int) -> list[tuple[int, int, int]]:
    """(block index, first event, number of events) of each block; independent of workers."""
    if n_events < 0 or block_size < 1:
        raise HepfastsimError(f"expected n_events >= 0 and block_size >= 1, got {n_events} and {block_size}")
    return [(b, b * block_size, min(block_size, n_events - b * block_size))
            for b in range(math.ceil(n_events / block_size))]


def _stream_seed(seed: int, block: int, stream: int) -> int:
    return int(np.random.SeedSequence([int(seed), int(block), int(stream)]).generate_state(1, np.uint32)[0])


@functools.lru_cache(maxsize=4)
def _det_arrays(config: DetectorConfig):
    return detector_arrays(config)


@functools.lru_cache(maxsize=2)
def _load_pool(path: str) -> PileupPool:
    with np.load(path) as data:
        return PileupPool(*(data[k] for k in ("offsets", "px", "py", "pz", "e", "pdg", "charge")))


@functools.lru_cache(maxsize=2)
def _jec(name: str) -> JetCorrection:
    return load_jec(name)


# ------------------------------------------------------------------------------------------
# small kernels on flat per-event lists


@nb.njit(cache=True)
def _concat_events(off_a, ax, ay, az, ae, off_b, bx, by, bz, be, scale_b):
    n_ev = off_a.shape[0] - 1
    total = (off_a[-1] - off_a[0]) + (off_b[-1] - off_b[0])
    off = np.zeros(n_ev + 1, np.int64)
    x = np.empty(total)
    y = np.empty(total)
    z = np.empty(total)
    e = np.empty(total)
    o = 0
    for ev in range(n_ev):
        for i in range(off_a[ev], off_a[ev + 1]):
            x[o] = ax[i]
            y[o] = ay[i]
            z[o] = az[i]
            e[o] = ae[i]
            o += 1
        for i in range(off_b[ev], off_b[ev + 1]):
            x[o] = bx[i] * scale_b
            y[o] = by[i] * scale_b
            z[o] = bz[i] * scale_b
            e[o] = be[i] * scale_b
            o += 1
        off[ev + 1] = o
    return off, x, y, z, e


@nb.njit(cache=True)
def _constituent_tables(cand_off, sel_off_a, sel_a, coff_a, cidx_a, sel_off_b, sel_b, coff_b, cidx_b):
    """Keep the candidates of the selected jets of two collections; (jetIdx, candIdx) pairs."""
    n_ev = cand_off.shape[0] - 1
    n_c = cand_off[-1] - cand_off[0]
    keep = np.zeros(n_c, np.bool_)
    new_idx = np.full(n_c, -1, np.int64)
    n_pairs_a = 0
    for j in range(sel_a.shape[0]):
        n_pairs_a += coff_a[sel_a[j] + 1] - coff_a[sel_a[j]]
    n_pairs_b = 0
    for j in range(sel_b.shape[0]):
        n_pairs_b += coff_b[sel_b[j] + 1] - coff_b[sel_b[j]]
    pa_j = np.empty(n_pairs_a, np.int64)
    pa_c = np.empty(n_pairs_a, np.int64)
    pb_j = np.empty(n_pairs_b, np.int64)
    pb_c = np.empty(n_pairs_b, np.int64)
    cnt_a = np.zeros(n_ev, np.int64)
    cnt_b = np.zeros(n_ev, np.int64)
    cnt_keep = np.zeros(n_ev, np.int64)
    na = 0
    nb_ = 0
    for ev in range(n_ev):
        base = cand_off[ev] - cand_off[0]
        n_real = cand_off[ev + 1] - cand_off[ev]
        for s in range(2):
            sel_off = sel_off_a if s == 0 else sel_off_b
            sel = sel_a if s == 0 else sel_b
            coff = coff_a if s == 0 else coff_b
            cidx = cidx_a if s == 0 else cidx_b
            for p in range(sel_off[ev], sel_off[ev + 1]):
                j = sel[p]
                for k in range(coff[j], coff[j + 1]):
                    loc = cidx[k]
                    if loc < n_real:
                        keep[base + loc] = True
        n_new = 0
        for loc in range(n_real):
            if keep[base + loc]:
                new_idx[base + loc] = n_new
                n_new += 1
        cnt_keep[ev] = n_new
        for s in range(2):
            sel_off = sel_off_a if s == 0 else sel_off_b
            sel = sel_a if s == 0 else sel_b
            coff = coff_a if s == 0 else coff_b
            cidx = cidx_a if s == 0 else cidx_b
            for p in range(sel_off[ev], sel_off[ev + 1]):
                j = sel[p]
                for k in range(coff[j], coff[j + 1]):
                    loc = cidx[k]
                    if loc < n_real:
                        if s == 0:
                            pa_j[na] = p - sel_off[ev]
                            pa_c[na] = new_idx[base + loc]
                            na += 1
                            cnt_a[ev] += 1
                        else:
                            pb_j[nb_] = p - sel_off[ev]
                            pb_c[nb_] = new_idx[base + loc]
                            nb_ += 1
                            cnt_b[ev] += 1
    return keep, cnt_keep, cnt_a, pa_j[:na], pa_c[:na], cnt_b, pb_j[:nb_], pb_c[:nb_]


@nb.njit(cache=True)
def _count_real(c_off, c_idx, j_off, n_real):
    out = np.zeros(c_off.shape[0] - 1, np.int64)
    for ev in range(j_off.shape[0] - 1):
        for j in range(j_off[ev], j_off[ev + 1]):
            n = 0
            for k in range(c_off[j], c_off[j + 1]):
                if c_idx[k] < n_real[ev]:
                    n += 1
            out[j] = n
    return out


def _event_of(offsets: np.ndarray) -> np.ndarray:
    return np.repeat(np.arange(len(offsets) - 1), np.diff(offsets))


def _select(offsets: np.ndarray, keep: np.ndarray, sort_key: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Global indices of kept jets ordered by event then decreasing ``sort_key``; new offsets."""
    ev = _event_of(offsets)
    idx = np.nonzero(keep)[0]
    order = idx[np.lexsort((-sort_key[idx], ev[idx]))]
    counts = np.bincount(ev[order], minlength=len(offsets) - 1)
    off = np.zeros(len(counts) + 1, np.int64)
    np.cumsum(counts, out=off[1:])
    return order, off


def _sub(jets: JetBlock, order: np.ndarray, off: np.ndarray, pt: np.ndarray | None = None) -> JetBlock:
    """Jets ``order`` (global indices) as a new block; constituents are not carried."""
    return JetBlock(off, (jets.pt if pt is None else pt)[order], jets.eta[order], jets.phi[order],
                    jets.mass[order], jets.rap[order], np.zeros(1, np.int64), np.zeros(0, np.int64))


def _pxpypze(pt, eta, phi, mass):
    px = pt * np.cos(phi)
    py = pt * np.sin(phi)
    pz = pt * np.sinh(eta)
    e = np.sqrt(px * px + py * py + pz * pz + mass * mass)
    return px, py, pz, e


def _particles_ptetaphim(p: ParticleBlock):
    pt = np.hypot(p.px, p.py)
    with np.errstate(divide="ignore", invalid="ignore"):
        eta = np.arcsinh(np.where(pt > 0, p.pz / np.where(pt > 0, pt, 1.0), 0.0))
    phi = np.arctan2(p.py, p.px)
    mass = np.sqrt(np.maximum(p.e**2 - p.px**2 - p.py**2 - p.pz**2, 0.0))
    return pt, eta, phi, mass


def _select_particles(p: ParticleBlock, keep: np.ndarray) -> ParticleBlock:
    ev = _event_of(p.offsets)
    counts = np.bincount(ev[keep], minlength=p.n_events)
    off = np.zeros(len(counts) + 1, np.int64)
    np.cumsum(counts, out=off[1:])
    return ParticleBlock(off, p.px[keep], p.py[keep], p.pz[keep], p.e[keep], p.pdg[keep], p.charge[keep])


# ------------------------------------------------------------------------------------------


def _reco_jets(pf: PFBlock, cfg: ChainConfig):
    px, py, pz, e = _pxpypze(pf.pt, pf.eta, pf.phi, pf.mass)
    j4 = cluster(pf.offsets, px, py, pz, e, cfg.jets.r_small, cfg.jets.cluster_pt_min)
    j8 = cluster(pf.offsets, px, py, pz, e, cfg.jets.r_large, cfg.jets.cluster_pt_min)
    jc = cfg.jets
    a4 = jet_areas(j4, jc.r_small, jc.area_cell, jc.area_rap_max, jc.area_pt_min)
    a8 = jet_areas(j8, jc.r_large, jc.area_cell, jc.area_rap_max, jc.area_pt_min)
    return j4, a4, j8, a8


def run_block(task: BlockTask) -> BlockOutput:
    """Run the full chain on one block (in a worker or in-process).

    ``timings`` are CPU seconds of this process per stage (``time.process_time``), which
    stay meaningful on a shared machine where wall-clock times are not.
    """
    cfg = task.config
    timings: dict[str, float] = {}
    t0 = time.process_time()
    gen = PythiaGenerator(cfg.generator, pythia_seed(task.seed, task.block)).generate(task.n_events)
    t1 = time.process_time()
    timings["pythia"] = t1 - t0

    rng = np.random.default_rng(np.random.SeedSequence([int(task.seed), int(task.block), 1]))
    pool = _load_pool(task.pool_path) if (cfg.pileup.mu > 0 and task.pool_path) else None
    merged, is_pu, n_pu = overlay_pileup(gen.particles, pool, cfg.pileup.mu, rng)
    t2 = time.process_time()
    timings["pileup"] = t2 - t1

    arrays = _det_arrays(cfg.detector)
    pf_all = simulate_detector(merged, is_pu, arrays, _stream_seed(task.seed, task.block, 2))
    rho = fixed_grid_rho(pf_all.offsets, pf_all.pt, pf_all.eta, pf_all.phi, pf_all.mass,
                         cfg.jets.rho_rap_max, cfg.jets.rho_grid_spacing)
    pf = pf_all.select(~pf_all.from_pu) if cfg.detector.chs else pf_all
    t3 = time.process_time()
    timings["detector"] = t3 - t2

    # gen jets: visible hard-event particles + flavour ghosts
    gp = gen.particles
    visible = ~np.isin(np.abs(gp.pdg), INVISIBLE_PDG)
    gvis = _select_particles(gp, visible)
    gh = gen.ghosts
    g_off, gx, gy, gz, ge = _concat_events(gvis.offsets, gvis.px, gvis.py, gvis.pz, gvis.e,
                                           gh.offsets, gh.px, gh.py, gh.pz, gh.e, cfg.jets.ghost_scale)
    n_real_gen = gvis.counts.astype(np.int64)
    gen4 = cluster(g_off, gx, gy, gz, ge, cfg.jets.r_small, cfg.jets.genjet_pt_min)
    gen8 = cluster(g_off, gx, gy, gz, ge, cfg.jets.r_large, cfg.jets.genjet_ak8_pt_min)
    ghost_pt = np.hypot(gh.px, gh.py)
    pf4, hf4 = ghost_flavours(gen4, n_real_gen, gh.offsets, gh.pdg, ghost_pt)
    pf8, hf8 = ghost_flavours(gen8, n_real_gen, gh.offsets, gh.pdg, ghost_pt)
    j4, a4, j8, a8 = _reco_jets(pf, cfg)
    t4 = time.process_time()
    timings["clustering"] = t4 - t3

    if task.derive:
        out = _derive_pairs(task, gen, gen4, gen8, j4, a4, j8, a8, rho)
        timings["output"] = time.process_time() - t4
        out.timings = timings
        return out

    jc = cfg.jets
    jec4 = _jec("ak4") if cfg.apply_jec else identity("ak4")
    jec8 = _jec("ak8") if cfg.apply_jec else identity("ak8")
    rho4 = np.repeat(rho, np.diff(j4.offsets))
    rho8 = np.repeat(rho, np.diff(j8.offsets))
    f4 = jec4.factor(j4.pt, j4.eta, a4, rho4)
    f8 = jec8.factor(j8.pt, j8.eta, a8, rho8)
    pt4, pt8 = j4.pt * f4, j8.pt * f8
    s4, off4 = _select(j4.offsets, (pt4 > jc.jet_pt_min) & (np.abs(j4.eta) < jc.eta_max), pt4)
    s8, off8 = _select(j8.offsets, (pt8 > jc.fatjet_pt_min) & (np.abs(j8.eta) < jc.eta_max), pt8)
    g4s, g4off = _select(gen4.offsets, np.abs(gen4.eta) < jc.eta_max, gen4.pt)
    g8s, g8off = _select(gen8.offsets, np.abs(gen8.eta) < jc.eta_max, gen8.pt)
    gen4_sel, gen8_sel = _sub(gen4, g4s, g4off), _sub(gen8, g8s, g8off)
    idx4 = match_closest(_sub(j4, s4, off4), gen4_sel, jc.match_dr_fraction * jc.r_small)
    idx8 = match_closest(_sub(j8, s8, off8), gen8_sel, jc.match_dr_fraction * jc.r_large)
    # flavour of reco jets: that of the matched gen jet (0 when unmatched)
    gfirst4 = np.repeat(g4off[:-1], np.diff(off4))
    m4 = idx4 >= 0
    jet_pflav = np.zeros(len(s4), np.int32)
    jet_hflav = np.zeros(len(s4), np.int32)
    jet_pflav[m4] = pf4[g4s[gfirst4[m4] + idx4[m4]]]
    jet_hflav[m4] = hf4[g4s[gfirst4[m4] + idx4[m4]]]

    # constituents of the stored jets
    keep_pf, n_pf, n_jp, jp_j, jp_c, n_fp, fp_j, fp_c = _constituent_tables(
        pf.offsets, off4, s4, j4.const_offsets, j4.const_index, off8, s8, j8.const_offsets, j8.const_index)
    keep_g, n_gc, n_gjc, gjc_j, gjc_c, n_gfc, gfc_j, gfc_c = _constituent_tables(
        gvis.offsets, g4off, g4s, gen4.const_offsets, gen4.const_index,
        g8off, g8s, gen8.const_offsets, gen8.const_index)
    gpt, geta, gphi, gmass = _particles_ptetaphim(gvis)
    nconst_g4 = _count_real(gen4.const_offsets, gen4.const_index, gen4.offsets, n_real_gen)
    nconst_g8 = _count_real(gen8.const_offsets, gen8.const_index, gen8.offsets, n_real_gen)
    # soft-drop masses of the stored AK8 jets (reco from CHS candidates, gen from particles)
    pcx, pcy, pcz, pce = _pxpypze(pf.pt, pf.eta, pf.phi, pf.mass)
    c_off, c_idx = gather_constituents(j8, s8, pf.offsets, np.diff(pf.offsets))
    msd8 = softdrop_mass(c_off, pcx[c_idx], pcy[c_idx], pcz[c_idx], pce[c_idx])
    c_off, c_idx = gather_constituents(gen8, g8s, gvis.offsets, n_real_gen)
    gmsd8 = softdrop_mass(c_off, gvis.px[c_idx], gvis.py[c_idx], gvis.pz[c_idx], gvis.e[c_idx])
    nconst_4 = np.diff(j4.const_offsets)
    nconst_8 = np.diff(j8.const_offsets)

    n = task.n_events
    weight = gen.weight
    scalars = {
        "run": np.ones(n, np.uint32),
        "luminosityBlock": np.full(n, task.block + 1, np.uint32),
        "event": np.arange(task.first_event + 1, task.first_event + n + 1, dtype=np.uint64),
        "genWeight": weight,
        "Generator_weight": weight,
        "Generator_binvar": gen.pthat,
        "Pileup_nPU": n_pu,
        "Pileup_nTrueInt": np.full(n, cfg.pileup.mu, np.float32),
        "fixedGridRhoFastjetAll": rho,
    }
    hp = gen.hard
    hpt, heta, hphi, hmass = _particles_ptetaphim(hp)
    collections = {
        "GenPart": (hp.counts, {"pt": hpt, "eta": heta, "phi": hphi, "mass": hmass, "pdgId": hp.pdg,
                                "status": gen.hard_status, "genPartIdxMother": gen.hard_mother,
                                "statusFlags": np.full(len(hpt), (1 << 7) | (1 << 8), np.int32)}),
        "GenJet": (np.diff(g4off), {"pt": gen4.pt[g4s], "eta": gen4.eta[g4s], "phi": gen4.phi[g4s],
                                    "mass": gen4.mass[g4s], "partonFlavour": pf4[g4s], "hadronFlavour": hf4[g4s],
                                    "nConstituents": nconst_g4[g4s]}),
        "GenJetAK8": (np.diff(g8off), {"pt": gen8.pt[g8s], "eta": gen8.eta[g8s], "phi": gen8.phi[g8s],
                                       "mass": gen8.mass[g8s], "partonFlavour": pf8[g8s],
                                       "hadronFlavour": hf8[g8s], "nConstituents": nconst_g8[g8s],
                                       "msoftdrop": gmsd8}),
        "Jet": (np.diff(off4), {"pt": pt4[s4], "eta": j4.eta[s4], "phi": j4.phi[s4], "mass": j4.mass[s4] * f4[s4],
                                "area": a4[s4], "rawFactor": 1.0 - 1.0 / f4[s4], "genJetIdx": idx4,
                                "nConstituents": nconst_4[s4], "partonFlavour": jet_pflav,
                                "hadronFlavour": jet_hflav}),
        "FatJet": (np.diff(off8), {"pt": pt8[s8], "eta": j8.eta[s8], "phi": j8.phi[s8],
                                   "mass": j8.mass[s8] * f8[s8], "area": a8[s8], "rawFactor": 1.0 - 1.0 / f8[s8],
                                   "genJetAK8Idx": idx8, "nConstituents": nconst_8[s8], "msoftdrop": msd8}),
        "GenCands": (n_gc, {"pt": gpt[keep_g], "eta": geta[keep_g], "phi": gphi[keep_g], "mass": gmass[keep_g],
                            "charge": gvis.charge[keep_g], "pdgId": gvis.pdg[keep_g]}),
        "PFCands": (n_pf, {"pt": pf.pt[keep_pf], "eta": pf.eta[keep_pf], "phi": pf.phi[keep_pf],
                           "mass": pf.mass[keep_pf], "charge": pf.charge[keep_pf], "pdgId": pf.pdg[keep_pf]}),
        "GenJetCands": (n_gjc, {"jetIdx": gjc_j, "pFCandsIdx": gjc_c}),
        "GenFatJetCands": (n_gfc, {"jetIdx": gfc_j, "pFCandsIdx": gfc_c}),
        "JetPFCands": (n_jp, {"jetIdx": jp_j, "pFCandsIdx": jp_c}),
        "FatJetPFCands": (n_fp, {"jetIdx": fp_j, "pFCandsIdx": fp_c}),
    }
    timings["output"] = time.process_time() - t4
    return BlockOutput(task.block, n, scalars, collections, timings, float(weight.sum()),
                       float((weight**2).sum()), gen.sigma_pb)


def _derive_pairs(task, gen, gen4, gen8, j4, a4, j8, a8, rho) -> BlockOutput:
    """Matched jets for the corrections: pileup run vs gen, and pileup run vs no-pileup run."""
    cfg = task.config
    arrays = _det_arrays(cfg.detector)
    nopu = simulate_detector(gen.particles, np.zeros(len(gen.particles.px), np.bool_), arrays,
                             _stream_seed(task.seed, task.block, 3))
    k4, _, k8, _ = _reco_jets(nopu, cfg)
    extra = {}
    for name, jets, area, gj, kj, r in (("ak4", j4, a4, gen4, k4, cfg.jets.r_small),
                                        ("ak8", j8, a8, gen8, k8, cfg.jets.r_large)):
        rho_j = np.repeat(rho, np.diff(jets.offsets))
        first_g = np.repeat(gj.offsets[:-1], np.diff(jets.offsets))
        first_k = np.repeat(kj.offsets[:-1], np.diff(jets.offsets))
        ig = match_closest(jets, gj, 0.5 * r)
        ik = match_closest(jets, kj, 0.5 * r)
        mg = ig >= 0
        mk = ik >= 0
        extra[name] = {
            "pu": {"pt_raw": jets.pt[mg], "eta": jets.eta[mg], "area": area[mg], "rho": rho_j[mg],
                   "pt_gen": gj.pt[first_g[mg] + ig[mg]]},
            "offset": {"delta": jets.pt[mk] - kj.pt[first_k[mk] + ik[mk]], "rho_area": (rho_j * area)[mk],
                       "eta": jets.eta[mk], "pt_nopu": kj.pt[first_k[mk] + ik[mk]]},
        }
    return BlockOutput(task.block, task.n_events, {}, {}, {}, 0.0, 0.0, gen.sigma_pb, extra)


def iter_blocks(tasks: list[BlockTask], workers: int) -> Iterator[BlockOutput]:
    """Run the tasks, in-process for one worker, else in a spawn pool; yields in task order."""
    if workers <= 1 or len(tasks) <= 1:
        for task in tasks:
            yield run_block(task)
        return
    ctx = mp.get_context("spawn")
    with ctx.Pool(processes=min(workers, len(tasks))) as pool:
        yield from pool.imap(run_block, tasks, chunksize=1)


def make_tasks(config: ChainConfig, n_events: int, seed: int, pool_path: str | None,
               derive: bool = False) -> list[BlockTask]:
    """The block tasks of a run."""
    return [BlockTask(config, int(seed), b, first, n, pool_path, derive)
            for b, first, n in block_plan(n_events, config.block_size)]


def derive_jec_tables(n_events: int, mu: float, seed: int, workers: int = 1, pthat_min: float = 10.0,
                      cache_dir: str | None = None,
                      progress: Callable[[int], None] | None = None,
                      save_pairs: str | None = None) -> dict[str, JetCorrection]:
    """Derive the AK4 and AK8 corrections on biased QCD with pileup ``mu`` (see jec.py)."""
    import os

    from hepfastsim.reference.config import GeneratorConfig, PileupConfig
    from hepfastsim.reference.pileup import load_or_build_pool

    config = ChainConfig(generator=GeneratorConfig(process="qcd", pthat_min=pthat_min, bias=True),
                         pileup=PileupConfig(mu=mu), apply_jec=False)
    pool_path = None
    if mu > 0:
        cache = cache_dir or os.environ.get("HEPFASTSIM_CACHE") or str(Path.home() / ".cache/hepfastsim")
        _, path = load_or_build_pool(Path(cache) / "pileup", config.pileup, config.generator)
        pool_path = str(path)
    tasks = make_tasks(config, n_events, seed, pool_path, derive=True)
    collected: dict[str, dict[str, dict[str, list]]] = {}
    done = 0
    for out in iter_blocks(tasks, workers):
        for name, parts in out.extra.items():
            for part, cols in parts.items():
                for col, values in cols.items():
                    collected.setdefault(name, {}).setdefault(part, {}).setdefault(col, []).append(values)
        done += out.n_events
        if progress is not None:
            progress(done)
        else:
            print(f"  {done}/{n_events} events", flush=True)
    prov = f"derived with python -m hepfastsim.reference.jec --events {n_events} --pileup {mu} --seed {seed} " \
           f"--pthat-min {pthat_min} (biased QCD, 13 TeV)"
    flat = {f"{name}/{part}/{col}": np.concatenate(v)
            for name, parts in collected.items() for part, cols in parts.items() for col, v in cols.items()}
    if save_pairs:
        np.savez_compressed(save_pairs, provenance=np.array(prov), **flat)
    return tables_from_pairs(flat, prov)


def tables_from_pairs(flat: dict[str, np.ndarray], provenance: str) -> dict[str, JetCorrection]:
    """Fit the tables from matched-jet arrays keyed ``"<ak4|ak8>/<pu|offset>/<column>"``."""
    tables = {}
    for name in ("ak4", "ak8"):
        parts: dict[str, dict[str, np.ndarray]] = {"pu": {}, "offset": {}}
        for key, values in flat.items():
            n, part, col = key.split("/")
            if n == name:
                parts[part][col] = values
        tables[name] = derive_from_pairs(name, parts["pu"], parts["offset"], provenance)
    return tables
