"""Autograd engine behaviour: accumulation, freeing, grad modes, mg.grad, hooks, several roots,
multi-output ops, shared values, anomaly mode, in-place detection and input errors.

References: NumPy maths done by hand in each test, or central finite differences (gradcheck).
"""
import ast
import gc
import pathlib
import re
import weakref

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import minigrad as mg
from minigrad.autograd import backward
from minigrad.engine import AnomalyError, Function, GraphFreedError
from minigrad.testing import gradcheck

shapes = hnp.array_shapes(min_dims=1, max_dims=3, max_side=4)
values = st.floats(-2, 2, allow_subnormal=False)


def f64(a, requires_grad=True):
    return mg.tensor(np.asarray(a, dtype=np.float64), requires_grad=requires_grad)


def line_of(marker):
    """Line number of the line in this file that contains `marker` (after the definition)."""
    with open(__file__) as f:
        hits = [i + 1 for i, s in enumerate(f) if marker in s and "line_of(" not in s]
    assert len(hits) == 1, hits
    return hits[0]


# --- long graphs ----------------------------------------------------------------------------------

def test_chain_of_100k_ops_backpropagates_without_recursion():
    x = f64([0.5, -1.0])
    y = x
    for _ in range(100_000):
        y = y + 1.0
    y.backward(np.array([1.0, 2.0]))  # a recursive walk would hit Python's recursion limit
    np.testing.assert_array_equal(x.grad.numpy(), [1.0, 2.0])
    np.testing.assert_array_equal(y.numpy(), [100_000.5, 99_999.0])
    del y  # deallocating 100k nodes must not recurse either


# --- accumulation and freeing --------------------------------------------------------------------

@given(hnp.arrays(np.float64, shapes, elements=values))
def test_leaf_grads_accumulate_until_zeroed(a):
    x = f64(a)
    (x * x).sum().backward()
    (3 * x).sum().backward()
    np.testing.assert_allclose(x.grad.numpy(), 2 * a + 3, atol=1e-12)
    x.grad = None
    (x * x * x).sum().backward()
    np.testing.assert_allclose(x.grad.numpy(), 3 * a * a, atol=1e-12)


def test_grad_is_a_copy_not_an_alias_of_a_passed_through_gradient():
    x = f64([1.0, 2.0])
    g = np.array([5.0, 6.0])
    (x + 0.0).backward(g)  # Add passes its gout straight through
    x.grad.data[0] = -1.0
    np.testing.assert_array_equal(g, [5.0, 6.0])


def test_a_leaf_used_many_times_sums_in_place_without_touching_shared_gradients():
    # Add hands the same gradient array to both inputs, and the seed is the caller's array: the
    # leaf's sum may only be updated in place once it is an array of its own
    x = f64([1.0, 2.0])
    g = np.array([5.0, 6.0])
    h = x * 3.0
    (((x + x) + h) + x).backward(g)
    np.testing.assert_array_equal(g, [5.0, 6.0])
    np.testing.assert_allclose(x.grad.numpy(), 6 * g)
    x.grad = None
    y = x + 0.0
    (y + y).backward(g)  # one gradient array reaches x twice through y
    np.testing.assert_array_equal(g, [5.0, 6.0])
    np.testing.assert_allclose(x.grad.numpy(), 2 * g)


def test_saved_arrays_are_freed_after_backward():
    x = f64(np.linspace(-1, 1, 5))
    z = (x * 2).exp().sum()
    exp_node = z._node.parents[0][0]
    assert exp_node.name == "Exp" and len(exp_node.saved) == 1
    saved = weakref.ref(exp_node.saved[0])
    z.backward()
    gc.collect()
    assert exp_node.saved == () and saved() is None  # nothing else kept the array alive
    np.testing.assert_allclose(x.grad.numpy(), 2 * np.exp(2 * x.numpy()))


