"""A stack-augmented RNN learns to count: it predicts the next letter of a stream of a^n b^n
words (or a^n b^n c^n, a^n b^2n with --pattern), trained on n <= 20 and tested on n up to 60.

Once the first b shows, the rest of a word is determined (the b's, then the next word's first
a), so a model that counts gets every determined letter right. A word counts as correct when all
its determined letters are predicted (Joulin & Mikolov 2015's measure); the stack RNN is tested
with discrete push/pop/no-op actions as in the paper, and an LSTM trained on the same batches is
the baseline beside it. A picture shows the stack's contents while it reads a few words.

    python -m demos.stack_rnn                      # a few minutes on 2 cores
    python -m demos.stack_rnn --pattern anbncn
"""
from __future__ import annotations

import json

import numpy as np

import minigrad as mg
import rnn
from demos import _common
from rnn.memory import StackRNNCell, tasks


def stream_batch(rng, pattern: str, batch: int, steps: int, n_max: int):
    """Inputs (steps, B) and next-letter targets (steps, B): streams of words with n drawn
    uniformly from 1..n_max, each stream starting at a word boundary."""
    rows = []
    for _ in range(batch):
        ns = []
        while sum(ns) * sum(tasks.COUNTING[pattern]) <= steps:
            ns.append(int(rng.integers(1, n_max + 1)))
        tokens, _, _ = tasks.counting_stream(pattern, ns)
        rows.append(tokens[:steps + 1])
    rows = np.stack(rows, axis=1)
    return rows[:-1], rows[1:]


def one_hot(tokens):
    return mg.tensor(np.eye(3, dtype=np.float32)[tokens])


class Predictor(mg.nn.Module):
    """A cell over one-hot letters (T, B, 3) and, for the LSTM, a linear read-out to 3 logits."""

    def __init__(self, cell, readout=None):
        super().__init__()
        self.cell, self.readout = cell, readout

    def forward(self, tokens):
        out, _ = rnn.unroll(self.cell, one_hot(tokens))
        return out if self.readout is None else self.readout(out)


def train(model, args, rng, desc):
    opt = mg.optim.Adam(model.parameters(), lr=args.lr)
    losses = []
    bar = _common.progress(args.steps, desc, args.quiet)
    for step in bar:
        x, y = stream_batch(rng, args.pattern, args.batch, args.bptt, args.train_max)
        logits = model(x)
        loss = mg.cross_entropy(logits, y)
        opt.zero_grad()
        loss.backward()
        mg.nn.utils.clip_grad_norm_(model.parameters(), 5.0)
        opt.step()
        losses.append(float(loss.item()))
        if step % 20 == 0:
            bar.set_postfix(loss=f"{np.mean(losses[-50:]):.4f}")
    return losses


def words_correct(model, pattern: str, ns) -> np.ndarray:
    """For each n in `ns` (one stream of those words, in that order, then one more a): whether
    every determined letter of that word, and the a that follows it, was predicted."""
    tokens, det, word = tasks.counting_stream(pattern, list(ns) + [1])
    with mg.no_grad():
        logits = model(tokens[:-1, None]).numpy()[:, 0]
    right = logits.argmax(axis=1) == tokens[1:]
    # the first a of word k is determined by the end of word k - 1: it belongs to that word
    owner = np.where((tokens == 0) & det, word - 1, word)[1:]
    judged = det[1:]
    ok = np.ones(len(ns), bool)
    for k in range(len(ns)):
        ok[k] = right[judged & (owner == k)].all()
    return ok


def main(argv=None) -> dict:
    p = _common.parser("stack_rnn", __doc__.split("\n\n")[0])
    p.add_argument("--pattern", choices=sorted(tasks.COUNTING), default="anbn")
    p.add_argument("--steps", type=int, default=600)
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--bptt", type=int, default=60, help="letters per training stream")
    p.add_argument("--train-max", type=int, default=20, help="largest n in training")
    p.add_argument("--test-max", type=int, default=60, help="largest n tested")
    p.add_argument("--hidden", type=int, default=40)
    p.add_argument("--stacks", type=int, default=2)
    p.add_argument("--recurrent", action="store_true",
                   help="give the stack RNN recurrent weights too (by default its memory is the "
                        "stacks alone)")
    p.add_argument("--lr", type=float, default=1e-2)
    p.add_argument("--quick", action="store_true", help="a few seconds: for tests")
    return _common.launch(p, argv, run, check=quick_sizes)


def quick_sizes(args):
    if args.quick:
        args.steps, args.batch, args.bptt, args.train_max, args.test_max = 250, 8, 30, 5, 10
        args.lr = 3e-2


