"""Memory-augmented networks: the Neural Turing Machine (`NTMCell` and its addressing functions),
end-to-end memory networks (`MemN2N`), the stack-augmented RNN (`StackRNNCell`), and the data of
their tasks (`rnn.memory.tasks`). See docs/memory.md."""
from rnn.memory import tasks
from rnn.memory.addressing import (address, content_weights, interpolate, read, sharpen, shift,
                                   write)
from rnn.memory.memn2n import MemN2N, position_encoding
from rnn.memory.ntm import NTMCell
from rnn.memory.stack import StackRNNCell

__all__ = ["MemN2N", "NTMCell", "StackRNNCell", "address", "content_weights", "interpolate",
           "position_encoding", "read", "sharpen", "shift", "tasks", "write"]
