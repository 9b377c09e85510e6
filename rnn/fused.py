"""Fused RNN kernels: an LSTM, GRU or Elman step, or a whole sequence, as ONE graph node.

Composed from primitives, an LSTM step is about 15 nodes and a sequence of T steps 15 T; every
node costs Python overhead, a temporary array and a saved array. These ops do the same maths with
a hand-derived backward, in place on preallocated buffers, through `self.xp` (NumPy or CuPy).
tests/test_fused.py proves each one equal to its composition from minigrad primitives (values
and every gradient), and benchmarks/rnn.py measures what they buy (docs/performance.md).

Layouts follow PyTorch: LSTM gate blocks (input i, forget f, candidate g, output o), GRU blocks
(reset r, update z, new n); weights are `weight_ih` (G H, I), `weight_hh` (G H, H). Sequences are
time-major: x (T, B, I) -> out (T, B, H).

Speed tricks, all in the sequence ops (the per-step ops keep to the plain layout):
  * the input projection of all T steps is one matrix product before the loop;
  * sigmoid(a) = 0.5 tanh(a / 2) + 0.5, with the 1/2 folded into copies of the weight rows of
    the sigmoid gates, so a sigmoid is one tanh and two cheap in-place passes;
  * LSTM gates are kept internally in the order i, f, o, g so the three sigmoid gates are one
    contiguous block: one ufunc call per step instead of two (per-call overhead dominates when
    B * H is small);
  * every elementwise op writes into a preallocated buffer (`out=`): no per-step allocation;
  * backward runs the recurrence per step, then the weight gradients are one matrix product
    each over all T * B rows.
"""
from __future__ import annotations

import numpy as np

from minigrad import backend
from minigrad.engine import Function
from minigrad.tensor import Tensor

__all__ = ["lstm_step", "gru_step", "rnn_step", "lstm_sequence", "gru_sequence", "rnn_sequence",
           "LSTMStep", "GRUStep", "RNNStep", "LSTMSequence", "GRUSequence", "RNNSequence"]


def _sigmoid_(a, xp):
    """a <- sigmoid(a) in place, as 0.5 tanh(a / 2) + 0.5: no exp overflow, no temporaries."""
    a *= 0.5
    xp.tanh(a, out=a)
    a *= 0.5
    a += 0.5
    return a


def _sigmoid_folded_(a, xp):
    """a <- sigmoid(2 a) in place: for pre-activations whose weights were already halved."""
    xp.tanh(a, out=a)
    a *= 0.5
    a += 0.5


def _swap_go(w, H, xp):
    """Gate blocks (i, f, g, o) <-> (i, f, o, g) along axis 0, as a new array (self-inverse)."""
    return xp.concatenate([w[:2 * H], w[3 * H:], w[2 * H:3 * H]])


def _is_zero(a, xp) -> bool:
    """True when the state `a` is all zeros: the first step's recurrent matmul can be skipped."""
    return a is None or not bool(xp.any(a))


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


# --- one step -----------------------------------------------------------------------------------

class LSTMStep(Function):
    """One LSTM step from gx = x_t W_ih^T + b (B, 4H), h, c (B, H), weight_hh (4H, H):

        [i, f, g, o] = [sig, sig, tanh, sig](gx + h W_hh^T),  c' = f c + i g,  h' = o tanh(c')

    Backward: dc = gc' + gh' o (1 - tanh(c')^2); da = [dc g, dc c, dc i, gh' tanh(c')] times the
    activation derivatives (s (1 - s), 1 - g^2); gx = da, gh = da W_hh, gc = dc f, gW = da^T h.
    Saves the activated gates (4 H per row: every derivative is a function of them), h and c
    (for gW and df) and tanh(c') (for do and dc): 7 (B, H) arrays, weight_hh aside.
    """

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
                dc * f if n[2] else None, da.T @ h if n[3] else None)


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

    def forward(self, gx, h, weight_hh, bias_hh, *, reset_after=False):
        xp, H = self.xp, h.shape[1]
        self.reset_after = reset_after
        a = gx.copy()
        if reset_after:
            hw = h @ weight_hh.T
            hw += bias_hh
            a[:, :2 * H] += hw[:, :2 * H]
            _sigmoid_(a[:, :2 * H], xp)
            extra = hw[:, 2 * H:]                       # h W_hn^T + b_hn
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
        H = h.shape[1]
        r, z, n = a[:, :H], a[:, H:2 * H], a[:, 2 * H:]
        dn = gout * (1 - z) * (1 - n * n)
        dz = gout * (h - n) * z * (1 - z)
        if self.reset_after:
            dr = dn * extra * r * (1 - r)
            dhw = self.xp.concatenate([dr, dz, dn * r], axis=1)   # d(h W_hh^T + b_hh)
            gh = gout * z + dhw @ weight_hh
            gw = dhw.T @ h
        else:
            drh = dn @ weight_hh[2 * H:]
            dr = drh * h * r * (1 - r)
            dhw = self.xp.concatenate([dr, dz, dn], axis=1)
            gh = gout * z + drh * r + dhw[:, :2 * H] @ weight_hh[:2 * H]
            gw = self.xp.concatenate([dhw[:, :2 * H].T @ h, dn.T @ extra])
        n_ = self.needs_input_grad
        ga = self.xp.concatenate([dr, dz, dn], axis=1)
        return (ga if n_[0] else None, gh if n_[1] else None, gw if n_[2] else None,
                dhw if n_[3] else None)


