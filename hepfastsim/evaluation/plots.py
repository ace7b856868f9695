"""Validation figures (hist + mplhep, CMS style, ratio panels), written as PNG files.

Each function takes already computed numbers/arrays and a path; none computes metrics.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

__all__ = ["plot_distribution", "plot_curve", "plot_response"]

_COLORS = ("#e42536", "#5790fc", "#f89c20", "#964a8b", "#9c9ca1")


def _figure(ratio: bool = True):  # noqa: ANN202
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    if ratio:
        fig, (ax, rax) = plt.subplots(2, 1, figsize=(9, 9), gridspec_kw={"height_ratios": (3, 1), "hspace": 0.05}, sharex=True)
        return fig, ax, rax
    fig, ax = plt.subplots(figsize=(9, 7))
    return fig, ax, None


def _label(ax, text: str) -> None:  # noqa: ANN001
    import mplhep as hep

    hep.cms.label(data=False, ax=ax, loc=0, rlabel=text, fontsize=14)  # data=False writes "Simulation"


def plot_distribution(
    path: str | Path,
    variable: str,
    reference: np.ndarray,
    candidates: Mapping[str, np.ndarray],
    edges: Sequence[float],
    *,
    xlabel: str,
    logy: bool = False,
    logx: bool = False,
    reference_label: str = "reference",
    title: str = "",
) -> Path:
    """Normalised histograms of ``variable`` for reference and candidates, with candidate/reference ratios."""
    import hist
    import matplotlib.pyplot as plt
    import mplhep as hep

    with plt.style.context(hep.style.CMS):
        fig, ax, rax = _figure()
        axis = hist.axis.Variable(np.asarray(edges, np.float64), name=variable, label=xlabel)
        h_ref = hist.Hist(axis, storage=hist.storage.Weight()).fill(np.asarray(reference, np.float64))
        n_ref = max(h_ref.sum().value, 1.0)
        hep.histplot(h_ref / n_ref, ax=ax, label=reference_label, color="black", histtype="errorbar", yerr=np.sqrt(h_ref.variances()) / n_ref)
        for (label, values), color in zip(candidates.items(), _COLORS):
            h = hist.Hist(axis, storage=hist.storage.Weight()).fill(np.asarray(values, np.float64))
            n = max(h.sum().value, 1.0)
            hep.histplot(h / n, ax=ax, label=label, color=color, histtype="step", linewidth=2)
            with np.errstate(invalid="ignore", divide="ignore"):
                r = (h.values() / n) / (h_ref.values() / n_ref)
                err = r * np.sqrt(1 / np.maximum(h.values(), 1) + 1 / np.maximum(h_ref.values(), 1))
            centers = axis.centers
            rax.errorbar(centers, r, yerr=err, xerr=axis.widths / 2, fmt="o", ms=3, color=color)
        ax.set_ylabel("fraction of jets")
        if logy:
            ax.set_yscale("log")
        if logx:
            ax.set_xscale("log")
        ax.legend(title=title or None, fontsize=14)
        ax.set_xlabel("")
        rax.axhline(1.0, color="black", lw=1)
        rax.set_ylim(0.5, 1.5)
        rax.set_ylabel("cand. / ref.")
        rax.set_xlabel(xlabel)
        _label(ax, "")
        path = Path(path)
        fig.savefig(path, dpi=80, bbox_inches="tight")
        plt.close(fig)
    return path


def plot_curve(
    path: str | Path,
    edges: Sequence[float],
    reference: tuple[np.ndarray, np.ndarray],
    candidates: Mapping[str, tuple[np.ndarray, np.ndarray]],
    *,
    xlabel: str,
    ylabel: str,
    logx: bool = False,
    reference_label: str = "reference",
    ratio_range: tuple[float, float] = (0.8, 1.2),
) -> Path:
    """A binned quantity (value, error) vs x for reference and candidates, with a ratio panel."""
    import matplotlib.pyplot as plt
    import mplhep as hep

    edges = np.asarray(edges, np.float64)
    centers = 0.5 * (edges[1:] + edges[:-1])
    half = 0.5 * np.diff(edges)
    with plt.style.context(hep.style.CMS):
        fig, ax, rax = _figure()
        ax.errorbar(centers, reference[0], yerr=reference[1], xerr=half, fmt="o", color="black", label=reference_label)
        for (label, (v, e)), color in zip(candidates.items(), _COLORS):
            ax.errorbar(centers, v, yerr=e, xerr=half, fmt="s", mfc="none", color=color, label=label)
            with np.errstate(invalid="ignore", divide="ignore"):
                r = v / reference[0]
                re = np.abs(r) * np.sqrt((e / v) ** 2 + (reference[1] / reference[0]) ** 2)
            rax.errorbar(centers, r, yerr=re, xerr=half, fmt="s", mfc="none", color=color)
        ax.set_ylabel(ylabel)
        ax.legend(fontsize=14)
        rax.axhline(1.0, color="black", lw=1)
        rax.set_ylim(*ratio_range)
        rax.set_ylabel("cand. / ref.")
        rax.set_xlabel(xlabel)
        if logx:
            ax.set_xscale("log")
        _label(ax, "")
        path = Path(path)
        fig.savefig(path, dpi=80, bbox_inches="tight")
        plt.close(fig)
    return path


def plot_response(
    path: str | Path,
    pt_edges: Sequence[float],
    reference: Mapping[str, tuple[np.ndarray, np.ndarray]],
    candidates: Mapping[str, Mapping[str, tuple[np.ndarray, np.ndarray]]],
    *,
    eta_label: str,
    reference_label: str = "reference",
) -> Path:
    """Response median and resolution vs gen pT (one |eta| bin), with resolution ratios.

    ``reference`` and each candidate map ``"median"`` and ``"resolution"`` to (value, error) arrays.
    """
    import matplotlib.pyplot as plt
    import mplhep as hep

    edges = np.asarray(pt_edges, np.float64)
    centers = np.sqrt(edges[1:] * edges[:-1])
    with plt.style.context(hep.style.CMS):
        fig, (ax_m, ax_r, ax_q) = plt.subplots(3, 1, figsize=(9, 11), sharex=True,
                                               gridspec_kw={"height_ratios": (2, 2, 1), "hspace": 0.06})
        for ax, key, ylabel in ((ax_m, "median", "median $p_T^{reco}/p_T^{gen}$"), (ax_r, "resolution", "resolution (half 16-84%)")):
            v, e = reference[key]
            ax.errorbar(centers, v, yerr=e, fmt="o", color="black", label=reference_label)
            for (label, cand), color in zip(candidates.items(), _COLORS):
                ax.errorbar(centers, cand[key][0], yerr=cand[key][1], fmt="s", mfc="none", color=color, label=label)
            ax.set_ylabel(ylabel, fontsize=16)
        ax_m.legend(fontsize=13, title=eta_label, title_fontsize=13)
        for (label, cand), color in zip(candidates.items(), _COLORS):
            with np.errstate(invalid="ignore", divide="ignore"):
                r = cand["resolution"][0] / reference["resolution"][0]
            ax_q.plot(centers, r, "s", mfc="none", color=color)
        ax_q.axhline(1.0, color="black", lw=1)
        ax_q.axhspan(0.95, 1.05, color="grey", alpha=0.2)
        ax_q.set_ylim(0.7, 1.3)
        ax_q.set_ylabel("res. ratio", fontsize=16)
        ax_q.set_xscale("log")
        ax_q.set_xlabel("gen jet $p_T$ [GeV]")
        _label(ax_m, "")
        path = Path(path)
        fig.savefig(path, dpi=80, bbox_inches="tight")
        plt.close(fig)
    return path
