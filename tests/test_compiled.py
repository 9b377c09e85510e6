"""The compiled sequence path (rnn.compiled, minigrad.scan, minigrad.tracing).

Reference throughout: the per-op graph of the same cell under `rnn.compiling("off")` (one node
per op and step, itself tested against NumPy and finite differences elsewhere), compared in
float64 to round-off for outputs, final state and every gradient; plus finite differences
(gradcheck, gradgradcheck) of the compiled path itself and hand-counted saved bytes.
"""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import minigrad as mg
import rnn
from minigrad.testing import gradcheck, gradgradcheck
from rnn import state as rs

F64 = "float64"
RTOL, ATOL = 1e-10, 1e-12


# --- cells the tests use ----------------------------------------------------------------------

class MyMUT1(rnn.Cell):
    """The README's user-written MUT1."""

    def __init__(self, size, **kw):
        super().__init__(size, size, **kw)
        self.w_z, self.w_r, self.u_r, self.u_h = (self.parameter(size, size) for _ in range(4))
        self.b_z, self.b_r, self.b_h = (self.parameter(size) for _ in range(3))

    def forward(self, x, h):
        z = mg.sigmoid(x @ self.w_z.T + self.b_z)
        r = mg.sigmoid(x @ self.w_r.T + h @ self.u_r.T + self.b_r)
        h = mg.tanh((r * h) @ self.u_h.T + mg.tanh(x) + self.b_h) * z + h * (1 - z)
        return h, h


class UserLSTM(rnn.Cell):
    """An LSTM as a user writes it from primitives (16 ops per step)."""

    def __init__(self, n_in, n_hid, **kw):
        super().__init__(n_in, n_hid, **kw)
        self.w_ih, self.w_hh = self.parameter(4 * n_hid, n_in), self.parameter(4 * n_hid, n_hid)
        self.b = self.parameter(4 * n_hid)

    def initial_state(self, batch_size):
        return self.zeros(batch_size), self.zeros(batch_size)

    def forward(self, x, state):
        h, c = state
        g = x @ self.w_ih.T + h @ self.w_hh.T + self.b
        i, f, gg, o = mg.split(g, 4, axis=1)
        c = mg.sigmoid(f) * c + mg.sigmoid(i) * mg.tanh(gg)
        h = mg.sigmoid(o) * mg.tanh(c)
        return h, (h, c)


class Elman(rnn.Cell):
    def __init__(self, n_in, n_hid, **kw):
        super().__init__(n_in, n_hid, **kw)
        self.w, self.u = self.parameter(n_hid, n_in), self.parameter(n_hid, n_hid)

    def forward(self, x, h):
        h = mg.tanh(x @ self.w.T + h @ self.u.T)
        return h, h


class DropElman(Elman):
    """Dropout inside the recurrence: random draws at every step."""

    def forward(self, x, h):
        h = mg.tanh(x @ self.w.T + mg.dropout(h, 0.3) @ self.u.T)
        return h, h


class Branchy(Elman):
    """Data-dependent Python control flow: which op runs depends on the values."""

    def forward(self, x, h):
        a = x @ self.w.T + h @ self.u.T
        h = mg.tanh(a) if float(a.data.sum()) > 0 else mg.sigmoid(a)
        return h, h


class Context(rnn.Cell):
    """Reads a context (a nested structure) at every step; nested state."""

    def __init__(self, n_in, n_hid, **kw):
        super().__init__(n_in, n_hid, **kw)
        self.w, self.u, self.v = (self.parameter(n_hid, k) for k in (n_in, n_hid, n_hid))

    def initial_state(self, batch_size, context=None):
        return {"h": self.zeros(batch_size), "acc": (self.zeros(batch_size),)}

    def forward(self, x, state, context):
        h, (acc,) = state["h"], state["acc"]
        bias, scale = context
        h = mg.tanh(x @ self.w.T + h @ self.u.T + bias @ self.v.T) * scale
        return h, {"h": h, "acc": (acc + h,)}


