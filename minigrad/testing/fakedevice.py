"""A test-only stand-in for a GPU: the "fake" device.

Why it exists: the machines that run CI have no GPU, yet minigrad's device code paths (pick `xp`
from the inputs, never call NumPy on device data, move data only through explicit copies) must
still be exercised. A CuPy array refuses NumPy: `numpy.exp(cupy_array)`, `numpy.asarray(...)` and
`numpy_array + cupy_array` all raise TypeError. `FakeArray` behaves the same way while keeping its
data in a private NumPy array, and `fake_xp` plays the part of the `cupy` module. A test that runs
the engine on the fake device therefore proves that no NumPy call ever touches device data and that
host and device data are never mixed by accident.

Rules enforced here:
  * `FakeArray` is not an `ndarray` subclass; NumPy functions, ufuncs and implicit conversion
    (`__array__`) on it raise TypeError.
  * Any operation (operator, `fake_xp` function, array method, indexing) that is handed a host
    `numpy.ndarray` anywhere in its arguments raises TypeError naming both devices ("fake", "cpu").
    Python scalars, NumPy scalar types (`np.float32(2.0)`) and dtypes are fine.
  * Results are always device data: NumPy scalars from reductions come back as 0-d FakeArrays.
  * Host copies only happen explicitly: `to_host(a)`, `a.get()`, `fake_xp.asnumpy(a)`, and Python
    values through `item()`, `tolist()`, `float()`, `int()`, `bool()` (all allowed on CuPy too).
"""
from __future__ import annotations

import functools
import types

import numpy as np

__all__ = ["FakeArray", "fake_xp", "to_device", "to_host", "is_fake"]

# attributes of ndarray that would hand out host memory or host scalars behind our back
_HOST_ONLY_ATTRS = frozenset({"flat", "ctypes", "data"})


def _mixed_error(where: str) -> TypeError:
    return TypeError(f"{where}: fake device array mixed with a host numpy.ndarray (devices 'fake' "
                     f"and 'cpu'); move data explicitly with to_device() / to_host()")


def _unwrap(obj, where: str, originals: dict):
    """Replace FakeArrays by their NumPy arrays (recursing into lists, tuples and dicts).

    A host ndarray anywhere raises TypeError. `originals` records id(inner array) -> FakeArray,
    so that a result which *is* an input array (out=, asarray of a device array) maps back to it.
    """
    if isinstance(obj, FakeArray):
        originals[id(obj._a)] = obj
        return obj._a
    if isinstance(obj, np.ndarray):
        raise _mixed_error(where)
    if type(obj) in (list, tuple):
        return type(obj)(_unwrap(o, where, originals) for o in obj)
    if type(obj) is dict:
        return {k: _unwrap(v, where, originals) for k, v in obj.items()}
    return obj


def _wrap(obj, originals: dict):
    """Turn NumPy results back into device data: arrays and NumPy scalars become FakeArrays."""
    if isinstance(obj, np.ndarray):
        same = originals.get(id(obj))
        return same if same is not None else FakeArray(obj)
    if isinstance(obj, np.generic):
        return FakeArray(np.asarray(obj))
    if type(obj) is list:
        return [_wrap(o, originals) for o in obj]
    if isinstance(obj, tuple):
        items = [_wrap(o, originals) for o in obj]
        return type(obj)._make(items) if hasattr(obj, "_fields") else tuple(items)
    return obj


def _device_call(func, where: str):
    """`func` made to run on device data: unwrap (and check) arguments, call, wrap the results."""
    @functools.wraps(func)
    def call(*args, **kwargs):
        originals = {}
        args = _unwrap(args, where, originals)
        kwargs = _unwrap(kwargs, where, originals)
        return _wrap(func(*args, **kwargs), originals)
    return call


def _is_operand(x) -> bool:
    # host ndarrays count as operands so that mixing raises instead of returning NotImplemented
    return isinstance(x, (FakeArray, np.ndarray, np.generic, int, float, complex, list, tuple))


