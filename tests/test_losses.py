"""sequence_cross_entropy against NumPy maths for every reduction/average, gradcheck, errors."""
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import minigrad as mg
import rnn
from minigrad.testing import gradcheck
from minigrad.testing.strategies import arrays


@st.composite
def cases(draw):
    T, B, V = draw(st.integers(1, 4)), draw(st.integers(1, 3)), draw(st.integers(2, 5))
    logits = draw(arrays((T, B, V), domain=(-4.0, 4.0)))
    targets = np.array(draw(st.lists(st.integers(0, V - 1), min_size=T * B, max_size=T * B)))
    targets = targets.reshape(T, B)
    lengths = np.array([draw(st.integers(1, T)) for _ in range(B)])
    weights = draw(st.none() | arrays((T, B), domain=(0.1, 2.0)))
    return logits, targets, lengths, weights


def np_ce(logits, targets):
    m = logits.max(axis=-1, keepdims=True)
    logp = logits - m - np.log(np.exp(logits - m).sum(axis=-1, keepdims=True))
    return -np.take_along_axis(logp, targets[..., None], axis=-1)[..., 0]


def np_reference(logits, targets, lengths, weights, reduction, average):
    T, B, _ = logits.shape
    mask = (np.arange(T)[:, None] < lengths[None, :]).astype(float)
    w = mask * (1.0 if weights is None else weights)
    tok = np_ce(logits, targets) * w
    if average == "sequence":
        per_seq = tok.sum(axis=0)
        return {"none": per_seq, "sum": per_seq.sum(), "mean": per_seq.mean()}[reduction]
    return {"none": tok, "sum": tok.sum(), "mean": tok.sum() / w.sum()}[reduction]


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("average", ["token", "sequence"])
@given(case=cases())
def test_matches_numpy_and_gradcheck(reduction, average, case):
    logits, targets, lengths, weights = case
    padded = targets.copy()
    for b, n in enumerate(lengths):
        padded[n:, b] = -99  # padding may hold anything
    x = mg.tensor(logits, requires_grad=True)
    loss = rnn.sequence_cross_entropy(x, padded, lengths, weights, reduction, average)
    want = np_reference(logits, targets, lengths, weights, reduction, average)
    np.testing.assert_allclose(loss.numpy(), want, rtol=1e-10, atol=1e-12)
    assert gradcheck(lambda x: rnn.sequence_cross_entropy(x, padded, lengths, weights, reduction,
                                                          average), [x])


def test_padding_gets_no_gradient():
    logits = mg.tensor(np.random.default_rng(0).standard_normal((4, 2, 3)), requires_grad=True)
    loss = rnn.sequence_cross_entropy(logits, np.zeros((4, 2), int), lengths=[4, 1])
    loss.backward()
    assert not logits.grad.numpy()[1:, 1].any()
    assert logits.grad.numpy()[:, 0].any()


def test_hand_computed_uniform_case():
    # uniform logits over V classes: every token costs log V; 3 + 1 real tokens
    loss = rnn.sequence_cross_entropy(mg.zeros(3, 2, 4), [[0, 1], [2, 0], [1, 0]],
                                      lengths=[3, 1], reduction="sum")
    np.testing.assert_allclose(float(loss), 4 * np.log(4), rtol=1e-6)
    per_seq = rnn.sequence_cross_entropy(mg.zeros(3, 2, 4), [[0, 1], [2, 0], [1, 0]],
                                         lengths=[3, 1], reduction="none", average="sequence")
    np.testing.assert_allclose(per_seq.numpy(), [3 * np.log(4), np.log(4)], rtol=1e-6)


def test_errors():
    x = mg.zeros(3, 2, 4)
    with pytest.raises(ValueError, match=r"sequence_cross_entropy.*\(3, 1\).*\(3, 2, 4\)"):
        rnn.sequence_cross_entropy(x, np.zeros((3, 1), int))
    with pytest.raises(ValueError, match="sequence_cross_entropy.*lengths.*4"):
        rnn.sequence_cross_entropy(x, np.zeros((3, 2), int), lengths=[4, 1])
    with pytest.raises(ValueError, match="sequence_cross_entropy.*reduction"):
        rnn.sequence_cross_entropy(x, np.zeros((3, 2), int), reduction="avg")
    with pytest.raises(ValueError, match="sequence_cross_entropy.*average"):
        rnn.sequence_cross_entropy(x, np.zeros((3, 2), int), average="batch")
    with pytest.raises(TypeError, match="sequence_cross_entropy.*integers"):
        rnn.sequence_cross_entropy(x, np.zeros((3, 2)))
    with pytest.raises(ValueError, match=r"sequence_cross_entropy.*weights.*\(4,\)"):
        rnn.sequence_cross_entropy(x, np.zeros((3, 2), int), weights=np.ones(4))
    with pytest.raises(ValueError, match=r"sequence_cross_entropy.*\(T, B, V\)"):
        rnn.sequence_cross_entropy(mg.zeros(3, 4), np.zeros((3, 2), int))
