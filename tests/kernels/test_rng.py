from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from hepfastsim.kernels.rng import event_keys, normals, uniforms


def _offsets(counts: np.ndarray) -> np.ndarray:
    return np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)


def test_keys_depend_on_every_input() -> None:
    entries = np.arange(1000)
    base = event_keys(1, 2, entries)
    assert len(np.unique(base)) == 1000
    for other in (event_keys(2, 2, entries), event_keys(1, 3, entries), event_keys(1, 2, entries, 1)):
        assert not np.any(other == base)


def test_numbers_do_not_depend_on_chunking() -> None:
    counts = np.random.default_rng(0).integers(0, 9, 500)
    keys = event_keys(7, 99, np.arange(500))
    whole = normals(keys, _offsets(counts), 3, domain=4)
    pieces = [
        normals(keys[a:b], _offsets(counts[a:b]), 3, domain=4) for a, b in ((0, 1), (1, 250), (250, 500))
    ]
    np.testing.assert_array_equal(np.concatenate(pieces), whole)


def test_distributions() -> None:
    keys = event_keys(3, 5, np.arange(20000))
    offsets = _offsets(np.full(20000, 5))
    u = uniforms(keys, offsets, 2, domain=0)
    z = normals(keys, offsets, 2, domain=1)
    assert 0.0 < u.min() and u.max() < 1.0
    assert stats.kstest(u[:, 0], "uniform").pvalue > 1e-3
    assert stats.kstest(z[:, 1], "norm").pvalue > 1e-3
    assert abs(np.corrcoef(z[:, 0], z[:, 1])[0, 1]) < 0.01
    assert abs(np.corrcoef(u[:, 0], uniforms(keys, offsets, 1, domain=9)[:, 0])[0, 1]) < 0.01


def test_bad_offsets() -> None:
    with pytest.raises(ValueError, match="n_events \\+ 1"):
        uniforms(np.zeros(3, np.uint64), np.zeros(3, np.int64), 1, 0)


def test_numbers_at_chosen_places_are_those_of_the_full_streams() -> None:
    from hepfastsim.kernels.rng import normals_at, uniforms_at

    keys = event_keys(1, 2, np.arange(5))
    offsets = np.array([3, 5, 5, 9, 10, 12])  # a chunk starting at object 3; one event without objects
    rng = np.random.default_rng(0)
    items, streams = rng.integers(0, 9, 200), rng.integers(0, 40, 200)
    assert np.array_equal(uniforms_at(keys, offsets, 40, 7, items, streams), uniforms(keys, offsets, 40, 7)[items, streams])
    assert np.array_equal(normals_at(keys, offsets, 40, 7, items, streams), normals(keys, offsets, 40, 7)[items, streams])
    assert uniforms_at(keys, offsets, 40, 7, items[:0], streams[:0]).shape == (0,)
    with pytest.raises(ValueError, match="streams"):
        uniforms_at(keys, offsets, 40, 7, items, streams + 40)
    with pytest.raises(ValueError, match="items"):
        uniforms_at(keys, offsets, 40, 7, items + 9, streams)
    with pytest.raises(ValueError, match="one shape"):
        uniforms_at(keys, offsets, 40, 7, items, streams[:3])
