"""The pieces of `python -m benchmarks.rnn`: every row computes the same LSTM (or MUT1) as an
independent NumPy reference, the memory probe sees a known allocation, and a one-row quick run
prints its summary and targets. PyTorch and JAX rows are checked only where they are installed.
"""
import numpy as np
import pytest

import minigrad as mg
import rnn
from benchmarks import jax_ref, rnn as bench, torch_ref
from benchmarks.numpy_ref import lstm_forward_backward
from benchmarks.user_cells import UserLSTM, UserMUT1

T, B, I, H = 4, 3, 5, 6


def _sigmoid(a):
    return 1.0 / (1.0 + np.exp(-a))


def _lstm_arrays(dtype=np.float64, seed=0):
    rng = np.random.default_rng(seed)
    return (rng.standard_normal((T, B, I)).astype(dtype),
            (0.5 * rng.standard_normal((4 * H, I))).astype(dtype),
            (0.5 * rng.standard_normal((4 * H, H))).astype(dtype),
            (0.5 * rng.standard_normal(4 * H)).astype(dtype))


def _mut1_numpy(x, w_z, w_r, u_r, u_h, b_z, b_r, b_h, w_p):
    """MUT1 forward written plainly (the README's maths, tanh(x W_p^T) when I != H)."""
    h = np.zeros((x.shape[1], u_h.shape[0]))
    outs = []
    for x_t in x:
        z = _sigmoid(x_t @ w_z.T + b_z)
        r = _sigmoid(x_t @ w_r.T + h @ u_r.T + b_r)
        x_h = x_t if w_p is None else x_t @ w_p.T
        h = np.tanh((r * h) @ u_h.T + np.tanh(x_h) + b_h) * z + h * (1 - z)
        outs.append(h)
    return np.stack(outs)


