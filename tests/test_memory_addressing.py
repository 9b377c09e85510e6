"""NTM addressing (rnn.memory.addressing): each function against a NumPy reference written here
with explicit loops over examples, heads and slots; gradcheck in float64 over hypothesis-drawn
batch, heads, N, M and shift widths; a batch equals each example alone; the fake device."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import minigrad as mg
from minigrad.testing import gradcheck
from rnn.memory import addressing as am

# --- NumPy references: one example, one head at a time -----------------------------------------


def softmax_ref(z):
    e = np.exp(z - z.max())
    return e / e.sum()


def content_ref(memory, key, beta, eps=1e-8):
    """Cosine with the documented norms sqrt(|x|**2 + eps), which keep a zero slot finite."""
    def norm(x):
        return np.sqrt(x @ x + eps)

    B, N, _ = memory.shape
    H = key.shape[1]
    out = np.zeros((B, H, N))
    for b in range(B):
        for h in range(H):
            k = key[b, h]
            cos = np.array([memory[b, i] @ k / (norm(memory[b, i]) * norm(k))
                            for i in range(N)])
            out[b, h] = softmax_ref(beta[b, h] * cos)
    return out


def interpolate_ref(wc, wp, g):
    out = np.zeros_like(wc)
    for b in range(wc.shape[0]):
        for h in range(wc.shape[1]):
            out[b, h] = g[b, h] * wc[b, h] + (1 - g[b, h]) * wp[b, h]
    return out


def shift_ref(w, s):
    """Circular convolution by definition: out_i = sum over shifts d of s[d] w[(i - d) mod N]."""
    B, H, N = w.shape
    K = s.shape[-1]
    out = np.zeros_like(w)
    for b in range(B):
        for h in range(H):
            for i in range(N):
                for j in range(K):
                    d = j - K // 2
                    out[b, h, i] += s[b, h, j] * w[b, h, (i - d) % N]
    return out


def sharpen_ref(w, gamma):
    out = np.zeros_like(w)
    for b in range(w.shape[0]):
        for h in range(w.shape[1]):
            p = w[b, h] ** gamma[b, h]
            out[b, h] = p / p.sum()
    return out


def read_ref(memory, w):
    B, H, N = w.shape
    out = np.zeros((B, H, memory.shape[2]))
    for b in range(B):
        for h in range(H):
            for i in range(N):
                out[b, h] += w[b, h, i] * memory[b, i]
    return out


def write_ref(memory, w, e, a):
    """Graves et al.'s erase then add, each head's erase a factor, the adds summed."""
    out = memory.copy()
    B, H, N = w.shape
    for b in range(B):
        for i in range(N):
            keep = np.ones(memory.shape[2])
            for h in range(H):
                keep *= 1 - w[b, h, i] * e[b, h]
            out[b, i] = memory[b, i] * keep + sum(w[b, h, i] * a[b, h] for h in range(H))
    return out


def address_ref(memory, wp, key, beta, g, s, gamma):
    return sharpen_ref(shift_ref(interpolate_ref(content_ref(memory, key, beta), wp, g), s), gamma)


# --- the table: one row per function, its reference and how to draw its inputs ------------------


@dataclass
class Dims:
    B: int
    H: int
    N: int
    M: int
    K: int


def distribution(rng, *shape):
    """Positive weights summing to 1 over the last axis, kept away from 0 (sharpen's log)."""
    w = rng.uniform(0.2, 1.0, shape)
    return w / w.sum(-1, keepdims=True)


DRAWS = {
    "memory": lambda r, d: r.standard_normal((d.B, d.N, d.M)),
    "key": lambda r, d: r.standard_normal((d.B, d.H, d.M)),
    "beta": lambda r, d: r.uniform(0.5, 3.0, (d.B, d.H)),
    "w": lambda r, d: distribution(r, d.B, d.H, d.N),
    "w_prev": lambda r, d: distribution(r, d.B, d.H, d.N),
    "gate": lambda r, d: r.uniform(0.05, 0.95, (d.B, d.H)),
    "kernel": lambda r, d: distribution(r, d.B, d.H, d.K),
    "gamma": lambda r, d: r.uniform(1.0, 4.0, (d.B, d.H)),
    "erase": lambda r, d: r.uniform(0.0, 1.0, (d.B, d.H, d.M)),
    "add": lambda r, d: r.standard_normal((d.B, d.H, d.M)),
}


@dataclass
class Row:
    fn: Callable
    reference: Callable
    inputs: tuple


ROWS = {
    "content_weights": Row(am.content_weights, content_ref, ("memory", "key", "beta")),
    "interpolate": Row(am.interpolate, interpolate_ref, ("w", "w_prev", "gate")),
    "shift": Row(am.shift, shift_ref, ("w", "kernel")),
    "sharpen": Row(am.sharpen, sharpen_ref, ("w", "gamma")),
    "read": Row(am.read, read_ref, ("memory", "w")),
    "write": Row(am.write, write_ref, ("memory", "w", "erase", "add")),
    "address": Row(am.address, address_ref,
                   ("memory", "w_prev", "key", "beta", "gate", "kernel", "gamma")),
}

dims = st.builds(Dims, B=st.integers(1, 3), H=st.integers(1, 3), N=st.integers(1, 7),
                 M=st.integers(1, 4), K=st.sampled_from([1, 3, 5]))


def draw_arrays(row, d, seed):
    rng = np.random.default_rng(seed)
    return [DRAWS[name](rng, d) for name in row.inputs]


@pytest.mark.parametrize("name", sorted(ROWS))
@settings(max_examples=15)
@given(d=dims, seed=st.integers(0, 2**16))
def test_equals_numpy_reference(name, d, seed):
    row = ROWS[name]
    arrays = draw_arrays(row, d, seed)
    got = row.fn(*[mg.tensor(a) for a in arrays]).numpy()
    np.testing.assert_allclose(got, row.reference(*arrays), rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("name", sorted(ROWS))
@settings(max_examples=8)
@given(d=dims, seed=st.integers(0, 2**16))
def test_gradcheck(name, d, seed):
    row = ROWS[name]
    tensors = [mg.tensor(a, requires_grad=True) for a in draw_arrays(row, d, seed)]
    assert gradcheck(row.fn, tensors, seed=seed)


@pytest.mark.parametrize("name", sorted(ROWS))
@settings(max_examples=5)
@given(d=dims, seed=st.integers(0, 2**16))
def test_batch_equals_each_example_alone(name, d, seed):
    """Values and input gradients of a batch of B are those of the B examples run one by one."""
    row = ROWS[name]
    arrays = draw_arrays(row, d, seed)
    gout = np.random.default_rng(seed + 1).standard_normal(row.reference(*arrays).shape)
    whole = [mg.tensor(a, requires_grad=True) for a in arrays]
    out = row.fn(*whole)
    (out * mg.tensor(gout)).sum().backward()
    for b in range(d.B):
        alone = [mg.tensor(a[b:b + 1], requires_grad=True) for a in arrays]
        out_b = row.fn(*alone)
        (out_b * mg.tensor(gout[b:b + 1])).sum().backward()
        np.testing.assert_allclose(out_b.numpy(), out.numpy()[b:b + 1], rtol=1e-12, atol=1e-14)
        for t_all, t_b in zip(whole, alone):
            np.testing.assert_allclose(t_b.grad.numpy(), t_all.grad.numpy()[b:b + 1],
                                       rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("name", sorted(ROWS))
def test_runs_on_fake_device(name):
    """No NumPy call touches device data, forward or backward; results equal the CPU's."""
    row = ROWS[name]
    arrays = draw_arrays(row, Dims(B=2, H=2, N=5, M=3, K=3), 0)
    results = {}
    for device in ("cpu", "fake"):
        tensors = [mg.tensor(a, requires_grad=True, device=device) for a in arrays]
        out = row.fn(*tensors)
        out.sum().backward()
        assert out.device == device and all(t.grad.device == device for t in tensors)
        results[device] = [out.numpy()] + [t.grad.numpy() for t in tensors]
    for a, b in zip(results["cpu"], results["fake"]):
        np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-14)


# --- hand-computed values and behaviour the references do not show --------------------------------


def test_shift_by_one_slot_rotates():
    w = mg.tensor([[[0.0, 1.0, 0.0, 0.0]]])
    right = am.shift(w, mg.tensor([[[0.0, 0.0, 1.0]]])).numpy()
    left = am.shift(w, mg.tensor([[[1.0, 0.0, 0.0]]])).numpy()
    np.testing.assert_array_equal(right, [[[0, 0, 1, 0]]])
    np.testing.assert_array_equal(left, [[[1, 0, 0, 0]]])
    wrap = am.shift(mg.tensor([[[0.0, 0.0, 0.0, 1.0]]]), mg.tensor([[[0, 0, 0, 0, 1.0]]])).numpy()
    np.testing.assert_array_equal(wrap, [[[0, 1, 0, 0]]])  # +2 from the last slot wraps to slot 1


def test_sharpen_large_gamma_stays_finite():
    w = mg.tensor(np.array([[[0.01, 0.02, 0.97]]], np.float32))
    out = am.sharpen(w, mg.tensor(np.array([[60.0]], np.float32))).numpy()
    assert np.isfinite(out).all() and out[0, 0, 2] == pytest.approx(1.0)


def test_write_then_read_a_focused_slot():
    mem = mg.zeros(1, 4, 3, dtype="float64")
    w = mg.tensor([[[0.0, 0.0, 1.0, 0.0]]], dtype="float64")
    mem = am.write(mem, w, mg.ones(1, 1, 3, dtype="float64"), mg.tensor([[[1.0, 2.0, 3.0]]],
                                                                         dtype="float64"))
    np.testing.assert_array_equal(am.read(mem, w).numpy(), [[[1.0, 2.0, 3.0]]])
    full_erase = am.write(mem, w, mg.ones(1, 1, 3, dtype="float64"),
                          mg.zeros(1, 1, 3, dtype="float64"))
    np.testing.assert_array_equal(full_erase.numpy(), np.zeros((1, 4, 3)))


@pytest.mark.parametrize("call, match", [
    (lambda: am.shift(mg.ones(1, 1, 4), mg.ones(1, 1, 2)), "shift: .*odd"),
    (lambda: am.interpolate(mg.ones(2, 1, 4), mg.ones(2, 1, 4), mg.ones(3, 1)), "interpolate"),
    (lambda: am.content_weights(mg.ones(1, 4, 3), mg.ones(1, 1, 2), mg.ones(1, 1)),
     "content_weights"),
    (lambda: am.read(mg.ones(1, 4, 3), mg.ones(1, 1, 5)), "read"),
    (lambda: am.write(mg.ones(1, 4, 3), mg.ones(1, 1, 4), mg.ones(1, 1, 2), mg.ones(1, 1, 3)),
     "write"),
])
def test_bad_shapes_raise(call, match):
    with pytest.raises(ValueError, match=match):
        call()
