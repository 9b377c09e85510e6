"""Structured states: a Tensor, or any nesting of tuples, lists, NamedTuples and dicts of Tensors.

An LSTM's state is `(h, c)`; a memory-augmented cell's may be `((h, c), memory, read_weights)`;
a decoder's context is `{"keys": K, "mask": M}`. Everything in `rnn` that touches a state or a
context (masking by lengths, checkpoint segments, truncated BPTT, clipping, both directions,
stacks, generation) goes through the three functions here, so any nesting works everywhere:

- `flatten(state) -> (tensors, spec)`: the Tensors in a fixed order (depth first; dict keys in
  sorted order) and a `Spec` describing the nesting;
- `unflatten(spec, tensors)`: the same structure rebuilt around new Tensors;
- `map(fn, *states)`: `fn` applied leaf by leaf to states of one structure.

`check(state, like, who=...)` tells why a state does not match the one expected, naming the path
inside it (`state[0][1]`, `state['memory']`, `state.h`).

>>> import minigrad as mg
>>> from rnn import state as st
>>> s = ((mg.zeros(2, 3), mg.zeros(2, 3)), {"m": mg.ones(2, 5)})
>>> tensors, spec = st.flatten(s)
>>> len(tensors), spec.paths()
(3, ['state[0][0]', 'state[0][1]', "state[1]['m']"])
>>> doubled = st.map(lambda a: a * 2, s)
>>> float(doubled[1]["m"].sum())
20.0
"""
from __future__ import annotations

import builtins
from typing import Callable

from minigrad.tensor import Tensor

__all__ = ["Spec", "StateError", "check", "flatten", "map", "unflatten"]


class StateError(ValueError, TypeError):
    """A state or context that does not match the structure or shapes expected. It is both a
    ValueError and a TypeError, so code catching either (as for any bad argument) catches it."""


class Spec:
    """The nesting of a state, without its Tensors: `kind` is "tensor", "tuple", "list",
    "namedtuple" or "dict"; `keys` the dict keys (sorted) or the NamedTuple class; `children` the
    Specs inside. Two states have equal Specs when they have the same structure."""

    __slots__ = ("kind", "keys", "children", "size")

    def __init__(self, kind: str, keys=None, children: tuple = ()):
        self.kind, self.keys, self.children = kind, keys, children
        self.size = 1 if kind == "tensor" else sum(c.size for c in children)

    def __eq__(self, other) -> bool:
        return (isinstance(other, Spec) and self.kind == other.kind and self.keys == other.keys
                and self.children == other.children)

    def __hash__(self) -> int:
        return hash((self.kind, self.keys, self.children))

    def __repr__(self) -> str:
        return f"Spec({self.describe()})"

    def describe(self) -> str:
        """The structure in Python notation, leaves written T: `((T, T), T)`."""
        if self.kind == "tensor":
            return "T"
        inner = [c.describe() for c in self.children]
        if self.kind == "dict":
            inner = [f"{k!r}: {c}" for k, c in zip(self.keys, inner)]
            return "{" + ", ".join(inner) + "}"
        if self.kind == "namedtuple":
            return f"{self.keys.__name__}(" + ", ".join(inner) + ")"
        if self.kind == "list":
            return "[" + ", ".join(inner) + "]"
        return "(" + ", ".join(inner) + ("," if len(inner) == 1 else "") + ")"

    def paths(self, root: str = "state") -> list:
        """The path of every leaf, in `flatten` order."""
        if self.kind == "tensor":
            return [root]
        return [p for step, c in zip(self.steps(), self.children) for p in c.paths(root + step)]

    def steps(self) -> list:
        """How each child is reached from here: `[0]`, `['key']` or `.field`."""
        if self.kind == "dict":
            return [f"[{k!r}]" for k in self.keys]
        if self.kind == "namedtuple":
            return [f".{f}" for f in self.keys._fields]
        return [f"[{i}]" for i in range(len(self.children))]


_TENSOR = Spec("tensor")


def _is_namedtuple(x) -> bool:
    return isinstance(x, tuple) and hasattr(type(x), "_fields")


def _sorted_keys(d: dict) -> tuple:
    try:
        return tuple(sorted(d))
    except TypeError:  # keys that do not compare (mixed types): their insertion order
        return tuple(d)


def flatten(state, root: str = "state") -> tuple:
    """The Tensors of `state` in depth-first order (dict keys sorted) and its `Spec`.

    TypeError (a `StateError`) naming the path of the first item that is neither a Tensor nor a
    tuple, list, NamedTuple or dict; `root` names the whole (e.g. "context").
    """
    tensors: list = []
    try:
        return tensors, _flatten(state, tensors)
    except _NotAState:
        pass
    path, bad = _first_bad(state, root)
    raise StateError(f"{path} is of type {type(bad).__name__}: a state holds Tensors in tuples, "
                     "lists, NamedTuples and dicts only")


