"""Encoder-decoder models: a bidirectional reader, an attentive writer (Bahdanau et al. 2014,
Luong et al. 2015), and the plain Sutskever et al. (2014) encoder-decoder as its ablation.

A decoder is an ordinary cell that also reads a fixed *context*, the encoded source:
`forward(x_t, state, context) -> (output, new_state)`. The context is a `SourceContext` of
batch-major Tensors (keys, values, their projection for the attention score computed once per
source, and the source mask), so every leaf of a decoding state has the batch on axis 0 and a beam
search may reorder rows of all of them alike.

`run_decoder` is the time loop of such a cell that also returns each step's attention weights:
target lengths, and checkpointed segments that take the context as an explicit input (so the
encoder's outputs get their gradient through it). A decoder whose state leaves the weights out
(`keep_weights=False`) is a cell of the ordinary contract and runs through `rnn.unroll(...,
context=)` and `rnn.Stacked` as well.
"""
from __future__ import annotations

from typing import NamedTuple

import numpy as np

import minigrad as mg
from minigrad import backend
from minigrad.nn import Embedding, Linear, Module
from rnn.attention import Attention, source_mask
from rnn import state as st
from rnn.cell import Cell
from rnn.unroll import unroll

__all__ = ["AttentionDecoderCell", "Seq2Seq", "Seq2SeqState", "SourceContext", "StepStack",
           "run_decoder"]


class SourceContext(NamedTuple):
    """The encoded source a decoder reads at every step (all batch-major):
    keys (B, S, Dk), values (B, S, Dv), projected = `attention.precompute(keys)`, mask (B, S) bool
    (True inside each source)."""
    keys: mg.Tensor
    values: mg.Tensor
    projected: mg.Tensor
    mask: mg.Tensor


class Seq2SeqState(NamedTuple):
    """What `Seq2Seq.step` carries from one token to the next: the decoder cell's state and the
    source context (an empty tuple for the plain encoder-decoder: every part of a state is a
    structure of Tensors)."""
    decoder: object
    context: SourceContext | tuple


def leaves(state) -> list:
    """The Tensors of a state or context, in `rnn.state.flatten` order."""
    return st.flatten(state)[0]


def rebuild(like, tensors):
    """`like`'s structure around `tensors` (in `leaves` order)."""
    return st.unflatten(st.flatten(like)[1], tensors)


def split_like(flat: mg.Tensor, like):
    """flat (B, sum of the widths of like's tensors) cut into a state of `like`'s structure: how
    a bridge's one output becomes a decoder's first state (an LSTM's `(h, c)`, a stack's...)."""
    sizes = np.cumsum([t.shape[1] for t in leaves(like)])[:-1].tolist()
    return rebuild(like, mg.split(flat, sizes, axis=1) if sizes else (flat,))


class StepStack(Cell):
    """Cells applied one above another *within* each time step: a deep decoder whose top output
    can be fed back to its bottom at the next step (input feeding), which `rnn.Stacked` (one whole
    layer over all steps, then the next) cannot do.

        h^1 = cells[0](x_t, s^1), h^l = cells[l-1](h^(l-1), s^l);  output h^L, state (s^1..s^L)

    >>> import minigrad as mg, rnn
    >>> deep = rnn.StepStack([rnn.LSTMCell(3, 4, rng=0), rnn.GRUCell(4, 5, rng=1)])
    >>> out, state = deep(mg.randn(2, 3), deep.initial_state(2))
    >>> out.shape, len(state)
    ((2, 5), 2)
    """

    def __init__(self, cells):
        cells = list(cells)
        if not cells:
            raise ValueError("StepStack: no cells given")
        for i, (below, above) in enumerate(zip(cells, cells[1:])):
            if above.in_features is not None and below.hidden_size != above.in_features:
                raise ValueError(f"StepStack: cell {i} outputs {below.hidden_size} features, "
                                 f"cell {i + 1} expects {above.in_features}")
        super().__init__(cells[0].in_features, cells[-1].hidden_size)
        self.num_cells = len(cells)
        for i, c in enumerate(cells):
            setattr(self, f"cell{i}", c)

    @property
    def cells(self) -> list:
        return [getattr(self, f"cell{i}") for i in range(self.num_cells)]

    def initial_state(self, batch_size: int):
        return tuple(c.initial_state(batch_size) for c in self.cells)

    def forward(self, x_t, state):
        new = []
        for c, s in zip(self.cells, state):
            x_t, s = c(x_t, s)
            new.append(s)
        return x_t, tuple(new)


