"""minigrad.nn: Module bookkeeping, layers, initialisers and gradient clipping.

References are NumPy formulas written here, central finite differences (gradcheck), and
hand-computed cases.
"""
import math

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import minigrad as mg
from minigrad import backend
from minigrad.nn import init
from minigrad.nn.utils import clip_grad_norm_, clip_grad_value_
from minigrad.testing import gradcheck
from minigrad.testing.fakedevice import FakeArray, fake_xp, is_fake
from minigrad.testing.fakedevice import to_device as fake_to_device
from minigrad.testing.fakedevice import to_host as fake_to_host


@pytest.fixture
def fake():
    """The stand-in device (tests/conftest.py may have registered it already)."""
    if "fake" not in backend._devices:
        mg.register_device("fake", FakeArray, fake_xp, fake_to_device, fake_to_host)
    return "fake"


class Block(mg.nn.Module):
    def __init__(self, n_in):
        super().__init__()
        self.lin = mg.nn.Linear(n_in, 4, rng=1)
        self.scale = mg.nn.Parameter(np.ones(4, np.float32))
        self.register_buffer("count", mg.zeros(1))

    def forward(self, x):
        return mg.tanh(self.lin(x)) * self.scale


class Net(mg.nn.Module):
    def __init__(self):
        super().__init__()
        self.blocks = mg.nn.ModuleList([Block(3), Block(4)])
        self.head = mg.nn.Linear(4, 2, rng=2)

    def forward(self, x):
        for b in self.blocks:
            x = b(x)
        return self.head(x)


# --- Module bookkeeping ---------------------------------------------------------------------------

def test_named_parameters_paths_order_and_buffers():
    net = Net()
    names = [n for n, _ in net.named_parameters()]
    # depth first, in registration order: a module's own parameters before its submodules'
    assert names == ["blocks.0.scale", "blocks.0.lin.weight", "blocks.0.lin.bias",
                     "blocks.1.scale", "blocks.1.lin.weight", "blocks.1.lin.bias",
                     "head.weight", "head.bias"]
    assert names == [n for n, _ in Net().named_parameters()]   # stable across instances
    assert [n for n, _ in net.named_buffers()] == ["blocks.0.count", "blocks.1.count"]
    assert len(net.parameters()) == 8
    assert net.num_parameters() == (12 + 4 + 4) + (16 + 4 + 4) + 8 + 2
    assert set(net.state_dict()) == set(names) | {"blocks.0.count", "blocks.1.count"}
    assert [type(m).__name__ for m in net.modules()] == [
        "Net", "ModuleList", "Block", "Linear", "Block", "Linear", "Linear"]
    assert [type(m).__name__ for m in net.children()] == ["ModuleList", "Linear"]


def test_shared_parameter_counted_once_and_reassignment():
    a = mg.nn.Linear(2, 2, rng=0)
    seq = mg.nn.Sequential(a, mg.nn.Tanh(), a)
    assert [n for n, _ in seq.named_parameters()] == ["0.weight", "0.bias"]
    m = mg.nn.Module()
    m.w = mg.nn.Parameter([1.0])
    m.w = mg.tensor([2.0])          # a plain tensor replaces the parameter: no longer registered
    assert m.parameters() == [] and m.w.tolist() == [2.0]
    del seq[0].bias
    assert [n for n, _ in a.named_parameters()] == ["weight"]


def test_module_paths_tag_nodes_and_name_parameters():
    net = Net()
    assert net.blocks[1].lin._path == "blocks.1.lin" and net._path == "Net"
    x = mg.ones(5, 4)
    out = net.blocks[1](x)          # the last node (the product with scale) is the block's own
    tags = out._node.tags
    assert ("module", "blocks.1") in tags and ("module", "blocks.1.lin") not in tags
    assert ("module", "blocks.1.lin") in net.blocks[1].lin(x)._node.tags
    net.name_parameters("model")
    assert net.head.weight.name == "model.head.weight"
    assert net.blocks[0].lin._path == "model.blocks.0.lin"
    net.name_parameters()
    assert net.blocks[0].lin.bias.name == "blocks.0.lin.bias"


