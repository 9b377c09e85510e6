"""The fused GRU: one step or a whole sequence as ONE graph node with a hand-derived backward,
each form its own op: `GRUStep`, `GRUSequence` for Cho's form (the reset gate scales h before
W_hn) and `GRUStepResetAfter`, `GRUSequenceResetAfter` for cuDNN's (it scales W_hn h + b_hn).
tests/test_fused.py proves each equal to the same maths composed from minigrad primitives.

The sequence ops use the layout and the blocked backward of `rnn.kernels.layout` (see
`rnn.kernels.lstm`); the two forms share the update of h and the gate factors of backward.
"""
from __future__ import annotations

from minigrad.engine import Function
from minigrad.ops import array_matmul
from minigrad.tensor import Tensor
from rnn.kernels import composed as twins
from rnn.kernels.layout import (block_scratch, check_lengths, check_operands, dims_of,
                                grads_at_steps, hidden_of, input_projections, lengths_of,
                                one_minus_square, outputs_and_final, reversed_steps,
                                rotate_gates, sigmoid_, sigmoid_of_half_, state_buffer,
                                step_blocks, step_masks, with_bias)

__all__ = ["GRUSequence", "GRUSequenceResetAfter", "GRUStep", "GRUStepResetAfter",
           "gru_sequence", "gru_step"]


def _step_common(gout, a, h):
    """What both forms' step backward share: the gates, dn = gh' (1 - z)(1 - n^2),
    dz = gh' (h - n) z (1 - z) and the direct path gh = gh' z."""
    H = h.shape[1]
    r, z, n = a[:, :H], a[:, H:2 * H], a[:, 2 * H:]
    return r, n, gout * (1 - z) * (1 - n * n), gout * (h - n) * z * (1 - z), gout * z


class GRUStep(Function):
    """One GRU step, Cho's form, from gx = x_t W_ih^T + b_ih (B, 3H), h (B, H), weight_hh
    (3H, H), bias_hh (3H):

        r = sig(gx_r + h W_hr^T + b_hr),  z = sig(gx_z + h W_hz^T + b_hz)
        n = tanh(gx_n + (r h) W_hn^T + b_hn),  h' = z h + (1 - z) n

    Backward: dn = gh' (1 - z)(1 - n^2), dz = gh' (h - n) z (1 - z), d(r h) = dn W_hn,
    dr = d(r h) h r (1 - r); gh = gh' z + d(r h) r + [dr, dz] W_hrz.
    Saves the activated gates [r, z, n] (3 H per row), h, and r h (for gW_hn): 5 (B, H) arrays,
    the weights aside.
    """

    composed = staticmethod(twins.gru_step)  # differentiated under create_graph

    def forward(self, gx, h, weight_hh, bias_hh):
        xp, H = self.xp, h.shape[1]
        a = gx.copy()
        a[:, :2 * H] += h @ weight_hh[:2 * H].T + bias_hh[:2 * H]
        sigmoid_(a[:, :2 * H], xp)
        rh = a[:, :H] * h
        a[:, 2 * H:] += rh @ weight_hh[2 * H:].T + bias_hh[2 * H:]
        n = xp.tanh(a[:, 2 * H:], out=a[:, 2 * H:])
        z = a[:, H:2 * H]
        self.save_for_backward(a, h, rh, weight_hh)
        return n + z * (h - n)

    def backward(self, gout):
        a, h, rh, weight_hh = self.saved
        xp, H = self.xp, h.shape[1]
        r, n, dn, dz, gh = _step_common(gout, a, h)
        drh = dn @ weight_hh[2 * H:]                        # d(r h)
        dr = drh * h * r * (1 - r)
        ga = xp.concatenate([dr, dz, dn], axis=1)           # b_hh sits outside every product
        gh += drh * r + ga[:, :2 * H] @ weight_hh[:2 * H]
        gw = xp.concatenate([array_matmul(ga[:, :2 * H].T, h), array_matmul(dn.T, rh)])
        n_ = self.needs_input_grad
        return (ga if n_[0] else None, gh if n_[1] else None, gw if n_[2] else None,
                ga if n_[3] else None)


