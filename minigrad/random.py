"""The default random generator (dropout, `randn` without `rng=`), with state capture and replay.

`get_state()` / `set_state()` let checkpointing replay the exact random draws of a forward pass.
"""
from __future__ import annotations

import numpy as np

from minigrad import checks

_gen = [np.random.default_rng(0)]


def default_generator() -> np.random.Generator:
    return _gen[0]


def manual_seed(seed: int) -> np.random.Generator:
    """Reseed the default generator; returns it."""
    _gen[0] = np.random.default_rng(checks.integer(seed, "manual_seed", "seed", low=0))
    return _gen[0]


def get_state():
    return _gen[0].bit_generator.state


def set_state(state) -> None:
    _gen[0].bit_generator.state = state


def as_generator(rng) -> np.random.Generator:
    """`rng` as a Generator: None -> the default one, an int -> a new one seeded with it."""
    if rng is None:
        return _gen[0]
    if isinstance(rng, np.random.Generator):
        return rng
    if isinstance(rng, (int, np.integer)):
        return np.random.default_rng(int(rng))
    raise TypeError(f"rng must be a numpy.random.Generator or an int seed, "
                    f"got {type(rng).__name__}")
