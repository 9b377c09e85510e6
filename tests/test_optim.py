"""minigrad.optim: each optimizer against an independent NumPy version of its published update
rule, loss decrease on simple problems, state dicts, and the schedules against closed forms."""
import math

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import minigrad as mg
from minigrad.optim import (
    SGD,
    Adagrad,
    Adam,
    AdamW,
    CosineAnnealingLR,
    ExponentialLR,
    RMSprop,
    StepLR,
)

# --- NumPy references: the update rules as published (and as PyTorch documents them) ------------


def ref_sgd(x, grad, steps, lr, momentum=0.0, nesterov=False, weight_decay=0.0):
    traj, b = [], None
    for _ in range(steps):
        g = grad(x) + weight_decay * x
        if momentum:
            b = g.copy() if b is None else momentum * b + g
            g = g + momentum * b if nesterov else b
        x = x - lr * g
        traj.append(x)
    return traj


def ref_adam(x, grad, steps, lr, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0,
             decoupled=False):
    b1, b2 = betas
    traj, m, v = [], np.zeros_like(x), np.zeros_like(x)
    for t in range(1, steps + 1):
        g = grad(x)
        if decoupled:
            x = x * (1 - lr * weight_decay)
        else:
            g = g + weight_decay * x
        m = b1 * m + (1 - b1) * g
        v = b2 * v + (1 - b2) * g ** 2
        m_hat, v_hat = m / (1 - b1 ** t), v / (1 - b2 ** t)
        x = x - lr * m_hat / (np.sqrt(v_hat) + eps)
        traj.append(x)
    return traj


def ref_rmsprop(x, grad, steps, lr, alpha=0.99, eps=1e-8, momentum=0.0, weight_decay=0.0):
    traj, s, b = [], np.zeros_like(x), np.zeros_like(x)
    for _ in range(steps):
        g = grad(x) + weight_decay * x
        s = alpha * s + (1 - alpha) * g ** 2
        d = g / (np.sqrt(s) + eps)
        if momentum:
            b = momentum * b + d
            d = b
        x = x - lr * d
        traj.append(x)
    return traj


def ref_adagrad(x, grad, steps, lr, eps=1e-10, weight_decay=0.0):
    traj, s = [], np.zeros_like(x)
    for _ in range(steps):
        g = grad(x) + weight_decay * x
        s = s + g ** 2
        x = x - lr * g / (np.sqrt(s) + eps)
        traj.append(x)
    return traj


CASES = [
    (SGD, ref_sgd, dict(lr=0.1)),
    (SGD, ref_sgd, dict(lr=0.05, momentum=0.9)),
    (SGD, ref_sgd, dict(lr=0.05, momentum=0.8, nesterov=True, weight_decay=0.1)),
    (Adam, ref_adam, dict(lr=0.1)),
    (Adam, ref_adam, dict(lr=0.05, betas=(0.8, 0.9), eps=1e-6, weight_decay=0.2)),
    (AdamW, lambda *args, **kw: ref_adam(*args, decoupled=True, **kw),
     dict(lr=0.05, weight_decay=0.3)),
    (RMSprop, ref_rmsprop, dict(lr=0.01)),
    (RMSprop, ref_rmsprop, dict(lr=0.01, alpha=0.9, momentum=0.5, weight_decay=0.1)),
    (Adagrad, ref_adagrad, dict(lr=0.3)),
    (Adagrad, ref_adagrad, dict(lr=0.3, eps=1e-6, weight_decay=0.1)),
]
IDS = [f"{c.__name__}-{k}" for k, (c, _, _) in enumerate(CASES)]


def quadratic(a, b):
    """loss(x) = 0.5 * sum(a * (x - b)^2) in minigrad; its gradient a * (x - b) by hand."""
    def loss(x):
        return 0.5 * mg.sum(mg.tensor(a) * (x - mg.tensor(b)) ** 2)
    return loss, lambda x: a * (x - b)


