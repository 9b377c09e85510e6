"""Frequency discrimination with the Phased LSTM (Neil, Pfeiffer & Liu 2016): is the period of a
sine wave inside a target band? The waves are sampled at regular times, or at irregular,
asynchronous times (each sequence its own sorted random times). A Phased LSTM, whose units
update only while their learned time gate is open, against a plain LSTM of the same width.

Both models see the same time information: the Phased LSTM reads the timestamp as its gate's
clock (the cell's last input feature); the LSTM reads the time since the previous sample as an
extra input, as the LSTM baselines of the paper did. A balanced class split makes 50% chance.

    python -m demos.phased_lstm            # a few minutes on 2 cores
    python -m demos.phased_lstm --quick    # seconds: a check that it learns at all
"""
from __future__ import annotations

import json

import numpy as np

import minigrad as mg
import rnn
from demos import _common

BAND = (5.0, 6.0)     # the target band of periods
PERIODS = (2.0, 12.0)  # all periods drawn from here, half inside the band
SAMPLINGS = ("regular", "irregular")
MODELS = ("phased_lstm", "lstm")


def waves(rng, n: int, steps: int, duration: float, sampling: str):
    """n sine waves sin(2 pi t / P + phase), half with P in BAND (label 1), half outside.
    Returns values (T, n, 1), times (T, n, 1) and labels (n,)."""
    labels = rng.permutation(np.arange(n) % 2)
    inside = rng.uniform(*BAND, size=n)
    # outside the band: uniform over [2, 5) and (6, 12], chosen in proportion to their widths
    low_width, high_width = BAND[0] - PERIODS[0], PERIODS[1] - BAND[1]
    u = rng.uniform(0.0, low_width + high_width, size=n)
    outside = np.where(u < low_width, PERIODS[0] + u, BAND[1] + (u - low_width))
    period = np.where(labels == 1, inside, outside)
    phase = rng.uniform(0.0, 2 * np.pi, size=n)
    if sampling == "regular":
        times = np.repeat(np.linspace(0.0, duration, steps)[:, None], n, axis=1)
    else:  # asynchronous: every sequence has its own random sorted times
        times = np.sort(rng.uniform(0.0, duration, size=(steps, n)), axis=0)
    values = np.sin(2 * np.pi * times / period + phase)
    return (values[:, :, None].astype(np.float32), times[:, :, None].astype(np.float32),
            labels.astype(np.int64))


def inputs_for(model: str, values, times):
    """The Phased LSTM reads (value, timestamp); the LSTM reads (value, time since last sample)."""
    if model == "phased_lstm":
        return np.concatenate([values, times], axis=2)
    gaps = np.diff(times, axis=0, prepend=times[:1])
    return np.concatenate([values, gaps], axis=2)


class Classifier(mg.nn.Module):
    """(T, B, 2) -> two logits (B, 2) from the final hidden state."""

    def __init__(self, model: str, hidden: int, rng):
        super().__init__()
        self.cell = (rnn.PhasedLSTMCell(1, hidden, rng=rng) if model == "phased_lstm"
                     else rnn.LSTMCell(2, hidden, rng=rng))
        self.head = mg.nn.Linear(hidden, 2, rng=rng)

    def forward(self, x):
        _, (h, _) = rnn.unroll(self.cell, x)
        return self.head(h)


def accuracy(model, x, y) -> float:
    model.eval()  # the Phased LSTM's closed gates stop leaking (alpha = 0), as in the paper
    with mg.no_grad():
        acc = float((model(mg.tensor(x)).numpy().argmax(axis=1) == y).mean())
    model.train()
    return acc


def main(argv=None) -> dict:
    p = _common.parser("phased_lstm", __doc__.split("\n\n")[0])
    p.add_argument("--steps", type=int, default=1000, help="updates per model and sampling")
    p.add_argument("--samples", type=int, default=64, help="time steps per sequence")
    p.add_argument("--duration", type=float, default=32.0, help="time span of every sequence")
    p.add_argument("--hidden", type=int, default=24)
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--lr", type=float, default=1e-2)
    p.add_argument("--test", type=int, default=500, help="held-out waves per sampling")
    p.add_argument("--seeds", type=int, default=3, help="runs per model and sampling")
    p.add_argument("--every", type=int, default=100, help="updates between held-out evaluations")
    p.add_argument("--quick", action="store_true",
                   help="seconds: 1 seed, 120 updates, 32 samples, 16 units, 200 held-out waves")
    return _common.launch(p, argv, run)