def test_second_backward_through_a_freed_graph_raises():
    x = f64([1.0, 2.0])
    z = (x * x).sum()
    z.backward()
    with pytest.raises(GraphFreedError, match="retain_graph=True"):
        z.backward()


def test_retain_graph_keeps_saved_arrays():
    x = f64([1.0, 2.0])
    z = (x * x).sum()
    z.backward(retain_graph=True)
    assert z._node.parents[0][0].saved != ()
    z.backward()
    np.testing.assert_allclose(x.grad.numpy(), 2 * 2 * x.numpy())


# --- grad modes ----------------------------------------------------------------------------------

def test_no_grad_and_enable_grad_nest_and_restore():
    x = f64([1.0])
    assert mg.is_grad_enabled()
    with mg.no_grad():
        assert not mg.is_grad_enabled() and not (x * 2).requires_grad
        with mg.enable_grad():
            assert mg.is_grad_enabled() and (x * 2).requires_grad
            with mg.no_grad():
                assert not (x * 2).requires_grad
            assert (x * 2).requires_grad
        assert not (x * 2).requires_grad
    assert (x * 2).requires_grad
    with pytest.raises(KeyError):
        with mg.no_grad():
            raise KeyError("restored even on error")
    assert mg.is_grad_enabled()


def test_no_grad_as_decorator():
    @mg.no_grad()
    def f(t):
        return t * 2
    assert not f(f64([1.0])).requires_grad


# --- mg.grad ------------------------------------------------------------------------------------

@given(hnp.arrays(np.float64, shapes, elements=values))
def test_grad_returns_gradients_without_touching_dot_grad(a):
    x = f64(a)
    w = f64(np.full(a.shape, 0.5))
    h = x * w                     # non-leaf input
    out = (h * h).sum()
    gx, gw, gh = mg.grad(out, [x, w, h])
    np.testing.assert_allclose(gh.numpy(), 2 * a * 0.5, atol=1e-12)
    np.testing.assert_allclose(gx.numpy(), 2 * a * 0.25, atol=1e-12)
    np.testing.assert_allclose(gw.numpy(), 2 * a * a * 0.5, atol=1e-12)
    assert x.grad is None and w.grad is None and h.grad is None


def test_grad_several_outputs_and_grad_outputs():
    x = f64([1.0, 2.0, 3.0])
    y1, y2 = x * x, x * 3
    v1, v2 = np.array([1.0, 0.5, 2.0]), np.array([2.0, 2.0, 1.0])
    (gx,) = mg.grad([y1, y2], [x], grad_outputs=[mg.tensor(v1), mg.tensor(v2)],
                   retain_graph=True)
    np.testing.assert_allclose(gx.numpy(), 2 * x.numpy() * v1 + 3 * v2)
    gx = mg.grad((y1 * 2).sum(), x)  # single input: a single Tensor back
    np.testing.assert_allclose(gx.numpy(), 4 * x.numpy())


def test_grad_unused_inputs():
    x, u = f64([1.0]), f64([2.0])
    y = (x * 2).sum()
    with pytest.raises(ValueError, match=r"input 1 \(shape \(1,\)\) was not used"):
        mg.grad(y, [x, u], retain_graph=True)
    gx, gu = mg.grad(y, [x, u], allow_unused=True)
    np.testing.assert_array_equal(gx.numpy(), [2.0])
    assert gu is None


def test_grad_errors():
    x = f64([1.0])
    with pytest.raises(ValueError, match="does not require grad"):
        mg.grad((x * 2).sum(), [mg.tensor([1.0])])
    with pytest.raises(ValueError, match="2 outputs but 1 grad_outputs"):
        mg.grad([x * 2, x * 3], [x], grad_outputs=[mg.tensor([1.0])])
    with pytest.raises(TypeError, match="expected Tensors"):
        mg.grad((x * 2).sum(), [np.ones(1)])


