"""The numba executor of a compiled recurrence: one step program run over all T steps, forward
and BPTT, as two machine-code loops generated from the program and compiled with numba.

`make_executor(program)` (a `minigrad.scan.Program`, or a hand-written `StepProgram`) returns an
executor with the interface of `minigrad.scan.NumpyExecutor`:

    out, final_carry, saved = executor.forward(seqs, carry0, invariants, masks, need_grad)
    g_seqs, g_carry0, g_invariants = executor.backward(saved, g_out, g_final_carry)

or raises `Unsupported(reason)` (`minigrad.scan.Unsupported`: the caller runs NumPy's executor)
for an op outside the table (`supported_ops()`), a dtype other than float32/float64, or numba
missing (`available()`). A program runs compiled from its first run: the forward loop compiles
at the first forward, the backward loop at the first backward (about a second each, once per
program; `compiled_count()` says how many programs this process compiled, `compiled_runs()`
how many runs went through compiled loops). It never starts on NumPy's executor and switches
later: numba's tanh and exp are not NumPy's to the last bit, and a run's round-off should not
change at some step (nor a resumed run's). Compiled loops go to an on-disk cache
(`cache_dir()`; `MINIGRAD_JIT_CACHE` to move it or turn it off): a program found there loads in
a fraction of the compile time. The compiled code serves every batch size and every T: both
are runtime values, feature sizes are literals.

What the generated code does (the source is `executor.source`):
- Forward: one loop over t. Consecutive elementwise ops of one output shape (and views of
  values already in memory: static slices, transposes, broadcasts, the pieces of a split) are
  one loop nest keeping intermediates in registers; a matrix product is one call of NumPy's own
  BLAS (`np.dot` for tiny ones); sums, means, softmax, concatenation and reshapes are loops of
  their own. Only what backward reads is saved, in (T, ...) arrays stacked by shape (few arrays
  per loop: the compiler then vectorises it). With lengths, a masked row gives output 0 and
  keeps its carry (the rule of `rnn.steps.run_steps`).
- Backward: one loop over t = T-1..0 running the ops' backward in reverse, elementwise groups
  again fused with gradients in registers, products accumulating straight into gradients;
  gradients of invariants sum over the steps, and the weight gradient of `h @ W` (W invariant)
  is one product over all T B rows after the loop (sharing the gradient array of the input
  projection it is added to).

Numerics: float64 uses libm's tanh/exp/log, equal to NumPy's to round-off. float32 tanh (and
sigmoid = tanh(x/2)/2 + 1/2, as `ops.Sigmoid` computes it) is a rational approximation that the
compiler vectorises, within 6 float32 ulps of the exact tanh (NumPy's is within 2): libm's
scalar tanhf is about 70 times slower than NumPy's vectorised loop, which would lose what the
compiled loop gains. Sums run in step order (NumPy sums pairwise): round-off.

numba is an optional extra (`pip install minigrad[jit]`); it is imported only when a program is
compiled.
"""
from __future__ import annotations

import numbers
import re

import numpy as np

from minigrad import scan
from minigrad.scan import Unsupported  # this program cannot run here; the message says why

__all__ = ["StepProgram", "Unsupported", "available", "cache_dir", "cache_hits",
           "compiled_count", "compiled_runs", "make_executor", "supported_ops"]


def available() -> bool:
    """Whether numba can be imported (the `jit` extra is installed)."""
    try:
        import numba  # noqa: F401
    except ImportError:
        return False
    return True


class StepProgram:
    """One step of a recurrence as a straight-line program over numbered slots.

    ops: list of (fn_class, kwargs, args, outs): `fn_class` a minigrad op class (or its name),
        `kwargs` its keywords, `args` per positional input a slot number or a constant (a plain
        number or array, `.value` of a tracing `Const`), `outs` the output slot numbers.
    meta: {slot: (shape, dtype)} for every slot (shapes include the batch axis, never T).
    seqs: slots read at step t from arrays (T, *shape); carries: slots of the state at the
        step's start; invariants: slots equal at every step; outputs: slots of y_t (written
        to (T, *shape), 0 where masked); new_carries: the slots of the next state, one per
        carry.
    """

    def __init__(self, ops, meta, seqs, carries, invariants, outputs, new_carries,
                 needs_grad=None):
        self.ops = [tuple(op) for op in ops]
        self.needs_grad = needs_grad  # slots whose gradient is wanted (None: every one)
        self.meta = {int(s): (tuple(shape), np.dtype(dt)) for s, (shape, dt) in meta.items()}
        self.seqs, self.carries = list(seqs), list(carries)
        self.invariants, self.outputs = list(invariants), list(outputs)
        self.new_carries = list(new_carries)
        if len(self.new_carries) != len(self.carries):
            raise ValueError(f"StepProgram: {len(self.carries)} carries but "
                             f"{len(self.new_carries)} new carries")


# --- the op table -----------------------------------------------------------------------------
# Elementwise ops: forward(x...) is a scalar expression of the operands' scalar expressions,
# backward(g, x..., out) a list of scalar contributions, one per input (None: no gradient);
# `needs` names what backward reads ("x0", "x1", "x2": inputs, "out": the output).
# `tanh` and `K(value)` (a literal of the output's dtype) come from the generator.

class Elementwise:
    def __init__(self, forward, backward, needs):
        self.forward, self.backward, self.needs = forward, backward, needs


def _table():
    E = Elementwise
    return {
        "Add": E(lambda c, a, b: f"{a} + {b}", lambda c, g, a, b, o: [g, g], ()),
        "Sub": E(lambda c, a, b: f"{a} - {b}", lambda c, g, a, b, o: [g, f"-{g}"], ()),
        "Mul": E(lambda c, a, b: f"{a} * {b}",
                 lambda c, g, a, b, o: [f"{g} * {b}", f"{g} * {a}"], ("x0", "x1")),
        "Div": E(lambda c, a, b: f"{a} / {b}",
                 lambda c, g, a, b, o: [f"{g} / {b}", f"-{g} * {a} / ({b} * {b})"],
                 ("x0", "x1")),
        "Neg": E(lambda c, a: f"-{a}", lambda c, g, a, o: [f"-{g}"], ()),
        "Exp": E(lambda c, a: f"np.exp({a})", lambda c, g, a, o: [f"{g} * {o}"], ("out",)),
        "Log": E(lambda c, a: f"np.log({a})", lambda c, g, a, o: [f"{g} / {a}"], ("x0",)),
        "Tanh": E(lambda c, a: c.tanh(a),
                  lambda c, g, a, o: [f"{g} * ({c.K(1)} - {o} * {o})"], ("out",)),
        "Sigmoid": E(lambda c, a: f"{c.tanh(f'{a} * {c.K(0.5)}')} * {c.K(0.5)} + {c.K(0.5)}",
                     lambda c, g, a, o: [f"{g} * {o} * ({c.K(1)} - {o})"], ("out",)),
        "Relu": E(lambda c, a: f"max({a}, {c.K(0)})",
                  lambda c, g, a, o: [f"({g} if {o} > {c.K(0)} else {c.K(0)})"], ("out",)),
        "Where": E(lambda c, k, a, b: f"({a} if {k} else {b})",
                   lambda c, g, k, a, b, o: [None, f"({g} if {k} else {c.K(0)})",
                                             f"({c.K(0)} if {k} else {g})"], ("x0",)),
        "Abs": E(lambda c, a: f"abs({a})", lambda c, g, a, o: [
            f"({g} if {a} > {c.K(0)} else (-{g} if {a} < {c.K(0)} else {c.K(0)}))"], ("x0",)),
        "Sqrt": E(lambda c, a: f"np.sqrt({a})",
                  lambda c, g, a, o: [f"{g} / ({c.K(2)} * {o})"], ("out",)),
        "Maximum": E(lambda c, a, b: f"({a} if {a} >= {b} else {b})",  # ties: half each
                     lambda c, g, a, b, o: [
                         f"({g} if {a} > {b} else ({g} * {c.K(0.5)} if {a} == {b} else {c.K(0)}))",
                         f"({g} if {b} > {a} else ({g} * {c.K(0.5)} if {a} == {b} else {c.K(0)}))"],
                     ("x0", "x1")),
        "Minimum": E(lambda c, a, b: f"({a} if {a} <= {b} else {b})",
                     lambda c, g, a, b, o: [
                         f"({g} if {a} < {b} else ({g} * {c.K(0.5)} if {a} == {b} else {c.K(0)}))",
                         f"({g} if {b} < {a} else ({g} * {c.K(0.5)} if {a} == {b} else {c.K(0)}))"],
                     ("x0", "x1")),
        "LeakyRelu": E(lambda c, a: f"({a} if {a} > {c.K(0)} else {a} * {c.K(c.kw['slope'])})",
                       lambda c, g, a, o: [
                           f"({g} if {a} > {c.K(0)} else {g} * {c.K(c.kw['slope'])})"], ("x0",)),
        "Elu": E(lambda c, a: f"({a} if {a} > {c.K(0)} else "
                              f"{c.K(c.kw['alpha'])} * np.expm1(min({a}, {c.K(0)})))",
                 lambda c, g, a, o: [
                     f"({g} if {a} > {c.K(0)} else {g} * ({o} + {c.K(c.kw['alpha'])}))"],
                 ("x0", "out")),
        "Softplus": E(lambda c, a: f"max({a}, {c.K(0)}) + np.log1p(np.exp(-abs({a})))",
                      lambda c, g, a, o: [
                          f"{g} * ({c.tanh(f'{c.K(0.5)} * {a}')} * {c.K(0.5)} + {c.K(0.5)})"],
                      ("x0",)),
        "Clip": E(lambda c, a: c.clip(a),
                  lambda c, g, a, o: [f"({g} if {c.inside(a)} else {c.K(0)})"], ("x0",)),
        "Copy": E(lambda c, a: a, lambda c, g, a, o: [g], ()),
    }


