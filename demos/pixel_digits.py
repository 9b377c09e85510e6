"""Images as sequences of pixels: a class-conditional LSTM generates scikit-learn's 8x8 digits
one pixel at a time, intensities quantised to a few levels (4 by default).

The pixel model reads the 64 pixels in raster order and predicts each from the ones before it,
the digit's class and the pixel's row and column (inputs at every step). Two baselines are fitted
on the same split (25% held out, stratified): independent pixels (one categorical per class and
pixel, counted with add-one smoothing) and a row-wise LSTM that reads whole rows and predicts the
8 pixels of the next row independently of each other. The demo reports the held-out negative
log-likelihood in bits per pixel of all three, draws a grid of samples per class with
`rnn.decoding.sample` (the model offers the step protocol), and completes the lower half of
held-out digits from their upper half (the upper half given as the decoder's `prefix`).

    python -m demos.pixel_digits                 # about 3.5 minutes on 2 cores (shared)
    python -m demos.pixel_digits --levels 2 --epochs 10
"""
from __future__ import annotations

import argparse
import json

import numpy as np

import minigrad as mg
import rnn
from demos import _common
from rnn.decoding import sample

SIDE = 8
PIXELS = SIDE * SIDE
CLASSES = 10


def load(levels: int, split_seed: int = 0):
    """Quantised images (N, 64) of ints in [0, levels) and labels (N,), split in train and test."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split
    X, y = load_digits(return_X_y=True)
    q = np.rint(X / 16.0 * (levels - 1)).astype(np.int64)
    a, b, ya, yb = train_test_split(q, y.astype(np.int64), test_size=0.25,
                                    random_state=split_seed, stratify=y)
    return (a, ya), (b, yb)


def conditions(labels: np.ndarray, positions: np.ndarray) -> np.ndarray:
    """One-hot class, row and column of the pixel to predict: (len(labels), 10 + 8 + 8)."""
    out = np.zeros((len(labels), CLASSES + 2 * SIDE), dtype=np.float32)
    rows = np.arange(len(labels))
    out[rows, labels] = 1.0
    out[rows, CLASSES + positions // SIDE] = 1.0
    out[rows, CLASSES + SIDE + positions % SIDE] = 1.0
    return out


class PixelLSTM(mg.nn.Module):
    """Pixel-by-pixel model: tokens are the levels 0..L-1, BOS = L starts an image, EOS = L + 1
    ends it (only so the decoders know when to stop; never a training target).

    Step t reads the previous pixel's embedding and the conditions of pixel t (class, row,
    column) and outputs log-probabilities over the L + 2 tokens for pixel t. Dropout on the
    LSTM's outputs while training (1,347 training images overfit quickly without it).
    """

    def __init__(self, levels: int, hidden: int, embed: int, rng, dropout: float = 0.0):
        super().__init__()
        self.levels, self.hidden = levels, hidden
        self.drop = mg.nn.Dropout(dropout)
        self.bos, self.eos = levels, levels + 1
        self.embed = mg.nn.Embedding(levels + 1, embed, rng=rng)
        self.cell = rnn.LSTMCell(embed + CLASSES + 2 * SIDE, hidden, rng=rng)
        self.head = mg.nn.Linear(hidden, levels + 2, rng=rng)

    def inputs(self, images: np.ndarray, labels: np.ndarray):
        """Teacher-forced inputs (64, B, E + 26): BOS then pixels 0..62, with their conditions."""
        B = len(labels)
        previous = np.concatenate([np.full((B, 1), self.bos), images[:, :-1]], axis=1)
        cond = np.stack([conditions(labels, np.full(B, t)) for t in range(PIXELS)])
        return mg.concat([self.embed(previous.T), mg.tensor(cond)], axis=2)

    def forward(self, images, labels):
        """Logits (64, B, L + 2) for every pixel of `images` (B, 64) of class `labels` (B,)."""
        out, _ = rnn.unroll(self.cell, self.inputs(images, labels))
        return self.head(self.drop(out))

    def start(self, labels: np.ndarray):
        """The decoding state for images of class `labels`: (h, c, labels, position)."""
        B = len(labels)
        return (mg.zeros(B, self.hidden), mg.zeros(B, self.hidden),
                mg.tensor(np.asarray(labels, dtype=np.int64)), mg.zeros(B, dtype="int64"))

    def step(self, tokens, state):
        """The decoding protocol: tokens (N,) -> (log_probs (N, L + 2), state)."""
        h, c, labels, position = state
        # the step after the last pixel only emits EOS: any position will do there
        pos = np.minimum(position.numpy(), PIXELS - 1)
        x = mg.concat([self.embed(tokens), mg.tensor(conditions(labels.numpy(), pos))], axis=1)
        out, (h, c) = self.cell(x, (h, c))
        return mg.log_softmax(self.head(self.drop(out)), axis=-1), (h, c, labels, position + 1)


class RowLSTM(mg.nn.Module):
    """Row-wise baseline: step r reads row r - 1 (zeros for the first) and the class, and gives
    each of the 8 pixels of row r its own distribution over the L levels (independent within a
    row, given the rows above)."""

    def __init__(self, levels: int, hidden: int, rng, dropout: float = 0.0):
        super().__init__()
        self.levels = levels
        self.drop = mg.nn.Dropout(dropout)
        self.cell = rnn.LSTMCell(SIDE * levels + CLASSES, hidden, rng=rng)
        self.head = mg.nn.Linear(hidden, SIDE * levels, rng=rng)

    def forward(self, images, labels):
        """Logits (8, B, 8, L) for every pixel of `images` (B, 64)."""
        B, L = len(labels), self.levels
        rows = np.eye(L, dtype=np.float32)[images].reshape(B, SIDE, SIDE * L)
        previous = np.concatenate([np.zeros((B, 1, SIDE * L), np.float32), rows[:, :-1]], 1)
        klass = np.broadcast_to(np.eye(CLASSES, dtype=np.float32)[labels][:, None],
                                (B, SIDE, CLASSES))
        x = np.concatenate([previous, klass], axis=2).transpose(1, 0, 2)
        out, _ = rnn.unroll(self.cell, x)
        return self.head(self.drop(out)).reshape(SIDE, B, SIDE, L)


def targets(model, images: np.ndarray) -> np.ndarray:
    """The targets in the layout of `model`'s logits."""
    if isinstance(model, RowLSTM):
        return images.reshape(-1, SIDE, SIDE).transpose(1, 0, 2)
    return images.T


