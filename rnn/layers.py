"""Layers built from cells: both directions, stacks, a deep transition cell, and the familiar
`RNN` / `LSTM` / `GRU`. All time-major: (T, B, I) in, (T, B, H) out."""
from __future__ import annotations

import numpy as np

import minigrad as mg
from minigrad import backend
from minigrad.nn import Module
from rnn import state as st
from rnn.cell import Cell, check_input, generator
from rnn.cells import GRUCell, LSTMCell, RNNCell
from rnn.lengths import as_lengths
from rnn.steps import as_inputs
from rnn.unroll import unroll


def _context_for(layer, context):
    """The context for one layer: given to layers that take one, None to the others."""
    return context if layer.takes_context else None


def _check_takes_context(owner, context) -> None:
    if context is not None and not owner.takes_context:
        raise TypeError(f"{type(owner).__name__}: got a context but none of its cells takes one "
                        "(a cell that reads it defines forward(self, x_t, state, context))")


def reverse_sequences(x: mg.Tensor, lengths=None) -> mg.Tensor:
    """Reverse each sequence of x (T, B, ...) within its own length; steps past the end stay put.

    Without lengths this is a flip of the time axis. It is one index gather, so gradients flow;
    applying it twice gives x back.

    >>> import minigrad as mg, rnn
    >>> x = mg.tensor([[1., 10.], [2., 20.], [3., 0.]])       # (T=3, B=2), lengths 3 and 2
    >>> rnn.reverse_sequences(x, [3, 2]).tolist()
    [[3.0, 20.0], [2.0, 10.0], [1.0, 0.0]]
    """
    if lengths is None:
        return mg.flip(x, axis=0)
    T, B = x.shape[0], x.shape[1]
    n = as_lengths(lengths, B, T, "reverse_sequences", min_length=0).reshape(1, B)
    t = np.arange(T)[:, None]
    src = np.where(t < n, n - 1 - t, t)                           # (T, B) source step
    flat = (src * B + np.arange(B)).reshape(-1)
    flat = backend.to_device(flat, backend.device_of(x.data))
    rows = mg.take(x.reshape(T * B, *x.shape[2:]), flat, axis=0)
    return rows.reshape(*x.shape)


class Bidirectional(Module):
    """Run one cell forward in time and another backward; concatenate their outputs.

    `outputs, (state_fw, state_bw) = bi(inputs, state=None, lengths=None, checkpoint_every=None,
    context=None)` with inputs (T, B, I) and outputs (T, B, H_fw + H_bw), `[forward, backward]`
    on the last axis. The two cells may differ in type, size and state structure. With `lengths`
    the backward cell starts at each sequence's own last step: each sequence is reversed within
    its length, run, and reversed back, so its padding never enters the backward state. A
    `context` goes to each cell that takes one (unchanged: it is not a sequence).

    >>> import minigrad as mg, rnn
    >>> bi = rnn.Bidirectional(rnn.GRUCell(3, 4, rng=0), rnn.LSTMCell(3, 2, rng=1))
    >>> out, (h_fw, (h_bw, c_bw)) = bi(mg.randn(5, 2, 3), lengths=[5, 3])
    >>> out.shape
    (5, 2, 6)
    """

    def __init__(self, forward_cell: Cell, backward_cell: Cell):
        super().__init__()
        a, b = forward_cell.in_features, backward_cell.in_features
        if a is not None and b is not None and a != b:
            raise ValueError(f"Bidirectional: the forward cell expects {a} input features, the "
                             f"backward cell {b}")
        self.forward_cell = forward_cell
        self.backward_cell = backward_cell

    @property
    def in_features(self):
        return self.forward_cell.in_features

    @property
    def hidden_size(self) -> int:
        return self.forward_cell.hidden_size + self.backward_cell.hidden_size

    @property
    def takes_context(self) -> bool:
        return self.forward_cell.takes_context or self.backward_cell.takes_context

    def forward(self, inputs, state=None, lengths=None, checkpoint_every=None, *,
                context=None) -> tuple:
        name = type(self).__name__
        inputs = as_inputs(self.forward_cell, inputs, name)
        lengths = as_lengths(lengths, inputs.shape[1], inputs.shape[0], name)
        _check_takes_context(self, context)
        if state is not None and (not isinstance(state, (tuple, list)) or len(state) != 2):
            got = st.flatten(state)[1].describe() if isinstance(state, (tuple, list, dict)) \
                else type(state).__name__
            raise st.StateError(f"{name}: state must be the pair (state_fw, state_bw), got {got}")
        s_fw, s_bw = (None, None) if state is None else state
        out_fw, s_fw = unroll(self.forward_cell, inputs, s_fw, lengths,
                              context=_context_for(self.forward_cell, context),
                              checkpoint_every=checkpoint_every)
        out_bw, s_bw = unroll(self.backward_cell, reverse_sequences(inputs, lengths), s_bw,
                              lengths, context=_context_for(self.backward_cell, context),
                              checkpoint_every=checkpoint_every)
        out = mg.concat([out_fw, reverse_sequences(out_bw, lengths)], axis=-1)
        return out, (s_fw, s_bw)