def test_built_bottom_up_modules_get_full_paths():
    inner = mg.nn.Sequential(mg.nn.Linear(2, 2, rng=0))
    outer = mg.nn.Module()
    outer.stack = mg.nn.ModuleList()
    outer.stack.append(inner)       # attached after its parent was attached
    assert inner[0]._path == "stack.0.0"


def test_train_eval_apply_requires_grad():
    net = Net()
    assert all(m.training for m in net.modules())
    assert net.eval() is net and not any(m.training for m in net.modules())
    net.train()
    assert all(m.training for m in net.modules())
    seen = []
    net.apply(lambda m: seen.append(type(m).__name__))
    assert seen[-1] == "Net" and len(seen) == 7
    net.blocks.requires_grad_(False)
    assert [p.requires_grad for p in net.parameters()] == [False] * 6 + [True] * 2
    with pytest.raises(TypeError, match="train"):
        net.train("yes")
    with pytest.raises(RuntimeError, match="super"):
        class Bad(mg.nn.Module):
            def __init__(self):
                self.w = mg.nn.Parameter([1.0])
        Bad()


def test_zero_grad():
    lin = mg.nn.Linear(3, 2, rng=0)
    lin(mg.ones(4, 3)).sum().backward()
    assert lin.weight.grad is not None
    lin.zero_grad()
    assert lin.weight.grad is None and lin.bias.grad is None


def test_state_dict_round_trip_and_errors():
    a, b = Net(), Net()
    for p in b.parameters():
        p.data[...] = 0
    sd = a.state_dict()
    assert all(type(v) is np.ndarray for v in sd.values())
    sd["blocks.0.lin.weight"][0, 0] = 99.0  # a copy: the model is untouched
    assert a.blocks[0].lin.weight.data[0, 0] != 99.0
    result = b.load_state_dict(a.state_dict())
    assert result.missing == [] and result.unexpected == []
    for (na, pa), (nb, pb) in zip(a.named_parameters(), b.named_parameters()):
        assert na == nb and np.array_equal(pa.data, pb.data)
    bad = a.state_dict()
    del bad["head.bias"]
    bad["extra"] = np.zeros(1)
    with pytest.raises(ValueError, match=r"missing keys \['head.bias'\].*unexpected keys "
                                         r"\['extra'\]"):
        b.load_state_dict(bad)
    missing, unexpected = b.load_state_dict(bad, strict=False)
    assert missing == ["head.bias"] and unexpected == ["extra"]
    wrong = a.state_dict()
    wrong["head.weight"] = np.zeros((3, 4))
    with pytest.raises(ValueError, match=r"head.weight: expected \(2, 4\), got \(3, 4\)"):
        b.load_state_dict(wrong)
    with pytest.raises(TypeError, match="Net.load_state_dict"):
        b.load_state_dict([1, 2])


def test_load_state_dict_casts_and_invalidates_saved_graphs():
    lin = mg.nn.Linear(2, 2, rng=0)
    sd = {k: v.astype(np.float64) for k, v in lin.state_dict().items()}
    x = mg.tensor([[1.0, 2.0]], requires_grad=True)
    out = (x @ lin.weight).sum()   # matmul saved the weight array
    lin.load_state_dict(sd)
    assert lin.weight.dtype == np.float32
    with pytest.raises(RuntimeError, match="modified in place"):
        out.backward()


def test_module_to_dtype_keeps_parameter_objects():
    lin = mg.nn.Linear(3, 2, rng=0)
    w = lin.weight
    ref = lin.weight.numpy()
    lin.to(dtype=np.float64)
    assert lin.weight is w and w.dtype == np.float64
    np.testing.assert_array_equal(w.numpy(), ref.astype(np.float64))
    with pytest.raises(TypeError, match="float dtype"):
        lin.to(dtype=np.int32)


