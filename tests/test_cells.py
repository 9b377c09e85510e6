"""Cells: each against independent NumPy maths, gradcheck over drawn sizes/lengths/values (float64),
fused == composed, initialisation, and errors."""
import numpy as np
import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

import minigrad as mg
import rnn
from minigrad.testing import gradcheck
from minigrad.testing.strategies import arrays, sequences

F64 = "float64"


# --- independent NumPy references (PyTorch's gate layouts) --------------------------------------

def sig(a):
    return 1.0 / (1.0 + np.exp(-a))


def np_rnn(p, x, h, act):
    a = x @ p["weight_ih"].T + p["bias"] + h @ p["weight_hh"].T
    h = np.tanh(a) if act == "tanh" else np.maximum(a, 0)
    return h, h


def np_lstm(p, x, state, variant=None, peephole=False):
    h, c = state[0], state[1]
    H = h.shape[1]
    a = x @ p["weight_ih"].T + p["bias"] + h @ p["weight_hh"].T
    ai, af, ag, ao = a[:, :H], a[:, H:2 * H], a[:, 2 * H:3 * H], a[:, 3 * H:]
    if variant == "FGR":
        rec = state[2] @ p["weight_gates"].T
        ai, af, ao = ai + rec[:, :H], af + rec[:, H:2 * H], ao + rec[:, 2 * H:]
    if peephole:
        ai, af = ai + p["weight_ci"] * c, af + p["weight_cf"] * c
    i = np.ones_like(ai) if variant == "NIG" else sig(ai)
    f = np.ones_like(af) if variant == "NFG" else 1 - i if variant == "CIFG" else sig(af)
    g = ag if variant == "NIAF" else np.tanh(ag)
    c = f * c + i * g
    if peephole:
        ao = ao + p["weight_co"] * c
    o = np.ones_like(ao) if variant == "NOG" else sig(ao)
    h = o * (c if variant == "NOAF" else np.tanh(c))
    if variant == "FGR":
        return h, (h, c, np.concatenate([i, f, o], axis=1))
    return h, (h, c)


def np_gru(p, x, h, reset_after):
    H = h.shape[1]
    gi = x @ p["weight_ih"].T + p["bias_ih"]
    w, b = p["weight_hh"], p["bias_hh"]
    r = sig(gi[:, :H] + h @ w[:H].T + b[:H])
    z = sig(gi[:, H:2 * H] + h @ w[H:2 * H].T + b[H:2 * H])
    if reset_after:
        n = np.tanh(gi[:, 2 * H:] + r * (h @ w[2 * H:].T + b[2 * H:]))
    else:
        n = np.tanh(gi[:, 2 * H:] + (r * h) @ w[2 * H:].T + b[2 * H:])
    h = (1 - z) * n + z * h
    return h, h


def np_mut(p, x, h, kind):
    px = x @ p["weight_p"].T if "weight_p" in p else x
    if kind == 1:
        z = sig(x @ p["weight_xz"].T + p["bias_z"])
        r = sig(x @ p["weight_xr"].T + h @ p["weight_hr"].T + p["bias_r"])
        cand = np.tanh((r * h) @ p["weight_hh"].T + np.tanh(px) + p["bias_h"])
    elif kind == 2:
        z = sig(x @ p["weight_xz"].T + h @ p["weight_hz"].T + p["bias_z"])
        r = sig(px + h @ p["weight_hr"].T + p["bias_r"])
        cand = np.tanh((r * h) @ p["weight_hh"].T + x @ p["weight_xh"].T + p["bias_h"])
    else:
        z = sig(x @ p["weight_xz"].T + np.tanh(h) @ p["weight_hz"].T + p["bias_z"])
        r = sig(x @ p["weight_xr"].T + h @ p["weight_hr"].T + p["bias_r"])
        cand = np.tanh((r * h) @ p["weight_hh"].T + x @ p["weight_xh"].T + p["bias_h"])
    h = cand * z + h * (1 - z)
    return h, h


