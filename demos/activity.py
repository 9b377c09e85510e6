"""Activity recognition from a smartwatch's accelerometer and gyroscope, where the test data are
noisier than the training data, so regularisation is the point. A GRU classifier is trained on
the clean UEA BasicMotions recordings (6 channels, 100 samples at 10 Hz, 4 activities: standing,
running, walking, badminton; 40 training and 40 test series, shipped in demos/data/basic_motions)
with each regulariser in turn, and tested on the test series with added noise: Gaussian noise of
several strengths, dropped samples (a sensor that holds its last reading) and jittered sample
times.

Methods: none, L2 and L1 weight penalties (`mg.nn.l2_penalty`, `mg.nn.l1_penalty`), Gaussian
input noise during training, data augmentation (jitter, scaling, time warping), dropout on the
final state, early stopping on a validation split (`mg.optim.EarlyStopping`), all of these
together, and the three that helped most alone (picked on the test table, so optimistic). Every
method trains on the same 32 series (8 held out for early stopping), with the
same budget, over several seeds. Baselines: chance (25%) and logistic regression on per-channel
mean and standard deviation, under the same noise.

    python -m demos.activity            # a few minutes on 2 cores
    python -m demos.activity --quick    # seconds: a check that it learns at all
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

import minigrad as mg
import rnn
from demos import _common

DATA = Path(__file__).parent / "data" / "basic_motions"
METHODS = {  # name -> the regularisers it uses
    "none": (),
    "L2": ("l2",),
    "L1": ("l1",),
    "input noise": ("input_noise",),
    "augmentation": ("augment",),
    "dropout": ("dropout",),
    "early stopping": ("early_stop",),
    "all combined": ("l2", "input_noise", "augment", "dropout", "early_stop"),
    # picked after seeing the single methods' test accuracy: its figure is optimistic
    "noise + augmentation + dropout": ("input_noise", "augment", "dropout"),
}
NOISES = {  # name -> (kind, strength) applied to the standardised test series
    "clean": ("gauss", 0.0),
    "gauss 0.5": ("gauss", 0.5),
    "gauss 1": ("gauss", 1.0),
    "gauss 2": ("gauss", 2.0),
    "drop 50%": ("drop", 0.5),
    "drop 80%": ("drop", 0.8),
    "time jitter 2": ("jitter", 2.0),
}


# --- data -----------------------------------------------------------------------------------

def read_ts(path: Path):
    """A .ts file of the UEA archive: series (N, C, T) float32 and class names (N,)."""
    series, labels, started = [], [], False
    for line in path.read_text().splitlines():
        if not started:
            started = line.strip().lower() == "@data"
            continue
        if line.strip():
            *channels, label = line.strip().split(":")
            series.append([[float(v) for v in ch.split(",")] for ch in channels])
            labels.append(label)
    return np.array(series, dtype=np.float32), np.array(labels)


def load(val_per_class: int = 2, seed: int = 0):
    """Standardised time-major series (T, N, 6) and labels for train, validation and test.
    The validation series (val_per_class of each activity) are taken from the training file;
    the mean and std per channel come from the remaining training series only."""
    x_train, names = read_ts(DATA / "BasicMotions_TRAIN.ts")
    x_test, test_names = read_ts(DATA / "BasicMotions_TEST.ts")
    classes = sorted(set(names))
    y_train = np.array([classes.index(n) for n in names])
    y_test = np.array([classes.index(n) for n in test_names])
    rng = np.random.default_rng(seed)
    val = np.concatenate([rng.choice(np.flatnonzero(y_train == c), val_per_class, replace=False)
                          for c in range(len(classes))])
    fit = np.setdiff1d(np.arange(len(y_train)), val)
    mean = x_train[fit].mean(axis=(0, 2), keepdims=True)
    std = x_train[fit].std(axis=(0, 2), keepdims=True)

    def prep(x):  # (N, C, T) -> standardised (T, N, C)
        return ((x - mean) / std).transpose(2, 0, 1).astype(np.float32)

    return ((prep(x_train[fit]), y_train[fit]), (prep(x_train[val]), y_train[val]),
            (prep(x_test), y_test), classes)


def corrupt(x, kind: str, strength: float, rng):
    """Test-time noise on (T, N, C): 'gauss' adds N(0, strength^2); 'drop' loses each sample
    (all channels) with probability `strength`, the sensor holding its last reading; 'jitter'
    reads each sample at a time shifted by N(0, strength^2) steps (linear interpolation)."""
    T = x.shape[0]
    if kind == "gauss":
        return x + strength * rng.standard_normal(x.shape).astype(np.float32)
    if kind == "drop":
        kept = rng.random(x.shape[:2]) >= strength
        kept[0] = True
        last = np.maximum.accumulate(np.where(kept, np.arange(T)[:, None], 0), axis=0)
        return np.take_along_axis(x, last[:, :, None], axis=0)
    times = np.clip(np.arange(T)[:, None] + strength * rng.standard_normal(x.shape[:2]), 0,
                    T - 1)
    return interpolate(x, times)


def interpolate(x, times):
    """x (T, N, C) read at fractional times (T, N) by linear interpolation."""
    lo = np.floor(times).astype(np.int64)
    hi = np.minimum(lo + 1, x.shape[0] - 1)
    w = (times - lo)[:, :, None].astype(np.float32)
    return (1 - w) * np.take_along_axis(x, lo[:, :, None], 0) + \
        w * np.take_along_axis(x, hi[:, :, None], 0)


def augment(x, rng):
    """Training-time augmentation of a batch (T, B, C): jitter (noise 0.1), scaling (a factor
    N(1, 0.2^2) per series and channel) and time warping (a smooth random speed: 4 knots,
    N(1, 0.2^2), the warped clock stretched back to span the whole series)."""
    T, B, C = x.shape
    x = x * rng.normal(1.0, 0.2, size=(1, B, C)).astype(np.float32)
    knots = rng.normal(1.0, 0.2, size=(4, B)).clip(0.2)
    speed = np.stack([np.interp(np.linspace(0, 3, T), np.arange(4), knots[:, b])
                      for b in range(B)], axis=1)
    clock = np.cumsum(speed, axis=0)
    clock = (clock - clock[0]) / (clock[-1] - clock[0]) * (T - 1)
    return interpolate(x, clock) + 0.1 * rng.standard_normal(x.shape).astype(np.float32)


# --- model ----------------------------------------------------------------------------------

class Classifier(mg.nn.Module):
    """Series (T, B, 6) -> activity logits (B, 4) from the GRU's final state, with dropout on
    that state (p = 0 for the methods without it)."""

    def __init__(self, hidden: int, classes: int, dropout: float, rng):
        super().__init__()
        self.cell = rnn.GRUCell(6, hidden, rng=rng)
        self.drop = mg.nn.Dropout(dropout)
        self.head = mg.nn.Linear(hidden, classes, rng=rng)

    def forward(self, x):
        _, h = rnn.unroll(self.cell, x)
        return self.head(self.drop(h))


def predict(model, x):
    model.eval()
    with mg.no_grad():
        logits = model(mg.tensor(x)).numpy()
    model.train()
    return logits


def train(method: str, data, args, seed: int, desc: str):
    """One model trained with `method`'s regularisers; returns it and its validation curve."""
    uses = METHODS[method]
    (x, y), (x_val, y_val) = data
    rng = _common.seed(seed)
    model = Classifier(args.hidden, 4, args.dropout if "dropout" in uses else 0.0, rng)
    opt = mg.optim.Adam(model.parameters(), lr=args.lr)
    stopper = mg.optim.EarlyStopping(args.patience, mode="min")
    per_epoch = -(-x.shape[1] // args.batch)
    curve, order = [], np.array([], dtype=np.int64)
    bar = _common.progress(args.steps, desc, args.quiet)
    for step in bar:
        if len(order) < args.batch:
            order = np.concatenate([order, rng.permutation(x.shape[1])])
        k, order = order[:args.batch], order[args.batch:]
        xb = x[:, k]
        if "augment" in uses:
            xb = augment(xb, rng)
        if "input_noise" in uses:
            xb = xb + args.input_noise * rng.standard_normal(xb.shape).astype(np.float32)
        loss = mg.cross_entropy(model(mg.tensor(xb)), y[k])
        if "l2" in uses:
            loss = loss + mg.nn.l2_penalty(mg.nn.matrices(model), args.l2)
        if "l1" in uses:
            loss = loss + mg.nn.l1_penalty(mg.nn.matrices(model), args.l1)
        opt.zero_grad()
        loss.backward()
        mg.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        if (step + 1) % per_epoch == 0:  # once an epoch: the validation loss
            val_loss = float(mg.cross_entropy(mg.tensor(predict(model, x_val)), y_val).item())
            curve.append(val_loss)
            bar.set_postfix(loss=f"{loss.item():.3f}", val=f"{val_loss:.3f}", refresh=False)
            if stopper.update(val_loss, model) and "early_stop" in uses:
                break
    if "early_stop" in uses and stopper.best_state is not None:
        stopper.restore(model)
    return model, curve, step + 1


def features(x):
    """The baseline's features: per-channel mean and standard deviation of (T, N, C) -> (N, 2C)."""
    return np.concatenate([x.mean(axis=0), x.std(axis=0)], axis=1)


def main(argv=None) -> dict:
    p = _common.parser("activity", __doc__.split("\n\n")[0])
    p.add_argument("--steps", type=int, default=600, help="most updates per run")
    p.add_argument("--seeds", type=int, default=3)
    p.add_argument("--hidden", type=int, default=32)
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--lr", type=float, default=5e-3)
    p.add_argument("--l2", type=float, default=1e-3, help="weight of the L2 penalty")
    p.add_argument("--l1", type=float, default=1e-4, help="weight of the L1 penalty")
    p.add_argument("--input-noise", type=float, default=0.5, help="std of training noise")
    p.add_argument("--dropout", type=float, default=0.3)
    p.add_argument("--patience", type=int, default=20, help="epochs without a better val loss")
    p.add_argument("--methods", nargs="+", choices=list(METHODS), default=list(METHODS))
    p.add_argument("--quick", action="store_true",
                   help="seconds: 3 methods, 1 seed, 60 updates, 16 units")
    return _common.launch(p, argv, run)


def run(args) -> dict:
    if args.quick:
        args.methods, args.seeds, args.steps, args.hidden = ["none", "L2", "early stopping"], \
            1, 60, 16
    _, out, clock = _common.start(args)
    (x, y), (x_val, y_val), (x_test, y_test), classes = load(seed=args.seed)
    # every method is tested on the same noisy copies of the test series
    noise_rng = np.random.default_rng(1000 + args.seed)
    tests = {name: corrupt(x_test, kind, s, noise_rng) for name, (kind, s) in NOISES.items()}

    from sklearn.linear_model import LogisticRegression
    base = LogisticRegression(max_iter=5000).fit(features(x), y)
    results = {"classes": classes, "train_series": len(y), "val_series": len(y_val),
               "test_series": len(y_test), "noises": NOISES, "steps": args.steps,
               "baseline": {n: float(base.score(features(t), y_test)) for n, t in tests.items()},
               "chance": 0.25, "accuracy": {}, "curves": {}, "updates": {}}
    for method in args.methods:
        accs = {n: [] for n in NOISES}
        for s in range(args.seeds):
            model, curve, updates = train(method, ((x, y), (x_val, y_val)), args, args.seed + s,
                                          f"{method} seed {args.seed + s}")
            for n, t in tests.items():
                accs[n].append(float((predict(model, t).argmax(axis=1) == y_test).mean()))
            results["curves"][f"{method}/{s}"] = curve
            results["updates"][f"{method}/{s}"] = updates
        results["accuracy"][method] = {n: {"mean": float(np.mean(a)), "std": float(np.std(a)),
                                           "runs": a} for n, a in accs.items()}
    table = markdown_table(results)
    print(table)
    (out / "table.md").write_text(table + "\n")
    results["seconds"] = clock()
    if not args.no_plots:
        plot(results, out / "accuracy.png")
    with open(out / "results.json", "w") as f:
        json.dump(results, f, indent=1)
    print(f"done in {results['seconds']:.1f} s; figures and results in {out}/")
    return results


def markdown_table(results) -> str:
    lines = ["| method | " + " | ".join(NOISES) + " |", "|---|" + "---|" * len(NOISES)]
    for method, row in results["accuracy"].items():
        cells = [f"{100 * row[n]['mean']:.1f} ± {100 * row[n]['std']:.1f}" for n in NOISES]
        lines.append(f"| {method} | " + " | ".join(cells) + " |")
    lines.append("| logistic regression (mean, std per channel) | " + " | ".join(
        f"{100 * results['baseline'][n]:.1f}" for n in NOISES) + " |")
    return "\n".join(lines)


def plot(results, path):
    plt = _common.pyplot()
    fig, ax = plt.subplots(figsize=(8, 4))
    names = list(NOISES)
    for k, (method, row) in enumerate(results["accuracy"].items()):
        mean = [row[n]["mean"] for n in names]
        std = [row[n]["std"] for n in names]
        ax.errorbar(np.arange(len(names)) + 0.05 * (k - 3), mean, yerr=std, marker="o",
                    ms=3, capsize=2, label=method)
    ax.plot(names, [results["baseline"][n] for n in names], "k:", label="logistic regression")
    ax.axhline(0.25, color="gray", lw=0.8, label="chance")
    ax.set_xticks(np.arange(len(names)), names, rotation=20)
    ax.set(ylabel="test accuracy (mean ± std over seeds)", ylim=(0, 1.02),
           title="BasicMotions: trained clean, tested noisy")
    ax.legend(fontsize=7, ncol=2)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


if __name__ == "__main__":
    main()
