"""Stability tools: the spectrum of a recurrent matrix, how far back a gradient reaches, and how
many units sit saturated at each step.

Why they matter: through T steps of h_t = act(W h_{t-1} + ...) the gradient dL/dh_{t-k} is a
product of k Jacobians diag(act') W. Its size behaves like (|act'| * rho(W))^k, with rho the
spectral radius: below 1 it vanishes geometrically, above 1 it can explode; saturated units
(act' near 0) shrink it further. Gated cells (LSTM, GRU) add a path with a near-1 Jacobian.
"""
from __future__ import annotations

from typing import Callable

import numpy as np

import minigrad as mg
from minigrad import backend
from minigrad.engine import state as _engine
from rnn import state as st
from rnn.unroll import unroll

__all__ = ["eigenvalues", "plot_attention", "plot_image_attention", "saturation",
           "scale_spectral_radius", "spectral_radius", "state_gradient_norms"]


def _square(weight, op: str) -> np.ndarray:
    a = weight.data if isinstance(weight, mg.Tensor) else weight
    a = np.asarray(backend.to_host(a) if backend.is_array(a) else a)
    if a.ndim != 2 or a.shape[0] != a.shape[1]:
        raise ValueError(f"{op}: expected a square recurrent matrix (H, H), got shape {a.shape}; "
                         "for a gated cell pass one gate block, e.g. weight_hh[:H]")
    if a.dtype.kind not in "fc":
        raise TypeError(f"{op}: expected a float matrix, got dtype {a.dtype}")
    return a


def eigenvalues(weight) -> np.ndarray:
    """Eigenvalues of a square recurrent matrix W (H, H), largest modulus first (complex (H,)).

    >>> import numpy as np
    >>> eigenvalues(np.array([[0.0, 2.0], [0.5, 0.0]])).real.round(6).tolist()
    [1.0, -1.0]
    """
    return _eig(_square(weight, "eigenvalues"))


def _eig(a):
    lam = np.linalg.eigvals(a.astype(np.complex128 if a.dtype.kind == "c" else np.float64))
    return lam[np.argsort(-np.abs(lam), kind="stable")]


def spectral_radius(weight) -> float:
    """rho(W) = max_i |lambda_i(W)|: the asymptotic growth rate per step of h_t = W h_{t-1}.

    >>> import numpy as np
    >>> spectral_radius(np.diag([0.5, -0.9]))
    0.9
    """
    return float(np.abs(_eig(_square(weight, "spectral_radius"))).max())


def scale_spectral_radius(weight, radius: float) -> np.ndarray:
    """W * radius / rho(W): the same matrix (same eigenvectors), rescaled to spectral radius
    `radius`. Returns a host array in W's dtype.

    >>> import numpy as np
    >>> W = np.random.default_rng(0).normal(size=(4, 4))
    >>> round(spectral_radius(scale_spectral_radius(W, 1.1)), 6)
    1.1
    """
    a = _square(weight, "scale_spectral_radius")
    if not radius >= 0:
        raise ValueError(f"scale_spectral_radius: radius must be >= 0, got {radius!r}")
    rho = float(np.abs(_eig(a)).max())
    if rho == 0:
        raise ValueError("scale_spectral_radius: the matrix is nilpotent (spectral radius 0) and "
                         "cannot be rescaled to another radius")
    return (a * (radius / rho)).astype(a.dtype)


