"""Scan: a traced step function run over a whole sequence as one op, on raw arrays.

A step is `(x_t, carry, invariants) -> (y_t, new_carry)`, traced once into a `Tape`
(`minigrad.tracing`). `build(tape, ...)` splits its ops three ways:

- *invariant* ops depend only on invariants (parameters, constants, the context): run once
  before the loop (`w.T`, a projection of the context);
- *hoisted* ops depend on x_t and invariants only and act row by row (elementwise ops, `x @ W`
  with an invariant 2-D W, ops along a given axis, basic slicing): run once over all T steps
  at once, so the input projections become one matrix product over T*B rows;
- *per-step* ops (the recurrence, and every op that draws random numbers, so the draws happen
  in the order of the per-op run): run by an executor for t = 0..T-1.

`Scan.apply(x, *carry0, *invariants, program=, masks=, executor=)` is the whole sequence as one
engine node: outputs `(y (T, B, ...), *final_carry)`. Backward runs the executor's backward
(t = T-1..0), then the hoisted ops' backward once over all T, then the invariant ops' backward
once with the summed gradients. What backward needs is saved with `save_for_backward` (counted
by `mg.memory`). Its `composed` twin replays the step tape op by op (one node per op and step),
which is what create_graph / second order differentiate.

Lengths: `masks` (T, B, 1) bool or None; at a masked-out row the output is 0 and the carry keeps
its old value (`rnn.steps.run_steps`' rule), in backward too.

Executor interface (the NumPy one is `NumpyExecutor` here; others, e.g. numba, follow it)::

    executor = make(program)       # a class or factory; raise an exception naming why it
                                   # cannot run this program (the caller falls back)
    out, final_carry, saved = executor.forward(seqs, carry0, invariants, masks, need_grad)
    g_seqs, g_carry0, g_invariants = executor.backward(saved, g_out, g_final_carry)

- `seqs`: list of arrays (T, ...), one per `program.seq_slots` (step t reads `seqs[k][t]`);
  `carry0`: list of arrays, one per `program.carry_slots`; `invariants`: list of arrays, one per
  `program.invariant_slots`; `masks`: (T, B, 1) bool array or None; `need_grad`: whether backward
  will be called (save nothing otherwise).
- `out`: array (T,) + shape of `program.out_slot` (masked rows 0); `final_carry`: list of
  arrays, one per `program.carry_out_slots` (carry kept at masked rows); `saved`: a tuple whose
  array items are what backward holds (counted by `mg.memory`; other items ride along).
- `g_out`: array like `out` or None; `g_final_carry`: list (entries None where no gradient).
- Results: lists aligned with seqs / carry0 / invariants; an entry is an array or None (no
  gradient flows there). Only slots in `program.needs_grad` need a gradient.

`program` (a `Program`) gives: `step` (a `Tape` of the per-step ops only: `step.ops`,
`step.meta[slot] = (shape, dtype)` with per-step shapes, e.g. (B, H)), `seq_slots`, `carry_slots`,
`invariant_slots` (the step's input slots, in the order of the lists above), `consts`
(slot -> array: constant inputs, also readable by the step's ops), `out_slot`,
`carry_out_slots` (may be any slot: an input slot when the state passes through unchanged),
`needs_grad` (set of slots whose gradient is wanted), `deferred` (indices into `step.ops` of
`MatMul(a, w)` ops with `w` an invariant 2-D slot: their `w` gradient may be summed over all
steps in one product after the loop; the NumPy executor does so).
"""
from __future__ import annotations

import numpy as np

from minigrad import ops
from minigrad.engine import Function, unbroadcast
from minigrad.tracing import Const, Tape, TapeOp, is_random, replay

__all__ = ["NumpyExecutor", "Program", "Scan", "Unsupported", "build"]


class Unsupported(Exception):
    """An executor or the builder cannot run a program; the message says why."""


ELEMENTWISE = (ops.Add, ops.Sub, ops.Mul, ops.Div, ops.Pow, ops.Maximum, ops.Minimum, ops.Where,
               ops.Neg, ops.Exp, ops.Log, ops.Sqrt, ops.Abs, ops.Tanh, ops.Sigmoid, ops.Relu,
               ops.LeakyRelu, ops.Elu, ops.Softplus, ops.Clip, ops.AsType)
