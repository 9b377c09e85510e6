"""rnn.generate: token picking against NumPy references, feedback against a full-sequence pass."""
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import minigrad as mg
import rnn
from rnn.generate import generate, pick


def softmax_ref(z):
    e = np.exp(z - z.max())
    return e / e.sum()


@given(hnp.arrays(np.float64, st.tuples(st.integers(1, 5), st.integers(1, 7)),
                  elements=st.floats(-50, 50), unique=True))
def test_greedy_is_argmax(logits):
    np.testing.assert_array_equal(pick(logits), np.argmax(logits, axis=1))
    np.testing.assert_array_equal(pick(mg.tensor(logits)), np.argmax(logits, axis=1))


@pytest.mark.parametrize("temperature, top_k", [(1.0, None), (0.5, None), (2.0, 3), (1.0, 1)])
def test_sample_frequencies_match_softmax(temperature, top_k):
    logits = np.array([1.0, -0.5, 2.0, 0.3, -2.0])
    z = logits / temperature
    if top_k is not None:  # reference: keep the top_k largest, renormalise
        z = np.where(np.isin(np.arange(5), np.argsort(-logits)[:top_k]), z, -np.inf)
    p = softmax_ref(z)
    n = 40_000
    draws = pick(np.tile(logits, (n, 1)), "sample", temperature, top_k, rng=1)
    freq = np.bincount(draws, minlength=5) / n
    # 5 standard errors: a correct sampler fails this with probability ~1e-6 per entry
    assert np.all(np.abs(freq - p) <= 5 * np.sqrt(p * (1 - p) / n) + 1e-12)
    assert np.all(freq[p == 0] == 0)


def test_sample_is_reproducible_and_low_temperature_is_greedy():
    logits = np.random.default_rng(0).normal(size=(6, 9)) * 3
    a = pick(logits, "sample", rng=np.random.default_rng(5))
    b = pick(logits, "sample", rng=5)
    np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(pick(logits, "sample", temperature=1e-4, rng=0),
                                  logits.argmax(axis=1))


def counter(tokens, state):
    """Logits that put 10 nats on (token + 1) mod 5, and count the calls in the state."""
    tokens = np.asarray(tokens)
    assert not mg.is_grad_enabled()
    return mg.tensor(np.eye(5)[(tokens + 1) % 5] * 10.0), (state or 0) + 1


def test_generate_feeds_outputs_back():
    np.testing.assert_array_equal(generate(counter, [3], 7), [4, 0, 1, 2, 3, 4, 0])
    out = generate(counter, np.array([[0, 2], [1, 4]]), 3)  # (T0, B) = (2, 2)
    np.testing.assert_array_equal(out, [[2, 0], [3, 1], [4, 2]])
    assert generate(counter, [1], 0).shape == (0,)


class TinyLM(mg.nn.Module):
    def __init__(self, V, H, cell):
        super().__init__()
        self.embed = mg.nn.Embedding(V, 4, rng=0, dtype=np.float64)
        self.cell = cell(4, H, rng=1, dtype=np.float64)
        self.head = mg.nn.Linear(H, V, rng=2, dtype=np.float64)

    def forward(self, tokens, state=None):
        out, state = rnn.unroll(self.cell, self.embed(tokens), state)
        return self.head(out), state


@pytest.mark.parametrize("cell", [rnn.LSTMCell, rnn.GRUCell])
def test_greedy_generation_matches_one_full_pass(cell):
    # reference: one pass over prompt + generated tokens; each generated token must be the
    # argmax of the logits right before it (the state carried step by step must agree)
    model = TinyLM(7, 6, cell)
    prompt = np.array([[1, 2], [3, 0], [6, 6]])
    gen = generate(model, prompt, 10)
    full = np.concatenate([prompt, gen[:-1]], axis=0)
    with mg.no_grad():
        logits, _ = model(full, None)
    np.testing.assert_array_equal(gen, logits.numpy()[len(prompt) - 1:].argmax(axis=2))


def test_sampled_generation_matches_one_full_pass():
    model = TinyLM(7, 5, rnn.LSTMCell)
    prompt = np.array([2, 4])
    gen = generate(model, prompt, 12, "sample", temperature=0.8, top_k=4, rng=3)
    full = np.concatenate([prompt, gen[:-1]])[:, None]
    with mg.no_grad():
        logits, _ = model(full, None)
    expect = pick(logits.numpy()[len(prompt) - 1:, 0], "sample", 0.8, 4,
                  rng=np.random.default_rng(3))  # one draw per row, in the same order
    # generate draws one uniform per step; pick over all rows at once draws them in order too
    np.testing.assert_array_equal(gen, expect)


@pytest.mark.parametrize("kwargs, err", [
    (dict(strategy="beam"), ValueError), (dict(temperature=0.0), ValueError),
    (dict(top_k=0), ValueError), (dict(steps=-1), ValueError),
    (dict(start=[0.5, 1.0]), TypeError), (dict(start=[]), ValueError),
    (dict(strategy="sample", top_k=9), ValueError),
])
def test_bad_arguments(kwargs, err):
    args = dict(start=[1], steps=3)
    args.update(kwargs)
    with pytest.raises(err, match="generate|pick"):
        generate(counter, **args)


def test_nucleus_sampling_frequencies():
    # top_p = 0.7 over p = (0.5, 0.25, 0.15, 0.1): the nucleus is {0, 1} (0.5 < 0.7 <= 0.75),
    # renormalised to (2/3, 1/3)
    logits = np.log(np.array([0.5, 0.25, 0.15, 0.1]))
    n = 30_000
    draws = pick(np.tile(logits, (n, 1)), "sample", top_p=0.7, rng=3)
    freq = np.bincount(draws, minlength=4) / n
    want = np.array([2 / 3, 1 / 3, 0, 0])
    assert np.all(np.abs(freq - want) <= 5 * np.sqrt(want * (1 - want) / n) + 1e-12)
    out = generate(counter, [3], 5, strategy="sample", top_p=0.5, rng=0)
    np.testing.assert_array_equal(out, [4, 0, 1, 2, 3])  # 10 nats: the nucleus is one token
    with pytest.raises(ValueError, match="generate: top_p"):
        generate(counter, [3], 5, strategy="sample", top_p=1.5)
