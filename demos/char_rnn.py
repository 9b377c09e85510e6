"""A character-level LSTM language model on Shakespeare, trained with truncated BPTT.

The model reads one character at a time and predicts the next: an Embedding, one fused LSTM run
by `rnn.unroll`, and a Linear read-out to the 80 characters. Training cuts the text into B
parallel streams and walks them in windows of k characters; the LSTM state is carried from one
window to the next with no gradient (truncated BPTT, k1 = k2 = k, as `rnn.tbptt` does with
`input_fn=` for the Embedding; the loop is written out here because it cycles over the streams for
a set number of windows). Whole plays are held out (by default Julius Caesar and Much Ado About
Nothing, 238,570 characters the model never trains on): the demo reports the loss on them in
nats and bits per character, against the 2-character (bigram) entropy of the training plays, and
prints samples at temperatures 0.5 and 1.0, a nucleus sample (top_p 0.9) and the most likely next
line after the prompt, found by beam search.

    python -m demos.char_rnn                        # about 3 minutes on 2 cores
    python -m demos.char_rnn --save out/char_rnn/model.npz
    python -m demos.char_rnn --load out/char_rnn/model.npz --steps 0 --sample 500
    python -m demos.char_rnn --load out/char_rnn/model.npz --eval some_text.txt
"""
from __future__ import annotations

import json
import math
import os
import re
import time

import numpy as np

import minigrad as mg
import rnn
from demos import _common
from rnn.decoding import beam_search
from rnn.generate import generate

DATA = os.path.join(os.path.dirname(os.path.abspath(__file__)), "data", "shakespeare",
                    "plays.txt")
# The nine plays in plays.txt, by the key --heldout takes and the title that opens each one.
PLAYS = {"macbeth": "MACBETH", "julius_caesar": "JULIUS CAESAR",
         "romeo_and_juliet": "ROMEO AND JULIET", "king_lear": "THE TRAGEDY OF KING LEAR",
         "othello": "OTHELLO, THE MOOR OF VENICE",
         "twelfth_night": "TWELFTH NIGHT; OR, WHAT YOU WILL",
         "midsummer": "A MIDSUMMER NIGHT'S DREAM", "merchant_of_venice": "THE MERCHANT OF VENICE",
         "much_ado": "MUCH ADO ABOUT NOTHING"}
# One tragedy in verse and one comedy mostly in prose, never seen in training.
HELDOUT = ("julius_caesar", "much_ado")


def load_text(path: str = DATA, limit: int | None = None) -> str:
    with open(path, encoding="ascii") as f:
        text = f.read()
    return text[:limit] if limit else text


def split_plays(text: str) -> dict[str, str]:
    """The text of each play in PLAYS, cut where the next play's title begins."""
    starts = []
    for key, title in PLAYS.items():
        at = text.find(title + "\n\nby William Shakespeare")
        if at < 0:
            raise ValueError(f"char_rnn: the play {title!r} is not in the text")
        starts.append((at, key))
    starts.sort()
    ends = [at for at, _ in starts[1:]] + [len(text)]
    return {key: text[at:end] for (at, key), end in zip(starts, ends)}


def bigram_entropy(ids: np.ndarray, V: int) -> float:
    """H(X_t | X_{t-1}) in nats: the loss of the best model that sees one previous character."""
    pair = np.bincount(ids[:-1] * V + ids[1:], minlength=V * V).astype(np.float64)
    prev = pair.reshape(V, V).sum(axis=1)
    p_pair = pair[pair > 0] / pair.sum()
    p_prev = prev[prev > 0] / prev.sum()
    return float(-(p_pair * np.log(p_pair)).sum() + (p_prev * np.log(p_prev)).sum())


