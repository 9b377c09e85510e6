"""rnn.state and structured cell states through every loop.

References: structures enumerated by a recursive walk written here (flatten, unflatten, map,
paths); finite differences (minigrad.testing.gradcheck) for every gradient of a cell whose state
is a hypothesis-drawn nesting of tuples, lists, dicts and NamedTuples, under plain unrolling,
lengths, checkpointing (K = 1, 2, sqrt, T), Bidirectional and Stacked; each sequence run alone
for lengths; hand arithmetic for the errors.
"""
import os
import pathlib
import re
import subprocess
import sys
from typing import NamedTuple

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import minigrad as mg
import rnn
from minigrad.testing import gradcheck
from minigrad.testing.strategies import sequences
from rnn import state as rs

F64 = "float64"


class Pair(NamedTuple):
    first: object
    second: object


# --- structures: a template is a nesting whose leaves are widths (ints) -------------------------

templates = st.recursive(
    st.integers(1, 3),
    lambda inner: st.one_of(
        st.lists(inner, min_size=1, max_size=2).map(tuple),
        st.lists(inner, min_size=1, max_size=2),
        st.dictionaries(st.sampled_from(["c", "a", "memory"]), inner, min_size=1, max_size=2),
        st.tuples(inner, inner).map(lambda p: Pair(*p))),
    max_leaves=4)


def build(template, leaf):
    """The structure of `template` with leaf(width, k) at its k-th leaf (depth first, dict keys
    sorted): written here, independently of rnn.state."""
    counter = [0]

    def walk(t):
        if isinstance(t, int):
            counter[0] += 1
            return leaf(t, counter[0] - 1)
        if isinstance(t, dict):
            return {k: walk(t[k]) for k in sorted(t)}
        if isinstance(t, Pair):
            return Pair(walk(t.first), walk(t.second))
        items = [walk(v) for v in t]
        return tuple(items) if isinstance(t, tuple) else items
    return walk(template)


def widths(template) -> list:
    out = []
    build(template, lambda w, k: out.append(w))
    return out


def same_structure(a, b) -> bool:
    if isinstance(a, mg.Tensor) or isinstance(b, mg.Tensor):
        return isinstance(a, mg.Tensor) and isinstance(b, mg.Tensor)
    if type(a) is not type(b):
        return False
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(same_structure(a[k], b[k]) for k in a)
    return len(a) == len(b) and all(same_structure(x, y) for x, y in zip(a, b))


@given(template=templates)
def test_flatten_unflatten_map_follow_the_structure(template):
    tensors = []
    state = build(template, lambda w, k: tensors.append(mg.full((2, w), float(k))) or tensors[-1])
    flat, spec = rs.flatten(state)
    assert [id(t) for t in flat] == [id(t) for t in tensors]      # depth first, keys sorted
    assert spec.size == len(tensors) and len(spec.paths()) == len(tensors)
    again = rs.unflatten(spec, flat)
    assert same_structure(again, state)
    assert rs.flatten(again)[1] == spec
    doubled = rs.map(lambda a, b: a + b, state, state)
    assert same_structure(doubled, state)
    for k, t in enumerate(rs.flatten(doubled)[0]):
        np.testing.assert_array_equal(t.numpy(), np.full((2, widths(template)[k]), 2.0 * k))


def test_paths_and_describe():
    s = ((mg.zeros(1), mg.zeros(1)), {"m": mg.zeros(1), "a": [mg.zeros(1)]}, Pair(mg.zeros(1),
                                                                                  mg.zeros(1)))
    _, spec = rs.flatten(s)
    assert spec.paths() == ["state[0][0]", "state[0][1]", "state[1]['a'][0]", "state[1]['m']",
                            "state[2].first", "state[2].second"]
    assert spec.describe() == "((T, T), {'a': [T], 'm': T}, Pair(T, T))"


