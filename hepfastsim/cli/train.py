"""``hepfastsim train MODEL``: train a fast-simulation model on NanoAOD-like files.

Examples::

    hepfastsim train kinematics --data qcd.root wprime.root ttbar.root --out my_model
    hepfastsim train kinematics --data my_experiment_mc_*.root --out my_model --epochs 40 --threads 8

Each model kind is a sub-subcommand: ``kinematics`` here; the others live in the modules of
``TRAIN_KIND_MODULES``, each exposing ``add_kind(kinds)`` (a module not written yet is skipped).
"""

from __future__ import annotations

import argparse
import copy
import importlib
import shlex
import time
from dataclasses import replace
from pathlib import Path

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

__all__ = ["add_parser", "add_common_options", "prepare_output", "retrain_chain", "TRAIN_KIND_MODULES"]

# Modules adding a model kind to ``hepfastsim train``, in the order ``--help`` lists them.
TRAIN_KIND_MODULES: tuple[str, ...] = (
    "hepfastsim.cli.train_image_gan",
    "hepfastsim.cli.train_particle_vae",
    "hepfastsim.cli.train_lagan",
    "hepfastsim.cli.train_jet_cnn",
)


def add_common_options(k: argparse.ArgumentParser, tree: bool = True) -> None:
    """The options every ``hepfastsim train`` kind shares: --seed, --threads, [--tree], --quiet, --overwrite."""
    k.add_argument("--seed", type=int, default=0)
    k.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    if tree:
        k.add_argument("--tree", default="Events")
    k.add_argument("--quiet", action="store_true", help="no progress bars")
    k.add_argument("--overwrite", action="store_true", help="replace MODEL files if they exist")


def prepare_output(out: str, overwrite: bool, threads: int | None = None) -> Path:
    """MODEL path without suffix (``x.safetensors`` -> ``x``); refuses existing
    ``MODEL.safetensors``/``MODEL.json`` without ``overwrite``; sets torch's thread count."""
    from hepfastsim.errors import OutputError
    from hepfastsim.models.weights_file import model_paths

    paths = model_paths(out)
    for p in paths:
        if p.exists() and not overwrite:
            raise OutputError(str(p), "it exists (use --overwrite)")
    if threads is not None:
        import torch

        torch.set_num_threads(threads)
    return paths[0].with_suffix("")


def retrain_chain(init_metadata: dict | None, command: str) -> list[str]:
    """The commands that rebuild a model, oldest first: those recorded in the ``--init``
    model's metadata (``retrain_commands``, else its ``retrain_command``), then ``command``."""
    if init_metadata is None:
        return [command]
    earlier = init_metadata.get("retrain_commands") or [init_metadata.get("retrain_command")]
    return [c for c in earlier if c] + [command]