class AttentionDecoderCell(Cell):
    """A decoder step with attention (Luong et al. 2015's "global attention"):

        h_t, s_t = cell([x_t; o_{t-1}] if input_feeding else x_t, s_{t-1})
        c_t, a_t = attention(h_t, keys, values, mask, previous=a_{t-1})
        o_t      = tanh(W_o [c_t; h_t] + b_o)                      (the output, (B, H_o))

    State: `(s_t, o_t, a_t)` with s_t the inner cell's state (any nesting), o_t (B, H_o) the
    attentional vector fed back when `input_feeding`, a_t (B, S) the weights (read by
    location-aware scores and kept for plots). The context is a `SourceContext` (see `context`).
    Run it with `run_decoder`, which also returns every step's weights.

    `keep_weights=False` leaves a_t out: the state `(s_t, o_t)` no longer depends on the source
    length, so `initial_state(B)` needs no context and the cell runs under `rnn.unroll(...,
    context=)`, in `rnn.Stacked` layers, checkpointed and with every tool of the cell contract
    (which builds `initial_state(B)` before it sees a context). Location-aware scores need the
    weights kept.

    The inner `cell` takes x_t (B, I) plus, with input feeding, o_{t-1}: its in_features must be
    I + H_o. `output_size` H_o defaults to the inner cell's hidden size.

    >>> import minigrad as mg, rnn
    >>> att = rnn.AdditiveAttention(8, 6, 8, rng=0)
    >>> dec = rnn.AttentionDecoderCell(rnn.GRUCell(3 + 8, 8, rng=0), att, rng=0)
    >>> ctx = dec.context(mg.randn(5, 2, 6), lengths=[5, 2])       # encoder outputs (S, B, 6)
    >>> out, state = dec(mg.randn(2, 3), dec.initial_state(2, ctx), ctx)
    >>> out.shape, state[2].shape
    ((2, 8), (2, 5))
    """

    def __init__(self, cell: Cell, attention: Attention, input_feeding: bool = True,
                 output_size: int | None = None, keep_weights: bool = True, *, rng=None,
                 dtype=None, device=None):
        if not isinstance(attention, Attention):
            raise TypeError(f"AttentionDecoderCell: attention must be an rnn.Attention, got "
                            f"{type(attention).__name__}")
        if attention.uses_previous and not keep_weights:
            raise ValueError(f"AttentionDecoderCell: {type(attention).__name__} reads the "
                             "previous weights: keep_weights must be True")
        H = cell.hidden_size
        H_o = H if output_size is None else int(output_size)
        if attention.query_size != H:
            raise ValueError(f"AttentionDecoderCell: the attention's query_size "
                             f"{attention.query_size} must be the cell's hidden size {H}")
        n_in = cell.in_features - (H_o if input_feeding else 0)
        if n_in <= 0:
            raise ValueError(f"AttentionDecoderCell: with input_feeding the cell must take the "
                             f"input plus the {H_o} attentional features; it takes "
                             f"{cell.in_features}")
        super().__init__(n_in, H_o, rng=rng, dtype=dtype, device=device)
        self.cell, self.attention = cell, attention
        self.input_feeding, self.keep_weights = bool(input_feeding), bool(keep_weights)
        # keys and values are both the encoder outputs: the context has key_size features
        self.output_proj = Linear(H + attention.key_size, H_o, rng=self._rng, dtype=dtype,
                                  device=device)

    def context(self, encoder_outputs: mg.Tensor, lengths=None) -> SourceContext:
        """The context for a batch of sources: encoder outputs (S, B, D) time-major (as `unroll`
        gives them) and their lengths (B,); the keys' projection is computed here, once."""
        if encoder_outputs.ndim != 3:
            raise ValueError(f"AttentionDecoderCell.context: encoder outputs must be (S, B, D), "
                             f"got {encoder_outputs.shape}")
        S, B = encoder_outputs.shape[:2]
        keys = mg.swapaxes(encoder_outputs, 0, 1)
        lengths = np.full(B, S) if lengths is None else lengths
        mask = mg.tensor(source_mask(lengths, S), device=encoder_outputs.device)
        return SourceContext(keys, keys, self.attention.precompute(keys), mask)

    def initial_state(self, batch_size: int, context: SourceContext | None = None):
        first = (self.cell.initial_state(batch_size), self.zeros(batch_size))
        if not self.keep_weights:
            return first
        if context is None:
            raise ValueError("AttentionDecoderCell: initial_state needs the context (its "
                             "attention weights have one entry per source position; "
                             "keep_weights=False drops them)")
        dtype, device = self._like()
        return first + (mg.zeros(batch_size, context.keys.shape[1], dtype=dtype, device=device),)

    def forward(self, x_t, state, context):
        inner, feed = state[0], state[1]
        previous = state[2] if self.keep_weights else None
        x = mg.concat([x_t, feed], axis=-1) if self.input_feeding else x_t
        h, inner = self.cell(x, inner)
        prev = previous if self.attention.uses_previous else None
        c, a = self.attention(h, context.keys, context.values, context.mask,
                              projected=context.projected, previous=prev)
        out = mg.tanh(self.output_proj(mg.concat([c, h], axis=-1)))
        return out, ((inner, out, a) if self.keep_weights else (inner, out))

    def extra_repr(self) -> str:
        return f"input_feeding={self.input_feeding}, keep_weights={self.keep_weights}"


