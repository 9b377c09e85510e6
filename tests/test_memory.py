"""`mg.memory`: bytes held for backward, counted exactly (hand-computed cases), freed after
backward, linear in T for full BPTT and about sqrt(T) with checkpointed segments."""
import gc
import math

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import minigrad as mg


def _rnn_params(n_in, n_hid, seed=0):
    rng = np.random.default_rng(seed)
    w = mg.tensor(rng.standard_normal((n_in, n_hid)) * 0.3, requires_grad=True)
    u = mg.tensor(rng.standard_normal((n_hid, n_hid)) * 0.3, requires_grad=True)
    return w, u


def _steps(x, h, w, u, t0, t1):
    """Elman steps t0..t1-1: h = tanh(x_t @ w + h @ u), composed from primitives."""
    for t in range(t0, t1):
        h = mg.tanh(x[t] @ w + h @ u)
    return h


def _segment(w, u, t0, t1):
    return lambda x, h: _steps(x, h, w, u, t0, t1)


def _unroll(x, h, w, u, K=None):
    T = x.shape[0]
    if K is None:
        return _steps(x, h, w, u, 0, T)
    for t0 in range(0, T, K):
        h = mg.checkpoint(_segment(w, u, t0, min(t0 + K, T)), x, h)
    return h


@given(T=st.integers(1, 12), B=st.integers(1, 3), n_in=st.integers(1, 4), n_hid=st.integers(1, 4),
       x_grad=st.booleans())
def test_full_bptt_bytes_by_hand(T, B, n_in, n_hid, x_grad):
    # per step: Tanh keeps its output; MatMul keeps h (that same array: counted once, under
    # Tanh), not w or u (leaves), and x[t]: a leaf when x needs no gradient, otherwise a view
    # of the leaf x made by GetItem: either way user data, counted by its base (x), so free.
    # GetItem keeps its index, the int t: not an array.
    w, u = _rnn_params(n_in, n_hid)
    x = mg.tensor(np.ones((T, B, n_in)), requires_grad=x_grad)
    h0 = mg.tensor(np.zeros((B, n_hid)))  # a leaf: not counted
    with mg.memory.track() as m:
        h = _unroll(x, h0, w, u)
        held = m.live_bytes
        s = mg.memory.summary(h)
        h.sum().backward()
    per_step = 8 * B * n_hid
    assert held == m.peak_bytes == T * per_step
    assert m.live_bytes == 0 and m.live_arrays == 0
    assert s.total_bytes == held
    assert s.by_op["Tanh"] == {"nodes": T, "arrays": T, "bytes": T * 8 * B * n_hid}
    assert s.by_op["MatMul"] == {"nodes": 2 * T, "arrays": 0, "bytes": 0}
    assert s.by_op["Add"]["bytes"] == 0


def test_view_of_a_non_leaf_still_counts_at_its_own_size():
    # x[t] of a tensor made by an op (exp(x)) is a view of graph memory: its own bytes count
    x = mg.tensor(np.ones((4, 3)), requires_grad=True)
    w = mg.tensor(np.ones((3, 2)), requires_grad=True)
    with mg.memory.track() as m:
        e = mg.exp(x)                 # Exp keeps its (4, 3) output: 96 bytes
        y = e[1:3] @ w                # MatMul keeps the (2, 3) view of it: 48 bytes
        assert m.live_bytes == 96 + 48
        y.sum().backward()
    assert (m.peak_bytes, m.live_bytes) == (144, 0)


