"""`Tensor`: an array (NumPy or CuPy) plus what autograd needs to know about it, and its operators.

Every operator applies an op of `minigrad.ops`: `x + y` is `Add.apply(x, y)`, written below as
`__add__`. Shape, conversions, the named methods (`x.exp()`) and in-place changes come from
`TensorMethods` (minigrad.tensor_methods).
"""
from __future__ import annotations

import numbers
import weakref

import numpy as np

from minigrad import backend, checks, engine, functions as F
from minigrad.engine import make_tensor, run_backward
from minigrad.ops import Abs, Add, Div, MatMul, Mul, Neg, Pow, Sub
from minigrad.tensor_methods import TensorMethods


class Tensor(TensorMethods):
    """An n-dimensional array that can record the ops applied to it for reverse-mode autodiff.

    `data` is the raw backend array (NumPy or CuPy), writable in place and assignable; `grad` is a
    Tensor or None. Non-leaf tensors point at the node (`Function`) that produced them.
    """

    __slots__ = ("data", "grad", "requires_grad", "_node", "_idx", "_version", "_hooks", "name",
                 "_transposed", "__weakref__")  # _transposed: see TensorMethods.T (unset at first)
    __array_priority__ = 1000  # so ndarray (op) Tensor defers to Tensor's reflected operators

    def __init__(self, data, requires_grad=False, dtype=None, device=None, name=None):
        data = backend.as_array(data, dtype, device)
        requires_grad = checks.boolean(requires_grad, "tensor", "requires_grad")
        if requires_grad and data.dtype.kind not in "fc":
            raise TypeError(f"tensor: only float tensors can require gradients, got {data.dtype}")
        if name is not None and not isinstance(name, str):
            raise TypeError(f"tensor: name must be a str or None, got {type(name).__name__}")
        make_tensor(data, requires_grad, into=self)
        self.name = name

    def __hash__(self):
        return id(self)

    def __getstate__(self):
        """Pickling and copying keep every field but `_transposed` (a leaf's kept transpose:
        see TensorMethods.T), which refers weakly to a graph node and is made again on use."""
        attributes, fields = super().__getstate__()  # (__dict__ of a subclass or None, slots)
        fields.pop("_transposed", None)
        return attributes, fields

    def detach(self) -> Tensor:
        """The same data, cut from the graph."""
        return make_tensor(self.data)

    # --- autograd --------------------------------------------------------------------------
    def backward(self, grad=None, retain_graph=None, create_graph=False) -> None:
        """Accumulate d(self)/d(leaf) into every leaf's `.grad` (grad defaults to 1 for a scalar).

        `grad` is d(loss)/d(self), of self's shape. The graph's saved arrays are freed unless
        `retain_graph=True` (the default with `create_graph=True`, which records the backward
        pass itself, so each `.grad` has a graph and can be differentiated again).

        >>> x = Tensor([1.0, 2.0], requires_grad=True)
        >>> (x * x).sum().backward()
        >>> x.grad
        tensor([2., 4.], dtype=float32)
        """
        if not self.requires_grad:
            raise RuntimeError("backward: this tensor does not require grad and has no graph "
                               "(did you create it under no_grad, or from tensors without "
                               "requires_grad=True?)")
        create_graph = checks.boolean(create_graph, "backward", "create_graph")
        keep = create_graph if retain_graph is None else checks.boolean(
            retain_graph, "backward", "retain_graph")
        seed = seed_grad(self, grad, "backward", create_graph)
        engine.finish_leaves(run_backward([self], [seed], retain_graph=keep,
                                          create_graph=create_graph))

    def register_hook(self, fn):
        """Call `fn(grad) -> Tensor | None` with this tensor's gradient during backward.

        A returned tensor replaces the gradient. Returns a handle with `.remove()`.
        """
        if not callable(fn):
            raise TypeError(f"register_hook: fn must be callable, got {type(fn).__name__}")
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
        return HookHandle(hooks, fn)

    def retain_grad(self) -> None:
        """Keep this non-leaf tensor's gradient in `.grad` after backward."""
        if self._node is None:
            return
        ref = weakref.ref(self)

        def keep(g):
            t = ref()
            if t is not None:
                t.grad = g if t.grad is None else t.grad + g

        self.register_hook(keep)

    def requires_grad_(self, flag=True) -> Tensor:
        flag = checks.boolean(flag, "requires_grad_", "flag")
        if flag and self.data.dtype.kind not in "fc":
            raise TypeError(f"requires_grad_: only float tensors can require gradients, "
                            f"got {self.data.dtype}")
        if self._node is not None and not flag:
            raise RuntimeError("requires_grad_(False) on a non-leaf tensor: use .detach()")
        self.requires_grad = flag
        return self
    # --- operators -------------------------------------------------------------------------
    def __add__(self, other):
        return Add.apply(self, other)

    def __radd__(self, other):
        return Add.apply(other, self)

    def __sub__(self, other):
        return Sub.apply(self, other)

    def __rsub__(self, other):
        return Sub.apply(other, self)

    def __mul__(self, other):
        return Mul.apply(self, other)

    def __rmul__(self, other):
        return Mul.apply(other, self)

    def __truediv__(self, other):
        return Div.apply(self, other)

    def __rtruediv__(self, other):
        return Div.apply(other, self)

    def __pow__(self, other):
        return Pow.apply(self, other)

    def __rpow__(self, other):
        return Pow.apply(other, self)

    def __matmul__(self, other):
        return MatMul.apply(self, other)

    def __rmatmul__(self, other):
        return MatMul.apply(other, self)

    def __neg__(self):
        return Neg.apply(self)

    def __pos__(self):
        return self

    def __abs__(self):
        return Abs.apply(self)

    def __getitem__(self, index):
        return F.getitem(self, index)

    # comparisons give constant boolean tensors
    def _compare(self, other, ufunc):
        try:
            r = ufunc(self.data, other.data if isinstance(other, Tensor) else other)
        except (TypeError, ValueError) as e:
            raise engine.op_error(f"comparison ({ufunc.__name__})", e,
                                  (self.data, getattr(other, "data", other))) from e
        if r is NotImplemented or not hasattr(r, "dtype"):  # e.g. a string: no ufunc loop
            raise TypeError(f"comparison ({ufunc.__name__}): cannot compare a Tensor with "
                            f"{type(other).__name__}")
        return make_tensor(r if backend.is_array(r) else np.asarray(r))

    def __lt__(self, other):
        return self._compare(other, backend.get_array_module(self.data).less)

    def __le__(self, other):
        return self._compare(other, backend.get_array_module(self.data).less_equal)

    def __gt__(self, other):
        return self._compare(other, backend.get_array_module(self.data).greater)

    def __ge__(self, other):
        return self._compare(other, backend.get_array_module(self.data).greater_equal)

    def __eq__(self, other):
        return self._compare(other, backend.get_array_module(self.data).equal)

    def __ne__(self, other):
        return self._compare(other, backend.get_array_module(self.data).not_equal)