def np_phase(p, time, alpha):
    phi = np.mod(time[:, None] - p["shift"], p["tau"]) / p["tau"]
    r_on = p["r_on"]
    return np.where(phi < r_on / 2, 2 * phi / r_on,
                    np.where(phi < r_on, 2 - 2 * phi / r_on, alpha * phi)), phi


def np_phased(p, x_t, state, alpha):
    x, time = x_t[:, :-1], x_t[:, -1]
    h, c = state
    (_, (h_new, c_new)) = np_lstm(p, x, (h, c))
    k, _ = np_phase(p, time, alpha)
    c = k * c_new + (1 - k) * c
    h = k * h_new + (1 - k) * h
    return h, (h, c)


def np_dt(p, x, h, depth, shortcut):
    a = x @ p["weight_ih"].T + h @ p["weight_hh"].T + p["bias_1"]
    for level in range(2, depth + 1):
        a = np.tanh(a) @ p[f"weight_{level}"].T + p[f"bias_{level}"]
    if shortcut:
        a = a + h @ p["weight_s"].T
    h = np.tanh(a)
    return h, h


def np_unroll(step, x, state, lengths=None):
    """Reference loop: each sequence b runs lengths[b] steps; later outputs are zero."""
    T, B = x.shape[:2]
    lengths = np.full(B, T) if lengths is None else np.asarray(lengths)
    outs = []
    for t in range(T):
        out, new = step(x[t], state)
        keep = (t < lengths)[:, None]
        outs.append(np.where(keep, out, 0.0))
        if isinstance(new, tuple):
            state = tuple(np.where(keep, a, b) for a, b in zip(new, state))
        else:
            state = np.where(keep, new, state)
    return np.stack(outs), state


# --- the cell table: name -> (factory(I, H, seed), NumPy step(params) or None) -----------------

def _params(cell):
    return {name: p.numpy() for name, p in cell.named_parameters()}


CELLS = {
    "rnn_tanh": (lambda i, h, s, **k: rnn.RNNCell(i, h, rng=s, dtype=F64, **k),
                 lambda p: lambda x, st: np_rnn(p, x, st, "tanh")),
    "rnn_relu": (lambda i, h, s, **k: rnn.RNNCell(i, h, "relu", rng=s, dtype=F64, **k),
                 lambda p: lambda x, st: np_rnn(p, x, st, "relu")),
    "lstm": (lambda i, h, s, **k: rnn.LSTMCell(i, h, rng=s, dtype=F64, **k),
             lambda p: lambda x, st: np_lstm(p, x, st)),
    "lstm_peephole": (lambda i, h, s: rnn.LSTMCell(i, h, peephole=True, rng=s, dtype=F64),
                      lambda p: lambda x, st: np_lstm(p, x, st, peephole=True)),
    "gru": (lambda i, h, s, **k: rnn.GRUCell(i, h, rng=s, dtype=F64, **k),
            lambda p: lambda x, st: np_gru(p, x, st, False)),
    "gru_reset_after": (lambda i, h, s, **k: rnn.GRUCell(i, h, True, rng=s, dtype=F64, **k),
                        lambda p: lambda x, st: np_gru(p, x, st, True)),
    "mut1": (lambda i, h, s: rnn.MUT1Cell(i, h, rng=s, dtype=F64),
             lambda p: lambda x, st: np_mut(p, x, st, 1)),
    "mut2": (lambda i, h, s: rnn.MUT2Cell(i, h, rng=s, dtype=F64),
             lambda p: lambda x, st: np_mut(p, x, st, 2)),
    "mut3": (lambda i, h, s: rnn.MUT3Cell(i, h, rng=s, dtype=F64),
             lambda p: lambda x, st: np_mut(p, x, st, 3)),
    "mut1_square": (lambda i, h, s: rnn.MUT1Cell(i, i, rng=s, dtype=F64),
                    lambda p: lambda x, st: np_mut(p, x, st, 1)),
    "mut2_square": (lambda i, h, s: rnn.MUT2Cell(i, i, rng=s, dtype=F64),
                    lambda p: lambda x, st: np_mut(p, x, st, 2)),
    "deep_transition": (lambda i, h, s: rnn.DeepTransitionCell(i, h, depth=3, rng=s, dtype=F64),
                        lambda p: lambda x, st: np_dt(p, x, st, 3, False)),
    "deep_transition_shortcut": (
        lambda i, h, s: rnn.DeepTransitionCell(i, h, depth=2, shortcut=True, rng=s, dtype=F64),
        lambda p: lambda x, st: np_dt(p, x, st, 2, True)),
}
for _v in ("NIG", "NFG", "NOG", "NIAF", "NOAF", "NP", "CIFG", "FGR"):
    CELLS[f"lstm_{_v}"] = (
        lambda i, h, s, v=_v: rnn.LSTMCell(i, h, variant=v, rng=s, dtype=F64),
        lambda p, v=_v: lambda x, st: np_lstm(p, x, st, variant=v, peephole=v != "NP"))