def test_gradcheck_on_a_graph_with_sharing_and_broadcasting():
    rng = np.random.default_rng(0)
    x = f64(rng.standard_normal((3, 4)))
    b = f64(rng.standard_normal(4))

    def f(x, b):
        h = (x + b).tanh()
        return (h * h + h * x).sum(axis=0) * b
    assert gradcheck(f, [x, b], mode="elementwise")


# --- hooks and retain_grad ---------------------------------------------------------------------

def test_hook_on_a_leaf_sees_the_summed_gradient_and_can_replace_it():
    x = f64([1.0, 2.0])
    seen = []
    h = x.register_hook(lambda g: seen.append(g.numpy()))
    (x * x + x).sum().backward()
    np.testing.assert_allclose(seen[0], 2 * x.numpy() + 1)  # one call with the whole gradient
    h.remove()
    x.grad = None
    x.register_hook(lambda g: g * 10)
    (x * 3).sum().backward()
    assert len(seen) == 1
    np.testing.assert_allclose(x.grad.numpy(), [30.0, 30.0])


def test_hook_on_a_non_leaf_replaces_the_gradient_flowing_back():
    x = f64([1.0, 2.0])
    y = x * 2
    handle = y.register_hook(lambda g: g * 0 + 1.0)
    (y * y).sum().backward(retain_graph=True)  # dL/dy = 2y, replaced by ones
    np.testing.assert_allclose(x.grad.numpy(), [2.0, 2.0])
    handle.remove()
    x.grad = None
    (y * y).sum().backward()
    np.testing.assert_allclose(x.grad.numpy(), 2 * 2 * (2 * x.numpy()))


def test_hook_needs_requires_grad():
    with pytest.raises(RuntimeError, match="does not require grad"):
        mg.tensor([1.0]).register_hook(lambda g: g)


def test_retain_grad_keeps_non_leaf_gradients():
    x = f64([1.0, -2.0])
    y = x * 3
    y.retain_grad()
    z = y * y
    z.retain_grad()
    z.sum().backward()
    np.testing.assert_allclose(z.grad.numpy(), [1.0, 1.0])
    np.testing.assert_allclose(y.grad.numpy(), 2 * y.numpy())
    x.retain_grad()  # a no-op on leaves: their .grad is kept anyway
    assert x.grad is not None


# --- several roots, multi-output ops, shared values -------------------------------------------

def test_backward_from_several_outputs_at_once():
    x = f64([1.0, 2.0])
    y = x * x
    a, b = y.sum(), (y * x).sum()  # share y: one pass, no retain_graph needed
    backward([a, b])
    np.testing.assert_allclose(x.grad.numpy(), 2 * x.numpy() + 3 * x.numpy() ** 2)


def test_backward_with_a_root_that_feeds_another_root():
    x = f64([1.0, 2.0])
    y = x * 2
    z = y * y
    backward([y, z], [np.array([1.0, 1.0]), np.array([1.0, 10.0])])
    # dz/dx = 2 y * 2, plus dy/dx = 2 from the first root
    np.testing.assert_allclose(x.grad.numpy(), 2 + 4 * y.numpy() * [1.0, 10.0])


def test_backward_helper_errors():
    x = f64([1.0])
    with pytest.raises(ValueError, match="2 tensors but 1 grad_tensors"):
        backward([x * 2, x * 3], [np.ones(1)])
    with pytest.raises(RuntimeError, match="tensor 0 .* does not require grad"):
        backward([mg.tensor([1.0])])


def test_multi_output_op_with_one_output_used():
    a = np.arange(12.0).reshape(3, 4)
    x = f64(a)
    left, mid, right = mg.split(x, [1, 3], axis=1)
    (mid * mid).sum().backward()
    expect = np.zeros_like(a)
    expect[:, 1:3] = 2 * a[:, 1:3]
    np.testing.assert_allclose(x.grad.numpy(), expect)


def test_multi_output_op_with_both_outputs_used_gradchecks():
    x = f64(np.random.default_rng(1).standard_normal((2, 6)))
    assert gradcheck(lambda x: mg.split(x, 3, axis=1), [x])


