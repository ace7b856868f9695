"""``hepfastsim validate --level particles``: reco constituents and the jets built from them.

Compares the candidate constituents (``FastPFCands`` linked to ``FastJet`` by
``FastJetPFCands``, as ``hepfastsim convert --model particle-vae`` writes them) with the
reference constituents (``PFCands`` linked to ``Jet`` by ``JetPFCands``) on the same gen
events. Both sides go through the same selection (seed 003, arXiv:2203.00520, Sec. 3/5):
constituents with pT > 0.25 GeV and |eta| < 3.2, treated as massless as in the paper; jets
are the four-vector sum of their accepted constituents, kept with pT > 200 GeV and
|eta| < 2.5; observables from :func:`hepfastsim.jets.observables.jet_observables`
(Flow_n in annuli of 0.1 around the jet axis for R = 0.4).

Figures per variable: W1 ratio to the statistical floor (:func:`~hepfastsim.evaluation.metrics.w1_ratio`)
and the paper's symmetrised KL divergence (:func:`~hepfastsim.models.particle_vae.symmetric_kl`);
for the jets matched to gen jets a classifier two-sample AUC on [gen pT, eta, mass;
reco jet variables]. Writes summary.md, summary.json and PNG plots into ``--out``.
"""

from __future__ import annotations

import argparse
import json
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import awkward as ak
import numpy as np

from hepfastsim.errors import HepfastsimError

__all__ = ["ParticleCuts", "ParticleJets", "read_particle_jets", "compare", "summary_markdown", "run"]

JET_VARIABLES: tuple[str, ...] = ("pt", "mass", "energy", "eta", "phi", "flow1", "flow2", "flow3", "flow4",
                                  "tau21", "tau32", "ptd", "n_constituents")
CONSTITUENT_VARIABLES: tuple[str, ...] = ("px", "py", "pz")
AUC_VARIABLES: tuple[str, ...] = ("pt", "eta", "mass", "flow1", "flow2", "flow3", "flow4", "tau21", "ptd")
_LABELS = {"pt": "jet $p_T$ [GeV]", "mass": "jet mass [GeV]", "energy": "jet energy [GeV]", "eta": r"jet $\eta$",
           "phi": r"jet $\phi$", "tau21": r"$\tau_{21}$", "tau32": r"$\tau_{32}$", "ptd": "$p_TD$",
           "n_constituents": "constituents", "px": "constituent $p_x$ [GeV]", "py": "constituent $p_y$ [GeV]",
           "pz": "constituent $p_z$ [GeV]", **{f"flow{i}": f"Flow$_{i}$" for i in range(1, 5)}}


@dataclass(frozen=True)
class ParticleCuts:
    """Acceptance of seed 003: constituents, then jets (GeV)."""

    cand_pt_min: float = 0.25
    cand_eta_max: float = 3.2
    jet_pt_min: float = 200.0
    jet_eta_max: float = 2.5


@dataclass
class ParticleJets:
    """Selected jets (one entry per jet) and their constituents (one entry per constituent)."""

    jets: dict[str, np.ndarray]  # JET_VARIABLES + "gen_pt", "gen_eta", "gen_mass" (NaN if unmatched)
    jet_event: np.ndarray
    constituents: dict[str, np.ndarray]  # px, py, pz (GeV)
    constituent_event: np.ndarray
    n_events: int


def read_particle_jets(
    path: str | os.PathLike[str],
    collection: str,
    candidates: str,
    links: str,
    *,
    tree: str = "Events",
    max_events: int | None = None,
    cuts: ParticleCuts = ParticleCuts(),
) -> ParticleJets:
    """Jets built from ``candidates`` linked to ``collection`` by ``links`` (module docstring)."""
    from hepfastsim.io.nanoaod import iterate_chunks, jet_constituents, open_tree
    from hepfastsim.jets.observables import ObservablesConfig, jet_observables

    source = open_tree(path, tree)
    branches = [f"{collection}_pt", f"{collection}_genJetIdx", f"{candidates}_pt", f"{candidates}_eta",
                f"{candidates}_phi", f"{links}_jetIdx", f"{links}_pFCandsIdx", "GenJet_pt", "GenJet_eta", "GenJet_mass"]
    source.require(branches)
    stop = source.num_entries if max_events is None else min(max_events, source.num_entries)
    a = next(iter(iterate_chunks(source, branches, step_size=max(stop, 1), entry_stop=stop))).arrays
    cands = jet_constituents(a, candidates=candidates, links=links, jets=collection, fields=("pt", "eta", "phi"))
    n_jets = ak.to_numpy(ak.num(a[f"{collection}_pt"], axis=1)).astype(np.int64)
    flat = ak.flatten(cands, axis=1)
    flat = flat[(flat.pt > cuts.cand_pt_min) & (np.abs(flat.eta) < cuts.cand_eta_max)]
    obs = jet_observables(flat, ObservablesConfig(flow_jet_radius=0.4, n_flows=4))
    pt, eta = np.asarray(obs.pt), np.asarray(obs.eta)
    with np.errstate(invalid="ignore"):
        keep = np.flatnonzero((pt > cuts.jet_pt_min) & (np.abs(eta) < cuts.jet_eta_max))
    event = np.repeat(np.arange(stop), n_jets)
    jets = {v: np.asarray(obs[v], np.float64)[keep] for v in JET_VARIABLES if v in obs.fields}
    jets["energy"] = np.sqrt(jets["pt"] ** 2 * np.cosh(jets["eta"]) ** 2 + jets["mass"] ** 2)
    gidx = ak.to_numpy(ak.flatten(a[f"{collection}_genJetIdx"])).astype(np.int64)[keep]
    n_gen = ak.to_numpy(ak.num(a["GenJet_pt"], axis=1)).astype(np.int64)
    gen_off = np.concatenate([[0], np.cumsum(n_gen)])
    ok = (gidx >= 0) & (gidx < n_gen[event[keep]])
    gglob = gen_off[event[keep]] + np.where(ok, gidx, 0)
    for f in ("pt", "eta", "mass"):
        g = np.asarray(ak.to_numpy(ak.flatten(a[f"GenJet_{f}"])), np.float64)
        jets[f"gen_{f}"] = np.where(ok, g[np.minimum(gglob, max(len(g) - 1, 0))] if len(g) else np.nan, np.nan)
    kept = flat[keep]
    cpt, ceta, cphi = (np.asarray(ak.to_numpy(ak.flatten(kept[f])), np.float64) for f in ("pt", "eta", "phi"))
    constituents = {"px": cpt * np.cos(cphi), "py": cpt * np.sin(cphi), "pz": cpt * np.sinh(ceta)}
    c_event = np.repeat(event[keep], ak.to_numpy(ak.num(kept, axis=1)))
    return ParticleJets(jets, event[keep], constituents, c_event, stop)


