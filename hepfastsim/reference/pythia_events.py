"""Hard-process events from Pythia 8 (``pythia8mc``) as flat numpy arrays.

One :class:`PythiaGenerator` is built per block of events with the block's own seed
(``Random:seed``), so the events of a block depend only on (run seed, block index) and
never on which worker produced them or on the order of the blocks. Events come out of
``Pythia.nextBatch`` (Pythia's own awkward interface) and are flattened once per block.

Units: GeV for momenta and energies.
"""

from __future__ import annotations

from dataclasses import dataclass

import awkward as ak
import numpy as np

from hepfastsim.errors import HepfastsimError
from hepfastsim.reference.config import GeneratorConfig

__all__ = [
    "PYTHIA_SEED_MAX",
    "ParticleBlock",
    "GenBlock",
    "PythiaGenerator",
    "pythia_seed",
    "heavy_flavour",
    "INVISIBLE_PDG",
]

#: Pythia's ``Random:seed`` accepts 0 .. 900 000 000 (0 means "seed from the clock").
PYTHIA_SEED_MAX = 900_000_000
#: particles the detector never sees: neutrinos and the lightest neutralino.
INVISIBLE_PDG = (12, 14, 16, 1000022)


def pythia_seed(run_seed: int, block: int, stream: int = 0) -> int:
    """Pythia ``Random:seed`` of one block, in 1 .. 900 000 000, from (run seed, block, stream)."""
    state = np.random.SeedSequence([int(run_seed), int(block), int(stream), 0x5EED]).generate_state(1, np.uint64)[0]
    return int(state % np.uint64(PYTHIA_SEED_MAX)) + 1


