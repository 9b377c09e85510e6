"""Attention modules: each score against NumPy maths written here, gradcheck over drawn sizes,
lengths and masks (float64), exact zeros at masked positions, a padded batch equal to each source
alone, the fake device, and errors."""
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import minigrad as mg
import rnn
from minigrad.testing import gradcheck

F64 = "float64"


# --- independent NumPy references -----------------------------------------------------------------

def np_masked_softmax(e, mask):
    e = np.where(mask, e, -np.inf)
    z = np.exp(e - e.max(axis=1, keepdims=True))
    return z / z.sum(axis=1, keepdims=True)


def np_additive(p, q, k, prev):
    a = k @ p["key_proj.weight"].T + (q @ p["query_proj.weight"].T + p["query_proj.bias"])[:, None]
    if prev is not None and "filters" in p:
        w = p["filters"].shape[1]
        r = w // 2
        B, S = prev.shape
        f = np.zeros((B, S, p["filters"].shape[0]))
        padded = np.pad(prev, ((0, 0), (r, r)))
        for j in range(S):            # the convolution written as the sum it is
            for i in range(w):
                f[:, j, :] += padded[:, j + i, None] * p["filters"][:, i]
        a = a + f @ p["location_proj.weight"].T
    return np.tanh(a) @ p["v"]


def np_bilinear(p, q, k, prev):
    W = p["key_proj.weight"]                                   # (Dq, Dk)
    return np.einsum("bi,ij,bsj->bs", q, W, k)


def np_dot(p, q, k, prev, scaled):
    e = np.einsum("bi,bsi->bs", q, k)
    return e / np.sqrt(k.shape[2]) if scaled else e


def make_additive(Dq, Dk, seed):
    return rnn.AdditiveAttention(Dq, Dk, 5, rng=seed, dtype=F64)


def make_bilinear(Dq, Dk, seed):
    return rnn.BilinearAttention(Dq, Dk, rng=seed, dtype=F64)


def make_location(Dq, Dk, seed):
    return rnn.LocationAwareAttention(Dq, Dk, 5, filters=2, width=3, rng=seed, dtype=F64)


# name: (constructor (Dq, Dk, seed), reference score (params, q, k, prev), needs Dq == Dk)
TABLE = {
    "additive": (make_additive, np_additive, False),
    "bilinear": (make_bilinear, np_bilinear, False),
    "dot": (lambda Dq, Dk, seed: rnn.DotAttention(Dq), lambda p, q, k, prev:
            np_dot(p, q, k, prev, False), True),
    "scaled_dot": (lambda Dq, Dk, seed: rnn.DotAttention(Dq, scaled=True),
                   lambda p, q, k, prev: np_dot(p, q, k, prev, True), True),
    "location": (make_location, np_additive, False),
}


@st.composite
def cases(draw, square=False):
    B, S = draw(st.integers(1, 3)), draw(st.integers(1, 5))
    Dq = draw(st.integers(1, 4))
    Dk = Dq if square else draw(st.integers(1, 4))
    Dv = draw(st.integers(1, 3))
    lengths = np.array(draw(st.lists(st.integers(1, S), min_size=B, max_size=B)))
    seed = draw(st.integers(0, 2**16))
    rng = np.random.default_rng(seed)
    q, k, v = (rng.standard_normal(s) for s in ((B, Dq), (B, S, Dk), (B, S, Dv)))
    prev = np_masked_softmax(rng.standard_normal((B, S)), np.arange(S) < lengths[:, None])
    return dict(B=B, S=S, Dq=Dq, Dk=Dk, lengths=lengths, seed=seed, q=q, k=k, v=v, prev=prev)


def build(name, c):
    make, ref, square = TABLE[name]
    attn = make(c["Dq"], c["Dk"], c["seed"])
    params = {n: p.numpy() for n, p in attn.named_parameters()}
    return attn, ref, params


def tensors(c, grad=True):
    return [mg.tensor(c[n], dtype=F64, requires_grad=grad) for n in ("q", "k", "v", "prev")]


