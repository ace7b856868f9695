"""Fixtures for the kernel / jets tests: seeded random jets as flat arrays + offsets."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pytest


@dataclass(frozen=True)
class FlatJets:
    pt: np.ndarray
    eta: np.ndarray
    phi: np.ndarray
    mass: np.ndarray
    offsets: np.ndarray

    @property
    def n_jets(self) -> int:
        return self.offsets.size - 1

    def jet(self, j: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        a, b = self.offsets[j], self.offsets[j + 1]
        return self.pt[a:b], self.eta[a:b], self.phi[a:b], self.mass[a:b]


def make_jets(seed: int, n_jets: int, max_n: int = 40, width: float = 0.2, centre_phi: float = 1.0) -> FlatJets:
    """Two- or three-prong-ish jets: constituents around 1-3 random sub-axes."""
    rng = np.random.default_rng(seed)
    counts = rng.integers(2, max_n, n_jets)
    pts, etas, phis = [], [], []
    for n in counts:
        n_prongs = rng.integers(1, 4)
        prong_eta = rng.normal(0.0, width, n_prongs) + rng.uniform(-2.0, 2.0)
        prong_phi = rng.normal(0.0, width, n_prongs) + centre_phi
        which = rng.integers(0, n_prongs, n)
        etas.append(prong_eta[which] + rng.normal(0.0, 0.05, n))
        phis.append(prong_phi[which] + rng.normal(0.0, 0.05, n))
        pts.append(rng.exponential(15.0, n) + 0.5)
    pt = np.concatenate(pts)
    eta = np.concatenate(etas)
    phi = (np.concatenate(phis) + np.pi) % (2 * np.pi) - np.pi
    mass = rng.uniform(0.0, 1.0, pt.size) * (rng.uniform(size=pt.size) < 0.5)
    offsets = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
    return FlatJets(pt, eta, phi, mass, offsets)


@pytest.fixture(scope="session")
def random_jets() -> FlatJets:
    return make_jets(seed=20240611, n_jets=150)