def zoo():
    """Every built-in cell that runs a step graph (no fused kernel, or with it bypassed)."""
    kw = dict(rng=0, dtype=F64)
    cells = {
        "rnn_tanh": rnn.RNNCell(3, 4, fused=False, **kw),
        "rnn_relu": rnn.RNNCell(3, 4, "relu", fused=False, **kw),
        "lstm": rnn.LSTMCell(3, 4, fused=False, **kw),
        "lstm_peephole": rnn.LSTMCell(3, 4, peephole=True, **kw),
        "gru": rnn.GRUCell(3, 4, fused=False, **kw),
        "gru_reset_after": rnn.GRUCell(3, 4, reset_after=True, fused=False, **kw),
        "mut1": rnn.MUT1Cell(3, 4, **kw),
        "mut2": rnn.MUT2Cell(3, 4, **kw),
        "mut3": rnn.MUT3Cell(3, 4, **kw),
        "mut1_square": rnn.MUT1Cell(4, 4, **kw),
        "deep_transition": rnn.DeepTransitionCell(3, 4, depth=3, shortcut=True, **kw),
        "step_stack": rnn.StepStack([rnn.LSTMCell(3, 4, **kw), rnn.GRUCell(4, 5, rng=1,
                                                                          dtype=F64)]),
        "stack_rnn": rnn.memory.StackRNNCell(3, 3, hidden_size=5, stacks=2, depth=4, **kw),
        "my_mut1": MyMUT1(3, **kw),
        "user_lstm": UserLSTM(3, 4, **kw),
    }
    for v in ("NIG", "NFG", "NOG", "NIAF", "NOAF", "NP", "CIFG", "FGR"):
        cells[f"lstm_{v}"] = rnn.LSTMCell(3, 4, variant=v, **kw)
    return cells


ZOO = zoo()


# --- the comparison ---------------------------------------------------------------------------

def _leaves(tree):
    return [t for t in rs.flatten(tree)[0]] if tree is not None else []


def run_mode(mode, cell, x, state=None, lengths=None, context=None, fn=None, seed=0):
    """outputs, final state tensors and the gradients of a loss using both, in one mode."""
    fn = fn or (lambda c, x, s: rnn.unroll(c, x, s, lengths, context=context))
    with rnn.compiling(mode):
        mg.manual_seed(seed)
        out, final = fn(cell, x, state)
    flat = _leaves(final)
    rng = np.random.default_rng(seed + 1)
    loss = (out * mg.tensor(rng.standard_normal(out.shape))).sum()
    for f in flat:
        loss = loss + (f * mg.tensor(rng.standard_normal(f.shape))).sum()
    wrt = [x] + _leaves(state) + list(cell.parameters()) + _leaves(context)
    wrt = [t for t in wrt if t.requires_grad]
    grads = mg.grad(loss, wrt, allow_unused=True)
    return out.numpy(), [f.numpy() for f in flat], [None if g is None else g.numpy()
                                                     for g in grads]


def assert_same(cell, x, state=None, lengths=None, context=None, fn=None, compiled=True,
                mode="numpy"):
    want = run_mode("off", cell, x, state, lengths, context, fn)
    got = run_mode(mode, cell, x, state, lengths, context, fn)
    if compiled:
        with rnn.compiling(mode):
            report = rnn.compile_report(cell, x, state, context, lengths)
        assert f": compiled ({mode} executor)" in report, report
    np.testing.assert_allclose(got[0], want[0], rtol=RTOL, atol=ATOL)
    for g, w in zip(got[1], want[1]):
        np.testing.assert_allclose(g, w, rtol=RTOL, atol=ATOL)
    assert len(got[2]) == len(want[2])
    for k, (g, w) in enumerate(zip(got[2], want[2])):
        assert (g is None) == (w is None), k
        if g is not None:
            np.testing.assert_allclose(g, w, rtol=RTOL, atol=ATOL, err_msg=f"gradient {k}")


def leaf(a):
    return mg.tensor(np.asarray(a, np.float64), requires_grad=True)


def initial_leaves(cell, B, rng):
    """The cell's initial state with random values, every tensor a leaf requiring grad."""
    return rs.map(lambda t: leaf(rng.uniform(-1, 1, t.shape)), cell.initial_state(B))


# --- the zoo, MUT1 and a user LSTM ------------------------------------------------------------

# cells whose step builds arrays from the data (a one-hot of an argmax): the per-op graph runs
PER_OP = {"stack_rnn"}