def bits_per_pixel(model, images, labels, batch: int = 256) -> float:
    """Held-out negative log-likelihood, bits per pixel."""
    total = 0.0
    with mg.no_grad():
        for i in range(0, len(labels), batch):
            x, y = images[i:i + batch], labels[i:i + batch]
            total += float(mg.cross_entropy(model(x, y), targets(model, x),
                                            reduction="sum").item())
    return total / (len(labels) * PIXELS * np.log(2))


def independent_pixels(train, test, levels: int) -> dict:
    """Bits per pixel of independent categoricals per pixel, counted with add-one smoothing:
    per class and pixel (class-conditional), and per pixel alone."""
    (xa, ya), (xb, yb) = train, test
    counts = np.ones((CLASSES, PIXELS, levels))
    np.add.at(counts, (ya[:, None], np.arange(PIXELS)[None], xa), 1)
    p = counts / counts.sum(axis=2, keepdims=True)
    conditional = -np.log2(p[yb[:, None], np.arange(PIXELS)[None], xb]).mean()
    pooled = counts.sum(axis=0) - (CLASSES - 1)  # one add-one prior, not ten
    q = pooled / pooled.sum(axis=1, keepdims=True)
    marginal = -np.log2(q[np.arange(PIXELS)[None], xb]).mean()
    return {"independent_class_bits": float(conditional), "independent_bits": float(marginal)}