# --- layers ---------------------------------------------------------------------------------------

dims = st.integers(1, 5)


@given(batch=st.lists(dims, max_size=2), n_in=dims, n_out=dims, bias=st.booleans(),
       seed=st.integers(0, 2**16))
def test_linear_forward_matches_numpy_and_gradcheck(batch, n_in, n_out, bias, seed):
    lin = mg.nn.Linear(n_in, n_out, bias=bias, rng=seed, dtype=np.float64)
    w = lin.weight.numpy()
    assert w.shape == (n_out, n_in) and np.all(np.abs(w) <= 1 / math.sqrt(n_in))
    x = np.random.default_rng(seed).standard_normal((*batch, n_in))
    ref = x @ w.T + (lin.bias.numpy() if bias else 0.0)
    np.testing.assert_allclose(lin(mg.tensor(x)).numpy(), ref, rtol=1e-12, atol=1e-12)
    xt = mg.tensor(x, requires_grad=True)
    params = [lin.weight] + ([lin.bias] if bias else [])

    def f(x, *ps):
        return lin(x)
    gradcheck(f, [xt, *params])


def test_linear_init_is_reproducible_and_uniform():
    a = mg.nn.Linear(200, 50, rng=7)
    b = mg.nn.Linear(200, 50, rng=np.random.default_rng(7))
    c = mg.nn.Linear(200, 50, rng=8)
    assert np.array_equal(a.weight.data, b.weight.data)
    assert not np.array_equal(a.weight.data, c.weight.data)
    w = a.weight.numpy().astype(np.float64)
    bound = 1 / math.sqrt(200)
    # U(-b, b) has variance b^2 / 3; 10^4 draws give it within a few percent
    assert abs(w.var() / (bound ** 2 / 3) - 1) < 0.05 and abs(w.mean()) < 0.05 * bound
    assert a.weight.dtype == mg.get_default_dtype() and a.bias.shape == (50,)
    assert mg.nn.Linear(2, 3, dtype="float64").weight.dtype == np.float64


def test_layer_argument_errors():
    with pytest.raises(ValueError, match="Linear: in_features"):
        mg.nn.Linear(0, 3)
    with pytest.raises(TypeError, match="Linear.*float dtype"):
        mg.nn.Linear(2, 3, dtype=np.int32)
    with pytest.raises(ValueError, match=r"Linear: input of shape \(4, 5\).*in_features=3"):
        mg.nn.Linear(3, 2)(mg.ones(4, 5))
    with pytest.raises(ValueError, match="Dropout: p"):
        mg.nn.Dropout(1.0)
    with pytest.raises(ValueError, match="Embedding: embedding_dim"):
        mg.nn.Embedding(3, -1)
    with pytest.raises(TypeError, match="ModuleList: expected a Module"):
        mg.nn.ModuleList([mg.nn.Linear(2, 2), 3])
    with pytest.raises(IndexError, match="ModuleList"):
        mg.nn.ModuleList([mg.nn.Tanh()])[1]


@given(idx=st.lists(st.integers(0, 6), min_size=1, max_size=8), seed=st.integers(0, 99))
def test_embedding_rows_and_gradient(idx, seed):
    emb = mg.nn.Embedding(7, 3, rng=seed, dtype=np.float64)
    w = emb.weight.numpy()
    indices = np.array(idx).reshape(1, -1)
    out = emb(indices)
    np.testing.assert_array_equal(out.numpy(), w[indices])
    gout = np.random.default_rng(seed).standard_normal(out.shape)
    out.backward(gout)
    ref = np.zeros_like(w)
    for k, i in enumerate(idx):     # repeated indices add up
        ref[i] += gout[0, k]
    np.testing.assert_allclose(emb.weight.grad.numpy(), ref, rtol=1e-12, atol=1e-12)


