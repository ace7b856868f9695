"""hepfastsim.kernels.observables against fastjet(-contrib), vector and naive loops.

The N-subjettiness reference is fastjet-contrib's Nsubjettiness as shipped in the
scikit-hep ``fastjet`` wheel (``ClusterSequence.njettiness``, which wraps
``fastjet::contrib::Nsubjettiness`` with ``NormalizedMeasure(beta=1, R0)``). It is
present in the installed wheel, so the tests compare against it directly, with the
same axes definitions (``KT_Axes``, ``WTA_KT_Axes`` and their ``OnePass_`` versions);
each jet's constituents are first clustered into a single jet with anti-kt R = 100 so
that njettiness sees exactly the constituents we pass to the kernel.
"""

from __future__ import annotations

import math

import awkward as ak
import fastjet
import numba
import numpy as np
import pytest
import vector

from hepfastsim.kernels import observables as ko
from hepfastsim.kernels.geometry import delta_phi

FIELDS = ko.observable_fields(4, 4)
COL = {name: k for k, name in enumerate(FIELDS)}
FLOW_EDGES = np.array([0.0, 0.1, 0.2, 0.3, 0.4])
RING_EDGES = np.array([0.0, 0.05, 0.1, 0.15, 0.25])


def _run(pt, eta, phi, mass, offsets, **kw):
    kw.setdefault("flow_edges", FLOW_EDGES)
    kw.setdefault("ring_edges", RING_EDGES)
    return ko.jet_observables(pt, eta, phi, mass, offsets, **kw)


def _single(pt, eta, phi, mass=None, **kw):
    pt = np.asarray(pt, dtype=float)
    offsets = np.array([0, pt.size], dtype=np.int64)
    mass = np.zeros(pt.size) if mass is None else np.asarray(mass, dtype=float)
    row = _run(pt, np.asarray(eta, dtype=float), np.asarray(phi, dtype=float), mass, offsets, **kw)[0]
    return dict(zip(FIELDS, row, strict=True))


# ---------------------------------------------------------------------------
# fastjet reference
# ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def fastjet_sequence(random_jets):
    j = random_jets
    v = vector.array({"pt": j.pt, "eta": j.eta, "phi": j.phi, "mass": j.mass})
    counts = np.diff(j.offsets)
    particles = ak.unflatten(ak.Array({"px": v.px, "py": v.py, "pz": v.pz, "E": v.E}), counts)
    cs = fastjet.ClusterSequence(particles, fastjet.JetDefinition(fastjet.antikt_algorithm, 100.0))
    # one inclusive jet per event holding every constituent
    assert ak.all(ak.num(cs.inclusive_jets()) == 1)
    assert ak.all(ak.num(cs.constituents(), axis=2)[:, 0] == counts)
    return cs


@pytest.mark.parametrize(
    ("axes_definition", "axes", "one_pass"),
    [
        ("KT_Axes", "kt", False),
        ("WTA_KT_Axes", "wta", False),
        ("OnePass_KT_Axes", "kt", True),
        ("OnePass_WTA_KT_Axes", "wta", True),
    ],
)
@pytest.mark.parametrize("r0", [0.4, 0.8])
def test_nsubjettiness_matches_fastjet_contrib(random_jets, fastjet_sequence, axes_definition, axes, one_pass, r0):
    j = random_jets
    ref = np.asarray(ak.to_list(fastjet_sequence.njettiness(axes_definition=axes_definition, njets=[1, 2, 3], R0=r0)))
    ref = ref.reshape(j.n_jets, 3)
    out = _run(j.pt, j.eta, j.phi, j.mass, j.offsets, axes=axes, one_pass=one_pass, r0=r0)
    taus = out[:, [COL["tau1"], COL["tau2"], COL["tau3"]]]
    np.testing.assert_allclose(taus, ref, rtol=1e-6, atol=1e-12)
    assert np.all(ref[:, 0] > 0)  # non-trivial reference
    np.testing.assert_allclose(out[:, COL["tau21"]], ref[:, 1] / ref[:, 0], rtol=1e-6)
    ratio32 = np.divide(ref[:, 2], ref[:, 1], out=np.zeros(j.n_jets), where=ref[:, 1] > 0)
    np.testing.assert_allclose(out[:, COL["tau32"]], ratio32, rtol=1e-6, atol=1e-12)


