"""``hepfastsim validate --level images``: the seed-000 image-GAN validation (arXiv:1805.00850, figs. 3-7).

Examples::

    hepfastsim convert ref.root out.root --model image-gan
    hepfastsim validate --level images --reference ref.root --candidate out.root --out validation_images/

Reference: the reco jets of ``--reference`` matched to a gen jet inside the model domain (gen
pT > 20 GeV, |eta| < 2.5), their images built from their own PF candidates (``JetPFCands``)
exactly as in training (:mod:`hepfastsim.models.image_gan_train`) and their observables from
those images with the same kernel the simulator uses; ``pt`` and ``mass`` are ``Jet_pt`` and
``Jet_mass``. Candidate: the ``FastJet`` jets of ``--candidate`` with ``fromImage == 1``
attached to the same gen jets (same event, same ``genJetIdx``), so both sides describe the
same gen jets.

Metrics: W1 per variable as a ratio to the statistical floor
(:func:`hepfastsim.evaluation.metrics.w1_ratio`), a classifier two-sample AUC on
[gen pT, gen eta, nPU, reco variables] (:func:`~hepfastsim.evaluation.metrics.classifier_auc`),
the fraction of in-domain gen jets with a reco jet. Figures: joint gen/reco pixel intensities
(fig. 3; the generated images are made again here from the reference file's gen images with
the image-GAN weights in use: ``$HEPFASTSIM_IMAGE_GAN_WEIGHTS`` or the shipped model), ring
intensities (fig. 4) and their quantiles vs gen pT (fig. 5), pTD, major/minor axes, tau21,
tau32 (fig. 6) and their quantiles vs gen pT (fig. 7), plus pT response and mass.
Writes PNGs, ``summary.md`` and ``summary.json`` into ``--out``.
"""

from __future__ import annotations

import argparse
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import awkward as ak
import numpy as np

__all__ = ["VARIABLES", "SEED_CRITERION", "ImageJets", "reference_jets", "candidate_jets", "compare", "run"]

#: variable -> (axis label, histogram edges, log x); the order of the summary table
VARIABLES: dict[str, tuple[str, np.ndarray, bool]] = {
    "pt": ("jet $p_T$ [GeV]", np.geomspace(15, 3000, 41), True),
    "response": ("$p_T^{reco} / p_T^{gen}$", np.linspace(0.4, 1.6, 49), False),
    "mass": ("jet mass [GeV]", np.geomspace(1, 500, 41), True),
    "total": ("total image intensity", np.linspace(0.4, 1.4, 51), False),
    "ring0": ("ring intensity $\\Delta R < 0.05$", np.linspace(0, 1.1, 45), False),
    "ring1": ("ring intensity $0.05 < \\Delta R < 0.10$", np.linspace(0, 0.8, 41), False),
    "ring2": ("ring intensity $0.10 < \\Delta R < 0.15$", np.linspace(0, 0.5, 41), False),
    "ring3": ("ring intensity $0.15 < \\Delta R < 0.25$", np.linspace(0, 0.6, 41), False),
    "pTD": ("$p_TD$", np.linspace(0, 1, 41), False),
    "majorAxis": ("major axis", np.linspace(0, 0.12, 41), False),
    "minorAxis": ("minor axis", np.linspace(0, 0.08, 41), False),
    "tau21": ("$\\tau_{21}$", np.linspace(0, 1, 41), False),
    "tau32": ("$\\tau_{32}$", np.linspace(0, 1, 41), False),
    "nPixels": ("non-empty pixels", np.arange(-0.5, 80.5, 2), False),
}
#: variables judged against the issue's criterion (W1 ratio <= 2): rings and observables
SEED_CRITERION = ("ring0", "ring1", "ring2", "ring3", "pTD", "majorAxis", "minorAxis", "tau21", "tau32")
MAX_W1_RATIO = 2.0
PT_EDGES = np.array([20, 30, 45, 70, 100, 150, 220, 330, 500, 800, 1300, 3000], np.float64)
_OBS = {"pTD": "ptd", "majorAxis": "major", "minorAxis": "minor", "tau21": "tau21", "tau32": "tau32",
        "ring0": "ring0", "ring1": "ring1", "ring2": "ring2", "ring3": "ring3", "nPixels": "n_constituents"}