@pytest.mark.parametrize("name", sorted(ZOO))
def test_every_zoo_cell_compiled_equals_the_per_op_graph(name):
    cell = ZOO[name]
    rng = np.random.default_rng(3)
    T, B = 5, 3
    x = leaf(rng.uniform(-1, 1, (T, B, cell.in_features)))
    compiled = name not in PER_OP
    assert_same(cell, x, initial_leaves(cell, B, rng), lengths=[5, 3, 1], compiled=compiled)
    assert_same(cell, x, compiled=compiled)  # default initial state (constants), no lengths
    if not compiled:
        assert "made anew at each step" in rnn.compile_report(cell, x)


@pytest.mark.parametrize("name", sorted(set(ZOO) - set(PER_OP)))
def test_every_zoo_cell_through_numba_equals_the_per_op_graph(name):
    """The same through numba's executor (minigrad.jit), where the cell's ops are in its table;
    the others say so and run NumPy's executor."""
    from minigrad import jit
    if not jit.available():
        pytest.skip("numba is not installed (the `jit` extra)")
    cell = ZOO[name]
    rng = np.random.default_rng(5)
    T, B = 6, 3
    x = leaf(rng.uniform(-1, 1, (T, B, cell.in_features)))
    with rnn.compiling("numba"):
        report = rnn.compile_report(cell, x, lengths=[6, 4, 1])
    mode = "numpy" if "numba refused" in report else "numba"
    assert_same(cell, x, initial_leaves(cell, B, rng), lengths=[6, 4, 1], mode=mode)


def test_attention_decoder_with_its_context():
    kw = dict(rng=0, dtype=F64)
    att = rnn.AdditiveAttention(4, 6, 4, **kw)
    dec = rnn.AttentionDecoderCell(rnn.GRUCell(3 + 4, 4, fused=False, **kw), att, **kw)
    rng = np.random.default_rng(4)
    enc = leaf(rng.uniform(-1, 1, (5, 2, 6)))
    x = leaf(rng.uniform(-1, 1, (4, 2, 3)))
    with rnn.compiling("numpy"):
        report = rnn.compile_report(dec, x, context=dec.context(enc, [5, 2]), lengths=[4, 2])
    assert ": compiled" in report, report

    def run(c, x, s):
        # the context is a graph made before the call (the encoder's): its gradient reaches enc
        return rnn.unroll(dec, x, None, [4, 2], context=dec.context(enc, [5, 2]))
    assert_same(dec, x, context=enc, fn=run, compiled=False)


def test_context_and_nested_state_with_lengths_checkpointing_and_layers():
    rng = np.random.default_rng(5)
    cell = Context(3, 4, rng=1, dtype=F64)
    T, B = 7, 3
    x = leaf(rng.uniform(-1, 1, (T, B, 3)))
    ctx = (leaf(rng.uniform(-1, 1, (B, 4))), leaf(rng.uniform(0.5, 1, (B, 4))))
    s0 = initial_leaves(cell, B, rng)
    assert_same(cell, x, s0, [7, 4, 2], ctx)
    assert_same(cell, x, s0, [7, 4, 2], ctx,
                fn=lambda c, x, s: rnn.unroll(c, x, s, [7, 4, 2], context=ctx,
                                              checkpoint_every=3))


@pytest.mark.parametrize("name", ["my_mut1", "user_lstm", "lstm", "gru"])
def test_checkpointing_tbptt_bidirectional_and_stacked(name):
    cell = ZOO[name]
    rng = np.random.default_rng(6)
    T, B = 9, 2
    x = leaf(rng.uniform(-1, 1, (T, B, 3)))
    lengths = [9, 5]
    assert_same(cell, x, None, lengths,
                fn=lambda c, x, s: rnn.unroll(c, x, s, lengths, checkpoint_every="sqrt"))
    assert_same(cell, x, None, lengths,
                fn=lambda c, x, s: rnn.unroll(c, x, s, lengths, checkpoint_every=4))

    def tbptt(c, x, s):
        res = rnn.tbptt(c, x, 4, loss_fn=lambda out, w: (out * out).sum(), lengths=lengths)
        return mg.tensor(np.array(res.losses)), None
    want, got = run_mode("off", cell, x, fn=tbptt), run_mode("numpy", cell, x, fn=tbptt)
    np.testing.assert_allclose(got[0], want[0], rtol=RTOL)
    bi = rnn.Bidirectional(cell, type(cell)(*_sizes(cell), rng=2, dtype=F64))
    assert_same(bi, x, None, lengths, fn=lambda c, x, s: c(x, lengths=lengths),
                compiled=False)
    deep = rnn.Stacked([cell, type(cell)(*_sizes(cell, cell.hidden_size), rng=3, dtype=F64)])
    assert_same(deep, x, None, lengths, fn=lambda c, x, s: c(x, lengths=lengths),
                compiled=False)


