"""rnn.analysis against NumPy: eigenvalues, hand-written BPTT for dL/dh_t, activation counts."""
import numpy as np
import pytest
from hypothesis import assume, given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import minigrad as mg
import rnn
from minigrad.engine import state as engine_state
from rnn.analysis import (
    eigenvalues,
    saturation,
    scale_spectral_radius,
    spectral_radius,
    state_gradient_norms,
)

square = st.integers(1, 6).flatmap(lambda n: hnp.arrays(np.float64, (n, n),
                                                        elements=st.floats(-3, 3)))


@given(square)
def test_eigenvalues_match_numpy(W):
    ref = np.linalg.eigvals(W)
    lam = eigenvalues(W)
    assert np.all(np.diff(np.abs(lam)) <= 1e-12)  # largest modulus first
    # the same multiset: every reference eigenvalue has a match
    for z in ref:
        assert np.min(np.abs(lam - z)) <= 1e-8 * max(1.0, abs(z))
    assert spectral_radius(mg.tensor(W)) == pytest.approx(np.abs(ref).max(), abs=1e-9)


def test_rotation_hand_case():
    r, th = 0.7, 0.4  # r * rotation(th): eigenvalues r e^{+-i th}
    W = r * np.array([[np.cos(th), -np.sin(th)], [np.sin(th), np.cos(th)]])
    lam = eigenvalues(W)
    np.testing.assert_allclose(sorted(lam.imag), [-r * np.sin(th), r * np.sin(th)], atol=1e-12)
    assert spectral_radius(W) == pytest.approx(r, abs=1e-12)


@given(square, st.floats(0.1, 3.0))
def test_scale_spectral_radius(W, radius):
    rho = np.abs(np.linalg.eigvals(W)).max()
    assume(rho > 1e-3)
    S = scale_spectral_radius(W, radius)
    np.testing.assert_allclose(S, W * (radius / rho), rtol=1e-12)
    assert np.abs(np.linalg.eigvals(S)).max() == pytest.approx(radius, rel=1e-6)


def test_bad_matrices():
    with pytest.raises(ValueError, match=r"eigenvalues.*\(2, 3\)"):
        eigenvalues(np.ones((2, 3)))
    with pytest.raises(ValueError, match="nilpotent"):
        scale_spectral_radius(np.array([[0.0, 1.0], [0.0, 0.0]]), 1.0)
    with pytest.raises(TypeError, match="spectral_radius.*int"):
        spectral_radius(np.eye(2, dtype=np.int64))
    with pytest.raises(ValueError, match="saturation: tol"):
        saturation(rnn.RNNCell(2, 3, rng=0), mg.randn(3, 1, 2), tol=1.5)


def elman_bptt_norms(cell, x, upto=None):
    """Hand-written BPTT for h_t = tanh(x_t W_ih^T + b + h_{t-1} W_hh^T), L = sum h_upto."""
    Wih, Whh, b = cell.weight_ih.numpy(), cell.weight_hh.numpy(), cell.bias.numpy()
    T, B = x.shape[:2]
    upto = T - 1 if upto is None else upto
    h, hs = np.zeros((B, Whh.shape[0])), []
    for t in range(T):
        h = np.tanh(x[t] @ Wih.T + b + h @ Whh.T)
        hs.append(h)
    norms, delta = np.zeros(T), np.zeros_like(h)
    for t in range(T - 1, -1, -1):
        if t < T - 1:  # through h_{t+1} = tanh(... + h_t W_hh^T)
            delta = (delta * (1 - hs[t + 1] ** 2)) @ Whh
        if t == upto:
            delta = delta + 1.0
        norms[t] = np.linalg.norm(delta, axis=1).mean()
    return norms


@given(st.integers(1, 7), st.integers(1, 3), st.integers(0, 2 ** 16))
def test_state_gradient_norms_match_handwritten_bptt(T, B, seed):
    cell = rnn.RNNCell(3, 4, rng=seed, dtype=np.float64)
    x = np.random.default_rng(seed).normal(size=(T, B, 3))
    got = state_gradient_norms(cell, mg.tensor(x))
    np.testing.assert_allclose(got, elman_bptt_norms(cell, x), rtol=1e-10, atol=1e-13)
    # a loss on an earlier step: steps after it get no gradient
    upto = T // 2
    got = state_gradient_norms(cell, mg.tensor(x), lambda out, h: out[upto].sum())
    np.testing.assert_allclose(got, elman_bptt_norms(cell, x, upto), rtol=1e-10, atol=1e-13)
    assert np.all(got[upto + 1:] == 0)


@pytest.mark.parametrize("cell", [rnn.LSTMCell, rnn.GRUCell])
def test_gated_cells_fused_equals_composed(cell):
    x = mg.tensor(np.random.default_rng(1).normal(size=(6, 3, 2)))
    a = state_gradient_norms(cell(2, 5, rng=0, dtype=np.float64), x)
    b = state_gradient_norms(cell(2, 5, rng=0, dtype=np.float64, fused=False), x)
    np.testing.assert_allclose(a, b, rtol=1e-10)
    # the last step: dL/dh_T = ones (H,) exactly for L = sum of the last outputs
    assert a[-1] == pytest.approx(np.sqrt(5), rel=1e-12)


def test_saturation_relu_counts_match_numpy():
    cell = rnn.RNNCell(3, 6, "relu", rng=2, dtype=np.float64)
    x = np.random.default_rng(3).normal(size=(5, 4, 3))
    shares = saturation(cell, mg.tensor(x))
    W, U, b = cell.weight_ih.numpy(), cell.weight_hh.numpy(), cell.bias.numpy()
    h, ref = np.zeros((4, 6)), []
    for t in range(5):
        h = np.maximum(x[t] @ W.T + b + h @ U.T, 0)
        ref.append((h <= 0).mean())
    np.testing.assert_allclose(shares["Relu"], ref)
    np.testing.assert_allclose(shares["all"], ref)
    assert sorted(shares) == ["Relu", "all"]


def test_saturation_lstm_hand_case():
    # zero weights, gate biases 10: i, f, o = sigmoid(10) and g = tanh(10) all saturated;
    # c_0 = i g ~ 1 so tanh(c_0) = 0.76 is not, c_t ~ t + 1 >= 2 later so tanh(c_t) is
    cell = rnn.LSTMCell(2, 3, rng=0, dtype=np.float64)
    for p in (cell.weight_ih, cell.weight_hh):
        p.data[...] = 0.0
    cell.bias.data[...] = 10.0
    prev = engine_state.recorder
    shares = saturation(cell, mg.randn(4, 2, 2, dtype=np.float64), tol=0.05)
    np.testing.assert_array_equal(shares["Sigmoid"], [1, 1, 1, 1])
    np.testing.assert_array_equal(shares["Tanh"], [0.5, 1, 1, 1])
    np.testing.assert_allclose(shares["all"], [4 / 5, 1, 1, 1])
    assert cell.fused and engine_state.recorder is prev  # both restored


def test_saturation_tanh_extremes():
    cell = rnn.RNNCell(2, 4, rng=0, dtype=np.float64)
    cell.weight_hh.data[...] = 0.0
    cell.bias.data[...] = 0.0
    cell.weight_ih.data[...] = 100.0
    x = np.zeros((3, 2, 2))
    x[1] = 1.0  # only step 1 drives the units to tanh(200) = 1
    np.testing.assert_array_equal(saturation(cell, mg.tensor(x))["Tanh"], [0, 1, 0])