def without_validations(metadata: dict) -> dict:
    """``metadata`` less its recorded validations, which describe the model before a calibration."""
    return {k: v for k, v in metadata.items() if k != "validation"}


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    from hepfastsim.models.kinematics_train import NETWORKS

    p = subparsers.add_parser(
        "train",
        help="train a fast-simulation model on NanoAOD-like files",
        description="Train a fast-simulation model. Choose the model kind as the next word.",
    )
    kinds = p.add_subparsers(dest="kind", metavar="MODEL", required=True)
    k = kinds.add_parser(
        "kinematics",
        help="learned gen -> reco jet kinematics (flow + efficiency + pileup/fake jets)",
        description="Train the kinematics model on files with GenJet_*, Jet_{pt,eta,phi,mass,genJetIdx,"
        "nConstituents,area} (Pileup_nPU and rho when present). Writes MODEL.safetensors and MODEL.json.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    k.add_argument("--data", nargs="+", required=True, metavar="FILE", help="training ROOT files")
    k.add_argument("--out", required=True, metavar="MODEL", help="output path (MODEL.safetensors + MODEL.json)")
    k.add_argument("--epochs", type=int, default=30, help="epochs per network (the best held-out epoch is kept)")
    k.add_argument("--batch-size", type=int, default=4096)
    k.add_argument("--learning-rate", type=float, default=2e-3)
    k.add_argument("--holdout", type=float, default=0.1, help="fraction of events held out for validation loss")
    k.add_argument("--max-events", type=int, default=None, help="at most this many events per file")
    k.add_argument("--max-minutes", type=float, default=None, help="wall-clock budget of the whole training")
    k.add_argument("--flow-share", type=float, default=0.6, help="share of --max-minutes given to the matched-jet flow")
    k.add_argument("--init", metavar="MODEL", default=None,
                   help="continue training from this model (weights, scalers) instead of from scratch")
    k.add_argument("--networks", nargs="+", choices=(*NETWORKS, "none"), default=list(NETWORKS), metavar="NET",
                   help=f"networks to train ({', '.join(NETWORKS)}); with --init the others keep its weights; "
                        "'none' trains nothing (with --init and --calibrate-fakes or --calibrate-response)")
    k.add_argument("--fresh", nargs="+", choices=NETWORKS, default=[], metavar="NET",
                   help="with --init: rebuild these networks from scratch (and refit their target maps) before training")
    k.add_argument("--refit-maps", action="store_true",
                   help="with --init: refit the target quantile maps of the flows trained, starting from their weights")
    k.add_argument("--add-context", nargs="+", default=[], metavar="NAME", choices=["singlet_daughter"],
                   help="with --init: add these context columns to its networks, with zero input weights so training "
                        "starts from exactly the --init model (singlet_daughter: the gen jet comes from a W/Z/H "
                        "decay, read from GenPart; 0 in files without it)")
    k.add_argument("--calibrate-fakes", action="store_true",
                   help="after training, calibrate the unmatched-jet flow's outputs to the marginals of the unmatched "
                        "jets of --data (a per-output quantile map fitted on the flow's own samples; it is dropped "
                        "again when the unmatched-jet flow is trained further)")
    k.add_argument("--calibrate-response", action="store_true",
                   help="after training, correct the matched jets' pT response median and width (half 16-84%%) per "
                        "gen pT x |eta| bin of the response tables to those of --data, as CMS's JES/JER scale "
                        "factors do (bins with fewer than 1000 jets are left as they are; dropped again when the "
                        "matched-jet flow is trained further)")
    k.add_argument("--balance-max-weight", type=float, default=1.0, metavar="W",
                   help="weight each matched jet in the flow's loss by how rare its gen ln(pT) x |eta| cell is, at "
                        "most W (forward high-pT jets are ~0.1%% of QCD); 1: equal weights")
    k.add_argument("--ema", type=float, default=None, metavar="DECAY",
                   help="keep (and score on the held-out events) a moving average of the weights with this decay "
                        "per step, e.g. 0.999")
    add_common_options(k)
    k.set_defaults(func=run_kinematics)
    for module_name in TRAIN_KIND_MODULES:
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as err:
            if err.name == module_name:  # model kind not built yet
                continue
            raise
        module.add_kind(kinds)
    return p


def retrain_command(args: argparse.Namespace) -> str:
    """The command line that reproduces this training (stored in the model metadata)."""
    from hepfastsim.models.kinematics_train import NETWORKS

    parts = ["hepfastsim", "train", "kinematics", "--data", *args.data, "--out", args.out,
             "--epochs", str(args.epochs), "--batch-size", str(args.batch_size),
             "--learning-rate", str(args.learning_rate), "--holdout", str(args.holdout), "--seed", str(args.seed)]
    if args.flow_share != 0.6:
        parts += ["--flow-share", str(args.flow_share)]
    for flag, value in (("--max-events", args.max_events), ("--max-minutes", args.max_minutes),
                        ("--threads", args.threads), ("--init", args.init)):
        if value is not None:
            parts += [flag, str(value)]
    if list(args.networks) != list(NETWORKS):
        parts += ["--networks", *args.networks]
    if args.fresh:
        parts += ["--fresh", *args.fresh]
    if args.refit_maps:
        parts += ["--refit-maps"]
    if args.add_context:
        parts += ["--add-context", *args.add_context]
    if args.ema is not None:
        parts += ["--ema", str(args.ema)]
    if args.balance_max_weight != 1.0:
        parts += ["--balance-max-weight", str(args.balance_max_weight)]
    if args.calibrate_fakes:
        parts += ["--calibrate-fakes"]
    if args.calibrate_response:
        parts += ["--calibrate-response"]
    if args.tree != "Events":
        parts += ["--tree", args.tree]
    return " ".join(shlex.quote(p) for p in parts)


def run_kinematics(args: argparse.Namespace) -> int:
    from hepfastsim.errors import HepfastsimError
    from hepfastsim.models.kinematics_flow import n_parameters, save_model
    from hepfastsim.models.kinematics_train import (
        NETWORKS,
        TrainConfig,
        calibrate_fake_flow,
        calibrate_response,
        load_training_data,
        train_kinematics,
    )

    if args.epochs < 1:
        raise HepfastsimError(f"--epochs must be at least 1, got {args.epochs}")
    if not 0.0 < args.holdout < 1.0:
        raise HepfastsimError(f"--holdout must be between 0 and 1, got {args.holdout}")
    train_nothing = "none" in args.networks
    calibrates = args.calibrate_fakes or args.calibrate_response
    if train_nothing and (len(args.networks) > 1 or args.init is None or not calibrates
                          or args.fresh or args.refit_maps or args.add_context):
        raise HepfastsimError("--networks none trains nothing: give it alone, with --init MODEL and --calibrate-fakes "
                              "or --calibrate-response (and without --fresh, --refit-maps or --add-context)")
    base = prepare_output(args.out, args.overwrite, args.threads)
    config = None if train_nothing else TrainConfig(
        epochs=args.epochs, batch_size=args.batch_size, learning_rate=args.learning_rate,
        holdout_fraction=args.holdout, max_events=args.max_events, seed=args.seed,
        max_minutes=args.max_minutes, tree=args.tree, flow_share=args.flow_share,
        networks=tuple(args.networks), fresh=tuple(args.fresh), refit_maps=args.refit_maps,
        ema_decay=args.ema, add_context=tuple(args.add_context), balance_max_weight=args.balance_max_weight,
    )
    if not 0.0 < args.flow_share < 1.0:
        raise HepfastsimError(f"--flow-share must be between 0 and 1, got {args.flow_share}")
    if args.init is None and (args.fresh or args.refit_maps or args.add_context or list(args.networks) != list(NETWORKS)):
        raise HepfastsimError("--networks, --fresh, --refit-maps and --add-context choose what to retrain of an --init model: "
                              "give --init MODEL")
    init = None
    if args.init is not None:
        from hepfastsim.models.kinematics_flow import load_model

        init = load_model(args.init)
    console = Console(stderr=True)
    start = time.perf_counter()
    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                  TextColumn("{task.fields[info]}"), console=console, disable=args.quiet) as progress:
        tasks: dict[str, int] = {}

        def on_read(path: str, n: int, total: int) -> None:
            if path not in tasks:
                tasks[path] = progress.add_task(f"reading {Path(path).name}", total=total, info="")
            progress.advance(tasks[path], n)

        data = load_training_data(args.data, tree=args.tree, max_events=args.max_events,
                                  holdout_fraction=args.holdout, seed=args.seed, on_progress=on_read)

        def on_epoch(stage: str, epoch: int, epochs: int, train: float, held: float) -> None:
            if stage not in tasks:
                tasks[stage] = progress.add_task(f"training {stage}", total=epochs, info="")
            progress.update(tasks[stage], completed=epoch, info=f"loss {train:.4f} / held-out {held:.4f}")

        if config is not None:
            model = train_kinematics(data, config, on_progress=on_epoch, init=init)
        else:  # --networks none: the --init weights as they are
            assert init is not None
            model = replace(init, metadata=copy.deepcopy(init.metadata))
        if args.calibrate_fakes:
            calibrating = progress.add_task("calibrating the unmatched-jet flow", total=1, info="")
            model = calibrate_fake_flow(model, data, seed=args.seed)
            progress.update(calibrating, completed=1)
        if args.calibrate_response:
            task = progress.add_task("calibrating the jet response", total=1, info="")
            model = calibrate_response(model, data, seed=args.seed)
            model = replace(model, metadata=without_validations(model.metadata))
            progress.update(task, completed=1)
    model.metadata["retrain_command"] = retrain_command(args)
    if init is not None:  # the whole chain of commands that made these weights
        model.metadata["retrain_commands"] = retrain_chain(init.metadata, model.metadata["retrain_command"])
    if config is not None:
        model.metadata["training"]["seconds"] = round(time.perf_counter() - start, 1)
    weights, meta = save_model(model, base)
    out = Console()
    s = data.summary()
    out.print(f"[bold]{weights}[/bold] and {meta.name}: {n_parameters(model.module):,} parameters, "
              f"{weights.stat().st_size / 1e6:.2f} MB")
    if config is not None:
        out.print(f"  trained on {s['events']:,} events ({s['holdout_events']:,} held out), {s['gen_jets']:,} gen jets, "
                  f"{s['matched_jets']:,} matched, {s['unmatched_reco_jets']:,} unmatched reco jets")
        for name, rep in model.metadata["training"]["networks"].items():
            out.print(f"  {name}: best held-out loss {rep['best_heldout_loss']:.4f} at epoch {rep['best_epoch']}/"
                      f"{rep['epochs_run']} ({rep['seconds']} s)")
    if args.calibrate_fakes:
        out.print(f"  unmatched-jet outputs calibrated on {s['unmatched_reco_jets']:,} unmatched reco jets of "
                  f"{s['events']:,} events")
    if args.calibrate_response:
        cal = model.response_calibration
        fixed = [b for b in cal.record["bins"] if "scale" in b]
        out.print(f"  jet response calibrated in {len(fixed)} of {len(cal.record['bins'])} gen pT x |eta| bins on "
                  f"{cal.record['reference_jets']:,} matched jets; width factors {min(b['scale'] for b in fixed):.3f}"
                  f"-{max(b['scale'] for b in fixed):.3f}" if fixed else "  jet response: no bin with enough jets")
    return 0
