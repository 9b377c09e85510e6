"""Fused RNN kernels: an LSTM, GRU or Elman step, or a whole sequence, as ONE graph node.

Composed from primitives, an LSTM step is about 15 nodes and a sequence of T steps 15 T; every
node costs Python overhead, a temporary array and a saved array. These ops do the same maths with
a hand-derived backward, in place on preallocated buffers, through `self.xp` (NumPy or CuPy).
tests/test_fused.py proves each one equal to its composition from minigrad primitives (values
and every gradient), and benchmarks/rnn.py measures what they buy (docs/performance.md).

Layouts follow PyTorch: LSTM gate blocks (input i, forget f, candidate g, output o), GRU blocks
(reset r, update z, new n); weights are `weight_ih` (G H, I), `weight_hh` (G H, H). Sequences are
time-major: x (T, B, I) -> out (T, B, H).

What makes the sequence ops fast (the per-step ops keep the plain (B, features) layout):
  * the input projection is hoisted out of the recurrence: one matrix product per block of
    steps into a cache-sized buffer (LSTM, GRU; `_projections`) or for all T steps (Elman);
  * inside, per-step arrays are feature-major (features, B): the recurrent product is
    W (G H, H + 1) @ [h; 1] and every gate block is one contiguous chunk (see the note above
    `LSTMSequence`);
  * the bias rides in that product (a row of ones under the stored states), so it costs no
    per-step add and its gradient comes out of the gW_hh product;
  * sigmoid(a) = 0.5 tanh(a / 2) + 0.5 with the 1/2 folded into copies of the sigmoid gates'
    weight rows, and LSTM gates reordered (o, i, f, g): one tanh call covers all four gates;
  * every elementwise op writes into a preallocated buffer (`out=`): no per-step allocation;
  * backward computes the local derivative factors for blocks of steps in a few large ufunc
    calls, runs only the true recurrence per step (LSTM: 6 ufunc calls and one product), then
    gets gx and every weight gradient from one product each over all T B columns.
"""
from __future__ import annotations

import numpy as np

import minigrad as mg
from minigrad import backend
from minigrad.engine import Function
from minigrad.ops import array_matmul
from minigrad.tensor import Tensor

__all__ = ["lstm_step", "gru_step", "rnn_step", "lstm_sequence", "gru_sequence", "rnn_sequence",
           "LSTMStep", "GRUStep", "RNNStep", "LSTMSequence", "GRUSequence", "RNNSequence"]


def _sigmoid_(a, xp):
    """a <- sigmoid(a) in place, as 0.5 tanh(a / 2) + 0.5: no exp overflow, no temporaries."""
    a *= 0.5
    return _sigmoid_of_half_(a, xp)


def _sigmoid_of_half_(a, xp):
    """a <- sigmoid(2 a) = 0.5 tanh(a) + 0.5 in place: for pre-activations whose weights carry
    the 1/2 already."""
    xp.tanh(a, out=a)
    a *= 0.5
    a += 0.5
    return a


class _Lengths:
    """Per-sequence lengths as device arrays, for masking outputs and routing final states.

    Outputs past a sequence's end are set to zero in forward; the state the next step reads is
    then zero for that row, which keeps the (ignored) values past the end finite. Gradients never
    reach those steps: their output gradient is masked and no later step depends on them.
    """

    def __init__(self, lengths, T, B, dtype, dev):
        steps = np.arange(T)[:, None]
        self.mask = dev.to_device((steps < lengths).astype(dtype)[:, :, None])    # (T, B, 1)
        self.last = dev.to_device(lengths.astype(np.int64))                       # (B,)
        self.rows = dev.to_device(np.arange(B))
        ended = np.nonzero(lengths > 0)[0]
        self.end_t = dev.to_device(lengths[ended] - 1)  # step that produced each final state
        self.end_b = dev.to_device(ended)
        self.empty = dev.to_device((lengths == 0).astype(dtype)[:, None]) if (
            lengths == 0).any() else None

    def final(self, states):
        """Each row's state at its own last step, from states (T + 1, B, H) with states[0] = h0."""
        return states[self.last, self.rows]

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


def _lengths(op, lengths, T, B):
    """Check `lengths` (B,) host ints in [0, T]; returns an int64 NumPy array or None."""
    if lengths is None:
        return None
    a = lengths.data if isinstance(lengths, Tensor) else lengths
    a = np.asarray(backend.to_host(a)) if type(a) in backend._by_type else np.asarray(a)
    if a.dtype.kind not in "iu":
        raise TypeError(f"{op}: lengths must be integers, got dtype {a.dtype}")
    if a.shape != (B,):
        raise ValueError(f"{op}: lengths of shape {a.shape} do not match the batch (B,) = ({B},)")
    if a.size and (a.min() < 0 or a.max() > T):
        raise ValueError(f"{op}: lengths must lie in [0, T={T}], got {a.tolist()}")
    return a.astype(np.int64)


# --- the composed twins: what create_graph differentiates ------------------------------------
# A fused op's backward works on arrays only. Under create_graph=True (second derivatives, HVPs)
# the engine re-runs the op's `composed` twin below, the same maths from minigrad primitives, and
# differentiates that: one composed forward and backward more per op (a sequence op's twin runs
# T composed steps), and the fused speed is lost for that pass only. To re-run the twin, a node
# keeps its input tensors until its backward ran: for the step kernels that is one more (B, G H)
# array per step (the projected input gx_t, which they do not save), for the sequence kernels
# only h0, c0 and the biases.

def composed_lstm_step(gx, h, c, weight_hh):
    a_i, a_f, a_g, a_o = mg.split(gx + h @ weight_hh.T, 4, axis=1)
    c = mg.sigmoid(a_f) * c + mg.sigmoid(a_i) * mg.tanh(a_g)
    return mg.sigmoid(a_o) * mg.tanh(c), c


def composed_gru_step(gx, h, weight_hh, bias_hh, *, reset_after=False):
    H = h.shape[1]
    x_r, x_z, x_n = mg.split(gx, 3, axis=1)
    if bias_hh is None:
        bias_hh = mg.zeros(3 * H, dtype=gx.dtype, device=gx.device)
    if reset_after:
        h_r, h_z, h_n = mg.split(h @ weight_hh.T + bias_hh, 3, axis=1)
        r, z = mg.sigmoid(x_r + h_r), mg.sigmoid(x_z + h_z)
        n = mg.tanh(x_n + r * h_n)
    else:
        h_r, h_z = mg.split(h @ weight_hh[:2 * H].T + bias_hh[:2 * H], 2, axis=1)
        r, z = mg.sigmoid(x_r + h_r), mg.sigmoid(x_z + h_z)
        n = mg.tanh(x_n + (r * h) @ weight_hh[2 * H:].T + bias_hh[2 * H:])
    return n + z * (h - n)


