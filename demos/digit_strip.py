"""Reading a strip of 3 or 4 handwritten digits (scikit-learn's 8x8 digits side by side, each
shifted up to 4 pixels down and 1 right) aloud as a digit sequence, with attention over a grid
of image regions: soft attention (Show, Attend and Tell's "soft": the context is the weighted
mean of the regions), and hard attention (one region sampled per output digit, the score trained
with REINFORCE and a moving-average baseline, the rest by backpropagation).

The image (12 x 36) is seen as a 3 x 15 grid of overlapping 8 x 8 windows (stride 2), each
turned into a feature vector by a shared two-layer perceptron plus a learned position vector:
the grid (B, 45, D) the decoder attends over. Hard attention is trained as Xu et al. did: for
half of the batches (`--soft-mix`) the sampled region is replaced by the soft context, which
trains the reader of regions while the REINFORCE estimate of the other half teaches where to
look; it is scored choosing the most likely region. Digit images are split 75/25 (stratified)
before strips are made, so held-out strips hold only held-out digits.

    python -m demos.digit_strip            # both models, about 2 minutes on 2 cores
    python -m demos.digit_strip --quick    # a few seconds
"""
from __future__ import annotations

import json

import numpy as np

import minigrad as mg
import rnn
from demos import _common
from rnn.decoding import greedy
from rnn.reinforce import MovingAverageBaseline, reinforce_loss

