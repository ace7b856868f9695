"""``hepfastsim train jet-cnn``: CNN W / QCD tagger on 25 x 25 jet images (seed 002), and the
seed-004 test (train on LAGAN images, evaluate on reference images).

Examples::

    hepfastsim train jet-cnn --w-data w_*.root --qcd-data qcd_*.root --w-val w_val.root --qcd-val qcd_val.root \\
        --w-test w_test.root --qcd-test qcd_test.root --out jet_cnn
    hepfastsim train jet-cnn --generator lagan --n-generated 20000 --w-test w_test.root --qcd-test qcd_test.root \\
        --out jet_cnn_on_gan

The test files give the ROC AUC of the CNN and of the mass-window and tau21 cuts on the
same reference images, stored in MODEL.json.
"""

from __future__ import annotations

import argparse
import shlex
import time

import numpy as np
from rich.console import Console

from hepfastsim.cli.train import prepare_output
from hepfastsim.errors import HepfastsimError

__all__ = ["add_kind", "run_jet_cnn", "tagger_aucs"]

W_MASS = 80.4  # GeV, centre of the mass-window discriminant


def add_kind(kinds: argparse._SubParsersAction) -> None:
    k = kinds.add_parser(
        "jet-cnn",
        help="CNN W / QCD tagger on 25x25 jet images (seed 002); train on reference or LAGAN images",
        description="Train the jet-image CNN on reference images (--w-data/--qcd-data, with --w-val/--qcd-val to "
        "pick the epoch) or on images from a LAGAN (--generator, validation on other generated images). "
        "--w-test/--qcd-test: reference images for the ROC AUCs of the CNN and of mass / tau21 cuts. "
        "FILE may be FILE@START:STOP.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    k.add_argument("--w-data", nargs="+", metavar="FILE", help="W' -> WZ training files")
    k.add_argument("--qcd-data", nargs="+", metavar="FILE", help="QCD training files")
    k.add_argument("--w-val", nargs="+", metavar="FILE", help="W validation files")
    k.add_argument("--qcd-val", nargs="+", metavar="FILE", help="QCD validation files")
    k.add_argument("--generator", default=None, metavar="MODEL", help="train on images of this LAGAN instead")
    k.add_argument("--n-generated", type=int, default=20000, help="generated training images per class")
    k.add_argument("--w-test", nargs="+", required=True, metavar="FILE", help="W test files (reference)")
    k.add_argument("--qcd-test", nargs="+", required=True, metavar="FILE", help="QCD test files (reference)")
    k.add_argument("--out", required=True, metavar="MODEL", help="output path (MODEL.safetensors + MODEL.json)")
    k.add_argument("--max-per-class", type=int, default=15000, help="at most this many training images per class")
    k.add_argument("--epochs", type=int, default=8)
    k.add_argument("--filters", type=int, default=16)
    k.add_argument("--max-minutes", type=float, default=15.0)
    k.add_argument("--cache-dir", default=None, help="keep the images of each input file here (npz)")
    k.add_argument("--seed", type=int, default=0)
    k.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    k.add_argument("--quiet", action="store_true")
    k.add_argument("--overwrite", action="store_true")
    k.set_defaults(func=run_jet_cnn)


def tagger_aucs(score: np.ndarray, mass: np.ndarray, tau21: np.ndarray, is_w: np.ndarray) -> dict[str, list[float]]:
    """ROC AUC (and Hanley-McNeil error) of the CNN score, a mass window around m_W
    (discriminant ``-|m - 80.4 GeV|``) and a tau21 cut (``-tau21``) on the same jets."""
    from sklearn.metrics import roc_auc_score

    from hepfastsim.evaluation.metrics import auc_error

    y = np.asarray(is_w, bool)
    out = {}
    for name, disc in (("cnn", score), ("mass_window", -np.abs(mass - W_MASS)), ("tau21", -np.nan_to_num(tau21, nan=1.0))):
        auc = float(roc_auc_score(y, disc))
        out[name] = [auc, auc_error(auc, int(y.sum()), int((~y).sum()))]
    return out


def _retrain(args: argparse.Namespace) -> str:
    parts = ["hepfastsim", "train", "jet-cnn"]
    for flag in ("w_data", "qcd_data", "w_val", "qcd_val", "w_test", "qcd_test"):
        if getattr(args, flag):
            parts += [f"--{flag.replace('_', '-')}", *getattr(args, flag)]
    if args.generator:
        parts += ["--generator", args.generator, "--n-generated", str(args.n_generated)]
    parts += ["--out", args.out, "--max-per-class", str(args.max_per_class), "--epochs", str(args.epochs),
              "--filters", str(args.filters), "--max-minutes", str(args.max_minutes), "--seed", str(args.seed)]
    if args.threads is not None:
        parts += ["--threads", str(args.threads)]
    return shlex.join(parts)


def run_jet_cnn(args: argparse.Namespace) -> int:
    from hepfastsim.evaluation.image_gan_scores import lagan_observables
    from hepfastsim.models.image_samples import build_images
    from hepfastsim.models.jet_cnn import JetCnnConfig, predict, save_jet_cnn, train_jet_cnn
    from hepfastsim.models.lagan import ImageGenerator

    console = Console(stderr=True, quiet=args.quiet)
    base = prepare_output(args.out, args.overwrite, args.threads)
    rng = np.random.default_rng(args.seed)

    def cap(x: np.ndarray) -> np.ndarray:
        return x[np.sort(rng.choice(len(x), args.max_per_class, replace=False))] if len(x) > args.max_per_class else x

    if args.generator:
        gen = ImageGenerator.load(args.generator)
        n = args.n_generated
        train_w, train_q = gen.sample(1, n, seed=args.seed), gen.sample(0, n, seed=args.seed)
        val_w, val_q = gen.sample(1, n // 4, seed=args.seed + 1), gen.sample(0, n // 4, seed=args.seed + 1)
        source = {"generator": args.generator, "n_generated_per_class": n}
    else:
        if not (args.w_data and args.qcd_data and args.w_val and args.qcd_val):
            raise HepfastsimError("expected --w-data, --qcd-data, --w-val and --qcd-val (or --generator MODEL)")
        train_w = cap(build_images(args.w_data, "w", cache_dir=args.cache_dir).images)
        train_q = cap(build_images(args.qcd_data, "qcd", cache_dir=args.cache_dir).images)
        val_w = build_images(args.w_val, "w", cache_dir=args.cache_dir).images
        val_q = build_images(args.qcd_val, "qcd", cache_dir=args.cache_dir).images
        source = {"w": args.w_data, "qcd": args.qcd_data, "w_val": args.w_val, "qcd_val": args.qcd_val}
    test_w = build_images(args.w_test, "w", cache_dir=args.cache_dir).images
    test_q = build_images(args.qcd_test, "qcd", cache_dir=args.cache_dir).images
    console.print(f"train W {len(train_w)}, QCD {len(train_q)}; val W {len(val_w)}, QCD {len(val_q)}; "
                  f"test W {len(test_w)}, QCD {len(test_q)}")
    cfg = JetCnnConfig(filters=args.filters, epochs=args.epochs, max_minutes=args.max_minutes, seed=args.seed)
    t0 = time.perf_counter()
    model, history = train_jet_cnn(
        train_w, train_q, val_w, val_q, cfg,
        on_epoch=lambda e: console.print(f"epoch {e['epoch']}: train {e['train_loss']:.4f}  val {e['val_loss']:.4f}"),
    )
    test = np.concatenate([test_w, test_q])
    is_w = np.concatenate([np.ones(len(test_w), bool), np.zeros(len(test_q), bool)])
    obs = lagan_observables(test)
    aucs = tagger_aucs(predict(model, test), obs["mass"], obs["tau21"], is_w)
    console.print("test ROC AUC: " + ", ".join(f"{k} {v[0]:.4f} +- {v[1]:.4f}" for k, v in aucs.items()))
    save_jet_cnn(model, base, {
        "source": "seed 002 (CNN on jet images, large first-layer filters); images as in seed 004 (LAGAN preset)",
        "training_data": source,
        "test_data": {"w": args.w_test, "qcd": args.qcd_test, "n_w": len(test_w), "n_qcd": len(test_q)},
        "test_roc_auc": aucs,
        "training": {**history, "minutes": (time.perf_counter() - t0) / 60},
        "retrain_command": _retrain(args),
    })
    console.print(f"wrote {base}.safetensors and {base}.json")
    return 0
