"""End-to-end memory networks (Sukhbaatar, Szlam, Weston & Fergus 2015): several hops of soft
attention over a story's sentences, answering a question with one word."""
from __future__ import annotations

import numpy as np

import minigrad as mg
from minigrad import backend
from minigrad.nn import Module, Parameter
from rnn.cell import generator


def position_encoding(sentence_length: int, embed_size: int) -> np.ndarray:
    """The paper's weights l (J, d): l[j, k] = (1 - j/J) - (k/d) (1 - 2 j/J), j and k from 1.

    A sentence's memory is sum_j l[j] * A x_j (elementwise), so word order counts.
    """
    J, d = sentence_length, embed_size
    j = np.arange(1, J + 1)[:, None]
    k = np.arange(1, d + 1)[None, :]
    return (1 - j / J) - (k / d) * (1 - 2 * j / J)


class MemN2N(Module):
    """End-to-end memory network over `memory_size` sentences of up to `sentence_length` words.

    Inputs: sentences (B, S, J) and question (B, J), integer word ids with 0 the padding word
    (its embedding is never used); the sentences are right-aligned, the last one at slot S - 1
    (`rnn.memory.tasks.encode_stories` writes them so), and all-padding slots are never attended.

    Hop k (k = 1..hops), with u_1 = sum_j l_j B q_j the question's embedding:

        m_i = sum_j l_j A_k x_ij + TA_k[i],   c_i = sum_j l_j C_k x_ij + TC_k[i]
        p   = softmax_i(u_k . m_i)            (no softmax while `linear_start` is on)
        o_k = sum_i p_i c_i,   u_{k+1} = u_k + o_k   (layer-wise: H u_k + o_k)
        logits = W u_{hops+1}

    l is `position_encoding` (all ones without it), TA and TC the temporal encoding (rows per
    memory slot counted from the newest; off: zeros). Tying: "adjacent" A_{k+1} = C_k, B = A_1,
    W = C_hops^T (also for TA, TC); "layerwise" one A, one C for every hop, and B, W, H of their
    own. Embeddings start normal(0, 0.1), as in the paper.

    `forward` returns (logits (B, V), attention (hops, B, S)): what each hop read.

    >>> import numpy as np, rnn
    >>> net = rnn.memory.MemN2N(20, 8, memory_size=5, sentence_length=4, hops=3, rng=0)
    >>> ids = np.random.default_rng(0).integers(1, 20, size=(2, 5, 4))
    >>> logits, attention = net(ids, ids[:, -1])
    >>> logits.shape, attention.shape
    ((2, 20), (3, 2, 5))
    """

    def __init__(self, vocab_size: int, embed_size: int, *, memory_size: int,
                 sentence_length: int, hops: int = 3, tying: str = "adjacent",
                 position: bool = True, temporal: bool = True, rng=None, dtype=None,
                 device=None):
        super().__init__()
        for name, n in (("vocab_size", vocab_size), ("embed_size", embed_size),
                        ("memory_size", memory_size), ("sentence_length", sentence_length),
                        ("hops", hops)):
            if not isinstance(n, (int, np.integer)) or n < 1:
                raise ValueError(f"MemN2N: {name} must be a positive int, got {n!r}")
        if tying not in ("adjacent", "layerwise"):
            raise ValueError(f"MemN2N: tying must be 'adjacent' or 'layerwise', got {tying!r}")
        rng = generator(rng)
        self.vocab_size, self.embed_size = vocab_size, embed_size
        self.hops, self.tying = hops, tying
        self.memory_size, self.sentence_length = memory_size, sentence_length
        self.position, self.temporal = position, temporal
        self.linear_start = False
        float_type = np.dtype(dtype) if dtype is not None else mg.get_default_dtype()

        def normal(*shape):
            return Parameter((0.1 * rng.standard_normal(shape)).astype(float_type),
                             device=device)

        V, d, S = vocab_size, embed_size, memory_size
        # adjacent: hops + 1 embeddings E_0..E_hops, A_k = E_{k-1}, C_k = E_k, B = E_0, W = E_hops^T
        n = hops + 1 if tying == "adjacent" else 2
        self.embeddings = mg.nn.ParameterList([normal(V, d) for _ in range(n)])
        self.temporals = mg.nn.ParameterList([normal(S, d) for _ in range(n)]) if temporal \
            else None
        if tying == "layerwise":
            self.question_embedding = normal(V, d)
            self.answer_weight = normal(V, d)
            self.hop_map = normal(d, d)

    def matrices(self, k: int) -> tuple:
        """(A, TA, C, TC) of hop k (0-based); TA, TC None without temporal encoding."""
        a, c = (k, k + 1) if self.tying == "adjacent" else (0, 1)
        t = self.temporals
        return (self.embeddings[a], t[a] if t is not None else None,
                self.embeddings[c], t[c] if t is not None else None)

    def encode(self, table, ids, weights):
        """sum_j l_j * table[ids_j] over the words of each sentence: ids (..., J) -> (..., d).
        `weights` (..., J, d) is l times the not-padding mask."""
        return mg.sum(mg.embedding(table, ids) * weights, axis=-2)

    def forward(self, sentences, question) -> tuple:
        sentences = np.asarray(backend.to_host(getattr(sentences, "data", sentences)))
        question = np.asarray(backend.to_host(getattr(question, "data", question)))
        B, S, J = sentences.shape
        if (S, J) != (self.memory_size, self.sentence_length) or question.shape != (B, J):
            raise ValueError(f"MemN2N: sentences (B, {self.memory_size}, "
                             f"{self.sentence_length}) and question (B, {self.sentence_length}) "
                             f"expected, got {sentences.shape} and {question.shape}")
        ref = self.embeddings[0]
        l = position_encoding(J, self.embed_size) if self.position else \
            np.ones((J, self.embed_size))

        def word_weights(ids):  # l on real words, 0 on padding, on the model's device
            w = (ids != 0)[..., None] * l
            return mg.tensor(w.astype(ref.dtype), device=ref.device)

        s_w, q_w = word_weights(sentences), word_weights(question)
        empty = mg.tensor(~(sentences != 0).any(axis=-1), device=ref.device)   # (B, S)
        u = self.encode(self.embeddings[0] if self.tying == "adjacent" else
                        self.question_embedding, question, q_w)
        attention = []
        for k in range(self.hops):
            A, TA, C, TC = self.matrices(k)
            m = self.encode(A, sentences, s_w)
            c = self.encode(C, sentences, s_w)
            if TA is not None:  # TA[i] belongs to slot i counted from the newest (slot S - 1)
                m = m + mg.flip(TA, axis=0)
                c = c + mg.flip(TC, axis=0)
            scores = mg.sum(m * mg.expand_dims(u, 1), axis=-1)                    # (B, S)
            if self.linear_start:
                p = mg.where(empty, 0.0, scores)
            else:
                p = mg.softmax(mg.where(empty, -1e9, scores), axis=-1)
            attention.append(p)
            o = mg.sum(mg.expand_dims(p, -1) * c, axis=1)                         # (B, d)
            u = (u @ self.hop_map if self.tying == "layerwise" else u) + o
        W = self.embeddings[self.hops] if self.tying == "adjacent" else self.answer_weight
        return u @ W.T, mg.stack(attention, axis=0)

    def extra_repr(self) -> str:
        return (f"{self.vocab_size}, {self.embed_size}, memory_size={self.memory_size}, "
                f"sentence_length={self.sentence_length}, hops={self.hops}, "
                f"tying={self.tying!r}, position={self.position}, temporal={self.temporal}")
