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

`Scan.run(x, carry0, invariants, program, masks, executor)` applies the whole sequence as one
engine node (`Scan`): outputs `(y (T, B, ...), final_carry)`. Backward runs the executor's backward
(t = T-1..0), then the hoisted ops' backward once over all T, then the invariant ops' backward
once with the summed gradients. What backward needs is saved with `save_for_backward` (counted
by `mg.memory`). Its `composed` twin replays the step tape op by op (one node per op and step),
which is what create_graph / second order differentiate; random ops bound to the default
generator (`program.default_rng`) are rebound to the current one at each run, and the replay
starts from the generator state the forward started from, so it draws what the forward drew.

Lengths: `masks` (T, B, 1) bool or None; at a masked-out row the output is 0 and the carry keeps
its old value (`rnn.steps.run_steps`' rule), in backward too.

Executor interface (the NumPy one is `NumpyExecutor` here; others, e.g. numba, follow it)::

    executor = make(program)       # a class or factory; raise an exception naming why it
                                   # cannot run this program (the caller falls back)
    out, final_carry, saved = executor.forward(seqs, carry0, invariants, masks, need_grad)
    g_seqs, g_carry0, g_invariants = executor.backward(saved, g_out, g_final_carry)

- `seqs`: list of arrays (T, ...), one per `program.seq_slots` (step t reads `seqs[k][t]`;
  never empty: x_t's slot is always among them, so T = len(seqs[0]));
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
(slot -> value, a number or array: the plain values ops were given), `out_slot`,
`carry_out_slots` (may be any slot: an input slot when the state passes through unchanged),
`needs_grad` (set of slots whose gradient is wanted), `deferred` (indices into `step.ops` of
`MatMul(a, w)` ops with `w` an invariant 2-D slot: their `w` gradient may be summed over all
steps in one product after the loop; the NumPy executor does so).
"""
from __future__ import annotations

import numpy as np

from minigrad import functions as F
from minigrad import ops, random
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
        # (kwargs, key) of random ops that drew from the default generator when traced: they
        # draw from the default generator of the moment (mg.manual_seed replaces it)
        self.default_rng: list[tuple[dict, str]] = []

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
    p.needs_grad = needs = _needs(tape, live, needs, carry, tape.outputs[y_index + 1:])
    for i, op in enumerate(tape.ops):
        if i not in live:
            continue
        arg_kinds = {kinds[a] for a in op.args if not isinstance(a, Const)}
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
    p.x_slot = x
    p.out_slot = tape.outputs[y_index]
    p.carry_out_slots = tape.outputs[y_index + 1:]
    # the per-step program's inputs: seq and invariant slots it (or its outputs) reads
    used = set()
    for op in p.step.ops:
        used.update(a for a in op.args if not isinstance(a, Const))
    used.add(p.out_slot)
    used.update(p.carry_out_slots)
    used.add(x)  # so that seqs is never empty: T = len(seqs[0])
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
    default = random.default_generator()
    p.default_rng = [(op.kwargs, k) for op in p.step.ops for k, v in op.kwargs.items()
                     if v is default]
    p.deferred = [i for i, op in enumerate(p.step.ops)
                  if op.fn_class is ops.MatMul and kinds.get(op.args[1]) == "inv"
                  and len(meta[op.args[1]][0]) == 2 and len(meta[op.args[0]][0]) == 2]
    return p


def _needs(tape, live, needs, carry, carry_out) -> set:
    """The slots that need a gradient: those depending on an input that needs one. A carry
    needs one when the new carry does (from the second step on it depends on the first)."""
    while True:
        needs = set(needs)
        for i, op in enumerate(tape.ops):
            if i in live and any(a in needs for a in op.args if not isinstance(a, Const)):
                needs.update(op.outs)
        more = {c for c, o in zip(carry, carry_out) if o in needs and c not in needs}
        if not more:
            return needs
        needs |= more


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
    """Runs a program's per-step ops on NumPy arrays, from Python source generated once per
    program: one line per op and step (`v7 = _tanh(v6)`), the backward formulas of the common
    primitives written out likewise (their op classes' own formulas), any other op through its
    class's `forward` / `backward` on a fresh op object per step (its saved state,
    `needs_input_grad` and random draws as in the per-op run). Shapes, unbroadcasting and which
    gradients exist are decided here, once. The `w` gradient of a deferred `a @ w` is one
    product over all steps after the loop."""

    def __init__(self, program: Program):
        self.program = program
        source, names = _generate(program)
        self.source = source
        scope = dict(names)
        exec(compile(source, f"<scan program {id(program):x}>", "exec"), scope)  # noqa: S102
        self._forward, self._backward = scope["forward"], scope["backward"]

    def forward(self, seqs, carry0, invariants, masks, need_grad):
        p = self.program
        T = len(seqs[0])
        shape, dtype = p.step.meta[p.out_slot]
        out = np.empty((T,) + shape, dtype)
        first = _first_masked(masks, T)
        final, tape, deferred = self._forward(seqs, list(carry0), invariants, p.consts, T, out,
                                              masks, first, need_grad)
        if not need_grad:
            return out, final, ()
        # a step's slice of a whole-sequence array counts as that array, once
        bases = {id(a if a.base is None else a.base) for a in seqs}
        arrays, whole = [], {}
        for record in tape:
            for v in record:
                if isinstance(v, Function):
                    arrays.extend(v.saved)
                elif id(getattr(v, "base", None)) in bases:
                    whole[id(v.base)] = v.base
                else:
                    arrays.append(v)
        arrays.extend(whole.values())
        for xs in deferred:
            arrays.extend(xs)
        return out, final, (*arrays, (tape, deferred, masks, first, invariants, carry0))

    def backward(self, saved, g_out, g_final_carry):
        p = self.program
        tape, deferred, masks, first, invariants, carry0 = saved[-1]
        T = len(tape)
        meta = p.step.meta
        if g_out is None:
            g_out = np.zeros((T,) + meta[p.out_slot][0], meta[p.out_slot][1])
        g_carry = [np.zeros(meta[s][0], meta[s][1]) if g is None else g
                   for s, g in zip(p.carry_out_slots, g_final_carry or
                                   [None] * len(p.carry_out_slots))]
        return self._backward(tape, deferred, masks, first, invariants, p.consts, T, g_out,
                              g_carry)


_TEMPLATES = {}


def _template(cls):
    def register(fn):
        _TEMPLATES[cls] = fn
        return fn
    return register


# Each template: (forward lines, slots backward needs, backward(g, needs) -> {arg index: expr})
# written from the op class's own forward/backward so the numbers are the per-op run's.

@_template(ops.Add)
def _add_t(o, a, shapes):
    return [f"{o} = {a[0]} + {a[1]}"], [], lambda g: {0: g, 1: g}


@_template(ops.Sub)
def _sub_t(o, a, shapes):
    return [f"{o} = {a[0]} - {a[1]}"], [], lambda g: {0: g, 1: f"-{g}"}


@_template(ops.Mul)
def _mul_t(o, a, shapes):
    return [f"{o} = {a[0]} * {a[1]}"], [a[0], a[1]], lambda g: {0: f"{g} * {a[1]}",
                                                                1: f"{g} * {a[0]}"}


@_template(ops.Div)
def _div_t(o, a, shapes):
    return [f"{o} = {a[0]} / {a[1]}"], [a[0], a[1]], lambda g: {
        0: f"{g} / {a[1]}", 1: f"-{g} * {a[0]} / ({a[1]} * {a[1]})"}


@_template(ops.Neg)
def _neg_t(o, a, shapes):
    return [f"{o} = -{a[0]}"], [], lambda g: {0: f"-{g}"}


@_template(ops.Tanh)
def _tanh_t(o, a, shapes):
    return [f"{o} = _tanh({a[0]})"], [o], lambda g: {0: f"{g} * (1 - {o} * {o})"}


@_template(ops.Sigmoid)
def _sigmoid_t(o, a, shapes):
    return ([f"{o} = _tanh({a[0]} * 0.5)", f"{o} *= 0.5", f"{o} += 0.5"], [o],
            lambda g: {0: f"{g} * {o} * (1 - {o})"})


@_template(ops.Exp)
def _exp_t(o, a, shapes):
    return [f"{o} = _exp({a[0]})"], [o], lambda g: {0: f"{g} * {o}"}


@_template(ops.Relu)
def _relu_t(o, a, shapes):
    return [f"{o} = _maximum({a[0]}, 0)"], [o], lambda g: {0: f"{g} * ({o} > 0)"}


@_template(ops.MatMul)
def _matmul_t(o, a, shapes):
    # 2-D only; a product over a length-1 axis is the broadcast multiply, as array_matmul does
    (B, K), (_, N) = shapes

    def mm(x, y, inner):
        return f"{x} * {y}" if inner == 1 else f"{x} @ {y}"
    return [f"{o} = {mm(a[0], a[1], K)}"], [a[0], a[1]], lambda g: {
        0: mm(g, f"{a[1]}.T", N), 1: mm(f"{a[0]}.T", g, B)}


def _generate(p: Program):
    """Python source of `forward` and `backward` for the program's per-step ops, and the names
    it uses."""
    meta, needs = p.step.meta, p.needs_grad
    deferred = set(p.deferred)
    names = {"_tanh": np.tanh, "_exp": np.exp, "_maximum": np.maximum, "_where": np.where,
             "_mm": ops.array_matmul, "_new": object.__new__, "_nd": np.ndarray,
             "_asarray": np.asarray, "_unb": unbroadcast, "_zeros": np.zeros, "_np": np,
             "_fit": _fit, "_concat": np.concatenate}

    def v(s):
        return f"v{s}"

    def shape(s):
        return tuple(meta[s][0])

    fw, records, plans = [], [], []
    for i, op in enumerate(p.step.ops):
        cls, args, outs = op.fn_class, op.args, op.outs
        arg_shapes = [shape(a) for a in args]
        two_d = cls is ops.MatMul and all(len(s) == 2 for s in arg_shapes)
        template = _TEMPLATES.get(cls) if (cls is not ops.MatMul or two_d) else None
        split = _equal_split(op, arg_shapes)
        if split is not None:
            axis, k = split
            lead = ":, " * axis
            for n, s in enumerate(outs):
                fw.append(f"{v(s)} = {v(args[0])}[{lead}{n * k}:{(n + 1) * k}]")
            plans.append(("split", op, axis, None))
        elif template is not None and not op.kwargs and len(outs) == 1:
            lines, keep, grads = template(v(outs[0]), [v(a) for a in args], arg_shapes)
            fw.extend(lines)
            plans.append(("t", op, grads, keep))
            fixed = {v(s) for s in p.consts} | {v(s) for s in p.invariant_slots}
            records.extend(k for k in keep if k not in fixed)  # the others backward has
        else:
            names[f"C{i}"], names[f"K{i}"] = cls, op.kwargs
            parents = [1 if a in needs else None for a in args]
            if i in deferred:
                parents[1] = None
            names[f"P{i}"] = parents
            fw.append(f"f{i} = _new(C{i}); f{i}.saved = (); f{i}.parents = P{i}")
            call = f"f{i}.forward({', '.join(v(a) for a in args)}, **K{i})"
            if len(outs) == 1:
                fw.append(f"r = {call}")
                fw.append(f"{v(outs[0])} = r if type(r) is _nd else _asarray(r)")
            else:
                fw.append(f"{', '.join(v(s) for s in outs)}, = {call}")
            plans.append(("g", op, None, None))
            if any(a in needs for a in args):
                records.append(f"f{i}")
        if i in deferred and args[1] in needs:
            fw.append(f"d{i}.append({v(args[0])})")
    records = list(dict.fromkeys(records))
    nc = len(p.carry_slots)
    head = ["def forward(seqs, carry, invs, consts, T, out, masks, first, need_grad):"]
    body = []
    body += [f"{v(s)} = consts[{s}]" for s in p.consts]
    body += [f"{v(s)} = invs[{k}]" for k, s in enumerate(p.invariant_slots)]
    body += [f"q{k} = seqs[{k}]" for k in range(len(p.seq_slots))]
    body += [f"{v(s)} = carry[{k}]" for k, s in enumerate(p.carry_slots)]
    body += [f"d{i} = []" for i in sorted(deferred)]
    body += ["tape = []", "for t in range(T):"]
    read = {a for op in p.step.ops for a in op.args} | {p.out_slot, *p.carry_out_slots}
    loop = [f"{v(s)} = q{k}[t]" for k, s in enumerate(p.seq_slots) if s in read]
    loop += fw
    loop += ["if need_grad:", f"    tape.append(({''.join(r + ', ' for r in records)}))"]
    loop += [f"y = {v(p.out_slot)}"]
    loop += [f"n{k} = {v(s)}" for k, s in enumerate(p.carry_out_slots)]
    loop += ["if t >= first:", "    m = masks[t]", "    y = _where(m, y, 0.0)"]
    for k, s in enumerate(p.carry_slots):
        r = _rows_source(len(shape(s)))
        loop += [f"    n{k} = _where({r}, n{k}, {v(s)})"]
    loop += ["out[t] = y"]
    loop += [f"{v(s)} = n{k}" for k, s in enumerate(p.carry_slots)]
    body += ["    " + line for line in loop]
    body += [f"return [{''.join(v(s) + ', ' for s in p.carry_slots)}], tape, "
             f"[{''.join(f'd{i}, ' for i in sorted(deferred) if p.step.ops[i].args[1] in needs)}]"]
    forward_src = "\n".join(head + ["    " + line for line in body])

    # backward: which slots get a gradient is known here (seeds: y and the new carry)
    has = set()
    bw = []

    def add(slot, expr, expr_shape):
        target = shape(slot)
        if expr_shape != target:
            expr = _sum_to(expr, expr_shape, target)
        if slot in has:
            bw.append(f"g{slot} = g{slot} + {expr}")
        else:
            bw.append(f"g{slot} = {expr}")
            has.add(slot)

    seeds = [(p.out_slot, "gy")] + [(s, f"gn{k}") for k, s in enumerate(p.carry_out_slots)]
    for s, name in seeds:
        if s in needs or s in p.carry_slots:
            add(s, name, shape(s))
    for i in range(len(p.step.ops) - 1, -1, -1):
        kind, op, grads, _ = plans[i]
        outs, args = op.outs, op.args
        if not any(s in has for s in outs):
            continue
        if i in deferred and args[1] in needs:
            bw.append(f"dg{i}[t] = g{outs[0]}")
        wanted = [j for j, a in enumerate(args) if a in needs and not (i in deferred and j == 1)]
        if not wanted:
            continue
        out_shape = shape(outs[0])
        if kind == "split":
            gouts = [f"g{s}" if s in has else f"_zeros({shape(s)!r}, _np.{meta[s][1]})"
                     for s in outs]
            add(args[0], f"_concat(({', '.join(gouts)}, ), axis={grads})", shape(args[0]))
        elif kind == "t":
            exprs = grads(f"g{outs[0]}")
            for j in wanted:
                add(args[j], exprs[j],
                    out_shape if op.fn_class is not ops.MatMul else shape(args[j]))
        else:
            gouts = [f"g{s}" if s in has else f"_zeros({shape(s)!r}, _np.{meta[s][1]})"
                     for s in outs]
            bw.append(f"gx = f{i}.backward({', '.join(gouts)})")
            bw.append("gx = gx if type(gx) is tuple else (gx,)")
            for j in wanted:
                a = args[j]
                add(a, f"_fit(gx[{j}], {shape(a)!r}, _np.{meta[a][1]})", shape(a))
    head = ["def backward(tape, deferred, masks, first, invs, consts, T, g_out, g_carry):"]
    body = [f"{v(s)} = consts[{s}]" for s in p.consts]
    body += [f"{v(s)} = invs[{k}]" for k, s in enumerate(p.invariant_slots)]
    body += [f"gc{k} = g_carry[{k}]" for k in range(nc)]
    body += [f"gq{k} = _zeros((T,) + {shape(s)!r}, _np.{meta[s][1]})"
             for k, s in enumerate(p.seq_slots) if s in has]
    body += [f"gi{k} = None" for k in range(len(p.invariant_slots))]
    live_deferred = [i for i in sorted(deferred) if p.step.ops[i].args[1] in needs]
    body += [f"dg{i} = [None] * T" for i in live_deferred]
    body += ["for t in range(T - 1, -1, -1):"]
    loop = [f"{''.join(r + ', ' for r in records)}= tape[t]" if records else "pass"]
    loop += ["gy = g_out[t]"]
    loop += [f"gn{k} = gc{k}" for k in range(nc)]
    loop += ["masked = t >= first", "if masked:", "    m = masks[t]",
             "    gy = _where(m, gy, 0.0)"]
    for k, s in enumerate(p.carry_out_slots):
        r = _rows_source(len(shape(s)))
        loop += [f"    z = _zeros((), gc{k}.dtype)", f"    pass{k} = _where({r}, z, gc{k})",
                 f"    gn{k} = _where({r}, gc{k}, z)"]
    loop += bw
    for k, s in enumerate(p.carry_slots):
        base = f"g{s}" if s in has else f"_zeros({shape(s)!r}, _np.{meta[s][1]})"
        loop += [f"gc{k} = {base}", "if masked:", f"    gc{k} = gc{k} + pass{k}"]
    loop += [f"gq{k}[t] = g{s}" for k, s in enumerate(p.seq_slots) if s in has]
    loop += [f"gi{k} = g{s} if gi{k} is None else gi{k} + g{s}"
             for k, s in enumerate(p.invariant_slots) if s in has]
    body += ["    " + line for line in loop]
    inv_pos = {s: k for k, s in enumerate(p.invariant_slots)}
    for n, i in enumerate(live_deferred):
        a, w = p.step.ops[i].args
        k = inv_pos[w]
        body += [f"x = _concat(deferred[{n}], axis=0)", f"g = _concat(dg{i}, axis=0)",
                 "gw = x.T @ g", f"gi{k} = gw if gi{k} is None else gi{k} + gw"]
    g_seqs = "".join((f"gq{k}" if s in has else "None") + ", "
                     for k, s in enumerate(p.seq_slots))
    body += [f"return [{g_seqs}], [{''.join(f'gc{k}, ' for k in range(nc))}], "
             f"[{''.join(f'gi{k}, ' for k in range(len(p.invariant_slots)))}]"]
    backward_src = "\n".join(head + ["    " + line for line in body])
    return forward_src + "\n\n\n" + backward_src + "\n", names


def _equal_split(op, arg_shapes):
    """(axis, part size) of a Split into equal parts given as a count (its forward slices
    then), else None."""
    if op.fn_class is not ops.Split:
        return None
    sections, ndim = op.kwargs.get("sections"), len(arg_shapes[0])
    axis = op.kwargs.get("axis", 0)
    if type(sections) is not int or sections <= 0 or not -ndim <= axis < ndim:
        return None
    axis %= ndim
    n = arg_shapes[0][axis]
    if n == 0 or n % sections:
        return None
    return axis, n // sections


def _sum_to(expr, shape, target):
    """Source summing `expr` of `shape` back to `target` (engine.unbroadcast, its axes found
    here once)."""
    extra = len(shape) - len(target)
    kept = [i + extra for i, n in enumerate(target) if n == 1 and shape[i + extra] != 1]
    if not kept:
        return f"({expr}).sum(axis={tuple(range(extra))!r})"
    axes = tuple(range(extra)) + tuple(kept)
    return f"({expr}).sum(axis={axes!r}, keepdims=True).reshape({target!r})"


def _rows_source(ndim):
    """Source of the (B, 1) mask `m` shaped for a state of `ndim` axes."""
    return "m" if ndim == 2 else f"m.reshape((m.shape[0],) + (1,) * {ndim - 1})"


def _fit(g, shape, dtype):
    """A generic op's gradient for an input of `shape`: zeros when it gave none, else summed
    back to the shape (as the engine does)."""
    if g is None:
        return np.zeros(shape, dtype)
    if type(g) is not np.ndarray:
        g = np.asarray(g)
    return g if g.shape == shape else unbroadcast(g, shape)


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

    def forward(self, x, *rest, program, masks, executor, rng_state=None):
        p = program
        nc = len(p.carry_slots)
        carry0, inv_in = rest[:nc], rest[nc:]
        self.program, self.executor = program, executor
        for kwargs, key in p.default_rng:
            kwargs[key] = random.default_generator()
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
        # the composed twin (second order) replays the draws of random ops: it starts from the
        # default generator's state of this forward
        rng_state = random.get_state() if program.default_rng else None
        res = cls.apply(x, *carry0, *invariants, program=program, masks=masks,
                        executor=executor, rng_state=rng_state)
        return res[0], list(res[1:])

    @staticmethod
    def composed(x, *rest, program, masks, executor, rng_state=None):
        """The per-op run of the same step (one node per op and step): for create_graph. Random
        ops drawing from the default generator draw what the forward drew."""
        if rng_state is None:
            return Scan.replay(x, *rest, program=program, masks=masks)
        before = random.get_state()
        random.set_state(rng_state)
        for kwargs, key in program.default_rng:
            kwargs[key] = random.default_generator()
        try:
            return Scan.replay(x, *rest, program=program, masks=masks)
        finally:
            random.set_state(before)

    @staticmethod
    def replay(x, *rest, program, masks):
        """The per-op run of the step over x (Tensors, a graph)."""
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
