"""Produce one NanoAOD-like file with the reference chain (library side of ``hepfastsim generate``).

Blocks run in worker processes (or in-process for one worker) and are written in block
order through :class:`hepfastsim.io.writer.AtomicRootWriter`, so the file is the same
for any worker count and appears only when complete.
"""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hepfastsim.errors import HepfastsimError
from hepfastsim.io.writer import AtomicRootWriter, check_destination
from hepfastsim.reference.chain import STAGES, iter_blocks, make_tasks, run_block
from hepfastsim.reference.config import ChainConfig
from hepfastsim.reference.nanoaod_output import runs_branches, to_writer_branches
from hepfastsim.reference.pileup import load_or_build_pool

__all__ = ["GenerateSummary", "generate", "default_pool_dir"]


def default_pool_dir() -> Path:
    """``$HEPFASTSIM_CACHE/pileup`` if the variable is set, else ``~/.cache/hepfastsim/pileup``."""
    root = os.environ.get("HEPFASTSIM_CACHE")
    return (Path(root).expanduser() if root else Path.home() / ".cache" / "hepfastsim") / "pileup"


@dataclass
class GenerateSummary:
    """What a run did: events, weights, wall time, and CPU seconds per stage (summed over workers)."""

    n_events: int
    sumw: float
    xsec_pb: float
    wall_s: float
    stage_s: dict[str, float] = field(default_factory=dict)
    pool_path: str | None = None
    pool_s: float = 0.0


def _blocks(tasks: list, workers: int, executor: str | None, scheduler: Any) -> Iterator[Any]:
    """Block outputs in block order, from the local pool or through an executor."""
    if executor is None and scheduler is None:
        yield from iter_blocks(tasks, workers)
        return
    from hepfastsim.distributed import map_tasks

    chosen = executor or "dask"
    n_workers = workers if chosen != "iterative" else None
    for index, out in map_tasks(run_block, tasks, executor=chosen, scheduler=scheduler, workers=n_workers, ordered=True):
        if isinstance(out, BaseException):
            raise HepfastsimError(f"event block {index} failed: {out}") from out
        yield out


def generate(
    config: ChainConfig,
    n_events: int,
    out_path: str | os.PathLike[str],
    *,
    seed: int = 1,
    workers: int = 1,
    pool_dir: str | os.PathLike[str] | None = None,
    overwrite: bool = False,
    progress: Callable[[int], None] | None = None,
    pool_progress: Callable[[int], None] | None = None,
    executor: str | None = None,
    scheduler: Any = None,
) -> GenerateSummary:
    """Generate ``n_events`` events of ``config`` into ``out_path``.

    ``seed`` (>= 0) fixes the file bit for bit whatever ``workers``; ``pool_dir`` holds
    the cached minimum-bias pool (built on first use when ``config.pileup.mu > 0``);
    ``progress(n_done)`` is called after each block. ``executor`` (``"iterative"``,
    ``"futures"`` or ``"dask"``, with ``scheduler`` an address or client for dask) maps the
    event blocks through :func:`hepfastsim.distributed.map_tasks`; the default (None) uses a
    local process pool of ``workers``. The file is identical whichever is used. On a real
    cluster the pileup pool directory must be readable by the workers.
    """
    if n_events < 1:
        raise HepfastsimError(f"--events must be at least 1, got {n_events}")
    if seed < 0:
        raise HepfastsimError(f"--seed must be >= 0, got {seed}")
    if workers < 1:
        raise HepfastsimError(f"--workers must be at least 1, got {workers}")
    check_destination(out_path, overwrite=overwrite)
    t_start = time.perf_counter()
    pool_path = None
    pool_s = 0.0
    if config.pileup.mu > 0:
        t0 = time.perf_counter()
        _, path = load_or_build_pool(pool_dir or default_pool_dir(), config.pileup, config.generator, pool_progress)
        pool_path = str(path)
        pool_s = time.perf_counter() - t0
    tasks = make_tasks(config, n_events, seed, pool_path)
    stage_s = dict.fromkeys(STAGES, 0.0)
    sumw = sumw2 = xsec_num = 0.0
    done = 0
    # the file is a pure function of (config, events, seed): fixed ROOT UUID and timestamps
    file_uuid = uuid.uuid5(uuid.NAMESPACE_URL, f"hepfastsim-generate/{seed}/{n_events}/{config!r}")
    with AtomicRootWriter(out_path, overwrite=overwrite, reproducible_uuid=file_uuid) as writer:
        for out in _blocks(tasks, workers, executor, scheduler):
            t0 = time.process_time()
            writer.extend("Events", to_writer_branches(out))
            stage_s["writing"] = stage_s.get("writing", 0.0) + time.process_time() - t0
            for k, v in out.timings.items():
                stage_s[k] += v
            sumw += out.sumw
            sumw2 += out.sumw2
            xsec_num += out.sigma_pb * out.n_events
            done += out.n_events
            if progress is not None:
                progress(done)
        writer.extend("Runs", runs_branches(done, sumw, sumw2, xsec_num / max(done, 1)))
    return GenerateSummary(done, sumw, xsec_num / max(done, 1), time.perf_counter() - t_start, stage_s,
                           pool_path, pool_s)
