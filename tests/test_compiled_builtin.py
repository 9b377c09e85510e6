"""The built-in fused cells (RNNCell tanh/relu, LSTMCell, GRUCell in both reset forms) on the
path their `sequence_kernel` picks (`rnn.cells.compiled_is_faster`): under
`rnn.compiling("numba")` small problems through the compiled path of their composed step (numba's
executor), others (and every problem in the other modes) through the hand kernel.

References: outputs and final states against the cells' maths written here in NumPy (float64);
every gradient (inputs, initial state, each parameter) against the hand-written kernel's
hand-derived backward (`rnn.compiling("off")` keeps it), with lengths, both reset forms and a
frozen bias; plus which path runs under each switch.
"""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as hs

import minigrad as mg
import rnn
from rnn import cells

jit = pytest.importorskip("minigrad.jit")
pytest.importorskip("numba")

I, H = 5, 6  # one compiled program per cell kind: feature sizes are literals of numba's code
KINDS = ["rnn_tanh", "rnn_relu", "lstm", "gru", "gru_reset_after"]


def make(kind, n_in=I, n_hid=H):
    dt = np.float64
    if kind.startswith("rnn"):
        return rnn.RNNCell(n_in, n_hid, kind[4:], rng=0, dtype=dt)
    if kind == "lstm":
        return rnn.LSTMCell(n_in, n_hid, rng=0, dtype=dt)
    return rnn.GRUCell(n_in, n_hid, reset_after=kind == "gru_reset_after", rng=0, dtype=dt)


def sigmoid(a):
    return 1 / (1 + np.exp(-a))


def numpy_step(kind, cell, x, state):
    """One step of the cell's maths on arrays: returns the new state (a tuple)."""
    W, U = cell.weight_ih.data, cell.weight_hh.data
    if kind.startswith("rnn"):
        a = x @ W.T + cell.bias.data + state[0] @ U.T
        return (np.tanh(a) if kind == "rnn_tanh" else np.maximum(a, 0),)
    if kind == "lstm":
        h, c = state
        a_i, a_f, a_g, a_o = np.split(x @ W.T + cell.bias.data + h @ U.T, 4, axis=1)
        c = sigmoid(a_f) * c + sigmoid(a_i) * np.tanh(a_g)
        return sigmoid(a_o) * np.tanh(c), c
    h = state[0]
    x_r, x_z, x_n = np.split(x @ W.T + cell.bias_ih.data, 3, axis=1)
    b_r, b_z, b_n = np.split(cell.bias_hh.data, 3)
    U_r, U_z, U_n = np.split(U, 3)
    r, z = sigmoid(x_r + h @ U_r.T + b_r), sigmoid(x_z + h @ U_z.T + b_z)
    if kind == "gru_reset_after":
        n = np.tanh(x_n + r * (h @ U_n.T + b_n))
    else:
        n = np.tanh(x_n + (r * h) @ U_n.T + b_n)
    return ((1 - z) * n + z * h,)


def numpy_sequence(kind, cell, x, state, lengths):
    """Outputs (T, B, H) (0 past each row's end) and final states (each row's last step)."""
    T, B = x.shape[:2]
    lengths = np.full(B, T) if lengths is None else np.asarray(lengths)
    outs = np.zeros((T, B, cell.hidden_size))
    for t in range(T):
        new = numpy_step(kind, cell, x[t], state)
        run = (t < lengths)[:, None]
        outs[t] = np.where(run, new[0], 0.0)
        state = tuple(np.where(run, n, s) for n, s in zip(new, state))
    return outs, state


def as_tuple(state):
    return state if isinstance(state, tuple) else (state,)


def run(cell, x, state, lengths, weights):
    """Outputs, final states and the gradients of a weighted sum of both (x, state, params)."""
    for t in [x, *state, *cell.parameters()]:
        t.grad = None
    out, final = rnn.unroll(cell, x, state if len(state) > 1 else state[0], lengths=lengths)
    final = as_tuple(final)
    loss = (out * weights[0]).sum()
    for f, w in zip(final, weights[1:]):
        loss = loss + (f * w).sum()
    loss.backward()
    grads = [None if t.grad is None else np.array(getattr(t.grad, 'data', t.grad))
             for t in [x, *state, *cell.parameters()]]
    return out, final, grads


def inputs(kind, cell, T, B, seed):
    rng = np.random.default_rng(seed)
    x = mg.tensor(rng.standard_normal((T, B, I)), requires_grad=True)
    n_state = 2 if kind == "lstm" else 1
    state = tuple(mg.tensor(0.5 * rng.standard_normal((B, H)), requires_grad=True)
                  for _ in range(n_state))
    weights = [rng.standard_normal((T, B, H))] + [rng.standard_normal((B, H))
                                                   for _ in range(n_state)]
    return x, state, weights


