r"""Classical smearing fast simulation: the baseline every learned model must beat.

For each gen jet with finite kinematics and pT > 0:

* efficiency: kept with probability
  :math:`\varepsilon(p_T, \eta) = \varepsilon_{\max}(\eta) / (1 + e^{-(p_T - p_{T,1/2}) / w})`;
* energy response: :math:`p_T^{reco} = p_T (1 + \sigma_{rel} z_1)` with the CMS
  jet-energy-resolution form (arXiv:1607.03663, eq. 14)

  .. math:: \frac{\sigma_{p_T}}{p_T} = \sqrt{\frac{N^2 + k_{PU}^2 \rho A}{p_T^2} + \frac{S^2}{p_T} + C^2}

  where the noise term grows with the pileup density :math:`\rho` (GeV) over the jet area
  :math:`A = \pi R^2`; N, S, C depend on :math:`|\eta|` (see :class:`ParametricConfig`);
* angles: :math:`\eta^{reco} = \eta + \sigma_\theta z_2`, :math:`\phi^{reco} = \phi + \sigma_\theta z_3`
  (wrapped), :math:`\sigma_\theta = \sqrt{(a/p_T)^2 + b^2}`;
* mass: :math:`m^{reco} = \max(0, m (1 + \sigma_{rel} z_1)(1 + \sigma_m z_4))`;
* acceptance: reco jets are kept if :math:`p_T^{reco} >` ``min_pt`` and
  :math:`|\eta^{reco}| <` ``max_abs_eta`` (the NanoAOD ``Jet`` thresholds).

``z_i`` are standard normals and the efficiency uses a uniform, all drawn from the
counter-based generator keyed on (seed, file, entry, draw, jet index), so a jet's reco
values do not depend on chunking. No pileup or fake jets are produced: this is what the
learned kinematics model adds.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar

import awkward as ak
import numpy as np

from hepfastsim.kernels.rng import normals, uniforms
from hepfastsim.simulators.base import GenEvents, Simulator, register

__all__ = ["EtaRegion", "ParametricConfig", "ParametricSimulator"]


@dataclass(frozen=True)
class EtaRegion:
    """Resolution and efficiency parameters for ``|eta| < max_abs_eta`` (above the previous region)."""

    max_abs_eta: float
    noise_gev: float  # N, GeV
    stochastic_sqrt_gev: float  # S, GeV^(1/2)
    constant: float  # C
    max_efficiency: float


# N, S, C approximately as fitted for CMS anti-kT R=0.4 PF+CHS jets at 8 TeV, low pileup
# (arXiv:1607.03663, Fig. 35 and Table 6: N ~ 2-4 GeV rising with |eta|, S ~ 0.8-1.2
# GeV^1/2, C ~ 0.03-0.1); plateau efficiencies from the CMS jet-ID efficiency
# (> 99% central, CMS-PAS-JME-16-003), lower forward where tracking is absent.
CMS_LIKE_REGIONS: tuple[EtaRegion, ...] = (
    EtaRegion(1.3, 2.5, 0.90, 0.040, 0.99),
    EtaRegion(2.5, 3.5, 1.05, 0.050, 0.98),
    EtaRegion(3.0, 4.5, 1.15, 0.080, 0.96),
    EtaRegion(5.0, 4.5, 1.30, 0.100, 0.95),
)


@dataclass(frozen=True)
class ParametricConfig:
    """Every number of the parametric model (GeV, rad)."""

    regions: tuple[EtaRegion, ...] = CMS_LIKE_REGIONS
    # Pileup term: the offset fluctuation in a jet grows like sqrt(rho * A) (Cacciari-Salam
    # area subtraction, arXiv:0707.1378); k = 1 GeV^1/2 gives ~3 GeV at rho = 20 GeV, the
    # size of the CMS pileup noise term at <mu> ~ 20.
    pileup_noise_sqrt_gev: float = 1.0
    jet_radius: float = 0.4
    # Efficiency turn-on in gen pT (GeV): half-efficiency point and width.
    efficiency_pt_half: float = 10.0
    efficiency_width: float = 3.0
    # Angular resolution sigma = sqrt((a / pT)^2 + b^2): ~0.03 rad at 30 GeV, ~0.01 above
    # 150 GeV, as for CMS PF jets (CMS-PAS-JME-10-014 Fig. 8).
    angular_a_gev: float = 0.8
    angular_b: float = 0.005
    # Extra relative mass smearing on top of the energy response.
    mass_resolution: float = 0.10
    # Reco acceptance (NanoAOD Jet collection thresholds).
    min_pt: float = 15.0
    max_abs_eta: float = 4.7

    def region_arrays(self) -> dict[str, np.ndarray]:
        return {
            "edges": np.array([r.max_abs_eta for r in self.regions]),
            "N": np.array([r.noise_gev for r in self.regions]),
            "S": np.array([r.stochastic_sqrt_gev for r in self.regions]),
            "C": np.array([r.constant for r in self.regions]),
            "eff": np.array([r.max_efficiency for r in self.regions]),
        }


def _flat(array: ak.Array) -> np.ndarray:
    return np.asarray(ak.to_numpy(ak.flatten(array, axis=1)), dtype=np.float64)


@dataclass
class ParametricSimulator(Simulator):
    """The classical smearing baseline (see the module docstring for the formulas)."""

    config: ParametricConfig = field(default_factory=ParametricConfig)

    name: ClassVar[str] = "parametric"
    output_fields: ClassVar[dict[str, np.dtype]] = {
        "pt": np.dtype(np.float32),
        "eta": np.dtype(np.float32),
        "phi": np.dtype(np.float32),
        "mass": np.dtype(np.float32),
        "genJetIdx": np.dtype(np.int32),
    }

    def _regions(self, eta: np.ndarray) -> tuple[dict[str, np.ndarray], np.ndarray]:
        """The per-region parameter arrays and the region index of each |eta|."""
        r = self.config.region_arrays()
        return r, np.minimum(np.searchsorted(r["edges"], np.abs(eta), side="right"), len(r["edges"]) - 1)

    def relative_resolution(self, pt: np.ndarray, eta: np.ndarray, rho: np.ndarray) -> np.ndarray:
        """sigma(pT)/pT for gen pT (GeV), eta and the event rho (GeV), arrays of one shape."""
        c = self.config
        r, region = self._regions(eta)
        area = np.pi * c.jet_radius**2
        noise2 = r["N"][region] ** 2 + c.pileup_noise_sqrt_gev**2 * np.maximum(rho, 0.0) * area
        return np.sqrt(noise2 / pt**2 + r["S"][region] ** 2 / pt + r["C"][region] ** 2)

    def efficiency(self, pt: np.ndarray, eta: np.ndarray) -> np.ndarray:
        """Probability that a gen jet of pT (GeV) and eta yields a reco jet."""
        c = self.config
        r, region = self._regions(eta)
        turn_on = 1.0 / (1.0 + np.exp(-(pt - c.efficiency_pt_half) / c.efficiency_width))
        return r["eff"][region] * turn_on * (np.abs(eta) < r["edges"][-1])

    def simulate(self, events: GenEvents) -> ak.Array:
        c = self.config
        jets = events.jets
        counts = ak.to_numpy(ak.num(jets, axis=1)).astype(np.int64)
        offsets = np.concatenate([[0], np.cumsum(counts)])
        pt, eta, phi, mass = (_flat(jets[f]) for f in ("pt", "eta", "phi", "mass"))
        event_of_jet = np.repeat(np.arange(len(counts)), counts)
        local_idx = np.arange(offsets[-1]) - offsets[event_of_jet]

        u = uniforms(events.keys, offsets, 1, domain=0)[:, 0]
        z = normals(events.keys, offsets, 4, domain=1)
        with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
            valid = np.isfinite(pt) & np.isfinite(eta) & np.isfinite(phi) & np.isfinite(mass) & (pt > 0)
            rho = events.rho.astype(np.float64)[event_of_jet]
            sigma = self.relative_resolution(pt, eta, rho)
            response = 1.0 + sigma * z[:, 0]
            reco_pt = pt * response
            sigma_angle = np.hypot(c.angular_a_gev / pt, c.angular_b)
            reco_eta = eta + sigma_angle * z[:, 1]
            reco_phi = np.mod(phi + sigma_angle * z[:, 2] + np.pi, 2 * np.pi) - np.pi
            reco_mass = np.maximum(mass * response * (1.0 + c.mass_resolution * z[:, 3]), 0.0)
            keep = (
                valid
                & (u < self.efficiency(pt, eta))
                & (reco_pt > c.min_pt)
                & (np.abs(reco_eta) < c.max_abs_eta)
            )
        # sort kept jets by event, then decreasing reco pT (NanoAOD order)
        idx = np.flatnonzero(keep)
        order = idx[np.lexsort((-reco_pt[idx], event_of_jet[idx]))]
        out_counts = np.bincount(event_of_jet[order], minlength=len(counts))
        columns = {
            "pt": reco_pt[order],
            "eta": reco_eta[order],
            "phi": reco_phi[order],
            "mass": reco_mass[order],
            "genJetIdx": local_idx[order],
        }
        record = {k: v.astype(self.output_fields[k]) for k, v in columns.items()}
        return ak.unflatten(ak.zip(record), out_counts)


register("parametric")(ParametricSimulator)