def test_user_lstm_matches_numpy_reference():
    """The user-written LSTM (per-op graph) gives the NumPy BPTT's loss and every gradient."""
    x, w, u, b = _lstm_arrays()
    cell = UserLSTM(I, H, rng=0, dtype="float64")
    cell.w.data[...], cell.u.data[...], cell.b.data[...] = w, u, b
    xt = mg.tensor(x, requires_grad=True)
    out, _ = rnn.unroll(cell, xt)
    loss = out.sum()
    loss.backward()
    ref_loss, ref = lstm_forward_backward(x, w, u, b)
    np.testing.assert_allclose(loss.item(), ref_loss, rtol=1e-12)
    for got, key in ((xt.grad, "x"), (cell.w.grad, "weight_ih"), (cell.u.grad, "weight_hh"),
                     (cell.b.grad, "bias")):
        np.testing.assert_allclose(got.data, ref[key], rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("n_in", [I, H])
def test_user_mut1_matches_numpy_forward_and_gradcheck(n_in):
    cell = UserMUT1(n_in, H, rng=1, dtype="float64")
    x = np.random.default_rng(2).standard_normal((T, B, n_in))
    out, _ = rnn.unroll(cell, mg.tensor(x))
    params = [cell.w_z, cell.w_r, cell.u_r, cell.u_h, cell.b_z, cell.b_r, cell.b_h, cell.w_p]
    want = _mut1_numpy(x, *(None if p is None else p.data for p in params))
    np.testing.assert_allclose(out.data, want, rtol=1e-12, atol=1e-12)
    assert (cell.w_p is None) == (n_in == H)
    from minigrad.testing import gradcheck
    assert gradcheck(lambda xt: rnn.unroll(cell, xt)[0], [mg.tensor(x, requires_grad=True)])


@pytest.mark.skipif(not torch_ref.available(), reason="PyTorch is not installed")
def test_torch_user_loops_match_numpy_reference():
    torch = torch_ref.torch
    x, w, u, b = _lstm_arrays()
    ref_loss, ref = lstm_forward_backward(x, w, u, b)
    script = torch.jit.CompilationUnit(torch_ref.TORCHSCRIPT_LSTM).user_lstm_loop
    for loop in (torch_ref.user_lstm_loop, script):
        xt, wt, ut, bt = (torch.tensor(a, requires_grad=True) for a in (x, w, u, b))
        loss = loop(xt, wt, ut, bt).sum()
        loss.backward()
        np.testing.assert_allclose(loss.item(), ref_loss, rtol=1e-12)
        for got, key in ((xt, "x"), (wt, "weight_ih"), (ut, "weight_hh"), (bt, "bias")):
            np.testing.assert_allclose(got.grad.numpy(), ref[key], rtol=1e-10, atol=1e-12)


@pytest.mark.skipif(not jax_ref.available(), reason="JAX is not installed")
def test_jax_rows_match_numpy_reference():
    """float32 (JAX's default): the LSTM's loss and gradients, MUT1's loss."""
    x, w, u, b = _lstm_arrays(np.float32)
    ref_loss, ref = lstm_forward_backward(x.astype(np.float64), w, u, b)
    loss, grads = jax_ref.lstm_grads(x, w, u, b)
    np.testing.assert_allclose(loss, ref_loss, rtol=1e-5)
    for key, g in grads.items():
        np.testing.assert_allclose(g, ref[key], rtol=1e-4, atol=1e-5)
    rng = np.random.default_rng(3)
    params = tuple((0.5 * rng.standard_normal(s)).astype(np.float32) for s in
                   [(H, I), (H, I), (H, H), (H, H), (H,), (H,), (H,), (H, I)])
    want = _mut1_numpy(x.astype(np.float64), *params).sum()
    np.testing.assert_allclose(float(jax_ref.mut1_loss(params, x)), want, rtol=1e-5)


def test_peak_memory_sees_a_known_allocation():
    """A step that allocates and frees 40 MB peaks at about 40 MB and keeps nothing."""
    size = 40 * 2 ** 20

    def step():
        a = np.ones(size // 8)
        return float(a[-1])

    m = bench.peak_memory(step)
    assert 0.95 * size <= m["peak_bytes"] <= 1.2 * size
    assert abs(m["kept_bytes"]) < 0.1 * size


def test_quick_run_prints_summary_and_targets(capsys):
    runs, memory = bench.main(["--quick", "--configs", "c", "--threads", "1", "--repeat", "1",
                               "--rows", "lstm-off"])
    text = capsys.readouterr().out
    assert set(runs[1]["c"]["times"]) == {"fused", "lstm-off"}
    assert memory is None
    assert "minigrad user LSTM, per-op graph" in text
    assert "targets (issue 21)" in text and "user LSTM compiled (auto) <= 1.3x" in text


def test_targets_from_hand_made_times():
    """Ratios, the fastest minigrad row and held / missed, on times made up for the test."""
    def result(**ms):
        return {"times": {k.replace("_", "-"): [v / 1e3, v / 1e3 * 1.1, v / 1e3 * 0.9]
                          for k, v in ms.items()},
                "skipped": {}, "first_in_process": {}, "notes": {}}
    one = result(fused=10.0, lstm_auto=12.0, mut1_auto=14.0, torch=11.0, jax=9.0)
    two = result(fused=10.0, lstm_auto=8.0, mut1_auto=13.0, torch=7.0, jax=9.0)
    runs = {1: {c: one for c in "acd"}, 2: {c: two for c in "acd"}}
    memory = {c: {"lstm-auto": {"first_s": 0.1, "worst_s": 2.5}} for c in "acd"}
    found = {(text, cfg): by for text, cfg, by in bench.targets(runs, memory)}
    assert found["user LSTM compiled (auto) <= 1.3x fused LSTM", "c"] == {
        1: ("1.20 (1.20)", True), 2: ("0.80 (0.80)", True)}
    assert found["MUT1 compiled (auto) <= 1.3x fused LSTM", "c"][1] == ("1.40 (1.40)", False)
    # one thread: the fused row (10 ms) is fastest, 10/11 vs nn.LSTM and 10/9 vs JAX
    assert found["minigrad best LSTM path <= 1.0x nn.LSTM", "a"][1] == ("0.91 (0.91) fused", True)
    assert found["minigrad best LSTM path <= 1.0x JAX LSTM", "a"][1] == ("1.11 (1.11) fused",
                                                                        False)
    # two threads: the compiled user LSTM (8 ms) is minigrad's fastest
    assert found["minigrad best LSTM path <= 1.0x nn.LSTM", "d"][2] == (
        "1.14 (1.14) lstm-auto", False)
    first = [by for (text, cfg), by in found.items() if text.startswith("first calls")]
    assert len(first) == 3 and first[0][1] == ("2.50 s lstm-auto", False)