@pytest.mark.parametrize("cls,ref_fn,kw", CASES, ids=IDS)
@given(seed=st.integers(0, 2**16))
def test_trajectory_matches_numpy_reference(cls, ref_fn, kw, seed):
    rng = np.random.default_rng(seed)
    a = rng.uniform(0.5, 2.0, (2, 3))
    b = rng.standard_normal((2, 3))
    x0 = rng.standard_normal((2, 3))
    loss, grads = quadratic(a, b)
    w = mg.nn.Parameter(x0.copy())
    opt = cls([w], **kw)
    steps = 6
    ref = ref_fn(x0, grads, steps, **kw)
    for t in range(steps):
        opt.zero_grad()
        loss(w).backward()
        opt.step()
        np.testing.assert_allclose(w.numpy(), ref[t], rtol=1e-10, atol=1e-12,
                                   err_msg=f"{cls.__name__} {kw} step {t + 1}")
    assert opt.state[w]["step"] == steps


def _logistic_data():
    rng = np.random.default_rng(0)
    X = rng.standard_normal((64, 3))
    y = (X @ np.array([1.5, -2.0, 0.5]) + 0.3 > 0).astype(np.float64)
    return X, y


@pytest.mark.parametrize("cls,kw", [(SGD, dict(lr=0.5)), (SGD, dict(lr=0.2, momentum=0.9)),
                                    (Adam, dict(lr=0.1)), (AdamW, dict(lr=0.1)),
                                    (RMSprop, dict(lr=0.05)), (Adagrad, dict(lr=0.5))])
def test_decreases_logistic_regression_loss(cls, kw):
    X, y = _logistic_data()
    model = mg.nn.Linear(3, 1, rng=0, dtype="float64")
    opt = cls(model.parameters(), **kw)

    def loss_fn():
        logits = model(mg.tensor(X)).reshape(-1)
        return mg.binary_cross_entropy_with_logits(logits, mg.tensor(y))

    def numpy_loss():  # the same loss written in NumPy, on the current weights
        z = X @ model.weight.numpy().T[:, 0] + model.bias.numpy()[0]
        return np.mean(np.logaddexp(0, z) - y * z)

    first = numpy_loss()
    for _ in range(40):
        opt.zero_grad()
        loss = loss_fn()
        np.testing.assert_allclose(loss.item(), numpy_loss(), rtol=1e-10)
        loss.backward()
        opt.step()
    assert numpy_loss() < 0.5 * first


def test_step_is_in_place_bumps_version_and_skips_params_without_grad():
    w = mg.nn.Parameter([1.0, 2.0])
    unused = mg.nn.Parameter([5.0])
    opt = SGD([w, unused], lr=0.5)
    data = w.data
    x = mg.tensor([3.0, 4.0], requires_grad=True)
    out = (w * x).sum()           # Mul saved w's array for x's gradient
    out.backward(retain_graph=True)
    opt.step()
    assert w.data is data and w.numpy().tolist() == [1.0 - 0.5 * 3.0, 2.0 - 0.5 * 4.0]
    assert w._version == 1 and unused.numpy().tolist() == [5.0] and unused not in opt.state
    with pytest.raises(RuntimeError, match="modified in place"):
        out.backward()
    opt.zero_grad()
    assert w.grad is None


def test_parameter_groups():
    a, b = mg.nn.Parameter([1.0]), mg.nn.Parameter([1.0])
    opt = SGD([{"params": [a]}, {"params": [b], "lr": 0.1}], lr=1.0)
    for p in (a, b):
        p.grad = mg.tensor([1.0])
    opt.step()
    assert a.numpy()[0] == pytest.approx(0.0) and b.numpy()[0] == pytest.approx(0.9)


def test_argument_errors():
    w = mg.nn.Parameter([1.0])
    with pytest.raises(ValueError, match="SGD: got an empty"):
        SGD([], lr=0.1)
    with pytest.raises(TypeError, match="Adam: params must be an iterable"):
        Adam(w)
    with pytest.raises(ValueError, match="SGD: lr must be >= 0"):
        SGD([w], lr=-1)
    with pytest.raises(ValueError, match="SGD: nesterov"):
        SGD([w], lr=0.1, nesterov=True)
    with pytest.raises(ValueError, match="Adam: betas"):
        Adam([w], betas=(0.9, 1.0))
    with pytest.raises(ValueError, match="appears twice"):
        Adam([w, w])
    with pytest.raises(ValueError, match="float leaf"):
        Adam([w * 2])
    with pytest.raises(TypeError, match="RMSprop: params must be Tensors"):
        RMSprop([np.zeros(2)])


