"""Batched beam search: keep the K best partial hypotheses of every example, expand them all in
one model call per step, keep the K best again.

Every step the B x K open hypotheses advance through one call of the model's step. An EOS
extension that ranks among its example's K best extensions (by log-probability) leaves the beam
for the example's list of finished hypotheses, ranked by the penalised score of
`rnn.decoding.penalties`; the beam keeps the K best non-EOS extensions, so it stays full. An
example stops when no open hypothesis can beat its n-th best finished one (the exact bound of
`penalties.upper_bound`), or at `max_len`. The state is reordered between steps with one gather
per leaf.

With `return_trace=True` the search tree comes back as well: the root, every hypothesis the beam
kept, every EOS extension (finished), and for every step the K next-best extensions the beam cut
(pruned), with the returned best path marked; `rnn.decoding.draw_beam` draws it.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

import minigrad as mg
from minigrad import checks
from rnn.decoding import penalties
from rnn.decoding.protocol import (Constraints, Hypothesis, batch_size_of, constrain, reorder,
                                   step_function)

__all__ = ["BeamNode", "BeamTrace", "beam_search"]


@dataclass
class BeamNode:
    """One node of the search tree. status: "root", "kept", "pruned" or "finished"."""
    id: int
    example: int
    step: int  # tokens emitted up to and including this one (0 for the root)
    parent: int | None
    token: int | None
    log_prob: float
    status: str
    score: float | None = None  # the penalised score, for finished nodes
    chosen: bool = False


@dataclass
class BeamTrace:
    """The search tree of a `beam_search` call: `nodes` by id, `best[b]` the id of the node that
    ends example b's best hypothesis (None when it found none)."""
    beam_size: int
    nodes: list[BeamNode] = field(default_factory=list)
    best: list = field(default_factory=list)

    def add(self, **kw) -> int:
        self.nodes.append(BeamNode(id=len(self.nodes), **kw))
        return len(self.nodes) - 1

    def path(self, node_id: int) -> list[BeamNode]:
        """The nodes from the root to `node_id`."""
        out = []
        while node_id is not None:
            out.append(self.nodes[node_id])
            node_id = self.nodes[node_id].parent
        return out[::-1]