@dataclass
class ImageJets:
    """One row per reco jet: ``values`` (variable -> array), gen pT / eta (GeV), nPU, event id,
    gen-jet index in the event."""

    values: dict[str, np.ndarray]
    gen_pt: np.ndarray
    gen_eta: np.ndarray
    n_pu: np.ndarray
    event: np.ndarray
    gen_index: np.ndarray
    in_domain_gen_jets: int = 0

    def select(self, keep: np.ndarray) -> ImageJets:
        return ImageJets({k: v[keep] for k, v in self.values.items()}, self.gen_pt[keep], self.gen_eta[keep],
                         self.n_pu[keep], self.event[keep], self.gen_index[keep], self.in_domain_gen_jets)

    def key(self) -> np.ndarray:
        return self.event.astype(np.int64) * 1000 + self.gen_index.astype(np.int64)


def _image_obs(images: np.ndarray, cond: np.ndarray) -> dict[str, np.ndarray]:
    from hepfastsim.jets.images import SEED000_DETECTOR
    from hepfastsim.jets.observables import ObservablesConfig, image_observables

    out: dict[str, list[np.ndarray]] = {k: [] for k in (*_OBS, "raw_pt")}
    for s in range(0, len(images), 5000):
        axis = ak.zip({"pt": cond[s:s + 5000, 0].astype(np.float64), "eta": cond[s:s + 5000, 1].astype(np.float64),
                       "phi": cond[s:s + 5000, 2].astype(np.float64)})
        obs = image_observables(images[s:s + 5000].astype(np.float64), SEED000_DETECTOR, ObservablesConfig(), jet=axis)
        for k, name in _OBS.items():
            out[k].append(np.asarray(ak.to_numpy(obs[name]), np.float64))
        out["raw_pt"].append(np.asarray(ak.to_numpy(obs.pt), np.float64))
    return {k: np.concatenate(v) if v else np.zeros(0) for k, v in out.items()}


def _count_domain_gen_jets(path: str, tree: str, max_events: int | None) -> tuple[int, int]:
    import uproot

    with uproot.open(path) as f:
        t = f[tree]
        stop = t.num_entries if max_events is None else min(max_events, t.num_entries)
        g = t.arrays(["GenJet_pt", "GenJet_eta"], entry_stop=stop)
    return int(ak.sum((g.GenJet_pt > 20.0) & (abs(g.GenJet_eta) < 2.5))), stop


def reference_jets(path: str, tree: str = "Events", max_events: int | None = None) -> tuple[ImageJets, Any]:
    """Reference reco jets (see the module docstring) and their :class:`ImagePairs` (with the
    images by species when the file has the branches they need)."""
    import uproot

    from hepfastsim.models.image_gan_train import _BRANCHES_SPECIES, build_pairs

    with uproot.open(path) as f:
        species = tree in f and all(b in f[tree] for b in _BRANCHES_SPECIES)
    pairs = build_pairs([path], tree=tree, max_events=max_events, species=species)
    obs = {}
    parts = [_image_obs(pairs.reco.dense(np.arange(s, min(s + 5000, len(pairs)))), pairs.cond[s:s + 5000])
             for s in range(0, len(pairs), 5000)]
    for k in (*_OBS, "raw_pt"):
        obs[k] = np.concatenate([p[k] for p in parts]) if parts else np.zeros(0)
    gen_pt = pairs.cond[:, 0].astype(np.float64)
    values = {"pt": pairs.reco_jet[:, 0].astype(np.float64), "mass": pairs.reco_jet[:, 3].astype(np.float64),
              **{k: obs[k] for k in _OBS}}
    values["response"] = values["pt"] / gen_pt
    values["total"] = sum(values[f"ring{i}"] for i in range(4))
    n_dom, _ = _count_domain_gen_jets(path, tree, max_events)
    jets = ImageJets(values, gen_pt, pairs.cond[:, 1].astype(np.float64), pairs.cond[:, 3].astype(np.float64),
                     pairs.event, pairs.gen_jet_index, n_dom)
    return jets, pairs