class Stacked(Module):
    """A deep RNN: layers (cells or Bidirectionals) run one after another over the whole sequence.

    `outputs, states = stack(inputs, state=None, lengths=None, checkpoint_every=None,
    context=None)`, inputs (T, B, I), outputs (T, B, H_last), `states` a list with each layer's
    final state (any structure: a layer's state is its cell's). A `context` goes to every layer
    that takes one (a decoder stack whose top layer attends over the encoder outputs). `dropout`
    is applied to each layer's outputs before the next layer (in training mode only). With
    `residual=True` every layer after the first adds its input to its output, which needs equal
    sizes (checked here); the first layer maps the features to the hidden size.

    >>> import minigrad as mg, rnn
    >>> deep = rnn.Stacked([rnn.LSTMCell(3, 4, rng=0), rnn.LSTMCell(4, 4, rng=1)], residual=True)
    >>> out, states = deep(mg.randn(6, 2, 3))
    >>> out.shape, len(states)
    ((6, 2, 4), 2)
    """

    def __init__(self, layers, dropout: float = 0.0, residual: bool = False):
        super().__init__()
        layers = list(layers)
        if not layers:
            raise ValueError("Stacked: no layers given")
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"Stacked: dropout must be in [0, 1), got {dropout}")
        for i, (below, above) in enumerate(zip(layers, layers[1:])):
            n_out, n_in = below.hidden_size, above.in_features
            if n_in is not None and n_out != n_in:
                raise ValueError(f"Stacked: layer {i} ({type(below).__name__}) outputs {n_out} "
                                 f"features but layer {i + 1} ({type(above).__name__}) expects "
                                 f"{n_in}")
            if residual and n_out != above.hidden_size:
                raise ValueError(f"Stacked: residual=True needs layer {i + 1} "
                                 f"({type(above).__name__}) to output its input size {n_out}, "
                                 f"it outputs {above.hidden_size}")
        self.dropout = float(dropout)
        self.residual = bool(residual)
        self.num_layers = len(layers)
        for i, layer in enumerate(layers):
            setattr(self, f"layer{i}", layer)

    @property
    def layers(self) -> list:
        return [getattr(self, f"layer{i}") for i in range(self.num_layers)]

    @property
    def in_features(self):
        return self.layer0.in_features

    @property
    def hidden_size(self) -> int:
        return getattr(self, f"layer{self.num_layers - 1}").hidden_size

    @property
    def takes_context(self) -> bool:
        return any(layer.takes_context for layer in self.layers)

    def forward(self, inputs, state=None, lengths=None, checkpoint_every=None, *,
                context=None) -> tuple:
        layers = self.layers
        name = type(self).__name__
        x = as_inputs(layers[0] if isinstance(layers[0], Cell) else layers[0].forward_cell,
                      inputs, name)
        lengths = as_lengths(lengths, x.shape[1], x.shape[0], name)
        _check_takes_context(self, context)
        if state is not None and len(state) != len(layers):
            raise ValueError(f"{type(self).__name__}: {len(state)} states for {len(layers)} layers")
        states = []
        for i, layer in enumerate(layers):
            if i and self.dropout and self.training:
                x = mg.dropout(x, self.dropout)
            s = None if state is None else state[i]
            ctx = _context_for(layer, context)
            if isinstance(layer, Cell):
                out, s = unroll(layer, x, s, lengths, context=ctx,
                                checkpoint_every=checkpoint_every)
            else:
                out, s = layer(x, s, lengths=lengths, checkpoint_every=checkpoint_every,
                               context=ctx)
            x = out + x if self.residual and i else out
            states.append(s)
        return x, states


