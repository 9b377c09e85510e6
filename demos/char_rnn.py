"""A character-level LSTM language model on Shakespeare, trained with truncated BPTT.

The model reads one character at a time and predicts the next: an Embedding, one fused LSTM run
by `rnn.unroll`, and a Linear read-out to the 80 characters. Training cuts the text into B
parallel streams and walks them in windows of k characters; the LSTM state is carried from one
window to the next with no gradient (truncated BPTT, k1 = k2 = k, as `rnn.tbptt` does with
`input_fn=` for the Embedding; the loop is written out here because it cycles over the streams for
a set number of windows). The last 10% of the text is held out:
the demo reports the loss there in nats and bits per character, against the 2-character
(bigram) entropy of the text, 2.49 nats/char, and prints samples at temperatures 0.5 and 1.0.

    python -m demos.char_rnn                        # a few minutes on 2 cores
    python -m demos.char_rnn --save out/char_rnn/model.npz
    python -m demos.char_rnn --load out/char_rnn/model.npz --steps 0 --sample 500
"""
from __future__ import annotations

import json
import math
import os

import numpy as np

import minigrad as mg
import rnn
from demos import _common
from rnn.generate import generate

DATA = os.path.join(os.path.dirname(os.path.abspath(__file__)), "data", "shakespeare",
                    "plays.txt")


def load_text(path: str = DATA, limit: int | None = None) -> str:
    with open(path, encoding="ascii") as f:
        text = f.read()
    return text[:limit] if limit else text


def bigram_entropy(ids: np.ndarray, V: int) -> float:
    """H(X_t | X_{t-1}) in nats: the loss of the best model that sees one previous character."""
    pair = np.bincount(ids[:-1] * V + ids[1:], minlength=V * V).astype(np.float64)
    prev = pair.reshape(V, V).sum(axis=1)
    p_pair = pair[pair > 0] / pair.sum()
    p_prev = prev[prev > 0] / prev.sum()
    return float(-(p_pair * np.log(p_pair)).sum() + (p_prev * np.log(p_prev)).sum())


class CharLM(mg.nn.Module):
    """tokens (T, B) -> logits (T, B, V): Embedding(V, E), LSTMCell(E, H), Linear(H, V).

    `forward(tokens, state)` returns `(logits, new_state)`, state (h, c) each (B, H) or None for
    zeros: the interface `rnn.generate` feeds its samples back through.
    """

    def __init__(self, vocab: int, embed: int, hidden: int, rng):
        super().__init__()
        self.embed = mg.nn.Embedding(vocab, embed, rng=rng)
        self.cell = rnn.LSTMCell(embed, hidden, rng=rng)
        self.head = mg.nn.Linear(hidden, vocab, rng=rng)

    def forward(self, tokens, state=None):
        out, state = rnn.unroll(self.cell, self.embed(tokens), state)
        return self.head(out), state


def streams(ids: np.ndarray, B: int) -> np.ndarray:
    """Cut a text into B contiguous streams, time-major (L, B)."""
    L = len(ids) // B
    return ids[:L * B].reshape(B, L).T.copy()


def evaluate(model, data: np.ndarray, k: int) -> float:
    """Mean cross-entropy (nats/char) of predicting data[t+1] from data[:t+1] over streams
    (L, B), read in windows of k with the state carried along (so only the first character of
    each stream has no history)."""
    total, count, state = 0.0, 0, None
    with mg.no_grad():
        for t in range(0, data.shape[0] - 1, k):
            x, y = data[t:t + k], data[t + 1:t + k + 1]
            x = x[:len(y)]
            logits, state = model(x, state)
            loss = rnn.sequence_cross_entropy(logits, y, reduction="sum")
            total += float(loss.item())
            count += y.size
    return total / count


def decode(vocab: str, ids) -> str:
    return "".join(vocab[i] for i in ids)


def main(argv=None) -> dict:
    p = _common.parser("char_rnn", __doc__.split("\n\n")[0])
    p.add_argument("--steps", type=int, default=1500, help="training windows (updates)")
    p.add_argument("--batch", type=int, default=32, help="parallel streams B")
    p.add_argument("--bptt", type=int, default=64, help="window length k (TBPTT k1 = k2)")
    p.add_argument("--hidden", type=int, default=256)
    p.add_argument("--embed", type=int, default=48)
    p.add_argument("--lr", type=float, default=4e-3)
    p.add_argument("--clip", type=float, default=1.0, help="gradient norm clipping")
    p.add_argument("--chars", type=int, default=None, help="use only the first N characters")
    p.add_argument("--val-chars", type=int, default=None,
                   help="score only the first N held-out characters (default all)")
    p.add_argument("--sample", type=int, default=300, help="characters per sample")
    p.add_argument("--prompt", default="ROMEO.\n")
    p.add_argument("--save", default=None, help="write a checkpoint here after training")
    p.add_argument("--load", default=None, help="resume from this checkpoint")
    return _common.launch(p, argv, run)


