"""Data for memory-augmented networks, generated here (nothing is downloaded): the NTM's copy,
repeat-copy and associative-recall sequences; bAbI-like stories for tasks 1, 2, 3 and 16 with a
vocabulary and sentence forms of our own; and the counting languages a^n b^n, a^n b^n c^n and
a^n b^2n of Joulin & Mikolov.

Every generator takes a `numpy.random.Generator` and returns host NumPy arrays (time-major,
(T, B, F), for the sequence tasks), so a seed fixes the data.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

# --- NTM sequence tasks --------------------------------------------------------------------------


@dataclass
class SequenceTask:
    """One batch of a sequence task: `inputs` (T, B, I) and `targets` (T, B, O) float32 arrays,
    and `mask` (T, B) float32, 1 at the steps whose output is scored."""
    inputs: np.ndarray
    targets: np.ndarray
    mask: np.ndarray


def _random_bits(rng, shape) -> np.ndarray:
    return (rng.random(shape) < 0.5).astype(np.float32)


def _positive(name: str, value, op: str, low: int = 1) -> int:
    if not isinstance(value, (int, np.integer)) or value < low:
        raise ValueError(f"{op}: {name} must be an int >= {low}, got {value!r}")
    return int(value)


def copy_task(rng: np.random.Generator, batch: int, length: int, width: int = 8) -> SequenceTask:
    """The copy task: read `length` random `width`-bit vectors, then a delimiter; write them back.

    inputs (2L + 1, B, width + 1): the L vectors on the first `width` channels, then a step with
    only the last (delimiter) channel on, then L blank steps. targets (2L + 1, B, width): the
    vectors again at the last L steps, where `mask` is 1.

    >>> import numpy as np
    >>> t = copy_task(np.random.default_rng(0), batch=2, length=3, width=4)
    >>> t.inputs.shape, t.targets.shape, t.mask.sum(axis=0).tolist()
    ((7, 2, 5), (7, 2, 4), [3.0, 3.0])
    """
    B = _positive("batch", batch, "copy_task")
    L = _positive("length", length, "copy_task")
    W = _positive("width", width, "copy_task")
    seq = _random_bits(rng, (L, B, W))
    T = 2 * L + 1
    inputs = np.zeros((T, B, W + 1), np.float32)
    inputs[:L, :, :W] = seq
    inputs[L, :, W] = 1.0
    targets = np.zeros((T, B, W), np.float32)
    targets[L + 1:] = seq
    mask = np.zeros((T, B), np.float32)
    mask[L + 1:] = 1.0
    return SequenceTask(inputs, targets, mask)


def repeat_copy_task(rng: np.random.Generator, batch: int, length: int, repeats: int,
                     width: int = 8, max_repeats: int = 10) -> SequenceTask:
    """Repeat copy: read L vectors, then a delimiter step carrying the number of repeats (as
    repeats / max_repeats on its own channel); write the sequence `repeats` times, then an
    end-of-output marker.

    inputs (T, B, width + 2) with T = L + 1 + L * repeats + 1: bits, delimiter, repeat count.
    targets (T, B, width + 1): the repeated bits, and the end marker on the last channel at the
    final step; `mask` is 1 on the L * repeats + 1 output steps.
    """
    op = "repeat_copy_task"
    B, L, W = (_positive(n, v, op) for n, v in (("batch", batch), ("length", length),
                                                ("width", width)))
    R = _positive("repeats", repeats, op)
    if R > max_repeats:
        raise ValueError(f"{op}: repeats={R} exceeds max_repeats={max_repeats}")
    seq = _random_bits(rng, (L, B, W))
    T = L + 1 + L * R + 1
    inputs = np.zeros((T, B, W + 2), np.float32)
    inputs[:L, :, :W] = seq
    inputs[L, :, W] = 1.0
    inputs[L, :, W + 1] = R / max_repeats
    targets = np.zeros((T, B, W + 1), np.float32)
    targets[L + 1:T - 1, :, :W] = np.tile(seq, (R, 1, 1))
    targets[T - 1, :, W] = 1.0
    mask = np.zeros((T, B), np.float32)
    mask[L + 1:] = 1.0
    return SequenceTask(inputs, targets, mask)


def associative_recall_task(rng: np.random.Generator, batch: int, items: int,
                            item_length: int = 3, width: int = 6) -> SequenceTask:
    """Associative recall: read `items` items (each `item_length` random vectors, opened by an
    item delimiter), then a query item between two query delimiters; write the item that
    followed the query in the list.

    inputs (T, B, width + 2) with T = items * (item_length + 1) + item_length + 2 + item_length:
    bits, item delimiter, query delimiter. targets (T, B, width): the answer at the last
    `item_length` steps, where `mask` is 1. The query is never the last item.
    """
    op = "associative_recall_task"
    B, K, W = (_positive(n, v, op) for n, v in (("batch", batch), ("item_length", item_length),
                                                ("width", width)))
    n = _positive("items", items, op, low=2)
    bits = _random_bits(rng, (n, K, B, W))
    query = rng.integers(0, n - 1, size=B)
    T = n * (K + 1) + K + 2 + K
    inputs = np.zeros((T, B, W + 2), np.float32)
    for i in range(n):  # a loop over the few items; every example is filled at once
        start = i * (K + 1)
        inputs[start, :, W] = 1.0
        inputs[start + 1:start + 1 + K, :, :W] = bits[i]
    q = n * (K + 1)
    cols = np.arange(B)
    inputs[q, :, W + 1] = 1.0
    inputs[q + 1:q + 1 + K, :, :W] = bits[query, :, cols].transpose(1, 0, 2)
    inputs[q + 1 + K, :, W + 1] = 1.0
    targets = np.zeros((T, B, W), np.float32)
    targets[T - K:] = bits[query + 1, :, cols].transpose(1, 0, 2)
    mask = np.zeros((T, B), np.float32)
    mask[T - K:] = 1.0
    return SequenceTask(inputs, targets, mask)


# --- bAbI-like stories ---------------------------------------------------------------------------

PEOPLE = ("Ada", "Boris", "Chiara", "Dmitri", "Elif", "Farid", "Greta", "Hugo")
PLACES = ("attic", "cellar", "greenhouse", "library", "workshop", "pantry")
THINGS = ("lantern", "violin", "compass", "teapot", "kite", "ledger")
CREATURES = ("heron", "lynx", "beetle", "moth")
COLOURS = ("grey", "amber", "violet", "teal")
MOVES = ("walked to the", "ran to the", "drifted to the", "hurried to the")
TAKES = ("took the", "picked up the", "grabbed the")
LEAVES = ("left the", "put down the", "set down the")


@dataclass
class Story:
    """A story: its sentences (lists of lower-case words), a question, the one-word answer and
    the indices of the sentences that support it."""
    sentences: list
    question: list
    answer: str
    supporting: list


def _words(text: str) -> list:
    return text.lower().replace("?", "").replace(".", "").split()


class _World:
    """People moving and carrying things; records sentences and where everything has been."""

    def __init__(self, rng, n_people, n_things):
        self.rng = rng
        self.people = list(rng.choice(PEOPLE, n_people, replace=False))
        self.things = list(rng.choice(THINGS, n_things, replace=False))
        self.place = {}         # person -> (place, sentence index of the move)
        self.holder = {}        # thing -> person holding it
        self.thing_at = {}      # thing -> (place, [supporting sentence indices]) once known
        self.history = {t: [] for t in self.things}  # thing -> [(place, supporting indices)]
        self.holder_since = {}  # thing -> index of the sentence where its holder took it
        self.sentences = []

    def say(self, text):
        self.sentences.append(_words(text))
        return len(self.sentences) - 1

    def move(self, person):
        here = self.place.get(person, (None,))[0]
        where = self.rng.choice([p for p in PLACES if p != here])
        i = self.say(f"{person} {self.rng.choice(MOVES)} {where}.")
        self.place[person] = (where, i)
        for thing, who in self.holder.items():
            if who == person:
                self._arrive(thing, where, [self.holder_since[thing], i])

    def _arrive(self, thing, where, support):
        self.thing_at[thing] = (where, support)
        self.history[thing].append((where, support))

    def take(self, person, thing):
        i = self.say(f"{person} {self.rng.choice(TAKES)} {thing}.")
        self.holder[thing] = person
        self.holder_since[thing] = i
        where, moved = self.place[person]
        self._arrive(thing, where, [moved, i])

    def leave(self, person, thing):
        i = self.say(f"{person} {self.rng.choice(LEAVES)} {thing}.")
        del self.holder[thing]
        where, moved = self.place[person]
        self.thing_at[thing] = (where, [moved, i])

    def random_event(self, allow_objects=True):
        rng = self.rng
        placed = [p for p in self.people if p in self.place]
        if allow_objects and placed and rng.random() < 0.4:
            person = placed[rng.integers(len(placed))]
            held = [t for t, who in self.holder.items() if who == person]
            here = self.place[person][0]
            free = [t for t in self.things if t not in self.holder
                    and self.thing_at.get(t, (here,))[0] == here]  # things lie where they were left
            if held and rng.random() < 0.3:
                return self.leave(person, held[rng.integers(len(held))])
            if free:
                return self.take(person, free[rng.integers(len(free))])
        self.move(self.people[rng.integers(len(self.people))])


def _single_fact(rng, n_sentences):
    w = _World(rng, 4, 0)
    for _ in range(n_sentences):
        w.move(w.people[rng.integers(len(w.people))])
    who = [p for p in w.people if p in w.place]
    person = who[rng.integers(len(who))]
    where, i = w.place[person]
    return Story(w.sentences, _words(f"Where is {person}?"), where, [i])


def _object_story(rng, n_sentences, need_history):
    """Events until some thing has a known place (and, for task 3, a change of place)."""
    while True:
        w = _World(rng, 3, 3)
        for p in w.people:
            w.move(p)
        for _ in range(n_sentences - len(w.people)):
            w.random_event()
        known = [t for t in w.things if t in w.thing_at and
                 (not need_history or _moves_of(w.history[t]) >= 2)]
        if known:
            return w, known[rng.integers(len(known))]


def _moves_of(history):
    """Number of distinct consecutive places in a thing's history."""
    places = [h[0] for h in history]
    return len([p for k, p in enumerate(places) if k == 0 or p != places[k - 1]])


