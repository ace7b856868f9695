"""``hepfastsim train particle-vae``: the constituent-level VAE of seed 003 (and our set variant).

Examples::

    hepfastsim train particle-vae --data qcd_part*.root --out my_vae --architecture set --threads 1
    hepfastsim train particle-vae --data qcd_part*.root --cache pairs.npz --out paper_vae --architecture conv
"""

from __future__ import annotations

import argparse
import shlex
import time
from dataclasses import replace
from pathlib import Path

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from hepfastsim.cli.train import add_common_options, prepare_output, retrain_chain, without_validations

__all__ = ["add_kind"]


def add_kind(kinds: argparse._SubParsersAction) -> argparse.ArgumentParser:
    k = kinds.add_parser(
        "particle-vae",
        help="constituent-level VAE (seed 003): gen constituents -> reco constituents",
        description="Train the particle VAE on files with GenJet_*, Jet_{pt,eta,phi,mass,genJetIdx}, GenCands_*, "
        "GenJetCands_*, PFCands_*, JetPFCands_*. Pairs are the matched reco jets with constituent-sum pT above "
        "--pt-min (the paper's extended phase space, 130 GeV). Writes MODEL.safetensors and MODEL.json.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    k.add_argument("--data", nargs="+", required=True, metavar="FILE", help="training ROOT files")
    k.add_argument("--out", required=True, metavar="MODEL", help="output path (MODEL.safetensors + MODEL.json)")
    k.add_argument("--architecture", choices=("conv", "set"), default="set",
                   help="conv: the paper's 3x50 convolutional VAE; set: masked set VAE without padding ghosts")
    k.add_argument("--posterior", choices=("gen", "reco"), default="gen",
                   help="set only: gen = the paper's scheme (z from the gen-jet encoder); reco = conditional VAE "
                   "(z ~ q(z|reco, gen) in training, N(0,1) at inference)")
    k.add_argument("--residual", action="store_true",
                   help="set only: slot i outputs gen particle i plus a learned correction")
    k.add_argument("--cache", metavar="NPZ", default=None,
                   help="read the paired constituents from this .npz if it exists, else build and write it")
    k.add_argument("--pt-min", type=float, default=130.0, help="reco jet pT threshold of the training pairs, GeV")
    k.add_argument("--eta-max", type=float, default=2.5, help="reco jet |eta| limit of the training pairs")
    k.add_argument("--epochs", type=int, default=20)
    k.add_argument("--batch-size", type=int, default=256)
    k.add_argument("--learning-rate", type=float, default=1e-3)
    k.add_argument("--beta", type=float, default=1.0 / 9.0, help="KL weight (paper: 1/9)")
    k.add_argument("--alpha-m", type=float, default=1.0, help="jet-mass term weight (paper: 1)")
    k.add_argument("--alpha-pt", type=float, default=0.1, help="jet-pT term weight (paper: 0.1)")
    k.add_argument("--alpha-dist", type=float, default=0.0,
                   help="set with --posterior reco only: weight of the batch term matching the jet pT and mass "
                   "response distributions of prior-decoded jets (as at inference) to the reco jets; 0: off")
    k.add_argument("--slot-latent", type=int, default=0, metavar="K",
                   help="set with --posterior reco only: K latent dimensions per output slot (each reco particle "
                   "smeared by its own draw from a learned per-slot prior at inference); with --init of a model without them, the new "
                   "inputs start at zero weight; 0: none")
    k.add_argument("--jet-scale", type=float, default=100.0,
                   help="GeV unit of jet pT and mass in the loss (sets the size of the alpha terms against Chamfer)")
    k.add_argument("--init", metavar="MODEL", default=None, help="start from this model's weights (same architecture)")
    k.add_argument("--holdout", type=float, default=0.1, help="fraction of events held out for the loss")
    k.add_argument("--max-events", type=int, default=None, help="at most this many events per file")
    k.add_argument("--max-minutes", type=float, default=None, help="wall-clock budget of the training")
    k.add_argument("--half", action="store_true", help="store the weights as float16")
    k.add_argument("--calibrate-mass", action="store_true",
                   help="after training, fit the jet-mass calibration on --data: a quantile map of the model's jet-mass "
                   "response onto that of the files' reco jets per gen pT x gen m/pT bin, applied by moving the "
                   "constituents along Delta R; with --epochs 0 and --init, calibrate that model without training")
    k.add_argument("--calibration-bins", type=int, nargs=2, default=(4, 4), metavar=("N_PT", "N_MPT"),
                   help="gen pT and gen m/pT bins of the mass calibration")
    add_common_options(k)
    k.set_defaults(func=run)
    return k


def retrain_command(args: argparse.Namespace) -> str:
    if args.epochs == 0:  # calibration of --init alone
        parts = ["hepfastsim", "train", "particle-vae", "--data", *args.data, "--out", args.out, "--epochs", "0",
                 "--init", args.init, "--calibrate-mass", "--calibration-bins", *(str(b) for b in args.calibration_bins),
                 "--seed", str(args.seed)]
        for flag, value in (("--max-events", args.max_events), ("--threads", args.threads)):
            if value is not None:
                parts += [flag, str(value)]
        return " ".join(shlex.quote(p) for p in parts)
    parts = ["hepfastsim", "train", "particle-vae", "--data", *args.data, "--out", args.out,
             "--architecture", args.architecture, "--posterior", args.posterior, "--pt-min", str(args.pt_min), "--eta-max", str(args.eta_max),
             "--epochs", str(args.epochs), "--batch-size", str(args.batch_size),
             "--learning-rate", str(args.learning_rate), "--beta", str(args.beta), "--alpha-m", str(args.alpha_m),
             "--alpha-pt", str(args.alpha_pt), "--alpha-dist", str(args.alpha_dist), "--jet-scale", str(args.jet_scale), "--holdout", str(args.holdout), "--seed", str(args.seed)]
    for flag, value in (("--max-events", args.max_events), ("--max-minutes", args.max_minutes),
                        ("--threads", args.threads), ("--init", args.init), ("--cache", args.cache)):
        if value is not None:
            parts += [flag, str(value)]
    if args.slot_latent:
        parts += ["--slot-latent", str(args.slot_latent)]
    if args.calibrate_mass:
        parts += ["--calibrate-mass", "--calibration-bins", *(str(b) for b in args.calibration_bins)]
    if args.half:
        parts.append("--half")
    if args.residual:
        parts.append("--residual")
    return " ".join(shlex.quote(p) for p in parts)


def run(args: argparse.Namespace) -> int:
    from hepfastsim.errors import HepfastsimError
    from hepfastsim.models.particle_vae import VAEConfig, n_parameters, save_model
    from hepfastsim.models.particle_vae_train import PairData, TrainConfig, load_pairs, train_vae

    calibrate_only = args.epochs == 0
    if args.epochs < 0 or (calibrate_only and (args.init is None or not args.calibrate_mass)):
        raise HepfastsimError(f"--epochs must be at least 1 (0 only with --init and --calibrate-mass), got {args.epochs}")
    if min(args.calibration_bins) < 1:
        raise HepfastsimError(f"--calibration-bins must be at least 1 1, got {args.calibration_bins}")
    if not 0.0 < args.holdout < 1.0:
        raise HepfastsimError(f"--holdout must be between 0 and 1, got {args.holdout}")
    if not 0.0 <= args.beta <= 1.0:
        raise HepfastsimError(f"--beta must be in [0, 1], got {args.beta}")
    if args.alpha_dist < 0 or (args.alpha_dist > 0 and (args.architecture, args.posterior) != ("set", "reco")):
        raise HepfastsimError(f"--alpha-dist must be >= 0 and needs --architecture set --posterior reco, got "
                              f"{args.alpha_dist} with {args.architecture}/{args.posterior}")
    if args.slot_latent < 0 or (args.slot_latent > 0 and (args.architecture, args.posterior) != ("set", "reco")):
        raise HepfastsimError(f"--slot-latent must be >= 0 and needs --architecture set --posterior reco, got "
                              f"{args.slot_latent} with {args.architecture}/{args.posterior}")
    base = prepare_output(args.out, args.overwrite, args.threads)
    console = Console(stderr=True)
    start = time.perf_counter()
    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                  TextColumn("{task.fields[info]}"), console=console, disable=args.quiet) as progress:
        tasks: dict[str, int] = {}

        def on_read(path: str, n: int, total: int) -> None:
            if path not in tasks:
                tasks[path] = progress.add_task(f"reading {Path(path).name}", total=total, info="")
            progress.advance(tasks[path], n)

        init = None
        if args.init is not None:
            from hepfastsim.models.particle_vae import load_model

            init = load_model(args.init)
        if calibrate_only:
            model = init
        else:
            if args.cache is not None and Path(args.cache).exists():
                data = PairData.load(args.cache)
            else:
                data = load_pairs(args.data, pt_min=args.pt_min, eta_max=args.eta_max, max_events=args.max_events,
                                  tree=args.tree, on_progress=on_read)
                if args.cache is not None:
                    data.save(args.cache)

            def on_step(step: int, steps: int, train: float, held: float, parts: dict[str, float]) -> None:
                if "train" not in tasks:
                    tasks["train"] = progress.add_task(f"training {args.architecture}", total=steps, info="")
                progress.update(tasks["train"], completed=step, info=f"loss {train:.3f} / held-out {held:.3f}")
                if args.quiet:
                    console.print(f"step {step}/{steps} loss {train:.4f} held-out {held:.4f} "
                                  + " ".join(f"{k} {v:.4g}" for k, v in parts.items()))

            cfg = VAEConfig(architecture=args.architecture, posterior=args.posterior, beta=args.beta,
                            alpha_m=args.alpha_m, alpha_pt=args.alpha_pt, alpha_dist=args.alpha_dist,
                            jet_scale_gev=args.jet_scale, residual=args.residual, slot_latent=args.slot_latent)
            tcfg = TrainConfig(epochs=args.epochs, batch_size=args.batch_size, learning_rate=args.learning_rate,
                               holdout_fraction=args.holdout, max_minutes=args.max_minutes, seed=args.seed)
            if init is not None:
                if (init.config.architecture, init.config.posterior) != (cfg.architecture, cfg.posterior):
                    raise HepfastsimError(f"--init {args.init!r} is a {init.config.architecture}/"
                                          f"{init.config.posterior} model, expected {cfg.architecture}/{cfg.posterior}")
                if init.config.slot_latent not in (0, cfg.slot_latent):
                    raise HepfastsimError(f"--init {args.init!r} has {init.config.slot_latent} latent dimensions per "
                                          f"slot, --slot-latent asks for {cfg.slot_latent}")
            model = train_vae(data, cfg, tcfg, on_epoch=on_step, init=init)
            if init is not None:
                model.metadata["training"]["init"] = {"model": args.init,
                                                      "retrain_command": init.metadata.get("retrain_command")}
            model.metadata["training"]["data"] = [str(p) for p in args.data]
            model.metadata["training"]["phase_space"] = {"reco_jet_pt_min_gev": args.pt_min,
                                                         "reco_jet_abs_eta_max": args.eta_max}
            model.metadata["training"]["wall_seconds"] = round(time.perf_counter() - start, 1)
        if args.calibrate_mass:
            from hepfastsim.simulators.particle_vae import fit_mass_calibration_on_files

            def on_calibrate(path: str, done: int, total: int) -> None:
                if "cal " + path not in tasks:
                    tasks["cal " + path] = progress.add_task(f"calibrating on {Path(path).name}", total=total, info="")
                progress.update(tasks["cal " + path], completed=done)

            calibration = fit_mass_calibration_on_files(model, args.data, seed=args.seed, tree=args.tree,
                                                        max_events=args.max_events, bins=tuple(args.calibration_bins),
                                                        on_progress=on_calibrate)
            model = replace(model, mass_calibration=calibration, metadata=without_validations(model.metadata))
    model.metadata["retrain_command"] = retrain_command(args)
    if init is not None:  # the whole chain, oldest first: running it in order rebuilds these weights
        model.metadata["retrain_commands"] = retrain_chain(init.metadata, model.metadata["retrain_command"])
    weights, meta = save_model(model, base, half=args.half)
    out = Console()
    if calibrate_only:
        rec = model.mass_calibration.record
        out.print(f"[bold]{meta}[/bold]: weights of {args.init} with a jet-mass calibration fitted on "
                  f"{rec['reference_jets']:,} reference and {rec['model_jets']:,} model jets "
                  f"({rec['bins'][0]} x {rec['bins'][1]} bins)")
    else:
        out.print(f"[bold]{weights}[/bold] and {meta.name}: {n_parameters(model.module):,} parameters, "
                  f"{weights.stat().st_size / 1e6:.2f} MB; {model.metadata['training']['jets']:,} training jets, "
                  f"best held-out loss {model.metadata['training']['best_held_out_loss']:.4f}")
    return 0