def train(model, images, labels, args, rng, name: str) -> list[float]:
    """Adam on the cross-entropy of every pixel, cosine schedule; the losses of every update."""
    N = len(labels)
    steps = args.epochs * -(-N // args.batch)
    opt = mg.optim.Adam(model.parameters(), lr=args.lr)
    sched = mg.optim.CosineAnnealingLR(opt, T_max=steps)
    losses, order = [], np.array([], dtype=np.int64)
    bar = _common.progress(steps, name, args.quiet)
    for step in bar:
        if len(order) < args.batch:
            order = np.concatenate([order, rng.permutation(N)])
        k, order = order[:args.batch], order[args.batch:]
        loss = mg.cross_entropy(model(images[k], labels[k]), targets(model, images[k]))
        opt.zero_grad()
        loss.backward()
        mg.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        sched.step()
        losses.append(float(loss.item()) / np.log(2))
        if step % 10 == 0:
            bar.set_postfix(bits=f"{np.mean(losses[-20:]):.3f}")
    return losses


def generate(model, labels, seed: int, prefix=None) -> np.ndarray:
    """Images (B, 64) of class `labels` drawn pixel by pixel at temperature 1, after `prefix`
    (B, P) if given; every image from its own random stream seeded with (seed, b). BOS is
    banned (a model might give it a little probability), EOS comes only after 64 pixels."""
    draws = sample(model, model.start(labels), bos=model.bos, eos=model.eos,
                   max_len=PIXELS + 1, min_len=PIXELS, banned=(model.bos,), prefix=prefix,
                   rng=seed)
    return np.stack([h.tokens[:PIXELS] for h in draws])


def main(argv=None) -> dict:
    p = _common.parser("pixel_digits", __doc__.split("\n\n")[0])
    p.add_argument("--levels", type=int, default=4, help="intensity levels after quantising")
    p.add_argument("--hidden", type=int, default=256)
    p.add_argument("--embed", type=int, default=16)
    p.add_argument("--dropout", type=float, default=0.3, help="on the LSTMs' outputs")
    p.add_argument("--epochs", type=int, default=40)
    p.add_argument("--row-epochs", type=int, default=None,
                   help="epochs of the row-wise baseline (default: --epochs)")
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--lr", type=float, default=5e-3)
    p.add_argument("--per-class", type=int, default=8, help="samples per class in the grid")
    p.add_argument("--completions", type=int, default=10, help="held-out half-images completed")
    p.add_argument("--train-limit", type=int, default=None, help="train on this many images")
    return _common.launch(p, argv, run, check)


def check(args) -> None:
    if not 2 <= args.levels <= 17:
        raise ValueError(f"pixel_digits: --levels must be in [2, 17], got {args.levels}")


def run(args) -> dict:
    rng, out, clock = _common.start(args)
    (xa, ya), (xb, yb) = load(args.levels)
    if args.train_limit:
        xa, ya = xa[:args.train_limit], ya[:args.train_limit]

    # the pixel model and the row-wise baseline, trained alike
    model = PixelLSTM(args.levels, args.hidden, args.embed, rng, args.dropout)
    losses = train(model, xa, ya, args, rng, "pixel LSTM")
    pixel_seconds = clock()
    row = RowLSTM(args.levels, args.hidden, rng, args.dropout)
    row_args = argparse.Namespace(**{**vars(args), "epochs": args.row_epochs or
                                             args.epochs})
    row_losses = train(row, xa, ya, row_args, rng, "row LSTM")
    model.eval()  # no dropout from here on: scoring and sampling
    row.eval()

    # evaluation: held-out bits per pixel against the baselines
    results = {"levels": args.levels, "train_images": len(ya), "test_images": len(yb),
               "uniform_bits": float(np.log2(args.levels)),
               **independent_pixels((xa, ya), (xb, yb), args.levels),
               "row_lstm_bits": bits_per_pixel(row, xb, yb),
               "pixel_lstm_bits": bits_per_pixel(model, xb, yb),
               "pixel_lstm_train_bits": bits_per_pixel(model, xa, ya),
               "bits_first": float(np.mean(losses[:10])), "bits_last": float(np.mean(losses[-10:])),
               "pixel_train_seconds": pixel_seconds}
    for key in ("uniform", "independent", "independent_class", "row_lstm", "pixel_lstm"):
        print(f"{key:>18}: {results[key + '_bits']:.4f} bits/pixel held out")

    # samples per class, and completions of held-out upper halves
    labels = np.repeat(np.arange(CLASSES), args.per_class)
    samples = generate(model, labels, args.seed)
    pick = rng.choice(len(yb), size=args.completions, replace=False)
    half = PIXELS // 2
    completed = generate(model, yb[pick], args.seed + 1, prefix=xb[pick, :half])
    results["completion_prefix_kept"] = bool((completed[:, :half] == xb[pick, :half]).all())
    # how likely the model finds its own samples against held-out digits of the same classes
    results["sample_bits"] = bits_per_pixel(model, samples, labels)
    results["seconds"] = clock()
    if not args.no_plots:
        plot_grid(samples, args.per_class, args.levels, out / "samples.png")
        plot_completions(xb[pick], completed, yb[pick], args.levels, out / "completions.png")
        plot_losses(losses, row_losses, results, out / "loss.png")
    with open(out / "results.json", "w") as f:
        json.dump(results, f, indent=1)
    print(f"done in {results['seconds']:.1f} s; figures and results in {out}/")
    return results


def plot_grid(samples, per_class, levels, path):
    plt = _common.pyplot()
    fig, axes = plt.subplots(CLASSES, per_class, figsize=(per_class * 0.8, CLASSES * 0.8))
    for i, ax in enumerate(axes.flat):
        ax.imshow(samples[i].reshape(SIDE, SIDE), cmap="gray_r", vmin=0, vmax=levels - 1)
        ax.set_xticks([])
        ax.set_yticks([])
        if i % per_class == 0:
            ax.set_ylabel(str(i // per_class), rotation=0, labelpad=10)
    fig.suptitle("pixel LSTM: samples, one row per class")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def plot_completions(truth, completed, labels, levels, path):
    plt = _common.pyplot()
    n = len(labels)
    fig, axes = plt.subplots(3, n, figsize=(n * 0.9, 3.2))
    half = np.array(truth, dtype=float)
    half[:, PIXELS // 2:] = np.nan  # the lower half hidden
    for j in range(n):
        for i, image in enumerate((truth[j], half[j], completed[j])):
            axes[i, j].imshow(image.reshape(SIDE, SIDE), cmap="gray_r", vmin=0, vmax=levels - 1)
            axes[i, j].set_xticks([])
            axes[i, j].set_yticks([])
        axes[0, j].set_title(str(labels[j]))
    for i, name in enumerate(("held out", "given", "completed")):
        axes[i, 0].set_ylabel(name, fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def plot_losses(losses, row_losses, results, path):
    plt = _common.pyplot()
    fig, ax = plt.subplots(figsize=(6, 3.5))
    ax.plot(losses, lw=0.6, label="pixel LSTM (train)")
    ax.plot(row_losses, lw=0.6, label="row LSTM (train)")
    for key, style in (("independent_class", ":"), ("row_lstm", "--"), ("pixel_lstm", "-.")):
        ax.axhline(results[key + "_bits"], ls=style, color="k", lw=0.8,
                   label=f"{key.replace('_', ' ')} held out")
    ax.set(xlabel="update", ylabel="bits / pixel", title="pixel digits: training",
           ylim=(0, results["uniform_bits"] * 1.1))
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


if __name__ == "__main__":
    main()
