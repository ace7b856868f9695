"""Validate LAGAN / DCGAN jet images and the jet-image CNN on held-out reference images (seed 004 / 002).

Writes into this folder: pixel-intensity spectra, m(I), pT(I), tau21(I) per class, average
images per class and their differences, ROC curves, ``summary.json`` / ``summary.md``, and
(with ``--update-metadata``) the computed figures into the model JSON files.

Usage (the figures in this folder)::

    python examples/lagan_validation/validate.py --lagan hepfastsim/models/data/lagan \\
        --dcgan /work/samples/lagan/models/dcgan --cnn hepfastsim/models/data/jet_cnn \\
        --cnn-gan hepfastsim/models/data/jet_cnn_lagan --w-test W_TEST... --qcd-test QCD_TEST... \\
        --w-floor W_OTHER... --qcd-floor QCD_OTHER... --cache-dir /work/samples/lagan/cache --update-metadata
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from hepfastsim.cli.train_jet_cnn import tagger_aucs
from hepfastsim.evaluation.image_gan_scores import lagan_observables, lagan_score
from hepfastsim.evaluation.plots import _label, plot_distribution
from hepfastsim.models.image_samples import build_images
from hepfastsim.models.jet_cnn import load_jet_cnn, predict
from hepfastsim.models.lagan import ImageGenerator

HERE = Path(__file__).parent
CLASSES = {"qcd": 0, "w": 1}


def mass_peak(mass: np.ndarray, lo: float = 50.0, hi: float = 110.0, width: float = 2.5) -> float:
    """Position (GeV) of the highest bin of m in [lo, hi], refined by a parabola through 3 bins;
    NaN when fewer than 5% of the jets lie in the window (no peak to speak of)."""
    edges = np.arange(lo, hi + width, width)
    h, _ = np.histogram(mass, edges)
    if h.sum() < 0.05 * np.isfinite(mass).sum():
        return float("nan")
    h = np.convolve(h, [0.25, 0.5, 0.25], mode="same")  # light smoothing against bin noise
    k = int(np.clip(np.argmax(h), 1, len(h) - 2))
    y0, y1, y2 = h[k - 1], h[k], h[k + 1]
    denom = y0 - 2 * y1 + y2
    shift = 0.5 * (y0 - y2) / denom if denom != 0 else 0.0
    return float(edges[k] + width * (0.5 + shift))


def plot_images(path: Path, panels: list[tuple[str, np.ndarray, str]]) -> None:
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt
    from matplotlib.colors import LogNorm, TwoSlopeNorm

    fig, axes = plt.subplots(1, len(panels), figsize=(5.2 * len(panels), 4.6))
    ext = (-1.25, 1.25, -1.25, 1.25)
    for ax, (title, img, scale) in zip(np.atleast_1d(axes), panels):
        if scale == "log":
            im = ax.imshow(np.clip(img.T, 1e-3, None), origin="lower", extent=ext, norm=LogNorm(vmin=1e-3, vmax=max(img.max(), 1e-2)), cmap="jet")
        else:
            v = float(np.abs(img).max()) or 1.0
            im = ax.imshow(img.T, origin="lower", extent=ext, norm=TwoSlopeNorm(0.0, -v, v), cmap="seismic")
        ax.set_title(title, fontsize=11)
        ax.set_xlabel("[transformed] $\\eta$")
        ax.set_ylabel("[transformed] $\\phi$")
        fig.colorbar(im, ax=ax, label="pT per pixel [GeV]")
    fig.tight_layout()
    fig.savefig(path, dpi=70)
    plt.close(fig)


def plot_rocs(path: Path, y: np.ndarray, scores: dict[str, np.ndarray]) -> None:
    import matplotlib.pyplot as plt
    import mplhep as hep
    from sklearn.metrics import roc_auc_score, roc_curve

    with plt.style.context(hep.style.CMS):
        fig, ax = plt.subplots(figsize=(9, 8))
        for name, s in scores.items():
            fpr, tpr, _ = roc_curve(y, s)
            ok = fpr > 0
            ax.plot(tpr[ok], 1.0 / fpr[ok], label=f"{name} (AUC {roc_auc_score(y, s):.3f})")
        ax.set_yscale("log")
        ax.set_xlabel("W efficiency")
        ax.set_ylabel("1 / QCD efficiency")
        ax.set_xlim(0.1, 1.0)
        ax.legend(fontsize=13)
        _label(ax, "250 < pT < 300 GeV")
        fig.savefig(path, dpi=70, bbox_inches="tight")
        plt.close(fig)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--lagan", required=True)
    ap.add_argument("--dcgan", default=None)
    ap.add_argument("--cnn", default=None, help="CNN trained on reference images")
    ap.add_argument("--cnn-gan", default=None, help="CNN trained on LAGAN images")
    ap.add_argument("--w-test", nargs="+", required=True)
    ap.add_argument("--qcd-test", nargs="+", required=True)
    ap.add_argument("--w-floor", nargs="+", required=True, help="other reference W files (statistical floor of the EMD)")
    ap.add_argument("--qcd-floor", nargs="+", required=True)
    ap.add_argument("--cache-dir", default=None)
    ap.add_argument("--seed", type=int, default=123)
    ap.add_argument("--out-dir", default=str(HERE))
    ap.add_argument("--update-metadata", action="store_true")
    args = ap.parse_args()
    out = Path(args.out_dir)
    out.mkdir(parents=True, exist_ok=True)

    ref = {"w": build_images(args.w_test, "w", cache_dir=args.cache_dir).images,
           "qcd": build_images(args.qcd_test, "qcd", cache_dir=args.cache_dir).images}
    floor_imgs = {"w": build_images(args.w_floor, "w", cache_dir=args.cache_dir).images,
                  "qcd": build_images(args.qcd_floor, "qcd", cache_dir=args.cache_dir).images}
    models = {"LAGAN": args.lagan}
    if args.dcgan:
        models["DCGAN"] = args.dcgan
    gen = {}
    for name, path in models.items():
        m = ImageGenerator.load(path)
        gen[name] = {c: m.sample(k, len(ref[c]), seed=args.seed) for c, k in CLASSES.items()}
    ref_obs = {c: lagan_observables(ref[c]) for c in CLASSES}
    floor_obs = {c: lagan_observables(floor_imgs[c]) for c in CLASSES}
    gen_obs = {name: {c: lagan_observables(g[c]) for c in CLASSES} for name, g in gen.items()}

    summary: dict = {"n_reference": {c: len(ref[c]) for c in CLASSES}, "test_files": {"w": args.w_test, "qcd": args.qcd_test}}
    summary["emd_floor"] = lagan_score(floor_obs, ref_obs)
    summary["n_floor"] = {c: len(floor_imgs[c]) for c in CLASSES}
    for name in gen:
        summary[f"emd_{name}"] = lagan_score(gen_obs[name], ref_obs)
    summary["w_mass_peak_GeV"] = {"reference": mass_peak(ref_obs["w"]["mass"]),
                                  **{name: mass_peak(gen_obs[name]["w"]["mass"]) for name in gen}}
    summary["median_mass_GeV"] = {c: {"reference": float(np.nanmedian(ref_obs[c]["mass"])),
                                      **{n: float(np.nanmedian(gen_obs[n][c]["mass"])) for n in gen}} for c in CLASSES}
    summary["median_tau21"] = {c: {"reference": float(np.nanmedian(ref_obs[c]["tau21"])),
                                   **{n: float(np.nanmedian(gen_obs[n][c]["tau21"])) for n in gen}} for c in CLASSES}
    summary["occupancy"] = {c: {"reference": float((ref[c] > 1e-3).mean()),
                                **{n: float((gen[n][c] > 1e-3).mean()) for n in gen}} for c in CLASSES}

    # distributions per class
    edges = {"mass": np.linspace(0, 200, 41), "pt": np.linspace(150, 350, 41), "tau21": np.linspace(0, 1, 41)}
    xl = {"mass": "m(I) [GeV]", "pt": "$p_T$(I) [GeV]", "tau21": "$\\tau_{21}$(I)"}
    for c, cname in (("w", "W jets"), ("qcd", "QCD jets")):
        for v in ("mass", "pt", "tau21"):
            plot_distribution(out / f"{v}_{c}.png", v, ref_obs[c][v], {n: gen_obs[n][c][v] for n in gen},
                              edges[v], xlabel=xl[v], reference_label="reference (gen level)", title=cname)
        pix_edges = np.logspace(-3, np.log10(300), 41)
        plot_distribution(out / f"pixels_{c}.png", "pixel", ref[c][ref[c] > 1e-3],
                          {n: gen[n][c][gen[n][c] > 1e-3] for n in gen}, pix_edges,
                          xlabel="pixel pT [GeV]", logx=True, logy=True, reference_label="reference", title=cname)
    # average images
    for c in CLASSES:
        r = ref[c].mean(axis=0)
        g = gen["LAGAN"][c].mean(axis=0)
        plot_images(out / f"average_{c}.png", [(f"reference {c}", r, "log"), (f"LAGAN - reference ({c})", g - r, "lin"),
                                               (f"LAGAN {c}", g, "log")])
    plot_images(out / "average_w_minus_qcd.png",
                [("reference W - QCD", ref["w"].mean(0) - ref["qcd"].mean(0), "lin"),
                 ("LAGAN W - QCD", gen["LAGAN"]["w"].mean(0) - gen["LAGAN"]["qcd"].mean(0), "lin")])

    # CNN: trained on reference vs on LAGAN images, and the cut-based taggers, on the same reference images
    test = np.concatenate([ref["w"], ref["qcd"]])
    y = np.concatenate([np.ones(len(ref["w"]), bool), np.zeros(len(ref["qcd"]), bool)])
    mass = np.concatenate([ref_obs["w"]["mass"], ref_obs["qcd"]["mass"]])
    tau21 = np.concatenate([ref_obs["w"]["tau21"], ref_obs["qcd"]["tau21"]])
    scores = {}
    if args.cnn:
        cnn, _ = load_jet_cnn(args.cnn)
        scores["CNN (trained on reference)"] = predict(cnn, test)
        summary["roc_auc_reference_cnn"] = tagger_aucs(scores["CNN (trained on reference)"], mass, tau21, y)
    if args.cnn_gan:
        cnn_g, _ = load_jet_cnn(args.cnn_gan)
        scores["CNN (trained on LAGAN)"] = predict(cnn_g, test)
        summary["roc_auc_lagan_trained_cnn"] = tagger_aucs(scores["CNN (trained on LAGAN)"], mass, tau21, y)
    scores["mass window |m - 80.4|"] = -np.abs(mass - 80.4)
    scores["$\\tau_{21}$ cut"] = -np.nan_to_num(tau21, nan=1.0)
    plot_rocs(out / "roc.png", y, scores)

    (out / "summary.json").write_text(json.dumps(summary, indent=1, default=float) + "\n")
    lines = ["# LAGAN validation (held-out reference images, 250 < pT < 300 GeV, gen level)", ""]
    lines.append(f"Reference test images: W {len(ref['w'])}, QCD {len(ref['qcd'])}; the same numbers generated per model.")
    lines.append("")
    lines.append("| | EMD W | EMD QCD | score (max) |")
    lines.append("|---|---|---|---|")
    lines.append(f"| statistical floor (reference vs other reference, W {len(floor_imgs['w'])}, QCD {len(floor_imgs['qcd'])}) | "
                 f"{summary['emd_floor']['emd_w']:.3f} | {summary['emd_floor']['emd_qcd']:.3f} | {summary['emd_floor']['score']:.3f} |")
    for name in gen:
        s = summary[f"emd_{name}"]
        lines.append(f"| {name} | {s['emd_w']:.3f} | {s['emd_qcd']:.3f} | {s['score']:.3f} |")
    lines += ["", "EMD in bins of the 40 x 40 (m in 0-200 GeV, tau21 in 0-1) grid.", ""]
    lines.append("W mass peak [GeV] (NaN: under 5% of the jets in 50-110 GeV): "
                 + ", ".join(f"{k} {v:.1f}" for k, v in summary["w_mass_peak_GeV"].items()))
    lines.append("median m(I) [GeV]: " + "; ".join(
        f"{c}: " + ", ".join(f"{k} {v:.1f}" for k, v in d.items()) for c, d in summary["median_mass_GeV"].items()))
    for key, label in (("roc_auc_reference_cnn", "trained on reference"), ("roc_auc_lagan_trained_cnn", "trained on LAGAN")):
        if key in summary:
            a = summary[key]
            lines.append(f"ROC AUC, CNN {label}: {a['cnn'][0]:.4f} +- {a['cnn'][1]:.4f}; mass window {a['mass_window'][0]:.4f}; "
                         f"tau21 {a['tau21'][0]:.4f}")
    (out / "summary.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))

    if args.update_metadata:
        for name, path in models.items():
            js = Path(str(Path(path).with_suffix("")) + ".json")
            meta = json.loads(js.read_text())
            meta["validation"] = {"test_files": summary["test_files"], "n_reference": summary["n_reference"],
                                  "emd": summary[f"emd_{name}"], "emd_floor": summary["emd_floor"],
                                  "w_mass_peak_GeV": {"reference": summary["w_mass_peak_GeV"]["reference"],
                                                      "generated": summary["w_mass_peak_GeV"][name]},
                                  "median_mass_GeV": {c: {"reference": v["reference"], "generated": v[name]}
                                                      for c, v in summary["median_mass_GeV"].items()}}
            js.write_text(json.dumps(meta, indent=1, default=float) + "\n")


if __name__ == "__main__":
    main()
