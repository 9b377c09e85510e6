"""The hierarchical recurrent encoder-decoder (HRED, Serban et al. 2015, after Sordoni et al.
2015): a dialogue is a sequence of utterances, each a sequence of tokens, so it gets two levels of
recurrence.

    u_n          = final state of the utterance encoder over the tokens of turn n
    c_n, z_n     = context_cell(u_n, z_(n-1))                  over the turns n = 1 .. N
    s_0          = tanh(W_b c_N + b_b)                          (the bridge)
    o_t, s_t     = decoder([embed(y_(t-1)); c_N], s_(t-1))     the reply, conditioned on c_N
    log p(y_t)   = log_softmax(W_y o_t + b_y)

The decoder reads the dialogue's context vector c_N at every step (concatenated to its input), so
a reply can depend on a turn long before the last one.
"""
from __future__ import annotations

import numpy as np

import minigrad as mg
from minigrad import backend
from minigrad.nn import Embedding, Linear, Module
from rnn.cell import Cell
from rnn.losses import sequence_cross_entropy
from rnn.seq2seq import leaves, split_like
from rnn.unroll import unroll

__all__ = ["HRED"]


class HRED(Module):
    """Hierarchical encoder-decoder over token ids (one vocabulary for turns and replies).

    `utterance_encoder`: a module `encoder(x (L, M, E), lengths=...) -> (outputs, states)` with
    `states` a list of each layer's final state (`rnn.GRU(E, H, bidirectional=True)`); the
    utterance vector u_n is the last layer's final state tensors, concatenated.
    `context_cell`: a cell reading u_n (its in_features); its output is the context c_n.
    `decoder`: a cell reading `[embed(y); c_N]` (in_features = embed_size + context size).

    Dialogues are time-major: `turns` (N, L, B) token ids (turn n, token l, dialogue b),
    `turn_lengths` (N, B) tokens per turn (anything >= 1 for turns past a dialogue's end),
    `n_turns` (B,) turns per dialogue.

    >>> import numpy as np, rnn
    >>> hred = rnn.HRED(10, 4, rnn.GRU(4, 5, rng=0), rnn.GRUCell(5, 6, rng=1),
    ...                 rnn.GRUCell(4 + 6, 7, rng=2), rng=3)
    >>> turns = np.ones((3, 4, 2), dtype=np.int64)                # 3 turns of <= 4 tokens, B = 2
    >>> loss = hred.loss(turns, np.full((3, 2), 4), [3, 2], np.ones((5, 2), int),
    ...                  np.ones((5, 2), int), [5, 3])
    >>> loss.backward()
    >>> log_p, state = hred.step(np.array([0, 0]), hred.start(turns, np.full((3, 2), 4), [3, 2]))
    >>> log_p.shape
    (2, 10)
    """

    def __init__(self, vocab: int, embed_size: int, utterance_encoder: Module,
                 context_cell: Cell, decoder: Cell, *, rng=None, dtype=None, device=None):
        super().__init__()
        gen = (rng if isinstance(rng, np.random.Generator) else
               mg.random.default_generator() if rng is None else np.random.default_rng(rng))
        self.embed = Embedding(vocab, embed_size, rng=gen, dtype=dtype, device=device)
        self.utterance_encoder, self.context_cell, self.decoder = (utterance_encoder,
                                                                   context_cell, decoder)
        C = context_cell.hidden_size
        if decoder.in_features is not None and decoder.in_features != embed_size + C:
            raise ValueError(f"HRED: the decoder must take the embedding plus the context, "
                             f"{embed_size} + {C} = {embed_size + C} features; it takes "
                             f"{decoder.in_features}")
        dec_size = sum(t.shape[1] for t in leaves(decoder.initial_state(1)))
        self.bridge = Linear(C, dec_size, rng=gen, dtype=dtype, device=device)
        self.out_proj = Linear(decoder.hidden_size, vocab, rng=gen, dtype=dtype, device=device)

    def encode(self, turns, turn_lengths, n_turns) -> tuple:
        """(context c_N (B, C), the decoder's first state)."""
        turns = np.asarray(turns)
        if turns.ndim != 3 or turns.dtype.kind not in "iu":
            raise ValueError(f"HRED: turns must be int token ids (N, L, B), got {turns.dtype} "
                             f"{turns.shape}")
        N, L, B = turns.shape
        lengths = np.asarray(turn_lengths, dtype=np.int64)
        if lengths.shape != (N, B):
            raise ValueError(f"HRED: turn_lengths must be (N, B) = {(N, B)}, got "
                             f"{lengths.shape}")
        # every turn of every dialogue in one batch of N * B utterances: (L, N * B)
        flat = turns.transpose(1, 0, 2).reshape(L, N * B)
        _, states = self.utterance_encoder(self.embed(flat), lengths=lengths.reshape(N * B))
        u = mg.concat(leaves(states[-1]), axis=-1).reshape(N, B, -1)
        contexts, _ = unroll(self.context_cell, u, lengths=np.asarray(n_turns))
        # the context at each dialogue's own last turn
        last = np.asarray(n_turns, dtype=np.int64) - 1
        rows = backend.to_device(last * B + np.arange(B), contexts.device)
        c = mg.take(contexts.reshape(N * B, -1), rows, axis=0)
        return c, split_like(mg.tanh(self.bridge(c)), self.decoder.initial_state(B))

    def forward(self, turns, turn_lengths, n_turns, tgt_in, tgt_lengths=None) -> mg.Tensor:
        """Teacher forcing: log_probs (T, B, V) of the reply given tgt_in (T, B)."""
        c, state = self.encode(turns, turn_lengths, n_turns)
        x = self.embed(np.asarray(tgt_in))
        x = mg.concat([x, mg.broadcast_to(c, (x.shape[0],) + c.shape)], axis=-1)
        out, _ = unroll(self.decoder, x, state, tgt_lengths)
        return mg.log_softmax(self.out_proj(out), axis=-1)

    def loss(self, turns, turn_lengths, n_turns, tgt_in, tgt_out, tgt_lengths, *,
             reduction: str = "mean") -> mg.Tensor:
        """Cross-entropy of the reply tgt_out (T, B) over its tgt_lengths (B,) tokens."""
        log_probs = self(turns, turn_lengths, n_turns, tgt_in, tgt_lengths)
        return sequence_cross_entropy(log_probs, np.asarray(tgt_out), tgt_lengths,
                                      reduction=reduction)

    def start(self, turns, turn_lengths, n_turns) -> tuple:
        """The decoding state before the reply's first token: (decoder state, context c_N)."""
        c, state = self.encode(turns, turn_lengths, n_turns)
        return state, c

    def step(self, tokens, state) -> tuple:
        """One reply token: tokens (N,) -> (log_probs (N, V), next state)."""
        dec, c = state
        x = mg.concat([self.embed(np.asarray(tokens)), c], axis=-1)
        out, dec = self.decoder(x, dec)
        return mg.log_softmax(self.out_proj(out), axis=-1), (dec, c)
