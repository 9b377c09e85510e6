"""Generation: run a sequence model on its own outputs, one token at a time.

The model is any callable `model(tokens, state) -> (logits, new_state)` with tokens (T, B)
integers, logits (T, B, V) and `state=None` meaning "start from the initial state"; the state may
be any structure of Tensors (`rnn.state`). A model that reads a context (a decoder attending over
encoder outputs) is called `model(tokens, state, context)`. `generate` reads the prompt, then
repeatedly picks a token from the last logits and feeds it back as the next input (the lecture's
"take the output of the RNN and feed it back").
"""
from __future__ import annotations

import numpy as np

import minigrad as mg
from minigrad import checks
from rnn import state as st
from rnn.cell import generator
from rnn.decoding.protocol import host as decoding_host
from rnn.decoding.sampling import filter_log_probs

__all__ = ["generate", "pick"]

_STRATEGIES = ("greedy", "sample")


def pick(logits, strategy: str = "greedy", temperature: float = 1.0, top_k: int | None = None,
         rng=None, top_p: float | None = None) -> np.ndarray:
    """Choose one token per row of `logits` (B, V); returns host int64 indices (B,).

    greedy: argmax_v logits_v (temperature, top_k and top_p do not matter).
    sample: draw v with probability p_v = softmax(logits / temperature)_v, restricted to the
    `top_k` largest logits and then to the nucleus `top_p` (the fewest most probable tokens whose
    renormalised probability reaches top_p), as `rnn.decoding.filter_log_probs` does; the kept
    ones renormalised. Temperature < 1 sharpens the distribution, > 1 flattens it.

    >>> import numpy as np
    >>> pick(np.array([[0.0, 2.0, 1.0]]))
    array([1])
    >>> pick(np.array([[0.0, 2.0, 1.0]]), "sample", top_k=1, rng=0)
    array([1])
    """
    _check_options(strategy, temperature, top_k, top_p)
    a = decoding_host(logits)
    if a.ndim != 2:
        raise ValueError(f"pick: logits must be (B, V), got shape {a.shape}")
    B, V = a.shape
    if strategy == "greedy":
        return a.argmax(axis=1).astype(np.int64)
    if top_k is not None and top_k > V:
        raise ValueError(f"pick: top_k={top_k} exceeds the vocabulary size V={V}")
    z = filter_log_probs(a, temperature, top_k, top_p)
    z = z - z.max(axis=1, keepdims=True)  # exp never overflows; the max entry is exp(0) = 1
    cdf = np.cumsum(np.exp(z), axis=1)
    u = generator(rng).random(B)[:, None] * cdf[:, -1:]
    # inverse CDF: the first v with cdf_v > u (u < cdf[-1] so it always exists)
    return np.minimum((cdf <= u).sum(axis=1), V - 1).astype(np.int64)


def generate(model, start, steps: int, strategy: str = "greedy", temperature: float = 1.0,
             top_k: int | None = None, rng=None, state=None, context=None,
             top_p: float | None = None) -> np.ndarray:
    """Generate `steps` tokens after the prompt `start`, feeding each one back as the next input.

    model: `model(tokens (T, B) ints, state) -> (logits (T, B, V), new_state)`; state None means
    the initial state. start: the prompt, token ids of shape (T0,) (one sequence) or (T0, B).
    The prompt is read in one call; then for k = 1..steps, y_k = pick(logits of the last step)
    and `model(y_k[None], state)` gives the next logits. Runs under `no_grad` (no graph is kept).
    Returns host int64 token ids (steps,) or (steps, B), the prompt not included.
    `state`, if given, is the state before the prompt (to continue a stream). With `context`
    (a Tensor or structure of Tensors, e.g. encoder outputs), every call is
    `model(tokens, state, context)`. The model must return the pair (logits, new_state), the
    new state of one structure and shapes from call to call (checked: the error names the path).

    See `pick` for `strategy`, `temperature`, `top_k`, `top_p`; `rng` is a seed or a NumPy
    Generator. For beam search, n-best lists and per-example random streams, give the model a
    one-token step and use `rnn.decoding` (docs/decoding.md).

    >>> import numpy as np, minigrad as mg
    >>> def counter(tokens, state):             # logits that favour "previous token + 1 mod 5"
    ...     return mg.tensor(np.eye(5)[(np.asarray(tokens) + 1) % 5] * 10.0), state
    >>> generate(counter, [3], steps=4).tolist()
    [4, 0, 1, 2]
    """
    _check_options(strategy, temperature, top_k, top_p)
    if isinstance(steps, bool) or not isinstance(steps, (int, np.integer)) or steps < 0:
        raise ValueError(f"generate: steps must be an int >= 0, got {steps!r}")
    prompt = np.asarray(start.data if isinstance(start, mg.Tensor) else start)
    if prompt.ndim not in (1, 2) or prompt.shape[0] == 0 or prompt.size == 0:
        raise ValueError(f"generate: start must be non-empty token ids (T0,) or (T0, B), got "
                         f"shape {prompt.shape}")
    if prompt.dtype.kind not in "iu":
        raise TypeError(f"generate: start must hold integer token ids, got dtype {prompt.dtype}")
    single = prompt.ndim == 1
    tokens = prompt[:, None] if single else prompt
    gen = generator(rng)
    extra = () if context is None else (context,)
    if context is not None:
        st.flatten(context, "context")  # a structure of Tensors, or a StateError naming the path
    out = np.empty((steps, tokens.shape[1]), dtype=np.int64)
    with mg.no_grad():
        logits, state = _call(model, tokens.astype(np.int64), state, extra, 0)
        for k in range(steps):
            last = logits[-1]
            if last.ndim != 2:
                raise ValueError(f"generate: the model must return logits (T, B, V), got shape "
                                 f"{logits.shape}")
            out[k] = pick(last, strategy, temperature, top_k, gen, top_p)
            if k + 1 < steps:  # the last token needs no logits after it
                logits, state = _call(model, out[k][None], state, extra, k + 1)
    return out[:, 0] if single else out


def _call(model, tokens, state, extra, k):
    """model(tokens, state[, context]) -> (logits, new_state), checked: a pair, and, when the
    state passed in is a structure of Tensors, a new state of its structure and shapes (a model
    may also keep a state of its own kind, which is its business)."""
    res = model(tokens, state, *extra)
    if not isinstance(res, (tuple, list)) or len(res) != 2:
        raise TypeError(f"generate: the model must return (logits, new_state), got "
                        f"{type(res).__name__} at call {k}")
    if state is not None and _is_state(state):
        st.check(res[1], state, f"generate: call {k} of the model")
    return res


def _is_state(state) -> bool:
    try:
        st.flatten(state)
    except st.StateError:
        return False
    return True


def _check_options(strategy, temperature, top_k, top_p):
    if strategy not in _STRATEGIES:
        raise ValueError(f"generate: strategy must be one of {_STRATEGIES}, got {strategy!r}")
    if not (isinstance(temperature, (int, float, np.floating)) and temperature > 0):
        raise ValueError(f"generate: temperature must be a number > 0, got {temperature!r}")
    if top_k is not None and (isinstance(top_k, bool) or not isinstance(top_k, (int, np.integer))
                              or top_k < 1):
        raise ValueError(f"generate: top_k must be None or an int >= 1, got {top_k!r}")
    if top_p is not None:
        checks.real(top_p, "generate", "top_p", low=0, low_open=True, high=1)
