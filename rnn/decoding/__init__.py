"""Decoding a sequence model that offers one step: greedy, sampling and batched beam search.

A model decodes if it offers `step(tokens (N,), state) -> (log_probs (N, V), state)` (plus,
optionally, attention weights (N, S) for the coverage penalty); see `rnn.decoding.protocol` for
the search space (min/max length, banned tokens, prefixes, n-gram blocking) that every decoder
here shares, `rnn.decoding.penalties` for the length and coverage penalties and the bound that
makes beam search stop exactly, `draw_beam` and `beam_stepper` / `save_beam_html` for a
picture of the beam and a page that steps through it, and docs/decoding.md.

>>> import numpy as np, minigrad as mg
>>> from rnn.decoding import beam_search, greedy
>>> def step(tokens, state):            # next token: (previous + 1) mod 4, EOS = 3 likely at once
...     logits = np.eye(4)[(tokens + 1) % 4] * 3.0
...     return mg.log_softmax(mg.tensor(logits)), state
>>> greedy(step, None, bos=0, eos=3, max_len=5, batch_size=1)[0].tokens.tolist()
[1, 2, 3]
>>> best = beam_search(step, None, 0, 3, beam_size=2, max_len=5, batch_size=1)[0][0]
>>> best.tokens.tolist(), round(best.log_prob, 3)
([1, 2, 3], -0.418)
"""
from rnn.decoding.beam import BeamNode, BeamTrace, beam_search
from rnn.decoding.page import BeamStepper, beam_stepper, save_beam_html
from rnn.decoding.picture import draw_beam
from rnn.decoding.protocol import Hypothesis, reorder
from rnn.decoding.sampling import filter_log_probs, greedy, sample

__all__ = ["BeamNode", "BeamStepper", "BeamTrace", "Hypothesis", "beam_search", "beam_stepper",
           "draw_beam", "filter_log_probs", "greedy", "reorder", "sample", "save_beam_html"]
