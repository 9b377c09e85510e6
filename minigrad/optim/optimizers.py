"""Optimizers: SGD (momentum, Nesterov), Adam, AdamW, RMSprop, Adagrad.

Each `step()` runs off the graph and writes into `p.data` in place with the array module of the
data (NumPy or CuPy), then calls `p.bump_version()`, so a graph that saved the old value refuses to
backpropagate instead of silently using the new one. Per-parameter state (momentum buffers,
moment estimates, step counts) lives on the parameter's device and follows it after `Module.to`.

>>> import minigrad as mg
>>> w = mg.nn.Parameter([1.0, -2.0])
>>> opt = mg.optim.SGD([w], lr=0.1)
>>> (w * w).sum().backward()
>>> opt.step()
>>> [round(v, 4) for v in w.tolist()]
[0.8, -1.6]
"""
from __future__ import annotations

import math

import numpy as np

from minigrad import backend, checks
from minigrad.modes import no_grad
from minigrad.tensor import Tensor

__all__ = ["Adagrad", "Adam", "AdamW", "Optimizer", "RMSprop", "SGD"]


class Optimizer:
    """Base class: parameter groups, per-parameter state, `zero_grad`, `step`, state dicts.

    `params` is an iterable of Tensors that require grad, or of dicts `{"params": [...], **hyper}`
    (parameter groups; hyperparameters missing from a group come from `defaults`). Subclasses
    write `_update(x, g, state, group)`: update the parameter's array `x` in place from its
    gradient array `g`, the parameter's state dict and its group's hyperparameters.
    """

    # names of the per-parameter state arrays, in the order they are created
    state_names: tuple[str, ...] = ()

    def __init__(self, params, defaults: dict):
        name = type(self).__name__
        if isinstance(params, Tensor):
            raise TypeError(f"{name}: params must be an iterable of Tensors (a list), got a single "
                            "Tensor; wrap it in a list")
        params = list(params)
        if not params:
            raise ValueError(f"{name}: got an empty parameter list")
        groups = params if isinstance(params[0], dict) else [{"params": params}]
        self.defaults = dict(defaults)
        self.param_groups: list[dict] = []
        self.state: dict[Tensor, dict] = {}  # Tensor hashes by identity
        seen = set()
        for group in groups:
            if not isinstance(group, dict) or "params" not in group:
                raise TypeError(f"{name}: mix of parameter groups and tensors in params")
            group = {**self.defaults, **group}
            ps = group["params"]
            group["params"] = [ps] if isinstance(ps, Tensor) else list(ps)
            for p in group["params"]:
                if not isinstance(p, Tensor):
                    raise TypeError(f"{name}: params must be Tensors, got {type(p).__name__}")
                if not p.is_leaf or p.dtype.kind != "f":
                    raise ValueError(f"{name}: can only optimize float leaf tensors, got one of "
                                     f"shape {p.shape}, dtype {p.dtype}, leaf={p.is_leaf}")
                if id(p) in seen:
                    raise ValueError(f"{name}: a parameter of shape {p.shape} appears twice")
                seen.add(id(p))
            self._check_hyper(group)
            self.param_groups.append(group)

    def _check_hyper(self, group: dict) -> None:
        name = type(self).__name__
        for key in ("lr", "eps", "weight_decay", "momentum"):
            if key in group:
                group[key] = checks.real(group[key], name, key, low=0)
        if "alpha" in group:
            group["alpha"] = checks.probability(group["alpha"], name, "alpha", one=True)
        if "nesterov" in group:
            group["nesterov"] = checks.boolean(group["nesterov"], name, "nesterov")
        if "betas" in group:
            betas = group["betas"]
            if not isinstance(betas, (tuple, list)) or len(betas) != 2:
                raise TypeError(f"{name}: betas must be a pair (beta1, beta2), got {betas!r}")
            group["betas"] = tuple(checks.probability(b, name, f"betas[{i}]")
                                   for i, b in enumerate(betas))

    def zero_grad(self) -> None:
        """Drop every parameter's gradient (set `.grad` to None)."""
        for group in self.param_groups:
            for p in group["params"]:
                p.grad = None

    def _state(self, p: Tensor) -> dict:
        st = self.state.get(p)
        if st is None:
            xp = backend.get_array_module(p.data)
            st = {"step": 0}
            for k in self.state_names:
                st[k] = xp.zeros_like(p.data)
            self.state[p] = st
        else:
            for k, a in st.items():  # the parameter moved device or changed dtype: follow it
                if k != "step" and (type(a) is not type(p.data) or a.dtype != p.data.dtype):
                    st[k] = backend.to_device(backend.to_host(a).astype(p.data.dtype),
                                              backend.device_of(p.data))
        return st

    def step(self) -> None:
        """Update every parameter that has a gradient, in place."""
        with no_grad():
            for group in self.param_groups:
                for p in group["params"]:
                    if p.grad is None:
                        continue
                    g = p.grad.data
                    if type(g) is not type(p.data):
                        raise ValueError(
                            f"{type(self).__name__}.step: a parameter of shape {p.shape} is on "
                            f"{p.device} but its gradient is on {p.grad.device}")
                    st = self._state(p)
                    st["step"] += 1
                    self._update(p.data, g, st, group)
                    p.bump_version()

    def _update(self, x, g, state: dict, group: dict) -> None:  # pragma: no cover - abstract
        raise NotImplementedError

    # --- state --------------------------------------------------------------------------------
    def state_dict(self) -> dict:
        """`{"state": {index: {"step": int, name: host array}}, "param_groups": [...]}`.

        Parameters are numbered in group order; each group lists its hyperparameters and the
        numbers of its parameters. Arrays are host NumPy copies (save with `mg.save`).
        """
        state, groups, k = {}, [], 0
        for group in self.param_groups:
            ids = []
            for p in group["params"]:
                st = self.state.get(p)
                if st is not None:
                    state[k] = {n: (backend.to_host(v).copy() if n != "step" else int(v))
                                for n, v in st.items()}
                ids.append(k)
                k += 1
            groups.append({**{n: v for n, v in group.items() if n != "params"}, "params": ids})
        return {"state": state, "param_groups": groups}

    def load_state_dict(self, state_dict: dict) -> None:
        """Restore hyperparameters and per-parameter state (onto each parameter's device)."""
        name = type(self).__name__
        try:
            groups, saved = state_dict["param_groups"], state_dict["state"]
        except (KeyError, TypeError):
            raise ValueError(f"{name}.load_state_dict: expected a dict with 'state' and "
                             "'param_groups' (from Optimizer.state_dict())") from None
        if len(groups) != len(self.param_groups):
            raise ValueError(f"{name}.load_state_dict: {len(groups)} parameter groups saved, "
                             f"this optimizer has {len(self.param_groups)}")
        params = []
        for gi, (g_saved, g_own) in enumerate(zip(groups, self.param_groups)):
            if len(g_saved["params"]) != len(g_own["params"]):
                raise ValueError(f"{name}.load_state_dict: group {gi} saved "
                                 f"{len(g_saved['params'])} parameters, this one has "
                                 f"{len(g_own['params'])}")
            params += list(zip(g_saved["params"], g_own["params"]))
        new_state = {}
        for key, p in params:
            st = saved.get(key, saved.get(str(key)))  # int keys may come back as strings
            if st is None:
                continue
            missing = [n for n in self.state_names if n not in st]
            if missing:
                raise ValueError(f"{name}.load_state_dict: state of parameter {key} lacks "
                                 f"{missing}")
            new = {"step": int(st.get("step", 0))}
            for n, a in st.items():
                if n == "step":
                    continue
                a = backend.to_host(a.data if isinstance(a, Tensor) else a)
                if tuple(a.shape) != p.shape:
                    raise ValueError(f"{name}.load_state_dict: {n!r} of parameter {key} has "
                                     f"shape {tuple(a.shape)}, the parameter {p.shape}")
                new[n] = backend.to_device(np.array(a, dtype=p.dtype), backend.device_of(p.data))
            new_state[p] = new
        for g_saved, g_own in zip(groups, self.param_groups):
            for n, v in g_saved.items():
                if n != "params":
                    g_own[n] = tuple(v) if isinstance(v, list) else v
        self.state = new_state

    def __repr__(self):
        hyper = ", ".join(f"{k}={v}" for k, v in self.defaults.items())
        return f"{type(self).__name__}({hyper})"