def _two_facts(rng, n_sentences):
    w, thing = _object_story(rng, n_sentences, need_history=False)
    where, support = w.thing_at[thing]
    return Story(w.sentences, _words(f"Where is the {thing}?"), where, sorted(support))


def _three_facts(rng, n_sentences):
    w, thing = _object_story(rng, n_sentences, need_history=True)
    hist = [h for k, h in enumerate(w.history[thing])
            if k == 0 or h[0] != w.history[thing][k - 1][0]]
    (before, s_before), (last, s_last) = hist[-2], hist[-1]
    support = sorted(set(s_last) | set(s_before))
    return Story(w.sentences, _words(f"Where was the {thing} before the {last}?"), before,
                 support)


def _induction(rng, n_sentences=None):
    names = list(rng.choice(PEOPLE, 5, replace=False))
    kinds = list(rng.choice(CREATURES, 4, replace=False))
    colour = dict(zip(kinds, rng.permutation(COLOURS)))
    kind = {n: kinds[rng.integers(len(kinds))] for n in names}
    target, witness = names[0], names[1]
    kind[witness] = kind[target]
    facts = []
    for n in names:
        facts.append((n, f"{n} is a {kind[n]}."))
        if n != target:
            facts.append((n, f"{n} is {colour[kind[n]]}."))
    order = rng.permutation(len(facts))
    w = _World(rng, 0, 0)
    index = {}
    for k in order:
        name, text = facts[k]
        index[text] = w.say(text)
    support = sorted([index[f"{target} is a {kind[target]}."],
                      index[f"{witness} is a {kind[witness]}."],
                      index[f"{witness} is {colour[kind[witness]]}."]])
    return Story(w.sentences, _words(f"What colour is {target}?"), colour[kind[target]], support)