def test_checkpointed_segments_keep_slices_of_the_input_for_free():
    # a segment given x[t0:t1] of an input x that requires grad keeps that slice (a view of the
    # leaf x: free) and its input state (counted): by hand, (T/K - 1) states of (B, H) float64
    T, K, B, n_in, n_hid = 8, 2, 2, 3, 4
    w, u = _rnn_params(n_in, n_hid)
    x = mg.tensor(np.ones((T, B, n_in)) * 0.1, requires_grad=True)
    h = mg.tensor(np.zeros((B, n_hid)))

    def segment(xs, h):
        for t in range(xs.shape[0]):
            h = mg.tanh(xs[t] @ w + h @ u)
        return h
    with mg.memory.track() as m:
        for t0 in range(0, T, K):
            h = mg.checkpoint(segment, x[t0:t0 + K], h)
        assert m.live_bytes == (T // K - 1) * 8 * B * n_hid
        h.sum().backward()
    assert m.live_bytes == 0 and x.grad is not None


def test_index_arrays_of_indexing_are_counted_and_freed():
    # GetItem saves its index through save_for_backward: an int64 index of 5 entries is 40
    # bytes held until backward; the gathered rows are a new array (fancy indexing copies) that
    # Tanh does not keep (it keeps its output, (5, 3) float64 = 120 bytes)
    x = mg.tensor(np.arange(12.0).reshape(4, 3) / 10, requires_grad=True)
    index = np.array([0, 0, 2, 3, 1])
    with mg.memory.track() as m:
        y = mg.tanh(x[index])
        assert m.live_bytes == 40 + 120 and m.live_arrays == 2
        node = y.grad_fn.parents[0][0]
        assert node.name == "GetItem" and node.saved[0] is index
        y.sum().backward()
        assert node.saved == ()
    assert (m.peak_bytes, m.live_bytes) == (160, 0)
    expected = np.zeros((4, 3))
    np.add.at(expected, index, 1 - np.tanh(x.numpy()[index]) ** 2)
    np.testing.assert_allclose(x.grad.numpy(), expected, rtol=1e-12)


def test_array_held_by_several_nodes_counts_once_and_leaves_are_free():
    x = mg.tensor(np.arange(6.0).reshape(2, 3), requires_grad=True)
    with mg.memory.track() as m:
        y = mg.exp(x)          # keeps its output: 48 bytes
        z = y * y * y          # Mul keeps y twice, then (y*y, y): only y*y is new
        leaf_only = x * x      # both inputs are the leaf's data: nothing new
        assert m.live_bytes == 48 + 48
        del leaf_only
        z.sum().backward()
    assert (m.peak_bytes, m.live_bytes) == (96, 0)


def test_graph_dropped_without_backward_is_released():
    w, u = _rnn_params(3, 5)
    x = mg.tensor(np.ones((4, 2, 3)))
    with mg.memory.track() as m:
        h = _unroll(x, mg.tensor(np.zeros((2, 5))), w, u)
        assert m.live_bytes == 4 * 8 * 2 * 5
        del h
        gc.collect()
        assert m.live_bytes == 0
    assert m.peak_bytes == 4 * 8 * 2 * 5


def test_nested_trackers_and_frozen_after_exit():
    x = mg.tensor(np.ones(10), requires_grad=True)
    with mg.memory.track() as outer:
        a = mg.exp(x)                                   # 80 bytes
        with mg.memory.track() as inner:
            b = mg.tanh(a)                              # 80 bytes, seen by both
            assert (inner.live_bytes, outer.live_bytes) == (80, 160)
        b.sum().backward()                              # after the inner block: outer only
        assert outer.live_bytes == 0
    assert (inner.peak_bytes, inner.live_bytes) == (80, 80)
    assert outer.peak_bytes == 160
    assert mg.engine.state.tracker is None


def test_dropout_mask_and_reset_peak():
    x = mg.tensor(np.ones((4, 5)), requires_grad=True)
    with mg.memory.track() as m:
        y = mg.dropout(x, 0.5)
        assert m.live_bytes == 4 * 5 * 8  # the mask, in x's dtype
        y.sum().backward()
        m.reset_peak()
        assert m.peak_bytes == 0


@pytest.mark.parametrize("T", [16, 64, 256, 1024])
def test_peak_linear_for_full_and_sqrt_for_checkpointed(T):
    B, n_in, n_hid = 2, 3, 4
    w, u = _rnn_params(n_in, n_hid)
    x = mg.tensor(np.ones((T, B, n_in)) * 0.1)
    h0 = mg.tensor(np.zeros((B, n_hid)))
    step = state = 8 * B * n_hid  # one Tanh output a step (x needs no gradient: free)
    K = math.isqrt(T)
    with mg.memory.track() as full:
        h = _unroll(x, h0, w, u)
        h.sum().backward()
    with mg.memory.track() as ck:
        hc = _unroll(x, h0, w, u, K)
        bounds = ck.live_bytes
        hc.sum().backward()
    assert full.peak_bytes == T * step
    # forward: the T/K segment nodes keep their input state, except the first (a leaf)
    assert bounds == (T // K - 1) * state
    # the peak is reached in the backward of the last segment: all boundaries are still held
    # and its K steps are recomputed (its input state is one of the boundaries)
    assert ck.peak_bytes == bounds + K * step
    assert ck.live_bytes == 0
    np.testing.assert_allclose(hc.numpy(), h.numpy(), rtol=1e-12)


def test_summary_table_and_errors():
    x = mg.tensor(np.ones(3), requires_grad=True)
    y = mg.tanh(mg.exp(x))
    s = mg.memory.summary(y)
    text = str(s)
    assert "Tanh" in text and "Exp" in text and "total" in text
    assert s.by_op["Exp"]["bytes"] == s.by_op["Tanh"]["bytes"] == 24 and s.total_bytes == 48
    y.sum().backward()
    assert mg.memory.summary(y).total_bytes == 0  # freed after backward
    with pytest.raises(TypeError, match="memory.summary"):
        mg.memory.summary(np.ones(3))
