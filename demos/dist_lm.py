"""A character-level LSTM language model on Shakespeare, trained data-parallel over MPI.

The char-rnn recipe (Embedding, one fused LSTM, Linear read-out to the 80 characters; truncated
BPTT in windows of k characters over B parallel streams of text) with dropout, run on any number
of processes: the B streams are shared out among the ranks, each rank computes the gradient of
its streams, and `mg.distributed.DataParallel` averages the gradients before every update, so
N processes take the steps one process takes on all B streams. Dropout masks differ per rank
(`mg.distributed.rank_seed`); the run is reproducible. Rank 0 prints, writes the figures and the
checkpoint (with every rank's random state and carried LSTM state, so a resumed run continues
where it stopped); the held-out loss is computed on all ranks' shares of the held-out streams.

    pip install -e ".[dist,demos]"
    mpiexec -n 2 python -m demos.dist_lm                    # add --allow-run-as-root as root
    mpiexec -n 2 python -m demos.dist_lm --save out/dist_lm/model.npz --save-every 100
    mpiexec -n 2 python -m demos.dist_lm --load out/dist_lm/model.npz --steps 200
    python -m demos.dist_lm --steps 100                     # one plain process works too

See docs/distributed.md (several hosts, what scales, the cost of the allreduce).
"""
from __future__ import annotations

import json
import math
import os

import numpy as np

import minigrad as mg
import rnn
from demos import _common
from demos.char_rnn import bigram_entropy, load_text
from rnn.generate import generate


class DropoutLM(mg.nn.Module):
    """tokens (T, B) -> logits (T, B, V): Embedding(V, E), dropout, LSTMCell(E, H), dropout,
    Linear(H, V). `forward(tokens, state)` returns `(logits, new_state)`, state (h, c) each
    (B, H) or None for zeros (the interface of `rnn.generate`)."""

    def __init__(self, vocab: int, embed: int, hidden: int, dropout: float, rng):
        super().__init__()
        self.embed = mg.nn.Embedding(vocab, embed, rng=rng)
        self.cell = rnn.LSTMCell(embed, hidden, rng=rng)
        self.head = mg.nn.Linear(hidden, vocab, rng=rng)
        self.drop = mg.nn.Dropout(dropout)

    def forward(self, tokens, state=None):
        out, state = rnn.unroll(self.cell, self.drop(self.embed(tokens)), state)
        return self.head(self.drop(out)), state


def streams(ids: np.ndarray, B: int) -> np.ndarray:
    """Cut a text into B contiguous streams, time-major (L, B)."""
    L = len(ids) // B
    return ids[:L * B].reshape(B, L).T.copy()


def evaluate(model, data: np.ndarray, k: int, group) -> float:
    """Mean cross-entropy (nats/char) over held-out streams (L, B), read in windows of k with the
    state carried along; each rank scores its own streams and the sums are added up."""
    total, count, state = 0.0, 0, None
    model.eval()
    with mg.no_grad():
        for t in range(0, data.shape[0] - 1, k):
            x, y = data[t:t + k], data[t + 1:t + k + 1]
            logits, state = model(x[:len(y)], state)
            total += float(rnn.sequence_cross_entropy(logits, y, reduction="sum").item())
            count += y.size
    model.train()
    return group.sum(total) / group.sum(count)


def main(argv=None) -> dict:
    p = _common.parser("dist_lm", __doc__.split("\n\n")[0])
    p.add_argument("--steps", type=int, default=1500, help="updates")
    p.add_argument("--batch", type=int, default=32, help="streams B, all ranks together")
    p.add_argument("--bptt", type=int, default=64, help="window length k (TBPTT k1 = k2)")
    p.add_argument("--hidden", type=int, default=256)
    p.add_argument("--embed", type=int, default=48)
    p.add_argument("--dropout", type=float, default=0.1)
    p.add_argument("--lr", type=float, default=4e-3)
    p.add_argument("--clip", type=float, default=1.0, help="gradient norm clipping")
    p.add_argument("--bucket-mb", type=float, default=8.0, help="allreduce bucket size")
    p.add_argument("--chars", type=int, default=None, help="use only the first N characters")
    p.add_argument("--val-chars", type=int, default=None,
                   help="score only the first N held-out characters (default all)")
    p.add_argument("--sample", type=int, default=300, help="characters per sample")
    p.add_argument("--prompt", default="ROMEO.\n")
    p.add_argument("--save", default=None, help="checkpoint path (rank 0 writes it)")
    p.add_argument("--save-every", type=int, default=0, help="also checkpoint every N updates")
    p.add_argument("--load", default=None, help="resume from this checkpoint")
    return _common.launch(p, argv, run)


