"""`Cell`: the contract every recurrent cell follows, built-in or written by a user.

A cell maps one time step: `forward(x_t, state) -> (output, new_state)`, or
`forward(x_t, state, context) -> (output, new_state)` for a cell that reads a context, with `x_t`
of shape (B, I), `output` a Tensor (B, H) and `state` a Tensor or any nesting of tuples, lists,
NamedTuples and dicts of Tensors (`rnn.state`). It owns no time loop: unrolling, lengths, both
directions, stacking and truncated or checkpointed BPTT all live in `rnn`, so a cell written in
ten lines runs with every one of them. The contract (see `Cell`) also declares the two optional
fast paths a cell may offer, so the step loop never probes for them.
"""
from __future__ import annotations

import inspect
import math

import numpy as np

import minigrad as mg
from minigrad import backend, checks
from minigrad.nn import Module, Parameter
from rnn import state as st


def generator(rng) -> np.random.Generator:
    """A NumPy Generator from `rng`: None (minigrad's default generator), a Generator, or a seed."""
    if rng is None:
        return mg.random.default_generator()
    if isinstance(rng, np.random.Generator):
        return rng
    if isinstance(rng, (int, np.integer)):
        return np.random.default_rng(int(rng))
    raise TypeError(f"rng must be a numpy.random.Generator or an int seed, got "
                    f"{type(rng).__name__}")


def _context_in_signature(cls) -> bool | None:
    """Whether `cls.forward` takes (x_t, state, context): True, False, or None when it takes
    *args (then the parent's declaration stands). TypeError for any other signature."""
    signature = inspect.signature(cls.forward)
    params = list(signature.parameters.values())[1:]   # after self
    if any(p.kind is p.VAR_POSITIONAL for p in params):
        return None
    n = sum(p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD) for p in params)
    if n not in (2, 3):
        raise TypeError(f"{cls.__name__}.forward must be forward(self, x_t, state) or "
                        f"forward(self, x_t, state, context), got forward{signature}")
    return n == 3


class Cell(Module):
    """Base class of recurrent cells: one time step `forward(x_t, state) -> (output, new_state)`,
    or `forward(x_t, state, context)` for a cell that reads a context.

    Shapes: `x_t` (B, I), `output` a Tensor (B, H); the state is a Tensor (B, H) or any nesting
    of tuples, lists, NamedTuples and dicts of Tensors (an LSTM's `(h, c)`, a memory cell's
    `((h, c), memory)`), and `new_state` must have the structure and shapes of `state`
    (`rnn.unroll` checks it at the first step and names the cell, the step and the path inside
    the state when it differs). Whole sequences are time-major, (T, B, I) in and (T, B, H) out,
    and are run by `rnn.unroll`, never by the cell.

    Context: anything fixed over time that each step reads (encoder outputs, their mask, a memory
    bank), a Tensor or any structure of Tensors like a state. A cell declares that it reads one by
    its signature, `forward(self, x_t, state, context)`: the class attribute `takes_context` is
    set from it once, when the class is created (set it in the class body to override).
    `rnn.unroll(cell, x, context=...)` then passes the same context to every step, and every
    layer and loop built on `unroll` passes it on.

    Fast paths (optional, declared here, never probed):

    - `precompute_inputs(inputs)`: the part of every step that depends on x_t only, for all T
      steps at once, (T, B, I) -> (T, B, G) (one matrix product instead of T); the loop then
      calls `step(gx_t, state[, context])` instead of `forward`. Default: None (no such part).
    - `sequence_kernel(inputs, state, lengths[, context])`: the whole loop as one op, returning
      `(outputs (T, B, H), final_state)`, lengths a host int64 array (B,) with values in [0, T]
      (0: the row keeps its state) or None. Default: None (run the step loop). A cell may
      return None at run time too (the LSTM does with peepholes or `fused=False`).

    A subclass calls `super().__init__(input_size, hidden_size, rng=..., dtype=..., device=...)`,
    creates its weights with `self.parameter(*shape)` (uniform(-1/sqrt(H), 1/sqrt(H)), as PyTorch)
    and writes `forward`. `initial_state(B)` gives zeros of shape (B, H) on the cell's device and
    dtype; override it for a tuple state. A cell that takes a context may define
    `initial_state(batch_size, context)` when its state's shape depends on the context (attention
    weights over the source positions): `unroll` then passes the context it was given.

    >>> import minigrad as mg, rnn
    >>> class Elman(rnn.Cell):
    ...     def __init__(self, n_in, n_hid):
    ...         super().__init__(n_in, n_hid, rng=0)
    ...         self.w, self.u = self.parameter(n_hid, n_in), self.parameter(n_hid, n_hid)
    ...     def forward(self, x, h):
    ...         h = mg.tanh(x @ self.w.T + h @ self.u.T)
    ...         return h, h
    >>> out, h = rnn.unroll(Elman(3, 4), mg.randn(5, 2, 3))
    >>> out.shape, h.shape
    ((5, 2, 4), (2, 4))
    """

    takes_context: bool = False
    initial_state_reads_context: bool = False  # initial_state(batch_size, context)

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        if "takes_context" not in cls.__dict__ and "forward" in cls.__dict__:
            found = _context_in_signature(cls)
            if found is not None:
                cls.takes_context = found
        if "initial_state" in cls.__dict__:
            params = list(inspect.signature(cls.initial_state).parameters.values())[1:]
            cls.initial_state_reads_context = len(params) >= 2

    def __init__(self, input_size: int | None = None, hidden_size: int | None = None, *,
                 rng=None, dtype=None, device=None):
        super().__init__()
        name = type(self).__name__
        self.input_size = None if input_size is None else checks.integer(
            input_size, name, "input_size", low=1)
        self.hidden_size = None if hidden_size is None else checks.integer(
            hidden_size, name, "hidden_size", low=1)
        # kept only to draw the weights a subclass creates in its __init__
        self._rng = generator(rng)
        try:
            self._init_dtype = np.dtype(dtype) if dtype is not None else mg.get_default_dtype()
        except TypeError:
            raise TypeError(f"{name}: dtype {dtype!r} is not a NumPy dtype") from None
        if self._init_dtype.kind != "f":
            raise TypeError(f"{name}: a cell's weights need a float dtype, got "
                            f"{self._init_dtype}")
        self._init_device = backend.get_device(device)

    @property
    def in_features(self) -> int | None:
        """Features expected in each `x_t` (B, in_features); `unroll` checks inputs against it."""
        return self.input_size

    def parameter(self, *shape: int, low: float | None = None, high: float | None = None,
                  value: float | None = None) -> Parameter:
        """A new Parameter of `shape`, uniform(-1/sqrt(H), 1/sqrt(H)) by default (or on
        [low, high], or filled with `value`), in the cell's dtype and on its device."""
        if value is not None:
            arr = np.full(shape, value, dtype=self._init_dtype)
        else:
            if low is None or high is None:
                bound = 1.0 / math.sqrt(self.hidden_size or 1)
                low, high = -bound, bound
            arr = self._rng.uniform(low, high, size=shape).astype(self._init_dtype)
        return Parameter(arr, device=self._init_device)

    def _like(self):
        """(dtype, device) of the cell's weights (they may have moved since __init__)."""
        for p in self.parameters():
            return p.dtype, p.device
        return self._init_dtype, self._init_device

    def zeros(self, batch_size: int, size: int | None = None) -> mg.Tensor:
        """Zeros (B, size) (default size H) in the cell's dtype and on its device."""
        dtype, device = self._like()
        return mg.zeros(batch_size, self.hidden_size if size is None else size, dtype=dtype,
                        device=device)

    def initial_state(self, batch_size: int):
        """The state before the first step: zeros (B, H) on the cell's device and dtype."""
        if self.hidden_size is None:
            raise ValueError(f"{type(self).__name__}: set self.hidden_size (or override "
                             "initial_state) so unroll can build the initial state")
        return self.zeros(batch_size)

    def __call__(self, x_t, state, *context, **kwargs):
        """One step, with its arguments checked first (`check_step`): a cell called by hand
        gets a clear error naming it. `rnn.unroll` checks the first step this way and calls
        `forward` directly after that, so the loop pays for the checks once."""
        check_step(self, x_t, state)
        return super().__call__(x_t, state, *context, **kwargs)

    def forward(self, x_t, state):  # pragma: no cover - abstract
        raise NotImplementedError(f"{type(self).__name__} must define forward(x_t, state)")

    def precompute_inputs(self, inputs):
        """Fast path: the input part of every step at once, (T, B, I) -> (T, B, G), or None."""
        return None

    def step(self, gx_t, state, *context):
        """One step from `precompute_inputs`' slice gx_t (B, G): (output, new_state)."""
        raise NotImplementedError(f"{type(self).__name__}.precompute_inputs returned a Tensor, "
                                  "so the cell must define step(gx_t, state)")

    def sequence_kernel(self, inputs, state, lengths, *context):
        """Fast path: the whole loop as one op, (outputs, final_state), or None."""
        return None

    def extra_repr(self) -> str:
        return f"{self.input_size}, {self.hidden_size}"


