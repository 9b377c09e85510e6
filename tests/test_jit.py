"""minigrad.jit, the numba executor of a step program: every op of its table against NumPy maths
written here and central finite differences (float64); an LSTM step program with lengths against
an LSTM loop in NumPy and finite differences; float32 tanh/sigmoid within a few ulps; the README's
MUT1 through `rnn.compiling("numba")` against the per-op graph; refusals (`Unsupported`) and the
fallback to NumPy. Compiling costs about a second per program, so each program is compiled once
(module-scoped fixtures) and the rows of a table share one program.
"""
from __future__ import annotations

import functools
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as hs

import minigrad as mg
import rnn
from minigrad import jit, ops
from minigrad.jit import StepProgram, Unsupported

needs_numba = pytest.mark.skipif(not jit.available(),
                                 reason="numba is not installed (the `jit` extra)")
B, H, T = 3, 5, 2
RNG = np.random.default_rng(21)


def sigmoid(x):
    return 1 / (1 + np.exp(-x))


def softmax(x):
    e = np.exp(x - x.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)


# inputs a row may take: seq slots (T, *shape) drawn per step, invariants, constants
KINDS = {
    "x": ("seq", (B, H), lambda n: RNG.standard_normal(n)),
    "y": ("seq", (B, H), lambda n: RNG.standard_normal(n)),
    "pos": ("seq", (B, H), lambda n: RNG.uniform(0.5, 2.0, n)),
    "away": ("seq", (B, H), lambda n: RNG.choice([-1, 1], n) * RNG.uniform(0.2, 2.0, n)),
    "col": ("seq", (B, 1), lambda n: RNG.standard_normal(n)),
    "cond": ("seq", (B, H), lambda n: RNG.random(n) < 0.5),
    "bias": ("inv", (H,), lambda n: RNG.standard_normal(n)),
    "wide": ("seq", (B, 8), lambda n: RNG.standard_normal(n)),
    "square": ("seq", (B, B), lambda n: RNG.standard_normal(n)),
    "weight": ("inv", (H, 4), lambda n: RNG.standard_normal(n)),
    "perstep": ("seq", (H, 4), lambda n: RNG.standard_normal(n)),
}

