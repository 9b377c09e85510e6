"""Learning-rate schedules: set each parameter group's `lr` from a closed form of the epoch count.

Call `scheduler.step()` once per epoch (or per step), after `optimizer.step()`. Each schedule
computes lr_t directly from t and the groups' initial rates, so resuming from a state dict gives
exactly the rates an uninterrupted run would have had.

>>> import minigrad as mg
>>> w = mg.nn.Parameter([1.0])
>>> opt = mg.optim.SGD([w], lr=1.0)
>>> sched = mg.optim.StepLR(opt, step_size=2, gamma=0.5)
>>> for _ in range(3):
...     sched.step()
>>> opt.param_groups[0]["lr"]
0.5
"""
from __future__ import annotations

import math

from minigrad import checks
from minigrad.optim.optimizers import Optimizer

__all__ = ["CosineAnnealingLR", "ExponentialLR", "LRScheduler", "StepLR"]


class LRScheduler:
    """Base class: `last_epoch` counts `step()` calls; subclasses give `_lr(base_lr, t)`."""

    hyper: tuple[str, ...] = ()

    def __init__(self, optimizer: Optimizer):
        if not isinstance(optimizer, Optimizer):
            raise TypeError(f"{type(self).__name__}: expected an Optimizer, got "
                            f"{type(optimizer).__name__}")
        self.optimizer = optimizer
        for group in optimizer.param_groups:
            group.setdefault("initial_lr", group["lr"])
        self.base_lrs = [group["initial_lr"] for group in optimizer.param_groups]
        self.last_epoch = 0
        self._apply()

    def _lr(self, base_lr: float, t: int) -> float:  # pragma: no cover - abstract
        raise NotImplementedError

    def get_lr(self) -> list[float]:
        """The learning rate of each parameter group at the current epoch."""
        return [self._lr(base, self.last_epoch) for base in self.base_lrs]

    def _apply(self):
        for group, lr in zip(self.optimizer.param_groups, self.get_lr()):
            group["lr"] = lr

    def step(self) -> None:
        """Advance one epoch and set the optimizer's learning rates."""
        self.last_epoch += 1
        self._apply()

    def state_dict(self) -> dict:
        return {"last_epoch": self.last_epoch, "base_lrs": list(self.base_lrs),
                **{k: getattr(self, k) for k in self.hyper}}

    def load_state_dict(self, state_dict: dict) -> None:
        """Restore the epoch count and hyperparameters, and set the optimizer's rates to match."""
        missing = [k for k in ("last_epoch", "base_lrs", *self.hyper) if k not in state_dict]
        if missing:
            raise ValueError(f"{type(self).__name__}.load_state_dict: missing keys {missing}")
        if len(state_dict["base_lrs"]) != len(self.optimizer.param_groups):
            raise ValueError(f"{type(self).__name__}.load_state_dict: {len(state_dict['base_lrs'])}"
                             f" base rates for {len(self.optimizer.param_groups)} groups")
        self.last_epoch = int(state_dict["last_epoch"])
        self.base_lrs = [float(b) for b in state_dict["base_lrs"]]
        for k in self.hyper:
            setattr(self, k, state_dict[k])
        self._apply()

    def __repr__(self):
        hyper = ", ".join(f"{k}={getattr(self, k)}" for k in self.hyper)
        return f"{type(self).__name__}({hyper}, last_epoch={self.last_epoch})"


class StepLR(LRScheduler):
    """lr_t = base_lr * gamma ** (t // step_size): decay by gamma every step_size epochs."""

    hyper = ("step_size", "gamma")

    def __init__(self, optimizer: Optimizer, step_size: int, gamma: float = 0.1):
        self.step_size = checks.integer(step_size, "StepLR", "step_size", low=1)
        self.gamma = checks.real(gamma, "StepLR", "gamma", low=0, low_open=True)
        super().__init__(optimizer)

    def _lr(self, base_lr, t):
        return base_lr * self.gamma ** (t // self.step_size)


class ExponentialLR(LRScheduler):
    """lr_t = base_lr * gamma ** t."""

    hyper = ("gamma",)

    def __init__(self, optimizer: Optimizer, gamma: float):
        self.gamma = checks.real(gamma, "ExponentialLR", "gamma", low=0, low_open=True)
        super().__init__(optimizer)

    def _lr(self, base_lr, t):
        return base_lr * self.gamma ** t


class CosineAnnealingLR(LRScheduler):
    """lr_t = eta_min + (base_lr - eta_min) * (1 + cos(pi * t / T_max)) / 2 (Loshchilov & Hutter).

    Reaches eta_min at t = T_max; beyond it the cosine continues (rises again), as in PyTorch.
    """

    hyper = ("T_max", "eta_min")

    def __init__(self, optimizer: Optimizer, T_max: int, eta_min: float = 0.0):
        self.T_max = checks.integer(T_max, "CosineAnnealingLR", "T_max", low=1)
        self.eta_min = checks.real(eta_min, "CosineAnnealingLR", "eta_min", low=0)
        super().__init__(optimizer)

    def _lr(self, base_lr, t):
        cos = math.cos(math.pi * t / self.T_max)
        return self.eta_min + (base_lr - self.eta_min) * (1 + cos) / 2
