"""Benchmark of the seed-000 image GAN: jets/s end to end (pixelise + generator + observables).

The gen jets (with constituents) of ``--input`` are read once; the jets inside the model's
domain (gen pT >= 20 GeV, |eta| < 2.5) are the "jets" counted. Reported, each best of
``--repeat`` after a warm-up, with torch and numba on ``--threads`` threads:

1. end to end: ``ImageGANSimulator.simulate`` on the whole chunk (pixelise, generator in
   padded blocks, per-pixel mask uniforms from the counter-based RNG, observables kernel,
   jet-energy corrections, awkward in/out, parametric fallback for out-of-domain jets; for
   the tower generator also the gen images by species, the ECAL and HCAL tower labels of
   every image and the tower draws);
2. where the time goes: each stage timed alone on the same jets;
3. batch-size scaling of the generator alone (rows per torch call), and the generator with
   channels-last memory format and with a frozen TorchScript trace;
4. the ratio to the seed's quoted CPU rate (100 jets/s on an Intel Xeon) and to our goal
   (5,000 jets/s on 2 cores).

Usage: python benchmarks/image_gan.py --input /work/samples/qcd_mu30/qcd_mu30_part25.root
       [--events 3000] [--threads 2] [--repeat 3] [--weights PATH]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
OUTPUT = HERE / "output"
sys.path.insert(0, str(HERE.parent))

SEED_JETS_PER_S = 100.0  # arXiv:1805.00850, section 3 ("roughly 100 Hz on Intel Xeon CPUs")
GOAL_JETS_PER_S = 5000.0


def best_of(fn, repeat: int) -> float:  # noqa: ANN001
    fn()
    best = float("inf")
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--input", default="examples/qcd_small.root")
    p.add_argument("--events", type=int, default=3000)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--repeat", type=int, default=3)
    p.add_argument("--weights", default=None)
    p.add_argument("--json", default=str(OUTPUT / "image_gan.json"))
    args = p.parse_args()
    os.environ.setdefault("NUMBA_NUM_THREADS", str(args.threads))

    import awkward as ak
    import numpy as np
    import torch
    import uproot

    torch.set_num_threads(args.threads)
    from hepfastsim.jets.images import SEED000_DETECTOR, pixelise
    from hepfastsim.jets.observables import ObservablesConfig, image_observables
    from hepfastsim.jets.species import gen_species_images
    from hepfastsim.kernels.rng import event_keys, uniforms
    from hepfastsim.models.image_gan import condition_features
    from hepfastsim.models.image_towers import batch_towers
    from hepfastsim.simulators.base import GenEvents
    from hepfastsim.simulators.image_gan import DOMAIN_MASK, ImageGANSimulator, generate_images, keyed_tower_draws

    with uproot.open(args.input) as f:
        t = f["Events"]
        stop = min(args.events, t.num_entries)
        names = [b for b in t.keys() if b.startswith(("GenJet_", "GenCands_", "GenJetCands_"))] + ["Pileup_nPU"]
        arrays = t.arrays([n for n in names if n in t.keys()], entry_stop=stop, how=dict)
    sim = ImageGANSimulator(weights=args.weights)
    model = sim.model
    events = GenEvents.from_branches(arrays, event_keys(1, 2, np.arange(stop)), constituents=True,
                                     constituent_fields=sim.constituent_fields())
    towers = model.config.output == "towers"

    # the in-domain jets and their inputs, as simulate() builds them
    flat = ak.flatten(events.jets, axis=1)
    pt, eta, phi = (np.asarray(ak.to_numpy(flat[k]), np.float64) for k in ("pt", "eta", "phi"))
    cands = ak.flatten(events.constituents, axis=1)
    inside = sim.domain(pt, eta, ak.to_numpy(ak.num(cands, axis=1)))
    sel = np.flatnonzero(inside)
    n_jets = len(sel)
    counts = ak.to_numpy(ak.num(events.jets, axis=1))
    ev_of_jet = np.repeat(np.arange(stop), counts)
    axis = ak.zip({"pt": pt[sel], "eta": eta[sel], "phi": phi[sel]})
    cond = np.stack([pt[sel], eta[sel], phi[sel], events.n_pu[ev_of_jet[sel]]], axis=1).astype(np.float32)
    sel_cands = cands[sel]
    x = pixelise(sel_cands, axis, SEED000_DETECTOR).astype(np.float32)
    sel_counts = np.bincount(ev_of_jet[sel], minlength=stop)
    sel_offsets = np.concatenate([[0], np.cumsum(sel_counts)])
    k_noise = model.config.noise_channels  # a generator with noise maps (0 for the paper's)
    noise_rows = np.random.default_rng(0).standard_normal((256, k_noise, 32, 32), dtype=np.float32) if k_noise else None
    k_species = model.config.species_channels  # the tower generator's gen images by species
    species = gen_species_images(sel_cands, axis).astype(np.float32) if k_species else None

    res: dict[str, object] = {"input": args.input, "events": stop, "gen_jets": len(pt), "jets_in_domain": n_jets,
                              "threads": args.threads, "torch": torch.__version__, "cpus": os.cpu_count(),
                              "load_average_1min_at_start": os.getloadavg()[0]}
    print(f"{args.input}: {stop} events, {len(pt)} gen jets, {n_jets} in the image domain; {args.threads} threads; "
          f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f} (timings are only meaningful on an idle machine)")

    t_e2e = best_of(lambda: sim.simulate(events), args.repeat)
    res["end_to_end_jets_per_s"] = n_jets / t_e2e
    print(f"\nend to end (ImageGANSimulator.simulate): {n_jets / t_e2e:,.0f} jets/s ({t_e2e:.3f} s)")

    class Head(torch.nn.Module):
        """All outputs of the generator from the tensors it takes (noise, species only where it has them): traceable."""

        def __init__(self, generator: torch.nn.Module) -> None:
            super().__init__()
            self.generator = generator

        def forward(self, x: torch.Tensor, c: torch.Tensor, *extra: torch.Tensor) -> torch.Tensor:
            return self.generator.head(x, c, extra[0] if k_noise else None, extra[-1] if k_species else None)

    def gen_all(bs: int, net=None, channels_last: bool = False) -> None:  # noqa: ANN001
        net = net or Head(model.generator)
        with torch.inference_mode():
            for s in range(0, n_jets, bs):
                xx = torch.from_numpy(x[s:s + bs])[:, None]
                if channels_last:
                    xx = xx.contiguous(memory_format=torch.channels_last)
                extra = [torch.randn(len(xx), k_noise, 32, 32)] if k_noise else []
                extra += [torch.from_numpy(species[s:s + bs])] if k_species else []
                net(xx, condition_features(cond[s:s + bs]), *extra)

    generated = generate_images(model, x, cond, events.keys, sel_counts, species).astype(np.float64)
    stages = {
        "pixelise": lambda: pixelise(sel_cands, axis, SEED000_DETECTOR),
        "generator (256 rows/call)": lambda: gen_all(256),
        "mask uniforms (rng)": lambda: uniforms(events.keys, sel_offsets, 1024, domain=DOMAIN_MASK),
        "observables (image kernel)": lambda: image_observables(generated, SEED000_DETECTOR, ObservablesConfig(),
                                                                jet=axis),
    }
    if towers:
        def tower_draws() -> None:  # as generate_images takes them, per block of 256 jets
            for s in range(0, n_jets, 256):
                e = min(s + 256, n_jets)
                ev0 = int(np.searchsorted(sel_offsets, s, side="right")) - 1
                ev1 = int(np.searchsorted(sel_offsets, e, side="left"))
                towers = batch_towers(cond[s:e, 1].astype(np.float64), cond[s:e, 2].astype(np.float64))
                keyed_tower_draws(towers, events.keys[ev0:ev1], sel_offsets[ev0:ev1 + 1] - sel_offsets[ev0],
                                  s - sel_offsets[ev0], e - s)

        stages.update({
            "gen images by species": lambda: gen_species_images(sel_cands, axis),
            "tower labels (ECAL + HCAL)": lambda: [batch_towers(cond[s:s + 256, 1].astype(np.float64),
                                                                cond[s:s + 256, 2].astype(np.float64))
                                                   for s in range(0, n_jets, 256)],
            "tower draws (rng, labels included)": tower_draws,
        })
    print("\nwhere the time goes (each stage alone, same jets):")
    res["stages_s"] = {}
    for name, fn in stages.items():
        dt = best_of(fn, args.repeat)
        res["stages_s"][name] = dt
        print(f"  {name:28s} {dt:7.3f} s  {n_jets / dt:12,.0f} jets/s  ({100 * dt / t_e2e:5.1f}% of end to end)")

    print("\ngenerator batch-size scaling (rows per torch call):")
    res["generator_batch_scaling"] = {}
    for bs in (16, 64, 128, 256, 512, 1024, 4096):
        dt = best_of(lambda: gen_all(bs), args.repeat)
        res["generator_batch_scaling"][bs] = n_jets / dt
        print(f"  batch {bs:5d}: {n_jets / dt:10,.0f} jets/s")

    print("\ngenerator variants (256 rows/call):")
    res["generator_variants"] = {}
    cl = Head(model.generator.to(memory_format=torch.channels_last))
    dt = best_of(lambda: gen_all(256, cl, channels_last=True), args.repeat)
    res["generator_variants"]["channels_last"] = n_jets / dt
    print(f"  channels-last:            {n_jets / dt:10,.0f} jets/s")
    model.generator.to(memory_format=torch.contiguous_format)
    with torch.inference_mode():
        example = (torch.from_numpy(x[:256])[:, None], condition_features(cond[:256]),
                   *([torch.from_numpy(noise_rows)] if k_noise else []),
                   *([torch.from_numpy(species[:256])] if k_species else []))
        traced = torch.jit.freeze(torch.jit.trace(Head(model.generator.eval()).eval(), example))
    dt = best_of(lambda: gen_all(256, traced), args.repeat)
    res["generator_variants"]["jit_trace_freeze"] = n_jets / dt
    print(f"  TorchScript trace+freeze: {n_jets / dt:10,.0f} jets/s")

    rate = res["end_to_end_jets_per_s"]
    print(f"\nend to end {rate:,.0f} jets/s = {rate / SEED_JETS_PER_S:.0f} x the seed's 100 jets/s (Xeon CPU), "
          f"{rate / GOAL_JETS_PER_S:.2f} x our goal of {GOAL_JETS_PER_S:,.0f} jets/s on 2 cores")
    res["ratio_to_seed"] = rate / SEED_JETS_PER_S
    res["ratio_to_goal"] = rate / GOAL_JETS_PER_S
    Path(args.json).parent.mkdir(parents=True, exist_ok=True)
    Path(args.json).write_text(json.dumps(res, indent=1, default=float) + "\n")
    print(f"written: {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