def run(args) -> dict:
    rng, out, clock = _common.start(args)

    text = load_text(limit=args.chars)
    vocab = "".join(sorted(set(load_text())))  # from the whole text: checkpoints stay compatible
    V = len(vocab)
    lookup = np.zeros(256, dtype=np.int64)
    lookup[[ord(c) for c in vocab]] = np.arange(V)
    ids = lookup[np.frombuffer(text.encode("ascii"), dtype=np.uint8)]
    n_val = len(ids) // 10
    train_ids, val_ids = ids[:-n_val], ids[-n_val:]
    if args.val_chars:
        val_ids = val_ids[:args.val_chars]
    train = streams(train_ids, args.batch)
    val = streams(val_ids, min(64, max(1, len(val_ids) // (4 * args.bptt))))

    model = CharLM(V, args.embed, args.hidden, rng)
    params = model.parameters()
    opt = mg.optim.Adam(params, lr=args.lr)
    start, state = 0, None
    if args.load:
        ckpt = mg.load(args.load)
        if ckpt["vocab"] != vocab:
            raise ValueError(f"char_rnn: checkpoint {args.load} has another vocabulary")
        model.load_state_dict(ckpt["model"])
        opt.load_state_dict(ckpt["optimizer"])
        start = int(ckpt["step"])
        if ckpt["state"] is not None and ckpt["state"][0].shape[0] == args.batch:
            state = tuple(mg.tensor(a) for a in ckpt["state"])
        print(f"resumed from {args.load} at step {start}")
    for group in opt.param_groups:  # each run is one cosine cycle from --lr (a resumed run
        group["lr"] = group["initial_lr"] = args.lr  # restarts it: a "warm restart")
    sched = mg.optim.CosineAnnealingLR(opt, T_max=max(args.steps, 1), eta_min=args.lr / 20)

    L, k = train.shape[0], args.bptt
    losses = []
    bar = _common.progress(args.steps, "char-rnn", args.quiet)
    for i in bar:
        t = ((start + i) * k) % (L - k - 1)
        if t < k:  # back at the start of the streams: the carried state no longer fits
            state = None
        x, y = train[t:t + k], train[t + 1:t + k + 1]
        if state is not None:  # the truncation: no gradient into the previous window
            state = tuple(s.detach() for s in state)
        logits, state = model(x, state)
        loss = rnn.sequence_cross_entropy(logits, y)
        opt.zero_grad()
        loss.backward()
        mg.nn.utils.clip_grad_norm_(params, args.clip)
        opt.step()
        sched.step()
        losses.append(float(loss.item()))
        if i % 10 == 0:
            bar.set_postfix(loss=f"{np.mean(losses[-50:]):.3f}")
    train_seconds = clock()

    if args.save:
        os.makedirs(os.path.dirname(os.path.abspath(args.save)), exist_ok=True)
        mg.save({"model": model.state_dict(), "optimizer": opt.state_dict(),
                 "step": start + args.steps, "vocab": vocab, "args": vars(args),
                 "state": None if state is None else [s.numpy() for s in state]}, args.save)
        print(f"checkpoint written to {args.save}")

    val_loss = evaluate(model, val, k)
    ref = bigram_entropy(ids, V)
    counts = np.bincount(ids, minlength=V)
    unigram = -float(sum(c / len(ids) * math.log(c / len(ids)) for c in counts if c))
    print(f"held-out loss: {val_loss:.3f} nats/char = {val_loss / math.log(2):.3f} bits/char "
          f"({val.size:,} characters); 2-character entropy of the text {ref:.3f} nats/char, "
          f"1-character {unigram:.3f}")
    prompt = lookup[np.frombuffer(args.prompt.encode("ascii"), dtype=np.uint8)]
    samples = {}
    for temp in (0.5, 1.0):
        gen = generate(model, prompt, args.sample, strategy="sample", temperature=temp,
                           rng=np.random.default_rng(args.seed))
        samples[temp] = args.prompt + decode(vocab, gen)
        print(f"\n--- sample at temperature {temp} ---\n{samples[temp]}\n")
    results = {"train_loss_first": float(np.mean(losses[:20])) if losses else None,
               "train_loss_last": float(np.mean(losses[-50:])) if losses else None,
               "val_nats": val_loss, "val_bits": val_loss / math.log(2),
               "bigram_nats": ref, "unigram_nats": unigram, "steps": start + args.steps,
               "train_seconds": train_seconds, "samples": samples, "seconds": clock()}
    if losses and not args.no_plots:
        plot(losses, val_loss, ref, out / "loss.png")
    with open(out / "results.json", "w") as f:
        json.dump(results, f, indent=1)
    with open(out / "samples.txt", "w") as f:
        for temp, s in samples.items():
            f.write(f"--- temperature {temp} ---\n{s}\n\n")
    print(f"done in {results['seconds']:.1f} s; figures, samples and results in {out}/")
    return results


def plot(losses, val_loss, ref, path):
    plt = _common.pyplot()
    fig, ax = plt.subplots(figsize=(6.5, 3.8))
    w = min(50, len(losses))
    smooth = np.convolve(losses, np.ones(w) / w, mode="valid")
    ax.plot(np.arange(len(smooth)) + w, smooth, label="training (running mean)")
    ax.axhline(val_loss, color="C1", label=f"held-out: {val_loss:.3f}")
    ax.axhline(ref, color="gray", ls="--", label=f"2-character entropy: {ref:.3f}")
    ax.set(xlabel="update", ylabel="nats per character", title="char-rnn on Shakespeare")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


if __name__ == "__main__":
    main()
