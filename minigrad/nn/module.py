"""`Module` and `Parameter`: parameters and submodules registered by attribute assignment.

>>> import minigrad as mg
>>> class Affine(mg.nn.Module):
...     def __init__(self):
...         super().__init__()
...         self.w = mg.nn.Parameter([[1.0, 2.0]])
...     def forward(self, x):
...         return x @ self.w.T
>>> [name for name, _ in Affine().named_parameters()]
['w']
"""
from __future__ import annotations

from collections import OrderedDict
from typing import Callable, Iterator, NamedTuple

import numpy as np

from minigrad import backend
from minigrad.modes import state
from minigrad.tensor import Tensor


class Parameter(Tensor):
    """A leaf tensor that a Module registers and optimizers update (requires_grad=True)."""

    __slots__ = ()

    def __init__(self, data, requires_grad=True, dtype=None, device=None, name=None):
        super().__init__(data, requires_grad=requires_grad, dtype=dtype, device=device, name=name)

    def __repr__(self):
        return "Parameter containing:\n" + super().__repr__()


class IncompatibleKeys(NamedTuple):
    """What `load_state_dict(strict=False)` skipped: keys the module has but the state lacks, and
    keys the state has but the module lacks."""

    missing: list
    unexpected: list


def _join(prefix: str, name: str) -> str:
    return f"{prefix}.{name}" if prefix else name


