"""Higher-order gradients: `create_graph=True`, the functional transforms, fused ops' composed
fallback, checkpointed segments and unrolled LSTMs, each against an independent reference
(closed-form derivatives written here, or central finite differences of first-order gradients).
The per-op second derivatives are in the op table (tests/test_ops.py, `test_gradgradcheck`).
"""
import gc
import weakref

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import minigrad as mg
from minigrad.testing import GradcheckError, gradgradcheck

import rnn
from rnn import kernels

F64 = "float64"


def t64(a, requires_grad=True):
    return mg.tensor(np.asarray(a, np.float64), requires_grad=requires_grad)


def grads_np(loss_fn, values):
    """First-order gradients of loss_fn at `values` (arrays), as arrays."""
    xs = [t64(v) for v in values]
    return [g.numpy() for g in mg.grad(loss_fn(*xs), xs, allow_unused=True)]


def fd_hvp(loss_fn, values, vs, eps=1e-5):
    """H v by central differences of first-order gradients: (g(x + eps v) - g(x - eps v)) / 2eps."""
    plus = grads_np(loss_fn, [x + eps * v for x, v in zip(values, vs)])
    minus = grads_np(loss_fn, [x - eps * v for x, v in zip(values, vs)])
    return [(p - m) / (2 * eps) for p, m in zip(plus, minus)]


def hvp_create_graph(loss_fn, values, vs):
    xs = [t64(v) for v in values]
    gs = mg.grad(loss_fn(*xs), xs, create_graph=True)
    dot = sum((g * t64(v, False)).sum() for g, v in zip(gs, vs))
    return [h.numpy() for h in mg.grad(dot, xs)]


# --- scalar chains: closed forms ------------------------------------------------------------

@pytest.mark.parametrize("x0", [-0.7, 0.0, 0.4, 1.3])
def test_third_order_of_a_scalar_chain_matches_the_closed_form(x0):
    # f = x exp(2x):  f' = e^{2x}(1 + 2x), f'' = e^{2x}(4 + 4x), f''' = e^{2x}(12 + 8x)
    x = t64(x0)
    f = x * mg.exp(2 * x)
    (d1,) = mg.grad(f, [x], create_graph=True)
    (d2,) = mg.grad(d1, [x], create_graph=True)
    (d3,) = mg.grad(d2, [x], create_graph=True)
    (d4,) = mg.grad(d3, [x])
    e = np.exp(2 * x0)
    np.testing.assert_allclose([d1.item(), d2.item(), d3.item(), d4.item()],
                               [e * (1 + 2 * x0), e * (4 + 4 * x0), e * (12 + 8 * x0),
                                e * (32 + 16 * x0)], rtol=1e-12)


def test_tanh_squared_derivatives_through_the_saved_output():
    # tanh's backward reads its saved output: under create_graph it must be the live output
    x0 = 0.8
    x = t64(x0)
    (d1,) = mg.grad(mg.tanh(x) ** 2, [x], create_graph=True)
    (d2,) = mg.grad(d1, [x])
    t, s = np.tanh(x0), 1 - np.tanh(x0) ** 2
    np.testing.assert_allclose(d1.item(), 2 * t * s, rtol=1e-13)
    np.testing.assert_allclose(d2.item(), 2 * s * s - 4 * t * t * s, rtol=1e-12)


def test_backward_with_create_graph_leaves_grads_with_a_graph():
    x = t64([0.3, -0.5])
    (x ** 3).sum().backward(create_graph=True)
    assert x.grad.requires_grad and x.grad.grad_fn is not None
    gx = x.grad
    x.grad = None
    gx.sum().backward()                       # d/dx sum(3 x^2) = 6 x
    np.testing.assert_allclose(x.grad.numpy(), [1.8, -3.0], rtol=1e-13)


def test_gradient_accumulation_under_create_graph_keeps_the_graph():
    x = t64([0.5, 2.0])
    y = x * x
    mg.autograd.backward([y.sum(), (x ** 3).sum()], create_graph=True)   # 2x + 3x^2
    (h,) = mg.grad(x.grad.sum(), [x])                                     # 2 + 6x
    np.testing.assert_allclose(h.numpy(), [5.0, 14.0], rtol=1e-13)


