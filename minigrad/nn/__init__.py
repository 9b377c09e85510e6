"""Neural-network building blocks: Module, Parameter, layers, initialisers and utilities."""
from minigrad.nn.module import Module, Parameter

__all__ = ["Module", "Parameter"]
