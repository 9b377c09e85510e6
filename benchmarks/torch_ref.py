"""Optional PyTorch baselines (CPU, float32) for the RNN benchmarks.

PyTorch is never a dependency of the project: every public function here
returns ``None`` when torch is not installed.  Each ``make_*`` builds a model
and input and returns a zero-argument callable running one forward + full
backward pass (loss = sum of all outputs, gradients for the input and every
parameter); each ``time_*`` times that callable with ``_timing.measure``.
``torch.set_num_threads`` is left at its default.
"""

import numpy as np

from benchmarks._timing import measure

try:
    import torch
except ImportError:  # pragma: no cover - depends on the environment
    torch = None

__all__ = ["available", "version", "make_lstm", "make_lstm_cell_loop", "make_gru",
           "make_user_lstm_loop", "make_torchscript_lstm", "user_lstm_loop",
           "time_lstm", "time_lstm_cell_loop", "time_gru"]


def available():
    return torch is not None


def version():
    return None if torch is None else torch.__version__


def _input(B, I, T, seed):
    gen = torch.Generator().manual_seed(seed)
    return torch.randn(T, B, I, generator=gen, dtype=torch.float32).requires_grad_(True)


def _step_fn(module, x, run):
    params = list(module.parameters())

    def step():
        for p in params:
            p.grad = None
        x.grad = None
        loss = run()
        loss.backward()
        return loss

    return step


def make_lstm(B, I, H, T, seed=0):
    """``nn.LSTM`` (cuDNN-style fused op on CPU): forward + backward callable."""
    if torch is None:
        return None
    torch.manual_seed(seed)
    mod = torch.nn.LSTM(I, H).float()
    x = _input(B, I, T, seed)
    return _step_fn(mod, x, lambda: mod(x)[0].sum())


def make_lstm_cell_loop(B, I, H, T, seed=0):
    """``nn.LSTMCell`` driven by a Python loop over time."""
    if torch is None:
        return None
    torch.manual_seed(seed)
    cell = torch.nn.LSTMCell(I, H).float()
    x = _input(B, I, T, seed)

    def run():
        h = torch.zeros(B, H)
        c = torch.zeros(B, H)
        total = 0
        for t in range(T):
            h, c = cell(x[t], (h, c))
            total = total + h.sum()
        return total

    return _step_fn(cell, x, run)


def make_gru(B, I, H, T, seed=0):
    """``nn.GRU`` (reset-after form): forward + backward callable."""
    if torch is None:
        return None
    torch.manual_seed(seed)
    mod = torch.nn.GRU(I, H).float()
    x = _input(B, I, T, seed)
    return _step_fn(mod, x, lambda: mod(x)[0].sum())


def _user_lstm_params(I, H):
    """W (4H, I), U (4H, H), b (4H), uniform(-1/sqrt(H), 1/sqrt(H)) as nn.LSTM draws them."""
    k = 1.0 / H ** 0.5
    return [torch.empty(*s).uniform_(-k, k).requires_grad_(True)
            for s in ((4 * H, I), (4 * H, H), (4 * H,))]


def user_lstm_loop(x, w, u, b):
    """The LSTM step a user writes (gates x W^T + h U^T + b, blocks i, f, g, o, sliced), in an
    eager Python loop over time: outputs (T, B, H) for x (T, B, I), zero initial state."""
    B, H = x.shape[1], u.shape[1]
    h = x.new_zeros(B, H)
    c = x.new_zeros(B, H)
    outs = []
    for x_t in x:
        a = x_t @ w.T + h @ u.T + b
        i = torch.sigmoid(a[:, :H])
        f = torch.sigmoid(a[:, H:2 * H])
        g = torch.tanh(a[:, 2 * H:3 * H])
        o = torch.sigmoid(a[:, 3 * H:])
        c = f * c + i * g
        h = o * torch.tanh(c)
        outs.append(h)
    return torch.stack(outs)


# the same loop as TorchScript source (torch.jit.CompilationUnit compiles a string, so this
# module needs no second copy of the function that inspect could read)
TORCHSCRIPT_LSTM = """
def user_lstm_loop(x, w, u, b):
    B = x.size(1)
    H = u.size(1)
    h = x.new_zeros([B, H])
    c = x.new_zeros([B, H])
    outs = []
    for t in range(x.size(0)):
        a = x[t] @ w.t() + h @ u.t() + b
        i = torch.sigmoid(a[:, :H])
        f = torch.sigmoid(a[:, H:2 * H])
        g = torch.tanh(a[:, 2 * H:3 * H])
        o = torch.sigmoid(a[:, 3 * H:])
        c = f * c + i * g
        h = o * torch.tanh(c)
        outs.append(h)
    return torch.stack(outs)
"""


def _user_lstm_step(loop, B, I, H, T, seed):
    torch.manual_seed(seed)
    w, u, b = params = _user_lstm_params(I, H)
    x = _input(B, I, T, seed)

    def step():
        for p in params:
            p.grad = None
        x.grad = None
        loss = loop(x, w, u, b).sum()
        loss.backward()
        return loss

    return step


def make_user_lstm_loop(B, I, H, T, seed=0):
    """The user-written LSTM step (`user_lstm_loop`) in an eager Python loop."""
    if torch is None:
        return None
    return _user_lstm_step(user_lstm_loop, B, I, H, T, seed)


def make_torchscript_lstm(B, I, H, T, seed=0):
    """The whole loop of `user_lstm_loop` compiled by TorchScript (`torch.jit` on its source;
    the profiling executor optimises after the first calls, which the benchmark's warm-up
    rounds and its first-call column cover)."""
    if torch is None:
        return None
    loop = torch.jit.CompilationUnit(TORCHSCRIPT_LSTM).user_lstm_loop
    return _user_lstm_step(loop, B, I, H, T, seed)


def _timed(maker, B, I, H, T, **measure_kw):
    fn = maker(B, I, H, T)
    if fn is None:
        return None
    return measure(fn, **measure_kw)


def time_lstm(B, I, H, T, **measure_kw):
    return _timed(make_lstm, B, I, H, T, **measure_kw)


def time_lstm_cell_loop(B, I, H, T, **measure_kw):
    return _timed(make_lstm_cell_loop, B, I, H, T, **measure_kw)


def time_gru(B, I, H, T, **measure_kw):
    return _timed(make_gru, B, I, H, T, **measure_kw)


def lstm_grads(x, w_ih, w_hh, b):
    """Loss and gradients of ``nn.LSTM`` for given NumPy weights (cross-checks)."""
    if torch is None:
        return None
    T, B, I = x.shape
    H = w_hh.shape[1]
    dtype = torch.float64 if x.dtype == np.float64 else torch.float32
    mod = torch.nn.LSTM(I, H).to(dtype)
    with torch.no_grad():
        mod.weight_ih_l0.copy_(torch.from_numpy(np.ascontiguousarray(w_ih)))
        mod.weight_hh_l0.copy_(torch.from_numpy(np.ascontiguousarray(w_hh)))
        mod.bias_ih_l0.copy_(torch.from_numpy(np.ascontiguousarray(b)))
        mod.bias_hh_l0.zero_()
    xt = torch.from_numpy(np.array(x)).requires_grad_(True)
    loss = mod(xt)[0].sum()
    loss.backward()
    return loss.item(), {
        "x": xt.grad.numpy(),
        "weight_ih": mod.weight_ih_l0.grad.numpy(),
        "weight_hh": mod.weight_hh_l0.grad.numpy(),
        "bias": mod.bias_ih_l0.grad.numpy(),
    }
