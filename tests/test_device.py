"""Devices: every op forward and backward on device data equals the CPU result, and every array in
the graph stays on the device.

The "fake" device (registered in conftest.py) stands in for a GPU: NumPy refuses its arrays and
any mix with host arrays raises TypeError, so a pass proves the plumbing. The same checks run on
"cuda" where CuPy and a GPU are present (the `gpu` marker skips them otherwise).
"""
import sys
import types

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import minigrad as mg
from minigrad import backend

DEVICES = ["fake", pytest.param("cuda", marks=pytest.mark.gpu)]

rng = np.random.default_rng(0)
A = rng.standard_normal((3, 4))
B = rng.standard_normal((4, 5))
C = rng.standard_normal((3, 4))
IDX = np.array([[0, 2], [1, 1]])
TARGET = np.array([1, 0, 3])


def ints(a, device):
    return mg.tensor(np.asarray(a), device=device)


# Each case: f(x, y, z, device) -> scalar loss, with x, z of shape (3, 4) and y of shape (4, 5).
CASES = {
    "elementwise": lambda x, y, z, d: (
        x * z + x / (z * z + 1) - x.tanh() + mg.sigmoid(z) + mg.relu(x) + mg.exp(x * 0.1)
        + mg.log(z * z + 1) + mg.sqrt(z * z + 1) + x ** 2 + 2 ** z + mg.maximum(x, z)
        + mg.minimum(x, 0.5) + mg.where(x > 0, x, z) + mg.softplus(x) + mg.abs(x)
        + mg.clip(x, -0.5, 0.5) + mg.leaky_relu(x) + mg.elu(x) - (-x) + 1.5 - x.astype("float32")
    ).sum(),
    "reductions": lambda x, y, z, d: (
        x.sum(axis=0).sum() + x.mean(axis=1).sum() + x.max(axis=1).sum() + x.min()
        + mg.logsumexp(x, axis=1).sum() + mg.var(x, axis=0).sum() + x.sum(keepdims=True).sum()),
    "matmul": lambda x, y, z, d: (x @ y).sum() + mg.matmul(x[0], y).sum() + (x @ y[:, 0]).sum(),
    "getitem": lambda x, y, z, d: (
        (x[IDX] ** 2).sum() + x[[0, 2], 1:3].sum() + x[1].sum() + x[:, ints([0, 3, 3], d)].sum()
        + x[x > 0].sum() + x[..., None][1:, ::2].sum()),
    "concat_stack_split": lambda x, y, z, d: (
        mg.concat([x, z], axis=1).sum() * 2 + (mg.stack([x, z], axis=1) * z[:, None]).sum()
        + sum((s * (i + 1)).sum() for i, s in enumerate(mg.split(x, 2, axis=1)))),
    "take_gather_embedding": lambda x, y, z, d: (
        mg.take(x, ints([0, 2, 2], d), axis=1).sum()
        + (mg.gather(x, ints([[0], [1], [3]], d), axis=1) * 3).sum()
        + (mg.embedding(y, ints(IDX, d)) ** 2).sum()),
    "softmax_ce": lambda x, y, z, d: (
        (mg.softmax(x) * z).sum() + (mg.log_softmax(x, axis=0) * z).sum()
        + mg.cross_entropy(x, ints(TARGET, d))
        + mg.cross_entropy(x, ints([1, -100, 2], d), reduction="sum")),
    "dropout": lambda x, y, z, d: (mg.dropout(x, 0.5, rng=np.random.default_rng(1)) * z).sum(),
    "shape_ops": lambda x, y, z, d: (
        (x.reshape(4, 3).T * z).sum() + (mg.pad(x, ((1, 0), (0, 2))) ** 2).sum()
        + mg.flip(x, 0)[0].sum() + mg.roll(x, 1, axis=1)[0].sum()
        + (mg.broadcast_to(x[0], (2, 4)) * z[:2]).sum() + mg.swapaxes(x, 0, 1)[0].sum()
        + mg.squeeze(mg.expand_dims(x, 0), 0)[2].sum()),
    "losses": lambda x, y, z, d: (
        mg.binary_cross_entropy_with_logits(x, mg.sigmoid(z)) + mg.mse_loss(x, z)
        + mg.normalize(x).sum() + mg.cosine_similarity(x, z).sum()),
}


