"""Shared pieces of the fused kernels: in-place activations, per-sequence lengths, the
feature-major layout of the whole-sequence ops, blocks of steps, and the argument checks.

Layouts follow PyTorch: LSTM gate blocks (input i, forget f, candidate g, output o), GRU blocks
(reset r, update z, new n); weights are `weight_ih` (G H, I), `weight_hh` (G H, H). Sequences are
time-major: x (T, B, I) -> out (T, B, H).
"""
from __future__ import annotations

import numpy as np

from minigrad import backend
from rnn.lengths import as_lengths

__all__ = ["BLOCK", "SequenceLengths", "block_scratch", "check_lengths", "check_operands",
           "dims_of", "grads_at_steps", "hidden_of", "input_projections", "lengths_of",
           "one_minus_square",
           "outputs_and_final", "reversed_steps", "rotate_gates", "sigmoid_", "sigmoid_of_half_",
           "state_buffer", "step_blocks", "step_masks", "with_bias"]


def sigmoid_(a, xp):
    """a <- sigmoid(a) in place, as 0.5 tanh(a / 2) + 0.5: no exp overflow, no temporaries."""
    a *= 0.5
    return sigmoid_of_half_(a, xp)


def sigmoid_of_half_(a, xp):
    """a <- sigmoid(2 a) = 0.5 tanh(a) + 0.5 in place: for pre-activations whose weights carry
    the 1/2 already."""
    xp.tanh(a, out=a)
    a *= 0.5
    a += 0.5
    return a


class SequenceLengths:
    """Per-sequence lengths as device arrays, for masking outputs and routing final states.

    Built from the lengths (B,) in forward, and again in backward from the copy the op saved
    with `save_for_backward` (so the engine frees and counts it like every saved array).

    Outputs past a sequence's end are set to zero in forward; the state the next step reads is
    then zero for that row, which keeps the (ignored) values past the end finite. Gradients never
    reach those steps: their output gradient is masked and no later step depends on them.
    """

    def __init__(self, lengths, T, B, dtype, dev):
        self.lengths, self.dev = backend.to_host(lengths), dev
        lengths = self.lengths
        self.mask = dev.to_device((np.arange(T)[:, None] < lengths).astype(dtype)[:, :, None])
        ended = np.nonzero(lengths)[0]
        self.end_t = dev.to_device(lengths[ended] - 1)  # step that produced each final state
        self.end_b = dev.to_device(ended)
        self.empty = dev.to_device((lengths == 0).astype(dtype)[:, None]) if (
            len(ended) < B) else None

    def final(self, states):
        """Each row's state at its own last step, from states (T + 1, B, H) with states[0] = h0."""
        to = self.dev.to_device
        return states[to(self.lengths), to(np.arange(len(self.lengths)))]

    def step_grads(self, gout, gfinal, xp):
        """(T, B, H) gradient reaching each step's state: masked gout plus gfinal at the end."""
        g = gout * self.mask if gout is not None else xp.zeros(
            (self.mask.shape[0],) + gfinal.shape, gfinal.dtype)
        g[self.end_t, self.end_b] += gfinal[self.end_b]
        return g

    def to_initial(self, gstate, gfinal):
        """Add the final-state gradient of empty sequences (length 0) to the initial state's."""
        if self.empty is not None and gstate is not None:
            gstate += self.empty * gfinal


# Layout: per-step quantities are feature-major, (features, B). The recurrent product is then
# W (G H, H + 1) @ [h; 1] (H + 1, B): the bias rides in it as a column of W against a row of ones
# under the stored states, and each gate block is one contiguous (H, B) chunk, so every ufunc is
# one flat loop. Hidden states live in Hs (H + 1, T + 1, B), column t = h_{t-1}; the outputs
# (T, B, H) and the final state are views of it. Backward writes the pre-activation gradients
# into D (G H, T, B), so that gW = D (G H, T B) @ [h; 1]^T and gx = D^T W are single products.
# Every pre-activation gradient is (dh or dc) times a factor of stored forward values; those
# factors are computed for a block of steps at a time (sized to stay in cache) with a few large
# ufunc calls, and the per-step recurrence is then a handful of ufunc calls and one product
# (per-call overhead is what costs when B H is small).

def rotate_gates(w, k, H, xp):
    """Rotate gate blocks along axis 0 so block k comes first: LSTM (i, f, g, o) -> (o, i, f, g)
    with k = 3; k = 1 turns it back."""
    return xp.concatenate([w[k * H:], w[:k * H]])


def with_bias(w, b, xp):
    """[w | b] (rows, cols + 1): the bias multiplies the row of ones under the stored states."""
    out = xp.empty((w.shape[0], w.shape[1] + 1), w.dtype)
    out[:, :-1] = w
    out[:, -1] = 0 if b is None else b
    return out


def state_buffer(h0, T, B, H, dt, xp):
    """Hs (H + 1, T + 1, B): column t holds h_{t-1} over a row of ones; column 0 is h0."""
    Hs = xp.empty((H + 1, T + 1, B), dt)
    Hs[:H, 0] = 0 if h0 is None else h0.T
    Hs[H] = 1
    return Hs