class CharLM(mg.nn.Module):
    """tokens (T, B) -> logits (T, B, V): Embedding(V, E), LSTMCell(E, H), Dropout(p) on the
    LSTM's outputs while training, Linear(H, V).

    `forward(tokens, state)` returns `(logits, new_state)`, state (h, c) each (B, H) or None for
    zeros: the interface `rnn.generate` feeds its samples back through. `step(tokens (N,),
    state)` reads one character: the protocol `rnn.decoding` (beam search) drives.
    """

    def __init__(self, vocab: int, embed: int, hidden: int, rng, dropout: float = 0.0):
        super().__init__()
        self.embed = mg.nn.Embedding(vocab, embed, rng=rng)
        self.cell = rnn.LSTMCell(embed, hidden, rng=rng)
        self.drop = mg.nn.Dropout(dropout)
        self.head = mg.nn.Linear(hidden, vocab, rng=rng)

    def forward(self, tokens, state=None):
        out, state = rnn.unroll(self.cell, self.embed(tokens), state)
        return self.head(self.drop(out)), state

    def step(self, tokens, state):
        """tokens (N,) -> (log_probs (N, V) of the next character, new state)."""
        out, state = self.cell(self.embed(tokens), state)
        return mg.log_softmax(self.head(self.drop(out)), axis=-1), state


def streams(ids: np.ndarray, B: int) -> np.ndarray:
    """Cut a text into B contiguous streams, time-major (L, B)."""
    L = len(ids) // B
    return ids[:L * B].reshape(B, L).T.copy()


def token_losses(model, data: np.ndarray, k: int) -> np.ndarray:
    """Cross-entropy (nats) of predicting data[t+1] from data[:t+1], for every t, over streams
    (L, B): an (L - 1, B) array. Read in windows of k with the state carried along (so only the
    first character of each stream has no history)."""
    losses, state = [], None
    with mg.no_grad():
        for t in range(0, data.shape[0] - 1, k):
            x, y = data[t:t + k], data[t + 1:t + k + 1]
            x = x[:len(y)]
            logits, state = model(x, state)
            losses.append(rnn.sequence_cross_entropy(logits, y, reduction="none").numpy())
    return np.concatenate(losses).astype(np.float64)


def evaluate(model, data: np.ndarray, k: int) -> float:
    """Mean cross-entropy (nats/char) over streams (L, B): see `token_losses`."""
    return float(token_losses(model, data, k).mean())


def speaker_lines(text: str) -> np.ndarray:
    """Per character of `text`, whether it is in a line that names the speaker ("BRUTUS.\n"),
    the part of an unseen play that no training on other plays can predict well."""
    mask = np.zeros(len(text), dtype=bool)
    for m in re.finditer(r"^[A-Z][A-Z .'-]*\.\n", text, re.M):
        mask[m.start():m.end()] = True
    return mask


def decode(vocab: str, ids) -> str:
    return "".join(vocab[i] for i in ids)


def encode(vocab: str, text: str) -> np.ndarray:
    """Character ids (int64) of `text`; a character outside the vocabulary is refused, since the
    model gives it no probability at all."""
    unknown = sorted(set(text) - set(vocab))
    if unknown:
        raise ValueError(f"char_rnn: {len(unknown)} characters are not in the model's "
                         f"vocabulary of {len(vocab)}: {''.join(unknown)[:40]!r}")
    index = {c: i for i, c in enumerate(vocab)}
    return np.array([index[c] for c in text], dtype=np.int64)


def likely_line(model, vocab: str, prompt: str, beam: int, max_len: int = 100):
    """The most likely line to follow `prompt`, by beam search: (line, log p), or None when
    no line ends within max_len characters.

    The model reads the prompt but its last character; that one is the first token the search
    feeds, a newline ends a hypothesis, and at least one character comes before it."""
    ids = encode(vocab, prompt)
    with mg.no_grad():
        state = (model.cell.initial_state(1) if len(ids) == 1
                 else model(ids[:-1, None], None)[1])
    found = beam_search(model, state, int(ids[-1]), vocab.index("\n"), beam, max_len,
                        min_len=1)[0]
    if not found or found[0].length == max_len:  # cut off at max_len: not a line
        return None
    return decode(vocab, found[0].tokens[:-1]), found[0].log_prob


