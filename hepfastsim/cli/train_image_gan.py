"""``hepfastsim train image-gan``: the seed-000 jet-image GAN (arXiv:1805.00850).

Examples::

    hepfastsim train image-gan --data qcd_part*.root --out my_image_gan --max-minutes 30 --threads 1
    # build the image pairs once, keep them, train several times from the cache
    hepfastsim train image-gan --data qcd_part*.root --cache pairs.npz --out my_image_gan
    # the tower generator (neutral energy sampled per calorimeter tower, gen species inputs),
    # continued from a paper's generator
    hepfastsim train image-gan --data qcd_part*.root --out towers --init my_image_gan --output towers --species

The files need GenJet_*, Jet_* with Jet_genJetIdx, the PFNano constituents (GenCands_*,
GenJetCands_*, PFCands_*, JetPFCands_*) and Pileup_nPU; a tower generator or one with species
inputs also GenCands_charge, GenCands_pdgId, PFCands_charge and PFCands_pdgId. Writes
MODEL.safetensors + MODEL.json.
"""

from __future__ import annotations

import argparse
import shlex
import time
from pathlib import Path
from typing import Any

from hepfastsim.cli.train import add_common_options, prepare_output, retrain_chain

__all__ = ["add_kind"]


def add_kind(kinds: argparse._SubParsersAction) -> argparse.ArgumentParser:
    k = kinds.add_parser(
        "image-gan",
        help="jet-image GAN: gen-jet image -> reco-jet image (seed 000, U-Net + patch GAN)",
        description="Train the seed-000 image GAN (arXiv:1805.00850) on gen/reco jet image pairs built from the "
        "PFNano constituents of matched jets. Writes MODEL.safetensors and MODEL.json.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    k.add_argument("--data", nargs="+", required=True, metavar="FILE", help="training ROOT files")
    k.add_argument("--out", required=True, metavar="MODEL", help="output path (MODEL.safetensors + MODEL.json)")
    k.add_argument("--cache", metavar="PAIRS.npz", default=None,
                   help="image-pair cache: read it if it exists, otherwise build it from --data and write it")
    k.add_argument("--epochs", type=float, default=10.0)
    k.add_argument("--batch-size", type=int, default=128)
    k.add_argument("--learning-rate", type=float, default=2e-4)
    k.add_argument("--w-adv", type=float, default=1.0, help="weight of the patch-discriminator term")
    k.add_argument("--w-total-adv", type=float, default=1.0, help="weight of the D_T term (paper: tau)")
    k.add_argument("--w-l2", type=float, default=20.0, help="weight of the L2 term")
    k.add_argument("--w-mask", type=float, default=1.0, help="weight of the mask term (paper: lambda)")
    k.add_argument("--w-sum", type=float, default=50.0, help="weight of the total-intensity MSE (paper: mu)")
    k.add_argument("--eval-every", type=int, default=500, help="steps between held-out checkpoint scores")
    k.add_argument("--eval-jets", type=int, default=4000, help="held-out jets scored at each checkpoint")
    k.add_argument("--score-observables", nargs="+", metavar="NAME", default=None,
                   help="image observables the checkpoint score averages W1 over (default: pt, ring0..3, ptd, "
                   "major, minor, tau21, mass; 'criterion' = ring0..3, ptd, major, minor, tau21, tau32)")
    k.add_argument("--score-calibrated", action="store_true",
                   help="score checkpoints on images with the total calibration fitted on the held-out jets (for a "
                        "generator that will get --calibrate-total)")
    k.add_argument("--logit-loss", action="store_true",
                   help="adversarial cross-entropies from the discriminators' logits (no 1e-6 clipping, whose "
                   "generator gradient vanishes once D is sure)")
    k.add_argument("--ema", type=float, default=None, metavar="DECAY",
                   help="score and keep an exponential moving average of the generator's weights (e.g. 0.999)")
    k.add_argument("--device", default="cpu", help="torch device to train on (cpu, cuda, cuda:1, ...)")
    k.add_argument("--max-events", type=int, default=None, help="at most this many events per file")
    k.add_argument("--max-minutes", type=float, default=None, help="wall-clock budget of the training")
    k.add_argument("--noise-channels", type=int, default=None, metavar="K",
                   help="standard-normal noise maps given to the generator beside the gen image (default: those of "
                        "--init, else 0, the paper's generator); continuing a generator with fewer starts them at "
                        "zero weight")
    k.add_argument("--output", choices=("mask", "towers"), default=None,
                   help="the generator's output: the paper's per-pixel mask, or neutral energy sampled per calorimeter "
                        "tower (default: that of --init, else mask); a mask generator continues as a tower one")
    k.add_argument("--species", action="store_true",
                   help="give the generator the gen image by species (charged, photons, other neutrals) as 3 more "
                        "inputs (kept when --init has them)")
    k.add_argument("--calibrate-total", action="store_true",
                   help="no training: fit the total-intensity calibration of the --init generator on --data (its "
                        "reco pT resolution made the reference's; the lit pixels and pTD unchanged) and write it with "
                        "the same weights")
    k.add_argument("--init", metavar="MODEL", default=None,
                   help="continue from MODEL (generator; discriminators from MODEL.discriminators.safetensors if present)")
    add_common_options(k)
    k.set_defaults(func=run)
    return k


def retrain_command(args: argparse.Namespace) -> str:
    parts = ["hepfastsim", "train", "image-gan", "--data", *args.data, "--out", args.out]
    for flag in ("cache", "init", "noise_channels", "output", "epochs", "batch_size", "learning_rate", "w_adv", "w_total_adv", "w_l2", "w_mask", "w_sum",
                 "eval_every", "eval_jets", "ema", "device", "max_events", "max_minutes", "seed", "threads"):
        value = getattr(args, flag)
        if value is not None:
            parts += ["--" + flag.replace("_", "-"), str(value)]
    if args.logit_loss:
        parts.append("--logit-loss")
    if args.species:
        parts.append("--species")
    if args.score_calibrated:
        parts.append("--score-calibrated")
    if args.calibrate_total:
        parts.append("--calibrate-total")
    if args.score_observables:
        parts += ["--score-observables", *args.score_observables]
    if args.tree != "Events":
        parts += ["--tree", args.tree]
    return " ".join(shlex.quote(p) for p in parts)


def _discriminators_file(model: str | Path) -> Path:
    """``MODEL.discriminators.safetensors``: the D and D_T saved next to a generator."""
    from hepfastsim.models.weights_file import model_paths

    return model_paths(model)[0].with_suffix("").with_suffix(".discriminators.safetensors")


def _init_states(model: str) -> tuple[dict, Any]:
    """Generator (and, when saved next to it, discriminator) state dicts of a previous training,
    and that generator (:class:`~hepfastsim.models.image_gan.LoadedImageGAN`, with its metadata)."""
    from safetensors.torch import load_file

    from hepfastsim.models.image_gan import load_generator

    loaded = load_generator(model)
    states: dict = {"G": loaded.generator.state_dict()}
    disc = _discriminators_file(model)
    if disc.exists():
        flat = load_file(str(disc))
        for net in ("D", "DT"):
            states[net] = {k[len(net) + 1:]: v for k, v in flat.items() if k.startswith(net + ".")}
    return states, loaded


def _species_scale(init_model: Any, pairs: Any) -> float:
    """The fixed factor of the species inputs: that of --init when it has them, else the input
    batch norm's factor of --init (the species images then enter at the gen image's scale),
    else one over the standard deviation of the first 2000 gen images' pixels."""
    import numpy as np
    import torch

    if init_model is not None:
        if init_model.config.species_channels:
            return init_model.config.species_scale
        norm = init_model.generator.input_norm
        return float(norm.weight.detach()[0] / torch.sqrt(norm.running_var[0] + norm.eps))
    return float(1.0 / max(np.std(pairs.gen.dense(np.arange(min(2000, len(pairs))))), 1e-6))


def _score_observables(names: list[str] | None) -> tuple[str, ...]:
    """The --score-observables names, 'criterion' expanded; unknown names refused."""
    from hepfastsim.errors import HepfastsimError
    from hepfastsim.models.image_gan_train import CRITERION_OBSERVABLES, SCORE_OBSERVABLES

    if not names:
        return SCORE_OBSERVABLES
    out = tuple(n for name in names for n in (CRITERION_OBSERVABLES if name == "criterion" else (name,)))
    known = {*SCORE_OBSERVABLES, *CRITERION_OBSERVABLES}
    unknown = sorted(set(out) - known)
    if unknown:
        raise HepfastsimError(f"--score-observables: unknown {', '.join(unknown)} (known: {', '.join(sorted(known))}, criterion)")
    return tuple(dict.fromkeys(out))


def _write_total_calibration(args: argparse.Namespace, pairs: object, base: Path, model: Any) -> int:
    """``--calibrate-total``: the --init generator ``model`` with its fitted total calibration (same weights)."""
    import shutil

    from rich.console import Console

    from hepfastsim.cli.train import without_validations
    from hepfastsim.models.image_gan import save_generator
    from hepfastsim.models.image_gan_train import fit_total_spread

    record = fit_total_spread(model, pairs, seed=args.seed)
    command = retrain_command(args)
    metadata = {k: v for k, v in without_validations(model.metadata).items() if k not in ("architecture", "format")}
    metadata.update({"total_calibration": {**record, "data": [str(p) for p in args.data]}, "retrain_command": command,
                     "retrain_commands": retrain_chain(model.metadata, command)})
    weights, _ = save_generator(model.generator, base, metadata)
    disc = _discriminators_file(args.init)
    if disc.exists():  # a later continuation can start from the same game
        shutil.copyfile(disc, _discriminators_file(base))
    Console().print(f"[bold]{weights}[/bold]: total-intensity calibration spread {record['spread']:.4f} on "
                    f"{record['jets']:,} jets; 16-84% half-width {record['half_width_sampled']:.4f} -> "
                    f"{record['half_width_calibrated']:.4f} (reference {record['half_width_reference']:.4f})")
    return 0


def run(args: argparse.Namespace) -> int:
    import torch
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from hepfastsim.errors import HepfastsimError
    from hepfastsim.models.image_gan import ImageGANConfig, n_parameters, save_generator
    from hepfastsim.models.image_gan_train import ImagePairs, TrainConfig, training_device, build_pairs, train_image_gan
    from safetensors.torch import save_file

    if args.epochs <= 0:
        raise HepfastsimError(f"--epochs must be positive, got {args.epochs}")
    if args.noise_channels is not None and args.noise_channels < 0:
        raise HepfastsimError(f"--noise-channels must be >= 0, got {args.noise_channels}")
    if args.eval_jets <= 0:
        raise HepfastsimError(f"--eval-jets must be positive, got {args.eval_jets}")
    if args.calibrate_total and not args.init:
        raise HepfastsimError("--calibrate-total needs --init MODEL: the generator to calibrate")
    training_device(args.device)  # before reading anything: a missing GPU fails fast
    score_observables = _score_observables(args.score_observables)
    init, init_model = _init_states(args.init) if args.init else (None, None)
    init_metadata = None if init_model is None else init_model.metadata
    init_noise = (init_metadata or {}).get("architecture", {}).get("noise_channels", 0)
    noise_channels = init_noise if args.noise_channels is None else args.noise_channels
    if noise_channels < init_noise:
        raise HepfastsimError(f"--noise-channels {noise_channels}: --init {args.init} already has {init_noise}")
    init_arch = ImageGANConfig() if init_model is None else init_model.config
    output = args.output or init_arch.output
    if (init_arch.output, output) == ("towers", "mask"):
        raise HepfastsimError(f"--output mask: --init {args.init} is a tower generator")
    species = args.species or init_arch.species_channels > 0
    base = prepare_output(args.out, args.overwrite, args.threads)
    config = TrainConfig(
        batch_size=args.batch_size, learning_rate=args.learning_rate, epochs=args.epochs,
        max_minutes=args.max_minutes, w_adv=args.w_adv, w_total_adv=args.w_total_adv, w_l2=args.w_l2,
        w_mask=args.w_mask, w_sum=args.w_sum, eval_every=args.eval_every, eval_jets=args.eval_jets, seed=args.seed,
        device=args.device, score_observables=score_observables, score_calibrated=args.score_calibrated,
        logit_loss=args.logit_loss,
        ema_decay=args.ema,
    )
    console = Console(stderr=True)
    start = time.perf_counter()
    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                  TextColumn("{task.fields[info]}"), console=console, disable=args.quiet) as progress:
        with_species = species or output == "towers"
        if args.cache and Path(args.cache).exists():
            pairs = ImagePairs.load(args.cache)
            if with_species and not pairs.has_species:
                raise HepfastsimError(f"--cache {args.cache} has no images by species, which the tower generator or "
                                      "--species needs: build a new cache")
        else:
            tasks: dict[str, int] = {}

            def on_read(path: str, n: int, total: int) -> None:
                if path not in tasks:
                    tasks[path] = progress.add_task(f"images {Path(path).name}", total=total, info="")
                progress.advance(tasks[path], n)

            pairs = build_pairs(args.data, tree=args.tree, max_events=args.max_events, on_progress=on_read,
                                species=with_species)
            if args.cache:
                pairs.save(args.cache)
        if len(pairs) == 0:
            raise HepfastsimError("no matched gen/reco jet pairs with gen pT > 20 GeV and |eta| < 2.5 in --data")
        if args.calibrate_total:
            return _write_total_calibration(args, pairs, base, init_model)
        arch = ImageGANConfig(noise_channels=noise_channels, output=output,
                              species_channels=3 if species else 0,
                              species_scale=_species_scale(init_model, pairs) if species else 1.0)
        task = progress.add_task("training image GAN", total=None, info="")

        def on_step(step: int, n_steps: int, entry: dict[str, float]) -> None:
            info = f"loss D {entry['loss_d']:.3f} G {entry['loss_g']:.3f}"
            if "heldout_score" in entry:
                info += f" | held-out score {entry['heldout_score']:.3f}"
                console.log(f"step {step}: " + ", ".join(f"{k} {v:.4g}" for k, v in entry.items() if k != "step"))
            progress.update(task, total=n_steps, completed=step, info=info)

        generator, report = train_image_gan(pairs, config, arch=arch, on_step=on_step, init=init,
                                            init_arch=None if init_model is None else init_model.config)
    discriminators = report.pop("discriminators")
    report["seconds_total"] = round(time.perf_counter() - start, 1)
    metadata = {
        "model": "image-gan",
        "paper": "arXiv:1805.00850 (seed 000)",
        "image_preset": "SEED000_DETECTOR",
        "conditions": ["gen pT [GeV] (as ln pT)", "gen eta", "gen phi [rad]", "nPU"],
        "domain": {"min_gen_pt": 20.0, "max_abs_eta": 2.5},
        "training_data": {"files": [str(p) for p in args.data], "pairs": len(pairs), "cache": args.cache,
                          "max_events": args.max_events},
        "training": report,
        "retrain_command": retrain_command(args),
        "torch": torch.__version__,
    }
    if args.init:  # the whole chain, oldest first: running it in order rebuilds these weights
        metadata["training"]["initialised_from"] = str(args.init)
        metadata["retrain_commands"] = retrain_chain(init_metadata, metadata["retrain_command"])
    weights, js = save_generator(generator, base, metadata)
    save_file({f"{net}.{k}": v.contiguous() for net, state in discriminators.items() for k, v in state.items()},
              str(_discriminators_file(base)))
    out = Console()
    out.print(f"[bold]{weights}[/bold] and {js.name}: {n_parameters(generator):,} generator parameters, "
              f"{weights.stat().st_size / 1e6:.2f} MB")
    out.print(f"  {report['train_jets']:,} training jets, {report['steps_run']} steps ({report['epochs_run']} epochs), "
              f"best held-out score {report['best_heldout_score']:.4f} at step {report['best_step']}")
    return 0
