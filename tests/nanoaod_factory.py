"""Tiny NanoAOD-like files for tests, written with uproot (mktree) in either counter style."""

from __future__ import annotations

from pathlib import Path

import awkward as ak
import numpy as np
import uproot

GEN_FIELDS = ("pt", "eta", "phi", "mass")


def make_events(n_events: int, seed: int = 1, max_jets: int = 6) -> dict[str, object]:
    """Branches of a toy NanoAOD Events tree: GenJets, Jets, PFNano gen constituents, pileup."""
    rng = np.random.default_rng(seed)
    n_jets = rng.integers(0, max_jets + 1, n_events)
    n_jets[: min(2, n_events)] = 0  # events without jets
    total = int(n_jets.sum())
    pt = (20.0 + rng.exponential(60.0, total)).astype(np.float32)
    eta = rng.uniform(-4.5, 4.5, total).astype(np.float32)
    phi = rng.uniform(-np.pi, np.pi, total).astype(np.float32)
    # constituents: 3 to 8 massless particles per jet whose pT sum to the jet pT
    n_cons = rng.integers(3, 9, total)
    c_pt, c_eta, c_phi, link_jet, link_cand = [], [], [], [], []
    jet_start = np.concatenate([[0], np.cumsum(n_jets)])
    for ev in range(n_events):
        cand = 0
        js, lj, lc = [], [], []
        for j in range(n_jets[ev]):
            g = jet_start[ev] + j
            frac = rng.dirichlet(np.ones(n_cons[g]))
            js.append((pt[g] * frac, eta[g] + rng.normal(0, 0.05, n_cons[g]), phi[g] + rng.normal(0, 0.05, n_cons[g])))
            lj += [j] * n_cons[g]
            lc += list(range(cand, cand + n_cons[g]))
            cand += n_cons[g]
        c_pt.append(np.concatenate([x[0] for x in js]) if js else np.zeros(0))
        c_eta.append(np.concatenate([x[1] for x in js]) if js else np.zeros(0))
        c_phi.append(np.concatenate([x[2] for x in js]) if js else np.zeros(0))
        link_jet.append(lj)
        link_cand.append(lc)
    unflat = lambda a, dtype=np.float32: ak.values_astype(ak.unflatten(a, n_jets), dtype)  # noqa: E731
    mass = (0.1 * pt * rng.uniform(0.2, 1.0, total)).astype(np.float32)
    branches: dict[str, object] = {
        "run": np.ones(n_events, np.uint32),
        "luminosityBlock": np.ones(n_events, np.uint32),
        "event": np.arange(n_events, dtype=np.uint64) + 1,
        "genWeight": rng.uniform(0.5, 1.5, n_events).astype(np.float32),
        "Pileup_nPU": rng.poisson(30, n_events).astype(np.int32),
        "fixedGridRhoFastjetAll": rng.uniform(10, 30, n_events).astype(np.float32),
        "GenJet_pt": unflat(pt),
        "GenJet_eta": unflat(eta),
        "GenJet_phi": unflat(phi),
        "GenJet_mass": unflat(mass),
        "GenJet_partonFlavour": unflat(rng.choice([0, 1, 2, 5, 21], total), np.int32),
        "GenJet_hadronFlavour": unflat(rng.choice([0, 4, 5], total), np.uint8),
        "Jet_pt": unflat(pt * rng.normal(1, 0.1, total)),
        "Jet_genJetIdx": ak.values_astype(ak.local_index(unflat(pt)), np.int16),
        "HLT_PFJet500": rng.uniform(size=n_events) < 0.1,
        "GenCands_pt": ak.values_astype(ak.Array(c_pt), np.float32),
        "GenCands_eta": ak.values_astype(ak.Array(c_eta), np.float32),
        "GenCands_phi": ak.values_astype(ak.Array(c_phi), np.float32),
        "GenCands_mass": ak.values_astype(ak.zeros_like(ak.Array(c_pt)), np.float32),
        "GenJetCands_jetIdx": ak.values_astype(ak.Array(link_jet), np.int32),
        "GenJetCands_pFCandsIdx": ak.values_astype(ak.Array(link_cand), np.int32),
    }
    return branches


def write_nanoaod(
    path: Path,
    n_events: int = 50,
    *,
    seed: int = 1,
    run3: bool = False,
    per_branch_counters: bool = False,
    events: dict[str, object] | None = None,
    extra_trees: bool = True,
) -> Path:
    """Write a toy NanoAOD file.

    ``run3`` renames rho to ``Rho_fixedGridRhoFastjetAll``; ``per_branch_counters`` writes every
    jagged branch with its own counter (``nGenJet_pt``), as uproot does for bare jagged arrays.
    """
    branches = dict(events if events is not None else make_events(n_events, seed))
    if run3:
        branches["Rho_fixedGridRhoFastjetAll"] = branches.pop("fixedGridRhoFastjetAll")
    if not per_branch_counters:  # group "Prefix_field" jagged branches under one counter "nPrefix"
        groups: dict[str, dict[str, object]] = {}
        flat: dict[str, object] = {}
        for name, arr in branches.items():
            if isinstance(arr, ak.Array) and arr.ndim == 2:
                prefix, field = name.split("_", 1)
                groups.setdefault(prefix, {})[field] = arr
            else:
                flat[name] = arr
        branches = {**flat, **{p: ak.zip(fields) for p, fields in groups.items()}}
    with uproot.recreate(path) as f:
        f.mktree("Events", branches)
        if extra_trees:
            f.mktree("Runs", {"run": np.array([1], np.uint32), "genEventSumw": np.array([123.5])})
            f["tag"] = "toy-nanoaod"
    return path
