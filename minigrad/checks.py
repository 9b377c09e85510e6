"""Argument checks shared by the public API: one helper per kind of argument.

Every helper takes the value, `where` (the public function or class it guards, as the user
called it: "SGD", "clip_grad_norm_", "mg.save") and `name` (the argument), and returns the value
in its plain Python form or raises: `TypeError` when the kind is wrong (a string for a number, a
bool for a count), `ValueError` when the value is out of range or not finite. Both messages start
with `where` and name the argument, so an error raised deep inside a call still says whose
argument it was.

>>> from minigrad import checks
>>> checks.real(0.1, "SGD", "lr", low=0)
0.1
>>> checks.real(float("inf"), "SGD", "lr", low=0)
Traceback (most recent call last):
...
ValueError: SGD: lr must be a finite number, got inf
"""
from __future__ import annotations

import math
import numbers
import os

import numpy as np

__all__ = ["IndexRangeError", "IndexTypeError", "axes", "axis", "boolean", "dtype",
           "index_array", "integer", "output_path", "probability", "real"]


class IndexRangeError(IndexError, ValueError):
    """An index out of range. A ValueError like every bad argument, and an IndexError so that
    code relying on NumPy's contract still works (iterating a Tensor stops at the IndexError
    that `__getitem__` raises past the end)."""


class IndexTypeError(IndexError, TypeError):
    """An index of the wrong kind (a float, a string, an array of floats)."""


def real(value, where: str, name: str, *, low: float | None = None, high: float | None = None,
         low_open: bool = False, high_open: bool = False, allow_inf: bool = False) -> float:
    """`value` as a float: a real number (not a bool), finite unless `allow_inf`, within
    [low, high] (an open end with `low_open` / `high_open`)."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{where}: {name} must be a real number, got {type(value).__name__} "
                        f"{value!r}")
    v = float(value)
    if math.isnan(v) or (math.isinf(v) and not allow_inf):
        raise ValueError(f"{where}: {name} must be a finite number, got {v}")
    if low is not None and (v < low or (low_open and v == low)):
        raise ValueError(f"{where}: {name} must be {'>' if low_open else '>='} {low}, got {v}")
    if high is not None and (v > high or (high_open and v == high)):
        raise ValueError(f"{where}: {name} must be {'<' if high_open else '<='} {high}, got {v}")
    return v


def integer(value, where: str, name: str, *, low: int | None = None,
            high: int | None = None) -> int:
    """`value` as an int: an integer (Python or NumPy, not a bool or a float) within [low, high]."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{where}: {name} must be an integer, got {type(value).__name__} "
                        f"{value!r}")
    v = int(value)
    if low is not None and v < low:
        raise ValueError(f"{where}: {name} must be >= {low}, got {v}")
    if high is not None and v > high:
        raise ValueError(f"{where}: {name} must be <= {high}, got {v}")
    return v


def probability(value, where: str, name: str, *, one: bool = False) -> float:
    """A probability in [0, 1), or [0, 1] with `one=True`."""
    return real(value, where, name, low=0.0, high=1.0, high_open=not one)


def boolean(value, where: str, name: str) -> bool:
    """A flag: True or False (a NumPy bool too), nothing that is merely truthy."""
    if type(value).__name__ not in ("bool", "bool_"):
        raise TypeError(f"{where}: {name} must be True or False, got {type(value).__name__} "
                        f"{value!r}")
    return bool(value)


def output_path(path, where: str) -> str:
    """A path a file can be written to: a str or os.PathLike naming a file in a directory that
    exists. Returns it as a str."""
    if not isinstance(path, (str, os.PathLike)):
        raise TypeError(f"{where}: the path must be a str or os.PathLike, got "
                        f"{type(path).__name__}")
    path = os.fspath(path)
    if isinstance(path, bytes):
        path = os.fsdecode(path)
    if not path:
        raise ValueError(f"{where}: the path is empty")
    if os.path.isdir(path):
        raise ValueError(f"{where}: {path!r} is a directory; give a file name inside it")
    directory = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(directory):
        raise ValueError(f"{where}: cannot write {path!r}: the directory {directory!r} does "
                         "not exist")
    return path


def axes(value, ndim: int, where: str | None, name: str = "axis") -> tuple:
    """`value` (None: every axis; an int or a tuple/list of ints, negatives counting from the
    end) as a sorted tuple of distinct axes of an array of `ndim` dims. `where` None leaves the
    prefix out (an op's forward: the engine names the op)."""
    if value is None:
        return tuple(range(ndim))
    items = (value,) if isinstance(value, numbers.Integral) else value
    if not isinstance(items, (tuple, list)):
        raise TypeError(f"{_prefix(where)}{name} must be None, an integer or a tuple of "
                        f"integers, got {type(value).__name__} {value!r}")
    out = []
    for a in items:
        if isinstance(a, bool) or not isinstance(a, numbers.Integral):
            raise TypeError(f"{_prefix(where)}{name} must be integers, got "
                            f"{type(a).__name__} {a!r}")
        if not -ndim <= a < ndim:
            raise ValueError(f"{_prefix(where)}{name} {value} is out of range for an array of "
                             f"{ndim} dims")
        out.append(int(a) % ndim)
    if len(set(out)) != len(out):
        raise ValueError(f"{_prefix(where)}repeated {name} in {value}")
    return tuple(sorted(out))


def axis(value, ndim: int, where: str | None, name: str = "axis") -> int:
    """One axis (an int, negatives counting from the end) of an array of `ndim` dims, as an
    int in [0, ndim). A tuple is refused: the functions taking this kind act along one axis."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{_prefix(where)}{name} must be one integer, got "
                        f"{type(value).__name__} {value!r}")
    if not -ndim <= value < ndim:
        raise ValueError(f"{_prefix(where)}{name} {value} is out of range for an array of "
                         f"{ndim} dims")
    return int(value) % ndim


def index_array(value, where: str | None, name: str, size: int, *,
                negative: bool = False):
    """Integer indices (an array of any shape, any device) into an axis of `size`: within
    [0, size), or [-size, size) with `negative`. Returns the array unchanged. Raises
    IndexTypeError / IndexRangeError (TypeError / ValueError, and IndexError)."""
    dt = getattr(value, "dtype", None)
    if dt is None or dt.kind not in "iu":
        got = f"dtype {dt}" if dt is not None else type(value).__name__
        raise IndexTypeError(f"{_prefix(where)}{name} must be integers, got {got}")
    if value.size:
        lo, hi, low = int(value.min()), int(value.max()), -size if negative else 0
        if lo < low or hi >= size:
            raise IndexRangeError(f"{_prefix(where)}{name} must lie in [{low}, {size}) for an "
                                  f"axis of size {size}, got min {lo} max {hi}")
    return value


def dtype(value, where: str, name: str = "dtype", *, kinds: str = "biufc"):
    """`value` (a dtype, a type or a name such as "float32") as a NumPy dtype whose kind is one
    of `kinds` (b bool, i/u integers, f floats, c complex): strings, objects, dates refused."""
    try:
        dt = np.dtype(value)
    except (TypeError, ValueError) as e:
        raise TypeError(f"{where}: {name} {value!r} is not a dtype ({e})") from None
    if value is None or dt.kind not in kinds:
        allowed = {"b": "bool", "i": "int", "u": "uint", "f": "float", "c": "complex"}
        raise TypeError(f"{where}: {name} must be a {'/'.join(allowed[k] for k in kinds)} "
                        f"dtype, got {value!r}")
    return dt


def _prefix(where):
    return f"{where}: " if where else ""
