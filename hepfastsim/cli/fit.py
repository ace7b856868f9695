"""``hepfastsim fit SPECTRUM``: the four-parameter dijet fit, a PNG with pulls and a JSON."""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from rich.console import Console

from hepfastsim.analysis.dijet_fit import FitConfig, fit_dijet_spectrum, plot_fit
from hepfastsim.cli.dijet import read_histogram


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "fit",
        help="four-parameter fit of a dijet mass spectrum",
        description="Fit p0 (1-x)^p1 / x^(p2 + p3 ln x), x = mjj/sqrt(s), to the histogram in SPECTRUM "
        "(a ROOT file, e.g. from 'hepfastsim dijet') as an extended binned likelihood; "
        "write fit.png (spectrum, fit, pulls) and fit.json (parameters, uncertainties, chi2/ndf).",
    )
    p.add_argument("spectrum", metavar="SPECTRUM", help="ROOT file with the mjj histogram")
    p.add_argument("--hist", default="mjj", help="histogram name (default: %(default)s)")
    p.add_argument("--min", type=float, default=None, help="lower edge of the fit range in GeV")
    p.add_argument("--max", type=float, default=None, help="upper edge of the fit range in GeV")
    p.add_argument("--sqrt-s", type=float, default=13000.0, help="centre-of-mass energy in GeV")
    p.add_argument("--out-dir", default=".", help="where fit.png and fit.json go (default: %(default)s)")
    p.add_argument("--label", default="Private work", help="text after \"CMS Simulation\" on the plot")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    h = read_histogram(args.spectrum, args.hist)
    edges = h.axes[0].edges
    counts = np.asarray(h.values(), dtype=np.float64)
    variances = h.variances()
    weighted = variances is not None and not np.allclose(variances, counts)
    result = fit_dijet_spectrum(
        edges, counts, variances if weighted else None, FitConfig(args.min, args.max, args.sqrt_s)
    )
    out = Path(args.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    plot_fit(result, out / "fit.png", label=args.label, title=Path(args.spectrum).name)
    result.to_json(out / "fit.json")
    console = Console()
    console.print(f"fit range {result.fit_range[0]:g}-{result.fit_range[1]:g} GeV, valid: {result.valid}")
    for name, value in result.params.items():
        console.print(f"  {name} = {value:.5g} ± {result.errors[name]:.2g}")
    console.print(f"  chi2/ndf = {result.chi2:.2f}/{result.ndf} = {result.chi2 / max(result.ndf, 1):.3f}")
    console.print(f"wrote {out / 'fit.png'} and {out / 'fit.json'}")
    return 0