@given(st.integers(2, 20), hnp.arrays(np.float64, (3,), elements=values))
def test_a_value_used_many_times_gets_summed_gradients(n, a):
    x = f64(a)
    y = x * 1.0
    total = y
    for _ in range(n - 1):
        total = total + y * y
    total.sum().backward()
    np.testing.assert_allclose(x.grad.numpy(), 1 + (n - 1) * 2 * a, atol=1e-12)


def test_custom_function_needs_input_grad_and_broadcast_grads():
    calls = []

    class ScaledAdd(Function):
        """out = x + 2 y;  gx = gout, gy = 2 gout (returned in the broadcast shape)"""
        def forward(self, x, y):
            return x + 2 * y

        def backward(self, gout):
            calls.append(tuple(self.needs_input_grad))
            return (gout if self.needs_input_grad[0] else None), 2 * gout

    x = f64(np.ones((2, 3)), requires_grad=False)
    y = f64(np.ones(3))
    ScaledAdd.apply(x, y).sum().backward()
    assert calls == [(False, True)]
    np.testing.assert_allclose(y.grad.numpy(), [4.0, 4.0, 4.0])  # summed back over the batch


def test_backward_returning_the_wrong_number_of_gradients():
    class Bad(Function):
        def forward(self, x, y):
            return x * y

        def backward(self, gout):
            return gout

    with pytest.raises(RuntimeError, match="Bad.backward returned 1 gradients for 2 inputs"):
        Bad.apply(f64([1.0]), f64([2.0])).sum().backward()


def test_backward_returning_a_gradient_of_the_wrong_shape():
    class BadShape(Function):
        def forward(self, x):
            return x * 2

        def backward(self, gout):
            return gout[:1]

    with pytest.raises(RuntimeError, match=r"BadShape.backward returned a gradient of shape "
                                           r"\(1,\) for input 0 of shape \(3,\)"):
        BadShape.apply(f64([1.0, 2.0, 3.0])).sum().backward()


# --- anomaly mode ---------------------------------------------------------------------------------

def test_anomaly_in_forward_names_the_op_and_the_user_line():
    x = f64([-1.0, 1.0])
    with mg.detect_anomaly(), np.errstate(invalid="ignore"):
        with pytest.raises(AnomalyError) as info:
            mg.log(x * 1.0)  # anomaly-forward-line
    msg = str(info.value)
    assert "Log produced NaN/Inf in forward" in msg
    assert f"{__file__}:{line_of('# anomaly-forward-line')}" in msg


def test_anomaly_in_backward_names_the_op_and_the_user_line():
    x = f64([0.0, 4.0])
    with mg.detect_anomaly(), np.errstate(divide="ignore"):
        y = (mg.sqrt(x) * 2).sum()  # anomaly-backward-line
        with pytest.raises(AnomalyError) as info:
            y.backward()
    msg = str(info.value)
    assert "Sqrt produced NaN/Inf in backward" in msg
    assert f"{__file__}:{line_of('# anomaly-backward-line')}" in msg


def test_anomaly_nan_arriving_in_an_input_is_reported_as_coming_in():
    x = mg.tensor(np.array([[1.0, np.nan, 2.0]]), requires_grad=True, name="x")
    w = f64(np.ones((3, 2)))
    with mg.detect_anomaly():
        with pytest.raises(AnomalyError) as info:
            mg.tanh(w.T @ x[0])  # anomaly-input-line
        msg = str(info.value)
        # the NaN is in x, MatMul's input 1 is x[0] (made by GetItem inside anomaly mode, so
        # GetItem is the first op that read it): it came in through GetItem's input 0, the leaf
        assert msg.startswith("NaN/Inf came in through input 0 of GetItem: the leaf tensor x "
                              "of shape (1, 3); GetItem did not produce it")
        assert f"{__file__}:{line_of('# anomaly-input-line')}" in msg
        with pytest.raises(AnomalyError, match=r"input 1 of Mul: a constant array of shape "
                                               r"\(2,\)"):
            f64([1.0, 2.0]) * np.array([np.inf, 1.0])
    made_outside = mg.exp(f64([1.0, 2.0])) * np.array([np.inf, 1.0])
    with mg.detect_anomaly():
        with pytest.raises(AnomalyError, match=r"input 0 of Sum: a tensor of shape \(2,\) "
                                               r"made by Mul outside detect_anomaly"):
            made_outside.sum()
        with np.errstate(divide="ignore"), pytest.raises(
                AnomalyError, match="Log produced NaN/Inf in forward"):
            mg.log(f64([0.0, 1.0]))  # finite input: Log made the -inf


