"""Checkpointed unrolling, truncated BPTT, state-gradient clipping and the non-finite guard.

References: full BPTT (checkpointing), windows built by hand from plain `rnn.unroll` and
`detach` (TBPTT), a NumPy BPTT written out below (clipping), hand arithmetic (guard, memory).
"""
import warnings

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import minigrad as mg
import rnn
from minigrad.optim.guard import SkipNonFinite, grads_finite
from minigrad.testing.strategies import sequences
from rnn.checkpointing import segment_length
from rnn.clip import clip_state_grad
from rnn.tbptt import tbptt

F64 = "float64"


def _cell(kind, n_in, n_hid, seed=0):
    if kind == "lstm":
        return rnn.LSTMCell(n_in, n_hid, rng=seed, dtype=F64)
    if kind == "lstm-composed":
        return rnn.LSTMCell(n_in, n_hid, rng=seed, dtype=F64, fused=False)
    if kind == "gru":
        return rnn.GRUCell(n_in, n_hid, rng=seed, dtype=F64)
    if kind == "rnn":
        return rnn.RNNCell(n_in, n_hid, rng=seed, dtype=F64)
    return DropElman(n_in, n_hid, seed)


class DropElman(rnn.Cell):
    """A custom cell: h' = tanh(x W^T + dropout(h) U^T), random inside the recurrence."""

    def __init__(self, n_in, n_hid, seed=0):
        super().__init__(n_in, n_hid, rng=seed, dtype=F64)
        self.w, self.u = self.parameter(n_hid, n_in), self.parameter(n_hid, n_hid)

    def forward(self, x, h):
        h = mg.tanh(x @ self.w.T + mg.dropout(h, 0.3) @ self.u.T)
        return h, h


def _loss(out, state, v):
    """A loss that uses every output and the final state (so both gradient paths count)."""
    return (out * v).sum() + sum((s * s).sum() for s in rnn.state.flatten(state)[0])


def _grads(cell, x, loss, extra=()):
    return [g.numpy() for g in mg.grad(loss, [x, *cell.parameters(), *extra])]


KINDS = ["lstm", "lstm-composed", "gru", "rnn", "custom"]


def _seqs(max_T):
    return st.one_of(sequences(max_T, 3, 4, with_lengths=True),
                     sequences(max_T, 3, 4, with_lengths=False))


@given(kind=st.sampled_from(KINDS), seqs=_seqs(12),
       K=st.one_of(st.integers(1, 13), st.just("sqrt")), seed=st.integers(0, 2**16))
