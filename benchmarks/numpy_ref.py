"""Hand-written NumPy reference for LSTM / GRU forward + full BPTT backward.

This module is deliberately independent of minigrad: it is the yardstick for
"what careful hand-written NumPy can do" in the benchmarks.

Conventions (PyTorch parameter layout, time-major input):

* ``x`` has shape (T, B, I); the initial hidden (and cell) state is zero.
* LSTM: ``weight_ih`` (4H, I), ``weight_hh`` (4H, H), ``bias`` (4H), gate blocks
  ordered input, forget, candidate (g), output.
  ``c' = f*c + i*g``, ``h' = o*tanh(c')``.
* GRU: ``weight_ih`` (3H, I), ``weight_hh`` (3H, H), ``bias_ih``/``bias_hh`` (3H),
  blocks ordered reset, update, new.  ``h' = z*h + (1-z)*g`` with either
  ``g = tanh(W_in x + b_in + W_hn (r*h) + b_hn)`` (default) or, with
  ``reset_after=True`` (the PyTorch / cuDNN form),
  ``g = tanh(W_in x + b_in + r*(W_hn h + b_hn))``.
* The loss is the sum of every output ``h_t``, so ``dL/dh_t = 1`` at each step.

How it is made fast (pure NumPy; float32 in, float32 throughout).  Measured
on the 2-core benchmark machine; for large B*H everything is bound by
OpenBLAS and memory traffic, for small B*H by NumPy's ~1-2 us per call.

1. Feature-major internal layout.  Per-step quantities are stored as
   (features, B) rather than (B, features): gates (4H, B), states (H, B).  The
   recurrent product is ``W_hh (4H, H) @ h (H, B)``, an orientation OpenBLAS
   runs 25-35 % faster than ``h (B, H) @ W_hh.T`` when B is small, and every
   gate block ``S[k*H:(k+1)*H]`` is one contiguous chunk, so each elementwise
   op is a single flat SIMD loop (a column block of a (B, 4H) array is
   strided and costs up to 2x per element in NumPy).
2. No per-step input projection: the input projection is one matmul per
   block of time steps, ``W_ih (4H, I) @ x[t0:t1].reshape(k*B, I).T``, written
   gate-major into a small (4H, k, B) block buffer that stays in L2.  (One
   projection for all T into a (4H, T, B) array is equivalent work, but for
   long sequences every step then reads 4H rows of B floats spread T*B
   floats apart, one DRAM cache-line miss per row: ~30 % of the forward time
   at T=1000, B=16.)
3. The backward pass writes each block's pre-activation gradients into the
   same small block buffer (again: writing them straight into a (4H, T, B)
   array costs a cache-line fill from DRAM per row and step) and then
   streams the block into the full (4H, T, B) gradient array D with one
   copy.  After the loop dW_ih = D @ x2, dx = D.T @ W_ih and
   [dW_hh | db] = D @ [Hprev; 1].T are single big matmuls on plain 2-D
   views - no per-block accumulation, no transposition copies.
4. Constant rows ride inside the matmuls.  The stored states carry a row of
   ones ((H+1, T+1, B)) and W_hh a bias column: no per-step bias add, and the
   bias gradient is the last column of the dW_hh matmul (no reduction).  The
   backward block buffer carries a row of ones and the backward W_hh.T a
   column of ones, so the per-step backward matmul also adds the loss term
   dL/dh_t = 1 for free.
5. ``sigmoid(a) = 0.5*tanh(0.5*a) + 0.5`` with the 0.5 on the argument folded
   into (copies of) the weight/bias rows, and gate rows permuted so that the
   sigmoid gates are contiguous: the LSTM does ONE tanh over all four gate
   blocks, then one multiply and one add on the sigmoid block (NumPy's
   float32 tanh is a SIMD kernel, faster than exp; no exp, no division).
   The backward pass uses the unscaled weights and ``s*(1-s)``.
6. Rows are laid out so that pairs of products become one ufunc call:
   G[t] = [o, i, f, g, c_prev] makes ``[i*g, f*c_prev]`` one multiply;
   the gradient block [K | o, i, f, g | 1] makes ``[dh*K, dh*A_o]`` one
   multiply, and ``dc * [A_i, A_f, A_g]`` one broadcast multiply.
7. Backward is split into a "local" and a "recurrent" part.  Every
   pre-activation gradient is dh_t or dc_t times a factor that only depends
   on stored forward values (LSTM: ``dpre_o = dh*tc*o(1-o)``,
   ``dpre_(i,f,g) = dc*(g*i(1-i), c_prev*f(1-f), i*(1-g^2))``,
   ``dc_t = dc_{t+1}*f_{t+1} + dh_t*o(1-tc^2)``).  The factors are computed
   with a few ufunc calls per block of time steps and the per-step loop
   keeps only the true recurrence.  Per step: LSTM forward 1 matmul + 8
   ufunc calls, backward 1 + 4 (a straightforward version needs ~12 and
   ~17); reset-after GRU 1 + 10 and 1 + 3; reset-before GRU 2 + 10 and
   2 + 6.
8. Everything is preallocated, every elementwise op writes with ``out=``,
   there are no temporaries in the loops, and per-step views come from
   ``zip`` over pre-sliced arrays instead of re-slicing in Python.  Small
   per-step products use ``np.dot(..., out=)`` (less call overhead than
   ``np.matmul``).  The zero initial state needs no special case (slot 0 of
   the state / cell buffers holds h0 = c0 = 0).  The big buffers are cached
   between calls (``REUSE_WORKSPACE``), because buffers over glibc's 32 MiB
   mmap threshold would otherwise be page-faulted afresh on every call.
9. Reset-after GRU: gradient rows are [n | r | z | hn]: rows 0:3H are the
   input-side pre-activation gradients (n, r, z) and rows H:4H the
   hidden-side ones (r, z, hn) - two overlapping contiguous windows, so each
   weight gradient is still one matmul.
"""

