"""``hepfastsim train lagan``: the location-aware GAN of 25 x 25 jet images (seed 004).

Example::

    hepfastsim train lagan --w-data wprime_*.root --qcd-data qcd_part0*.root \\
        --w-select wprime_part09.root --qcd-select qcd_part24.root --out my_lagan --max-minutes 30
"""

from __future__ import annotations

import argparse
import shlex
import time

from rich.console import Console

from hepfastsim.cli.train import prepare_output

__all__ = ["add_kind", "run_lagan"]


def add_kind(kinds: argparse._SubParsersAction) -> None:
    k = kinds.add_parser(
        "lagan",
        help="location-aware GAN of 25x25 W / QCD jet images (arXiv:1701.05927)",
        description="Train the LAGAN (or its DCGAN variant) on gen-level 25x25 jet images with "
        "250 < pT < 300 GeV built from GenJetAK8 + GenFatJetCands -> GenCands. W jets are matched to "
        "hadronic W bosons in GenPart. FILE may be FILE@START:STOP (an event range). Writes "
        "MODEL.safetensors and MODEL.json.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    k.add_argument("--w-data", nargs="+", required=True, metavar="FILE", help="W' -> WZ training files")
    k.add_argument("--qcd-data", nargs="+", required=True, metavar="FILE", help="QCD training files")
    k.add_argument("--w-select", nargs="+", required=True, metavar="FILE", help="W files to pick the best step on")
    k.add_argument("--qcd-select", nargs="+", required=True, metavar="FILE", help="QCD files to pick the best step on")
    k.add_argument("--out", required=True, metavar="MODEL", help="output path (MODEL.safetensors + MODEL.json)")
    k.add_argument("--architecture", choices=("lagan", "dcgan"), default="lagan")
    k.add_argument("--dcgan-width", type=float, default=0.5, help="channel multiplier of the DCGAN variant")
    k.add_argument("--batch-size", type=int, default=100)
    k.add_argument("--learning-rate", type=float, default=2e-4)
    k.add_argument("--max-minutes", type=float, default=30.0, help="wall-clock budget of the training")
    k.add_argument("--max-steps", type=int, default=10**9)
    k.add_argument("--eval-every", type=float, default=240.0, help="seconds between score checks")
    k.add_argument("--eval-images", type=int, default=1000, help="generated images per class at each check")
    k.add_argument("--no-bf16", dest="bf16", action="store_false", help="train in float32 (default: bfloat16 autocast)")
    k.add_argument("--cache-dir", default=None, help="keep the images of each input file here (npz)")
    k.add_argument("--seed", type=int, default=0)
    k.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    k.add_argument("--quiet", action="store_true")
    k.add_argument("--overwrite", action="store_true", help="replace MODEL files if they exist")
    k.set_defaults(func=run_lagan)


def _retrain_command(args: argparse.Namespace) -> str:
    parts = ["hepfastsim", "train", "lagan", "--w-data", *args.w_data, "--qcd-data", *args.qcd_data,
             "--w-select", *args.w_select, "--qcd-select", *args.qcd_select, "--out", args.out,
             "--architecture", args.architecture, "--dcgan-width", str(args.dcgan_width),
             "--batch-size", str(args.batch_size), "--learning-rate", str(args.learning_rate),
             "--max-minutes", str(args.max_minutes), "--eval-every", str(args.eval_every),
             "--eval-images", str(args.eval_images), "--seed", str(args.seed)]
    if not args.bf16:
        parts.append("--no-bf16")
    if args.max_steps != 10**9:
        parts += ["--max-steps", str(args.max_steps)]
    if args.threads is not None:
        parts += ["--threads", str(args.threads)]
    return shlex.join(parts)


def run_lagan(args: argparse.Namespace) -> int:
    from hepfastsim.models.image_samples import build_images
    from hepfastsim.models.lagan import ImageGenerator, LaganConfig
    from hepfastsim.models.lagan_train import GanTrainConfig, train_lagan

    console = Console(stderr=True, quiet=args.quiet)
    out = prepare_output(args.out, args.overwrite, args.threads)
    t0 = time.perf_counter()
    train = {"w": build_images(args.w_data, "w", cache_dir=args.cache_dir).images,
             "qcd": build_images(args.qcd_data, "qcd", cache_dir=args.cache_dir).images}
    select = {"w": build_images(args.w_select, "w", cache_dir=args.cache_dir).images,
              "qcd": build_images(args.qcd_select, "qcd", cache_dir=args.cache_dir).images}
    console.print(f"images: train W {len(train['w'])}, QCD {len(train['qcd'])}; select W {len(select['w'])}, "
                  f"QCD {len(select['qcd'])} ({time.perf_counter() - t0:.0f} s)")
    model_cfg = LaganConfig(architecture=args.architecture, dcgan_width=args.dcgan_width)
    cfg = GanTrainConfig(model=model_cfg, batch_size=args.batch_size, learning_rate=args.learning_rate,
                         max_minutes=args.max_minutes, max_steps=args.max_steps, eval_every_s=args.eval_every,
                         eval_images=args.eval_images, bf16=args.bf16, seed=args.seed)

    def progress(info: dict) -> None:
        console.print(f"step {info['step']:6d}  {info['elapsed_s'] / 60:5.1f} min  score {info['score']:.3f} "
                      f"(W {info['emd_w']:.3f}, QCD {info['emd_qcd']:.3f})  best {info['best']:.3f}")

    model, history = train_lagan(train, select, cfg, on_progress=progress)
    network = model.network.fused() if args.architecture == "lagan" else model.network
    shipped = ImageGenerator(network, model_cfg, {
        "model": args.architecture,
        "source": "arXiv:1701.05927 (seed 004)",
        "images": "gen level, GenJetAK8 (anti-kt 0.8) + GenFatJetCands -> GenCands, 250 < pT < 300 GeV, |eta| < 2, "
                  "LAGAN preset (25x25, 0.1 x 0.1, leading-subjet centred, rotated, flipped; no trimming), GeV per pixel",
        "classes": {"0": "qcd", "1": "w"},
        "training_data": {"w": args.w_data, "qcd": args.qcd_data, "n_w": len(train["w"]), "n_qcd": len(train["qcd"])},
        "selection_data": {"w": args.w_select, "qcd": args.qcd_select},
        "training": history,
        "retrain_command": _retrain_command(args),
    })
    shipped.save(out)
    console.print(f"wrote {out}.safetensors and {out}.json (best score {history['best_score']:.3f} "
                  f"at step {history['best_step']})")
    return 0