# name: (op class, keywords, inputs (a KINDS name or ("const", value)), NumPy reference)
ELEMENTWISE_ROWS = {
    "add": (ops.Add, {}, ["x", "y"], lambda x, y: x + y),
    "add_bias": (ops.Add, {}, ["x", "bias"], lambda x, b: x + b),
    "sub_col": (ops.Sub, {}, ["x", "col"], lambda x, c: x - c),
    "one_minus": (ops.Sub, {}, [("const", 1.0), "x"], lambda x: 1 - x),
    "mul": (ops.Mul, {}, ["x", "y"], lambda x, y: x * y),
    "mul_const": (ops.Mul, {}, ["x", ("const", 2.5)], lambda x: x * 2.5),
    "div": (ops.Div, {}, ["x", "pos"], lambda x, p: x / p),
    "neg": (ops.Neg, {}, ["x"], lambda x: -x),
    "exp": (ops.Exp, {}, ["x"], np.exp),
    "log": (ops.Log, {}, ["pos"], np.log),
    "tanh": (ops.Tanh, {}, ["x"], np.tanh),
    "sigmoid": (ops.Sigmoid, {}, ["x"], sigmoid),
    "relu": (ops.Relu, {}, ["away"], lambda x: np.maximum(x, 0)),
    "where": (ops.Where, {}, ["cond", "x", "y"], lambda c, x, y: np.where(c, x, y)),
    "abs": (ops.Abs, {}, ["away"], np.abs),
    "sqrt": (ops.Sqrt, {}, ["pos"], np.sqrt),
    "maximum": (ops.Maximum, {}, ["x", "y"], np.maximum),
    "minimum": (ops.Minimum, {}, ["x", "y"], np.minimum),
    "leaky_relu": (ops.LeakyRelu, {"slope": 0.1}, ["away"], lambda x: np.where(x > 0, x, 0.1 * x)),
    "elu": (ops.Elu, {"alpha": 1.3}, ["away"], lambda x: np.where(x > 0, x, 1.3 * np.expm1(x))),
    "softplus": (ops.Softplus, {}, ["x"], lambda x: np.log1p(np.exp(x))),
    "clip": (ops.Clip, {"lo": -0.5, "hi": 0.7}, ["x"], lambda x: np.clip(x, -0.5, 0.7)),
}
OTHER_ROWS = {
    "slice_last": (ops.GetItem, {"index": (slice(None), slice(2, 7))}, ["wide"],
                   lambda w: w[:, 2:7]),
    "slice_step": (ops.GetItem, {"index": (Ellipsis, slice(1, None, 3))}, ["wide"],
                   lambda w: w[..., 1::3]),
    "take_column": (ops.GetItem, {"index": (slice(None), 6)}, ["wide"], lambda w: w[:, 6]),
    "transpose": (ops.Transpose, {}, ["square"], lambda s: s.T),
    "broadcast": (ops.BroadcastTo, {"shape": (B, H)}, ["col"],
                  lambda c: np.broadcast_to(c, (B, H))),
    "concat": (ops.Concat, {"axis": 1}, ["x", "wide"], lambda x, w: np.concatenate([x, w], 1)),
    "reshape": (ops.Reshape, {"shape": (B, 2, 4)}, ["wide"], lambda w: w.reshape(B, 2, 4)),
    "sum": (ops.Sum, {"axis": 1}, ["x"], lambda x: x.sum(1)),
    "sum_keep": (ops.Sum, {"axis": -1, "keepdims": True}, ["x"],
                 lambda x: x.sum(-1, keepdims=True)),
    "mean": (ops.Mean, {"axis": 1}, ["x"], lambda x: x.mean(1)),
    "softmax": (ops.Softmax, {"axis": -1}, ["x"], softmax),
    "matmul_weight": (ops.MatMul, {}, ["x", "weight"], lambda x, w: x @ w),
    "matmul_perstep": (ops.MatMul, {}, ["x", "perstep"], lambda x, w: x @ w),
}
SPLIT = ("split", ops.Split, {"sections": [3], "axis": 1}, "wide")  # two outputs: [:, :3], [:, 3:]