class SGD(Optimizer):
    """Stochastic gradient descent with optional momentum, Nesterov momentum and L2 decay.

    g = grad + weight_decay * x;  with momentum mu: b = g at the first step, then
    b = mu * b + g;  d = g + mu * b (Nesterov) or d = b;  x = x - lr * d  (PyTorch's form).

    >>> import minigrad as mg
    >>> w = mg.nn.Parameter([1.0])
    >>> opt = mg.optim.SGD([w], lr=0.1, momentum=0.9)
    """

    def __init__(self, params, lr: float, momentum: float = 0.0, nesterov: bool = False,
                 weight_decay: float = 0.0):
        momentum = checks.real(momentum, "SGD", "momentum", low=0)
        if checks.boolean(nesterov, "SGD", "nesterov") and momentum <= 0:
            raise ValueError(f"SGD: nesterov needs momentum > 0, got momentum={momentum}")
        super().__init__(params, dict(lr=lr, momentum=momentum, nesterov=nesterov,
                                      weight_decay=weight_decay))

    def _update(self, x, g, state, group):
        lr, mu, wd = group["lr"], group["momentum"], group["weight_decay"]
        if wd:
            g = g + wd * x
        if mu:
            # PyTorch starts the buffer at g; starting at 0 gives mu * 0 + g, the same thing
            buf = state.get("momentum_buffer")
            if buf is None:
                buf = state["momentum_buffer"] = backend.get_array_module(x).zeros_like(x)
            buf *= mu
            buf += g
            g = g + mu * buf if group["nesterov"] else buf
        x -= lr * g


