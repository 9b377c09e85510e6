"""Correctness of the hand-written NumPy RNN references in benchmarks/numpy_ref.py.

Checked in float64 against central finite differences (every gradient) and,
for the LSTM, against a naive per-step implementation written the obvious way.
A comparison with PyTorch runs only when torch happens to be installed.
"""

import numpy as np
import pytest

from benchmarks import numpy_ref
from benchmarks.numpy_ref import gru_forward_backward, lstm_forward_backward

T, B, I, H = 3, 2, 3, 4
EPS = 1e-6


def _sigmoid(a):
    return 1.0 / (1.0 + np.exp(-a))


def _lstm_params(seed=0, dtype=np.float64):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((T, B, I)).astype(dtype)
    w_ih = (0.5 * rng.standard_normal((4 * H, I))).astype(dtype)
    w_hh = (0.5 * rng.standard_normal((4 * H, H))).astype(dtype)
    b = (0.5 * rng.standard_normal(4 * H)).astype(dtype)
    return {"x": x, "weight_ih": w_ih, "weight_hh": w_hh, "bias": b}


def _gru_params(seed=0, dtype=np.float64):
    rng = np.random.default_rng(seed)
    return {
        "x": rng.standard_normal((T, B, I)).astype(dtype),
        "weight_ih": (0.5 * rng.standard_normal((3 * H, I))).astype(dtype),
        "weight_hh": (0.5 * rng.standard_normal((3 * H, H))).astype(dtype),
        "bias_ih": (0.5 * rng.standard_normal(3 * H)).astype(dtype),
        "bias_hh": (0.5 * rng.standard_normal(3 * H)).astype(dtype),
    }


def _run_lstm(p):
    return lstm_forward_backward(p["x"], p["weight_ih"], p["weight_hh"], p["bias"])


def _run_gru(p, reset_after):
    return gru_forward_backward(p["x"], p["weight_ih"], p["weight_hh"],
                                p["bias_ih"], p["bias_hh"], reset_after=reset_after)


def _numeric_grads(loss_fn, params):
    """Central differences of loss_fn(params) w.r.t. every entry of every array."""
    out = {}
    for name, arr in params.items():
        g = np.zeros_like(arr)
        flat, gflat = arr.reshape(-1), g.reshape(-1)
        for k in range(flat.size):
            old = flat[k]
            flat[k] = old + EPS
            lp = loss_fn(params)
            flat[k] = old - EPS
            lm = loss_fn(params)
            flat[k] = old
            gflat[k] = (lp - lm) / (2 * EPS)
        out[name] = g
    return out


# ---------------------------------------------------------------- naive LSTM

def _naive_lstm(x, w_ih, w_hh, b):
    """Straightforward LSTM: per-step matmuls, explicit caches, per-step grads."""
    Tn, Bn, _ = x.shape
    Hn = w_hh.shape[1]
    h = np.zeros((Bn, Hn))
    c = np.zeros((Bn, Hn))
    cache = []
    loss = 0.0
    for t in range(Tn):
        a = x[t] @ w_ih.T + h @ w_hh.T + b
        i = _sigmoid(a[:, 0:Hn])
        f = _sigmoid(a[:, Hn:2 * Hn])
        g = np.tanh(a[:, 2 * Hn:3 * Hn])
        o = _sigmoid(a[:, 3 * Hn:])
        c_new = f * c + i * g
        h_new = o * np.tanh(c_new)
        cache.append((h, c, i, f, g, o, c_new))
        h, c = h_new, c_new
        loss += h.sum()

    dw_ih = np.zeros_like(w_ih)
    dw_hh = np.zeros_like(w_hh)
    db = np.zeros_like(b)
    dx = np.zeros_like(x)
    dh_next = np.zeros((Bn, Hn))
    dc_next = np.zeros((Bn, Hn))
    for t in reversed(range(Tn)):
        h_prev, c_prev, i, f, g, o, c_t = cache[t]
        dh = 1.0 + dh_next
        tc = np.tanh(c_t)
        do = dh * tc
        dc = dc_next + dh * o * (1 - tc ** 2)
        di = dc * g
        df = dc * c_prev
        dg = dc * i
        da = np.concatenate([di * i * (1 - i), df * f * (1 - f),
                             dg * (1 - g ** 2), do * o * (1 - o)], axis=1)
        dw_ih += da.T @ x[t]
        dw_hh += da.T @ h_prev
        db += da.sum(axis=0)
        dx[t] = da @ w_ih
        dh_next = da @ w_hh
        dc_next = dc * f
    return loss, {"x": dx, "weight_ih": dw_ih, "weight_hh": dw_hh, "bias": db}


