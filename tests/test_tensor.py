"""Tensor construction, attributes, creators and dtype rules, checked against NumPy."""
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import minigrad as mg
from minigrad.testing.fakedevice import FakeArray

shapes = hnp.array_shapes(min_dims=0, max_dims=3, max_side=4)
floats64 = hnp.arrays(np.float64, shapes, elements=st.floats(-1e3, 1e3))


# --- mg.tensor and dtype rules ------------------------------------------------------------------

@given(floats64)
def test_tensor_from_numpy_keeps_dtype_and_values(a):
    t = mg.tensor(a)
    assert t.dtype == np.float64 and t.shape == a.shape and t.ndim == a.ndim
    np.testing.assert_array_equal(t.numpy(), a)


@pytest.mark.parametrize("dtype", [np.float16, np.float32, np.float64, np.int32, np.int64, bool])
def test_numpy_dtype_is_kept(dtype):
    a = np.arange(6).reshape(2, 3).astype(dtype)
    assert mg.tensor(a).dtype == np.dtype(dtype)


@pytest.mark.parametrize("data,dtype", [
    (2.5, np.float32), ([[1.0, 2.0], [3.0, 4.0]], np.float32), ([1, 2.5], np.float32),
    ([], np.float32), (1, np.int64), ([1, 2, 3], np.int64), ([[0], [1]], np.int64),
    (True, np.bool_), ([True, False], np.bool_)])
def test_python_data_follows_numpy_kinds_with_float32_floats(data, dtype):
    # like NumPy and PyTorch: integers give int64, bools bool, floats the default float dtype
    t = mg.tensor(data)
    assert t.dtype == dtype
    np.testing.assert_array_equal(t.numpy(), np.asarray(data, dtype=dtype))


def test_explicit_dtype_wins():
    assert mg.tensor([1, 2], dtype="float64").dtype == np.float64
    assert mg.tensor(np.ones(2, np.float32), dtype=np.float64).dtype == np.float64
    assert mg.tensor([1, 2], dtype="int64").dtype == np.int64


def test_default_dtype_can_be_changed_and_must_be_float():
    try:
        mg.set_default_dtype("float64")
        assert mg.tensor([1.0]).dtype == np.float64
        assert mg.zeros(2).dtype == np.float64
    finally:
        mg.set_default_dtype("float32")
    assert mg.get_default_dtype() == np.float32
    with pytest.raises(TypeError, match="set_default_dtype.*int64"):
        mg.set_default_dtype("int64")


@pytest.mark.parametrize("dtype", ["int32", "int64", "bool"])
def test_integer_tensors_cannot_require_grad(dtype):
    with pytest.raises(TypeError, match=f"tensor: only float.*{dtype}"):
        mg.tensor([1, 2], dtype=dtype, requires_grad=True)
    t = mg.tensor([1, 2], dtype=dtype)
    with pytest.raises(TypeError, match="requires_grad_"):
        t.requires_grad_()


def test_name_and_requires_grad_attributes():
    t = mg.tensor([1.0], requires_grad=True, name="w")
    assert t.requires_grad is True and t.name == "w" and t.is_leaf and t.grad is None
    u = t * 2
    assert u.requires_grad and not u.is_leaf and u.name is None
    assert "grad_fn=Mul" in repr(u)
    assert not mg.tensor([1.0]).requires_grad


def test_tensor_of_a_tensor_copies_nothing_but_cuts_the_graph():
    x = mg.tensor([1.0, 2.0], requires_grad=True)
    y = mg.tensor(x * 3)
    assert y.is_leaf and not y.requires_grad
    np.testing.assert_array_equal(y.numpy(), [3.0, 6.0])


def test_bad_device_name():
    with pytest.raises(ValueError, match="unknown device 'tpu'"):
        mg.tensor([1.0], device="tpu")
    with pytest.raises(TypeError, match="device must be a string"):
        mg.tensor([1.0], device=3)


# --- creators -----------------------------------------------------------------------------------

@given(hnp.array_shapes(min_dims=0, max_dims=3, max_side=4))
def test_filled_creators(shape):
    np.testing.assert_array_equal(mg.zeros(*shape).numpy(), np.zeros(shape, np.float32))
    np.testing.assert_array_equal(mg.ones(shape).numpy(), np.ones(shape, np.float32))
    f = mg.full(shape, 2.5, dtype="float64")
    assert f.dtype == np.float64
    np.testing.assert_array_equal(f.numpy(), np.full(shape, 2.5))
    assert mg.zeros(*shape).dtype == np.float32


def test_like_creators_follow_shape_dtype_device():
    x = mg.tensor(np.arange(6.0).reshape(2, 3))
    for make, value in ((mg.zeros_like, 0.0), (mg.ones_like, 1.0)):
        y = make(x)
        assert y.shape == (2, 3) and y.dtype == np.float64 and y.device == "cpu"
        np.testing.assert_array_equal(y.numpy(), np.full((2, 3), value))
        assert make(x, dtype="float32").dtype == np.float32
    d = mg.zeros_like(x.to("fake"))
    assert d.device == "fake" and isinstance(d.data, FakeArray)


