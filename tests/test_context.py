"""Context (fixed over time, read by every step), truncated BPTT on structured states, global
time tags, and the one lengths validator.

References: finite differences (gradcheck) of TBPTT windows built by hand from `rnn.unroll` and
constant start states; plain unrolling for checkpointed decoders; the steps recorded by a cell;
hand-written expectations for the errors.
"""
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import minigrad as mg
import rnn
from minigrad.engine import state as engine_state
from minigrad.testing import gradcheck
from rnn import state as rs
from test_state import AttendCell, TreeCell, context_of

F64 = "float64"


def _grads(loss, wrt):
    return [g.numpy() for g in mg.grad(loss, wrt)]


def test_context_computed_by_a_graph_checkpointed_equals_plain():
    """A decoder attending over encoder outputs made by a graph: checkpointed unrolling gives
    plain unrolling's gradients, the encoder's weights included (a context kept as an attribute
    raised GraphFreedError here)."""
    rng = np.random.default_rng(0)
    B, T, N, D = 2, 9, 4, 2
    enc = mg.tensor(rng.uniform(-1, 1, (D, D)), requires_grad=True)
    src = mg.tensor(rng.uniform(-1, 1, (B, N, D)))
    cell = AttendCell(3, ((2, 1), 2), D, seed=3)
    x = mg.tensor(rng.uniform(-1, 1, (T, B, 3)), requires_grad=True)
    v = mg.tensor(rng.standard_normal((T, B, cell.hidden_size)))
    gain = mg.tensor(np.ones(D), requires_grad=True)
    wrt = [x, enc, gain, *cell.parameters()]
    results = []
    for K in (None, 4, 1, "sqrt"):
        memory = mg.tanh(src @ enc)                      # a graph, not a leaf
        out, final = rnn.unroll(cell, x, context={"memory": memory, "gain": gain},
                                checkpoint_every=K, lengths=[9, 5])
        loss = (out * v).sum() + sum((s * s).sum() for s in rs.flatten(final)[0])
        results.append(_grads(loss, wrt))
    for got in results[1:]:
        for g, w in zip(got, results[0]):
            np.testing.assert_allclose(g, w, rtol=1e-10, atol=1e-12)
    assert np.abs(results[0][1]).sum() > 0               # the encoder got its gradient


def _hand_windows(cell, x, k, context, loss_of):
    """TBPTT(k, k) built by hand: an update at each stop in (k, 2k, ..., T); its loss covers
    the steps since the previous stop and its graph the last k steps, from the state there
    computed first and then held constant (a short last window reaches back into the one
    before). Returns F(x, context leaves, params) = the sum of the windows' losses."""
    T = x.shape[0]
    stops = list(range(k, T, k)) + [T]
    windows = []
    for prev, stop in zip([0] + stops, stops):
        g0 = max(0, stop - k)
        s = None
        if g0:
            with mg.no_grad():
                _, s = rnn.unroll(cell, x[:g0], context=context)
            s = rs.map(lambda t: mg.tensor(t.numpy()), s)
        windows.append((prev, stop, g0, s))

    def F(*_):
        total = 0.0
        for start, stop, g0, s in windows:
            out, _ = rnn.unroll(cell, x[g0:stop], s, context=context)
            total = total + loss_of(out[start - g0:], start)
        return total
    return F


@settings(max_examples=5)
@given(k=st.integers(1, 4), T=st.integers(2, 6), B=st.integers(1, 2), seed=st.integers(0, 99),
       checkpoint=st.booleans())