def composed_rnn_step(gx, h, weight_hh, *, nonlinearity="tanh"):
    a = gx + h @ weight_hh.T
    return mg.relu(a) if nonlinearity == "relu" else mg.tanh(a)


def _composed_loop(step, x, states, weight_ih, bias, lengths):
    """The sequence twins' loop: step(gx_t, *states) -> new states (h first); outputs past each
    sequence's end are zero and the final states are each row's at its own last step."""
    T, B, _ = x.shape
    states = [mg.zeros(B, s_h, dtype=x.dtype, device=x.device) if s is None else s
              for s, s_h in states]
    gx = x @ weight_ih.T if bias is None else x @ weight_ih.T + bias
    outs, finals = [], list(states)
    for t in range(T):
        new = step(gx[t], *states)
        states = list(new) if isinstance(new, tuple) else [new]
        if lengths is None:
            outs.append(states[0])
            continue
        keep = backend.to_device((t < lengths)[:, None], x.device)
        last = backend.to_device((lengths == t + 1)[:, None], x.device)
        outs.append(mg.where(keep, states[0], 0.0))
        finals = [mg.where(last, s, f) for s, f in zip(states, finals)]
    return (mg.stack(outs),) + tuple(states if lengths is None else finals)


def composed_lstm_sequence(x, h0, c0, weight_ih, weight_hh, bias, *, lengths=None):
    H = weight_hh.shape[1]
    return _composed_loop(lambda g, h, c: composed_lstm_step(g, h, c, weight_hh), x,
                          [(h0, H), (c0, H)], weight_ih, bias, lengths)


def composed_gru_sequence(x, h0, weight_ih, weight_hh, bias_ih, bias_hh, *, reset_after=False,
                          lengths=None):
    H = weight_hh.shape[1]
    return _composed_loop(lambda g, h: composed_gru_step(g, h, weight_hh, bias_hh,
                                                         reset_after=reset_after),
                          x, [(h0, H)], weight_ih, bias_ih, lengths)


def composed_rnn_sequence(x, h0, weight_ih, weight_hh, bias, *, nonlinearity="tanh",
                          lengths=None):
    H = weight_hh.shape[1]
    return _composed_loop(lambda g, h: composed_rnn_step(g, h, weight_hh,
                                                         nonlinearity=nonlinearity),
                          x, [(h0, H)], weight_ih, bias, lengths)


# --- one step -----------------------------------------------------------------------------------

class LSTMStep(Function):
    """One LSTM step from gx = x_t W_ih^T + b (B, 4H), h, c (B, H), weight_hh (4H, H):

        [i, f, g, o] = [sig, sig, tanh, sig](gx + h W_hh^T),  c' = f c + i g,  h' = o tanh(c')

    Backward: dc = gc' + gh' o (1 - tanh(c')^2); da = [dc g, dc c, dc i, gh' tanh(c')] times the
    activation derivatives (s (1 - s), 1 - g^2); gx = da, gh = da W_hh, gc = dc f, gW = da^T h.
    Saves the activated gates (4 H per row: every derivative is a function of them), h and c
    (for gW and df) and tanh(c') (for do and dc): 7 (B, H) arrays, weight_hh aside.
    """

    composed = staticmethod(composed_lstm_step)  # differentiated under create_graph

    def forward(self, gx, h, c, weight_hh):
        xp, H = self.xp, h.shape[1]
        a = h @ weight_hh.T
        a += gx
        _sigmoid_(a[:, :2 * H], xp)
        xp.tanh(a[:, 2 * H:3 * H], out=a[:, 2 * H:3 * H])
        _sigmoid_(a[:, 3 * H:], xp)
        i, f, g, o = a[:, :H], a[:, H:2 * H], a[:, 2 * H:3 * H], a[:, 3 * H:]
        c_new = f * c
        c_new += i * g
        tc = xp.tanh(c_new)
        self.save_for_backward(a, h, c, tc, weight_hh)
        return o * tc, c_new

    def backward(self, gh, gc):
        a, h, c, tc, weight_hh = self.saved
        H = h.shape[1]
        i, f, g, o = a[:, :H], a[:, H:2 * H], a[:, 2 * H:3 * H], a[:, 3 * H:]
        dc = gh * o * (1 - tc * tc) + gc
        da = self.xp.concatenate([dc * g * i * (1 - i), dc * c * f * (1 - f),
                                  dc * i * (1 - g * g), gh * tc * o * (1 - o)], axis=1)
        n = self.needs_input_grad
        return (da if n[0] else None, da @ weight_hh if n[1] else None,
                dc * f if n[2] else None, array_matmul(da.T, h) if n[3] else None)