class RNNStep(Function):
    """One Elman step from gx = x_t W_ih^T + b (B, H), h (B, H), weight_hh (H, H):

        h' = act(gx + h W_hh^T),  act = tanh or relu
        d = gh' act'(.) with tanh' = 1 - h'^2, relu' = [h' > 0];  gx = d, gh = d W_hh, gW = d^T h

    Saves h' (the derivative is a function of it) and h (for gW): 2 (B, H) arrays.
    """

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
        return d, (d @ weight_hh if n[1] else None), (d.T @ h if n[2] else None)


# --- a whole sequence ----------------------------------------------------------------------------

class LSTMSequence(Function):
    """The LSTM over a whole sequence as one op: x (T, B, I), h0, c0 (B, H) or None (zeros),
    weight_ih (4H, I), weight_hh (4H, H), bias (4H) or None -> out (T, B, H), h_T, c_T (B, H).

    Forward: gx = x W_ih^T + b for all steps in one product, then per step the maths of
    `LSTMStep`. Backward: BPTT, one (B, 4H) @ (4H, H) product per step for the recurrent
    gradient; gW_ih, gW_hh, gb and gx are then one product (or sum) each over all T B rows.
    Saves the activated gates (T, B, 4H), the cell states (T + 1, B, H), tanh of them (T, B, H)
    and the hidden states (T + 1, B, H) (index 0: the initial state), x and the weights: 7 (B, H)
    arrays per step. tanh(c) is kept, not recomputed: a tanh costs more than the memory it saves.
    With `lengths` (B,), outputs past each end are zero and h_T, c_T are each row's state at
    its own last step.
    """

    def forward(self, x, h0, c0, weight_ih, weight_hh, bias, *, lengths=None):
        xp = self.xp
        T, B, I = x.shape
        H = weight_hh.shape[1]
        H3 = 3 * H
        w_ih, w_hh = _swap_go(weight_ih, H, xp), _swap_go(weight_hh, H, xp)
        w_ih[:H3] *= 0.5                        # sigmoid(a) = 0.5 tanh(a/2) + 0.5: fold the 1/2
        w_hh[:H3] *= 0.5
        G = xp.empty((T, B, 4 * H), x.dtype)
        G2 = G.reshape(T * B, 4 * H)
        xp.matmul(x.reshape(T * B, I), w_ih.T, out=G2)
        if bias is not None:
            b = _swap_go(bias, H, xp)
            b[:H3] *= 0.5
            G2 += b
        Hs, C = xp.empty((T + 1, B, H), x.dtype), xp.empty((T + 1, B, H), x.dtype)
        TC = xp.empty((T, B, H), x.dtype)
        Hs[0] = 0 if h0 is None else h0
        C[0] = 0 if c0 is None else c0
        L = self.lens = None if lengths is None else _Lengths(
            lengths, T, B, x.dtype, backend.device_of(x))
        self.h0_zero = _is_zero(h0, xp)
        tmp4, tmp = xp.empty((B, 4 * H), x.dtype), xp.empty((B, H), x.dtype)
        views = (G, G[:, :, :H3], G[:, :, :H], G[:, :, H:2 * H], G[:, :, 2 * H:H3],
                 G[:, :, H3:], C[:-1], C[1:], TC, Hs[:-1], Hs[1:])
        for t, (a, s3, i, f, o, g, c, c_new, tc, h, h_new) in enumerate(zip(*views)):
            if t or not self.h0_zero:
                xp.matmul(h, w_hh.T, out=tmp4)
                a += tmp4
            _sigmoid_folded_(s3, xp)
            xp.tanh(g, out=g)
            xp.multiply(f, c, out=c_new)
            xp.multiply(i, g, out=tmp)
            c_new += tmp
            xp.tanh(c_new, out=tc)
            xp.multiply(o, tc, out=h_new)
            if L is not None:
                h_new *= L.mask[t]
        self.save_for_backward(x, weight_ih, weight_hh, G, C, TC, Hs)
        if L is None:
            return Hs[1:], Hs[T].copy(), C[T].copy()
        return Hs[1:], L.final(Hs), L.final(C)

    def backward(self, gout, gh, gc):
        x, weight_ih, weight_hh, G, C, TC, Hs = self.saved
        xp, L, n = self.xp, self.lens, self.needs_input_grad
        T, B, I = x.shape
        H = weight_hh.shape[1]
        H3 = 3 * H
        w_hh = _swap_go(weight_hh, H, xp)
        if L is None:
            gsteps, gcsteps, dh, dc = gout, None, gh.copy(), gc.copy()
        else:
            gsteps, gcsteps = L.step_grads(gout, gh, xp), L.step_grads(None, gc, xp)
            dh, dc = xp.zeros_like(gh), xp.zeros_like(gc)
        D = xp.empty_like(G)                  # pre-activation gradients, gate order i, f, o, g
        tmp, tmp3 = xp.empty((B, H), x.dtype), xp.empty((B, H3), x.dtype)
        need_h0 = n[1]
        views = (D, D[:, :, :H3], D[:, :, :H], D[:, :, H:2 * H], D[:, :, 2 * H:H3], D[:, :, H3:],
                 G[:, :, :H3], G[:, :, :H], G[:, :, H:2 * H], G[:, :, H3:], C[:-1], TC, gsteps)
        for t in range(T - 1, -1, -1):
            d, d3, di, df, do, dg, s3, i, f, g, c, tc, gs = (v[t] for v in views)
            dh += gs
            if gcsteps is not None:
                dc += gcsteps[t]
            xp.multiply(tc, tc, out=tmp)         # dc += dh o (1 - tanh(c')^2)
            xp.subtract(1.0, tmp, out=tmp)
            tmp *= G[t, :, 2 * H:H3]
            tmp *= dh
            dc += tmp
            xp.multiply(dc, g, out=di)
            xp.multiply(dc, c, out=df)
            xp.multiply(dh, tc, out=do)
            xp.multiply(g, g, out=dg)            # dg = dc i (1 - g^2)
            xp.subtract(1.0, dg, out=dg)
            dg *= dc
            dg *= i
            xp.subtract(1.0, s3, out=tmp3)       # sigmoid' = s (1 - s)
            tmp3 *= s3
            d3 *= tmp3
            dc *= f
            if t or need_h0:
                xp.matmul(d, w_hh, out=dh)
        if L is not None:
            L.to_initial(dh, gh)
            L.to_initial(dc, gc)
        D2 = D.reshape(T * B, 4 * H)
        gx = gw_ih = gw_hh = gb = None
        if n[0]:
            gx = (D2 @ _swap_go(weight_ih, H, xp)).reshape(T, B, I)
        if n[3]:
            gw_ih = _swap_go(D2.T @ x.reshape(T * B, I), H, xp)
        if n[4]:
            k = B if self.h0_zero else 0         # h0 = 0 adds nothing to gW_hh
            gw_hh = _swap_go(D2[k:].T @ Hs[:T].reshape(T * B, H)[k:], H, xp)
        if n[5]:
            gb = _swap_go(D2.sum(axis=0), H, xp)
        return gx, (dh if need_h0 else None), (dc if n[2] else None), gw_ih, gw_hh, gb