class Table:
    """One step program holding every row: each row's inputs are slots of its own and its
    result is a carry, so after T steps the final carry is the row's op on the last step's
    inputs, and the gradient of the final carry reaches only that row's inputs."""

    def __init__(self, rows, dtype=np.float64, split=False):
        self.rows, self.dtype = rows, np.dtype(dtype)
        meta, ops_, seqs, invs, carries, news = {}, [], [], [], [], []
        self.inputs = {}   # row -> [(kind, index in seqs/invs) or ("const", v)]
        self.carry_of = {}  # row -> [carry indices]
        slot = 0

        def new(shape, dt):
            nonlocal slot
            meta[slot] = (shape, dt)
            slot += 1
            return slot - 1

        for name, (cls, kw, args, ref) in rows.items():
            slots, spec = [], []
            for a in args:
                if isinstance(a, tuple):
                    slots.append(jit.Literal(a[1]))
                    spec.append(a)
                    continue
                kind, shape, _ = KINDS[a]
                dt = np.dtype(bool) if a == "cond" else self.dtype
                s = new(shape, dt)
                slots.append(s)
                (seqs if kind == "seq" else invs).append(s)
                spec.append((kind, len(seqs if kind == "seq" else invs) - 1, a))
            out_shape = np.shape(ref(*[np.ones(KINDS[a][1]) for a in args
                                       if not isinstance(a, tuple)]))
            out = new(out_shape, self.dtype)
            ops_.append((cls, kw, slots, [out]))
            self.inputs[name] = spec
            self.carry_of[name] = [len(carries)]
            carries.append(new(out_shape, self.dtype))
            news.append(out)
        if split:
            name, cls, kw, a = SPLIT
            s = new(KINDS[a][1], self.dtype)
            seqs.append(s)
            outs = [new((B, 3), self.dtype), new((B, 5), self.dtype)]
            ops_.append((cls, kw, [s], outs))
            self.inputs[name] = [("seq", len(seqs) - 1, a)]
            self.carry_of[name] = [len(carries), len(carries) + 1]
            for o in outs:
                carries.append(new(meta[o][0], self.dtype))
                news.append(o)
        self.meta = meta
        self.program = StepProgram(ops_, meta, seqs, carries, invs, [news[0]], news)
        self.seq_slots, self.inv_slots, self.carry_slots = seqs, invs, carries
        self.executor = jit.make_executor(self.program)
        self.seqs = [self.draw(s, (T,) + meta[s][0]) for s in seqs]
        self.invs = [self.draw(s, meta[s][0]) for s in invs]
        self.carry0 = [RNG.standard_normal(meta[s][0]).astype(self.dtype) for s in carries]

    def draw(self, slot, shape):
        for spec in self.inputs.values():
            for item in spec:
                if item[0] != "const" and (self.seq_slots if item[0] == "seq" else
                                           self.inv_slots)[item[1]] == slot:
                    v = KINDS[item[2]][2](shape)
                    return v if v.dtype == bool else v.astype(self.dtype)
        raise AssertionError(slot)

    def run(self, seqs=None, invs=None):
        out, final, saved = self.executor.forward(seqs or self.seqs, self.carry0,
                                                  invs or self.invs, None, True)
        return out, final, saved

    def args_at_last_step(self, name):
        return [item[1] if item[0] == "const" else
                (self.seqs[item[1]][-1] if item[0] == "seq" else self.invs[item[1]])
                for item in self.inputs[name]]


@functools.lru_cache(maxsize=None)
def row_table(name):
    """A program of one row (compiling one program per row is quicker than one for all)."""
    if name == "split":
        return Table({}, split=True)
    rows = ELEMENTWISE_ROWS if name in ELEMENTWISE_ROWS else OTHER_ROWS
    return Table({name: rows[name]})


def check_row(table, name, ref):
    out, final, _ = table.run()
    args = [a for a, item in zip(table.args_at_last_step(name), table.inputs[name])
            if item[0] != "const"]
    want = ref(*args)
    (k,) = table.carry_of[name]
    np.testing.assert_allclose(final[k], want, rtol=1e-12, atol=1e-12, err_msg=name)
    check_grad_fd(table, name)


def check_grad_fd(table, name):
    """The row's input gradients from backward (g_final_carry R on the row's carries) against
    a central difference of the forward along a random direction of the row's inputs."""
    ks = table.carry_of[name]
    R = {k: RNG.standard_normal(table.carry0[k].shape) for k in ks}
    g_final = [R.get(k) for k in range(len(table.carry0))]
    _, _, saved = table.run()
    g_seqs, _, g_invs = table.executor.backward(saved, None, g_final)
    vs = {item[:2]: RNG.standard_normal((table.seqs if item[0] == "seq" else table.invs)[
        item[1]].shape) for item in table.inputs[name]
        if item[0] != "const" and item[2] != "cond"}

    def loss(eps):
        seqs = [a + eps * vs[("seq", i)] if ("seq", i) in vs else a
                for i, a in enumerate(table.seqs)]
        invs = [a + eps * vs[("inv", i)] if ("inv", i) in vs else a
                for i, a in enumerate(table.invs)]
        _, final, _ = table.run(seqs, invs)
        return sum(float((final[k] * R[k]).sum()) for k in ks)

    eps = 1e-6
    fd = (loss(eps) - loss(-eps)) / (2 * eps)
    analytic = sum(float(((g_seqs if kind == "seq" else g_invs)[i] * v).sum())
                   for (kind, i), v in vs.items())
    assert abs(fd - analytic) <= 1e-6 * max(1.0, abs(fd)), (name, fd, analytic)


