"""Cells written by a user, the README's way, for `benchmarks.rnn`: an LSTM and MUT1 as
`rnn.Cell` subclasses built from primitives (the same steps in PyTorch and JAX are in
benchmarks/torch_ref.py and benchmarks/jax_ref.py). Not a script.

`UserLSTM` is the LSTM of `rnn.LSTMCell` (gate blocks i, f, g, o, one bias) written as a user
would: per step `x @ W.T + h @ U.T + b`, four gates by slicing, three sigmoids and two tanhs,
and the c and h updates (16 primitive ops per step). `UserMUT1` is the README's `MyMUT1` with
an input size I of its own: `tanh(x_t)` needs I == H, so when they differ x_t is first mapped
by a learned `w_p` (H, I), as `rnn.MUT1Cell` does.

How minigrad runs them is chosen by `rnn.compiling(mode)` (issue 21): "off" is the per-op graph
(one node per op and step), "numpy" and "auto" the compiled sequence path. `compiling_modes()`
says which modes this checkout has, and `run_mode(mode)` enters one (a no-op for "default").
"""
from __future__ import annotations

import contextlib

import minigrad as mg
import rnn

__all__ = ["UserLSTM", "UserMUT1", "compiling_modes", "run_mode", "numba_available"]


class UserLSTM(rnn.Cell):
    """LSTM from primitives: gates = x W^T + h U^T + b, blocks i, f, g, o (W (4H, I), U (4H, H))."""

    def __init__(self, input_size, hidden_size, **kw):
        super().__init__(input_size, hidden_size, **kw)
        H = hidden_size
        self.w = self.parameter(4 * H, input_size)
        self.u = self.parameter(4 * H, H)
        self.b = self.parameter(4 * H)

    def initial_state(self, batch_size):
        return self.zeros(batch_size), self.zeros(batch_size)

    def forward(self, x, state):
        h, c = state
        H = self.hidden_size
        a = x @ self.w.T + h @ self.u.T + self.b
        i = mg.sigmoid(a[:, :H])
        f = mg.sigmoid(a[:, H:2 * H])
        g = mg.tanh(a[:, 2 * H:3 * H])
        o = mg.sigmoid(a[:, 3 * H:])
        c = f * c + i * g
        h = o * mg.tanh(c)
        return h, (h, c)


class UserMUT1(rnn.Cell):
    """The README's MyMUT1 with input size I: z = sigmoid(x W_z^T + b_z),
    r = sigmoid(x W_r^T + h U_r^T + b_r), h' = tanh((r h) U_h^T + tanh(x W_p^T) + b_h) z + h (1 - z)
    (W_p (H, I) only when I != H; with I == H the term is tanh(x), as in the README)."""

    def __init__(self, input_size, hidden_size, **kw):
        super().__init__(input_size, hidden_size, **kw)
        I, H = input_size, hidden_size
        self.w_z, self.w_r = (self.parameter(H, I) for _ in range(2))
        self.u_r, self.u_h = (self.parameter(H, H) for _ in range(2))
        self.b_z, self.b_r, self.b_h = (self.parameter(H) for _ in range(3))
        self.w_p = self.parameter(H, I) if I != H else None

    def forward(self, x, h):
        z = mg.sigmoid(x @ self.w_z.T + self.b_z)
        r = mg.sigmoid(x @ self.w_r.T + h @ self.u_r.T + self.b_r)
        x_h = x if self.w_p is None else x @ self.w_p.T
        h = mg.tanh((r * h) @ self.u_h.T + mg.tanh(x_h) + self.b_h) * z + h * (1 - z)
        return h, h


def numba_available():
    try:
        import numba  # noqa: F401
    except ImportError:
        return False
    return True


def compiling_modes():
    """The `rnn.compiling` modes worth a row here, or (None, reason) when this checkout has no
    compiled path yet. "numpy" gets a row only when it differs from "auto" (numba installed)."""
    if not hasattr(rnn, "compiling"):
        return None, "rnn.compiling does not exist in this checkout (issue 21, item 1)"
    modes = ["off", "auto"]
    if numba_available():
        modes.insert(1, "numpy")
    return modes, ""


def run_mode(mode):
    """Context manager running minigrad's sequences in `mode` ("default": as configured)."""
    if mode == "default":
        return contextlib.nullcontext()
    return rnn.compiling(mode)