BABI_TASKS = {1: _single_fact, 2: _two_facts, 3: _three_facts, 16: _induction}
# the fewest sentences a story of each task can have: three people walk in first, then task 2
# needs something taken, task 3 something taken and carried on to a second place
FEWEST_SENTENCES = {1: 1, 2: 4, 3: 6, 16: 9}


def babi_stories(rng: np.random.Generator, task: int, count: int,
                 sentences: int = 8) -> list:
    """`count` stories of the bAbI-like `task` (1, 2, 3 or 16), each a `Story`.

    1 single supporting fact (Where is Ada?), 2 two supporting facts (Where is the kite?),
    3 three supporting facts (Where was the kite before the attic?), 16 basic induction
    (Ada is a heron. Boris is a heron. Boris is grey. What colour is Ada?). `sentences` sets the
    length of tasks 1-3, at least `FEWEST_SENTENCES[task]` (task 16 always has 9 sentences).

    >>> import numpy as np
    >>> s = babi_stories(np.random.default_rng(0), 1, 1)[0]
    >>> s.question[:2], s.answer in PLACES, len(s.sentences)
    (['where', 'is'], True, 8)
    """
    if task not in BABI_TASKS:
        raise ValueError(f"babi_stories: task must be one of {sorted(BABI_TASKS)}, got {task!r}")
    _positive("count", count, "babi_stories")
    if task != 16:
        _positive("sentences", sentences, f"babi_stories (task {task})",
                  low=FEWEST_SENTENCES[task])
    return [BABI_TASKS[task](rng, sentences) for _ in range(count)]