@needs_numba
@pytest.mark.parametrize("name", sorted(ELEMENTWISE_ROWS))
def test_elementwise_op(name):
    check_row(row_table(name), name, ELEMENTWISE_ROWS[name][3])


@needs_numba
@pytest.mark.parametrize("name", sorted(OTHER_ROWS))
def test_view_reduction_matmul_op(name):
    check_row(row_table(name), name, OTHER_ROWS[name][3])


@needs_numba
def test_split():
    other_table = row_table("split")
    _, final, _ = other_table.run()
    w = other_table.args_at_last_step("split")[0]
    k0, k1 = other_table.carry_of["split"]
    np.testing.assert_array_equal(final[k0], w[:, :3])
    np.testing.assert_array_equal(final[k1], w[:, 3:])
    check_grad_fd(other_table, "split")


def test_supported_ops_are_the_table():
    rows = {r[0].__name__ for r in list(ELEMENTWISE_ROWS.values()) + list(OTHER_ROWS.values())}
    assert rows | {"Split"} == set(jit.supported_ops())


# --- an LSTM step, with lengths ---------------------------------------------------------------

def lstm_program(B, H, dtype):
    """gates = xw_t + h @ U (U (H, 4H) invariant), blocks i, f, g, o by slicing; 16 ops."""
    def sl(k):
        return {"index": (slice(None), slice(k * H, (k + 1) * H))}
    step = [(ops.MatMul, {}, [1, 3], [4]), (ops.Add, {}, [0, 4], [5]),
            (ops.GetItem, sl(0), [5], [6]), (ops.Sigmoid, {}, [6], [7]),
            (ops.GetItem, sl(1), [5], [8]), (ops.Sigmoid, {}, [8], [9]),
            (ops.GetItem, sl(2), [5], [10]), (ops.Tanh, {}, [10], [11]),
            (ops.GetItem, sl(3), [5], [12]), (ops.Sigmoid, {}, [12], [13]),
            (ops.Mul, {}, [9, 2], [14]), (ops.Mul, {}, [7, 11], [15]),
            (ops.Add, {}, [14, 15], [16]), (ops.Tanh, {}, [16], [17]),
            (ops.Mul, {}, [13, 17], [18])]
    meta = {s: ((B, H), dtype) for s in range(19)}
    meta.update({s: ((B, 4 * H), dtype) for s in (0, 4, 5)})
    meta[3] = ((H, 4 * H), dtype)
    return StepProgram(step, meta, seqs=[0], carries=[1, 2], invariants=[3], outputs=[18],
                       new_carries=[18, 16])


def lstm_numpy(xw, h, c, U, masks):
    """The LSTM in NumPy, masked rows keeping their state and giving 0."""
    H = h.shape[1]
    outs = []
    for t in range(len(xw)):
        a = xw[t] + h @ U
        i, f, g, o = (sigmoid(a[:, :H]), sigmoid(a[:, H:2 * H]), np.tanh(a[:, 2 * H:3 * H]),
                      sigmoid(a[:, 3 * H:]))
        c_new = f * c + i * g
        h_new = o * np.tanh(c_new)
        m = masks[t] if masks is not None else np.ones((len(h), 1), bool)
        outs.append(np.where(m, h_new, 0))
        h, c = np.where(m, h_new, h), np.where(m, c_new, c)
    return np.stack(outs), h, c


LB, LH, LT = 16, 32, 6  # (16, 32) @ (32, 128): big enough for the BLAS path


@pytest.fixture(scope="module")
def lstm64():
    if not jit.available():
        pytest.skip("numba is not installed (the `jit` extra)")
    return jit.make_executor(lstm_program(LB, LH, np.float64))


