"""minigrad: reverse-mode automatic differentiation over a dynamic graph, on NumPy or CuPy.

>>> import minigrad as mg
>>> x = mg.tensor([1.0, 2.0, 3.0], requires_grad=True)
>>> (x * x).sum().backward()
>>> x.grad
tensor([2., 4., 6.], dtype=float32)
"""
from minigrad import random
from minigrad.backend import get_array_module, register_device
from minigrad.modes import (AnomalyError, detect_anomaly, enable_grad, is_grad_enabled, no_grad,
                            tag_scope)
from minigrad.engine import Function, GraphFreedError
from minigrad.tensor import Tensor
from minigrad.functions import (abs, add, arange, argmax, argmin, astype,
                                binary_cross_entropy_with_logits, broadcast_to, clip, concat,
                                cosine_similarity, cross_entropy, div, dropout, elu, embedding,
                                exp, expand_dims, flip, full, gather, get_default_dtype, getitem,
                                leaky_relu, log, log_softmax, logsumexp, matmul, max, maximum,
                                mean, min, minimum, mse_loss, mul, neg, normalize, one_hot, ones,
                                ones_like, pad, pow, rand, randn, relu, reshape, roll,
                                set_default_dtype, sigmoid, softmax, softplus, split, sqrt,
                                squeeze, stack, sub, sum, swapaxes, take, tanh, tensor, topk,
                                transpose, unstack, var, where, zeros, zeros_like)
from minigrad.autograd import backward, grad, hessian, hvp, jacobian, jvp, vjp
from minigrad.random import manual_seed
from minigrad.serialization import load, save
from minigrad.threads import get_num_threads, set_num_threads
from minigrad.checkpoint import checkpoint  # noqa: E402  (after the engine it wraps)

__version__ = "0.1.0"

__all__ = [
    "AnomalyError", "Function", "GraphFreedError", "Tensor", "abs", "add", "arange", "argmax",
    "argmin", "astype", "backward", "binary_cross_entropy_with_logits", "broadcast_to",
    "checkpoint", "clip", "concat", "cosine_similarity", "cross_entropy", "detect_anomaly", "div",
    "dropout", "elu", "embedding", "enable_grad", "exp", "expand_dims", "flip", "full", "gather",
    "get_array_module", "get_default_dtype", "get_num_threads", "getitem", "grad", "hessian",
    "hvp", "is_grad_enabled", "jacobian", "jvp", "leaky_relu", "load", "log", "log_softmax",
    "logsumexp", "manual_seed", "matmul", "max", "maximum", "mean", "min", "minimum", "mse_loss",
    "mul", "neg", "no_grad", "normalize", "one_hot", "ones", "ones_like", "pad", "pow", "rand",
    "randn", "random", "register_device", "relu", "reshape", "roll", "save", "set_default_dtype",
    "set_num_threads", "sigmoid", "softmax", "softplus", "split", "sqrt", "squeeze", "stack",
    "sub", "sum", "swapaxes", "tag_scope", "take", "tanh", "tensor", "topk", "transpose",
    "unstack", "var", "vjp", "where", "zeros", "zeros_like",
]


_SUBMODULES = ("nn", "optim", "viz", "memory", "testing", "backend", "engine", "ops",
               "functions", "autograd", "modes", "distributed")


def __getattr__(name):
    # Submodules users may not need are loaded on first use.
    import importlib
    if name in _SUBMODULES:
        return importlib.import_module(f"minigrad.{name}")
    raise AttributeError(f"module 'minigrad' has no attribute {name!r}")


def __dir__():
    # dir(mg) and tab completion list the lazily loaded submodules too
    return sorted(set(globals()) | set(_SUBMODULES))
