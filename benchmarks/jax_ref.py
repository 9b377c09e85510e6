"""Optional JAX baselines (CPU, float32) for `benchmarks.rnn`: the LSTM and the README's MUT1
as `lax.scan` over time, differentiated by `jax.grad` and compiled whole by `jax.jit`.

JAX is never a dependency of the project: `available()` says whether it imports, and every
`make_*` returns None without it. It is imported on first use only, so that a benchmark run
without JAX rows never pays for the import. Each `make_*` returns a zero-argument callable
running one forward + full BPTT (loss = sum of all outputs, gradients for the input and every
parameter, zero initial state) and waiting for the result (`block_until_ready`); its first
call traces and compiles. XLA's CPU threads are chosen when JAX starts (`XLA_FLAGS`, set by
`benchmarks.rnn` in its one-thread child process), not per call.
"""
from __future__ import annotations

import numpy as np

__all__ = ["available", "version", "lstm_loss", "mut1_loss", "make_lstm", "make_mut1",
           "lstm_grads"]

_jax = None


def _import():
    """(jax, jax.numpy, jax.lax), imported once; None when JAX is not installed."""
    global _jax
    if _jax is None:
        try:
            import jax
            import jax.numpy as jnp
            from jax import lax
        except ImportError:
            _jax = False
        else:
            _jax = (jax, jnp, lax)
    return _jax or None


def available():
    return _import() is not None


def version():
    mods = _import()
    return None if mods is None else mods[0].__version__


def lstm_loss(params, x):
    """Sum of all outputs of an LSTM (gates x W^T + h U^T + b, blocks i, f, g, o) over
    x (T, B, I), zero initial state."""
    jax, jnp, lax = _import()
    sigmoid = jax.nn.sigmoid
    w, u, b = params
    B, H = x.shape[1], u.shape[1]

    def step(carry, x_t):
        h, c = carry
        a = x_t @ w.T + h @ u.T + b
        i = sigmoid(a[:, :H])
        f = sigmoid(a[:, H:2 * H])
        g = jnp.tanh(a[:, 2 * H:3 * H])
        o = sigmoid(a[:, 3 * H:])
        c = f * c + i * g
        h = o * jnp.tanh(c)
        return (h, c), h

    zeros = jnp.zeros((B, H), x.dtype)
    _, out = lax.scan(step, (zeros, zeros), x)
    return out.sum()


def mut1_loss(params, x):
    """Sum of all outputs of the README's MUT1 (with W_p (H, I) when I != H; see
    benchmarks/user_cells.py) over x (T, B, I)."""
    jax, jnp, lax = _import()
    sigmoid = jax.nn.sigmoid
    w_z, w_r, u_r, u_h, b_z, b_r, b_h, w_p = params
    B, H = x.shape[1], u_h.shape[0]

    def step(h, x_t):
        z = sigmoid(x_t @ w_z.T + b_z)
        r = sigmoid(x_t @ w_r.T + h @ u_r.T + b_r)
        x_h = x_t if w_p is None else x_t @ w_p.T
        h = jnp.tanh((r * h) @ u_h.T + jnp.tanh(x_h) + b_h) * z + h * (1 - z)
        return h, h

    _, out = lax.scan(step, jnp.zeros((B, H), x.dtype), x)
    return out.sum()


def _uniform(rng, H, *shape):
    k = 1.0 / np.sqrt(H)
    return rng.uniform(-k, k, shape).astype(np.float32)


def _compiled_step(loss, params, x):
    """jit(value_and_grad(loss)) over (params, x), as a callable waiting for its results."""
    jax, jnp, _ = _import()
    params = jax.tree_util.tree_map(jnp.asarray, params)
    x = jnp.asarray(x)
    fn = jax.jit(jax.value_and_grad(loss, argnums=(0, 1)))

    def step():
        return jax.block_until_ready(fn(params, x))

    return step


def make_lstm(B, I, H, T, seed=0):
    """LSTM: `lax.scan` + `jit` + `grad` (forward + backward callable), or None without JAX."""
    if not available():
        return None
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((T, B, I)).astype(np.float32)
    params = (_uniform(rng, H, 4 * H, I), _uniform(rng, H, 4 * H, H), _uniform(rng, H, 4 * H))
    return _compiled_step(lstm_loss, params, x)


def make_mut1(B, I, H, T, seed=0):
    """MUT1: `lax.scan` + `jit` + `grad` (forward + backward callable), or None without JAX."""
    if not available():
        return None
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((T, B, I)).astype(np.float32)
    params = (_uniform(rng, H, H, I), _uniform(rng, H, H, I), _uniform(rng, H, H, H),
              _uniform(rng, H, H, H), _uniform(rng, H, H), _uniform(rng, H, H),
              _uniform(rng, H, H), _uniform(rng, H, H, I) if I != H else None)
    return _compiled_step(mut1_loss, params, x)


def lstm_grads(x, w, u, b):
    """Loss and gradients of `lstm_loss` for NumPy arrays (cross-checks), or None without JAX."""
    if not available():
        return None
    jax, jnp, _ = _import()
    loss, (gp, gx) = jax.value_and_grad(lstm_loss, argnums=(0, 1))(
        tuple(jnp.asarray(a) for a in (w, u, b)), jnp.asarray(x))
    return float(loss), {"x": np.asarray(gx), "weight_ih": np.asarray(gp[0]),
                         "weight_hh": np.asarray(gp[1]), "bias": np.asarray(gp[2])}
