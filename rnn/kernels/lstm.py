"""The fused LSTM: one step (`LSTMStep`) or a whole sequence (`LSTMSequence`) as ONE graph node
with a hand-derived backward. tests/test_fused.py proves both equal to the same maths composed
from minigrad primitives; benchmarks/rnn.py measures what they buy (docs/performance.md).

The sequence op, in the layout of `rnn.kernels.layout`: the input projection of each block of
steps is one product into a cache-sized buffer; per step, the recurrent product
W (4H, H + 1) @ [h; 1] carries the bias; gates are reordered (o, i, f, g) with the 1/2 of
sigmoid(a) = 0.5 tanh(a / 2) + 0.5 folded into the sigmoid gates' rows, so one tanh call covers
all four; backward computes the local factors of a block of steps in a few large ufunc calls,
runs only the true recurrence per step (6 ufunc calls and one product), then gets gx and every
weight gradient from one product each over all T B columns.
"""
from __future__ import annotations

from minigrad.engine import Function
from minigrad.ops import array_matmul
from minigrad.tensor import Tensor
from rnn.kernels import composed as twins
from rnn.kernels.layout import (block_scratch, check_lengths, check_operands, dims_of,
                                grads_at_steps, hidden_of, input_projections, lengths_of,
                                one_minus_square, outputs_and_final, reversed_steps,
                                rotate_gates, sigmoid_, state_buffer, step_blocks, step_masks,
                                with_bias)

__all__ = ["LSTMSequence", "LSTMStep", "lstm_sequence", "lstm_step"]