def test_creators_requires_grad_and_shape_errors():
    assert mg.zeros(2, requires_grad=True).requires_grad
    with pytest.raises(ValueError, match="non-negative integers"):
        mg.zeros(2, -1)
    with pytest.raises(ValueError, match="non-negative integers"):
        mg.ones(2.5)


@pytest.mark.parametrize("args", [(5,), (2, 7), (1, 2, 0.25)])
def test_arange_matches_numpy(args):
    np.testing.assert_allclose(mg.arange(*args).numpy(), np.arange(*args, dtype=np.float32))
    assert mg.arange(*args).dtype == np.float32
    assert mg.arange(3, dtype="int64").dtype == np.int64


@pytest.mark.parametrize("make, draw", [(mg.randn, "standard_normal"), (mg.rand, "random")])
def test_random_creators_are_reproducible(make, draw):
    a = make(3, 4, rng=7)
    b = make(3, 4, rng=np.random.default_rng(7))
    ref = getattr(np.random.default_rng(7), draw)((3, 4)).astype(np.float32)
    np.testing.assert_array_equal(a.numpy(), ref)
    np.testing.assert_array_equal(b.numpy(), ref)
    assert make(2, dtype="float64", rng=1).dtype == np.float64
    mg.manual_seed(3)
    c = make(5)
    mg.manual_seed(3)
    np.testing.assert_array_equal(make(5).numpy(), c.numpy())
    with pytest.raises(TypeError, match="rng must be"):
        make(2, rng="seed")


def test_rand_range():
    u = mg.rand(1000, rng=0).numpy()
    assert u.min() >= 0.0 and u.max() < 1.0


# --- attributes ---------------------------------------------------------------------------------

def test_data_is_writable_in_place_and_assignable():
    t = mg.tensor(np.zeros(3))
    t.data[1] = 5.0
    np.testing.assert_array_equal(t.numpy(), [0.0, 5.0, 0.0])
    t.data = np.ones((2, 2))
    assert t.shape == (2, 2)
    np.testing.assert_array_equal(t.numpy(), np.ones((2, 2)))


def test_grad_is_assignable():
    x = mg.tensor([1.0, 2.0], requires_grad=True)
    (x * x).sum().backward()
    np.testing.assert_array_equal(x.grad.numpy(), [2.0, 4.0])
    x.grad = None
    (x * 3).sum().backward()
    np.testing.assert_array_equal(x.grad.numpy(), [3.0, 3.0])
    x.grad = mg.tensor([10.0, 10.0])
    (x * 3).sum().backward()
    np.testing.assert_array_equal(x.grad.numpy(), [13.0, 13.0])


def test_numpy_is_a_copy():
    a = np.arange(4.0)
    t = mg.tensor(a)
    n = t.numpy()
    n[0] = 99.0
    assert t.data[0] == 0.0
    assert type(n) is np.ndarray


def test_item_and_conversions():
    assert mg.tensor([[3.5]]).item() == 3.5
    assert isinstance(mg.tensor(2.0).item(), float)
    assert float(mg.tensor(1.5)) == 1.5 and int(mg.tensor(4.0)) == 4
    with pytest.raises(ValueError, match=r"item: tensor of shape \(2,\) has 2 elements"):
        mg.tensor([1.0, 2.0]).item()
    assert mg.tensor([[1, 2]], dtype="int64").tolist() == [[1, 2]]


def test_detach_shares_data_and_cuts_the_graph():
    x = mg.tensor([1.0, 2.0], requires_grad=True)
    y = x * 2
    d = y.detach()
    assert d.is_leaf and not d.requires_grad and d.data is y.data
    z = (d * x).sum()
    z.backward()
    np.testing.assert_array_equal(x.grad.numpy(), [2.0, 4.0])  # d counted as a constant


def test_to_same_device_returns_self():
    x = mg.tensor([1.0])
    assert x.to("cpu") is x and x.cpu() is x and x.device == "cpu"


def test_backward_defaults_and_errors():
    x = mg.tensor([1.0, -2.0, 3.0], dtype="float64", requires_grad=True)
    y = x * x
    with pytest.raises(RuntimeError, match=r"single-element output.*\(3,\)"):
        y.backward()
    with pytest.raises(ValueError, match=r"grad of shape \(2,\) for a tensor of shape \(3,\)"):
        y.backward(np.ones(2))
    v = np.array([1.0, 10.0, 100.0])
    y.backward(mg.tensor(v))
    np.testing.assert_allclose(x.grad.numpy(), 2 * x.numpy() * v)
    with pytest.raises(RuntimeError, match="does not require grad"):
        mg.tensor([1.0]).backward()


def test_backward_grad_may_be_a_list():
    x = mg.tensor([1.0, 2.0], dtype="float64", requires_grad=True)
    (x * 3).backward([1.0, 2.0])
    np.testing.assert_allclose(x.grad.numpy(), [3.0, 6.0])


def test_float64_everywhere():
    x = mg.tensor(np.linspace(-1, 1, 6).reshape(2, 3), requires_grad=True)
    w = mg.tensor(np.ones((3, 2)), requires_grad=True)
    out = ((x @ w).tanh().exp() / 2 - 1).sum()
    assert out.dtype == np.float64
    out.backward()
    assert x.grad.dtype == np.float64 and w.grad.dtype == np.float64
