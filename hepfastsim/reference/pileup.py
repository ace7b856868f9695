"""In-time pileup: Poisson(mu) minimum-bias events overlaid from a cached pool.

The pool holds ``PileupConfig.pool_size`` Pythia ``SoftQCD:inelastic`` events generated
once per (pool seed, pool size, sqrt(s), tau0 cut) and cached as a compressed ``.npz``
in a cache directory chosen by the caller (the CLI decides it). The pool does not depend
on mu, so one pool serves every pileup scenario.

Each overlaid minimum-bias event is rotated by a uniform random azimuth and mirrored in
z with probability 1/2 (both exact symmetries of minimum-bias collisions), so a pool of a
few thousand events does not repeat visibly in samples of 10^5 events with mu = 30.
All pileup vertices are placed at the origin (no z spread); CHS uses the truth origin.

Units: GeV.
"""

from __future__ import annotations

import os
import secrets
from dataclasses import dataclass
from pathlib import Path

import numba as nb
import numpy as np

from hepfastsim.errors import HepfastsimError
from hepfastsim.reference.config import GeneratorConfig, PileupConfig
from hepfastsim.reference.pythia_events import ParticleBlock, PythiaGenerator, pythia_seed

__all__ = ["PileupPool", "pool_filename", "build_pool", "load_or_build_pool", "overlay_pileup"]

_POOL_FORMAT = 1


@dataclass
class PileupPool:
    """Minimum-bias events, flat: ``offsets`` (n_events + 1), ``px, py, pz, e`` (GeV, float32),
    ``pdg`` (int32), ``charge`` (int8)."""

    offsets: np.ndarray
    px: np.ndarray
    py: np.ndarray
    pz: np.ndarray
    e: np.ndarray
    pdg: np.ndarray
    charge: np.ndarray

    @property
    def n_events(self) -> int:
        return len(self.offsets) - 1


def pool_filename(config: PileupConfig, generator: GeneratorConfig) -> str:
    """Cache file name; it encodes everything the pool depends on."""
    return (
        f"minbias_v{_POOL_FORMAT}_ecm{generator.ecm:.0f}_tau{generator.tau0_max_mm:g}"
        f"_seed{config.pool_seed}_n{config.pool_size}.npz"
    )


def build_pool(config: PileupConfig, generator: GeneratorConfig, progress=None) -> PileupPool:
    """Generate the minimum-bias pool with Pythia (SoftQCD:inelastic, the CMS MinBias choice).

    ``progress``: optional callable(n_done) for a progress display.
    """
    if config.pool_size < 1:
        raise HepfastsimError(f"pileup pool size must be positive, got {config.pool_size}")
    settings = [
        f"Beams:eCM = {generator.ecm}",
        "Print:quiet = on",
        "Next:numberCount = 0",
        "ParticleDecays:limitTau0 = on",
        f"ParticleDecays:tau0Max = {generator.tau0_max_mm}",
        "SoftQCD:inelastic = on",
    ]
    gen = PythiaGenerator(None, pythia_seed(config.pool_seed, 0, stream=7), settings=settings)
    blocks: list[ParticleBlock] = []
    done = 0
    while done < config.pool_size:
        n = min(500, config.pool_size - done)
        blocks.append(gen.generate(n).particles)
        done += n
        if progress is not None:
            progress(done)
    counts = np.concatenate([b.counts for b in blocks])
    offsets = np.zeros(len(counts) + 1, dtype=np.int64)
    np.cumsum(counts, out=offsets[1:])

    def cat(name: str, dtype) -> np.ndarray:
        return np.concatenate([getattr(b, name) for b in blocks]).astype(dtype)

    return PileupPool(
        offsets,
        cat("px", np.float32),
        cat("py", np.float32),
        cat("pz", np.float32),
        cat("e", np.float32),
        cat("pdg", np.int32),
        cat("charge", np.int8),
    )