# ------------------------------------------------------------------ naive GRU

def _naive_gru_loss(p, reset_after):
    x, w_ih, w_hh, b_ih, b_hh = (p["x"], p["weight_ih"], p["weight_hh"],
                                 p["bias_ih"], p["bias_hh"])
    Hn = w_hh.shape[1]
    h = np.zeros((x.shape[1], Hn))
    loss = 0.0
    for t in range(x.shape[0]):
        gi = x[t] @ w_ih.T + b_ih
        r = _sigmoid(gi[:, :Hn] + h @ w_hh[:Hn].T + b_hh[:Hn])
        z = _sigmoid(gi[:, Hn:2 * Hn] + h @ w_hh[Hn:2 * Hn].T + b_hh[Hn:2 * Hn])
        if reset_after:
            n = np.tanh(gi[:, 2 * Hn:] + r * (h @ w_hh[2 * Hn:].T + b_hh[2 * Hn:]))
        else:
            n = np.tanh(gi[:, 2 * Hn:] + (r * h) @ w_hh[2 * Hn:].T + b_hh[2 * Hn:])
        h = z * h + (1 - z) * n
        loss += h.sum()
    return loss


def _naive_lstm_loss(p):
    return _naive_lstm(p["x"], p["weight_ih"], p["weight_hh"], p["bias"])[0]


# ---------------------------------------------------------------------- tests

def _assert_grads_close(got, want, rtol, atol):
    assert set(got) == set(want)
    for name in want:
        assert got[name].shape == want[name].shape, name
        np.testing.assert_allclose(got[name], want[name], rtol=rtol, atol=atol,
                                   err_msg=name)


