"""Which gates matter: a bake-off of recurrent cells on two generated tasks, after the lecture's
two tables. Greff et al. 2017 ("LSTM: A Search Space Odyssey"): the peephole LSTM and its eight
variants (no input / forget / output gate, no input / output activation, no peepholes, coupled
input-forget gate, full gate recurrence). Jozefowicz et al. 2015 ("An Empirical Exploration of
Recurrent Network Architectures"): tanh RNN, LSTM with forget bias 0 and with a large one (1),
GRU, MUT1-3.

Tasks (generated here, fresh examples every update, a fixed held-out set):
  arithmetic  two 1-digit numbers, each digit followed by up to 2 distractor letters,
              "4c+a2b=", then the 2-digit sum "06" read out at the last two steps (padding
              '_' between); accuracy = sums exactly right (chance about 1%).
  xml         a random nesting (depth <= 4) of typed tags in 24 tokens: an opening tag is a
              letter A-D, text is x, y or z, ')' closes the innermost open tag; at every ')'
              the cell must name the tag it closes; accuracy = closing tags named right
              (chance 25%; the previous token gives it in about half the cases).
Every cell gets the same number of updates, the best of a small learning-rate grid (chosen on
seed 0's held-out score), then several seeds at that rate: mean, spread (std) and range.

    python -m demos.cell_bakeoff            # a few minutes on 2 cores
    python -m demos.cell_bakeoff --quick    # seconds: 4 cells, one seed, a check that it learns
"""
from __future__ import annotations

import json

import numpy as np

import minigrad as mg
import rnn
from demos import _common

# name -> (paper, constructor(inputs, hidden, rng))
CELLS = {
    "peephole LSTM (V)": ("greff", lambda i, h, r: rnn.LSTMCell(i, h, peephole=True, rng=r)),
    "NIG": ("greff", lambda i, h, r: rnn.LSTMCell(i, h, variant="NIG", rng=r)),
    "NFG": ("greff", lambda i, h, r: rnn.LSTMCell(i, h, variant="NFG", rng=r)),
    "NOG": ("greff", lambda i, h, r: rnn.LSTMCell(i, h, variant="NOG", rng=r)),
    "NIAF": ("greff", lambda i, h, r: rnn.LSTMCell(i, h, variant="NIAF", rng=r)),
    "NOAF": ("greff", lambda i, h, r: rnn.LSTMCell(i, h, variant="NOAF", rng=r)),
    "NP": ("greff", lambda i, h, r: rnn.LSTMCell(i, h, variant="NP", rng=r)),
    "CIFG": ("greff", lambda i, h, r: rnn.LSTMCell(i, h, variant="CIFG", rng=r)),
    "FGR": ("greff", lambda i, h, r: rnn.LSTMCell(i, h, variant="FGR", rng=r)),
    "tanh RNN": ("jozefowicz", lambda i, h, r: rnn.RNNCell(i, h, rng=r)),
    "LSTM, forget bias 0": ("jozefowicz", lambda i, h, r: rnn.LSTMCell(i, h, 0.0, rng=r)),
    "LSTM, forget bias 1": ("jozefowicz", lambda i, h, r: rnn.LSTMCell(i, h, 1.0, rng=r)),
    "GRU": ("jozefowicz", lambda i, h, r: rnn.GRUCell(i, h, rng=r)),
    "MUT1": ("jozefowicz", lambda i, h, r: rnn.MUT1Cell(i, h, rng=r)),
    "MUT2": ("jozefowicz", lambda i, h, r: rnn.MUT2Cell(i, h, rng=r)),
    "MUT3": ("jozefowicz", lambda i, h, r: rnn.MUT3Cell(i, h, rng=r)),
}
QUICK_CELLS = ("tanh RNN", "LSTM, forget bias 1", "GRU", "NFG")

# --- the tasks: token ids (T, B), targets (T, B) with -100 where nothing is asked -------------

DIGITS, DISTRACTORS = "0123456789", "abcde"
ARITH_VOCAB = DIGITS + DISTRACTORS + "+=_"
TAGS, TEXT = "ABCD", "xyz"
XML_VOCAB = TAGS + ")" + TEXT
IGNORE = -100


