"""Every number of the reference chain, in frozen dataclasses, each with its source.

The detector numbers are those of the Delphes CMS card (``cards/delphes_card_CMS.tcl``
of delphes/delphes, the card used by seed 003), unless a comment says otherwise. Units:
GeV for energies and momenta, rad for angles, m for lengths, T for fields.

Nothing here is mutable: configurations are passed down explicitly (STYLE point 7).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Literal

import numpy as np

__all__ = [
    "PROCESSES",
    "Process",
    "GeneratorConfig",
    "PileupConfig",
    "TrackerConfig",
    "CalorimeterConfig",
    "DetectorConfig",
    "JetConfig",
    "ChainConfig",
    "ecal_geometry",
    "hcal_geometry",
    "calorimeter_arrays",
]

Process = Literal["qcd", "wprime", "ttbar", "zprime"]
PROCESSES: tuple[str, ...] = ("qcd", "wprime", "ttbar", "zprime")


@dataclass(frozen=True)
class GeneratorConfig:
    """Pythia 8 settings of the hard process (``pythia8mc``; Pythia 8.317, Monash 2013 tune)."""

    process: Process = "qcd"
    #: centre-of-mass energy (GeV): LHC Run 2 / Run 3 collisions.
    ecm: float = 13000.0
    #: QCD: lower cut on the pT of the 2 -> 2 hard scattering (GeV). 15 GeV is the lowest
    #: bin of the CMS flat QCD samples (QCD_Pt-15to7000_TuneCP5_Flat).
    pthat_min: float = 15.0
    #: QCD: reweight the phase space by (pTHat / pthat_min)^bias_power and give each event
    #: the weight 1 / that factor (Pythia ``PhaseSpace:bias2Selection``); 4.5 is the power
    #: CMS uses for its "Flat" QCD samples, which populates multi-TeV dijet masses.
    bias: bool = True
    bias_power: float = 4.5
    #: W' and Z' pole mass (GeV). W' -> WZ with W, Z -> qq gives boosted W/Z jets
    #: (seed 002); 1 TeV puts the W at pT ~ 450 GeV, well inside one AK8 jet.
    wprime_mass: float = 1000.0
    #: Z' -> qq resonance for the bump hunt (seed 001 works at multi-TeV dijet masses).
    zprime_mass: float = 2000.0
    #: CMS generator settings (Pythia8CommonSettings): particles with c*tau > 10 mm
    #: (K0S, Lambda, Sigma, Xi, Omega) are left stable, as in CMS GenParticles.
    tau0_max_mm: float = 10.0

    def pythia_settings(self) -> list[str]:
        """The ``readString`` lines of this process (without the seed)."""
        common = [
            f"Beams:eCM = {self.ecm}",
            "Print:quiet = on",
            "Next:numberCount = 0",
            "ParticleDecays:limitTau0 = on",
            f"ParticleDecays:tau0Max = {self.tau0_max_mm}",
        ]
        if self.process == "qcd":
            proc = ["HardQCD:all = on", f"PhaseSpace:pTHatMin = {self.pthat_min}"]
            if self.bias:
                proc += [
                    "PhaseSpace:bias2Selection = on",
                    f"PhaseSpace:bias2SelectionPow = {self.bias_power}",
                    f"PhaseSpace:bias2SelectionRef = {self.pthat_min}",
                ]
        elif self.process == "wprime":
            proc = [
                "NewGaugeBoson:ffbar2Wprime = on",
                "Wprime:coup2WZ = 1.0",  # Pythia's default W'WZ coupling is 0 (no W' -> WZ)
                f"34:m0 = {self.wprime_mass}",
                "34:onMode = off",
                "34:onIfMatch = 24 23",  # W' -> W Z only
                "24:onMode = off",
                "24:onIfAny = 1 2 3 4 5",  # W -> q q'
                "23:onMode = off",
                "23:onIfAny = 1 2 3 4 5",  # Z -> q qbar
            ]
        elif self.process == "ttbar":
            proc = ["Top:gg2ttbar = on", "Top:qqbar2ttbar = on"]  # inclusive top decays
        elif self.process == "zprime":
            proc = [
                "NewGaugeBoson:ffbar2gmZZprime = on",
                "Zprime:gmZmode = 3",  # pure Z', no gamma*/Z interference
                f"32:m0 = {self.zprime_mass}",
                "32:onMode = off",
                "32:onIfAny = 1 2 3 4 5",  # Z' -> q qbar
            ]
        else:  # pragma: no cover - guarded by the CLI choices
            raise ValueError(f"unknown process {self.process!r}; expected one of {PROCESSES}")
        return common + proc


@dataclass(frozen=True)
class PileupConfig:
    """In-time pileup overlay from a cached pool of minimum-bias events."""

    #: mean number of pileup interactions; 30 is close to the 2017-2018 CMS average (~32).
    mu: float = 0.0
    #: number of SoftQCD:inelastic events in the pool; each overlaid event is also rotated
    #: by a random phi and mirrored in z with probability 1/2 to decorrelate repeats.
    pool_size: int = 5000
    #: seed of the pool (independent of mu and of the run seed, so one pool serves all runs).
    pool_seed: int = 20260401


@dataclass(frozen=True)
class TrackerConfig:
    """Delphes CMS card: ParticlePropagator, *TrackingEfficiency, *MomentumSmearing."""

    #: ParticlePropagator: radius (m) and half-length (m) of the field volume, Bz (T).
    radius_m: float = 1.29
    half_length_m: float = 3.00
    bz_tesla: float = 3.8
    #: acceptance of the tracker (|eta|) and the lowest pT with a track (GeV).
    eta_max: float = 2.5
    pt_min: float = 0.1
    #: |eta| boundary between barrel and endcap efficiencies.
    eta_barrel: float = 1.5
    #: Efficiency formulas: (pt <= 1 GeV, pt > 1 GeV) for barrel, then endcap.
    #: ChargedHadronTrackingEfficiency: 0.70 / 0.95 barrel, 0.60 / 0.85 endcap.
    eff_hadron: tuple[float, float, float, float] = (0.70, 0.95, 0.60, 0.85)
    #: MuonTrackingEfficiency: 0.75 / 0.99 barrel, 0.70 / 0.98 endcap.
    eff_muon: tuple[float, float, float, float] = (0.75, 0.99, 0.70, 0.98)
    #: ElectronTrackingEfficiency: 0.73 / 0.95 (0.99 above 100 GeV) barrel,
    #: 0.50 / 0.83 (0.90 above 100 GeV) endcap.
    eff_electron: tuple[float, float, float, float] = (0.73, 0.95, 0.50, 0.83)
    eff_electron_high: tuple[float, float] = (0.99, 0.90)
    #: Relative pT resolution sqrt(a^2 + (b pT)^2) in |eta| bins [0, 0.5, 1.5, 2.5]
    #: (arXiv:1405.6569 via the card). ChargedHadronMomentumSmearing:
    res_hadron: tuple[tuple[float, float], ...] = ((0.01, 1.5e-4), (0.015, 2.5e-4), (0.025, 5.5e-4))
    #: ElectronMomentumSmearing:
    res_electron: tuple[tuple[float, float], ...] = ((0.03, 1.3e-3), (0.05, 1.7e-3), (0.15, 3.1e-3))
    #: MuonMomentumSmearing:
    res_muon: tuple[tuple[float, float], ...] = ((0.01, 1.0e-4), (0.015, 1.5e-4), (0.025, 3.5e-4))
    res_eta_edges: tuple[float, ...] = (0.5, 1.5, 2.5)

    def efficiency(self, pdg_abs: int, pt: float, eta: float) -> float:
        """Tracking efficiency of the card for one particle (pt GeV); the test's reference."""
        aeta = abs(eta)
        if pt <= self.pt_min or aeta > self.eta_max:
            return 0.0
        table = {11: self.eff_electron, 13: self.eff_muon}.get(pdg_abs, self.eff_hadron)
        endcap = aeta > self.eta_barrel
        if pdg_abs == 11 and pt > 100.0:
            return self.eff_electron_high[1 if endcap else 0]
        return table[(2 if endcap else 0) + (1 if pt > 1.0 else 0)]

    def resolution(self, pdg_abs: int, pt: float, eta: float) -> float:
        """Relative pT resolution of the card (sigma_pT / pT) for one particle (pt GeV)."""
        table = {11: self.res_electron, 13: self.res_muon}.get(pdg_abs, self.res_hadron)
        aeta = abs(eta)
        for k, edge in enumerate(self.res_eta_edges):
            if aeta <= edge:
                a, b = table[k]
                return math.sqrt(a * a + (b * pt) ** 2)
        return 0.0