def test_check_names_the_path():
    like = ((mg.zeros(2, 3), mg.zeros(2, 3)), mg.zeros(2, 5))
    with pytest.raises(ValueError, match=r"who: state\[0\]\[1\] has shape \(2, 4\), expected "
                                         r"\(2, 3\)"):
        rs.check(((mg.zeros(2, 3), mg.zeros(2, 4)), mg.zeros(2, 5)), like, "who")
    with pytest.raises(TypeError, match=r"who: state is \(T, T\).*\(\(T, T\), T\).*at state\[0\]"):
        rs.check((mg.zeros(2, 3), mg.zeros(2, 5)), like, "who")
    with pytest.raises(TypeError, match=r"state\[1\] is of type int"):
        rs.check(((mg.zeros(2, 3), mg.zeros(2, 3)), 1), like, "who")
    with pytest.raises(ValueError, match=r"rnn.state.map: state 1 is \(T,\)"):
        rs.map(lambda a, b: a, (mg.zeros(1), mg.zeros(1)), (mg.zeros(1),))


# --- a cell whose state is any template, and one that attends over a context ------------------

class TreeCell(rnn.Cell):
    """Every leaf k of width w_k: s_k' = tanh(W_k x + U_k [all leaves] + b_k); output: all new
    leaves side by side (B, S)."""

    def __init__(self, n_in, template, seed=0):
        super().__init__(n_in, sum(widths(template)), rng=seed, dtype=F64)
        self.template, self.widths = template, widths(template)
        S = self.hidden_size
        for k, w in enumerate(self.widths):
            setattr(self, f"w{k}", self.parameter(w, n_in))
            setattr(self, f"u{k}", self.parameter(w, S, low=-0.8, high=0.8))
            setattr(self, f"b{k}", self.parameter(w))

    def initial_state(self, batch_size):
        return build(self.template, lambda w, k: self.zeros(batch_size, w))

    def update(self, x, state, extra=None):
        leaves, spec = rs.flatten(state)
        s = mg.concat(leaves, axis=1)
        new = []
        for k in range(len(leaves)):
            a = x @ getattr(self, f"w{k}").T + s @ getattr(self, f"u{k}").T + getattr(self,
                                                                                     f"b{k}")
            if extra is not None:
                a = a + extra @ getattr(self, f"v{k}").T
            new.append(mg.tanh(a))
        return mg.concat(new, axis=1), rs.unflatten(spec, new)

    def forward(self, x, state):
        return self.update(x, state)


class AttendCell(TreeCell):
    """TreeCell that also reads r = gain * sum_n softmax_n(<memory_n, Q s>) memory_n from the
    context {"memory": (B, N, D), "gain": (D,)}, adding V_k r to every leaf's pre-activation."""

    def __init__(self, n_in, template, D, seed=0):
        super().__init__(n_in, template, seed)
        self.q = self.parameter(D, self.hidden_size)
        for k, w in enumerate(self.widths):
            setattr(self, f"v{k}", self.parameter(w, D))

    def forward(self, x, state, context):
        mem = context["memory"]
        B, N, D = mem.shape
        s = mg.concat(rs.flatten(state)[0], axis=1)
        q = s @ self.q.T
        a = mg.softmax((mem * q.reshape(B, 1, D)).sum(axis=2), axis=1)      # (B, N)
        r = (mem * a.reshape(B, N, 1)).sum(axis=1) * context["gain"]
        return self.update(x, state, r)


def test_signature_declares_the_context():
    assert AttendCell.takes_context and not TreeCell.takes_context
    assert not rnn.LSTMCell.takes_context

    with pytest.raises(TypeError, match=r"Odd.forward must be forward\(self, x_t, state\)"):
        class Odd(rnn.Cell):
            def forward(self, x):
                return x, x


def context_of(B, D, N, seed):
    rng = np.random.default_rng(seed)
    return {"memory": mg.tensor(rng.uniform(-1, 1, (B, N, D)), requires_grad=True),
            "gain": mg.tensor(rng.uniform(0.5, 1.5, D), requires_grad=True)}


MODES = ["plain", "lengths", "ckpt1", "ckpt2", "ckpt_sqrt", "ckptT", "bidirectional", "stacked"]


def _model(mode, n_in, template, with_context, seed):
    def make(n, tpl, s):
        return AttendCell(n, tpl, 2, s) if with_context else TreeCell(n, tpl, s)
    if mode == "bidirectional":
        return rnn.Bidirectional(make(n_in, template, seed), make(n_in, (2, [1]), seed + 1))
    if mode == "stacked":
        first = TreeCell(n_in, {"h": 2}, seed + 1)
        return rnn.Stacked([first, make(first.hidden_size, template, seed)])
    return make(n_in, template, seed)