# --- HVPs against finite differences of gradients -------------------------------------------

def mlp_loss(w1, b1, w2, x, targets):
    h = mg.tanh(x @ w1 + b1)
    return mg.cross_entropy(mg.softplus(h) @ w2, targets) + 0.1 * mg.sum(w1 * w1)


@settings(max_examples=10)
@given(seed=st.integers(0, 2**16))
def test_hvp_of_an_mlp_loss_matches_finite_differences_of_gradients(seed):
    rng = np.random.default_rng(seed)
    x, targets = rng.standard_normal((5, 3)), rng.integers(0, 4, 5)
    values = [rng.standard_normal((3, 6)), rng.standard_normal(6), rng.standard_normal((6, 4))]
    vs = [rng.standard_normal(v.shape) for v in values]

    def loss(w1, b1, w2):
        return mlp_loss(w1, b1, w2, t64(x, False), targets)
    want = fd_hvp(loss, values, vs)
    for got, w in zip(hvp_create_graph(loss, values, vs), want):
        np.testing.assert_allclose(got, w, rtol=1e-6, atol=1e-8)
    _, hv = mg.hvp(loss, [t64(v, False) for v in values], [t64(v, False) for v in vs])
    for got, w in zip(hv, want):
        np.testing.assert_allclose(got.numpy(), w, rtol=1e-6, atol=1e-8)


def test_hessian_of_a_quadratic_form_is_the_symmetric_matrix():
    rng = np.random.default_rng(0)
    A, b = rng.standard_normal((4, 4)), rng.standard_normal(4)
    H = mg.hessian(lambda x: 0.5 * (x @ t64(A, False) @ x) + (t64(b, False) * x).sum(),
                   t64(rng.standard_normal(4), False))
    np.testing.assert_allclose(H.numpy(), (A + A.T) / 2, rtol=1e-13, atol=1e-14)


def test_jacobian_vjp_and_jvp_agree_with_finite_differences():
    rng = np.random.default_rng(1)
    x0, y0 = rng.standard_normal(3), rng.standard_normal(2)

    def f(x, y):
        return mg.tanh(x)[:2] * y + mg.exp(y).sum()

    Jx, Jy = mg.jacobian(f, [t64(x0, False), t64(y0, False)])
    eps = 1e-6
    for J, which, base in ((Jx, 0, x0), (Jy, 1, y0)):
        for k in range(base.size):
            d = np.zeros(base.size)
            d[k] = eps
            args_p = [x0 + d, y0] if which == 0 else [x0, y0 + d]
            args_m = [x0 - d, y0] if which == 0 else [x0, y0 - d]
            with mg.no_grad():
                col = (f(*[t64(a, False) for a in args_p]).numpy()
                       - f(*[t64(a, False) for a in args_m]).numpy()) / (2 * eps)
            np.testing.assert_allclose(J.numpy()[:, k], col, rtol=1e-7, atol=1e-9)
    u, v = rng.standard_normal(2), [rng.standard_normal(3), rng.standard_normal(2)]
    _, (gx, gy) = mg.vjp(f, [t64(x0, False), t64(y0, False)], t64(u, False))
    np.testing.assert_allclose(gx.numpy(), u @ Jx.numpy(), rtol=1e-12)
    np.testing.assert_allclose(gy.numpy(), u @ Jy.numpy(), rtol=1e-12)
    _, jv = mg.jvp(f, [t64(x0, False), t64(y0, False)], [t64(a, False) for a in v])
    np.testing.assert_allclose(jv.numpy(), Jx.numpy() @ v[0] + Jy.numpy() @ v[1], rtol=1e-12)


def test_transforms_refuse_bad_input_naming_themselves():
    x = t64([1.0, 2.0], False)
    with pytest.raises(ValueError, match="hvp"):
        mg.hvp(lambda x: x * x, [x], [x])              # not a scalar
    with pytest.raises(ValueError, match="jvp"):
        mg.jvp(lambda x: x, [x], [x, x])
    with pytest.raises(TypeError, match="jacobian"):
        mg.jacobian(lambda x: x, [np.ones(2)])