import threading

import numpy as np

__all__ = ["lstm_forward_backward", "gru_forward_backward", "clear_workspace"]

# Reuse the big internal buffers between calls (one set per function and
# thread; nothing returned to the caller aliases them).
REUSE_WORKSPACE = True
_tls = threading.local()

# Time blocking: about this many elements per block buffer (keeps a block's
# projection / gradient rows in L2), but at least _MIN_BLOCK_COLS columns
# (k*B) so the per-block projection matmul stays efficient.
_BLOCK_ELEMS = 1 << 16
_MIN_BLOCK_COLS = 64


def _as_input(x):
    x = np.asarray(x)
    dt = x.dtype if np.issubdtype(x.dtype, np.floating) else np.dtype(np.float64)
    return np.ascontiguousarray(x, dtype=dt), dt


def _inverse_rows(perm, a):
    out = np.empty_like(a)
    out[perm] = a
    return out


def clear_workspace():
    """Drop this thread's cached internal buffers."""
    _tls.__dict__.pop("ws", None)


def _ws(tag, shape, dt):
    """Uninitialised work array; cached per (thread, tag) when REUSE_WORKSPACE."""
    if not REUSE_WORKSPACE:
        return np.empty(shape, dt)
    ws = _tls.__dict__.setdefault("ws", {})
    a = ws.get(tag)
    if a is None or a.shape != shape or a.dtype != dt:
        ws.pop(tag, None)                              # free the old one first
        a = ws[tag] = np.empty(shape, dt)
    return a


def _state_buffer(tag, H, T, B, dt):
    """(H+1, T+1, B): slot t holds h_{t-1} (slot 0 is h0 = 0) over a row of ones."""
    Hs = _ws(tag, (H + 1, T + 1, B), dt)
    Hs[:H, 0] = 0
    Hs[H] = 1
    return Hs