def state_gradient_norms(cell, inputs, loss_fn: Callable | None = None,
                         state=None) -> np.ndarray:
    """||dL/dh_t|| for every step t of an unrolled sequence: how far back a gradient reaches.

    h_t is the cell's hidden state after reading x_t (the first part of its state: h_t of an
    LSTM's (h_t, c_t)), which is also its output. The cell is unrolled over `inputs` (T, B, I)
    and L = loss_fn(outputs (T, B, H), final_state), by default the sum of the last step's
    outputs. dL/dh_t is the total derivative: through the output y_t = h_t and through every
    later step (for an LSTM, also through the gates into c_{t+1}, ..., c_T). Returns a host
    float64 array (T,) with norms[t] = mean over b of ||dL/dh_t[b]||_2.

    A vanishing gradient shows as norms[t] falling geometrically as t moves away from T - 1.

    >>> import minigrad as mg, rnn
    >>> cell = rnn.RNNCell(2, 3, rng=0)
    >>> state_gradient_norms(cell, mg.randn(6, 4, 2)).shape
    (6,)
    """
    hs = []

    def keep(t, s):
        hs.append(st.flatten(s)[0][0])
        return s

    with mg.enable_grad():
        x = _leaf(inputs, "state_gradient_norms")
        outputs, final = unroll(cell, x, state, state_hook=keep)
        loss = outputs[-1].sum() if loss_fn is None else loss_fn(outputs, final)
        if not isinstance(loss, mg.Tensor) or loss.size != 1:
            raise TypeError(f"state_gradient_norms: loss_fn must return a scalar Tensor, got "
                            f"{getattr(loss, 'shape', type(loss).__name__)}")
        grads = mg.grad(loss, hs, allow_unused=True)
    B = x.shape[1]
    norms = np.zeros(len(hs))
    for t, g in enumerate(grads):
        if g is not None:  # None: L does not depend on h_t at all
            g = np.asarray(backend.to_host(g.data), dtype=np.float64).reshape(B, -1)
            norms[t] = np.sqrt((g ** 2).sum(axis=1)).mean()
    return norms


# activation op -> whether an output value counts as saturated (tol: distance to the bound)
_SATURATED = {
    "Sigmoid": lambda y, tol: (y < tol) | (y > 1 - tol),
    "Tanh": lambda y, tol: np.abs(y) > 1 - tol,
    "Relu": lambda y, tol: y <= 0,   # a dead (inactive) unit: zero output, zero gradient
}


def saturation(cell, inputs, state=None, lengths=None, tol: float = 0.05) -> dict:
    """Share of saturated activations at every step of an unrolled sequence.

    The cell runs its composed (unfused) path so each activation op is visible; every output
    value y of each op counts, per step t, as saturated when

        sigmoid: y < tol or y > 1 - tol;   tanh: |y| > 1 - tol;   relu: y <= 0 (dead)

    where the derivative is at most ~tol (sigmoid), ~2 tol (tanh), or exactly 0 (relu).
    Returns {"Sigmoid" | "Tanh" | "Relu": host float64 array (T,), ..., "all": (T,)} with the
    shares for the activation kinds the cell uses, and "all" pooling them.

    >>> import minigrad as mg, rnn
    >>> shares = saturation(rnn.LSTMCell(2, 3, rng=0), mg.randn(5, 4, 2))
    >>> sorted(shares), shares["all"].shape
    (['Sigmoid', 'Tanh', 'all'], (5,))
    """
    if not 0 < tol < 1:
        raise ValueError(f"saturation: tol must lie in (0, 1), got {tol!r}")
    counts: dict = {}  # kind -> {t: [saturated, total]}

    def watch(fn, fn_inputs, results, kwargs):
        rule = _SATURATED.get(fn.name)
        t = dict(fn.tags).get("time")
        if rule is None or t is None:
            return
        y = np.asarray(backend.to_host(results[0].data))
        c = counts.setdefault(fn.name, {}).setdefault(t, [0, 0])
        c[0] += int(rule(y, tol).sum())
        c[1] += y.size

    fused = [(m, m.fused) for _, m in cell.named_modules() if hasattr(m, "fused")]
    prev = _engine.recorder

    def both(fn, fn_inputs, results, kwargs):
        prev(fn, fn_inputs, results, kwargs)
        watch(fn, fn_inputs, results, kwargs)

    _engine.recorder = watch if prev is None else both
    try:
        for m, _ in fused:
            m.fused = False
        with mg.enable_grad():
            x = _leaf(inputs, "saturation")
            unroll(cell, x, state, lengths, per_step=True)
    finally:
        _engine.recorder = prev
        for m, flag in fused:
            m.fused = flag
    T = x.shape[0]
    shares, pooled = {}, np.zeros((T, 2))
    for kind, per_t in sorted(counts.items()):
        c = np.zeros((T, 2))
        for t, (n_sat, n) in per_t.items():
            c[t] = n_sat, n
        pooled += c
        shares[kind] = c[:, 0] / np.maximum(c[:, 1], 1)
    shares["all"] = pooled[:, 0] / np.maximum(pooled[:, 1], 1)
    return shares