ELEMENTWISE = _table()
VIEWS = ("GetItem", "Transpose", "BroadcastTo", "Split")  # out[i] = x[index map of i]
OTHERS = ("MatMul", "Sum", "Mean", "Softmax", "Concat", "Reshape")


def supported_ops() -> tuple[str, ...]:
    """The names of the minigrad ops a step program may use."""
    return tuple(sorted(set(ELEMENTWISE) - {"Copy"} | set(VIEWS) | set(OTHERS)))


# --- normalising a program --------------------------------------------------------------------

class Node:
    """One op of a normalised program: `kind` a table name; views carry `index`, a list of
    per-source-axis maps (("loop", out_axis, start, step) or ("fixed", i))."""

    def __init__(self, kind, kw, args, outs):
        self.kind, self.kw, self.args, self.outs = kind, kw, list(args), list(outs)
        self.index = None


def _name(fn_class) -> str:
    return fn_class if isinstance(fn_class, str) else fn_class.__name__


def _const_value(a):
    return a.value if hasattr(a, "value") else a


def _view_of_getitem(index, src_shape, out_shape):
    items = index if isinstance(index, tuple) else (index,)
    if sum(i is Ellipsis for i in items) > 1:
        raise Unsupported("GetItem with more than one Ellipsis")
    if Ellipsis in items:
        k = items.index(Ellipsis)
        fill = len(src_shape) - (len(items) - 1)
        items = items[:k] + (slice(None),) * fill + items[k + 1:]
    items = items + (slice(None),) * (len(src_shape) - len(items))
    maps, j = [], 0
    for n, it in zip(src_shape, items):
        if isinstance(it, slice):
            start, _, step = it.indices(n)
            maps.append(("loop", j, start, step))
            j += 1
        elif isinstance(it, numbers.Integral) and not isinstance(it, bool):
            maps.append(("fixed", int(it) % n))
        else:
            raise Unsupported(f"GetItem with index {index!r}: only static basic slices and "
                              "integers are compiled")
    if j != len(out_shape) or len(items) != len(src_shape):
        raise Unsupported(f"GetItem with index {index!r} on shape {src_shape}")
    return maps


def _broadcast_maps(src_shape, out_shape):
    lead = len(out_shape) - len(src_shape)
    return [("fixed", 0) if n == 1 and out_shape[lead + k] != 1 else ("loop", lead + k, 0, 1)
            for k, n in enumerate(src_shape)]


def normalise(program: StepProgram):
    """(nodes, meta, roles, consts): the program's ops as `Node`s, dead ops dropped, constant
    arrays turned into extra invariant slots, scalar constants kept as numbers, splits as one
    view per piece, and a copy before any output or new carry that is not an op's result."""
    meta = dict(program.meta)
    roles = {}
    for kind, slots in (("seq", program.seqs), ("carry", program.carries),
                        ("inv", program.invariants)):
        for k, s in enumerate(slots):
            roles[s] = (kind, k)
    for s, (shape, dt) in meta.items():
        if dt.kind not in "fb":
            raise Unsupported(f"slot {s} has dtype {dt}: only float and bool are compiled")
    consts, next_slot = [], max(meta) + 1 if meta else 0
    nodes = []
    for fn_class, kw, args, outs in program.ops:
        kind, kw = _name(fn_class), dict(kw or {})
        if kind not in ELEMENTWISE and kind not in VIEWS and kind not in OTHERS:
            raise Unsupported(f"op {kind} is not in the numba table ({', '.join(supported_ops())})")
        new_args = []
        for a in args:
            if isinstance(a, (int, np.integer)) and not isinstance(a, bool) and int(a) in meta:
                new_args.append(int(a))
                continue
            v = _const_value(a)
            if np.ndim(v) == 0 and kind in ELEMENTWISE:
                new_args.append(("const", v))
                continue
            v = np.asarray(v)
            if v.dtype.kind not in "fb":
                raise Unsupported(f"{kind} has a constant of dtype {v.dtype}")
            meta[next_slot] = (v.shape, v.dtype)
            roles[next_slot] = ("const", len(consts))
            consts.append(v)
            new_args.append(next_slot)
            next_slot += 1
        outs = [int(o) for o in outs]
        if kind == "Split":
            src = new_args[0]
            axis = int(kw.get("axis", 0)) % len(meta[src][0])
            offset = 0
            for o in outs:
                node = Node("GetItem", {}, [src], [o])
                node.index = [("loop", k, offset if k == axis else 0, 1)
                              for k in range(len(meta[src][0]))]
                offset += meta[o][0][axis]
                nodes.append(node)
            continue
        node = Node(kind, kw, new_args, outs)
        src_shape = meta[new_args[0]][0] if new_args and isinstance(new_args[0], int) else ()
        if kind == "GetItem":
            node.index = _view_of_getitem(kw["index"], src_shape, meta[outs[0]][0])
        elif kind == "Transpose":
            axes = kw.get("axes")
            axes = tuple(range(len(src_shape)))[::-1] if axes is None else tuple(
                int(a) % len(src_shape) for a in axes)
            inverse = np.argsort(axes)
            node.index = [("loop", int(inverse[k]), 0, 1) for k in range(len(src_shape))]
        elif kind == "BroadcastTo":
            node.index = _broadcast_maps(src_shape, meta[outs[0]][0])
        elif kind == "MatMul":
            if any(not isinstance(a, int) or len(meta[a][0]) != 2 for a in new_args):
                raise Unsupported("MatMul: only 2-D @ 2-D is compiled")
        elif kind == "Softmax":
            if int(kw.get("axis", -1)) % len(src_shape) != len(src_shape) - 1:
                raise Unsupported("Softmax: only the last axis is compiled")
        elif kind == "Concat":
            node.kw = {"axis": int(kw.get("axis", 0)) % len(src_shape)}
        for o in outs:
            if meta[o][1].kind != "f":
                raise Unsupported(f"{kind} gives dtype {meta[o][1]}: only floats are compiled")
        nodes.append(node)
    # results that are not computed by an op (a carry passed through, an input returned) get a
    # copy, so the slots written at the step's end are never the ones read during it
    produced = {o for n in nodes for o in n.outs}
    outputs, new_carries = [], []
    for lst, src in ((outputs, program.outputs), (new_carries, program.new_carries)):
        for s in src:
            if s not in produced:
                meta[next_slot] = meta[s]
                nodes.append(Node("Copy", {}, [s], [next_slot]))
                s, next_slot = next_slot, next_slot + 1
                produced.add(s)
            lst.append(s)
    # drop dead ops
    live = set(outputs) | set(new_carries)
    kept = []
    for n in reversed(nodes):
        if any(o in live for o in n.outs):
            kept.append(n)
            live.update(a for a in n.args if isinstance(a, int))
    nodes = kept[::-1]
    for s in outputs + new_carries:
        if len(meta[s][0]) == 0:
            raise Unsupported("outputs and carries need a batch axis")
    # the slots a gradient reaches: from the wanted inputs forward; every carry (the carry
    # of step t > 0 depends on the parameters even when the initial one needs no gradient)
    wanted = {s for s, (kind, _) in roles.items() if kind in ("seq", "inv", "carry") and (
        kind == "carry" or program.needs_grad is None or s in program.needs_grad)}
    wanted = {s for s in wanted if meta[s][1].kind == "f"}
    for n in nodes:
        if any(a in wanted for a in n.args if isinstance(a, int)):
            wanted.update(n.outs)
    return nodes, meta, roles, consts, outputs, new_carries, wanted