class GRUStepResetAfter(Function):
    """One GRU step, cuDNN's form: as `GRUStep` but n = tanh(gx_n + r (h W_hn^T + b_hn)).

    Backward: dn, dz as in `GRUStep`, dr = dn hn r (1 - r) with hn = h W_hn^T + b_hn;
    d(h W_hh^T + b_hh) = [dr, dz, dn r]; gh = gh' z + that W_hh.
    Saves the activated gates [r, z, n] (3 H per row), h and hn (for dr): 5 (B, H) arrays, the
    weights aside.
    """

    composed = staticmethod(twins.gru_step_reset_after)  # differentiated under create_graph

    def forward(self, gx, h, weight_hh, bias_hh):
        xp, H = self.xp, h.shape[1]
        a = gx.copy()
        hw = h @ weight_hh.T
        hw += bias_hh
        a[:, :2 * H] += hw[:, :2 * H]
        sigmoid_(a[:, :2 * H], xp)
        hn = hw[:, 2 * H:].copy()                           # h W_hn^T + b_hn
        a[:, 2 * H:] += a[:, :H] * hn
        n = xp.tanh(a[:, 2 * H:], out=a[:, 2 * H:])
        z = a[:, H:2 * H]
        self.save_for_backward(a, h, hn, weight_hh)
        return n + z * (h - n)

    def backward(self, gout):
        a, h, hn, weight_hh = self.saved
        xp = self.xp
        r, n, dn, dz, gh = _step_common(gout, a, h)
        dr = dn * hn * r * (1 - r)
        dhw = xp.concatenate([dr, dz, dn * r], axis=1)      # d(h W_hh^T + b_hh)
        gh += dhw @ weight_hh
        n_ = self.needs_input_grad
        return (xp.concatenate([dr, dz, dn], axis=1) if n_[0] else None,
                gh if n_[1] else None, array_matmul(dhw.T, h) if n_[2] else None,
                dhw if n_[3] else None)


def _mix(h, n, z, h_new, tmp, m, xp):
    """h_new = z h + (1 - z) n = n + z (h - n), then masked past each sequence's end."""
    xp.subtract(h, n, out=tmp)
    tmp *= z
    xp.add(n, tmp, out=h_new)
    if m is not None:
        h_new *= m


def _gate_factors(r, z, nn, h_prev, ar, az, an, xp):
    """The local factors of a block of steps shared by both forms: an = (1 - z)(1 - n^2),
    az = (h - n) z (1 - z), ar = r (1 - r) (each form multiplies in the rest of r's)."""
    one_minus_square(nn, an, xp)
    xp.subtract(1.0, z, out=az)
    an *= az
    az *= z
    xp.subtract(h_prev, nn, out=ar)
    az *= ar
    xp.subtract(1.0, r, out=ar)
    ar *= r


def _start(op, x, h0, weight_hh, bias_ih, bias_hh, lengths):
    """What both forms set up: shapes, lengths, biases (zeros for None), the state buffer."""
    xp = op.xp
    T, B, _ = x.shape
    H, dt = weight_hh.shape[1], x.dtype
    b_ih = xp.zeros(3 * H, dt) if bias_ih is None else bias_ih
    b_hh = xp.zeros(3 * H, dt) if bias_hh is None else bias_hh
    Hs = state_buffer(h0, T, B, H, dt, xp)
    return T, B, H, lengths_of(lengths, T, B, dt, x), b_ih, b_hh, Hs