class DeepTransitionCell(Cell):
    """A deep transition RNN (Pascanu et al. 2014, "How to construct deep recurrent neural
    networks", DT-RNN and, with `shortcut=True`, DT(S)-RNN): an MLP of `depth` layers between
    h_{t-1} and h_t; state and output h (B, H):

        z_1 = act(W_ih x_t + W_hh h + b_1)
        z_l = act(W_l z_{l-1} + b_l)                      l = 2 .. depth - 1
        h'  = act(W_L z_{L-1} + b_L [+ W_s h])            (the shortcut skips the MLP)

    With depth=1 it is the Elman cell. Parameters: weight_ih (H, I), weight_hh (H, H), bias_1 (H),
    then weight_l, bias_l (H, H), (H) for l = 2 .. depth, and weight_s (H, H) with the shortcut.
    Shapes: x_t (B, I); sequences (T, B, I) -> (T, B, H).

    >>> import minigrad as mg, rnn
    >>> cell = rnn.DeepTransitionCell(3, 4, depth=3, shortcut=True, rng=0)
    >>> rnn.unroll(cell, mg.randn(5, 2, 3))[0].shape
    (5, 2, 4)
    """

    def __init__(self, input_size: int, hidden_size: int, depth: int = 2,
                 nonlinearity: str = "tanh", shortcut: bool = False, *, rng=None, dtype=None,
                 device=None):
        super().__init__(input_size, hidden_size, rng=rng, dtype=dtype, device=device)
        if not isinstance(depth, int) or depth < 1:
            raise ValueError(f"DeepTransitionCell: depth must be an int >= 1, got {depth!r}")
        if nonlinearity not in ("tanh", "relu"):
            raise ValueError(f"DeepTransitionCell: nonlinearity must be 'tanh' or 'relu', got "
                             f"{nonlinearity!r}")
        if shortcut and depth < 2:
            raise ValueError("DeepTransitionCell: shortcut=True needs depth >= 2 (with depth 1 "
                             "the transition is already shallow)")
        self.depth, self.nonlinearity, self.shortcut = depth, nonlinearity, bool(shortcut)
        H = hidden_size
        self.weight_ih = self.parameter(H, input_size)
        self.weight_hh = self.parameter(H, H)
        self.bias_1 = self.parameter(H)
        for level in range(2, depth + 1):
            setattr(self, f"weight_{level}", self.parameter(H, H))
            setattr(self, f"bias_{level}", self.parameter(H))
        if shortcut:
            self.weight_s = self.parameter(H, H)

    def forward(self, x_t, h):
        act = mg.tanh if self.nonlinearity == "tanh" else mg.relu
        a = x_t @ self.weight_ih.T + h @ self.weight_hh.T + self.bias_1
        for level in range(2, self.depth + 1):
            a = act(a) @ getattr(self, f"weight_{level}").T + getattr(self, f"bias_{level}")
        if self.shortcut:
            a = a + h @ self.weight_s.T
        h = act(a)
        return h, h