HEIGHT, WIDTH, WIN, STRIDE = 12, 36, 8, 2
GRID = ((HEIGHT - WIN) // STRIDE + 1, (WIDTH - WIN) // STRIDE + 1)   # (3, 15)
EOS, BOS = 10, 11                                                    # digits are 0..9
MAX_DIGITS = 4


def load(seed: int = 0):
    """8x8 digit images in [0, 1] and labels, split in (train, test)."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split
    X, y = load_digits(return_X_y=True)
    X = (X / 16.0).reshape(-1, 8, 8)
    a, b, ya, yb = train_test_split(X, y, test_size=0.25, random_state=seed, stratify=y)
    return (a, ya), (b, yb)


def strips(rng, images, labels, B: int):
    """B strips: images (B, 12, 36), digit sequences as decoder inputs and targets (5, B),
    target lengths (B,) (the digits and the end token)."""
    canvas = np.zeros((B, HEIGHT, WIDTH))
    tgt = np.full((MAX_DIGITS + 1, B), EOS, dtype=np.int64)
    n = rng.integers(3, MAX_DIGITS + 1, B)
    for b in range(B):
        for k in range(n[b]):
            i = rng.integers(len(images))
            r, c = rng.integers(0, HEIGHT - 7), 9 * k + rng.integers(0, 2)
            canvas[b, r:r + 8, c:c + 8] = np.maximum(canvas[b, r:r + 8, c:c + 8], images[i])
            tgt[k, b] = labels[i]
    tgt_in = np.concatenate([np.full((1, B), BOS), tgt[:-1]])
    return canvas, tgt_in, tgt, n + 1


def windows(canvas):
    """(B, 12, 36) -> the 45 windows of 8 x 8 pixels, (B, 45, 64), row-major over the grid."""
    v = np.lib.stride_tricks.sliding_window_view(canvas, (WIN, WIN), axis=(1, 2))
    v = v[:, ::STRIDE, ::STRIDE]                                      # (B, 3, 15, 8, 8)
    return np.ascontiguousarray(v.reshape(len(canvas), GRID[0] * GRID[1], WIN * WIN))


class StripReader(mg.nn.Module):
    """Grid features, then a GRU decoder with attention over them (soft or hard), a digit per
    step. Decoding state: (decoder state, context), batch first, for `rnn.decoding`."""

    def __init__(self, hard: bool, features: int, hidden: int, rng):
        super().__init__()
        self.hard = hard
        self.patch = mg.nn.Linear(WIN * WIN, 2 * features, rng=rng)
        self.patch2 = mg.nn.Linear(2 * features, features, rng=rng)
        self.position = mg.nn.Parameter(
            rng.normal(0, 0.1, (GRID[0] * GRID[1], features)).astype(np.float32))
        self.embed = mg.nn.Embedding(12, 16, rng=rng)
        soft = rnn.AdditiveAttention(hidden, features, hidden, rng=rng)
        self.decoder = rnn.AttentionDecoderCell(rnn.GRUCell(16 + hidden, hidden, rng=rng), soft,
                                                rng=rng)
        self.chooser = rnn.HardAttention(soft) if hard else None
        self.init = mg.nn.Linear(features, hidden, rng=rng)
        self.out = mg.nn.Linear(hidden, 11, rng=rng)

    def start(self, canvas):
        pixels = mg.tensor(windows(canvas).astype(np.float32))
        feats = mg.tanh(self.patch2(mg.relu(self.patch(pixels))) + self.position)  # (B, 45, D)
        context = self.decoder.context(mg.swapaxes(feats, 0, 1))
        B = len(canvas)
        _, feed, weights = self.decoder.initial_state(B, context)
        h0 = mg.tanh(self.init(mg.mean(feats, axis=1)))      # Xu et al.: from the mean feature
        return (h0, feed, weights), context

    def step(self, tokens, state):
        """The decoding step of `rnn.decoding`: (log_probs (B, 11), state, weights (B, 45));
        hard attention takes its most likely region."""
        log_probs, state, weights, _ = self.step_with_choice(tokens, state, sample=False)
        return log_probs, state, weights

    def step_with_choice(self, tokens, state, sample: bool, soft: bool = False):
        """`step`, plus the log-probability (B,) of the region hard attention chose (sampled
        when `sample`); None for soft attention (or with `soft`: a hard model's soft step)."""
        (h, feed, _), context = state
        x = self.embed(np.asarray(tokens))
        if not self.hard or soft:
            out, dec = self.decoder(x, state[0], context)
            return mg.log_softmax(self.out(out), axis=-1), (dec, context), dec[2], None
        h, _ = self.decoder.cell(mg.concat([x, feed], axis=-1), h)
        c, weights, log_prob, _ = self.chooser(h, context.keys, context.values, context.mask,
                                               projected=context.projected, sample=sample)
        out = mg.tanh(self.decoder.output_proj(mg.concat([c, h], axis=-1)))
        return mg.log_softmax(self.out(out), axis=-1), ((h, out, weights), context), weights, \
            log_prob


def train(model, rng, data, args, label):
    opt = mg.optim.Adam(model.parameters(), lr=args.lr)
    sched = mg.optim.CosineAnnealingLR(opt, T_max=args.steps)
    baseline = MovingAverageBaseline(0.9, shape=(MAX_DIGITS + 1,))
    losses = []
    bar = _common.progress(args.steps, label, args.quiet)
    for step in bar:
        canvas, tgt_in, tgt, lengths = strips(rng, *data, args.batch)
        state = model.start(canvas)
        nll, choices = [], []
        soft = model.hard and rng.random() < args.soft_mix
        for t in range(MAX_DIGITS + 1):
            log_p, state, _, log_choice = model.step_with_choice(tgt_in[t], state, sample=True,
                                                                 soft=soft)
            nll.append(-mg.gather(log_p, tgt[t][:, None], axis=1)[:, 0])     # (B,)
            choices.append(log_choice)
        mask = (np.arange(MAX_DIGITS + 1)[:, None] < lengths[None, :]).astype(np.float32)
        nll = mg.stack(nll) * mg.tensor(mask)                                # (T, B)
        loss = nll.sum() * (1.0 / mask.sum())
        if model.hard and not soft:   # REINFORCE for the region: reward = log p(right digit)
            reward = -nll.numpy()
            loss = loss + args.reinforce_weight * reinforce_loss(
                mg.stack(choices), reward, baseline.value[:, None], mask)
            baseline.update(reward)
        opt.zero_grad()
        loss.backward()
        mg.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        sched.step()
        losses.append(float(nll.sum().item() / mask.sum()))
        if step % 20 == 0:
            bar.set_postfix(nll=f"{np.mean(losses[-20:]):.4f}")
    return losses


def evaluate(model, canvas, tgt, lengths) -> dict:
    """Greedy decoding (hard attention: the most likely region): digit and strip accuracy."""
    with mg.no_grad():
        hyps = greedy(model, model.start(canvas), BOS, EOS, MAX_DIGITS + 1)
    digits = right = 0
    for b, h in enumerate(hyps):
        want = tgt[:lengths[b], b]
        got = np.full(len(want), -1)
        got[:min(len(h.tokens), len(want))] = h.tokens[:len(want)]
        digits += int((got[:-1] == want[:-1]).sum())
        right += int(np.array_equal(h.tokens, want))
    return {"digit_accuracy": digits / float((lengths - 1).sum()),
            "strip_exact": right / len(hyps), "hyps": hyps}


def main(argv=None) -> dict:
    p = _common.parser("digit_strip", __doc__.split("\n\n")[0])
    p.add_argument("--steps", type=int, default=1500)
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--features", type=int, default=64)
    p.add_argument("--hidden", type=int, default=64)
    p.add_argument("--lr", type=float, default=3e-3)
    p.add_argument("--test", type=int, default=1000, help="held-out strips")
    p.add_argument("--reinforce-weight", type=float, default=0.05,
                   help="weight of the REINFORCE term beside the cross-entropy")
    p.add_argument("--soft-mix", type=float, default=0.5,
                   help="share of the hard model's batches trained with the soft context")
    p.add_argument("--quick", action="store_true", help="a few seconds: 120 steps, 200 strips")
    return _common.launch(p, argv, run)


def run(args) -> dict:
    if args.quick:
        args.steps, args.test, args.features, args.hidden = 120, 200, 32, 32
    rng, out, clock = _common.start(args)
    train_data, (test_images, test_labels) = load(args.seed)
    canvas, _, tgt, lengths = strips(np.random.default_rng(args.seed + 1), test_images,
                                     test_labels, args.test)
    results = {"steps": args.steps, "batch": args.batch, "test_strips": args.test,
               "chance_digit_accuracy": 0.1}
    evals = {}
    for name in ("soft", "hard"):
        model = StripReader(name == "hard", args.features, args.hidden, rng)
        started = clock()
        losses = train(model, rng, train_data, args, f"{name} attention")
        evals[name] = ev = evaluate(model, canvas, tgt, lengths)
        results[name] = {"digit_accuracy": ev["digit_accuracy"], "strip_exact": ev["strip_exact"],
                         "nll_first": float(np.mean(losses[:20])),
                         "nll_last": float(np.mean(losses[-20:])),
                         "train_seconds": clock() - started}
        print(f"{name} attention: {100 * ev['digit_accuracy']:.2f}% of held-out digits, "
              f"{100 * ev['strip_exact']:.1f}% of {args.test} strips exactly right")
    results["seconds"] = clock()
    if not args.no_plots:
        for name, ev in evals.items():
            plot_overlays(canvas[:4], ev["hyps"][:4], out / f"{name}_attention.png",
                          f"{name} attention" + (" (the region chosen)" if name == "hard" else
                                                 ""), chosen=name == "hard")
    with open(out / "results.json", "w") as f:
        json.dump(results, f, indent=1)
    print(f"done in {results['seconds']:.1f} s; figures and results in {out}/")
    return results


def pixel_weights(weights):
    """Weights over the 45 windows (45,) -> the share of attention on each pixel (12, 36)."""
    heat = np.zeros((HEIGHT, WIDTH))
    for j, w in enumerate(weights):
        r, c = divmod(j, GRID[1])
        heat[r * STRIDE:r * STRIDE + WIN, c * STRIDE:c * STRIDE + WIN] += w
    return heat


def plot_overlays(canvas, hyps, path, title, chosen=False):
    """One row per strip, one panel per output digit: where the decoder looked (with `chosen`,
    the one most likely region that hard attention reads)."""
    plt = _common.pyplot()
    cols = MAX_DIGITS + 1
    fig, axes = plt.subplots(len(canvas), cols, figsize=(2.4 * cols, 1.1 * len(canvas) + 0.6))
    for b, (img, h) in enumerate(zip(canvas, hyps)):
        for t in range(cols):
            ax = axes[b, t]
            if t < len(h.tokens):
                label = "end" if h.tokens[t] == EOS else str(h.tokens[t])
                w = h.attention[t]
                w = np.eye(len(w))[w.argmax()] if chosen else w
                rnn.analysis.plot_image_attention(img, pixel_weights(w), ax=ax,
                                                  title=f"step {t + 1}: {label}")
            else:
                ax.axis("off")
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


if __name__ == "__main__":
    main()