@dataclass(frozen=True)
class CalorimeterConfig:
    """One calorimeter (Delphes SimpleCalorimeter): resolution, thresholds, segmentation.

    The resolution is ``sigma(E) = f(eta) * sqrt((a E)^2 + b^2 E + c^2)`` in GeV, per
    |eta| region; ``eta_factor`` encodes the ECAL barrel/endcap eta shape of the card.
    """

    name: str
    #: |eta| upper edges of the resolution regions and (a, b, c, region kind) per region.
    res_eta_edges: tuple[float, ...]
    res_terms: tuple[tuple[float, float, float], ...]
    #: eta shape multiplying the resolution, per region: 0 none, 1 = (1 + 0.64 eta^2),
    #: 2 = (2.16 + 5.6 (|eta| - 2)^2)  (ECal card, eta shape from arXiv:1306.2016).
    res_eta_shape: tuple[int, ...]
    #: EnergyMin (GeV) and EnergySignificanceMin of the card.
    energy_min: float
    significance_min: float
    #: tower segmentation: sorted eta edges and, per eta ring, the number of phi cells.
    eta_edges: tuple[float, ...] = field(repr=False, default=())
    n_phi: tuple[int, ...] = field(repr=False, default=())

    def sigma(self, energy: float, eta: float) -> float:
        """Energy resolution (GeV) at true energy ``energy`` (GeV) and ``eta``; the test's reference."""
        aeta = abs(eta)
        for k, edge in enumerate(self.res_eta_edges):
            if aeta <= edge:
                a, b, c = self.res_terms[k]
                shape = self.res_eta_shape[k]
                f = 1.0
                if shape == 1:
                    f = 1.0 + 0.64 * eta * eta
                elif shape == 2:
                    f = 2.16 + 5.6 * (aeta - 2.0) ** 2
                return f * math.sqrt((a * energy) ** 2 + b * b * energy + c * c)
        return 0.0