def run(args) -> dict:
    group = mg.distributed.init()
    rank, size = group.rank, group.size
    lead = rank == 0
    rng, out, clock = _common.start(args)           # rng: the same on every rank (weights)
    mg.manual_seed(mg.distributed.rank_seed(args.seed, rank))  # dropout: a stream per rank

    # data: every rank reads the text and keeps its share of the B streams
    text = load_text(limit=args.chars)
    vocab = "".join(sorted(set(load_text())))
    V = len(vocab)
    lookup = np.zeros(256, dtype=np.int64)
    lookup[[ord(c) for c in vocab]] = np.arange(V)
    ids = lookup[np.frombuffer(text.encode("ascii"), dtype=np.uint8)]
    n_val = len(ids) // 10
    val_ids = ids[-n_val:][:args.val_chars] if args.val_chars else ids[-n_val:]
    if args.batch % size and lead:
        print(f"note: {args.batch} streams do not split evenly over {size} processes: the "
              f"last {args.batch % size} are dropped")
    train = streams(ids[:-n_val], args.batch)[:, mg.distributed.shard(args.batch, rank, size)]
    # scoring sums losses and counts, so ranks may hold unequal shares: every stream is scored
    val = streams(val_ids, max(1, min(64, len(val_ids) // (4 * args.bptt))))[:, rank::size]

    # model: a replica per rank, made equal to rank 0's by DataParallel
    model = DropoutLM(V, args.embed, args.hidden, args.dropout, rng)
    dp = mg.distributed.DataParallel(model, bucket_bytes=int(args.bucket_mb * 2**20))
    params = model.parameters()
    opt = mg.optim.Adam(params, lr=args.lr)
    start, state = 0, None
    if args.load:
        ckpt = mg.distributed.load(args.load)
        if ckpt["vocab"] != vocab:
            raise ValueError(f"dist_lm: checkpoint {args.load} has another vocabulary")
        model.load_state_dict(ckpt["model"])
        opt.load_state_dict(ckpt["optimizer"])
        start = int(ckpt["step"])
        if len(ckpt["random"]) == size and ckpt["batch"] == args.batch:
            mg.random.set_state(ckpt["random"][rank])
            state = tuple(mg.tensor(a) for a in ckpt["carry"][rank])
        elif lead:
            print("note: another number of processes or streams: dropout streams and the "
                  "carried state start afresh")
        if lead:
            print(f"resumed from {args.load} at step {start}")

    def checkpoint(step):
        mg.distributed.save({"model": model.state_dict(), "optimizer": opt.state_dict(),
                             "step": step, "vocab": vocab, "batch": args.batch,
                             "random": group.gather_object(mg.random.get_state()),
                             "carry": group.gather_object([s.numpy() for s in state]),
                             "args": vars(args)}, args.save)

    if args.save:
        os.makedirs(os.path.dirname(os.path.abspath(args.save)), exist_ok=True)
    L, k = train.shape[0], args.bptt
    losses = []
    bar = _common.progress(args.steps, f"dist-lm x{size}", args.quiet or not lead)
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
        dp.average_gradients()                      # the mean gradient over all B streams
        mg.nn.utils.clip_grad_norm_(params, args.clip)
        opt.step()
        losses.append(float(loss.item()))
        if args.save and args.save_every and (start + i + 1) % args.save_every == 0:
            checkpoint(start + i + 1)
        if i % 10 == 0 and lead:
            bar.set_postfix(loss=f"{np.mean(losses[-50:]):.3f}")
    train_seconds = clock()
    # the loss of each update over all streams: the mean of the ranks' means (equal shares)
    losses = np.mean(group.allgather_object(losses), axis=0).tolist() if losses else []
    if args.save:
        checkpoint(start + args.steps)
        if lead:
            print(f"checkpoint written to {args.save}")

    val_loss = evaluate(model, val, k, group)
    ref = bigram_entropy(ids, V)
    results = {"processes": size, "losses": losses,
               "train_loss_first": float(np.mean(losses[:20])) if losses else None,
               "train_loss_last": float(np.mean(losses[-50:])) if losses else None,
               "val_nats": val_loss, "val_bits": val_loss / math.log(2), "bigram_nats": ref,
               "steps": start + args.steps, "train_seconds": train_seconds,
               "updates_per_second": args.steps / train_seconds if args.steps else None,
               "allreduce_seconds": dp.allreduce_seconds}
    if not lead:
        return results
    print(f"{size} process(es), {args.steps} updates in {train_seconds:.1f} s "
          f"({dp.allreduce_seconds:.2f} s in allreduce on rank 0); held-out loss: "
          f"{val_loss:.3f} nats/char = {val_loss / math.log(2):.3f} bits/char; 2-character "
          f"entropy of the text {ref:.3f} nats/char")
    prompt = lookup[np.frombuffer(args.prompt.encode("ascii"), dtype=np.uint8)]
    model.eval()
    gen = generate(model, prompt, args.sample, strategy="sample", temperature=0.7,
                   rng=np.random.default_rng(args.seed))
    results["sample"] = args.prompt + "".join(vocab[j] for j in gen)
    print(f"\n--- sample at temperature 0.7 ---\n{results['sample']}\n")
    if losses and not args.no_plots:
        plot(losses, val_loss, ref, size, out / "loss.png")
    with open(out / "results.json", "w") as f:
        json.dump(results, f, indent=1)
    print(f"done in {clock():.1f} s; results in {out}/")
    return results


def plot(losses, val_loss, ref, size, path):
    plt = _common.pyplot()
    fig, ax = plt.subplots(figsize=(6.5, 3.8))
    w = min(50, len(losses))
    smooth = np.convolve(losses, np.ones(w) / w, mode="valid")
    ax.plot(np.arange(len(smooth)) + w, smooth, label="training (running mean)")
    ax.axhline(val_loss, color="C1", label=f"held-out: {val_loss:.3f}")
    ax.axhline(ref, color="gray", ls="--", label=f"2-character entropy: {ref:.3f}")
    ax.set(xlabel="update", ylabel="nats per character",
           title=f"char LSTM on Shakespeare, {size} process(es)")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


if __name__ == "__main__":
    main()