def candidate_jets(path: str, collection: str = "FastJet", tree: str = "Events", max_events: int | None = None) -> ImageJets:
    """The image-GAN jets (``fromImage == 1``) of a ``convert --model image-gan`` output."""
    import uproot

    from hepfastsim.errors import BranchNotFoundError

    names = ["pt", "mass", "genJetIdx", "fromImage", *_OBS]
    with uproot.open(path) as f:
        t = f[tree]
        have = set(t.keys())
        wanted = [f"{collection}_{n}" for n in names] + ["GenJet_pt", "GenJet_eta"]
        missing = [b for b in wanted if b not in have]
        if missing:
            raise BranchNotFoundError(path, tree, missing[0], sorted(have))
        stop = t.num_entries if max_events is None else min(max_events, t.num_entries)
        a = t.arrays([*wanted, *(["Pileup_nPU"] if "Pileup_nPU" in have else [])], entry_stop=stop)
    jets = ak.zip({n: a[f"{collection}_{n}"] for n in names})
    n = ak.to_numpy(ak.num(jets.pt))
    event = np.repeat(np.arange(stop), n)
    flat = ak.flatten(jets)
    gidx = ak.to_numpy(flat.genJetIdx).astype(np.int64)
    gpt = ak.to_numpy(ak.flatten(a.GenJet_pt[jets.genJetIdx])).astype(np.float64)
    geta = ak.to_numpy(ak.flatten(a.GenJet_eta[jets.genJetIdx])).astype(np.float64)
    npu = ak.to_numpy(a.Pileup_nPU).astype(np.float64)[event] if "Pileup_nPU" in a.fields else np.zeros(len(event))
    values = {k: np.asarray(ak.to_numpy(flat[k]), np.float64) for k in ("pt", "mass", *_OBS)}
    values["response"] = values["pt"] / gpt
    values["total"] = sum(values[f"ring{i}"] for i in range(4))
    cand = ImageJets(values, gpt, geta, npu, event.astype(np.int64), gidx)
    return cand.select(ak.to_numpy(flat.fromImage) == 1)


@dataclass
class Comparison:
    w1: dict[str, dict[str, float]] = field(default_factory=dict)
    auc: tuple[float, float] = (float("nan"), float("nan"))
    n_reference: int = 0
    n_candidate: int = 0
    n_common: int = 0
    efficiency_reference: float = float("nan")
    efficiency_candidate: float = float("nan")
    medians: dict[str, tuple[float, float]] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"w1_ratio": self.w1, "classifier_auc": list(self.auc), "n_reference_jets": self.n_reference,
                "n_candidate_jets": self.n_candidate, "n_common_gen_jets": self.n_common,
                "efficiency_in_domain": {"reference": self.efficiency_reference, "candidate": self.efficiency_candidate},
                "medians": {k: list(v) for k, v in self.medians.items()},
                "criterion": {"variables": list(SEED_CRITERION), "max_w1_ratio": MAX_W1_RATIO,
                              "pass": all(self.w1[v]["value"] <= MAX_W1_RATIO for v in SEED_CRITERION if v in self.w1)}}


def compare(ref: ImageJets, cand: ImageJets, seed: int = 0, threads: int | None = None) -> tuple[Comparison, ImageJets, ImageJets]:
    """Metrics on the gen jets present on both sides; returns them and the two selections."""
    from hepfastsim.evaluation.metrics import classifier_auc, w1_ratio

    common = np.intersect1d(ref.key(), cand.key())
    r, c = ref.select(np.isin(ref.key(), common)), cand.select(np.isin(cand.key(), common))
    out = Comparison(n_reference=len(ref.event), n_candidate=len(cand.event), n_common=len(common))
    if ref.in_domain_gen_jets:
        out.efficiency_reference = len(ref.event) / ref.in_domain_gen_jets
        out.efficiency_candidate = len(cand.event) / ref.in_domain_gen_jets
    for v in VARIABLES:
        a, b = r.values[v], c.values[v]
        ok_a, ok_b = np.isfinite(a), np.isfinite(b)
        res = w1_ratio(a[ok_a], b[ok_b], r.event[ok_a], c.event[ok_b], seed=seed)
        out.w1[v] = {"value": res.value, "error": res.error, "w1": res.w1, "floor": res.floor}
        out.medians[v] = (float(np.nanmedian(a)), float(np.nanmedian(b)))
    feats = list(VARIABLES)
    xr = np.column_stack([r.gen_pt, r.gen_eta, r.n_pu, *(r.values[v] for v in feats)])
    xc = np.column_stack([c.gen_pt, c.gen_eta, c.n_pu, *(c.values[v] for v in feats)])
    if len(xr) > 100 and len(xc) > 100:
        out.auc = classifier_auc(xr, xc, r.event, c.event, seed=seed, threads=threads)
    return out, r, c


# ------------------------------------------------------------------------------------------ plots


