"""`Tensor`: an array (NumPy or CuPy) plus what autograd needs to know about it, and creators."""
from __future__ import annotations

import numpy as np

from minigrad import backend

_default_dtype = [np.dtype(np.float32)]


def set_default_dtype(dtype) -> None:
    """Set the float dtype given to Python numbers and lists (float32 unless changed)."""
    d = np.dtype(dtype)
    if d.kind != "f":
        raise TypeError(f"set_default_dtype: expected a float dtype, got {d}")
    _default_dtype[0] = d


def get_default_dtype() -> np.dtype:
    return _default_dtype[0]


class Tensor:
    """An n-dimensional array that can record the ops applied to it for reverse-mode autodiff.

    `data` is the raw backend array (NumPy or CuPy), writable in place and assignable; `grad` is a
    Tensor or None. Non-leaf tensors point at the node (`Function`) that produced them.
    """

    __slots__ = ("data", "grad", "requires_grad", "_node", "_idx", "_version", "_hooks", "name",
                 "__weakref__")
    __array_priority__ = 1000  # so ndarray (op) Tensor defers to Tensor's reflected operators

    def __init__(self, data, requires_grad=False, dtype=None, device=None, name=None):
        data = _as_array(data, dtype, device)
        if requires_grad and data.dtype.kind not in "fc":
            raise TypeError(f"tensor: only float tensors can require gradients, got {data.dtype}")
        self.data = data
        self.grad = None
        self.requires_grad = bool(requires_grad)
        self._node = None
        self._idx = 0
        self._version = 0
        self._hooks = None
        self.name = name

    # --- basic attributes -------------------------------------------------------------------
    shape = property(lambda self: tuple(self.data.shape))
    ndim = property(lambda self: self.data.ndim)
    dtype = property(lambda self: self.data.dtype)
    size = property(lambda self: self.data.size)
    device = property(lambda self: backend.device_of(self.data).name)
    is_leaf = property(lambda self: self._node is None)
    grad_fn = property(lambda self: self._node)

    def __len__(self):
        return len(self.data)

    def __repr__(self):
        extra = ", requires_grad=True" if self.requires_grad else ""
        if self._node is not None:
            extra += f", grad_fn={self._node.name}"
        if self.name:
            extra += f", name={self.name!r}"
        dev = self.device
        if dev != "cpu":
            extra += f", device='{dev}'"
        body = np.array2string(self.numpy(), separator=", ", prefix="tensor(")
        return f"tensor({body}, dtype={self.dtype}{extra})"

    def numpy(self) -> np.ndarray:
        """A host NumPy copy of the data."""
        return np.array(backend.to_host(self.data), copy=True)

    def item(self):
        if self.data.size != 1:
            raise ValueError(f"item: tensor of shape {self.shape} has {self.data.size} elements")
        return self.data.item()

    def tolist(self):
        return backend.to_host(self.data).tolist()

    def __float__(self):
        return float(self.item())

    def __int__(self):
        return int(self.item())

    def __bool__(self):
        if self.data.size != 1:
            raise ValueError(f"the truth value of a tensor of shape {self.shape} is ambiguous")
        return bool(self.item())

    def __hash__(self):
        return id(self)

    def detach(self) -> "Tensor":
        """The same data, cut from the graph."""
        return Tensor._wrap(self.data)

    def to(self, device) -> "Tensor":
        """This tensor on `device` (a differentiable copy, or self when already there)."""
        from minigrad import ops
        if backend.get_device(device) is backend.device_of(self.data):
            return self
        return ops.ToDevice.apply(self, device=backend.get_device(device))

    def cpu(self) -> "Tensor":
        return self.to("cpu")

    def astype(self, dtype) -> "Tensor":
        from minigrad import ops
        return ops.astype(self, dtype)

    def backward(self, grad=None, retain_graph=False) -> None:
        """Accumulate d(self)/d(leaf) into every leaf's `.grad` (grad defaults to 1 for a scalar).

        `grad` is d(loss)/d(self), of self's shape. The graph's saved arrays are freed unless
        `retain_graph=True`.

        >>> x = tensor([1.0, 2.0], requires_grad=True)
        >>> (x * x).sum().backward()
        >>> x.grad
        tensor([2., 4.], dtype=float32)
        """
        from minigrad.engine import run_backward
        if not self.requires_grad:
            raise RuntimeError("backward: this tensor does not require grad and has no graph "
                               "(did you create it under no_grad, or from tensors without "
                               "requires_grad=True?)")
        run_backward([self], [_seed_grad(self, grad, "backward")], retain_graph)

    def register_hook(self, fn):
        """Call `fn(grad) -> Tensor | None` with this tensor's gradient during backward.

        A returned tensor replaces the gradient. Returns a handle with `.remove()`.
        """
        if not self.requires_grad:
            raise RuntimeError("register_hook: the tensor does not require grad")
        if self._node is None:
            if self._hooks is None:
                self._hooks = []
            hooks = self._hooks
        else:
            node = self._node
            if node.out_hooks is None:
                node.out_hooks = {}
            hooks = node.out_hooks.setdefault(self._idx, [])
        hooks.append(fn)
        return _HookHandle(hooks, fn)

    def retain_grad(self) -> None:
        """Keep this non-leaf tensor's gradient in `.grad` after backward."""
        import weakref
        if self._node is None:
            return
        ref = weakref.ref(self)

        def keep(g):
            t = ref()
            if t is not None:
                t.grad = g if t.grad is None else Tensor._wrap(t.grad.data + g.data)

        self.register_hook(keep)

    def requires_grad_(self, flag=True) -> "Tensor":
        if flag and self.data.dtype.kind not in "fc":
            raise TypeError(f"requires_grad_: only float tensors can require gradients, "
                            f"got {self.data.dtype}")
        if self._node is not None and not flag:
            raise RuntimeError("requires_grad_(False) on a non-leaf tensor: use .detach()")
        self.requires_grad = flag
        return self

    @staticmethod
    def _wrap(data) -> "Tensor":
        from minigrad.engine import _make
        return _make(data, False, None, 0)

    # --- in place ---------------------------------------------------------------------------
    # Allowed off the graph (tensors that need no gradient, or inside no_grad) and counted in
    # `_version`, so backward refuses an array that was saved and then changed. On a tensor that
    # requires grad under grad mode, `x += y` (and -=, *=, /=) rebinds x to the out-of-place
    # result, a new node; setitem, copy_, add_, ... raise. Writes to `.data` are not counted.
    def _inplace(self, opname, fn):
        from minigrad.engine import state
        if state.grad_enabled and self.requires_grad:
            raise RuntimeError(f"{opname}: in-place change of a tensor that requires grad; "
                               "wrap it in mg.no_grad() or use the out-of-place op")
        fn()
        self._version += 1
        if self._node is not None:  # the op that made self may have saved its array
            from minigrad.engine import note_inplace
            note_inplace(self)
        return self

    def __setitem__(self, index, value):
        value = value.data if isinstance(value, Tensor) else value
        index = _raw_index(index)

        def do():
            self.data[index] = value
        self._inplace("__setitem__", do)

    def _iop(self, other, name, ufunc):
        from minigrad.engine import state
        if state.grad_enabled and self.requires_grad:
            return None  # caller falls back to the out-of-place op
        o = other.data if isinstance(other, Tensor) else other
        return self._inplace(name, lambda: ufunc(self.data, o, out=self.data))

    def __iadd__(self, other):
        r = self._iop(other, "__iadd__", _xp(self).add)
        return self + other if r is None else r

    def __isub__(self, other):
        r = self._iop(other, "__isub__", _xp(self).subtract)
        return self - other if r is None else r

    def __imul__(self, other):
        r = self._iop(other, "__imul__", _xp(self).multiply)
        return self * other if r is None else r

    def __itruediv__(self, other):
        r = self._iop(other, "__itruediv__", _xp(self).divide)
        return self / other if r is None else r

    def zero_(self) -> "Tensor":
        return self._inplace("zero_", lambda: self.data.fill(0))

    def fill_(self, value) -> "Tensor":
        return self._inplace("fill_", lambda: self.data.fill(value))

    def copy_(self, src) -> "Tensor":
        s = src.data if isinstance(src, Tensor) else src

        def do():
            self.data[...] = s
        return self._inplace("copy_", do)

    def add_(self, other, alpha=1.0) -> "Tensor":
        o = other.data if isinstance(other, Tensor) else other

        def do():
            if alpha == 1.0:
                self.data += o
            else:
                self.data += alpha * o
        return self._inplace("add_", do)

    def mul_(self, other) -> "Tensor":
        o = other.data if isinstance(other, Tensor) else other

        def do():
            self.data *= o
        return self._inplace("mul_", do)