def _block_steps(T, B, rows):
    """Time steps per block for per-step buffers of ``rows`` x B elements."""
    k = max(_BLOCK_ELEMS // (rows * B), -(-_MIN_BLOCK_COLS // B), 1)
    return min(T, k)


def _time_blocks(T, k):
    """[(t0, t1), ...] covering range(T) in blocks of k steps, in time order."""
    return [(t0, min(T, t0 + k)) for t0 in range(0, T, k)]


# --------------------------------------------------------------------------
# LSTM
# --------------------------------------------------------------------------

def lstm_forward_backward(x, w_ih, w_hh, b):
    """Forward + full BPTT of a single-layer LSTM, loss = sum of all h_t.

    Returns ``(loss, grads)`` with ``grads`` keys ``x``, ``weight_ih``,
    ``weight_hh``, ``bias`` (PyTorch gate layout i, f, g, o).
    """
    x, dt = _as_input(x)
    T, B, I = x.shape
    H = np.shape(w_hh)[1]
    H2, H3, H4, H5 = 2 * H, 3 * H, 4 * H, 5 * H

    # internal gate order (o, i, f, g): sigmoid gates o, i, f are rows 0:3H,
    # the dc-driven gradients i, f, g are rows H:4H
    perm = np.r_[H3:H4, 0:H2, H2:H3]
    Wih = np.asarray(w_ih, dtype=dt)[perm]            # (4H, I) unscaled, for dx
    Whh = np.asarray(w_hh, dtype=dt)[perm]
    Wih_f = Wih.copy()                                 # forward: sigmoid rows * 0.5
    Wih_f[:H3] *= 0.5
    Whh_f = np.empty((H4, H + 1), dt)                  # [W_hh | bias] (sigmoid rows * 0.5)
    Whh_f[:, :H] = Whh
    Whh_f[:, H] = np.asarray(b, dtype=dt)[perm]
    Whh_f[:H3] *= 0.5
    WhhT1 = np.empty((H, H4 + 1), dt)                  # [W_hh.T | 1] for backward
    WhhT1[:, :H4] = Whh.T
    WhhT1[:, H4] = 1

    x2 = x.reshape(T * B, I)
    kb = _block_steps(T, B, H5 + 1)
    blocks = _time_blocks(T, kb)
    # block buffer: forward = input projection (4H, k, B) of the block's steps,
    # backward = gradient rows [K | o, i, f, g | 1] (5H+1, k, B)
    buf = _ws("lstm.buf", ((H5 + 1) * kb * B,), dt)
    # G[t] rows: activated gates o, i, f, g, then c_{t-1} (so that [i, f] and
    # [g, c_prev] are adjacent and i*g, f*c_prev is ONE multiply)
    G = _ws("lstm.G", (T + 1, H5, B), dt)
    G[0, H4:] = 0                                      # c_{-1} = 0
    TC = _ws("lstm.TC", (T, H, B), dt)                 # tanh(c_t)
    Hs = _state_buffer("lstm.Hs", H, T, B, dt)
    HsT = Hs.transpose(1, 0, 2)                        # HsT[t] = [h_{t-1}; 1]
    prod = np.empty((H2, B), dt)

    # ---- forward: per step 1 matmul + 8 ufunc calls --------------------
    for t0, t1 in blocks:
        k = t1 - t0
        P = buf[:H4 * k * B].reshape(H4, k, B)
        np.matmul(Wih_f, x2[t0 * B:t1 * B].T, out=P.reshape(H4, k * B))
        for S4, S3, o, if_, gc, c, p, h_aug, h_new, tc in zip(
                G[t0:t1, :H4], G[t0:t1, :H3], G[t0:t1, :H], G[t0:t1, H:H3], G[t0:t1, H3:],
                G[t0 + 1:t1 + 1, H4:], P.transpose(1, 0, 2), HsT[t0:t1],
                HsT[t0 + 1:t1 + 1, :H], TC[t0:t1]):
            np.dot(Whh_f, h_aug, out=S4)               # recurrent part + bias
            np.add(S4, p, out=S4)                      # + input projection
            np.tanh(S4, out=S4)                        # tanh(g), tanh(a/2) for o, i, f
            np.multiply(S3, 0.5, out=S3)
            np.add(S3, 0.5, out=S3)                    # sigmoid = 0.5*tanh(a/2) + 0.5
            np.multiply(if_, gc, out=prod)             # [i*g, f*c_prev]
            np.add(prod[:H], prod[H:], out=c)          # c_t, stored as next step's c_prev
            np.tanh(c, out=tc)
            np.multiply(o, tc, out=h_new)

    loss = float(Hs[:H, 1:].sum())

    # ---- backward ------------------------------------------------------
    # dc_t = dc_{t+1} f_{t+1} + dh_t K_t with K = o (1 - tc^2), and
    # dpre_o = dh A_o, dpre_(i,f,g) = dc_t A_(i,f,g) with the local factors
    # A_o = tc o(1-o), A_i = g i(1-i), A_f = c_prev f(1-f), A_g = i (1-g^2).
    A = _ws("lstm.A", (kb, H5, B), dt)                 # rows K, o, i, f, g
    D = _ws("lstm.D", (H4, T, B), dt)                  # dpre of all steps, rows o, i, f, g
    dh = np.ones((H, B), dt)                           # dL/dh_t (loss term included)
    dc = np.zeros((H, B), dt)

    for t0, t1 in reversed(blocks):
        k = t1 - t0
        Gb, Ab, tcb = G[t0:t1], A[:k], TC[t0:t1]
        o, i, g = Gb[:, :H], Gb[:, H:H2], Gb[:, H3:H4]
        s3, a3 = Gb[:, :H3], Ab[:, H:H4]
        aK, ao, ai, af, ag = (Ab[:, m * H:(m + 1) * H] for m in range(5))
        np.subtract(1.0, s3, out=a3)
        np.multiply(a3, s3, out=a3)                    # s(1-s) for o, i, f
        np.multiply(ao, tcb, out=ao)                   # o:  tc * o(1-o)
        np.multiply(ai, g, out=ai)                     # i:  g * i(1-i)
        np.multiply(af, Gb[:, H4:], out=af)            # f:  c_prev * f(1-f)
        np.multiply(g, g, out=ag)
        np.subtract(1.0, ag, out=ag)
        np.multiply(ag, i, out=ag)                     # g:  i * (1-g^2)
        np.multiply(tcb, tcb, out=aK)
        np.subtract(1.0, aK, out=aK)
        np.multiply(aK, o, out=aK)                     # K = o * (1-tc^2)
        A5 = Ab.reshape(k, 5, H, B)
        Db = buf[:(H5 + 1) * k * B].reshape(H5 + 1, k, B)
        Db[H5] = 1
        DT = Db.transpose(1, 0, 2)                     # DT[s] = rows of step t0+s
        D5T = Db[:H5].reshape(5, H, k, B).transpose(2, 0, 1, 3)
        # ---- recurrence: 4 ufunc calls + 1 matmul per step --------------
        for t, a_ko, a_ifg, f, d_ko, d_k, d_ifg, d_all in zip(
                range(t1 - 1, t0 - 1, -1), A5[::-1, :2], A5[::-1, 2:], Gb[::-1, H2:H3],
                D5T[::-1, :2], DT[::-1, :H], D5T[::-1, 2:], DT[::-1, H:]):
            np.multiply(dh, a_ko, out=d_ko)            # [dh*K, dpre_o]
            np.add(dc, d_k, out=dc)                    # dc_t
            np.multiply(dc, a_ifg, out=d_ifg)          # dpre_i, dpre_f, dpre_g
            np.multiply(dc, f, out=dc)                 # dc flowing to step t-1
            if t:
                np.dot(WhhT1, d_all, out=dh)           # W_hh.T @ dpre + 1
        np.copyto(D[:, t0:t1], Db[H:H5])              # one streaming copy per block

    # ---- weight gradients: single matmuls over all steps ---------------
    D2 = D.reshape(H4, T * B)
    dWih = D2 @ x2                                     # (4H, I)
    dWhh_b = D2 @ Hs[:, :T].reshape(H + 1, T * B).T    # (4H, H+1): [dW_hh | dbias]
    dx = (D2.T @ Wih).reshape(T, B, I)

    grads = {
        "x": dx,
        "weight_ih": _inverse_rows(perm, dWih),
        "weight_hh": _inverse_rows(perm, dWhh_b[:, :H]),
        "bias": _inverse_rows(perm, dWhh_b[:, H]),
    }
    return loss, grads


# --------------------------------------------------------------------------
# GRU
# --------------------------------------------------------------------------

def gru_forward_backward(x, w_ih, w_hh, b_ih, b_hh, reset_after=False):
    """Forward + full BPTT of a single-layer GRU, loss = sum of all h_t.

    Returns ``(loss, grads)`` with ``grads`` keys ``x``, ``weight_ih``,
    ``weight_hh``, ``bias_ih``, ``bias_hh`` (block order reset, update, new).
    """
    if reset_after:
        return _gru_reset_after(x, w_ih, w_hh, b_ih, b_hh)
    return _gru_reset_before(x, w_ih, w_hh, b_ih, b_hh)


def _gru_reset_before(x, w_ih, w_hh, b_ih, b_hh):
    # g = tanh(W_in x + b_in + W_hn (r*h) + b_hn).  b_ih + b_hh fold into one
    # bias per block: the (z, r) part rides in the first recurrent matmul
    # (ones row of the state buffer), the n part in the second one (ones row
    # of the r*h buffer); both bias gradients equal the pre-activation
    # gradient sums and come out of the dW_hh matmuls as their last columns.
    #
    # Internal row orders: gradient block [n | z | r | 1] (the dh-driven
    # gradients n, z are adjacent, and (z, r, 1) feeds the backward matmul
    # that also adds the loss term); gates G[t] = [z | r | n].
    x, dt = _as_input(x)
    T, B, I = x.shape
    H = np.shape(w_hh)[1]
    H2, H3 = 2 * H, 3 * H

    perm = np.r_[H2:H3, H:H2, 0:H]                     # PyTorch (r, z, n) -> (n, z, r)
    Wih = np.asarray(w_ih, dtype=dt)[perm]             # unscaled, for dx
    Whh = np.asarray(w_hh, dtype=dt)
    bias = np.asarray(b_ih, dtype=dt) + np.asarray(b_hh, dtype=dt)
    Wih_f = Wih.copy()
    Wih_f[H:] *= 0.5                                   # z, r rows
    zr = np.r_[H:H2, 0:H]
    Wzr_f = np.empty((H2, H + 1), dt)                  # [W_hz; W_hr | b_z; b_r] * 0.5
    Wzr_f[:, :H] = Whh[zr]
    Wzr_f[:, H] = bias[zr]
    Wzr_f *= 0.5
    Wn_f = np.empty((H, H + 1), dt)                    # [W_hn | b_in + b_hn]
    Wn_f[:, :H] = Whh[H2:]
    Wn_f[:, H] = bias[H2:]
    WzrT1 = np.empty((H, H2 + 1), dt)                  # [W_hz.T, W_hr.T | 1]
    WzrT1[:, :H2] = Whh[zr].T
    WzrT1[:, H2] = 1
    WnT = np.ascontiguousarray(Whh[H2:].T)

    x2 = x.reshape(T * B, I)
    kb = _block_steps(T, B, H3 + 1)
    blocks = _time_blocks(T, kb)
    buf = _ws("gru.buf", ((H3 + 1) * kb * B,), dt)
    G = _ws("gru.G", (T, H3, B), dt)                   # z, r, n
    RH = _ws("gru.RH", (H + 1, T, B), dt)              # r * h_{t-1} over a row of ones
    RH[H] = 1
    RHT = RH.transpose(1, 0, 2)
    Hs = _state_buffer("gru.Hs", H, T, B, dt)
    HsT = Hs.transpose(1, 0, 2)
    tmp = np.empty((H, B), dt)

    # ---- forward: per step 2 matmuls + 10 ufunc calls ------------------
    for t0, t1 in blocks:
        k = t1 - t0
        P = buf[:H3 * k * B].reshape(H3, k, B)         # projection rows n, z, r
        np.matmul(Wih_f, x2[t0 * B:t1 * B].T, out=P.reshape(H3, k * B))
        PT = P.transpose(1, 0, 2)
        for ZR, z, r, n, p_zr, p_n, h_aug, h, h_new, rh_aug, rh in zip(
                G[t0:t1, :H2], G[t0:t1, :H], G[t0:t1, H:H2], G[t0:t1, H2:], PT[:, H:],
                PT[:, :H], HsT[t0:t1], HsT[t0:t1, :H], HsT[t0 + 1:t1 + 1, :H],
                RHT[t0:t1], RHT[t0:t1, :H]):
            np.dot(Wzr_f, h_aug, out=ZR)
            np.add(ZR, p_zr, out=ZR)
            np.tanh(ZR, out=ZR)
            np.multiply(ZR, 0.5, out=ZR)
            np.add(ZR, 0.5, out=ZR)
            np.multiply(r, h, out=rh)
            np.dot(Wn_f, rh_aug, out=n)
            np.add(n, p_n, out=n)
            np.tanh(n, out=n)
            np.subtract(h, n, out=tmp)                 # h' = n + z*(h - n)
            np.multiply(tmp, z, out=tmp)
            np.add(n, tmp, out=h_new)

    loss = float(Hs[:H, 1:].sum())

    # ---- backward ------------------------------------------------------
    # dpre_n = dh*(1-z)(1-n^2), dpre_z = dh*(h_prev-n)*z(1-z),
    # dpre_r = drh*h_prev*r(1-r) with drh = W_hn.T @ dpre_n,
    # dh_prev = dh*z + drh*r + W_h(z,r).T @ dpre_(z,r)
    A = _ws("gru.A", (kb, H3, B), dt)                  # rows: n, z, r factors
    D = _ws("gru.D", (H3, T, B), dt)                   # dpre of all steps, rows n, z, r
    dh = np.ones((H, B), dt)
    drh = np.empty((H, B), dt)

    for t0, t1 in reversed(blocks):
        k = t1 - t0
        Gb, Ab = G[t0:t1], A[:k]
        z, r, n = Gb[:, :H], Gb[:, H:H2], Gb[:, H2:]
        an, az, ar = Ab[:, :H], Ab[:, H:H2], Ab[:, H2:]
        hp = HsT[t0:t1, :H]
        np.subtract(1.0, z, out=az)
        np.multiply(n, n, out=an)
        np.subtract(1.0, an, out=an)
        np.multiply(an, az, out=an)                    # (1-z)(1-n^2)
        np.multiply(az, z, out=az)
        np.subtract(hp, n, out=ar)
        np.multiply(az, ar, out=az)                    # (h_prev-n) z(1-z)
        np.subtract(1.0, r, out=ar)
        np.multiply(ar, r, out=ar)
        np.multiply(ar, hp, out=ar)                    # h_prev r(1-r)
        A3 = Ab.reshape(k, 3, H, B)
        Db = buf[:(H3 + 1) * k * B].reshape(H3 + 1, k, B)
        Db[H3] = 1
        DT = Db.transpose(1, 0, 2)
        D3T = Db[:H3].reshape(3, H, k, B).transpose(2, 0, 1, 3)
        # ---- recurrence: 6 ufunc calls + 2 matmuls per step -------------
        for t, a_nz, a_r, z_t, r_t, d_nz, d_n, d_r, d_zr1 in zip(
                range(t1 - 1, t0 - 1, -1), A3[::-1, :2], Ab[::-1, H2:],
                Gb[::-1, :H], Gb[::-1, H:H2], D3T[::-1, :2], DT[::-1, :H],
                DT[::-1, H2:H3], DT[::-1, H:]):
            np.multiply(dh, a_nz, out=d_nz)            # dpre_n, dpre_z
            if not t:
                d_r.fill(0)                            # h0 = 0: no reset-gate gradient
                break
            np.dot(WnT, d_n, out=drh)                  # d(r*h)
            np.multiply(drh, a_r, out=d_r)             # dpre_r
            np.multiply(drh, r_t, out=drh)
            np.multiply(dh, z_t, out=tmp)
            np.add(tmp, drh, out=tmp)
            np.dot(WzrT1, d_zr1, out=dh)               # W.T @ dpre_(z,r) + 1
            np.add(dh, tmp, out=dh)
        np.copyto(D[:, t0:t1], Db[:H3])

    D2 = D.reshape(H3, T * B)                          # (n, z, r)
    dWih = D2 @ x2
    dWzr_b = D2[H:] @ Hs[:, :T].reshape(H + 1, T * B).T   # (2H, H+1), rows z, r
    dWn_b = D2[:H] @ RH.reshape(H + 1, T * B).T        # (H, H+1)
    dx = (D2.T @ Wih).reshape(T, B, I)
    dWhh = np.concatenate([dWzr_b[H:, :H], dWzr_b[:H, :H], dWn_b[:, :H]])
    db = np.concatenate([dWzr_b[H:, H], dWzr_b[:H, H], dWn_b[:, H]])
    grads = {"x": dx, "weight_ih": _inverse_rows(perm, dWih), "weight_hh": dWhh,
             "bias_ih": db, "bias_hh": db.copy()}
    return loss, grads


def _gru_reset_after(x, w_ih, w_hh, b_ih, b_hh):
    # g = tanh(W_in x + b_in + r * (W_hn h + b_hn))  (PyTorch nn.GRU form).
    # The recurrent matmul [W_hh | b'] @ [h; 1] gives (r, z, hn) with
    # b' = (b_ir + b_hr, b_iz + b_hz, b_hn); b_in is added to each block's
    # projection.  Gradient block rows: [n | r | z | hn | 1] (module
    # docstring, point 9); gates G[t] = [r | z | hn | n].
    x, dt = _as_input(x)
    T, B, I = x.shape
    H = np.shape(w_hh)[1]
    H2, H3, H4 = 2 * H, 3 * H, 4 * H

    perm_ih = np.r_[H2:H3, 0:H2]                       # PyTorch (r, z, n) -> (n, r, z)
    Wih = np.asarray(w_ih, dtype=dt)[perm_ih]          # unscaled, for dx
    Whh = np.asarray(w_hh, dtype=dt)                   # (r, z, n)
    bih = np.asarray(b_ih, dtype=dt)
    bhh = np.asarray(b_hh, dtype=dt)
    Wih_f = Wih.copy()
    Wih_f[H:] *= 0.5                                   # r, z rows
    Whh_f = np.empty((H3, H + 1), dt)
    Whh_f[:, :H] = Whh
    Whh_f[:, H] = bhh
    Whh_f[:H2, H] += bih[:H2]
    Whh_f[:H2] *= 0.5
    WhhT1 = np.empty((H, H3 + 1), dt)                  # [W_hh.T | 1]
    WhhT1[:, :H3] = Whh.T
    WhhT1[:, H3] = 1
    b_in = bih[H2:].reshape(H, 1, 1).copy()

    x2 = x.reshape(T * B, I)
    kb = _block_steps(T, B, H4 + 1)
    blocks = _time_blocks(T, kb)
    buf = _ws("gru_ra.buf", ((H4 + 1) * kb * B,), dt)
    G = _ws("gru_ra.G", (T, H4, B), dt)
    Hs = _state_buffer("gru_ra.Hs", H, T, B, dt)
    HsT = Hs.transpose(1, 0, 2)
    tmp = np.empty((H, B), dt)

    # ---- forward: per step 1 matmul + 10 ufunc calls -------------------
    for t0, t1 in blocks:
        k = t1 - t0
        P = buf[:H3 * k * B].reshape(H3, k, B)         # projection rows n, r, z
        np.matmul(Wih_f, x2[t0 * B:t1 * B].T, out=P.reshape(H3, k * B))
        np.add(P[:H], b_in, out=P[:H])
        PT = P.transpose(1, 0, 2)
        for S3, RZ, r, z, hn, n, p_rz, p_n, h_aug, h, h_new in zip(
                G[t0:t1, :H3], G[t0:t1, :H2], G[t0:t1, :H], G[t0:t1, H:H2],
                G[t0:t1, H2:H3], G[t0:t1, H3:], PT[:, H:], PT[:, :H], HsT[t0:t1],
                HsT[t0:t1, :H], HsT[t0 + 1:t1 + 1, :H]):
            np.dot(Whh_f, h_aug, out=S3)               # (r, z)/2 pre-acts and hn
            np.add(RZ, p_rz, out=RZ)
            np.tanh(RZ, out=RZ)
            np.multiply(RZ, 0.5, out=RZ)
            np.add(RZ, 0.5, out=RZ)
            np.multiply(r, hn, out=n)
            np.add(n, p_n, out=n)
            np.tanh(n, out=n)
            np.subtract(h, n, out=tmp)
            np.multiply(tmp, z, out=tmp)
            np.add(n, tmp, out=h_new)

    loss = float(Hs[:H, 1:].sum())

    # ---- backward ------------------------------------------------------
    # every pre-activation gradient is dh times a local factor:
    # n: (1-z)(1-n^2) =: an,  r: an*hn*r(1-r),  z: (h_prev-n) z(1-z),  hn: an*r
    A = _ws("gru_ra.A", (kb, H4, B), dt)               # rows n, r, z, hn
    D = _ws("gru_ra.D", (H4, T, B), dt)                # dpre of all steps, rows n, r, z, hn
    dh = np.ones((H, B), dt)

    for t0, t1 in reversed(blocks):
        k = t1 - t0
        Gb, Ab = G[t0:t1], A[:k]
        r, z, hn, n = Gb[:, :H], Gb[:, H:H2], Gb[:, H2:H3], Gb[:, H3:]
        an, ar, az, ahn = Ab[:, :H], Ab[:, H:H2], Ab[:, H2:H3], Ab[:, H3:]
        np.subtract(1.0, z, out=az)
        np.multiply(n, n, out=an)
        np.subtract(1.0, an, out=an)
        np.multiply(an, az, out=an)
        np.multiply(az, z, out=az)
        np.subtract(HsT[t0:t1, :H], n, out=ar)
        np.multiply(az, ar, out=az)
        np.multiply(an, r, out=ahn)
        np.subtract(1.0, r, out=ar)
        np.multiply(ar, r, out=ar)
        np.multiply(ar, hn, out=ar)
        np.multiply(ar, an, out=ar)
        A4 = Ab.reshape(k, 4, H, B)
        Db = buf[:(H4 + 1) * k * B].reshape(H4 + 1, k, B)
        Db[H4] = 1
        DT = Db.transpose(1, 0, 2)
        D4T = Db[:H4].reshape(4, H, k, B).transpose(2, 0, 1, 3)
        # ---- recurrence: 3 ufunc calls + 1 matmul per step --------------
        for t, a4, z_t, d4, d_h1 in zip(
                range(t1 - 1, t0 - 1, -1), A4[::-1], Gb[::-1, H:H2], D4T[::-1], DT[::-1, H:]):
            np.multiply(dh, a4, out=d4)                # all four pre-activation grads
            if t:
                np.multiply(dh, z_t, out=tmp)
                np.dot(WhhT1, d_h1, out=dh)            # W_hh.T @ dpre + 1
                np.add(dh, tmp, out=dh)
        np.copyto(D[:, t0:t1], Db[:H4])

    D2 = D.reshape(H4, T * B)
    D_ih = D2[:H3]                                     # (n, r, z) input-side dpre
    dWih = D_ih @ x2
    dWhh_b = D2[H:] @ Hs[:, :T].reshape(H + 1, T * B).T   # (3H, H+1), rows r, z, n
    dx = (D_ih.T @ Wih).reshape(T, B, I)
    db_hh = dWhh_b[:, H].copy()
    db_ih = db_hh.copy()                               # r, z: the same pre-activation grads
    db_ih[H2:] = D2[:H].sum(axis=1)
    grads = {
        "x": dx,
        "weight_ih": _inverse_rows(perm_ih, dWih),
        "weight_hh": np.ascontiguousarray(dWhh_b[:, :H]),
        "bias_ih": db_ih,
        "bias_hh": db_hh,
    }
    return loss, grads
