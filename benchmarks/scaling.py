"""Scaling of ``convert_many`` on dask: events/s with 1 and 2 workers, the ratio, per-task overhead.

Builds ``--files`` NanoAOD-like inputs of ``--events`` events each by replicating the real CMS
sample ``nano_dy.root`` (as ``benchmarks/convert.py`` does), then measures on this machine:

* the iterative executor in this process (the floor every executor is compared with);
* ``--executor dask`` on a ``LocalCluster`` of 1 and of 2 single-threaded worker processes
  (cluster start and worker warm-up not timed: numba caches, imports);
* per-task overhead through the scheduler: the round trip of one no-op task, the throughput
  of many no-op tasks, and the fixed cost of converting a 10-event file (open, copy the
  small trees, write, rename), which is the per-file overhead a campaign pays;
* CPU seconds the workers spent (ru_utime + ru_stime, read on every worker before and
  after): events per worker-CPU-second does not depend on what else runs on the machine,
  so it is the figure to scale a campaign with; wall-clock ratios on a shared machine are
  only as good as the cores that were free (the load average is printed);
* peak memory of a worker (ru_maxrss) after converting the benchmark files, and of one
  fresh worker after one task on a file and on a 10x larger file with a fixed
  ``--memory-chunk-size``, to show the chunk size, not the file size, bounds it.

Each timed run is repeated ``--repeat`` times and the fastest kept.

Outputs are written with ``reproducible=True`` and checked byte for byte against the
iterative run. Usage: python benchmarks/scaling.py [--files 4] [--events 50000]
"""

from __future__ import annotations

import argparse
import hashlib
import logging
import os
import resource
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
sys.path.insert(0, str(HERE))

from convert import OUTPUT, find_sample, replicate  # noqa: E402  (benchmarks/convert.py)

from hepfastsim.convert import ConvertConfig, convert  # noqa: E402
from hepfastsim.distributed import convert_many  # noqa: E402


def _noop(x: int) -> int:
    return x


def _peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _warm(tiny: str, tmp: str) -> float:
    """Run on every worker before timing: imports, numba cache loads, first conversion."""
    out = Path(tmp) / f"warm-{os.getpid()}.root"
    convert(tiny, out, ConvertConfig(overwrite=True))
    out.unlink()
    return _peak_rss_mib()


def _digests(directory: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(directory.glob("*.root"))}


def run_dask(n_workers: int, inputs: list[str], out: Path, config: ConvertConfig, tiny: str, tmp: str, repeat: int) -> dict[str, float]:
    from distributed import Client, LocalCluster

    with LocalCluster(n_workers=n_workers, threads_per_worker=1, processes=True, dashboard_address=None, silence_logs=logging.CRITICAL) as cluster, Client(cluster) as client:
        client.run(_warm, tiny, tmp)
        # no-op round trip (submit -> result), sequential
        lat = []
        for i in range(50):
            t0 = time.perf_counter()
            client.submit(_noop, i, pure=False).result()
            lat.append(time.perf_counter() - t0)
        # no-op throughput
        t0 = time.perf_counter()
        client.gather(client.map(_noop, range(2000), pure=False))
        noop_rate = 2000 / (time.perf_counter() - t0)
        # fixed cost of one tiny file through convert_many (per-file overhead), sequential
        tiny_times = []
        for _ in range(5):
            t0 = time.perf_counter()
            convert_many({tiny: Path(tmp) / "tiny_out.root"}, None, ConvertConfig(overwrite=True), executor="dask", scheduler=client)
            tiny_times.append(time.perf_counter() - t0)
        best = (float("inf"), 0.0)
        for _ in range(repeat):
            shutil.rmtree(out, ignore_errors=True)
            out.mkdir()
            cpu0 = sum(client.run(_cpu_seconds).values())
            t0 = time.perf_counter()
            summaries = convert_many(inputs, out, config, executor="dask", scheduler=client)
            seconds = time.perf_counter() - t0
            cpu = sum(client.run(_cpu_seconds).values()) - cpu0
            best = min(best, (seconds, cpu))
        peaks = client.run(_peak_rss_mib)
    events = sum(s.events for s in summaries)
    seconds, cpu = best
    return {
        "events": events,
        "seconds": seconds,
        "rate": events / seconds,
        "cpu_s": cpu,
        "events_per_cpu_s": events / cpu,
        "noop_latency_ms": 1e3 * statistics.median(lat),
        "noop_tasks_per_s": noop_rate,
        "tiny_file_s": statistics.median(tiny_times),
        "peak_worker_mib": max(peaks.values()),
    }


