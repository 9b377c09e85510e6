"""Early stopping: watch a validation score, keep the best weights, say when to stop.

>>> import minigrad as mg
>>> net = mg.nn.Linear(2, 1, rng=0)
>>> stopper = mg.optim.EarlyStopping(patience=2, mode="max")
>>> [stopper.update(score, net) for score in (0.5, 0.7, 0.6, 0.65)]
[False, False, False, True]
>>> stopper.best, stopper.best_step
(0.7, 1)
>>> stopper.restore(net)   # the weights as they were when the score was 0.7
"""
from __future__ import annotations

import math

from minigrad import checks

__all__ = ["EarlyStopping"]


class EarlyStopping:
    """Track a validation score given once per check (`update(score, module)`).

    A score better than the best so far by more than `min_delta` (higher with mode="max", lower
    with mode="min") becomes the best: a copy of `module.state_dict()` is kept and the count of
    checks without improvement starts again at 0. `update` returns True once `patience` checks
    in a row brought no improvement; `restore(module)` loads the best weights back. `best`,
    `best_step` (the index of the check that gave it) and `stale` (checks since) are public.
    """

    def __init__(self, patience: int, mode: str = "max", min_delta: float = 0.0):
        self.patience = checks.integer(patience, "EarlyStopping", "patience", low=1)
        if mode not in ("max", "min"):
            raise ValueError(f"EarlyStopping: mode must be 'max' or 'min', got {mode!r}")
        self.mode = mode
        self.min_delta = checks.real(min_delta, "EarlyStopping", "min_delta", low=0)
        self.best = -math.inf if mode == "max" else math.inf
        self.best_step, self.best_state, self.stale, self.checks = None, None, 0, 0

    def improves(self, score: float) -> bool:
        if self.mode == "max":
            return score > self.best + self.min_delta
        return score < self.best - self.min_delta

    def update(self, score: float, module=None) -> bool:
        """Record one check's score (and the weights of `module`, when it is the best so far);
        True when training should stop."""
        score = checks.real(score, "EarlyStopping.update", "score")
        if self.improves(score):
            self.best, self.best_step, self.stale = score, self.checks, 0
            if module is not None:
                self.best_state = module.state_dict()  # host copies: later steps leave them
        else:
            self.stale += 1
        self.checks += 1
        return self.stale >= self.patience

    def restore(self, module) -> None:
        """Load the best weights seen into `module` (ValueError when none were kept)."""
        if self.best_state is None:
            raise ValueError("EarlyStopping.restore: no weights kept yet; pass the module to "
                             "update() with each score")
        module.load_state_dict(self.best_state)