def _sizes(cell, n_in=None):
    n_in = cell.input_size if n_in is None else n_in
    return (n_in,) if isinstance(cell, MyMUT1) else (n_in, cell.hidden_size)


def test_tbptt_gradients_equal_the_per_op_graph():
    cell = UserLSTM(3, 4, rng=0, dtype=F64)
    x = mg.tensor(np.random.default_rng(7).uniform(-1, 1, (10, 2, 3)))
    grads = {}
    for mode in ("off", "numpy"):
        with rnn.compiling(mode):
            for p in cell.parameters():
                p.grad = None
            rnn.tbptt(cell, x, 3, loss_fn=lambda out, w: (out * out).sum(), lengths=[10, 6])
            grads[mode] = [p.grad.numpy() for p in cell.parameters()]
    for g, w in zip(grads["numpy"], grads["off"]):
        np.testing.assert_allclose(g, w, rtol=RTOL, atol=ATOL)


def test_lengths_zero_and_full_through_run_steps():
    """A row of length 0 (a sequence that ended before these steps: a TBPTT window or a
    checkpoint segment) keeps its state and outputs zeros; a row of length T runs fully."""
    cell = ZOO["user_lstm"]
    rng = np.random.default_rng(8)
    x = leaf(rng.uniform(-1, 1, (4, 3, 3)))
    s0 = initial_leaves(cell, 3, rng)

    def run(c, x, s):
        return rnn.steps.run_steps(c, x, s, np.array([0, 4, 2]))
    assert_same(cell, x, s0, fn=run, compiled=False)
    out, (h, c) = run(cell, x, s0)
    assert not out.numpy()[:, 0].any()
    np.testing.assert_array_equal(h.numpy()[0], s0[0].numpy()[0])


# --- a hypothesis-drawn random cell program ---------------------------------------------------

UNARY = {"tanh": mg.tanh, "sigmoid": mg.sigmoid, "neg": lambda a: -a,
         "sin_like": lambda a: a * (1 - a * a / 6)}
BINARY = {"add": lambda a, b: a + b, "mul": lambda a, b: a * b, "sub": lambda a, b: a - b,
          "max": mg.maximum}