def _leaf(inputs, op):
    """The inputs as a fresh leaf that requires grad, so every op on them is recorded."""
    if not isinstance(inputs, mg.Tensor):
        raise TypeError(f"{op}: inputs must be a Tensor (T, B, I), got {type(inputs).__name__}")
    return mg.Tensor(inputs.data, requires_grad=True)


def _host_weights(weights):
    a = weights.data if isinstance(weights, mg.Tensor) else weights
    a = np.asarray(backend.to_host(a) if backend.is_array(a) else a, dtype=np.float64)
    return a


def plot_attention(weights, src_tokens, tgt_tokens, ax=None, title: str | None = None):
    """Heatmap of attention weights (T, S): row t is where output token t looked in the source.

    `src_tokens` (S labels) and `tgt_tokens` (T labels) label the columns and rows (strings or
    anything printable; a string gives one label per character). Draws on `ax` (a matplotlib
    Axes; a new figure when None) and returns the Axes. Needs matplotlib (the `viz` extra).

    >>> import numpy as np
    >>> ax = plot_attention(np.eye(3), "abc", "xyz")
    >>> [t.get_text() for t in ax.get_xticklabels()]
    ['a', 'b', 'c']
    """
    a = _host_weights(weights)
    src, tgt = list(src_tokens), list(tgt_tokens)
    if a.ndim != 2 or a.shape != (len(tgt), len(src)):
        raise ValueError(f"plot_attention: weights of shape {a.shape} do not match "
                         f"(len(tgt_tokens), len(src_tokens)) = ({len(tgt)}, {len(src)})")
    if ax is None:
        import matplotlib.pyplot as plt
        _, ax = plt.subplots(figsize=(0.3 * len(src) + 1.5, 0.3 * len(tgt) + 1.2))
    ax.imshow(a, cmap="Greys", vmin=0.0, vmax=max(float(a.max()), 1e-12), aspect="auto")
    ax.set_xticks(range(len(src)), [str(s) for s in src], fontsize=8)
    ax.set_yticks(range(len(tgt)), [str(t) for t in tgt], fontsize=8)
    ax.set_xlabel("source")
    ax.set_ylabel("output")
    if title:
        ax.set_title(title, fontsize=9)
    return ax


def plot_image_attention(image, weights, ax=None, title: str | None = None, alpha: float = 0.6):
    """An image (H, W) in grey with attention weights over a grid of regions (h, w) laid on it.

    Each weight covers the (H/h, W/w) block of pixels its region stands for (nearest-neighbour
    upsampling, so H and W must be multiples of h and w); weights are shown in red with
    `alpha`. Returns the Axes.

    >>> import numpy as np
    >>> ax = plot_image_attention(np.ones((8, 24)), np.eye(1, 3)[0].reshape(1, 3))
    >>> len(ax.images)
    2
    """
    img = _host_weights(image)
    w = _host_weights(weights)
    if img.ndim != 2 or w.ndim != 2 or img.shape[0] % w.shape[0] or img.shape[1] % w.shape[1]:
        raise ValueError(f"plot_image_attention: image (H, W) {img.shape} must be a whole number "
                         f"of weight grids (h, w) {w.shape}")
    up = np.kron(w, np.ones((img.shape[0] // w.shape[0], img.shape[1] // w.shape[1])))
    if ax is None:
        import matplotlib.pyplot as plt
        _, ax = plt.subplots(figsize=(3, 3 * img.shape[0] / img.shape[1] + 0.4))
    ax.imshow(img, cmap="Greys", interpolation="nearest")
    rgba = np.zeros(up.shape + (4,))
    rgba[..., 0] = 1.0
    rgba[..., 3] = alpha * up / max(float(up.max()), 1e-12)
    ax.imshow(rgba, interpolation="nearest")
    ax.set_xticks([])
    ax.set_yticks([])
    if title:
        ax.set_title(title, fontsize=9)
    return ax
