"""An RNN learns to add binary numbers bit by bit, least significant bit first.

At step t the RNN reads bit t of a and bit t of b and outputs bit t of a + b; the carry is the
state it must learn to keep. Trained on numbers of at most 8 bits, the same small network then
adds 64-bit (and 128-bit) numbers exactly: it learned the rule, not a table. Beside it, the
lecture's contrast: an MLP given the same training budget on fixed-width 8-bit pairs, scored on
held-out 8-bit pairs, which cannot even take a 9-bit input.

    python -m demos.binary_addition            # under a minute on 2 cores
"""
from __future__ import annotations

import json

import numpy as np

import minigrad as mg
import rnn
from demos import _common

WIDTHS = (8, 16, 32, 64, 128)


def to_bits(values, width: int) -> np.ndarray:
    """Python ints (N,) -> bits (width, N), least significant first (time-major)."""
    return np.array([[(v >> t) & 1 for v in values] for t in range(width)], dtype=np.float32)


def random_ints(rng: np.random.Generator, n: int, width: int) -> list:
    """n uniform random non-negative ints of at most `width` bits, as exact Python ints."""
    words = rng.integers(0, 2 ** 32, size=(n, (width + 31) // 32), dtype=np.uint64)
    out = []
    for row in words:
        v = 0
        for w in row:
            v = (v << 32) | int(w)
        out.append(v & ((1 << width) - 1))
    return out


def addition_batch(a: list, b: list, width: int):
    """Inputs (width+1, N, 2) and target bits (width+1, N) for a + b; one extra step, fed zeros,
    lets the RNN write the final carry. The targets come from Python's exact integer sum."""
    x = np.zeros((width + 1, len(a), 2), dtype=np.float32)
    x[:width, :, 0] = to_bits(a, width)
    x[:width, :, 1] = to_bits(b, width)
    y = to_bits([p + q for p, q in zip(a, b)], width + 1)
    return x, y


class Adder(mg.nn.Module):
    """An Elman RNN (tanh) and a linear read-out: bits (T, B, 2) -> sum-bit logits (T, B).

    While training, Gaussian noise of std `noise` is added to the state after every step (through
    unroll's `state_hook`): the carry must then sit in a stable attractor, not on a knife edge,
    which is what lets the rule run on for 64 or 128 steps instead of the 9 it was trained on.
    """

    def __init__(self, hidden: int, rng, noise: float = 0.0):
        super().__init__()
        self.cell = rnn.RNNCell(2, hidden, rng=rng)
        self.head = mg.nn.Linear(hidden, 1, rng=rng)
        self.noise, self.rng = noise, rng

    def forward(self, x):
        hook = None
        if self.training and self.noise > 0:
            def hook(t, h):
                return h + mg.tensor(self.rng.normal(0.0, self.noise, h.shape).astype(h.dtype))
        out, _ = rnn.unroll(self.cell, x, state_hook=hook)
        return self.head(out)[..., 0]


class MLP(mg.nn.Module):
    """Fixed-width adder: the 16 bits of two 8-bit numbers in, the 9 bits of their sum out."""

    def __init__(self, width: int, hidden: int, rng):
        super().__init__()
        self.width = width
        self.net = mg.nn.Sequential(mg.nn.Linear(2 * width, hidden, rng=rng), mg.nn.Tanh(),
                                    mg.nn.Linear(hidden, hidden, rng=rng), mg.nn.Tanh(),
                                    mg.nn.Linear(hidden, width + 1, rng=rng))

    def forward(self, x):
        return self.net(x)


def mlp_batch(a: list, b: list, width: int):
    """Flat inputs (N, 2 width) and targets (N, width + 1) for the MLP."""
    x, y = addition_batch(a, b, width)
    return np.concatenate([x[:width, :, 0].T, x[:width, :, 1].T], axis=1), y.T


def exact_match(logits, y) -> float:
    """Share of sums whose every bit is right (the sum axis is the first for the RNN)."""
    return float(((logits.numpy() > 0) == (y > 0.5)).all(axis=0).mean())


def split_pairs(rng, n_test: int):
    """All 65,536 pairs of 8-bit numbers, split into training pairs and n_test held-out ones."""
    order = rng.permutation(256 * 256)
    test, train = order[:n_test], order[n_test:]
    return (train // 256, train % 256), ([int(v) for v in test // 256],
                                         [int(v) for v in test % 256])


def train(model, steps, batch, lr, make_batch, loss_fn, desc, quiet):
    opt = mg.optim.Adam(model.parameters(), lr=lr)
    sched = mg.optim.CosineAnnealingLR(opt, T_max=steps)
    losses = []
    bar = _common.progress(steps, desc, quiet)
    for step in bar:
        x, y = make_batch()
        loss = loss_fn(model(mg.tensor(x)), mg.tensor(y))
        opt.zero_grad()
        loss.backward()
        mg.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        sched.step()
        losses.append(float(loss.item()))
        if step % 20 == 0:
            bar.set_postfix(loss=f"{np.mean(losses[-20:]):.4f}")
    return losses


def main(argv=None) -> dict:
    p = _common.parser("binary_addition", __doc__.split("\n\n")[0])
    p.add_argument("--steps", type=int, default=3000, help="optimizer steps (both models)")
    p.add_argument("--batch", type=int, default=64, help="pairs per step")
    p.add_argument("--hidden", type=int, default=16, help="RNN hidden units")
    p.add_argument("--mlp-hidden", type=int, default=128, help="MLP hidden units per layer")
    p.add_argument("--lr", type=float, default=0.02)
    p.add_argument("--noise", type=float, default=0.2, help="state noise while training")
    p.add_argument("--carry-share", type=float, default=0.5,
                   help="share of training pairs drawn with long carry chains")
    p.add_argument("--train-bits", type=int, default=8, help="widest training number")
    p.add_argument("--test-pairs", type=int, default=1000, help="random pairs per test width")
    p.add_argument("--widths", type=int, nargs="+", default=list(WIDTHS))
    return _common.launch(p, argv, run)


def run(args) -> dict:
    rng, out, clock = _common.start(args)
    W = args.train_bits
    if W != 8:
        raise ValueError(f"binary_addition: the MLP contrast needs --train-bits 8, got {W}")
    (train_a, train_b), (test_a, test_b) = split_pairs(rng, args.test_pairs)

    held_out = np.zeros(256 * 256, dtype=bool)
    held_out[np.array(test_a) * 256 + np.array(test_b)] = True

    def train_pairs():
        """A batch of training pairs: uniform ones, and a share whose b is nearly the complement
        of a (bits flipped with probability 0.15), which makes long carry chains common; pairs
        held out for testing are never used."""
        k = rng.integers(0, len(train_a), args.batch)
        a, b = train_a[k].copy(), train_b[k].copy()
        flips = (rng.random((args.batch, W)) < 0.15) @ (1 << np.arange(W))
        chain = (~a & 255) ^ flips
        use = (rng.random(args.batch) < args.carry_share) & ~held_out[a * 256 + chain]
        b[use] = chain[use]
        return a, b

    def rnn_batch():
        # a random width per batch (1..W bits) so the RNN also sees short sums end with a carry
        a, b = train_pairs()
        width = int(rng.integers(1, W + 1))
        mask = (1 << width) - 1
        return addition_batch([int(v) & mask for v in a], [int(v) & mask for v in b], width)

    def mlp_train_batch():
        a, b = train_pairs()
        return mlp_batch([int(v) for v in a], [int(v) for v in b], W)

    bce = mg.binary_cross_entropy_with_logits
    adder = Adder(args.hidden, rng, args.noise)
    rnn_losses = train(adder, args.steps, args.batch, args.lr, rnn_batch, bce, "RNN adder",
                       args.quiet)
    rnn_seconds = clock()
    mlp = MLP(W, args.mlp_hidden, rng)
    mlp_losses = train(mlp, args.steps, args.batch, args.lr / 4, mlp_train_batch, bce, "MLP adder",
                       args.quiet)

    results = {"rnn_loss_first": float(np.mean(rnn_losses[:20])),
               "rnn_loss_last": float(np.mean(rnn_losses[-20:])),
               "mlp_loss_first": float(np.mean(mlp_losses[:20])),
               "mlp_loss_last": float(np.mean(mlp_losses[-20:])),
               "rnn_train_seconds": rnn_seconds, "accuracy": {}}
    adder.eval()
    with mg.no_grad():
        x, y = addition_batch(test_a, test_b, W)
        results["rnn_heldout8"] = exact_match(adder(mg.tensor(x)), y)
        xm, ym = mlp_batch(test_a, test_b, W)
        results["mlp_heldout8"] = exact_match(mlp(mg.tensor(xm)).T, ym.T)
        print(f"RNN (hidden {args.hidden}, trained on <= {W}-bit numbers), exact sums on "
              f"{args.test_pairs} random pairs:")
        for width in args.widths:
            a = random_ints(rng, args.test_pairs, width)
            b = random_ints(rng, args.test_pairs, width)
            x, y = addition_batch(a, b, width)
            acc = exact_match(adder(mg.tensor(x)), y)
            results["accuracy"][width] = acc
            print(f"  {width:4d}-bit: {100 * acc:6.2f}%")
        try:
            mlp(mg.zeros(1, 2 * (W + 1)))
            results["mlp_takes_9_bits"] = True
        except ValueError as e:
            results["mlp_takes_9_bits"] = False
            results["mlp_9_bit_error"] = str(e)
    print(f"Held-out 8-bit pairs (never trained on), exact sums: RNN "
          f"{100 * results['rnn_heldout8']:.2f}%, MLP {100 * results['mlp_heldout8']:.2f}% "
          f"(same {args.steps} steps x {args.batch} pairs)")
    print("MLP on a 9-bit pair: " + ("accepted?!" if results["mlp_takes_9_bits"] else
                                     f"impossible ({results.get('mlp_9_bit_error')})"))
    results["seconds"] = clock()
    if not args.no_plots:
        plot(rnn_losses, mlp_losses, results, out / "loss.png")
    with open(out / "results.json", "w") as f:
        json.dump(results, f, indent=1)
    print(f"done in {results['seconds']:.1f} s; figures and results in {out}/")
    return results


def plot(rnn_losses, mlp_losses, results, path):
    plt = _common.pyplot()
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 3.8))
    ax1.semilogy(rnn_losses, label="RNN", lw=0.8)
    ax1.semilogy(mlp_losses, label="MLP", lw=0.8)
    ax1.set(xlabel="step", ylabel="bit cross-entropy (nats)", title="training loss")
    ax1.legend()
    widths = list(results["accuracy"])
    ax2.bar([str(w) for w in widths], [100 * results["accuracy"][w] for w in widths])
    ax2.set(xlabel="bits per number", ylabel="exact sums (%)", ylim=(0, 101),
            title="RNN trained on <= 8 bits")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


if __name__ == "__main__":
    main()