class Module:
    """Base class of layers and cells: assign Parameters and Modules as attributes to register them.

    Calling a module runs `forward` inside a scope tagged `("module", path)`, where `path` is the
    dotted path from the outermost module (`"layers.0"`; the outermost one uses its class name), so
    drawn graphs can be grouped by module. Paths follow registration order and stay stable.
    """

    def __init__(self):
        object.__setattr__(self, "_parameters", OrderedDict())
        object.__setattr__(self, "_modules", OrderedDict())
        object.__setattr__(self, "_buffers", OrderedDict())
        object.__setattr__(self, "training", True)
        object.__setattr__(self, "_prefix", "")  # dotted path from the root; "" for a root
        object.__setattr__(self, "_path", type(self).__name__)

    def __setattr__(self, name, value):
        if "_parameters" not in self.__dict__:
            raise RuntimeError(f"{type(self).__name__}: call super().__init__() before assigning "
                               "parameters or submodules")
        if name in self._buffers and (value is None or isinstance(value, Tensor)) \
                and not isinstance(value, Parameter):
            self._buffers[name] = value  # a buffer stays a buffer when reassigned
            object.__setattr__(self, name, value)
            return
        for d in (self._parameters, self._modules, self._buffers):
            d.pop(name, None)
        if isinstance(value, Parameter):
            self._parameters[name] = value
            if value.name is None:
                value.name = name
        elif isinstance(value, Module):
            self._modules[name] = value
            value._set_prefix(_join(self._prefix, name))
        object.__setattr__(self, name, value)

    def __delattr__(self, name):
        for d in (self._parameters, self._modules, self._buffers):
            d.pop(name, None)
        object.__delattr__(self, name)

    def _set_prefix(self, prefix: str) -> None:
        # re-path the whole subtree: a module built bottom-up learns its place only when attached
        for rel, m in self.named_modules():
            full = _join(prefix, rel) if rel else prefix
            object.__setattr__(m, "_prefix", full)
            object.__setattr__(m, "_path", full or type(m).__name__)

    @property
    def module_path(self) -> str:
        """The module's dotted path in the tree it belongs to (its class name at the root): the
        ("module", path) tag its ops carry, which the graph viewer groups by."""
        return self._path

    def register_buffer(self, name: str, value: Tensor | None) -> None:
        """A tensor saved in the state dict and moved with `.to()`, but not trained."""
        if value is not None and not isinstance(value, Tensor):
            raise TypeError(f"{type(self).__name__}.register_buffer: {name!r} must be a Tensor or "
                            f"None, got {type(value).__name__}")
        self.__setattr__(name, None)
        self._buffers[name] = value
        object.__setattr__(self, name, value)

    # --- running ------------------------------------------------------------------------------
    def forward(self, *args, **kwargs):  # pragma: no cover - abstract
        raise NotImplementedError(f"{type(self).__name__} must define forward()")

    def __call__(self, *args, **kwargs):
        prev = state.tags  # a with-block would cost more than the rest of a small cell step
        state.tags = prev + (("module", self._path),)
        try:
            return self.forward(*args, **kwargs)
        finally:
            state.tags = prev

    # --- traversal ----------------------------------------------------------------------------
    def named_modules(self, prefix: str = "") -> Iterator[tuple[str, "Module"]]:
        """(dotted path, module) for this module and every submodule, depth first, each once."""
        seen = set()
        stack = [(prefix, self)]
        while stack:  # iterative: deep stacks of cells must not hit the recursion limit
            path, m = stack.pop()
            if id(m) in seen:
                continue
            seen.add(id(m))
            yield path, m
            for name, child in reversed(m._modules.items()):
                stack.append((_join(path, name), child))

    def modules(self) -> list["Module"]:
        """This module and every submodule, depth first."""
        return [m for _, m in self.named_modules()]

    def named_children(self) -> Iterator[tuple[str, "Module"]]:
        return iter(list(self._modules.items()))

    def children(self) -> list["Module"]:
        """The direct submodules, in registration order."""
        return list(self._modules.values())

    def named_parameters(self, prefix: str = "") -> Iterator[tuple[str, Parameter]]:
        """(dotted path, Parameter), each parameter once even when shared, in registration order."""
        seen = set()
        for path, m in self.named_modules(prefix):
            for name, p in m._parameters.items():
                if id(p) not in seen:
                    seen.add(id(p))
                    yield _join(path, name), p

    def parameters(self) -> list[Parameter]:
        """Every parameter once (a list, so it can be passed to an optimizer and reused)."""
        return [p for _, p in self.named_parameters()]

    def named_buffers(self, prefix: str = "") -> Iterator[tuple[str, Tensor]]:
        for path, m in self.named_modules(prefix):
            for name, b in m._buffers.items():
                if b is not None:
                    yield _join(path, name), b

    def buffers(self) -> list[Tensor]:
        return [b for _, b in self.named_buffers()]

    def name_parameters(self, root: str | None = None) -> "Module":
        """Name every parameter by its dotted path (e.g. `cell.weight_hh`) for drawing graphs.

        With `root`, paths (parameter names and module tags) start with it: `root.cell.weight_hh`.
        """
        self._set_prefix(root or "")
        for path, p in self.named_parameters(root or ""):
            p.name = path
        return self

    def apply(self, fn: Callable[["Module"], object]) -> "Module":
        """Call `fn(module)` on every submodule, children first, then on self (as PyTorch)."""
        for m in reversed(self.modules()):
            fn(m)
        return self

    def requires_grad_(self, flag: bool = True) -> "Module":
        """Turn gradient tracking of every parameter on or off (freeze a part of a model)."""
        for p in self.parameters():
            p.requires_grad_(flag)
        return self

    def zero_grad(self) -> None:
        """Drop every parameter's gradient (set `.grad` to None)."""
        for p in self.parameters():
            p.grad = None

    def train(self, mode: bool = True) -> "Module":
        """Training mode (dropout active) for this module and all submodules; returns self."""
        if not isinstance(mode, bool):
            raise TypeError(f"{type(self).__name__}.train: mode must be a bool, got {mode!r}")
        for m in self.modules():
            object.__setattr__(m, "training", mode)
        return self

    def eval(self) -> "Module":
        """Evaluation mode (dropout off); same as `train(False)`."""
        return self.train(False)

    def num_parameters(self) -> int:
        return int(sum(p.data.size for p in self.parameters()))

    # --- devices and dtypes -------------------------------------------------------------------
    def to(self, device=None, dtype=None) -> "Module":
        """Move (and/or cast floats to `dtype`) every parameter, gradient and buffer; returns self.

        The Parameter objects stay the same, so an optimizer built before the move keeps working
        (its state follows on its next step).

        >>> import minigrad as mg
        >>> m = mg.nn.Linear(2, 3).to(dtype="float64")
        >>> m.weight.dtype
        dtype('float64')
        """
        dev = backend.get_device(device) if device is not None else None
        if dtype is not None and np.dtype(dtype).kind != "f":
            raise TypeError(f"{type(self).__name__}.to: dtype must be a float dtype, got "
                            f"{np.dtype(dtype)}")

        def move(data):
            if dtype is not None and data.dtype.kind == "f":
                data = data.astype(dtype, copy=False)
            return backend.to_device(data, dev) if dev is not None else data

        for t in self.parameters() + self.buffers():
            t.data = move(t.data)
            if t.grad is not None:
                t.grad.data = move(t.grad.data)
        return self

    # --- state --------------------------------------------------------------------------------
    def state_dict(self) -> "OrderedDict[str, np.ndarray]":
        """Dotted path -> host NumPy copy of every parameter and buffer (save with `mg.save`)."""
        out = OrderedDict()
        for path, p in self.named_parameters():
            out[path] = p.numpy()
        for path, b in self.named_buffers():
            out[path] = b.numpy()
        return out

    def load_state_dict(self, state_dict, strict: bool = True) -> IncompatibleKeys:
        """Copy arrays (NumPy, device arrays or Tensors) into the parameters and buffers, in place.

        Values are cast to each parameter's dtype and copied to its device. With `strict` (the
        default) missing or unexpected keys raise ValueError naming them; shape mismatches always
        raise. Returns the (missing, unexpected) keys.
        """
        cls = type(self).__name__
        if not hasattr(state_dict, "keys"):
            raise TypeError(f"{cls}.load_state_dict: expected a dict of arrays, got "
                            f"{type(state_dict).__name__}")
        own = OrderedDict(self.named_parameters())
        own.update(self.named_buffers())
        missing = [k for k in own if k not in state_dict]
        unexpected = [k for k in state_dict if k not in own]
        if strict and (missing or unexpected):
            raise ValueError(f"{cls}.load_state_dict: missing keys {missing}, unexpected keys "
                             f"{unexpected}; pass strict=False to load the keys that match")
        values, bad = {}, []
        for k, t in own.items():
            if k in state_dict:
                v = state_dict[k]
                v = v.data if isinstance(v, Tensor) else v
                v = backend.to_host(v) if backend.is_array(v) else np.asarray(v)
                if v.dtype.kind not in "biuf":
                    raise TypeError(f"{cls}.load_state_dict: {k!r} holds dtype {v.dtype}, "
                                    "expected numbers")
                if tuple(v.shape) != t.shape:
                    bad.append(f"{k}: expected {t.shape}, got {tuple(v.shape)}")
                values[k] = v
        if bad:
            raise ValueError(f"{cls}.load_state_dict: shape mismatch: " + "; ".join(bad))
        for k, v in values.items():
            t = own[k]
            # in place, and counted, so a graph that saved the old values refuses to backprop
            t.data[...] = backend.to_device(v.astype(t.dtype), backend.device_of(t.data))
            t.bump_version()
        return IncompatibleKeys(missing, unexpected)

    def extra_repr(self) -> str:
        return ""

    def __repr__(self):
        lines = [f"{type(self).__name__}({self.extra_repr()}"]
        for name, m in self._modules.items():
            sub = repr(m).replace("\n", "\n  ")
            lines.append(f"  ({name}): {sub}")
        return "\n".join(lines) + (")" if len(lines) == 1 else "\n)")
