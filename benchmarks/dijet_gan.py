"""Time to generate 1M DiJetGAN events (seed 001 reports 80 s on an NVIDIA Quadro P6000),
single-threaded and with 2 threads, network only and including the symmetry unfolding.

Usage: python benchmarks/dijet_gan.py [--model GAN.safetensors] [--events 1000000]
(without --model, an untrained generator of the same architecture is timed).
"""

from __future__ import annotations

import argparse
import time

import torch

from hepfastsim.models.dijet_gan import DijetGAN, FeatureScaler, Generator


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default=None)
    parser.add_argument("--events", type=int, default=1_000_000)
    args = parser.parse_args()
    if args.model:
        gan = DijetGAN.load(args.model)
    else:
        gan = DijetGAN(Generator(), FeatureScaler(tuple([0.0] * 7), tuple([1.0] * 7)))
    gan.sample_features(1000)  # warm-up
    for threads in (1, 2):
        torch.set_num_threads(threads)
        t0 = time.perf_counter()
        gan.sample_features(args.events, seed=1)
        t1 = time.perf_counter()
        gan.sample(args.events, seed=1)
        t2 = time.perf_counter()
        print(f"{threads} thread(s): {args.events:,} events: network {t1 - t0:6.2f} s ({args.events / (t1 - t0):,.0f} events/s); "
              f"with unfolding {t2 - t1:6.2f} s; ratio to the seed's 80 s on a GPU: {80.0 / (t2 - t1):.1f}x faster")


if __name__ == "__main__":
    main()