def test_checkpointed_unroll_equals_full_bptt(kind, seqs, K, seed):
    T, B, n_in = seqs.x.shape
    rng = np.random.default_rng(seed)
    cell = _cell(kind, n_in, 4, seed)
    x = mg.tensor(seqs.x, requires_grad=True)
    lengths = seqs.lengths
    v = rng.standard_normal((T, B, 4))
    mg.manual_seed(seed)
    out, s = rnn.unroll(cell, x, lengths=lengths)
    want = _grads(cell, x, _loss(out, s, v))
    mg.manual_seed(seed)
    out_c, s_c = rnn.unroll(cell, x, lengths=lengths, checkpoint_every=K)
    np.testing.assert_allclose(out_c.numpy(), out.numpy(), rtol=1e-12, atol=1e-14)
    got = _grads(cell, x, _loss(out_c, s_c, v))
    for g, r in zip(got, want):
        np.testing.assert_allclose(g, r, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("layer", ["bidirectional", "stacked"])
def test_checkpointed_bidirectional_and_stacked(layer):
    rng = np.random.default_rng(1)
    if layer == "bidirectional":
        model = rnn.Bidirectional(_cell("gru", 3, 4, 1), _cell("lstm", 3, 2, 2))
    else:
        model = rnn.Stacked([_cell("lstm", 3, 4, 1), _cell("custom", 4, 4, 2)], dropout=0.2)
    x = mg.tensor(rng.standard_normal((9, 3, 3)), requires_grad=True)
    lengths = np.array([9, 4, 6])
    mg.manual_seed(5)
    out, _ = model(x, lengths=lengths)
    v = rng.standard_normal(out.shape)
    want = _grads(model, x, (out * v).sum())
    mg.manual_seed(5)
    out_c, _ = model(x, lengths=lengths, checkpoint_every=2)
    np.testing.assert_allclose(out_c.numpy(), out.numpy(), rtol=1e-12, atol=1e-14)
    for g, r in zip(_grads(model, x, (out_c * v).sum()), want):
        np.testing.assert_allclose(g, r, rtol=1e-10, atol=1e-12)


def _peak(cell, x, K=None):
    with mg.memory.track() as m:
        out, _ = rnn.unroll(cell, x, checkpoint_every=K)
        out.sum().backward()
    assert m.live_bytes == 0
    return m.peak_bytes


@pytest.mark.parametrize("T,K", [(12, 4), (12, 5), (30, 6), (64, "sqrt"), (256, "sqrt")])
def test_lstm_saved_bytes_by_hand(T, K):
    # Full BPTT: the fused LSTM sequence op keeps a fixed number of arrays per step plus a few
    # of fixed size, so its peak is affine in T. Checkpointed with n segments of k steps:
    # segment j's node keeps its entering (h, c), (B, H) each; the first is the zero initial
    # state (a leaf) and the last segment is not checkpointed, so n - 2 pairs; on top of them,
    # one segment's graph at a time, which is what a plain run of k steps holds.
    B, n_in, n_hid = 2, 3, 4
    cell = _cell("lstm", n_in, n_hid)
    x = mg.tensor(np.ones((T, B, n_in)) * 0.1)
    full = {t: _peak(cell, x[:t]) for t in (1, 2, T - 1, T)}
    assert full[T] - full[T - 1] == full[2] - full[1] > 0
    assert full[T] == full[1] + (T - 1) * (full[2] - full[1])
    k = segment_length(K, T)
    n = -(-T // k)
    assert _peak(cell, x, K) == 2 * (n - 2) * B * n_hid * 8 + _peak(cell, x[:k])


def test_sqrt_checkpointing_peak_grows_as_sqrt_T():
    cell = _cell("lstm", 2, 3)
    peaks = {}
    for T in (64, 256, 1024):
        x = mg.tensor(np.ones((T, 1, 2)) * 0.1)
        for K in (None, "sqrt"):
            with mg.memory.track() as m:
                out, _ = rnn.unroll(cell, x, checkpoint_every=K)
                out.sum().backward()
            peaks[T, K] = m.peak_bytes
    for T in (64, 256):
        assert 3.9 < peaks[4 * T, None] / peaks[T, None] < 4.0   # (7 T + 2): linear
        assert 1.9 < peaks[4 * T, "sqrt"] / peaks[T, "sqrt"] < 2.1  # 9 sqrt(T) - 2: sqrt
    assert peaks[1024, "sqrt"] / peaks[1024, None] < 0.05


def test_checkpoint_every_errors():
    cell = _cell("gru", 3, 4)
    with pytest.raises(ValueError, match="checkpoint_every"):
        rnn.unroll(cell, mg.randn(5, 2, 3, dtype=F64), checkpoint_every=0)
    with pytest.raises(ValueError, match="checkpoint_every"):
        rnn.unroll(cell, mg.randn(5, 2, 3, dtype=F64), checkpoint_every="half")


# --- truncated BPTT ---------------------------------------------------------------------------

def _hand_tbptt(cell, x, k1, k2, v, lengths):
    """TBPTT(k1, k2) for each sequence alone (B = 1, no lengths), from plain unroll + detach.

    Window i ends at stop_i = min(k1 (i + 1), T); its graph starts at g = max(0, stop - k2)
    from the state reached by running the steps before g without a graph; its loss covers the
    steps since the previous update (the last k2 when k2 < k1). Returns summed gradients and
    the loss of each window summed over the sequences.
    """
    T, B = x.shape[0], x.shape[1]
    params = cell.parameters()
    total = [np.zeros(p.shape) for p in params]
    losses = {}
    stops = list(range(k1, T, k1)) + [T]
    for b in range(B):
        n = T if lengths is None else int(lengths[b])
        xb = mg.tensor(x.numpy()[:n, b:b + 1])
        prev = 0
        for i, stop in enumerate(stops):
            g0 = max(0, stop - k2)
            start = max(g0, prev)
            prev = stop
            if start >= n:
                continue
            state = cell.initial_state(1)
            if g0 > 0:
                with mg.no_grad():
                    _, state = rnn.unroll(cell, xb[:g0], state)
            state = tuple(s.detach() for s in state) if isinstance(state, tuple) \
                else state.detach()
            out, _ = rnn.unroll(cell, xb[g0:min(stop, n)], state)
            loss = (out[start - g0:] * mg.tensor(v[start:min(stop, n), b:b + 1])).sum()
            for acc, g in zip(total, mg.grad(loss, params)):
                acc += g.numpy()
            losses[i] = losses.get(i, 0.0) + float(loss.item())
    return total, [losses[i] for i in sorted(losses)]


@given(kind=st.sampled_from(["lstm", "gru", "rnn"]), seqs=_seqs(11), k1=st.integers(1, 5),
       k2=st.integers(1, 7), seed=st.integers(0, 2**16))
def test_tbptt_equals_windows_by_hand(kind, seqs, k1, k2, seed):
    T, B, n_in = seqs.x.shape
    rng = np.random.default_rng(seed)
    cell = _cell(kind, n_in, 3, seed)
    x = mg.tensor(seqs.x)
    v = rng.standard_normal((T, B, 3))
    lengths = seqs.lengths
    want, want_losses = _hand_tbptt(cell, x, k1, k2, v, lengths)
    windows = []

    def loss_fn(out, w):
        windows.append(w)
        return (out * mg.tensor(v[w.start:w.stop])).sum()

    res = tbptt(cell, x, k1, k2, loss_fn=loss_fn, lengths=lengths)
    for p, g in zip(cell.parameters(), want):
        got = np.zeros(p.shape) if p.grad is None else p.grad.numpy()  # None: no window ran
        np.testing.assert_allclose(got, g, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(res.losses, want_losses, rtol=1e-10, atol=1e-12)
    # the final state is the plain run's, and carries no graph
    with mg.no_grad():
        _, s = rnn.unroll(cell, x, lengths=lengths)
    for a, b in zip(rnn.state.flatten(res.state)[0], rnn.state.flatten(s)[0]):
        np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=1e-12, atol=1e-14)
        assert not a.requires_grad
    for w in windows:
        assert w.stop - w.start == min(k1, k2, w.stop) or w.stop == T
        assert w.graph_start == max(0, w.stop - k2)


@pytest.mark.parametrize("k1,k2", [(2, 2), (3, 1)])
def test_tbptt_on_step_updates_between_windows(k1, k2):
    # SGD in on_step: each window must use the weights updated by the previous one, and start
    # from the state the stream reached with the weights of its time (detached). Rebuilt by
    # hand with plain unroll, for k2 <= k1 (no overlap between windows).
    rng = np.random.default_rng(3)
    T = 6
    cell, ref = _cell("rnn", 2, 3), _cell("rnn", 2, 3)
    x = mg.tensor(rng.standard_normal((T, 2, 2)))
    v = rng.standard_normal((T, 2, 3))
    opt = mg.optim.SGD(cell.parameters(), lr=0.5)
    calls = []

    def on_step(w, loss):
        calls.append((w.index, w.start, w.stop, float(loss.item())))
        opt.step()
        opt.zero_grad()

    res = tbptt(cell, x, k1, k2, on_step=on_step,
                loss_fn=lambda out, w: (out * mg.tensor(v[w.start:w.stop])).sum())
    h, t, losses = ref.initial_state(2), 0, []
    for i, stop in enumerate(range(k1, T + 1, k1)):
        g0 = stop - k2
        if t < g0:
            with mg.no_grad():
                _, h = rnn.unroll(ref, x[t:g0], h)
        out, h = rnn.unroll(ref, x[g0:stop], h.detach())
        loss = (out * mg.tensor(v[g0:stop])).sum()
        for p, g in zip(ref.parameters(), mg.grad(loss, ref.parameters())):
            p.data = p.data - 0.5 * g.data
        h, t = h.detach(), stop
        losses.append(loss.item())
        assert calls[i][:3] == (i, g0, stop)
    np.testing.assert_allclose([c[3] for c in calls], losses, rtol=1e-12)
    for p, r in zip(cell.parameters(), ref.parameters()):
        np.testing.assert_allclose(p.numpy(), r.numpy(), rtol=1e-12)
    np.testing.assert_allclose(res.state.numpy(), h.numpy(), rtol=1e-12)


@given(kind=st.sampled_from(["lstm", "gru"]), T=st.integers(1, 9), B=st.integers(1, 3),
       k1=st.integers(1, 4), k2=st.integers(1, 6), with_lengths=st.booleans(),
       checkpoint=st.booleans(), seed=st.integers(0, 2**16))
def test_tbptt_input_fn_puts_an_embedding_in_every_window(kind, T, B, k1, k2, with_lengths,
                                                          checkpoint, seed):
    # Reference: the same TBPTT on the embedded sequence given as a leaf that requires grad
    # (checked against windows by hand above); its input gradient, scattered onto the token
    # rows with NumPy, is what the embedding must get from the windows.
    rng = np.random.default_rng(seed)
    V, E = 5, 3
    tokens = rng.integers(0, V, (T, B))
    lengths = rng.integers(1, T + 1, B) if with_lengths else None
    v = rng.standard_normal((T, B, 4))
    emb = mg.nn.Embedding(V, E, rng=seed, dtype=F64)
    cell, ref = _cell(kind, E, 4, seed), _cell(kind, E, 4, seed)
    every = 2 if checkpoint else None

    def loss_fn(out, w):
        return (out * mg.tensor(v[w.start:w.stop])).sum()

    got = tbptt(cell, tokens, k1, k2, loss_fn=loss_fn, lengths=lengths, checkpoint_every=every,
                input_fn=emb)
    x = mg.tensor(emb.weight.numpy()[tokens], requires_grad=True)
    want = tbptt(ref, x, k1, k2, loss_fn=loss_fn, lengths=lengths, checkpoint_every=every)
    np.testing.assert_allclose(got.losses, want.losses, rtol=1e-12)
    for p, q in zip(cell.parameters(), ref.parameters()):
        if q.grad is None:
            assert p.grad is None
        else:
            np.testing.assert_allclose(p.grad.numpy(), q.grad.numpy(), rtol=1e-10, atol=1e-12)
    g_emb = np.zeros((V, E))
    if x.grad is not None:
        np.add.at(g_emb, tokens, x.grad.numpy())
    got_emb = np.zeros((V, E)) if emb.weight.grad is None else emb.weight.grad.numpy()
    np.testing.assert_allclose(got_emb, g_emb, rtol=1e-10, atol=1e-12)


def test_tbptt_input_fn_errors():
    cell = _cell("gru", 3, 4)
    emb = mg.nn.Embedding(5, 3, dtype=F64)

    def loss_fn(out, w):
        return out.sum()

    tokens = np.zeros((6, 2), dtype=np.int64)
    with pytest.raises(TypeError, match="input_fn must be callable"):
        tbptt(cell, tokens, 3, loss_fn=loss_fn, input_fn=3)
    with pytest.raises(ValueError, match=r"inputs must be an array or Tensor \(T, B, ...\)"):
        tbptt(cell, np.zeros(6, dtype=np.int64), 3, loss_fn=loss_fn, input_fn=emb)
    with pytest.raises(ValueError, match=r"input_fn returned shape \(3, 1, 3\) for steps "
                                         r"\[0, 3\) of a batch of 2"):
        tbptt(cell, tokens, 3, loss_fn=loss_fn, input_fn=lambda t: emb(t[:, :1]))
    with pytest.raises(ValueError, match="4 features"):
        tbptt(cell, tokens, 3, loss_fn=loss_fn,
              input_fn=lambda t: mg.nn.Embedding(5, 4, dtype=F64)(t))
    with pytest.raises(ValueError, match="computed by a graph"):
        tbptt(cell, emb(mg.tensor(tokens)), 3, loss_fn=loss_fn, input_fn=lambda x: x)


def test_tbptt_checkpointed_windows_and_errors():
    rng = np.random.default_rng(4)
    x = mg.tensor(rng.standard_normal((12, 2, 2)))
    v = rng.standard_normal((12, 2, 3))

    def loss_fn(out, w):
        return (out * mg.tensor(v[w.start:w.stop])).sum()

    plain, ck = _cell("lstm", 2, 3), _cell("lstm", 2, 3)
    r1 = tbptt(plain, x, 6, 8, loss_fn=loss_fn)
    r2 = tbptt(ck, x, 6, 8, loss_fn=loss_fn, checkpoint_every=3)
    np.testing.assert_allclose(r1.losses, r2.losses, rtol=1e-12)
    for p, q in zip(plain.parameters(), ck.parameters()):
        np.testing.assert_allclose(p.grad.numpy(), q.grad.numpy(), rtol=1e-10, atol=1e-12)
    with pytest.raises(ValueError, match="k1 must be a positive int"):
        tbptt(plain, x, 0, loss_fn=loss_fn)
    with pytest.raises(TypeError, match="scalar Tensor"):
        tbptt(plain, x, 4, loss_fn=lambda out, w: out)
    with pytest.raises(ValueError, match="computed by a graph"):
        tbptt(plain, x * mg.tensor(1.0, requires_grad=True), 4, loss_fn=loss_fn)


# --- clipping the gradient into each hidden state ---------------------------------------------

def _numpy_clipped_bptt(x, h0, w_ih, w_hh, b, v, clip):
    """BPTT for h_t = tanh(x_t W_ih^T + b + h_{t-1} W_hh^T), loss = sum_t v_t . h_t, with the
    total gradient reaching each h_t passed through `clip` before it goes on."""
    T = x.shape[0]
    hs = [h0]
    for t in range(T):
        hs.append(np.tanh(x[t] @ w_ih.T + b + hs[-1] @ w_hh.T))
    g_ih, g_hh, g_b = np.zeros_like(w_ih), np.zeros_like(w_hh), np.zeros_like(b)
    carry = np.zeros_like(h0)
    for t in range(T - 1, -1, -1):
        dh = clip(v[t] + carry)
        da = dh * (1 - hs[t + 1] ** 2)
        g_ih += da.T @ x[t]
        g_hh += da.T @ hs[t]
        g_b += da.sum(axis=0)
        carry = da @ w_hh
    return g_ih, g_hh, g_b


@pytest.mark.parametrize("mode", ["norm", "value"])
@pytest.mark.parametrize("checkpoint_every", [None, 2])
def test_clip_state_grad_matches_numpy(mode, checkpoint_every):
    rng = np.random.default_rng(5)
    T, B, n_in, n_hid = 6, 3, 2, 4
    cell = rnn.RNNCell(n_in, n_hid, rng=0, dtype=F64)
    for p in cell.parameters():
        p.data = p.data * 6  # large weights: gradients grow, so the clipping really acts
    x = rng.standard_normal((T, B, n_in))
    v = rng.standard_normal((T, B, n_hid)) * 3
    if mode == "norm":
        hook = clip_state_grad(0.5)

        def clip(g):
            n = np.sqrt((g * g).sum(axis=1, keepdims=True))
            return g * np.minimum(1.0, 0.5 / (n + 1e-6))
    else:
        hook = clip_state_grad(value=0.2)

        def clip(g):
            return np.clip(g, -0.2, 0.2)
    out, _ = rnn.unroll(cell, mg.tensor(x), state_hook=hook, checkpoint_every=checkpoint_every)
    got = mg.grad((out * mg.tensor(v)).sum(), [cell.weight_ih, cell.weight_hh, cell.bias])
    want = _numpy_clipped_bptt(x, np.zeros((B, n_hid)), cell.weight_ih.numpy(),
                               cell.weight_hh.numpy(), cell.bias.numpy(), v, clip)
    unclipped = _numpy_clipped_bptt(x, np.zeros((B, n_hid)), cell.weight_ih.numpy(),
                                    cell.weight_hh.numpy(), cell.bias.numpy(), v, lambda g: g)
    assert not np.allclose(want[1], unclipped[1])  # the case exercises the clipping
    for g, r in zip(got, want):
        np.testing.assert_allclose(g.numpy(), r, rtol=1e-10, atol=1e-12)


def test_clip_state_grad_errors():
    with pytest.raises(ValueError, match="exactly one"):
        clip_state_grad()
    with pytest.raises(ValueError, match="exactly one"):
        clip_state_grad(1.0, value=1.0)
    with pytest.raises(ValueError, match="max_norm must be > 0"):
        clip_state_grad(0.0)


# --- the non-finite guard ---------------------------------------------------------------------

def test_guard_skips_a_nan_step_then_applies_the_next():
    w = mg.nn.Parameter(np.array([1.0, -2.0, 3.0]))
    opt = SkipNonFinite(mg.optim.SGD([w], lr=0.1))
    (w * mg.tensor(np.array([1.0, np.nan, 2.0]))).sum().backward()
    assert not grads_finite([w])
    with pytest.warns(RuntimeWarning, match=r"step skipped \(1 skipped of 1\)"):
        assert opt.step() is False
    np.testing.assert_array_equal(w.numpy(), [1.0, -2.0, 3.0])
    assert w.grad is None and opt.skipped == 1
    (w * w).sum().backward()  # gradient 2 w
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert opt.step() is True
    np.testing.assert_allclose(w.numpy(), np.array([1.0, -2.0, 3.0]) * (1 - 0.1 * 2))
    assert (opt.steps, opt.skipped, opt.consecutive) == (1, 1, 0)
    opt.zero_grad()
    assert w.grad is None


def test_guard_inf_and_max_consecutive():
    w = mg.nn.Parameter(np.array([1.0]))
    opt = SkipNonFinite(mg.optim.SGD([w], lr=0.1), max_consecutive=2)
    (w * np.inf).sum().backward()
    with pytest.warns(RuntimeWarning):
        opt.step()
    (w * np.inf).sum().backward()
    with pytest.raises(RuntimeError, match="2 steps in a row"):
        opt.step()
    assert np.isfinite(w.numpy()).all() and w.numpy()[0] == 1.0
    with pytest.raises(TypeError, match="SkipNonFinite"):
        SkipNonFinite(object())
    with pytest.raises(ValueError, match="max_consecutive"):
        SkipNonFinite(mg.optim.SGD([w], lr=0.1), max_consecutive=0)


# --- on a device (the "fake" GPU stand-in: any NumPy call on its data raises) ------------------

@pytest.mark.parametrize("kind", ["lstm", "custom"])
def test_checkpoint_tbptt_clip_and_memory_on_device(kind):
    rng = np.random.default_rng(6)
    cell = _cell(kind, 2, 3).to("fake")
    x = mg.tensor(rng.standard_normal((7, 2, 2)), device="fake")
    lengths = np.array([7, 4])
    mg.manual_seed(1)
    out, _ = rnn.unroll(cell, x, lengths=lengths)
    want = [g.numpy() for g in mg.grad(out.sum(), cell.parameters())]
    mg.manual_seed(1)
    with mg.memory.track() as m:
        out_c, s = rnn.unroll(cell, x, lengths=lengths, checkpoint_every=3,
                              state_hook=clip_state_grad(1e6) if kind == "custom" else None)
        got = [g.numpy() for g in mg.grad(out_c.sum(), cell.parameters())]
        del s  # the final state's own nodes (not on the loss's path) hold their arrays until here
    assert m.peak_bytes > 0 and m.live_bytes == 0
    for g, r in zip(got, want):
        np.testing.assert_allclose(g, r, rtol=1e-10, atol=1e-12)
    res = tbptt(cell, x, 3, 4, lengths=lengths, loss_fn=lambda o, w: o.sum())
    assert len(res.losses) == 3 and all(np.isfinite(res.losses))
    opt = SkipNonFinite(mg.optim.SGD(cell.parameters(), lr=0.1))
    assert opt.step() is True


def test_docs_bptt_examples_run():
    """docs/bptt.md's ```python blocks run as written, each alone in a fresh namespace."""
    import pathlib
    import re
    doc = pathlib.Path(__file__).resolve().parent.parent / "docs" / "bptt.md"
    blocks = re.findall(r"^```python\n(.*?)^```", doc.read_text(), re.S | re.M)
    assert len(blocks) >= 3
    spaces = []
    for k, src in enumerate(blocks):
        spaces.append({"__name__": "bptt_md"})
        exec(compile(src, f"{doc.name} block {k}", "exec"), spaces[-1])
    memory = next(ns for ns in spaces if "ck" in ns)
    assert memory["m"].live_bytes == 0 and memory["ck"].peak_bytes < 0.15 * memory["m"].peak_bytes
    lm = next(ns for ns in spaces if "lm_opt" in ns)
    assert len(lm["res"].losses) == 12 and np.isfinite(lm["res"].losses).all()
