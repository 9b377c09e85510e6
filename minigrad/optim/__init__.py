"""Optimizers, learning-rate schedules and early stopping.

>>> import minigrad as mg
>>> model = mg.nn.Linear(3, 1, rng=0)
>>> opt = mg.optim.Adam(model.parameters(), lr=1e-2)
>>> sched = mg.optim.CosineAnnealingLR(opt, T_max=100)
"""
from minigrad.optim.optimizers import SGD, Adagrad, Adam, AdamW, Optimizer, RMSprop
from minigrad.optim.early_stopping import EarlyStopping
from minigrad.optim.guard import SkipNonFinite, grads_finite
from minigrad.optim.schedules import CosineAnnealingLR, ExponentialLR, LRScheduler, StepLR

__all__ = ["SGD", "Adagrad", "Adam", "AdamW", "CosineAnnealingLR", "EarlyStopping",
           "ExponentialLR", "LRScheduler", "Optimizer", "RMSprop", "SkipNonFinite", "StepLR",
           "grads_finite"]
