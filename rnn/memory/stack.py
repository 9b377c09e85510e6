"""The stack-augmented RNN (Joulin & Mikolov 2015, "Inferring algorithmic patterns with
stack-augmented recurrent nets") as a cell."""
from __future__ import annotations

import math

import numpy as np

import minigrad as mg
from rnn.cell import Cell, generator

EMPTY = -1.0  # the value of a stack cell nothing was pushed into (pushed values lie in (0, 1))


class StackRNNCell(Cell):
    """An RNN with `stacks` k differentiable stacks of `depth` d cells each; state (h, stack)
    with h (B, H) and stack (B, k, d), cell 0 the top.

        h_t   = sigmoid(U x_t + R h_{t-1} + P top_{t-1} + b)     top: the `read_top` upper cells
        a_t   = softmax(A_s h_t) per stack, over (push, pop, no-op)             (B, k, 3)
        v_t   = sigmoid(D_s h_t), the value a push puts on top                   (B, k)
        s_t[0] = a_push v_t + a_pop s_{t-1}[1] + a_noop s_{t-1}[0]
        s_t[i] = a_push s_{t-1}[i-1] + a_pop s_{t-1}[i+1] + a_noop s_{t-1}[i]
        out_t = V h_t + c                                      (B, output_size), logits

    With `recurrent=False` there is no R h_{t-1} term (the paper's variant without recurrent
    weights): all memory then goes through the stacks, which is what makes a counting solution
    carry on past the training lengths. Cells below the bottom read as EMPTY (-1), and the stack
    starts empty. With
    `discrete = True` (for evaluation, as in the paper) each stack takes its most likely action
    outright: a_t becomes one-hot.

    >>> import minigrad as mg, rnn
    >>> cell = rnn.memory.StackRNNCell(3, 3, hidden_size=10, stacks=2, depth=8, rng=0)
    >>> out, (h, stack) = rnn.unroll(cell, mg.randn(6, 4, 3))
    >>> out.shape, stack.shape
    ((6, 4, 3), (4, 2, 8))
    """

    def __init__(self, input_size: int, output_size: int, *, hidden_size: int = 40,
                 stacks: int = 2, depth: int = 100, read_top: int = 2, recurrent: bool = True,
                 rng=None, dtype=None, device=None):
        rng = generator(rng)
        super().__init__(input_size, hidden_size, rng=rng, dtype=dtype, device=device)
        for name, n in (("output_size", output_size), ("stacks", stacks), ("depth", depth),
                        ("read_top", read_top)):
            if not isinstance(n, (int, np.integer)) or n < 1:
                raise ValueError(f"StackRNNCell: {name} must be a positive int, got {n!r}")
        if read_top > depth:
            raise ValueError(f"StackRNNCell: read_top={read_top} exceeds depth={depth}")
        H, k = hidden_size, stacks
        self.output_size, self.stacks, self.depth, self.read_top = output_size, k, depth, read_top
        self.discrete = False
        self.weight_in = self.uniform(H, input_size)
        self.recurrent = bool(recurrent)
        self.weight_hh = self.uniform(H, H) if recurrent else None
        self.weight_top = self.uniform(H, k * read_top)
        self.bias = self.uniform(H, fan_in=H)
        self.weight_action = self.uniform(k * 3, H)
        self.bias_action = self.uniform(k * 3, fan_in=H)
        self.weight_push = self.uniform(k, H)
        self.bias_push = self.uniform(k, fan_in=H)
        self.weight_out = self.uniform(output_size, H)
        self.bias_out = self.uniform(output_size, fan_in=H)

    def uniform(self, *shape: int, fan_in: int | None = None):
        """A weight uniform in +-1/sqrt(fan_in) (fan_in: the last axis unless given)."""
        bound = 1.0 / math.sqrt(fan_in or shape[-1])
        return self.parameter(*shape, low=-bound, high=bound)

    def initial_state(self, batch_size: int):
        """h = 0 (B, H) and empty stacks (B, k, d)."""
        stack = mg.full((batch_size, self.stacks, self.depth), EMPTY, dtype=self.bias.dtype,
                        device=self.bias.device)
        return self.zeros(batch_size), stack

    def actions(self, h):
        """(push, pop, no-op) probabilities (B, k, 3) from h (B, H); one-hot when `discrete`."""
        logits = mg.reshape(h @ self.weight_action.T + self.bias_action, (h.shape[0], -1, 3))
        probs = mg.softmax(logits, axis=-1)
        if not self.discrete:
            return probs
        return mg.one_hot(mg.argmax(probs, axis=-1).data, 3, dtype=probs.dtype)

    def forward(self, x_t, state):
        h, stack = state
        B = x_t.shape[0]
        top = mg.reshape(stack[:, :, :self.read_top], (B, -1))
        a = x_t @ self.weight_in.T + top @ self.weight_top.T + self.bias
        h = mg.sigmoid(a + h @ self.weight_hh.T if self.recurrent else a)
        push, pop, noop = mg.split(self.actions(h), 3, axis=2)                   # (B, k, 1)
        value = mg.sigmoid(h @ self.weight_push.T + self.bias_push)             # (B, k)
        below = mg.full((B, self.stacks, 1), EMPTY, dtype=h.dtype, device=h.device)
        pushed = mg.concat([mg.expand_dims(value, -1), stack[:, :, :-1]], axis=2)
        popped = mg.concat([stack[:, :, 1:], below], axis=2)
        stack = push * pushed + pop * popped + noop * stack
        return h @ self.weight_out.T + self.bias_out, (h, stack)

    def extra_repr(self) -> str:
        return (f"{self.input_size}, {self.output_size}, hidden_size={self.hidden_size}, "
                f"stacks={self.stacks}, depth={self.depth}, read_top={self.read_top}, "
                f"recurrent={self.recurrent}")