# ops that act along `axis` (kwarg; its default when absent): the time axis shifts it by one
ALONG_AXIS = {ops.Softmax: -1, ops.LogSoftmax: -1, ops.Sum: None, ops.Mean: None, ops.Max: None,
              ops.Min: None, ops.LogSumExp: None, ops.Split: 0, ops.Concat: 0}


class Program:
    """A step split for a scan (see the module docstring for the fields)."""

    def __init__(self):
        self.full: Tape = None        # the whole step as traced (for the composed twin)
        self.step = Tape()            # per-step ops only
        self.invariant_ops: list[TapeOp] = []
        self.hoisted_ops: list[TapeOp] = []   # with kwargs already shifted for the time axis
        self.x_slot = None
        self.seq_slots: list[int] = []
        self.carry_slots: list[int] = []
        self.invariant_slots: list[int] = []
        self.consts: dict[int, object] = {}
        self.out_slot = None
        self.carry_out_slots: list[int] = []
        self.needs_grad: set[int] = set()
        self.deferred: list[int] = []
        self.input_invariants: list[int] = []  # slots of the Scan's invariant inputs, in order

    def describe(self) -> str:
        names = lambda tape_ops: ", ".join(op.fn_class.__name__ for op in tape_ops) or "none"  # noqa: E731
        return (f"invariant ops (once): {names(self.invariant_ops)}; hoisted over all steps: "
                f"{names(self.hoisted_ops)}; per step: {names(self.step.ops)}")


def _axis_shift(axis):
    if isinstance(axis, tuple):
        return tuple(_axis_shift(a) for a in axis)
    return axis if axis < 0 else axis + 1


def _hoisted(op: TapeOp, kinds, meta):
    """op with its keywords for arrays with a leading time axis, or None if it is not row-wise."""
    cls, args = op.fn_class, op.args
    seq_args = [a for a in args if not isinstance(a, Const) and kinds[a] == "seq"]
    out_ndim = len(meta[op.outs[0]][0])
    if cls in ELEMENTWISE:
        if all(len(meta[a][0]) == out_ndim for a in seq_args):
            return op
        return None
    if cls is ops.MatMul:
        x, w = args
        if (not isinstance(x, Const) and kinds[x] == "seq" and len(meta[x][0]) >= 2
                and not isinstance(w, Const) and kinds[w] == "inv" and len(meta[w][0]) == 2):
            return op
        return None
    if cls in ALONG_AXIS:
        axis = op.kwargs.get("axis", ALONG_AXIS[cls])
        if axis is None or len(seq_args) != len(args):
            return None
        if not all(isinstance(a, (int, np.integer)) for a in np.atleast_1d(axis)):
            return None
        return TapeOp(cls, {**op.kwargs, "axis": _axis_shift(axis)}, args, op.outs)
    if cls is ops.GetItem:
        index = op.kwargs["index"]
        items = index if isinstance(index, tuple) else (index,)
        if all(isinstance(i, (slice, int)) and not isinstance(i, bool) for i in items):
            return TapeOp(cls, {"index": (slice(None),) + items}, args, op.outs)
    return None


