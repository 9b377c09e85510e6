"""rnn: recurrent networks on minigrad, time-major (T, B, F) throughout.

A cell is one step, `forward(x_t, state) -> (output, new_state)` (or `forward(x_t, state,
context)` to read a context fixed over time); a state is a Tensor or any nesting of tuples,
lists, NamedTuples and dicts of Tensors (`rnn.state`); `unroll` runs a cell over time with
per-sequence `lengths` through the one step loop (`rnn.steps`); layers (`Bidirectional`,
`Stacked`, `LSTM`, ...) compose cells; losses mask padded steps; `unroll_checkpointed`, `tbptt`
and `clip_state_grad` trade memory and tame gradients over long sequences. See docs/rnn.md.

>>> import minigrad as mg, rnn
>>> lstm = rnn.LSTM(3, 8, num_layers=2, rng=0)
>>> out, states = lstm(mg.randn(5, 2, 3), lengths=[5, 3])
>>> out.shape
(5, 2, 8)
"""
from rnn import analysis, kernels, reinforce, state, steps
from rnn.attention import (AdditiveAttention, Attention, BilinearAttention, DotAttention,
                           HardAttention, LocationAwareAttention, masked_softmax, source_mask)
from rnn.cell import Cell
from rnn.cells import GRUCell, LSTMCell, MUT1Cell, MUT2Cell, MUT3Cell, PhasedLSTMCell, RNNCell
from rnn.checkpointing import unroll_checkpointed
from rnn.compiled import compile_report, compiling
from rnn.clip import clip_state_grad
from rnn.generate import generate  # the function shadows the module
from rnn.lengths import mask_from_lengths
from rnn.layers import GRU, LSTM, RNN, Bidirectional, DeepTransitionCell, Stacked, reverse_sequences
from rnn.losses import sequence_cross_entropy
from rnn.seq2seq import (AttentionDecoderCell, Seq2Seq, Seq2SeqState, SourceContext, StepStack,
                         run_decoder)
from rnn.hred import HRED
from rnn import memory  # noqa: I001  (after the cells it builds on)
from rnn.tbptt import TBPTTResult, Window, tbptt  # the function shadows the module: take all
from rnn.unroll import pad_sequences, unroll

__all__ = [
    "AdditiveAttention", "Attention", "BilinearAttention", "DotAttention", "HardAttention",
    "LocationAwareAttention", "reinforce", "masked_softmax", "source_mask",
    "AttentionDecoderCell", "HRED", "Seq2Seq", "Seq2SeqState", "SourceContext", "StepStack",
    "run_decoder",
    "Bidirectional", "Cell", "DeepTransitionCell", "GRU", "GRUCell", "LSTM", "LSTMCell",
    "MUT1Cell", "MUT2Cell", "MUT3Cell", "PhasedLSTMCell", "RNN", "RNNCell", "Stacked",
    "TBPTTResult", "Window", "analysis", "clip_state_grad", "compile_report", "compiling",
    "generate", "kernels",
    "mask_from_lengths", "memory", "pad_sequences", "reverse_sequences", "sequence_cross_entropy",
    "state", "steps", "tbptt", "unroll", "unroll_checkpointed",
]