def test_without_anomaly_mode_nan_passes_silently():
    x = f64([0.0])
    with np.errstate(divide="ignore"):
        mg.sqrt(x).sum().backward()
    assert np.isinf(x.grad.numpy()[0])


# --- in-place changes -----------------------------------------------------------------------------

INPLACE = {
    "iadd": lambda w: w.__iadd__(1.0),
    "setitem": lambda w: w.__setitem__(0, 5.0) or w,
    "add_": lambda w: w.add_(1.0),
    "copy_": lambda w: w.copy_(np.zeros(2)),
    "mul_": lambda w: w.mul_(2.0),
    "zero_": lambda w: w.zero_(),
}


@pytest.mark.parametrize("name", sorted(INPLACE))
def test_inplace_change_of_a_saved_input_is_caught_at_backward(name):
    x = f64([1.0, 2.0])
    w = f64([3.0, 4.0], requires_grad=False)  # no grad: in-place is allowed, but counted
    y = (x * w).sum()                          # Mul saved w's array
    assert INPLACE[name](w) is w
    assert w._version == 1
    with pytest.raises(RuntimeError, match=r"Mul: a tensor of shape \(2,\) saved for backward "
                                           r"was modified in place.*version 1, expected 0"):
        y.backward()


def test_inplace_change_of_a_saved_output_is_caught_at_backward():
    x = f64([0.5, 1.0])
    y = x.tanh()  # Tanh saved its output
    z = y.sum()
    with mg.no_grad():
        y += 1.0
    with pytest.raises(RuntimeError, match="Tanh: a tensor of shape"):
        z.backward()


def test_inplace_change_of_an_unsaved_output_is_fine():
    x = f64([0.5, 1.0])
    y = x * 3.0  # Mul saved x and the scalar, not its output
    z = (y + 0.0).sum()
    with mg.no_grad():
        y += 1.0
    z.backward()
    np.testing.assert_array_equal(x.grad.numpy(), [3.0, 3.0])


def test_inplace_before_the_forward_is_fine():
    x = f64([1.0, 2.0])
    w = f64([3.0, 4.0], requires_grad=False)
    w += 1.0
    (x * w).sum().backward()
    np.testing.assert_array_equal(x.grad.numpy(), [4.0, 5.0])


def test_inplace_under_grad_mode_on_a_tensor_that_requires_grad():
    # `x += 1` rebinds x to an out-of-place result (a new graph node); explicit in-place
    # methods refuse, since they would silently break the graph
    x = f64([1.0, 2.0])
    x0 = x
    x += 1.0
    assert x is not x0 and x._node is not None and x0._version == 0
    x.sum().backward()
    np.testing.assert_array_equal(x0.grad.numpy(), [1.0, 1.0])
    for name in ("setitem", "add_", "copy_", "mul_", "zero_"):
        with pytest.raises(RuntimeError, match="in-place change of a tensor that requires grad"):
            INPLACE[name](x0)
    with mg.no_grad():  # an optimizer step
        x0 -= 0.5
    np.testing.assert_array_equal(x0.numpy(), [0.5, 1.5])


# --- bad input ------------------------------------------------------------------------------------