def build(tape: Tape, n_x: int, n_carry: int, *, y_index: int = 0, requires=None) -> Program:
    """Split a traced step into a Program. The tape's inputs are `n_x` (1) per-step input(s),
    then `n_carry` carry tensors, then invariant inputs (the context); its captured tensors are
    invariants too. Outputs: `tape.outputs[y_index]` is y_t, the ones after it the new carry.
    `requires`: per tape input and captured tensor (in that order), whether it needs a gradient
    (default: all)."""
    if n_x != 1:
        raise Unsupported("one per-step input is supported")
    p = Program()
    p.full = tape
    meta = tape.meta
    kinds = {}
    x = tape.inputs[0]
    kinds[x] = "seq"
    carry = tape.inputs[1:1 + n_carry]
    for s in carry:
        kinds[s] = "step"
    invariant_inputs = tape.inputs[1 + n_carry:] + [s for s, _ in tape.captured]
    for s in invariant_inputs:
        kinds[s] = "inv"
    p.input_invariants = invariant_inputs
    needs = set()
    flags = requires if requires is not None else [True] * len(tape.inputs + tape.captured)
    for s, need in zip(tape.inputs + [s for s, _ in tape.captured], flags):
        if need:
            needs.add(s)
    live = _live_ops(tape)
    for i, op in enumerate(tape.ops):
        if i not in live:
            continue
        arg_kinds = {kinds[a] for a in op.args if not isinstance(a, Const)}
        if any(a in needs for a in op.args if not isinstance(a, Const)):
            needs.update(op.outs)
        if is_random(op):
            kind, placed = "step", op
        elif arg_kinds <= {"inv"}:
            kind, placed = "inv", op
        elif arg_kinds <= {"inv", "seq"} and (placed := _hoisted(op, kinds, meta)) is not None:
            kind = "seq"
        else:
            kind, placed = "step", op
        for s in op.outs:
            kinds[s] = kind
        {"inv": p.invariant_ops, "seq": p.hoisted_ops, "step": p.step.ops}[kind].append(placed)
    p.needs_grad = needs
    p.x_slot = x
    p.out_slot = tape.outputs[y_index]
    p.carry_out_slots = tape.outputs[y_index + 1:]
    # the per-step program's inputs: seq and invariant slots it (or its outputs) reads
    used = set()
    for op in p.step.ops:
        used.update(a for a in op.args if not isinstance(a, Const))
    used.add(p.out_slot)
    used.update(p.carry_out_slots)
    p.seq_slots = sorted(s for s in used if kinds.get(s) == "seq")
    p.invariant_slots = sorted(s for s in used if kinds.get(s) == "inv")
    p.carry_slots = list(carry)
    p.step.inputs = p.seq_slots + p.carry_slots + p.invariant_slots
    p.step.outputs = [p.out_slot] + p.carry_out_slots
    p.step.meta = meta
    # plain values an op was given become constant slots (the executor reads every input from
    # a slot); they keep their op's position
    n = len(meta)
    for part in (p.invariant_ops, p.hoisted_ops, p.step.ops):
        for j, op in enumerate(part):
            if any(isinstance(a, Const) for a in op.args):
                args = []
                for a in op.args:
                    if isinstance(a, Const):
                        p.consts[n] = a.value
                        meta[n] = (np.shape(a.value), getattr(a.value, "dtype", None))
                        kinds[n] = "const"
                        args.append(n)
                        n += 1
                    else:
                        args.append(a)
                part[j] = op._replace(args=tuple(args))
    p.deferred = [i for i, op in enumerate(p.step.ops)
                  if op.fn_class is ops.MatMul and kinds.get(op.args[1]) == "inv"
                  and len(meta[op.args[1]][0]) == 2 and len(meta[op.args[0]][0]) == 2]
    return p


def _live_ops(tape: Tape) -> set:
    """Indices of the ops the outputs depend on, and of every random op (its draws count)."""
    want = set(tape.outputs)
    live = set()
    for i in range(len(tape.ops) - 1, -1, -1):
        op = tape.ops[i]
        if is_random(op) or any(s in want for s in op.outs):
            live.add(i)
            want.update(a for a in op.args if not isinstance(a, Const))
    return live


# --- running ops on arrays -------------------------------------------------------------------

def _run(op_cls, kwargs, args, parents):
    """A fresh op object run forward on arrays: (op, outputs as a tuple)."""
    fn = object.__new__(op_cls)
    fn.saved = ()
    fn.parents = parents
    out = fn.forward(*args, **kwargs)
    if type(out) is tuple:
        return fn, out
    if type(out) is not np.ndarray:
        out = np.asarray(out)
    return fn, (out,)


def _gouts(fn, gouts, metas):
    """Zeros for the outputs no gradient reached (as the engine gives a several-output op)."""
    return [np.zeros(m[0], m[1]) if g is None else g for g, m in zip(gouts, metas)]


def _add(a, b):
    return b if a is None else a + b


def run_ops(tape_ops, env, meta, needs, lead=()):
    """Run ops forward on arrays in `env` (slot -> array); returns the op objects (for
    backward; None for an op no gradient goes through). `lead`: leading axes of the arrays
    (the time axis of hoisted ops)."""
    fns = []
    for op in tape_ops:
        args = [env[a] for a in op.args]
        parents = [1 if a in needs else None for a in op.args]
        matmul = op.fn_class is ops.MatMul and lead
        if matmul:  # (T, B, I) @ (I, H) as one (T*B, I) @ (I, H) product
            x = args[0]
            args[0] = x.reshape((-1, x.shape[-1]))
        fn, outs = _run(op.fn_class, op.kwargs, args, parents)
        if matmul:
            outs = (outs[0].reshape(x.shape[:-1] + outs[0].shape[-1:]),)
        for s, o in zip(op.outs, outs):
            env[s] = o
        fns.append(fn if any(parents) else None)
    return fns


