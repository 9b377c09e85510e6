"""`mg.checkpoint`: gradients equal those of the plain call (dropout, nesting, hooks, mg.grad),
and the node keeps only its inputs."""
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import minigrad as mg
from minigrad.testing import gradcheck


def _params(rng, n_in, n_hid):
    w = mg.tensor(rng.standard_normal((n_in, n_hid)) * 0.5, requires_grad=True)
    u = mg.tensor(rng.standard_normal((n_hid, n_hid)) * 0.5, requires_grad=True)
    return w, u


def _block(w, u, p=0.0):
    """Two tanh layers (with dropout when p > 0); w and u are reached through the closure."""
    def f(x, h):
        h = mg.tanh(x @ w + h @ u)
        h = mg.dropout(h, p) if p else h
        return mg.tanh(h @ u) * h
    return f


def _grads(loss, tensors):
    return [g.numpy() for g in mg.grad(loss, tensors)]


@given(B=st.integers(1, 4), n_in=st.integers(1, 5), n_hid=st.integers(1, 5),
       seed=st.integers(0, 2**31 - 1), p=st.sampled_from([0.0, 0.4]))
def test_checkpoint_grads_equal_plain(B, n_in, n_hid, seed, p):
    rng = np.random.default_rng(seed)
    w, u = _params(rng, n_in, n_hid)
    x = mg.tensor(rng.standard_normal((B, n_in)), requires_grad=True)
    h0 = mg.tensor(rng.standard_normal((B, n_hid)), requires_grad=True)
    v = rng.standard_normal((B, n_hid))
    f = _block(w, u, p)
    mg.manual_seed(seed)
    plain = f(x, mg.tanh(h0))  # h is not a leaf
    want = _grads((plain * v).sum(), [x, w, u, h0])
    mg.manual_seed(seed)
    ck = mg.checkpoint(f, x, mg.tanh(h0))
    np.testing.assert_array_equal(ck.numpy(), plain.numpy())
    got = _grads((ck * v).sum(), [x, w, u, h0])
    for g, r in zip(got, want):
        np.testing.assert_allclose(g, r, rtol=1e-12, atol=1e-12)


def test_checkpoint_matches_finite_differences():
    rng = np.random.default_rng(0)
    w, u = _params(rng, 3, 4)
    x = mg.tensor(rng.standard_normal((2, 3)), requires_grad=True)
    h = mg.tensor(rng.standard_normal((2, 4)), requires_grad=True)
    assert gradcheck(lambda x, h, w, u: mg.checkpoint(_block(w, u), x, h), [x, h, w, u])
    assert gradcheck(lambda x, h, w, u: mg.checkpoint(_block(w, u), x, h), [x, h, w, u],
                     mode="elementwise")


def test_dropout_replayed_and_generator_left_as_after_forward():
    rng = np.random.default_rng(1)
    w, u = _params(rng, 3, 6)
    x = mg.tensor(rng.standard_normal((5, 3)), requires_grad=True)
    h = mg.tensor(rng.standard_normal((5, 6)))
    f = _block(w, u, p=0.5)
    mg.manual_seed(7)
    plain = f(x, h)
    plain.sum().backward()
    after_plain = mg.rand(3).numpy()
    want = [x.grad.numpy(), w.grad.numpy(), u.grad.numpy()]
    for t in (x, w, u):
        t.grad = None
    mg.manual_seed(7)
    ck = mg.checkpoint(f, x, h)
    ck.sum().backward()  # the recomputation replays the draws, then restores the generator
    np.testing.assert_array_equal(mg.rand(3).numpy(), after_plain)
    for t, r in zip((x, w, u), want):
        np.testing.assert_allclose(t.grad.numpy(), r, rtol=1e-12, atol=1e-12)
    # the masks really differ between two seeds, so the replay is what makes them equal
    mg.manual_seed(8)
    assert not np.array_equal(f(x, h).numpy(), plain.numpy())


def test_nested_checkpoints():
    rng = np.random.default_rng(2)
    w, u = _params(rng, 4, 4)
    x = mg.tensor(rng.standard_normal((3, 4)), requires_grad=True)
    h = mg.tensor(rng.standard_normal((3, 4)), requires_grad=True)
    f = _block(w, u, p=0.3)

    def outer(x, h):
        a = mg.checkpoint(f, x, h)
        return mg.checkpoint(f, a, mg.checkpoint(f, x, a))

    def plain(x, h):
        a = f(x, h)
        return f(a, f(x, a))

    mg.manual_seed(3)
    want = _grads(plain(x, h).sum(), [x, h, w, u])
    mg.manual_seed(3)
    got = _grads(mg.checkpoint(outer, x, h).sum(), [x, h, w, u])
    for g, r in zip(got, want):
        np.testing.assert_allclose(g, r, rtol=1e-12, atol=1e-12)