def _quantiles(x: np.ndarray, y: np.ndarray, edges: np.ndarray) -> np.ndarray:
    """(n_bins, 5) quantiles 10/25/50/75/90% of y in bins of x (NaN where < 20 entries)."""
    out = np.full((len(edges) - 1, 5), np.nan)
    idx = np.searchsorted(edges, x, side="right") - 1
    for k in range(len(edges) - 1):
        sel = (idx == k) & np.isfinite(y)
        if sel.sum() >= 20:
            out[k] = np.percentile(y[sel], [10, 25, 50, 75, 90])
    return out


def plot_evolution(path: Path, variable: str, ref: ImageJets, cand: ImageJets, ylabel: str) -> Path:
    """Median (line), inter-quartile band and 10/90% (dashed) of ``variable`` vs gen pT (figs. 5, 7)."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt
    import mplhep as hep

    centres = np.sqrt(PT_EDGES[1:] * PT_EDGES[:-1])
    with plt.style.context(hep.style.CMS):
        fig, ax = plt.subplots(figsize=(9, 7))
        for jets, label, color in ((ref, "reco (reference)", "#5790fc"), (cand, "pred (image GAN)", "#e42536")):
            q = _quantiles(jets.gen_pt, jets.values[variable], PT_EDGES)
            ax.plot(centres, q[:, 2], color=color, lw=2, label=label)
            ax.fill_between(centres, q[:, 1], q[:, 3], color=color, alpha=0.25)
            ax.plot(centres, q[:, 0], color=color, ls="--", lw=1)
            ax.plot(centres, q[:, 4], color=color, ls="--", lw=1)
        ax.set_xscale("log")
        ax.set_xlabel("gen jet $p_T$ [GeV]")
        ax.set_ylabel(ylabel)
        ax.legend(fontsize=14, title="median, 25-75% band, 10/90% dashed", title_fontsize=11)
        hep.cms.label(data=False, ax=ax, loc=0, rlabel="", fontsize=14)
        fig.savefig(path, dpi=80, bbox_inches="tight")
        plt.close(fig)
    return path


def plot_pixel_joint(path: Path, gen: np.ndarray, reco: np.ndarray, generated: np.ndarray) -> Path:
    """Joint distribution of gen vs reco pixel intensities, reference and generated (fig. 3).

    Pixels empty on both sides are left out; empty pixels go to the first bin ("0")."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt
    import mplhep as hep
    from matplotlib.colors import LogNorm

    edges = np.concatenate([[-5.5, -4.5], np.linspace(-4.5, 0.2, 48)[1:]])
    with plt.style.context(hep.style.CMS):
        fig, axes = plt.subplots(1, 2, figsize=(16, 7), sharey=True)
        for ax, y, title in ((axes[0], reco, "reference (reco)"), (axes[1], generated, "image GAN")):
            g, r = gen.ravel(), y.ravel()
            keep = (g > 0) | (r > 0)
            lg = np.log10(np.where(g[keep] > 0, g[keep], 10**-5.0))
            lr = np.log10(np.where(r[keep] > 0, r[keep], 10**-5.0))
            h, _, _ = np.histogram2d(lg, lr, bins=[edges, edges])
            m = ax.pcolormesh(edges, edges, (h / max(h.sum(), 1)).T, norm=LogNorm(vmin=1e-6, vmax=1e-1), cmap="viridis")
            ax.set_title(title, fontsize=16)
            ax.set_xlabel("log10 gen pixel intensity (-5: empty)", fontsize=16)
        axes[0].set_ylabel("log10 reco pixel intensity (-5: empty)", fontsize=16)
        fig.colorbar(m, ax=axes, label="fraction of pixels")
        fig.savefig(path, dpi=80, bbox_inches="tight")
        plt.close(fig)
    return path


def _generated_images(pairs: Any, rows: np.ndarray, seed: int) -> np.ndarray:
    from hepfastsim.kernels.rng import event_keys
    from hepfastsim.simulators.image_gan import ImageGANSimulator, generate_images

    sim = ImageGANSimulator()
    ev = pairs.event[rows]
    uniq, counts = np.unique(ev, return_counts=True)
    keys = event_keys(seed, 0, uniq)
    species = pairs.species("gen", rows) if sim.model.config.species_channels else None
    return generate_images(sim.model, pairs.gen.dense(rows), pairs.cond[rows], keys, counts, species)