class GRUStep(Function):
    """One GRU step from gx = x_t W_ih^T + b_ih (B, 3H), h (B, H), weight_hh (3H, H), bias_hh:

        r = sig(gx_r + h W_hr^T + b_hr),  z = sig(gx_z + h W_hz^T + b_hz)
        n = tanh(gx_n + (r h) W_hn^T + b_hn)      (reset_after=False)
        n = tanh(gx_n + r (h W_hn^T + b_hn))      (reset_after=True)
        h' = z h + (1 - z) n

    Backward: dn = gh' (1 - z)(1 - n^2), dz = gh' (h - n) z (1 - z), and dr through r's product;
    gh = gh' z + (the gradient of the hidden-side pre-activations) W_hh.
    Saves the activated gates [r, z, n] (3 H per row), h, and r h (reset_after=False, for gW_hn)
    or h W_hn^T + b_hn (reset_after=True, for dr): 5 (B, H) arrays, the weights aside.
    """

    composed = staticmethod(composed_gru_step)  # differentiated under create_graph

    def forward(self, gx, h, weight_hh, bias_hh, *, reset_after=False):
        xp, H = self.xp, h.shape[1]
        self.reset_after = reset_after
        a = gx.copy()
        if reset_after:
            hw = h @ weight_hh.T
            hw += bias_hh
            a[:, :2 * H] += hw[:, :2 * H]
            _sigmoid_(a[:, :2 * H], xp)
            extra = hw[:, 2 * H:].copy()                # h W_hn^T + b_hn
            a[:, 2 * H:] += a[:, :H] * extra
        else:
            a[:, :2 * H] += h @ weight_hh[:2 * H].T + bias_hh[:2 * H]
            _sigmoid_(a[:, :2 * H], xp)
            extra = a[:, :H] * h                        # r h
            a[:, 2 * H:] += extra @ weight_hh[2 * H:].T + bias_hh[2 * H:]
        n = xp.tanh(a[:, 2 * H:], out=a[:, 2 * H:])
        z = a[:, H:2 * H]
        self.save_for_backward(a, h, extra, weight_hh)
        return n + z * (h - n)

    def backward(self, gout):
        a, h, extra, weight_hh = self.saved
        xp, H = self.xp, h.shape[1]
        r, z, n = a[:, :H], a[:, H:2 * H], a[:, 2 * H:]
        dn = gout * (1 - z) * (1 - n * n)
        dz = gout * (h - n) * z * (1 - z)
        gh = gout * z                                       # the direct path h -> h'
        if self.reset_after:
            dr = dn * extra * r * (1 - r)
            dhw = xp.concatenate([dr, dz, dn * r], axis=1)  # d(h W_hh^T + b_hh)
            ga = xp.concatenate([dr, dz, dn], axis=1)
            gh += dhw @ weight_hh
            gw = array_matmul(dhw.T, h)
        else:
            drh = dn @ weight_hh[2 * H:]                    # d(r h)
            dr = drh * h * r * (1 - r)
            ga = dhw = xp.concatenate([dr, dz, dn], axis=1)  # b_hh sits outside every product
            gh += drh * r + dhw[:, :2 * H] @ weight_hh[:2 * H]
            gw = xp.concatenate([array_matmul(dhw[:, :2 * H].T, h), array_matmul(dn.T, extra)])
        n_ = self.needs_input_grad
        return (ga if n_[0] else None, gh if n_[1] else None, gw if n_[2] else None,
                dhw if n_[3] else None)


class RNNStep(Function):
    """One Elman step from gx = x_t W_ih^T + b (B, H), h (B, H), weight_hh (H, H):

        h' = act(gx + h W_hh^T),  act = tanh or relu
        d = gh' act'(.) with tanh' = 1 - h'^2, relu' = [h' > 0];  gx = d, gh = d W_hh, gW = d^T h

    Saves h' (the derivative is a function of it) and h (for gW): 2 (B, H) arrays.
    """

    composed = staticmethod(composed_rnn_step)  # differentiated under create_graph

    def forward(self, gx, h, weight_hh, *, nonlinearity="tanh"):
        self.relu = nonlinearity == "relu"
        out = h @ weight_hh.T
        out += gx
        if self.relu:
            self.xp.maximum(out, 0, out=out)
        else:
            self.xp.tanh(out, out=out)
        self.save_for_backward(out, h, weight_hh)
        return out

    def backward(self, gout):
        out, h, weight_hh = self.saved
        d = gout * (out > 0) if self.relu else gout * (1 - out * out)
        n = self.needs_input_grad
        return d, (d @ weight_hh if n[1] else None), (array_matmul(d.T, h) if n[2] else None)


# --- a whole sequence ----------------------------------------------------------------------------
#
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

def _rot(w, k, H, xp):
    """Rotate gate blocks along axis 0 so block k comes first: LSTM (i, f, g, o) -> (o, i, f, g)
    with k = 3; k = 1 turns it back."""
    return xp.concatenate([w[k * H:], w[:k * H]])


def _with_bias(w, b, xp):
    """[w | b] (rows, cols + 1): the bias multiplies the row of ones under the stored states."""
    out = xp.empty((w.shape[0], w.shape[1] + 1), w.dtype)
    out[:, :-1] = w
    out[:, -1] = 0 if b is None else b
    return out


def _states(h0, T, B, H, dt, xp):
    """Hs (H + 1, T + 1, B): column t holds h_{t-1} over a row of ones; column 0 is h0."""
    Hs = xp.empty((H + 1, T + 1, B), dt)
    Hs[:H, 0] = 0 if h0 is None else h0.T
    Hs[H] = 1
    return Hs


def _outputs(Hs, L):
    """out (T, B, H) and h_T (B, H), views and gathers of the feature-major states."""
    states = Hs[:-1].transpose(1, 2, 0)                  # (T + 1, B, H)
    return states[1:], (states[-1].copy() if L is None else L.final(states))


def _masks(L, T):
    """Per-step (1, B) masks in the feature-major layout, or Nones."""
    return [None] * T if L is None else L.mask.transpose(0, 2, 1)


def _grad_init(L, gout, gfinal, xp):
    """Per-step gradients reaching the states (T, H, B) and the initial dh or dc (H, B)."""
    if L is None:
        steps, d = gout, gfinal.T.copy()
    else:
        steps, d = L.step_grads(gout, gfinal, xp), xp.zeros(gfinal.T.shape, gfinal.dtype)
    return (None if steps is None else steps.transpose(0, 2, 1)), d


_BLOCK = 1 << 16  # elements of backward factors per block of steps: about L2-sized