def arithmetic(rng, n: int, digits: int = 1, distractors: int = 2):
    """n sums a + b of `digits`-digit numbers, each digit followed by up to `distractors` random
    letters; the digits + 1 answer digits are asked at the '_' steps after '=' (all of one
    length T: padding '_' goes between '=' and the answer)."""
    index = {c: k for k, c in enumerate(ARITH_VOCAB)}
    a, b = rng.integers(0, 10 ** digits, size=(2, n))
    rows, targets = [], []
    for j in range(n):
        text = []
        for number, tail in ((a[j], "+"), (b[j], "=")):
            for d in f"{number:0{digits}d}":
                text.append(d)
                text += list(rng.choice(list(DISTRACTORS), size=rng.integers(0, distractors + 1)))
            text.append(tail)
        answer = f"{a[j] + b[j]:0{digits + 1}d}"
        text += ["_"] * (2 * digits * (distractors + 1) + 2 - len(text) + len(answer))
        rows.append([index[c] for c in text])
        targets.append([IGNORE] * (len(text) - len(answer)) + [int(d) for d in answer])
    return np.array(rows).T, np.array(targets).T


def xml(rng, n: int, length: int = 24, max_depth: int = 4, text: float = 0.4):
    """n random tag nestings of `length` tokens: an opening tag A-D, text (x, y, z: each step
    with probability `text`) or ')'; the target at each ')' is the tag it closes."""
    tokens = np.zeros((length, n), dtype=np.int64)
    targets = np.full((length, n), IGNORE, dtype=np.int64)
    for j in range(n):
        stack = []
        for t in range(length):
            if rng.random() < text:
                tokens[t, j] = XML_VOCAB.index(TEXT[rng.integers(len(TEXT))])
            elif stack and (len(stack) == max_depth or rng.random() < 0.5):
                tokens[t, j], targets[t, j] = XML_VOCAB.index(")"), stack.pop()
            else:
                tokens[t, j] = rng.integers(len(TAGS))
                stack.append(tokens[t, j])
    return tokens, targets


TASKS = {"arithmetic": (arithmetic, ARITH_VOCAB, len(DIGITS)),
         "xml": (xml, XML_VOCAB, len(TAGS))}


def exact_accuracy(task, logits, targets) -> float:
    """arithmetic: share of sums with all 3 digits right; xml: share of closing tags right."""
    asked = targets != IGNORE
    right = (logits.argmax(axis=2) == targets) | ~asked
    return float(right.all(axis=0).mean()) if task == "arithmetic" else \
        float(right[asked].mean())


class Tagger(mg.nn.Module):
    """Token ids (T, B) -> logits (T, B, C): one-hot inputs, the cell, a linear read-out."""

    def __init__(self, cell: str, vocab: int, classes: int, hidden: int, rng):
        super().__init__()
        self.vocab = vocab
        self.cell = CELLS[cell][1](vocab, hidden, rng)
        self.head = mg.nn.Linear(hidden, classes, rng=rng)

    def forward(self, tokens):
        x = np.eye(self.vocab, dtype=np.float32)[tokens]  # (T, B, V)
        out, _ = rnn.unroll(self.cell, mg.tensor(x))
        return self.head(out)


def train(task, cell, lr, seed, args, test, bar_desc):
    """One run: a fresh model, `args.steps` Adam updates on fresh batches; held-out accuracy."""
    make, vocab, classes = TASKS[task]
    rng = _common.seed(seed)
    model = Tagger(cell, len(vocab), classes, args.hidden, rng)
    opt = mg.optim.Adam(model.parameters(), lr=lr)
    losses = []
    bar = _common.progress(args.steps, bar_desc, args.quiet)
    for _ in bar:
        tokens, targets = make(rng, args.batch)
        logits = model(tokens)
        loss = mg.cross_entropy(logits.reshape(-1, classes), targets.reshape(-1))
        opt.zero_grad()
        loss.backward()
        mg.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        losses.append(float(loss.item()))
        bar.set_postfix(loss=f"{np.mean(losses[-20:]):.3f}", refresh=False)
    with mg.no_grad():
        acc = exact_accuracy(task, model(test[0]).numpy(), test[1])
    return acc, losses


