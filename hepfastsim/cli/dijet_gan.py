"""``hepfastsim dijet-gan train|generate``: the DiJetGAN of seed 001."""

from __future__ import annotations

import argparse
import shlex
import sys
from pathlib import Path

import numpy as np
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from hepfastsim.errors import HepfastsimError
from hepfastsim.io.writer import AtomicRootWriter, check_destination


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("dijet-gan", help="DiJetGAN (seed 001): train on dijet events, generate dijet events")
    sub = p.add_subparsers(dest="action", required=True, metavar="ACTION")

    t = sub.add_parser("train", help="train the GAN on the two leading jets of NanoAOD-like files")
    t.add_argument("--data", nargs="+", required=True, help="NanoAOD-like ROOT files")
    t.add_argument("--collection", default="Jet", help="Jet (reco level) or GenJet (particle level)")
    t.add_argument("--min-pt", type=float, default=250.0, help="both jets above this pT in GeV (seed: 250)")
    t.add_argument("--min-mjj", type=float, default=1500.0, help="train on mjj above this, GeV (seed: 1500)")
    t.add_argument("--iterations", type=int, default=20000)
    t.add_argument("--lr", type=float, default=1e-4)
    t.add_argument("--seed", type=int, default=0)
    t.add_argument("--scale-margin", type=float, default=1.0,
                   help="features scaled to [-margin, margin]; the paper: 1 (< 1 lets the tanh output extrapolate)")
    t.add_argument("--tail-power", type=float, default=0.0,
                   help="k > 0: train on events drawn ~ mjj^k and weight generated events by mjj^-k "
                   "(more generated events in the high-mjj tail); 0: the paper")
    t.add_argument("--validation-fraction", type=float, default=0.2)
    t.add_argument("--threads", type=int, default=2)
    t.add_argument("--out", required=True, help="weights (.safetensors) with metadata")
    t.add_argument("--overwrite", action="store_true")
    t.set_defaults(func=train)

    g = sub.add_parser("generate", help="generate dijet events into a NanoAOD-like file (2 jets per event)")
    g.add_argument("--model", required=True, help="weights from 'dijet-gan train'")
    g.add_argument("--events", type=int, default=1_000_000)
    g.add_argument("--seed", type=int, default=0)
    g.add_argument("--collection", default="Jet", help="name of the written jet collection")
    g.add_argument("--out", required=True)
    g.add_argument("--overwrite", action="store_true")
    g.set_defaults(func=generate)


def train(args: argparse.Namespace) -> int:
    import torch

    from hepfastsim.models.dijet_gan import DijetGANConfig, load_dijet_features, train_dijet_gan
    from hepfastsim.models.weights_file import model_paths

    outputs = model_paths(args.out)  # MODEL.safetensors + MODEL.json
    for path in outputs:
        check_destination(path, overwrite=args.overwrite)
    if args.tail_power < 0:
        raise HepfastsimError(f"--tail-power must be >= 0 (0: the paper), got {args.tail_power}")
    torch.set_num_threads(args.threads)
    features = load_dijet_features(args.data, args.collection, args.min_pt, min_mjj=args.min_mjj)
    if len(features) < 100:
        raise HepfastsimError(f"only {len(features)} events pass the selection in {args.data}; expected at least 100")
    rng = np.random.default_rng(args.seed)
    order = rng.permutation(len(features))
    n_val = int(args.validation_fraction * len(features))
    val, trn = features[order[:n_val]], features[order[n_val:]]
    config = DijetGANConfig(iterations=args.iterations, lr=args.lr, seed=args.seed, eval_every=max(args.iterations // 20, 1),
                            scale_margin=args.scale_margin, tail_power=args.tail_power)
    console = Console(stderr=True)
    with Progress(TextColumn("training DiJetGAN"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
                  TextColumn("{task.fields[status]}"), console=console) as progress:
        task = progress.add_task("train", total=config.iterations, status="")

        def on_step(step: int, info: dict[str, float]) -> None:
            status = f"chi2/ndf {info['mean_chi2']:.2f}" if "mean_chi2" in info else f"D {info['loss_d']:.3f} G {info['loss_g']:.3f}"
            progress.update(task, completed=step, status=status)

        gan, history = train_dijet_gan(trn, config, validation=val, on_step=on_step)
    best = min(history, key=lambda h: h["mean_chi2"])
    gan.metadata = {
        "model": "DiJetGAN (seed 001, arXiv:1903.02433)",
        "training_data": [str(Path(f).resolve()) for f in args.data],
        "collection": args.collection,
        "selection": {"min_pt": args.min_pt, "max_abs_eta": 2.5, "min_mjj": args.min_mjj},
        "n_train": int(len(trn)),
        "n_validation": int(len(val)),
        "config": {"iterations": config.iterations, "lr": config.lr, "batch_size": config.batch_size, "betas": list(config.betas),
                   "ema_decay": config.ema_decay, "scale_margin": config.scale_margin, "tail_power": config.tail_power},
        "validation_chi2_per_ndf": {k: v for k, v in best.items() if k not in ("loss_d", "loss_g")},
        "history": history,
        "retrain_command": "hepfastsim " + " ".join(shlex.quote(a) for a in sys.argv[1:]),
    }
    gan.save(args.out)
    Console().print(f"wrote {outputs[0]} and {outputs[1].name}: best iteration {best['iteration']}, mean chi2/ndf {best['mean_chi2']:.2f} on {len(val)} held-out events")
    return 0


def generate(args: argparse.Namespace) -> int:
    from hepfastsim.models.dijet_gan import DijetGAN, from_features

    check_destination(args.out, overwrite=args.overwrite)
    if not Path(args.model).is_file():
        raise HepfastsimError(f"cannot read model {args.model!r}: no such file")
    gan = DijetGAN.load(args.model)
    cuts = gan.metadata.get("selection", {})
    features = gan.sample_features(args.events, seed=args.seed)
    weights = gan.weights(features)  # 1, or the importance weights of a tail-enhanced model
    jets = from_features(features, np.random.default_rng(args.seed))
    # the cuts of the training sample, as in the paper (about 90% of generated events pass)
    keep = (jets["j2_pt"] > cuts.get("min_pt", 0.0)) & (np.abs(jets["j1_eta"]) < cuts.get("max_abs_eta", np.inf)) & (
        np.abs(jets["j2_eta"]) < cuts.get("max_abs_eta", np.inf)
    )
    import awkward as ak

    name = args.collection
    branches = {
        f"{name}_{f}": ak.from_regular(np.stack([jets[f"j1_{f}"][keep], jets[f"j2_{f}"][keep]], axis=1).astype(np.float32))
        for f in ("pt", "eta", "phi", "mass")
    }
    n = int(keep.sum())
    branches.update(  # NanoAOD event identifiers (coffea requires them) and the event weights
        run=np.ones(n, np.uint32), luminosityBlock=np.ones(n, np.uint32),
        event=np.arange(1, n + 1, dtype=np.uint64), genWeight=weights[keep].astype(np.float32),
    )
    with AtomicRootWriter(args.out, overwrite=args.overwrite) as out:
        out.extend("Events", branches)
    Console().print(f"wrote {args.out}: {int(keep.sum()):,} of {args.events:,} generated events pass the training cuts")
    return 0
