"""What the image GAN's independent per-pixel mask costs, measured on the reference itself.

Reads the reference reco jets that ``hepfastsim validate --level images`` judges (matched to a
gen jet with pT > 20 GeV, |eta| < 2.5), redraws their tower-placed neutral PF candidates
(photons: ECAL towers; neutral hadrons: HCAL towers) with an independent mask of the same
per-pixel expectation (:mod:`hepfastsim.evaluation.mask_limit`), and writes the W1 ratios
against the unchanged reference (``mask_limit.md``, ``mask_limit.json``) and a bar chart
(``mask_limit.png``, CMS style) into ``--out``.

    python examples/image_gan_mask_limit.py qcd_mu30_part25.root --out examples/image_gan_validation/
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np


def main() -> int:
    from rich.console import Console

    from hepfastsim.evaluation.mask_limit import independent_tower_images, mask_limit_table, reference_constituents
    from hepfastsim.evaluation.validate_images import MAX_W1_RATIO, SEED_CRITERION
    from hepfastsim.jets.images import SEED000_DETECTOR, pixelise

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("reference", help="NanoAOD-like file with Jet, JetPFCands, PFCands (pdgId) and GenJet")
    p.add_argument("--out", default="mask_limit", help="output directory")
    p.add_argument("--max-jets", type=int, default=None, help="use at most this many jets (default: all)")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--tree", default="Events")
    args = p.parse_args()
    console = Console(stderr=True)
    with console.status("reference jets"):
        cands, axis, event = reference_constituents(args.reference, args.tree, args.max_jets)
    if len(axis) < 100:
        raise SystemExit(f"{args.reference}: only {len(axis)} matched in-domain reco jets; need at least 100")
    rng = np.random.default_rng(args.seed)
    with console.status(f"redrawing the tower-placed candidates of {len(axis):,} jets"):
        variants = {
            "photons (ECAL towers)": independent_tower_images(cands, axis, rng, {22: "ecal"}),
            "neutral hadrons (HCAL towers)": independent_tower_images(cands, axis, rng, {130: "hcal"}),
            "both": independent_tower_images(cands, axis, rng),
        }
    with console.status("W1 ratios"):
        table = mask_limit_table(pixelise(cands, axis, SEED000_DETECTOR), variants, axis, event, seed=args.seed)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    variables = list(next(iter(table.values()))["w1_ratio"])
    lines = [f"# Independent mask on the reference: {args.reference}, {len(axis):,} jets, seed {args.seed}", "",
             "W1 ratio of each variable, reference images with their tower-placed candidates redrawn by an "
             "independent per-pixel mask, against the reference images.", "",
             "| redrawn | " + " | ".join(variables) + " | criterion mean / max | total 16-84% half-width |",
             "|---" * (len(variables) + 3) + "|"]
    for name, row in table.items():
        lines.append(f"| {name} | " + " | ".join(f"{row['w1_ratio'][v]:.2f}" for v in variables)
                     + f" | {row['criterion_mean']:.2f} / {row['criterion_max']:.2f} | "
                     f"{row['total_half_width']:.3f} (reference {row['reference_total_half_width']:.3f}) |")
    (out / "mask_limit.md").write_text("\n".join(lines) + "\n")
    (out / "mask_limit.json").write_text(json.dumps({"reference": args.reference, "jets": int(len(axis)),
                                                     "seed": args.seed, "table": table}, indent=1) + "\n")
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import mplhep

    plt.style.use(mplhep.style.CMS)
    fig, ax = plt.subplots(figsize=(12, 7))
    crit = list(SEED_CRITERION)
    width = 0.8 / len(table)
    for k, (name, row) in enumerate(table.items()):
        ax.bar(np.arange(len(crit)) + (k - (len(table) - 1) / 2) * width, [row["w1_ratio"][v] for v in crit],
               width, label=name)
    ax.axhline(MAX_W1_RATIO, color="k", ls="--", label=f"criterion ({MAX_W1_RATIO:g})")
    ax.set_xticks(np.arange(len(crit)), crit, rotation=30)
    ax.set_ylabel("W1 ratio to the reference")
    ax.legend(fontsize=14)
    mplhep.cms.label(ax=ax, llabel="Simulation", data=False, rlabel=f"{len(axis):,} jets")
    fig.tight_layout()
    fig.savefig(out / "mask_limit.png", dpi=100)
    Console().print("\n".join(lines), markup=False, highlight=False)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