class Program(rnn.Cell):
    """A random DAG of primitives over x_t, a nested state ((h, c), [m]) and parameters."""

    def __init__(self, steps, n_in, n_hid, **kw):
        super().__init__(n_in, n_hid, **kw)
        self.steps = steps
        self.w = self.parameter(n_hid, n_in)
        self.u = self.parameter(n_hid, n_hid)
        self.b = self.parameter(n_hid)

    def initial_state(self, batch_size):
        return ((self.zeros(batch_size), self.zeros(batch_size)), [self.zeros(batch_size)])

    def forward(self, x, state):
        (h, c), [m] = state
        nodes = [x @ self.w.T, h, c, m, self.b]
        for kind, i, j in self.steps:
            a, b = nodes[i % len(nodes)], nodes[j % len(nodes)]
            if kind == "matmul":
                nodes.append(mg.tanh(a @ self.u.T))
            elif kind in UNARY:
                nodes.append(UNARY[kind](a))
            else:
                nodes.append(mg.tanh(BINARY[kind](a, b)))
        h_new = mg.tanh(nodes[-1] + h)
        return h_new, ((h_new, mg.sigmoid(nodes[-2]) * c), [nodes[len(nodes) // 2] * 0.5 + m])


@settings(max_examples=12, deadline=None)
@given(steps=st.lists(st.tuples(st.sampled_from(["matmul", *UNARY, *BINARY]),
                                st.integers(0, 40), st.integers(0, 40)), min_size=2, max_size=9),
       T=st.integers(2, 5), B=st.integers(1, 3), seed=st.integers(0, 2**16),
       with_lengths=st.booleans())
def test_a_random_cell_program_compiled_equals_the_per_op_graph(steps, T, B, seed,
                                                                with_lengths):
    rng = np.random.default_rng(seed)
    cell = Program(steps, 3, 4, rng=seed, dtype=F64)
    x = leaf(rng.uniform(-1, 1, (T, B, 3)))
    lengths = rng.integers(1, T + 1, B) if with_lengths else None
    if lengths is not None:
        lengths[0] = T  # one full row: the compiled path needs two steps to trace
    assert_same(cell, x, initial_leaves(cell, B, rng), lengths)


# --- gradients of the compiled path itself ----------------------------------------------------

def test_gradcheck_of_the_compiled_path():
    cell = MyMUT1(3, rng=0, dtype=F64)
    rng = np.random.default_rng(9)
    x, h0 = leaf(rng.uniform(-1, 1, (4, 2, 3))), leaf(rng.uniform(-1, 1, (2, 3)))
    u = leaf(cell.u_r.numpy())

    def fn(x, h0, u):
        cell.u_r = u  # a new tensor each call: the cache traces again
        with rnn.compiling("numpy"):
            return rnn.unroll(cell, x, h0, lengths=[4, 3])
    with rnn.compiling("numpy"):
        assert ": compiled" in rnn.compile_report(cell, x, h0, lengths=[4, 3])
    assert gradcheck(fn, [x, h0, u], mode="elementwise")


def test_second_order_through_the_composed_twin():
    cell = Elman(2, 3, rng=0, dtype=F64)
    rng = np.random.default_rng(10)
    x, h0 = leaf(rng.uniform(-1, 1, (3, 2, 2))), leaf(rng.uniform(-1, 1, (2, 3)))

    def fn(x, h0):
        with rnn.compiling("numpy"):
            out, h = rnn.unroll(cell, x, h0, lengths=[3, 2])
        return (out * out).sum() + (h * h).sum()
    assert gradgradcheck(fn, [x, h0])


# --- what falls back, randomness, memory, the cache -------------------------------------------

def test_data_dependent_control_flow_falls_back_with_the_reason():
    cell = Branchy(2, 3, rng=0, dtype=F64)
    x = leaf(np.linspace(-1, 1, 24).reshape(4, 3, 2) * np.array([1, -1]))
    report = rnn.compile_report(cell, x)
    assert "per-op graph" in report and "differs between time steps 0 and 1" in report
    assert_same(cell, x, compiled=False)
    # its gates are masks computed from the time input (equal on the first two steps here)
    phased = rnn.PhasedLSTMCell(1, 3, rng=0, dtype=F64)
    t = leaf(np.concatenate([np.zeros((6, 1, 1)), np.arange(1.0, 7.0)[:, None, None]], -1))
    assert "per-op graph" in rnn.compile_report(phased, t)
    assert_same(phased, t, compiled=False)
    with rnn.compiling("off"):
        assert "rnn.compiling('off')" in rnn.compile_report(MyMUT1(2, rng=0), x)
    with pytest.raises(ValueError, match="compiling: mode must be one of"):
        with rnn.compiling("fast"):
            pass


def test_dropout_inside_the_cell_draws_as_the_per_op_graph():
    cell = DropElman(3, 4, rng=0, dtype=F64)
    x = leaf(np.random.default_rng(11).uniform(-1, 1, (6, 2, 3)))
    assert_same(cell, x, lengths=[6, 3])
    # after the run the generator has moved on exactly as far as the per-op run moves it
    outs = {}
    for mode in ("off", "numpy"):
        with rnn.compiling(mode):
            mg.manual_seed(4)
            rnn.unroll(cell, x)
            outs[mode] = mg.random.default_generator().random()
    assert outs["off"] == outs["numpy"]


def test_memory_counts_what_the_scan_saves():
    """Elman, B x H float64: the only arrays the step ops save that are not the caller's are the
    tanh outputs (each also the next step's left operand of h @ u.T): T * B * H * 8 bytes."""
    T, B, n_in, H = 6, 2, 3, 5
    cell = Elman(n_in, H, rng=0, dtype=F64)
    x = leaf(np.random.default_rng(12).uniform(-1, 1, (T, B, n_in)))
    h0 = leaf(np.zeros((B, H)))
    with rnn.compiling("numpy"):
        with mg.memory.track() as m:
            out, h = rnn.unroll(cell, x, h0)
            held = m.live_bytes
            out.sum().backward()
    assert held == T * B * H * 8
    assert m.live_bytes == 0


def test_the_cache_traces_again_for_new_shapes_and_replaced_parameters():
    cell = MyMUT1(3, rng=0, dtype=F64)
    rng = np.random.default_rng(13)
    with rnn.compiling("numpy"):
        rnn.unroll(cell, leaf(rng.uniform(-1, 1, (4, 2, 3))))
        rnn.unroll(cell, leaf(rng.uniform(-1, 1, (9, 2, 3))))   # T is not in the key
        assert len(rnn.compiled.cache_entries(cell)) == 1
        rnn.unroll(cell, leaf(rng.uniform(-1, 1, (4, 5, 3))))   # a new batch size
        assert len(rnn.compiled.cache_entries(cell)) == 2
    cell.u_h = mg.nn.Parameter(rng.uniform(-1, 1, (3, 3)))
    x = leaf(rng.uniform(-1, 1, (4, 2, 3)))
    assert_same(cell, x)  # the new weight is used (the per-op run reads it too)


def test_inference_frozen_weights_and_the_per_step_loop():
    cell = MyMUT1(3, rng=0, dtype=F64)
    rng = np.random.default_rng(14)
    x = leaf(rng.uniform(-1, 1, (5, 2, 3)))
    with rnn.compiling("off"):
        want = rnn.unroll(cell, x, lengths=[5, 2])[0].numpy()
    with mg.no_grad(), rnn.compiling("numpy"):      # inference: no graph at all
        out, h = rnn.unroll(cell, x, lengths=[5, 2])
    assert out._node is None and not out.requires_grad
    np.testing.assert_allclose(out.numpy(), want, rtol=RTOL, atol=ATOL)
    cell.u_h.requires_grad = False                    # a frozen weight: read, no gradient
    assert_same(cell, x, lengths=[5, 2])
    with rnn.compiling("numpy"):
        out, _ = rnn.unroll(cell, x)
        assert out._node.name == "Scan"
        for kw in (dict(per_step=True), dict(state_hook=lambda t, s: s)):
            out, _ = rnn.unroll(cell, x, **kw)
            assert out._node.name == "Stack"        # the per-op loop's outputs
    assert cell.u_h.grad is None


@settings(max_examples=6, deadline=None)
@given(T=st.integers(2, 4), B=st.integers(1, 3), seed=st.integers(0, 2**16))
def test_gradcheck_of_the_compiled_path_over_drawn_shapes_and_lengths(T, B, seed):
    rng = np.random.default_rng(seed)
    cell = UserLSTM(2, 3, rng=seed, dtype=F64)
    x = leaf(rng.uniform(-1, 1, (T, B, 2)))
    h0, c0 = leaf(rng.uniform(-1, 1, (B, 3))), leaf(rng.uniform(-1, 1, (B, 3)))
    lengths = rng.integers(1, T + 1, B)
    lengths[0] = T

    def fn(x, h0, c0):
        with rnn.compiling("numpy"):
            out, (h, c) = rnn.unroll(cell, x, (h0, c0), lengths)
        return out, h, c
    assert gradcheck(fn, [x, h0, c0])


def test_trace_records_the_ops_their_slots_and_what_is_read_from_outside():
    from minigrad import ops, tracing
    w = mg.tensor(np.ones((2, 3)), requires_grad=True)
    tape, _ = tracing.trace(lambda x, h: mg.tanh(x @ w + h * 2.0), [np.ones((4, 2)),
                                                                   np.zeros((4, 3))])
    assert [op.fn_class for op in tape.ops] == [ops.MatMul, ops.Mul, ops.Add, ops.Tanh]
    x_slot, h_slot = tape.inputs
    (w_slot, w_tensor), = tape.captured
    assert w_tensor is w
    assert tape.ops[0].args == (x_slot, w_slot)
    assert tape.ops[1].args[0] == h_slot and tape.ops[1].args[1].value == 2.0
    assert tape.outputs == list(tape.ops[3].outs)
    assert tape.meta[tape.outputs[0]] == ((4, 3), np.dtype(np.float64))


def test_compare_finds_a_plain_value_or_a_constant_that_depends_on_the_data():
    from minigrad import tracing

    def scaled(x):
        return x * float(x.data.max())      # a number read from the data

    def masked(x):
        return x * mg.tensor(x.data > 0)     # a constant tensor made from the data
    for fn in (scaled, masked):
        a, _ = tracing.trace(fn, [np.array([1.0, -2.0])])
        b, _ = tracing.trace(fn, [np.array([3.0, 2.0])])
        reason = tracing.compare(a, b)
        assert reason is not None and ("differs" in reason or "made anew" in reason)
    # on the same data a number is the same; an array built anew is never taken for a constant
    a, _ = tracing.trace(scaled, [np.array([1.0, -2.0])])
    b, _ = tracing.trace(scaled, [np.array([1.0, -2.0])])
    assert tracing.compare(a, b) is None
    a, _ = tracing.trace(masked, [np.array([1.0, -2.0])])
    b, _ = tracing.trace(masked, [np.array([1.0, -2.0])])
    assert "made anew at each step" in tracing.compare(a, b)


class PassThrough(rnn.Cell):
    """The output is the old state; one state tensor is passed on untouched, another swapped."""

    def __init__(self):
        super().__init__(3, 4, rng=0, dtype=F64)
        self.w, self.k = self.parameter(4, 3), self.parameter(4)

    def initial_state(self, batch_size):
        return tuple(self.zeros(batch_size) for _ in range(3))

    def forward(self, x, state):
        h, c, z = state
        return h * self.k.sum(), (c, c + mg.tanh(x @ self.w.T) * self.k, z)


def test_outputs_and_states_that_are_inputs_or_parameter_only_values():
    rng = np.random.default_rng(15)
    cell = PassThrough()
    x = leaf(rng.uniform(-1, 1, (5, 3, 3)))
    assert_same(cell, x, initial_leaves(cell, 3, rng), lengths=[5, 2, 4])
    assert_same(cell, x)


def test_second_order_with_dropout_inside_replays_the_same_draws():
    cell = DropElman(2, 3, rng=0, dtype=F64)
    rng = np.random.default_rng(16)
    x = leaf(rng.uniform(-1, 1, (4, 2, 2)))
    v = rng.standard_normal(cell.u.shape)
    hvp = {}
    for mode in ("off", "numpy"):
        with rnn.compiling(mode):
            mg.manual_seed(5)
            out, h = rnn.unroll(cell, x)
            g, = mg.grad((out * out).sum(), [cell.u], create_graph=True)
            hvp[mode] = mg.grad((g * mg.tensor(v)).sum(), [cell.u])[0].numpy()
    np.testing.assert_allclose(hvp["numpy"], hvp["off"], rtol=1e-9, atol=1e-12)


def test_numba_mode_needs_the_numba_executor():
    try:
        from minigrad import jit
        ready = jit.available()
    except ImportError:
        ready = False
    if ready:
        pytest.skip("the numba executor is installed here (tests/test_jit.py covers it)")
    with pytest.raises(ValueError, match=r"compiling\('numba'\): the numba executor is not"):
        with rnn.compiling("numba"):
            pass
    with rnn.compiling("auto"):  # auto takes NumPy's executor
        assert "compiled (numpy executor)" in rnn.compile_report(MyMUT1(3, rng=0),
                                                                mg.randn(4, 2, 3))


def test_numba_is_installed_where_ci_requires_it():
    """CI installs the `jit` extra and sets MINIGRAD_REQUIRE_NUMBA=1: there the numba executor's
    tests (tests/test_jit.py) must run, not skip."""
    import os

    from minigrad import jit
    if os.environ.get("MINIGRAD_REQUIRE_NUMBA") != "1":
        pytest.skip("MINIGRAD_REQUIRE_NUMBA is not set (only CI requires numba)")
    assert jit.available(), "MINIGRAD_REQUIRE_NUMBA=1 but minigrad.jit cannot use numba"


def test_compile_report_checks_its_arguments_as_unroll_does():
    """compile_report takes the inputs, state and context through rnn.unroll's own checks."""
    cell = ZOO["my_mut1"]
    x = mg.tensor(np.zeros((4, 2, 3)))
    with pytest.raises(rs.StateError, match="compile_report"):
        rnn.compile_report(cell, x, mg.tensor(np.zeros((2, 5))))  # state (B, 5), not (B, 3)
    with pytest.raises(ValueError, match="MyMUT1: input has 7 features"):  # as unroll says it
        rnn.compile_report(cell, mg.tensor(np.zeros((4, 2, 7))))  # the cell takes 3
    with pytest.raises(TypeError, match="compile_report"):
        rnn.compile_report(cell, x, context=mg.tensor(np.zeros((2, 3))))  # takes no context