def test_bad_inputs_name_the_op_and_shapes():
    a, b = f64(np.ones((2, 3))), f64(np.ones(4))
    with pytest.raises(ValueError, match=r"Add: .*\(input shapes: \(2, 3\), \(4,\);"):
        a + b
    with pytest.raises(ValueError, match=r"MatMul: .*\(input shapes: \(2, 3\), \(4,\);"):
        a @ b
    with pytest.raises(TypeError, match="Exp: unsupported input type str"):
        mg.exp("x")
    with pytest.raises(TypeError, match="Mul: unsupported input type dict"):
        mg.mul(a, {})


# --- the core's shape: docs/engine.md runs, modules import in dependency order -----------------

ROOT = pathlib.Path(__file__).resolve().parent.parent


def test_docs_engine_blocks_run_each_alone():
    doc = (ROOT / "docs" / "engine.md").read_text()
    blocks = re.findall(r"^```python\n(.*?)^```", doc, re.S | re.M)
    assert len(blocks) >= 3
    for k, src in enumerate(blocks):
        exec(compile(src, f"docs/engine.md block {k}", "exec"), {"__name__": f"engine_md_{k}"})


def test_minigrad_modules_import_only_modules_below_them():
    """No import cycle among minigrad's modules, and no private name imported from another."""
    deps = {}
    for path in (ROOT / "minigrad").rglob("*.py"):
        name = ".".join(path.relative_to(ROOT).with_suffix("").parts).removesuffix(".__init__")
        found = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("minigrad"):
                for a in node.names:
                    assert not a.name.startswith("_"), f"{name} imports {node.module}.{a.name}"
                    sub = f"{node.module}.{a.name}"
                    found.add(sub if node.module == "minigrad" else node.module)
        deps[name] = found - {name}
    done, stack = set(), []

    def visit(m):
        assert m not in stack, "import cycle: " + " -> ".join(stack[stack.index(m):] + [m])
        if m in done or m not in deps:
            return
        stack.append(m)
        for d in deps[m]:
            visit(d)
        stack.pop()
        done.add(m)

    for m in deps:
        if m != "minigrad":          # the package __init__ re-exports everything
            visit(m)


def test_no_private_name_of_a_minigrad_module_is_read_from_outside_it():
    pattern = re.compile(r"\b(?:backend|engine|ops|functions|modes|autograd|random|checkpoint|"
                         r"memory|mg|F)\._[a-zA-Z]\w*|\bTensor\._[a-z]\w*")
    found = []
    for folder in ("minigrad", "rnn"):
        for path in (ROOT / folder).rglob("*.py"):
            for k, line in enumerate(path.read_text().splitlines(), 1):
                found += [f"{path.relative_to(ROOT)}:{k}: {m}" for m in pattern.findall(line)]
    assert found == []


# --- issue 21: a leaf's kept transpose, Transpose's inverse, the walk's sums ------------------

def test_kept_transpose_of_a_parameter_is_one_node_and_its_gradient_sums_every_step():
    rng = np.random.default_rng(0)
    w = mg.nn.Parameter(rng.standard_normal((3, 4)))
    xs = rng.standard_normal((5, 2, 4))
    h = mg.tensor(np.zeros((2, 3)))
    nodes = set()
    for x in xs:                      # h_t = tanh(x_t @ W.T + h_{t-1})
        wt = w.T
        nodes.add(id(wt.grad_fn))
        h = mg.tanh(mg.tensor(x) @ wt + h)
    assert len(nodes) == 1
    h.sum().backward()
    # NumPy by hand: forward, then backpropagation through time
    hs, hp = [], np.zeros((2, 3))
    for x in xs:
        hp = np.tanh(x @ w.data.T + hp)
        hs.append(hp)
    gw, gh = np.zeros((3, 4)), np.ones((2, 3))
    for t in reversed(range(5)):
        ga = gh * (1 - hs[t] ** 2)
        gw += ga.T @ xs[t]
        gh = ga
    np.testing.assert_allclose(w.grad.numpy(), gw, rtol=1e-12)