@pytest.mark.parametrize("name", sorted(TABLE))
@settings(max_examples=15)
@given(data=st.data())
def test_forward_equals_numpy(name, data):
    c = data.draw(cases(square=TABLE[name][2]))
    attn, ref, p = build(name, c)
    mask = rnn.source_mask(c["lengths"], c["S"])
    q, k, v, prev = tensors(c, grad=False)
    uses_prev = attn.uses_previous
    ctx, w = attn(q, k, v, mask, previous=prev if uses_prev else None)
    e = ref(p, c["q"], c["k"], c["prev"] if uses_prev else None)
    w_ref = np_masked_softmax(e, mask)
    np.testing.assert_allclose(w.numpy(), w_ref, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(ctx.numpy(), np.einsum("bs,bsd->bd", w_ref, c["v"]), rtol=1e-10,
                               atol=1e-12)
    assert (w.numpy()[~mask] == 0.0).all()
    # the projection done once and passed back gives the same step
    ctx2, w2 = attn(q, k, v, mask, projected=attn.precompute(k),
                    previous=prev if uses_prev else None)
    np.testing.assert_array_equal(w2.numpy(), w.numpy())


@pytest.mark.parametrize("name", sorted(TABLE))
@settings(max_examples=8)
@given(data=st.data())
def test_gradcheck(name, data):
    c = data.draw(cases(square=TABLE[name][2]))
    attn, _, _ = build(name, c)
    mask = rnn.source_mask(c["lengths"], c["S"])
    params = attn.parameters()
    use_prev = attn.uses_previous

    def f(q, k, v, prev, *ps):
        ctx, w = attn(q, k, v, mask, previous=prev if use_prev else None)
        return ctx, w

    assert gradcheck(f, tensors(c) + params, seed=c["seed"])


@pytest.mark.parametrize("name", sorted(TABLE))
@settings(max_examples=8)
@given(data=st.data())
def test_masked_positions_get_zero_gradient(name, data):
    c = data.draw(cases(square=TABLE[name][2]))
    attn, _, _ = build(name, c)
    mask = rnn.source_mask(c["lengths"], c["S"])
    q, k, v, prev = tensors(c)
    ctx, w = attn(q, k, v, mask, previous=prev if attn.uses_previous else None)
    g = np.random.default_rng(0)
    ((ctx * mg.tensor(g.standard_normal(ctx.shape))).sum()
     + (w * mg.tensor(g.standard_normal(w.shape))).sum()).backward()
    assert (k.grad.numpy()[~mask] == 0.0).all() and (v.grad.numpy()[~mask] == 0.0).all()


@pytest.mark.parametrize("name", sorted(TABLE))
@settings(max_examples=6)
@given(data=st.data())
def test_padded_batch_equals_each_source_alone(name, data):
    """Row b of a padded batch: the same context, weights and gradients as source b alone."""
    c = data.draw(cases(square=TABLE[name][2]))
    attn, _, _ = build(name, c)
    use_prev = attn.uses_previous
    gv = np.random.default_rng(1).standard_normal((c["B"], c["v"].shape[2]))

    def run(q, k, v, prev, mask, g):
        ts = [mg.tensor(a, dtype=F64, requires_grad=True) for a in (q, k, v, prev)]
        ctx, w = attn(ts[0], ts[1], ts[2], mask, previous=ts[3] if use_prev else None)
        (ctx * mg.tensor(g)).sum().backward()
        return ctx.numpy(), w.numpy(), [t.grad.numpy() for t in ts[:3]]

    ctx, w, grads = run(c["q"], c["k"], c["v"], c["prev"],
                        rnn.source_mask(c["lengths"], c["S"]), gv)
    for b, n in enumerate(c["lengths"]):
        one = run(c["q"][b:b + 1], c["k"][b:b + 1, :n], c["v"][b:b + 1, :n],
                  c["prev"][b:b + 1, :n], None, gv[b:b + 1])
        np.testing.assert_allclose(ctx[b:b + 1], one[0], rtol=1e-10, atol=1e-12)
        np.testing.assert_allclose(w[b, :n], one[1][0], rtol=1e-10, atol=1e-12)
        gq, gk, gv_ = grads
        np.testing.assert_allclose(gq[b:b + 1], one[2][0], rtol=1e-9, atol=1e-12)
        np.testing.assert_allclose(gk[b:b + 1, :n], one[2][1], rtol=1e-9, atol=1e-12)
        np.testing.assert_allclose(gv_[b:b + 1, :n], one[2][2], rtol=1e-9, atol=1e-12)


def test_padded_parameter_gradients_sum_over_examples():
    attn = make_location(3, 4, 0)
    rng = np.random.default_rng(0)
    lengths = np.array([4, 2, 1])
    q, k, v = rng.standard_normal((3, 3)), rng.standard_normal((3, 4, 4)), rng.standard_normal(
        (3, 4, 2))
    prev = np_masked_softmax(rng.standard_normal((3, 4)), np.arange(4) < lengths[:, None])

    def param_grads(q, k, v, prev, mask):
        attn.zero_grad()
        ctx, w = attn(mg.tensor(q), mg.tensor(k), mg.tensor(v), mask, previous=mg.tensor(prev))
        (ctx.sum() + (w * w).sum()).backward()
        return [p.grad.numpy().copy() for p in attn.parameters()]

    batch = param_grads(q, k, v, prev, rnn.source_mask(lengths, 4))
    alone = [param_grads(q[b:b + 1], k[b:b + 1, :n], v[b:b + 1, :n], prev[b:b + 1, :n], None)
             for b, n in enumerate(lengths)]
    for i, g in enumerate(batch):
        np.testing.assert_allclose(g, sum(a[i] for a in alone), rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("name", sorted(TABLE))
def test_fake_device_equals_cpu(name):
    """On the stand-in device (any NumPy call on its data raises) results equal the CPU's."""
    c = dict(Dq=3, Dk=3, seed=0)
    rng = np.random.default_rng(0)
    q, k, v = rng.standard_normal((2, 3)), rng.standard_normal((2, 4, 3)), rng.standard_normal(
        (2, 4, 2))
    lengths = [4, 2]
    out = {}
    for device in ("cpu", "fake"):
        attn = TABLE[name][0](c["Dq"], c["Dk"], c["seed"]).to(device=device)
        ts = [mg.tensor(a, dtype=F64, requires_grad=True, device=device) for a in (q, k, v)]
        ctx, w = attn(*ts, rnn.source_mask(lengths, 4))
        ctx2, w2 = attn(*ts, rnn.source_mask(lengths, 4, device=device),
                        previous=w if attn.uses_previous else None)
        (ctx2.sum() + (w2 * w2).sum()).backward()
        assert ctx2.device == device and ts[1].grad.device == device
        out[device] = [ctx2.numpy(), w2.numpy()] + [t.grad.numpy() for t in ts] + [
            p.grad.numpy() for p in attn.parameters()]
    for a, b in zip(out["cpu"], out["fake"]):
        np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-14)


def test_errors_name_the_module():
    attn = rnn.AdditiveAttention(3, 4, 5, rng=0)
    q, k, v = mg.randn(2, 3), mg.randn(2, 6, 4), mg.randn(2, 6, 2)
    with pytest.raises(ValueError, match="AdditiveAttention: query"):
        attn(mg.randn(2, 4), k, v)
    with pytest.raises(ValueError, match="AdditiveAttention: keys"):
        attn(q, mg.randn(3, 6, 4), v)
    with pytest.raises(ValueError, match="AdditiveAttention: values"):
        attn(q, k, mg.randn(2, 5, 2))
    with pytest.raises(ValueError, match="no True position"):
        attn(q, k, v, np.zeros((2, 6), dtype=bool))
    with pytest.raises(ValueError, match="does not match"):
        attn(q, k, v, np.ones((2, 5), dtype=bool))
    with pytest.raises(TypeError, match="mask must be bool"):
        attn(q, k, v, np.ones((2, 6)))
    with pytest.raises(ValueError, match=r"source_mask: lengths must lie in \[1, S=6\]"):
        rnn.source_mask([7, 1], 6)
    with pytest.raises(ValueError, match="width must be an odd"):
        rnn.LocationAwareAttention(3, 4, 5, width=4)


# --- REINFORCE and hard attention -----------------------------------------------------------------

@settings(max_examples=15)
@given(K=st.integers(2, 5), seed=st.integers(0, 2**16), b=st.floats(-3, 3))
def test_reinforce_is_unbiased_by_enumeration(K, seed, b):
    """sum_k p_k * (gradient of the surrogate when action k is drawn) = -grad E[R], exactly,
    whatever the baseline."""
    from rnn.reinforce import reinforce_loss
    rng = np.random.default_rng(seed)
    theta, R = rng.standard_normal(K), rng.standard_normal(K)
    p = np.exp(theta - theta.max())
    p /= p.sum()
    expected = np.zeros(K)
    for k in range(K):
        t = mg.tensor(theta, dtype=F64, requires_grad=True)
        reinforce_loss(mg.log_softmax(t)[k:k + 1], [R[k]], baseline=[b]).backward()
        expected += p[k] * t.grad.numpy()
    exact = -(p * (R - p @ R))                   # -d/dtheta sum_k softmax(theta)_k R_k
    np.testing.assert_allclose(expected, exact, rtol=1e-10, atol=1e-12)


def test_reinforce_loss_value_and_errors():
    from rnn.reinforce import reinforce_loss
    rng = np.random.default_rng(0)
    logp, R = rng.standard_normal((3, 4)), rng.standard_normal((3, 4))
    base, mask = rng.standard_normal(3)[:, None], rng.random((3, 4)) > 0.3
    got = reinforce_loss(mg.tensor(logp, dtype=F64), R, base, mask)
    np.testing.assert_allclose(float(got), -(mask * (R - base) * logp).sum() / 4, rtol=1e-12)
    with pytest.raises(ValueError, match="do not broadcast"):
        reinforce_loss(mg.tensor(logp), np.ones(3))
    with pytest.raises(TypeError, match="log_probs must be a Tensor"):
        reinforce_loss(logp, R)
    with pytest.raises(ValueError, match="rewards must be finite"):
        reinforce_loss(mg.tensor(logp), np.full((3, 4), np.nan))


def test_moving_average_baseline():
    from rnn.reinforce import MovingAverageBaseline
    b = MovingAverageBaseline(0.75, shape=(2,))
    b.update(np.array([[1.0, 3.0], [2.0, 2.0]]))             # (steps, batch): means 2, 2
    np.testing.assert_allclose(b.value, [2.0, 2.0])
    b.update(np.array([[6.0, 6.0], [0.0, 0.0]]))
    np.testing.assert_allclose(b.value, [0.75 * 2 + 0.25 * 6, 0.75 * 2])
    with pytest.raises(ValueError, match="decay"):
        MovingAverageBaseline(1.0)
    with pytest.raises(ValueError, match="baseline"):
        b.update(np.ones((3, 4)))


def test_sample_categorical_frequencies_and_replay():
    from rnn.reinforce import sample_categorical
    p = np.array([[0.1, 0.0, 0.6, 0.3]] * 20000)
    mg.manual_seed(3)
    j = sample_categorical(mg.tensor(p, dtype=F64))
    freq = np.bincount(j, minlength=4) / len(j)
    assert freq[1] == 0.0                                     # zero probability, never drawn
    np.testing.assert_allclose(freq, p[0], atol=0.015)        # ~4.5 standard errors
    mg.manual_seed(3)
    np.testing.assert_array_equal(sample_categorical(mg.tensor(p, dtype=F64)), j)


def test_hard_attention_against_numpy():
    rng = np.random.default_rng(0)
    soft = make_additive(3, 4, 0)
    hard = rnn.HardAttention(soft)
    q, k, v = rng.standard_normal((5, 3)), rng.standard_normal((5, 6, 4)), rng.standard_normal(
        (5, 6, 2))
    lengths = np.array([6, 1, 3, 2, 6])
    mask = rnn.source_mask(lengths, 6)
    p = {n: a.numpy() for n, a in soft.named_parameters()}
    w_ref = np_masked_softmax(np_additive(p, q, k, None), mask)
    vt = mg.tensor(v, dtype=F64, requires_grad=True)
    for _ in range(20):
        ctx, w, logp, j = hard(mg.tensor(q, dtype=F64), mg.tensor(k, dtype=F64), vt, mask)
        assert (j < lengths).all()                            # never a padded position
        np.testing.assert_allclose(w.numpy(), w_ref, rtol=1e-10)
        np.testing.assert_allclose(ctx.numpy(), v[np.arange(5), j], rtol=1e-12)
        np.testing.assert_allclose(logp.numpy(), np.log(w_ref[np.arange(5), j]), rtol=1e-10)
    vt.grad = None
    ctx.sum().backward()
    chosen = np.zeros((5, 6), dtype=bool)
    chosen[np.arange(5), j] = True
    assert (vt.grad.numpy()[~chosen] == 0).all() and (vt.grad.numpy()[chosen] == 1).all()
    _, _, _, j_max = hard(mg.tensor(q), mg.tensor(k), mg.tensor(v), mask, sample=False)
    np.testing.assert_array_equal(j_max, w_ref.argmax(axis=1))


@settings(max_examples=8)
@given(data=st.data())
def test_hard_attention_gradcheck(data):
    """With the location fixed (sample=False picks the argmax), context and log_prob are smooth
    functions of query, keys, values and the score's parameters."""
    c = data.draw(cases())
    hard = rnn.HardAttention(make_additive(c["Dq"], c["Dk"], c["seed"]))
    mask = rnn.source_mask(c["lengths"], c["S"])

    def f(q, k, v, *params):
        ctx, _, logp, _ = hard(q, k, v, mask, sample=False)
        return ctx, logp

    assert gradcheck(f, tensors(c)[:3] + hard.parameters(), seed=c["seed"])