def run(args) -> dict:
    rng, out, clock = _common.start(args)
    depth = args.test_max * max(tasks.COUNTING[args.pattern]) + 10
    stack_cell = StackRNNCell(3, 3, hidden_size=args.hidden, stacks=args.stacks, depth=depth,
                              recurrent=args.recurrent, rng=rng)
    models = {"stack_rnn": Predictor(stack_cell),
              "lstm": Predictor(rnn.LSTMCell(3, args.hidden, rng=rng),
                                mg.nn.Linear(args.hidden, 3, rng=rng))}
    test_ns = np.arange(1, args.test_max + 1)
    order = np.random.default_rng(args.seed + 1).permutation(test_ns)
    results = {"pattern": args.pattern, "train_max": args.train_max,
               "test_max": args.test_max, "steps": args.steps,
               "parameters": {k: m.num_parameters() for k, m in models.items()}}
    losses, correct = {}, {}
    for name, model in models.items():
        losses[name] = train(model, args, rng, f"{name} on {args.pattern}")
        if name == "stack_rnn":  # the soft stack for the record, then the paper's discrete one
            soft = words_correct(model, args.pattern, order)
            results["stack_rnn_soft_fraction_correct"] = float(soft.mean())
            stack_cell.discrete = True
        ok = words_correct(model, args.pattern, order)
        correct[name] = ok[np.argsort(order)]  # indexed by n - 1
        results[f"{name}_loss_first"] = float(np.mean(losses[name][:50]))
        results[f"{name}_loss_last"] = float(np.mean(losses[name][-50:]))
        results[f"{name}_fraction_correct"] = float(ok.mean())
        results[f"{name}_fraction_correct_beyond_training"] = float(
            correct[name][args.train_max:].mean())
        results[f"{name}_correct_n"] = [int(n) for n in test_ns[correct[name]]]
        results[f"{name}_seconds"] = clock()
    results["target_met"] = results["stack_rnn_fraction_correct"] >= 0.9
    for name in models:
        print(f"{name}: {100 * results[f'{name}_fraction_correct']:.1f}% of the words n = 1.."
              f"{args.test_max} right on every determined letter ("
              f"{100 * results[f'{name}_fraction_correct_beyond_training']:.1f}% of n > "
              f"{args.train_max}, never trained on)")
    print(f"target (>= 90% of n = 1..{args.test_max}): "
          f"{'met' if results['target_met'] else 'NOT met'}")
    results["seconds"] = clock()
    if not args.no_plots:
        plot(losses, correct, test_ns, args, out / "accuracy.png")
        plot_stack(stack_cell, args, out / "stack.png")
    with open(out / "results.json", "w") as f:
        json.dump(results, f, indent=1)
    print(f"done in {results['seconds']:.1f} s; figures and results in {out}/")
    return results


def plot(losses, correct, test_ns, args, path):
    plt = _common.pyplot()
    fig, (a, b) = plt.subplots(1, 2, figsize=(10, 3.6))
    for name, ls in losses.items():
        smooth = np.convolve(ls, np.ones(25) / 25, mode="valid") if len(ls) > 25 else ls
        a.plot(smooth, label=name, lw=0.9)
    a.set(xlabel="batch", ylabel="cross-entropy (nats)", yscale="log",
          title=f"training on {args.pattern}, n <= {args.train_max}")
    a.legend()
    for k, (name, ok) in enumerate(correct.items()):
        b.scatter(test_ns, np.full(len(test_ns), k) + 0.0, c=np.where(ok, "tab:green", "tab:red"),
                  s=12, marker="s")
    b.set_yticks(range(len(correct)))
    b.set_yticklabels(list(correct))
    b.axvline(args.train_max + 0.5, color="grey", lw=0.8)
    b.set(xlabel="n", title="words right on every determined letter (green)",
          ylim=(-0.8, len(correct) - 0.2))
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_stack(cell, args, path):
    """The top of each stack after every letter of a few words (discrete actions)."""
    tokens, _, _ = tasks.counting_stream(args.pattern, [3, 8, 5])
    shown = min(cell.depth, 2 * 8 + 4)
    tops = []
    with mg.no_grad():
        state = cell.initial_state(1)
        for tok in tokens:
            _, state = cell(one_hot(np.array([tok])), state)
            tops.append(state[1].numpy()[0, :, :shown])
    tops = np.array(tops)                                 # (T, k, shown)
    plt = _common.pyplot()
    fig, axes = plt.subplots(cell.stacks, 1, figsize=(10, 1.8 * cell.stacks + 0.6), squeeze=False)
    for s, ax in enumerate(axes[:, 0]):
        ax.imshow(tops[:, s].T, aspect="auto", cmap="magma", vmin=-1, vmax=1,
                  interpolation="nearest")
        ax.set_ylabel(f"stack {s + 1}\ndepth")
        ax.set_xticks(range(len(tokens)))
        ax.set_xticklabels(["abc"[t] for t in tokens], fontsize=7)
    axes[0, 0].set_title("stack contents after each letter (black: empty)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


if __name__ == "__main__":
    main()
