"""Layers: Linear, Embedding, Dropout, activations, and the containers Sequential and ModuleList.

Every layer with parameters takes `rng=` (a numpy Generator or an int seed; default: the
generator of `mg.random`) for a reproducible init, and `dtype=` / `device=` for where they live.
"""
from __future__ import annotations

import math
from typing import Iterable

import numpy as np

from minigrad import checks
from minigrad import functions as F
from minigrad.nn.module import Module, Parameter
from minigrad.backend import get_default_dtype
from minigrad.random import as_generator as _rng
from minigrad.tensor import Tensor


def _dtype(dtype, cls) -> np.dtype:
    try:
        d = np.dtype(dtype) if dtype is not None else get_default_dtype()
    except TypeError:
        raise TypeError(f"{cls}: dtype {dtype!r} is not a NumPy dtype") from None
    if d.kind != "f":
        raise TypeError(f"{cls}: parameters need a float dtype, got {d}")
    return d


def _positive(value, what, cls) -> int:
    return checks.integer(value, cls, what, low=1)


class Linear(Module):
    """out = x @ weight.T + bias, for x of shape (..., in_features).

    weight (out_features, in_features) and bias (out_features,) start uniform in
    (-1/sqrt(in_features), 1/sqrt(in_features)), as in PyTorch.

    >>> import minigrad as mg
    >>> layer = mg.nn.Linear(3, 2, rng=0)
    >>> layer(mg.ones(4, 3)).shape
    (4, 2)
    """

    def __init__(self, in_features: int, out_features: int, bias: bool = True, *, rng=None,
                 dtype=None, device=None):
        super().__init__()
        self.in_features = _positive(in_features, "in_features", "Linear")
        self.out_features = _positive(out_features, "out_features", "Linear")
        dtype = _dtype(dtype, "Linear")
        rng = _rng(rng)
        bound = 1.0 / math.sqrt(self.in_features)
        w = rng.uniform(-bound, bound, (self.out_features, self.in_features))
        self.weight = Parameter(w.astype(dtype), device=device)
        if bias:
            self.bias = Parameter(rng.uniform(-bound, bound, self.out_features).astype(dtype),
                                  device=device)
        else:
            self.bias = None

    def forward(self, x: Tensor) -> Tensor:
        if not isinstance(x, Tensor):
            raise TypeError(f"Linear: input must be a Tensor, got {type(x).__name__}")
        if x.shape[-1:] != (self.in_features,):
            raise ValueError(f"Linear: input of shape {x.shape} does not end in in_features="
                             f"{self.in_features}")
        out = F.matmul(x, self.weight.T)
        return out if self.bias is None else out + self.bias

    def extra_repr(self) -> str:
        return (f"in_features={self.in_features}, out_features={self.out_features}, "
                f"bias={self.bias is not None}")


class Embedding(Module):
    """out = weight[indices]: a learned row of weight (num_embeddings, embedding_dim) per index.

    Integer indices of any shape give out of shape (*indices.shape, embedding_dim); the rows start
    standard normal, as in PyTorch.

    >>> import minigrad as mg
    >>> emb = mg.nn.Embedding(10, 4, rng=0)
    >>> emb([[1, 2, 3]]).shape
    (1, 3, 4)
    """

    def __init__(self, num_embeddings: int, embedding_dim: int, *, rng=None, dtype=None,
                 device=None):
        super().__init__()
        self.num_embeddings = _positive(num_embeddings, "num_embeddings", "Embedding")
        self.embedding_dim = _positive(embedding_dim, "embedding_dim", "Embedding")
        dtype = _dtype(dtype, "Embedding")
        w = _rng(rng).standard_normal((self.num_embeddings, self.embedding_dim))
        self.weight = Parameter(w.astype(dtype), device=device)

    def forward(self, indices) -> Tensor:
        return F.embedding(self.weight, indices)

    def extra_repr(self) -> str:
        return f"{self.num_embeddings}, {self.embedding_dim}"