class GRUSequence(Function):
    """The GRU of Cho et al. (reset before W_hn) over a whole sequence as one op: x (T, B, I),
    h0 (B, H) or None (zeros), weight_ih (3H, I), weight_hh (3H, H), bias_ih, bias_hh (3H) or
    None -> out (T, B, H), h_T (B, H).

    Per step the maths of `GRUStep` (reset_after=False). b_hn sits outside the recurrent
    product, so b_ih + b_hh is one bias and both bias gradients are the same.
    Saves, per step, the gates [r, z, n] (3 H: every factor of backward is a function of them),
    r h (H, for gW_hn) and h (H + 1); x, the weights and the lengths: 5 (B, H) arrays per step.
    """

    composed = staticmethod(twins.gru_sequence)  # differentiated under create_graph

    def forward(self, x, h0, weight_ih, weight_hh, bias_ih, bias_hh, *, lengths=None):
        xp = self.xp
        T, B, H, L, b_ih, b_hh, Hs = _start(self, x, h0, weight_hh, bias_ih, bias_hh, lengths)
        H2, H3 = 2 * H, 3 * H
        HsT = Hs.transpose(1, 0, 2)
        tmp, masks = xp.empty((H, B), x.dtype), step_masks(L, T)
        w_ih = weight_ih.copy()
        w_ih[:H2] *= 0.5                      # sigmoid(a) = 0.5 tanh(a / 2) + 0.5: fold the 1/2
        b = b_ih + b_hh
        w_rz = with_bias(weight_hh[:H2], b[:H2], xp)
        w_rz *= 0.5
        w_n = weight_hh[H2:]
        G = xp.empty((T, H3, B), x.dtype)                     # r, z, n
        extra = xp.empty((H, T, B), x.dtype)                  # r h
        for t0, t1, P in input_projections(w_ih, x, xp):
            P[H2:] += b[H2:, None, None]
            for rz, r, z, nn, p_rz, p_n, rh, h, h_aug, h_new, m in zip(
                    G[t0:t1, :H2], G[t0:t1, :H], G[t0:t1, H:H2], G[t0:t1, H2:],
                    P[:H2].transpose(1, 0, 2), P[H2:].transpose(1, 0, 2),
                    extra[:, t0:t1].transpose(1, 0, 2), HsT[t0:t1, :H], HsT[t0:t1],
                    HsT[t0 + 1:t1 + 1, :H], masks[t0:t1]):
                xp.matmul(w_rz, h_aug, out=rz)
                rz += p_rz
                sigmoid_of_half_(rz, xp)
                xp.multiply(r, h, out=rh)
                xp.matmul(w_n, rh, out=nn)
                nn += p_n
                xp.tanh(nn, out=nn)
                _mix(h, nn, z, h_new, tmp, m, xp)
        self.save_for_backward(x, weight_ih, weight_hh, G, extra, Hs, lengths)
        return outputs_and_final(Hs, L)

    def backward(self, gout, gh):
        x, weight_ih, weight_hh, G, extra, Hs, lengths = self.saved
        xp, n = self.xp, self.needs_input_grad
        T, B, I = x.shape
        H, dt = weight_hh.shape[1], x.dtype
        H2, H3 = 2 * H, 3 * H
        L = lengths_of(lengths, T, B, dt, x)
        gsteps, dh = grads_at_steps(L, gout, gh, xp)
        HsT = Hs.transpose(1, 0, 2)
        D = xp.empty((H3, T, B), dt)                          # r, z, n
        DG = D.reshape(3, H, T, B).transpose(2, 0, 1, 3)      # (T, 3, H, B)
        A, = block_scratch((H3,), T, B, dt, xp)
        tmp, drh = xp.empty((H, B), dt), xp.empty((H, B), dt)
        w_rzT, w_nT = weight_hh[:H2].T, weight_hh[H2:].T
        for t0, t1 in step_blocks(T, H3 * B):
            # local factors of the block's steps (rows as in D): a few ufunc calls for all
            Gb, Ab, h_prev = G[t0:t1], A[:t1 - t0], HsT[t0:t1, :H]
            r, z, nn = Gb[:, :H], Gb[:, H:H2], Gb[:, H2:]
            ar, az, an = Ab[:, :H], Ab[:, H:H2], Ab[:, H2:]
            _gate_factors(r, z, nn, h_prev, ar, az, an, xp)
            ar *= h_prev                                      # r: h r (1 - r), times d(r h)
            # the recurrence: 6 ufunc calls and 2 products per step
            DT = reversed_steps(D.transpose(1, 0, 2), t0, t1)
            for t, gs, a, dg, z_t, r_t, d_rz, d_n in zip(
                    range(t1 - 1, t0 - 1, -1), reversed_steps(gsteps, t0, t1),
                    Ab.reshape(-1, 3, H, B)[::-1], reversed_steps(DG, t0, t1), z[::-1],
                    r[::-1], DT[:, :H2], DT[:, H2:]):
                dh += gs
                xp.multiply(dh, a[1:], out=dg[1:])            # z and n
                xp.matmul(w_nT, d_n, out=drh)                 # d(r h)
                xp.multiply(drh, a[0], out=dg[0])             # r
                if t or n[1]:
                    xp.multiply(dh, z_t, out=tmp)             # the direct path h -> h'
                    drh *= r_t
                    tmp += drh
                    xp.matmul(w_rzT, d_rz, out=dh)
                    dh += tmp
        if L is not None:
            L.to_initial(dh.T, gh)
        D2 = D.reshape(H3, T * B)
        x2, h1 = x.reshape(T * B, I), Hs[:, :T].reshape(H + 1, T * B)
        gx = (D2.T @ weight_ih).reshape(T, B, I) if n[0] else None
        gw_ih = D2 @ x2 if n[2] else None
        g_rz = D2[:H2] @ h1.T                                 # [gW_hr; gW_hz | gb_r; gb_z]
        gw_hh = xp.concatenate([g_rz[:, :H], D2[H2:] @ extra.reshape(H, T * B).T])
        gb_ih = xp.concatenate([g_rz[:, H], D2[H2:].sum(axis=1)])
        gb_hh = gb_ih.copy() if n[4] else gb_ih
        return gx, (dh.T if n[1] else None), gw_ih, gw_hh, gb_ih, gb_hh


