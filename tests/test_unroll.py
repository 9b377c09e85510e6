"""unroll: padding changes nothing, masking, dispatch, hooks, tags, and the sequence helpers."""
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import minigrad as mg
import rnn
from minigrad.engine import state as engine_state
from minigrad.testing import gradcheck
from minigrad.testing.strategies import sequences
from rnn.steps import run_steps

F64 = "float64"

MAKERS = {
    "lstm": lambda i, h, s: rnn.LSTMCell(i, h, rng=s, dtype=F64),
    "lstm_composed": lambda i, h, s: rnn.LSTMCell(i, h, fused=False, rng=s, dtype=F64),
    "gru": lambda i, h, s: rnn.GRUCell(i, h, rng=s, dtype=F64),
    "gru_reset_after_composed": lambda i, h, s: rnn.GRUCell(i, h, True, fused=False, rng=s,
                                                            dtype=F64),
    "rnn": lambda i, h, s: rnn.RNNCell(i, h, rng=s, dtype=F64),
    "lstm_peephole": lambda i, h, s: rnn.LSTMCell(i, h, peephole=True, rng=s, dtype=F64),
    "mut3": lambda i, h, s: rnn.MUT3Cell(i, h, rng=s, dtype=F64),
}


def _flat(s):
    return tuple(s) if isinstance(s, tuple) else (s,)


def _weights(shape, k):
    """Fixed, distinct output weights so a loss sees every element."""
    return np.cos(np.arange(int(np.prod(shape))) * 0.7 + k).reshape(shape)


@pytest.mark.parametrize("name", sorted(MAKERS))
@given(seq=sequences(max_T=5, max_B=3, max_F=3), H=st.integers(1, 3), seed=st.integers(0, 99))
def test_padding_changes_nothing(name, seq, H, seed):
    """A padded batch gives the outputs, final states and gradients of each sequence run alone."""
    T, B, n_in = seq.x.shape
    cell = MAKERS[name](n_in, H, seed)
    params = cell.parameters()
    v_out = _weights((T, B, H), 1)
    x = mg.tensor(seq.x, requires_grad=True)
    out, final = rnn.unroll(cell, x, lengths=seq.lengths)
    loss = (out * mg.tensor(v_out)).sum()
    for k, s in enumerate(_flat(final)):
        loss = loss + (s * mg.tensor(_weights(s.shape, 2 + k))).sum()
    g_batch = mg.grad(loss, [x, *params])

    g_params = [np.zeros(p.shape) for p in params]
    for b in range(B):
        n = int(seq.lengths[b])
        xb = mg.tensor(seq.x[:n, b:b + 1], requires_grad=True)
        ob, fb = rnn.unroll(cell, xb)
        np.testing.assert_allclose(out.numpy()[:n, b:b + 1], ob.numpy(), rtol=1e-10, atol=1e-12)
        assert not out.numpy()[n:, b].any()
        lb = (ob * mg.tensor(v_out[:n, b:b + 1])).sum()
        for k, (s, sb) in enumerate(zip(_flat(final), _flat(fb))):
            np.testing.assert_allclose(s.numpy()[b:b + 1], sb.numpy(), rtol=1e-10, atol=1e-12)
            lb = lb + (sb * mg.tensor(_weights(s.shape, 2 + k)[b:b + 1])).sum()
        gb = mg.grad(lb, [xb, *params])
        np.testing.assert_allclose(g_batch[0].numpy()[:n, b:b + 1], gb[0].numpy(), rtol=1e-9,
                                   atol=1e-12)
        assert not g_batch[0].numpy()[n:, b].any()  # padding gets no gradient
        for acc, g in zip(g_params, gb[1:]):
            acc += g.numpy()
    for g, want in zip(g_batch[1:], g_params):
        np.testing.assert_allclose(g.numpy(), want, rtol=1e-9, atol=1e-11)


def test_list_of_steps_equals_tensor():
    cell = rnn.GRUCell(2, 3, rng=0, dtype=F64)
    x = np.random.default_rng(0).standard_normal((4, 2, 2))
    a, ha = rnn.unroll(cell, mg.tensor(x))
    b, hb = rnn.unroll(cell, [mg.tensor(x[t]) for t in range(4)])
    np.testing.assert_array_equal(a.numpy(), b.numpy())
    np.testing.assert_array_equal(ha.numpy(), hb.numpy())


