"""A dialogue whose right reply depends on an earlier turn: the speaker says their name and their
city (in either order, with small talk around), then asks one question about them. A
hierarchical encoder-decoder (HRED: an utterance encoder, a context RNN over the turns, a decoder
conditioned on the context) reads every turn; the baseline, a seq2seq model with attention, reads
only the last utterance (the question), as a single-turn chat model would.

    python -m demos.dialogue            # both models, about a minute on 2 cores
    python -m demos.dialogue --quick    # a few seconds

The (name, city) pairs are split once: held-out dialogues use pairs never seen in training.
"""
from __future__ import annotations

import json

import numpy as np

import minigrad as mg
import rnn
from demos import _common
from rnn.decoding import greedy

NAMES = ["anna", "bob", "carla", "dev", "emil", "fatima", "gus", "hana"]
CITIES = ["paris", "lima", "oslo", "tokyo", "cairo", "quito", "rome", "seoul"]
SMALL_TALK = ["hello there .", "how are you ?", "i am fine thanks .", "nice weather today .",
              "i had coffee .", "it is late ."]
QUESTIONS = {"name": ("what is my name ?", "your name is {} ."),
             "city": ("where do i live ?", "you live in {} .")}
WORDS = sorted({w for s in SMALL_TALK + [q for q, _ in QUESTIONS.values()]
                + [r for _, r in QUESTIONS.values()] + ["my name is .", "i live in ."]
                for w in s.split() if w != "{}"} | set(NAMES) | set(CITIES))
PAD, BOS, EOS = 0, 1, 2
IDS = {w: i + 3 for i, w in enumerate(WORDS)}
VOCAB = len(WORDS) + 3


def split_pairs(rng, n_test: int = 16):
    pairs = [(a, b) for a in range(len(NAMES)) for b in range(len(CITIES))]
    order = rng.permutation(len(pairs))
    return [pairs[i] for i in order[n_test:]], [pairs[i] for i in order[:n_test]]


def dialogue(rng, pair):
    """(turns as lists of words, reply words)."""
    name, city = NAMES[pair[0]], CITIES[pair[1]]
    facts = [f"my name is {name} .", f"i live in {city} ."]
    if rng.random() < 0.5:
        facts.reverse()
    turns = list(facts)
    for _ in range(rng.integers(0, 3)):          # small talk anywhere before the question
        turns.insert(rng.integers(0, len(turns) + 1), SMALL_TALK[rng.integers(len(SMALL_TALK))])
    kind = "name" if rng.random() < 0.5 else "city"
    question, reply = QUESTIONS[kind]
    turns.append(question)
    return [t.split() for t in turns], reply.format(name if kind == "name" else city).split()


def batch(rng, pairs, B: int):
    """HRED inputs: turns (N, L, B), turn lengths (N, B), turns per dialogue (B,); the reply as
    decoder inputs and targets (T, B) with lengths (B,); and the dialogues themselves."""
    talks = [dialogue(rng, pairs[rng.integers(len(pairs))]) for _ in range(B)]
    N = max(len(t) for t, _ in talks)
    L = max(len(u) for t, _ in talks for u in t)
    T = max(len(r) for _, r in talks) + 1
    turns = np.full((N, L, B), PAD, dtype=np.int64)
    lengths = np.ones((N, B), dtype=np.int64)
    tgt = np.full((T, B), EOS, dtype=np.int64)
    for b, (t, r) in enumerate(talks):
        for n, u in enumerate(t):
            turns[n, :len(u), b] = [IDS[w] for w in u]
            lengths[n, b] = len(u)
        tgt[:len(r), b] = [IDS[w] for w in r]
    tgt_in = np.concatenate([np.full((1, B), BOS), tgt[:-1]])
    n_turns = np.array([len(t) for t, _ in talks])
    reply_lengths = np.array([len(r) + 1 for _, r in talks])
    return (turns, lengths, n_turns), (tgt_in, tgt, reply_lengths), talks


def last_turn(turns, lengths, n_turns):
    """The last utterance of each dialogue as a source (L, B) with its lengths: what the
    single-turn baseline reads."""
    B = turns.shape[2]
    last = n_turns - 1
    return turns[last, :, np.arange(B)].T, lengths[last, np.arange(B)]


