"""``hepfastsim generate-images``: 25 x 25 W or QCD jet images from the LAGAN (seed 004).

Examples::

    hepfastsim generate-images --class w --n 100000 --out w_images.npz
    hepfastsim generate-images --class qcd --n 100000 --out qcd_images.root --seed 7

Images are pT per pixel in GeV on the LAGAN grid (0.1 x 0.1 in eta x phi, leading subjet at
the centre). ``.npz`` files hold ``images (N, 25, 25)``, ``label`` and ``metadata`` (JSON);
``.root`` files hold a TTree ``JetImages`` with ``image`` (float32[25][25]) and ``label``.
The same ``--seed`` gives the same images; the first N images of a larger run are the N
images of a smaller one.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

from hepfastsim.errors import HepfastsimError, OutputError

__all__ = ["add_parser", "run", "write_images"]

CLASS_LABELS = {"qcd": 0, "w": 1}


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {value}")
    return value


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        "generate-images",
        help="generate 25x25 W or QCD jet images with the LAGAN (arXiv:1701.05927)",
        description="Generate jet images (pT per pixel in GeV, 250 < pT < 300 GeV jets) with a trained LAGAN "
        "and write them to FILE (.npz or .root).",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument("--class", dest="image_class", required=True, choices=sorted(CLASS_LABELS),
                   help="jet class: boosted W from W' -> WZ, or QCD")
    p.add_argument("--n", type=_positive_int, required=True, help="number of images")
    p.add_argument("--out", required=True, metavar="FILE", help="output file, .npz or .root")
    p.add_argument("--model", default=None, metavar="MODEL", help="MODEL(.safetensors/.json) (default: shipped LAGAN)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--precision", choices=("float32", "bfloat16"), default="float32",
                   help="GEMM precision of the fused generator (bfloat16: faster, pixels change at the percent level)")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    p.add_argument("--overwrite", action="store_true", help="replace FILE if it exists")
    p.add_argument("--quiet", action="store_true", help="no progress bar or summary")
    p.set_defaults(func=run)
    return p


def write_images(path: str | Path, images: np.ndarray, label: int, metadata: dict) -> None:
    """Write images ``(N, 25, 25)`` to ``.npz`` or ``.root`` (TTree ``JetImages``)."""
    path = Path(path)
    suffix = path.suffix.lower()
    try:
        if suffix == ".npz":
            np.savez_compressed(path, images=images, label=np.full(len(images), label, np.int8),
                                metadata=np.array(json.dumps(metadata)))
        elif suffix == ".root":
            import uproot

            with uproot.recreate(path) as f:
                f.mktree("JetImages", {"image": (np.float32, (25, 25)), "label": np.int32},
                         title=json.dumps(metadata))
                f["JetImages"].extend({"image": images.astype(np.float32), "label": np.full(len(images), label, np.int32)})
        else:
            raise OutputError(str(path), f"expected a .npz or .root file name, got suffix {suffix!r}")
    except OSError as err:
        raise OutputError(str(path), str(err)) from err


def run(args: argparse.Namespace) -> int:
    import torch
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from hepfastsim.models.lagan import DEFAULT_MODEL, ImageGenerator

    out = Path(args.out)
    if out.suffix.lower() not in (".npz", ".root"):
        raise OutputError(str(out), f"expected a .npz or .root file name, got suffix {out.suffix!r}")
    if out.exists() and not args.overwrite:
        raise OutputError(str(out), "it exists (pass --overwrite to replace it)")
    if not out.parent.exists():
        raise OutputError(str(out), f"directory {str(out.parent)!r} does not exist")
    if args.threads is not None:
        if args.threads < 1:
            raise HepfastsimError(f"expected --threads >= 1, got {args.threads}")
        torch.set_num_threads(args.threads)
    model = ImageGenerator.load(args.model, precision=args.precision)
    label = CLASS_LABELS[args.image_class]
    console = Console(stderr=True, quiet=args.quiet)
    t0 = time.perf_counter()
    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                  console=console, disable=args.quiet) as progress:
        task = progress.add_task(f"{args.image_class} images", total=args.n)
        images = model.sample(label, args.n, seed=args.seed, on_block=lambda m: progress.advance(task, m))
    dt = time.perf_counter() - t0
    meta = {"class": args.image_class, "label": label, "n": args.n, "seed": args.seed,
            "model": str(args.model or DEFAULT_MODEL), "precision": args.precision, "units": "GeV per pixel",
            "grid": "25x25, 0.1 x 0.1 in eta x phi, leading subjet centred"}
    write_images(out, images, label, meta)
    console.print(f"wrote {args.n} {args.image_class} images to {out} ({args.n / max(dt, 1e-9):.0f} images/s)")
    return 0
