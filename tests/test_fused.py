"""rnn.kernels: every fused op equals the same maths composed from minigrad primitives.

The references below are written from primitives only (matmul, split, sigmoid, tanh, relu, mul,
add, where, stack), so a mistake in a hand-derived backward shows as a gradient that differs from
the one the engine derives. Values and all gradients are compared in float64; gradcheck (central
finite differences) checks each op on its own; lengths, the fake device, memory and bad input
have tests of their own.
"""
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import minigrad as mg
from minigrad import backend
from minigrad.testing import gradcheck
from minigrad.testing.strategies import sequences
from rnn import kernels as fused

F64 = np.float64


# --- composed references --------------------------------------------------------------------------

def ref_lstm_step(gx, h, c, w_hh):
    a_i, a_f, a_g, a_o = mg.split(gx + h @ w_hh.T, 4, axis=1)
    i, f, g, o = mg.sigmoid(a_i), mg.sigmoid(a_f), mg.tanh(a_g), mg.sigmoid(a_o)
    c = f * c + i * g
    return o * mg.tanh(c), c


def ref_gru_step(gx, h, w_hh, b_hh, reset_after=False):
    H = h.shape[1]
    x_r, x_z, x_n = mg.split(gx, 3, axis=1)
    if reset_after:
        h_r, h_z, h_n = mg.split(h @ w_hh.T + b_hh, 3, axis=1)
        r, z = mg.sigmoid(x_r + h_r), mg.sigmoid(x_z + h_z)
        n = mg.tanh(x_n + r * h_n)
    else:
        h_r, h_z = mg.split(h @ w_hh[:2 * H].T + b_hh[:2 * H], 2, axis=1)
        r, z = mg.sigmoid(x_r + h_r), mg.sigmoid(x_z + h_z)
        n = mg.tanh(x_n + (r * h) @ w_hh[2 * H:].T + b_hh[2 * H:])
    return z * h + (1 - z) * n


def ref_rnn_step(gx, h, w_hh, nonlinearity="tanh"):
    a = gx + h @ w_hh.T
    return mg.tanh(a) if nonlinearity == "tanh" else mg.relu(a)


def ref_sequence(step, x, state, w_ih, b, lengths=None):
    """Run `step(gx_t, state) -> state` (a tuple of tensors; the output is state[0]) over time;
    past each sequence's end the output is 0 and the state is kept."""
    gx = x @ w_ih.T + b if b is not None else x @ w_ih.T
    outs = []
    for t in range(x.shape[0]):
        new = step(gx[t], state)
        out = new[0]
        if lengths is not None:
            m = backend.to_device((lengths > t)[:, None], backend.device_of(x.data))
            out = mg.where(m, out, 0.0)
            new = tuple(mg.where(m, a, s) for a, s in zip(new, state))
        outs.append(out)
        state = new
    return (mg.stack(outs),) + tuple(state)


def ref_lstm_sequence(x, h0, c0, w_ih, w_hh, b, lengths=None):
    return ref_sequence(lambda gx, s: ref_lstm_step(gx, s[0], s[1], w_hh), x, (h0, c0), w_ih, b,
                        lengths)


def ref_gru_sequence(x, h0, w_ih, w_hh, b_ih, b_hh, reset_after=False, lengths=None):
    return ref_sequence(lambda gx, s: (ref_gru_step(gx, s[0], w_hh, b_hh, reset_after),),
                        x, (h0,), w_ih, b_ih, lengths)


def ref_rnn_sequence(x, h0, w_ih, w_hh, b, nonlinearity="tanh", lengths=None):
    return ref_sequence(lambda gx, s: (ref_rnn_step(gx, s[0], w_hh, nonlinearity),),
                        x, (h0,), w_ih, b, lengths)


# --- helpers --------------------------------------------------------------------------------------

def tensors(rng, shapes, scale=0.6, device=None, zero=()):
    """float64 leaf tensors requiring grad, standard normal times `scale` (zeros for `zero`)."""
    return [mg.tensor(np.zeros(s) if k in zero else rng.standard_normal(s) * scale, dtype=F64,
                      requires_grad=True, device=device) for k, s in enumerate(shapes)]


def as_tuple(out):
    return out if isinstance(out, tuple) else (out,)