def _run(model, mode, x, lengths, context):
    ctx = {} if context is None else {"context": context}
    if isinstance(model, rnn.Cell):
        K = {"ckpt1": 1, "ckpt2": 2, "ckpt_sqrt": "sqrt", "ckptT": x.shape[0]}.get(mode)
        return rnn.unroll(model, x, lengths=lengths, checkpoint_every=K, **ctx)
    return model(x, lengths=lengths, **ctx)


@pytest.mark.parametrize("with_context", [False, True])
@pytest.mark.parametrize("mode", MODES)
@settings(max_examples=8)
@given(template=templates, seq=sequences(max_T=5, max_B=3, max_F=2), use_lengths=st.booleans(),
       seed=st.integers(0, 99))
def test_structured_state_gradients_match_finite_differences(mode, template, with_context, seq,
                                                             use_lengths, seed):
    """Every parameter, the inputs and the context: the gradients of every loop agree with
    finite differences, and the checkpointed ones with plain unrolling to round-off."""
    T, B, n_in = seq.x.shape
    lengths = seq.lengths if use_lengths or mode == "lengths" else None
    model = _model(mode, n_in, template, with_context, seed)
    x = mg.tensor(seq.x, requires_grad=True)
    context = context_of(B, 2, 3, seed) if with_context else None
    ctx_leaves = [] if context is None else [context["gain"], context["memory"]]
    params = model.parameters()

    def fn(x, *rest):
        out, final = _run(model, mode, x, lengths, context)
        return (out, *rs.flatten(final)[0])

    assert gradcheck(fn, [x, *ctx_leaves, *params], seed=seed)
    if mode.startswith("ckpt"):
        wrt = [x, *ctx_leaves, *params]
        got = mg.grad(_loss(fn(x)), wrt)
        out, final = rnn.unroll(model, x, lengths=lengths,
                                **({} if context is None else {"context": context}))
        want = mg.grad(_loss((out, *rs.flatten(final)[0])), wrt)
        for g, w in zip(got, want):
            np.testing.assert_allclose(g.numpy(), w.numpy(), rtol=1e-10, atol=1e-12)


def _loss(outs):
    return sum((o * mg.tensor(np.cos(np.arange(o.size) + k).reshape(o.shape))).sum()
               for k, o in enumerate(outs))


# --- the table, each row a test (each failed before rnn.state) -----------------------

def nested_cell(seed=0):
    return TreeCell(3, ((2, 2), 3), seed)


def test_nested_state_with_lengths_keeps_the_structure_and_each_sequence():
    cell = nested_cell()
    x = mg.tensor(np.random.default_rng(0).uniform(-1, 1, (6, 2, 3)))
    out, ((h, c), m) = rnn.unroll(cell, x, lengths=[6, 3])
    assert h.shape == (2, 2) and c.shape == (2, 2) and m.shape == (2, 3)
    for b, n in enumerate([6, 3]):
        ob, ((hb, cb), mb) = rnn.unroll(cell, x[:n, b:b + 1])
        np.testing.assert_allclose(out.numpy()[:n, b:b + 1], ob.numpy(), rtol=1e-12)
        for s, sb in ((h, hb), (c, cb), (m, mb)):
            np.testing.assert_allclose(s.numpy()[b:b + 1], sb.numpy(), rtol=1e-12)
    assert not out.numpy()[3:, 1].any()


def test_nested_state_tbptt_runs_and_detaches():
    cell = nested_cell()
    x = mg.tensor(np.random.default_rng(1).uniform(-1, 1, (6, 2, 3)))
    res = rnn.tbptt(cell, x, 2, loss_fn=lambda out, w: (out * out).sum())
    (h, c), m = res.state
    assert len(res.losses) == 3 and all(t.is_leaf and not t.requires_grad for t in (h, c, m))
    _, want = rnn.unroll(cell, x)
    for a, b in zip(rs.flatten(res.state)[0], rs.flatten(want)[0]):
        np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=1e-12)