def babi_vocabulary() -> list:
    """Every word the story generator can write, sorted, with "<pad>" first (index 0)."""
    words = set()
    for group in (PEOPLE, PLACES, THINGS, CREATURES, COLOURS, MOVES, TAKES, LEAVES):
        for phrase in group:
            words.update(_words(phrase))
    words.update(_words("where is the was before what colour a"))
    return ["<pad>"] + sorted(words)


def encode_stories(stories: list, vocabulary: list, memory_size: int | None = None,
                   sentence_length: int | None = None) -> tuple:
    """Stories as index arrays for `MemN2N`: (sentences, questions, answers).

    sentences (S, memory_size, sentence_length) int64, 0-padded: the *last* `memory_size`
    sentences of each story, oldest first and right-aligned (the newest at slot memory_size - 1,
    empty slots first); questions (S, sentence_length); answers (S,) the answer's word index.
    Defaults: the longest story and sentence.
    """
    index = {w: i for i, w in enumerate(vocabulary)}
    mem = memory_size or max(len(s.sentences) for s in stories)
    width = sentence_length or max(len(x) for s in stories for x in s.sentences + [s.question])
    S = len(stories)
    sent = np.zeros((S, mem, width), np.int64)
    quest = np.zeros((S, width), np.int64)
    ans = np.zeros(S, np.int64)
    for k, s in enumerate(stories):
        kept = s.sentences[-mem:]
        for j, words in enumerate(kept, start=mem - len(kept)):
            sent[k, j, :len(words)] = [index[w] for w in words[:width]]
        quest[k, :len(s.question)] = [index[w] for w in s.question[:width]]
        ans[k] = index[s.answer]
    return sent, quest, ans


# --- counting languages --------------------------------------------------------------------------

COUNTING = {"anbn": (1, 1, 0), "anbncn": (1, 1, 1), "anb2n": (1, 2, 0)}


def counting_sequence(pattern: str, n: int) -> list:
    """One word of a counting language as token ids (a = 0, b = 1, c = 2).

    >>> counting_sequence("anb2n", 2)
    [0, 0, 1, 1, 1, 1]
    """
    if pattern not in COUNTING:
        raise ValueError(f"counting_sequence: pattern must be one of {sorted(COUNTING)}, "
                         f"got {pattern!r}")
    _positive("n", n, "counting_sequence")
    return [tok for tok, k in enumerate(COUNTING[pattern]) for _ in range(k * n)]


def counting_stream(pattern: str, n_values) -> tuple:
    """Words of `pattern` for each n in `n_values`, concatenated: (tokens, deterministic, word).

    tokens (L,) int64; deterministic (L,) bool, True where token t follows from the tokens
    before it (every b but the first, every c, and the first a of the next word); word (L,) the
    index of the word each token belongs to.

    >>> tokens, deterministic, _ = counting_stream("anbn", [2, 1])
    >>> tokens.tolist(), deterministic.astype(int).tolist()
    ([0, 0, 1, 1, 0, 1], [0, 0, 0, 1, 1, 0])
    """
    tokens, det, word = [], [], []
    for k, n in enumerate(n_values):
        seq = counting_sequence(pattern, int(n))
        for t, tok in enumerate(seq):
            tokens.append(tok)
            first_b = tok == 1 and seq[t - 1] == 0
            det.append((tok != 0 and not first_b) or (tok == 0 and t == 0 and k > 0))
            word.append(k)
    return np.array(tokens, np.int64), np.array(det, bool), np.array(word, np.int64)