def assert_same(fused_fn, ref_fn, inputs, seed=0, rtol=1e-9, atol=1e-11):
    """Values and the gradients of a random weighting of all outputs, w.r.t. every input."""
    got, want = as_tuple(fused_fn(*inputs)), as_tuple(ref_fn(*inputs))
    assert len(got) == len(want)
    for g, w in zip(got, want):
        assert g.shape == w.shape and g.dtype == w.dtype
        np.testing.assert_allclose(g.numpy(), w.numpy(), rtol=rtol, atol=atol)
    rng = np.random.default_rng(seed)
    gouts = [mg.tensor(rng.standard_normal(o.shape), dtype=F64, device=o.device) for o in got]
    live = [t for t in inputs if isinstance(t, mg.Tensor) and t.requires_grad]
    g_got = mg.grad(list(got), live, grad_outputs=gouts, allow_unused=True)
    g_want = mg.grad(list(want), live, grad_outputs=gouts, allow_unused=True)
    for k, (a, b) in enumerate(zip(g_got, g_want)):
        a = np.zeros(live[k].shape) if a is None else a.numpy()
        b = np.zeros(live[k].shape) if b is None else b.numpy()
        np.testing.assert_allclose(a, b, rtol=rtol, atol=atol, err_msg=f"gradient of input {k}")
    return got


dims = st.integers(1, 4)
seeds = st.integers(0, 2**16)


# --- per step -------------------------------------------------------------------------------------

@given(B=dims, H=dims, seed=seeds)
def test_lstm_step_matches_composed(B, H, seed):
    ins = tensors(np.random.default_rng(seed), [(B, 4 * H), (B, H), (B, H), (4 * H, H)])
    assert_same(fused.lstm_step, ref_lstm_step, ins, seed)


@given(B=dims, H=dims, seed=seeds, reset_after=st.booleans())
def test_gru_step_matches_composed(B, H, seed, reset_after):
    ins = tensors(np.random.default_rng(seed), [(B, 3 * H), (B, H), (3 * H, H), (3 * H,)])
    assert_same(lambda *a: fused.gru_step(*a, reset_after=reset_after),
                lambda *a: ref_gru_step(*a, reset_after=reset_after), ins, seed)


@given(B=dims, H=dims, seed=seeds, nonlinearity=st.sampled_from(["tanh", "relu"]))
def test_rnn_step_matches_composed(B, H, seed, nonlinearity):
    ins = tensors(np.random.default_rng(seed), [(B, H), (B, H), (H, H)])
    assert_same(lambda *a: fused.rnn_step(*a, nonlinearity),
                lambda *a: ref_rnn_step(*a, nonlinearity), ins, seed)


def test_step_ops_are_one_node():
    ins = tensors(np.random.default_rng(0), [(2, 12), (2, 3), (2, 3), (12, 3)])
    h, c = fused.lstm_step(*ins)
    assert h._node is c._node and h._node.parents[1][0] is ins[1]   # straight to the leaves


# --- whole sequences ------------------------------------------------------------------------------

seq = sequences(max_T=5, max_B=3, max_F=3)


def _lengths(s, use):
    return s.lengths if use else None


@given(s=seq, H=dims, seed=seeds, use_lengths=st.booleans(), zero_state=st.booleans())
def test_lstm_sequence_matches_composed(s, H, seed, use_lengths, zero_state):
    T, B, I = s.x.shape
    x = mg.tensor(s.x, requires_grad=True)
    rest = tensors(np.random.default_rng(seed), [(B, H), (B, H), (4 * H, I), (4 * H, H), (4 * H,)],
                   zero=(0, 1) if zero_state else ())
    lengths = _lengths(s, use_lengths)
    assert_same(lambda *a: fused.lstm_sequence(*a, lengths=lengths),
                lambda *a: ref_lstm_sequence(*a, lengths=lengths), [x] + rest, seed)


@given(s=seq, H=dims, seed=seeds, use_lengths=st.booleans(), zero_state=st.booleans(),
       reset_after=st.booleans())
def test_gru_sequence_matches_composed(s, H, seed, use_lengths, zero_state, reset_after):
    T, B, I = s.x.shape
    x = mg.tensor(s.x, requires_grad=True)
    shapes = [(B, H), (3 * H, I), (3 * H, H), (3 * H,), (3 * H,)]
    rest = tensors(np.random.default_rng(seed), shapes, zero=(0,) if zero_state else ())
    lengths = _lengths(s, use_lengths)
    assert_same(lambda *a: fused.gru_sequence(*a, reset_after=reset_after, lengths=lengths),
                lambda *a: ref_gru_sequence(*a, reset_after=reset_after, lengths=lengths),
                [x] + rest, seed)


