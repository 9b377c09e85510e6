"""A guard for long runs: skip an optimizer step whose gradient holds NaN or Inf.

One bad batch (an exploding recurrence, a log of zero) gives a non-finite gradient; stepping
with it writes NaN into the weights and the run is lost. `SkipNonFinite` checks the gradients
first, and on a non-finite one drops them, leaves the weights untouched, counts the skip and
warns.
"""
from __future__ import annotations

import warnings

from minigrad import backend, checks

__all__ = ["SkipNonFinite", "grads_finite"]


def grads_finite(params) -> bool:
    """True when every `.grad` of `params` (None counts as finite) is free of NaN and Inf."""
    for p in params:
        g = p.grad
        if g is not None and not bool(backend.get_array_module(g.data).isfinite(g.data).all()):
            return False
    return True


class SkipNonFinite:
    """Wrap an optimizer so `step()` is skipped when any gradient is not finite.

    On a skipped step the gradients are dropped (the optimizer's `zero_grad`), the weights and
    the optimizer's state are unchanged, `skipped` (total) and `consecutive` go up by one and a
    `RuntimeWarning` gives the count. After `max_consecutive` skips in a row (when given) it
    raises `RuntimeError` instead: the run is diverging and skipping will not save it. Other
    attributes (`zero_grad`, `param_groups`, `state_dict`, ...) are the optimizer's.

    >>> import minigrad as mg
    >>> from minigrad.optim.guard import SkipNonFinite
    >>> w = mg.nn.Parameter([1.0, 2.0])
    >>> opt = SkipNonFinite(mg.optim.SGD([w], lr=0.1))
    >>> (w * float("nan")).sum().backward()
    >>> import warnings
    >>> with warnings.catch_warnings():
    ...     warnings.simplefilter("ignore")
    ...     opt.step()
    False
    >>> w.tolist(), opt.skipped
    ([1.0, 2.0], 1)
    """

    def __init__(self, optimizer, max_consecutive: int | None = None):
        if not hasattr(optimizer, "step") or not hasattr(optimizer, "param_groups"):
            raise TypeError(f"SkipNonFinite: expected an optimizer with step() and param_groups, "
                            f"got {type(optimizer).__name__}")
        if max_consecutive is not None:
            max_consecutive = checks.integer(max_consecutive, "SkipNonFinite", "max_consecutive",
                                             low=1)
        self.optimizer = optimizer
        self.max_consecutive = max_consecutive
        self.skipped = 0
        self.consecutive = 0
        self.steps = 0

    @property
    def params(self) -> list:
        return [p for group in self.optimizer.param_groups for p in group["params"]]

    def step(self) -> bool:
        """Step when every gradient is finite and return True; otherwise skip and return False."""
        if grads_finite(self.params):
            self.optimizer.step()
            self.steps += 1
            self.consecutive = 0
            return True
        self.optimizer.zero_grad()
        self.skipped += 1
        self.consecutive += 1
        if self.max_consecutive is not None and self.consecutive >= self.max_consecutive:
            raise RuntimeError(f"SkipNonFinite: {self.consecutive} steps in a row had non-finite "
                               f"gradients ({self.skipped} skipped in all); the run diverged: "
                               "lower the learning rate or clip the gradients")
        warnings.warn(f"SkipNonFinite: gradient not finite, step skipped ({self.skipped} "
                      f"skipped of {self.skipped + self.steps})", RuntimeWarning, stacklevel=2)
        return False

    def __getattr__(self, name):
        if name == "optimizer":  # not set yet (copy, unpickling): avoid endless recursion
            raise AttributeError(name)
        return getattr(self.optimizer, name)

    def __repr__(self):
        return f"SkipNonFinite({self.optimizer!r}, skipped={self.skipped})"