class GRUSequenceResetAfter(Function):
    """The GRU of cuDNN and PyTorch (reset after W_hn h + b_hn) over a whole sequence as one
    op; arguments and results as `GRUSequence`.

    Per step the maths of `GRUStep` (reset_after=True). One recurrent product [W_hh | b'] [h; 1]
    gives the r, z pre-activations and hn = W_hn h + b_hn; gates are stored as [r, z, hn, n]
    (4 H rows per step) and D holds [n, r, z, hn], so the input-side gradients (n, r, z) and the
    hidden-side ones (r, z, hn) are each one contiguous window: one product per weight gradient.
    Saves, per step, the gates with hn (4 H) and h (H + 1); x, the weights and the lengths:
    5 (B, H) arrays per step.
    """

    composed = staticmethod(twins.gru_sequence_reset_after)  # differentiated under create_graph

    def forward(self, x, h0, weight_ih, weight_hh, bias_ih, bias_hh, *, lengths=None):
        xp = self.xp
        T, B, H, L, b_ih, b_hh, Hs = _start(self, x, h0, weight_hh, bias_ih, bias_hh, lengths)
        H2, H3 = 2 * H, 3 * H
        HsT = Hs.transpose(1, 0, 2)
        tmp, masks = xp.empty((H, B), x.dtype), step_masks(L, T)
        w_ih = rotate_gates(weight_ih, 2, H, xp)              # rows n, r, z
        w_ih[H:] *= 0.5                       # sigmoid(a) = 0.5 tanh(a / 2) + 0.5: fold the 1/2
        b = b_hh.copy()
        b[:H2] += b_ih[:H2]
        w_hh = with_bias(weight_hh, b, xp)                    # rows r, z, n: gives r, z, hn
        w_hh[:H2] *= 0.5
        G = xp.empty((T, 4 * H, B), x.dtype)                  # r, z, hn, n
        for t0, t1, P in input_projections(w_ih, x, xp):
            P[:H] += b_ih[H2:, None, None]
            for a3, rz, r, z, hn, nn, p_n, p_rz, h, h_aug, h_new, m in zip(
                    G[t0:t1, :H3], G[t0:t1, :H2], G[t0:t1, :H], G[t0:t1, H:H2],
                    G[t0:t1, H2:H3], G[t0:t1, H3:], P[:H].transpose(1, 0, 2),
                    P[H:].transpose(1, 0, 2), HsT[t0:t1, :H], HsT[t0:t1],
                    HsT[t0 + 1:t1 + 1, :H], masks[t0:t1]):
                xp.matmul(w_hh, h_aug, out=a3)
                rz += p_rz
                sigmoid_of_half_(rz, xp)
                xp.multiply(r, hn, out=nn)
                nn += p_n
                xp.tanh(nn, out=nn)
                _mix(h, nn, z, h_new, tmp, m, xp)
        self.save_for_backward(x, weight_ih, weight_hh, G, Hs, lengths)
        return outputs_and_final(Hs, L)

    def backward(self, gout, gh):
        x, weight_ih, weight_hh, G, Hs, lengths = self.saved
        xp, n = self.xp, self.needs_input_grad
        T, B, I = x.shape
        H, dt = weight_hh.shape[1], x.dtype
        H2, H3, H4 = 2 * H, 3 * H, 4 * H
        L = lengths_of(lengths, T, B, dt, x)
        gsteps, dh = grads_at_steps(L, gout, gh, xp)
        HsT = Hs.transpose(1, 0, 2)
        D = xp.empty((H4, T, B), dt)                          # n, r, z, hn
        DG = D.reshape(4, H, T, B).transpose(2, 0, 1, 3)      # (T, 4, H, B)
        A, = block_scratch((H4,), T, B, dt, xp)
        tmp = xp.empty((H, B), dt)
        w_hhT = weight_hh.T
        for t0, t1 in step_blocks(T, H4 * B):
            # local factors of the block's steps (rows as in D): a few ufunc calls for all
            Gb, Ab, h_prev = G[t0:t1], A[:t1 - t0], HsT[t0:t1, :H]
            r, z, hn, nn = Gb[:, :H], Gb[:, H:H2], Gb[:, H2:H3], Gb[:, H3:]
            an, ar, az, ahn = Ab[:, :H], Ab[:, H:H2], Ab[:, H2:H3], Ab[:, H3:]
            _gate_factors(r, z, nn, h_prev, ar, az, an, xp)
            xp.multiply(an, r, out=ahn)                       # hn: r (1 - z)(1 - n^2)
            ar *= hn
            ar *= an                                          # r: hn r (1 - r)(1 - z)(1 - n^2)
            # the recurrence: 3 ufunc calls and 1 product per step
            DT = reversed_steps(D.transpose(1, 0, 2), t0, t1)
            for t, gs, a, dg, z_t, d_h in zip(
                    range(t1 - 1, t0 - 1, -1), reversed_steps(gsteps, t0, t1),
                    Ab.reshape(-1, 4, H, B)[::-1], reversed_steps(DG, t0, t1), z[::-1],
                    DT[:, H:]):
                dh += gs
                xp.multiply(dh, a, out=dg)                    # all four pre-activation grads
                if t or n[1]:
                    xp.multiply(dh, z_t, out=tmp)             # the direct path h -> h'
                    xp.matmul(w_hhT, d_h, out=dh)
                    dh += tmp
        if L is not None:
            L.to_initial(dh.T, gh)
        D2 = D.reshape(H4, T * B)
        x2, h1 = x.reshape(T * B, I), Hs[:, :T].reshape(H + 1, T * B)
        d_ih = D2[:H3]                                        # n, r, z
        gx = (d_ih.T @ rotate_gates(weight_ih, 2, H, xp)).reshape(T, B, I) if n[0] else None
        gw_ih = rotate_gates(d_ih @ x2, 1, H, xp) if n[2] else None
        gwb = D2[H:] @ h1.T                                   # rows r, z, n: [gW_hh | gb_hh]
        gw_hh, gb_hh = gwb[:, :H], gwb[:, H]
        gb_ih = xp.concatenate([gb_hh[:H2], D2[:H].sum(axis=1)]) if n[4] else None
        return gx, (dh.T if n[1] else None), gw_ih, gw_hh, gb_ih, gb_hh


