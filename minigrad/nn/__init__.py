"""Neural-network building blocks: Module, Parameter, layers, initialisers (`init`), gradient
clipping (`utils`) and weight penalties (`l1_penalty`, `l2_penalty`).

>>> import minigrad as mg
>>> net = mg.nn.Sequential(mg.nn.Linear(4, 8, rng=0), mg.nn.Tanh(), mg.nn.Linear(8, 2, rng=1))
>>> net(mg.ones(3, 4)).shape
(3, 2)
"""
from minigrad.nn import init, utils
from minigrad.nn.layers import (
    Dropout,
    Embedding,
    Linear,
    ModuleList,
    ParameterList,
    ReLU,
    Sequential,
    Sigmoid,
    Tanh,
)
from minigrad.nn.module import Module, Parameter
from minigrad.nn.regularizers import l1_penalty, l2_penalty, matrices

__all__ = ["Dropout", "Embedding", "Linear", "Module", "ModuleList", "Parameter",
           "ParameterList", "ReLU", "Sequential", "Sigmoid", "Tanh", "init", "l1_penalty",
           "l2_penalty", "matrices", "utils"]