class _NotAState(Exception):
    """Raised inside `_flatten`, which builds no paths (it runs at every step of a loop)."""


def _flatten(x, out: list) -> Spec:
    if isinstance(x, Tensor):
        out.append(x)
        return _TENSOR
    kind = type(x)
    if kind is tuple or kind is list:
        return Spec("tuple" if kind is tuple else "list", None,
                    tuple([_flatten(v, out) for v in x]))
    if isinstance(x, dict):
        keys = _sorted_keys(x)
        return Spec("dict", keys, tuple([_flatten(x[k], out) for k in keys]))
    if _is_namedtuple(x):
        return Spec("namedtuple", kind, tuple([_flatten(v, out) for v in x]))
    if isinstance(x, (tuple, list)):
        return Spec("tuple" if isinstance(x, tuple) else "list", None,
                    tuple([_flatten(v, out) for v in x]))
    raise _NotAState


def _first_bad(x, path: str):
    """(path, item) of the first item of `x` that a state cannot hold, or None."""
    if isinstance(x, Tensor):
        return None
    if isinstance(x, dict):
        children = [(f"{path}[{k!r}]", x[k]) for k in _sorted_keys(x)]
    elif _is_namedtuple(x):
        children = [(f"{path}.{f}", v) for f, v in zip(type(x)._fields, x)]
    elif isinstance(x, (tuple, list)):
        children = [(f"{path}[{i}]", v) for i, v in enumerate(x)]
    else:
        return path, x
    for p, v in children:
        found = _first_bad(v, p)
        if found is not None:
            return found
    return None


def unflatten(spec: Spec, tensors):
    """The structure `spec` describes, holding `tensors` (in `flatten` order)."""
    tensors = list(tensors)
    if len(tensors) != spec.size:
        raise ValueError(f"unflatten: {spec.describe()} holds {spec.size} Tensors, got "
                         f"{len(tensors)}")
    it = iter(tensors)
    return _build(spec, it)


def _build(spec: Spec, it):
    if spec.kind == "tensor":
        return next(it)
    items = [_build(c, it) for c in spec.children]
    if spec.kind == "dict":
        return dict(zip(spec.keys, items))
    if spec.kind == "namedtuple":
        return spec.keys(*items)
    return tuple(items) if spec.kind == "tuple" else items


def map(fn: Callable, *states):  # noqa: A001 - the module's name space is rnn.state
    """`fn` applied to the Tensors of `states` leaf by leaf: the structure of `states[0]` holding
    `fn(a, b, ...)` for the leaves a of states[0], b of states[1], ... (equal structures needed).
    """
    if not states:
        raise TypeError("rnn.state.map: give at least one state")
    tensors, spec = flatten(states[0])
    columns = [tensors]
    for k, s in enumerate(states[1:], start=1):
        t, other = flatten(s)
        if other != spec:
            raise StateError(f"rnn.state.map: state {k} is {other.describe()}, state 0 is "
                             f"{spec.describe()}")
        columns.append(t)
    return _build(spec, builtins.map(fn, *columns))


def check(state, like, who: str, root: str = "state") -> list:
    """The Tensors of `state` after checking that it has the structure of `like` (a state) and
    the same shapes.

    Raises `StateError` (a ValueError and a TypeError) starting with `who` and naming the path
    of the first difference, e.g. `unroll: MyCell, step 0: state[0][1] has shape (2, 4), expected
    (2, 3)`.
    """
    want, spec = flatten(like, root)
    try:
        got, got_spec = flatten(state, root)
    except StateError as e:
        raise StateError(f"{who}: {e}; expected {spec.describe()}") from None
    if got_spec != spec:
        path = _first_difference(got_spec, spec, root)
        raise StateError(f"{who}: {root} is {got_spec.describe()} but {spec.describe()} was "
                         f"expected (they differ at {path})")
    for path, g, w in zip(spec.paths(root), got, want):
        if g.shape != w.shape:
            raise StateError(f"{who}: {path} has shape {g.shape}, expected {w.shape}")
    return got


def _first_difference(a: Spec, b: Spec, path: str) -> str:
    if a.kind != b.kind or a.keys != b.keys or len(a.children) != len(b.children):
        return path
    for step, ca, cb in zip(b.steps(), a.children, b.children):
        if ca != cb:
            return _first_difference(ca, cb, path + step)
    return path