class BareTensor(rnn.Cell):
    """Returns h instead of (h, h)."""

    def __init__(self):
        super().__init__(2, 3, rng=0)
        self.w = self.parameter(3, 2)

    def forward(self, x, h):
        return mg.tanh(x @ self.w.T + h)


class WrongStructure(BareTensor):
    def initial_state(self, batch_size):
        return (self.zeros(batch_size), (self.zeros(batch_size), self.zeros(batch_size)))

    def forward(self, x, state):
        h = mg.tanh(x @ self.w.T + state[0])
        return h, (h, h)          # state[1] should be a pair


class WrongShape(WrongStructure):
    def forward(self, x, state):
        h = mg.tanh(x @ self.w.T + state[0])
        return h, (h, (h, h[:, :2]))


@pytest.mark.parametrize("B", [1, 2, 3])
@pytest.mark.parametrize("per_step", [False, True])
def test_bad_cell_returns_name_the_cell_step_and_path(B, per_step):
    x = mg.zeros(4, B, 2)
    with pytest.raises(TypeError, match=r"BareTensor, step 0: the cell returned a Tensor of "
                                        rf"shape \({B}, 3\).*\(output, new_state\)"):
        rnn.unroll(BareTensor(), x, per_step=per_step)
    with pytest.raises(ValueError, match=r"WrongStructure, step 0: the new state: state is "
                                         r"\(T, T\) but \(T, \(T, T\)\).*at state\[1\]"):
        rnn.unroll(WrongStructure(), x, per_step=per_step)
    with pytest.raises(ValueError, match=rf"WrongShape, step 0: the new state: state\[1\]\[1\] "
                                         rf"has shape \({B}, 2\), expected \({B}, 3\)"):
        rnn.unroll(WrongShape(), x, per_step=per_step)


class TurnsBad(BareTensor):
    """Returns (h, h) for its first two calls, then a bare Tensor."""

    calls = 0

    def forward(self, x, h):
        h = mg.tanh(x @ self.w.T + h)
        self.calls += 1
        return (h, h) if self.calls <= 2 else h


def test_checkpoint_segments_and_tbptt_windows_check_at_their_real_step():
    # the per-op loop's checks (the compiled path traces two steps and runs the rest as one op:
    # a cell whose Python changes from call to call is a per-op-graph matter)
    x = mg.zeros(4, 3, 2)
    with rnn.compiling("off"):
        with pytest.raises(TypeError, match="TurnsBad, step 2: the cell returned a Tensor"):
            rnn.unroll(TurnsBad(), x, checkpoint_every=2)
        with pytest.raises(TypeError, match="TurnsBad, step 2: the cell returned a Tensor"):
            rnn.tbptt(TurnsBad(), x, 2, loss_fn=lambda out, w: out.sum())


def test_wrong_initial_state_names_the_path():
    cell = nested_cell()
    with pytest.raises(ValueError, match=r"unroll: TreeCell: the initial state for batch size 2: "
                                         r"state\[0\]\[1\] has shape \(2, 3\), expected \(2, 2\)"):
        rnn.unroll(cell, mg.zeros(4, 2, 3), ((mg.zeros(2, 2), mg.zeros(2, 3)), mg.zeros(2, 3)))
    with pytest.raises(TypeError, match=r"state\[1\]\[0\] is of type int"):
        rnn.unroll(cell, mg.zeros(4, 2, 3), ((mg.zeros(2, 2), mg.zeros(2, 2)), [1]))


def test_docs_rnn_blocks_run_alone():
    """Every python block of docs/rnn.md, the worked example of "States and context" among them,
    runs as written, by itself, in a fresh process (its asserts check the shapes and that the
    encoder got a gradient)."""
    root = pathlib.Path(__file__).resolve().parents[1]
    blocks = re.findall(r"^```python\n(.*?)^```", (root / "docs" / "rnn.md").read_text(),
                        re.S | re.M)
    assert any("AttentiveCell" in b and "context=" in b for b in blocks)
    env = dict(os.environ, PYTHONPATH=str(root))
    for block in blocks:
        run = subprocess.run([sys.executable, "-c", block], cwd=root, env=env,
                             capture_output=True, text=True, timeout=120)
        assert run.returncode == 0, run.stderr