def _steps(loss, w, opt, n):
    """n optimizer steps on loss(w)."""
    for _ in range(n):
        opt.zero_grad()
        loss(w).backward()
        opt.step()


@pytest.mark.parametrize("cls,ref_fn,kw", CASES, ids=IDS)
def test_state_dict_resume_is_exact(cls, ref_fn, kw):
    rng = np.random.default_rng(1)
    a, b, x0 = rng.uniform(0.5, 2, 4), rng.standard_normal(4), rng.standard_normal(4)
    loss, _ = quadratic(a, b)

    w1 = mg.nn.Parameter(x0.copy())
    opt1 = cls([w1], **kw)
    _steps(loss, w1, opt1, 6)
    w2 = mg.nn.Parameter(x0.copy())
    opt2 = cls([w2], **kw)
    _steps(loss, w2, opt2, 3)
    saved, saved_w = opt2.state_dict(), w2.numpy()
    w3 = mg.nn.Parameter(saved_w)
    opt3 = cls([w3], lr=123.0) if cls is SGD else cls([w3])   # other hyperparameters: restored
    opt3.load_state_dict(saved)
    assert opt3.param_groups[0]["lr"] == kw["lr"]
    _steps(loss, w3, opt3, 3)
    np.testing.assert_array_equal(w3.numpy(), w1.numpy())


def test_load_state_dict_errors():
    w = mg.nn.Parameter(np.zeros(3))
    opt = Adam([w])
    w.grad = mg.tensor(np.ones(3))
    opt.step()
    sd = opt.state_dict()
    with pytest.raises(ValueError, match="Adam.load_state_dict: group 0 saved 1 parameters, "
                                         "this one has 2"):
        Adam([mg.nn.Parameter([1.0]), mg.nn.Parameter([1.0])]).load_state_dict(sd)
    with pytest.raises(ValueError, match=r"'exp_avg' of parameter 0 has shape \(3,\)"):
        Adam([mg.nn.Parameter([1.0])]).load_state_dict(sd)
    with pytest.raises(ValueError, match="lacks"):
        Adam([mg.nn.Parameter(np.zeros(3))]).load_state_dict(
            {"state": {0: {"step": 1}}, "param_groups": sd["param_groups"]})
    with pytest.raises(ValueError, match="Adam.load_state_dict: expected a dict"):
        opt.load_state_dict({"model": 1})


def test_state_dict_holds_host_arrays_and_counts():
    w = mg.nn.Parameter(np.zeros((2, 2), np.float32))
    opt = RMSprop([w], lr=0.1, momentum=0.9)
    for _ in range(2):
        w.grad = mg.tensor(np.ones((2, 2), np.float32))
        opt.step()
    sd = opt.state_dict()
    assert sd["state"][0]["step"] == 2
    assert set(sd["state"][0]) == {"step", "square_avg", "momentum_buffer"}
    # square_avg after two steps of g = 1: (1 - a) + a (1 - a)
    np.testing.assert_allclose(sd["state"][0]["square_avg"], np.full((2, 2), 0.01 + 0.99 * 0.01),
                               rtol=1e-6)
    assert type(sd["state"][0]["square_avg"]) is np.ndarray
    assert sd["param_groups"][0]["params"] == [0] and sd["param_groups"][0]["alpha"] == 0.99


def test_state_moves_across_devices():
    from minigrad import backend
    from minigrad.testing import fakedevice as fd
    if "fake" not in backend._devices:    # tests/conftest.py normally registers it
        mg.register_device("fake", fd.FakeArray, fd.fake_xp, fd.to_device, fd.to_host)
    a = np.array([0.5, -1.0, 2.0], np.float32)

    def loss(w):  # Python numbers only: they go with either device
        return 0.5 * mg.sum(1.5 * (w - 0.25) ** 2)

    w_cpu = mg.nn.Parameter(a.copy())
    opt_cpu = Adam([w_cpu], lr=0.1)
    _steps(loss, w_cpu, opt_cpu, 2)
    w_dev = mg.nn.Parameter(w_cpu.numpy(), device="fake")
    opt_dev = Adam([w_dev])
    opt_dev.load_state_dict(opt_cpu.state_dict())          # host arrays onto the device
    assert all(fd.is_fake(opt_dev.state[w_dev][k]) for k in ("exp_avg", "exp_avg_sq"))
    _steps(loss, w_cpu, opt_cpu, 2)
    _steps(loss, w_dev, opt_dev, 2)
    assert fd.is_fake(w_dev.data)
    np.testing.assert_array_equal(w_dev.numpy(), w_cpu.numpy())
    back = opt_dev.state_dict()["state"][0]
    assert type(back["exp_avg"]) is np.ndarray and back["step"] == 4


