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

__all__ = ["boolean", "integer", "output_path", "probability", "real"]


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
