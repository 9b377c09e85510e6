"""Fused RNN kernels: an Elman, LSTM or GRU step, or a whole sequence, as ONE graph node.

Composed from primitives, an LSTM step is about 15 nodes and a sequence of T steps 15 T; every
node costs Python overhead, a temporary array and a saved array. These ops do the same maths with
a hand-derived backward, in place on preallocated buffers, through `self.xp` (NumPy or CuPy).
tests/test_fused.py proves each one equal to its composition from minigrad primitives (values
and every gradient), and benchmarks/rnn.py measures what they buy (docs/performance.md).

One module per family: `elman`, `lstm`, `gru` (its two reset forms as two ops each); the
feature-major layout, blocks of steps and argument checks they share are in `layout`. What each
op keeps for backward, lengths included, goes through `save_for_backward` and is written in its
docstring.
"""
from rnn.kernels.elman import RNNSequence, RNNStep, rnn_sequence, rnn_step
from rnn.kernels.gru import (GRUSequence, GRUSequenceResetAfter, GRUStep, GRUStepResetAfter,
                             gru_sequence, gru_step)
from rnn.kernels.lstm import LSTMSequence, LSTMStep, lstm_sequence, lstm_step

__all__ = ["GRUSequence", "GRUSequenceResetAfter", "GRUStep", "GRUStepResetAfter", "LSTMSequence",
           "LSTMStep",
           "RNNSequence", "RNNStep", "gru_sequence", "gru_step", "lstm_sequence", "lstm_step",
           "rnn_sequence", "rnn_step"]
