from __future__ import annotations

import json

import hist
import numpy as np
import pytest
import uproot

from hepfastsim.analysis.dijet import mass_bins
from hepfastsim.analysis.dijet_fit import FitConfig, _bin_integrals, fit_dijet_spectrum, garwood_errors
from hepfastsim.cli.main import main
from hepfastsim.errors import HepfastsimError

EDGES = mass_bins(1000, 7000)


def _expected(total: float = 2e5, p=(8.0, 5.0, 0.2)) -> np.ndarray:
    mu = _bin_integrals(EDGES, *p, 13000.0)
    return mu / mu.sum() * total


def test_fits_its_own_function() -> None:
    rng = np.random.default_rng(4)
    ratios = []
    for _ in range(8):
        n = rng.poisson(_expected())
        result = fit_dijet_spectrum(EDGES, n)
        assert result.valid
        # extended likelihood: the fitted yield equals the observed one at the minimum
        assert result.expected.sum() == pytest.approx(n.sum(), rel=2e-3)
        ratios.append(result.chi2 / result.ndf)
    assert 0.6 < np.mean(ratios) < 1.5


def test_bump_shows_in_the_pulls() -> None:
    rng = np.random.default_rng(5)
    centres = 0.5 * (EDGES[1:] + EDGES[:-1])
    bump = 400 * np.exp(-0.5 * ((centres - 3000) / 150) ** 2)
    n = rng.poisson(_expected() + bump)
    result = fit_dijet_spectrum(EDGES, n)
    peak = np.argmax(result.pulls)
    assert result.pulls[peak] > 3 and 2600 < centres[peak] < 3400
    assert result.chi2 / result.ndf > 2


def test_fit_range_and_weights() -> None:
    rng = np.random.default_rng(6)
    n = rng.poisson(_expected())
    w = 0.5
    result = fit_dijet_spectrum(EDGES, w * n, w**2 * n, FitConfig(fit_min=1246, fit_max=6000))
    assert result.fit_range == (1246.0, pytest.approx(EDGES[EDGES <= 6000][-1]))
    unweighted = fit_dijet_spectrum(EDGES, n, None, FitConfig(fit_min=1246, fit_max=6000))
    assert result.chi2 == pytest.approx(unweighted.chi2, rel=1e-3)  # a global weight changes nothing


def test_garwood() -> None:
    low, high = garwood_errors(np.array([0.0, 1.0, 100.0]))
    assert high[0] == pytest.approx(1.841, abs=1e-3) and low[0] == 0
    assert low[1] == pytest.approx(0.827, abs=1e-3) and high[1] == pytest.approx(2.300, abs=1e-3)
    assert low[2] == pytest.approx(9.983, abs=1e-3) and high[2] == pytest.approx(11.033, abs=1e-3)


def test_too_few_bins() -> None:
    with pytest.raises(HepfastsimError, match="non-empty bins"):
        fit_dijet_spectrum(EDGES, np.r_[5.0, 3.0, np.zeros(len(EDGES) - 3)])


def test_fit_cli_writes_png_and_json(tmp_path, capsys) -> None:
    rng = np.random.default_rng(7)
    h = hist.Hist(hist.axis.Variable(EDGES, name="mjj"), storage=hist.storage.Weight())
    h.view().value = rng.poisson(_expected())
    h.view().variance = h.view().value
    with uproot.recreate(tmp_path / "spectrum.root") as f:
        f["mjj"] = h
    assert main(["fit", str(tmp_path / "spectrum.root"), "--out-dir", str(tmp_path / "fit")]) == 0
    assert "chi2/ndf" in capsys.readouterr().out
    data = json.loads((tmp_path / "fit" / "fit.json").read_text())
    assert set(data["params"]) == {"p0", "p1", "p2", "p3"} and data["ndf"] == len(EDGES) - 1 - 4
    assert (tmp_path / "fit" / "fit.png").read_bytes()[:4] == b"\x89PNG"
    assert main(["fit", str(tmp_path / "missing.root")]) == 1
    assert "missing.root" in capsys.readouterr().err


def test_recovers_known_parameters() -> None:
    true = (8.0, 5.0, 0.2)
    mu = _expected(2e5, true)
    asimov = fit_dijet_spectrum(EDGES, mu)  # the exact expectation: the fit must return the truth
    for name, value in zip(("p1", "p2", "p3"), true):
        assert asimov.params[name] == pytest.approx(value, rel=2e-3, abs=2e-3)
    assert asimov.chi2 < 1e-3
    # p0: mu integrates p0 * shape over the bins, so p0 = total / integral of the shape
    assert asimov.params["p0"] == pytest.approx(2e5 / _bin_integrals(EDGES, *true, 13000.0).sum(), rel=5e-3)
    rng = np.random.default_rng(11)
    toy = fit_dijet_spectrum(EDGES, rng.poisson(_expected(2e6, true)))
    for name, value in zip(("p1", "p2", "p3"), true):
        assert abs(toy.params[name] - value) < 4 * toy.errors[name], name


def test_chi2_is_the_sum_of_squared_pulls_with_garwood_errors() -> None:
    rng = np.random.default_rng(12)
    n = rng.poisson(_expected(5e3))
    result = fit_dijet_spectrum(EDGES, n)
    last = np.flatnonzero(n)[-1]  # the default range ends at the last non-empty bin
    assert result.counts.tolist() == n[: last + 1].tolist()
    low, high = garwood_errors(result.counts)
    sigma = np.where(result.expected > result.counts, high, low)
    by_hand = np.sum(((result.counts - result.expected) / sigma) ** 2)
    assert result.chi2 == pytest.approx(by_hand, rel=1e-9)
    assert result.ndf == last + 1 - 4