def test_dropout_train_eval():
    drop = mg.nn.Dropout(0.25)
    x = mg.tensor(np.arange(1, 4001, dtype=np.float64).reshape(40, 100))
    mg.manual_seed(3)
    out = drop(x).numpy()
    kept = out != 0
    # kept elements are scaled by 1 / (1 - p); about 3/4 are kept (10 sigma band for 4000 draws)
    np.testing.assert_allclose(out[kept], x.numpy()[kept] / 0.75, rtol=1e-12)
    assert abs(kept.mean() - 0.75) < 10 * math.sqrt(0.75 * 0.25 / 4000)
    mg.manual_seed(3)
    assert np.array_equal(drop(x).numpy(), out)            # same seed, same mask
    assert not np.array_equal(drop(x).numpy(), out)        # the generator moved on
    drop.eval()
    assert np.array_equal(drop(x).numpy(), x.numpy())
    net = mg.nn.Sequential(mg.nn.Linear(4, 4, rng=0), mg.nn.Dropout(0.5))
    net.eval()
    assert not net[1].training
    a, b = net(mg.ones(8, 4)).numpy(), net(mg.ones(8, 4)).numpy()
    assert np.array_equal(a, b)


@given(shape=st.lists(dims, min_size=1, max_size=3), seed=st.integers(0, 99))
def test_activations_and_sequential_match_numpy(shape, seed):
    x = np.random.default_rng(seed).standard_normal(shape) * 3
    t = mg.tensor(x)
    np.testing.assert_allclose(mg.nn.Tanh()(t).numpy(), np.tanh(x), rtol=1e-12)
    np.testing.assert_allclose(mg.nn.ReLU()(t).numpy(), np.maximum(x, 0), rtol=1e-12)
    np.testing.assert_allclose(mg.nn.Sigmoid()(t).numpy(), 1 / (1 + np.exp(-x)), rtol=1e-12)
    n = shape[-1]
    l1, l2 = mg.nn.Linear(n, 3, rng=seed, dtype="float64"), mg.nn.Linear(3, 2, rng=1,
                                                                          dtype="float64")
    seq = mg.nn.Sequential(l1, mg.nn.Tanh(), l2)
    ref = np.tanh(x @ l1.weight.numpy().T + l1.bias.numpy()) @ l2.weight.numpy().T \
        + l2.bias.numpy()
    np.testing.assert_allclose(seq(t).numpy(), ref, rtol=1e-12, atol=1e-12)
    assert len(seq) == 3 and seq[-1] is l2 and seq[:2][0] is l1


def test_module_list_append_setitem_iter():
    ml = mg.nn.ModuleList()
    ml.append(mg.nn.Linear(2, 2, rng=0)).extend([mg.nn.Tanh(), mg.nn.Linear(2, 1, rng=1)])
    assert len(ml) == 3 and [type(m).__name__ for m in ml] == ["Linear", "Tanh", "Linear"]
    new = mg.nn.Linear(2, 5, rng=2)
    ml[-1] = new
    assert ml[2] is new and [n for n, _ in ml.named_parameters()][-1] == "2.bias"
    pl = mg.nn.ParameterList([mg.nn.Parameter([1.0]), mg.nn.Parameter([2.0, 3.0])])
    assert [n for n, _ in pl.named_parameters()] == ["0", "1"] and pl[1].shape == (2,)


# --- init -----------------------------------------------------------------------------------------

def test_uniform_normal_constant():
    t = mg.zeros(300, 200, dtype=np.float64)
    init.uniform_(t, -2.0, 3.0, rng=0)
    d = t.numpy()
    assert d.min() >= -2 and d.max() < 3
    assert abs(d.mean() - 0.5) < 0.05 and abs(d.var() - 25 / 12) < 0.05
    init.normal_(t, 1.0, 2.0, rng=0)
    d = t.numpy()
    assert abs(d.mean() - 1.0) < 0.05 and abs(d.std() - 2.0) < 0.05
    np.testing.assert_array_equal(init.normal_(mg.zeros(5), rng=4).numpy(),
                                  np.random.default_rng(4).normal(0, 1, 5).astype(np.float32))
    assert init.constant_(t, 2.5).numpy().tolist() == np.full((300, 200), 2.5).tolist()
    assert not init.zeros_(t).numpy().any()
    assert (init.ones_(t).numpy() == 1).all()
    with pytest.raises(ValueError, match="uniform_"):
        init.uniform_(t, 1.0, 0.0)
    with pytest.raises(TypeError, match="init.normal_"):
        init.normal_(np.zeros(3))


