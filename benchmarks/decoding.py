"""Batched beam search against a loop over hypotheses, at beam 1, 5 and 10 for a batch of 32.

    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE python -m benchmarks.decoding [--rounds 3]
        [--max-len 50] [--quick]

Both run the same search (`rnn.decoding.beam_search`, same bookkeeping, same results: the script
checks that every hypothesis and score agree); they differ only in how the model is called:
"batched" advances all B x K hypotheses in one call of the model's step per time step, "loop"
calls the step once per hypothesis (N = 1), as a search written one hypothesis at a time does.
The model is the char-rnn demo's language model at its default size (an Embedding of 48, an
LSTM of 256, a read-out to the 80 characters of the shipped plays), with weights drawn at random
(the time per step does not depend on the weights; early stopping does, so `--max-len` bounds
every search and random weights rarely stop early). Medians over `--rounds` rounds, the two ways
alternating within a round; the target (issue 18) is loop / batched >= the beam size at beam 10.
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
        new_state = tuple(mg.concat([o[1][k] for o in outs], axis=0) for k in range(2))
        return log_probs, new_state


def main(argv=None) -> None:
    p = argparse.ArgumentParser(prog="python -m benchmarks.decoding", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--max-len", type=int, default=50)
    p.add_argument("--batch", type=int, default=32)
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
    model = CharLM(V=12, E=8, H=16) if args.quick else CharLM()
    max_len = 6 if args.quick else args.max_len
    B = 4 if args.quick else args.batch
    print(f"char LM (V, E, H) = ({model.embed.num_embeddings}, {model.embed.embedding_dim}, "
          f"{model.H}), batch {B}, max_len {max_len}; median over {args.rounds} rounds [min-max]")
    print(f"{'beam':>4s} {'batched s':>22s} {'loop s':>22s} {'loop/batched':>13s}")
    ratios = {}
    for K in (1, 5, 10):
        times = {"batched": [], "loop": []}
        results = {}
        for r in range(args.rounds):
            for way in (("batched", "loop") if r % 2 == 0 else ("loop", "batched")):
                m = model if way == "batched" else OneAtATime(model)
                t0 = time.perf_counter()
                results[way] = beam_search(m, model.initial(B), 0, 1, K, max_len)
                times[way].append(time.perf_counter() - t0)
        for a, b in zip(results["batched"], results["loop"]):
            assert [h.tokens.tolist() for h in a] == [h.tokens.tolist() for h in b]
            np.testing.assert_allclose([h.score for h in a], [h.score for h in b], rtol=1e-4)
        med = {w: statistics.median(v) for w, v in times.items()}
        ratios[K] = med["loop"] / med["batched"]
        cells = [f"{med[w]:9.3f} [{min(times[w]):5.3f}-{max(times[w]):5.3f}]"
                 for w in ("batched", "loop")]
        print(f"{K:4d} {cells[0]:>22s} {cells[1]:>22s} {ratios[K]:12.1f}x")
    held = "holds" if ratios[10] >= 10 else "MISSED"
    print(f"target: at beam 10, loop / batched >= 10: {ratios[10]:.1f}x  {held}")


if __name__ == "__main__":
    main()