class Baseline:
    """A seq2seq model (BiGRU encoder, GRU decoder with additive attention) on the last turn,
    behind the same calls as HRED."""

    def __init__(self, hidden, embed, rng):
        enc = rnn.GRU(embed, hidden, bidirectional=True, rng=rng)
        dec = rnn.AttentionDecoderCell(rnn.GRUCell(embed + hidden, hidden, rng=rng),
                                       rnn.AdditiveAttention(hidden, 2 * hidden, hidden,
                                                             rng=rng), rng=rng)
        self.model = rnn.Seq2Seq(VOCAB, VOCAB, embed, enc, dec, rng=rng)

    def parameters(self):
        return self.model.parameters()

    def loss(self, turns, lengths, n_turns, tgt_in, tgt, reply_lengths):
        src, src_len = last_turn(turns, lengths, n_turns)
        return self.model.loss(src, src_len, tgt_in, tgt, reply_lengths)

    def start(self, turns, lengths, n_turns):
        return self.model.start(*last_turn(turns, lengths, n_turns))

    def step(self, tokens, state):
        return self.model.step(tokens, state)


def build_hred(hidden, embed, rng):
    return rnn.HRED(VOCAB, embed, rnn.GRU(embed, hidden, bidirectional=True, rng=rng),
                    rnn.GRUCell(2 * hidden, hidden, rng=rng),
                    rnn.GRUCell(embed + hidden, hidden, rng=rng), rng=rng)


def train(model, rng, pairs, args, label):
    opt = mg.optim.Adam(model.parameters(), lr=args.lr)
    sched = mg.optim.CosineAnnealingLR(opt, T_max=args.steps)
    losses = []
    bar = _common.progress(args.steps, label, args.quiet)
    for step in bar:
        source, target, _ = batch(rng, pairs, args.batch)
        loss = model.loss(*source, *target)
        opt.zero_grad()
        loss.backward()
        mg.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        sched.step()
        losses.append(float(loss.item()))
        if step % 20 == 0:
            bar.set_postfix(loss=f"{np.mean(losses[-20:]):.4f}")
    return losses


def evaluate(model, rng, pairs, n: int) -> dict:
    """Greedy replies to n held-out dialogues: exact-match share and a few examples."""
    source, (_, tgt, reply_lengths), talks = batch(rng, pairs, n)
    with mg.no_grad():
        state = model.start(*source)
    hyps = greedy(model, state, BOS, EOS, tgt.shape[0])
    right = [np.array_equal(h.tokens, tgt[:k, b]) for b, (h, k) in enumerate(zip(hyps,
                                                                              reply_lengths))]
    inverse = {i: w for w, i in IDS.items()}
    shown = [" | ".join(" ".join(u) for u in t) + " -> "
             + " ".join(inverse.get(int(k), "<end>") for k in h.tokens[:-1])
             for (t, _), h in zip(talks[:4], hyps)]
    return {"exact_match": float(np.mean(right)), "examples": shown}


def main(argv=None) -> dict:
    p = _common.parser("dialogue", __doc__.split("\n\n")[0])
    p.add_argument("--steps", type=int, default=2000)
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--hidden", type=int, default=64)
    p.add_argument("--embed", type=int, default=16)
    p.add_argument("--lr", type=float, default=5e-3)
    p.add_argument("--test", type=int, default=1000, help="held-out dialogues")
    p.add_argument("--quick", action="store_true", help="a few seconds: 80 steps, 200 dialogues")
    return _common.launch(p, argv, run)


def run(args) -> dict:
    if args.quick:
        args.steps, args.hidden, args.test = 80, 32, 200
    rng, out, clock = _common.start(args)
    train_pairs, test_pairs = split_pairs(rng)
    results = {"steps": args.steps, "batch": args.batch, "hidden": args.hidden,
               "test_dialogues": args.test, "chance_exact_match": 1 / len(NAMES)}
    curves = {}
    for name, make in (("hred", build_hred), ("last_turn_seq2seq", Baseline)):
        model = make(args.hidden, args.embed, rng)
        started = clock()
        curves[name] = train(model, rng, train_pairs, args, name)
        ev = evaluate(model, np.random.default_rng(args.seed + 1), test_pairs, args.test)
        results[name] = dict(ev, loss_first=float(np.mean(curves[name][:20])),
                             loss_last=float(np.mean(curves[name][-20:])),
                             train_seconds=clock() - started)
        print(f"{name}: {100 * ev['exact_match']:.1f}% of {args.test} held-out replies exactly "
              f"right")
    results["seconds"] = clock()
    if not args.no_plots:
        plt = _common.pyplot()
        fig, ax = plt.subplots(figsize=(6, 3.5))
        for name, losses in curves.items():
            ax.semilogy(losses, lw=0.8, label=f"{name} ({100 * results[name]['exact_match']:.0f}"
                                              "% exact)")
        ax.set(xlabel="update", ylabel="cross-entropy per token (nats)",
               title="dialogue: the reply needs an earlier turn")
        ax.legend()
        fig.tight_layout()
        fig.savefig(out / "loss.png", dpi=110)
        plt.close(fig)
    with open(out / "results.json", "w") as f:
        json.dump(results, f, indent=1)
    print(f"done in {results['seconds']:.1f} s; figures and results in {out}/")
    return results


if __name__ == "__main__":
    main()