def test_xavier():
    w = mg.zeros(300, 500, dtype=np.float64)
    a = math.sqrt(6 / 800)
    d = init.xavier_uniform_(w, gain=2.0, rng=1).numpy()
    assert np.abs(d).max() <= 2 * a and abs(d.var() / ((2 * a) ** 2 / 3) - 1) < 0.02
    d = init.xavier_normal_(w, rng=1).numpy()
    assert abs(d.std() / math.sqrt(2 / 800) - 1) < 0.02
    with pytest.raises(ValueError, match=r"xavier_uniform_.*shape \(3,\)"):
        init.xavier_uniform_(mg.zeros(3))


@given(rows=st.integers(1, 7), cols=st.integers(1, 7), gain=st.floats(0.1, 3.0),
       seed=st.integers(0, 99))
def test_orthogonal(rows, cols, gain, seed):
    q = init.orthogonal_(mg.zeros(rows, cols, dtype=np.float64), gain=gain, rng=seed).numpy() / gain
    if rows <= cols:
        np.testing.assert_allclose(q @ q.T, np.eye(rows), atol=1e-12)
    else:
        np.testing.assert_allclose(q.T @ q, np.eye(cols), atol=1e-12)


def test_orthogonal_3d_and_version():
    t = mg.zeros(4, 2, 3, dtype=np.float64)
    init.orthogonal_(t, rng=0)
    q = t.numpy().reshape(4, 6)
    np.testing.assert_allclose(q @ q.T, np.eye(4), atol=1e-12)
    assert t._version == 1


def test_init_on_device_matches_host(fake):
    host = init.xavier_uniform_(mg.zeros(3, 4), rng=5)
    dev = mg.zeros(3, 4, device=fake)
    data = dev.data
    init.xavier_uniform_(dev, rng=5)
    assert dev.data is data and is_fake(dev.data)   # written in place, on the device
    np.testing.assert_array_equal(dev.numpy(), host.numpy())


# --- gradient clipping ----------------------------------------------------------------------------

grad_lists = st.lists(st.lists(st.floats(-10, 10), min_size=1, max_size=6), min_size=1,
                      max_size=4)


@given(grads=grad_lists, max_norm=st.floats(0.01, 20.0), norm_type=st.sampled_from(
    [1.0, 2.0, 3.0, math.inf]))
def test_clip_grad_norm_matches_numpy(grads, max_norm, norm_type):
    params = [mg.nn.Parameter(np.zeros(len(g))) for g in grads]
    for p, g in zip(params, grads):
        p.grad = mg.tensor(np.array(g))
    skipped = mg.nn.Parameter(np.zeros(2))            # no gradient: ignored
    flat = np.concatenate([np.array(g) for g in grads])
    ref = np.linalg.norm(flat, ord=norm_type)
    total = clip_grad_norm_(params + [skipped], max_norm, norm_type)
    assert isinstance(total, float)
    np.testing.assert_allclose(total, ref, rtol=1e-10, atol=1e-12)
    scale = min(1.0, max_norm / (ref + 1e-6))
    for p, g in zip(params, grads):
        np.testing.assert_allclose(p.grad.numpy(), np.array(g) * scale, rtol=1e-10, atol=1e-12)
    assert skipped.grad is None
    after = np.linalg.norm(np.concatenate([p.grad.numpy() for p in params]), ord=norm_type)
    assert after <= max_norm * (1 + 1e-9) or ref <= max_norm