def _operator(ufunc_name: str, kind: str = ""):
    """`a <op> b` as the fake_xp ufunc; kind "r" is the reflected form, "i" the in-place one."""
    def op(self, other):
        if not _is_operand(other):
            return NotImplemented
        ufunc = getattr(fake_xp, ufunc_name)
        if kind == "r":
            return ufunc(other, self)
        if kind == "i":
            return ufunc(self, other, out=self)
        return ufunc(self, other)
    return op


def _unary(ufunc_name: str):
    def op(self):
        return getattr(fake_xp, ufunc_name)(self)
    return op


class FakeArray:
    """An array on the "fake" device. Wraps a private NumPy array; NumPy itself refuses it.

    Build one with `to_device(host_array)` (or any `fake_xp` function); read it back with
    `to_host(a)` or `a.get()`. ndarray methods (reshape, sum, astype, ...) are delegated and their
    results stay on the device.
    """

    __slots__ = ("_a",)

    # NumPy must refuse this type: ufuncs (and ndarray operators) see None and give up, NumPy
    # functions find no implementation, and implicit conversion raises.
    __array_ufunc__ = None
    __hash__ = None

    def __init__(self, data: np.ndarray):
        if not isinstance(data, np.ndarray):
            raise TypeError(f"FakeArray wraps a numpy.ndarray, got {type(data).__name__}; "
                            f"use to_device() to copy host data to the fake device")
        self._a = data

    def __array_function__(self, func, types, args, kwargs):
        return NotImplemented

    def __array__(self, dtype=None, copy=None):
        raise TypeError("Implicit conversion of a fake-device array to NumPy is not allowed; "
                        "use .get() or minigrad's .numpy()")

    # --- explicit host copies and Python values --------------------------------------------------
    def get(self) -> np.ndarray:
        """A host copy, as `cupy.ndarray.get()` gives."""
        return self._a.copy()

    def _scalar(self, kind):
        if self._a.size != 1:
            raise TypeError(f"only size-1 arrays can be converted to Python scalars "
                            f"(shape {self._a.shape})")
        return kind(self._a.item())

    def __float__(self):
        return self._scalar(float)

    def __int__(self):
        return self._scalar(int)

    def __complex__(self):
        return self._scalar(complex)

    def __bool__(self):
        return bool(self._a)  # NumPy's rule: size-1 only, otherwise ValueError

    def __format__(self, spec):
        return format(self._a, spec)  # works for 0-d arrays, like NumPy

    def __repr__(self):
        return f"FakeArray({self._a!r})"

    def __str__(self):
        return str(self._a)

    # --- the common attributes; everything else is delegated by __getattr__ ----------------------
    @property
    def shape(self):
        return self._a.shape

    @property
    def dtype(self):
        return self._a.dtype

    @property
    def ndim(self):
        return self._a.ndim

    @property
    def size(self):
        return self._a.size

    @property
    def T(self):
        return FakeArray(self._a.T)

    @property
    def device(self):
        return "fake"

    def __getattr__(self, name):
        # dunders (__array_interface__, __array_struct__, __dlpack__, ...) must not reach the
        # NumPy array, or NumPy could read our data through them; "_a" guards half-built objects
        if name.startswith("__") or name == "_a" or name in _HOST_ONLY_ATTRS:
            raise AttributeError(f"'FakeArray' object has no attribute {name!r}")
        attr = getattr(self._a, name)
        if callable(attr):
            return _device_call(attr, f"FakeArray.{name}")
        return _wrap(attr, {id(self._a): self})

    # --- sequence protocol and indexing ----------------------------------------------------------
    def __len__(self):
        return len(self._a)

    def __iter__(self):
        for i in range(len(self._a)):
            yield self[i]

    def __getitem__(self, index):
        originals = {id(self._a): self}
        return _wrap(self._a[_unwrap(index, "FakeArray.__getitem__", originals)], originals)

    def __setitem__(self, index, value):
        where = "FakeArray.__setitem__"
        self._a[_unwrap(index, where, {})] = _unwrap(value, where, {})

    # --- operators: each one is the matching fake_xp ufunc ---------------------------------------
    __neg__ = _unary("negative")
    __pos__ = _unary("positive")
    __abs__ = _unary("absolute")
    __invert__ = _unary("invert")

    def __divmod__(self, other):
        return fake_xp.divmod(self, other) if _is_operand(other) else NotImplemented

    def __rdivmod__(self, other):
        return fake_xp.divmod(other, self) if _is_operand(other) else NotImplemented