class Dropout(Module):
    """out = x * mask / (1 - p) with mask ~ Bernoulli(1 - p) while training; out = x in eval mode.

    The mask is drawn from the default generator (`mg.random`), so `mg.manual_seed` makes it
    reproducible and checkpointing can replay it.

    >>> import minigrad as mg
    >>> drop = mg.nn.Dropout(0.5).eval()
    >>> drop(mg.ones(3)).tolist()
    [1.0, 1.0, 1.0]
    """

    def __init__(self, p: float = 0.5):
        super().__init__()
        self.p = checks.probability(p, "Dropout", "p")

    def forward(self, x: Tensor) -> Tensor:
        return F.dropout(x, self.p, training=self.training)

    def extra_repr(self) -> str:
        return f"p={self.p}"


class Tanh(Module):
    """out = tanh(x)"""

    def forward(self, x: Tensor) -> Tensor:
        return F.tanh(x)


class ReLU(Module):
    """out = max(x, 0)"""

    def forward(self, x: Tensor) -> Tensor:
        return F.relu(x)


class Sigmoid(Module):
    """out = 1 / (1 + exp(-x))"""

    def forward(self, x: Tensor) -> Tensor:
        return F.sigmoid(x)


class ModuleList(Module):
    """A list of modules registered under the names "0", "1", ... (a stack of RNN layers).

    >>> import minigrad as mg
    >>> layers = mg.nn.ModuleList([mg.nn.Linear(2, 2, rng=k) for k in range(3)])
    >>> [name for name, _ in layers.named_parameters()][:3]
    ['0.weight', '0.bias', '1.weight']
    """

    def __init__(self, modules: Iterable[Module] | None = None):
        super().__init__()
        if modules is not None:
            self.extend(modules)

    def _check(self, m):
        if not isinstance(m, Module):
            raise TypeError(f"{type(self).__name__}: expected a Module, got {type(m).__name__}")
        return m

    def append(self, module: Module) -> "ModuleList":
        setattr(self, str(len(self)), self._check(module))
        return self

    def extend(self, modules: Iterable[Module]) -> "ModuleList":
        for m in modules:
            self.append(m)
        return self

    def _index(self, i):
        n = len(self)
        if not isinstance(i, (int, np.integer)) or not -n <= i < n:
            raise IndexError(f"{type(self).__name__}: index {i!r} out of range for {n} modules")
        return str(int(i) % n)

    def __getitem__(self, i):
        if isinstance(i, slice):
            return list(self._modules.values())[i]
        return self._modules[self._index(i)]

    def __setitem__(self, i, module: Module):
        setattr(self, self._index(i), self._check(module))

    def __len__(self) -> int:
        return len(self._modules)

    def __iter__(self):
        return iter(list(self._modules.values()))

    def forward(self, *args, **kwargs):
        raise NotImplementedError("ModuleList has no forward: iterate over it and call each "
                                  "module (or use Sequential)")


class Sequential(ModuleList):
    """out = modules[-1](... modules[1](modules[0](x))): the modules applied in order.

    >>> import minigrad as mg
    >>> net = mg.nn.Sequential(mg.nn.Linear(3, 8, rng=0), mg.nn.Tanh(), mg.nn.Linear(8, 1, rng=1))
    >>> net(mg.ones(5, 3)).shape
    (5, 1)
    """

    def __init__(self, *modules: Module):
        super().__init__(modules)

    def forward(self, x):
        for m in self._modules.values():
            x = m(x)
        return x


class ParameterList(Module):
    """A list of Parameters registered under the names "0", "1", ..."""

    def __init__(self, parameters: Iterable[Parameter] | None = None):
        super().__init__()
        for p in parameters or ():
            self.append(p)

    def append(self, p: Parameter) -> "ParameterList":
        if not isinstance(p, Parameter):
            raise TypeError(f"ParameterList: expected a Parameter, got {type(p).__name__}")
        setattr(self, str(len(self)), p)
        return self

    def __getitem__(self, i):
        return list(self._parameters.values())[i]

    def __len__(self) -> int:
        return len(self._parameters)

    def __iter__(self):
        return iter(list(self._parameters.values()))


__all__ = ["Dropout", "Embedding", "Linear", "ModuleList", "ParameterList", "ReLU", "Sequential",
           "Sigmoid", "Tanh"]
