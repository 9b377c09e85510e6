"""Training sequence generators against exposure bias: rewards, schedules, RAML.

`rewards` (BLEU, edit distance, token accuracy: batched, any user function fits),
`schedules` (scheduled sampling's three decays), `raml` (exact sampling from the exponentiated
payoff distribution of the Hamming distance).
"""
from rnn.training import raml, rewards, schedules

__all__ = ["raml", "rewards", "schedules"]
