"""Clipping the gradient that flows into each time step's hidden state.

Global clipping (`mg.nn.utils.clip_grad_norm_`, `clip_grad_value_`) rescales the finished
gradient of the weights. An exploding recurrence can be tamed earlier, inside BPTT: a hook on
every new state clips the gradient reaching it before it travels on to earlier steps, so one
step with a huge Jacobian cannot blow up the whole sum.
"""
from __future__ import annotations

from typing import Callable

from minigrad import backend
from minigrad.tensor import Tensor
from rnn import state as st

__all__ = ["clip_state_grad"]


def clip_state_grad(max_norm: float | None = None, *, value: float | None = None,
                    eps: float = 1e-6) -> Callable:
    """A `state_hook` for `rnn.unroll` that clips the gradient flowing into each new state.

    With `max_norm`, each example's gradient g_b (row b of every state tensor, e.g. h and c of an
    LSTM, each on its own) is rescaled to at most that L2 norm:
    g_b <- g_b * min(1, max_norm / (||g_b|| + eps)); a nested state's tensors are each clipped on
    their own too (`rnn.state.flatten`). With `value`, each element is clipped to
    [-value, value]. The gradient clipped is the total reaching the state (from the output at
    that step and from the next step), before it flows on to the earlier steps. A state hook
    makes `unroll` use the per-step loop (a fused sequence kernel has no per-step tensors).

    >>> import minigrad as mg, rnn
    >>> cell = rnn.RNNCell(3, 4, rng=0)
    >>> out, h = rnn.unroll(cell, mg.randn(6, 2, 3), state_hook=rnn.clip_state_grad(1.0))
    >>> out.sum().backward()
    """
    if (max_norm is None) == (value is None):
        raise ValueError("clip_state_grad: give exactly one of max_norm and value")
    bound = max_norm if value is None else value
    if not bound > 0:
        what = "max_norm" if value is None else "value"
        raise ValueError(f"clip_state_grad: {what} must be > 0, got {bound}")
    clip = _ClipNorm(max_norm, eps) if value is None else _ClipValue(value)

    def state_hook(t, state):
        for s in st.flatten(state)[0]:
            if isinstance(s, Tensor) and s.requires_grad:  # no graph (no_grad, or a first
                s.register_hook(clip)                      # checkpointed run): nothing to clip
        return state

    return state_hook


class _ClipNorm:
    """g_b <- g_b * min(1, max_norm / (||g_b|| + eps)) for each example b (axis 0)."""

    def __init__(self, max_norm, eps):
        self.max_norm, self.eps = max_norm, eps

    def __call__(self, g):
        x = g.data
        xp = backend.get_array_module(x)
        axes = tuple(range(1, x.ndim))
        norm = xp.sqrt((x * x).sum(axis=axes, keepdims=True))
        scale = xp.minimum(1.0, self.max_norm / (norm + self.eps)).astype(x.dtype, copy=False)
        return Tensor(x * scale)


class _ClipValue:
    """g <- clip(g, -value, value), elementwise."""

    def __init__(self, value):
        self.value = value

    def __call__(self, g):
        return Tensor(backend.get_array_module(g.data).clip(g.data, -self.value, self.value))