FUSABLE = ("rnn_tanh", "rnn_relu", "lstm", "gru", "gru_reset_after")


def _np_state(cell, state):
    if isinstance(state, tuple):
        return tuple(s.numpy() for s in state)
    return state.numpy()


def _random_state(cell, B, rng):
    s = cell.initial_state(B)
    if isinstance(s, tuple):
        return tuple(mg.tensor(rng.uniform(-1, 1, t.shape), requires_grad=True) for t in s)
    return mg.tensor(rng.uniform(-1, 1, s.shape), requires_grad=True)


def _flat(state):
    return state if isinstance(state, tuple) else (state,)


def _fresh_fgr_gates(cell, state):
    # FGR's third state part holds gate activations: keep it inside (0, 1) as a real one would be
    if getattr(cell, "variant", None) == "FGR":
        g = state[2]
        g.data = 0.5 + 0.4 * g.data
    return state


@pytest.mark.parametrize("name", sorted(CELLS))
@given(seq=sequences(max_T=4, max_B=3, max_F=4), H=st.integers(1, 4), seed=st.integers(0, 99))
def test_cell_matches_numpy_and_gradcheck(name, seq, H, seed):
    """Through unroll with lengths: values equal the NumPy maths; gradients (inputs, initial
    state, every parameter) equal central finite differences."""
    make, ref = CELLS[name]
    kw = {"fused": False} if name in FUSABLE else {}
    cell = make(seq.x.shape[2], H, seed, **kw)
    rng = np.random.default_rng(seed)
    state = _fresh_fgr_gates(cell, _random_state(cell, seq.x.shape[1], rng))
    x = mg.tensor(seq.x, requires_grad=True)
    out, final = rnn.unroll(cell, x, state, seq.lengths, per_step=True)
    want_out, want_final = np_unroll(ref(_params(cell)), seq.x, _np_state(cell, state),
                                     seq.lengths)
    np.testing.assert_allclose(out.numpy(), want_out, rtol=1e-10, atol=1e-12)
    for a, b in zip(_flat(final), _flat(want_final)):
        np.testing.assert_allclose(a.numpy(), b, rtol=1e-10, atol=1e-12)
    # one direct call, as a user makes it (the fused per-step op for fusable cells)
    cells = [cell, make(seq.x.shape[2], H, seed, fused=True)] if name in FUSABLE else [cell]
    for c in cells:
        o, new = c(mg.tensor(seq.x[0]), state)
        want_o, want_new = ref(_params(c))(seq.x[0], _np_state(c, state))
        np.testing.assert_allclose(o.numpy(), want_o, rtol=1e-10, atol=1e-12)
        for a, b in zip(_flat(new), _flat(want_new)):
            np.testing.assert_allclose(a.numpy(), b, rtol=1e-10, atol=1e-12)

    n = len(_flat(state))

    def f(x, *rest):
        s = rest[:n] if n > 1 else rest[0]
        out, final = rnn.unroll(cell, x, s, seq.lengths, per_step=True)
        return (out,) + _flat(final)

    assert gradcheck(f, [x, *_flat(state), *cell.parameters()], seed=seed)