class _HookHandle:
    def __init__(self, hooks, fn):
        self._hooks, self._fn = hooks, fn

    def remove(self):
        if self._fn in self._hooks:
            self._hooks.remove(self._fn)


def _xp(t):
    return backend.get_array_module(t.data)


def _raw_index(index):
    if isinstance(index, Tensor):
        return index.data
    if isinstance(index, tuple):
        return tuple(i.data if isinstance(i, Tensor) else i for i in index)
    return index


def _seed_grad(t, grad, opname):
    if grad is None:
        if t.data.size != 1:
            raise RuntimeError(f"{opname}: grad can be implicit only for a single-element output; "
                               f"this one has shape {t.shape}: pass grad=")
        return backend.get_array_module(t.data).ones_like(t.data)
    g = grad.data if isinstance(grad, Tensor) else grad
    if not isinstance(g, backend.device_of(t.data).array_type):
        g = _as_array(g, t.dtype, t.device)
    if tuple(g.shape) != tuple(t.data.shape):
        raise ValueError(f"{opname}: grad of shape {tuple(g.shape)} for a tensor of shape "
                         f"{t.shape}")
    return g


def _as_array(data, dtype=None, device=None):
    """Turn data into an array on `device`: NumPy arrays keep their dtype; Python numbers and
    lists get the default float dtype unless `dtype` says otherwise."""
    if isinstance(data, Tensor):
        data = data.data
    dev = backend.get_device(device) if device is not None else None
    src = backend.device_of(data) if type(data) in backend._by_type else None
    if src is None:
        # Python data (or a NumPy scalar): build on the host first
        if isinstance(data, np.generic):
            arr = np.asarray(data, dtype=dtype)
        else:
            arr = np.asarray(data, dtype=dtype if dtype is not None else _default_dtype[0])
        src = backend.get_device("cpu")
        data = arr
    elif dtype is not None and data.dtype != np.dtype(dtype):
        data = data.astype(dtype)
    if dev is not None and dev is not src:
        host = data if src.name == "cpu" else src.to_host(data)
        data = dev.to_device(np.asarray(host, order="C"))  # ascontiguousarray makes 0-d 1-d
    return data