def backward_ops(tape_ops, fns, genv, meta, needs, lead=(), lead_slots=frozenset()):
    """Backward of ops run by `run_ops`, in reverse, accumulating into `genv` (slot -> grad);
    the slots in `lead_slots` hold arrays with the leading axes `lead`."""
    def shape_of(s):
        return lead + meta[s][0] if s in lead_slots else meta[s][0]

    for op, fn in zip(reversed(tape_ops), reversed(fns)):
        if fn is None:
            continue
        gouts = [genv.get(s) for s in op.outs]
        if all(g is None for g in gouts):
            continue
        if len(gouts) > 1:
            gouts = _gouts(fn, gouts, [(shape_of(s), meta[s][1]) for s in op.outs])
        matmul = op.fn_class is ops.MatMul and lead
        if matmul:
            g = gouts[0]
            gouts = [g.reshape((-1, g.shape[-1]))]
        gxs = fn.backward(*gouts)
        if type(gxs) is not tuple:
            gxs = (gxs,)
        if matmul and gxs[0] is not None:
            gxs = (gxs[0].reshape(shape_of(op.args[0])),) + gxs[1:]
        for a, g in zip(op.args, gxs):
            if g is None or a not in needs:
                continue
            if type(g) is not np.ndarray:
                g = np.asarray(g)
            shape = shape_of(a)
            if g.shape != shape:
                g = unbroadcast(g, shape)
            genv[a] = _add(genv.get(a), g)


# --- the NumPy executor ----------------------------------------------------------------------