def outputs_and_final(Hs, L):
    """out (T, B, H) and h_T (B, H), views and gathers of the feature-major states."""
    states = Hs[:-1].transpose(1, 2, 0)                  # (T + 1, B, H)
    return states[1:], (states[-1].copy() if L is None else L.final(states))


def step_masks(L, T):
    """Per-step (1, B) masks in the feature-major layout, or Nones."""
    return [None] * T if L is None else L.mask.transpose(0, 2, 1)


def grads_at_steps(L, gout, gfinal, xp):
    """Per-step gradients reaching the states (T, H, B) and the initial dh or dc (H, B)."""
    if L is None:
        steps, d = gout, gfinal.T.copy()
    else:
        steps, d = L.step_grads(gout, gfinal, xp), xp.zeros(gfinal.T.shape, gfinal.dtype)
    return (None if steps is None else steps.transpose(0, 2, 1)), d


BLOCK = 1 << 16  # elements of backward factors per block of steps: about L2-sized


def step_blocks(T, per_step):
    """Ranges of steps (t0, t1), the last first, of about BLOCK factor elements each."""
    k = max(1, min(T, BLOCK // per_step))
    for t1 in range(T, 0, -k):
        yield max(0, t1 - k), t1


def block_scratch(rows, T, B, dt, xp):
    """One block's factor buffers, (k, r, B) for each r in `rows` (k steps per block)."""
    k = max(1, min(T, BLOCK // (rows[0] * B)))
    return tuple(xp.empty((k, r, B), dt) for r in rows)


def input_projections(w_ih, x, xp):
    """The input projections w_ih (R, I) @ x_t of x (T, B, I), block of steps by block of steps
    in time order, as (t0, t1, P) with P (R, t1 - t0, B) in one reused cache-sized buffer. One
    (R, T, B) array for all steps would make every step read R rows lying T B apart in memory
    (a cache miss per row once T B is large)."""
    T, B, I = x.shape
    R = w_ih.shape[0]
    blocks = list(step_blocks(T, R * B))[::-1]
    buf = xp.empty(R * max(t1 - t0 for t0, t1 in blocks) * B, x.dtype)
    x2 = x.reshape(T * B, I)
    for t0, t1 in blocks:
        P = buf[:R * (t1 - t0) * B].reshape(R, t1 - t0, B)
        xp.matmul(w_ih, x2[t0 * B:t1 * B].T, out=P.reshape(R, (t1 - t0) * B))
        yield t0, t1, P


def reversed_steps(a, t0, t1):
    """a[t1 - 1], ..., a[t0] (a view), or Nones when `a` is None."""
    if a is None:
        return [None] * (t1 - t0)
    return a[t1 - 1::-1] if t0 == 0 else a[t1 - 1:t0 - 1:-1]


def one_minus_square(a, out, xp):
    """out = 1 - a^2 (the derivative of tanh, from its output)."""
    xp.multiply(a, a, out=out)
    xp.subtract(1.0, out, out=out)
    return out


# --- argument checks ----------------------------------------------------------------------------

def shape_of(t):
    return None if t is None else tuple(t.shape)


def check_operands(op, specs):
    """Raise ValueError naming `op` for every (name, tensor, expected shape) that differs, and
    TypeError when the tensors do not share one float dtype."""
    bad = [f"{name} {shape_of(t)} (expected {want})" for name, t, want in specs
           if t is not None and shape_of(t) != want]
    if bad:
        raise ValueError(f"{op}: wrong shapes: " + "; ".join(bad))
    dtypes = {t.dtype for _, t, _ in specs if t is not None}
    if len(dtypes) > 1 or not all(d.kind == "f" for d in dtypes):
        named = ", ".join(f"{name} {t.dtype}" for name, t, _ in specs if t is not None)
        raise TypeError(f"{op}: inputs must share one float dtype, got {named}")


def dims_of(op, name, t, ndim):
    if t.ndim != ndim:
        raise ValueError(f"{op}: {name} must have {ndim} dims, got shape {tuple(t.shape)}")
    return tuple(t.shape)


def hidden_of(op, weight_hh, k):
    """H from weight_hh (k H, H), checking its shape."""
    rows, H = dims_of(op, "weight_hh", weight_hh, 2)
    if rows != k * H:
        raise ValueError(f"{op}: weight_hh must be ({k}H, H), got shape {(rows, H)}")
    return H


def check_lengths(op, lengths, T, B, x):
    """`lengths` (B,) checked by `rnn.lengths.as_lengths` (values in [0, T]), as an int64 array
    on x's device (to be saved for backward), or None."""
    a = as_lengths(lengths, B, T, op, min_length=0)
    return None if a is None else backend.to_device(a, x.device)


def lengths_of(lengths, T, B, dtype, x):
    """The `SequenceLengths` of a device int array (B,) (forward's argument, or backward's saved
    copy), or None."""
    return None if lengths is None else SequenceLengths(lengths, T, B, dtype,
                                                         backend.device_of(x))
