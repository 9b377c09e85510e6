"""rnn.decoding against independent references.

The reference for beam search is exhaustive enumeration: on small random models (vocabulary
3-5, at most 5 tokens) every sequence of the search space is scored by feeding it to the model one
token at a time, its penalised score computed here from the published formulas, and the best
ones taken by sorting. A beam wide enough to hold every hypothesis must return exactly those.
"""
from __future__ import annotations

import math
import re
import shutil

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import minigrad as mg
from rnn.decoding import BeamTrace, beam_search, draw_beam, filter_log_probs, greedy, sample


class RandomModel:
    """h' = tanh(E[token] + h U); log_probs = log_softmax(h' O); attention = masked softmax of
    h' A over S source positions. The state is nested on purpose: (h, {"mask": mask})."""

    def __init__(self, V, seed, H=4, S=3, scale=2.0):
        rng = np.random.default_rng(seed)
        self.V, self.S = V, S
        self.E = rng.normal(size=(V, H)) * scale
        self.U = rng.normal(size=(H, H))
        self.O = rng.normal(size=(H, V)) * scale
        self.A = rng.normal(size=(H, S))

    def initial(self, B, seed):
        rng = np.random.default_rng(seed)
        mask = np.ones((B, self.S))
        mask[::2, -1] = 0.0  # every other example has a padded last source position
        return (mg.tensor(rng.normal(size=(B, self.E.shape[1]))), {"mask": mg.tensor(mask)})

    def step(self, tokens, state):
        h, extra = state
        h2 = np.tanh(self.E[tokens] + h.numpy() @ self.U)
        z = h2 @ self.O
        z = z - z.max(axis=1, keepdims=True)
        logp = z - np.log(np.exp(z).sum(axis=1, keepdims=True))
        s = np.where(extra["mask"].numpy() > 0, h2 @ self.A, -np.inf)
        a = np.exp(s - s.max(axis=1, keepdims=True))
        a = a / a.sum(axis=1, keepdims=True)
        return mg.tensor(logp), (mg.tensor(h2), extra), a


def one(state, b):
    """Example b's part of a state built by RandomModel.initial."""
    h, extra = state
    return (mg.tensor(h.numpy()[b:b + 1]), {"mask": mg.tensor(extra["mask"].numpy()[b:b + 1])})


def repeats_ngram(seq, n):
    grams = [tuple(seq[i:i + n]) for i in range(len(seq) - n + 1)]
    return len(grams) != len(set(grams))


def lp_ref(kind, alpha, L):
    return 1.0 if kind is None else (L if kind == "avg" else ((5 + L) / 6) ** alpha)


def cp_ref(beta, coverage):
    if beta is None:
        return 0.0
    return beta * sum(math.log(min(c, 1.0)) for c in coverage if c > 0)


def enumerate_best(model, state, bos, eos, max_len, min_len, banned, prefix, ngram, kind,
                   alpha, beta):
    """Every sequence of the search space with its penalised score, best first."""
    out = []

    def walk(seq, st, total, coverage):
        t = len(seq)
        lp, st2, att = model.step(np.array([seq[-1] if seq else bos]), st)
        lp, cov = lp.numpy()[0], coverage + att[0]
        for v in range(model.V):
            if v in banned or (prefix is not None and t < len(prefix) and v != prefix[t]):
                continue
            if v == eos:
                if t >= min_len:
                    L = t + 1
                    score = (total + lp[v]) / lp_ref(kind, alpha, L) + cp_ref(beta, cov)
                    out.append((score, seq + [eos], total + lp[v]))
            elif t + 1 < max_len and not (ngram and repeats_ngram(seq + [v], ngram)):
                walk(seq + [v], st2, total + lp[v], cov)

    walk([], state, 0.0, np.zeros(model.S))
    out.sort(key=lambda r: -r[0])
    return out


