"""Dates written by people ("Monday, September 24, 1984", "24.09.84", "Sep 24 1984", ...) read
character by character and rewritten as ISO 8601 (1984-09-24) by an encoder-decoder: a
bidirectional GRU reads, a GRU with additive (Bahdanau) attention writes. Beside it, the same
model without attention (Sutskever's encoder-decoder: the source reaches the decoder only through
its first state) as the ablation.

Dates run from 1950 to 2049 (two-digit years: 50-99 -> 19xx, 00-49 -> 20xx). The days are split
once into training and held-out days, so no held-out date was seen in any format. Both models are
scored with greedy decoding and with beam search (beam 5, without and with a length penalty); a
page that steps through one beam search is written as beam.html.

    python -m demos.dates            # both models, about 3 minutes on 2 cores
    python -m demos.dates --quick    # a few seconds: a check that it learns at all
"""
from __future__ import annotations

import datetime
import importlib.util
import json
import shutil

import numpy as np

import minigrad as mg
import rnn
from demos import _common
from rnn.decoding import beam_search, greedy, save_beam_html

DAYS = ["Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday"]
MONTHS = ["January", "February", "March", "April", "May", "June", "July", "August",
          "September", "October", "November", "December"]


def ordinal(n: int) -> str:
    return f"{n}{'th' if 10 <= n % 100 <= 20 else {1: 'st', 2: 'nd', 3: 'rd'}.get(n % 10, 'th')}"


# every format names the day before the month when both are numbers, so no date is ambiguous
FORMATS = [
    lambda d: f"{DAYS[d.weekday()]}, {MONTHS[d.month - 1]} {d.day}, {d.year}",
    lambda d: f"{d.day:02d}.{d.month:02d}.{d.year % 100:02d}",
    lambda d: f"{MONTHS[d.month - 1][:3]} {d.day} {d.year}",
    lambda d: f"{d.day} {MONTHS[d.month - 1]} {d.year}",
    lambda d: f"{MONTHS[d.month - 1]} {d.day}, {d.year}",
    lambda d: f"{d.day:02d}.{d.month:02d}.{d.year}",
    lambda d: f"{DAYS[d.weekday()][:3]} {d.day} {MONTHS[d.month - 1][:3]} {d.year}",
    lambda d: f"{d.day}-{MONTHS[d.month - 1][:3].lower()}-{d.year % 100:02d}",
    lambda d: f"the {ordinal(d.day)} of {MONTHS[d.month - 1]}, {d.year}",
    lambda d: f"{d.year}/{d.month}/{d.day}",
    lambda d: f"{DAYS[d.weekday()].lower()} {d.day} {MONTHS[d.month - 1].lower()} {d.year}",
    lambda d: f"{MONTHS[d.month - 1][:3].upper()} {d.day:02d}, {d.year % 100:02d}",
]

FIRST, LAST = datetime.date(1950, 1, 1), datetime.date(2049, 12, 31)
# every character the formats write (a leap year shows every day, month and weekday name)
SRC_CHARS = sorted({c for o in range(datetime.date(2000, 1, 1).toordinal(),
                                     datetime.date(2001, 1, 1).toordinal())
                    for f in FORMATS for c in f(datetime.date.fromordinal(o))})
SRC_PAD = 0                                                          # id 0 never appears
SRC_ID = {c: i + 1 for i, c in enumerate(SRC_CHARS)}
TGT_CHARS = "0123456789-"
BOS, EOS = len(TGT_CHARS), len(TGT_CHARS) + 1                        # target ids 11 and 12
TGT_LEN = 10                                                         # YYYY-MM-DD
TGT_VOCAB = list(TGT_CHARS) + ["<s>", "</s>"]                         # for pictures of the beam


def split_days(rng, n_test: int):
    """All days from 1950 to 2049 as ordinals, split at random into (train, test)."""
    days = np.arange(FIRST.toordinal(), LAST.toordinal() + 1)
    rng.shuffle(days)
    return days[n_test:], days[:n_test]


def examples(rng, days, n: int):
    """n (source text, ISO target) pairs: days drawn from `days`, a format drawn per example."""
    picks = rng.choice(days, n)
    fmts = rng.integers(0, len(FORMATS), n)
    out = []
    for o, f in zip(picks, fmts):
        d = datetime.date.fromordinal(int(o))
        out.append((FORMATS[f](d), d.isoformat()))
    return out


def encode(pairs):
    """Time-major ids: src (S, B), src lengths (B,), decoder inputs (11, B) and targets (11, B)."""
    B = len(pairs)
    S = max(len(s) for s, _ in pairs)
    src = np.full((S, B), SRC_PAD, dtype=np.int64)
    tgt = np.empty((TGT_LEN + 1, B), dtype=np.int64)
    for b, (s, t) in enumerate(pairs):
        src[:len(s), b] = [SRC_ID[c] for c in s]
        tgt[:TGT_LEN, b] = [TGT_CHARS.index(c) for c in t]
    tgt[TGT_LEN] = EOS
    tgt_in = np.concatenate([np.full((1, B), BOS), tgt[:-1]])
    return src, np.array([len(s) for s, _ in pairs]), tgt_in, tgt