@pytest.mark.parametrize("name", FUSABLE)
@given(seq=sequences(max_T=4, max_B=3, max_F=4), H=st.integers(1, 4), seed=st.integers(0, 99))
def test_fused_cell_gradcheck(name, seq, H, seed):
    cell = CELLS[name][0](seq.x.shape[2], H, seed, fused=True)
    x = mg.tensor(seq.x, requires_grad=True)
    h0 = _random_state(cell, seq.x.shape[1], np.random.default_rng(seed))
    n = len(_flat(h0))

    def f(x, *rest):
        out, final = rnn.unroll(cell, x, rest[:n] if n > 1 else rest[0], seq.lengths)
        return (out,) + _flat(final)

    assert gradcheck(f, [x, *_flat(h0), *cell.parameters()], seed=seed)


def _grads(loss, leaves):
    return mg.grad(loss, leaves, allow_unused=True)


@pytest.mark.parametrize("name", FUSABLE)
@given(seq=sequences(max_T=4, max_B=3, max_F=4), H=st.integers(1, 4), seed=st.integers(0, 99))
def test_fused_equals_composed(name, seq, H, seed):
    """The fused cell and its composed twin (same weights) agree in values and all gradients:
    one direct step, unroll (the whole-sequence op) and the per-step loop."""
    fused = CELLS[name][0](seq.x.shape[2], H, seed, fused=True)
    plain = CELLS[name][0](seq.x.shape[2], H, seed, fused=False)
    rng = np.random.default_rng(seed)
    x = mg.tensor(seq.x, requires_grad=True)
    h0 = _random_state(fused, seq.x.shape[1], rng)
    for how in ("step", "unroll", "unroll_per_step"):
        results = []
        for cell in (fused, plain):
            if how == "step":
                out, final = cell(x[0], h0)
            else:
                out, final = rnn.unroll(cell, x, h0, seq.lengths,
                                        per_step=how == "unroll_per_step")
            parts = (out,) + _flat(final)
            loss = sum((p * mg.tensor(np.cos(np.arange(p.size) + k).reshape(p.shape))).sum()
                       for k, p in enumerate(parts))
            grads = _grads(loss, [x, *_flat(h0), *cell.parameters()])
            results.append(([p.numpy() for p in parts], grads))
        (vals_f, g_f), (vals_c, g_c) = results
        for a, b in zip(vals_f, vals_c):
            np.testing.assert_allclose(a, b, rtol=1e-10, atol=1e-12, err_msg=how)
        for a, b in zip(g_f, g_c):
            np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=1e-9, atol=1e-11, err_msg=how)


# --- Phased LSTM --------------------------------------------------------------------------------

@st.composite
def phased_case(draw):
    T, B, n_in, H = (draw(st.integers(1, 4)), draw(st.integers(1, 3)), draw(st.integers(1, 3)),
                     draw(st.integers(1, 4)))
    x = draw(arrays((T, B, n_in), domain=(-2.0, 2.0)))
    times = np.cumsum(draw(arrays((T, B), domain=(0.1, 2.0))), axis=0)
    lengths = np.array([draw(st.integers(1, T)) for _ in range(B)])
    seed = draw(st.integers(0, 99))
    r_on = draw(arrays((H,), domain=(0.2, 0.9)))
    return np.concatenate([x, times[..., None]], axis=2), lengths, H, seed, r_on


def _phased(n_in, H, seed, r_on):
    cell = rnn.PhasedLSTMCell(n_in, H, rng=seed, dtype=F64)
    cell.r_on.data[...] = r_on  # wide open windows, so most units see both gate slopes
    return cell


def _far_from_kinks(cell, x, margin=1e-4):
    """True when no phase sits near a kink of k (r_on/2, r_on, or the wrap at 0 and 1)."""
    _, phi = np_phase(_params(cell), x[..., -1].reshape(-1), 0.0)
    r = cell.r_on.numpy()
    d = np.min(np.abs(np.stack([phi, phi - r / 2, phi - r, 1 - phi])), axis=0)
    return bool(d.min() > margin)


