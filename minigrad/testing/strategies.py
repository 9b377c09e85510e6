"""Hypothesis strategies for testing ops, cells and models built on minigrad.

A user tests a new op in three lines:

    @given(strategies.tensors(avoid=(0.0,)))
    def test_my_op(x):
        assert gradcheck(my_op, [x])

(with `from hypothesis import given` and `from minigrad.testing import gradcheck, strategies`).

What is here:

* `shapes`, `broadcastable_shapes`, `axes`: array shapes, sets of shapes that broadcast together
  (size-1 axes, missing leading axes), and reduction axes (None, ints, negative ints, tuples).
* `arrays`: float arrays with an explicit value domain that keep a margin away from kinks
  (relu and abs at 0, log and sqrt near 0), optionally with well separated values (no max ties).
* `views` and `tensors`: the same values held as non-contiguous data (transposed or strided),
  because ops must not assume C-contiguous input.
* `indices`: integer index arrays (with repeats) for take / gather / embedding.
* `sequences`: (T, B, F) batches with per-example lengths for RNN tests.

hypothesis is a development dependency; importing this module without it raises ImportError.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

try:
    from hypothesis import strategies as st
    from hypothesis.extra import numpy as hnp
except ImportError as e:  # pragma: no cover - depends on the environment
    raise ImportError("minigrad.testing.strategies needs hypothesis, a development dependency: "
                      "pip install 'minigrad[dev]'") from e

from minigrad.tensor import Tensor

__all__ = ["Sequences", "arrays", "axes", "broadcastable_shapes", "indices", "sequences", "shapes",
           "tensors", "views"]


def shapes(min_dims: int = 0, max_dims: int = 4, min_side: int = 1,
           max_side: int = 5) -> st.SearchStrategy[tuple[int, ...]]:
    """Array shapes with `min_dims..max_dims` axes of `min_side..max_side` elements each.

    >>> shapes(max_dims=2).example()  # doctest: +SKIP
    (3, 1)
    """
    return hnp.array_shapes(min_dims=min_dims, max_dims=max_dims, min_side=min_side,
                            max_side=max_side)


def broadcastable_shapes(n: int = 2, min_dims: int = 0, max_dims: int = 4, min_side: int = 1,
                         max_side: int = 5) -> st.SearchStrategy[tuple[tuple[int, ...], ...]]:
    """Tuples of `n` shapes that broadcast together (NumPy rules).

    Shapes may have size-1 axes where the others do not, and may miss leading axes.

    >>> broadcastable_shapes(2).example()  # doctest: +SKIP
    ((4, 1, 3), (2, 3))
    """
    return hnp.mutually_broadcastable_shapes(
        num_shapes=n, min_dims=min_dims, max_dims=max_dims, min_side=min_side,
        max_side=max_side).map(lambda b: tuple(b.input_shapes))


def axes(ndim: int, allow_none: bool = True, allow_tuple: bool = True) -> st.SearchStrategy:
    """Axis arguments valid for an array of `ndim` dims: None, an int (possibly negative), or a
    tuple of distinct axes (each written positive or negative at random).

    >>> axes(3).example()  # doctest: +SKIP
    (-1, 0)
    """
    choices = []
    if allow_none:
        choices.append(st.none())
    if ndim > 0:
        choices.append(st.integers(-ndim, ndim - 1))
    if allow_tuple:
        def spell(picked):
            return st.tuples(*[st.sampled_from((a, a - ndim)) for a in picked])
        choices.append(st.lists(st.integers(0, ndim - 1), unique=True, max_size=ndim)
                       .flatmap(spell) if ndim > 0 else st.just(()))
    if not choices:
        raise ValueError(f"axes: nothing to draw for ndim={ndim} without None or tuples")
    return st.one_of(*choices)


def _push_away(a: np.ndarray, avoid, margin: float, lo: float, hi: float) -> np.ndarray:
    """Move values within `margin` of a kink to the nearer edge of the hole (staying in domain)."""
    for k in avoid:
        near = np.abs(a - k) < margin
        up, down = k + margin, k - margin
        go_up = ((a >= k) & (up <= hi)) | (down < lo)
        a = np.where(near, np.where(go_up, up, down), a)
    return a


def _concrete_shape(draw, shape) -> tuple[int, ...]:
    """A shape given as an int, a tuple or list of ints, or a strategy drawing one."""
    if isinstance(shape, st.SearchStrategy):
        shape = draw(shape)
    return (int(shape),) if isinstance(shape, (int, np.integer)) else tuple(shape)


@st.composite
def arrays(draw, shape, dtype=np.float64, domain: tuple[float, float] = (-3.0, 3.0),
           avoid=(), margin: float = 0.1, distinct: bool = False) -> np.ndarray:
    """Float arrays of `shape` (an int, a tuple, or a strategy of shapes), values in `domain`.

    `domain` = (lo, hi), both included.
    `avoid`: kink points kept at least `margin` away (relu and abs at 0, pow base 0, ...), so that
    central finite differences with a small step never straddle a kink.
    `distinct=True`: all values at least (hi - lo) / (2 * size) apart, so `max`, `min` and
    `argmax` have one winner (no ties) and a tiny perturbation never changes it.

    >>> arrays((2, 3), domain=(0.1, 2.0)).example()  # doctest: +SKIP
    array([[0.1 , 1.53, 0.77], [1.9 , 0.1 , 0.44]])
    """
    shape = _concrete_shape(draw, shape)
    lo, hi = domain
    if not lo < hi:
        raise ValueError(f"arrays: empty domain {domain}")
    n = math.prod(shape)
    if distinct and avoid:
        raise ValueError("arrays: distinct=True with avoid= could create ties; use one of them")
    if distinct:
        # a shuffled lattice plus jitter: neighbours stay at least half a cell apart
        order = np.array(draw(st.permutations(range(n))), dtype=np.float64)
        jitter = draw(hnp.arrays(np.float64, n, elements=st.floats(0.0, 0.5)))
        a = lo + (hi - lo) * (order + 0.25 + jitter) / n
    else:
        a = draw(hnp.arrays(np.float64, n, elements=st.floats(lo, hi, allow_subnormal=False)))
    if avoid:
        a = _push_away(a, avoid, margin, lo, hi)
    return a.reshape(shape).astype(dtype)


@st.composite
def views(draw, a: np.ndarray) -> np.ndarray:
    """An array equal to `a` but held, at random, as contiguous, transposed or strided data."""
    kind = draw(st.sampled_from(("contiguous", "transposed", "strided")))
    if kind == "transposed" and a.ndim >= 2:
        return a.T.copy().T
    if kind == "strided" and a.ndim >= 1:
        big = np.zeros(a.shape[:-1] + (2 * a.shape[-1],), a.dtype)
        big[..., ::2] = a
        return big[..., ::2]
    return a.copy()


@st.composite
def tensors(draw, shape=None, dtype=np.float64, domain: tuple[float, float] = (-3.0, 3.0),
            avoid=(), margin: float = 0.1, distinct: bool = False,
            requires_grad: bool = True) -> Tensor:
    """Leaf Tensors (float64 and requiring grad by default) whose data may be non-contiguous.

    `shape` is a tuple, a strategy, or None for `shapes()`; the other arguments are those of
    `arrays`.

    >>> x = tensors(shape=(2, 3), avoid=(0.0,)).example()  # doctest: +SKIP
    >>> x.requires_grad, x.dtype
    (True, dtype('float64'))
    """
    if shape is None:
        shape = shapes()
    a = draw(arrays(shape, dtype, domain=domain, avoid=avoid, margin=margin, distinct=distinct))
    return Tensor(draw(views(a)), requires_grad=requires_grad)


@st.composite
def indices(draw, n: int, shape=None, negative: bool = False) -> np.ndarray:
    """int64 index arrays into an axis of size `n`, with repeats (gradients must accumulate).

    `negative=True` also draws negative indices in [-n, 0). `shape` defaults to `shapes(0, 2)`.

    >>> indices(4, shape=(3,)).example()  # doctest: +SKIP
    array([2, 2, 0])
    """
    if n < 1:
        raise ValueError(f"indices: an axis of size {n} has no valid index")
    if shape is None:
        shape = shapes(0, 2)
    shape = _concrete_shape(draw, shape)
    lo = -n if negative else 0
    return draw(hnp.arrays(np.int64, shape, elements=st.integers(lo, n - 1)))


@dataclass(frozen=True)
class Sequences:
    """A batch of sequences: `x` (T, B, F) and, when drawn, `lengths` (B,) int64 in [1, T]."""

    x: np.ndarray
    lengths: np.ndarray | None


@st.composite
def sequences(draw, max_T: int = 6, max_B: int = 4, max_F: int = 5, with_lengths: bool = True,
              dtype=np.float64, domain: tuple[float, float] = (-2.0, 2.0)) -> Sequences:
    """RNN input batches: `x` of shape (T, B, F) with 1 <= T <= max_T, 1 <= B <= max_B,
    1 <= F <= max_F, and per-example `lengths` in [1, T] (None when `with_lengths` is False).

    Example `b` is valid for time steps `t < lengths[b]`; the padding after it holds arbitrary
    values, so a correct masked RNN gives results that do not depend on it.

    >>> s = sequences(max_T=4).example()  # doctest: +SKIP
    >>> s.x.shape, s.lengths
    ((4, 2, 3), array([4, 1]))
    """
    T = draw(st.integers(1, max_T))
    B = draw(st.integers(1, max_B))
    F = draw(st.integers(1, max_F))
    x = draw(arrays((T, B, F), dtype, domain=domain))
    lengths = None
    if with_lengths:
        lengths = draw(hnp.arrays(np.int64, (B,), elements=st.integers(1, T)))
    return Sequences(x=x, lengths=lengths)
