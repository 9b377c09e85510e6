"""Data generators of rnn.memory.tasks, checked by independent readers written here: loops that
read the sequences back, a small simulator that answers each story from its words, and a
brute-force enumeration of which counting-language tokens are predictable."""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rnn.memory import tasks


@settings(max_examples=10)
@given(B=st.integers(1, 4), L=st.integers(1, 12), W=st.integers(1, 8), seed=st.integers(0, 99))
def test_copy_task(B, L, W, seed):
    t = tasks.copy_task(np.random.default_rng(seed), B, L, W)
    T = 2 * L + 1
    assert t.inputs.shape == (T, B, W + 1) and t.targets.shape == (T, B, W)
    for b in range(B):
        for k in range(L):
            np.testing.assert_array_equal(t.targets[L + 1 + k, b], t.inputs[k, b, :W])
            assert t.inputs[k, b, W] == 0 and t.inputs[L + 1 + k, b].sum() == 0
        assert t.inputs[L, b].tolist() == [0.0] * W + [1.0]
        assert t.mask[:, b].tolist() == [0.0] * (L + 1) + [1.0] * L
    assert set(np.unique(t.inputs)) <= {0.0, 1.0}


@settings(max_examples=10)
@given(B=st.integers(1, 3), L=st.integers(1, 5), R=st.integers(1, 4), seed=st.integers(0, 99))
def test_repeat_copy_task(B, L, R, seed):
    W = 4
    t = tasks.repeat_copy_task(np.random.default_rng(seed), B, L, R, width=W, max_repeats=4)
    T = L + 1 + L * R + 1
    assert t.inputs.shape == (T, B, W + 2) and t.targets.shape == (T, B, W + 1)
    for b in range(B):
        assert t.inputs[L, b, W] == 1 and t.inputs[L, b, W + 1] == R / 4
        for r in range(R):
            for k in range(L):
                np.testing.assert_array_equal(t.targets[L + 1 + r * L + k, b, :W],
                                              t.inputs[k, b, :W])
        assert t.targets[:, b, W].tolist() == [0.0] * (T - 1) + [1.0]
        assert t.mask[:, b].sum() == L * R + 1
    with pytest.raises(ValueError, match="repeat_copy_task: repeats=5"):
        tasks.repeat_copy_task(np.random.default_rng(0), 1, 2, 5, max_repeats=4)


@settings(max_examples=10)
@given(B=st.integers(1, 4), n=st.integers(2, 6), K=st.integers(1, 3), seed=st.integers(0, 99))
def test_associative_recall_task(B, n, K, seed):
    W = 5
    t = tasks.associative_recall_task(np.random.default_rng(seed), B, n, K, W)
    for b in range(B):
        x = t.inputs[:, b]
        starts = [s for s in range(len(x)) if x[s, W] == 1]
        assert len(starts) == n
        items = [x[s + 1:s + 1 + K, :W] for s in starts]
        q = [s for s in range(len(x)) if x[s, W + 1] == 1]
        assert len(q) == 2 and q[1] - q[0] == K + 1
        query = x[q[0] + 1:q[1], :W]
        # the first item equal to the query (random bits may repeat an item: the generator's
        # index is then one of the equal ones, and the answer must follow one of them)
        answers = [items[i + 1] for i in range(n - 1) if np.array_equal(items[i], query)]
        assert answers, "the query is one of the first n - 1 items"
        got = t.targets[-K:, b]
        assert any(np.array_equal(got, a) for a in answers)
        assert t.mask[:, b].tolist() == [0.0] * (len(x) - K) + [1.0] * K


# --- bAbI-like stories: a reader written here answers each question from the words alone ---------

MOVE_WORDS = {"walked", "ran", "drifted", "hurried"}
TAKE_WORDS = {"took", "picked", "grabbed"}
LEAVE_WORDS = {"left", "put", "set"}


def read_story(sentences):
    """Simulate the story: people's places, who holds what, where each thing has been."""
    place, holder, thing_place, history = {}, {}, {}, {}
    for words in sentences:
        who, verb, what = words[0], words[1], words[-1]
        if verb in MOVE_WORDS:
            place[who] = what
            for thing, h in holder.items():
                if h == who:
                    thing_place[thing] = what
                    history.setdefault(thing, []).append(what)
        elif verb in TAKE_WORDS:
            holder[what] = who
            if who in place:
                thing_place[what] = place[who]
                history.setdefault(what, []).append(place[who])
        elif verb in LEAVE_WORDS:
            holder.pop(what, None)
            if who in place:
                thing_place[what] = place[who]
    return place, thing_place, history