def check_against_references(kind, cell, T, B, lengths, seed):
    x, state, weights = inputs(kind, cell, T, B, seed)
    with rnn.compiling("numba"):
        out, final, grads = run(cell, x, state, lengths, weights)
    assert out._node.name == "Scan", "the small problem should take the compiled path"
    assert [e.kind for e in rnn.compiled.cache_entries(cell)] == ["numba"]
    ref_out, ref_final = numpy_sequence(kind, cell, x.data, tuple(s.data for s in state),
                                        lengths)
    np.testing.assert_allclose(out.data, ref_out, rtol=1e-10, atol=1e-12)
    for f, r in zip(final, ref_final):
        np.testing.assert_allclose(f.data, r, rtol=1e-10, atol=1e-12)
    with rnn.compiling("off"):  # the hand kernel and its hand-derived backward
        hand_out, _, hand_grads = run(cell, x, state, lengths, weights)
    assert "Sequence" in hand_out._node.name
    assert cell.fused
    for g, hg, t in zip(grads, hand_grads, [x, *state, *cell.parameters()]):
        if hg is None:
            assert g is None or not t.requires_grad
            continue
        np.testing.assert_allclose(g, hg, rtol=1e-9, atol=1e-11, err_msg=f"{kind} {t.shape}")


@pytest.mark.parametrize("lengths", [None, [7, 3, 1, 7]], ids=["full", "lengths"])
@pytest.mark.parametrize("kind", KINDS)
def test_compiled_path_equals_numpy_and_the_hand_kernel(kind, lengths):
    check_against_references(kind, make(kind), 7, 4, lengths, seed=1)


@pytest.mark.parametrize("kind", ["lstm", "gru", "rnn_tanh"])
def test_frozen_bias_gets_no_gradient_and_the_rest_agree(kind):
    cell = make(kind)
    for p in cell.parameters():
        if p.ndim == 1:  # every bias: frozen (no gradient), their values still count
            p.requires_grad = False
    check_against_references(kind, cell, 6, 3, [6, 2, 4], seed=2)
    assert all(p.grad is None for p in cell.parameters() if p.ndim == 1)


@settings(max_examples=4, deadline=None)
@given(kind=hs.sampled_from(KINDS), T=hs.integers(2, 9), B=hs.integers(1, 5),
       data=hs.data())
def test_drawn_lengths_and_batches(kind, T, B, data):
    lengths = data.draw(hs.none() | hs.lists(hs.integers(1, T), min_size=B, max_size=B))
    if lengths is not None:
        lengths[0] = T  # at least one row runs all T steps: the compiled path runs them
    check_against_references(kind, make(kind), T, B, lengths, seed=data.draw(hs.integers(0, 99)))


def node_name(cell, x):
    with rnn.compiling("numba"):
        out, _ = rnn.unroll(cell, x)
    return out._node.name


def test_the_rule_picks_the_path(monkeypatch):
    cell = make("lstm")
    x = mg.randn(5, 2, I, rng=0, dtype=np.float64)
    assert node_name(cell, x) == "Scan"
    for mode in ("auto", "off", "numpy"):  # the hand kernel, as before the compiled path
        with rnn.compiling(mode):
            assert rnn.unroll(cell, x)[0]._node.name == "LSTMSequence"
    monkeypatch.setattr(cells, "COMPILED_MODES", ("auto", "numba"))  # opted in for "auto"
    with rnn.compiling("auto"):
        assert rnn.unroll(cell, x)[0]._node.name == "Scan"
    monkeypatch.undo()
    big = make("lstm", n_hid=cells.COMPILED_MAX_HIDDEN + 1)
    assert node_name(big, x) == "LSTMSequence"
    wide = mg.randn(5, cells.COMPILED_MAX_SIZE // H + 1, I, rng=0, dtype=np.float64)
    assert node_name(cell, wide) == "LSTMSequence"
    assert node_name(rnn.LSTMCell(I, H, fused=False, rng=0, dtype=np.float64), x) == "Scan"
    monkeypatch.setattr(cells, "COMPILED_MAX_SIZE", 0)   # the switch to keep the hand kernel
    assert node_name(cell, x) == "LSTMSequence"
    monkeypatch.undo()
    monkeypatch.setattr(cells, "COMPILED_MODES", ("auto",))
    monkeypatch.setattr(jit, "available", lambda: False)  # no numba: the hand kernel
    assert rnn.unroll(cell, x)[0]._node.name == "LSTMSequence"
    assert cell.fused


def test_compiled_path_keeps_fused_after_an_error():
    cell = make("gru")
    bad_state = mg.zeros(2, H + 1, dtype=np.float64)
    with pytest.raises(Exception), rnn.compiling("numba"):
        rnn.unroll(cell, mg.randn(4, 2, I, rng=0, dtype=np.float64), bad_state)
    assert cell.fused


def test_compile_report_names_the_path_a_built_in_cell_takes():
    from minigrad import jit
    if not jit.available():
        pytest.skip("numba is not installed (the `jit` extra)")
    cell = make("gru")
    x = mg.randn(5, 2, I, rng=0, dtype=np.float64)
    with rnn.compiling("numba"):
        assert "composed step compiled (NumbaExecutor)" in rnn.compile_report(cell, x)
    with rnn.compiling("auto"):
        assert "own sequence_kernel" in rnn.compile_report(cell, x)