def _graph_arrays(out):
    """Every node's saved values, walked iteratively from `out`."""
    saved, seen, stack = [], set(), [out._node]
    while stack:
        node = stack.pop()
        if node is None or id(node) in seen:
            continue
        seen.add(id(node))
        saved.extend(node.saved)
        stack.extend(p[0]._node if p[1] < 0 else p[0] for p in node.parents if p is not None)
    return saved


def _run(case, device):
    x, y, z = (mg.tensor(a, requires_grad=True, device=device) for a in (A, B, C))
    out = CASES[case](x, y, z, device)
    saved = _graph_arrays(out)
    out.backward(retain_graph=True)
    return out, (x, y, z), saved


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("case", sorted(CASES))
def test_ops_on_device_equal_cpu_and_stay_on_device(case, device):
    atype = backend.get_device(device).array_type
    ref, ref_leaves, _ = _run(case, "cpu")
    out, leaves, saved = _run(case, device)
    assert type(out.data) is atype and out.device == device
    np.testing.assert_allclose(out.numpy(), ref.numpy(), rtol=1e-10)
    for t, r in zip(leaves, ref_leaves):
        assert (t.grad is None) == (r.grad is None)
        if t.grad is not None:
            assert type(t.grad.data) is atype and t.grad.device == device
            np.testing.assert_allclose(t.grad.numpy(), r.grad.numpy(), rtol=1e-10, atol=1e-12)
    assert saved, "the case should save something for backward"
    for a in saved:  # scalars may be saved; host arrays may not
        assert type(a) is atype or np.ndim(a) == 0 and not isinstance(a, np.ndarray), type(a)


@pytest.mark.parametrize("device", DEVICES)
@given(hnp.mutually_broadcastable_shapes(num_shapes=2, max_dims=3, max_side=3),
       st.sampled_from(["add", "sub", "mul", "div", "maximum"]))
def test_broadcasting_binary_ops_on_device(device, shapes, op):
    r = np.random.default_rng(len(shapes.input_shapes[0]))
    a, b = (r.uniform(0.5, 2.0, s) for s in shapes.input_shapes)
    grads = {}
    for dev in ("cpu", device):
        x, y = (mg.tensor(v, requires_grad=True, device=dev) for v in (a, b))
        getattr(mg, op)(x, y).sum().backward()
        grads[dev] = (x.grad, y.grad)
    for g_dev, g_cpu in zip(grads[device], grads["cpu"]):
        assert g_dev.device == device and g_dev.shape == g_cpu.shape
        np.testing.assert_allclose(g_dev.numpy(), g_cpu.numpy(), rtol=1e-12)


class TinyNet(mg.nn.Module):
    """logits = tanh(x @ w1 + b1) @ w2"""

    def __init__(self, seed):
        super().__init__()
        r = np.random.default_rng(seed)
        self.w1 = mg.nn.Parameter(r.standard_normal((4, 8)) * 0.5)
        self.b1 = mg.nn.Parameter(np.zeros(8))
        self.w2 = mg.nn.Parameter(r.standard_normal((8, 3)) * 0.5)

    def forward(self, x):
        return (x @ self.w1 + self.b1).tanh() @ self.w2


def _train_step(device):
    net = TinyNet(seed=0).to(device)
    x = mg.tensor(A, device=device)
    loss = mg.cross_entropy(net(x), ints([0, 2, 1], device))
    loss.backward()
    with mg.no_grad():
        for p in net.parameters():
            p -= 0.1 * p.grad
    return net, loss


@pytest.mark.parametrize("device", DEVICES)
def test_module_training_step_on_device(device):
    atype = backend.get_device(device).array_type
    ref_net, ref_loss = _train_step("cpu")
    net, loss = _train_step(device)
    np.testing.assert_allclose(loss.item(), ref_loss.item(), rtol=1e-12)
    for (name, p), q in zip(net.named_parameters(), ref_net.parameters()):
        assert type(p.data) is atype and type(p.grad.data) is atype, name
        np.testing.assert_allclose(p.numpy(), q.numpy(), rtol=1e-12, err_msg=name)
    # the step changed the weights: the comparison above is not between initial values
    assert not np.allclose(ref_net.w1.numpy(), TinyNet(seed=0).w1.numpy())