# --- the code generator -----------------------------------------------------------------------

def _stacks(slots, key):
    """([(shape, dtype, slots)], {slot: (stack, position)}): slots grouped by key(slot)."""
    stacks, of = {}, {}
    for s in slots:
        k = key(s)
        if k not in stacks:
            stacks[k] = []
        of[s] = (list(stacks).index(k), len(stacks[k]))
        stacks[k].append(s)
    return [(k[0], k[1], v) for k, v in stacks.items()], of


def parametrise(source: str):
    """(source with each marked integer replaced by a local n<k> read from the parameter
    array P, the integers)."""
    values = []

    def name(match):
        values.append(int(match.group(1)))
        return f"n{len(values) - 1}"

    lines = re.sub(r"⟦(-?\d+)⟧", name, source).split("\n")
    head = [f"    n{k} = P[{k}]" for k in range(len(values))]
    return "\n".join(lines[:1] + head + lines[1:]), np.array(values, np.int64)


def _ix(idx) -> str:
    return ", ".join(idx) if idx else "0"


class Group:
    """Consecutive elementwise ops and views of one output shape: one loop nest."""

    def __init__(self, shape, fused):
        self.shape, self.fused, self.nodes, self.produced = shape, fused, [], set()


class Generator:
    """Python source of the forward and backward loops of one normalised program."""

    def __init__(self, nodes, meta, roles, outputs, new_carries, ncarries, wanted):
        self.nodes, self.meta, self.roles = nodes, meta, dict(roles)
        self.wanted = wanted
        self.outputs, self.new_carries = outputs, new_carries
        for n in nodes:
            for o in n.outs:
                self.roles[o] = ("op", o)
        self.ncarries = ncarries
        self.batch = meta[(outputs + new_carries)[0]][0][0]
        self.dtype = np.result_type(*[meta[o][1] for n in nodes for o in n.outs]) \
            if nodes else np.dtype(np.float64)
        self.constants = {}  # literal -> the name of a typed local holding it
        self.prelude = []    # statements an expression needs first (tanh in float32)
        self.group()
        self.plan_storage()

    def blas(self, M, K, N) -> bool:
        """Whether (M, K) @ (K, N) calls NumPy's own BLAS (`GEMM`): numba's np.dot goes through
        SciPy's BLAS, 1.4-3x slower at these sizes here; below 32768 multiply-adds np.dot's
        lower call cost wins."""
        return self.dtype in _blas() and M * K * N >= 32768

    def N(self, n) -> str:
        """An integer of the source: the batch size B is marked, to become a runtime parameter
        (one compiled program serves every batch size; the last, smaller batch of an epoch
        compiles nothing new); feature sizes stay literal (quicker to compile, and the
        compiler knows the inner trip counts)."""
        if isinstance(n, str):
            return n
        return f"⟦{int(n)}⟧" if n == self.batch else str(int(n))

    def shape_src(self, shape) -> str:
        return "(" + "".join(f"{self.N(n)}, " for n in shape) + ")"

    def loops(self, shape, body, indent, var="i"):
        """Lines of a loop nest over `shape` (loop variables i0, i1, ...) around `body`."""
        lines = []
        for k, n in enumerate(shape):
            lines.append("    " * (indent + k) + f"for {var}{k} in range({self.N(n)}):")
        pad = "    " * (indent + len(shape))
        return lines + [pad + b for b in body]

    def K(self, v) -> str:
        """A literal of the program's dtype (a typed local: float32 stays float32)."""
        lit = f"np.{self.dtype.name}({float(v)!r})"
        if lit not in self.constants:
            self.constants[lit] = f"K{len(self.constants)}"
        return self.constants[lit]

    def tanh(self, x) -> str:
        """tanh of an expression: libm's in float64; in float32 `TANH_P`, `TANH_Q` written out
        (numba then vectorises the loop; a call, even inlined by LLVM, vectorises worse)."""
        if self.dtype != np.float32:
            return f"np.tanh({x})"
        v = f"x{len(self.prelude)}"
        self.prelude += [f"{v} = min(max({x}, {self.K(-9.0)}), {self.K(9.0)})",
                         f"{v}s = {v} * {v}"]
        p = self.K(TANH_P[-1])
        for c in TANH_P[-2::-1]:
            p = f"({p} * {v}s + {self.K(c)})"
        q = self.K(TANH_Q[-1])
        for c in TANH_Q[-2::-1]:
            q = f"({q} * {v}s + {self.K(c)})"
        return f"({v} * {p} / {q})"

    def clip(self, x) -> str:
        lo, hi = self.kw.get("lo"), self.kw.get("hi")
        if lo is not None:
            x = f"max({x}, {self.K(lo)})"
        return x if hi is None else f"min({x}, {self.K(hi)})"

    def inside(self, x) -> str:
        lo, hi = self.kw.get("lo"), self.kw.get("hi")
        tests = ([] if lo is None else [f"{x} >= {self.K(lo)}"]) + (
            [] if hi is None else [f"{x} <= {self.K(hi)}"])
        return " and ".join(tests) or "True"

    def cast(self, o, args, expr) -> str:
        """expr, converted to o's dtype where an operand has another float dtype."""
        dts = {self.meta[a][1] for a in args if isinstance(a, int)}
        if all(d == self.meta[o][1] or d.kind == "b" for d in dts):
            return expr
        return f"{self.dt(o)}({expr})"

    def with_constants(self, lines):
        """The function's lines with its typed constants defined after the `def` line."""
        return lines[:1] + [f"    {name} = {lit}" for lit, name in self.constants.items()] \
            + lines[1:]

    # grouping and storage ------------------------------------------------------------------
    def group(self):
        self.groups, cur = [], None
        self.group_of = {}
        for n in self.nodes:
            shape = self.meta[n.outs[0]][0]
            if n.kind in ELEMENTWISE or n.kind in VIEWS:
                reads_cur = n.kind in VIEWS and cur is not None and n.args[0] in cur.produced
                if cur is None or cur.shape != shape or reads_cur:
                    cur = Group(shape, True)
                    self.groups.append(cur)
            else:
                cur = None
                self.groups.append(Group(shape, False))
            g = self.groups[-1]
            g.nodes.append(n)
            g.produced.update(n.outs)
            for o in n.outs:
                self.group_of[o] = g

    def plan_storage(self):
        consumers = {}
        for n in self.nodes:
            for a in n.args:
                if isinstance(a, int):
                    consumers.setdefault(a, []).append(n)
        results = set(self.outputs) | set(self.new_carries)
        self.in_memory = set()  # op results other groups, views or the step's end read
        for n in self.nodes:
            for o in n.outs:
                g = self.group_of[o]
                if o in results or not g.fused or any(
                        self.group_of[c.outs[0]] is not g or c.kind in VIEWS
                        for c in consumers.get(o, [])):
                    self.in_memory.add(o)
        self.needed = set()  # values backward reads
        for n in self.nodes:
            if n.outs[0] not in self.wanted:
                continue
            if n.kind in ELEMENTWISE:
                needs = ELEMENTWISE[n.kind].needs
                if n.kind == "Mul":  # each factor is read for the other's gradient
                    needs = [f"x{1 - j}" for j, a in enumerate(n.args) if a in self.wanted]
                for need in needs:
                    s = n.outs[0] if need == "out" else n.args[int(need[1])]
                    if isinstance(s, int):
                        self.needed.add(s)
            elif n.kind == "MatMul":
                self.needed.update(a for j, a in enumerate(n.args)
                                   if n.args[1 - j] in self.wanted)
            elif n.kind == "Softmax":
                self.needed.add(n.outs[0])
        # matmul results whose gradient is kept for all T: the weight gradient is then one
        # product over all T B rows after the loop
        self.deferred = {}
        for n in self.nodes:
            if n.kind == "MatMul":
                a, b = n.args
                if self.roles[b][0] == "inv" and self.roles[a][0] in ("seq", "op", "carry"):
                    self.deferred[n.outs[0]] = n
        self.deferred = {o: n for o, n in self.deferred.items()
                         if o in self.wanted and n.args[1] in self.wanted}
        self.grad_slots = [s for s in sorted(self.in_memory & self.wanted)
                           if s not in self.deferred]
        # a deferred product added to a seq slot (x W^T + h U^T: an input projection plus the
        # recurrent one), each read by that sum alone: both get the same gradient, so the
        # product's gradient over all T is the seq's and is not written twice
        self.alias = {}
        for o in self.deferred:
            users = consumers.get(o, [])
            if len(users) == 1 and users[0].kind == "Add":
                other = [a for a in users[0].args if a != o]
                if (len(other) == 1 and isinstance(other[0], int)
                        and self.roles[other[0]][0] == "seq" and other[0] in self.wanted
                        and self.meta[other[0]][0] == self.meta[o][0]
                        and len(consumers.get(other[0], [])) == 1):
                    self.alias[o] = self.roles[other[0]][1]
        # arrays of one shape and dtype are stacked into one: a fused loop then touches a few
        # arrays, and the compiler vectorises it (with one array per value it gives up on
        # proving that they do not overlap). A deferred product's input gets a stack of its
        # own: (T, 1, B, K) reads as (T B, K) without a copy.
        own = {n.args[0] for n in self.deferred.values()}
        key = lambda s: (self.store_shape(s), self.meta[s][1], s if s in own else -1)  # noqa: E731
        self.saves, self.save_of = _stacks(
            [s for s in sorted(self.needed) if self.roles[s][0] in ("op", "carry")], key)
        self.bufs, self.buf_of = _stacks(sorted(self.in_memory - self.needed), key)
        self.gbufs, self.gbuf_of = _stacks(self.grad_slots + [
            self.carry_slot(k) for k in range(self.ncarries)], key)

    # references ----------------------------------------------------------------------------
    def value(self, s, idx, phase) -> str:
        """Element `idx` of slot s at step t."""
        kind, k = self.roles[s]
        i = _ix(idx)
        if kind == "seq":
            return f"q{k}[t, {i}]"
        if kind in ("inv", "const"):
            return f"{'v' if kind == 'inv' else 'k'}{k}[{i}]"
        if kind == "carry" and phase == "fwd":
            return f"c{k}[{i}]"
        if s in self.save_of:  # forward writes at ts: t, or 0 when nothing is kept
            j, n = self.save_of[s]
            return f"S{j}[{'t' if phase == 'bwd' else 'ts'}, {n}, {i}]"
        j, n = self.buf_of[s]
        return f"W{j}[{n}, {i}]"

    def array(self, s, phase) -> str:
        kind, k = self.roles[s]
        if kind == "seq":
            return f"q{k}[t]"
        if kind in ("inv", "const"):
            return f"{'v' if kind == 'inv' else 'k'}{k}"
        if kind == "carry" and phase == "fwd":
            return f"c{k}"
        if s in self.save_of:
            j, n = self.save_of[s]
            return f"S{j}[{'t' if phase == 'bwd' else 'ts'}, {n}]"
        j, n = self.buf_of[s]
        return f"W{j}[{n}]"

    def grad(self, s, idx):
        """Element `idx` of the gradient accumulator of slot s, or None (a constant)."""
        kind, k = self.roles[s]
        i = _ix(idx)
        if s not in self.wanted:
            return None
        if kind == "seq":
            return f"gq{k}[t, {i}]"
        if kind == "inv":
            return f"gv{k}[{i}]"
        if s in self.deferred:
            return f"gT{s}[t, {i}]"
        j, n = self.gbuf_of[s]
        return f"G{j}[{n}, {i}]"

    def grad_array(self, s):
        kind, k = self.roles[s]
        if s not in self.wanted:
            return None
        if kind in ("seq", "inv"):
            return f"gq{k}[t]" if kind == "seq" else f"gv{k}"
        if s in self.deferred:
            return f"gT{s}[t]"
        j, n = self.gbuf_of[s]
        return f"G{j}[{n}]"

    @staticmethod
    def operand_index(s_shape, out_shape, idx):
        lead = len(out_shape) - len(s_shape)
        return ["0" if n == 1 and out_shape[lead + k] != 1 else idx[lead + k]
                for k, n in enumerate(s_shape)]

    def view_index(self, node, idx):
        # a start of 0 and the step stay literal: the compiler then sees contiguous reads
        return [self.N(m[1]) if m[0] == "fixed" else
                (idx[m[1]] if m[2] == 0 else f"{self.N(m[2])} + {idx[m[1]]}") if m[3] == 1 else
                f"{self.N(m[2])} + {m[3]} * {idx[m[1]]}" for m in node.index]

    def arg_index(self, node, a, idx, shape):
        if node.kind in VIEWS:
            return self.view_index(node, idx)
        return self.operand_index(self.meta[a][0], shape, idx)

    def dt(self, s) -> str:
        return f"np.{self.meta[s][1].name}"

    # forward -------------------------------------------------------------------------------
    def forward_source(self) -> str:
        self.constants = {}
        L = ["def forward(BLAS, P, T, keep, " + self.signature(("q", "v", "k", "c")) + "m, "
             + "".join(f"y{k}, " for k in range(len(self.outputs)))
             + "".join(f"S{j}, " for j in range(len(self.saves))) + "):"]
        for j, (shape, dt, slots) in enumerate(self.bufs):
            L.append(f"    W{j} = np.empty({self.shape_src((len(slots),) + shape)}, np.{dt.name})")
        L.append("    for t in range(T):")
        L.append("        ts = t * keep")
        for k in range(self.ncarries):
            s = self.carry_slot(k)
            if s in self.save_of:
                idx = self.idx(self.meta[s][0])
                L += self.loops(self.meta[s][0],
                                [f"{self.value(s, idx, 'save')} = c{k}[{_ix(idx)}]"], 2)
        for g in self.groups:
            L += self.forward_group(g) if g.fused else self.forward_other(g.nodes[0])
        for k, s in enumerate(self.outputs):
            L += self.masked_write(s, f"y{k}[t, {{i}}]", "0", 2)
        for k, s in enumerate(self.new_carries):
            L += self.masked_write(s, f"c{k}[{{i}}]", None, 2)
        L.append("    return 0")
        return "\n".join(self.with_constants(L))

    def signature(self, kinds) -> str:
        names = {"q": len([1 for r in self.roles.values() if r[0] == "seq"]),
                 "v": len([1 for r in self.roles.values() if r[0] == "inv"]),
                 "k": len([1 for r in self.roles.values() if r[0] == "const"]),
                 "c": self.ncarries}
        return "".join(f"{p}{k}, " for p in kinds for k in range(names[p]))

    def carry_slot(self, k):
        return next(s for s, r in self.roles.items() if r == ("carry", k))

    @staticmethod
    def idx(shape):
        return [f"i{k}" for k in range(len(shape))]

    def store_shape(self, s):
        return self.meta[s][0] or (1,)

    def masked_write(self, s, target, masked, indent):
        shape = self.meta[s][0]
        idx = self.idx(shape)
        t = target.format(i=_ix(idx))
        return self.masked_block(shape, [f"{t} = {self.value(s, idx, 'fwd')}"], indent,
                                 None if masked is None else [f"{t} = {masked}"])

    def scalar_arg(self, a, g, idx, shape, node):
        if isinstance(a, tuple):
            v = a[1]
            return repr(bool(v)) if isinstance(v, (bool, np.bool_)) else self.K(v)
        if a in g.produced:
            return f"e{a}"
        return self.value(a, self.arg_index(node, a, idx, shape), "fwd")

    def forward_group(self, g):
        idx = self.idx(g.shape)
        body = []
        for n in g.nodes:
            o = n.outs[0]
            if n.kind in VIEWS:
                expr = self.value(n.args[0], self.view_index(n, idx), "fwd")
            else:
                ins = [f"({self.scalar_arg(a, g, idx, g.shape, n)})" for a in n.args]
                self.kw = n.kw
                expr = self.cast(o, n.args, ELEMENTWISE[n.kind].forward(self, *ins))
                body += self.prelude
                self.prelude = []
            body.append(f"e{o} = {expr}")
            if o in self.in_memory or o in self.needed:
                body.append(f"{self.value(o, idx, 'fwd')} = e{o}")
        return self.loops(g.shape, body, 2)

    def forward_other(self, n):
        o, P = n.outs[0], "        "
        oshape = self.meta[o][0]
        if n.kind == "MatMul":
            a, b = n.args
            (M, K), Nn = self.meta[a][0], self.meta[b][0][1]
            if self.blas(M, K, Nn):
                m, k, n = self.N(M), self.N(K), self.N(Nn)
                return [P + f"GEMM(BLAS, 101, 111, 111, {m}, {n}, {k}, {self.K(1)}, "
                            f"{self.array(a, 'fwd')}.ctypes, {k}, {self.array(b, 'fwd')}.ctypes, "
                            f"{n}, {self.K(0)}, {self.array(o, 'fwd')}.ctypes, {n})"]
            return [P + f"np.dot({self.array(a, 'fwd')}, {self.array(b, 'fwd')}, "
                        f"{self.array(o, 'fwd')})"]
        if n.kind in ("Sum", "Mean"):
            x = n.args[0]
            xshape = self.meta[x][0]
            axes, ridx = self.reduced(n, xshape)
            idx = self.idx(xshape)
            lines = self.loops(oshape, [f"{self.value(o, self.idx(oshape), 'fwd')} = 0"], 2)
            lines += self.loops(xshape, [f"{self.value(o, ridx, 'fwd')} += "
                                     f"{self.value(x, idx, 'fwd')}"], 2)
            if n.kind == "Mean":
                cnt = int(np.prod([xshape[a] for a in axes]))
                lines += self.loops(oshape, [f"{self.value(o, self.idx(oshape), 'fwd')} /= "
                                         f"{self.dt(o)}({self.N(cnt)})"], 2)
            return lines
        if n.kind == "Softmax":
            x = n.args[0]
            rows, last = oshape[:-1], oshape[-1]
            r = self.idx(rows)
            xv = lambda j: self.value(x, r + [j], "fwd")  # noqa: E731
            ov = lambda j: self.value(o, r + [j], "fwd")  # noqa: E731
            body = [f"mx = {xv('0')}", f"for j in range(1, {self.N(last)}):",
                    f"    mx = max(mx, {xv('j')})", f"tot = {self.K(0)}",
                    f"for j in range({self.N(last)}):", f"    ex = np.exp({xv('j')} - mx)",
                    f"    {ov('j')} = ex", "    tot += ex",
                    f"for j in range({self.N(last)}):", f"    {ov('j')} = {ov('j')} / tot"]
            return self.loops(rows, body, 2)
        if n.kind == "Concat":
            axis, lines, off = n.kw["axis"], [], 0
            for x in n.args:
                xshape = self.meta[x][0]
                idx = self.idx(xshape)
                oidx = [f"{self.N(off)} + {v}" if k == axis else v for k, v in enumerate(idx)]
                lines += self.loops(xshape, [f"{self.value(o, oidx, 'fwd')} = "
                                         f"{self.value(x, idx, 'fwd')}"], 2)
                off += xshape[axis]
            return lines
        if n.kind == "Reshape":
            x = n.args[0]
            size = int(np.prod(oshape))
            return [P + f"src = {self.array(x, 'fwd')}.reshape({self.N(size)})",
                    P + f"dst = {self.array(o, 'fwd')}.reshape({self.N(size)})",
                    P + f"for j in range({self.N(size)}):", P + "    dst[j] = src[j]"]
        raise Unsupported(n.kind)  # pragma: no cover (normalise refused it)

    def reduced(self, n, xshape):
        axis, keep = n.kw.get("axis"), n.kw.get("keepdims", False)
        nd = len(xshape)
        axes = tuple(range(nd)) if axis is None else tuple(
            sorted(int(a) % nd for a in ((axis,) if isinstance(axis, numbers.Integral)
                                         else axis)))
        idx = self.idx(xshape)
        ridx = [("0" if k in axes else v) for k, v in enumerate(idx)] if keep else [
            v for k, v in enumerate(idx) if k not in axes]
        return axes, ridx

    # backward ------------------------------------------------------------------------------
    def backward_source(self) -> str:
        self.constants = {}
        ny = len(self.outputs)
        nq = len([1 for r in self.roles.values() if r[0] == "seq"])
        nv = len([1 for r in self.roles.values() if r[0] == "inv"])
        L = ["def backward(BLAS, P, T, " + self.signature(("q", "v", "k")) + "m, "
             + "".join(f"S{j}, " for j in range(len(self.saves)))
             + "".join(f"gy{k}, " for k in range(ny))
             + "".join(f"gc{k}, " for k in range(self.ncarries))
             + "".join(f"gq{k}, " for k in range(nq))
             + "".join(f"gv{k}, " for k in range(nv))
             + "".join(f"gT{s}, " for s in sorted(self.deferred)) + "):"]
        for j, (shape, dt, slots) in enumerate(self.gbufs):
            L.append(f"    G{j} = np.empty({self.shape_src((len(slots),) + shape)}, np.{dt.name})")
        small = [n for n in self.nodes if n.kind == "MatMul" and not self.blas(
            *self.meta[n.args[0]][0], self.meta[n.args[1]][0][1])]
        transposed = sorted({n.args[1] for n in small
                             if self.roles[n.args[1]][0] in ("inv", "const")})
        for b in transposed:  # loops, not np.ascontiguousarray: quicker to compile
            n0, n1 = self.meta[b][0]
            L.append(f"    t{b} = np.empty({self.shape_src((n1, n0))}, {self.dt(b)})")
            L += self.loops((n0, n1), [f"t{b}[i1, i0] = {self.array(b, 'bwd')}[i0, i1]"], 1)
        for n in small:
            if n.kind == "MatMul":
                o = n.outs[0]
                a, b = n.args
                L.append(f"    ga{o} = np.empty({self.shape_src(self.meta[a][0])}, {self.dt(a)})")
                L.append(f"    gb{o} = np.empty({self.shape_src(self.meta[b][0])}, {self.dt(b)})")
        L.append("    for t in range(T - 1, -1, -1):")
        for j, (shape, dt, slots) in enumerate(self.gbufs):
            full = (len(slots),) + shape
            L += self.loops(full, [f"G{j}[{_ix(self.idx(full))}] = 0"], 2)
        for k, s in enumerate(self.new_carries):  # a running row: the gradient goes to the
            shape = self.meta[s][0]                 # new carry (a masked one passes it on)
            i = _ix(self.idx(shape))
            body = [f"{self.grad(s, self.idx(shape))} += gc{k}[{i}]"] if s in self.wanted else []
            L += self.masked_block(shape, body + [f"gc{k}[{i}] = 0"], 2)
        for k, s in enumerate(self.outputs):
            if s in self.wanted:
                L += self.seed(s, f"gy{k}[t, {{i}}]", 2)
        for g in reversed(self.groups):
            L += self.backward_group(g) if g.fused else self.backward_other(g.nodes[0])
        for k in range(self.ncarries):
            s = self.carry_slot(k)
            idx = self.idx(self.meta[s][0])
            L += self.loops(self.meta[s][0], [f"gc{k}[{_ix(idx)}] += {self.grad(s, idx)}"], 2)
        L.append("    return 0")  # the deferred weight gradients: NumPy, after the call
        return "\n".join(self.with_constants(L))

    def seed(self, s, source, indent):
        shape = self.meta[s][0]
        idx = self.idx(shape)
        return self.masked_block(shape, [f"{self.grad(s, idx)} += {source.format(i=_ix(idx))}"],
                                 indent)

    def masked_block(self, shape, body, indent, otherwise=None):
        """for i0 (the batch axis): if m[t, i0]: body (else: otherwise), each inside loops over
        the other axes."""
        pad = "    " * indent

        def nest(lines):
            out = ["    " * (k - 1) + f"for i{k} in range({self.N(n)}):"
                   for k, n in enumerate(shape[1:], start=1)]
            return out + ["    " * (len(shape) - 1) + b for b in lines]

        out = [pad + f"for i0 in range({self.N(shape[0])}):", pad + "    if m[t, i0]:"]
        out += [pad + "        " + ln for ln in nest(body)]
        if otherwise is not None:
            out += [pad + "    else:"] + [pad + "        " + ln for ln in nest(otherwise)]
        return out

    def backward_group(self, g):
        idx = self.idx(g.shape)
        body = []
        for o in sorted(g.produced & self.wanted):
            body.append(f"l{o} = {self.grad(o, idx)}" if o in self.in_memory and
                        o not in self.deferred else f"l{o} = {self.K(0)}")
        for n in reversed(g.nodes):
            o = n.outs[0]
            if o not in self.wanted:
                continue
            if n.kind in VIEWS:
                target = self.grad(n.args[0], self.view_index(n, idx))
                if target is not None:
                    body.append(f"{target} += l{o}")
                continue
            vals = [self.backward_arg(a, g, idx, n) for a in n.args]
            out_val = self.value(o, idx, "bwd") if o in self.needed else None
            self.kw = n.kw
            contribs = ELEMENTWISE[n.kind].backward(self, f"l{o}", *vals, out_val)
            body += self.prelude  # (softplus's backward reads a tanh)
            self.prelude = []
            for a, c in zip(n.args, contribs):
                if c is None or isinstance(a, tuple) or a not in self.wanted:
                    continue
                if a in g.produced:
                    body.append(f"l{a} += {self.cast(a, [o], c)}")
                    continue
                target = self.grad(a, self.operand_index(self.meta[a][0], g.shape, idx))
                if target is not None and a not in self.alias:
                    body.append(f"{target} += {self.cast(a, [o], c)}")
        if not any(n.outs[0] in self.wanted for n in g.nodes):
            return []
        return self.loops(g.shape, body, 2)

    def backward_arg(self, a, g, idx, node):
        if isinstance(a, tuple):
            v = a[1]
            return repr(bool(v)) if isinstance(v, (bool, np.bool_)) else self.K(v)
        if a in self.needed or self.roles[a][0] in ("seq", "inv", "const"):
            return f"({self.value(a, self.operand_index(self.meta[a][0], g.shape, idx), 'bwd')})"
        return "None"  # not read by this op's backward

    def backward_other(self, n):
        o, P = n.outs[0], "        "
        oshape = self.meta[o][0]
        go = self.grad_array(o)
        if go is None:
            return []
        if n.kind == "MatMul":
            a, b = n.args
            (M, K), Nn = self.meta[a][0], self.meta[b][0][1]
            lines = []
            if self.blas(M, K, Nn):  # the products accumulate straight into the gradients
                m, k, n = self.N(M), self.N(K), self.N(Nn)
                if self.grad_array(a) is not None:
                    lines.append(P + f"GEMM(BLAS, 101, 111, 112, {m}, {k}, {n}, {self.K(1)}, "
                                     f"{go}.ctypes, {n}, {self.array(b, 'bwd')}.ctypes, {n}, "
                                     f"{self.K(1)}, {self.grad_array(a)}.ctypes, {k})")
                if self.grad_array(b) is not None and o not in self.deferred:
                    lines.append(P + f"GEMM(BLAS, 101, 112, 111, {k}, {n}, {m}, {self.K(1)}, "
                                     f"{self.array(a, 'bwd')}.ctypes, {k}, {go}.ctypes, {n}, "
                                     f"{self.K(1)}, {self.grad_array(b)}.ctypes, {n})")
                return lines
            if self.grad_array(a) is not None:
                bT = f"t{b}"
                if self.roles[b][0] not in ("inv", "const"):
                    n0, n1 = self.meta[b][0]
                    lines.append(P + f"t{b} = np.empty({self.shape_src((n1, n0))}, {self.dt(b)})")
                    lines += self.loops(
                        (n0, n1), [f"t{b}[i1, i0] = {self.array(b, 'bwd')}[i0, i1]"], 2)
                lines.append(P + f"np.dot({go}, {bT}, ga{o})")
                shape = self.meta[a][0]
                i = _ix(self.idx(shape))
                lines += self.loops(shape, [f"{self.grad(a, self.idx(shape))} += ga{o}[{i}]"], 2)
            if self.grad_array(b) is not None and o not in self.deferred:
                n0, n1 = self.meta[a][0]
                lines.append(P + f"aT = np.empty({self.shape_src((n1, n0))}, {self.dt(a)})")
                lines += self.loops((n0, n1), [f"aT[i1, i0] = {self.array(a, 'bwd')}[i0, i1]"], 2)
                lines.append(P + f"np.dot(aT, {go}, gb{o})")
                shape = self.meta[b][0]
                i = _ix(self.idx(shape))
                lines += self.loops(shape, [f"{self.grad(b, self.idx(shape))} += gb{o}[{i}]"], 2)
            return lines
        if n.kind in ("Sum", "Mean"):
            x = n.args[0]
            if self.grad_array(x) is None:
                return []
            xshape = self.meta[x][0]
            axes, ridx = self.reduced(n, xshape)
            g = self.grad(o, ridx)
            if n.kind == "Mean":
                g = f"{g} / {self.dt(o)}({self.N(int(np.prod([xshape[a] for a in axes])))})"
            return self.loops(xshape, [f"{self.grad(x, self.idx(xshape))} += {g}"], 2)
        if n.kind == "Softmax":
            x = n.args[0]
            if self.grad_array(x) is None:
                return []
            rows, last = oshape[:-1], oshape[-1]
            r = self.idx(rows)
            ov = lambda j: self.value(o, r + [j], "bwd")  # noqa: E731
            gv = lambda j: self.grad(o, r + [j])  # noqa: E731
            body = [f"dot = {self.K(0)}", f"for j in range({self.N(last)}):",
                    f"    dot += {gv('j')} * {ov('j')}", f"for j in range({self.N(last)}):",
                    f"    {self.grad(x, r + ['j'])} += {ov('j')} * ({gv('j')} - dot)"]
            return self.loops(rows, body, 2)
        if n.kind == "Concat":
            axis, lines, off = n.kw["axis"], [], 0
            for x in n.args:
                xshape = self.meta[x][0]
                idx = self.idx(xshape)
                oidx = [f"{self.N(off)} + {v}" if k == axis else v for k, v in enumerate(idx)]
                if self.grad_array(x) is not None:
                    lines += self.loops(xshape, [f"{self.grad(x, idx)} += {self.grad(o, oidx)}"], 2)
                off += xshape[axis]
            return lines
        if n.kind == "Reshape":
            x = n.args[0]
            if self.grad_array(x) is None:
                return []
            size = int(np.prod(oshape))
            return [P + f"gsrc = {go}.reshape({self.N(size)})",
                    P + f"gdst = {self.grad_array(x)}.reshape({self.N(size)})",
                    P + f"for j in range({self.N(size)}):", P + "    gdst[j] += gsrc[j]"]
        raise Unsupported(n.kind)  # pragma: no cover