def _blocks(T, per_step):
    """Ranges of steps (t0, t1), the last first, of about _BLOCK factor elements each."""
    k = max(1, min(T, _BLOCK // per_step))
    for t1 in range(T, 0, -k):
        yield max(0, t1 - k), t1


def _scratch(rows, T, B, dt, xp):
    """One block's factor buffers, (k, r, B) for each r in `rows` (k steps per block)."""
    k = max(1, min(T, _BLOCK // (rows[0] * B)))
    return tuple(xp.empty((k, r, B), dt) for r in rows)


def _projections(w_ih, x, xp):
    """The input projections w_ih (R, I) @ x_t of x (T, B, I), block of steps by block of steps
    in time order, as (t0, t1, P) with P (R, t1 - t0, B) in one reused cache-sized buffer. One
    (R, T, B) array for all steps would make every step read R rows lying T B apart in memory
    (a cache miss per row once T B is large)."""
    T, B, I = x.shape
    R = w_ih.shape[0]
    blocks = list(_blocks(T, R * B))[::-1]
    buf = xp.empty(R * max(t1 - t0 for t0, t1 in blocks) * B, x.dtype)
    x2 = x.reshape(T * B, I)
    for t0, t1 in blocks:
        P = buf[:R * (t1 - t0) * B].reshape(R, t1 - t0, B)
        xp.matmul(w_ih, x2[t0 * B:t1 * B].T, out=P.reshape(R, (t1 - t0) * B))
        yield t0, t1, P


def _rev(a, t0, t1):
    """a[t1 - 1], ..., a[t0] (a view), or Nones when `a` is None."""
    if a is None:
        return [None] * (t1 - t0)
    return a[t1 - 1::-1] if t0 == 0 else a[t1 - 1:t0 - 1:-1]


def _one_minus_square(a, out, xp):
    """out = 1 - a^2 (the derivative of tanh, from its output)."""
    xp.multiply(a, a, out=out)
    xp.subtract(1.0, out, out=out)
    return out


class LSTMSequence(Function):
    """The LSTM over a whole sequence as one op: x (T, B, I), h0, c0 (B, H) or None (zeros),
    weight_ih (4H, I), weight_hh (4H, H), bias (4H) or None -> out (T, B, H), h_T, c_T (B, H).

    Forward: the input projection of each block of steps in one product, then per step the maths
    of `LSTMStep`. Gates are kept in the order (o, i, f, g): the three sigmoid gates are one
    block, and with the 1/2 of sigmoid(a) = 0.5 tanh(a / 2) + 0.5 folded into their weight rows
    one tanh covers all four gates. Backward: BPTT, one (H, 4H) @ (4H, B) product per step; then
    gx, gW_ih and [gW_hh | gb] are one product each over all T B columns.
    Saves, per step, the activated gates with the previous cell state (5 H rows: every factor
    of the backward is a function of them), tanh(c) (H: one tanh costs more than the memory)
    and h (H + 1, for gW_hh and gb); x and the weights: 7 (B, H) arrays per step.
    With `lengths` (B,), outputs past each end are zero and h_T, c_T are each row's state at
    its own last step.
    """

    composed = staticmethod(composed_lstm_sequence)  # differentiated under create_graph

    def forward(self, x, h0, c0, weight_ih, weight_hh, bias, *, lengths=None):
        xp = self.xp
        T, B, I = x.shape
        H, dt = weight_hh.shape[1], x.dtype
        H3, H4 = 3 * H, 4 * H
        L = self.lens = None if lengths is None else _Lengths(
            lengths, T, B, dt, backend.device_of(x))
        w_ih = _rot(weight_ih, 3, H, xp)
        w_ih[:H3] *= 0.5                     # sigmoid(a) = 0.5 tanh(a / 2) + 0.5: fold the 1/2
        w_hh = _with_bias(_rot(weight_hh, 3, H, xp), None if bias is None else
                          _rot(bias, 3, H, xp), xp)
        w_hh[:H3] *= 0.5
        G = xp.empty((T + 1, 5 * H, B), dt)  # step t: o, i, f, g, then c_{t-1}; G[T, 4H:] = c_T
        G[0, H4:] = 0 if c0 is None else c0.T
        TC = xp.empty((T, H, B), dt)                          # tanh(c_t)
        Hs = _states(h0, T, B, H, dt, xp)
        HsT = Hs.transpose(1, 0, 2)
        prod = xp.empty((2 * H, B), dt)
        ig, fc = prod[:H], prod[H:]
        masks = _masks(L, T)
        for t0, t1, P in _projections(w_ih, x, xp):
            for a, s3, o, i_f, g_c, c, p, h, h_new, tc, m in zip(
                    G[t0:t1, :H4], G[t0:t1, :H3], G[t0:t1, :H], G[t0:t1, H:H3], G[t0:t1, H3:],
                    G[t0 + 1:t1 + 1, H4:], P.transpose(1, 0, 2), HsT[t0:t1],
                    HsT[t0 + 1:t1 + 1, :H], TC[t0:t1], masks[t0:t1]):
                xp.matmul(w_hh, h, out=a)
                a += p
                xp.tanh(a, out=a)
                s3 *= 0.5
                s3 += 0.5
                xp.multiply(i_f, g_c, out=prod)               # [i g, f c_{t-1}]
                xp.add(ig, fc, out=c)
                xp.tanh(c, out=tc)
                xp.multiply(o, tc, out=h_new)
                if m is not None:
                    h_new *= m
        self.save_for_backward(x, weight_ih, weight_hh, G, TC, Hs)
        out, h_T = _outputs(Hs, L)
        cells = G[:, H4:].transpose(0, 2, 1)                  # (T + 1, B, H)
        return out, h_T, (cells[T].copy() if L is None else L.final(cells))

    def backward(self, gout, gh, gc):
        x, weight_ih, weight_hh, G, TC, Hs = self.saved
        xp, L, n = self.xp, self.lens, self.needs_input_grad
        T, B, I = x.shape
        H, dt = weight_hh.shape[1], x.dtype
        H2, H3, H4 = 2 * H, 3 * H, 4 * H
        gsteps, dh = _grad_init(L, gout, gh, xp)
        gcsteps, dc = _grad_init(L, None, gc, xp) if L is not None else (None, gc.T.copy())
        D = xp.empty((H4, T, B), dt)                          # rows o, i, f, g
        w_hhT = _rot(weight_hh, 3, H, xp).T
        # per block: the local factors A, K and the steps' pre-activation gradients Db, written
        # step by step into the cache-sized Db and copied into D once per block (written
        # straight into D, every step would touch 4H rows lying T B apart)
        A, K, Db = _scratch((H4, H, H4), T, B, dt, xp)
        tmp = xp.empty((H, B), dt)
        for t0, t1 in _blocks(T, H4 * B):
            # local factors of the block's steps: a few ufunc calls over all of them
            Gb, Ab, Kb, Dk = G[t0:t1], A[:t1 - t0], K[:t1 - t0], Db[:t1 - t0]
            s3, o, i, g = Gb[:, :H3], Gb[:, :H], Gb[:, H:H2], Gb[:, H3:H4]
            xp.subtract(1.0, s3, out=Ab[:, :H3])
            Ab[:, :H3] *= s3                                  # s (1 - s)
            Ab[:, :H] *= TC[t0:t1]                            # o: tanh(c) o (1 - o)
            Ab[:, H:H2] *= g                                  # i: g i (1 - i)
            Ab[:, H2:H3] *= Gb[:, H4:]                        # f: c_{t-1} f (1 - f)
            _one_minus_square(g, Ab[:, H3:], xp)
            Ab[:, H3:] *= i                                   # g: i (1 - g^2)
            _one_minus_square(TC[t0:t1], Kb, xp)
            Kb *= o                                           # dc += dh o (1 - tanh(c)^2)
            # the recurrence: 6 ufunc calls and one product per step
            for t, gs, gcs, k, a_o, a_ifg, d_o, d_ifg, d, f in zip(
                    range(t1 - 1, t0 - 1, -1), _rev(gsteps, t0, t1), _rev(gcsteps, t0, t1),
                    Kb[::-1], Ab[::-1, :H], Ab.reshape(-1, 4, H, B)[::-1, 1:], Dk[::-1, :H],
                    Dk.reshape(-1, 4, H, B)[::-1, 1:], Dk[::-1], Gb[::-1, H2:H3]):
                dh += gs
                if gcs is not None:
                    dc += gcs
                xp.multiply(dh, k, out=tmp)
                dc += tmp
                xp.multiply(dh, a_o, out=d_o)
                xp.multiply(dc, a_ifg, out=d_ifg)
                dc *= f
                if t or n[1]:
                    xp.matmul(w_hhT, d, out=dh)
            D[:, t0:t1] = Dk.transpose(1, 0, 2)
        if L is not None:
            L.to_initial(dh.T, gh)
            L.to_initial(dc.T, gc)
        D2 = D.reshape(H4, T * B)
        gx = gw_ih = gw_hh = gb = None
        if n[0]:
            gx = (D2.T @ _rot(weight_ih, 3, H, xp)).reshape(T, B, I)
        if n[3]:
            gw_ih = _rot(D2 @ x.reshape(T * B, I), 1, H, xp)
        if n[4] or n[5]:
            gwb = _rot(D2 @ Hs[:, :T].reshape(H + 1, T * B).T, 1, H, xp)   # [gW_hh | gb]
            gw_hh, gb = gwb[:, :H], gwb[:, H]
        return gx, (dh.T if n[1] else None), (dc.T if n[2] else None), gw_ih, gw_hh, gb


class GRUSequence(Function):
    """The GRU over a whole sequence as one op: x (T, B, I), h0 (B, H) or None (zeros),
    weight_ih (3H, I), weight_hh (3H, H), bias_ih, bias_hh (3H) or None -> out (T, B, H), h_T.

    Per step the maths of `GRUStep`, with the layout and the backward of `LSTMSequence`.
    reset_after=True: one recurrent product [W_hh | b'] [h; 1] gives the r, z pre-activations
    and hn = W_hn h + b_hn; gates are stored as [r, z, hn, n] (4 H rows per step) and D holds
    [n, r, z, hn], so the input-side gradients (n, r, z) and the hidden-side ones (r, z, hn)
    are each one contiguous window: one product per weight gradient.
    reset_after=False: b_hn sits outside the product, so b_ih + b_hh is one bias and both bias
    gradients are the same; gates [r, z, n] (3 H) and r h (H, for gW_hn) are stored.
    Saves, per step, the gates, hn or r h, and h (H + 1); x and the weights: 5 (B, H) arrays.
    """

    composed = staticmethod(composed_gru_sequence)  # differentiated under create_graph

    def forward(self, x, h0, weight_ih, weight_hh, bias_ih, bias_hh, *, reset_after=False,
                lengths=None):
        xp = self.xp
        T, B, I = x.shape
        H, dt = weight_hh.shape[1], x.dtype
        H2, H3 = 2 * H, 3 * H
        self.reset_after = reset_after
        L = self.lens = None if lengths is None else _Lengths(
            lengths, T, B, dt, backend.device_of(x))
        b_ih = xp.zeros(H3, dt) if bias_ih is None else bias_ih
        b_hh = xp.zeros(H3, dt) if bias_hh is None else bias_hh
        Hs = _states(h0, T, B, H, dt, xp)
        HsT = Hs.transpose(1, 0, 2)
        tmp, masks = xp.empty((H, B), dt), _masks(L, T)
        if reset_after:
            w_ih = _rot(weight_ih, 2, H, xp)                  # rows n, r, z
            w_ih[H:] *= 0.5                   # sigmoid(a) = 0.5 tanh(a / 2) + 0.5: fold the 1/2
            b = b_hh.copy()
            b[:H2] += b_ih[:H2]
            w_hh = _with_bias(weight_hh, b, xp)               # rows r, z, n: gives r, z, hn
            w_hh[:H2] *= 0.5
            G = xp.empty((T, 4 * H, B), dt)                   # r, z, hn, n
            extra = None
            for t0, t1, P in _projections(w_ih, x, xp):
                P[:H] += b_ih[H2:, None, None]
                for a3, rz, r, z, hn, nn, p_n, p_rz, h, h_aug, h_new, m in zip(
                        G[t0:t1, :H3], G[t0:t1, :H2], G[t0:t1, :H], G[t0:t1, H:H2],
                        G[t0:t1, H2:H3], G[t0:t1, H3:], P[:H].transpose(1, 0, 2),
                        P[H:].transpose(1, 0, 2), HsT[t0:t1, :H], HsT[t0:t1],
                        HsT[t0 + 1:t1 + 1, :H], masks[t0:t1]):
                    xp.matmul(w_hh, h_aug, out=a3)
                    rz += p_rz
                    _sigmoid_of_half_(rz, xp)
                    xp.multiply(r, hn, out=nn)
                    nn += p_n
                    xp.tanh(nn, out=nn)
                    _mix(h, nn, z, h_new, tmp, m, xp)
        else:
            w_ih = weight_ih.copy()
            w_ih[:H2] *= 0.5
            b = b_ih + b_hh
            w_rz = _with_bias(weight_hh[:H2], b[:H2], xp)
            w_rz *= 0.5
            w_n = weight_hh[H2:]
            G = xp.empty((T, H3, B), dt)                      # r, z, n
            extra = xp.empty((H, T, B), dt)                   # r h
            for t0, t1, P in _projections(w_ih, x, xp):
                P[H2:] += b[H2:, None, None]
                for rz, r, z, nn, p_rz, p_n, rh, h, h_aug, h_new, m in zip(
                        G[t0:t1, :H2], G[t0:t1, :H], G[t0:t1, H:H2], G[t0:t1, H2:],
                        P[:H2].transpose(1, 0, 2), P[H2:].transpose(1, 0, 2),
                        extra[:, t0:t1].transpose(1, 0, 2), HsT[t0:t1, :H], HsT[t0:t1],
                        HsT[t0 + 1:t1 + 1, :H], masks[t0:t1]):
                    xp.matmul(w_rz, h_aug, out=rz)
                    rz += p_rz
                    _sigmoid_of_half_(rz, xp)
                    xp.multiply(r, h, out=rh)
                    xp.matmul(w_n, rh, out=nn)
                    nn += p_n
                    xp.tanh(nn, out=nn)
                    _mix(h, nn, z, h_new, tmp, m, xp)
        self.save_for_backward(x, weight_ih, weight_hh, G, extra, Hs)
        return _outputs(Hs, L)

    def backward(self, gout, gh):
        x, weight_ih, weight_hh, G, extra, Hs = self.saved
        xp, L, n = self.xp, self.lens, self.needs_input_grad
        T, B, I = x.shape
        H, dt = weight_hh.shape[1], x.dtype
        H2, H3 = 2 * H, 3 * H
        gsteps, dh = _grad_init(L, gout, gh, xp)
        HsT = Hs.transpose(1, 0, 2)
        rows = 4 * H if self.reset_after else H3
        D = xp.empty((rows, T, B), dt)        # reset_after: n, r, z, hn; else r, z, n
        DG = D.reshape(rows // H, H, T, B).transpose(2, 0, 1, 3)          # (T, 4 or 3, H, B)
        A, = _scratch((rows,), T, B, dt, xp)
        tmp, drh = xp.empty((H, B), dt), xp.empty((H, B), dt)
        w_hhT, w_rzT, w_nT = weight_hh.T, weight_hh[:H2].T, weight_hh[H2:].T
        for t0, t1 in _blocks(T, rows * B):
            # local factors of the block's steps (rows as in D): a few ufunc calls for all
            Gb, Ab, h_prev = G[t0:t1], A[:t1 - t0], HsT[t0:t1, :H]
            if self.reset_after:
                r, z, hn, nn = Gb[:, :H], Gb[:, H:H2], Gb[:, H2:H3], Gb[:, H3:]
                an, ar, az, ahn = Ab[:, :H], Ab[:, H:H2], Ab[:, H2:H3], Ab[:, H3:]
            else:
                r, z, nn = Gb[:, :H], Gb[:, H:H2], Gb[:, H2:]
                ar, az, an = Ab[:, :H], Ab[:, H:H2], Ab[:, H2:]
            _one_minus_square(nn, an, xp)
            xp.subtract(1.0, z, out=az)
            an *= az                                          # n: (1 - z)(1 - n^2)
            az *= z
            xp.subtract(h_prev, nn, out=ar)
            az *= ar                                          # z: (h - n) z (1 - z)
            xp.subtract(1.0, r, out=ar)
            ar *= r
            if self.reset_after:
                xp.multiply(an, r, out=ahn)                   # hn: r (1 - z)(1 - n^2)
                ar *= hn
                ar *= an                                      # r: hn r (1 - r)(1 - z)(1 - n^2)
            else:
                ar *= h_prev                                  # r: h r (1 - r), times d(r h)
            # the recurrence: 3 (reset_after) or 6 ufunc calls and 1 or 2 products per step
            steps = (range(t1 - 1, t0 - 1, -1), _rev(gsteps, t0, t1),
                     Ab.reshape(-1, rows // H, H, B)[::-1], _rev(DG, t0, t1), z[::-1])
            DT = _rev(D.transpose(1, 0, 2), t0, t1)
            if self.reset_after:
                for t, gs, a, dg, z_t, d_h in zip(*steps, DT[:, H:]):
                    dh += gs
                    xp.multiply(dh, a, out=dg)                # all four pre-activation grads
                    if t or n[1]:
                        xp.multiply(dh, z_t, out=tmp)         # the direct path h -> h'
                        xp.matmul(w_hhT, d_h, out=dh)
                        dh += tmp
                continue
            for t, gs, a, dg, z_t, r_t, d_rz, d_n in zip(*steps, r[::-1], DT[:, :H2], DT[:, H2:]):
                dh += gs
                xp.multiply(dh, a[1:], out=dg[1:])            # z and n
                xp.matmul(w_nT, d_n, out=drh)                 # d(r h)
                xp.multiply(drh, a[0], out=dg[0])             # r
                if t or n[1]:
                    xp.multiply(dh, z_t, out=tmp)
                    drh *= r_t
                    tmp += drh
                    xp.matmul(w_rzT, d_rz, out=dh)
                    dh += tmp
        if L is not None:
            L.to_initial(dh.T, gh)
        gx, gw_ih, gw_hh, gb_ih, gb_hh = self._weight_grads(x, D, Hs, extra, weight_ih)
        return gx, (dh.T if n[1] else None), gw_ih, gw_hh, gb_ih, gb_hh

    def _weight_grads(self, x, D, Hs, extra, weight_ih):
        """gx, gW_ih, gW_hh, gb_ih, gb_hh from the pre-activation gradients D (all steps)."""
        xp, n = self.xp, self.needs_input_grad
        T, B, I = x.shape
        H = Hs.shape[0] - 1
        H2, H3 = 2 * H, 3 * H
        D2 = D.reshape(D.shape[0], T * B)
        x2, h1 = x.reshape(T * B, I), Hs[:, :T].reshape(H + 1, T * B)
        gx = gw_ih = gw_hh = gb_ih = gb_hh = None
        if self.reset_after:
            d_ih = D2[:H3]                                    # n, r, z
            if n[0]:
                gx = (d_ih.T @ _rot(weight_ih, 2, H, xp)).reshape(T, B, I)
            if n[2]:
                gw_ih = _rot(d_ih @ x2, 1, H, xp)
            gwb = D2[H:] @ h1.T                               # rows r, z, n: [gW_hh | gb_hh]
            gw_hh, gb_hh = gwb[:, :H], gwb[:, H]
            if n[4]:
                gb_ih = xp.concatenate([gb_hh[:H2], D2[:H].sum(axis=1)])
        else:
            if n[0]:
                gx = (D2.T @ weight_ih).reshape(T, B, I)
            if n[2]:
                gw_ih = D2 @ x2
            g_rz = D2[:H2] @ h1.T                             # [gW_hr; gW_hz | gb_r; gb_z]
            gw_hh = xp.concatenate([g_rz[:, :H], D2[H2:] @ extra.reshape(H, T * B).T])
            gb_ih = xp.concatenate([g_rz[:, H], D2[H2:].sum(axis=1)])
            gb_hh = gb_ih.copy() if n[4] else gb_ih
        return gx, gw_ih, gw_hh, gb_ih, gb_hh


def _mix(h, n, z, h_new, tmp, m, xp):
    """h_new = z h + (1 - z) n = n + z (h - n), then masked past each sequence's end."""
    xp.subtract(h, n, out=tmp)
    tmp *= z
    xp.add(n, tmp, out=h_new)
    if m is not None:
        h_new *= m


class RNNSequence(Function):
    """The Elman RNN over a whole sequence as one op: x (T, B, I), h0 (B, H) or None (zeros),
    weight_ih (H, I), weight_hh (H, H), bias (H) or None -> out (T, B, H), h_T (B, H).

    Per step the maths of `RNNStep`, with the layout of `LSTMSequence`: the input projection of
    all steps is copied into the state buffer, which the loop finishes in place.
    Saves the states (H + 1 per step: the activation derivative is a function of them), x and
    the weights: one (B, H) array per step.
    """

    composed = staticmethod(composed_rnn_sequence)  # differentiated under create_graph

    def forward(self, x, h0, weight_ih, weight_hh, bias, *, nonlinearity="tanh", lengths=None):
        xp = self.xp
        T, B, I = x.shape
        H, dt = weight_hh.shape[1], x.dtype
        self.relu = nonlinearity == "relu"
        L = self.lens = None if lengths is None else _Lengths(
            lengths, T, B, dt, backend.device_of(x))
        Hs = _states(h0, T, B, H, dt, xp)
        HsT = Hs.transpose(1, 0, 2)
        Hs[:H, 1:] = (weight_ih @ x.reshape(T * B, I).T).reshape(H, T, B)   # projections
        w_hh = _with_bias(weight_hh, bias, xp)
        tmp = xp.empty((H, B), dt)
        for h, h_new, m in zip(HsT[:-1], HsT[1:, :H], _masks(L, T)):
            xp.matmul(w_hh, h, out=tmp)
            h_new += tmp
            if self.relu:
                xp.maximum(h_new, 0, out=h_new)
            else:
                xp.tanh(h_new, out=h_new)
            if m is not None:
                h_new *= m
        self.save_for_backward(x, weight_ih, weight_hh, Hs)
        return _outputs(Hs, L)

    def backward(self, gout, gh):
        x, weight_ih, weight_hh, Hs = self.saved
        xp, L, n = self.xp, self.lens, self.needs_input_grad
        T, B, I = x.shape
        H, dt = weight_hh.shape[1], x.dtype
        gsteps, dh = _grad_init(L, gout, gh, xp)
        D = xp.empty((H, T, B), dt)                           # act'(.) for all steps, then d
        out = Hs[:H, 1:]
        if self.relu:
            D[...] = out > 0
        else:
            _one_minus_square(out, D, xp)
        w_hhT = weight_hh.T
        for t, gs, d in zip(range(T - 1, -1, -1), gsteps[::-1], D.transpose(1, 0, 2)[::-1]):
            dh += gs
            d *= dh
            if t or n[1]:
                xp.matmul(w_hhT, d, out=dh)
        if L is not None:
            L.to_initial(dh.T, gh)
        D2 = D.reshape(H, T * B)
        gwb = D2 @ Hs[:, :T].reshape(H + 1, T * B).T if n[3] or n[4] else None
        return ((D2.T @ weight_ih).reshape(T, B, I) if n[0] else None,
                dh.T if n[1] else None,
                D2 @ x.reshape(T * B, I) if n[2] else None,
                gwb[:, :H] if n[3] else None,
                gwb[:, H] if n[4] else None)


# --- the functions cells call: argument checks, then one op -------------------------------------

def _shape(t):
    return None if t is None else tuple(t.shape)


def _check(op, specs):
    """Raise ValueError naming `op` for every (name, tensor, expected shape) that differs, and
    TypeError when the tensors do not share one float dtype."""
    bad = [f"{name} {_shape(t)} (expected {want})" for name, t, want in specs
           if t is not None and _shape(t) != want]
    if bad:
        raise ValueError(f"{op}: wrong shapes: " + "; ".join(bad))
    dtypes = {str(t.dtype) for _, t, _ in specs if t is not None}
    if len(dtypes) > 1 or not all(np.dtype(d).kind == "f" for d in dtypes):
        named = ", ".join(f"{name} {t.dtype}" for name, t, _ in specs if t is not None)
        raise TypeError(f"{op}: inputs must share one float dtype, got {named}")


def _dims(op, name, t, ndim):
    if t.ndim != ndim:
        raise ValueError(f"{op}: {name} must have {ndim} dims, got shape {tuple(t.shape)}")
    return tuple(t.shape)


def _gates(op, weight_hh, k):
    """H from weight_hh (k H, H), checking its shape."""
    rows, H = _dims(op, "weight_hh", weight_hh, 2)
    if rows != k * H:
        raise ValueError(f"{op}: weight_hh must be ({k}H, H), got shape {(rows, H)}")
    return H


def _nonlinearity(op, nonlinearity):
    if nonlinearity not in ("tanh", "relu"):
        raise ValueError(f"{op}: nonlinearity must be 'tanh' or 'relu', got {nonlinearity!r}")


def lstm_step(gx_t: Tensor, h: Tensor, c: Tensor, weight_hh: Tensor) -> tuple[Tensor, Tensor]:
    """One LSTM step as one op: returns (h', c') (B, H). See `LSTMStep` for the maths.

    gx_t = x_t W_ih^T + b (B, 4H) is the precomputed input projection, gate blocks (i, f, g, o).

    >>> import minigrad as mg
    >>> B, H = 2, 3
    >>> h, c = lstm_step(mg.randn(B, 4 * H), mg.zeros(B, H), mg.zeros(B, H), mg.randn(4 * H, H))
    >>> h.shape, c.shape
    ((2, 3), (2, 3))
    """
    B, H = _dims("lstm_step", "h", h, 2)
    _check("lstm_step", [("gx_t", gx_t, (B, 4 * H)), ("h", h, (B, H)), ("c", c, (B, H)),
                         ("weight_hh", weight_hh, (4 * H, H))])
    return LSTMStep.apply(gx_t, h, c, weight_hh)


def gru_step(gx_t: Tensor, h: Tensor, weight_hh: Tensor, bias_hh: Tensor,
             reset_after: bool = False) -> Tensor:
    """One GRU step as one op: returns h' (B, H). See `GRUStep` for the maths.

    gx_t = x_t W_ih^T + b_ih (B, 3H) is the precomputed input projection, blocks (r, z, n).

    >>> import minigrad as mg
    >>> B, H = 2, 3
    >>> gru_step(mg.randn(B, 3 * H), mg.zeros(B, H), mg.randn(3 * H, H), mg.zeros(3 * H)).shape
    (2, 3)
    """
    B, H = _dims("gru_step", "h", h, 2)
    _check("gru_step", [("gx_t", gx_t, (B, 3 * H)), ("h", h, (B, H)),
                        ("weight_hh", weight_hh, (3 * H, H)), ("bias_hh", bias_hh, (3 * H,))])
    return GRUStep.apply(gx_t, h, weight_hh, bias_hh, reset_after=bool(reset_after))


def rnn_step(gx_t: Tensor, h: Tensor, weight_hh: Tensor, nonlinearity: str = "tanh") -> Tensor:
    """One Elman step as one op: h' = act(gx_t + h W_hh^T) (B, H), act tanh or relu.

    >>> import minigrad as mg
    >>> rnn_step(mg.randn(2, 3), mg.zeros(2, 3), mg.randn(3, 3), "relu").shape
    (2, 3)
    """
    _nonlinearity("rnn_step", nonlinearity)
    B, H = _dims("rnn_step", "h", h, 2)
    _check("rnn_step", [("gx_t", gx_t, (B, H)), ("h", h, (B, H)),
                        ("weight_hh", weight_hh, (H, H))])
    return RNNStep.apply(gx_t, h, weight_hh, nonlinearity=nonlinearity)


def lstm_sequence(x: Tensor, h0: Tensor | None, c0: Tensor | None, weight_ih: Tensor,
                  weight_hh: Tensor, bias: Tensor | None = None,
                  lengths=None) -> tuple[Tensor, Tensor, Tensor]:
    """A whole LSTM sequence as one op: x (T, B, I) -> (out (T, B, H), h_T, c_T (B, H)).

    h0, c0 None mean zeros. `lengths` (B,) host ints in [0, T]: outputs past each sequence's end
    are zero (and carry no gradient); h_T, c_T are each sequence's state at its own last step.
    See `LSTMSequence` for the maths and what it keeps for backward.

    >>> import minigrad as mg
    >>> T, B, I, H = 5, 2, 3, 4
    >>> out, h, c = lstm_sequence(mg.randn(T, B, I), None, None, mg.randn(4 * H, I),
    ...                           mg.randn(4 * H, H), mg.zeros(4 * H), lengths=[5, 2])
    >>> out.shape, float(abs(out[2:, 1]).sum())
    ((5, 2, 4), 0.0)
    """
    T, B, I = _dims("lstm_sequence", "x", x, 3)
    H = _gates("lstm_sequence", weight_hh, 4)
    _check("lstm_sequence", [("x", x, (T, B, I)), ("h0", h0, (B, H)), ("c0", c0, (B, H)),
                             ("weight_ih", weight_ih, (4 * H, I)),
                             ("weight_hh", weight_hh, (4 * H, H)), ("bias", bias, (4 * H,))])
    return LSTMSequence.apply(x, h0, c0, weight_ih, weight_hh, bias,
                              lengths=_lengths("lstm_sequence", lengths, T, B))


def gru_sequence(x: Tensor, h0: Tensor | None, weight_ih: Tensor, weight_hh: Tensor,
                 bias_ih: Tensor | None = None, bias_hh: Tensor | None = None,
                 reset_after: bool = False, lengths=None) -> tuple[Tensor, Tensor]:
    """A whole GRU sequence as one op: x (T, B, I) -> (out (T, B, H), h_T (B, H)).

    h0 None means zeros; `lengths` as in `lstm_sequence`. See `GRUSequence`.

    >>> import minigrad as mg
    >>> T, B, I, H = 5, 2, 3, 4
    >>> out, h = gru_sequence(mg.randn(T, B, I), None, mg.randn(3 * H, I), mg.randn(3 * H, H),
    ...                       reset_after=True)
    >>> out.shape, h.shape
    ((5, 2, 4), (2, 4))
    """
    T, B, I = _dims("gru_sequence", "x", x, 3)
    H = _gates("gru_sequence", weight_hh, 3)
    _check("gru_sequence", [("x", x, (T, B, I)), ("h0", h0, (B, H)),
                            ("weight_ih", weight_ih, (3 * H, I)),
                            ("weight_hh", weight_hh, (3 * H, H)), ("bias_ih", bias_ih, (3 * H,)),
                            ("bias_hh", bias_hh, (3 * H,))])
    return GRUSequence.apply(x, h0, weight_ih, weight_hh, bias_ih, bias_hh,
                             reset_after=bool(reset_after),
                             lengths=_lengths("gru_sequence", lengths, T, B))


def rnn_sequence(x: Tensor, h0: Tensor | None, weight_ih: Tensor, weight_hh: Tensor,
                 bias: Tensor | None = None, nonlinearity: str = "tanh",
                 lengths=None) -> tuple[Tensor, Tensor]:
    """A whole Elman RNN sequence as one op: x (T, B, I) -> (out (T, B, H), h_T (B, H)).

    h0 None means zeros; `lengths` as in `lstm_sequence`. See `RNNSequence`.

    >>> import minigrad as mg
    >>> out, h = rnn_sequence(mg.randn(5, 2, 3), None, mg.randn(4, 3), mg.randn(4, 4))
    >>> out.shape
    (5, 2, 4)
    """
    _nonlinearity("rnn_sequence", nonlinearity)
    T, B, I = _dims("rnn_sequence", "x", x, 3)
    H = _gates("rnn_sequence", weight_hh, 1)
    _check("rnn_sequence", [("x", x, (T, B, I)), ("h0", h0, (B, H)),
                            ("weight_ih", weight_ih, (H, I)), ("weight_hh", weight_hh, (H, H)),
                            ("bias", bias, (H,))])
    return RNNSequence.apply(x, h0, weight_ih, weight_hh, bias, nonlinearity=nonlinearity,
                             lengths=_lengths("rnn_sequence", lengths, T, B))