def lstm_inputs(seed, dtype=np.float64):
    r = np.random.default_rng(seed)
    return ([r.standard_normal((LT, LB, 4 * LH)).astype(dtype)],
            [r.standard_normal((LB, LH)).astype(dtype) for _ in range(2)],
            [(r.standard_normal((LH, 4 * LH)) / np.sqrt(LH)).astype(dtype)])


@needs_numba
@settings(max_examples=5, deadline=None)
@given(lengths=hs.lists(hs.integers(0, LT), min_size=LB, max_size=LB), seed=hs.integers(0, 99))
def test_lstm_program_equals_numpy_and_finite_differences(lstm64, lengths, seed):
    seqs, carry0, invs = lstm_inputs(seed)
    masks = (np.arange(LT)[:, None] < np.array(lengths)[None, :])[:, :, None]
    out, (h, c), saved = lstm64.forward(seqs, carry0, invs, masks, True)
    want = lstm_numpy(seqs[0], *carry0, invs[0], masks)
    for got, ref in zip((out, h, c), want):
        np.testing.assert_allclose(got, ref, rtol=1e-12, atol=1e-13)
    out2, (h2, c2), nothing = lstm64.forward(seqs, carry0, invs, masks, False)  # keeps nothing
    assert nothing == ()
    for got, ref in zip((out2, h2, c2), (out, h, c)):
        np.testing.assert_array_equal(got, ref)
    r = np.random.default_rng(seed + 1)
    g_out, g_h, g_c = (r.standard_normal(a.shape) for a in (out, h, c))
    g_seqs, g_carry0, g_invs = lstm64.backward(saved, g_out, [g_h, g_c])
    # central difference of the NumPy LSTM along a random direction of every input
    v = [r.standard_normal(a.shape) for a in (seqs[0], *carry0, invs[0])]

    def loss(eps):
        xw, h0, c0, U = (a + eps * d for a, d in zip((seqs[0], *carry0, invs[0]), v))
        o, hT, cT = lstm_numpy(xw, h0, c0, U, masks)
        return (o * g_out).sum() + (hT * g_h).sum() + (cT * g_c).sum()

    fd = (loss(1e-6) - loss(-1e-6)) / 2e-6
    analytic = sum((g * d).sum() for g, d in zip((g_seqs[0], *g_carry0, g_invs[0]), v))
    assert abs(fd - analytic) <= 1e-6 * max(1.0, abs(fd))


@needs_numba
def test_lstm_float32_to_round_off():
    """float32 (tanh as a rational, sums in step order) against the float64 NumPy maths."""
    ex = jit.make_executor(lstm_program(LB, LH, np.float32))
    seqs, carry0, invs = lstm_inputs(3)
    s32, c32, i32 = ([a.astype(np.float32) for a in part] for part in (seqs, carry0, invs))
    out, (h, c), saved = ex.forward(s32, c32, i32, None, True)
    assert out.dtype == np.float32
    for got, ref in zip((out, h, c), lstm_numpy(seqs[0], *carry0, invs[0], None)):
        np.testing.assert_allclose(got, ref, rtol=0, atol=3e-6)
    g_seqs, g_carry0, g_invs = ex.backward(saved, np.ones_like(out), None)
    ex64 = jit.make_executor(lstm_program(LB, LH, np.float64))
    _, _, saved64 = ex64.forward(seqs, carry0, invs, None, True)
    want = ex64.backward(saved64, np.ones(out.shape), None)
    for got, ref in zip(g_seqs + g_carry0 + g_invs, want[0] + want[1] + want[2]):
        np.testing.assert_allclose(got, ref, rtol=0, atol=2e-5 * max(1, np.abs(ref).max()))