options = st.fixed_dictionaries({
    "V": st.integers(3, 5), "max_len": st.integers(1, 5), "seed": st.integers(0, 10_000),
    "B": st.integers(1, 2), "n_best": st.integers(1, 3),
    "length_penalty": st.sampled_from([None, "avg", ("wu", 0.6), ("wu", 2.0)]),
    "coverage_penalty": st.sampled_from([None, ("wu", 0.4)]),
    "ngram": st.sampled_from([0, 0, 2, 3]), "banned": st.booleans(), "prefix": st.booleans(),
    "min_len_frac": st.floats(0, 1),
})


@settings(max_examples=30)
@given(options)
def test_full_beam_equals_exhaustive_search(o):
    V, max_len, eos, bos = o["V"], o["max_len"], o["V"] - 1, 0
    model = RandomModel(V, o["seed"])
    state = model.initial(o["B"], o["seed"] + 1)
    banned = (1,) if o["banned"] and V > 3 else ()
    prefix = ([2] if banned else [1]) if o["prefix"] and max_len >= 2 else None
    min_len = int(o["min_len_frac"] * (max_len - 1))
    kind = o["length_penalty"] if not isinstance(o["length_penalty"], tuple) else "wu"
    alpha = o["length_penalty"][1] if kind == "wu" else 0.0
    beta = o["coverage_penalty"][1] if o["coverage_penalty"] else None
    K = V ** max_len  # holds every hypothesis
    got = beam_search(model, state, bos, eos, K, max_len, min_len=min_len,
                      length_penalty=o["length_penalty"], coverage_penalty=o["coverage_penalty"],
                      n_best=o["n_best"], no_repeat_ngram_size=o["ngram"], banned=banned,
                      prefix=prefix)
    for b in range(o["B"]):
        want = enumerate_best(model, one(state, b), bos, eos, max_len, min_len, banned, prefix,
                              o["ngram"], kind, alpha, beta)[:o["n_best"]]
        assert [h.tokens.tolist() for h in got[b]] == [w[1] for w in want]
        np.testing.assert_allclose([h.score for h in got[b]], [w[0] for w in want], rtol=1e-10)
        np.testing.assert_allclose([h.log_prob for h in got[b]], [w[2] for w in want],
                                   rtol=1e-10)
        for h in got[b]:
            assert h.length == len(h.tokens) and h.attention.shape == (h.length, model.S)


@settings(max_examples=25)
@given(seed=st.integers(0, 10_000), V=st.integers(3, 6), K=st.integers(1, 6),
       max_len=st.integers(2, 8), penalty=st.sampled_from([None, "avg", ("wu", 1.0)]),
       n_best=st.integers(1, 3))
def test_early_stopping_changes_nothing(seed, V, K, max_len, penalty, n_best):
    # the bound is exact: stopping at it returns what running every beam to max_len returns
    model = RandomModel(V, seed)
    state = model.initial(3, seed)
    kw = dict(length_penalty=penalty, n_best=n_best, coverage_penalty=("wu", 0.2))
    early = beam_search(model, state, 0, V - 1, K, max_len, **kw)
    full = beam_search(model, state, 0, V - 1, K, max_len, early_stopping=False, **kw)
    for e, f in zip(early, full):
        assert [h.tokens.tolist() for h in e] == [h.tokens.tolist() for h in f]
        assert [h.score for h in e] == [h.score for h in f]


@settings(max_examples=25)
@given(seed=st.integers(0, 10_000), V=st.integers(3, 7), max_len=st.integers(1, 9),
       min_len_frac=st.floats(0, 1), ngram=st.sampled_from([0, 2, 3]))