def load_or_build_pool(
    cache_dir: str | os.PathLike[str], config: PileupConfig, generator: GeneratorConfig, progress=None
) -> tuple[PileupPool, Path]:
    """Load the pool from ``cache_dir``, generating and caching it first if it is missing."""
    directory = Path(cache_dir).expanduser()
    path = directory / pool_filename(config, generator)
    if path.exists():
        try:
            with np.load(path) as data:
                pool = PileupPool(*(data[k] for k in ("offsets", "px", "py", "pz", "e", "pdg", "charge")))
            if pool.n_events != config.pool_size:
                raise HepfastsimError(f"expected {config.pool_size} events, got {pool.n_events}")
            return pool, path
        except (OSError, KeyError, ValueError, HepfastsimError) as err:
            raise HepfastsimError(f"pileup pool {str(path)!r} is unreadable ({err}); delete it to rebuild") from err
    try:
        directory.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise HepfastsimError(f"cannot create the pileup cache directory {str(directory)!r}: {err}") from err
    pool = build_pool(config, generator, progress)
    tmp = path.with_name(f".{path.name}.{os.getpid()}-{secrets.token_hex(4)}.partial.npz")
    try:
        np.savez_compressed(
            tmp, offsets=pool.offsets, px=pool.px, py=pool.py, pz=pool.pz, e=pool.e, pdg=pool.pdg, charge=pool.charge
        )
        os.replace(tmp, path)  # atomic: concurrent builders never see a half-written pool
    except OSError as err:
        raise HepfastsimError(f"cannot write the pileup pool {str(path)!r}: {err}") from err
    finally:
        tmp.unlink(missing_ok=True)
    return pool, path


@nb.njit(cache=True)
def _overlay_kernel(h_off, h_px, h_py, h_pz, h_e, h_pdg, h_q, p_off, p_px, p_py, p_pz, p_e, p_pdg, p_q,
                    n_pu, chosen, cos_r, sin_r, flip):
    n_ev = h_off.shape[0] - 1
    total = h_off[-1]
    for k in range(chosen.shape[0]):
        total += p_off[chosen[k] + 1] - p_off[chosen[k]]
    off = np.zeros(n_ev + 1, np.int64)
    px = np.empty(total)
    py = np.empty(total)
    pz = np.empty(total)
    e = np.empty(total)
    pdg = np.empty(total, np.int32)
    q = np.empty(total, np.int8)
    is_pu = np.zeros(total, np.bool_)
    out = 0
    k = 0
    for ev in range(n_ev):
        for i in range(h_off[ev], h_off[ev + 1]):
            px[out] = h_px[i]
            py[out] = h_py[i]
            pz[out] = h_pz[i]
            e[out] = h_e[i]
            pdg[out] = h_pdg[i]
            q[out] = h_q[i]
            out += 1
        for _ in range(n_pu[ev]):
            c, s, f = cos_r[k], sin_r[k], flip[k]
            src = chosen[k]
            for i in range(p_off[src], p_off[src + 1]):
                x = np.float64(p_px[i])
                y = np.float64(p_py[i])
                px[out] = c * x - s * y
                py[out] = s * x + c * y
                pz[out] = -p_pz[i] if f else p_pz[i]
                e[out] = p_e[i]
                pdg[out] = p_pdg[i]
                q[out] = p_q[i]
                is_pu[out] = True
                out += 1
            k += 1
        off[ev + 1] = out
    return off, px, py, pz, e, pdg, q, is_pu


def overlay_pileup(
    hard: ParticleBlock, pool: PileupPool | None, mu: float, rng: np.random.Generator
) -> tuple[ParticleBlock, np.ndarray, np.ndarray]:
    """Add Poisson(``mu``) pool events to each hard event.

    Returns the merged particles, a boolean ``is_pileup`` per particle and ``n_pu`` per
    event (int32, NanoAOD ``Pileup_nPU``). ``rng`` draws the number of interactions, the
    pool entries, the rotations and the mirrors, so the overlay is reproducible.
    """
    n_ev = hard.n_events
    if mu <= 0.0 or pool is None:
        if mu > 0.0:
            raise HepfastsimError(f"pileup mu = {mu} needs a minimum-bias pool, got none")
        return hard, np.zeros(len(hard.px), dtype=np.bool_), np.zeros(n_ev, dtype=np.int32)
    n_pu = rng.poisson(mu, size=n_ev).astype(np.int64)
    n_tot = int(n_pu.sum())
    chosen = rng.integers(0, pool.n_events, size=n_tot).astype(np.int64)
    angle = rng.uniform(-np.pi, np.pi, size=n_tot)
    flip = rng.random(n_tot) < 0.5
    off, px, py, pz, e, pdg, q, is_pu = _overlay_kernel(
        hard.offsets, hard.px, hard.py, hard.pz, hard.e, hard.pdg, hard.charge,
        pool.offsets, pool.px, pool.py, pool.pz, pool.e, pool.pdg, pool.charge,
        n_pu, chosen, np.cos(angle), np.sin(angle), flip,
    )
    return ParticleBlock(off, px, py, pz, e, pdg, q), is_pu, n_pu.astype(np.int32)