def test_clip_grad_norm_hand_case_and_nonfinite():
    w = mg.nn.Parameter([0.0, 0.0])
    w.grad = mg.tensor([3.0, 4.0])
    assert clip_grad_norm_(w, 1.0) == pytest.approx(5.0)
    np.testing.assert_allclose(w.grad.numpy(), [0.6, 0.8], rtol=1e-5)
    w.grad = mg.tensor([np.inf, 1.0])
    with pytest.raises(ValueError, match="clip_grad_norm_.*inf"):
        clip_grad_norm_([w], 1.0, error_if_nonfinite=True)
    assert clip_grad_norm_([mg.nn.Parameter([1.0])], 1.0) == 0.0
    with pytest.raises(ValueError, match="norm_type"):
        clip_grad_norm_([w], 1.0, norm_type=0)


@given(grads=grad_lists, clip=st.floats(0.0, 5.0))
def test_clip_grad_value_matches_numpy(grads, clip):
    params = [mg.nn.Parameter(np.zeros(len(g))) for g in grads]
    for p, g in zip(params, grads):
        p.grad = mg.tensor(np.array(g))
    data = [p.grad.data for p in params]
    clip_grad_value_(params, clip)
    for p, g, d in zip(params, grads, data):
        assert p.grad.data is d
        np.testing.assert_array_equal(p.grad.numpy(), np.clip(np.array(g), -clip, clip))


# --- devices --------------------------------------------------------------------------------------

def _step(net, opt, device):
    rng = np.random.default_rng(0)
    x = rng.standard_normal((6, 3)).astype(np.float32)
    y = rng.integers(0, 2, 6)
    opt.zero_grad()
    loss = mg.cross_entropy(net(mg.tensor(x, device=device)), y)
    loss.backward()
    clip_grad_norm_(net.parameters(), 1.0)
    opt.step()
    return loss.item()


def test_module_to_fake_device_trains_like_cpu(fake):
    def make():
        return mg.nn.Sequential(mg.nn.Linear(3, 5, rng=0), mg.nn.Tanh(), mg.nn.Linear(5, 2, rng=1))
    cpu, dev = make(), make()
    dev.to(fake)
    assert all(is_fake(p.data) for p in dev.parameters())
    opt_cpu = mg.optim.Adam(cpu.parameters(), lr=0.05)
    opt_dev = mg.optim.Adam(dev.parameters(), lr=0.05)
    losses_cpu = [_step(cpu, opt_cpu, "cpu") for _ in range(3)]
    losses_dev = [_step(dev, opt_dev, fake) for _ in range(3)]
    # the fake device computes with NumPy underneath: the same numbers, bit for bit
    assert losses_dev == losses_cpu and losses_cpu[-1] < losses_cpu[0]
    for p in dev.parameters():
        assert is_fake(p.data) and is_fake(p.grad.data)
        assert all(is_fake(a) for k, a in opt_dev.state[p].items() if k != "step")
    for a, b in zip(cpu.parameters(), dev.parameters()):
        np.testing.assert_array_equal(a.numpy(), b.numpy())
    assert all(type(v) is np.ndarray for v in dev.state_dict().values())
    # back to the host after the optimizer was built: its state follows on the next step
    dev.to("cpu")
    assert _step(dev, opt_dev, "cpu") == _step(cpu, opt_cpu, "cpu")
    for p in dev.parameters():
        assert all(type(a) is np.ndarray for k, a in opt_dev.state[p].items() if k != "step")
    for a, b in zip(cpu.parameters(), dev.parameters()):
        np.testing.assert_array_equal(a.numpy(), b.numpy())


def test_load_state_dict_onto_device(fake):
    src = mg.nn.Linear(3, 2, rng=0)
    dst = mg.nn.Linear(3, 2, rng=1).to(fake)
    dst.load_state_dict(src.state_dict())
    assert is_fake(dst.weight.data)
    np.testing.assert_array_equal(dst.weight.numpy(), src.weight.numpy())
