"""The default random generator (dropout, `randn` without `rng=`), with state capture and replay.

`get_state()` / `set_state()` let checkpointing replay the exact random draws of a forward pass.
"""
from __future__ import annotations

import numpy as np

_gen = [np.random.default_rng(0)]


def default_generator() -> np.random.Generator:
    return _gen[0]


def manual_seed(seed: int) -> np.random.Generator:
    """Reseed the default generator; returns it."""
    _gen[0] = np.random.default_rng(seed)
    return _gen[0]


def get_state():
    return _gen[0].bit_generator.state


def set_state(state) -> None:
    _gen[0].bit_generator.state = state
