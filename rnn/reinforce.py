"""The score-function (REINFORCE) gradient estimator, for choices sampled inside a model (a hard
attention location, a generated token) that backpropagation cannot pass through.

For actions a ~ pi_theta and a reward R(a) that has no gradient (Williams 1992):

    grad E[R] = E[ (R - b) grad log pi_theta(a) ]

for any baseline b that does not depend on a: the baseline leaves the mean of the estimate alone
and, near E[R], lowers its variance. `reinforce_loss` builds the surrogate whose gradient is that
estimate (a loss to minimise, so its sign is flipped); `MovingAverageBaseline` is the usual
baseline (an exponential average of past rewards); `sample_categorical` draws the actions from
the default generator, so a checkpointed recomputation draws the same ones.
"""
from __future__ import annotations

import numpy as np

import minigrad as mg
from minigrad import backend

__all__ = ["MovingAverageBaseline", "reinforce_loss", "sample_categorical"]


def _host(a, what: str) -> np.ndarray:
    if isinstance(a, mg.Tensor):
        a = a.data
    if backend.is_array(a):
        a = backend.to_host(a)
    a = np.asarray(a, dtype=np.float64)
    if not np.isfinite(a).all():
        raise ValueError(f"reinforce_loss: {what} must be finite")
    return a


def reinforce_loss(log_probs: mg.Tensor, rewards, baseline=None, mask=None) -> mg.Tensor:
    """Surrogate loss L = -sum_i m_i (R_i - b_i) log pi(a_i) / (number of samples) whose gradient
    is the REINFORCE estimate of -grad E[R] (rewards and baseline carry no gradient).

    log_probs: a Tensor of any shape (e.g. (T, B)) holding log pi(a_i) of the sampled actions;
    rewards, baseline (None: 0) and mask (None: all 1) broadcast to it; "number of samples" is the
    batch size B = log_probs.shape[-1] (rewards summed over steps, averaged over examples).

    >>> import minigrad as mg
    >>> logits = mg.tensor([0.0, 0.0], requires_grad=True)
    >>> logp = mg.log_softmax(logits)[1:]                    # action 1 was sampled
    >>> reinforce_loss(logp, rewards=[2.0], baseline=[1.0]).backward()
    >>> logits.grad.tolist()                                 # -(R - b) * (onehot - p)
    [0.5, -0.5]
    """
    if not isinstance(log_probs, mg.Tensor):
        raise TypeError(f"reinforce_loss: log_probs must be a Tensor, got "
                        f"{type(log_probs).__name__}")
    weight = _host(rewards, "rewards")
    if baseline is not None:
        weight = weight - _host(baseline, "baseline")
    if mask is not None:
        weight = weight * _host(mask, "mask")
    try:
        weight = np.broadcast_to(weight, log_probs.shape)
    except ValueError as e:
        raise ValueError(f"reinforce_loss: rewards, baseline and mask of shapes do not broadcast "
                         f"to the log-probabilities {log_probs.shape}") from e
    n = log_probs.shape[-1] if log_probs.ndim else 1
    w = backend.to_device(weight.astype(log_probs.dtype), log_probs.device)
    return -(log_probs * mg.tensor(w, device=log_probs.device)).sum() * (1.0 / n)


class MovingAverageBaseline:
    """b <- decay * b + (1 - decay) * mean(rewards), per position of `shape` (e.g. one value per
    decoder step); the first update sets b to the first mean.

    Call `baseline.value` for the b to subtract now, then `baseline.update(rewards)`.

    >>> b = MovingAverageBaseline(decay=0.5)
    >>> b.update([1.0, 3.0]); b.value
    2.0
    >>> b.update([4.0]); b.value
    3.0
    """

    def __init__(self, decay: float = 0.9, shape: tuple = ()):
        if not 0.0 <= decay < 1.0:
            raise ValueError(f"MovingAverageBaseline: decay must be in [0, 1), got {decay!r}")
        self.decay, self.shape = float(decay), tuple(shape)
        self.value = np.zeros(self.shape) if self.shape else 0.0
        self.started = False

    def update(self, rewards, axis=-1) -> None:
        """Fold in a batch of rewards (averaged over `axis`, the batch axis)."""
        r = _host(rewards, "rewards")
        mean = r.mean(axis=axis) if r.ndim else r
        if np.shape(mean) != self.shape:
            raise ValueError(f"MovingAverageBaseline: rewards averaged over the batch have shape "
                             f"{np.shape(mean)}, the baseline {self.shape}")
        new = mean if not self.started else self.decay * self.value + (1 - self.decay) * mean
        self.value = float(new) if not self.shape else np.asarray(new, dtype=np.float64)
        self.started = True


def sample_categorical(probs: mg.Tensor) -> np.ndarray:
    """One index per row of probs (N, K) (rows summing to 1), drawn from minigrad's default
    generator (so a checkpointed recomputation replays it); host int64 (N,)."""
    p = _host(probs, "probs")
    if p.ndim != 2:
        raise ValueError(f"sample_categorical: probs must be (N, K), got shape {p.shape}")
    cdf = np.cumsum(p, axis=1)
    u = mg.random.default_generator().random(p.shape[0])[:, None] * cdf[:, -1:]
    return np.minimum((cdf <= u).sum(axis=1), p.shape[1] - 1).astype(np.int64)
