"""Benchmark of ``hepfastsim convert``: events/s, ratio to a plain uproot copy, peak memory.

Builds NanoAOD-like files by replicating the real CMS sample ``nano_dy.root`` of the coffea
sdist (event-level branches, GenJet_* and Jet_*), of N and 10 N events, then measures, each
in a fresh process so that peak memory (ru_maxrss) is per task:

* a plain uproot copy of the file (iterate + mktree/extend, same compression),
* ``convert`` with the parametric model on both files.

Usage: python benchmarks/convert.py [--events 100000] [--sample PATH/nano_dy.root]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import uproot

HERE = Path(__file__).resolve().parent
OUTPUT = HERE / "output"
KEEP_PREFIXES = ("GenJet_", "Jet_", "Pileup_", "fixedGridRho", "genWeight", "run", "luminosityBlock", "event")


def find_sample(explicit: str | None) -> Path:
    if explicit:
        return Path(explicit)
    sys.path.insert(0, str(HERE.parent / "tests"))
    from coffea_samples import fetch_samples  # the test suite's pip-fetched cache of the coffea sdist

    return fetch_samples() / "nano_dy.root"


def replicate(sample: Path, n_events: int, dest: Path) -> Path:
    """Write ``n_events`` events made of copies of ``sample``'s events (selected branches)."""
    if dest.exists() and uproot.open(dest)["Events"].num_entries == n_events:
        return dest
    tree = uproot.open(sample)["Events"]
    names = [b for b in tree.keys() if b.startswith(KEEP_PREFIXES)]
    block = tree.arrays(names, library="ak", how=dict)
    n = len(block[names[0]])
    sys.path.insert(0, str(HERE.parent))
    from hepfastsim.io.nanoaod import open_tree
    from hepfastsim.io.writer import AtomicRootWriter

    counters = open_tree(sample).counters
    names = [b for b in names if b not in set(counters.values())]
    reps = 20000 // n + 1
    big = {k: (block[k][np.tile(np.arange(n), reps)]) for k in names}
    per_write = len(big[names[0]])
    with AtomicRootWriter(dest, overwrite=True) as out:
        written = 0
        while written < n_events:
            take = min(per_write, n_events - written)
            out.extend("Events", {k: v[:take] for k, v in big.items()}, counters=counters)
            written += take
    return dest


def child(code: str) -> dict[str, float]:
    """Run ``code`` in a fresh interpreter; it prints a JSON dict; add its peak RSS (MiB)."""
    wrapper = code + "\nimport resource, json; print(json.dumps({**RESULT, 'peak_mib': resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))"
    out = subprocess.run([sys.executable, "-c", wrapper], capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


PLAIN_COPY = """
import time, uproot
t0 = time.perf_counter()
src = uproot.open({src!r})["Events"]
with uproot.recreate({dst!r}, compression=uproot.ZLIB(1)) as out:
    tree = None
    for chunk in src.iterate(step_size="100 MB", library="ak", how=dict):
        if tree is None:
            tree = out.mktree("Events", chunk)
        else:
            tree.extend(chunk)
RESULT = {{"seconds": time.perf_counter() - t0, "events": src.num_entries}}
"""

CONVERT = """
import time
from hepfastsim.convert import convert, ConvertConfig
t0 = time.perf_counter()
s = convert({src!r}, {dst!r}, ConvertConfig(overwrite=True))
RESULT = {{"seconds": time.perf_counter() - t0, "events": s.events, "reco_jets": s.reco_jets}}
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=100_000)
    parser.add_argument("--sample", default=None, help="path to nano_dy.root")
    args = parser.parse_args()
    OUTPUT.mkdir(exist_ok=True)
    sample = find_sample(args.sample)
    small = replicate(sample, args.events, OUTPUT / f"nano_like_{args.events}.root")
    large = replicate(sample, 10 * args.events, OUTPUT / f"nano_like_{10 * args.events}.root")
    print(f"input: {small.name} ({small.stat().st_size / 2**20:.0f} MiB), {large.name} ({large.stat().st_size / 2**20:.0f} MiB)")

    rows = []
    for label, template, src in (
        ("plain uproot copy", PLAIN_COPY, small),
        ("convert (parametric)", CONVERT, small),
        ("plain uproot copy", PLAIN_COPY, large),
        ("convert (parametric)", CONVERT, large),
    ):
        res = child(template.format(src=str(src), dst=str(OUTPUT / "bench_out.root")))
        rows.append((label, src, res))
        print(f"{label:22s} {res['events']:>9,} events  {res['seconds']:7.2f} s  {res['events'] / res['seconds']:>10,.0f} events/s  peak {res['peak_mib']:6.0f} MiB")
    (OUTPUT / "bench_out.root").unlink(missing_ok=True)
    for i in (0, 2):
        copy, conv = rows[i][2], rows[i + 1][2]
        print(f"{rows[i][2]['events']:,} events: convert / plain copy time ratio = {conv['seconds'] / copy['seconds']:.2f}")
    print(f"peak memory of convert, 10x larger file / smaller file = {rows[3][2]['peak_mib'] / rows[1][2]['peak_mib']:.2f}")


if __name__ == "__main__":
    main()