def _delphes_rings(edge_groups: list[tuple[list[float], int]]) -> tuple[tuple[float, ...], tuple[int, ...]]:
    """Delphes ``EtaPhiBins`` semantics: each eta edge carries phi bins; a ring between
    consecutive sorted edges uses the phi bins attached to its upper edge."""
    pairs: dict[float, int] = {}
    for edges, nphi in edge_groups:
        for e in edges:
            key = round(float(e), 6) + 0.0
            pairs[key] = max(nphi, pairs.get(key, 0))  # Delphes merges the phi-edge sets
    eta_sorted = sorted(pairs)
    nphi_rings = tuple(pairs[e] for e in eta_sorted[1:])
    return tuple(eta_sorted), nphi_rings


def ecal_geometry() -> tuple[tuple[float, ...], tuple[int, ...]]:
    """ECal towers of the Delphes CMS card: 0.0174 x 1 degree up to |eta| 3, HF 0.175 x 10 degrees."""
    barrel = [i * 0.0174 for i in range(-85, 87)]
    endcap = [-2.958 + i * 0.0174 for i in range(1, 85)] + [1.4964 + i * 0.0174 for i in range(1, 85)]
    hf = [-5, -4.7, -4.525, -4.35, -4.175, -4, -3.825, -3.65, -3.475, -3.3, -3.125, -2.958,
          3.125, 3.3, 3.475, 3.65, 3.825, 4, 4.175, 4.35, 4.525, 4.7, 5]
    return _delphes_rings([(barrel, 360), (endcap, 360), (hf, 36)])


def hcal_geometry() -> tuple[tuple[float, ...], tuple[int, ...]]:
    """HCal towers of the Delphes CMS card: 0.087 x 5 degrees, 10 and 20 degrees forward."""
    five = [-1.566, -1.479, -1.392, -1.305, -1.218, -1.131, -1.044, -0.957, -0.87, -0.783, -0.696,
            -0.609, -0.522, -0.435, -0.348, -0.261, -0.174, -0.087, 0, 0.087, 0.174, 0.261, 0.348,
            0.435, 0.522, 0.609, 0.696, 0.783, 0.87, 0.957, 1.044, 1.131, 1.218, 1.305, 1.392,
            1.479, 1.566, 1.653]
    ten = [-4.35, -4.175, -4, -3.825, -3.65, -3.475, -3.3, -3.125, -2.95, -2.868, -2.65, -2.5,
           -2.322, -2.172, -2.043, -1.93, -1.83, -1.74, -1.653, 1.74, 1.83, 1.93, 2.043, 2.172,
           2.322, 2.5, 2.65, 2.868, 2.95, 3.125, 3.3, 3.475, 3.65, 3.825, 4, 4.175, 4.35, 4.525]
    twenty = [-5, -4.7, -4.525, 4.7, 5]
    return _delphes_rings([(five, 72), (ten, 36), (twenty, 18)])


def _ecal() -> CalorimeterConfig:
    edges, nphi = ecal_geometry()
    return CalorimeterConfig(
        name="ECAL",
        # ECal ResolutionFormula: barrel (1+0.64 eta^2) sqrt(E^2 0.008^2 + E 0.11^2 + 0.40^2),
        # endcap (2.16 + 5.6 (|eta|-2)^2) * same, 2.5 < |eta| < 5: sqrt(E^2 0.107^2 + E 2.08^2).
        res_eta_edges=(1.5, 2.5, 5.0),
        res_terms=((0.008, 0.11, 0.40), (0.008, 0.11, 0.40), (0.107, 2.08, 0.0)),
        res_eta_shape=(1, 2, 0),
        energy_min=0.5,  # ECal EnergyMin
        significance_min=2.0,  # ECal EnergySignificanceMin
        eta_edges=edges,
        n_phi=nphi,
    )