# --- compiling and running --------------------------------------------------------------------

# tanh(x) = x P(x^2) / Q(x^2) on [-9, 9] (fitted here for float32: relative error 7e-9 in exact
# arithmetic, within 6 ulps evaluated in float32; |tanh(x)| rounds to 1 beyond 9)
TANH_P = (9.99999993e-01, 1.30840472e-01, 3.10399741e-03, 1.11547339e-05, -2.02269230e-08,
          5.27875067e-11, -8.49073535e-14)
TANH_Q = (1.0, 4.64173743e-01, 2.44953430e-02, 2.54620490e-04)


_compiled = {}  # source of the two loops -> (forward, backward), for this process


def _blas() -> dict:
    """{dtype: (address, integer bits)} of NumPy's own cblas gemm for float32/float64 (the
    compiled loops call it through `blas_gemm`), empty when NumPy's BLAS library or its symbols
    are not found (np.dot then)."""
    if _blas_found:
        return _blas_found[0]
    found = {}
    import ctypes
    import glob
    import os
    root = os.path.dirname(np.__file__)
    libs = sorted(glob.glob(os.path.join(root + ".libs", "*openblas*"))
                  + glob.glob(os.path.join(root, ".dylibs", "*openblas*")))
    names = [("scipy_cblas_{}gemm64_", 64), ("cblas_{}gemm64_", 64),
             ("scipy_cblas_{}gemm", 32), ("cblas_{}gemm", 32)]
    for path in libs:
        try:
            lib = ctypes.CDLL(path)
        except OSError:
            continue
        for name, bits in names:
            try:
                found = {d: (ctypes.cast(getattr(lib, name.format(c)), ctypes.c_void_p).value,
                             bits)
                         for d, c in ((np.dtype(np.float32), "s"), (np.dtype(np.float64), "d"))}
            except AttributeError:
                continue
            break
        if found:
            break
    _blas_found.append(found)
    return found