def test_lengths_accept_lists_tensors_and_full_lengths():
    cell = rnn.RNNCell(2, 3, rng=0, dtype=F64)
    x = mg.tensor(np.random.default_rng(1).standard_normal((4, 2, 2)))
    ref, h_ref = rnn.unroll(cell, x)
    for lengths in ([4, 4], np.array([4, 4]), mg.tensor(np.array([4, 4]))):
        out, h = rnn.unroll(cell, x, lengths=lengths)
        np.testing.assert_array_equal(out.numpy(), ref.numpy())
        np.testing.assert_array_equal(h.numpy(), h_ref.numpy())


class Elman(rnn.Cell):
    """A user cell without precompute/step: unroll must call it step by step."""

    def __init__(self, n_in, n_hid, seed):
        super().__init__(n_in, n_hid, rng=seed, dtype=F64)
        self.w, self.u = self.parameter(n_hid, n_in), self.parameter(n_hid, n_hid)

    def forward(self, x, h):
        h = mg.tanh(x @ self.w.T + h @ self.u.T)
        return h * 2.0, h   # output differs from the state, so the two are not mixed up


def test_user_cell_output_and_state_differ():
    cell = Elman(2, 3, 0)
    x = np.random.default_rng(2).standard_normal((3, 2, 2))
    out, h = rnn.unroll(cell, mg.tensor(x), lengths=[3, 2])
    w, u = cell.w.numpy(), cell.u.numpy()
    hs = np.zeros((2, 3))
    outs = []
    for t in range(3):
        new = np.tanh(x[t] @ w.T + hs @ u.T)
        keep = (t < np.array([3, 2]))[:, None]
        outs.append(np.where(keep, 2 * new, 0))
        hs = np.where(keep, new, hs)
    np.testing.assert_allclose(out.numpy(), np.stack(outs), rtol=1e-12)
    np.testing.assert_allclose(h.numpy(), hs, rtol=1e-12)


@rnn.compiling("off")  # the per-op graph's tags (the compiled path runs one op)
def test_time_tags_on_every_step():
    cell = Elman(2, 3, 0)
    x = mg.tensor(np.ones((3, 1, 2)), requires_grad=True)
    _, h = rnn.unroll(cell, x)
    tags = dict(h._node.tags)
    assert tags["time"] == 2 and tags["module"] == cell._path
    assert engine_state.tags == ()
    x6 = mg.tensor(np.ones((6, 1, 2)), requires_grad=True)
    _, h = rnn.unroll(cell, x6, checkpoint_every=4)   # the last segment, steps 4 and 5
    assert dict(h._node.tags)["time"] == 5 and dict(h._node.tags)["segment"] == 1
    lstm = rnn.LSTMCell(2, 3, rng=0, fused=False)
    _, (h, c) = rnn.unroll(lstm, x.astype("float32"), per_step=True)
    assert dict(h._node.tags)["time"] == 2
    assert ("module", lstm._path) in h._node.tags


def test_tags_restored_after_error():
    class Boom(Elman):
        def forward(self, x, h):
            raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"):
        rnn.unroll(Boom(2, 3, 0), mg.zeros(2, 1, 2, dtype="float64"))
    assert engine_state.tags == ()


def test_state_hook_applied_to_every_state():
    cell = Elman(2, 3, 0)
    x = np.random.default_rng(3).standard_normal((4, 2, 2))
    seen = []

    def halve(t, s):
        seen.append(t)
        return s * 0.5

    out, h = rnn.unroll(cell, mg.tensor(x), state_hook=halve)
    assert seen == [0, 1, 2, 3]
    w, u = cell.w.numpy(), cell.u.numpy()
    hs = np.zeros((2, 3))
    for t in range(4):
        hs = 0.5 * np.tanh(x[t] @ w.T + hs @ u.T)
    np.testing.assert_allclose(h.numpy(), hs, rtol=1e-12)


def test_state_hook_tuple_state_forces_loop():
    cell = rnn.LSTMCell(2, 3, rng=0, dtype=F64)
    x = mg.tensor(np.random.default_rng(4).standard_normal((3, 2, 2)))
    calls = []
    out, (h, c) = rnn.unroll(cell, x, lengths=[3, 1],
                             state_hook=lambda t, s: calls.append(t) or s)
    ref, (h2, c2) = rnn.unroll(cell, x, lengths=[3, 1])
    assert calls == [0, 1, 2]
    np.testing.assert_allclose(out.numpy(), ref.numpy(), rtol=1e-12)
    np.testing.assert_allclose(c.numpy(), c2.numpy(), rtol=1e-12)