class GRUSequence(Function):
    """The GRU over a whole sequence as one op: x (T, B, I), h0 (B, H) or None (zeros),
    weight_ih (3H, I), weight_hh (3H, H), bias_ih, bias_hh (3H) or None -> out (T, B, H), h_T.

    Per step the maths of `GRUStep`. reset_after=False: b_hn sits outside the product, so
    b_ih + b_hh is one bias and both bias gradients are the same sum; the buffer holds
    [r, z, n] (T, B, 3H). reset_after=True: the buffer is [n, r, z, hn] (T, B, 4H) with
    hn = h W_hn^T + b_hn, so the input-side gradients (n, r, z) and the hidden-side ones
    (r, z, hn) are each one contiguous column window: one product per weight gradient.
    Saves the activated gates (3 H per row), hn or r h (H per row), the hidden states
    (T + 1, B, H), x and the weights: 5 (B, H) arrays per step.
    """

    def forward(self, x, h0, weight_ih, weight_hh, bias_ih, bias_hh, *, reset_after=False,
                lengths=None):
        xp = self.xp
        T, B, I = x.shape
        H, dt = weight_hh.shape[1], x.dtype
        H2, H3 = 2 * H, 3 * H
        self.reset_after = reset_after
        L = self.lens = None if lengths is None else _Lengths(
            lengths, T, B, dt, backend.device_of(x))
        self.h0_zero = _is_zero(h0, xp)
        b_ih = xp.zeros(H3, dt) if bias_ih is None else bias_ih
        b_hh = xp.zeros(H3, dt) if bias_hh is None else bias_hh
        Hs = xp.empty((T + 1, B, H), dt)
        Hs[0] = 0 if h0 is None else h0
        tmp = xp.empty((B, H), dt)
        x2 = x.reshape(T * B, I)
        if reset_after:
            w_ih = xp.concatenate([weight_ih[H2:], weight_ih[:H2]])       # rows n, r, z
            w_ih[H:] *= 0.5                     # sigmoid(a) = 0.5 tanh(a/2) + 0.5: fold the 1/2
            w_hh = weight_hh.copy()
            w_hh[:H2] *= 0.5
            b = xp.concatenate([b_ih[H2:], b_ih[:H2] + b_hh[:H2]])
            b[H:] *= 0.5
            b_hn = b_hh[H2:]
            G = xp.empty((T, B, 4 * H), dt)
            G2 = G.reshape(T * B, 4 * H)
            xp.add(x2 @ w_ih.T, b, out=G2[:, :H3])
            tmp3 = xp.empty((B, H3), dt)
            views = (G[:, :, :H], G[:, :, H:H3], G[:, :, H:H2], G[:, :, H2:H3], G[:, :, H3:],
                     Hs[:-1], Hs[1:])
            for t, (nn, rz, r, z, hn, h, h_new) in enumerate(zip(*views)):
                if t or not self.h0_zero:
                    xp.matmul(h, w_hh.T, out=tmp3)
                    rz += tmp3[:, :H2]
                    xp.add(tmp3[:, H2:], b_hn, out=hn)
                else:
                    hn[...] = b_hn
                _sigmoid_folded_(rz, xp)
                xp.multiply(r, hn, out=tmp)
                nn += tmp
                xp.tanh(nn, out=nn)
                self._mix(h, nn, z, h_new, tmp, t, L)
            extra = None
        else:
            w_ih = weight_ih.copy()
            w_ih[:H2] *= 0.5
            w_rz, w_n = weight_hh[:H2] * 0.5, weight_hh[H2:]
            b = b_ih + b_hh
            b[:H2] *= 0.5
            G = xp.empty((T, B, H3), dt)
            G2 = G.reshape(T * B, H3)
            xp.matmul(x2, w_ih.T, out=G2)
            G2 += b
            extra = xp.empty((T, B, H), dt)    # r h: gW_hn needs it
            tmp2 = xp.empty((B, H2), dt)
            views = (G[:, :, :H2], G[:, :, :H], G[:, :, H:H2], G[:, :, H2:], extra, Hs[:-1],
                     Hs[1:])
            for t, (rz, r, z, nn, rh, h, h_new) in enumerate(zip(*views)):
                first = not t and self.h0_zero
                if not first:
                    xp.matmul(h, w_rz.T, out=tmp2)
                    rz += tmp2
                _sigmoid_folded_(rz, xp)
                xp.multiply(r, h, out=rh)
                if not first:
                    xp.matmul(rh, w_n.T, out=tmp)
                    nn += tmp
                xp.tanh(nn, out=nn)
                self._mix(h, nn, z, h_new, tmp, t, L)
        self.save_for_backward(x, weight_ih, weight_hh, G, extra, Hs)
        return Hs[1:], (Hs[T].copy() if L is None else L.final(Hs))

    def _mix(self, h, n, z, h_new, tmp, t, L):
        """h_new = z h + (1 - z) n = n + z (h - n), then masked past each sequence's end."""
        xp = self.xp
        xp.subtract(h, n, out=tmp)
        tmp *= z
        xp.add(n, tmp, out=h_new)
        if L is not None:
            h_new *= L.mask[t]

    def backward(self, gout, gh):
        x, weight_ih, weight_hh, G, extra, Hs = self.saved
        xp, L, n = self.xp, self.lens, self.needs_input_grad
        T, B, I = x.shape
        H = weight_hh.shape[1]
        H2, H3 = 2 * H, 3 * H
        if L is None:
            gsteps, dh = gout, gh.copy()
        else:
            gsteps, dh = L.step_grads(gout, gh, xp), xp.zeros_like(gh)
        D = xp.empty_like(G)                  # pre-activation gradients, layout of G
        dhz, tmp, tmp2 = xp.empty((B, H), x.dtype), xp.empty((B, H), x.dtype), \
            xp.empty((B, H2), x.dtype)
        need_h0 = n[1]
        ra = self.reset_after
        # column windows of the gates and of their gradients in either layout
        o_n, o_r = (0, H) if ra else (H2, 0)
        w_n = weight_hh[H2:]
        w_rz = weight_hh[:H2]
        for t in range(T - 1, -1, -1):
            g, d, h = G[t], D[t], Hs[t]
            nn, r, z, rz = g[:, o_n:o_n + H], g[:, o_r:o_r + H], g[:, o_r + H:o_r + H2], \
                g[:, o_r:o_r + H2]
            dn, dr, dz, drz = d[:, o_n:o_n + H], d[:, o_r:o_r + H], d[:, o_r + H:o_r + H2], \
                d[:, o_r:o_r + H2]
            dh += gsteps[t]
            xp.subtract(h, nn, out=dz)               # dz = dh (h - n)
            dz *= dh
            xp.multiply(nn, nn, out=dn)              # dn = dh (1 - z)(1 - n^2)
            xp.subtract(1.0, dn, out=dn)
            xp.subtract(1.0, z, out=tmp)
            dn *= tmp
            dn *= dh
            xp.multiply(dh, z, out=dhz)              # the direct path h -> h'
            if ra:
                hn, dhn = g[:, H3:], d[:, H3:]
                xp.multiply(dn, hn, out=dr)          # dr = dn hn
                xp.multiply(dn, r, out=dhn)          # d(h W_hn^T + b_hn) = dn r
            else:
                xp.matmul(dn, w_n, out=tmp)          # d(r h)
                xp.multiply(tmp, h, out=dr)
                tmp *= r
                dhz += tmp
            xp.subtract(1.0, rz, out=tmp2)           # sigmoid' = s (1 - s)
            tmp2 *= rz
            drz *= tmp2
            if t or need_h0:
                if ra:
                    xp.matmul(d[:, H:], weight_hh, out=dh)
                else:
                    xp.matmul(drz, w_rz, out=dh)
                dh += dhz
        if L is not None:
            L.to_initial(dh, gh)
        gx, gw_ih, gw_hh, gb_ih, gb_hh = self._weight_grads(x, D, Hs, extra, weight_ih)
        return gx, (dh if need_h0 else None), gw_ih, gw_hh, gb_ih, gb_hh

    def _weight_grads(self, x, D, Hs, extra, weight_ih):
        """gx, gW_ih, gW_hh, gb_ih, gb_hh from the pre-activation gradients D, all steps at once."""
        xp, n = self.xp, self.needs_input_grad
        T, B, I = x.shape
        H = Hs.shape[2]
        H2, H3 = 2 * H, 3 * H
        D2 = D.reshape(T * B, D.shape[2])
        x2, h2 = x.reshape(T * B, I), Hs[:T].reshape(T * B, H)
        k = B if self.h0_zero else 0            # h0 = 0 adds nothing to gW_hh
        gx = gw_ih = gw_hh = gb_ih = gb_hh = None
        if self.reset_after:
            d_ih, d_hh = D2[:, :H3], D2[:, H:]   # (n, r, z) and (r, z, hn)
            if n[0]:
                w_ih = xp.concatenate([weight_ih[H2:], weight_ih[:H2]])
                gx = (d_ih @ w_ih).reshape(T, B, I)
            if n[2]:
                g = d_ih.T @ x2
                gw_ih = xp.concatenate([g[H:], g[:H]])
            if n[3]:
                gw_hh = d_hh[k:].T @ h2[k:]
            if n[4] or n[5]:
                s = D2.sum(axis=0)
                gb_ih = xp.concatenate([s[H:H3], s[:H]]) if n[4] else None
                gb_hh = s[H:] if n[5] else None
        else:
            if n[0]:
                gx = (D2 @ weight_ih).reshape(T, B, I)
            if n[2]:
                gw_ih = D2.T @ x2
            if n[3]:
                gw_hh = xp.concatenate([D2[k:, :H2].T @ h2[k:],
                                        D2[:, H2:].T @ extra.reshape(T * B, H)])
            if n[4] or n[5]:
                s = D2.sum(axis=0)
                gb_ih, gb_hh = (s if n[4] else None), (s.copy() if n[5] else None)
        return gx, gw_ih, gw_hh, gb_ih, gb_hh