def compare(
    reference: ParticleJets,
    candidates: Mapping[str, ParticleJets],
    *,
    seed: int = 0,
    threads: int | None = None,
    max_constituents: int = 400_000,
) -> dict[str, Any]:
    """W1 ratios, symmetrised KL and classifier AUC of every candidate against the reference."""
    from hepfastsim.evaluation.metrics import classifier_auc, w1_ratio
    from hepfastsim.models.particle_vae import symmetric_kl

    rng = np.random.default_rng(seed)
    result: dict[str, Any] = {"reference": {"jets": int(len(reference.jet_event)), "events": reference.n_events,
                                            "constituents": int(len(reference.constituent_event))},
                              "candidates": {}}

    def sub(n: int) -> np.ndarray:
        return np.sort(rng.choice(n, max_constituents, replace=False)) if n > max_constituents else np.arange(n)

    r_sub = sub(len(reference.constituent_event))
    for label, cand in candidates.items():
        if cand.n_events != reference.n_events:
            raise HepfastsimError(
                f"candidate {label!r} has {cand.n_events} events, the reference {reference.n_events}; "
                "expected the same gen events (use --max-events)")
        entry: dict[str, Any] = {"jets": int(len(cand.jet_event)), "constituents": int(len(cand.constituent_event)),
                                 "w1_ratio": {}, "w1_error": {}, "symmetric_kl": {}}
        for v in JET_VARIABLES:
            r, c = reference.jets[v], cand.jets[v]
            fr, fc = np.isfinite(r), np.isfinite(c)
            w = w1_ratio(r[fr], c[fc], reference.jet_event[fr], cand.jet_event[fc], seed=seed)
            entry["w1_ratio"][v], entry["w1_error"][v] = w.value, w.error
            entry["symmetric_kl"][v] = symmetric_kl(r[fr], c[fc])
        c_sub = sub(len(cand.constituent_event))
        for v in CONSTITUENT_VARIABLES:
            r, c = reference.constituents[v][r_sub], cand.constituents[v][c_sub]
            w = w1_ratio(r, c, reference.constituent_event[r_sub], cand.constituent_event[c_sub], seed=seed)
            entry["w1_ratio"][v], entry["w1_error"][v] = w.value, w.error
            entry["symmetric_kl"][v] = symmetric_kl(r, c)
        entry["symmetric_kl_jet_sum"] = float(sum(entry["symmetric_kl"][v] for v in ("mass", "pt", "energy", "eta", "phi")))

        def rows(t: ParticleJets) -> tuple[np.ndarray, np.ndarray]:
            cols = [t.jets["gen_pt"], t.jets["gen_eta"], t.jets["gen_mass"]] + [t.jets[v] for v in AUC_VARIABLES]
            x = np.stack(cols, 1)
            ok = np.all(np.isfinite(x), axis=1)
            return x[ok], t.jet_event[ok]

        xr, er = rows(reference)
        xc, ec = rows(cand)
        if len(xr) > 50 and len(xc) > 50:
            auc, err = classifier_auc(xr, xc, er, ec, seed=seed, threads=threads)
            entry["classifier_auc"], entry["classifier_auc_error"] = auc, err
        result["candidates"][label] = entry
    return result