engine.use_tensor_class(Tensor)


class HookHandle:
    """What `register_hook` returns: `.remove()` takes the hook off again."""

    def __init__(self, hooks, fn):
        self.hooks, self.fn = hooks, fn

    def remove(self):
        if self.fn in self.hooks:
            self.hooks.remove(self.fn)


def seed_grad(t, grad, opname, create_graph=False):
    """The gradient a backward pass starts from at output `t`: 1 for a single element, else
    `grad` checked against t's shape; a Tensor under create_graph (its graph kept), else an
    array."""
    if grad is not None and not (isinstance(grad, (Tensor, numbers.Number, list, tuple))
                                 or backend.is_array(grad)):
        raise TypeError(f"{opname}: grad must be a Tensor or an array, got "
                        f"{type(grad).__name__}")
    if grad is None:
        if t.data.size != 1:
            raise RuntimeError(f"{opname}: grad can be implicit only for a single-element output; "
                               f"this one has shape {t.shape}: pass grad=")
        g = backend.get_array_module(t.data).ones_like(t.data)
        return make_tensor(g) if create_graph else g
    if isinstance(grad, Tensor) and create_graph:
        g = grad
    else:
        g = grad.data if isinstance(grad, Tensor) else grad
        if not isinstance(g, backend.device_of(t.data).array_type):
            g = backend.as_array(g, t.dtype, t.device, where=opname)
        g = make_tensor(g) if create_graph else g
    if tuple(g.shape) != tuple(t.data.shape):
        raise ValueError(f"{opname}: grad of shape {tuple(g.shape)} for a tensor of shape "
                         f"{t.shape}")
    return g