class RNNSequence(Function):
    """The Elman RNN over a whole sequence as one op: x (T, B, I), h0 (B, H) or None (zeros),
    weight_ih (H, I), weight_hh (H, H), bias (H) or None -> out (T, B, H), h_T (B, H).

    Per step the maths of `RNNStep`; the input projection of all steps is written straight into
    the hidden-state buffer, which the loop then finishes in place. Saves the hidden states
    (T + 1, B, H) (the activation derivative is a function of them), x and the weights: one
    (B, H) array per step.
    """

    def forward(self, x, h0, weight_ih, weight_hh, bias, *, nonlinearity="tanh", lengths=None):
        xp = self.xp
        T, B, I = x.shape
        H = weight_hh.shape[1]
        self.relu = nonlinearity == "relu"
        L = self.lens = None if lengths is None else _Lengths(
            lengths, T, B, x.dtype, backend.device_of(x))
        self.h0_zero = _is_zero(h0, xp)
        Hs = xp.empty((T + 1, B, H), x.dtype)
        Hs[0] = 0 if h0 is None else h0
        xp.matmul(x.reshape(T * B, I), weight_ih.T, out=Hs[1:].reshape(T * B, H))
        if bias is not None:
            Hs[1:] += bias
        tmp = xp.empty((B, H), x.dtype)
        for t, (h, h_new) in enumerate(zip(Hs[:-1], Hs[1:])):
            if t or not self.h0_zero:
                xp.matmul(h, weight_hh.T, out=tmp)
                h_new += tmp
            if self.relu:
                xp.maximum(h_new, 0, out=h_new)
            else:
                xp.tanh(h_new, out=h_new)
            if L is not None:
                h_new *= L.mask[t]
        self.save_for_backward(x, weight_ih, weight_hh, Hs)
        return Hs[1:], (Hs[T].copy() if L is None else L.final(Hs))

    def backward(self, gout, gh):
        x, weight_ih, weight_hh, Hs = self.saved
        xp, L, n = self.xp, self.lens, self.needs_input_grad
        T, B, I = x.shape
        H = weight_hh.shape[1]
        if L is None:
            gsteps, dh = gout, gh.copy()
        else:
            gsteps, dh = L.step_grads(gout, gh, xp), xp.zeros_like(gh)
        D = xp.empty((T, B, H), x.dtype)
        for t in range(T - 1, -1, -1):
            d, h_new = D[t], Hs[t + 1]
            dh += gsteps[t]
            if self.relu:
                xp.multiply(dh, h_new > 0, out=d)
            else:
                xp.multiply(h_new, h_new, out=d)     # d = dh (1 - h'^2)
                xp.subtract(1.0, d, out=d)
                d *= dh
            if t or n[1]:
                xp.matmul(d, weight_hh, out=dh)
        if L is not None:
            L.to_initial(dh, gh)
        D2, h2 = D.reshape(T * B, H), Hs[:T].reshape(T * B, H)
        k = B if self.h0_zero else 0            # h0 = 0 adds nothing to gW_hh
        return ((D2 @ weight_ih).reshape(T, B, I) if n[0] else None,
                dh if n[1] else None,
                D2.T @ x.reshape(T * B, I) if n[2] else None,
                D2[k:].T @ h2[k:] if n[3] else None,
                D2.sum(axis=0) if n[4] else None)


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
