"""The switches every op reads (`state`), the context managers that set them (all made with one
helper, `switch`), and anomaly mode's helpers. The engine imports this module; nothing here
knows about Tensors or graphs.
"""
from __future__ import annotations

import contextlib
import os
import sys

from minigrad.backend import get_array_module


class Switches:
    """Process-wide switches read by every op (not thread-safe, like the rest of minigrad).

    One instance, `state`. Its fields are slots: every op reads several of them, and a slot is
    read faster than a class attribute."""

    __slots__ = ("grad_enabled", "anomaly", "tags", "tracker", "collector", "recorder",
                 "walks")

    def __init__(self):
        self.grad_enabled = True
        self.anomaly = False
        self.tags = ()         # scope tags recorded on nodes: (("module", "cell"), ("time", 3))
        self.tracker = None    # minigrad.memory tracker while active: hold(fn, inputs), release(fn)
        self.collector = None  # list that gathers leaf tensors used (for checkpoint)
        self.recorder = None   # mg.viz.record(), tracing: recorder(fn, inputs, results, kwargs)
        self.walks = 0         # backward walks running (one inside another's op or hook: > 1)


state = Switches()


@contextlib.contextmanager
def switch(name: str, value):
    """`state.<name>` set to `value` inside the block and restored after it (nests; also works
    as a decorator, like every context manager below, which are all made with it)."""
    prev = getattr(state, name)
    setattr(state, name, value)
    try:
        yield
    finally:
        setattr(state, name, prev)


def no_grad():
    """Run ops without recording a graph (inference, optimizer updates).

    >>> import minigrad as mg
    >>> w = mg.tensor([1.0], requires_grad=True)
    >>> with mg.no_grad():
    ...     (w * 2).requires_grad
    False
    """
    return switch("grad_enabled", False)


def enable_grad():
    """Record the graph again inside a `no_grad()` block."""
    return switch("grad_enabled", True)


def is_grad_enabled() -> bool:
    """False inside `no_grad()` (unless an inner `enable_grad()` turned it back on)."""
    return state.grad_enabled


def detect_anomaly():
    """Raise `AnomalyError` at the first op whose forward or backward yields NaN/Inf; the error
    names the op and the line of user code that created it. Slow: use it to debug."""
    return switch("anomaly", True)


def tag_scope(key: str, value):
    """Tag every node created inside with `(key, value)` (used to group drawings by module/time)."""
    if not isinstance(key, str):
        raise TypeError(f"tag_scope: key must be a str, got {type(key).__name__} {key!r}")
    return switch("tags", state.tags + ((key, value),))


class AnomalyError(RuntimeError):
    """An op produced NaN or Inf while `detect_anomaly()` was active."""


_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# frames in these folders are library code: anomaly mode reports the first frame outside them
_PKG_DIRS = (os.path.join(_ROOT, "minigrad") + os.sep, os.path.join(_ROOT, "rnn") + os.sep)


def user_line() -> str:
    """'file:line' of the innermost frame outside minigrad and rnn: the user's line."""
    f = sys._getframe(1)
    while f is not None and os.path.abspath(f.f_code.co_filename).startswith(_PKG_DIRS):
        f = f.f_back
    if f is None:
        return "<unknown>"
    return f"{f.f_code.co_filename}:{f.f_lineno}"


def all_finite(arrays) -> bool:
    for a in arrays:
        if a is not None and not bool(get_array_module(a).isfinite(a).all()):
            return False
    return True
