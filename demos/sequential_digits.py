"""Handwritten digits read as sequences: an LSTM or GRU classifies scikit-learn's 8x8 digits
from its final state, after reading the image one row at a time (8 steps of 8 pixels), or one
pixel at a time with --pixels (64 steps of 1 pixel: a long-memory test).

Logistic regression and an RBF support-vector machine, fitted with scikit-learn on the same
train/test split (25% held out, stratified), are the baselines printed beside our accuracy.

    python -m demos.sequential_digits              # under a minute on 2 cores
    python -m demos.sequential_digits --cell lstm --pixels
"""
from __future__ import annotations

import json

import numpy as np

import minigrad as mg
import rnn
from demos import _common

CELLS = {"gru": rnn.GRUCell, "lstm": rnn.LSTMCell}


def load(pixels: bool = False, split_seed: int = 0):
    """Images (N, 64) in [0, 1] as time-major sequences (T, N, I), labels (N,), split in train
    and test: ((x_train, y_train), (x_test, y_test), (flat_train, flat_test))."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split
    X, y = load_digits(return_X_y=True)
    X = (X / 16.0).astype(np.float32)
    a, b, ya, yb = train_test_split(X, y, test_size=0.25, random_state=split_seed, stratify=y)

    def seq(flat):  # (N, 64) -> (8, N, 8) rows, or (64, N, 1) pixels
        return (flat.T[:, :, None] if pixels else flat.reshape(-1, 8, 8).transpose(1, 0, 2))

    return (seq(a), ya.astype(np.int64)), (seq(b), yb.astype(np.int64)), (a, b)


class Classifier(mg.nn.Module):
    """Sequence (T, B, I) -> class logits (B, 10) from the cell's final hidden state h_T."""

    def __init__(self, cell: str, inputs: int, hidden: int, rng):
        super().__init__()
        self.cell = CELLS[cell](inputs, hidden, rng=rng)
        self.head = mg.nn.Linear(hidden, 10, rng=rng)

    def forward(self, x):
        _, state = rnn.unroll(self.cell, x)
        h = state[0] if isinstance(state, tuple) else state
        return self.head(h)


def accuracy(model, x, y) -> float:
    with mg.no_grad():
        return float((model(mg.tensor(x)).numpy().argmax(axis=1) == y).mean())


def baselines(flat_train, y_train, flat_test, y_test) -> dict:
    from sklearn.linear_model import LogisticRegression
    from sklearn.svm import SVC
    lr = LogisticRegression(max_iter=5000).fit(flat_train, y_train)
    svm = SVC().fit(flat_train, y_train)
    return {"logistic_regression": float(lr.score(flat_test, y_test)),
            "svm_rbf": float(svm.score(flat_test, y_test))}


def main(argv=None) -> dict:
    p = _common.parser("sequential_digits", __doc__.split("\n\n")[0])
    p.add_argument("--cell", choices=sorted(CELLS), default="gru")
    p.add_argument("--pixels", action="store_true", help="64 steps of one pixel, not 8 rows")
    p.add_argument("--hidden", type=int, default=64)
    p.add_argument("--epochs", type=int, default=40)
    p.add_argument("--steps", type=int, default=None,
                   help="stop after this many updates (default: all epochs)")
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--lr", type=float, default=1e-2)
    p.add_argument("--no-baselines", action="store_true", help="skip the scikit-learn models")
    return _common.launch(p, argv, run)


def run(args) -> dict:
    rng, out, clock = _common.start(args)
    (x_train, y_train), (x_test, y_test), (flat_train, flat_test) = load(args.pixels)
    N = x_train.shape[1]
    per_epoch = -(-N // args.batch)
    steps = args.steps if args.steps is not None else args.epochs * per_epoch

    model = Classifier(args.cell, x_train.shape[2], args.hidden, rng)
    opt = mg.optim.Adam(model.parameters(), lr=args.lr)
    sched = mg.optim.CosineAnnealingLR(opt, T_max=steps)
    losses, order = [], np.array([], dtype=np.int64)
    bar = _common.progress(steps, f"{args.cell} on digits", args.quiet)
    for step in bar:
        if len(order) < args.batch:  # a new epoch: a fresh shuffle
            order = np.concatenate([order, rng.permutation(N)])
        k, order = order[:args.batch], order[args.batch:]
        loss = mg.cross_entropy(model(mg.tensor(x_train[:, k])), y_train[k])
        opt.zero_grad()
        loss.backward()
        mg.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        sched.step()
        losses.append(float(loss.item()))
        if step % 10 == 0:
            bar.set_postfix(loss=f"{np.mean(losses[-per_epoch:]):.4f}")
    results = {"cell": args.cell, "pixels": args.pixels, "steps": steps,
               "loss_first": float(np.mean(losses[:per_epoch])),
               "loss_last": float(np.mean(losses[-per_epoch:])),
               "train_accuracy": accuracy(model, x_train, y_train),
               "test_accuracy": accuracy(model, x_test, y_test),
               "train_seconds": clock()}
    layout = "64 pixels" if args.pixels else "8 rows of 8 pixels"
    print(f"{args.cell.upper()} ({args.hidden} units, {layout}): test accuracy "
          f"{100 * results['test_accuracy']:.2f}% on {len(y_test)} held-out digits "
          f"(train {100 * results['train_accuracy']:.2f}%)")
    if not args.no_baselines:
        results.update(baselines(flat_train, y_train, flat_test, y_test))
        print(f"same split: logistic regression {100 * results['logistic_regression']:.2f}%, "
              f"SVM (RBF) {100 * results['svm_rbf']:.2f}%")
    results["seconds"] = clock()
    if not args.no_plots:
        plot(losses, per_epoch, out / "loss.png")
    with open(out / "results.json", "w") as f:
        json.dump(results, f, indent=1)
    print(f"done in {results['seconds']:.1f} s; figures and results in {out}/")
    return results


def plot(losses, per_epoch, path):
    plt = _common.pyplot()
    fig, ax = plt.subplots(figsize=(6, 3.5))
    ax.semilogy(np.arange(len(losses)) / per_epoch, losses, lw=0.8)
    ax.set(xlabel="epoch", ylabel="cross-entropy (nats)", title="sequential digits: training")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


if __name__ == "__main__":
    main()