def keeps_weights(cell) -> bool:
    """Whether `cell` is an `AttentionDecoderCell` whose state holds the weights."""
    return isinstance(cell, AttentionDecoderCell) and cell.keep_weights


def _time_steps(x):
    """x (T, B, I) as T steps (B, I), through one split."""
    return [mg.squeeze(s, 0) for s in mg.split(x, x.shape[0], axis=0)]


def _step_mask(lengths, t, device):
    if lengths is None or lengths.min() > t:
        return None
    return backend.to_device((lengths > t)[:, None], device)


def _masked(m, new, old):
    return st.map(lambda a, b: mg.where(m, a, b), new, old)


def _run_steps(cell, xs, state, context, lengths, t0, device):
    """Steps t0 .. t0 + len(xs) - 1: (outputs list, weights list or None, final state)."""
    outs, weights = [], []
    for k, x in enumerate(xs):
        t = t0 + k
        with mg.tag_scope("time", t):
            out, new = (cell(x, state, context) if context is not None else cell(x, state))
        m = _step_mask(lengths, t, device)
        if m is not None:
            out = mg.where(m, out, 0.0)
            new = _masked(m, new, state)
        if keeps_weights(cell):   # its state holds the step's weights
            a = new[2]
            weights.append(a if m is None else mg.where(m, a, 0.0))
        outs.append(out)
        state = new
    return outs, (weights or None), state


class _Segment:
    """Steps t0..t1 of the decoder as a function of (x_seg, *context leaves, *state leaves), so
    a checkpoint node receives the context as an input."""

    def __init__(self, cell, lengths, t0, state_like, context_like):
        self.cell, self.lengths, self.t0 = cell, lengths, t0
        self.state_like, self.context_like = state_like, context_like

    def __call__(self, x, *tensors):
        n = 0 if self.context_like is None else len(leaves(self.context_like))
        context = None if n == 0 else rebuild(self.context_like, tensors[:n])
        state = rebuild(self.state_like, tensors[n:])
        outs, weights, state = _run_steps(self.cell, _time_steps(x), state, context, self.lengths,
                                          self.t0, x.device)
        extra = [] if weights is None else [mg.stack(weights, axis=0)]
        return (mg.stack(outs, axis=0), *extra, *leaves(state))