# --- creators -------------------------------------------------------------------------------

def tensor(data, requires_grad=False, dtype=None, device=None, name=None) -> Tensor:
    """A new leaf tensor. NumPy arrays keep their dtype; Python numbers and lists get float32.

    >>> x = tensor([[1., 2.], [3., 4.]], requires_grad=True)
    """
    return Tensor(data, requires_grad=requires_grad, dtype=dtype, device=device, name=name)


def _filled(fill, shape, dtype, device, requires_grad):
    shape = (shape,) if isinstance(shape, int) else tuple(shape)
    dev = backend.get_device(device)
    dtype = np.dtype(dtype) if dtype is not None else _default_dtype[0]
    arr = dev.xp.full(shape, fill, dtype=dtype)
    return Tensor(arr, requires_grad=requires_grad)


def zeros(*shape, dtype=None, device=None, requires_grad=False) -> Tensor:
    return _filled(0, _shape_arg(shape), dtype, device, requires_grad)


def ones(*shape, dtype=None, device=None, requires_grad=False) -> Tensor:
    return _filled(1, _shape_arg(shape), dtype, device, requires_grad)


def full(shape, fill_value, dtype=None, device=None, requires_grad=False) -> Tensor:
    return _filled(fill_value, shape, dtype, device, requires_grad)


def zeros_like(t, dtype=None, requires_grad=False) -> Tensor:
    return _filled(0, t.shape, dtype or t.dtype, t.device, requires_grad)


def ones_like(t, dtype=None, requires_grad=False) -> Tensor:
    return _filled(1, t.shape, dtype or t.dtype, t.device, requires_grad)


def arange(start, stop=None, step=1, dtype=None, device=None, requires_grad=False) -> Tensor:
    if stop is None:
        start, stop = 0, start
    arr = np.arange(start, stop, step, dtype=dtype if dtype is not None else _default_dtype[0])
    return Tensor(arr, requires_grad=requires_grad, device=device)


def _rng(rng):
    if rng is None:
        from minigrad import random
        return random.default_generator()
    if isinstance(rng, np.random.Generator):
        return rng
    if isinstance(rng, (int, np.integer)):
        return np.random.default_rng(int(rng))
    raise TypeError(f"rng must be a numpy.random.Generator or an int seed, "
                    f"got {type(rng).__name__}")


def randn(*shape, rng=None, dtype=None, device=None, requires_grad=False) -> Tensor:
    """Standard normal samples from `rng` (a numpy Generator or a seed; default: mg.random)."""
    dtype = np.dtype(dtype) if dtype is not None else _default_dtype[0]
    arr = _rng(rng).standard_normal(_shape_arg(shape)).astype(dtype)
    return Tensor(arr, requires_grad=requires_grad, device=device)


def rand(*shape, rng=None, dtype=None, device=None, requires_grad=False) -> Tensor:
    """Uniform [0, 1) samples from `rng` (a numpy Generator or a seed; default: mg.random)."""
    dtype = np.dtype(dtype) if dtype is not None else _default_dtype[0]
    arr = _rng(rng).random(_shape_arg(shape)).astype(dtype)
    return Tensor(arr, requires_grad=requires_grad, device=device)


def _shape_arg(shape):
    if len(shape) == 1 and isinstance(shape[0], (tuple, list)):
        shape = tuple(shape[0])
    for n in shape:
        if not isinstance(n, (int, np.integer)) or n < 0:
            raise ValueError(f"shape must be non-negative integers, got {shape}")
    return tuple(int(n) for n in shape)
