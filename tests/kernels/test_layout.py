"""hepfastsim.layout: awkward <-> flat numpy + offsets."""

from __future__ import annotations

import awkward as ak
import numpy as np
import pytest

from hepfastsim import layout


def test_round_trip_with_empty_lists():
    jagged = ak.Array([[1.0, 2.0], [], [3.5], []])
    flat, offsets = layout.to_flat(jagged)
    np.testing.assert_array_equal(flat, [1.0, 2.0, 3.5])
    np.testing.assert_array_equal(offsets, [0, 2, 2, 3, 3])
    assert offsets.dtype == np.int64 and flat.flags.c_contiguous
    assert ak.to_list(layout.from_flat(flat, offsets)) == ak.to_list(jagged)


def test_sliced_and_integer_input_is_packed_and_converted():
    jagged = ak.Array([[1, 2, 3], [4], [5, 6]])[1:]
    flat, offsets = layout.to_flat(jagged)
    assert flat.dtype == np.float64
    np.testing.assert_array_equal(flat, [4.0, 5.0, 6.0])
    np.testing.assert_array_equal(offsets, [0, 1, 3])


def test_fields_and_records():
    rec = ak.zip({"pt": ak.Array([[1.0, 2.0], []]), "eta": ak.Array([[0.1, 0.2], []])})
    cols, offsets = layout.to_flat_fields(rec, ("pt", "eta", "mass"), optional=("mass",))
    assert set(cols) == {"pt", "eta"}
    np.testing.assert_array_equal(offsets, [0, 2, 2])
    back = layout.from_flat_fields(cols, offsets)
    assert ak.to_list(back) == ak.to_list(rec)
    with pytest.raises(ValueError, match=r"expected fields \['pt', 'phi'\], got \['eta', 'pt'\]"):
        layout.to_flat_fields(rec, ("pt", "phi"))


def test_errors_say_what_was_expected():
    with pytest.raises(ValueError, match="expected a jagged array"):
        layout.to_flat(ak.Array([1.0, 2.0]))
    with pytest.raises(ValueError, match="expected no missing values"):
        layout.to_flat(ak.Array([[1.0, None]]))
    with pytest.raises(ValueError, match="expected offsets from 0 to 3"):
        layout.from_flat(np.zeros(3), np.array([0, 2]))
    with pytest.raises(ValueError, match="expected one number per jet"):
        layout.per_item(ak.Array([[1.0], [2.0]]))


def test_per_item_from_record_field():
    jets = ak.zip({"pt": [10.0, 20.0], "eta": [0.0, 1.0]})
    np.testing.assert_array_equal(layout.per_item(jets, "pt"), [10.0, 20.0])


def test_virtual_arrays_are_materialised():
    # coffea builds virtual (lazily loaded) arrays: buffers given as callables
    concrete = ak.zip({"pt": ak.Array([[1.0, 2.0], [], [3.0]]), "eta": ak.Array([[0.1, 0.2], [], [0.3]])})
    form, length, buffers = ak.to_buffers(concrete)
    loads = []

    def loader(value, key):
        def load():
            loads.append(key)
            return value

        return load

    virtual = ak.from_buffers(form, length, {k: loader(v, k) for k, v in buffers.items()})
    assert not loads
    cols, offsets = layout.to_flat_fields(virtual, ("pt", "eta"))
    np.testing.assert_array_equal(cols["pt"], [1.0, 2.0, 3.0])
    np.testing.assert_array_equal(offsets, [0, 2, 2, 3])
    assert loads
