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

Speed techniques used (all pure NumPy):

1. The input projection for all T steps is ONE matmul before the loop; the
   recurrent loop only does the (B, H) @ (H, kH) product per step.
2. Gate rows are permuted internally so all sigmoid gates form one contiguous
   column block (LSTM: i, f, o | g).  One ufunc call then covers every
   sigmoid gate of a step, which matters when B*H is small and per-call
   overhead dominates.
3. ``sigmoid(a) = 0.5*tanh(0.5*a) + 0.5``; the factor 0.5 on the argument is
   folded into (copies of) the weights and bias rows of the sigmoid gates, so
   a sigmoid costs one SIMD ``tanh`` plus two cheap in-place passes and no
   ``exp``/division/temporaries.  The backward pass uses the unscaled weights
   and the usual ``s*(1-s)`` derivative, so gradients are for the true weights.
4. Everything is preallocated ((T, B, kH) gate buffer, (T+1, B, H) hidden
   states, (T, B, H) cell / tanh(cell) buffers, a few (B, .) scratch arrays);
   every elementwise op writes with ``out=`` - no temporaries inside the loops.
   All arrays stay in the input dtype (no silent float64 upcasts: Python
   scalars are "weak" under NumPy 2 promotion rules).
5. The backward pass overwrites the stored activated gates in place with the
   pre-activation gradients (ordering the ops so each gate value is consumed
   before its slot is overwritten); the per-step work is elementwise + ONE
   (B, kH) @ (kH, H) matmul.  Afterwards the (T*B, kH) gradient buffer feeds
   single big matmuls for dW_ih, dW_hh and dx and one reduction for the bias.
6. Step 0 is special-cased (h0 = c0 = 0): no recurrent matmul forward, none
   backward, and the dW_hh matmul skips the all-zero first block.
7. For the reset-after GRU a (T, B, 4H) buffer laid out [n | r | z | hn] makes
   both gradient sets contiguous column windows: [n, r, z] (columns 0:3H) are
   the input-side pre-activation gradients and [r, z, hn] (columns H:4H) the
   hidden-side ones, so each weight gradient is still a single matmul.
8. Loops iterate over preallocated array views with ``zip`` instead of
   re-slicing per step, to cut Python overhead for long, thin sequences.
