"""Tests of the fake device: NumPy is the reference, and every host/device mix must raise."""
import copy
import operator

import numpy as np
import pytest

from minigrad.testing.fakedevice import FakeArray, fake_xp, is_fake, to_device, to_host

rng = np.random.default_rng(0)


def host(shape=(3, 4), dtype=np.float32):
    return rng.standard_normal(shape).astype(dtype)


def same(fake, ref):
    """`fake` is device data equal (values, dtype, shape) to the NumPy reference `ref`."""
    assert isinstance(fake, FakeArray), type(fake)
    got = to_host(fake)
    ref = np.asarray(ref)
    assert got.dtype == ref.dtype and got.shape == ref.shape
    np.testing.assert_allclose(got, ref, rtol=1e-6, atol=1e-6)


MIXED = "fake device array mixed with a host numpy.ndarray"


# --- transfers ------------------------------------------------------------------------------------

def test_round_trip_copies():
    h = host()
    d = to_device(h)
    assert is_fake(d) and not is_fake(h) and isinstance(d, fake_xp.ndarray)
    assert not isinstance(d, np.ndarray)
    h[0, 0] = 100.0                       # to_device copied
    assert to_host(d)[0, 0] != 100.0
    back = d.get()
    assert type(back) is np.ndarray and back.dtype == np.float32
    back[0, 0] = -5.0                     # get() copied
    assert to_host(d)[0, 0] != -5.0
    np.testing.assert_array_equal(fake_xp.asnumpy(d), to_host(d))
    assert d.device == "fake"


def test_to_host_refuses_host_data():
    with pytest.raises(TypeError):
        to_host(np.ones(3))


def test_attributes():
    h = host((2, 3, 4))
    d = to_device(h)
    assert d.shape == h.shape and d.dtype == h.dtype and d.ndim == 3 and d.size == h.size
    assert d.nbytes == h.nbytes and d.itemsize == 4 and d.strides == h.strides
    assert d.flags.c_contiguous and len(d) == 2
    same(d.T, h.T)
    assert "FakeArray" in repr(d) and str(d) == str(h)


def test_scalars_and_python_values():
    d = to_device(np.array([[2.5]], dtype=np.float32))
    assert float(d) == 2.5 and int(d) == 2 and bool(d) is True
    assert d.item() == 2.5 and type(d.item()) is float
    assert to_device(np.arange(3)).tolist() == [0, 1, 2]
    assert f"{d.sum():.1f}" == "2.5"
    with pytest.raises(TypeError):
        float(to_device(np.ones(2)))


# --- operators ------------------------------------------------------------------------------------

BINARY = [operator.add, operator.sub, operator.mul, operator.truediv, operator.floordiv,
          operator.mod, operator.pow, operator.lt, operator.le, operator.gt, operator.ge,
          operator.eq, operator.ne]


@pytest.mark.parametrize("op", BINARY)
def test_binary_operators_match_numpy(op):
    a, b = np.abs(host()) + 0.5, np.abs(host()) + 0.5
    same(op(to_device(a), to_device(b)), op(a, b))
    same(op(to_device(a), 2.0), op(a, 2.0))
    same(op(3.0, to_device(a)), op(3.0, a))
    same(op(to_device(a), np.float32(2.0)), op(a, np.float32(2.0)))
    same(op(np.float32(2.0), to_device(a)), op(np.float32(2.0), a))


@pytest.mark.parametrize("op", [operator.and_, operator.or_, operator.xor, operator.lshift,
                                operator.rshift])
def test_integer_operators_match_numpy(op):
    a, b = np.arange(12).reshape(3, 4), np.arange(12).reshape(3, 4) % 3
    same(op(to_device(a), to_device(b)), op(a, b))
    same(op(5, to_device(b)), op(5, b))