_blas_found = []
_gemms = {}


def blas_gemm(bits: int):
    """The numba intrinsic `GEMM(address, order, trans_a, trans_b, m, n, k, alpha, a, lda, b,
    ldb, beta, c, ldc)` calling the cblas gemm at `address` (integers of `bits` bits; a, b, c
    arrays or their `.ctypes`). The address is a runtime argument, never a constant of the
    code: the compiled loops can then go to numba's on-disk cache (BLAS is loaded at another
    address in the next process)."""
    if bits in _gemms:
        return _gemms[bits]
    from llvmlite import ir
    from numba.core import cgutils, types
    from numba.extending import intrinsic

    def pointer(context, builder, ty, value):
        if isinstance(ty, types.Array):
            data = context.make_array(ty)(context, builder, value).data
        else:  # an array's .ctypes
            data = cgutils.create_struct_proxy(ty)(context, builder, value=value).data
        return builder.bitcast(data, ir.IntType(8).as_pointer())

    @intrinsic
    def gemm(typingctx, address, order, trans_a, trans_b, m, n, k, alpha, a, lda, b, ldb,
             beta, c, ldc):
        argtys = (address, order, trans_a, trans_b, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc)
        real_ty = c.dtype

        def codegen(context, builder, signature, args):
            integer = types.int64 if bits == 64 else types.int32
            real = context.get_value_type(real_ty)
            i32, ii, ptr = ir.IntType(32), ir.IntType(bits), ir.IntType(8).as_pointer()
            fnty = ir.FunctionType(ir.VoidType(), [i32, i32, i32, ii, ii, ii, real, ptr, ii,
                                                  ptr, ii, real, ptr, ii])
            fn = builder.inttoptr(args[0], fnty.as_pointer())
            kinds = ("e", "e", "e", "i", "i", "i", "r", "p", "i", "p", "i", "r", "p", "i")
            values = []
            for kind, ty, v in zip(kinds, argtys[1:], args[1:]):
                if kind == "p":
                    values.append(pointer(context, builder, ty, v))
                else:
                    to = {"e": types.int32, "i": integer, "r": real_ty}[kind]
                    values.append(context.cast(builder, v, ty, to))
            builder.call(fn, values)
            return context.get_dummy_value()

        return types.void(*argtys), codegen

    _gemms[bits] = gemm
    return gemm


