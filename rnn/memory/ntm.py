"""The Neural Turing Machine (Graves et al. 2014) as a cell: a controller (LSTM or feed-forward)
with read and write heads on an external memory, one step `forward(x_t, state)`; `rnn.unroll`
runs it over time like any other cell.
"""
from __future__ import annotations

import math

import numpy as np

import minigrad as mg
from minigrad.nn import Parameter
from rnn.cell import Cell, generator
from rnn.cells import LSTMCell
from rnn.memory.addressing import address, read, write


class NTMCell(Cell):
    """Neural Turing Machine: a controller, `read_heads` read heads and `write_heads` write heads
    on a memory of `memory_slots` N slots of `slot_size` M numbers.

    State (nested): `(memory (B, N, M), read_weights (B, R, N), write_weights (B, W, N),
    reads (B, R*M), controller_state)`; `controller_state` is the LSTM's `(h, c)` for
    `controller="lstm"` and absent (a 4-tuple state) for `controller="feedforward"`.

    One step, in this order:

    1. the controller reads `[x_t, reads_{t-1}]` and gives h_t (B, C);
    2. one linear map of h_t gives every head's key (M), beta = softplus, gate = sigmoid,
       shift kernel = softmax over `shift_width` taps and gamma = 1 + softplus; write heads
       also give erase = sigmoid (M) and add = tanh (M);
    3. all R + W heads address memory_{t-1} at once from their previous weights
       (`rnn.memory.address`: content, interpolate, shift, sharpen);
    4. the read heads read memory_{t-1}: reads_t (B, R*M);
    5. the write heads erase then add: memory_t = `rnn.memory.write(memory_{t-1}, ...)`;
    6. output = W_out [h_t, reads_t] + b (B, output_size), logits for the task's loss.

    The initial state is learned: memory starts as a constant 1e-6 in every cell (Collier &
    Beel 2018 found a constant start the most stable), each head's weights start as a softmax of
    learned logits focused on slot 0 (a focused start is what lets shifts walk the memory), the
    first reads as learned vectors (zero at first).

    >>> import minigrad as mg, rnn
    >>> cell = rnn.memory.NTMCell(9, 8, memory_slots=16, slot_size=6, rng=0)
    >>> out, state = rnn.unroll(cell, mg.randn(5, 2, 9))
    >>> out.shape, state[0].shape
    ((5, 2, 8), (2, 16, 6))
    """

    def __init__(self, input_size: int, output_size: int, *, controller: str = "lstm",
                 controller_size: int = 100, memory_slots: int = 128, slot_size: int = 20,
                 read_heads: int = 1, write_heads: int = 1, shift_width: int = 3, rng=None,
                 dtype=None, device=None):
        rng = generator(rng)
        super().__init__(input_size, output_size, rng=rng, dtype=dtype, device=device)
        for name, n in (("controller_size", controller_size), ("memory_slots", memory_slots),
                        ("slot_size", slot_size), ("read_heads", read_heads),
                        ("write_heads", write_heads), ("shift_width", shift_width)):
            if not isinstance(n, (int, np.integer)) or n < 1:
                raise ValueError(f"NTMCell: {name} must be a positive int, got {n!r}")
        if shift_width % 2 == 0:
            raise ValueError(f"NTMCell: shift_width must be odd (3: shifts -1, 0, +1), got "
                             f"{shift_width}")
        if controller not in ("lstm", "feedforward"):
            raise ValueError(f"NTMCell: controller must be 'lstm' or 'feedforward', got "
                             f"{controller!r}")
        self.controller_kind = controller
        C, N, M = controller_size, memory_slots, slot_size
        R, W, K = read_heads, write_heads, shift_width
        self.controller_size, self.memory_slots, self.slot_size = C, N, M
        self.read_heads, self.write_heads, self.shift_width = R, W, K
        ctrl_in = input_size + R * M
        if controller == "lstm":
            self.controller = LSTMCell(ctrl_in, C, rng=rng, dtype=dtype, device=device)
        else:
            self.weight_ctrl = self.uniform(C, ctrl_in)
            self.bias_ctrl = self.uniform(C, fan_in=ctrl_in)
        self.addressing_size = M + 3 + K  # key, beta, gate, shift kernel, gamma
        heads_out = (R + W) * self.addressing_size + W * 2 * M
        self.weight_heads = self.uniform(heads_out, C)
        self.bias_heads = self.uniform(heads_out, fan_in=C)
        self.weight_out = self.uniform(output_size, C + R * M)
        self.bias_out = self.uniform(output_size, fan_in=C + R * M)
        self.memory0 = self.parameter(N, M, value=1e-6)
        focus = np.full((R + W, N), -10.0)  # softmax: about 1 - N e^-10 on slot 0
        focus[:, 0] = 0.0
        float_type = np.dtype(dtype) if dtype is not None else mg.get_default_dtype()
        self.weight_logits0 = Parameter(focus.astype(float_type), device=device)
        self.reads0 = self.parameter(R * M, value=0.0)

    def uniform(self, *shape: int, fan_in: int | None = None):
        """A weight uniform in +-1/sqrt(fan_in) (fan_in: the last axis unless given)."""
        bound = 1.0 / math.sqrt(fan_in or shape[-1])
        return self.parameter(*shape, low=-bound, high=bound)

    def initial_state(self, batch_size: int):
        """The learned start, broadcast over the batch (its gradient reaches the parameters)."""
        B, N, M = batch_size, self.memory_slots, self.slot_size
        R = self.read_heads
        memory = mg.broadcast_to(self.memory0, (B, N, M))
        weights = mg.broadcast_to(mg.softmax(self.weight_logits0, axis=-1), (B,) +
                                  self.weight_logits0.shape)
        read_w, write_w = mg.split(weights, [R], axis=1)
        reads = mg.broadcast_to(self.reads0, (B, R * M))
        if self.controller_kind == "lstm":
            return memory, read_w, write_w, reads, self.controller.initial_state(B)
        return memory, read_w, write_w, reads

    def heads(self, h):
        """The heads' parameters from the controller output h (B, C): key (B, R+W, M), beta,
        gate, gamma (B, R+W), kernel (B, R+W, K), erase and add (B, W, M)."""
        B, M, K = h.shape[0], self.slot_size, self.shift_width
        R, W, A = self.read_heads, self.write_heads, self.addressing_size
        p = h @ self.weight_heads.T + self.bias_heads
        addressing, erase_add = mg.split(p, [(R + W) * A], axis=1)
        addressing = mg.reshape(addressing, (B, R + W, A))
        key, beta, gate, kernel, gamma = mg.split(addressing, [M, M + 1, M + 2, M + 2 + K],
                                                  axis=2)
        erase, add = mg.split(mg.reshape(erase_add, (B, W, 2 * M)), 2, axis=2)
        return (key, mg.softplus(beta[..., 0]), mg.sigmoid(gate[..., 0]),
                mg.softmax(kernel, axis=-1), 1 + mg.softplus(gamma[..., 0]),
                mg.sigmoid(erase), mg.tanh(add))

    def forward(self, x_t, state):
        memory, read_w, write_w, reads = state[:4]
        inp = mg.concat([x_t, reads], axis=1)
        if self.controller_kind == "lstm":
            h, ctrl = self.controller(inp, state[4])
        else:
            h = mg.tanh(inp @ self.weight_ctrl.T + self.bias_ctrl)
        key, beta, gate, kernel, gamma, erase, add = self.heads(h)
        w_prev = mg.concat([read_w, write_w], axis=1)
        w = address(memory, w_prev, key, beta, gate, kernel, gamma)
        read_w, write_w = mg.split(w, [self.read_heads], axis=1)
        reads = mg.reshape(read(memory, read_w), (x_t.shape[0], -1))
        memory = write(memory, write_w, erase, add)
        out = mg.concat([h, reads], axis=1) @ self.weight_out.T + self.bias_out
        new = (memory, read_w, write_w, reads)
        return out, (new + (ctrl,) if self.controller_kind == "lstm" else new)

    def extra_repr(self) -> str:
        return (f"{self.input_size}, {self.hidden_size}, controller={self.controller_kind!r}, "
                f"controller_size={self.controller_size}, memory_slots={self.memory_slots}, "
                f"slot_size={self.slot_size}, read_heads={self.read_heads}, "
                f"write_heads={self.write_heads}, shift_width={self.shift_width}")