def test_parameter_hooks_run_once_with_the_whole_gradient():
    rng = np.random.default_rng(3)
    w, u = _params(rng, 3, 3)
    x = mg.tensor(rng.standard_normal((2, 3)))
    seen = []
    handle = u.register_hook(lambda g: seen.append(g.numpy()) or g * 2)
    f = _block(w, u)
    f(x, f(x, x)).sum().backward()
    want_u = u.grad.numpy()
    assert len(seen) == 1
    u.grad, seen[:] = None, []
    mg.checkpoint(f, x, mg.checkpoint(f, x, x)).sum().backward()
    assert len(seen) == 1  # not once inside each recomputation as well
    np.testing.assert_allclose(seen[0] * 2, want_u, rtol=1e-12)
    np.testing.assert_allclose(u.grad.numpy(), want_u, rtol=1e-12)
    handle.remove()


def test_hook_on_output_and_inside_fn():
    rng = np.random.default_rng(4)
    w, u = _params(rng, 3, 3)
    x = mg.tensor(rng.standard_normal((2, 3)), requires_grad=True)

    def f(x):
        h = mg.tanh(x @ w)
        if h.requires_grad:  # no graph in the first (forward) run
            h.register_hook(lambda g: g * 0.5)
        return h @ u

    plain = mg.tanh(x @ w)
    plain.register_hook(lambda g: g * 0.5)
    out = plain @ u
    out.register_hook(lambda g: g * 3)
    want = _grads(out.sum(), [x, w, u])
    ck = mg.checkpoint(f, x)
    ck.register_hook(lambda g: g * 3)
    for g, r in zip(_grads(ck.sum(), [x, w, u]), want):
        np.testing.assert_allclose(g, r, rtol=1e-12)


def test_parameter_given_as_input_and_through_closure():
    rng = np.random.default_rng(5)
    w, _ = _params(rng, 3, 3)
    x = mg.tensor(rng.standard_normal((2, 3)))

    def f(a):
        return mg.tanh(x @ a) @ w  # `a` is w itself, passed explicitly

    want = _grads(f(w).sum(), [w])
    got = _grads(mg.checkpoint(f, w).sum(), [w])
    np.testing.assert_allclose(got[0], want[0], rtol=1e-12)


def test_tuple_outputs_non_tensor_items_and_unused_input():
    rng = np.random.default_rng(6)
    x = mg.tensor(rng.standard_normal((2, 3)), requires_grad=True)
    y = mg.tensor(rng.standard_normal((2, 3)), requires_grad=True)

    def f(x, y, k):
        return mg.exp(x) * k, "label", mg.tanh(x)

    a, label, b = mg.checkpoint(f, x, y, 2.0)
    assert label == "label"
    gx, gy = mg.grad((a * b).sum(), [x, y], allow_unused=True)
    xd = x.numpy()
    np.testing.assert_allclose(gx.numpy(), 2 * np.exp(xd) * np.tanh(xd)
                               + 2 * np.exp(xd) * (1 - np.tanh(xd) ** 2), rtol=1e-12)
    assert gy is None


def test_retain_graph_allows_a_second_backward():
    rng = np.random.default_rng(7)
    w, u = _params(rng, 3, 3)
    x = mg.tensor(rng.standard_normal((2, 3)), requires_grad=True)
    loss = mg.checkpoint(_block(w, u), x, x).sum()
    loss.backward(retain_graph=True)
    first = w.grad.numpy()
    loss.backward()
    np.testing.assert_allclose(w.grad.numpy(), 2 * first, rtol=1e-12)


def test_keeps_only_the_non_leaf_inputs():
    rng = np.random.default_rng(8)
    w, u = _params(rng, 8, 16)
    x = mg.tensor(rng.standard_normal((4, 8)), requires_grad=True)
    h = mg.tensor(rng.standard_normal((4, 16)), requires_grad=True)
    f = _block(w, u)
    with mg.memory.track() as m:
        h1 = h * 1.0          # a non-leaf: the checkpoint node must keep it (Mul of leaves: 0)
        out = mg.checkpoint(f, x, h1)
        held = m.live_bytes
        out.sum().backward()
    assert held == h1.data.nbytes
    assert m.live_bytes == 0
    with mg.memory.track() as plain:
        f(x, h * 1.0).sum().backward()
    # while its backward runs it holds its input and the recomputed insides, which use that
    # same array (so it counts once): the plain call's peak, no more
    assert m.peak_bytes == plain.peak_bytes > held


def test_no_graph_under_no_grad_and_errors():
    x = mg.tensor([1.0, 2.0], requires_grad=True)
    with mg.no_grad():
        y = mg.checkpoint(mg.exp, x)
    assert not y.requires_grad
    with pytest.raises(TypeError, match="checkpoint: fn must be callable"):
        mg.checkpoint(3, x)
    with pytest.raises(TypeError, match="checkpoint: fn must return"):
        mg.checkpoint(lambda x: 3, x)
    with pytest.raises(TypeError, match="checkpoint: fn returned no Tensor"):
        mg.checkpoint(lambda x: (1, 2), x)


def test_both_import_styles_call_the_function():
    from minigrad.checkpoint import checkpoint
    x = mg.tensor([0.5], requires_grad=True)
    np.testing.assert_allclose(checkpoint(mg.exp, x).numpy(), np.exp([0.5]), rtol=1e-6)
    np.testing.assert_allclose(mg.checkpoint(mg.exp, x).numpy(), np.exp([0.5]), rtol=1e-6)