class NumpyExecutor:
    """Runs a program's per-step ops on NumPy arrays: each op's own forward and backward on a
    fresh op object per step (its saved state, `needs_input_grad` and random draws as in the
    per-op run), with slot lists, unbroadcast shapes and op callables prepared once here.
    The `w` gradient of a deferred `a @ w` is one product over all steps after the loop."""

    def __init__(self, program: Program):
        p = self.program = program
        meta = p.step.meta
        needs = p.needs_grad
        deferred = set(p.deferred)
        self.n_slots = max(meta) + 1
        plan = []
        for i, op in enumerate(p.step.ops):
            parents = [1 if a in needs else None for a in op.args]
            if i in deferred:
                parents[1] = None
            grads = [(j, a, meta[a][0]) for j, a in enumerate(op.args) if a in needs]
            if i in deferred:
                grads = [g for g in grads if g[0] == 0]
            metas = [meta[s] for s in op.outs] if len(op.outs) > 1 else None
            keep = any(a in needs for a in op.args)
            plan.append((op.fn_class, op.kwargs, op.args, op.outs, parents, grads, metas, keep,
                         op.args[1] if i in deferred and op.args[1] in needs else None))
        self.plan = plan
        self.seq_pos = list(zip(range(len(p.seq_slots)), p.seq_slots))
        self.out_meta = meta[p.out_slot]

    def forward(self, seqs, carry0, invariants, masks, need_grad):
        p = self.program
        new = object.__new__
        env = [None] * self.n_slots
        for s, v in p.consts.items():
            env[s] = v
        for s, v in zip(p.invariant_slots, invariants):
            env[s] = v
        carry = list(carry0)
        T = len(seqs[0]) if seqs else len(masks)
        out = np.empty((T,) + self.out_meta[0], self.out_meta[1])
        first_masked = _first_masked(masks, T)
        carry_slots, carry_out, out_slot = p.carry_slots, p.carry_out_slots, p.out_slot
        steps = []  # per step: the op objects backward needs
        saved_arrays = []
        plan, seq_pos = self.plan, self.seq_pos
        deferred_inputs = {}
        for t in range(T):
            for k, s in seq_pos:
                env[s] = seqs[k][t]
            for s, v in zip(carry_slots, carry):
                env[s] = v
            fns = []
            for i, (cls, kw, args, outs, parents, _, _, keep, dw) in enumerate(plan):
                fn = new(cls)
                fn.saved = ()
                fn.parents = parents
                o = fn.forward(*[env[a] for a in args], **kw)
                if type(o) is tuple:
                    for s, v in zip(outs, o):
                        env[s] = v
                else:
                    env[outs[0]] = o if type(o) is np.ndarray else np.asarray(o)
                if need_grad and keep:
                    fns.append(fn)
                    saved_arrays.extend(fn.saved)
                    if dw is not None:
                        deferred_inputs.setdefault(i, []).append(env[args[0]])
                else:
                    fns.append(None)
            y = env[out_slot]
            new_carry = [env[s] for s in carry_out]
            if t >= first_masked:
                m = masks[t]
                y = np.where(m, y, 0.0)
                new_carry = [np.where(_rows(m, v.ndim), v, old)
                             for v, old in zip(new_carry, carry)]
            out[t] = y
            carry = new_carry
            if need_grad:
                steps.append(fns)
        if not need_grad:
            return out, carry, ()
        for xs in deferred_inputs.values():
            saved_arrays.extend(xs)
        return out, carry, (*saved_arrays, (steps, masks, first_masked, deferred_inputs))

    def backward(self, saved, g_out, g_final_carry):
        p = self.program
        steps, masks, first_masked, deferred_inputs = saved[-1]
        meta = p.step.meta
        needs = p.needs_grad
        T = len(steps)
        g_carry = list(g_final_carry) if g_final_carry is not None else [None] * len(
            p.carry_slots)
        g_seqs = [np.zeros((T,) + meta[s][0], meta[s][1]) if s in needs else None
                  for s in p.seq_slots]
        g_inv = [None] * len(p.invariant_slots)
        inv_pos = {s: k for k, s in enumerate(p.invariant_slots)}
        seq_pos = list(enumerate(p.seq_slots))
        deferred_gouts = {i: [None] * T for i in deferred_inputs}
        plan = self.plan
        rev = list(range(len(plan) - 1, -1, -1))
        carry_slots, carry_out, out_slot = p.carry_slots, p.carry_out_slots, p.out_slot
        for t in range(T - 1, -1, -1):
            genv = [None] * self.n_slots
            masked = t >= first_masked
            m = masks[t] if masked else None
            if g_out is not None:
                g = g_out[t]
                genv[out_slot] = np.where(m, g, 0.0) if masked else g
            passed = [None] * len(carry_slots)
            for k, (s, g) in enumerate(zip(carry_out, g_carry)):
                if g is None:
                    continue
                if masked:
                    r = _rows(m, g.ndim)
                    z = np.zeros((), g.dtype)
                    passed[k] = np.where(r, z, g)
                    g = np.where(r, g, z)
                genv[s] = g if genv[s] is None else genv[s] + g
            fns = steps[t]
            for i in rev:
                fn = fns[i]
                if fn is None:
                    continue
                cls, kw, args, outs, parents, grads, metas, keep, dw = plan[i]
                if metas is None:
                    gouts = (genv[outs[0]],)
                    if gouts[0] is None:
                        continue
                else:
                    gouts = [genv[s] for s in outs]
                    if all(g is None for g in gouts):
                        continue
                    gouts = _gouts(fn, gouts, metas)
                if dw is not None:
                    deferred_gouts[i][t] = gouts[0]
                    if not grads:
                        continue
                gxs = fn.backward(*gouts)
                if type(gxs) is not tuple:
                    gxs = (gxs,)
                for j, a, shape in grads:
                    g = gxs[j]
                    if g is None:
                        continue
                    if g.shape != shape:
                        g = unbroadcast(g if type(g) is np.ndarray else np.asarray(g), shape)
                    genv[a] = g if genv[a] is None else genv[a] + g
            for k, s in seq_pos:
                g = genv[s]
                if g is not None and g_seqs[k] is not None:
                    g_seqs[k][t] = g
            for s, k in inv_pos.items():
                g = genv[s]
                if g is not None:
                    g_inv[k] = g if g_inv[k] is None else g_inv[k] + g
            g_carry = [_add(q, genv[s]) if genv[s] is not None else q
                       for s, q in zip(carry_slots, passed)]
        for i, xs in deferred_inputs.items():
            gs = deferred_gouts[i]
            rows = [k for k in range(T) if gs[k] is not None]
            if not rows:
                continue
            x = np.concatenate([xs[k] for k in rows], axis=0)
            g = np.concatenate([gs[k] for k in rows], axis=0)
            gw = x.T @ g
            k = inv_pos[plan[i][2][1]]
            g_inv[k] = gw if g_inv[k] is None else g_inv[k] + gw
        return g_seqs, g_carry, g_inv


def _first_masked(masks, T):
    """The first step at which some row has ended (T when none has)."""
    if masks is None:
        return T
    running = masks.reshape(T, -1).all(axis=1)
    ended = np.flatnonzero(~running)
    return int(ended[0]) if len(ended) else T