@needs_numba
def test_float32_tanh_and_sigmoid_within_a_few_ulps():
    x = np.linspace(-20, 20, 4 * 4001, dtype=np.float32).reshape(4, -1)
    x[0, :7] = [0, -0.0, 1e-30, -1e-8, 1e-4, 9.0, -9.0]
    shape = x.shape
    meta = {s: (shape, np.float32) for s in range(5)}
    program = StepProgram([(ops.Tanh, {}, [0], [3]), (ops.Sigmoid, {}, [0], [4])], meta,
                          seqs=[0], carries=[1, 2], invariants=[], outputs=[3],
                          new_carries=[3, 4])
    ex = jit.make_executor(program)
    _, (th, sg), _ = ex.forward([x[None]], [np.zeros(shape, np.float32)] * 2, [], None, False)
    exact = np.tanh(x.astype(np.float64))
    ulp = np.spacing(np.abs(exact).astype(np.float32)).astype(np.float64)
    assert (np.abs(th - exact) <= 6 * ulp).all()
    assert (np.abs(sg - sigmoid(x.astype(np.float64))) <= 4e-7).all()  # absolute, as ops.Sigmoid


# --- through rnn: the README's MUT1 -----------------------------------------------------------

class MyMUT1(rnn.Cell):
    def __init__(self, size, **kw):
        super().__init__(size, size, **kw)
        self.w_z, self.w_r, self.u_r, self.u_h = (self.parameter(size, size) for _ in range(4))
        self.b_z, self.b_r, self.b_h = (self.parameter(size) for _ in range(3))

    def forward(self, x, h):
        z = mg.sigmoid(x @ self.w_z.T + self.b_z)
        r = mg.sigmoid(x @ self.w_r.T + h @ self.u_r.T + self.b_r)
        h = mg.tanh((r * h) @ self.u_h.T + mg.tanh(x) + self.b_h) * z + h * (1 - z)
        return h, h


class ElmanCell(rnn.Cell):
    """h' = tanh(x + h U^T + b): compiled by no other test here."""

    def __init__(self, size, **kw):
        super().__init__(size, size, **kw)
        self.u, self.b = self.parameter(size, size), self.parameter(size)

    def forward(self, x, h):
        h = mg.tanh(x + h @ self.u.T + self.b)
        return h, h


class PowCell(rnn.Cell):
    """A cell with an op outside the numba table (a power)."""

    def __init__(self, size, **kw):
        super().__init__(size, size, **kw)
        self.u = self.parameter(size, size)

    def forward(self, x, h):
        h = mg.tanh(x + (h @ self.u.T) ** 3)
        return h, h


def run_cell(cell, mode, lengths=(20, 13, 7, 1)):
    x = mg.randn(20, len(lengths), 8, rng=1, dtype="float64")
    cell.zero_grad()
    with rnn.compiling(mode):
        out, state = rnn.unroll(cell, x, lengths=list(lengths))
        leaves = rnn.state.flatten(state)[0]
        sum(((t * t).sum() for t in leaves), (out * out).sum()).backward()
        report = rnn.compile_report(cell, x)
    return (out.data, np.concatenate([t.data.ravel() for t in leaves]),
            [p.grad.data.copy() for p in cell.parameters()], report)