def train(name: str, sampling: str, seed: int, test, args):
    """One model trained on fresh waves from `seed`; its held-out curve [(update, accuracy)]
    and its training losses."""
    rng = _common.seed(seed)
    model = Classifier(name, args.hidden, rng)
    opt = mg.optim.Adam(model.parameters(), lr=args.lr)
    test_x, test_y = inputs_for(name, test[0], test[1]), test[2]
    curve, losses = [], []
    bar = _common.progress(args.steps, f"{name}/{sampling} seed {seed}", args.quiet)
    for step in bar:
        values, times, y = waves(rng, args.batch, args.samples, args.duration, sampling)
        loss = mg.cross_entropy(model(mg.tensor(inputs_for(name, values, times))), y)
        opt.zero_grad()
        loss.backward()
        mg.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        losses.append(float(loss.item()))
        if (step + 1) % args.every == 0 or step + 1 == args.steps:
            curve.append((step + 1, accuracy(model, test_x, test_y)))
            bar.set_postfix(loss=f"{np.mean(losses[-args.every:]):.3f}",
                            acc=f"{curve[-1][1]:.3f}")
    return model, curve, losses


def run(args) -> dict:
    if args.quick:
        args.steps, args.samples, args.hidden, args.test, args.every = 120, 32, 16, 200, 40
        args.seeds = 1
    _, out, clock = _common.start(args)
    results = {"band": BAND, "periods": PERIODS, "steps": args.steps, "samples": args.samples,
               "duration": args.duration, "hidden": args.hidden, "seeds": args.seeds,
               "accuracy": {}, "std": {}, "runs": {}, "curves": {}}
    models = {}
    for sampling in SAMPLINGS:
        # held-out waves from a seed of their own, the same for both models and every seed
        test = waves(np.random.default_rng(10_000 + args.seed), args.test, args.samples,
                     args.duration, sampling)
        for name in MODELS:
            key, runs = f"{name}/{sampling}", []
            for s in range(args.seeds):
                model, curve, losses = train(name, sampling, args.seed + s, test, args)
                runs.append(curve[-1][1])
                if s == 0:  # the figures show the first seed
                    results["curves"][key], models[key] = curve, model
                    results[f"{key}/loss_first"] = float(np.mean(losses[:args.every]))
                    results[f"{key}/loss_last"] = float(np.mean(losses[-args.every:]))
            results["runs"][key] = runs
            results["accuracy"][key] = float(np.mean(runs))
            results["std"][key] = float(np.std(runs))
    print(f"held-out accuracy, mean ± std over {args.seeds} seed(s) (chance 50%):")
    for key, acc in results["accuracy"].items():
        print(f"  {key:24s} {100 * acc:6.2f} ± {100 * results['std'][key]:.2f}%  "
              f"(runs: {', '.join(f'{100 * a:.1f}' for a in results['runs'][key])})")
    results["seconds"] = clock()
    if not args.no_plots:
        plot_curves(results["curves"], out / "learning_curves.png")
        plot_open_phases(models["phased_lstm/regular"].cell, args.duration,
                         out / "open_phases.png")
    with open(out / "results.json", "w") as f:
        json.dump(results, f, indent=1)
    print(f"done in {results['seconds']:.1f} s; figures and results in {out}/")
    return results


def plot_curves(curves, path):
    plt = _common.pyplot()
    fig, ax = plt.subplots(figsize=(6, 3.5))
    for key, curve in curves.items():
        steps, acc = zip(*curve)
        ax.plot(steps, acc, ls="-" if key.startswith("phased") else "--", label=key)
    ax.axhline(0.5, color="gray", lw=0.8, label="chance")
    ax.set(xlabel="update", ylabel="held-out accuracy", ylim=(0.4, 1.0),
           title=f"frequency discrimination: period in {BAND}? (first seed)")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_open_phases(cell, duration, path):
    """Every unit's time gate k(t) over one sequence's time span (eval mode: no leak), units
    sorted by their learned period tau."""
    cell.eval()
    t = np.linspace(0.0, duration, 800, dtype=np.float32)
    with mg.no_grad():
        k = cell.time_gate(mg.tensor(t[:, None])).numpy().T  # (H, 800)
    order = np.argsort(cell.tau.numpy())
    plt = _common.pyplot()
    fig, ax = plt.subplots(figsize=(7, 3.5))
    ax.imshow(k[order], aspect="auto", cmap="Greys", extent=(0, duration, len(order), 0),
              interpolation="nearest")
    taus = cell.tau.numpy()[order]
    ax.set(xlabel="time", ylabel="unit (sorted by period tau)",
           title=f"learned open phases (tau {taus.min():.2f} .. {taus.max():.2f}; black = open)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


if __name__ == "__main__":
    main()