# --- ops whose backward works on arrays only: the composed fallback -------------------------

class TanhMul(mg.Function):
    """A toy fused op: out = tanh(x) * y with a hand-written backward on arrays."""

    def forward(self, x, y):
        t = np.tanh(x)
        self.save_for_backward(t, y)
        return t * y

    def backward(self, gout):
        t, y = self.saved
        return gout * y * (1 - t * t), gout * t


class TanhMulWithTwin(TanhMul):
    composed = staticmethod(lambda x, y: mg.tanh(x) * y)


class Cube(mg.Function):
    """out = x^3;  gx = 3 x^2 gout: written with operators only, so it is differentiable."""

    differentiable_backward = True

    def forward(self, x):
        self.save_for_backward(x)
        return x ** 3

    def backward(self, gout):
        (x,) = self.saved
        return 3 * x * x * gout


def test_a_fused_op_with_a_composed_twin_gives_the_twins_second_derivatives():
    rng = np.random.default_rng(2)
    x0, y0 = rng.standard_normal((2, 3)), rng.standard_normal((2, 3))
    vs = [rng.standard_normal((2, 3)), rng.standard_normal((2, 3))]

    def loss(op):
        return lambda x, y: (op(x, y) ** 2).sum()
    want = fd_hvp(loss(TanhMul.apply), [x0, y0], vs)
    got = hvp_create_graph(loss(TanhMulWithTwin.apply), [x0, y0], vs)
    for g, w in zip(got, want):
        np.testing.assert_allclose(g, w, rtol=1e-6, atol=1e-8)
    x, y = t64(x0), t64(y0)
    assert gradgradcheck(lambda x, y: TanhMulWithTwin.apply(x, y), [x, y])


def test_a_fused_op_without_a_twin_refuses_create_graph_naming_itself():
    x, y = t64([0.5]), t64([2.0])
    out = TanhMul.apply(x, y).sum()
    (g,) = mg.grad(out, [x], retain_graph=True)            # first order works as ever
    np.testing.assert_allclose(g.numpy(), 2.0 * (1 - np.tanh(0.5) ** 2), rtol=1e-13)
    with pytest.raises(RuntimeError, match="TanhMul: create_graph=True"):
        mg.grad(out, [x], create_graph=True)


def test_a_user_function_with_a_differentiable_backward_works_at_any_order():
    x = t64(1.5)
    (d1,) = mg.grad(Cube.apply(x), [x], create_graph=True)
    (d2,) = mg.grad(d1, [x], create_graph=True)
    (d3,) = mg.grad(d2, [x])
    np.testing.assert_allclose([d1.item(), d2.item(), d3.item()], [6.75, 9.0, 6.0], rtol=1e-14)


class UserExp(mg.Function):
    """out = exp(x);  gx = gout * out, reading its saved output (declared in saved_outputs)."""

    differentiable_backward = True
    saved_outputs = ((0, 0),)

    def forward(self, x):
        out = np.exp(x)
        self.save_for_backward(out)
        return out

    def backward(self, gout):
        return gout * self.saved[0]


def test_a_user_function_reading_its_saved_output_declares_it_and_gets_exact_derivatives():
    x = t64(0.7)
    (d1,) = mg.grad(UserExp.apply(x) * 3.0, [x], create_graph=True)
    (d2,) = mg.grad(d1, [x], create_graph=True)
    (d3,) = mg.grad(d2, [x])
    np.testing.assert_allclose([d1.item(), d2.item(), d3.item()], [3 * np.exp(0.7)] * 3,
                               rtol=1e-14)
    assert gradgradcheck(UserExp.apply, [t64([0.3, -0.8])])


def test_gradgradcheck_catches_a_backward_that_is_wrong_at_second_order():
    class BadSquare(mg.Function):
        differentiable_backward = True   # claimed, but x is read through a copy: a constant

        def forward(self, x):
            self.save_for_backward(x.copy())
            return x * x

        def backward(self, gout):
            return 2 * self.saved[0] * gout

    x = t64([0.3, -0.4])
    with pytest.raises(GradcheckError, match=r"gradgradcheck failed for the gradients of .*seed 0"):
        gradgradcheck(lambda x: BadSquare.apply(x), [x])