def run_decoder(cell, inputs: mg.Tensor, state, context: SourceContext | None = None,
                lengths=None, *, checkpoint_every: int | None = None) -> tuple:
    """Run a decoder cell over inputs (T, B, I) from `state`, reading `context` at every step.

    `cell` is called `cell(x_t, state, context)` (`cell(x_t, state)` when context is None). A
    cell whose state does not hold the weights runs through `rnn.unroll(..., context=)`; an
    `AttentionDecoderCell` that keeps them runs through the loop here, which also returns every
    step's weights as a Tensor with their gradient (`rnn.unroll(dec, x, context=ctx)` runs it
    too, with the same outputs and final state, but returns no per-step weights).
    Returns `(outputs (T, B, H), final_state, weights)`: weights (T, B, S) are the attention
    weights of every step of an `AttentionDecoderCell` keeping them (else None). With `lengths`
    (B,) a sequence stops after its own length: outputs and weights past it are 0 and its state
    is kept. `checkpoint_every` K keeps the state every K steps only and recomputes the steps
    between in backward; the context is an input of each segment, so its gradient (to the
    encoder) is the plain run's.
    """
    if not keeps_weights(cell):   # a state of the ordinary contract: the shared step loop
        extra = {} if context is None else {"context": context}
        outputs, state = unroll(cell, inputs, state, lengths, checkpoint_every=checkpoint_every,
                                **extra)
        return outputs, state, None
    T, B = inputs.shape[0], inputs.shape[1]
    lengths = None if lengths is None else np.asarray(lengths, dtype=np.int64)
    if lengths is not None and (lengths.shape != (B,) or lengths.min() < 1 or lengths.max() > T):
        raise ValueError(f"run_decoder: lengths must be (B,) = ({B},) ints in [1, T={T}], got "
                         f"{lengths.tolist()}")
    K = T if checkpoint_every is None else int(checkpoint_every)
    if K < 1:
        raise ValueError(f"run_decoder: checkpoint_every must be a positive int, got {K}")
    if K >= T or not mg.is_grad_enabled():
        outs, weights, state = _run_steps(cell, _time_steps(inputs), state, context,
                                          lengths, 0, inputs.device)
        return (mg.stack(outs, axis=0), state,
                None if weights is None else mg.stack(weights, axis=0))
    ctx_leaves = [] if context is None else leaves(context)
    outs, weights = [], []
    for t0 in range(0, T, K):
        seg = _Segment(cell, lengths, t0, state, context)
        args = (inputs[t0:t0 + K], *ctx_leaves, *leaves(state))
        res = seg(*args) if t0 + K >= T else mg.checkpoint(seg, *args)
        keeps = keeps_weights(cell)
        outs.append(res[0])
        if keeps:
            weights.append(res[1])
        state = rebuild(state, res[1 + keeps:])
    return (mg.concat(outs, axis=0), state, mg.concat(weights, axis=0) if weights else None)