class Adam(Optimizer):
    """Adam (Kingma & Ba, 2015) with L2 weight decay added to the gradient.

    g = grad + weight_decay * x;  m = b1 m + (1 - b1) g;  v = b2 v + (1 - b2) g^2;
    x = x - lr * (m / (1 - b1^t)) / (sqrt(v / (1 - b2^t)) + eps)   at step t = 1, 2, ...

    >>> import minigrad as mg
    >>> w = mg.nn.Parameter([1.0])
    >>> opt = mg.optim.Adam([w], lr=1e-3)
    """

    state_names = ("exp_avg", "exp_avg_sq")
    decoupled = False

    def __init__(self, params, lr: float = 1e-3, betas: tuple[float, float] = (0.9, 0.999),
                 eps: float = 1e-8, weight_decay: float = 0.0):
        super().__init__(params, dict(lr=lr, betas=betas, eps=eps, weight_decay=weight_decay))

    def _update(self, x, g, state, group):
        lr, (b1, b2), eps, wd = group["lr"], group["betas"], group["eps"], group["weight_decay"]
        xp = backend.get_array_module(x)
        if wd:
            if self.decoupled:
                x *= 1.0 - lr * wd
            else:
                g = g + wd * x
        m, v, t = state["exp_avg"], state["exp_avg_sq"], state["step"]
        # one scratch array reused through the step: fresh temporaries cost more than the maths
        tmp = xp.multiply(g, 1.0 - b1)
        m *= b1
        m += tmp
        xp.multiply(g, g, out=tmp)
        tmp *= 1.0 - b2
        v *= b2
        v += tmp
        # the bias corrections fold into two scalars: lr / (1 - b1^t) and sqrt(1 - b2^t)
        xp.sqrt(v, out=tmp)
        tmp *= 1.0 / math.sqrt(1.0 - b2 ** t)
        tmp += eps
        xp.divide(m, tmp, out=tmp)
        tmp *= lr / (1.0 - b1 ** t)
        x -= tmp


class AdamW(Adam):
    """Adam with decoupled weight decay (Loshchilov & Hutter, 2019).

    x = x (1 - lr * weight_decay), then the Adam step on the plain gradient.

    >>> import minigrad as mg
    >>> w = mg.nn.Parameter([1.0])
    >>> opt = mg.optim.AdamW([w], lr=1e-3, weight_decay=0.01)
    """

    decoupled = True

    def __init__(self, params, lr: float = 1e-3, betas: tuple[float, float] = (0.9, 0.999),
                 eps: float = 1e-8, weight_decay: float = 1e-2):
        super().__init__(params, lr=lr, betas=betas, eps=eps, weight_decay=weight_decay)


class RMSprop(Optimizer):
    """RMSprop (Hinton, 2012), with optional momentum and L2 decay (PyTorch's form).

    g = grad + weight_decay * x;  s = alpha s + (1 - alpha) g^2;  d = g / (sqrt(s) + eps);
    with momentum mu: b = mu b + d, x = x - lr * b;  otherwise x = x - lr * d.

    >>> import minigrad as mg
    >>> w = mg.nn.Parameter([1.0])
    >>> opt = mg.optim.RMSprop([w], lr=1e-2)
    """

    state_names = ("square_avg",)

    def __init__(self, params, lr: float = 1e-2, alpha: float = 0.99, eps: float = 1e-8,
                 momentum: float = 0.0, weight_decay: float = 0.0):
        super().__init__(params, dict(lr=lr, alpha=alpha, eps=eps, momentum=momentum,
                                      weight_decay=weight_decay))

    def _update(self, x, g, state, group):
        lr, alpha, eps = group["lr"], group["alpha"], group["eps"]
        mu, wd = group["momentum"], group["weight_decay"]
        xp = backend.get_array_module(x)
        if wd:
            g = g + wd * x
        s = state["square_avg"]
        s *= alpha
        s += (1.0 - alpha) * (g * g)
        denom = xp.sqrt(s)
        denom += eps
        if mu:
            b = state.get("momentum_buffer")
            if b is None:  # only kept when momentum is used
                b = state["momentum_buffer"] = xp.zeros_like(x)
            b *= mu
            b += g / denom
            x -= lr * b
        else:
            x -= lr * (g / denom)


class Adagrad(Optimizer):
    """Adagrad (Duchi et al., 2011).

    g = grad + weight_decay * x;  s = s + g^2;  x = x - lr * g / (sqrt(s) + eps).

    >>> import minigrad as mg
    >>> w = mg.nn.Parameter([1.0])
    >>> opt = mg.optim.Adagrad([w], lr=1e-2)
    """

    state_names = ("sum",)

    def __init__(self, params, lr: float = 1e-2, eps: float = 1e-10, weight_decay: float = 0.0):
        super().__init__(params, dict(lr=lr, eps=eps, weight_decay=weight_decay))

    def _update(self, x, g, state, group):
        lr, eps, wd = group["lr"], group["eps"], group["weight_decay"]
        xp = backend.get_array_module(x)
        if wd:
            g = g + wd * x
        s = state["sum"]
        s += g * g
        denom = xp.sqrt(s)
        denom += eps
        x -= lr * (g / denom)

