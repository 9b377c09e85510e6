"""Neural Turing Machine addressing (Graves et al. 2014, section 3.3), batched over examples and
heads: every function takes (B, H, ...) tensors and is composed of minigrad functions only, so the
same code runs on NumPy, CuPy or any registered device, and its gradient comes from the engine.

Shapes: memory (B, N, M) holds N slots of M numbers per example; weights (B, H, N) hold one
distribution over the slots per head; keys, erase and add vectors are (B, H, M); the scalars of
each head (beta, gate, gamma) are (B, H); a shift kernel is (B, H, K) with K odd.

The four addressing steps, in the order `address` applies them:

    w_c = content_weights(memory, key, beta)     softmax_i(beta * cos(key, memory_i))
    w_g = interpolate(w_c, w_prev, gate)         gate * w_c + (1 - gate) * w_prev
    w_s = shift(w_g, kernel)                     circular convolution with a K-tap kernel
    w   = sharpen(w_s, gamma)                    w_s**gamma / sum(w_s**gamma)

then `read(memory, w)` and `write(memory, w, erase, add)` use the weights.
"""
from __future__ import annotations

import minigrad as mg


def _check(op: str, **tensors) -> None:
    """ValueError naming `op` when the named tensors disagree on the batch B or the heads H."""
    shapes = {name: tuple(t.shape) for name, t in tensors.items()}
    lead = {name: s[:2] for name, s in shapes.items()}
    if any(len(s) < 2 for s in shapes.values()) or len(set(lead.values())) != 1:
        raise ValueError(f"{op}: the leading (B, H) axes of {shapes} must agree")


def content_weights(memory: mg.Tensor, key: mg.Tensor, beta: mg.Tensor,
                    eps: float = 1e-8) -> mg.Tensor:
    """Content addressing: w[b, h, i] = softmax_i(beta[b, h] * cos(key[b, h], memory[b, i])).

    memory (B, N, M), key (B, H, M), beta (B, H) >= 0 -> w (B, H, N). The norms are
    sqrt(|x|**2 + eps), so an all-zero slot or key gives cosine 0 and a finite gradient.

    >>> import minigrad as mg
    >>> from rnn.memory import content_weights
    >>> mem = mg.tensor([[[1.0, 0.0], [0.0, 1.0]]])
    >>> w = content_weights(mem, mg.tensor([[[1.0, 0.0]]]), mg.tensor([[50.0]]))
    >>> w.shape, bool(w.numpy()[0, 0, 0] > 0.99)
    ((1, 1, 2), True)
    """
    if memory.ndim != 3 or key.ndim != 3 or memory.shape[0] != key.shape[0] \
            or memory.shape[2] != key.shape[2]:
        raise ValueError(f"content_weights: memory (B, N, M) and key (B, H, M) expected, got "
                         f"{memory.shape} and {key.shape}")
    _check("content_weights", key=key, beta=beta)
    dots = key @ mg.swapaxes(memory, 1, 2)                                  # (B, H, N)
    key_norm = mg.sqrt(mg.sum(key * key, axis=-1, keepdims=True) + eps)     # (B, H, 1)
    slot_norm = mg.sqrt(mg.sum(memory * memory, axis=-1) + eps)             # (B, N)
    cosine = dots / (key_norm * mg.expand_dims(slot_norm, 1))
    return mg.softmax(mg.expand_dims(beta, -1) * cosine, axis=-1)


def interpolate(w_content: mg.Tensor, w_prev: mg.Tensor, gate: mg.Tensor) -> mg.Tensor:
    """Interpolation gate: w = gate * w_content + (1 - gate) * w_prev.

    w_content and w_prev (B, H, N), gate (B, H) in [0, 1] -> w (B, H, N).
    """
    _check("interpolate", w_content=w_content, w_prev=w_prev, gate=gate)
    g = mg.expand_dims(gate, -1)
    return g * w_content + (1 - g) * w_prev