class Seq2Seq(Module):
    """An encoder-decoder over token ids: embeddings, an encoder, a bridge, a decoder, a softmax.

        e = encoder(embed_src(src), src_lengths)          outputs (S, B, D_e), final states
        s_0 = tanh(W_b [final states of the last encoder layer] + b_b)   (the bridge)
        o_t, s_t = decoder(embed_tgt(y_{t-1}), s_{t-1}, context(e))
        log p(y_t | y_<t, src) = log_softmax(W_y o_t + b_y)

    `encoder` is any module called `encoder(x (S, B, E), lengths=...) -> (outputs, states)` whose
    `states` is a list of each layer's final state (`rnn.GRU(..., bidirectional=True)`,
    `rnn.Stacked([rnn.Bidirectional(...), ...])`). `decoder` is an `AttentionDecoderCell`
    (attention over the encoder outputs) or a plain cell: then the model is Sutskever et al.'s
    encoder-decoder that sees the source only through the bridge (the attention ablation).
    `bridge=False` starts the decoder from zeros.

    Token ids are time-major (S, B) / (T, B) int arrays. For decoding, `start(src, lengths)` gives
    the first state and `step(tokens (N,), state) -> (log_probs (N, V), state, weights (N, S))`
    one more token: the protocol that `rnn.decoding` (greedy, sampling, beam search) drives.

    >>> import numpy as np, minigrad as mg, rnn
    >>> enc = rnn.GRU(4, 5, bidirectional=True, rng=0)
    >>> dec = rnn.AttentionDecoderCell(rnn.GRUCell(4 + 6, 6, rng=1),
    ...                                rnn.AdditiveAttention(6, 10, 6, rng=2), rng=3)
    >>> model = rnn.Seq2Seq(7, 9, 4, enc, dec, rng=4)
    >>> src, tgt = np.array([[1, 2], [3, 0]]), np.array([[1, 1], [4, 5], [2, 0]])
    >>> loss = model.loss(src, [2, 1], tgt[:-1], tgt[1:], [2, 1])
    >>> loss.backward()
    >>> log_p, state, weights = model.step(np.array([1, 1]), model.start(src, [2, 1]))
    >>> log_p.shape, weights.shape
    ((2, 9), (2, 2))
    """

    def __init__(self, src_vocab: int, tgt_vocab: int, embed_size: int, encoder: Module,
                 decoder: Cell, *, bridge: bool = True, rng=None, dtype=None, device=None):
        super().__init__()
        gen = (rng if isinstance(rng, np.random.Generator) else
               mg.random.default_generator() if rng is None else np.random.default_rng(rng))
        if decoder.in_features is not None and decoder.in_features != embed_size:
            raise ValueError(f"Seq2Seq: the decoder takes {decoder.in_features} input features, "
                             f"the target embeddings have {embed_size}")
        self.src_embed = Embedding(src_vocab, embed_size, rng=gen, dtype=dtype, device=device)
        self.tgt_embed = Embedding(tgt_vocab, embed_size, rng=gen, dtype=dtype, device=device)
        self.encoder, self.decoder = encoder, decoder
        self.attentive = isinstance(decoder, AttentionDecoderCell)
        self.inner = decoder.cell if self.attentive else decoder
        self.out_proj = Linear(decoder.hidden_size, tgt_vocab, rng=gen, dtype=dtype,
                               device=device)
        self.use_bridge = bool(bridge)
        if bridge:
            enc_size = sum(t.shape[1] for t in leaves(self._last_state(encoder, embed_size)))
            dec_size = sum(t.shape[1] for t in leaves(self.inner.initial_state(1)))
            self.bridge = Linear(enc_size, dec_size, rng=gen, dtype=dtype, device=device)

    @staticmethod
    def _last_state(encoder, embed_size):
        with mg.no_grad():  # the sizes of the encoder's final state, from a one-step probe
            p = next(iter(encoder.parameters()))
            _, states = encoder(mg.zeros(1, 1, embed_size, dtype=p.dtype, device=p.device))
        return states[-1]

    def encode(self, src, src_lengths) -> tuple:
        """(encoder outputs (S, B, D_e), the decoder's first `Seq2SeqState`)."""
        src = np.asarray(src)
        if src.ndim != 2 or src.dtype.kind not in "iu":
            raise ValueError(f"Seq2Seq: src must be int token ids (S, B), got {src.dtype} "
                             f"{src.shape}")
        lengths = np.asarray(src_lengths, dtype=np.int64)
        outputs, states = self.encoder(self.src_embed(src), lengths=lengths)
        B = src.shape[1]
        if self.use_bridge:
            final = mg.concat(leaves(states[-1]), axis=-1)
            inner = split_like(mg.tanh(self.bridge(final)), self.inner.initial_state(B))
        else:
            inner = self.inner.initial_state(B)
        if not self.attentive:
            return outputs, Seq2SeqState(inner, ())
        context = self.decoder.context(outputs, lengths)
        first = self.decoder.initial_state(B, context)
        return outputs, Seq2SeqState((inner,) + tuple(first[1:]), context)

    def forward(self, src, src_lengths, tgt_in, tgt_lengths=None, *,
                checkpoint_every: int | None = None) -> tuple:
        """Teacher forcing: (log_probs (T, B, V), weights (T, B, S) or None) for inputs
        tgt_in (T, B) (each target shifted right, starting with the start token)."""
        _, start = self.encode(src, src_lengths)
        tgt_in = np.asarray(tgt_in)
        outputs, _, weights = run_decoder(self.decoder, self.tgt_embed(tgt_in), start.decoder,
                                          start.context if self.attentive else None, tgt_lengths,
                                          checkpoint_every=checkpoint_every)
        return mg.log_softmax(self.out_proj(outputs), axis=-1), weights

    def loss(self, src, src_lengths, tgt_in, tgt_out, tgt_lengths, *, reduction: str = "mean",
             checkpoint_every: int | None = None) -> mg.Tensor:
        """Cross-entropy of tgt_out (T, B) given tgt_in (T, B), over the tgt_lengths (B,) real
        tokens (`rnn.sequence_cross_entropy`; "mean" per token, or "sum")."""
        from rnn.losses import sequence_cross_entropy
        log_probs, _ = self(src, src_lengths, tgt_in, tgt_lengths,
                            checkpoint_every=checkpoint_every)
        return sequence_cross_entropy(log_probs, np.asarray(tgt_out), tgt_lengths,
                                      reduction=reduction)

    def start(self, src, src_lengths) -> Seq2SeqState:
        """The state before the first target token."""
        return self.encode(src, src_lengths)[1]

    def step(self, tokens, state: Seq2SeqState) -> tuple:
        """One decoding step (the protocol of `rnn.decoding`): tokens (N,) ints ->
        (log_probs (N, V), next state, attention weights (N, S) or None without attention)."""
        x = self.tgt_embed(np.asarray(tokens))
        if not self.attentive:
            out, dec = self.decoder(x, state.decoder)
            return mg.log_softmax(self.out_proj(out), axis=-1), Seq2SeqState(dec, ()), None
        out, dec = self.decoder(x, state.decoder, state.context)
        return (mg.log_softmax(self.out_proj(out), axis=-1), Seq2SeqState(dec, state.context),
                dec[2] if self.decoder.keep_weights else None)
