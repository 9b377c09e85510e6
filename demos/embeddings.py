"""Sequence prediction and word vectors on the shipped Shakespeare: a time-delay (fixed-window)
next-word model, CBOW and skip-gram with negative sampling, all from `mg.nn.Embedding` and the
engine alone, and an LSTM language model to compare the time-delay model with.

The text is split by play as `demos.char_rnn` does (Julius Caesar and Much Ado About Nothing held
out), lower-cased and cut into words; words seen fewer than --min-count times in the training
plays become <unk>. The demo reports:

- next-word perplexity on the held-out plays of the time-delay model (the n previous words'
  embeddings, concatenated, through a tanh layer to a softmax: Bengio et al. 2003) and of the
  LSTM, scored on exactly the same words, against the unigram model and a bigram model
  interpolated with it, counted on the training plays;
- the negative-sampling loss of CBOW and skip-gram on held-out plays against its value at
  chance ((K + 1) log 2, the loss of vectors that say nothing);
- the nearest neighbours (cosine) of common words in each model's vectors, and a 2-D projection
  (PCA by NumPy's SVD) of the skip-gram vectors of the most frequent words.

    python -m demos.embeddings                   # about 2.5 minutes on 2 cores (shared)
"""
from __future__ import annotations

import json
import math
import re
from collections import Counter

import numpy as np

import minigrad as mg
import rnn
from demos import _common
from demos.char_rnn import HELDOUT, load_text, split_plays, streams

UNK = "<unk>"
QUERIES = ("king", "love", "good", "night", "lord", "death", "sweet", "heaven", "man", "blood",
           "thou", "speak")


# ----------------------------------------------------------------------------- data

def words(text: str) -> list[str]:
    """Lower-cased words (letters, with an inner apostrophe kept: "ne'er", "o'er")."""
    return re.findall(r"[a-z]+(?:'[a-z]+)?", text.lower())


def vocabulary(train: list[str], min_count: int) -> tuple[list[str], np.ndarray]:
    """Words seen at least min_count times, most frequent first, and <unk> last; their counts."""
    counts = Counter(train)
    kept = [w for w, c in counts.most_common() if c >= min_count]
    unk = sum(c for w, c in counts.items() if c < min_count)
    return kept + [UNK], np.array([counts[w] for w in kept] + [unk], dtype=np.int64)


def encode(tokens: list[str], index: dict[str, int]) -> np.ndarray:
    unk = index[UNK]
    return np.array([index.get(w, unk) for w in tokens], dtype=np.int64)