class _Recurrent(Stacked):
    """`num_layers` cells of one kind, optionally bidirectional, as a Stacked."""

    cell_type = None

    def __init__(self, input_size: int, hidden_size: int, num_layers: int = 1,
                 bidirectional: bool = False, dropout: float = 0.0, batch_first: bool = False,
                 *, rng=None, dtype=None, device=None, **cell_kwargs):
        name = type(self).__name__
        if not isinstance(num_layers, int) or num_layers < 1:
            raise ValueError(f"{name}: num_layers must be an int >= 1, got {num_layers!r}")
        gen = generator(rng)  # one generator, so layers and directions get different weights

        def make(n_in):
            return self.cell_type(n_in, hidden_size, rng=gen, dtype=dtype, device=device,
                                  **cell_kwargs)

        layers, n_in = [], input_size
        for _ in range(num_layers):
            layers.append(Bidirectional(make(n_in), make(n_in)) if bidirectional else make(n_in))
            n_in = hidden_size * (2 if bidirectional else 1)
        super().__init__(layers, dropout=dropout)
        self.input_size, self.batch_first = input_size, bool(batch_first)
        self.bidirectional = bool(bidirectional)

    def forward(self, inputs, state=None, lengths=None, checkpoint_every=None, *,
                context=None) -> tuple:
        """inputs (T, B, I) ((B, T, I) with batch_first) -> (outputs (T, B, H*dirs), states).

        `states` holds each layer's final state (a `(forward, backward)` pair when bidirectional).
        `context` is passed on as in `Stacked` (the built-in cells take none).
        """
        if self.batch_first:
            check_input(self, inputs, ndim=3)
            inputs = mg.swapaxes(inputs, 0, 1)
        out, states = super().forward(inputs, state, lengths, checkpoint_every, context=context)
        return (mg.swapaxes(out, 0, 1) if self.batch_first else out), states

    def extra_repr(self):
        return (f"{self.input_size}, {self.hidden_size // (2 if self.bidirectional else 1)}, "
                f"num_layers={self.num_layers}, bidirectional={self.bidirectional}")


class RNN(_Recurrent):
    """Stacked Elman layers: `RNN(input_size, hidden_size, num_layers=1, bidirectional=False,
    dropout=0.0, batch_first=False, nonlinearity="tanh", fused=True, rng=, dtype=, device=)`.

    `out, states = rnn_layer(inputs (T, B, I), lengths=...)`, out (T, B, H * directions).

    >>> import minigrad as mg, rnn
    >>> out, states = rnn.RNN(3, 4, bidirectional=True, rng=0)(mg.randn(5, 2, 3))
    >>> out.shape
    (5, 2, 8)
    """

    cell_type = RNNCell


class LSTM(_Recurrent):
    """Stacked LSTM layers: `LSTM(input_size, hidden_size, num_layers=1, bidirectional=False,
    dropout=0.0, batch_first=False, **LSTMCell kwargs)`; each layer's state is (h, c).

    >>> import minigrad as mg, rnn
    >>> out, [(h, c)] = rnn.LSTM(3, 4, rng=0)(mg.randn(5, 2, 3))
    >>> out.shape, c.shape
    ((5, 2, 4), (2, 4))
    """

    cell_type = LSTMCell


class GRU(_Recurrent):
    """Stacked GRU layers: `GRU(input_size, hidden_size, num_layers=1, bidirectional=False,
    dropout=0.0, batch_first=False, reset_after=False, fused=True, rng=, dtype=, device=)`.

    >>> import minigrad as mg, rnn
    >>> out, states = rnn.GRU(3, 4, num_layers=2, batch_first=True, rng=0)(mg.randn(2, 5, 3))
    >>> out.shape
    (2, 5, 4)
    """

    cell_type = GRUCell
