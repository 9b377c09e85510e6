"""Composed expressions: random graphs that reuse intermediate values, and hand-computed cases.

Hypothesis draws a small DAG over 1-3 inputs of mutually broadcastable shapes: each node applies
an op to earlier values (inputs or nodes, picked at random, so values are reused several times).
Every node value is also an output (a multi-output function), so a node that feeds others is
used several times and its gradient must accumulate. The forward pass must equal the same DAG
evaluated with NumPy, and the gradients must match central finite differences.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from hypothesis import given
from hypothesis import strategies as st

import minigrad as mg
from minigrad.testing import gradcheck
from minigrad.testing import strategies as mst

# name: (minigrad op, NumPy op, least ndim it needs); all smooth on the values drawn below
UNARY = {
    "tanh": (mg.tanh, np.tanh, 0),
    "sigmoid": (mg.sigmoid, lambda a: 1 / (1 + np.exp(-a)), 0),
    "softplus": (mg.softplus, lambda a: np.log1p(np.exp(a)), 0),
    "square": (lambda a: a * a, lambda a: a * a, 0),
    "neg_half": (lambda a: -0.5 * a, lambda a: -0.5 * a, 0),
    "exp_tanh": (lambda a: mg.exp(mg.tanh(a)), lambda a: np.exp(np.tanh(a)), 0),
    "mean_last": (lambda a: a.mean(axis=-1, keepdims=True),
                  lambda a: a.mean(axis=-1, keepdims=True), 1),
    "logsumexp_last": (lambda a: mg.logsumexp(a, axis=-1, keepdims=True),
                       lambda a: np.log(np.exp(a).sum(axis=-1, keepdims=True)), 1),
    "reverse_last": (lambda a: a[..., ::-1], lambda a: a[..., ::-1], 1),
}
BINARY = {
    "add": (lambda a, b: a + b, np.add),
    "sub": (lambda a, b: a - b, np.subtract),
    "mul": (lambda a, b: a * b, np.multiply),
    "div": (lambda a, b: a / (1 + b * b), lambda a, b: a / (1 + b * b)),
}


@dataclass(frozen=True)
class Graph:
    """Node k applies `ops[k]` to the values at `operands[k]` (inputs first, then nodes)."""

    inputs: tuple
    ops: tuple
    operands: tuple

    def run(self, values, lib):
        values = list(values)
        for op, args in zip(self.ops, self.operands):
            if op in UNARY:
                f = UNARY[op][0] if lib == "mg" else UNARY[op][1]
            else:
                f = BINARY[op][0] if lib == "mg" else BINARY[op][1]
            values.append(f(*(values[i] for i in args)))
        return tuple(values[len(self.inputs):])


@st.composite
def graphs(draw) -> Graph:
    n_in = draw(st.integers(1, 3))
    shapes = draw(mst.broadcastable_shapes(n_in, max_dims=3, max_side=3))
    inputs = tuple(draw(mst.arrays(s, domain=(-1.2, 1.2))) for s in shapes)
    ndims = [len(s) for s in shapes]
    ops, operands = [], []
    for _ in range(draw(st.integers(2, 6))):
        k = len(ndims)
        if draw(st.booleans()):
            a, b = draw(st.integers(0, k - 1)), draw(st.integers(0, k - 1))
            ops.append(draw(st.sampled_from(sorted(BINARY))))
            operands.append((a, b))
            ndims.append(max(ndims[a], ndims[b]))
        else:
            a = draw(st.integers(0, k - 1))
            ops.append(draw(st.sampled_from(sorted(u for u in UNARY if UNARY[u][2] <= ndims[a]))))
            operands.append((a,))
            ndims.append(ndims[a])
    return Graph(inputs, tuple(ops), tuple(operands))


@given(graphs())
def test_random_graph_forward_matches_numpy(g):
    xs = [mg.tensor(a, requires_grad=True) for a in g.inputs]
    for out, ref in zip(g.run(xs, "mg"), g.run(g.inputs, "np")):
        np.testing.assert_allclose(out.numpy(), ref, rtol=1e-12, atol=1e-12)


@given(graphs())
def test_random_graph_gradcheck(g):
    xs = [mg.tensor(a, requires_grad=True) for a in g.inputs]

    def graph(*xs):
        return g.run(xs, "mg")
    graph.__qualname__ = f"graph {list(zip(g.ops, g.operands))}"
    assert gradcheck(graph, xs)


# --- hand-computed -------------------------------------------------------------------------------

def test_hand_computed_reuse():
    # f = (x*y + x) * x = x^2 y + x^2;  df/dx = 2xy + 2x = 16,  df/dy = x^2 = 4 at (2, 3)
    x = mg.tensor(2.0, dtype="float64", requires_grad=True)
    y = mg.tensor(3.0, dtype="float64", requires_grad=True)
    f = (x * y + x) * x
    f.backward()
    assert f.item() == 16.0
    assert x.grad.item() == 16.0 and y.grad.item() == 4.0


def test_hand_computed_shared_intermediate():
    # z = tanh(a), w = z*z + z:  dw/da = (2z + 1)(1 - z^2)
    a = mg.tensor(0.5, dtype="float64", requires_grad=True)
    z = mg.tanh(a)
    w = z * z + z
    w.backward()
    zv = math.tanh(0.5)
    assert math.isclose(w.item(), zv * zv + zv, rel_tol=1e-15)
    assert math.isclose(a.grad.item(), (2 * zv + 1) * (1 - zv * zv), rel_tol=1e-14)


def test_hand_computed_broadcast_accumulates():
    # L = sum_ij x_i y_j:  dL/dx_i = sum_j y_j,  dL/dy_j = sum_i x_i
    x = mg.tensor([[1.0], [2.0], [3.0]], dtype="float64", requires_grad=True)   # (3, 1)
    y = mg.tensor([[1.0, -1.0, 0.5, 2.0]], dtype="float64", requires_grad=True)  # (1, 4)
    (x * y).sum().backward()
    np.testing.assert_array_equal(x.grad.numpy(), [[2.5], [2.5], [2.5]])
    np.testing.assert_array_equal(y.grad.numpy(), [[6.0, 6.0, 6.0, 6.0]])


def test_hand_computed_same_tensor_used_three_times():
    x = mg.tensor([1.0, -2.0], dtype="float64", requires_grad=True)
    (x + x * 2.0 - x / 4.0).sum().backward()
    np.testing.assert_array_equal(x.grad.numpy(), [2.75, 2.75])