@pytest.mark.parametrize("seed", [0, 1])
def test_lstm_matches_naive(seed):
    p = _lstm_params(seed)
    loss, grads = _run_lstm(p)
    nloss, ngrads = _naive_lstm(p["x"], p["weight_ih"], p["weight_hh"], p["bias"])
    assert loss == pytest.approx(nloss, rel=1e-12, abs=1e-12)
    _assert_grads_close(grads, ngrads, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("seed", [0, 1])
def test_lstm_finite_differences(seed):
    p = _lstm_params(seed)
    loss, grads = _run_lstm(p)
    assert loss == pytest.approx(_naive_lstm_loss(p), rel=1e-12)
    num = _numeric_grads(lambda q: _run_lstm(q)[0], p)
    _assert_grads_close(grads, num, rtol=1e-6, atol=1e-8)


def test_naive_lstm_finite_differences():
    # the naive reference itself is right, independently of the fast one
    p = _lstm_params(2)
    _, grads = _naive_lstm(p["x"], p["weight_ih"], p["weight_hh"], p["bias"])
    num = _numeric_grads(_naive_lstm_loss, p)
    _assert_grads_close(grads, num, rtol=1e-6, atol=1e-8)


@pytest.mark.parametrize("reset_after", [False, True])
@pytest.mark.parametrize("seed", [0, 1])
def test_gru_finite_differences(seed, reset_after):
    p = _gru_params(seed)
    loss, grads = _run_gru(p, reset_after)
    assert loss == pytest.approx(_naive_gru_loss(p, reset_after), rel=1e-12)
    num = _numeric_grads(lambda q: _run_gru(q, reset_after)[0], p)
    _assert_grads_close(grads, num, rtol=1e-6, atol=1e-8)


def test_gru_forms_differ():
    p = _gru_params(3)
    assert _run_gru(p, False)[0] != pytest.approx(_run_gru(p, True)[0], rel=1e-6)


@pytest.mark.parametrize("Tn", [1, 2])
def test_short_sequences(Tn):
    rng = np.random.default_rng(5)
    x = rng.standard_normal((Tn, B, I))
    pl = {"x": x, "weight_ih": rng.standard_normal((4 * H, I)),
          "weight_hh": rng.standard_normal((4 * H, H)), "bias": rng.standard_normal(4 * H)}
    _, g = _run_lstm(pl)
    _, ng = _naive_lstm(pl["x"], pl["weight_ih"], pl["weight_hh"], pl["bias"])
    _assert_grads_close(g, ng, rtol=1e-10, atol=1e-12)
    pg = {"x": x, "weight_ih": rng.standard_normal((3 * H, I)),
          "weight_hh": rng.standard_normal((3 * H, H)),
          "bias_ih": rng.standard_normal(3 * H), "bias_hh": rng.standard_normal(3 * H)}
    for ra in (False, True):
        _, g = _run_gru(pg, ra)
        num = _numeric_grads(lambda q: _run_gru(q, ra)[0], pg)
        _assert_grads_close(g, num, rtol=1e-6, atol=1e-8)


def test_float32_stays_float32():
    p = _lstm_params(0, np.float32)
    _, g = _run_lstm(p)
    assert all(v.dtype == np.float32 for v in g.values())
    p64 = _lstm_params(0)
    _, g64 = _run_lstm(p64)
    for k in g:
        np.testing.assert_allclose(g[k], g64[k], rtol=1e-4, atol=1e-5)
    for ra in (False, True):
        q = _gru_params(0, np.float32)
        _, gg = _run_gru(q, ra)
        assert all(v.dtype == np.float32 for v in gg.values())
        _, gg64 = _run_gru(_gru_params(0), ra)
        for k in gg:
            np.testing.assert_allclose(gg[k], gg64[k], rtol=1e-4, atol=1e-5)


def test_inputs_not_modified():
    p = _lstm_params(0)
    before = {k: v.copy() for k, v in p.items()}
    _run_lstm(p)
    for k in p:
        np.testing.assert_array_equal(p[k], before[k])
    q = _gru_params(0)
    before = {k: v.copy() for k, v in q.items()}
    for ra in (False, True):
        _run_gru(q, ra)
    for k in q:
        np.testing.assert_array_equal(q[k], before[k])


def _torch_compare(cell, reset_after=None):
    torch = pytest.importorskip("torch")
    nn = torch.nn
    if cell == "lstm":
        p = _lstm_params(4)
        mod = nn.LSTM(I, H).double()
        with torch.no_grad():
            mod.weight_ih_l0.copy_(torch.from_numpy(p["weight_ih"]))
            mod.weight_hh_l0.copy_(torch.from_numpy(p["weight_hh"]))
            mod.bias_ih_l0.copy_(torch.from_numpy(p["bias"]))
            mod.bias_hh_l0.zero_()
        loss, grads = _run_lstm(p)
    else:
        p = _gru_params(4)
        mod = nn.GRU(I, H).double()
        with torch.no_grad():
            mod.weight_ih_l0.copy_(torch.from_numpy(p["weight_ih"]))
            mod.weight_hh_l0.copy_(torch.from_numpy(p["weight_hh"]))
            mod.bias_ih_l0.copy_(torch.from_numpy(p["bias_ih"]))
            mod.bias_hh_l0.copy_(torch.from_numpy(p["bias_hh"]))
        loss, grads = _run_gru(p, True)
    xt = torch.from_numpy(p["x"].copy()).requires_grad_(True)
    out, _ = mod(xt)
    tl = out.sum()
    tl.backward()
    assert loss == pytest.approx(tl.item(), rel=1e-10)
    np.testing.assert_allclose(grads["x"], xt.grad.numpy(), rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(grads["weight_ih"], mod.weight_ih_l0.grad.numpy(),
                               rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(grads["weight_hh"], mod.weight_hh_l0.grad.numpy(),
                               rtol=1e-9, atol=1e-12)
    if cell == "lstm":
        np.testing.assert_allclose(grads["bias"], mod.bias_ih_l0.grad.numpy(),
                                   rtol=1e-9, atol=1e-12)
    else:
        np.testing.assert_allclose(grads["bias_ih"], mod.bias_ih_l0.grad.numpy(),
                                   rtol=1e-9, atol=1e-12)
        np.testing.assert_allclose(grads["bias_hh"], mod.bias_hh_l0.grad.numpy(),
                                   rtol=1e-9, atol=1e-12)


def test_lstm_matches_torch_if_installed():
    _torch_compare("lstm")


def test_gru_reset_after_matches_torch_if_installed():
    _torch_compare("gru")


@pytest.mark.parametrize("steps_per_block", [1, 2, 3, 7])
def test_time_blocking(monkeypatch, steps_per_block):
    """Forward and backward run over blocks of time steps (per-block input
    projection, local-factor precomputation and weight-gradient matmuls); any
    block size, including a ragged last block, must give the same results."""
    Tn = 7
    rng = np.random.default_rng(11)
    x = rng.standard_normal((Tn, B, I))
    pl = {"x": x, "weight_ih": 0.5 * rng.standard_normal((4 * H, I)),
          "weight_hh": 0.5 * rng.standard_normal((4 * H, H)),
          "bias": 0.5 * rng.standard_normal(4 * H)}
    pg = {"x": x, "weight_ih": 0.5 * rng.standard_normal((3 * H, I)),
          "weight_hh": 0.5 * rng.standard_normal((3 * H, H)),
          "bias_ih": 0.5 * rng.standard_normal(3 * H),
          "bias_hh": 0.5 * rng.standard_normal(3 * H)}
    want_l = _run_lstm(pl)                 # tiny sizes: one block
    want_g = {ra: _run_gru(pg, ra) for ra in (False, True)}
    monkeypatch.setattr(numpy_ref, "_MIN_BLOCK_COLS", 1)
    # rows of the per-step block buffers: LSTM 5H+1, GRU 3H+1, reset-after GRU 4H+1
    monkeypatch.setattr(numpy_ref, "_BLOCK_ELEMS", steps_per_block * (5 * H + 1) * B)
    assert numpy_ref._block_steps(Tn, B, 5 * H + 1) == steps_per_block
    got_l = _run_lstm(pl)
    _, naive = _naive_lstm(pl["x"], pl["weight_ih"], pl["weight_hh"], pl["bias"])
    _assert_grads_close(got_l[1], naive, rtol=1e-10, atol=1e-12)
    _assert_grads_close(got_l[1], want_l[1], rtol=1e-12, atol=1e-13)
    assert got_l[0] == pytest.approx(want_l[0], rel=1e-13)
    for ra, rows in ((False, 3 * H + 1), (True, 4 * H + 1)):
        monkeypatch.setattr(numpy_ref, "_BLOCK_ELEMS", steps_per_block * rows * B)
        assert numpy_ref._block_steps(Tn, B, rows) == steps_per_block
        loss, grads = _run_gru(pg, ra)
        assert loss == pytest.approx(_naive_gru_loss(pg, ra), rel=1e-12)
        _assert_grads_close(grads, want_g[ra][1], rtol=1e-12, atol=1e-13)
    num = _numeric_grads(lambda q: _run_gru(q, False)[0], pg)
    _assert_grads_close(_run_gru(pg, False)[1], num, rtol=1e-6, atol=1e-8)


def test_workspace_reuse_is_invisible(monkeypatch):
    """Cached internal buffers must not leak state between calls or alias results."""
    p1, p2 = _lstm_params(0), _lstm_params(1)
    q1, q2 = _gru_params(0), _gru_params(1)
    monkeypatch.setattr(numpy_ref, "REUSE_WORKSPACE", False)
    fresh = [_run_lstm(p1), _run_lstm(p2), _run_gru(q1, False), _run_gru(q2, True)]
    monkeypatch.setattr(numpy_ref, "REUSE_WORKSPACE", True)
    numpy_ref.clear_workspace()
    first = [_run_lstm(p1), _run_lstm(p2), _run_gru(q1, False), _run_gru(q2, True)]
    again = [_run_lstm(p1), _run_lstm(p2), _run_gru(q1, False), _run_gru(q2, True)]
    for (lf, gf), (l1, g1), (l2, g2) in zip(fresh, first, again):
        assert lf == l1 == l2
        for k in gf:
            np.testing.assert_array_equal(g1[k], gf[k])
            np.testing.assert_array_equal(g2[k], gf[k])
    # a different shape between calls re-allocates cleanly
    rng = np.random.default_rng(9)
    x = rng.standard_normal((5, 1, I))
    pl = {"x": x, "weight_ih": rng.standard_normal((4 * H, I)),
          "weight_hh": rng.standard_normal((4 * H, H)), "bias": rng.standard_normal(4 * H)}
    _, g = _run_lstm(pl)
    _, ng = _naive_lstm(pl["x"], pl["weight_ih"], pl["weight_hh"], pl["bias"])
    _assert_grads_close(g, ng, rtol=1e-10, atol=1e-12)


def test_batch_of_one():
    rng = np.random.default_rng(21)
    x = rng.standard_normal((4, 1, I))
    pl = {"x": x, "weight_ih": 0.5 * rng.standard_normal((4 * H, I)),
          "weight_hh": 0.5 * rng.standard_normal((4 * H, H)),
          "bias": 0.5 * rng.standard_normal(4 * H)}
    _, g = _run_lstm(pl)
    _, ng = _naive_lstm(pl["x"], pl["weight_ih"], pl["weight_hh"], pl["bias"])
    _assert_grads_close(g, ng, rtol=1e-10, atol=1e-12)
    pg = {"x": x, "weight_ih": 0.5 * rng.standard_normal((3 * H, I)),
          "weight_hh": 0.5 * rng.standard_normal((3 * H, H)),
          "bias_ih": 0.5 * rng.standard_normal(3 * H),
          "bias_hh": 0.5 * rng.standard_normal(3 * H)}
    for ra in (False, True):
        _, g = _run_gru(pg, ra)
        num = _numeric_grads(lambda q: _run_gru(q, ra)[0], pg)
        _assert_grads_close(g, num, rtol=1e-6, atol=1e-8)
