"""The hypothesis strategies kit (minigrad.testing.strategies) draws what it promises."""
from __future__ import annotations

import importlib.util
import sys

import numpy as np
import pytest
from hypothesis import find, given
from hypothesis import strategies as st

import minigrad as mg
from minigrad.testing import gradcheck, strategies

# --- the module docstring's three-line example, verbatim -----------------------------------------

def my_op(x):
    return mg.abs(x) * x   # a kink at 0, which tensors(avoid=(0.0,)) keeps away from


@given(strategies.tensors(avoid=(0.0,)))
def test_my_op(x):
    assert gradcheck(my_op, [x])


def test_the_docstring_shows_the_example_above():
    lines = ["@given(strategies.tensors(avoid=(0.0,)))", "def test_my_op(x):",
             "assert gradcheck(my_op, [x])"]
    for line in lines:
        assert line in strategies.__doc__


def test_import_without_hypothesis_says_what_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "hypothesis", None)
    spec = importlib.util.spec_from_file_location("strategies_copy", strategies.__file__)
    with pytest.raises(ImportError, match=r"pip install 'minigrad\[dev\]'"):
        spec.loader.exec_module(importlib.util.module_from_spec(spec))


# --- shapes, broadcastable shapes, axes ----------------------------------------------------------

@given(st.data())
def test_shapes_respect_bounds(data):
    lo_d, hi_d = data.draw(st.integers(0, 2)), data.draw(st.integers(2, 4))
    lo_s, hi_s = data.draw(st.integers(1, 2)), data.draw(st.integers(2, 5))
    shape = data.draw(strategies.shapes(lo_d, hi_d, lo_s, hi_s))
    assert lo_d <= len(shape) <= hi_d
    assert all(lo_s <= n <= hi_s for n in shape)


@given(st.integers(1, 4).flatmap(lambda n: strategies.broadcastable_shapes(n)))
def test_broadcastable_shapes_broadcast_together(shapes):
    np.broadcast_shapes(*shapes)   # raises ValueError when they do not


def test_broadcastable_shapes_include_size_one_and_missing_leading_axes():
    find(strategies.broadcastable_shapes(2), lambda s: len(s[0]) != len(s[1]))
    find(strategies.broadcastable_shapes(2),
         lambda s: len(s[0]) == len(s[1]) and any(a == 1 != b for a, b in zip(*s)))


@given(strategies.shapes().flatmap(lambda s: st.tuples(st.just(s), strategies.axes(len(s)))))
def test_axes_are_valid_for_numpy(shape_axis):
    shape, axis = shape_axis
    np.sum(np.zeros(shape), axis=axis)   # NumPy refuses invalid or repeated axes
    if isinstance(axis, tuple):
        assert len({a % len(shape) for a in axis}) == len(axis)


def test_axes_include_negative_ints_and_tuples():
    assert find(strategies.axes(3), lambda a: isinstance(a, int) and a < 0) < 0
    assert len(find(strategies.axes(3), lambda a: isinstance(a, tuple) and len(a) >= 2)) >= 2
    assert find(strategies.axes(3), lambda a: a is None) is None


# --- arrays, views, tensors ----------------------------------------------------------------------

@given(st.data())
def test_arrays_stay_in_domain_and_away_from_kinks(data):
    shape = data.draw(strategies.shapes())
    dtype = data.draw(st.sampled_from([np.float64, np.float32]))
    lo = data.draw(st.floats(-3, 0))
    hi = lo + data.draw(st.floats(1, 4))
    kink = data.draw(st.floats(lo, hi))
    a = data.draw(strategies.arrays(shape, dtype, domain=(lo, hi), avoid=(kink,), margin=0.1))
    assert a.shape == shape and a.dtype == dtype
    assert ((a >= np.asarray(lo, dtype)) & (a <= np.asarray(hi, dtype))).all()
    assert (np.abs(a.astype(np.float64) - kink) >= 0.1 - 1e-6).all()


@given(st.data())
def test_distinct_arrays_have_no_near_ties(data):
    shape = data.draw(strategies.shapes())
    a = data.draw(strategies.arrays(shape, distinct=True, domain=(-1.0, 1.0)))
    v = np.sort(a.ravel())
    assert (np.diff(v) >= 2.0 / (2 * v.size) - 1e-12).all()


def test_distinct_with_avoid_is_refused():
    with pytest.raises(ValueError, match="distinct"):
        find(strategies.arrays((3,), distinct=True, avoid=(0.0,)), lambda a: True)


@given(strategies.arrays(strategies.shapes()).flatmap(
    lambda a: st.tuples(st.just(a), strategies.views(a))))
def test_views_hold_the_same_values(pair):
    a, v = pair
    np.testing.assert_array_equal(v, a)
    assert v.dtype == a.dtype and not np.shares_memory(v, a)


def test_views_and_tensors_include_noncontiguous_data():
    find(strategies.views(np.zeros((2, 3))), lambda v: not v.flags.c_contiguous and v.strides[0]
         < v.strides[1])                                   # transposed
    find(strategies.views(np.zeros((2, 3))), lambda v: v.strides[-1] == 2 * v.itemsize)  # strided
    find(strategies.tensors(), lambda t: not t.data.flags.c_contiguous)


@given(strategies.tensors())
def test_tensors_are_float64_leaves_requiring_grad(x):
    assert isinstance(x, mg.Tensor) and x.is_leaf and x.requires_grad
    assert x.dtype == np.float64 and ((x.data >= -3) & (x.data <= 3)).all()


# --- indices and sequences -----------------------------------------------------------------------

@given(st.integers(1, 5).flatmap(lambda n: st.tuples(st.just(n), strategies.indices(n))))
def test_indices_are_in_range(n_idx):
    n, idx = n_idx
    assert idx.dtype == np.int64 and ((idx >= 0) & (idx < n)).all()


def test_indices_include_repeats_and_negatives():
    find(strategies.indices(3, shape=(4,)), lambda i: len(set(i.tolist())) < i.size)
    find(strategies.indices(3, shape=(4,), negative=True), lambda i: (i < 0).any())


@given(strategies.sequences(max_T=5, max_B=3, max_F=2))
def test_sequences_shapes_and_lengths(s):
    T, B, F = s.x.shape
    assert 1 <= T <= 5 and 1 <= B <= 3 and 1 <= F <= 2 and s.x.dtype == np.float64
    assert s.lengths.shape == (B,) and s.lengths.dtype == np.int64
    assert ((s.lengths >= 1) & (s.lengths <= T)).all()


@given(strategies.sequences(with_lengths=False))
def test_sequences_without_lengths(s):
    assert s.lengths is None and s.x.ndim == 3


def test_sequences_include_ragged_batches():
    find(strategies.sequences(), lambda s: len(set(s.lengths.tolist())) > 1)