def beam_search(model, state, bos: int, eos: int, beam_size: int, max_len: int, *,
                min_len: int = 0, length_penalty=None, coverage_penalty=None, n_best: int = 1,
                no_repeat_ngram_size: int = 0, banned=(), prefix=None,
                return_trace: bool = False, early_stopping: bool = True,
                batch_size: int | None = None):
    """The `n_best` best hypotheses per example, best first: a list (B) of lists of Hypothesis
    (with the BeamTrace as a second value when `return_trace`). Examples that found no allowed
hypothesis get an empty list.

    model: offers `step(tokens (N,), state) -> (log_probs (N, V), state[, attention (N, S)])`
    (see `rnn.decoding.protocol`); state: its state for B examples (give `batch_size` when it
    is None); bos: the first input token; eos: the token that ends a hypothesis.
    length_penalty: None, "avg" or ("wu", alpha); coverage_penalty: None or ("wu", beta), which
    needs the step's attention; see `rnn.decoding.penalties`. min_len, max_len, banned, prefix,
    no_repeat_ngram_size: the search space of `rnn.decoding.protocol`.

    With a beam wide enough to hold every hypothesis the result is the exact best under the
    chosen penalty; beam 1 without penalties is greedy decoding. `early_stopping=False` runs
    every example to max_len instead of stopping at the bound: the result is the same, only
    slower (the bound is exact).
    """
    where = "beam_search"
    step = step_function(model, where)
    K = checks.integer(beam_size, where, "beam_size", low=1)
    n_best = checks.integer(n_best, where, "n_best", low=1)
    checks.boolean(return_trace, where, "return_trace")
    early_stopping = checks.boolean(early_stopping, where, "early_stopping")
    kind, alpha, beta = penalties.parse_penalties(length_penalty, coverage_penalty, where)
    B = (batch_size_of(state, where) if batch_size is None
         else checks.integer(batch_size, where, "batch_size", low=1))
    rules = Constraints.build(where, B, eos, max_len, min_len, banned, prefix,
                              no_repeat_ngram_size)
    bos = checks.integer(bos, where, "bos", low=0)
    N = B * K
    example = np.repeat(np.arange(B), K)  # the example of every hypothesis slot
    state = reorder(state, example)
    history = np.zeros((N, 0), np.int64)
    attention = None  # (N, t, S) once the model returns attention
    scores = np.full((B, K), -np.inf)
    scores[:, 0] = 0.0  # one live hypothesis per example at the start: no duplicates
    tokens = np.full(N, bos, np.int64)
    finished: list[list[Hypothesis]] = [[] for _ in range(B)]
    finished_node: list[list[int]] = [[] for _ in range(B)]
    done = np.zeros(B, bool)
    trace = BeamTrace(K) if return_trace else None
    node = None
    if trace is not None:
        roots = [trace.add(example=b, step=0, parent=None, token=None, log_prob=0.0,
                           status="root") for b in range(B)]
        node = np.full((B, K), -1, np.int64)
        node[:, 0] = roots

    with mg.no_grad():
        for t in range(rules.max_len):
            logp, state, attn = step(tokens, state)
            V = logp.shape[1]
            constrain(logp, history, t, example, rules, where)
            if attn is not None:
                attention = attn[:, None] if attention is None else np.concatenate(
                    [attention, attn[:, None]], axis=1)
            elif beta is not None:
                raise ValueError(f"{where}: coverage_penalty needs the model's step to return "
                                 "attention weights (log_probs, state, attention)")
            cand = scores.reshape(N, 1) + logp
            cand[done[example]] = -np.inf

            flat = cand.reshape(B, K * V)
            top_all = _best(flat, K)[0]  # EOS extensions finish only when they make the top K
            for b, r in zip(*np.nonzero(top_all % V == rules.eos)):
                i = b * K + top_all[b, r] // V
                if not np.isfinite(cand[i, rules.eos]):
                    continue
                lp_i, L = float(cand[i, rules.eos]), t + 1
                att = attention[i].copy() if attention is not None else None
                score = lp_i / float(penalties.length_penalty(kind, alpha, L))
                if beta is not None:
                    score += float(penalties.coverage_penalty(beta, att.sum(axis=0)))
                hyp = Hypothesis(np.append(history[i], rules.eos), score, lp_i, L, att)
                nid = None
                if trace is not None:
                    nid = trace.add(example=int(b), step=L, parent=int(node[b, i % K]),
                                    token=rules.eos, log_prob=lp_i, status="finished",
                                    score=score)
                _insert(finished[b], finished_node[b], hyp, nid, n_best)

            cand[:, rules.eos] = -np.inf
            keep = min(2 * K, K * V) if trace is not None else K
            top, top_scores = _best(flat, keep)
            chosen, chosen_scores = top[:, :K], top_scores[:, :K]
            origin, new_tokens = chosen // V, chosen % V
            src = (np.arange(B)[:, None] * K + origin).ravel()
            if trace is not None:
                new_node = np.full((B, K), -1, np.int64)
                for b in range(B):
                    for r in range(top.shape[1]):
                        s = float(top_scores[b, r])
                        if not np.isfinite(s):
                            continue
                        parent = int(node[b, top[b, r] // V])
                        nid = trace.add(example=b, step=t + 1, parent=parent,
                                        token=int(top[b, r] % V), log_prob=s,
                                        status="kept" if r < K else "pruned")
                        if r < K:
                            new_node[b, r] = nid
                node = new_node
            history = np.concatenate([history[src], new_tokens.reshape(N, 1)], axis=1)
            if attention is not None:
                attention = attention[src]
            scores = chosen_scores
            tokens = new_tokens.ravel()

            for b in np.flatnonzero(~done):
                best_open = scores[b].max()
                if not np.isfinite(best_open):
                    done[b] = True
                elif early_stopping and len(finished[b]) >= n_best and float(
                        penalties.upper_bound(kind, alpha, best_open, rules.max_len)) <= \
                        finished[b][n_best - 1].score:
                    done[b] = True
            if done.all() or t == rules.max_len - 1:
                break
            state = reorder(state, src)

    if trace is None:
        return finished
    trace.best = [ids[0] if ids else None for ids in finished_node]
    for nid in trace.best:
        if nid is not None:
            for n in trace.path(nid):
                n.chosen = True
    return finished, trace


def _best(flat: np.ndarray, k: int):
    """The k best entries of every row of `flat` (B, M), best first, ties to the lowest index:
    (indices (B, k), values (B, k))."""
    M = flat.shape[1]
    top = (np.argpartition(-flat, k - 1, axis=1)[:, :k] if k < M
           else np.broadcast_to(np.arange(M), flat.shape))
    values = np.take_along_axis(flat, top, axis=1)
    order = np.lexsort((top, -values), axis=1)
    return np.take_along_axis(top, order, axis=1), np.take_along_axis(values, order, axis=1)


def _insert(hyps: list, ids: list, hyp: Hypothesis, nid, n_best: int) -> None:
    """Insert into the best-first list, keeping at most n_best (an equal score goes after)."""
    k = len(hyps)
    while k > 0 and hyps[k - 1].score < hyp.score:
        k -= 1
    if k >= n_best:
        return
    hyps.insert(k, hyp)
    ids.insert(k, nid)
    del hyps[n_best:], ids[n_best:]