def heavy_flavour(pdg: np.ndarray) -> np.ndarray:
    """Heaviest quark (4 = c, 5 = b, else 0) in hadrons with PDG codes ``pdg``.

    Uses the PDG numbering scheme: the quark content of a hadron sits in the hundreds,
    tens (mesons) and thousands (baryons) digits of ``|pdg|``.
    """
    a = np.abs(np.asarray(pdg, dtype=np.int64))
    is_hadron = (a > 100) & (a < 1_000_000)
    d1 = (a // 1000) % 10
    d2 = (a // 100) % 10
    d3 = (a // 10) % 10
    top = np.maximum(np.maximum(d1, d2), np.where(d1 > 0, d3, 0))
    out = np.where(is_hadron & (top == 5), 5, np.where(is_hadron & (top == 4), 4, 0))
    return out.astype(np.int32)


@dataclass
class ParticleBlock:
    """Particles of a block of events, flat, with ``offsets`` (length n_events + 1).

    ``px, py, pz, e`` in GeV (float64), ``pdg`` (int32), ``charge`` in units of e (int8).
    """

    offsets: np.ndarray
    px: np.ndarray
    py: np.ndarray
    pz: np.ndarray
    e: np.ndarray
    pdg: np.ndarray
    charge: np.ndarray

    @property
    def n_events(self) -> int:
        return len(self.offsets) - 1

    @property
    def counts(self) -> np.ndarray:
        return np.diff(self.offsets)


@dataclass
class GenBlock:
    """One block of hard-process events.

    ``particles``: stable final-state particles (neutrinos included; the detector drops them).
    ``ghosts``: flavour ghosts, with ``pdg`` holding the parton PDG code (partons, |status|
    71-79) or ``1000 * flavour`` for b (5000) and c (4000) hadrons; momenta unscaled.
    ``weight``: event weight (1 unless pT-hat biased); ``pthat`` (GeV).
    ``sigma_pb``: Pythia's estimate of the cross section of the process (pb).
    """

    particles: ParticleBlock
    ghosts: ParticleBlock
    weight: np.ndarray
    pthat: np.ndarray
    sigma_pb: float
    #: pruned hard-process record (|status| 22 and 23: resonances and outgoing partons,
    #: resonance decays included), NanoAOD ``GenPart``; ``hard_status`` is |status| and
    #: ``hard_mother`` the index of the mother within the pruned record of the event, or -1.
    hard: ParticleBlock | None = None
    hard_status: np.ndarray | None = None
    hard_mother: np.ndarray | None = None


def _flatten_particles(prt: ak.Array, mask: ak.Array, charge_of: dict[int, int], pythia) -> ParticleBlock:
    sel = prt[mask]
    counts = ak.to_numpy(ak.num(sel, axis=1)).astype(np.int64)
    offsets = np.zeros(len(counts) + 1, dtype=np.int64)
    np.cumsum(counts, out=offsets[1:])
    pdg = ak.to_numpy(ak.flatten(sel["id"])).astype(np.int32)
    p = sel["p"]
    px = ak.to_numpy(ak.flatten(p["px"])).astype(np.float64)
    py = ak.to_numpy(ak.flatten(p["py"])).astype(np.float64)
    pz = ak.to_numpy(ak.flatten(p["pz"])).astype(np.float64)
    e = ak.to_numpy(ak.flatten(p["e"])).astype(np.float64)
    uniq, inverse = np.unique(pdg, return_inverse=True)
    table = np.empty(len(uniq), dtype=np.int8)
    for k, code in enumerate(uniq):
        code = int(code)
        if code not in charge_of:
            charge_of[code] = int(round(pythia.particleData.chargeType(code) / 3.0))
        table[k] = charge_of[code]
    charge = table[inverse] if len(pdg) else np.zeros(0, dtype=np.int8)
    return ParticleBlock(offsets, px, py, pz, e, pdg, charge.astype(np.int8))


def _pruned_mothers(index: np.ndarray, mother: np.ndarray, offsets: np.ndarray,
                    all_mother: np.ndarray, all_offsets: np.ndarray) -> np.ndarray:
    """Map Pythia mother indices to positions in the pruned per-event list (-1 if none).

    A mother that was not kept (for instance the recoiled copy of a top quark that then
    decays) is followed up its own ``mother1`` chain until a kept ancestor is found.
    """
    out = np.full(len(index), -1, dtype=np.int32)
    for ev in range(len(offsets) - 1):
        a, b = offsets[ev], offsets[ev + 1]
        pos = {int(i): k for k, i in enumerate(index[a:b])}
        base = all_offsets[ev]
        n_all = all_offsets[ev + 1] - base
        for k in range(a, b):
            m = int(mother[k])
            steps = 0
            while m > 0 and m not in pos and steps < 200:
                m = int(all_mother[base + m]) if m < n_all else 0
                steps += 1
            out[k] = pos.get(m, -1)
    return out


class PythiaGenerator:
    """A configured and initialised Pythia for one seed.

    ``generate(n)`` returns a :class:`GenBlock`; ``settings`` are extra ``readString``
    lines (used for the minimum-bias pool).
    """

    def __init__(self, config: GeneratorConfig | None, seed: int, settings: list[str] | None = None) -> None:
        try:
            import pythia8mc as pythia8
        except ImportError as err:  # pragma: no cover - a declared dependency
            raise HepfastsimError("the reference chain needs Pythia 8: pip install pythia8mc") from err
        if not 1 <= int(seed) <= PYTHIA_SEED_MAX:
            raise HepfastsimError(f"Pythia seed must be in 1..{PYTHIA_SEED_MAX}, got {seed}")
        self.config = config
        self.pythia = pythia8.Pythia("", False)
        lines = (config.pythia_settings() if config is not None else []) + list(settings or [])
        lines += ["Random:setSeed = on", f"Random:seed = {int(seed)}"]
        for line in lines:
            if not self.pythia.readString(line):
                raise HepfastsimError(f"Pythia rejected the setting {line!r}")
        if not self.pythia.init():
            raise HepfastsimError(f"Pythia initialisation failed with settings {lines}")
        self._charge_of: dict[int, int] = {}

    def _batch(self, n: int) -> ak.Array:
        parts = []
        have = 0
        tries = 0
        while have < n:
            batch = self.pythia.nextBatch(n - have, "skip")
            parts.append(batch)
            have += len(batch)
            tries += 1
            if tries > 20 and have == 0:
                raise HepfastsimError("Pythia failed to generate any event in 20 attempts")
        return parts[0] if len(parts) == 1 else ak.concatenate(parts)

    def generate(self, n: int) -> GenBlock:
        """Generate ``n`` events; stable particles, flavour ghosts, weights and pT-hat."""
        batch = self._batch(n)
        prt = batch["prt"]
        status = prt["status"]
        pid = prt["id"]
        final = status > 0
        particles = _flatten_particles(prt, final, self._charge_of, self.pythia)
        apid = np.abs(pid)
        astat = np.abs(status)
        parton = (astat >= 71) & (astat <= 79) & (((apid >= 1) & (apid <= 5)) | (apid == 21))
        flat_id = ak.to_numpy(ak.flatten(pid))
        hf_flat = heavy_flavour(flat_id)
        hf = ak.unflatten(hf_flat, ak.num(pid, axis=1))
        ghost_mask = parton | (hf > 0)
        ghosts = _flatten_particles(prt, ghost_mask, self._charge_of, self.pythia)
        hf_g = heavy_flavour(ghosts.pdg)
        ghosts.pdg = np.where(hf_g > 0, 1000 * hf_g, ghosts.pdg).astype(np.int32)
        hard_mask = (astat == 22) | (astat == 23)
        hard = _flatten_particles(prt, hard_mask, self._charge_of, self.pythia)
        hard_status = ak.to_numpy(ak.flatten(astat[hard_mask])).astype(np.int32)
        hard_mother = _pruned_mothers(ak.to_numpy(ak.flatten(ak.local_index(pid)[hard_mask])),
                                      ak.to_numpy(ak.flatten(prt["mother1"][hard_mask])), hard.offsets,
                                      ak.to_numpy(ak.flatten(prt["mother1"])),
                                      np.concatenate([[0], np.cumsum(ak.to_numpy(ak.num(pid, axis=1)))]))
        pthat = np.sqrt(np.maximum(ak.to_numpy(batch["info"]["pT2Hat"]), 0.0))
        cfg = self.config
        if cfg is not None and cfg.process == "qcd" and cfg.bias:
            # PhaseSpace:bias2Selection: the event weight is the inverse of the bias factor
            # (pTHat / ref)^pow (Pythia manual, "Phase Space Cuts").
            weight = (cfg.pthat_min / np.maximum(pthat, cfg.pthat_min)) ** cfg.bias_power
        else:
            weight = np.ones(len(pthat))
        sigma_pb = float(self.pythia.infoPython().sigmaGen()) * 1.0e9  # mb -> pb
        return GenBlock(particles, ghosts, weight.astype(np.float64), pthat, sigma_pb, hard, hard_status, hard_mother)