# the scikit-hep wrapper warns for every exclusive_jets call, even with kt_algorithm
@pytest.mark.filterwarnings("ignore:dcut and exclusive jets")
def test_exclusive_kt_axes_match_fastjet_exclusive_jets(random_jets):
    j = random_jets
    jet_def = fastjet.JetDefinition(fastjet.kt_algorithm, 1000.0)
    for jj in range(0, j.n_jets, 7):
        pt, eta, phi, mass = j.jet(jj)
        v = vector.array({"pt": pt, "eta": eta, "phi": phi, "mass": mass})
        px, py, pz, e = (np.ascontiguousarray(x, dtype=float) for x in (v.px, v.py, v.pz, v.E))
        ax_y, ax_phi = ko.exclusive_kt_axes(px, py, pz, e, False, 3)
        cs = fastjet.ClusterSequence(ak.Array({"px": px, "py": py, "pz": pz, "E": e}), jet_def)
        for n in (1, 2, 3):
            if pt.size <= n:
                continue
            ref = cs.exclusive_jets(n)
            ref_vec = vector.array({c: ak.to_numpy(ref[c]) for c in ("px", "py", "pz", "E")})
            ref_y = np.sort(np.asarray(ref_vec.rapidity))
            np.testing.assert_allclose(np.sort(ax_y[n - 1, :n]), ref_y, rtol=1e-9, atol=1e-9)


def test_inclusive_kt_jets_match_fastjet(random_jets):
    j = random_jets
    jet_def = fastjet.JetDefinition(fastjet.kt_algorithm, 0.3)
    for jj in range(0, j.n_jets, 5):
        pt, eta, phi, mass = j.jet(jj)
        v = vector.array({"pt": pt, "eta": eta, "phi": phi, "mass": mass})
        px, py, pz, e = (np.ascontiguousarray(x, dtype=float) for x in (v.px, v.py, v.pz, v.E))
        mine = ko.inclusive_kt_jets(px, py, pz, e, 0.3)
        cs = fastjet.ClusterSequence(ak.Array({"px": px, "py": py, "pz": pz, "E": e}), jet_def)
        ref = cs.inclusive_jets()
        ref_pt = np.hypot(ak.to_numpy(ref.px), ak.to_numpy(ref.py))
        np.testing.assert_allclose(np.hypot(mine[:, 0], mine[:, 1]), np.sort(ref_pt)[::-1], rtol=1e-9)
        np.testing.assert_allclose(mine[:, 3].sum(), e.sum(), rtol=1e-12)


# ---------------------------------------------------------------------------
# vector / naive references
# ---------------------------------------------------------------------------