_OPERATORS = {
    "add": "add", "sub": "subtract", "mul": "multiply", "truediv": "true_divide",
    "floordiv": "floor_divide", "mod": "remainder", "pow": "power", "matmul": "matmul",
    "and": "bitwise_and", "or": "bitwise_or", "xor": "bitwise_xor",
    "lshift": "left_shift", "rshift": "right_shift",
}
for _op, _ufunc in _OPERATORS.items():
    for _kind in ("", "r", "i"):
        _method = _operator(_ufunc, _kind)
        _method.__name__ = f"__{_kind}{_op}__"
        setattr(FakeArray, _method.__name__, _method)
_COMPARISONS = {"lt": "less", "le": "less_equal", "gt": "greater", "ge": "greater_equal",
                "eq": "equal", "ne": "not_equal"}
for _op, _ufunc in _COMPARISONS.items():
    setattr(FakeArray, f"__{_op}__", _operator(_ufunc))
del _op, _ufunc, _kind, _method


class _FakeUfunc:
    """A NumPy ufunc on device data: call it, or use .at / .reduce / .accumulate / .outer."""

    def __init__(self, ufunc: np.ufunc, where: str):
        self._ufunc, self._where = ufunc, where
        self.__name__ = ufunc.__name__
        self._call = _device_call(ufunc, where)

    def __call__(self, *args, **kwargs):
        return self._call(*args, **kwargs)

    def __getattr__(self, name):
        if name.startswith("__"):
            raise AttributeError(name)
        attr = getattr(self._ufunc, name)  # nin, nout, identity, ... pass through
        return _device_call(attr, f"{self._where}.{name}") if callable(attr) else attr

    def __repr__(self):
        return f"<fake-device ufunc {self.__name__!r}>"


class _FakeNamespace(types.ModuleType):
    """A module-like view of a NumPy namespace whose functions run on device data (like `cupy`)."""

    def __init__(self, module: types.ModuleType, name: str):
        super().__init__(name, f"Fake-device counterpart of {module.__name__} (tests only).")
        self._module = module

    def __getattr__(self, name):
        if name.startswith("__") or name == "_module":
            raise AttributeError(f"module {self.__name__!r} has no attribute {name!r}")
        if name == "random":
            raise AttributeError(f"{self.__name__}.random is not supported: draw on the host with "
                                 f"a numpy Generator and move the result with to_device()")
        try:
            obj = getattr(self._module, name)
        except AttributeError:
            raise AttributeError(f"module {self.__name__!r} has no attribute {name!r}") from None
        where = f"{self.__name__}.{name}"
        if isinstance(obj, np.ufunc):
            obj = _FakeUfunc(obj, where)
        elif isinstance(obj, types.ModuleType):
            obj = _FakeNamespace(obj, where)  # linalg, fft, ...
        elif isinstance(obj, type):
            pass  # dtypes (float32, ...), errstate, finfo: the same objects as in NumPy, like CuPy
        elif callable(obj):
            obj = _device_call(obj, where)
        setattr(self, name, obj)  # cache; constants (pi, inf, newaxis) pass through unchanged
        return obj


# --- public functions -----------------------------------------------------------------------------
def to_device(host) -> FakeArray:
    """Copy host data (ndarray, NumPy or Python scalar, nested list) to the fake device."""
    if isinstance(host, FakeArray):
        return FakeArray(host._a.copy())
    return FakeArray(np.array(host, copy=True))


def to_host(a: FakeArray) -> np.ndarray:
    """Copy a fake-device array back to a host numpy.ndarray."""
    if not isinstance(a, FakeArray):
        raise TypeError(f"to_host expects a FakeArray, got {type(a).__name__}")
    return a._a.copy()


def is_fake(a) -> bool:
    """True when `a` lives on the fake device."""
    return isinstance(a, FakeArray)


fake_xp = _FakeNamespace(np, "fake_xp")
fake_xp.ndarray = FakeArray
fake_xp.errstate = np.errstate
fake_xp.asnumpy = to_host  # cupy.asnumpy counterpart
