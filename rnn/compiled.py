"""The compiled sequence path: a cell built from primitives run as one whole-sequence op.

`rnn.steps.run_steps` calls `run` after a cell's `sequence_kernel` declined (and never with
`per_step=True` or a `state_hook`). `run` traces one step of the cell (`minigrad.tracing`) on the
first two real steps of the sequence, with the random generators' states saved and restored,
and compares the two tapes: the same ops, keywords and plain numbers, and the same tensors read
from outside (a tensor or array made anew at each step may depend on the data). Then
`minigrad.scan` splits the step into what runs once (parameters only: `w.T`), what runs once
over all T steps (the input projections) and the recurrence, and runs the whole sequence as
one `Scan` node. Any difference between the two traced steps (data-dependent Python control
flow, values read through `.data`), or anything the path cannot take, means the per-op graph,
with the reason kept (`compile_report`).

Cache: per cell (weakly), per (shapes and dtypes of x_t, the state and the context, which of
them and of the parameters need a gradient, training flags, executor mode); an entry remembers
every tensor the cell's modules hold and is traced again when one was replaced. A step that
reads a tensor the cell does not hold (one made before the call: another graph's, a
closure's) is traced on every call, as it may be another tensor next time.

Switch: `compiling(mode)`: "auto" (default: numba's executor when `minigrad.jit` offers one and
it takes the program, else NumPy's), "numpy", "numba" (error when it is not available), "off"
(the per-op graph: one node per op and step, what the graph viewer shows). A program given to
numba's executor runs compiled from its first call (compiling takes about a second, once per
program and process, less when numba's on-disk cache has it): the executor never changes in
the middle of a run, so a run's round-off does not change at some step and a resumed run
continues bit for bit. `$MINIGRAD_COMPILE` sets a process's default mode.
"""
from __future__ import annotations

import contextlib
import os
import weakref

import numpy as np

import minigrad as mg
from minigrad import random as mg_random
from minigrad import scan, tracing
from minigrad.engine import state as engine_state
from rnn import state as st
from rnn.lengths import as_lengths

__all__ = ["MODES", "cache_entries", "compile_report", "compiling", "mode", "run"]

MODES = ("auto", "numpy", "numba", "off")
MODE_ENV = "MINIGRAD_COMPILE"  # the default mode of a process (the test suite sets "numpy")


def _default_mode() -> str:
    value = os.environ.get(MODE_ENV, "auto") or "auto"
    if value not in MODES:
        raise ValueError(f"rnn.compiled: ${MODE_ENV} must be one of {MODES}, got {value!r}")
    return value


_mode = [_default_mode()]
_cache: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


@contextlib.contextmanager
def compiling(mode: str):
    """Choose how `rnn.unroll` (and everything above it) runs a cell without a fused kernel:
    "auto" (default), "numpy", "numba" or "off" (the per-op graph). A context manager.

    >>> import minigrad as mg, rnn
    >>> cell = rnn.MUT1Cell(3, 3, rng=0)
    >>> with rnn.compiling("off"):
    ...     out, h = rnn.unroll(cell, mg.randn(4, 2, 3))
    >>> out.shape
    (4, 2, 3)
    """
    if mode not in MODES:
        raise ValueError(f"compiling: mode must be one of {MODES}, got {mode!r}")
    if mode == "numba":
        _jit_factory(required=True)
    prev = _mode[0]
    _mode[0] = mode
    try:
        yield
    finally:
        _mode[0] = prev


def mode() -> str:
    """The current mode of `compiling`."""
    return _mode[0]


def cache_entries(cell) -> list:
    """The cache's entries for `cell`: one per key, each a program or a fallback reason."""
    return list(_cache.get(cell, {}).values())


def _jit_factory(required: bool):
    """`minigrad.jit.make_executor` when importable (numba installed), else None (or an error
    when `required`)."""
    try:
        from minigrad import jit  # numba itself is optional: the `jit` extra
        if not jit.available():
            raise ImportError("numba is not installed")
        return jit.make_executor
    except ImportError as e:
        if required:
            raise ValueError(f"compiling('numba'): the numba executor is not available ({e}); "
                             "install the `jit` extra or use 'auto' or 'numpy'") from None
        return None


class _Entry:
    """A traced program for one cache key, or the reason the per-op graph runs instead."""
    __slots__ = ("program", "executor", "captured", "params", "reason", "kind", "projected")

    def __init__(self, program=None, executor=None, captured=(), params=(), reason=None,
                 kind=""):
        self.program, self.executor, self.captured = program, executor, captured
        self.params, self.reason, self.kind = params, reason, kind
        self.projected = None


def _generators(cell) -> list:
    """The default generator and every Generator a module of the cell holds (a cell's own
    dropout rng): their states are saved before tracing and restored after."""
    gens = [mg_random.default_generator()]
    for _, m in cell.named_modules():
        for v in vars(m).values():
            if isinstance(v, np.random.Generator) and all(v is not g for g in gens):
                gens.append(v)
    return gens