# --- checkpointed segments, unrolled recurrences --------------------------------------------

def test_second_derivatives_through_a_checkpointed_segment_match_the_plain_ones():
    rng = np.random.default_rng(3)
    w0, x0 = rng.standard_normal((3, 3)) * 0.5, rng.standard_normal((2, 3))
    vs = [rng.standard_normal((3, 3)), rng.standard_normal((2, 3))]

    def segment(h, w):
        return mg.tanh(mg.dropout(mg.tanh(h @ w) @ w, p=0.3))

    def loss(ck):
        def f(w, x):
            mg.manual_seed(7)
            h = mg.checkpoint(segment, x, w) if ck else segment(x, w)
            return (h * h).sum()
        return f
    want = fd_hvp(loss(False), [w0, x0], vs)
    for ck in (False, True):
        for g, w in zip(hvp_create_graph(loss(ck), [w0, x0], vs), want):
            np.testing.assert_allclose(g, w, rtol=1e-6, atol=1e-8)


def lstm_loss(cell, T, B, per_step):
    rng = np.random.default_rng(4)
    x = mg.tensor(rng.standard_normal((T, B, cell.input_size)))

    def f(w_ih, w_hh, h0):
        cell.weight_ih, cell.weight_hh = w_ih, w_hh     # the tensors differentiated
        out, (h, c) = rnn.unroll(cell, x, (h0, mg.zeros_like(h0)), lengths=[T, T - 3],
                                 per_step=per_step)
        return (out * out).sum() + (c * h).sum()
    return f


@pytest.mark.parametrize("fused_cell,per_step", [(False, True), (True, True), (True, False)],
                         ids=["composed", "fused steps", "fused sequence"])
def test_hvp_of_an_lstm_unrolled_20_steps_matches_finite_differences(fused_cell, per_step):
    T, B, I, H = 20, 2, 3, 4
    cell = rnn.LSTMCell(I, H, fused=fused_cell, rng=5, dtype=F64)
    rng = np.random.default_rng(6)
    values = [cell.weight_ih.numpy(), cell.weight_hh.numpy(), rng.standard_normal((B, H))]
    vs = [rng.standard_normal(v.shape) for v in values]
    f = lstm_loss(cell, T, B, per_step)
    want = fd_hvp(f, values, vs)
    for g, w in zip(hvp_create_graph(f, values, vs), want):
        np.testing.assert_allclose(g, w, rtol=1e-5, atol=1e-7)


