"""LAGAN image generation speed (seed 004, arXiv:1701.05927, Table 1).

Prints images/s on ``--threads`` CPU threads (default 2) for

* the training-form generator (plain ``unfold`` locally connected layers after explicit
  upsampling, as the paper builds it) in eval mode;
* the same network with the upsampled LC layers computed on the small grid;
* the fused inference generator (project+conv folded into one matrix, batch norms and
  upsampling folded into the LC layers, row-block GEMMs), float32 and bfloat16;
* ``ImageGenerator.sample`` end to end (counter-based latents + fused network), the path
  ``hepfastsim generate-images`` runs;

for several batch sizes, and the ratios to the seed's CPU figure (470 images/s) and to our
goal (20,000 images/s on 2 cores). Usage: ``python benchmarks/lagan.py [--threads 2]``.
"""

from __future__ import annotations

import argparse
import time

import torch
from torch.nn import functional as F

from hepfastsim.models.lagan import ImageGenerator, LaganGenerator
from hepfastsim.models.locally_connected import LocallyConnected2d

SEED_CPU = 470.0
SEED_GPU = 7200.0
GOAL = 20_000.0


class PlainLagan(torch.nn.Module):
    """The generator with explicit 2x upsampling + unfold LC layers (same parameters)."""

    def __init__(self, g: LaganGenerator) -> None:
        super().__init__()
        self.g = g
        self.lc1 = LocallyConnected2d(64, 6, (14, 14), 5, padding=2)
        self.lc2 = LocallyConnected2d(6, 6, (28, 28), 3)
        self.lc1.load_state_dict(g.lc1.state_dict())
        self.lc2.load_state_dict(g.lc2.state_dict())

    def forward(self, z: torch.Tensor, label: torch.Tensor) -> torch.Tensor:
        g = self.g
        h = g.project(g.cond(z, label)).view(-1, 128, 7, 7)
        h = g.bn1(F.leaky_relu(g.conv(h), g.slope))
        h = g.bn2(F.leaky_relu(self.lc1(F.interpolate(h, scale_factor=2)), g.slope))
        h = F.leaky_relu(self.lc2(F.interpolate(h, scale_factor=2)), g.slope)
        return F.relu(g.lc3(h))


def rate(fn, n_images: int, min_time: float = 1.0) -> float:  # noqa: ANN001
    fn()  # warm-up
    reps, t0 = 0, time.perf_counter()
    while True:
        fn()
        reps += 1
        dt = time.perf_counter() - t0
        if dt > min_time:
            return reps * n_images / dt


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--batches", type=int, nargs="+", default=[256, 1024, 4096, 16384])
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    try:
        shipped = ImageGenerator.load()
        net_desc = "shipped LAGAN weights"
    except Exception:  # noqa: BLE001 - speed does not depend on the weights
        shipped = None
        net_desc = "random weights"
    torch.manual_seed(0)
    g = LaganGenerator().eval()
    plain = PlainLagan(g).eval()
    fused32 = g.fused()
    fused16 = g.fused()
    fused16.set_precision("bfloat16")
    print(f"LAGAN generation, {args.threads} thread(s), torch {torch.__version__}, {net_desc} for the end-to-end rows")
    print(f"{'batch':>7} {'plain unfold':>13} {'small-grid LC':>14} {'fused f32':>10} {'fused bf16':>11}  (images/s)")
    best = {}
    with torch.inference_mode():
        for b in args.batches:
            z, lab = torch.randn(b, 200), torch.randint(0, 2, (b,))
            row = {}
            for name, net in (("plain", plain), ("small", g), ("f32", fused32), ("bf16", fused16)):
                if name in ("plain", "small") and b > 1024:  # slow paths: one batch size is enough
                    row[name] = float("nan")
                    continue
                row[name] = rate(lambda net=net: net(z, lab), b)
                best[name] = max(best.get(name, 0.0), row[name])
            print(f"{b:>7} {row['plain']:>13.0f} {row['small']:>14.0f} {row['f32']:>10.0f} {row['bf16']:>11.0f}")
    model = shipped or ImageGenerator(fused32, g.config)
    n = 8 * 2048
    e2e = {}
    for prec in ("float32", "bfloat16"):
        model.network.set_precision(prec)
        e2e[prec] = rate(lambda: model.sample(1, n, seed=1), n)
    model.network.set_precision("float32")
    keys_rate = rate(lambda: model.latent(1, 1, 0, n), n)
    print(f"end to end (ImageGenerator.sample, blocks of 2048): float32 {e2e['float32']:.0f}/s, "
          f"bfloat16 {e2e['bfloat16']:.0f}/s; counter-based latents alone {keys_rate:.0f}/s")
    print(f"speed-up of the fused float32 network over the plain unfold form: {best['f32'] / best['plain']:.1f}x "
          f"(small-grid LC alone: {best['small'] / best['plain']:.1f}x)")
    for label, value in (("end to end float32", e2e["float32"]), ("end to end bfloat16", e2e["bfloat16"])):
        print(f"{label}: {value / SEED_CPU:.0f}x the seed's CPU rate (470/s), {value / SEED_GPU:.1f}x its K80 rate "
              f"(7,200/s), {value / GOAL:.2f} of our goal (20,000/s on 2 cores)")


if __name__ == "__main__":
    main()