def check_input(cell, x, ndim: int = 2) -> None:
    """ValueError naming the cell when `x` is not (B, I) (ndim 2) or (T, B, I) (ndim 3)."""
    layout = "(B, I)" if ndim == 2 else "(T, B, I)"
    name = type(cell).__name__
    if not isinstance(x, mg.Tensor):
        raise TypeError(f"{name}: expected a Tensor {layout}, got {type(x).__name__}")
    if x.ndim != ndim:
        raise ValueError(f"{name}: expected input of rank {ndim} {layout}, got shape {x.shape}")
    if x.dtype.kind != "f":
        raise TypeError(f"{name}: expected a float input, got dtype {x.dtype}")
    want = cell.in_features
    if want is not None and x.shape[-1] != want:
        raise ValueError(f"{name}: input has {x.shape[-1]} features (shape {x.shape}), the cell "
                         f"expects {want}")


def check_step(cell, x_t, state) -> None:
    """The checks of one step's arguments, shared by every cell: `x_t` a float Tensor (B, I)
    with the cell's features and dtype; `state` a Tensor or structure of Tensors (`rnn.state`),
    each (B, ...) in the cell's dtype. TypeError or ValueError naming the cell."""
    name = type(cell).__name__
    check_input(cell, x_t)
    dtype = cell._like()[0]
    if x_t.dtype != dtype:
        raise TypeError(f"{name}: x_t is {x_t.dtype} but the cell's weights are {dtype}; "
                        f"convert one (mg.astype or dtype= when building the cell)")
    if state is None:
        raise TypeError(f"{name}: state is None; start from cell.initial_state(B) (rnn.unroll "
                        "does that for you)")
    tensors, spec = st.flatten(state, f"{name}: state")
    for path, t in zip(spec.paths(), tensors):
        if t.ndim == 0 or t.shape[0] != x_t.shape[0]:
            raise ValueError(f"{name}: {path} has shape {t.shape}, but x_t has batch size "
                             f"B = {x_t.shape[0]}; every state Tensor is (B, ...)")
        if t.dtype != dtype:
            raise TypeError(f"{name}: {path} is {t.dtype} but the cell's weights are {dtype}")