def test_kinematics_match_vector(random_jets):
    j = random_jets
    out = _run(j.pt, j.eta, j.phi, j.mass, j.offsets)
    counts = np.diff(j.offsets)
    parts = ak.unflatten(ak.zip({"pt": j.pt, "eta": j.eta, "phi": j.phi, "mass": j.mass}, with_name="Momentum4D"), counts)
    vector.register_awkward()
    jets = ak.sum(parts, axis=1)
    np.testing.assert_allclose(out[:, COL["pt"]], ak.to_numpy(jets.pt), rtol=1e-10)
    np.testing.assert_allclose(out[:, COL["eta"]], ak.to_numpy(jets.eta), rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(out[:, COL["phi"]], ak.to_numpy(jets.phi), rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(out[:, COL["mass"]], ak.to_numpy(jets.mass), rtol=1e-7)
    np.testing.assert_array_equal(out[:, COL["n_constituents"]], counts)


def _naive_shapes(pt, eta, phi, axis_eta, axis_phi, norm):
    deta = eta - axis_eta
    dphi = np.array([delta_phi(p, axis_phi) for p in phi])
    dr = np.hypot(deta, dphi)
    ptd = math.sqrt(sum(p * p for p in pt)) / sum(pt)
    girth = sum(p * r for p, r in zip(pt, dr, strict=True)) / norm
    cov = np.cov(np.vstack([deta, dphi]), aweights=pt, bias=True)
    lam = np.sort(np.linalg.eigvalsh(cov))[::-1]
    flows = [sum(p for p, r in zip(pt, dr, strict=True) if lo <= r < hi) / norm for lo, hi in zip(FLOW_EDGES[:-1], FLOW_EDGES[1:], strict=True)]
    rings = [sum(p for p, r in zip(pt, dr, strict=True) if lo <= r < hi) / norm for lo, hi in zip(RING_EDGES[:-1], RING_EDGES[1:], strict=True)]
    return ptd, girth, math.sqrt(max(lam[0], 0)), math.sqrt(max(lam[1], 0)), flows, rings


@pytest.mark.parametrize("given_axis", [False, True])
def test_shapes_flows_rings_match_naive_loops(random_jets, given_axis):
    j = random_jets
    rng = np.random.default_rng(7)
    if given_axis:
        axis_eta = rng.normal(0, 1, j.n_jets)
        axis_phi = rng.uniform(-np.pi, np.pi, j.n_jets)
        norm = rng.uniform(50, 500, j.n_jets)
        out = _run(j.pt, j.eta, j.phi, j.mass, j.offsets, axis_eta=axis_eta, axis_phi=axis_phi, pt_norm=norm)
    else:
        out = _run(j.pt, j.eta, j.phi, j.mass, j.offsets)
    for jj in range(j.n_jets):
        pt, eta, phi, _ = j.jet(jj)
        if given_axis:
            ae, ap, nm = axis_eta[jj], axis_phi[jj], norm[jj]
        else:
            ae, ap, nm = out[jj, COL["eta"]], out[jj, COL["phi"]], out[jj, COL["pt"]]
        ptd, girth, major, minor, flows, rings = _naive_shapes(pt, eta, phi, ae, ap, nm)
        assert out[jj, COL["ptd"]] == pytest.approx(ptd, rel=1e-10)
        assert out[jj, COL["girth"]] == pytest.approx(girth, rel=1e-10)
        assert out[jj, COL["major"]] == pytest.approx(major, rel=1e-8)
        assert out[jj, COL["minor"]] == pytest.approx(minor, rel=1e-6, abs=1e-9)
        np.testing.assert_allclose(out[jj, COL["flow1"] : COL["flow4"] + 1], flows, rtol=1e-10, atol=1e-15)
        np.testing.assert_allclose(out[jj, COL["ring0"] : COL["ring3"] + 1], rings, rtol=1e-10, atol=1e-15)


# ---------------------------------------------------------------------------
# analytic fixtures
# ---------------------------------------------------------------------------


def test_single_particle():
    r = _single([42.0], [0.7], [-2.0])
    assert r["pt"] == pytest.approx(42.0)
    assert r["eta"] == pytest.approx(0.7)
    assert r["phi"] == pytest.approx(-2.0)
    assert r["mass"] == 0.0
    assert r["tau1"] == 0.0 and r["tau2"] == 0.0 and r["tau3"] == 0.0
    assert r["ptd"] == pytest.approx(1.0)
    assert r["major"] == 0.0 and r["minor"] == 0.0
    assert r["girth"] == pytest.approx(0.0, abs=1e-15)
    assert r["flow1"] == pytest.approx(1.0) and r["flow2"] == 0.0
    assert r["n_constituents"] == 1


@pytest.mark.parametrize("axes", ["kt", "wta"])
def test_two_prongs(axes):
    # two prongs of 3 collinear massless particles each, separated by d in eta
    d = 0.6
    pt1, pt2 = 300.0, 100.0
    pts = [pt1 / 3] * 3 + [pt2 / 3] * 3
    etas = [d / 2] * 3 + [-d / 2] * 3
    r = _single(pts, etas, [0.5] * 6, axes=axes, one_pass=False, r0=0.8)
    # tau2 = 0: each prong is one exact direction
    assert r["tau2"] == pytest.approx(0.0, abs=1e-12)
    assert r["tau21"] == pytest.approx(0.0, abs=1e-12)
    if axes == "wta":
        # winner-take-all axis sits on the harder prong
        assert r["tau1"] == pytest.approx(pt2 * d / ((pt1 + pt2) * 0.8), rel=1e-12)
    else:
        # E-scheme axis at the rapidity (not pseudorapidity) of the four-vector sum
        total = vector.obj(pt=pt1, eta=d / 2, phi=0.5, mass=0.0) + vector.obj(pt=pt2, eta=-d / 2, phi=0.5, mass=0.0)
        y_axis = total.rapidity
        assert abs(y_axis - r["eta"]) > 1e-3  # the difference matters here
        expected = (pt1 * abs(d / 2 - y_axis) + pt2 * abs(-d / 2 - y_axis)) / ((pt1 + pt2) * 0.8)
        assert r["tau1"] == pytest.approx(expected, rel=1e-10)
    # mass of two massless prongs: m^2 = 2 pt1 pt2 (cosh d - 1)
    assert r["mass"] == pytest.approx(math.sqrt(2 * pt1 * pt2 * (math.cosh(d) - 1)), rel=1e-10)


def test_back_to_back_prongs_symmetric():
    # equal prongs at +-d/2 in phi: any kT axis lies midway -> tau1 = d / (2 R0)
    d = 0.5
    r = _single([50.0, 50.0, 50.0, 50.0], [0.0, 0.0, 0.0, 0.0], [d / 2, d / 2, -d / 2, -d / 2], axes="kt", one_pass=True, r0=1.0)
    assert r["tau1"] == pytest.approx(d / 2, rel=1e-6)
    assert r["tau2"] == pytest.approx(0.0, abs=1e-12)
    assert r["major"] == pytest.approx(d / 2, rel=1e-12)  # RMS width along phi
    assert r["minor"] == pytest.approx(0.0, abs=1e-12)


def test_empty_jet_and_padding():
    pt = np.array([0.0, 0.0, 10.0, 0.0])
    eta = np.array([5.0, 5.0, 0.1, 5.0])
    phi = np.array([1.0, 1.0, 0.2, 1.0])
    offsets = np.array([0, 2, 4, 4], dtype=np.int64)  # jet 0 padding only, jet 2 empty
    out = _run(pt, eta, phi, None, offsets)
    for jj in (0, 2):
        assert out[jj, COL["pt"]] == 0.0 and out[jj, COL["mass"]] == 0.0
        assert out[jj, COL["n_constituents"]] == 0
        assert out[jj, COL["tau1"]] == 0.0 and out[jj, COL["tau21"]] == 0.0
        assert math.isnan(out[jj, COL["eta"]]) and math.isnan(out[jj, COL["ptd"]])
        assert np.all(out[jj, COL["flow1"] :] == 0.0)
    # padding does not change the real jet: it equals the single-particle answer
    assert out[1, COL["n_constituents"]] == 1
    assert out[1, COL["pt"]] == pytest.approx(10.0)
    assert out[1, COL["flow1"]] == pytest.approx(1.0)


def test_phi_wrap_gives_same_observables(random_jets):
    # the same jet placed across phi = +-pi and at phi = 0
    rng = np.random.default_rng(11)
    pt = rng.exponential(10, 30) + 1
    eta = rng.normal(0, 0.2, 30)
    dphi = rng.normal(0, 0.2, 30)
    at_zero = _single(pt, eta, dphi)
    at_pi = _single(pt, eta, (dphi + np.pi + np.pi) % (2 * np.pi) - np.pi)
    for name in FIELDS:
        if name == "phi":
            assert delta_phi(at_pi["phi"], np.pi) == pytest.approx(at_zero["phi"], abs=1e-9)
        else:
            assert at_pi[name] == pytest.approx(at_zero[name], rel=1e-7, abs=1e-10), name


def test_nan_constituent_poisons_only_its_jet(random_jets):
    j = random_jets
    pt = j.pt.copy()
    bad = j.offsets[3] + 1
    pt[bad] = np.nan
    out = _run(pt, j.eta, j.phi, j.mass, j.offsets)
    clean = _run(j.pt, j.eta, j.phi, j.mass, j.offsets)
    assert np.all(np.isnan(out[3]))
    mask = np.ones(j.n_jets, dtype=bool)
    mask[3] = False
    np.testing.assert_array_equal(out[mask], clean[mask])


def test_inputs_not_modified_and_serial_equals_parallel(random_jets):
    j = random_jets
    before = [a.copy() for a in (j.pt, j.eta, j.phi, j.mass, j.offsets)]
    threads = numba.get_num_threads()
    try:
        numba.set_num_threads(1)
        serial = _run(j.pt, j.eta, j.phi, j.mass, j.offsets)
        numba.set_num_threads(min(2, numba.config.NUMBA_NUM_THREADS))
        parallel = _run(j.pt, j.eta, j.phi, j.mass, j.offsets)
    finally:
        numba.set_num_threads(threads)
    np.testing.assert_array_equal(serial, parallel)
    for a, b in zip(before, (j.pt, j.eta, j.phi, j.mass, j.offsets), strict=True):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"eta": np.zeros(3)}, "expected eta of length 4"),
        ({"pt": -np.ones(4)}, "expected pt >= 0"),
        ({"offsets": np.array([0, 3], dtype=np.int64)}, "expected offsets from 0 to 4"),
        ({"offsets": np.array([0, 3, 1, 4], dtype=np.int64)}, "non-decreasing"),
        ({"offsets": np.array([0.0, 4.0])}, "expected integer offsets"),
        ({"axes": "anti-kt"}, "expected axes 'kt' or 'wta'"),
        ({"ring_edges": [0.1, 0.05]}, "strictly increasing"),
        ({"r0": 0.0}, "expected r0 > 0"),
        ({"axis_eta": np.zeros(3)}, r"expected axis_eta as a scalar or one value per jet \(2,\), got shape \(3,\)"),
    ],
)
def test_wrapper_rejects_bad_input(kwargs, message):
    args = {"pt": np.ones(4), "eta": np.zeros(4), "phi": np.zeros(4), "mass": None, "offsets": np.array([0, 2, 4], dtype=np.int64)}
    extra = {k: kwargs.pop(k) for k in list(kwargs) if k not in args}
    args.update(kwargs)
    with pytest.raises(ValueError, match=message):
        _run(args["pt"], args["eta"], args["phi"], args["mass"], args["offsets"], **extra)


def test_registry_names_every_field():
    for name in ko.observable_fields(4, 3):
        base = name.rstrip("0123456789") if name.startswith(("flow", "ring")) else name
        assert base in ko.OBSERVABLES, name
        assert ko.OBSERVABLES[base].reference