@given(s=seq, H=dims, seed=seeds, use_lengths=st.booleans(), zero_state=st.booleans(),
       nonlinearity=st.sampled_from(["tanh", "relu"]))
def test_rnn_sequence_matches_composed(s, H, seed, use_lengths, zero_state, nonlinearity):
    T, B, I = s.x.shape
    x = mg.tensor(s.x, requires_grad=True)
    rest = tensors(np.random.default_rng(seed), [(B, H), (H, I), (H, H), (H,)],
                   zero=(0,) if zero_state else ())
    lengths = _lengths(s, use_lengths)
    assert_same(lambda *a: fused.rnn_sequence(*a, nonlinearity=nonlinearity, lengths=lengths),
                lambda *a: ref_rnn_sequence(*a, nonlinearity=nonlinearity, lengths=lengths),
                [x] + rest, seed)


def test_none_state_and_bias_mean_zeros():
    rng = np.random.default_rng(1)
    x, w_ih, w_hh = tensors(rng, [(4, 2, 3), (20, 3), (20, 5)])
    zeros = [mg.zeros(2, 5, dtype=F64), mg.zeros(2, 5, dtype=F64), mg.zeros(20, dtype=F64)]
    got = fused.lstm_sequence(x, None, None, w_ih, w_hh)
    want = ref_lstm_sequence(x, *zeros[:2], w_ih, w_hh, zeros[2])
    for g, w in zip(got, want):
        np.testing.assert_allclose(g.numpy(), w.numpy(), rtol=1e-12, atol=1e-14)
    w_ih, w_hh = tensors(rng, [(15, 3), (15, 5)])
    for ra in (False, True):
        got = fused.gru_sequence(x, None, w_ih, w_hh, reset_after=ra)
        want = ref_gru_sequence(x, zeros[0], w_ih, w_hh, mg.zeros(15, dtype=F64),
                                mg.zeros(15, dtype=F64), reset_after=ra)
        np.testing.assert_allclose(got[0].numpy(), want[0].numpy(), rtol=1e-12, atol=1e-14)


def test_sequence_float32_matches_float64():
    # the fast path runs in float32: same maths, within float32 rounding
    rng = np.random.default_rng(2)
    x, w_ih, w_hh, b = [rng.standard_normal(s) * 0.5 for s in [(6, 3, 4), (20, 4), (20, 5), (20,)]]
    out64, out32 = (fused.lstm_sequence(mg.tensor(x, dtype=dt), None, None,
                                        *[mg.tensor(a, dtype=dt) for a in (w_ih, w_hh, b)])[0]
                    for dt in ("float64", "float32"))
    assert out32.dtype == np.float32
    np.testing.assert_allclose(out32.numpy(), out64.numpy(), rtol=1e-4, atol=1e-5)


# --- gradcheck: finite differences on each op -----------------------------------------------------

def test_gradcheck_step_ops():
    rng = np.random.default_rng(3)
    B, H = 3, 4
    assert gradcheck(fused.lstm_step, tensors(rng, [(B, 4 * H), (B, H), (B, H), (4 * H, H)]))
    for ra in (False, True):
        assert gradcheck(lambda *a: fused.gru_step(*a, reset_after=ra),
                         tensors(rng, [(B, 3 * H), (B, H), (3 * H, H), (3 * H,)]))
    for nl in ("tanh", "relu"):
        assert gradcheck(lambda *a: fused.rnn_step(*a, nl),
                         tensors(rng, [(B, H), (B, H), (H, H)]))


@pytest.mark.parametrize("lengths", [None, np.array([5, 2, 0])])
def test_gradcheck_sequence_ops(lengths):
    rng = np.random.default_rng(4)
    T, B, I, H = 5, 3, 2, 4
    assert gradcheck(lambda *a: fused.lstm_sequence(*a, lengths=lengths), tensors(
        rng, [(T, B, I), (B, H), (B, H), (4 * H, I), (4 * H, H), (4 * H,)]))
    for ra in (False, True):
        assert gradcheck(lambda *a: fused.gru_sequence(*a, reset_after=ra, lengths=lengths),
                         tensors(rng, [(T, B, I), (B, H), (3 * H, I), (3 * H, H), (3 * H,),
                                       (3 * H,)]))
    for nl in ("tanh", "relu"):
        assert gradcheck(lambda *a: fused.rnn_sequence(*a, nonlinearity=nl, lengths=lengths),
                         tensors(rng, [(T, B, I), (B, H), (H, I), (H, H), (H,)]))