def test_beam_of_one_is_greedy(seed, V, max_len, min_len_frac, ngram):
    model = RandomModel(V, seed)
    state = model.initial(4, seed)
    min_len = int(min_len_frac * (max_len - 1))
    kw = dict(min_len=min_len, no_repeat_ngram_size=ngram, banned=(1,))
    beam = beam_search(model, state, 0, V - 1, 1, max_len, **kw)
    path = greedy(model, state, 0, V - 1, max_len, **kw)
    # reference greedy: the argmax of the allowed tokens, fed back, written out here
    for b in range(4):
        st_b, seq, tok, total = one(state, b), [], 0, 0.0
        for t in range(max_len):
            lp, st_b, _ = model.step(np.array([tok]), st_b)
            lp = lp.numpy()[0].copy()
            lp[1] = -np.inf
            if t < min_len:
                lp[V - 1] = -np.inf
            if t == max_len - 1:
                lp[:V - 1] = -np.inf
            for v in range(V):
                if ngram and v != V - 1 and repeats_ngram(seq + [v], ngram):
                    lp[v] = -np.inf
            tok = int(lp.argmax())
            if np.isneginf(lp[tok]):  # the rules allow nothing: greedy gives None, beam nothing
                seq = None
                break
            total += lp[tok]
            seq.append(tok)
            if tok == V - 1:
                break
        if seq is None:
            assert path[b] is None and beam[b] == []
            continue
        assert path[b].tokens.tolist() == seq and beam[b][0].tokens.tolist() == seq
        assert math.isclose(path[b].log_prob, total, rel_tol=1e-12)
        assert math.isclose(beam[b][0].log_prob, total, rel_tol=1e-12)


@settings(max_examples=15)
@given(seed=st.integers(0, 10_000), K=st.integers(1, 5), B=st.integers(2, 4),
       penalty=st.sampled_from([None, "avg", ("wu", 0.8)]))
def test_a_batch_equals_each_example_alone(seed, K, B, penalty):
    model = RandomModel(5, seed)
    state = model.initial(B, seed)
    kw = dict(length_penalty=penalty, coverage_penalty=("wu", 0.3), n_best=2,
              no_repeat_ngram_size=2)
    batch = beam_search(model, state, 0, 4, K, 7, **kw)
    samples = sample(model, state, 0, 4, 7, rng=list(range(10, 10 + B)), top_p=0.9)
    for b in range(B):
        alone = beam_search(model, one(state, b), 0, 4, K, 7, **kw)[0]
        assert [h.tokens.tolist() for h in alone] == [h.tokens.tolist() for h in batch[b]]
        np.testing.assert_allclose([h.score for h in alone], [h.score for h in batch[b]],
                                   rtol=1e-12)
        for x, y in zip(alone, batch[b]):
            np.testing.assert_allclose(x.attention, y.attention, rtol=1e-12)
        s_alone = sample(model, one(state, b), 0, 4, 7, rng=[10 + b], top_p=0.9)[0]
        assert s_alone.tokens.tolist() == samples[b].tokens.tolist()


@settings(max_examples=20)
@given(seed=st.integers(0, 10_000), ngram=st.integers(1, 3), min_len=st.integers(0, 6),
       method=st.sampled_from(["beam", "greedy", "sample"]))
def test_no_blocked_ngram_and_nothing_shorter_than_min_len(seed, ngram, min_len, method):
    model = RandomModel(6, seed, scale=4.0)  # peaky: repeats are what it would like to emit
    state = model.initial(3, seed)
    kw = dict(min_len=min_len, no_repeat_ngram_size=ngram)
    if method == "beam":
        hyps = [h for hs in beam_search(model, state, 0, 5, 4, 12, n_best=3, **kw) for h in hs]
    elif method == "greedy":
        hyps = greedy(model, state, 0, 5, 12, **kw)
    else:
        hyps = sample(model, state, 0, 5, 12, rng=seed, **kw)
    for h in hyps:
        if h is None:
            continue
        seq = h.tokens.tolist()
        assert seq[-1] == 5 and 5 not in seq[:-1]
        assert len(seq) - 1 >= min_len
        assert not repeats_ngram(seq[:-1], ngram)