def eval_streams(n: int, k: int) -> int:
    """How many parallel streams to score n characters with: up to 64, each at least 4 windows
    long, so that few characters are read without history."""
    return min(64, max(1, n // (4 * k)))


def main(argv=None) -> dict:
    p = _common.parser("char_rnn", __doc__.split("\n\n")[0])
    p.add_argument("--steps", type=int, default=2800, help="training windows (updates)")
    p.add_argument("--batch", type=int, default=16, help="parallel streams B")
    p.add_argument("--bptt", type=int, default=128, help="window length k (TBPTT k1 = k2)")
    p.add_argument("--hidden", type=int, default=256)
    p.add_argument("--embed", type=int, default=48)
    p.add_argument("--dropout", type=float, default=0.0,
                   help="dropout on the LSTM's outputs while training")
    p.add_argument("--lr", type=float, default=5e-3, help="peak learning rate (Adam)")
    p.add_argument("--warmup", type=int, default=0, help="updates of linear warm-up to --lr")
    p.add_argument("--clip", type=float, default=1.0, help="gradient norm clipping")
    p.add_argument("--heldout", nargs="+", default=list(HELDOUT), choices=list(PLAYS),
                   help="plays never trained on, scored at the end")
    p.add_argument("--chars", type=int, default=None,
                   help="train on only the first N characters of the training plays")
    p.add_argument("--val-chars", type=int, default=None,
                   help="score only the first N held-out characters (default all)")
    p.add_argument("--sample", type=int, default=300, help="characters per sample")
    p.add_argument("--prompt", default="ROMEO.\n")
    p.add_argument("--save", default=None, help="write a checkpoint here after training")
    p.add_argument("--load", default=None, help="resume from this checkpoint")
    p.add_argument("--eval", default=None, metavar="FILE",
                   help="only score FILE (ASCII text) with the --load model, in nats/char")
    return _common.launch(p, argv, run, check)


def check(args) -> None:
    if args.eval and not args.load:
        raise SystemExit("char_rnn: --eval FILE scores a saved model: give it with --load MODEL")
    if len(set(args.heldout)) == len(PLAYS):
        raise SystemExit("char_rnn: --heldout names every play; leave at least one to train on")


def run(args) -> dict:
    rng, out, clock = _common.start(args)
    cpu_start = time.process_time()

    full = load_text()
    vocab = "".join(sorted(set(full)))  # from the whole text: checkpoints stay compatible
    V = len(vocab)
    model = CharLM(V, args.embed, args.hidden, rng, dropout=args.dropout)
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
        print(f"loaded {args.load} (trained for {start} updates)")
    if args.eval:
        return score_file(model.eval(), vocab, args, out)

    plays = split_plays(full)
    train_text = "".join(t for key, t in plays.items() if key not in args.heldout)
    heldout_text = "".join(plays[key] for key in args.heldout)
    if args.chars:
        train_text = train_text[:args.chars]
    if args.val_chars:
        heldout_text = heldout_text[:args.val_chars]
    train_ids, val_ids = encode(vocab, train_text), encode(vocab, heldout_text)
    train = streams(train_ids, args.batch)
    val = streams(val_ids, eval_streams(len(val_ids), args.bptt))

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
        if i < args.warmup:
            for group in opt.param_groups:
                group["lr"] = args.lr * (i + 1) / args.warmup
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

    model.eval()  # no dropout from here on: scoring and sampling
    losses_val = token_losses(model, val, k)
    val_loss = float(losses_val.mean())
    names = streams(speaker_lines(heldout_text), val.shape[1])[1:]  # the predicted characters
    names_nats = float(losses_val[names].mean()) if names.any() else None
    rest_nats = float(losses_val[~names].mean())
    ref = bigram_entropy(train_ids, V)
    counts = np.bincount(train_ids, minlength=V)
    n = len(train_ids)
    unigram = -float(sum(c / n * math.log(c / n) for c in counts if c))
    print(f"unseen plays ({', '.join(args.heldout)}; {val.size:,} characters): "
          f"{val_loss:.3f} nats/char = {val_loss / math.log(2):.3f} bits/char; "
          f"entropy of the training plays: 2-character {ref:.3f} nats/char, "
          f"1-character {unigram:.3f}")
    if names_nats is not None:
        print(f"  speaker-name lines ('BRUTUS.'): {names.mean():.1%} of those characters at "
              f"{names_nats:.3f} nats/char; the rest of the text {rest_nats:.3f} nats/char")
    prompt = encode(vocab, args.prompt)
    samples = {}
    for temp in (0.5, 1.0):
        gen = generate(model, prompt, args.sample, strategy="sample", temperature=temp,
                       rng=np.random.default_rng(args.seed))
        samples[temp] = args.prompt + decode(vocab, gen)
        print(f"\n--- sample at temperature {temp} ---\n{samples[temp]}\n")
    gen = generate(model, prompt, args.sample, strategy="sample", top_p=0.9,
                   rng=np.random.default_rng(args.seed))
    nucleus = args.prompt + decode(vocab, gen)
    print(f"--- nucleus sample: top_p 0.9, temperature 1 ---\n{nucleus}\n")
    print("--- the most likely next line, by beam search (beam 1 is greedy) ---")
    lines = {beam: likely_line(model, vocab, args.prompt, beam) for beam in (1, 5, 10)}
    for beam, line in lines.items():
        print(f"beam {beam:2d}: " + ("none within 100 characters" if line is None
                                     else f"log p {line[1]:7.2f}  {line[0]!r}"))
    results = {"train_loss_first": float(np.mean(losses[:20])) if losses else None,
               "train_loss_last": float(np.mean(losses[-50:])) if losses else None,
               "heldout_plays": list(args.heldout), "heldout_chars": int(val.size),
               "val_nats": val_loss, "val_bits": val_loss / math.log(2),
               "val_nats_speaker_lines": names_nats, "val_nats_rest": rest_nats,
               "speaker_line_share": float(names.mean()),
               "bigram_nats": ref, "unigram_nats": unigram, "steps": start + args.steps,
               "train_seconds": train_seconds, "samples": samples, "nucleus_sample": nucleus,
               "beam_lines": {beam: None if line is None else {"line": line[0], "log_prob": line[1]}
                              for beam, line in lines.items()},
               "seconds": clock(),
               "cpu_seconds": time.process_time() - cpu_start}
    if losses and not args.no_plots:
        plot(losses, val_loss, ref, out / "loss.png")
    with open(out / "results.json", "w") as f:
        json.dump(results, f, indent=1)
    with open(out / "samples.txt", "w") as f:
        for temp, s in samples.items():
            f.write(f"--- temperature {temp} ---\n{s}\n\n")
        f.write(f"--- nucleus, top_p 0.9 ---\n{nucleus}\n\n--- beam search: the most likely "
                f"next line after {args.prompt!r} (beam: line, log p) ---\n")
        f.writelines(f"{beam}: {line}\n" for beam, line in lines.items())
    print(f"done in {results['seconds']:.1f} s wall, {results['cpu_seconds']:.1f} s CPU; "
          f"figures, samples and results in {out}/")
    return results


def score_file(model, vocab: str, args, out) -> dict:
    """--eval: the model's loss on one text file, read as one stream from its first character."""
    with open(args.eval, encoding="utf-8") as f:
        text = f.read()
    ids = encode(vocab, text)
    if len(ids) < 2:
        raise ValueError(f"char_rnn: --eval {args.eval} has fewer than 2 characters to score")
    nats = evaluate(model, ids[:, None], 512)  # one stream: long windows, few Python steps
    bits = nats / math.log(2)
    print(f"{args.eval}: {nats:.4f} nats/char = {bits:.4f} bits/char "
          f"({len(ids) - 1:,} characters predicted)")
    results = {"eval_file": args.eval, "eval_nats": nats, "eval_bits": bits,
               "eval_chars": len(ids) - 1}
    with open(out / "eval.json", "w") as f:
        json.dump(results, f, indent=1)
    return results


def plot(losses, val_loss, ref, path):
    plt = _common.pyplot()
    fig, ax = plt.subplots(figsize=(6.5, 3.8))
    w = min(50, len(losses))
    smooth = np.convolve(losses, np.ones(w) / w, mode="valid")
    ax.plot(np.arange(len(smooth)) + w, smooth, label="training (running mean)")
    ax.axhline(val_loss, color="C1", label=f"unseen plays: {val_loss:.3f}")
    ax.axhline(ref, color="gray", ls="--", label=f"2-character entropy (training plays): {ref:.3f}")
    ax.set(xlabel="update", ylabel="nats per character", title="char-rnn on Shakespeare")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


if __name__ == "__main__":
    main()