def _tensor_attributes(cell) -> tuple:
    """Every tensor the cell's modules hold as an attribute (parameters, buffers, others)."""
    return tuple(v for _, m in cell.named_modules() for v in vars(m).values()
                 if isinstance(v, mg.Tensor))


def _step_fn(cell, projected, n_state, spec, takes_context, ctx_spec):
    step = cell.step if projected else cell.forward

    def fn(x_t, *rest):
        state = st.unflatten(spec, rest[:n_state])
        if takes_context:
            return step(x_t, state, st.unflatten(ctx_spec, rest[n_state:]))
        return step(x_t, state)
    return fn


def _flat_result(res):
    out, new = res
    return [out] + st.flatten(new)[0]


def _trace_pair(cell, xs, state_flat, spec, ctx_flat, ctx_spec, projected):
    """Trace the cell's step on the first two real steps: (tape or None, reason or None, whether
    that outcome lasts: False when the step returned something wrong, which the per-op run
    reports); the random generators and frozen parameters are put back as they were."""
    fn = _step_fn(cell, projected, len(state_flat), spec, cell.takes_context, ctx_spec)
    gens = _generators(cell)
    saved_states = [g.bit_generator.state for g in gens]
    frozen = [p for p in cell.parameters() if not p.requires_grad]
    try:
        for p in frozen:  # so ops on them are recorded, and they are read at every run
            p.requires_grad = True
        ctx = [c.data for c in ctx_flat]
        a, res = tracing.trace(fn, [xs.data[0]] + [s.data for s in state_flat] + ctx,
                               _flat_result)
        problem = _check_result(res, state_flat, spec, xs.shape[1])
        if problem:  # the per-op run raises the error, naming the cell and the step
            return None, problem, False
        b, _ = tracing.trace(fn, [xs.data[1]] + [t.data for t in _flat_result(res)[1:]] + ctx,
                             _flat_result)
    finally:
        for p in frozen:
            p.requires_grad = False
        for g, s in zip(gens, saved_states):
            g.bit_generator.state = s
    reason = tracing.compare(a, b)
    if reason is not None:
        return None, f"the step differs between time steps 0 and 1: {reason}", True
    return a, None, True


def _check_result(res, state_flat, spec, B):
    if not isinstance(res, (tuple, list)) or len(res) != 2:
        return "the step did not return (output, new_state)"
    out, new = res
    if not isinstance(out, mg.Tensor) or out.ndim < 1 or out.shape[0] != B:
        return "the step's output is not a Tensor (B, ...)"
    try:
        flat, new_spec = st.flatten(new)
    except st.StateError:
        return "the new state is not a state"
    if new_spec != spec or any(a.shape != b.shape or a.dtype != b.dtype
                               for a, b in zip(flat, state_flat)):
        return "the new state differs from the state in structure, shapes or dtypes"
    return None


def _make_executor(program, mode_now):
    if mode_now in ("auto", "numba"):
        factory = _jit_factory(required=mode_now == "numba")
        if factory is not None:
            try:
                # compiled from the first run, never switching executors midway:
                # a run's round-off is the same from its first step to its last, and a run
                # resumed in a new process continues bit for bit (numba's tanh/exp are not
                # NumPy's to the last bit)
                return factory(program), "numba"
            except Exception as e:  # noqa: BLE001 - any refusal: NumPy's executor runs it
                if mode_now == "numba":
                    return scan.NumpyExecutor(program), f"numpy (numba refused: {e})"
    return scan.NumpyExecutor(program), "numpy"