@pytest.mark.parametrize("training", [True, False])
@given(case=phased_case())
def test_phased_matches_numpy_and_gradcheck(training, case):
    x, lengths, H, seed, r_on = case
    cell = _phased(x.shape[2] - 1, H, seed, r_on).train(training)
    assume(_far_from_kinks(cell, x))
    xt = mg.tensor(x, requires_grad=True)
    out, (h, c) = rnn.unroll(cell, xt, lengths=lengths)
    p = _params(cell)
    alpha = 1e-3 if training else 0.0
    zeros = np.zeros((x.shape[1], H))
    want_out, (wh, wc) = np_unroll(lambda a, s: np_phased(p, a, s, alpha), x, (zeros, zeros),
                                   lengths)
    np.testing.assert_allclose(out.numpy(), want_out, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(c.numpy(), wc, rtol=1e-10, atol=1e-12)

    def f(xt, *params):
        out, (h, c) = rnn.unroll(cell, xt, lengths=lengths)
        return out, h, c

    assert gradcheck(f, [xt, *cell.parameters()], seed=seed)


def test_phased_gradient_reaches_tau_and_shift():
    x = np.zeros((3, 2, 2))
    x[..., 1] = [[0.3, 0.6], [0.9, 1.4], [1.7, 2.2]]
    cell = _phased(1, 3, 0, np.full(3, 0.8))
    out, _ = rnn.unroll(cell, mg.tensor(x))
    (out * out).sum().backward()
    assert np.abs(cell.tau.grad.numpy()).max() > 0
    assert np.abs(cell.shift.grad.numpy()).max() > 0


# --- initialisation, dtype, device ------------------------------------------------------------

@pytest.mark.parametrize("name", sorted(CELLS))
def test_init_uniform_and_reproducible(name):
    make = CELLS[name][0]
    a, b = make(3, 5, 7), make(3, 5, 7)
    bound = 1 / np.sqrt(a.hidden_size)
    for (n, p), (_, q) in zip(a.named_parameters(), b.named_parameters()):
        np.testing.assert_array_equal(p.numpy(), q.numpy())
        if not (isinstance(a, rnn.LSTMCell) and n == "bias"):
            assert np.abs(p.numpy()).max() <= bound
        assert p.dtype == np.float64


def test_lstm_forget_bias_sets_forget_block():
    cell = rnn.LSTMCell(2, 3, forget_bias=2.5, rng=0)
    b = cell.bias.numpy()
    np.testing.assert_array_equal(b[3:6], 2.5)
    assert np.abs(np.delete(b, np.s_[3:6])).max() <= 1 / np.sqrt(3)


def test_rng_generator_and_default_generator():
    g = np.random.default_rng(5)
    a = rnn.GRUCell(2, 3, rng=g)
    b = rnn.GRUCell(2, 3, rng=np.random.default_rng(5))
    np.testing.assert_array_equal(a.weight_ih.numpy(), b.weight_ih.numpy())
    mg.manual_seed(3)
    c = rnn.GRUCell(2, 3)
    mg.manual_seed(3)
    d = rnn.GRUCell(2, 3)
    np.testing.assert_array_equal(c.weight_hh.numpy(), d.weight_hh.numpy())
    with pytest.raises(TypeError, match="rng"):
        rnn.GRUCell(2, 3, rng="seed")


@pytest.mark.parametrize("name", ["lstm", "gru", "lstm_FGR", "mut2", "deep_transition"])
def test_initial_state_dtype_device(name):
    cell = CELLS[name][0](3, 4, 0)
    for s in _flat(cell.initial_state(2)):
        assert s.dtype == np.float64 and s.device == "cpu" and not s.numpy().any()
    cell.to(device="fake", dtype="float32")
    for s in _flat(cell.initial_state(2)):
        assert s.dtype == np.float32 and s.device == "fake"


@pytest.mark.parametrize("name", ["lstm", "gru_reset_after", "rnn_tanh", "lstm_FGR", "mut1",
                                  "deep_transition_shortcut"])
def test_runs_on_fake_device_like_cpu(name):
    """The fake device refuses any NumPy call on its data: unroll and backward stay on device."""
    make, _ = CELLS[name]
    x = np.random.default_rng(0).standard_normal((4, 3, 2))
    results = []
    for device in ("cpu", "fake"):
        cell = make(2, 3, 1, fused=False) if name in FUSABLE else make(2, 3, 1)
        cell.to(device=device)
        xt = mg.tensor(x, device=device, requires_grad=True)
        out, _ = rnn.unroll(cell, xt, lengths=[4, 1, 2])
        (out * out).sum().backward()
        results.append((out.numpy(), xt.grad.numpy(), cell.weight_hh.grad.numpy()))
    for a, b in zip(*results):
        np.testing.assert_allclose(a, b, rtol=1e-12)


def test_phased_on_fake_device():
    cell = rnn.PhasedLSTMCell(1, 2, rng=0, device="fake")
    x = mg.tensor(np.arange(8.0).reshape(4, 2, 1).repeat(2, axis=2), dtype="float32",
                  device="fake")
    out, _ = rnn.unroll(cell, x, lengths=[4, 2])
    out.sum().backward()
    assert cell.tau.grad.device == "fake"


# --- errors -----------------------------------------------------------------------------------

@pytest.mark.parametrize("bad, match", [
    ((2, 3, 5), r"LSTMCell.*5 features.*\(2, 3, 5\).*expects 4"),
    ((2, 4), r"LSTMCell.*rank 3.*\(2, 4\)"),
])
def test_unroll_rejects_bad_inputs(bad, match):
    cell = rnn.LSTMCell(4, 3, rng=0)
    with pytest.raises(ValueError, match=match):
        rnn.unroll(cell, mg.zeros(*bad))


def test_cell_step_rejects_bad_inputs():
    cell = rnn.GRUCell(4, 3, rng=0)
    with pytest.raises(ValueError, match=r"GRUCell.*\(2, 5\)"):
        cell(mg.zeros(2, 5), cell.initial_state(2))
    with pytest.raises(ValueError, match=r"GRUCell.*rank 2"):
        cell(mg.zeros(1, 2, 4), cell.initial_state(2))


def test_unroll_rejects_bad_state():
    cell = rnn.LSTMCell(4, 3, rng=0)
    with pytest.raises(ValueError, match=r"LSTMCell.*state.*\(2, 4\).*\(2, 3\)"):
        rnn.unroll(cell, mg.zeros(5, 2, 4), (mg.zeros(2, 4), mg.zeros(2, 3)))
    with pytest.raises(ValueError, match="LSTMCell.*state"):
        rnn.unroll(cell, mg.zeros(5, 2, 4), mg.zeros(2, 3))


@pytest.mark.parametrize("lengths, match", [
    ([5, 6], r"GRUCell.*T=5.*max 6"),
    ([0, 3], r"GRUCell.*min 0"),
    ([-1, 3], r"GRUCell.*min -1"),
    ([3, 3, 3], r"GRUCell.*lengths of shape \(3,\).*\(2,\)"),
])
def test_unroll_rejects_bad_lengths(lengths, match):
    cell = rnn.GRUCell(4, 3, rng=0)
    with pytest.raises(ValueError, match=match):
        rnn.unroll(cell, mg.zeros(5, 2, 4), lengths=lengths)


def test_unroll_rejects_device_mismatch():
    cell = rnn.GRUCell(2, 3, rng=0, device="fake")
    with pytest.raises(ValueError, match="GRUCell.*'cpu'.*'fake'"):
        rnn.unroll(cell, mg.zeros(4, 2, 2))


def test_constructor_errors():
    with pytest.raises(ValueError, match="LSTMCell.*variant"):
        rnn.LSTMCell(2, 3, variant="XYZ")
    with pytest.raises(ValueError, match="RNNCell.*nonlinearity"):
        rnn.RNNCell(2, 3, nonlinearity="sigmoid")
    with pytest.raises(ValueError, match="GRUCell.*hidden_size"):
        rnn.GRUCell(2, 0)