# --- the on-disk cache ------------------------------------------------------------------------

CACHE_ENV = "MINIGRAD_JIT_CACHE"  # a directory, or "off" (also "0", "", "none") for no cache


def cache_dir():
    """The directory of the on-disk cache of compiled loops, or None (no cache).

    `$MINIGRAD_JIT_CACHE` when set ("off", "0", "none" or empty: no cache), else
    `$XDG_CACHE_HOME/minigrad/jit` (`~/.cache/minigrad/jit`). Created with mode 0700; None
    (and the loops compile in memory only) when it is not a directory owned by this user that
    only this user can write: numba's cache files are pickles, and a pickle written by another
    user would run their code here."""
    import os
    where = os.environ.get(CACHE_ENV)
    if where is not None and where.strip().lower() in ("", "0", "off", "none", "false", "no"):
        return None
    if where is None:
        base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
        where = os.path.join(base, "minigrad", "jit")
    where = os.path.abspath(where)
    try:
        os.makedirs(where, mode=0o700, exist_ok=True)
        for d in (where, os.path.join(where, "__pycache__")):
            os.makedirs(d, mode=0o700, exist_ok=True)
            if not _private(d):
                return None
    except OSError:
        return None
    return where


def _private(path) -> bool:
    import os
    import stat
    st = os.lstat(path)
    return (stat.S_ISDIR(st.st_mode) and (not hasattr(os, "getuid") or st.st_uid == os.getuid())
            and not st.st_mode & (stat.S_IWGRP | stat.S_IWOTH))