def _plan(cell, inputs, state, lengths, context):
    """(entry, (n, state_flat, spec, ctx_flat, xs)): the program and what it runs on, or
    (entry, None) with entry.reason saying why the per-op graph runs."""
    mode_now = _mode[0]
    if mode_now == "off":
        return _Entry(reason="rnn.compiling('off')"), None
    if type(inputs.data) is not np.ndarray:
        return _Entry(reason=f"inputs on device '{inputs.device}' (the compiled path runs "
                      "NumPy arrays)"), None
    if engine_state.anomaly:
        return _Entry(reason="detect_anomaly() checks every op"), None
    T = inputs.shape[0]
    n = T if lengths is None else max(int(lengths.max()), 1)
    if n < 2:
        return _Entry(reason="fewer than two steps to run (the step is traced on two)"), None
    state_flat, spec = st.flatten(state)
    ctx_flat, ctx_spec = st.flatten(context, "context") if cell.takes_context else ([], None)
    grad = mg.is_grad_enabled()
    params = tuple(cell.parameters())
    attrs = _tensor_attributes(cell)
    key = (inputs.shape[1:], inputs.dtype, grad and inputs.requires_grad,
           tuple((t.shape, t.dtype, grad and t.requires_grad) for t in state_flat), spec,
           tuple((t.shape, t.dtype, grad and t.requires_grad) for t in ctx_flat), ctx_spec,
           tuple(grad and p.requires_grad for p in params),
           tuple(m.training for _, m in cell.named_modules()), mode_now)
    per_cell = _cache.setdefault(cell, {})
    entry = per_cell.get(key)
    if entry is not None and (len(entry.params) != len(attrs) or not all(
            a is b for a, b in zip(entry.params, attrs))):
        entry = None  # a parameter or another tensor of the cell was replaced: trace again
    if entry is not None and entry.reason is not None:
        return entry, None
    xs = inputs[:n] if n < T else inputs
    projected = cell.precompute_inputs(xs)
    if projected is not None:
        xs = projected
    if entry is not None and entry.projected == (projected is not None):
        return entry, (n, state_flat, spec, ctx_flat, xs)
    try:
        tape, reason, lasting = _trace_pair(cell, xs, state_flat, spec, ctx_flat, ctx_spec,
                                            projected is not None)
    except Exception as e:  # noqa: BLE001 - the per-op run raises it again, with its context
        tape, reason, lasting = None, f"tracing the step raised {type(e).__name__}: {e}", False
    if tape is None:
        entry = _Entry(reason=reason, params=attrs)
        if lasting:  # a program that differs is remembered; an error is not
            per_cell[key] = entry
        return entry, None
    captured = [t for _, t in tape.captured]
    requires = ([grad and xs.requires_grad] + [grad and t.requires_grad for t in state_flat]
                + [grad and t.requires_grad for t in ctx_flat]
                + [grad and t.requires_grad for t in captured])
    try:
        program = scan.build(tape, 1, len(state_flat), requires=requires)
    except scan.Unsupported as e:
        entry = _Entry(reason=str(e), params=attrs)
        per_cell[key] = entry
        return entry, None
    executor, kind = _make_executor(program, mode_now)
    entry = _Entry(program, executor, captured, attrs, kind=kind)
    entry.projected = projected is not None
    # kept only when every tensor read from outside is one the cell holds (checked at every
    # call): one made before the call (a graph's, a closure's) may be another one next time
    held = {id(t) for t in attrs}
    if all(id(t) in held for t in captured):
        per_cell[key] = entry
    return entry, (n, state_flat, spec, ctx_flat, xs)


def run(cell, inputs, state, lengths, context=None):
    """The whole sequence through the compiled path: `(outputs (T, B, H), final_state)`, or
    None when the per-op graph must run (`compile_report` says why)."""
    entry, plan = _plan(cell, inputs, state, lengths, context)
    if plan is None:
        return None
    n, state_flat, spec, ctx_flat, xs = plan
    T = inputs.shape[0]
    masks = None
    if lengths is not None:
        masks = (lengths[None, :] > np.arange(n)[:, None])[:, :, None]
    base = engine_state.tags
    engine_state.tags = base + (("module", cell.module_path),)
    try:
        out, final = scan.Scan.run(xs, state_flat, ctx_flat + list(entry.captured),
                                   entry.program, masks, entry.executor)
    finally:
        engine_state.tags = base
    if n < T:
        out = mg.pad(out, ((0, T - n),) + ((0, 0),) * (out.ndim - 1))
    return out, st.unflatten(spec, final)


def compile_report(cell, inputs, state=None, context=None, lengths=None) -> str:
    """Which path `rnn.unroll(cell, inputs, state, context=context)` takes and why: the fused
    kernel, the compiled program (its invariant, hoisted and per-step ops and executor), or the
    per-op graph with the reason.

    >>> import minigrad as mg, rnn
    >>> report = rnn.compile_report(rnn.MUT1Cell(3, 3, rng=0), mg.randn(5, 2, 3))
    >>> report.split(" (")[0]
    'MUT1Cell: compiled'
    """
    from rnn import steps  # steps calls `run`: imported here, not at the top (a cycle)
    name, who = type(cell).__name__, "compile_report"
    inputs = steps.as_inputs(cell, inputs, who)  # the same checks as rnn.unroll's
    T, B = inputs.shape[0], inputs.shape[1]
    steps.check_context(cell, context, who)
    state = steps.start_state(cell, state, B, who, context)
    lengths = as_lengths(lengths, B, T, name)
    if lengths is not None and lengths.min() >= T:
        lengths = None
    extra = (context,) if cell.takes_context else ()
    # the kernel runs to say whether it takes the sequence (with a graph: its output's node
    # tells a hand kernel from a built-in cell's compiled step, rnn.cells.compiled_is_faster)
    result = cell.sequence_kernel(inputs, state, lengths, *extra)
    if result is not None:
        node = result[0]._node
        if isinstance(node, scan.Scan):
            return (f"{name}: its sequence_kernel runs its composed step compiled "
                    f"({type(node.executor).__name__})")
        return f"{name}: its own sequence_kernel (a fused whole-sequence op) runs"
    entry, _ = _plan(cell, inputs, state, lengths, context)
    if entry.reason is not None:
        return f"{name}: per-op graph, because {entry.reason}"
    return f"{name}: compiled ({entry.kind} executor) {entry.program.describe()}"