def test_kept_transpose_is_rebuilt_after_an_in_place_update_and_gives_the_new_gradient():
    rng = np.random.default_rng(1)
    w = mg.nn.Parameter(rng.standard_normal((3, 4)))
    x = rng.standard_normal((2, 4))
    first = w.T
    ((mg.tensor(x) @ first) ** 2).sum().backward()
    with mg.no_grad():
        w -= 0.5 * w.grad             # an optimizer's step: counted in w's version
    w.grad = None
    second = w.T
    assert second.grad_fn is not first.grad_fn
    ((mg.tensor(x) @ second) ** 2).sum().backward()
    wn = w.data
    np.testing.assert_allclose(w.grad.numpy(), 2 * (x @ wn.T).T @ x, rtol=1e-12)


def test_two_graphs_sharing_a_kept_transpose_each_backpropagate_once():
    rng = np.random.default_rng(2)
    w = mg.nn.Parameter(rng.standard_normal((3, 2)))
    a, b = rng.standard_normal((4, 2)), rng.standard_normal((5, 2))
    la = (mg.tensor(a) @ w.T).sum()
    lb = ((mg.tensor(b) @ w.T) ** 2).sum()
    la.backward()                     # frees la's graph, the shared Transpose node included
    lb.backward()                     # which lb may still run through: it saved nothing
    want = np.ones((4, 3)).T @ a + (2 * (b @ w.data.T)).T @ b
    np.testing.assert_allclose(w.grad.numpy(), want, rtol=1e-12)
    with pytest.raises(GraphFreedError):
        lb.backward()                 # lb's own nodes are freed as always


def test_kept_transpose_is_bypassed_when_watched_hooked_or_without_grad():
    w = mg.nn.Parameter(np.arange(6.0).reshape(2, 3))
    seen = []
    prev = mg.engine.state.recorder
    # (*rest: the recorder may also be given the op's keywords)
    mg.engine.state.recorder = lambda fn, inputs, results, *rest: seen.append(type(fn).__name__)
    try:
        a, b = w.T, w.T               # a recorder (the graph viewer, tracing) sees every op
    finally:
        mg.engine.state.recorder = prev
    assert seen == ["Transpose", "Transpose"] and a.grad_fn is not b.grad_fn
    c = w.T
    got = []
    c.register_hook(lambda g: got.append(g.numpy().copy()))
    d = w.T                           # c's node has a hook: d is a node of its own
    assert d.grad_fn is not c.grad_fn
    (c.sum() + 3 * d.sum()).backward()
    assert len(got) == 1 and np.all(got[0] == 1.0)
    np.testing.assert_allclose(w.grad.numpy(), np.full((2, 3), 4.0))
    with mg.no_grad():
        e = w.T
    assert not e.requires_grad and e.grad_fn is None
    np.testing.assert_array_equal(e.numpy(), np.arange(6.0).reshape(2, 3).T)


def test_kept_transpose_inside_a_checkpoint_and_a_walk_stopped_by_an_error():
    rng = np.random.default_rng(3)
    w = mg.nn.Parameter(rng.standard_normal((3, 3)))
    x = mg.tensor(rng.standard_normal((2, 3)), requires_grad=True)

    def seg(h):
        return mg.tanh(mg.tanh(h @ w.T) @ w.T)

    y = mg.checkpoint(seg, mg.tanh(x @ w.T))
    (gw_ck,) = mg.grad(y.sum(), [w])
    (gw,) = mg.grad(seg(mg.tanh(x @ w.T)).sum(), [w])
    np.testing.assert_allclose(gw_ck.numpy(), gw.numpy(), rtol=1e-12)

    z = mg.tanh(x @ w.T)
    loss = (z @ w.T).sum()

    def fail(g):
        raise KeyError("stop")
    handle = z.register_hook(fail)
    with pytest.raises(KeyError):
        loss.backward(retain_graph=True)    # stops after gradients reached the shared node
    handle.remove()
    w.grad = None
    loss.backward()
    zn = np.tanh(x.data @ w.data.T)
    gz = np.ones((2, 3)) @ w.data
    want = np.ones((2, 3)).T @ zn + (gz * (1 - zn ** 2)).T @ x.data
    np.testing.assert_allclose(w.grad.numpy(), want, rtol=1e-12)