# --- lengths semantics ----------------------------------------------------------------------------

def test_lengths_zero_outputs_and_gradients_past_the_end():
    rng = np.random.default_rng(5)
    T, B, I, H = 6, 4, 3, 5
    lengths = np.array([6, 3, 1, 0])
    x, h0, c0, w_ih, w_hh, b = tensors(rng, [(T, B, I), (B, H), (B, H), (4 * H, I), (4 * H, H),
                                             (4 * H,)])
    out, h, c = fused.lstm_sequence(x, h0, c0, w_ih, w_hh, b, lengths=lengths)
    past = np.arange(T)[:, None] >= lengths[None, :]                  # (T, B) padded steps
    assert np.all(out.numpy()[past] == 0) and np.all(out.numpy()[~past] != 0)
    gx, gh0 = mg.grad((out * out).sum() + (h * c).sum(), [x, h0])
    assert np.all(gx.numpy()[past] == 0) and np.all(gx.numpy()[~past] != 0)
    # a sequence of length 0 hands its initial state through unchanged, gradient included
    np.testing.assert_array_equal(h.numpy()[3], h0.numpy()[3])
    np.testing.assert_array_equal(c.numpy()[3], c0.numpy()[3])
    np.testing.assert_allclose(gh0.numpy()[3], c.numpy()[3], rtol=1e-15)


def test_lengths_final_state_is_each_sequence_run_alone():
    rng = np.random.default_rng(6)
    T, B, I, H = 5, 3, 2, 4
    lengths = np.array([2, 5, 4])
    x, h0, w_ih, w_hh, b_ih, b_hh = tensors(rng, [(T, B, I), (B, H), (3 * H, I), (3 * H, H),
                                                  (3 * H,), (3 * H,)])
    out, h = fused.gru_sequence(x, h0, w_ih, w_hh, b_ih, b_hh, lengths=lengths)
    for k, n in enumerate(lengths):
        alone = ref_gru_sequence(x[:n, k:k + 1], h0[k:k + 1], w_ih, w_hh, b_ih, b_hh)
        np.testing.assert_allclose(h.numpy()[k], alone[1].numpy()[0], rtol=1e-12, atol=1e-14)
        np.testing.assert_allclose(out.numpy()[:n, k], alone[0].numpy()[:, 0], rtol=1e-12,
                                   atol=1e-14)


# --- device, memory, errors -----------------------------------------------------------------------

def _on(device, arrays):
    return [mg.tensor(a, dtype=F64, requires_grad=True, device=device) for a in arrays]


@pytest.mark.parametrize("op", ["lstm", "gru", "gru_ra", "rnn", "lstm_step", "gru_step",
                                "rnn_step"])
def test_fake_device_matches_cpu(op):
    # on the fake device any NumPy call on device data raises: this proves the kernels use xp
    rng = np.random.default_rng(7)
    T, B, I, H = 4, 3, 2, 3
    lengths = np.array([4, 1, 2])
    G = {"lstm": 4, "gru": 3, "gru_ra": 3, "rnn": 1}
    if op.endswith("_step"):
        k = {"lstm_step": 4, "gru_step": 3, "rnn_step": 1}[op]
        shapes = [(B, k * H), (B, H)] + ([(B, H)] if op == "lstm_step" else []) + [(k * H, H)] + (
            [(k * H,)] if op == "gru_step" else [])
        fn = getattr(fused, op)
    else:
        k = G[op]
        shapes = [(T, B, I), (B, H)] + ([(B, H)] if op == "lstm" else []) + [
            (k * H, I), (k * H, H), (k * H,)] + ([(k * H,)] if op.startswith("gru") else [])
        seq_fn = {"lstm": fused.lstm_sequence, "gru": fused.gru_sequence,
                  "gru_ra": lambda *a, **kw: fused.gru_sequence(*a, reset_after=True, **kw),
                  "rnn": fused.rnn_sequence}[op]

        def fn(*a):
            return seq_fn(*a, lengths=lengths)
    arrays = [rng.standard_normal(s) * 0.6 for s in shapes]
    results = []
    for device in ("cpu", "fake"):
        ins = _on(device, arrays)
        outs = as_tuple(fn(*ins))
        assert all(o.device == device for o in outs)
        gouts = [mg.tensor(np.ones(o.shape), dtype=F64, device=device) for o in outs]
        grads = mg.grad(list(outs), ins, grad_outputs=gouts)
        assert all(g.device == device for g in grads)
        results.append([o.numpy() for o in outs] + [g.numpy() for g in grads])
    for a, b in zip(*results):
        np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-14)