def test_dispatch_fast_path_and_per_step():
    cell = rnn.LSTMCell(2, 3, rng=0, dtype=F64)
    x = mg.tensor(np.random.default_rng(5).standard_normal((4, 2, 2)))
    out, _ = rnn.unroll(cell, x, lengths=[4, 2])
    assert out._node.name != "Stack"                 # one op for the whole loop
    out2, _ = rnn.unroll(cell, x, lengths=[4, 2], per_step=True)
    assert out2._node.name in ("Stack", "Pad")       # the per-step loop
    np.testing.assert_allclose(out.numpy(), out2.numpy(), rtol=1e-12)


@pytest.mark.parametrize("fused", [True, False])
def test_allow_empty_rows_keep_state(fused):
    cell = rnn.GRUCell(2, 3, rng=0, dtype=F64, fused=fused)
    x = mg.tensor(np.random.default_rng(6).standard_normal((3, 2, 2)))
    h0 = mg.tensor(np.random.default_rng(7).standard_normal((2, 3)))
    out, h = run_steps(cell, x, h0, np.array([0, 2]))
    np.testing.assert_array_equal(h.numpy()[0], h0.numpy()[0])
    assert not out.numpy()[:, 0].any() and not out.numpy()[2:, 1].any()
    _, h1 = rnn.unroll(cell, x[:2, 1:], h0[1:])
    np.testing.assert_allclose(h.numpy()[1:], h1.numpy(), rtol=1e-12)
    out, h = run_steps(cell, x, h0, np.array([0, 0]))
    assert out.shape == (3, 2, 3) and not out.numpy().any()
    np.testing.assert_array_equal(h.numpy(), h0.numpy())


def test_long_chain_backpropagates():
    cell = rnn.RNNCell(1, 2, rng=0, fused=False)
    x = mg.tensor(np.full((3000, 1, 1), 0.1, dtype=np.float32), requires_grad=True)
    out, h = rnn.unroll(cell, x)
    h.sum().backward()
    assert x.grad.shape == (3000, 1, 1) and np.isfinite(x.grad.numpy()).all()


@given(seq=sequences(max_T=4, max_B=3, max_F=2), seed=st.integers(0, 99))
def test_unroll_gradcheck_with_initial_state(seq, seed):
    cell = rnn.GRUCell(seq.x.shape[2], 2, rng=seed, dtype=F64, fused=False)
    x = mg.tensor(seq.x, requires_grad=True)
    h0 = mg.tensor(np.random.default_rng(seed).uniform(-1, 1, (seq.x.shape[1], 2)),
                   requires_grad=True)
    assert gradcheck(lambda x, h0: rnn.unroll(cell, x, h0, seq.lengths), [x, h0], seed=seed)


# --- helpers --------------------------------------------------------------------------------

@given(lens=st.lists(st.integers(1, 5), min_size=1, max_size=4), F=st.integers(1, 3))
def test_pad_sequences_and_mask(lens, F):
    rng = np.random.default_rng(sum(lens))
    seqs = [rng.standard_normal((n, F)) for n in lens]
    x, lengths = rnn.pad_sequences(seqs, value=-7.0)
    T = max(lens)
    assert x.shape == (T, len(lens), F) and lengths.tolist() == lens
    for b, s in enumerate(seqs):
        np.testing.assert_array_equal(x.numpy()[:len(s), b], s)
        assert (x.numpy()[len(s):, b] == -7.0).all()
    mask = rnn.mask_from_lengths(lengths, T)
    want = np.array([[1.0 if t < n else 0.0 for n in lens] for t in range(T)])
    np.testing.assert_array_equal(mask.numpy(), want)


def test_pad_sequences_tensors_keep_gradient():
    a = mg.tensor(np.ones((3, 2)), requires_grad=True)
    b = mg.tensor(np.ones((1, 2)), requires_grad=True)
    x, lengths = rnn.pad_sequences([a, b])
    (x * mg.tensor(np.arange(12.0).reshape(3, 2, 2))).sum().backward()
    np.testing.assert_array_equal(b.grad.numpy(), [[2.0, 3.0]])
    np.testing.assert_array_equal(a.grad.numpy(), [[0.0, 1.0], [4.0, 5.0], [8.0, 9.0]])


def test_pad_sequences_token_ids():
    x, lengths = rnn.pad_sequences([np.array([3, 1, 2]), np.array([5])])
    assert x.dtype.kind == "i"
    np.testing.assert_array_equal(x.numpy(), [[3, 5], [1, 0], [2, 0]])
    with pytest.raises(ValueError, match="pad_sequences"):
        rnn.pad_sequences([np.ones((2, 3)), np.ones((2, 4))])