def test_hvp_of_an_lstm_in_checkpointed_segments_matches_finite_differences():
    T, B, I, H = 20, 2, 3, 4
    cell = rnn.LSTMCell(I, H, fused=False, rng=5, dtype=F64)
    rng = np.random.default_rng(8)
    x = mg.tensor(rng.standard_normal((T, B, I)))

    def f(w_hh, h0):
        cell.weight_hh = w_hh
        out, (h, c) = rnn.unroll(cell, x, (h0, mg.zeros_like(h0)), checkpoint_every=5)
        return (out * out).sum()
    values = [cell.weight_hh.numpy(), rng.standard_normal((B, H))]
    vs = [rng.standard_normal(v.shape) for v in values]
    want = fd_hvp(f, values, vs)
    for g, w in zip(hvp_create_graph(f, values, vs), want):
        np.testing.assert_allclose(g, w, rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("kind", ["rnn", "lstm", "gru", "gru_reset_after"])
def test_gradgradcheck_of_the_fused_and_composed_cells(kind):
    rng = np.random.default_rng(9)
    B, I, H = 2, 3, 2
    make = {"rnn": lambda f: rnn.RNNCell(I, H, fused=f, rng=1, dtype=F64),
            "lstm": lambda f: rnn.LSTMCell(I, H, fused=f, rng=1, dtype=F64),
            "gru": lambda f: rnn.GRUCell(I, H, fused=f, rng=1, dtype=F64),
            "gru_reset_after": lambda f: rnn.GRUCell(I, H, fused=f, rng=1, dtype=F64,
                                                     reset_after=True)}[kind]
    # composed cell; fused cell through its step kernels; fused cell through its sequence kernel
    for fused_cell, per_step in ((False, True), (True, True), (True, False)):
        cell = make(fused_cell)
        x = t64(rng.standard_normal((3, B, I)))
        h0 = t64(rng.standard_normal((B, H)))
        state = (h0, t64(rng.standard_normal((B, H)))) if kind == "lstm" else h0

        def f(x, h0, w):
            cell.weight_hh = w
            s = (h0, state[1]) if kind == "lstm" else h0
            out, _ = rnn.unroll(cell, x, s, per_step=per_step)
            return out
        assert gradgradcheck(f, [x, h0, t64(cell.weight_hh.numpy())])


@pytest.mark.parametrize("kind", ["lstm", "gru", "gru_reset_after", "rnn", "rnn_relu"])
def test_every_fused_kernel_declares_a_composed_twin_equal_to_it(kind):
    rng = np.random.default_rng(10)
    T, B, I, H = 4, 3, 3, 2
    G = {"lstm": 4, "gru": 3, "gru_reset_after": 3}.get(kind, 1)

    def r(*shape):
        return t64(rng.standard_normal(shape), False)
    x, h, c, w_ih, w_hh, b, b2 = (r(T, B, I), r(B, H), r(B, H), r(G * H, I), r(G * H, H),
                                  r(G * H), r(G * H))
    lengths = np.array([4, 2, 0])
    if kind == "lstm":
        calls = [(kernels.lstm_step, (x[0] @ w_ih.T, h, c, w_hh), {}),
                 (kernels.lstm_sequence, (x, h, c, w_ih, w_hh, b), {"lengths": lengths})]
    elif kind.startswith("gru"):
        ra = {"reset_after": kind == "gru_reset_after"}
        calls = [(kernels.gru_step, (x[0] @ w_ih.T, h, w_hh, b2), ra),
                 (kernels.gru_sequence, (x, h, w_ih, w_hh, b, b2), dict(ra, lengths=lengths))]
    else:
        nl = {"nonlinearity": "relu" if kind == "rnn_relu" else "tanh"}
        calls = [(kernels.rnn_step, (x[0] @ w_ih.T, h, w_hh), nl),
                 (kernels.rnn_sequence, (x, h, w_ih, w_hh, b), dict(nl, lengths=lengths))]
    for fn, args, kw in calls:
        got = fn(*args, **kw)
        got = got if isinstance(got, tuple) else (got,)
        # the same call recorded: its node names the op class and the keywords it was given
        recorded = fn(*[t64(a.numpy()) for a in args], **kw)
        node = (recorded if isinstance(recorded, tuple) else (recorded,))[0].grad_fn
        twin_kw = {k: v for k, v in kw.items() if k != "reset_after"}
        if "lengths" in twin_kw:
            twin_kw["lengths"] = node.inputs[1]["lengths"]
        twin = type(node).composed(*args, **twin_kw)
        twin = twin if isinstance(twin, tuple) else (twin,)
        assert len(twin) == len(got)
        for g, w in zip(got, twin):
            np.testing.assert_allclose(g.numpy(), w.numpy(), rtol=1e-12, atol=1e-14)


# --- the graph of a create_graph backward is freed like any other ---------------------------

def test_a_create_graph_backward_leaves_no_reference_cycle():
    gc.collect()
    gc.disable()
    try:
        x = t64([0.2, 0.7])
        y = mg.tanh(x) * x
        node = weakref.ref(y.grad_fn)
        (g,) = mg.grad(y.sum(), [x], create_graph=True)
        gnode = weakref.ref(g.grad_fn)
        (h,) = mg.grad(g.sum(), [x])
        del y, g
        assert node() is None and gnode() is None     # freed by reference counting alone
    finally:
        gc.enable()


def test_docstring_examples_of_the_transforms_and_gradgradcheck_run():
    import doctest
    import importlib
    for name in ("minigrad.autograd", "minigrad.testing.gradcheck"):
        result = doctest.testmod(importlib.import_module(name), extraglobs={"mg": mg, "np": np},
                                 optionflags=doctest.NORMALIZE_WHITESPACE)
        assert result.attempted >= 5 and result.failed == 0, name


def test_a_fused_node_drops_the_inputs_kept_for_its_twin_after_backward():
    rng = np.random.default_rng(11)
    B, H = 2, 3
    gx = t64(rng.standard_normal((B, 4 * H)))
    h, c = t64(rng.standard_normal((B, H))), t64(rng.standard_normal((B, H)))
    w = t64(rng.standard_normal((4 * H, H)))
    gx_t = gx * 1.0                                  # a non-leaf input, as unroll's steps are
    h1, c1 = kernels.lstm_step(gx_t, h, c, w)
    ref = weakref.ref(gx_t)
    del gx_t
    assert ref() is not None                         # kept: a create_graph pass may re-run the twin
    (h1.sum() + c1.sum()).backward()
    assert ref() is None                             # dropped with the node's saved arrays


def test_second_derivatives_on_the_fake_device_equal_the_cpus():
    # the fake device refuses any NumPy call on its arrays: the create_graph path (TensorArrays,
    # ScatterAdd, constants) must stay on the inputs' device
    rng = np.random.default_rng(12)
    a, w0 = rng.standard_normal((3, 4)), rng.standard_normal((4, 5))
    targets = np.array([0, 4, 2])
    v = rng.standard_normal((3, 4))

    def hv(device):
        x = mg.tensor(a, requires_grad=True, device=device)
        w = mg.tensor(w0, requires_grad=True, device=device)
        t = mg.tensor(targets, device=device)
        h = mg.sigmoid(x[:, [0, 1, 1, 3]]) * mg.tanh(x)
        loss = mg.cross_entropy(mg.log_softmax(h @ w, axis=-1), t.data) + mg.logsumexp(h).sum()
        (gx,) = mg.grad(loss, [x], create_graph=True)
        (hx, hw) = mg.grad((gx * mg.tensor(v, device=device)).sum(), [x, w])
        assert hx.device == device
        return hx.numpy(), hw.numpy()

    for got, want in zip(hv("fake"), hv("cpu")):
        np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-14)


