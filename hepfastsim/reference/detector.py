"""CMS-like detector and particle-flow reconstruction in numba (Delphes CMS card logic).

For every stable particle of an event (hard event plus pileup):

1. Neutrinos (and neutralinos) are invisible.
2. Propagation in the solenoid (Delphes ParticlePropagator): a charged particle follows a
   helix of radius ``pT / (0.2998 B)`` m to the calorimeter cylinder (R = 1.29 m,
   half-length 3.0 m); the impact point gives the calorimeter eta and phi. Neutral
   particles fly straight. All vertices are at the origin.
3. Tracking (Delphes *TrackingEfficiency, *MomentumSmearing): charged particles with
   |eta| < 2.5 and pT > 0.1 GeV get a track with the card's efficiency; the track pT is
   log-normally smeared with the card's relative resolution.
4. Calorimeters (Delphes SimpleCalorimeter ECal and HCal): e, gamma, pi0 deposit in ECAL;
   K0S and Lambda 30% ECAL / 70% HCAL; other hadrons in HCAL; muons pass. The energy of
   each tower is log-normally smeared with sigma(E, eta) of the card and zeroed below
   ``EnergyMin`` or ``EnergySignificanceMin * sigma``.
5. Particle flow (Delphes energy flow): tracks become charged candidates; the energy of a
   tower minus the energy its tracks are expected to leave there becomes a neutral
   candidate (photon in ECAL, neutral hadron in HCAL) when it is significant; otherwise
   the tracks of the tower are rescaled to the error-weighted mean of the track and
   calorimeter measurements. Neutral candidates sit at a uniformly smeared position in
   their tower and are massless.
6. Charged-hadron subtraction (CHS) drops the tracks of pileup particles (truth origin).

Units: GeV, rad, m, T. Random numbers come from numba's generator, seeded explicitly per
block by the caller, so a block is reproducible.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numba as nb
import numpy as np

from hepfastsim.errors import HepfastsimError
from hepfastsim.kernels.geometry import wrap_phi
from hepfastsim.reference.config import DetectorConfig, calorimeter_arrays
from hepfastsim.reference.pythia_events import ParticleBlock

__all__ = ["PFBlock", "DetectorArrays", "detector_arrays", "simulate_detector", "PF_PHOTON", "PF_NEUTRAL_HADRON"]

PF_PHOTON = 22
PF_NEUTRAL_HADRON = 130
_C_LIGHT = 0.299792458  # GeV / (T m) for unit charge
_M_PION = 0.13957039
_M_ELECTRON = 0.000510999
_M_MUON = 0.1056583755


@dataclass
class PFBlock:
    """Particle-flow candidates of a block, flat with ``offsets`` (n_events + 1).

    ``pt`` (GeV), ``eta``, ``phi`` (rad), ``mass`` (GeV), ``pdg`` (PF id: +-211, +-11,
    +-13, 22, 130), ``charge`` (e), ``from_pu`` (charged candidate of a pileup track).
    """

    offsets: np.ndarray
    pt: np.ndarray
    eta: np.ndarray
    phi: np.ndarray
    mass: np.ndarray
    pdg: np.ndarray
    charge: np.ndarray
    from_pu: np.ndarray

    def select(self, keep: np.ndarray) -> PFBlock:
        """The candidates where ``keep`` is true, offsets recomputed."""
        ev = np.repeat(np.arange(len(self.offsets) - 1), np.diff(self.offsets))
        counts = np.bincount(ev[keep], minlength=len(self.offsets) - 1)
        off = np.zeros(len(counts) + 1, dtype=np.int64)
        np.cumsum(counts, out=off[1:])
        return PFBlock(off, self.pt[keep], self.eta[keep], self.phi[keep], self.mass[keep],
                       self.pdg[keep], self.charge[keep], self.from_pu[keep])


@dataclass(frozen=True)
class DetectorArrays:
    """The configuration flattened into arrays for the kernel (built once per config)."""

    scalars: np.ndarray  # see detector_arrays for the order
    eff: np.ndarray  # (3 kinds, 4) tracking efficiencies; kinds: hadron, electron, muon
    eff_e_high: np.ndarray  # (2,) electron efficiency above 100 GeV, barrel/endcap
    res: np.ndarray  # (3 kinds, 3 eta regions, 2) relative resolution terms
    res_edges: np.ndarray  # (3,) |eta| edges of the resolution regions
    e_edges: np.ndarray
    e_nphi: np.ndarray
    e_first: np.ndarray
    e_res_edges: np.ndarray
    e_res: np.ndarray  # (regions, 3)
    e_shape: np.ndarray
    h_edges: np.ndarray
    h_nphi: np.ndarray
    h_first: np.ndarray
    h_res_edges: np.ndarray
    h_res: np.ndarray
    h_shape: np.ndarray


def detector_arrays(config: DetectorConfig) -> DetectorArrays:
    """Flatten a :class:`DetectorConfig` for :func:`simulate_detector`."""
    t = config.tracker
    scalars = np.array([
        t.radius_m, t.half_length_m, t.bz_tesla, t.eta_max, t.pt_min, t.eta_barrel,
        config.k0s_lambda_ecal_fraction, float(config.smear_tower_center),
        config.ecal.energy_min, config.ecal.significance_min,
        config.hcal.energy_min, config.hcal.significance_min,
    ], dtype=np.float64)
    eff = np.array([t.eff_hadron, t.eff_electron, t.eff_muon], dtype=np.float64)
    res = np.array([t.res_hadron, t.res_electron, t.res_muon], dtype=np.float64)
    e_edges, e_nphi, e_first = calorimeter_arrays(config.ecal)
    h_edges, h_nphi, h_first = calorimeter_arrays(config.hcal)
    return DetectorArrays(
        scalars, eff, np.array(t.eff_electron_high, dtype=np.float64), res,
        np.array(t.res_eta_edges, dtype=np.float64),
        e_edges, e_nphi, e_first,
        np.array(config.ecal.res_eta_edges, dtype=np.float64), np.array(config.ecal.res_terms, dtype=np.float64),
        np.array(config.ecal.res_eta_shape, dtype=np.int64),
        h_edges, h_nphi, h_first,
        np.array(config.hcal.res_eta_edges, dtype=np.float64), np.array(config.hcal.res_terms, dtype=np.float64),
        np.array(config.hcal.res_eta_shape, dtype=np.int64),
    )


@nb.njit(cache=True)
def _seed(seed):
    np.random.seed(seed)


@nb.njit(cache=True, inline="always")
def _lognormal(mean, sigma):
    """Delphes LogNormal: a log-normal variate with this mean and standard deviation."""
    if mean <= 0.0:
        return 0.0
    b = math.sqrt(math.log(1.0 + (sigma * sigma) / (mean * mean)))
    a = math.log(mean) - 0.5 * b * b
    return math.exp(a + b * np.random.normal())


@nb.njit(cache=True)
def _cell_index(eta, phi, edges, nphi, first):
    """Tower index of the point (eta, phi rad), -1 outside; Delphes lower_bound semantics."""
    if not (eta > edges[0] and eta <= edges[-1]):
        return -1
    ring = np.searchsorted(edges, eta) - 1  # edges[ring] < eta <= edges[ring + 1]
    n = nphi[ring]
    iphi = int((phi + math.pi) / (2.0 * math.pi) * n)
    if iphi >= n:
        iphi = n - 1
    if iphi < 0:
        iphi = 0
    return first[ring] + iphi


@nb.njit(cache=True)
def _cell_ring(cell, first):
    return np.searchsorted(first, cell, side="right") - 1


@nb.njit(cache=True)
def _calo_sigma(energy, eta, res_edges, res, shape):
    aeta = abs(eta)
    for k in range(res_edges.shape[0]):
        if aeta <= res_edges[k]:
            f = 1.0
            if shape[k] == 1:
                f = 1.0 + 0.64 * eta * eta
            elif shape[k] == 2:
                f = 2.16 + 5.6 * (aeta - 2.0) * (aeta - 2.0)
            a = res[k, 0]
            b = res[k, 1]
            c = res[k, 2]
            return f * math.sqrt(a * a * energy * energy + b * b * energy + c * c)
    return 0.0


@nb.njit(cache=True)
def _track_eff(kind, pt, aeta, sc, eff, eff_e_high):
    if pt <= sc[4] or aeta > sc[3]:
        return 0.0
    endcap = aeta > sc[5]
    if kind == 1 and pt > 100.0:
        return eff_e_high[1] if endcap else eff_e_high[0]
    col = (2 if endcap else 0) + (1 if pt > 1.0 else 0)
    return eff[kind, col]


@nb.njit(cache=True)
def _track_res(kind, pt, aeta, res, res_edges):
    for k in range(res_edges.shape[0]):
        if aeta <= res_edges[k]:
            a = res[kind, k, 0]
            b = res[kind, k, 1]
            return math.sqrt(a * a + b * b * pt * pt)
    return 0.0


@nb.njit(cache=True)
def _impact(pt, eta, phi, charge, radius, half_length, bz):
    """Calorimeter impact (eta, phi, reached) of a particle from the origin (helix in Bz)."""
    sh = math.sinh(eta)
    s_end = half_length / abs(sh) if sh != 0.0 else 1.0e30  # transverse arc length to the endcap
    if charge == 0 or bz == 0.0:
        return eta, phi, True
    r_h = pt / (_C_LIGHT * abs(charge) * bz)  # helix radius (m)
    s_bar = 1.0e30
    if 2.0 * r_h >= radius:
        s_bar = 2.0 * r_h * math.asin(radius / (2.0 * r_h))
    s = min(s_bar, s_end)
    if s >= 1.0e29:
        return eta, phi, False
    alpha = s / r_h  # turning angle
    r_pos = 2.0 * r_h * abs(math.sin(0.5 * alpha))
    z_pos = s * sh
    sign = 1.0 if charge > 0 else -1.0
    phi_pos = wrap_phi(phi - sign * 0.5 * alpha)  # Bz > 0: positive charges turn clockwise
    if r_pos <= 1.0e-9:
        return 99.0 if z_pos > 0 else -99.0, phi_pos, False
    return math.asinh(z_pos / r_pos), phi_pos, True


@nb.njit(cache=True)
def _detector_kernel(offsets, px, py, pz, e, pdg, charge, is_pu,
                     sc, eff, eff_e_high, res, res_edges,
                     e_edges, e_nphi, e_first, e_res_edges, e_res, e_shape,
                     h_edges, h_nphi, h_first, h_res_edges, h_res, h_shape):
    n_ev = offsets.shape[0] - 1
    n_all = offsets[-1] - offsets[0]
    radius, half_length, bz = sc[0], sc[1], sc[2]
    f_k0 = sc[6]
    smear_center = sc[7] > 0.5
    cap = 3 * n_all + 16
    c_pt = np.empty(cap)
    c_eta = np.empty(cap)
    c_phi = np.empty(cap)
    c_m = np.empty(cap)
    c_pdg = np.empty(cap, np.int32)
    c_q = np.empty(cap, np.int8)
    c_pu = np.zeros(cap, np.bool_)
    c_off = np.zeros(n_ev + 1, np.int64)
    n_e = e_first[-1]
    n_h = h_first[-1]
    # per-calorimeter scratch: true energy, expected track energy, track variance, stamp
    e_true = np.zeros(n_e)
    e_trk = np.zeros(n_e)
    e_trk_s2 = np.zeros(n_e)
    e_scale = np.ones(n_e)
    e_stamp = np.full(n_e, -1, np.int64)
    h_true = np.zeros(n_h)
    h_trk = np.zeros(n_h)
    h_trk_s2 = np.zeros(n_h)
    h_scale = np.ones(n_h)
    h_stamp = np.full(n_h, -1, np.int64)
    e_touched = np.empty(max(n_all, 1), np.int64)
    h_touched = np.empty(max(n_all, 1), np.int64)
    trk_ecell = np.empty(max(n_all, 1), np.int64)
    trk_hcell = np.empty(max(n_all, 1), np.int64)
    out = 0
    for ev in range(n_ev):
        n_et = 0
        n_ht = 0
        first_track = out
        for i in range(offsets[ev], offsets[ev + 1]):
            apdg = abs(pdg[i])
            if apdg == 12 or apdg == 14 or apdg == 16 or apdg == 1000022:
                continue
            pt = math.sqrt(px[i] * px[i] + py[i] * py[i])
            if pt < 1.0e-9:
                continue
            eta = math.asinh(pz[i] / pt)
            phi = math.atan2(py[i], px[i])
            aeta = abs(eta)
            q = charge[i]
            energy = e[i]
            # -- tracking
            tracked = False
            kind = 0
            if apdg == 11:
                kind = 1
            elif apdg == 13:
                kind = 2
            if q != 0:
                eps = _track_eff(kind, pt, aeta, sc, eff, eff_e_high)
                if eps > 0.0 and np.random.random() < eps:
                    tracked = True
            # -- calorimeter fractions
            f_e = 0.0
            f_h = 1.0
            if apdg == 11 or apdg == 22 or apdg == 111:
                f_e = 1.0
                f_h = 0.0
            elif apdg == 310 or apdg == 3122:
                f_e = f_k0
                f_h = 1.0 - f_k0
            elif apdg == 13:
                f_e = 0.0
                f_h = 0.0
            ecell = -1
            hcell = -1
            if f_e + f_h > 0.0:
                ceta, cphi, reached = _impact(pt, eta, phi, q, radius, half_length, bz)
                if reached:
                    if f_e > 0.0:
                        ecell = _cell_index(ceta, cphi, e_edges, e_nphi, e_first)
                    if f_h > 0.0:
                        hcell = _cell_index(ceta, cphi, h_edges, h_nphi, h_first)
            if ecell >= 0:
                if e_stamp[ecell] != ev:
                    e_stamp[ecell] = ev
                    e_true[ecell] = 0.0
                    e_trk[ecell] = 0.0
                    e_trk_s2[ecell] = 0.0
                    e_scale[ecell] = 1.0
                    e_touched[n_et] = ecell
                    n_et += 1
                e_true[ecell] += f_e * energy
            if hcell >= 0:
                if h_stamp[hcell] != ev:
                    h_stamp[hcell] = ev
                    h_true[hcell] = 0.0
                    h_trk[hcell] = 0.0
                    h_trk_s2[hcell] = 0.0
                    h_scale[hcell] = 1.0
                    h_touched[n_ht] = hcell
                    n_ht += 1
                h_true[hcell] += f_h * energy
            if tracked:
                rel = _track_res(kind, pt, aeta, res, res_edges)
                pt_s = _lognormal(pt, rel * pt)
                if kind == 1:
                    m = _M_ELECTRON
                elif kind == 2:
                    m = _M_MUON
                else:
                    m = _M_PION
                ch = math.cosh(eta)
                e_t = math.sqrt(pt_s * pt_s * ch * ch + m * m)
                c_pt[out] = pt_s
                c_eta[out] = eta
                c_phi[out] = phi
                c_m[out] = m
                sgn = 1 if q > 0 else -1
                if kind == 1:
                    c_pdg[out] = -11 * sgn
                elif kind == 2:
                    c_pdg[out] = -13 * sgn
                else:
                    c_pdg[out] = 211 * sgn
                c_q[out] = q
                c_pu[out] = is_pu[i]
                trk_ecell[out - first_track] = ecell
                trk_hcell[out - first_track] = hcell
                if ecell >= 0:
                    e_trk[ecell] += f_e * e_t
                    e_trk_s2[ecell] += (rel * f_e * e_t) ** 2
                if hcell >= 0:
                    h_trk[hcell] += f_h * e_t
                    h_trk_s2[hcell] += (rel * f_h * e_t) ** 2
                out += 1
        n_tracks = out - first_track
        # -- towers: smear, threshold, energy flow
        for calo in range(2):
            if calo == 0:
                n_t = n_et
                touched = e_touched
                true_e = e_true
                trk_e = e_trk
                trk_s2 = e_trk_s2
                scale = e_scale
                edges = e_edges
                nphi = e_nphi
                first = e_first
                r_edges = e_res_edges
                r_terms = e_res
                r_shape = e_shape
                e_min = sc[8]
                sig_min = sc[9]
                pf_id = 22
            else:
                n_t = n_ht
                touched = h_touched
                true_e = h_true
                trk_e = h_trk
                trk_s2 = h_trk_s2
                scale = h_scale
                edges = h_edges
                nphi = h_nphi
                first = h_first
                r_edges = h_res_edges
                r_terms = h_res
                r_shape = h_shape
                e_min = sc[10]
                sig_min = sc[11]
                pf_id = 130
            for k in range(n_t):
                cell = touched[k]
                ring = _cell_ring(cell, first)
                eta_lo = edges[ring]
                eta_hi = edges[ring + 1]
                eta_c = 0.5 * (eta_lo + eta_hi)
                sigma = _calo_sigma(true_e[cell], eta_c, r_edges, r_terms, r_shape)
                energy = _lognormal(true_e[cell], sigma)
                if energy < e_min or energy < sig_min * sigma:
                    energy = 0.0
                t_sig = math.sqrt(trk_s2[cell])
                neutral = energy - trk_e[cell]
                if neutral < 0.0:
                    neutral = 0.0
                denom = math.sqrt(t_sig * t_sig + sigma * sigma)
                n_sig = neutral / denom if denom > 0.0 else 0.0
                if neutral > e_min and n_sig > sig_min:
                    if smear_center:
                        eta_n = eta_lo + (eta_hi - eta_lo) * np.random.random()
                        dphi = 2.0 * math.pi / nphi[ring]
                        iphi = cell - first[ring]
                        phi_n = -math.pi + dphi * (iphi + np.random.random())
                    else:
                        eta_n = eta_c
                        dphi = 2.0 * math.pi / nphi[ring]
                        phi_n = -math.pi + dphi * (cell - first[ring] + 0.5)
                    c_pt[out] = neutral / math.cosh(eta_n)
                    c_eta[out] = eta_n
                    c_phi[out] = wrap_phi(phi_n)
                    c_m[out] = 0.0
                    c_pdg[out] = pf_id
                    c_q[out] = 0
                    c_pu[out] = False
                    out += 1
                elif trk_e[cell] > 0.0 and t_sig > 0.0 and sigma > 0.0:
                    w_t = 1.0 / (t_sig * t_sig)
                    w_c = 1.0 / (sigma * sigma)
                    best = (w_t * trk_e[cell] + w_c * energy) / (w_t + w_c)
                    scale[cell] = best / trk_e[cell]
        for t in range(n_tracks):
            j = first_track + t
            f = 1.0
            if trk_ecell[t] >= 0:
                f *= e_scale[trk_ecell[t]]
            if trk_hcell[t] >= 0:
                f *= h_scale[trk_hcell[t]]
            c_pt[j] *= f
        c_off[ev + 1] = out
    return c_off, c_pt[:out], c_eta[:out], c_phi[:out], c_m[:out], c_pdg[:out], c_q[:out], c_pu[:out]


def simulate_detector(
    particles: ParticleBlock, is_pileup: np.ndarray, arrays: DetectorArrays, seed: int
) -> PFBlock:
    """Run tracking, calorimetry and particle flow on a block; all candidates (before CHS).

    ``seed`` (0 .. 2^32 - 1) seeds numba's generator for this block only.
    """
    if len(is_pileup) != len(particles.px):
        raise HepfastsimError(
            f"is_pileup must have one entry per particle: expected {len(particles.px)}, got {len(is_pileup)}"
        )
    _seed(int(seed) % (2**32))
    a = arrays
    off, pt, eta, phi, m, pdg, q, pu = _detector_kernel(
        particles.offsets, particles.px, particles.py, particles.pz, particles.e, particles.pdg,
        particles.charge, is_pileup,
        a.scalars, a.eff, a.eff_e_high, a.res, a.res_edges,
        a.e_edges, a.e_nphi, a.e_first, a.e_res_edges, a.e_res, a.e_shape,
        a.h_edges, a.h_nphi, a.h_first, a.h_res_edges, a.h_res, a.h_shape,
    )
    return PFBlock(off, pt, eta, phi, m, pdg, q, pu)