def _hcal() -> CalorimeterConfig:
    edges, nphi = hcal_geometry()
    return CalorimeterConfig(
        name="HCAL",
        # HCal ResolutionFormula: |eta| <= 3 sqrt(E^2 0.050^2 + E 1.50^2),
        # 3 < |eta| <= 5 sqrt(E^2 0.130^2 + E 2.70^2).
        res_eta_edges=(3.0, 5.0),
        res_terms=((0.050, 1.50, 0.0), (0.130, 2.70, 0.0)),
        res_eta_shape=(0, 0),
        energy_min=1.0,  # HCal EnergyMin
        significance_min=2.0,  # HCal EnergySignificanceMin
        eta_edges=edges,
        n_phi=nphi,
    )


@dataclass(frozen=True)
class DetectorConfig:
    """The CMS-like detector: tracker, ECAL, HCAL and particle-flow settings."""

    tracker: TrackerConfig = field(default_factory=TrackerConfig)
    ecal: CalorimeterConfig = field(default_factory=_ecal)
    hcal: CalorimeterConfig = field(default_factory=_hcal)
    #: ECAL energy fraction of K0S and Lambda (card EnergyFraction {310} {3122}: 0.3 ECAL,
    #: 0.7 HCAL); e, gamma, pi0 deposit 100% in ECAL; other hadrons 100% in HCAL.
    k0s_lambda_ecal_fraction: float = 0.3
    #: SmearTowerCenter true: neutral candidates get a uniform position inside their tower.
    smear_tower_center: bool = True
    #: charged-hadron subtraction: drop tracks of pileup vertices (CMS CHS).
    chs: bool = True


@dataclass(frozen=True)
class JetConfig:
    """Jet algorithms and NanoAOD storage thresholds."""

    r_small: float = 0.4  # AK4: Jet, GenJet
    r_large: float = 0.8  # AK8: FatJet, GenJetAK8
    #: NanoAOD thresholds (GeV): Jet corrected pT > 15, GenJet pT > 10, GenJetAK8 pT > 100;
    #: FatJet corrected pT > 100 (Run-3 NanoAOD value; Run 2 used 170).
    jet_pt_min: float = 15.0
    genjet_pt_min: float = 10.0
    fatjet_pt_min: float = 100.0
    genjet_ak8_pt_min: float = 100.0
    #: clustering floor before corrections (GeV); jets below never reach the output.
    cluster_pt_min: float = 3.0
    #: |eta| limit of stored jets (CMS HF edge).
    eta_max: float = 5.0
    #: Jet_genJetIdx: closest gen jet within Delta R < R/2 (0.2 for AK4, 0.4 for AK8).
    match_dr_fraction: float = 0.5
    #: passive-area grid: cell size in (y, phi); fastjet CMS default ghost area is 0.01.
    area_cell: float = 0.05
    area_rap_max: float = 5.0
    #: jets below this raw pT (GeV) get no area: even corrected they stay below the
    #: storage thresholds, so their area is never used.
    area_pt_min: float = 5.0
    #: fixedGridRhoFastjetAll: GridMedianBackgroundEstimator(5.0, 0.55) on all PF candidates.
    rho_rap_max: float = 5.0
    rho_grid_spacing: float = 0.55
    #: flavour ghosts: partons entering hadronisation (|status| 71-79) and b/c hadrons,
    #: scaled by this factor so that they do not change the jets (CMS ghost association).
    ghost_scale: float = 1.0e-18


@dataclass(frozen=True)
class ChainConfig:
    """Everything one run of the reference chain needs."""

    generator: GeneratorConfig = field(default_factory=GeneratorConfig)
    pileup: PileupConfig = field(default_factory=PileupConfig)
    detector: DetectorConfig = field(default_factory=DetectorConfig)
    jets: JetConfig = field(default_factory=JetConfig)
    #: events per block: the unit of seeding and of parallel work (independent of workers).
    block_size: int = 500
    #: apply the shipped jet energy corrections (off only while deriving them).
    apply_jec: bool = True


def calorimeter_arrays(cal: CalorimeterConfig) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Segmentation as arrays for the kernels: eta edges, n_phi per ring, first cell of each ring."""
    edges = np.asarray(cal.eta_edges, dtype=np.float64)
    nphi = np.asarray(cal.n_phi, dtype=np.int64)
    first = np.zeros(len(nphi) + 1, dtype=np.int64)
    np.cumsum(nphi, out=first[1:])
    return edges, nphi, first
