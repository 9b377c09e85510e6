"""Models, data and one training loop shared by the MPI scripts and by the one-process
references in tests/test_distributed.py.

The reference trains on the whole batch in one process with plain minigrad; a rank of an MPI run
trains on its columns of the same batch and averages gradients with DataParallel. Everything
else (weights, data, optimizer, clipping, guard) is the same code, so any difference in the
final parameters comes from splitting the batch and averaging over MPI.
"""
import warnings

import numpy as np

import minigrad as mg
import rnn

T, B, I, H, C = 6, 8, 3, 5, 4  # steps, whole batch, input, hidden, classes
STEPS = 5                      # optimizer steps (tbptt cases: windows per step, see train)
MAX_NORM = 0.1                 # small enough that clipping is active in most steps


class GatedCell(rnn.Cell):
    """A user's cell: h' = z * h + (1 - z) * tanh(W_h x + U_h h), z = sigmoid(W_z x + U_z h + b)."""

    def __init__(self, n_in, n_hid, rng):
        super().__init__(n_in, n_hid, rng=rng, dtype="float64")
        self.w_z, self.w_h = self.parameter(n_hid, n_in), self.parameter(n_hid, n_in)
        self.u_z, self.u_h = self.parameter(n_hid, n_hid), self.parameter(n_hid, n_hid)
        self.b_z = self.parameter(n_hid)

    def forward(self, x, h):
        z = mg.sigmoid(x @ self.w_z.T + h @ self.u_z.T + self.b_z)
        h = z * h + (1 - z) * mg.tanh(x @ self.w_h.T + h @ self.u_h.T)
        return h, h


class Model(mg.nn.Module):
    """x (T, B, I) -> logits (T, B, C): a cell unrolled by rnn.unroll, then a Linear read-out."""

    def __init__(self, cell, rng, hidden=H):
        super().__init__()
        if cell == "lstm":
            self.cell = rnn.LSTMCell(I, hidden, rng=rng, dtype="float64")  # the fused kernel
        else:
            self.cell = GatedCell(I, hidden, rng)
        self.head = mg.nn.Linear(hidden, C, rng=rng)
        self.to(dtype="float64")

    def forward(self, x, checkpoint_every=None):
        out, _ = rnn.unroll(self.cell, x, checkpoint_every=checkpoint_every)
        return self.head(out)


CASES = {
    "lstm_sgd": dict(cell="lstm", opt="sgd"),
    "lstm_adam": dict(cell="lstm", opt="adam"),
    "custom_sgd": dict(cell="custom", opt="sgd"),
    "custom_adam": dict(cell="custom", opt="adam"),
    "lstm_adam_checkpointed": dict(cell="lstm", opt="adam", checkpoint_every="sqrt"),
    "lstm_tbptt": dict(cell="lstm", opt="adam", tbptt=True),
    "custom_tbptt_checkpointed": dict(cell="custom", opt="sgd", tbptt=True, checkpoint_every=2),
    "lstm_adam_fake_device": dict(cell="lstm", opt="adam", device="fake"),
    "custom_adam_fake_device": dict(cell="custom", opt="adam", device="fake"),
    "lstm_adam_small_buckets": dict(cell="lstm", opt="adam", bucket_bytes=256),
    "guard": dict(cell="lstm", opt="adam", poison_step=2),
}


def batch(step, length=T):
    """The whole batch of a step: x (length, B, I) float64, y (length, B) class ids."""
    rng = np.random.default_rng(100 + step)
    return rng.standard_normal((length, B, I)), rng.integers(0, C, size=(length, B))


def train(case, columns, wrap, init_seed=1, poison=False, hidden=H):
    """Train a fresh model of `case` on `columns` of every batch; return what it ended with.

    `wrap(model)` is called once the model is built and returns the function run after each
    backward (DataParallel's average_gradients, or nothing for the reference). With `poison`,
    the loss of step `case["poison_step"]` is multiplied by NaN (this process's gradient only).
    """
    device = case.get("device")
    model = Model(case["cell"], np.random.default_rng(init_seed), hidden)
    if device:
        model.to(device)
    after_backward = wrap(model)
    params = model.parameters()
    opt = (mg.optim.SGD(params, lr=0.2, momentum=0.9) if case["opt"] == "sgd"
           else mg.optim.Adam(params, lr=0.05))
    guard = mg.optim.SkipNonFinite(opt)
    norms, took = [], []

    def update():
        after_backward()
        norms.append(mg.nn.utils.clip_grad_norm_(params, MAX_NORM))
        took.append(guard.step())
        opt.zero_grad()

    def loss_of(logits, y):
        return rnn.sequence_cross_entropy(logits, mg.tensor(y, device=device))

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # the guard's "step skipped"
        for step in range(STEPS):
            if case.get("tbptt"):  # 3 windows of 4 steps, one update each
                x, y = batch(step, length=12)
                x, y = x[:, columns], y[:, columns]
                rnn.tbptt(model.cell, mg.tensor(x, device=device), k1=4,
                          loss_fn=lambda out, w: loss_of(model.head(out), y[w.start:w.stop]),
                          on_step=lambda w, loss: update(),
                          checkpoint_every=case.get("checkpoint_every"))
                continue
            x, y = batch(step)
            x, y = x[:, columns], y[:, columns]
            loss = loss_of(model(mg.tensor(x, device=device), case.get("checkpoint_every")), y)
            if poison and step == case.get("poison_step"):
                loss = loss * float("nan")
            loss.backward()
            update()
    return {"params": model.state_dict(), "norms": norms, "took": took,
            "skipped": guard.skipped}


class ThreeLinears(mg.nn.Module):
    """Three Linear(3, 2) layers, float64: rank 0 uses a and b, rank 1 only a, nobody c."""

    def __init__(self):
        super().__init__()
        self.a, self.b, self.c = (mg.nn.Linear(3, 2, rng=seed) for seed in (10, 11, 12))
        self.to(dtype="float64")


def partial_loss(model, rank):
    """The loss of `rank`: b gets a gradient on rank 0 only, c on no rank."""
    x = mg.tensor(np.random.default_rng(50 + rank).standard_normal((4, 3)))
    out = model.a(x) if rank == 1 else model.a(x) + model.b(x)
    return (out * out).mean()


LENGTHS = np.array([6, 1, 3, 5, 2, 6, 4, 1])  # (B,): rank 0's shard has 15 real steps, rank 1's 13


def masked_logits(model, columns):
    """Logits (T, len(columns), C) of the columns of batch 0, each sequence to its length."""
    x, _ = batch(0)
    out, _ = rnn.unroll(model.cell, mg.tensor(x[:, columns]), lengths=LENGTHS[columns])
    return model.head(out)