@pytest.mark.parametrize("device", DEVICES)
def test_module_to_moves_parameters_and_back(device):
    net = TinyNet(seed=1)
    host = {k: v.copy() for k, v in net.state_dict().items()}
    net.to(device)
    assert all(p.device == device for p in net.parameters())
    net.to("cpu")
    for k, p in net.named_parameters():
        assert type(p.data) is np.ndarray
        np.testing.assert_array_equal(p.numpy(), host[k])


@pytest.mark.parametrize("device", DEVICES)
def test_to_device_is_differentiable_back_to_the_cpu_leaf(device):
    x = mg.tensor(A, requires_grad=True)
    y = x.to(device)
    assert y.device == device and not y.is_leaf
    (y * y).sum().backward()
    assert type(x.grad.data) is np.ndarray
    np.testing.assert_allclose(x.grad.numpy(), 2 * A)
    z = y.to("cpu")
    assert z.device == "cpu" and type(z.data) is np.ndarray


@pytest.mark.parametrize("device", DEVICES)
def test_creators_on_device(device):
    atype = backend.get_device(device).array_type
    for t in (mg.zeros(2, 3, device=device), mg.ones(2, device=device),
              mg.full((2,), 3.0, device=device), mg.arange(4, device=device),
              mg.randn(2, rng=0, device=device), mg.rand(2, rng=0, device=device),
              mg.tensor([1.0, 2.0], device=device)):
        assert type(t.data) is atype and t.device == device
    np.testing.assert_array_equal(mg.arange(4, device=device).numpy(), np.arange(4.0))
    np.testing.assert_array_equal(mg.randn(3, rng=5, device=device).numpy(),
                                  mg.randn(3, rng=5).numpy())
    assert "device=" in repr(mg.ones(1, device=device))


@pytest.mark.parametrize("device", DEVICES)
def test_mixing_devices_names_both(device):
    x = mg.tensor(A)
    d = mg.tensor(A, device=device)
    with pytest.raises(ValueError, match=f"Add: inputs are on different devices "
                                         f"\\(cpu and {device}\\)"):
        x + d
    with pytest.raises(ValueError, match=f"MatMul: .*cpu and {device}"):
        d @ mg.tensor(B)


def test_cuda_without_cupy_says_cupy_is_missing(monkeypatch):
    monkeypatch.delitem(backend._devices, "cuda", raising=False)
    monkeypatch.setitem(sys.modules, "cupy", None)  # makes `import cupy` raise ImportError
    with pytest.raises(RuntimeError, match="needs CuPy, which is not installed"):
        mg.tensor([1.0], device="cuda")


@pytest.mark.parametrize("count, message", [
    (0, "CuPy is installed but no GPU is present"),
    (RuntimeError("cudaErrorNoDevice"), "CuPy is installed but no GPU is usable"),
])
def test_cuda_with_cupy_but_no_gpu(monkeypatch, count, message):
    def get_device_count():
        if isinstance(count, Exception):
            raise count
        return count

    fake_cupy = types.SimpleNamespace(
        cuda=types.SimpleNamespace(runtime=types.SimpleNamespace(getDeviceCount=get_device_count)))
    monkeypatch.delitem(backend._devices, "cuda", raising=False)
    monkeypatch.setitem(sys.modules, "cupy", fake_cupy)
    with pytest.raises(RuntimeError, match=message):
        mg.zeros(2, device="cuda")
    assert "cuda" not in backend._devices


def test_get_array_module():
    d = mg.tensor(A, device="fake").data
    assert backend.get_array_module(A) is np and backend.get_array_module(1.0, A) is np
    assert backend.get_array_module(A, d) is backend.get_device("fake").xp
    assert backend.device_of(d).name == "fake" and backend.device_of(2.0).name == "cpu"
    np.testing.assert_array_equal(backend.to_host(backend.to_device(A, "fake")), A)