def test_filter_log_probs_against_a_reference():
    rng = np.random.default_rng(0)
    for _ in range(50):
        lp = np.log(rng.dirichlet(np.ones(7), size=3))
        T, k, p = rng.uniform(0.3, 2.0), int(rng.integers(1, 8)), rng.uniform(0.05, 1.0)
        got = filter_log_probs(lp, T, k, p)
        for row, g in zip(lp, got):
            z = row / T
            kept = set(np.argsort(-z)[:k])  # no ties in continuous draws
            q = np.exp(z[list(kept)] - z[list(kept)].max())
            q = dict(zip(kept, q / q.sum()))
            nucleus, mass = set(), 0.0
            for v in sorted(kept, key=lambda v: -q[v]):
                if mass >= p:
                    break
                nucleus.add(v)
                mass += q[v]
            # top-k first, then the nucleus of the renormalised top-k distribution
            assert set(np.flatnonzero(np.isfinite(g))) == nucleus
            np.testing.assert_allclose(g[np.isfinite(g)], z[np.isfinite(g)])


def test_sampled_sequences_follow_the_model():
    # up to three tokens over V = 3 (EOS = 2): enumerate every sequence's probability, draw
    # 20,000 in one batch, and compare frequencies with 5 standard errors of slack
    model = RandomModel(3, 7, scale=1.0)
    n = 20_000
    h0 = np.random.default_rng(1).normal(size=(1, 4))
    state = (mg.tensor(np.repeat(h0, n, axis=0)), {"mask": mg.ones(n, model.S)})
    got = sample(model, state, 0, 2, 3, rng=5)
    counts: dict = {}
    for h in got:
        counts[tuple(h.tokens.tolist())] = counts.get(tuple(h.tokens.tolist()), 0) + 1
    # the sampling distribution: the model's softmax at each step, and at step max_len (3) only
    # EOS is allowed, so it is drawn with probability 1
    probs = {}

    def walk(seq, st, p):
        lp, st2, _ = model.step(np.array([seq[-1] if seq else 0]), st)
        q = np.exp(lp.numpy()[0])
        if len(seq) == 2:
            probs[tuple(seq + [2])] = p
            return
        for v in range(3):
            if v == 2:
                probs[tuple(seq + [2])] = p * q[2]
            else:
                walk(seq + [v], st2, p * q[v])
    walk([], (mg.tensor(h0), {"mask": mg.ones(1, model.S)}), 1.0)
    assert math.isclose(sum(probs.values()), 1.0, rel_tol=1e-9)
    assert set(counts) <= set(probs)
    for seq, p in probs.items():
        freq = counts.get(seq, 0) / n
        assert abs(freq - p) <= 5 * math.sqrt(p * (1 - p) / n) + 1e-9, (seq, freq, p)


def test_trace_and_picture(tmp_path):
    model = RandomModel(4, 3)
    state = model.initial(2, 3)
    hyps, trace = beam_search(model, state, 0, 3, 3, 5, return_trace=True, n_best=2)
    assert isinstance(trace, BeamTrace)
    for b in range(2):
        path = trace.path(trace.best[b])
        assert [n.token for n in path[1:]] == hyps[b][0].tokens.tolist()
        assert all(n.chosen for n in path) and path[-1].status == "finished"
        assert math.isclose(path[-1].score, hyps[b][0].score)
        kept_per_step: dict = {}
        for n in trace.nodes:
            if n.example == b and n.status == "kept":
                kept_per_step[n.step] = kept_per_step.get(n.step, 0) + 1
        assert max(kept_per_step.values()) <= 3
    g = draw_beam(trace, example=1, vocab="abc$")
    assert "penwidth=3" in g.source and "legend" in g.source
    if shutil.which("dot") is None:
        pytest.skip("Graphviz's dot is not installed")
    svg = g.pipe(format="svg").decode()
    drawn = {int(i) for i in re.findall(r'<g id="n(\d+)" class="node">', svg)}
    assert drawn == {n.id for n in trace.nodes if n.example == 1}