def summary_markdown(result: Mapping[str, Any]) -> str:
    labels = list(result["candidates"])
    lines = [f"Reference: {result['reference']['jets']} jets, {result['reference']['constituents']} constituents "
             f"in {result['reference']['events']} events.", "",
             "| variable | " + " | ".join(f"{lb}: W1 ratio | {lb}: sym. KL" for lb in labels) + " |",
             "|---|" + "---|---|" * len(labels)]
    for v in (*JET_VARIABLES, *CONSTITUENT_VARIABLES):
        cells = []
        for lb in labels:
            e = result["candidates"][lb]
            cells += [f"{e['w1_ratio'][v]:.2f} ± {e['w1_error'][v]:.2f}", f"{e['symmetric_kl'][v]:.4f}"]
        lines.append(f"| {v} | " + " | ".join(cells) + " |")
    lines.append("")
    for lb in labels:
        e = result["candidates"][lb]
        auc = f"{e['classifier_auc']:.3f} ± {e['classifier_auc_error']:.3f}" if "classifier_auc" in e else "n/a"
        lines.append(f"- {lb}: {e['jets']} jets; classifier AUC {auc}; sum of sym. KL (m, pT, E, eta, phi) "
                     f"{e['symmetric_kl_jet_sum']:.4f}")
    return "\n".join(lines) + "\n"


_EDGES: dict[str, Any] = {
    "pt": np.linspace(200, 1500, 53), "mass": np.linspace(0, 250, 51), "energy": np.linspace(200, 3000, 57),
    "eta": np.linspace(-2.5, 2.5, 41), "phi": np.linspace(-np.pi, np.pi, 41), "flow1": np.linspace(0, 1.05, 43),
    "flow2": np.linspace(0, 0.6, 41), "flow3": np.linspace(0, 0.3, 41), "flow4": np.linspace(0, 0.2, 41),
    "tau21": np.linspace(0, 1, 41), "tau32": np.linspace(0, 1, 41), "ptd": np.linspace(0, 1, 41),
    "n_constituents": np.arange(-0.5, 80.5, 2), "px": np.linspace(-300, 300, 61), "py": np.linspace(-300, 300, 61),
    "pz": np.linspace(-600, 600, 61),
}


def make_plots(reference: ParticleJets, candidates: Mapping[str, ParticleJets], out: Path) -> list[str]:
    from hepfastsim.evaluation.plots import plot_distribution

    out.mkdir(parents=True, exist_ok=True)
    paths = []
    for v in (*JET_VARIABLES, *CONSTITUENT_VARIABLES):
        is_c = v in CONSTITUENT_VARIABLES
        ref = reference.constituents[v] if is_c else reference.jets[v]
        cands = {lb: (c.constituents[v] if is_c else c.jets[v]) for lb, c in candidates.items()}
        p = plot_distribution(out / f"particles_{v}.png", v, ref, cands, _EDGES[v], xlabel=_LABELS[v],
                              logy=v in ("pt", "energy", "px", "py", "pz", "mass"), reference_label="reference (PF)")
        paths.append(str(p))
    return paths


def run(args: argparse.Namespace) -> int:
    from rich.console import Console

    from hepfastsim.evaluation.validate import candidate_label_path
    from hepfastsim.io.schema import extra_collection_name

    console = Console(stderr=True)
    ref_coll = args.reference_collection
    with console.status("reading reference constituents"):
        reference = read_particle_jets(args.reference, ref_coll, "PFCands", f"{ref_coll}PFCands", tree=args.tree,
                                       max_events=args.max_events)
    cand_coll = args.candidate_collection
    candidates: dict[str, ParticleJets] = {}
    for text in args.candidate:
        label, path = candidate_label_path(text)
        if label in candidates:
            raise HepfastsimError(f"candidate label {label!r} given twice; use LABEL=FILE")
        with console.status(f"reading {label}"):
            candidates[label] = read_particle_jets(
                path, cand_coll, extra_collection_name("{prefix}PFCands", cand_coll),
                extra_collection_name("{collection}PFCands", cand_coll), tree=args.tree, max_events=args.max_events)
    with console.status("computing metrics (W1, symmetrised KL, classifier AUC)"):
        result = compare(reference, candidates, seed=args.seed, threads=args.threads)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    if not args.no_plots:
        with console.status("plotting"):
            result["plots"] = make_plots(reference, candidates, out)
    md = summary_markdown(result)
    (out / "summary.md").write_text(md)
    (out / "summary.json").write_text(json.dumps(result, indent=1) + "\n")
    if args.record_in:
        _record(result, args.record_in, args.record_name or Path(args.reference).name)
    Console().print(md, markup=False, highlight=False)
    Console().print(f"written: {out / 'summary.md'}, {out / 'summary.json'}")
    return 0


def _record(result: Mapping[str, Any], model: str, name: str) -> None:
    """Store the figures of the (single) candidate under ``validation[name]`` of a model's JSON."""
    from hepfastsim.models.weights_file import record_validation

    if len(result["candidates"]) != 1:
        raise HepfastsimError(f"--record-in needs exactly one candidate, got {len(result['candidates'])}")
    (entry,) = result["candidates"].values()
    record_validation(model, name, {"reference": result["reference"], **{k: v for k, v in entry.items() if k != "plots"}})