def main(argv=None) -> dict:
    p = _common.parser("cell_bakeoff", __doc__.split("\n\n")[0])
    p.add_argument("--steps", type=int, default=400, help="updates per run (every cell the same)")
    p.add_argument("--hidden", type=int, default=32)
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--lrs", type=float, nargs="+", default=[1e-2, 3e-2],
                   help="learning-rate grid (chosen per cell and task on seed 0)")
    p.add_argument("--seeds", type=int, default=3, help="seeds at the chosen rate")
    p.add_argument("--test", type=int, default=500, help="held-out examples per task")
    p.add_argument("--tasks", nargs="+", choices=sorted(TASKS), default=sorted(TASKS))
    p.add_argument("--cells", nargs="+", choices=sorted(CELLS), default=list(CELLS))
    p.add_argument("--quick", action="store_true",
                   help="seconds: 4 cells, 1 seed, lr 1e-2, 150 updates, 16 units")
    return _common.launch(p, argv, run)


def run(args) -> dict:
    if args.quick:
        args.cells, args.seeds, args.lrs = list(QUICK_CELLS), 1, [1e-2]
        args.steps, args.hidden, args.test = 150, 16, 200
    _, out, clock = _common.start(args)
    results = {"steps": args.steps, "hidden": args.hidden, "batch": args.batch,
               "lrs": args.lrs, "seeds": args.seeds, "runs": {}, "table": {}}
    for task in args.tasks:
        # the held-out set is drawn from its own seed, apart from every training stream
        test = TASKS[task][0](np.random.default_rng(10_000 + args.seed), args.test)
        for cell in args.cells:
            runs = {}
            for lr in args.lrs:  # the learning-rate search, on the first seed
                runs[lr] = [train(task, cell, lr, args.seed, args, test,
                                  f"{task} {cell} lr {lr:g}")]
            best = max(args.lrs, key=lambda lr: runs[lr][0][0])
            for s in range(1, args.seeds):
                runs[best].append(train(task, cell, best, args.seed + s, args, test,
                                        f"{task} {cell} seed {args.seed + s}"))
            accs = [acc for acc, _ in runs[best]]
            results["runs"][f"{task}/{cell}"] = {
                "search": {f"{lr:g}": runs[lr][0][0] for lr in args.lrs},
                "lr": best, "accuracy": accs,
                "loss_first": float(np.mean(runs[best][0][1][:20])),
                "loss_last": float(np.mean(runs[best][0][1][-20:])),
                "curve": runs[best][0][1]}
            results["table"][f"{task}/{cell}"] = {
                "mean": float(np.mean(accs)), "std": float(np.std(accs)),
                "min": float(np.min(accs)), "max": float(np.max(accs)), "lr": best}
    table = markdown_table(results["table"], args.tasks, args.cells)
    print(table)
    (out / "table.md").write_text(table + "\n")
    results["seconds"] = clock()
    if not args.no_plots:
        plot(results["table"], args.tasks, args.cells, out / "bakeoff.png")
    with open(out / "results.json", "w") as f:
        json.dump(results, f, indent=1)
    print(f"done in {results['seconds']:.1f} s; figures and results in {out}/")
    return results


def markdown_table(table, tasks, cells) -> str:
    lines = ["| cell | paper | " + " | ".join(f"{t}: mean ± std (min-max), lr" for t in tasks)
             + " |", "|---|---|" + "---|" * len(tasks)]
    for cell in cells:
        row = [cell, CELLS[cell][0]]
        for task in tasks:
            r = table[f"{task}/{cell}"]
            row.append(f"{100 * r['mean']:.1f} ± {100 * r['std']:.1f} "
                       f"({100 * r['min']:.1f}-{100 * r['max']:.1f}), {r['lr']:g}")
        lines.append("| " + " | ".join(row) + " |")
    return "\n".join(lines)


def plot(table, tasks, cells, path):
    plt = _common.pyplot()
    fig, axes = plt.subplots(1, len(tasks), figsize=(5 * len(tasks), 0.3 * len(cells) + 1.5),
                             squeeze=False, sharey=True)
    y = np.arange(len(cells))
    for ax, task in zip(axes[0], tasks):
        rows = [table[f"{task}/{c}"] for c in cells]
        mean = np.array([r["mean"] for r in rows])
        low = mean - np.array([r["min"] for r in rows])
        high = np.array([r["max"] for r in rows]) - mean
        colors = ["C0" if CELLS[c][0] == "greff" else "C1" for c in cells]
        ax.barh(y, mean, xerr=[low, high], color=colors, capsize=2)
        ax.set(xlim=(0, 1), xlabel="held-out accuracy (bar: mean, whisker: range of seeds)",
               title=task)
    axes[0][0].set_yticks(y, cells)
    axes[0][0].invert_yaxis()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


if __name__ == "__main__":
    main()
