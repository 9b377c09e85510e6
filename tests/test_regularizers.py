"""mg.nn.l1_penalty / l2_penalty / matrices and mg.optim.EarlyStopping against NumPy written here
and hand-worked sequences of scores."""
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import minigrad as mg
from minigrad.testing import gradcheck


def arrays(draw, n):
    rng = np.random.default_rng(draw(st.integers(0, 2**31 - 1)))
    shapes = [tuple(draw(st.lists(st.integers(1, 4), min_size=1, max_size=3)))
              for _ in range(n)]
    # |value| >= 0.1 keeps away from |x|'s kink at 0
    return [rng.choice([-1.0, 1.0], size=s) * rng.uniform(0.1, 2.0, size=s) for s in shapes]


@settings(max_examples=15, deadline=None)
@given(st.data(), st.integers(1, 3), st.floats(0.0, 3.0, allow_subnormal=False))
def test_penalties_match_numpy_and_gradcheck(data, n, weight):
    values = arrays(data.draw, n)
    params = [mg.tensor(v, dtype="float64", requires_grad=True) for v in values]
    l2 = mg.nn.l2_penalty(params, weight)
    l1 = mg.nn.l1_penalty(params, weight)
    assert l2.shape == l1.shape == ()
    np.testing.assert_allclose(float(l2.item()), weight * sum((v ** 2).sum() for v in values))
    np.testing.assert_allclose(float(l1.item()), weight * sum(np.abs(v).sum() for v in values))
    (l2 + l1).backward()
    for p, v in zip(params, values):  # d/dp: 2 w p (L2) + w sign(p) (L1)
        np.testing.assert_allclose(p.grad.numpy(), 2 * weight * v + weight * np.sign(v))
    assert gradcheck(lambda *ps: mg.nn.l2_penalty(ps, weight), params)
    assert gradcheck(lambda *ps: mg.nn.l1_penalty(ps, weight), params)


def test_l1_gradient_at_zero_is_zero():
    p = mg.tensor([0.0, 2.0, -3.0], dtype="float64", requires_grad=True)
    mg.nn.l1_penalty([p], 0.5).backward()
    np.testing.assert_array_equal(p.grad.numpy(), [0.0, 0.5, -0.5])


def test_matrices_takes_weights_not_biases():
    net = mg.nn.Sequential(mg.nn.Linear(3, 4, rng=0), mg.nn.Tanh(), mg.nn.Linear(4, 2, rng=1))
    got = mg.nn.matrices(net)
    assert [p.shape for p in got] == [(4, 3), (2, 4)]
    assert all(any(p is q for q in net.parameters()) for p in got)


def test_penalties_refuse_bad_input():
    p = mg.tensor([1.0])
    with pytest.raises(ValueError, match="l2_penalty.*weight"):
        mg.nn.l2_penalty([p], -1.0)
    with pytest.raises(ValueError, match="l1_penalty: got no parameters"):
        mg.nn.l1_penalty([], 0.1)
    with pytest.raises(TypeError, match="l2_penalty: expected Tensors"):
        mg.nn.l2_penalty([np.ones(2)], 0.1)
    with pytest.raises(TypeError, match="matrices: expected a Module"):
        mg.nn.matrices([p])


def test_l2_penalty_as_weight_decay_shrinks_a_weight_by_the_known_factor():
    # plain SGD on the penalty alone: p <- p - lr * 2 w p, i.e. p * (1 - 2 lr w) per step
    p = mg.nn.Parameter(np.array([1.0, -2.0]))
    opt = mg.optim.SGD([p], lr=0.1)
    for _ in range(5):
        opt.zero_grad()
        mg.nn.l2_penalty([p], 0.5).backward()
        opt.step()
    np.testing.assert_allclose(p.numpy(), np.array([1.0, -2.0]) * 0.9 ** 5, rtol=1e-6)


def reference_stop(scores, patience, mode, min_delta):
    """An independent reading of early stopping: the first check at which `patience` checks in
    a row failed to beat the best before them by more than min_delta."""
    sign = 1 if mode == "max" else -1
    best, stale = None, 0
    for i, s in enumerate(scores):
        if best is None or sign * (s - best) > min_delta:
            best, stale = s, 0
        else:
            stale += 1
        if stale >= patience:
            return i
    return None


@settings(max_examples=40, deadline=None)
@given(st.lists(st.integers(0, 6), min_size=1, max_size=20), st.integers(1, 4),
       st.sampled_from(["max", "min"]), st.sampled_from([0.0, 1.0]))
def test_early_stopping_stops_where_the_reference_does(scores, patience, mode, min_delta):
    stopper = mg.optim.EarlyStopping(patience, mode=mode, min_delta=min_delta)
    stops = [stopper.update(float(s)) for s in scores]
    first = stops.index(True) if True in stops else None
    assert first == reference_stop(scores, patience, mode, min_delta)


def test_early_stopping_restores_the_best_weights():
    net = mg.nn.Linear(2, 1, rng=0)
    stopper = mg.optim.EarlyStopping(patience=2, mode="min")
    kept = None
    for step, loss in enumerate([3.0, 1.0, 2.0, 1.5]):
        net.weight.data[...] = step  # a different weight at every check
        if loss == 1.0:
            kept = net.weight.numpy().copy()
        stop = stopper.update(loss, net)
    assert stop and stopper.best == 1.0 and stopper.best_step == 1 and stopper.stale == 2
    stopper.restore(net)
    np.testing.assert_array_equal(net.weight.numpy(), kept)


def test_early_stopping_refuses_bad_input():
    with pytest.raises(ValueError, match="EarlyStopping: patience"):
        mg.optim.EarlyStopping(0)
    with pytest.raises(ValueError, match="EarlyStopping: mode"):
        mg.optim.EarlyStopping(2, mode="up")
    with pytest.raises(ValueError, match="EarlyStopping.restore: no weights kept"):
        mg.optim.EarlyStopping(2).restore(mg.nn.Linear(1, 1, rng=0))
    with pytest.raises(ValueError, match="EarlyStopping.update: score"):
        mg.optim.EarlyStopping(2).update(float("nan"))