def peak_of_one_task(path: str, tmp: str, config: ConvertConfig) -> float:
    """Peak RSS (MiB) of a fresh worker after converting ``path`` in one task."""
    from distributed import Client, LocalCluster

    with LocalCluster(n_workers=1, threads_per_worker=1, processes=True, dashboard_address=None, silence_logs=logging.CRITICAL) as cluster, Client(cluster) as client:
        convert_many({path: Path(tmp) / "large_out.root"}, None, config, executor="dask", scheduler=client)
        (Path(tmp) / "large_out.root").unlink()
        return max(client.run(_peak_rss_mib).values())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--files", type=int, default=4)
    parser.add_argument("--events", type=int, default=50_000, help="events per file")
    parser.add_argument("--chunk-size", default="100 MB", help="as --chunk-size of hepfastsim convert")
    parser.add_argument("--sample", default=None, help="path to nano_dy.root")
    parser.add_argument("--repeat", type=int, default=3, help="timed runs per configuration; the fastest is kept")
    parser.add_argument("--memory-chunk-size", type=int, default=10_000, help="events per chunk of the memory check")
    parser.add_argument("--no-memory", action="store_true", help="skip the 10x-larger-file memory check")
    args = parser.parse_args()
    chunk = int(args.chunk_size) if args.chunk_size.isdigit() else args.chunk_size
    config = ConvertConfig(reproducible=True, chunk_size=chunk, overwrite=True)

    OUTPUT.mkdir(exist_ok=True)
    sample = find_sample(args.sample)
    inputs = []
    for i in range(args.files):
        path = OUTPUT / f"scaling_{args.events}_{i}.root"
        if not path.exists():
            replicate(sample, args.events, path)
        inputs.append(str(path))
    print(f"inputs: {args.files} files x {args.events:,} events ({sum(Path(p).stat().st_size for p in inputs) / 2**20:.0f} MiB); "
          f"{os.cpu_count()} cores on this machine; chunk size {args.chunk_size}; "
          f"load average {os.getloadavg()[0]:.1f} at start")

    with tempfile.TemporaryDirectory(dir=OUTPUT) as tmp:
        tiny = replicate(sample, 10, Path(tmp) / "tiny.root")
        _warm(str(tiny), tmp)
        ref = Path(tmp) / "iterative"
        ref.mkdir()
        it_s, it_cpu = float("inf"), 0.0
        for _ in range(args.repeat):
            cpu0, t0 = _cpu_seconds(), time.perf_counter()
            summaries = convert_many(inputs, ref, config, executor="iterative")
            it_s, it_cpu = min((it_s, it_cpu), (time.perf_counter() - t0, _cpu_seconds() - cpu0))
        events = sum(s.events for s in summaries)
        print(f"iterative (this process)   {events:>9,} events {it_s:7.2f} s {events / it_s:>10,.0f} events/s  "
              f"{events / it_cpu:>8,.0f} events per CPU-s")

        results = {}
        for n in (1, 2):
            out = Path(tmp) / f"dask{n}"
            results[n] = r = run_dask(n, inputs, out, config, str(tiny), tmp, args.repeat)
            same = _digests(out) == _digests(ref)
            print(f"dask LocalCluster {n} worker{'s' if n > 1 else ' '} {r['events']:>9,} events {r['seconds']:7.2f} s "
                  f"{r['rate']:>10,.0f} events/s  {r['events_per_cpu_s']:>8,.0f} events per worker-CPU-s  "
                  f"peak worker RSS {r['peak_worker_mib']:.0f} MiB  outputs byte-identical to iterative: {same}")
        print(f"ratio 2 workers / 1 worker: {results[2]['rate'] / results[1]['rate']:.2f} (ideal 2.00 on 2 free cores)")
        print(f"ratio 1 dask worker / iterative: {results[1]['rate'] / (events / it_s):.2f}; "
              f"busy cores during the 2-worker run (worker CPU-s / wall s): {results[2]['cpu_s'] / results[2]['seconds']:.2f}; "
              f"load average now {os.getloadavg()[0]:.1f}")
        r = results[2]
        print(f"per-task overhead (2 workers): no-op round trip {r['noop_latency_ms']:.1f} ms (median of 50); "
              f"{r['noop_tasks_per_s']:,.0f} no-op tasks/s (2000 mapped); "
              f"one 10-event file through convert_many {1e3 * r['tiny_file_s']:.0f} ms (median of 5)")

        if not args.no_memory:
            large = OUTPUT / f"scaling_{10 * args.events}.root"
            if not large.exists():
                replicate(sample, 10 * args.events, large)
            mem_config = ConvertConfig(chunk_size=args.memory_chunk_size, overwrite=True)
            baseline = peak_of_one_task(str(tiny), tmp, mem_config)
            small_peak = peak_of_one_task(inputs[0], tmp, mem_config)
            large_peak = peak_of_one_task(str(large), tmp, mem_config)
            one_chunk = peak_of_one_task(str(large), tmp, ConvertConfig(chunk_size=10 * args.events, overwrite=True))
            print(f"peak RSS of one fresh worker, chunks of {args.memory_chunk_size:,} events: 10-event file "
                  f"{baseline:.0f} MiB (imports), {args.events:,}-event file {small_peak:.0f} MiB, "
                  f"{10 * args.events:,}-event file {large_peak:.0f} MiB (ratio large/small {large_peak / small_peak:.2f}); "
                  f"for contrast, the {10 * args.events:,}-event file in one chunk: {one_chunk:.0f} MiB")


if __name__ == "__main__":
    main()