class LSTMStep(Function):
    """One LSTM step from gx = x_t W_ih^T + b (B, 4H), h, c (B, H), weight_hh (4H, H):

        [i, f, g, o] = [sig, sig, tanh, sig](gx + h W_hh^T),  c' = f c + i g,  h' = o tanh(c')

    Backward: dc = gc' + gh' o (1 - tanh(c')^2); da = [dc g, dc c, dc i, gh' tanh(c')] times the
    activation derivatives (s (1 - s), 1 - g^2); gx = da, gh = da W_hh, gc = dc f, gW = da^T h.
    Saves the activated gates (4 H per row: every derivative is a function of them), h and c
    (for gW and df) and tanh(c') (for do and dc): 7 (B, H) arrays, weight_hh aside.
    """

    composed = staticmethod(twins.lstm_step)  # differentiated under create_graph

    def forward(self, gx, h, c, weight_hh):
        xp, H = self.xp, h.shape[1]
        a = h @ weight_hh.T
        a += gx
        sigmoid_(a[:, :2 * H], xp)
        xp.tanh(a[:, 2 * H:3 * H], out=a[:, 2 * H:3 * H])
        sigmoid_(a[:, 3 * H:], xp)
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
    and h (H + 1, for gW_hh and gb); x, the weights and the lengths: 7 (B, H) arrays per step.
    With `lengths` (B,), outputs past each end are zero and h_T, c_T are each row's state at
    its own last step.
    """

    composed = staticmethod(twins.lstm_sequence)  # differentiated under create_graph

    def forward(self, x, h0, c0, weight_ih, weight_hh, bias, *, lengths=None):
        xp = self.xp
        T, B, I = x.shape
        H, dt = weight_hh.shape[1], x.dtype
        H3, H4 = 3 * H, 4 * H
        L = lengths_of(lengths, T, B, dt, x)
        w_ih = rotate_gates(weight_ih, 3, H, xp)
        w_ih[:H3] *= 0.5                     # sigmoid(a) = 0.5 tanh(a / 2) + 0.5: fold the 1/2
        w_hh = with_bias(rotate_gates(weight_hh, 3, H, xp), None if bias is None else
                          rotate_gates(bias, 3, H, xp), xp)
        w_hh[:H3] *= 0.5
        G = xp.empty((T + 1, 5 * H, B), dt)  # step t: o, i, f, g, then c_{t-1}; G[T, 4H:] = c_T
        G[0, H4:] = 0 if c0 is None else c0.T
        TC = xp.empty((T, H, B), dt)                          # tanh(c_t)
        Hs = state_buffer(h0, T, B, H, dt, xp)
        HsT = Hs.transpose(1, 0, 2)
        prod = xp.empty((2 * H, B), dt)
        ig, fc = prod[:H], prod[H:]
        masks = step_masks(L, T)
        for t0, t1, P in input_projections(w_ih, x, xp):
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
        self.save_for_backward(x, weight_ih, weight_hh, G, TC, Hs, lengths)
        out, h_T = outputs_and_final(Hs, L)
        cells = G[:, H4:].transpose(0, 2, 1)                  # (T + 1, B, H)
        return out, h_T, (cells[T].copy() if L is None else L.final(cells))

    def backward(self, gout, gh, gc):
        x, weight_ih, weight_hh, G, TC, Hs, lengths = self.saved
        xp, n = self.xp, self.needs_input_grad
        T, B, I = x.shape
        H, dt = weight_hh.shape[1], x.dtype
        L = lengths_of(lengths, T, B, dt, x)
        H2, H3, H4 = 2 * H, 3 * H, 4 * H
        gsteps, dh = grads_at_steps(L, gout, gh, xp)
        gcsteps, dc = grads_at_steps(L, None, gc, xp) if L is not None else (None, gc.T.copy())
        D = xp.empty((H4, T, B), dt)                          # rows o, i, f, g
        # contiguous: OpenBLAS's per-step product with W^T as a transposed view measured
        # ~10% slower at B 16, H 128 (one copy of (H, 4H) per backward)
        w_hhT = xp.ascontiguousarray(rotate_gates(weight_hh, 3, H, xp).T)
        # per block: the local factors A, K and the steps' pre-activation gradients Db, written
        # step by step into the cache-sized Db and copied into D once per block (written
        # straight into D, every step would touch 4H rows lying T B apart)
        A, K, Db = block_scratch((H4, H, H4), T, B, dt, xp)
        tmp = xp.empty((H, B), dt)
        for t0, t1 in step_blocks(T, H4 * B):
            # local factors of the block's steps: a few ufunc calls over all of them
            Gb, Ab, Kb, Dk = G[t0:t1], A[:t1 - t0], K[:t1 - t0], Db[:t1 - t0]
            s3, o, i, g = Gb[:, :H3], Gb[:, :H], Gb[:, H:H2], Gb[:, H3:H4]
            xp.subtract(1.0, s3, out=Ab[:, :H3])
            Ab[:, :H3] *= s3                                  # s (1 - s)
            Ab[:, :H] *= TC[t0:t1]                            # o: tanh(c) o (1 - o)
            Ab[:, H:H2] *= g                                  # i: g i (1 - i)
            Ab[:, H2:H3] *= Gb[:, H4:]                        # f: c_{t-1} f (1 - f)
            one_minus_square(g, Ab[:, H3:], xp)
            Ab[:, H3:] *= i                                   # g: i (1 - g^2)
            one_minus_square(TC[t0:t1], Kb, xp)
            Kb *= o                                           # dc += dh o (1 - tanh(c)^2)
            # the recurrence: 6 ufunc calls and one product per step
            for t, gs, gcs, k, a_o, a_ifg, d_o, d_ifg, d, f in zip(
                    range(t1 - 1, t0 - 1, -1), reversed_steps(gsteps, t0, t1),
                    reversed_steps(gcsteps, t0, t1),
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
            gx = (D2.T @ rotate_gates(weight_ih, 3, H, xp)).reshape(T, B, I)
        if n[3]:
            gw_ih = rotate_gates(D2 @ x.reshape(T * B, I), 1, H, xp)
        if n[4] or n[5]:
            gwb = rotate_gates(D2 @ Hs[:, :T].reshape(H + 1, T * B).T, 1, H, xp)   # [gW_hh | gb]
            gw_hh, gb = gwb[:, :H], gwb[:, H]
        return gx, (dh.T if n[1] else None), (dc.T if n[2] else None), gw_ih, gw_hh, gb


def lstm_step(gx_t: Tensor, h: Tensor, c: Tensor, weight_hh: Tensor) -> tuple[Tensor, Tensor]:
    """One LSTM step as one op: returns (h', c') (B, H). See `LSTMStep` for the maths.

    gx_t = x_t W_ih^T + b (B, 4H) is the precomputed input projection, gate blocks (i, f, g, o).

    >>> import minigrad as mg
    >>> B, H = 2, 3
    >>> h, c = lstm_step(mg.randn(B, 4 * H), mg.zeros(B, H), mg.zeros(B, H), mg.randn(4 * H, H))
    >>> h.shape, c.shape
    ((2, 3), (2, 3))
    """
    B, H = dims_of("lstm_step", "h", h, 2)
    check_operands("lstm_step", [("gx_t", gx_t, (B, 4 * H)), ("h", h, (B, H)), ("c", c, (B, H)),
                         ("weight_hh", weight_hh, (4 * H, H))])
    return LSTMStep.apply(gx_t, h, c, weight_hh)


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
    T, B, I = dims_of("lstm_sequence", "x", x, 3)
    H = hidden_of("lstm_sequence", weight_hh, 4)
    check_operands("lstm_sequence", [("x", x, (T, B, I)), ("h0", h0, (B, H)), ("c0", c0, (B, H)),
                             ("weight_ih", weight_ih, (4 * H, I)),
                             ("weight_hh", weight_hh, (4 * H, H)), ("bias", bias, (4 * H,))])
    return LSTMSequence.apply(x, h0, c0, weight_ih, weight_hh, bias,
                              lengths=check_lengths("lstm_sequence", lengths, T, B, x))