# --- schedules ------------------------------------------------------------------------------------

def _opt(lr=1.0, n_groups=1):
    return SGD([{"params": [mg.nn.Parameter([0.0])], "lr": lr * (k + 1)}
                for k in range(n_groups)], lr=lr)


@given(step_size=st.integers(1, 5), gamma=st.floats(0.1, 0.99), n=st.integers(0, 20))
def test_step_lr_closed_form(step_size, gamma, n):
    opt = _opt(0.5, n_groups=2)
    sched = StepLR(opt, step_size, gamma)
    for _ in range(n):
        sched.step()
    for k, group in enumerate(opt.param_groups):
        assert group["lr"] == pytest.approx(0.5 * (k + 1) * gamma ** math.floor(n / step_size),
                                            rel=1e-12)
    assert sched.get_lr() == [g["lr"] for g in opt.param_groups]


@given(gamma=st.floats(0.5, 1.0), n=st.integers(0, 30))
def test_exponential_lr_closed_form(gamma, n):
    opt = _opt(0.1)
    sched = ExponentialLR(opt, gamma)
    for _ in range(n):
        sched.step()
    assert opt.param_groups[0]["lr"] == pytest.approx(0.1 * gamma ** n, rel=1e-12)


def test_cosine_annealing_closed_form_and_hand_values():
    opt = _opt(1.0)
    sched = CosineAnnealingLR(opt, T_max=4, eta_min=0.2)
    lrs = [opt.param_groups[0]["lr"]]
    for _ in range(8):
        sched.step()
        lrs.append(opt.param_groups[0]["lr"])
    # hand values: cos(0), cos(pi/4), cos(pi/2), cos(3pi/4), cos(pi), then back up
    c = math.sqrt(2) / 2
    expect = [1.0, 0.2 + 0.8 * (1 + c) / 2, 0.6, 0.2 + 0.8 * (1 - c) / 2, 0.2,
              0.2 + 0.8 * (1 - c) / 2, 0.6, 0.2 + 0.8 * (1 + c) / 2, 1.0]
    np.testing.assert_allclose(lrs, expect, rtol=1e-12)


@pytest.mark.parametrize("make", [lambda o: StepLR(o, 3, 0.5), lambda o: ExponentialLR(o, 0.9),
                                  lambda o: CosineAnnealingLR(o, 10, 0.01)])
def test_schedule_state_dict_resume(make):
    o1 = _opt(0.3)
    s1 = make(o1)
    for _ in range(7):
        s1.step()
    o2 = _opt(0.3)
    s2 = make(o2)
    for _ in range(3):
        s2.step()
    saved = s2.state_dict()
    o3 = _opt(0.3)
    s3 = make(o3)
    s3.load_state_dict(saved)
    assert s3.last_epoch == 3 and o3.param_groups[0]["lr"] == o2.param_groups[0]["lr"]
    for _ in range(4):
        s3.step()
    assert o3.param_groups[0]["lr"] == o1.param_groups[0]["lr"]
    with pytest.raises(ValueError, match="missing keys"):
        s3.load_state_dict({"last_epoch": 1})


def test_schedule_errors():
    with pytest.raises(ValueError, match="StepLR: step_size"):
        StepLR(_opt(), 0)
    with pytest.raises(ValueError, match="CosineAnnealingLR: T_max"):
        CosineAnnealingLR(_opt(), 0)
    with pytest.raises(TypeError, match="ExponentialLR: expected an Optimizer"):
        ExponentialLR(None, 0.5)