def gru_step(gx_t: Tensor, h: Tensor, weight_hh: Tensor, bias_hh: Tensor,
             reset_after: bool = False) -> Tensor:
    """One GRU step as one op: returns h' (B, H). See `GRUStep` and
    `GRUStepResetAfter` for the maths.

    gx_t = x_t W_ih^T + b_ih (B, 3H) is the precomputed input projection, blocks (r, z, n).

    >>> import minigrad as mg
    >>> B, H = 2, 3
    >>> gru_step(mg.randn(B, 3 * H), mg.zeros(B, H), mg.randn(3 * H, H), mg.zeros(3 * H)).shape
    (2, 3)
    """
    B, H = dims_of("gru_step", "h", h, 2)
    check_operands("gru_step", [("gx_t", gx_t, (B, 3 * H)), ("h", h, (B, H)),
                        ("weight_hh", weight_hh, (3 * H, H)), ("bias_hh", bias_hh, (3 * H,))])
    return (GRUStepResetAfter if reset_after else GRUStep).apply(gx_t, h, weight_hh, bias_hh)


def gru_sequence(x: Tensor, h0: Tensor | None, weight_ih: Tensor, weight_hh: Tensor,
                 bias_ih: Tensor | None = None, bias_hh: Tensor | None = None,
                 reset_after: bool = False, lengths=None) -> tuple[Tensor, Tensor]:
    """A whole GRU sequence as one op: x (T, B, I) -> (out (T, B, H), h_T (B, H)).

    h0 None means zeros; `lengths` as in `lstm_sequence`. See `GRUSequence` and
    `GRUSequenceResetAfter`.

    >>> import minigrad as mg
    >>> T, B, I, H = 5, 2, 3, 4
    >>> out, h = gru_sequence(mg.randn(T, B, I), None, mg.randn(3 * H, I), mg.randn(3 * H, H),
    ...                       reset_after=True)
    >>> out.shape, h.shape
    ((5, 2, 4), (2, 4))
    """
    T, B, I = dims_of("gru_sequence", "x", x, 3)
    H = hidden_of("gru_sequence", weight_hh, 3)
    check_operands("gru_sequence", [("x", x, (T, B, I)), ("h0", h0, (B, H)),
                            ("weight_ih", weight_ih, (3 * H, I)),
                            ("weight_hh", weight_hh, (3 * H, H)), ("bias_ih", bias_ih, (3 * H,)),
                            ("bias_hh", bias_hh, (3 * H,))])
    op = GRUSequenceResetAfter if reset_after else GRUSequence
    return op.apply(x, h0, weight_ih, weight_hh, bias_ih, bias_hh,
                    lengths=check_lengths("gru_sequence", lengths, T, B, x))