def answer(sentences, question):
    if question[:2] == ["what", "colour"]:  # task 16: a creature of the same kind gives the colour
        target = question[-1]
        kind = {w[0]: w[3] for w in sentences if len(w) == 4 and w[2] == "a"}
        colour = {w[0]: w[2] for w in sentences if len(w) == 3}
        same = [n for n in colour if kind.get(n) == kind.get(target)]
        return colour[same[0]] if same else None
    place, thing_place, history = read_story(sentences)
    if question[:2] == ["where", "is"] and len(question) == 3:
        return place.get(question[2])
    if question[:3] == ["where", "is", "the"]:
        return thing_place.get(question[3])
    thing, last = question[3], question[-1]  # where was the THING before the LAST
    runs = [p for k, p in enumerate(history.get(thing, []))
            if k == 0 or p != history[thing][k - 1]]
    return runs[-2] if len(runs) >= 2 and runs[-1] == last else None


@pytest.mark.parametrize("task", [1, 2, 3, 16])
def test_babi_answers_follow_from_the_story_and_from_the_supporting_facts(task):
    stories = tasks.babi_stories(np.random.default_rng(task), task, 60)
    vocab = set(tasks.babi_vocabulary())
    for s in stories:
        assert answer(s.sentences, s.question) == s.answer
        support = [s.sentences[i] for i in s.supporting]
        assert answer(support, s.question) == s.answer, (s.sentences, s.supporting)
        assert {w for x in s.sentences + [s.question] for w in x} | {s.answer} <= vocab
    expected = {1: 1, 2: 2, 3: 3, 16: 3}[task]
    assert all(len(s.supporting) == expected for s in stories) or task == 3
    answers = {s.answer for s in stories}
    assert len(answers) > 2  # not one constant answer


def test_encode_stories_reads_back():
    vocab = tasks.babi_vocabulary()
    stories = tasks.babi_stories(np.random.default_rng(0), 2, 5, sentences=10)
    sent, quest, ans = tasks.encode_stories(stories, vocab, memory_size=6)
    assert vocab[0] == "<pad>" and sent.shape[:2] == (5, 6) and quest.shape[0] == 5
    for k, s in enumerate(stories):
        assert [[vocab[i] for i in row if i] for row in sent[k]] == s.sentences[-6:]
        assert [vocab[i] for i in quest[k] if i] == s.question and vocab[ans[k]] == s.answer
    short = tasks.babi_stories(np.random.default_rng(0), 1, 1, sentences=4)
    sent, _, _ = tasks.encode_stories(short, vocab, memory_size=6)
    assert not sent[0, :2].any() and sent[0, 2:, 0].all()  # empty slots first, then 4 sentences
    assert [vocab[i] for i in sent[0, 5] if i] == short[0].sentences[-1]  # the newest last


def test_babi_bad_arguments():
    with pytest.raises(ValueError, match="babi_stories: task must be one of"):
        tasks.babi_stories(np.random.default_rng(0), 4, 1)
    with pytest.raises(ValueError, match=r"babi_stories \(task 3\): sentences must be"):
        tasks.babi_stories(np.random.default_rng(0), 3, 1, sentences=5)


@pytest.mark.parametrize("task", [1, 2, 3])
def test_babi_shortest_stories(task):
    """Stories of the fewest sentences allowed come out (the generator retries until one has
    the facts its question needs) and have exactly that many sentences."""
    n = tasks.FEWEST_SENTENCES[task]
    for s in tasks.babi_stories(np.random.default_rng(0), task, 20, sentences=n):
        assert len(s.sentences) == n and answer(s.sentences, s.question) == s.answer


# --- counting languages -------------------------------------------------------------------------


def possible_next(pattern, prefix, n_max=40):
    """Every token that can follow `prefix` (the current word so far) in some word of the language;
    a complete word may be followed by the next word's a (token 0)."""
    out = set()
    for n in range(1, n_max):
        word = tasks.counting_sequence(pattern, n)
        if word[:len(prefix)] == prefix:
            out.add(word[len(prefix)] if len(prefix) < len(word) else 0)
    return out


@pytest.mark.parametrize("pattern", ["anbn", "anbncn", "anb2n"])
def test_counting_stream_marks_exactly_the_predictable_tokens(pattern):
    ns = [3, 1, 5, 2]
    tokens, deterministic, word = tasks.counting_stream(pattern, ns)
    counts = {"anbn": (1, 1, 0), "anbncn": (1, 1, 1), "anb2n": (1, 2, 0)}[pattern]
    assert len(tokens) == sum(ns) * sum(counts)
    assert not deterministic[0]
    for t in range(1, len(tokens)):
        prefix = [int(v) for v in tokens[:t][word[:t] == word[t - 1]]]
        nxt = possible_next(pattern, prefix)
        assert int(tokens[t]) in nxt
        assert deterministic[t] == (len(nxt) == 1), (t, prefix, nxt)


def test_counting_sequence_values():
    assert tasks.counting_sequence("anbncn", 2) == [0, 0, 1, 1, 2, 2]
    with pytest.raises(ValueError, match="counting_sequence: pattern"):
        tasks.counting_sequence("abab", 2)