def windows(ids: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Contexts (M, n) of the n previous words and the next word (M,), for every position >= n."""
    ctx = np.lib.stride_tricks.sliding_window_view(ids[:-1], n)
    return ctx.copy(), ids[n:].copy()


def skipgram_pairs(ids, window: int, keep: np.ndarray, rng) -> tuple[np.ndarray, np.ndarray]:
    """(center, context) pairs within `window` words, after dropping each occurrence of a word
    with probability 1 - keep[word] (Mikolov et al.'s subsampling of frequent words)."""
    ids = ids[rng.random(len(ids)) < keep[ids]]
    centers, contexts = [], []
    for d in range(1, window + 1):
        centers += [ids[:-d], ids[d:]]
        contexts += [ids[d:], ids[:-d]]
    return np.concatenate(centers), np.concatenate(contexts)


def cbow_windows(ids, window: int, keep: np.ndarray, rng) -> tuple[np.ndarray, np.ndarray]:
    """Contexts (M, 2 * window) of the words on either side, and the center word (M,)."""
    ids = ids[rng.random(len(ids)) < keep[ids]]
    span = np.lib.stride_tricks.sliding_window_view(ids, 2 * window + 1)
    return np.delete(span, window, axis=1), span[:, window].copy()


# ----------------------------------------------------------------------------- models

class TimeDelayLM(mg.nn.Module):
    """Fixed-window next-word model: words (B, n) -> logits (B, V) through
    tanh(W [e(w_1); ...; e(w_n)] + b) and a Linear read-out."""

    def __init__(self, vocab: int, n: int, embed: int, hidden: int, rng):
        super().__init__()
        self.n, self.embed_dim = n, embed
        self.embed = mg.nn.Embedding(vocab, embed, rng=rng)
        # rows of norm ~0.8, not ~8: from N(0, 1) the updates barely move a word's vector
        # (its neighbours stay those of the random start) and the tanh layer starts saturated
        self.embed.weight.data *= 0.1
        self.hidden = mg.nn.Linear(n * embed, hidden, rng=rng)
        self.head = mg.nn.Linear(hidden, vocab, rng=rng)

    def forward(self, context):
        x = self.embed(context).reshape(len(context), self.n * self.embed_dim)
        return self.head(mg.tanh(self.hidden(x)))


class LSTMLM(mg.nn.Module):
    """words (T, B) -> logits (T, B, V): Embedding, LSTMCell, Linear; state passed in and out."""

    def __init__(self, vocab: int, embed: int, hidden: int, rng):
        super().__init__()
        self.embed = mg.nn.Embedding(vocab, embed, rng=rng)
        self.embed.weight.data *= 0.1  # as TimeDelayLM's, so the two start alike
        self.cell = rnn.LSTMCell(embed, hidden, rng=rng)
        self.head = mg.nn.Linear(hidden, vocab, rng=rng)

    def forward(self, tokens, state=None):
        out, state = rnn.unroll(self.cell, self.embed(tokens), state)
        return self.head(out), state


class NegativeSampling(mg.nn.Module):
    """Word vectors `inner` (the ones we keep) and output vectors `outer`, scored by
    loss = softplus(-u.v_target) + sum_k softplus(u.v_k) over K noise words
    (= -log sigmoid(u.v) - sum_k log sigmoid(-u.v_k), Mikolov et al. 2013), where u is the
    input word's vector (skip-gram) or the mean of the context's vectors (CBOW)."""

    def __init__(self, vocab: int, dim: int, rng):
        super().__init__()
        self.inner = mg.nn.Embedding(vocab, dim, rng=rng)
        self.outer = mg.nn.Embedding(vocab, dim, rng=rng)
        # word2vec's start: small input vectors, zero output vectors (the loss starts at chance)
        self.inner.weight.data *= 0.5 / dim
        self.outer.weight.data[...] = 0.0

    def forward(self, inputs, targets, noise):
        """inputs (B,) or (B, C) word ids, targets (B,), noise (B, K) -> mean loss."""
        u = self.inner(inputs)
        if u.ndim == 3:  # CBOW: the mean of the context's vectors
            u = u.mean(axis=1)
        positive = (u * self.outer(targets)).sum(axis=-1)
        negative = (u.reshape(u.shape[0], 1, u.shape[1]) * self.outer(noise)).sum(axis=-1)
        return (mg.softplus(-positive) + mg.softplus(negative).sum(axis=-1)).mean()


# ----------------------------------------------------------------------------- training

def batches(rng, N: int, B: int, steps: int):
    """Index batches of size B over `steps` updates, a fresh shuffle every epoch."""
    order = np.array([], dtype=np.int64)
    for _ in range(steps):
        if len(order) < B:
            order = np.concatenate([order, rng.permutation(N)])
        yield order[:B]
        order = order[B:]


def fit(model, loss_of, steps: int, lr: float, name: str, quiet: bool) -> list[float]:
    """Adam with a cosine schedule; `loss_of(i)` gives update i's loss Tensor."""
    opt = mg.optim.Adam(model.parameters(), lr=lr)
    sched = mg.optim.CosineAnnealingLR(opt, T_max=max(steps, 1), eta_min=lr / 20)
    losses = []
    bar = _common.progress(steps, name, quiet)
    for i in bar:
        loss = loss_of(i)
        opt.zero_grad()
        loss.backward()
        mg.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        sched.step()
        losses.append(float(loss.item()))
        if i % 10 == 0:
            bar.set_postfix(loss=f"{np.mean(losses[-50:]):.3f}")
    return losses


# ----------------------------------------------------------------------------- evaluation

def lstm_losses(model, data: np.ndarray, k: int) -> np.ndarray:
    """Cross-entropy (nats) of data[t+1] given data[:t+1] over streams (L, B): (L - 1, B)."""
    out, state = [], None
    with mg.no_grad():
        for t in range(0, data.shape[0] - 1, k):
            y = data[t + 1:t + k + 1]
            logits, state = model(data[t:t + len(y)], state)
            out.append(rnn.sequence_cross_entropy(logits, y, reduction="none").numpy())
    return np.concatenate(out).astype(np.float64)


def time_delay_losses(model, data: np.ndarray, n: int, batch: int = 2048) -> np.ndarray:
    """Cross-entropy of data[t+1] given data[t-n+1:t+1] over streams (L, B): (L - 1, B), NaN
    where fewer than n words precede (t + 1 < n) in the stream."""
    L, B = data.shape
    ctx = np.stack([np.lib.stride_tricks.sliding_window_view(data[:-1, b], n)
                    for b in range(B)], axis=1)  # (L - n, B, n): the words before t = n..L-1
    ctx, y = ctx.reshape(-1, n), data[n:].reshape(-1)
    out = []
    with mg.no_grad():
        for i in range(0, len(y), batch):
            out.append(mg.cross_entropy(model(ctx[i:i + batch]), y[i:i + batch],
                                        reduction="none").numpy())
    losses = np.full((L - 1, B), np.nan)
    losses[n - 1:] = np.concatenate(out).reshape(L - n, B)
    return losses


def ngram_losses(train_ids, data, V: int) -> tuple[np.ndarray, np.ndarray]:
    """Cross-entropy under the unigram model of the training words (add-one) and under the
    bigram model interpolated with it, p = lam p(w | prev) + (1 - lam) p(w), lam picked from
    0.1..0.9 on the last tenth of the training words (counted on the rest); for the same
    (L - 1, B) targets as `lstm_losses`."""

    def fitted(ids):
        uni = np.bincount(ids, minlength=V) + 1.0
        pair = np.zeros((V, V))
        np.add.at(pair, (ids[:-1], ids[1:]), 1)
        rows = pair.sum(axis=1, keepdims=True)
        return uni / uni.sum(), np.divide(pair, rows, out=np.zeros_like(pair), where=rows > 0)

    cut = len(train_ids) * 9 // 10
    uni, cond = fitted(train_ids[:cut])
    tune = train_ids[cut - 1:]
    lams = np.linspace(0.1, 0.9, 9)
    nll = [-np.log(lam * cond[tune[:-1], tune[1:]] + (1 - lam) * uni[tune[1:]]).mean()
           for lam in lams]
    lam = lams[int(np.argmin(nll))]
    uni, cond = fitted(train_ids)
    return -np.log(uni[data[1:]]), -np.log(lam * cond[data[:-1], data[1:]] + (1 - lam) *
                                           uni[data[1:]])


def neighbours(vectors: np.ndarray, vocab: list[str], queries, k: int = 6) -> dict:
    """The k nearest words by cosine similarity to each query (the query itself left out)."""
    unit = vectors / np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12)
    index = {w: i for i, w in enumerate(vocab)}
    out = {}
    for q in queries:
        if q in index:
            sim = unit @ unit[index[q]]
            sim[index[q]] = -np.inf
            out[q] = [vocab[j] for j in np.argsort(-sim)[:k]]
    return out


def pca_2d(vectors: np.ndarray) -> np.ndarray:
    """The rows projected on their two leading principal directions (SVD of the centred rows)."""
    centred = vectors - vectors.mean(axis=0)
    _, _, vt = np.linalg.svd(centred, full_matrices=False)
    return centred @ vt[:2].T


# ----------------------------------------------------------------------------- the demo

def main(argv=None) -> dict:
    p = _common.parser("embeddings", __doc__.split("\n\n")[0])
    p.add_argument("--words", type=int, default=None, help="train on the first N words only")
    p.add_argument("--val-words", type=int, default=None, help="score the first N held-out words")
    p.add_argument("--min-count", type=int, default=5)
    p.add_argument("--context", type=int, default=4, help="n: words the time-delay model reads")
    p.add_argument("--embed", type=int, default=64)
    p.add_argument("--hidden", type=int, default=256)
    p.add_argument("--lm-steps", type=int, default=1500, help="updates of each language model")
    p.add_argument("--lm-batch", type=int, default=256, help="time-delay windows per update")
    p.add_argument("--bptt", type=int, default=32)
    p.add_argument("--streams", type=int, default=16, help="LSTM streams per update")
    p.add_argument("--w2v-steps", type=int, default=3000, help="updates of CBOW and of skip-gram")
    p.add_argument("--w2v-batch", type=int, default=512)
    p.add_argument("--window", type=int, default=3, help="words on each side for word2vec")
    p.add_argument("--negatives", type=int, default=5, help="K noise words per example")
    p.add_argument("--lr", type=float, default=3e-3)
    return _common.launch(p, argv, run)


def run(args) -> dict:
    rng, out, clock = _common.start(args)
    plays = split_plays(load_text())
    train_words = words("".join(t for k, t in plays.items() if k not in HELDOUT))
    heldout_words = words("".join(plays[k] for k in HELDOUT))
    train_words = train_words[:args.words] if args.words else train_words
    heldout_words = heldout_words[:args.val_words] if args.val_words else heldout_words
    vocab, counts = vocabulary(train_words, args.min_count)
    index = {w: i for i, w in enumerate(vocab)}
    train_ids, heldout_ids = encode(train_words, index), encode(heldout_words, index)
    V, n = len(vocab), args.context
    print(f"{len(train_ids):,} training words, {len(heldout_ids):,} held out, vocabulary {V:,} "
          f"(<unk>: {100 * counts[-1] / counts.sum():.1f}% of training words)")
    results = {"train_words": len(train_ids), "heldout_words": len(heldout_ids), "vocab": V}

    # 1. the time-delay model: n words in, the next word out
    ctx, nxt = windows(train_ids, n)
    tdnn = TimeDelayLM(V, n, args.embed, args.hidden, rng)
    td_picks = batches(rng, len(nxt), args.lm_batch, args.lm_steps)

    def time_delay_loss(i):
        b = next(td_picks)
        return mg.cross_entropy(tdnn(ctx[b]), nxt[b])

    td_losses = fit(tdnn, time_delay_loss, args.lm_steps, args.lr, "time-delay LM", args.quiet)

    # 2. the LSTM language model, truncated BPTT over parallel streams of the same words
    lstm = LSTMLM(V, args.embed, args.hidden, rng)
    train_streams, k = streams(train_ids, args.streams), args.bptt
    carried = [None]

    def lstm_loss(i):
        t = (i * k) % (train_streams.shape[0] - k - 1)
        if t < k:
            carried[0] = None  # back at the start of the streams
        state = None if carried[0] is None else tuple(s.detach() for s in carried[0])
        logits, carried[0] = lstm(train_streams[t:t + k], state)
        return rnn.sequence_cross_entropy(logits, train_streams[t + 1:t + k + 1])

    lm_losses = fit(lstm, lstm_loss, args.lm_steps, args.lr, "LSTM LM", args.quiet)

    # perplexity of both, and of the n-gram baselines, on the same held-out words
    held = streams(heldout_ids, 8)
    scored = {"time_delay": time_delay_losses(tdnn, held, n), "lstm": lstm_losses(lstm, held, k)}
    scored["unigram"], scored["bigram"] = ngram_losses(train_ids, held, V)
    same = ~np.isnan(scored["time_delay"])  # the words with n words before them in their stream
    results["perplexity"] = {m: float(np.exp(v[same].mean())) for m, v in scored.items()}
    results["scored_words"] = int(same.sum())
    for m, ppl in results["perplexity"].items():
        print(f"{m:>10}: perplexity {ppl:8.2f} on {int(same.sum()):,} held-out words")

    # 3. CBOW and skip-gram with negative sampling (noise from the unigram counts ** 0.75)
    freq = counts / counts.sum()
    keep = np.minimum(1.0, np.sqrt(1e-3 / np.maximum(freq, 1e-12)))
    noise = counts ** 0.75 / (counts ** 0.75).sum()
    K = args.negatives
    results["w2v_chance"] = (K + 1) * math.log(2)
    vectors = {"time_delay": tdnn.embed.weight.numpy()}
    w2v_curves = {}
    for kind in ("cbow", "skipgram"):
        make = cbow_windows if kind == "cbow" else skipgram_pairs
        inputs, targets = make(train_ids, args.window, keep, rng)
        model = NegativeSampling(V, args.embed, rng)
        picks = batches(rng, len(targets), args.w2v_batch, args.w2v_steps)

        def w2v_loss(i):
            b = next(picks)
            return model(inputs[b], targets[b], rng.choice(V, size=(len(b), K), p=noise))

        w2v_curves[kind] = fit(model, w2v_loss, args.w2v_steps, args.lr * 3, kind, args.quiet)
        hi, ht = make(heldout_ids, args.window, keep, np.random.default_rng(args.seed))
        with mg.no_grad():
            held_loss = model(hi, ht, np.random.default_rng(args.seed + 1).choice(
                V, size=(len(ht), K), p=noise))
        results[f"{kind}_heldout_loss"] = float(held_loss.item())
        print(f"{kind:>10}: held-out negative-sampling loss {results[f'{kind}_heldout_loss']:.3f}"
              f" (chance {results['w2v_chance']:.3f})")
        vectors[kind] = model.inner.weight.numpy()

    results["neighbours"] = {m: neighbours(v, vocab, QUERIES) for m, v in vectors.items()}
    for q in QUERIES:
        for m in vectors:
            if q in results["neighbours"][m]:
                print(f"{q:>8} ({m}): {', '.join(results['neighbours'][m][q])}")
    results["train_loss_first"] = {"time_delay": float(np.mean(td_losses[:20])),
                                   "lstm": float(np.mean(lm_losses[:20]))}
    results["seconds"] = clock()
    if not args.no_plots:
        plot_projection(vectors["skipgram"], vocab, out / "projection.png")
        plot_curves(td_losses, lm_losses, w2v_curves, results, out / "loss.png")
    with open(out / "results.json", "w") as f:
        json.dump(results, f, indent=1)
    print(f"done in {results['seconds']:.1f} s; figures and results in {out}/")
    return results


def plot_projection(vectors, vocab, path, count: int = 120):
    """The `count` most frequent words (after the 20 most frequent, mostly function words)."""
    plt = _common.pyplot()
    chosen = [i for i in range(20, min(20 + count, len(vocab))) if vocab[i] != UNK]
    xy = pca_2d(vectors[chosen])
    fig, ax = plt.subplots(figsize=(9, 7))
    ax.scatter(xy[:, 0], xy[:, 1], s=4, color="tab:blue")
    for (x, y), i in zip(xy, chosen):
        ax.annotate(vocab[i], (x, y), fontsize=7, alpha=0.8)
    ax.set(title="skip-gram vectors of frequent words, first two principal components",
           xlabel="PC 1", ylabel="PC 2")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_curves(td_losses, lm_losses, w2v_curves, results, path):
    plt = _common.pyplot()
    fig, (a, b) = plt.subplots(1, 2, figsize=(10, 3.6))
    a.plot(td_losses, lw=0.5, label="time-delay (train)")
    a.plot(lm_losses, lw=0.5, label="LSTM (train)")
    for m, style in (("time_delay", "--"), ("lstm", "-."), ("bigram", ":")):
        a.axhline(math.log(results["perplexity"][m]), ls=style, color="k", lw=0.8,
                  label=f"{m} held out")
    a.set(xlabel="update", ylabel="nats / word", title="next-word models", ylim=(3, 8.5))
    a.legend(fontsize=7)
    for kind, curve in w2v_curves.items():
        b.plot(curve, lw=0.5, label=f"{kind} (train)")
    b.axhline(results["w2v_chance"], color="k", ls=":", lw=0.8, label="chance")
    b.set(xlabel="update", ylabel="negative-sampling loss", title="word vectors")
    b.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


if __name__ == "__main__":
    main()