def summary_markdown(result: Comparison, reference: str, candidate: str) -> str:
    lines = ["# Image-GAN validation (seed 000, arXiv:1805.00850)\n",
             f"reference: `{reference}`  \ncandidate: `{candidate}`\n",
             f"- reference reco jets in domain: {result.n_reference:,}; candidate image jets: {result.n_candidate:,}; "
             f"common gen jets compared: {result.n_common:,}",
             f"- fraction of in-domain gen jets with a reco jet: reference {result.efficiency_reference:.4f}, "
             f"candidate {result.efficiency_candidate:.4f}",
             f"- classifier AUC (gen pT, eta, nPU + all variables below): {result.auc[0]:.4f} +- {result.auc[1]:.4f}\n",
             "| variable | W1 ratio | criterion | median ref. | median cand. |", "|---|---|---|---|---|"]
    for v, w in result.w1.items():
        crit = f"<= {MAX_W1_RATIO:g}: {'pass' if w['value'] <= MAX_W1_RATIO else 'FAIL'}" if v in SEED_CRITERION else "reported"
        lines.append(f"| {v} | {w['value']:.2f} +- {w['error']:.2f} | {crit} | {result.medians[v][0]:.4g} | "
                     f"{result.medians[v][1]:.4g} |")
    return "\n".join(lines) + "\n"


def _record(result: Comparison, model: str, name: str, reference: str, candidate: str) -> Path:
    """Add the headline figures under ``validation[name]`` of an image-GAN model's JSON metadata."""
    from hepfastsim.models.weights_file import record_validation

    d = result.to_dict()
    return record_validation(model, name, {
        "reference": reference, "candidate": candidate,
        "w1_ratio": {k: round(v["value"], 3) for k, v in d["w1_ratio"].items()},
        "classifier_auc": round(d["classifier_auc"][0], 4), "n_common_gen_jets": d["n_common_gen_jets"],
        "efficiency_in_domain": d["efficiency_in_domain"], "criterion": d["criterion"],
    })


def run(args: argparse.Namespace) -> int:
    """Entry point of ``hepfastsim validate --level images`` (flags of :mod:`hepfastsim.cli.validate`)."""
    from rich.console import Console

    from hepfastsim.errors import HepfastsimError
    from hepfastsim.evaluation.plots import plot_distribution
    from hepfastsim.evaluation.validate import candidate_label_path

    if len(args.candidate) != 1:
        raise HepfastsimError(f"--level images takes one --candidate, got {len(args.candidate)}")
    cand_path = candidate_label_path(args.candidate[0])[1]
    console = Console(stderr=True)
    with console.status("reference images and observables"):
        ref, pairs = reference_jets(args.reference, tree=args.tree, max_events=args.max_events)
    cand = candidate_jets(cand_path, args.candidate_collection, tree=args.tree, max_events=args.max_events)
    if len(cand.event) == 0 or len(ref.event) == 0:
        raise HepfastsimError(f"no image jets to compare ({len(ref.event)} reference, {len(cand.event)} candidate); "
                              f"was {cand_path} written by 'convert --model image-gan'?")
    with console.status("W1 ratios and classifier AUC"):
        result, r, c = compare(ref, cand, seed=args.seed, threads=args.threads)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    plots: list[str] = []
    if not args.no_plots:
        with console.status("plotting"):
            for v, (label, edges, logx) in VARIABLES.items():
                plots.append(str(plot_distribution(out / f"{v}.png", v, r.values[v][np.isfinite(r.values[v])],
                                                   {"image GAN": c.values[v][np.isfinite(c.values[v])]}, edges,
                                                   xlabel=label, logx=logx, reference_label="reference (reco)",
                                                   title=f"W1 ratio {result.w1[v]['value']:.2f}")))
                if v not in ("pt", "nPixels"):
                    plots.append(str(plot_evolution(out / f"{v}_vs_genpt.png", v, r, c, label)))
            rows = np.arange(min(len(pairs), 20000))
            generated = _generated_images(pairs, rows, args.seed)
            plots.append(str(plot_pixel_joint(out / "pixel_joint.png", pairs.gen.dense(rows), pairs.reco.dense(rows),
                                              generated)))
    md = out / "summary.md"
    md.write_text(summary_markdown(result, args.reference, cand_path))
    js = out / "summary.json"
    js.write_text(json.dumps({"reference": args.reference, "candidate": cand_path, **result.to_dict(),
                              "plots": [Path(p).name for p in plots]}, indent=1, default=float) + "\n")
    if getattr(args, "record_in", None):
        _record(result, args.record_in, args.record_name or Path(args.reference).name, args.reference, cand_path)
    Console().print(md.read_text(), markup=False, highlight=False)
    Console().print(f"written: {md}, {js} and {len(plots)} PNG plots")
    return 0