def test_unary_matmul_divmod():
    a, b = host((3, 4)), host((4, 2))
    same(-to_device(a), -a)
    same(+to_device(a), +a)
    same(abs(to_device(a)), abs(a))
    same(~to_device(np.arange(4)), ~np.arange(4))
    same(to_device(a) @ to_device(b), a @ b)
    q, r = divmod(to_device(np.abs(a)), 0.3)
    same(q, np.abs(a) // 0.3)
    same(r, np.abs(a) % 0.3)


@pytest.mark.parametrize("op", [operator.iadd, operator.isub, operator.imul, operator.itruediv,
                                operator.ipow])
def test_inplace_operators_keep_the_object(op):
    a, b = np.abs(host()) + 0.5, np.abs(host()) + 0.5
    d = to_device(a)
    view = d[0]
    result = op(d, to_device(b))
    assert result is d
    same(d, op(a.copy(), b))
    same(view, op(a.copy(), b)[0])        # written in place, views see it


# --- fake_xp functions, compared with numpy -------------------------------------------------------

def test_elementwise_functions():
    a, b = host(), host()
    for name in ["exp", "tanh", "log1p", "expm1", "isfinite", "sign", "sqrt", "abs"]:
        x = np.abs(a) if name in ("log1p", "sqrt") else a
        same(getattr(fake_xp, name)(to_device(x)), getattr(np, name)(x))
    for name in ["maximum", "logaddexp", "add", "multiply", "minimum"]:
        same(getattr(fake_xp, name)(to_device(a), to_device(b)), getattr(np, name)(a, b))
    same(fake_xp.where(to_device(a > 0), to_device(a), 0.0), np.where(a > 0, a, 0.0))
    rows, cols = fake_xp.where(to_device(a > 0))
    same(rows, np.where(a > 0)[0])
    same(cols, np.where(a > 0)[1])


def test_shape_and_linear_algebra_functions():
    a, b = host((3, 4)), host((4, 5))
    d = to_device(a)
    same(fake_xp.matmul(d, to_device(b)), a @ b)
    same(fake_xp.einsum("ij,jk->ik", d, to_device(b)), np.einsum("ij,jk->ik", a, b))
    same(fake_xp.concatenate([d, d], axis=0), np.concatenate([a, a], axis=0))
    same(fake_xp.stack((d, d)), np.stack((a, a)))
    same(fake_xp.pad(d, ((1, 0), (0, 2))), np.pad(a, ((1, 0), (0, 2))))
    same(fake_xp.roll(d, 1, axis=1), np.roll(a, 1, axis=1))
    same(fake_xp.flip(d, 0), np.flip(a, 0))
    same(fake_xp.broadcast_to(d[:1], (5, 4)), np.broadcast_to(a[:1], (5, 4)))
    same(fake_xp.argmax(d, axis=1), np.argmax(a, axis=1))
    part = fake_xp.argpartition(d, 1, axis=1)
    np.testing.assert_array_equal(np.sort(np.take_along_axis(a, to_host(part), 1)[:, :2], 1),
                                  np.sort(a, 1)[:, :2])
    same(fake_xp.linalg.norm(d), np.linalg.norm(a))
    halves = fake_xp.split(d, 2, axis=1)
    assert isinstance(halves, list) and len(halves) == 2
    same(halves[1], np.split(a, 2, axis=1)[1])


def test_take_and_put_along_axis():
    a = host((3, 4))
    idx = np.argsort(a, axis=1)
    same(fake_xp.take_along_axis(to_device(a), to_device(idx), axis=1),
         np.take_along_axis(a, idx, axis=1))
    d, ref = to_device(a), a.copy()
    assert fake_xp.put_along_axis(d, to_device(idx[:, :1]), 7.0, axis=1) is None
    np.put_along_axis(ref, idx[:, :1], 7.0, axis=1)
    same(d, ref)


def test_creation_and_constants():
    z = fake_xp.zeros((2, 3), dtype=fake_xp.float32)
    same(z, np.zeros((2, 3), np.float32))
    same(fake_xp.ones_like(z), np.ones((2, 3), np.float32))
    same(fake_xp.arange(5), np.arange(5))
    same(fake_xp.full((2,), fake_xp.inf), np.full((2,), np.inf))
    assert fake_xp.float32 is np.float32 and fake_xp.float64 is np.float64
    assert fake_xp.int64 is np.int64 and fake_xp.newaxis is None
    assert fake_xp.pi == np.pi and fake_xp.inf == np.inf
    assert fake_xp.ndarray is FakeArray
    assert fake_xp.finfo(fake_xp.float32).eps == np.finfo(np.float32).eps
    with fake_xp.errstate(divide="ignore"):
        same(fake_xp.log(to_device(np.zeros(2))), np.full(2, -np.inf))


def test_asarray():
    d = to_device(host())
    assert fake_xp.asarray(d) is d
    same(fake_xp.asarray(d, dtype=fake_xp.float64), to_host(d).astype(np.float64))
    same(fake_xp.asarray([1.0, 2.0]), np.asarray([1.0, 2.0]))
    same(fake_xp.asarray(3), np.asarray(3))
    same(fake_xp.asarray([d, d]), np.asarray([to_host(d), to_host(d)]))


def test_out_keyword_writes_in_place():
    a = host()
    out = fake_xp.empty_like(to_device(a))
    assert fake_xp.exp(to_device(a), out=out) is out
    same(out, np.exp(a))
    assert fake_xp.add(to_device(a), 1.0, out=(out,)) is out
    same(out, a + 1.0)
    d = to_device(a)
    assert d.clip(-0.1, 0.1, out=d) is d
    same(d, a.clip(-0.1, 0.1))


def test_ufunc_methods():
    vals = host((5,))
    idx = np.array([0, 2, 2, 2, 4])
    acc = fake_xp.zeros(5, dtype=fake_xp.float32)
    assert fake_xp.add.at(acc, to_device(idx), to_device(vals)) is None
    ref = np.zeros(5, np.float32)
    np.add.at(ref, idx, vals)
    same(acc, ref)                        # repeated index 2 accumulated three times
    assert to_host(acc)[2] == pytest.approx(vals[1:4].sum(), rel=1e-6)
    a = host((3, 4))
    same(fake_xp.add.reduce(to_device(a), axis=1), np.add.reduce(a, axis=1))
    same(fake_xp.maximum.reduce(to_device(a), axis=0), np.maximum.reduce(a, axis=0))
    same(fake_xp.add.accumulate(to_device(a), axis=1), np.add.accumulate(a, axis=1))
    same(fake_xp.multiply.outer(to_device(a[0]), to_device(a[1])), np.multiply.outer(a[0], a[1]))
    # 2-d scatter with a tuple index of device arrays
    g = fake_xp.zeros((3, 4))
    fake_xp.add.at(g, (to_device(np.array([0, 0])), to_device(np.array([1, 1]))), 1.0)
    assert to_host(g)[0, 1] == 2.0
    assert fake_xp.add.nin == 2 and fake_xp.add.__name__ == "add"


def test_reductions_stay_on_device():
    a = host()
    d = to_device(a)
    for r, ref in [(d.sum(), a.sum()), (d.max(), a.max()), (d.mean(), a.mean()),
                   (fake_xp.sum(d), np.sum(a)), (d.argmax(), a.argmax()), (d[1, 2], a[1, 2]),
                   (d.all(), a.all()), (fake_xp.linalg.norm(d), np.linalg.norm(a))]:
        assert isinstance(r, FakeArray) and r.shape == ()
        same(r, ref)
    same(d.sum(axis=0, keepdims=True), a.sum(axis=0, keepdims=True))


# --- delegated methods ----------------------------------------------------------------------------

def test_methods_match_numpy():
    a = host((2, 3, 4))
    d = to_device(a)
    same(d.reshape(6, 4), a.reshape(6, 4))
    same(d.transpose(2, 0, 1), a.transpose(2, 0, 1))
    same(d.astype(np.float64), a.astype(np.float64))
    same(d.ravel(), a.ravel())
    same(d[:1].squeeze(0), a[:1].squeeze(0))
    same(d.swapaxes(0, 2), a.swapaxes(0, 2))
    same(d.any(axis=2), a.any(axis=2))
    same(d.min(axis=(0, 1)), a.min(axis=(0, 1)))
    same(d.view(np.int32), a.view(np.int32))
    same(d[0].dot(to_device(a[1].T)), a[0].dot(a[1].T))
    c = d.copy()
    assert c is not d and c.fill(3.0) is None
    same(c, np.full_like(a, 3.0))
    same(d, a)                            # copy() was independent
    assert d.tolist() == a.tolist()


# --- indexing -------------------------------------------------------------------------------------

def test_getitem_matches_numpy():
    a = host((4, 5))
    d = to_device(a)
    rows, cols = np.array([0, 3, 3]), np.array([1, 0, 4])
    cases = [(1,), (slice(1, 3),), (Ellipsis, 2), (None, 1), ([0, 2],), (slice(None), [1, 1])]
    for index in cases:
        same(d[index if len(index) > 1 else index[0]], a[index if len(index) > 1 else index[0]])
    same(d[to_device(rows), to_device(cols)], a[rows, cols])
    same(d[to_device(a > 0)], a[a > 0])
    same(d[(to_device(rows), slice(None))], a[rows, :])
    same(d[to_device(rows)], a[rows])
    assert [to_host(r).tolist() for r in d] == a.tolist()


def test_setitem_and_views():
    a = host((4, 5))
    d, ref = to_device(a), a.copy()
    row = d[1]                            # basic indexing gives a view, as on CuPy
    d[1] = 0.0
    ref[1] = 0.0
    d[to_device(np.array([2, 3])), 0] = to_device(np.array([7.0, 8.0], dtype=np.float32))
    ref[[2, 3], 0] = [7.0, 8.0]
    d[to_device(a < 0)] = -1.0
    ref[a < 0] = -1.0
    d[..., 4] = [1.0, 2.0, 3.0, 4.0]
    ref[..., 4] = [1.0, 2.0, 3.0, 4.0]
    same(d, ref)
    same(row, ref[1])


def test_copy_module_works():
    d = to_device(host())
    c = copy.deepcopy(d)
    assert is_fake(c) and c is not d
    same(c, to_host(d))


# --- refusals: every host/device mix and every NumPy call on device data raises TypeError ---------

def test_numpy_refuses_device_arrays():
    d = to_device(host())
    for call in [lambda: np.exp(d), lambda: np.asarray(d), lambda: np.array(d),
                 lambda: np.array([d, d]), lambda: np.concatenate([d]), lambda: np.sum(d),
                 lambda: np.add.at(np.zeros(3), [0], d[0, 0]), lambda: np.matmul(d, d.T),
                 lambda: np.asarray(d, dtype=object), lambda: np.where(d > 0, d, 0.0)]:
        with pytest.raises(TypeError):
            call()
    with pytest.raises(TypeError, match="Implicit conversion"):
        np.asarray(d)


@pytest.mark.parametrize("op", BINARY + [operator.matmul])
def test_operators_refuse_host_arrays_both_orders(op):
    h = np.abs(host((4, 4))) + 0.5
    d = to_device(h)
    with pytest.raises(TypeError, match="fake.*cpu"):
        op(d, h)
    with pytest.raises(TypeError):
        op(h, d)


def test_inplace_operators_refuse_host_arrays():
    h, d = host(), to_device(host())
    with pytest.raises(TypeError, match=MIXED):
        d += h
    with pytest.raises(TypeError):
        h += d
    with pytest.raises(TypeError):
        h *= d


def test_indexing_refuses_host_arrays():
    h, d = host((4, 5)), to_device(host((4, 5)))
    with pytest.raises(TypeError, match=MIXED):
        d[0] = h[0]
    with pytest.raises(TypeError, match=MIXED):
        d[np.array([0, 1])] = 1.0
    with pytest.raises(TypeError, match=MIXED):
        d[(np.array([0, 1]), slice(None))] = 1.0
    with pytest.raises(TypeError, match=MIXED):
        d[np.array([0, 1])]
    with pytest.raises(TypeError, match=MIXED):
        d[[0, 1]] = [h[0], h[1]]          # inside a list too
    with pytest.raises(TypeError):
        h[0] = d[0]                       # device data into a host array
    with pytest.raises(TypeError):
        h[d > 0]


def test_fake_xp_refuses_host_arrays():
    h, d = host(), to_device(host())
    calls = [
        lambda: fake_xp.exp(h),
        lambda: fake_xp.add(d, h),
        lambda: fake_xp.exp(d, out=h),
        lambda: fake_xp.add(d, d, out=(h,)),
        lambda: fake_xp.concatenate([d, h]),
        lambda: fake_xp.stack((d, (h,))),
        lambda: fake_xp.asarray(h),
        lambda: fake_xp.asarray([d, h]),
        lambda: fake_xp.where(d > 0, h, 0.0),
        lambda: fake_xp.add.at(d, np.array([0]), 1.0),
        lambda: fake_xp.add.at(d, (to_device(np.array([0])),), h[0]),
        lambda: fake_xp.maximum.reduce(h),
        lambda: fake_xp.einsum("ij,kj->ik", d, h),
        lambda: fake_xp.linalg.norm(h),
        lambda: d.dot(h.T),
        lambda: d.clip(-1, 1, out=h),
        lambda: d.reshape(np.array([12])),
    ]
    for call in calls:
        with pytest.raises(TypeError, match=MIXED) as info:
            call()
        assert "'fake'" in str(info.value) and "'cpu'" in str(info.value)


def test_host_scalars_and_dtypes_are_fine():
    d = to_device(host())
    same(fake_xp.add(d, np.float32(2.0)), to_host(d) + np.float32(2.0))
    same(d * np.int64(3), to_host(d) * np.int64(3))
    same(fake_xp.full((2,), np.float32(1.5), dtype=np.dtype("float32")),
         np.full(2, 1.5, np.float32))


def test_unsupported_names():
    with pytest.raises(AttributeError, match="to_device"):
        fake_xp.random
    with pytest.raises(AttributeError):
        fake_xp.no_such_function
    d = to_device(host())
    for name in ["__array_interface__", "__array_struct__", "flat", "ctypes", "data"]:
        with pytest.raises(AttributeError):
            getattr(d, name)
    with pytest.raises(TypeError):
        FakeArray([1.0, 2.0])             # the constructor wraps ndarrays only; use to_device