@pytest.mark.parametrize("kwargs, fragment", [
    (dict(beam_size=0), "beam_size"), (dict(beam_size=2.5), "beam_size"),
    (dict(max_len=0), "max_len"), (dict(min_len=5, max_len=5), "min_len"),
    (dict(length_penalty="wu"), "length_penalty"),
    (dict(length_penalty=("wu", -1.0)), "alpha"),
    (dict(coverage_penalty=0.3), "coverage_penalty"),
    (dict(n_best=0), "n_best"), (dict(banned=(3,)), "EOS"), (dict(prefix=[3]), "prefix"),
    (dict(prefix=[0.5]), "prefix"), (dict(no_repeat_ngram_size=-1), "no_repeat_ngram_size"),
    (dict(return_trace="yes"), "return_trace"), (dict(eos=9), "vocabulary"),
])
def test_bad_beam_search_calls(kwargs, fragment):
    model = RandomModel(4, 0)
    args = dict(model=model, state=model.initial(2, 0), bos=0, eos=3, beam_size=2, max_len=5)
    args.update(kwargs)
    with pytest.raises((TypeError, ValueError)) as info:
        beam_search(**args)
    assert "beam_search" in str(info.value) and fragment in str(info.value)


def test_bad_models_are_named():
    with pytest.raises(TypeError, match="beam_search: the model must offer step"):
        beam_search(42, None, 0, 1, 2, 3, batch_size=1)
    with pytest.raises(ValueError, match="greedy: the model's step must return log-probab"):
        greedy(lambda t, s: (mg.tensor(np.ones((len(t), 3))), s), None, 0, 2, 3, batch_size=2)
    with pytest.raises(ValueError, match="sample: cannot tell the batch size"):
        sample(lambda t, s: (None, s), None, 0, 2, 3)
    with pytest.raises(ValueError, match="sample: top_p"):
        sample(RandomModel(3, 0), RandomModel(3, 0).initial(1, 0), 0, 2, 3, top_p=0.0)


def test_char_rnn_step_reads_as_the_unrolled_model():
    """The char-rnn demo's CharLM.step, fed a text one character at a time with its state
    passed along, gives the log-softmax of the logits its forward (rnn.unroll, fused LSTM)
    gives for the whole text; beam 1 along it is greedy decoding."""
    from demos.char_rnn import CharLM
    model = CharLM(7, 3, 5, np.random.default_rng(0)).eval()
    text = np.random.default_rng(1).integers(0, 7, size=(6, 2))
    logits, _ = model(text, None)
    z = logits.numpy().astype(np.float64)
    want = z - z.max(-1, keepdims=True)
    want -= np.log(np.exp(want).sum(-1, keepdims=True))
    state = model.cell.initial_state(2)
    for t in range(6):
        log_probs, state = model.step(text[t], state)
        np.testing.assert_allclose(log_probs.numpy(), want[t], rtol=1e-4, atol=1e-5)
    start = model.cell.initial_state(3)
    beam = beam_search(model, start, 0, 6, 1, 8, batch_size=3)
    for b, g in zip(beam, greedy(model, start, 0, 6, 8)):
        assert b[0].tokens.tolist() == g.tokens.tolist()


def test_dates_demo_beam_of_one_is_its_greedy():
    """The dates demo scores its Seq2Seq with greedy decoding and with beam search: on an
    untrained model (its outputs far from certain), beam 1 gives greedy's outputs."""
    from demos import dates
    rng = np.random.default_rng(0)
    model = dates.build(True, 8, 4, rng)
    pairs = dates.examples(rng, dates.split_days(rng, 10)[1], 6)
    by_greedy = dates.evaluate(model, pairs, dates.DECODERS["greedy"])
    assert dates.evaluate(model, pairs, dates.beam(1))["outputs"] == by_greedy["outputs"]
