"""Batched beam search against a loop over hypotheses, at beam 1, 5 and 10 for a batch of 32,
on two models: the char-rnn demo's language model and the dates demo's encoder-decoder.

    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE python -m benchmarks.decoding [--rounds 5]
        [--max-len 50] [--models char,dates] [--quick]

Both ways run the same search (`rnn.decoding.beam_search`, same bookkeeping, same results: the
script checks that every hypothesis and score agree); they differ only in how the model is
called: "batched" advances all B x K hypotheses in one call of the model's step per time step,
"loop" calls the step once per hypothesis (N = 1, its state cut out of the batch with one
gather per state Tensor), as a search written one hypothesis at a time does.

The models have weights drawn at random: the time of a step does not depend on the weights, but
when beam search stops early does, and random weights stop it after a step or two at random. So
every search here runs to its maximum length (`early_stopping=False`, which changes no result,
only the time): the whole decode a trained model makes when it is unsure, the same work for
both ways and every beam size.
- char: the char-rnn demo's language model at its default size, an Embedding of 48, an LSTM of
  256, a read-out to the 80 characters of the shipped plays; `--max-len` steps;
- dates: the dates demo's `rnn.Seq2Seq` at its default size (a bidirectional GRU of 64 per
  direction over 16-dimensional character embeddings, a GRU decoder of 64 with additive attention
  and input feeding, 13 target tokens), decoding 32 dates written in the demo's formats; 11
  steps (10 characters and EOS); the encoder runs once, outside the timing.
Medians over `--rounds` rounds after one untimed round, the two ways alternating within a
round; the target (issue 18)
is loop / batched >= the beam size at beam 10.
"""
from __future__ import annotations

import argparse
import statistics
import time

import numpy as np

import minigrad as mg
import rnn
from benchmarks._timing import machine_line
from rnn.decoding import beam_search, reorder


class CharLM:
    """tokens (N,) -> log_probs (N, V): Embedding(V, E), LSTMCell(E, H), Linear(H, V)."""

    def __init__(self, V=80, E=48, H=256, rng=0):
        self.embed = mg.nn.Embedding(V, E, rng=rng)
        self.cell = rnn.LSTMCell(E, H, rng=rng)
        self.head = mg.nn.Linear(H, V, rng=rng)
        self.H = H

    def initial(self, B):
        rng = np.random.default_rng(B)
        return tuple(mg.tensor(rng.normal(size=(B, self.H)).astype(np.float32) * 0.5)
                     for _ in range(2))

    def step(self, tokens, state):
        out, state = self.cell(self.embed(tokens), state)
        return mg.log_softmax(self.head(out), axis=-1), state


class OneAtATime:
    """The same model, called once per hypothesis."""

    def __init__(self, model):
        self.model = model

    def step(self, tokens, state):
        outs = [self.model.step(tokens[i:i + 1], reorder(state, np.array([i])))
                for i in range(len(tokens))]
        log_probs = mg.concat([o[0] for o in outs], axis=0)
        new_state = rnn.state.map(lambda *rows: mg.concat(list(rows), axis=0),
                                  *[o[1] for o in outs])
        if len(outs[0]) == 3 and outs[0][2] is not None:
            return log_probs, new_state, mg.concat([o[2] for o in outs], axis=0)
        return log_probs, new_state


def char_lm(B, quick, max_len):
    """(model, its first state for B examples, bos, eos, max_len, description)."""
    model = CharLM(V=12, E=8, H=16) if quick else CharLM()
    return (model, model.initial(B), 0, 1, max_len,
            f"char LM (V, E, H) = ({model.embed.num_embeddings}, {model.embed.embedding_dim}, "
            f"{model.H}), {max_len} steps")


def dates_model(B, quick, max_len):
    """As char_lm, for the dates demo's attention model (max_len is fixed by the task)."""
    from demos import dates
    rng = np.random.default_rng(0)
    hidden, embed = (8, 4) if quick else (64, 16)
    model = dates.build(True, hidden, embed, rng)
    train_days, _ = dates.split_days(rng, 100)
    src, src_len, _, _ = dates.encode(dates.examples(rng, train_days, B))
    with mg.no_grad():
        start = model.start(src, src_len)
    return (model, start, dates.BOS, dates.EOS, dates.TGT_LEN + 1,
            f"dates Seq2Seq (hidden {hidden}, embed {embed}, attention), source lengths "
            f"{src_len.min()}-{src_len.max()}, {dates.TGT_LEN + 1} steps")


MODELS = {"char": char_lm, "dates": dates_model}


def compare(model, state, bos, eos, max_len, rounds):
    """{beam: {"batched": [seconds per round], "loop": [...]}}, after checking both agree."""
    rows = {}
    for K in (1, 5, 10):
        times = {"batched": [], "loop": []}
        results = {}
        for r in range(-1, rounds):  # round -1 warms up, untimed
            for way in (("batched", "loop") if r % 2 == 0 else ("loop", "batched")):
                m = model if way == "batched" else OneAtATime(model)
                t0 = time.perf_counter()
                results[way] = beam_search(m, state, bos, eos, K, max_len, early_stopping=False)
                if r >= 0:
                    times[way].append(time.perf_counter() - t0)
        for a, b in zip(results["batched"], results["loop"]):
            assert [h.tokens.tolist() for h in a] == [h.tokens.tolist() for h in b]
            np.testing.assert_allclose([h.score for h in a], [h.score for h in b], rtol=1e-4)
        rows[K] = times
    return rows


def main(argv=None) -> None:
    p = argparse.ArgumentParser(prog="python -m benchmarks.decoding", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--max-len", type=int, default=50, help="the char LM's longest search")
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--models", default="char,dates", help="comma-separated: char, dates")
    p.add_argument("--quick", action="store_true", help="tiny sizes, to check that it runs")
    args = p.parse_args(argv)
    try:
        import threadpoolctl
        threadpoolctl.threadpool_limits(1)
        threads = "BLAS limited to 1 thread"
    except ImportError:
        threads = "threadpoolctl not installed: BLAS threads as NumPy set them"
    print(machine_line())
    print(threads)
    B = 4 if args.quick else args.batch
    max_len = 6 if args.quick else args.max_len
    print(f"batch {B}; median over {args.rounds} rounds [min-max]; random weights, every "
          "search run to its maximum length")
    for name in args.models.split(","):
        if name not in MODELS:
            p.error(f"--models: unknown model {name!r} (char, dates)")
        model, state, bos, eos, steps, description = MODELS[name](B, args.quick, max_len)
        print(f"\n{description}")
        print(f"{'beam':>4s} {'batched s':>22s} {'loop s':>22s} {'loop/batched':>13s}")
        ratio = {}
        for K, times in compare(model, state, bos, eos, steps, args.rounds).items():
            med = {w: statistics.median(v) for w, v in times.items()}
            ratio[K] = med["loop"] / med["batched"]
            cells = [f"{med[w]:9.3f} [{min(times[w]):5.3f}-{max(times[w]):5.3f}]"
                     for w in ("batched", "loop")]
            print(f"{K:4d} {cells[0]:>22s} {cells[1]:>22s} {ratio[K]:12.1f}x")
        held = "holds" if ratio[10] >= 10 else "MISSED"
        print(f"target ({name}): at beam 10, loop / batched >= 10: {ratio[10]:.1f}x  {held}")


if __name__ == "__main__":
    main()