def cache_key(source: str) -> str:
    """The hash naming a program's cache file: its source and the versions of what compiles
    and runs it (numba's own index also checks numba's version and the CPU)."""
    import hashlib
    import platform

    import llvmlite
    import numba
    text = "\n".join([source, numba.__version__, llvmlite.__version__, np.__version__,
                      platform.python_version(), platform.machine()])
    return hashlib.sha256(text.encode()).hexdigest()[:32]


def _module_text(source, bits):
    return ("# compiled loops of one minigrad step program, generated by minigrad.jit\n"
            "import numpy as np\n\nfrom minigrad.jit import blas_gemm\n\n"
            f"GEMM = blas_gemm({bits})\n\n\n" + source)


def _module_name(text):
    return f"minigrad_jit_{cache_key(text)}"


def _load_module(source, bits, where):
    """The module of the generated source written (atomically, once) to a file of the cache
    directory named by its hash, so numba's cache can index its functions; None when the
    file cannot be written."""
    import importlib.util
    import os
    import sys
    import tempfile
    text = _module_text(source, bits)
    name = _module_name(text)
    path = os.path.join(where, name + ".py")
    try:
        with open(path, encoding="utf-8") as f:
            ok = f.read() == text
    except (OSError, UnicodeDecodeError):
        ok = False
    if not ok:  # missing or damaged: write it anew (a new stamp: numba's index is then stale)
        try:
            fd, tmp = tempfile.mkstemp(dir=where, suffix=".tmp")
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                f.write(text)
            os.replace(tmp, path)
        except OSError:
            return None
    if name not in sys.modules:
        # registered by name: numba's cache finds the loops' globals through it when loading
        spec = importlib.util.spec_from_file_location(name, path)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        sys.modules[name] = module
    return sys.modules[name]


JIT_OPTIONS = {"error_model": "numpy", "fastmath": False}
# error_model="numpy": a division by zero gives inf as in NumPy, and the loops vectorise
# (Python's model checks every divisor); fastmath stays off (exact IEEE)


def _compile(source: str, dtype):
    if source not in _compiled:
        import numba
        bits = _blas().get(np.dtype(dtype), (0, 64))[1]
        where = cache_dir()
        module = _load_module(source, bits, where) if where is not None else None
        if module is None:
            ns = {"np": np, "GEMM": blas_gemm(bits)}
            exec(compile(source, "<minigrad.jit step program>", "exec"), ns)
            fns = ns["forward"], ns["backward"]
        else:
            fns = module.forward, module.backward
        cache = module is not None
        _compiled[source] = tuple(Loop(numba.njit(cache=cache, **JIT_OPTIONS)(f), cache)
                                  for f in fns)
    return _compiled[source]


class Loop:
    """One compiled loop: compiled (or loaded from numba's on-disk cache) at its first call;
    a cache entry that fails to load (a damaged file) means compiling it anew in memory."""

    def __init__(self, dispatcher, cached):
        self.dispatcher, self.cached, self.ready = dispatcher, cached, False

    def prepare(self, args):
        """Compile (or load) the loop for the types of `args` now, without running it."""
        import numba
        types = tuple(numba.typeof(a) for a in args)
        self.ready = True  # (set first: a failure here is not retried at every call)
        if self.cached:
            try:
                self.dispatcher.compile(types)
            except Exception:  # noqa: BLE001 - a damaged cache entry: drop it, compile anew
                forget(self.dispatcher.py_func)
                self.dispatcher = numba.njit(cache=True, **JIT_OPTIONS)(self.dispatcher.py_func)
                try:
                    self.dispatcher.compile(types)
                except Exception:  # noqa: BLE001 - still unreadable: compile in memory
                    self.cached = False
            if self.cached:
                _cache_hits[0] += sum(self.dispatcher.stats.cache_hits.values())
                return
            self.dispatcher = numba.njit(cache=False, **JIT_OPTIONS)(self.dispatcher.py_func)
        self.dispatcher.compile(types)

    def __call__(self, *args):
        if not self.ready:
            self.prepare(args)
        return self.dispatcher(*args)


_cache_hits = [0]


def cache_hits() -> int:
    """How many compiled loops this process loaded from the on-disk cache (`cache_dir()`)."""
    return _cache_hits[0]


def forget(fn):
    """Remove numba's cache files of the generated function `fn` (damaged ones)."""
    import glob
    import os
    folder = os.path.join(os.path.dirname(fn.__code__.co_filename), "__pycache__")
    for path in glob.glob(os.path.join(folder, f"{fn.__module__}.{fn.__name__}-*.nb[ic]")):
        try:
            os.remove(path)
        except OSError:
            pass