@given(perm=st.permutations(range(4)), ndim=st.sampled_from([3, 4]), seed=st.integers(0, 99))
def test_transpose_backward_applies_the_inverse_permutation(perm, ndim, seed):
    axes = [a for a in perm if a < ndim]
    rng = np.random.default_rng(seed)
    shape = tuple(rng.integers(1, 4, ndim))
    x = mg.tensor(rng.standard_normal(shape), requires_grad=True)
    y = mg.transpose(x, *axes)
    np.testing.assert_array_equal(y.numpy(), np.transpose(x.data, axes))
    g = rng.standard_normal(y.shape)
    y.backward(g)
    inverse = np.argsort(axes)        # the reference: NumPy's own inverse of the permutation
    np.testing.assert_array_equal(x.grad.numpy(), np.transpose(g, inverse))
    assert gradcheck(lambda t: mg.transpose(t, *axes), [mg.tensor(rng.standard_normal(shape),
                                                                 requires_grad=True)])


def test_gradients_summed_in_place_leave_shared_arrays_alone():
    # a is used by three consumers; Add hands one array to both of its inputs, so the first
    # gradients a receives are shared: only a sum the walk made itself may be added into
    x = f64([1.0, -2.0, 0.5])
    a = x * 1.0
    b = a + a
    c = b * 2.0 + a * 3.0 + a
    seed = np.array([1.0, 10.0, 100.0])
    keep = seed.copy()
    c.backward(seed)
    np.testing.assert_array_equal(seed, keep)
    np.testing.assert_allclose(x.grad.numpy(), 8.0 * keep)     # 2*2 + 3 + 1 per element
    # float32 and float64 gradients into one float32 node: summed without losing either
    y = mg.tensor(np.array([1.0, 2.0], np.float32), requires_grad=True)
    u = y * 1.0
    v = u * 2.0 + u * np.float64(3.0) + u * mg.tensor(np.array([4.0, 4.0]))
    v.sum().backward()
    np.testing.assert_allclose(y.grad.numpy(), [9.0, 9.0])


def test_a_parameter_with_a_kept_transpose_pickles_and_copies():
    import copy
    import pickle

    w = mg.nn.Parameter(np.arange(6.0).reshape(2, 3), name="w")
    first = w.T                                  # keeps a weak reference to its node
    for twin in (pickle.loads(pickle.dumps(w)), copy.deepcopy(w)):
        assert type(twin) is mg.nn.Parameter and twin.name == "w" and twin.requires_grad
        np.testing.assert_array_equal(twin.numpy(), w.numpy())
        assert twin.T.grad_fn is not first.grad_fn    # its own node, made on use
        (twin.T * mg.tensor(np.arange(6.0).reshape(3, 2))).sum().backward()
        np.testing.assert_array_equal(twin.grad.numpy(), np.arange(6.0).reshape(3, 2).T)


def test_kept_transpose_and_in_place_sums_on_the_fake_device():
    # on the "fake" device any stray NumPy call on device data raises
    rng = np.random.default_rng(4)
    w0, xs = rng.standard_normal((3, 2)), rng.standard_normal((4, 5, 2))
    w = mg.tensor(w0, requires_grad=True, device="fake")
    loss = sum(((mg.tensor(x, device="fake") @ w.T) ** 2).sum() for x in xs)
    loss.backward()
    assert w.grad.device == "fake"
    want = sum(2 * (x @ w0.T).T @ x for x in xs)
    np.testing.assert_allclose(w.grad.cpu().numpy(), want, rtol=1e-12)