def shift(w: mg.Tensor, kernel: mg.Tensor) -> mg.Tensor:
    """Rotation by circular convolution: out[..., i] = sum_j kernel[..., j] w[..., (i-j+K//2) % N].

    w (B, H, N), kernel (B, H, K) with K odd (3 taps shift by -1, 0, +1; 5 taps by -2..+2) ->
    out (B, H, N). Tap j moves the weights by j - K//2 slots, wrapping around the memory. One
    `roll` of the whole (B, H, N) block per tap: the loop is over the K taps, never the examples.
    """
    _check("shift", w=w, kernel=kernel)
    K = kernel.shape[-1]
    if K % 2 == 0:
        raise ValueError(f"shift: the kernel needs an odd number of taps, got {K} "
                         f"(kernel shape {kernel.shape})")
    taps = mg.split(kernel, K, axis=-1)                                    # K x (B, H, 1)
    out = None
    for j, tap in enumerate(taps):
        term = tap * mg.roll(w, j - K // 2, axis=-1)
        out = term if out is None else out + term
    return out


def sharpen(w: mg.Tensor, gamma: mg.Tensor) -> mg.Tensor:
    """Sharpening: out = w**gamma / sum_i(w_i**gamma), gamma (B, H) >= 1, w (B, H, N) >= 0.

    w is first divided by its (constant, detached) largest entry: the ratio does not change, nor
    its gradient, but w**gamma can no longer underflow to all zeros when gamma is large.
    """
    _check("sharpen", w=w, gamma=gamma)
    scaled = w / mg.max(w, axis=-1, keepdims=True).detach()
    powered = scaled ** mg.expand_dims(gamma, -1)
    return powered / mg.sum(powered, axis=-1, keepdims=True)


def address(memory: mg.Tensor, w_prev: mg.Tensor, key: mg.Tensor, beta: mg.Tensor,
            gate: mg.Tensor, kernel: mg.Tensor, gamma: mg.Tensor) -> mg.Tensor:
    """The NTM's addressing chain: sharpen(shift(interpolate(content_weights(...)))).

    memory (B, N, M), w_prev (B, H, N), key (B, H, M), beta, gate and gamma (B, H),
    kernel (B, H, K) -> weights (B, H, N).
    """
    w = content_weights(memory, key, beta)
    return sharpen(shift(interpolate(w, w_prev, gate), kernel), gamma)


def read(memory: mg.Tensor, w: mg.Tensor) -> mg.Tensor:
    """Read vectors r[b, h] = sum_i w[b, h, i] * memory[b, i]: memory (B, N, M), w (B, H, N) ->
    (B, H, M)."""
    if memory.ndim != 3 or w.ndim != 3 or w.shape[0] != memory.shape[0] \
            or w.shape[2] != memory.shape[1]:
        raise ValueError(f"read: memory (B, N, M) and weights (B, H, N) expected, got "
                         f"{memory.shape} and {w.shape}")
    return w @ memory


def write(memory: mg.Tensor, w: mg.Tensor, erase: mg.Tensor, add: mg.Tensor) -> mg.Tensor:
    """Erase then add, for H write heads at once:

        memory' = memory * prod_h (1 - w_h erase_h^T)  +  sum_h w_h add_h^T

    memory (B, N, M), w (B, H, N), erase (B, H, M) in [0, 1], add (B, H, M) -> (B, N, M).
    Every head erases before any head adds, so the result does not depend on the heads' order.
    """
    if memory.ndim != 3 or w.ndim != 3 or w.shape[0] != memory.shape[0] \
            or w.shape[2] != memory.shape[1]:
        raise ValueError(f"write: memory (B, N, M) and weights (B, H, N) expected, got "
                         f"{memory.shape} and {w.shape}")
    _check("write", w=w, erase=erase, add=add)
    if erase.shape[2] != memory.shape[2] or add.shape[2] != memory.shape[2]:
        raise ValueError(f"write: erase {erase.shape} and add {add.shape} must end in the slot "
                         f"size M = {memory.shape[2]}")
    H = w.shape[1]
    w_cols = mg.swapaxes(w, 1, 2)                                           # (B, N, H)
    for w_h, e_h in zip(mg.split(w_cols, H, axis=2), mg.split(erase, H, axis=1)):
        memory = memory * (1 - w_h @ e_h)                                   # (B, N, 1) @ (B, 1, M)
    return memory + w_cols @ add