def _rows(m, ndim):
    return m if ndim == 2 else m.reshape((m.shape[0],) + (1,) * (ndim - 1))


# --- the whole sequence as one op ------------------------------------------------------------

class Scan(Function):
    """(y (T, B, ...), *final_carry) = a program's step run over x (T, B, I) from carry0, with
    the invariants (see the module docstring); gradients by BPTT over raw arrays.

    Saves: every per-step op's own saved arrays (what its backward needs, nothing else), the
    hoisted and invariant ops' saved arrays, and for a deferred `a @ w` the per-step `a` (one
    product gives w's gradient after the loop)."""

    def forward(self, x, *rest, program, masks, executor):
        p = program
        nc = len(p.carry_slots)
        carry0, inv_in = rest[:nc], rest[nc:]
        self.program, self.executor = program, executor
        need_grad = any(self.needs_input_grad)
        env = dict(p.consts)
        env[p.x_slot] = x
        for s, v in zip(p.input_invariants, inv_in):
            env[s] = v
        needs = p.needs_grad
        inv_fns = run_ops(p.invariant_ops, env, p.step.meta, needs)
        T = x.shape[0]
        hoist_fns = run_ops(p.hoisted_ops, env, p.step.meta, needs, lead=(T,))
        seqs = [env[s] for s in p.seq_slots]
        invariants = [env[s] for s in p.invariant_slots]
        out, final, saved = executor.forward(seqs, list(carry0), invariants, masks, need_grad)
        if need_grad:
            arrays = [a for fns in (inv_fns, hoist_fns) for fn in fns if fn is not None
                      for a in fn.saved]
            self.save_for_backward(*saved[:-1], *arrays,
                                   _Box((saved[-1:], len(saved) - 1, inv_fns, hoist_fns, T)))
        return (out, *final)

    def backward(self, g_out, *g_final):
        p = self.program
        box = self.saved[-1].value
        ex_tail, n_ex, inv_fns, hoist_fns, T = box
        ex_saved = (*self.saved[:n_ex], *ex_tail)
        executor = self.executor
        g_seqs, g_carry0, g_inv = executor.backward(ex_saved, g_out, list(g_final))
        meta, needs = p.step.meta, p.needs_grad
        genv = {}
        for s, g in zip(p.seq_slots, g_seqs):
            if g is not None:
                genv[s] = g
        for s, g in zip(p.invariant_slots, g_inv):
            if g is not None:
                genv[s] = _add(genv.get(s), g)
        timed = {p.x_slot} | {s for op in p.hoisted_ops for s in op.outs}
        backward_ops(p.hoisted_ops, hoist_fns, genv, meta, needs, (T,), timed)
        backward_ops(p.invariant_ops, inv_fns, genv, meta, needs)
        gx = genv.get(p.x_slot)
        return (gx, *g_carry0, *[genv.get(s) for s in p.input_invariants])

    @classmethod
    def run(cls, x, carry0, invariants, program, masks, executor):
        """Apply the scan (Tensors in, Tensors out): returns (y, final_carry list)."""
        res = cls.apply(x, *carry0, *invariants, program=program, masks=masks,
                        executor=executor)
        return res[0], list(res[1:])

    @staticmethod
    def composed(x, *rest, program, masks, executor):
        """The per-op run of the same step (one node per op and step): for create_graph."""
        from minigrad import functions as F
        p = program
        nc = len(p.carry_slots)
        carry, inv_in = list(rest[:nc]), rest[nc:]
        tape = p.full
        outs = []
        for t, x_t in enumerate(F.unstack(x)):
            values = {tape.inputs[0]: x_t}
            values.update(zip(p.carry_slots, carry))
            values.update(zip(p.input_invariants, inv_in))
            env = replay(tape, values)
            y = env[p.out_slot]
            new = [env[s] for s in p.carry_out_slots]
            if masks is not None:
                m = masks[t]
                y = F.where(m, y, 0.0)
                new = [F.where(_rows(m, v.ndim), v, old) for v, old in zip(new, carry)]
            outs.append(y)
            carry = new
        return (F.stack(outs, axis=0), *carry)


class _Box:
    """Non-array state a Scan node keeps for backward (freed with its saved arrays)."""
    __slots__ = ("value",)

    def __init__(self, value):
        self.value = value