def test_lstm_sequence_memory_at_most_8_states_per_step():
    T, B, I, H = 20, 4, 3, 8
    rng = np.random.default_rng(8)
    x, w_ih, w_hh, b = tensors(rng, [(T, B, I), (4 * H, I), (4 * H, H), (4 * H,)])
    with mg.memory.track() as m:
        out, h, c = fused.lstm_sequence(x, None, None, w_ih, w_hh, b)
        held = m.live_bytes
        out.sum().backward()
    per_step_state = B * H * 8                                          # float64 (B, H)
    assert 0 < held <= 8 * T * per_step_state
    assert m.live_bytes == 0                                            # freed after backward


def test_retain_graph_gives_the_same_gradients_twice():
    rng = np.random.default_rng(9)
    ins = tensors(rng, [(4, 2, 3), (2, 5), (2, 5), (20, 3), (20, 5), (20,)])
    out = fused.lstm_sequence(*ins)[0].sum()
    first = mg.grad(out, ins, retain_graph=True)
    second = mg.grad(out, ins)
    for a, b in zip(first, second):
        np.testing.assert_array_equal(a.numpy(), b.numpy())


def test_wrong_shapes_name_the_op_and_shapes():
    x, h, c = mg.zeros(5, 2, 3), mg.zeros(2, 4), mg.zeros(2, 4)
    with pytest.raises(ValueError, match=r"lstm_sequence: wrong shapes: weight_ih \(16, 2\) "
                                         r"\(expected \(16, 3\)\)"):
        fused.lstm_sequence(x, h, c, mg.zeros(16, 2), mg.zeros(16, 4), mg.zeros(16))
    with pytest.raises(ValueError, match=r"gru_sequence: weight_hh must be \(3H, H\), got "
                                         r"shape \(16, 4\)"):
        fused.gru_sequence(x, h, mg.zeros(12, 3), mg.zeros(16, 4))
    with pytest.raises(ValueError, match=r"rnn_sequence: x must have 3 dims, got shape \(2, 3\)"):
        fused.rnn_sequence(mg.zeros(2, 3), h, mg.zeros(4, 3), mg.zeros(4, 4))
    with pytest.raises(ValueError, match=r"lstm_step: wrong shapes: c \(3, 4\) "
                                         r"\(expected \(2, 4\)\)"):
        fused.lstm_step(mg.zeros(2, 16), h, mg.zeros(3, 4), mg.zeros(16, 4))
    with pytest.raises(ValueError, match=r"gru_step: wrong shapes: gx_t \(2, 9\)"):
        fused.gru_step(mg.zeros(2, 9), h, mg.zeros(12, 4), mg.zeros(12))
    with pytest.raises(ValueError, match=r"rnn_step: nonlinearity must be 'tanh' or 'relu'"):
        fused.rnn_step(mg.zeros(2, 4), h, mg.zeros(4, 4), "sigmoid")


def test_bad_lengths_and_dtypes():
    x, h = mg.zeros(5, 2, 3), mg.zeros(2, 4)
    args = (mg.zeros(4, 3), mg.zeros(4, 4))
    with pytest.raises(ValueError, match=r"rnn_sequence: lengths must lie in \[0, T=5\]"):
        fused.rnn_sequence(x, h, *args, lengths=[6, 1])
    with pytest.raises(ValueError, match=r"rnn_sequence: lengths of shape \(3,\) do not match"):
        fused.rnn_sequence(x, h, *args, lengths=[1, 2, 3])
    with pytest.raises(TypeError, match=r"rnn_sequence: lengths must be integers"):
        fused.rnn_sequence(x, h, *args, lengths=[1.5, 2.0])
    with pytest.raises(TypeError, match=r"rnn_sequence: inputs must share one float dtype, got "
                                        r"x float64, h0 float32"):
        fused.rnn_sequence(mg.zeros(5, 2, 3, dtype=F64), h, *args)