def test_tbptt_nested_state_and_context_equals_hand_windows_and_finite_differences(
        k, T, B, seed, checkpoint):
    rng = np.random.default_rng(seed)
    cell = AttendCell(2, ((2, 1), {"m": 2}), 2, seed)
    x = mg.tensor(rng.uniform(-1, 1, (T, B, 2)), requires_grad=True)
    context = context_of(B, 2, 3, seed)
    leaves = [x, context["gain"], context["memory"], *cell.parameters()]
    target = rng.standard_normal((T, B, cell.hidden_size))

    def loss_of(out, start):
        return (out * mg.tensor(target[start:start + out.shape[0]])).sum()

    F = _hand_windows(cell, x, k, context, loss_of)
    assert gradcheck(F, leaves, seed=seed)
    want = _grads(F(), leaves)
    for t in leaves:
        t.grad = None
    res = rnn.tbptt(cell, x, k, loss_fn=lambda out, w: loss_of(out, w.start), context=context,
                    checkpoint_every=2 if checkpoint else None)
    assert len(res.losses) == -(-T // k)
    for t, w in zip(leaves, want):
        np.testing.assert_allclose(t.grad.numpy(), w, rtol=1e-10, atol=1e-12)


class Recorder(TreeCell):
    """Records the ("time", t) tag of every step it runs (re-runs included)."""

    def __init__(self):
        super().__init__(2, (2, 1), 0)
        self.times = []

    def forward(self, x, state):
        self.times.append(dict(engine_state.tags)["time"])
        return super().forward(x, state)


@rnn.compiling("off")  # the time tags of the per-op graph (the compiled path runs one op)
def test_time_tags_are_real_step_indices_in_segments_and_windows():
    x = mg.tensor(np.ones((7, 2, 2)))
    cell = Recorder()
    rnn.tbptt(cell, x, 3, loss_fn=lambda out, w: out.sum())
    assert cell.times == [0, 1, 2, 3, 4, 5, 4, 5, 6]  # the short last window reaches back to 4
    cell.times = []
    rnn.tbptt(cell, x, 3, loss_fn=lambda out, w: out.sum(), checkpoint_every=2)
    assert set(cell.times) == set(range(7)) and cell.times[:3] == [0, 1, 2]
    cell.times = []
    out, _ = rnn.unroll(cell, mg.tensor(np.ones((7, 2, 2)), requires_grad=True),
                        checkpoint_every=3)
    assert cell.times == list(range(7))
    cell.times = []
    out.sum().backward()                                 # segments 0 and 1 re-run in backward
    assert sorted(cell.times) == [0, 1, 2, 3, 4, 5]


# --- context through every layer, and its errors ----------------------------------------------

def test_layers_pass_the_context_to_the_cells_that_take_it():
    rng = np.random.default_rng(2)
    B = 2
    context = context_of(B, 2, 3, 5)
    x = mg.tensor(rng.uniform(-1, 1, (5, B, 3)), requires_grad=True)
    plain = TreeCell(3, (2,), 1)
    att = AttendCell(2, ((1, 1), 2), 2, 2)
    deep = rnn.Stacked([plain, att])
    out, [s0, s1] = deep(x, lengths=[5, 3], context=context)
    o0, r0 = rnn.unroll(plain, x, lengths=[5, 3])
    o1, r1 = rnn.unroll(att, o0, lengths=[5, 3], context=context)
    np.testing.assert_allclose(out.numpy(), o1.numpy(), rtol=1e-12)
    bi = rnn.Bidirectional(att, TreeCell(2, (1,), 4))
    out, (fw, bw) = bi(o0, lengths=[5, 3], context=context)
    assert out.shape == (5, B, att.hidden_size + 1) and rs.flatten(fw)[1] == rs.flatten(r1)[1]
    with pytest.raises(TypeError, match="Stacked: got a context but none of its cells takes"):
        rnn.Stacked([plain])(x, context=context)
    with pytest.raises(TypeError, match="LSTM: got a context"):
        rnn.LSTM(3, 2, rng=0)(x, context=context)
    with pytest.raises(TypeError, match=r"unroll: TreeCell takes no context"):
        rnn.unroll(plain, x, context=context)
    with pytest.raises(TypeError, match=r"unroll: AttendCell: context\['gain'\] is of type"):
        rnn.unroll(att, o0, context={"memory": context["memory"], "gain": 1.0})
    with pytest.raises(ValueError, match="tbptt: AttendCell got a context computed by a graph"):
        rnn.tbptt(att, o0.detach(), 2, loss_fn=lambda o, w: o.sum(),
                  context={"memory": context["memory"] * 2, "gain": context["gain"]})


def test_generate_passes_the_context_and_checks_the_state():
    seen = []

    def model(tokens, state, context):
        seen.append(context)
        h = mg.zeros(tokens.shape[1], 2) if state is None else state[0] + 1
        logits = mg.tensor(np.eye(3)[(np.asarray(tokens) + 1) % 3])
        return logits, (h, {"n": h})

    ctx = mg.ones(1, 4)
    assert rnn.generate(model, [0], 3, context=ctx).tolist() == [1, 2, 0]
    assert all(c is ctx for c in seen) and len(seen) == 3

    def shrinking(tokens, state, context):
        h = mg.zeros(1, 2) if state is None else mg.zeros(1, 1)
        return mg.tensor(np.eye(3)[np.asarray(tokens) % 3]), h

    with pytest.raises(ValueError, match=r"generate: call 1 of the model: state has shape "
                                         r"\(1, 1\), expected \(1, 2\)"):
        rnn.generate(shrinking, [0], 3, context=ctx)


def test_clip_state_grad_reaches_every_tensor_of_a_nested_state():
    cell = TreeCell(2, ((2, 1), [2]), 0)
    x = mg.tensor(np.random.default_rng(3).uniform(-1, 1, (5, 2, 2)), requires_grad=True)
    out, _ = rnn.unroll(cell, x)
    assert np.abs(mg.grad(out.sum(), [x])[0].numpy()).max() > 1e-2
    # the output is the new leaves side by side, so every gradient reaching x passes through a
    # state tensor's hook: were one leaf left out, its path would carry an unclipped gradient
    out, _ = rnn.unroll(cell, x, state_hook=rnn.clip_state_grad(value=1e-9))
    gx, = mg.grad(out.sum(), [x])
    assert np.abs(gx.numpy()).max() < 1e-8


# --- one lengths validator -------------------------------------------------------------------

@pytest.mark.parametrize("call, who", [
    (lambda n: rnn.unroll(rnn.GRUCell(2, 3, rng=0), mg.zeros(3, 2, 2), lengths=n), "GRUCell"),
    (lambda n: rnn.kernels.rnn_sequence(mg.zeros(3, 2, 2), None, mg.zeros(4, 2), mg.zeros(4, 4),
                                        lengths=n), "rnn_sequence"),
    (lambda n: rnn.mask_from_lengths(n, 3), "mask_from_lengths"),
    (lambda n: rnn.sequence_cross_entropy(mg.zeros(3, 2, 4), np.zeros((3, 2), int), lengths=n),
     "sequence_cross_entropy"),
    (lambda n: rnn.reverse_sequences(mg.zeros(3, 2), n), "reverse_sequences"),
    (lambda n: rnn.Bidirectional(rnn.GRUCell(2, 3, rng=0), rnn.GRUCell(2, 3, rng=1))(
        mg.zeros(3, 2, 2), lengths=n), "Bidirectional"),
])
def test_every_lengths_argument_follows_one_rule(call, who):
    with pytest.raises(TypeError, match=rf"{who}: lengths must be integers"):
        call([2.5, 1])
    with pytest.raises(ValueError, match=rf"{who}: lengths must lie in \[\d, T=3\]"):
        call([4, 1])
    if who != "mask_from_lengths":                      # which has no batch to match
        with pytest.raises(ValueError, match=rf"{who}: lengths of shape \(3,\)"):
            call([1, 1, 1])
    call(np.array([2.0, 1.0]))                           # integral floats are integers


def test_kernels_save_their_lengths_for_backward():
    rng = np.random.default_rng(4)
    x = mg.tensor(rng.standard_normal((4, 2, 3)), requires_grad=True)
    w_ih, w_hh = mg.tensor(rng.standard_normal((8, 3))), mg.tensor(rng.standard_normal((8, 2)))
    for op in (lambda **kw: rnn.kernels.lstm_sequence(x, None, None, w_ih, w_hh, **kw)[0],
               lambda **kw: rnn.kernels.gru_sequence(x, None, w_ih[:6], w_hh[:6], **kw)[0],
               lambda **kw: rnn.kernels.gru_sequence(x, None, w_ih[:6], w_hh[:6],
                                                     reset_after=True, **kw)[0],
               lambda **kw: rnn.kernels.rnn_sequence(x, None, w_ih[:2], w_hh[:2, :], **kw)[0]):
        out = op(lengths=[4, 2])
        node = out._node
        ints = [a for a in mg.memory.saved_arrays(node) if a.dtype.kind == "i"]
        assert len(ints) == 1 and ints[0].tolist() == [4, 2]
        assert not any(isinstance(v, np.ndarray) for v in vars(node).values())
        out.sum().backward()
        assert node.saved == ()