_compiled_runs = [0]


def compiled_runs() -> int:
    """How many forward runs of this process went through compiled loops."""
    return _compiled_runs[0]


def compiled_count() -> int:
    """How many step programs this process has compiled."""
    return len(_compiled)


def _contiguous(a, dtype=None):
    return np.ascontiguousarray(a, dtype=dtype)


class NumbaExecutor:
    """Runs one normalised step program over all T steps with the compiled loops; see the
    module docstring for `forward` and `backward`."""

    def __init__(self, gen: Generator, consts, source: str, params, needs):
        self.gen, self.consts, self.source = gen, [_contiguous(c) for c in consts], source
        self.pf, self.pb = params
        self.program_needs = needs
        self.forward_fn = self.backward_fn = None
        self.blas_address = _blas().get(gen.dtype, (0, 64))[0]  # the loops' GEMM calls it
        roles = gen.roles
        self.seq_slots = [s for k, s in sorted((r[1], s) for s, r in roles.items()
                                               if r[0] == "seq")]
        self.inv_slots = [s for k, s in sorted((r[1], s) for s, r in roles.items()
                                               if r[0] == "inv")]
        self.carry_slots = [gen.carry_slot(k) for k in range(gen.ncarries)]

    def _dtype(self, s):
        return self.gen.meta[s][1]

    def compile(self):
        """The two loops of this program (each compiled, or loaded from the on-disk cache, at
        its first call)."""
        if self.forward_fn is None:
            self.forward_fn, self.backward_fn = _compile(self.source, self.gen.dtype)

    def forward(self, seqs, carry0, invariants, masks=None, need_grad=True):
        self.compile()
        args, out, carries, saved, kept = self.loop_args(seqs, carry0, invariants, masks,
                                                         need_grad)
        self.forward_fn(*args)
        _compiled_runs[0] += 1
        if not need_grad:
            return out, carries, ()
        # a flat tuple of what backward holds (mg.memory counts the arrays), then the rest
        return out, carries, (*saved, *kept)

    def loop_args(self, seqs, carry0, invariants, masks, need_grad):
        """(the forward loop's arguments, out, final carries, saved arrays, (mask, the rest
        backward reads)): out, carries and saved are arrays the loop writes."""
        g = self.gen
        seqs = [_contiguous(a, self._dtype(s)) for a, s in zip(seqs, self.seq_slots)]
        invs = [_contiguous(a, self._dtype(s)) for a, s in zip(invariants, self.inv_slots)]
        carries = [np.array(a, dtype=self._dtype(s), order="C", copy=True)
                   for a, s in zip(carry0, self.carry_slots)]
        T = seqs[0].shape[0] if seqs else masks.shape[0]
        B = g.meta[(g.outputs + g.new_carries)[0]][0][0]
        m = (np.ones((T, B), bool) if masks is None
             else _contiguous(np.asarray(masks, bool).reshape(T, B)))
        ys = [np.empty((T,) + g.meta[s][0], self._dtype(s)) for s in g.outputs]
        # without backward to come, one step's worth of the saved arrays (written over at
        # every step) is all the loop needs
        kept = T if need_grad else 1
        saved = [np.empty((kept, len(slots)) + shape, dt) for shape, dt, slots in g.saves]
        args = (self.blas_address, self.pf, T, int(need_grad), *seqs, *invs, *self.consts,
                *carries, m, *ys, *saved)
        return (args, ys[0] if len(ys) == 1 else ys, carries, saved,
                (m, (T, seqs, invs)))

    def backward(self, saved, g_out, g_final_carry):
        g = self.gen
        stacks, m, (T, seqs, invs) = saved[:-2], saved[-2], saved[-1]
        if len(g.outputs) == 1:
            g_out = [g_out]
        gys = [np.zeros((T,) + g.meta[s][0], self._dtype(s)) if go is None
               else _contiguous(go, self._dtype(s))
               for go, s in zip(g_out or [None] * len(g.outputs), g.outputs)]
        gcs = [np.zeros(g.meta[s][0], self._dtype(s)) if gc is None
               else np.array(gc, dtype=self._dtype(s), order="C", copy=True)
               for gc, s in zip(g_final_carry or [None] * len(self.carry_slots),
                                self.carry_slots)]
        # no gradient reaches a slot outside g.wanted: an empty array of its type stands in
        gqs = [np.zeros((T,) + g.meta[s][0] if s in g.wanted else (0,) * (len(g.meta[s][0]) + 1),
                        self._dtype(s)) for s in self.seq_slots]
        gvs = [np.zeros(g.meta[s][0] if s in g.wanted else (0,) * len(g.meta[s][0]),
                        self._dtype(s)) for s in self.inv_slots]
        gts = [gqs[g.alias[o]] if o in g.alias else np.zeros((T,) + g.meta[o][0], self._dtype(o))
               for o in sorted(g.deferred)]
        args = (self.blas_address, self.pb, T, *seqs, *invs, *self.consts, m, *stacks, *gys,
                *gcs, *gqs, *gvs, *gts)
        self.backward_fn(*args)
        for (o, n), gt in zip(sorted(g.deferred.items()), gts):
            a, b = n.args
            kind, k = g.roles[a]
            if kind == "seq":
                xs = seqs[k]
            else:
                j, i = g.save_of[a]
                xs = stacks[j][:, i]
            rows = xs.shape[0] * xs.shape[1]
            gvs[g.roles[b][1]] += xs.reshape(rows, -1).T @ gt.reshape(rows, -1)
        want = self.needs_grad
        return ([q if want(s) else None for q, s in zip(gqs, self.seq_slots)],
                [c if want(s) else None for c, s in zip(gcs, self.carry_slots)],
                [v if want(s) else None for v, s in zip(gvs, self.inv_slots)])

    def needs_grad(self, s) -> bool:
        wanted = self.program_needs
        return self._dtype(s).kind == "f" and (wanted is None or s in wanted)


def make_from(program: StepProgram) -> NumbaExecutor:
    """A numba executor for a `StepProgram`, or `Unsupported(reason)`; see `make_executor`."""
    if not available():
        raise Unsupported("numba is not installed (pip install minigrad[jit])")
    nodes, meta, roles, consts, outputs, new_carries, wanted = normalise(program)
    gen = Generator(nodes, meta, roles, outputs, new_carries, len(program.carries), wanted)
    if gen.dtype not in (np.float32, np.float64):
        raise Unsupported(f"dtype {gen.dtype}: only float32 and float64 are compiled")
    forward, pf = parametrise(gen.forward_source())
    backward, pb = parametrise(gen.backward_source())
    source = forward + "\n\n\n" + backward + "\n"
    return NumbaExecutor(gen, consts, source, (pf, pb), program.needs_grad)


class Literal:
    """A constant operand given by value (a plain number is never taken for a slot number)."""

    def __init__(self, value):
        self.value = value


def make_executor(program) -> NumbaExecutor:
    """A numba executor for a `minigrad.scan.Program` (or a `StepProgram`), or
    `Unsupported(reason)`: an op outside the table (`supported_ops()`), a dtype other than
    float32/float64 (bool masks and conditions aside), numba not installed.

    The program runs compiled from its first run: the forward loop compiles (or loads from the
    on-disk cache, `cache_dir()`) at the first forward, the backward loop at the first backward,
    about a second each, once per program and process (any batch size and any T)."""
    if isinstance(program, StepProgram):
        return make_from(program)
    if not isinstance(program, scan.Program):
        raise TypeError(f"make_executor: expected a minigrad.scan.Program, got "
                        f"{type(program).__name__}")
    consts, meta = program.consts, program.step.meta
    ops, used = [], set(program.seq_slots + program.carry_slots + program.invariant_slots
                        + [program.out_slot] + list(program.carry_out_slots))
    for op in program.step.ops:
        args = [Literal(consts[a]) if a in consts else a for a in op.args]
        used.update(a for a in op.args if a not in consts)
        used.update(op.outs)
        ops.append((op.fn_class, op.kwargs, args, op.outs))
    step = StepProgram(ops, {s: meta[s] for s in used}, program.seq_slots, program.carry_slots,
                       program.invariant_slots, [program.out_slot], program.carry_out_slots,
                       needs_grad=program.needs_grad)
    return make_from(step)