@needs_numba
def test_mut1_through_rnn_equals_the_per_op_graph(monkeypatch):
    cell = MyMUT1(8, rng=0, dtype="float64")
    count = jit.compiled_count()
    out, h, grads, report = run_cell(cell, "numba")
    assert jit.compiled_count() == count + 1
    assert "numba" in report
    ref_out, ref_h, ref_grads, _ = run_cell(cell, "off")
    np.testing.assert_allclose(out, ref_out, rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(h, ref_h, rtol=1e-12, atol=1e-14)
    for g, r in zip(grads, ref_grads):
        np.testing.assert_allclose(g, r, rtol=1e-10, atol=1e-12)


BUILT_IN = {
    "gru_reset_after": lambda: rnn.GRUCell(8, 8, reset_after=True, fused=False, rng=0,
                                           dtype="float64"),
    "lstm_peephole": lambda: rnn.LSTMCell(8, 8, peephole=True, rng=0, dtype="float64"),
}


@needs_numba
@pytest.mark.parametrize("name", sorted(BUILT_IN))
def test_built_in_cells_equal_the_per_op_graph(monkeypatch, name):
    cell = BUILT_IN[name]()
    got, ref = run_cell(cell, "numba"), run_cell(cell, "off")
    assert "numba" in got[3], got[3]
    for g, r in zip(got[:2] + tuple(got[2]), ref[:2] + tuple(ref[2])):
        np.testing.assert_allclose(g, r, rtol=1e-10, atol=1e-12)


@needs_numba
def test_compiled_from_the_first_run_on():
    """Under numba's executor a program runs compiled from its first run (never NumPy's first
    and numba's later: the round-off of a run does not change midway), once for every shape:
    another batch size compiles nothing new; every run equals the per-op graph."""
    cell = ElmanCell(8, rng=5, dtype="float64")
    ref = run_cell(cell, "off")
    count, runs = jit.compiled_count(), jit.compiled_runs()
    for run in range(3):
        got = run_cell(cell, "numba")
        assert jit.compiled_count() == count + 1
        assert jit.compiled_runs() == runs + run + 1
        for g, r in zip(got[:2] + tuple(got[2]), ref[:2] + tuple(ref[2])):
            np.testing.assert_allclose(g, r, rtol=1e-10, atol=1e-12)
    got = run_cell(cell, "numba", lengths=(20, 9, 1))
    ref = run_cell(cell, "off", lengths=(20, 9, 1))
    for g, r in zip(got[:2] + tuple(got[2]), ref[:2] + tuple(ref[2])):
        np.testing.assert_allclose(g, r, rtol=1e-10, atol=1e-12)
    assert jit.compiled_count() == count + 1 and jit.compiled_runs() == runs + 4


@needs_numba
def test_op_outside_the_table_is_refused_and_numpy_runs_it():
    H = 4
    meta = {s: ((B, H), np.float64) for s in range(4)}
    program = StepProgram([(ops.Pow, {}, [0, jit.Literal(3.0)], [2]),
                           (ops.Add, {}, [2, 1], [3])], meta,
                          seqs=[0], carries=[1], invariants=[], outputs=[3], new_carries=[3])
    with pytest.raises(Unsupported, match="Pow"):
        jit.make_executor(program)
    cell = PowCell(8, rng=0, dtype="float64")
    out, h, grads, report = run_cell(cell, "numba")
    assert "numba refused" in report and "Pow" in report
    ref_out, _, ref_grads, _ = run_cell(cell, "off")
    np.testing.assert_allclose(out, ref_out, rtol=1e-12, atol=1e-14)
    for g, r in zip(grads, ref_grads):
        np.testing.assert_allclose(g, r, rtol=1e-10, atol=1e-12)


def test_without_numba_it_refuses(monkeypatch):
    monkeypatch.setattr(jit, "available", lambda: False)
    meta = {s: ((B, 4), np.float64) for s in range(3)}
    program = StepProgram([(ops.Tanh, {}, [0], [2])], meta, seqs=[0], carries=[1],
                          invariants=[], outputs=[2], new_carries=[2])
    with pytest.raises(Unsupported, match="numba is not installed"):
        jit.make_executor(program)


def test_importing_jit_does_not_import_numba():
    code = "import sys, minigrad.jit; assert 'numba' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True, cwd=Path(__file__).parents[1])


# --- the on-disk cache --------------------------------------------------------------------------
# A child process compiles an Elman step program (h' = tanh(x + h @ U), B = H = 32: U's product
# goes through BLAS' gemm) with the cache in a temporary directory and prints its outputs and
# gradients against an Elman loop and its BPTT in NumPy written here, and how many loops it
# loaded from the cache.
CHILD = r"""
import json
import numpy as np
from minigrad import jit, ops
from minigrad.jit import StepProgram
B, H, T = 32, 32, 5
rng = np.random.default_rng(3)
x, h0 = rng.standard_normal((T, B, H)), rng.standard_normal((B, H))
u, gy = rng.standard_normal((H, H)) / H, rng.standard_normal((T, B, H))
meta = {s: ((B, H), np.float64) for s in (0, 1, 3, 4, 5)}
meta[2] = ((H, H), np.float64)
program = StepProgram([(ops.MatMul, {}, [1, 2], [3]), (ops.Add, {}, [0, 3], [4]),
                       (ops.Tanh, {}, [4], [5])], meta, seqs=[0], carries=[1], invariants=[2],
                      outputs=[5], new_carries=[5])
ex = jit.make_executor(program)
out, carry, saved = ex.forward([x], [h0], [u], None, True)
(gx,), (gh0,), (gu,) = ex.backward(saved, gy, [None])
hs, h = [], h0
for t in range(T):
    h = np.tanh(x[t] + h @ u)
    hs.append(h)
g, ref_gu, ref_gx = np.zeros((B, H)), np.zeros((H, H)), np.zeros((T, B, H))
for t in reversed(range(T)):
    ga = (g + gy[t]) * (1 - hs[t] ** 2)
    ref_gx[t] = ga
    ref_gu += (hs[t - 1] if t else h0).T @ ga
    g = ga @ u.T
err = max(abs(out - np.stack(hs)).max(), abs(gx - ref_gx).max(), abs(gu - ref_gu).max(),
          abs(gh0 - g).max(), abs(carry[0] - hs[-1]).max())
print(json.dumps({"err": float(err), "hits": jit.cache_hits(), "dir": jit.cache_dir()}))
"""


def run_child(cache):
    env = dict(os.environ, MINIGRAD_JIT_CACHE=str(cache))
    done = subprocess.run([sys.executable, "-c", CHILD], env=env, capture_output=True, text=True,
                          cwd=Path(__file__).parents[1], check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


@needs_numba
def test_a_second_process_loads_the_loops_from_the_cache(tmp_path):
    first = run_child(tmp_path)
    assert first["hits"] == 0 and first["dir"] == str(tmp_path) and first["err"] < 1e-12
    written = sorted(p.name for p in tmp_path.rglob("*") if p.is_file())
    assert any(n.endswith(".py") for n in written) and any(n.endswith(".nbc") for n in written)
    second = run_child(tmp_path)
    assert second["hits"] == 2 and second["err"] < 1e-12  # forward and backward loaded
    # damaged numba files (data, index): compiled anew, same numbers, and the cache mended
    for pattern in ("*.nbc", "*.nbi"):
        for p in tmp_path.rglob(pattern):
            p.write_bytes(b"\x80damaged")
        again = run_child(tmp_path)
        assert again["hits"] == 0 and again["err"] < 1e-12, pattern
    # a damaged source is written again (numba's index knows it by its contents)
    source = next(tmp_path.glob("*.py"))
    text = source.read_text()
    source.write_text(text.replace("def forward", "def broken"))
    again = run_child(tmp_path)
    assert source.read_text() == text and again["hits"] == 2 and again["err"] < 1e-12


def test_cache_directory_choice(tmp_path, monkeypatch):
    for off in ("off", "0", ""):
        monkeypatch.setenv(jit.CACHE_ENV, off)
        assert jit.cache_dir() is None
    monkeypatch.setenv(jit.CACHE_ENV, str(tmp_path / "mine"))
    assert jit.cache_dir() == str(tmp_path / "mine")
    assert (tmp_path / "mine").stat().st_mode & 0o777 == 0o700
    shared = tmp_path / "shared"  # others may write there: never loaded from
    shared.mkdir(mode=0o777)
    shared.chmod(0o777)
    monkeypatch.setenv(jit.CACHE_ENV, str(shared))
    assert jit.cache_dir() is None
    monkeypatch.delenv(jit.CACHE_ENV)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert jit.cache_dir() == str(tmp_path / "xdg" / "minigrad" / "jit")
