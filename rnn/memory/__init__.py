"""Memory-augmented networks: the Neural Turing Machine's addressing, and the data generators of
the memory tasks. See docs/memory.md."""
from rnn.memory import tasks
from rnn.memory.addressing import (address, content_weights, interpolate, read, sharpen, shift,
                                   write)

__all__ = ["address", "content_weights", "interpolate", "read", "sharpen", "shift", "tasks",
           "write"]