def build(attention: bool, hidden: int, embed: int, rng) -> rnn.Seq2Seq:
    encoder = rnn.GRU(embed, hidden, bidirectional=True, rng=rng)
    if attention:
        decoder = rnn.AttentionDecoderCell(
            rnn.GRUCell(embed + hidden, hidden, rng=rng),
            rnn.AdditiveAttention(hidden, 2 * hidden, hidden, rng=rng), rng=rng)
    else:
        decoder = rnn.GRUCell(embed, hidden, rng=rng)
    return rnn.Seq2Seq(len(SRC_CHARS) + 1, len(TGT_CHARS) + 2, embed, encoder, decoder, rng=rng)


def train(model, rng, train_days, args, label):
    opt = mg.optim.Adam(model.parameters(), lr=args.lr)
    sched = mg.optim.CosineAnnealingLR(opt, T_max=args.steps)
    losses = []
    bar = _common.progress(args.steps, label, args.quiet)
    for step in bar:
        src, src_len, tgt_in, tgt_out = encode(examples(rng, train_days, args.batch))
        loss = model.loss(src, src_len, tgt_in, tgt_out, np.full(args.batch, TGT_LEN + 1))
        opt.zero_grad()
        loss.backward()
        mg.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        sched.step()
        losses.append(float(loss.item()))
        if step % 20 == 0:
            bar.set_postfix(loss=f"{np.mean(losses[-20:]):.4f}")
    return losses


def beam(size: int, length_penalty=None):
    """Beam search of `size` (one best hypothesis per example), as a decoder for `evaluate`."""
    def decode(model, start):
        found = beam_search(model, start, BOS, EOS, size, TGT_LEN + 1,
                            length_penalty=length_penalty)
        return [hyps[0] for hyps in found]
    return decode


# how the held-out dates are decoded: the first is the one figures and errors are shown for
DECODERS = {
    "greedy": lambda model, start: greedy(model, start, BOS, EOS, TGT_LEN + 1),
    "beam 5": beam(5),
    "beam 5, length penalty": beam(5, ("wu", 0.6)),  # GNMT's ((5 + L) / 6) ** 0.6
}


def evaluate(model, pairs, decode=DECODERS["greedy"], batch: int = 500) -> dict:
    """Decoding of every pair: exact matches, per-character accuracy, the outputs."""
    outputs, weights = [], []
    for i in range(0, len(pairs), batch):
        src, src_len, _, _ = encode(pairs[i:i + batch])
        with mg.no_grad():
            start = model.start(src, src_len)
        for hyp, n in zip(decode(model, start), src_len):
            outputs.append("".join(TGT_CHARS[k] if k < len(TGT_CHARS) else "#"
                                   for k in hyp.tokens[:TGT_LEN]))
            weights.append(None if hyp.attention is None else hyp.attention[:TGT_LEN, :n])
    right = np.array([o == t for o, (_, t) in zip(outputs, pairs)])
    chars = np.mean([sum(a == b for a, b in zip(o, t)) / TGT_LEN
                     for o, (_, t) in zip(outputs, pairs)])
    return {"exact": float(right.mean()), "chars": float(chars), "right": right,
            "outputs": outputs, "weights": weights}


def by_length(pairs, right, edges=(0, 10, 15, 20, 25, 40)) -> dict:
    """Exact-match share per band of input lengths ("10-14": share, ...)."""
    n = np.array([len(s) for s, _ in pairs])
    out = {}
    for lo, hi in zip(edges, edges[1:]):
        sel = (n >= lo) & (n < hi)
        if sel.any():
            out[f"{lo}-{hi - 1}"] = float(right[sel].mean())
    return out


def main(argv=None) -> dict:
    p = _common.parser("dates", __doc__.split("\n\n")[0])
    p.add_argument("--steps", type=int, default=1500, help="Adam updates per model")
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--hidden", type=int, default=64)
    p.add_argument("--embed", type=int, default=16)
    p.add_argument("--lr", type=float, default=5e-3)
    p.add_argument("--test-days", type=int, default=2000, help="held-out days (one format each)")
    p.add_argument("--no-ablation", action="store_true", help="skip the model without attention")
    p.add_argument("--quick", action="store_true",
                   help="a few seconds: 60 steps, 16 units, 200 held-out days")
    return _common.launch(p, argv, run)