"""

import numpy as np

__all__ = ["lstm_forward_backward", "gru_forward_backward"]


def _dtype_of(x):
    x = np.asarray(x)
    dt = x.dtype if np.issubdtype(x.dtype, np.floating) else np.dtype(np.float64)
    return np.ascontiguousarray(x, dtype=dt), dt


def _inverse_rows(perm, a):
    out = np.empty_like(a)
    out[perm] = a
    return out


# --------------------------------------------------------------------------
# LSTM
# --------------------------------------------------------------------------

def lstm_forward_backward(x, w_ih, w_hh, b):
    """Forward + full BPTT of a single-layer LSTM, loss = sum of all h_t.

    Returns ``(loss, grads)`` with ``grads`` keys ``x``, ``weight_ih``,
    ``weight_hh``, ``bias`` (PyTorch gate layout i, f, g, o).
    """
    x, dt = _dtype_of(x)
    T, B, I = x.shape
    H = np.shape(w_hh)[1]
    H2, H3, H4 = 2 * H, 3 * H, 4 * H

    # Internal gate order i, f, o, g: the three sigmoid gates are contiguous.
    perm = np.r_[0:H2, H3:H4, H2:H3]
    Wih = np.asarray(w_ih, dtype=dt)[perm]          # (4H, I), unscaled (backward)
    Whh = np.asarray(w_hh, dtype=dt)[perm]          # (4H, H), unscaled (backward)
    # Forward copies, transposed to (in, 4H) and with sigmoid rows halved.
    WihT_f = np.ascontiguousarray(Wih.T)
    WihT_f[:, :H3] *= 0.5
    WhhT_f = np.ascontiguousarray(Whh.T)
    WhhT_f[:, :H3] *= 0.5
    b_f = np.asarray(b, dtype=dt)[perm]
    b_f[:H3] *= 0.5

    x2 = x.reshape(T * B, I)
    G = np.empty((T, B, H4), dt)                    # activated gates, later dgates
    G2 = G.reshape(T * B, H4)
    np.matmul(x2, WihT_f, out=G2)
    G2 += b_f
    C = np.empty((T, B, H), dt)                     # cell states
    TC = np.empty((T, B, H), dt)                    # tanh(cell)
    Hs = np.empty((T + 1, B, H), dt)                # Hs[0] = h0 = 0, Hs[t+1] = h_t
    Hs[0] = 0
    tmp4 = np.empty((B, H4), dt)
    tmp = np.empty((B, H), dt)

    # Block views over all steps (indexing these per step is cheaper than
    # slicing G[t] and then its columns).
    Gs, Gi, Gf, Go, Gg = G[:, :, :H3], G[:, :, :H], G[:, :, H:H2], G[:, :, H2:H3], G[:, :, H3:]

    # ---- forward -------------------------------------------------------
    c_prev = None
    for t, (S, S3, i, f, o, g, c, tc, h, h_new) in enumerate(
            zip(G, Gs, Gi, Gf, Go, Gg, C, TC, Hs[:-1], Hs[1:])):
        if t:
            np.matmul(h, WhhT_f, out=tmp4)
            np.add(S, tmp4, out=S)
        np.tanh(S3, out=S3)                          # sigmoid via tanh identity
        np.multiply(S3, 0.5, out=S3)
        np.add(S3, 0.5, out=S3)
        np.tanh(g, out=g)
        if t:
            np.multiply(f, c_prev, out=c)
            np.multiply(i, g, out=tmp)
            np.add(c, tmp, out=c)
        else:
            np.multiply(i, g, out=c)
        np.tanh(c, out=tc)
        np.multiply(o, tc, out=h_new)
        c_prev = c

    loss = float(Hs[1:].sum())

    # ---- backward ------------------------------------------------------
    dhrec = np.zeros((B, H), dt)                     # dL/dh_t from step t+1
    dc = np.zeros((B, H), dt)
    D3 = np.empty((B, H3), dt)                       # d(i, f, o) post-activation
    Di, Df, Do = D3[:, :H], D3[:, H:H2], D3[:, H2:]
    tmp3 = np.empty((B, H3), dt)

    for t in range(T - 1, -1, -1):
        S, S3, i, f, o, g = G[t], Gs[t], Gi[t], Gf[t], Go[t], Gg[t]
        tc = TC[t]
        dh = dhrec
        np.add(dh, 1.0, out=dh)                      # + dL/dh_t from the loss
        # dc += dh * o * (1 - tanh(c)^2)
        np.multiply(tc, tc, out=tmp)
        np.subtract(1.0, tmp, out=tmp)
        np.multiply(tmp, o, out=tmp)
        np.multiply(tmp, dh, out=tmp)
        np.add(dc, tmp, out=dc)
        # post-activation gate grads (before any gate slot is overwritten)
        np.multiply(dc, g, out=Di)
        if t:
            np.multiply(dc, C[t - 1], out=Df)
        else:
            Df.fill(0)
        np.multiply(dh, tc, out=Do)
        # candidate: dg_pre = dc * i * (1 - g^2) -> into the g slot
        np.multiply(g, g, out=tmp)
        np.subtract(1.0, tmp, out=tmp)
        np.multiply(tmp, dc, out=tmp)
        np.multiply(tmp, i, out=g)
        # cell gradient flowing to step t-1
        np.multiply(dc, f, out=dc)
        # sigmoid gates: d_pre = s * (1 - s) * d_post -> in place
        np.subtract(1.0, S3, out=tmp3)
        np.multiply(S3, tmp3, out=S3)
        np.multiply(S3, D3, out=S3)
        if t:
            np.matmul(S, Whh, out=dhrec)             # the only per-step matmul

    # ---- weight gradients, vectorised over time ------------------------
    dWih = G2.T @ x2                                             # (4H, I)
    if T > 1:
        dWhh = G2[B:].T @ Hs[1:T].reshape((T - 1) * B, H)       # h_{t-1}, t >= 1
    else:
        dWhh = np.zeros((H4, H), dt)
    db = G2.sum(axis=0)
    dx = (G2 @ Wih).reshape(T, B, I)

    grads = {
        "x": dx,
        "weight_ih": _inverse_rows(perm, dWih),
        "weight_hh": _inverse_rows(perm, dWhh),
        "bias": _inverse_rows(perm, db),
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
    # g = tanh(W_in x + b_in + W_hn (r*h) + b_hn): every bias sits outside the
    # nonlinearity's inner products, so b_ih + b_hh fold into one bias and
    # both bias gradients equal the pre-activation gradient sums.
    x, dt = _dtype_of(x)
    T, B, I = x.shape
    H = np.shape(w_hh)[1]
    H2, H3 = 2 * H, 3 * H

    Wih = np.asarray(w_ih, dtype=dt)                 # (3H, I) unscaled
    Whh = np.asarray(w_hh, dtype=dt)                 # (3H, H) unscaled
    Whh_rz = np.ascontiguousarray(Whh[:H2])          # (2H, H) backward
    Whh_n = np.ascontiguousarray(Whh[H2:])           # (H, H) backward
    WihT_f = np.ascontiguousarray(Wih.T)
    WihT_f[:, :H2] *= 0.5
    WhhT_rz_f = np.ascontiguousarray(Whh_rz.T) * 0.5  # (H, 2H)
    WhhT_n = np.ascontiguousarray(Whh_n.T)           # (H, H)
    b_f = np.asarray(b_ih, dtype=dt) + np.asarray(b_hh, dtype=dt)
    b_f[:H2] *= 0.5

    x2 = x.reshape(T * B, I)
    G = np.empty((T, B, H3), dt)                     # [r, z, n], later their grads
    G2 = G.reshape(T * B, H3)
    np.matmul(x2, WihT_f, out=G2)
    G2 += b_f
    RH = np.empty((T, B, H), dt)                     # r * h_{t-1}
    Hs = np.empty((T + 1, B, H), dt)
    Hs[0] = 0
    tmp2 = np.empty((B, H2), dt)
    tmp = np.empty((B, H), dt)

    Grz, Gr, Gz, Gn = G[:, :, :H2], G[:, :, :H], G[:, :, H:H2], G[:, :, H2:]

    for t, (RZ, r, z, n, rh, h, h_new) in enumerate(
            zip(Grz, Gr, Gz, Gn, RH, Hs[:-1], Hs[1:])):
        if t:
            np.matmul(h, WhhT_rz_f, out=tmp2)
            np.add(RZ, tmp2, out=RZ)
        np.tanh(RZ, out=RZ)
        np.multiply(RZ, 0.5, out=RZ)
        np.add(RZ, 0.5, out=RZ)
        if t:
            np.multiply(r, h, out=rh)
            np.matmul(rh, WhhT_n, out=tmp)
            np.add(n, tmp, out=n)
        np.tanh(n, out=n)
        # h' = z*h + (1-z)*n = n + z*(h - n)
        if t:
            np.subtract(h, n, out=tmp)
            np.multiply(tmp, z, out=tmp)
            np.add(n, tmp, out=h_new)
        else:
            np.subtract(1.0, z, out=tmp)
            np.multiply(tmp, n, out=h_new)

    loss = float(Hs[1:].sum())

    dhrec = np.zeros((B, H), dt)
    dhacc = np.empty((B, H), dt)
    drh = np.empty((B, H), dt)
    D2 = np.empty((B, H2), dt)                       # d(r, z) post-activation
    Dr, Dz = D2[:, :H], D2[:, H:]
    tmpb = np.empty((B, H), dt)

    for t in range(T - 1, -1, -1):
        RZ, r, z, n = Grz[t], Gr[t], Gz[t], Gn[t]
        h_prev = Hs[t]
        dh = dhrec
        np.add(dh, 1.0, out=dh)
        # dz = dh * (h_prev - n)
        np.subtract(h_prev, n, out=Dz)
        np.multiply(Dz, dh, out=Dz)
        # dn_pre = dh * (1 - z) * (1 - n^2) -> into the n slot
        np.subtract(1.0, z, out=tmp)
        np.multiply(tmp, dh, out=tmp)
        np.multiply(n, n, out=tmpb)
        np.subtract(1.0, tmpb, out=tmpb)
        np.multiply(tmp, tmpb, out=n)
        if t:
            np.multiply(dh, z, out=dhacc)            # direct path h_{t-1} -> h_t
            np.matmul(n, Whh_n, out=drh)             # d(r*h)
            np.multiply(drh, h_prev, out=Dr)
            np.multiply(drh, r, out=drh)
            np.add(dhacc, drh, out=dhacc)
        else:
            Dr.fill(0)                               # h0 = 0 => no reset grad
        np.subtract(1.0, RZ, out=tmp2)
        np.multiply(RZ, tmp2, out=RZ)
        np.multiply(RZ, D2, out=RZ)
        if t:
            np.matmul(RZ, Whh_rz, out=dhrec)
            np.add(dhrec, dhacc, out=dhrec)

    dWih = G2.T @ x2
    dWhh = np.zeros((H3, H), dt)
    if T > 1:
        Gt = G2[B:]
        np.matmul(Gt[:, :H2].T, Hs[1:T].reshape((T - 1) * B, H), out=dWhh[:H2])
        np.matmul(Gt[:, H2:].T, RH[1:].reshape((T - 1) * B, H), out=dWhh[H2:])
    db = G2.sum(axis=0)
    dx = (G2 @ Wih).reshape(T, B, I)
    grads = {"x": dx, "weight_ih": dWih, "weight_hh": dWhh,
             "bias_ih": db, "bias_hh": db.copy()}
    return loss, grads


def _gru_reset_after(x, w_ih, w_hh, b_ih, b_hh):
    # g = tanh(W_in x + b_in + r * (W_hn h + b_hn))  (PyTorch nn.GRU form)
    # Buffer columns: [n | r | z | hn].  Columns 0:3H are the input-side
    # pre-activations (n, r, z) and columns H:4H the hidden-side ones
    # (r, z, hn); both windows are contiguous column ranges.
    x, dt = _dtype_of(x)
    T, B, I = x.shape
    H = np.shape(w_hh)[1]
    H2, H3, H4 = 2 * H, 3 * H, 4 * H

    perm_ih = np.r_[H2:H3, 0:H2]                     # PyTorch (r,z,n) -> (n,r,z)
    Wih = np.asarray(w_ih, dtype=dt)[perm_ih]        # (3H, I) unscaled, internal order
    Whh = np.asarray(w_hh, dtype=dt)                 # (3H, H) unscaled, (r, z, n)
    bih = np.asarray(b_ih, dtype=dt)
    bhh = np.asarray(b_hh, dtype=dt)
    WihT_f = np.ascontiguousarray(Wih.T)
    WihT_f[:, H:] *= 0.5                             # r, z columns
    WhhT_f = np.ascontiguousarray(Whh.T)
    WhhT_f[:, :H2] *= 0.5
    b_f = np.concatenate([bih[H2:], bih[:H2] + bhh[:H2]])
    b_f[H:] *= 0.5
    b_hn = bhh[H2:].copy()

    x2 = x.reshape(T * B, I)
    G = np.empty((T, B, H4), dt)
    G2 = G.reshape(T * B, H4)
    xp = x2 @ WihT_f                                 # (T*B, 3H)
    np.add(xp, b_f, out=G2[:, :H3])
    del xp
    Hs = np.empty((T + 1, B, H), dt)
    Hs[0] = 0
    tmp3 = np.empty((B, H3), dt)
    tmp = np.empty((B, H), dt)

    Gn, Grz, Gr, Gz, Ghn = G[:, :, :H], G[:, :, H:H3], G[:, :, H:H2], G[:, :, H2:H3], G[:, :, H3:]

    for t, (n, RZ, r, z, hn, h, h_new) in enumerate(
            zip(Gn, Grz, Gr, Gz, Ghn, Hs[:-1], Hs[1:])):
        if t:
            np.matmul(h, WhhT_f, out=tmp3)
            np.add(RZ, tmp3[:, :H2], out=RZ)
            np.add(tmp3[:, H2:], b_hn, out=hn)
        else:
            hn[...] = b_hn
        np.tanh(RZ, out=RZ)
        np.multiply(RZ, 0.5, out=RZ)
        np.add(RZ, 0.5, out=RZ)
        np.multiply(r, hn, out=tmp)
        np.add(n, tmp, out=n)
        np.tanh(n, out=n)
        if t:
            np.subtract(h, n, out=tmp)
            np.multiply(tmp, z, out=tmp)
            np.add(n, tmp, out=h_new)
        else:
            np.subtract(1.0, z, out=tmp)
            np.multiply(tmp, n, out=h_new)

    loss = float(Hs[1:].sum())

    dhrec = np.zeros((B, H), dt)
    dhacc = np.empty((B, H), dt)
    D2 = np.empty((B, H2), dt)
    Dr, Dz = D2[:, :H], D2[:, H:]
    tmp2 = np.empty((B, H2), dt)
    tmpb = np.empty((B, H), dt)

    for t in range(T - 1, -1, -1):
        S, n, RZ, r, z, hn = G[t], Gn[t], Grz[t], Gr[t], Gz[t], Ghn[t]
        h_prev = Hs[t]
        dh = dhrec
        np.add(dh, 1.0, out=dh)
        np.subtract(h_prev, n, out=Dz)
        np.multiply(Dz, dh, out=Dz)
        np.subtract(1.0, z, out=tmp)
        np.multiply(tmp, dh, out=tmp)
        np.multiply(n, n, out=tmpb)
        np.subtract(1.0, tmpb, out=tmpb)
        np.multiply(tmp, tmpb, out=n)                # n slot: dn_pre
        np.multiply(n, hn, out=Dr)                   # dr (post-activation)
        np.multiply(n, r, out=hn)                    # hn slot: d(W_hn h + b_hn)
        if t:
            np.multiply(dh, z, out=dhacc)
        np.subtract(1.0, RZ, out=tmp2)
        np.multiply(RZ, tmp2, out=RZ)
        np.multiply(RZ, D2, out=RZ)
        if t:
            np.matmul(S[:, H:], Whh, out=dhrec)
            np.add(dhrec, dhacc, out=dhrec)

    G_ih = G2[:, :H3]                                # (n, r, z) pre-activation grads
    G_hh = G2[:, H:]                                 # (r, z, hn) hidden-side grads
    dWih = G_ih.T @ x2
    if T > 1:
        dWhh = G_hh[B:].T @ Hs[1:T].reshape((T - 1) * B, H)
    else:
        dWhh = np.zeros((H3, H), dt)
    sums = G2.sum(axis=0)
    dx = (G_ih @ Wih).reshape(T, B, I)
    grads = {
        "x": dx,
        "weight_ih": _inverse_rows(perm_ih, dWih),
        "weight_hh": dWhh,
        "bias_ih": _inverse_rows(perm_ih, sums[:H3]),
        "bias_hh": sums[H:].copy(),
    }
    return loss, grads
