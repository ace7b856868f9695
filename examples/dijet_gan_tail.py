"""DiJetGAN tail extrapolation (seed 001, Fig. 7): train on mjj > 1.5 TeV, generate many
events, fit the four-parameter function in 2.5-10 TeV to both the reference and the GAN
sample, and compare the chi2/ndf (the seed reports 1.3 for its reference).

Also prints the per-feature chi2/ndf of GAN vs held-out reference events and writes:
features.png (the 7 features), mjj.png (reference vs GAN), fit_reference.png, fit_gan.png.

Usage: python examples/dijet_gan_tail.py --model GAN.safetensors --reference REF.root [...]
       [--collection Jet] [--events 1000000] [--out-dir gan_tail]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import hist
import numpy as np

from hepfastsim.analysis.dijet import DijetSelection, mass_bins
from hepfastsim.analysis.dijet_fit import FitConfig, fit_dijet_spectrum, plot_fit
from hepfastsim.models.dijet_gan import FEATURES, DijetGAN, chi2_per_feature, dijet_mass, load_dijet_features


def selected_mjj(features: np.ndarray, rng: np.random.Generator, selection: DijetSelection) -> tuple[np.ndarray, np.ndarray]:
    """mjj of events passing |Delta eta| < 1.3 (the bump-hunt cut; both jets already pass pT,
    |eta|), and the mask of those events."""
    from hepfastsim.models.dijet_gan import from_features

    jets = from_features(features, rng)
    keep = np.abs(jets["j1_eta"] - jets["j2_eta"]) < selection.max_delta_eta
    return dijet_mass(jets)[keep], keep


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", required=True)
    parser.add_argument("--reference", nargs="+", required=True)
    parser.add_argument("--collection", default=None, help="default: the model's training collection")
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--fit-min", type=float, default=2500.0)
    parser.add_argument("--fit-max", type=float, default=10000.0)
    parser.add_argument("--out-dir", type=Path, default=Path("gan_tail"))
    args = parser.parse_args()
    out = args.out_dir
    out.mkdir(parents=True, exist_ok=True)

    gan = DijetGAN.load(args.model)
    cuts = gan.metadata.get("selection", {"min_pt": 250.0, "min_mjj": 1500.0})
    collection = args.collection or gan.metadata.get("collection", "Jet")
    reference = load_dijet_features(args.reference, collection, cuts["min_pt"], min_mjj=cuts["min_mjj"])
    generated = gan.sample_features(args.events, seed=123)
    weights = gan.weights(generated)  # 1, or the importance weights of a tail-enhanced model
    gen_jets_ok = (np.minimum(generated[:, 0], generated[:, 3]) > cuts["min_pt"]) & (np.abs(generated[:, [1, 4]]).max(axis=1) < 2.5)
    generated, weights = generated[gen_jets_ok], weights[gen_jets_ok]
    rng = np.random.default_rng(0)
    ref_mjj, _ = selected_mjj(reference, rng, DijetSelection())
    gan_mjj, keep = selected_mjj(generated, rng, DijetSelection())
    gan_w = weights[keep]
    above = gan_mjj > cuts["min_mjj"]
    gan_mjj, gan_w = gan_mjj[above], gan_w[above]
    # equal effective statistics, as in training: (sum w)^2 / sum w^2 generated events per reference event
    ess_fraction = weights.sum() ** 2 / (len(weights) * np.sum(weights**2))
    n_cmp = min(len(generated), int(np.ceil(len(reference) / ess_fraction)))
    chi2 = chi2_per_feature(reference, generated[:n_cmp], candidate_weights=weights[:n_cmp])

    edges = mass_bins(cuts["min_mjj"], 14000)
    h_ref = hist.Hist(hist.axis.Variable(edges, name="mjj"), storage=hist.storage.Weight()).fill(ref_mjj)
    scale = len(ref_mjj) / gan_w.sum()  # GAN normalised to the reference above the training threshold
    h_gan = hist.Hist(hist.axis.Variable(edges, name="mjj"), storage=hist.storage.Weight()).fill(gan_mjj, weight=gan_w)
    summary = {"reference_events": int(len(ref_mjj)), "gan_events": int(len(gan_mjj)), "gan_tail_power": gan.tail_power,
               "chi2_per_ndf_features": chi2}
    for name, h in (("reference", h_ref), ("gan", h_gan)):
        # each sample is fitted with its own statistics, as in the seed's Fig. 7 (a weighted
        # GAN sample through its sums of squared weights)
        weighted = not np.allclose(h.variances(), h.values())
        result = fit_dijet_spectrum(edges, h.values(), h.variances() if weighted else None, FitConfig(args.fit_min, args.fit_max))
        plot_fit(result, out / f"fit_{name}.png", title=f"{name} ({collection})")
        summary[f"fit_{name}"] = {"chi2": result.chi2, "ndf": result.ndf, "chi2_per_ndf": result.chi2 / max(result.ndf, 1),
                                  "events_in_range": float(result.counts.sum())}

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import mplhep as hep

    plt.style.use(hep.style.CMS)
    fig, axes = plt.subplots(2, 4, figsize=(24, 11))
    for i, (ax, name) in enumerate(zip(axes.flat, FEATURES)):
        lo, hi = np.percentile(reference[:, i], [0.5, 99.5])
        bins = np.linspace(lo, hi, 41)
        ax.hist(reference[:, i], bins, density=True, histtype="stepfilled", color="lightgray", label="Reference")
        ax.hist(generated[:, i], bins, weights=weights, density=True, histtype="step", color="black", lw=2, label="DiJetGAN")
        ax.set_xlabel(name)
        ax.text(0.05, 0.9, rf"$\chi^2$/ndf = {chi2[name]:.2f}", transform=ax.transAxes, fontsize=16)
    axes.flat[-1].axis("off")
    axes.flat[0].legend(fontsize=16)
    fig.savefig(out / "features.png", dpi=70, bbox_inches="tight")
    plt.close(fig)

    fig, ax = plt.subplots(figsize=(10, 8))
    hep.histplot(h_ref.values(), edges, yerr=np.sqrt(h_ref.variances()), histtype="errorbar", color="black", label=f"Reference ({len(ref_mjj):,})", ax=ax)
    hep.histplot(h_gan.values() * scale, edges, color="tab:red", label=f"DiJetGAN ({len(gan_mjj):,}, normalised)", ax=ax)
    ax.set_yscale("log")
    ax.set_xlabel(r"$m_{jj}$ [GeV]")
    ax.set_ylabel("Events / bin")
    ax.legend()
    hep.cms.label("Private work", data=False, ax=ax, rlabel="13 TeV")
    fig.savefig(out / "mjj.png", dpi=80, bbox_inches="tight")
    plt.close(fig)
    (out / "summary.json").write_text(json.dumps(summary, indent=2))
    print(json.dumps(summary, indent=2))


if __name__ == "__main__":
    main()