def run(args) -> dict:
    if args.quick:
        args.steps, args.hidden, args.test_days = 60, 16, 200
    rng, out, clock = _common.start(args)
    train_days, test_days = split_days(rng, args.test_days)
    test = examples(rng, test_days, args.test_days)
    results = {"steps": args.steps, "batch": args.batch, "hidden": args.hidden,
               "test_dates": len(test), "train_days": len(train_days)}
    models = {"attention": True} if args.no_ablation else {"attention": True,
                                                           "no_attention": False}
    evals, curves = {}, {}
    for name, attentive in models.items():
        model = build(attentive, args.hidden, args.embed, rng)
        started = clock()
        curves[name] = train(model, rng, train_days, args, name.replace("_", " "))
        train_seconds = clock() - started
        scores = {how: evaluate(model, test, decode) for how, decode in DECODERS.items()}
        evals[name] = ev = scores["greedy"]
        results[name] = {"exact_match": ev["exact"], "char_accuracy": ev["chars"],
                         "loss_first": float(np.mean(curves[name][:20])),
                         "loss_last": float(np.mean(curves[name][-20:])),
                         "by_input_length": by_length(test, ev["right"]),
                         "decoding": {how: {"exact_match": e["exact"], "char_accuracy": e["chars"]}
                                      for how, e in scores.items()},
                         "train_seconds": train_seconds}
        print(f"{name.replace('_', ' ')}: of {len(test)} held-out dates, exactly right with")
        for how, e in scores.items():
            print(f"  {how:24s} {100 * e['exact']:6.2f}%  (characters {100 * e['chars']:.2f}%)")
        if name == "no_attention" and not args.no_plots:
            save_beam_page(model, test, ev, out / "beam.html")
    wrong = [(s, t, o) for (s, t), o, r in zip(test, evals["attention"]["outputs"],
                                                evals["attention"]["right"]) if not r]
    results["attention_errors"] = [f"{s!r} -> {o} (true {t})" for s, t, o in wrong[:10]]
    results["seconds"] = clock()
    if not args.no_plots:
        plot_heatmaps(test, evals["attention"], out / "attention.png")
        plot_by_length(results, list(models), out / "accuracy_by_length.png")
        plot_losses(curves, out / "loss.png")
    with open(out / "results.json", "w") as f:
        json.dump(results, f, indent=1)
    print(f"done in {results['seconds']:.1f} s; figures and results in {out}/")
    return results


def save_beam_page(model, test, ev, path):
    """The beam search (beam 5) of the first held-out date greedy decoding got wrong, as a page
    that steps through it (needs Graphviz)."""
    if importlib.util.find_spec("graphviz") is None or shutil.which("dot") is None:
        print("beam.html skipped: it needs the graphviz package and Graphviz's dot")
        return
    i = next((k for k, r in enumerate(ev["right"]) if not r), 0)
    src, src_len, _, _ = encode(test[i:i + 1])
    with mg.no_grad():
        start = model.start(src, src_len)
    _, trace = beam_search(model, start, BOS, EOS, 5, TGT_LEN + 1, return_trace=True)
    save_beam_html(trace, path, vocab=TGT_VOCAB,
                   title=f"{test[i][0]!r} (true {test[i][1]}): beam 5, no attention")


def plot_heatmaps(test, ev, path):
    """Attention of six held-out dates in different formats."""
    plt = _common.pyplot()
    shown, seen = [], set()
    for i, (s, _) in enumerate(test):
        kind = (len(s.split()), s[:1].isdigit(), "." in s, "/" in s, "-" in s)
        if kind not in seen:
            seen.add(kind)
            shown.append(i)
        if len(shown) == 6:
            break
    fig, axes = plt.subplots(2, 3, figsize=(13, 6.5))
    for ax, i in zip(axes.ravel(), shown):
        s, t = test[i]
        rnn.analysis.plot_attention(ev["weights"][i], s.replace(" ", "\u2423"), ev["outputs"][i],
                                    ax=ax,
                                    title=f"{s!r} -> {ev['outputs'][i]}")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_by_length(results, names, path):
    plt = _common.pyplot()
    fig, ax = plt.subplots(figsize=(6, 3.5))
    for k, name in enumerate(names):
        bands = results[name]["by_input_length"]
        x = np.arange(len(bands)) + (k - 0.5 * (len(names) - 1)) * 0.35
        ax.bar(x, [100 * v for v in bands.values()], width=0.35, label=name.replace("_", " "))
        ax.set_xticks(np.arange(len(bands)), list(bands))
    ax.set(xlabel="input length (characters)", ylabel="exact match (%)", ylim=(0, 100),
           title="held-out dates: exact match by input length")
    ax.legend(loc="lower left")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_losses(curves, path):
    plt = _common.pyplot()
    fig, ax = plt.subplots(figsize=(6, 3.5))
    for name, losses in curves.items():
        ax.semilogy(losses, lw=0.8, label=name.replace("_", " "))
    ax.set(xlabel="update", ylabel="cross-entropy per character (nats)", title="dates: training")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


if __name__ == "__main__":
    main()