def test_hooks_under_create_graph_keep_the_graph_or_refuse():
    x = t64([0.5, -1.5])
    y = mg.tanh(x)
    y.register_hook(lambda g: g * 2.0)                       # written with ops: differentiable
    (gx,) = mg.grad((y ** 2).sum(), [x], create_graph=True)  # 2 * 2 y (1 - y^2)
    t = np.tanh([0.5, -1.5])
    np.testing.assert_allclose(gx.numpy(), 4 * t * (1 - t * t), rtol=1e-13)
    # the second pass goes through y again, so the hook doubles its gradient there too (as in
    # PyTorch): d sum(gx)/dy = 4 (1 - 3 y^2), doubled, times dy/dx = 1 - y^2
    (h,) = mg.grad(gx.sum(), [x])
    np.testing.assert_allclose(h.numpy(), 8 * (1 - t * t) * (1 - 3 * t * t), rtol=1e-12)

    z = mg.tanh(x)
    z.register_hook(lambda g: mg.tensor(g.data * 2.0))       # from .data: would cut the graph
    with pytest.raises(RuntimeError, match="create_graph=True backward"):
        mg.grad((z ** 2).sum(), [x], create_graph=True)


def test_hessian_of_two_inputs_gives_every_block():
    x0, y0 = np.array([0.5, -1.0]), np.array([2.0, 3.0])
    (hxx, hxy), (hyx, hyy) = mg.hessian(lambda x, y: (x * x * y).sum(),
                                        [t64(x0, False), t64(y0, False)])
    np.testing.assert_allclose(hxx.numpy(), np.diag(2 * y0), rtol=1e-14)
    np.testing.assert_allclose(hxy.numpy(), np.diag(2 * x0), rtol=1e-14)
    np.testing.assert_allclose(hyx.numpy(), np.diag(2 * x0), rtol=1e-14)
    np.testing.assert_allclose(hyy.numpy(), np.zeros((2, 2)), atol=0)
