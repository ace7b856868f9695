"""The whole dijet chain: reference QCD (+ a Z' resonance) -> fast simulation -> dijet
selection -> four-parameter fit -> plots.

1. ``hepfastsim generate`` makes QCD dijet events (pT-hat > 600 GeV) and Z' -> qq events
   (unless --qcd / --zprime give existing files);
2. ``hepfastsim convert`` adds the fast-simulated FastJet collection;
3. the coffea DijetProcessor (via coffea's Runner) selects dijets on the reference ``Jet``
   and on ``FastJet``;
4. the four-parameter fit of each spectrum, and of fast-simulated QCD with the Z' injected
   (a fraction --signal-fraction of the selected QCD events), with pulls.

Writes PNGs and a JSON summary to --out-dir. Usage:

    python examples/dijet_bump_hunt.py --out-dir dijet_example            # generates small samples
    python examples/dijet_bump_hunt.py --qcd qcd.root --zprime zp.root --out-dir dijet_example
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import warnings
from pathlib import Path

import hist
import numpy as np


def run(cmd: list[str]) -> None:
    print("$", " ".join(cmd))
    subprocess.run(cmd, check=True)


def spectrum(files: list[Path], collection: str) -> hist.Hist:
    from coffea import processor
    from coffea.nanoevents import NanoAODSchema

    from processors.dijet import DijetProcessor

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        out = processor.Runner(executor=processor.IterativeExecutor(status=False), schema=NanoAODSchema)(
            {"d": [str(f) for f in files]}, DijetProcessor(collection=collection), treename="Events"
        )
    return out["d"]["mjj"]


def compare_plot(ref: hist.Hist, fast: hist.Hist, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import mplhep as hep

    plt.style.use(hep.style.CMS)
    fig, (ax, axr) = plt.subplots(2, 1, figsize=(10, 10), sharex=True, gridspec_kw={"height_ratios": [3, 1], "hspace": 0.05})
    edges = ref.axes[0].edges
    hep.histplot(ref.values(), edges, yerr=np.sqrt(ref.variances()), ax=ax, label="Reference chain (Jet)", histtype="errorbar", color="black")
    hep.histplot(fast.values(), edges, yerr=np.sqrt(fast.variances()), ax=ax, label="Fast simulation (FastJet)", color="tab:red")
    ax.set_yscale("log")
    ax.set_ylabel("Events / bin")
    ax.legend()
    hep.cms.label("Private work", ax=ax, data=False, rlabel="13 TeV")
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = fast.values() / ref.values()
        err = ratio * np.sqrt(fast.variances() / fast.values() ** 2 + ref.variances() / ref.values() ** 2)
    centres = 0.5 * (edges[1:] + edges[:-1])
    axr.errorbar(centres, ratio, yerr=err, fmt="o", color="tab:red")
    axr.axhline(1, color="black")
    axr.set_ylim(0.5, 1.5)
    axr.set_ylabel("Fast / ref.")
    axr.set_xlabel(r"$m_{jj}$ [GeV]")
    lo = edges[np.flatnonzero(ref.values() > 0)[0]]
    hi = edges[np.flatnonzero(ref.values() > 0)[-1] + 1]
    axr.set_xlim(lo, hi)
    fig.savefig(path, dpi=100, bbox_inches="tight")
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--qcd", nargs="*", type=Path, help="existing reference QCD files")
    parser.add_argument("--zprime", nargs="*", type=Path, help="existing reference Z' files")
    parser.add_argument("--qcd-events", type=int, default=1500)
    parser.add_argument("--zprime-events", type=int, default=300)
    parser.add_argument("--zprime-mass", type=float, default=2500.0)
    parser.add_argument("--signal-fraction", type=float, default=0.03, help="Z' events injected / selected QCD events")
    parser.add_argument("--model", default="kinematics", help="fast-simulation model for convert (kinematics: the default of convert)")
    parser.add_argument("--fit-min", type=float, default=1500.0)
    parser.add_argument("--out-dir", type=Path, default=Path("dijet_example"))
    args = parser.parse_args()
    out = args.out_dir
    out.mkdir(parents=True, exist_ok=True)
    exe = [sys.executable, "-m", "hepfastsim.cli.main"]

    qcd = args.qcd or [out / "qcd.root"]
    if not args.qcd and not qcd[0].exists():
        run([*exe, "generate", "--process", "qcd", "--events", str(args.qcd_events), "--pthat-min", "600", "--no-bias", "--seed", "11", "--out", str(qcd[0])])
    zprime = args.zprime or [out / "zprime.root"]
    if not args.zprime and not zprime[0].exists():
        run([*exe, "generate", "--process", "zprime", "--mass", str(args.zprime_mass), "--events", str(args.zprime_events), "--seed", "12", "--out", str(zprime[0])])

    converted = {}
    for label, files in (("qcd", qcd), ("zprime", zprime)):
        converted[label] = []
        for f in files:
            dest = out / f"{f.stem}_fastsim.root"
            run([*exe, "convert", str(f), str(dest), "--model", args.model, "--overwrite", "--quiet"])
            converted[label].append(dest)

    from hepfastsim.analysis.dijet_fit import FitConfig, fit_dijet_spectrum, plot_fit

    ref_qcd = spectrum(converted["qcd"], "Jet")
    fast_qcd = spectrum(converted["qcd"], "FastJet")
    fast_zp = spectrum(converted["zprime"], "FastJet")
    compare_plot(ref_qcd, fast_qcd, out / "mjj_reference_vs_fastsim.png")

    n_signal = args.signal_fraction * fast_qcd.sum().value
    injected = fast_qcd + fast_zp * (n_signal / fast_zp.sum().value)
    summary = {}
    for name, h in (("reference_qcd", ref_qcd), ("fastsim_qcd", fast_qcd), ("fastsim_qcd_plus_zprime", injected)):
        weighted = not np.allclose(h.variances(), h.values())
        result = fit_dijet_spectrum(h.axes[0].edges, h.values(), h.variances() if weighted else None, FitConfig(fit_min=args.fit_min))
        plot_fit(result, out / f"fit_{name}.png", title=name.replace("_", " "))
        result.to_json(out / f"fit_{name}.json")
        centres = 0.5 * (result.edges[1:] + result.edges[:-1])
        peak = int(np.argmax(result.pulls))
        summary[name] = {
            "events": float(h.sum().value),
            "chi2": result.chi2, "ndf": result.ndf, "chi2_per_ndf": result.chi2 / max(result.ndf, 1),
            "max_pull": float(result.pulls[peak]), "max_pull_at_gev": float(centres[peak]),
        }
        print(f"{name:26s} events {h.sum().value:9.1f}  chi2/ndf = {result.chi2:6.1f}/{result.ndf} = {result.chi2 / max(result.ndf, 1):.2f}  "
              f"max pull {result.pulls[peak]:+.1f} at {centres[peak]:.0f} GeV")
    (out / "summary.json").write_text(json.dumps(summary, indent=2))
    print(f"plots and fits in {out}/")


if __name__ == "__main__":
    main()
