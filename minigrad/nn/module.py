"""`Module` and `Parameter`: parameters and submodules registered by attribute assignment."""
from __future__ import annotations

from collections import OrderedDict

import numpy as np

from minigrad import backend
from minigrad.engine import state
from minigrad.tensor import Tensor


class Parameter(Tensor):
    """A leaf tensor that a Module registers and optimizers update (requires_grad=True)."""

    __slots__ = ()

    def __init__(self, data, requires_grad=True, dtype=None, device=None, name=None):
        super().__init__(data, requires_grad=requires_grad, dtype=dtype, device=device, name=name)

    def __repr__(self):
        return "Parameter containing:\n" + super().__repr__()


class Module:
    """Base class of layers and cells: assign Parameters and Modules as attributes to register them.

    Calling a module runs `forward` inside a scope tagged with its dotted path, so drawn graphs can
    be grouped by module.
    """

    def __init__(self):
        object.__setattr__(self, "_parameters", OrderedDict())
        object.__setattr__(self, "_modules", OrderedDict())
        object.__setattr__(self, "_buffers", OrderedDict())
        object.__setattr__(self, "training", True)
        object.__setattr__(self, "_path", type(self).__name__)

    def __setattr__(self, name, value):
        if "_parameters" not in self.__dict__:
            raise RuntimeError(f"{type(self).__name__}: call super().__init__() before assigning "
                               "parameters or submodules")
        for d in (self._parameters, self._modules, self._buffers):
            d.pop(name, None)
        if isinstance(value, Parameter):
            self._parameters[name] = value
            if value.name is None:
                value.name = name
        elif isinstance(value, Module):
            self._modules[name] = value
        object.__setattr__(self, name, value)

    def __delattr__(self, name):
        for d in (self._parameters, self._modules, self._buffers):
            d.pop(name, None)
        object.__delattr__(self, name)

    def register_buffer(self, name: str, value: Tensor) -> None:
        """A tensor saved in the state dict and moved with `.to()`, but not trained."""
        self.__setattr__(name, value)
        self._buffers[name] = value

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
    def named_modules(self, prefix=""):
        """(dotted path, module) for this module and every submodule, depth first."""
        seen = set()
        stack = [(prefix, self)]
        while stack:
            path, m = stack.pop()
            if id(m) in seen:
                continue
            seen.add(id(m))
            yield path, m
            children = list(m._modules.items())
            for name, child in reversed(children):
                stack.append((f"{path}.{name}" if path else name, child))

    def modules(self):
        return [m for _, m in self.named_modules()]

    def children(self):
        return list(self._modules.values())

    def named_parameters(self, prefix=""):
        """(dotted path, Parameter), each parameter once even when shared."""
        seen = set()
        for path, m in self.named_modules(prefix):
            for name, p in m._parameters.items():
                if id(p) not in seen:
                    seen.add(id(p))
                    yield (f"{path}.{name}" if path else name), p

    def parameters(self):
        return [p for _, p in self.named_parameters()]

    def named_buffers(self, prefix=""):
        for path, m in self.named_modules(prefix):
            for name, b in m._buffers.items():
                yield (f"{path}.{name}" if path else name), b

    def name_parameters(self, root: str | None = None) -> "Module":
        """Name every parameter by its dotted path (e.g. `cell.weight_hh`) for drawing graphs."""
        root = root or ""
        for path, m in self.named_modules(root):
            object.__setattr__(m, "_path", path or type(m).__name__)
        for path, p in self.named_parameters(root):
            p.name = path
        return self

    def zero_grad(self) -> None:
        for p in self.parameters():
            p.grad = None

    def train(self, mode: bool = True) -> "Module":
        for m in self.modules():
            object.__setattr__(m, "training", mode)
        return self

    def eval(self) -> "Module":
        return self.train(False)

    def num_parameters(self) -> int:
        return int(sum(p.data.size for p in self.parameters()))

    # --- devices and dtypes -------------------------------------------------------------------
    def to(self, device=None, dtype=None) -> "Module":
        """Move (and/or cast) every parameter and buffer in place; returns self."""
        dev = backend.get_device(device) if device is not None else None
        for t in list(self.parameters()) + [b for _, b in self.named_buffers()]:
            data = t.data
            if dtype is not None and np.dtype(dtype).kind == "f" and data.dtype.kind == "f":
                data = data.astype(dtype)
            if dev is not None:
                data = backend.to_device(data, dev)
            t.data = data
            if t.grad is not None:
                t.grad = None
        return self

    # --- state --------------------------------------------------------------------------------
    def state_dict(self) -> "OrderedDict[str, np.ndarray]":
        """Dotted path -> host NumPy copy of every parameter and buffer."""
        out = OrderedDict()
        for path, p in self.named_parameters():
            out[path] = p.numpy()
        for path, b in self.named_buffers():
            out[path] = b.numpy()
        return out

    def load_state_dict(self, state, strict: bool = True) -> None:
        """Copy arrays into the parameters; errors name missing, unexpected and misshapen keys."""
        own = dict(self.named_parameters())
        own.update(dict(self.named_buffers()))
        missing = [k for k in own if k not in state]
        unexpected = [k for k in state if k not in own]
        if strict and (missing or unexpected):
            raise KeyError(f"{type(self).__name__}.load_state_dict: missing keys {missing}, "
                           f"unexpected keys {unexpected}")
        bad = []
        for k, t in own.items():
            if k in state:
                v = state[k]
                v = v.numpy() if isinstance(v, Tensor) else np.asarray(v)
                if tuple(v.shape) != t.shape:
                    bad.append(f"{k}: expected {t.shape}, got {tuple(v.shape)}")
        if bad:
            raise ValueError(f"{type(self).__name__}.load_state_dict: shape mismatch: "
                             + "; ".join(bad))
        for k, t in own.items():
            if k in state:
                v = state[k]
                v = v.numpy() if isinstance(v, Tensor) else np.asarray(v)
                t.data = backend.to_device(v.astype(t.dtype, copy=True), backend.device_of(t.data))
                t._version += 1

    def extra_repr(self) -> str:
        return ""

    def __repr__(self):
        lines = [f"{type(self).__name__}({self.extra_repr()}"]
        for name, m in self._modules.items():
            sub = repr(m).replace("\n", "\n  ")
            lines.append(f"  ({name}): {sub}")
        return "\n".join(lines) + (")" if len(lines) == 1 else "\n)")
