"""`Stepper`: the backward pass one node at a time, in the engine's own order, and the recorded
forward pass one op at a time."""
from __future__ import annotations

import html as _html
from dataclasses import dataclass

import numpy as np

from minigrad.autograd import roots_and_grads
from minigrad.engine import count_consumers, run_backward
from minigrad.tensor import Tensor, seed_grad
from minigrad.viz.draw import Digraph, layout
from minigrad.viz.graph import build, fmt_shape, fmt_value, host, op_id, outputs_of


@dataclass
class ForwardStep:
    """Op number `index` of the forward pass: `node` and the arrays it produced (`outputs`,
    None when the graph was not built inside `mg.viz.record()`)."""

    index: int
    node: object
    outputs: tuple | None

    def __repr__(self):
        return f"ForwardStep({self.index}: {self.node.name} #{self.node.seq})"


@dataclass
class BackwardStep:
    """Node number `index` of the backward pass.

    `gouts`: the gradient arriving at each of the node's outputs (summed over its consumers;
    zeros for an output nobody used), `gxs`: what it sends to each input, already summed back to
    the input's shape (None for inputs that need no gradient), `done`: the drawing ids
    (`op<seq>`) of the nodes finished before this one.
    """

    index: int
    node: object
    gouts: tuple
    gxs: tuple
    done: frozenset

    def __repr__(self):
        return f"BackwardStep({self.index}: {self.node.name} #{self.node.seq})"


class Stepper:
    """Walk the backward pass of `outputs` node by node, and replay the recorded forward pass.

    Backward runs in the order `Tensor.backward` uses, on the graph's saved arrays, without
    freeing them or touching any `.grad` (hooks are not run). Each `BackwardStep` holds the
    gradient arriving at the node and those it sends to its inputs:
    `gx_i = d(loss)/d(input_i)` restricted to the path through this node, so for a leaf the
    gradients sent to it, summed over all steps, equal `mg.grad(loss, leaf)` (`.grad(leaf)`).
    A non-scalar output needs `grad_outputs` (one array or Tensor per output), as in `mg.grad`.

    >>> import minigrad as mg
    >>> w = mg.tensor([1.0, -2.0], requires_grad=True, name="w")
    >>> with mg.viz.record():
    ...     loss = mg.tanh(w).sum()
    >>> st = mg.viz.Stepper(loss)
    >>> [s.node.name for s in st]          # backward order
    ['Sum', 'Tanh']
    >>> [s.node.name for s in st.forward_steps]
    ['Tanh', 'Sum']
    >>> st.draw(st[1])  # doctest: +SKIP
    """

    def __init__(self, outputs, grad_outputs=None):
        roots, grad_outputs = roots_and_grads("Stepper", outputs, grad_outputs)
        if not any(isinstance(t, Tensor) and t.requires_grad for t in roots):
            raise ValueError("Stepper: no output requires grad, so there is no backward pass to "
                             "step through (build it from tensors with requires_grad=True)")
        self.graph = build(roots)
        seeds = [seed_grad(t, g, "Stepper") for t, g in zip(roots, grad_outputs)]
        self.roots = roots
        self.seeds = seeds
        self.forward_steps = [ForwardStep(k, fn, outputs_of(fn))
                              for k, fn in enumerate(self.graph.ops)]
        self.backward_steps, self._leaf_grads = _walk(roots, seeds)

    def __iter__(self):
        return iter(self.backward_steps)

    def __len__(self):
        return len(self.backward_steps)

    def __getitem__(self, k) -> BackwardStep:
        return self.backward_steps[k]

    def __repr__(self):
        return (f"Stepper({len(self.forward_steps)} ops forward, {len(self.backward_steps)} "
                f"nodes backward)")

    def _repr_html_(self) -> str:
        """Jupyter's display: the backward pass as a table, one row per node, with the size
        (shape, norm) of the gradient arriving and of each gradient sent. Plain HTML, no
        network; `mg.viz.html_stepper(stepper)` gives the page that steps through it."""
        rows = []
        for s in self.backward_steps:
            tags = ", ".join(f"{k} = {v}" for k, v in (s.node.tags or ()))
            rows.append(
                f"<tr><td>{s.index}</td><td><b>{_html.escape(s.node.name)}</b> "
                f"#{s.node.seq}{'<br><small>' + _html.escape(tags) + '</small>' if tags else ''}"
                f"</td><td>{_sizes(s.gouts)}</td><td>{_sizes(s.gxs)}</td></tr>")
        return ("<div class='minigrad-stepper'><b>" + _html.escape(repr(self)) + "</b>"
                "<table><thead><tr><th>step</th><th>node</th><th>gradient arriving</th>"
                "<th>gradients sent to inputs</th></tr></thead><tbody>" + "".join(rows) +
                "</tbody></table></div>")

    def grad(self, leaf: Tensor):
        """The whole gradient that reached `leaf` (an array), or None."""
        entry = self._leaf_grads.get(id(leaf))
        if entry is None:
            return None
        g = entry[1]
        # as in backward: a float32 leaf used with float64 data gets a float32 gradient
        return g.astype(leaf.data.dtype) if g.dtype != leaf.data.dtype else g

    def draw(self, step=None, *, show_values: bool = True, group: str | None = None,
             rankdir: str = "TB") -> Digraph:
        """The graph at `step` (a BackwardStep, a ForwardStep or None for the whole graph).

        The current node is red; in a forward step the ops run so far are blue; in a backward
        step the finished nodes are orange, their outputs' gradients are in their labels and
        the gradients already sent are written on the edges.
        """
        return layout(self.graph, show_values=show_values, group=group, rankdir=rankdir,
                      **self._marks(step))

    def _marks(self, step):
        g = self.graph
        if step is None:
            return {}
        if isinstance(step, ForwardStep):
            marks = {g.op_id(fn): "fdone" for fn in g.ops[:step.index]}
            marks[g.op_id(step.node)] = "current"
            return {"marks": marks}
        if not isinstance(step, BackwardStep):
            raise TypeError(f"Stepper.draw: expected a ForwardStep or BackwardStep, got "
                            f"{type(step).__name__}")
        marks, edge_text, op_grads = {}, {}, {}
        for s in self.backward_steps[:step.index + 1]:
            nid = g.op_id(s.node)
            marks[nid] = "bdone"
            op_grads[nid] = " | ".join(fmt_value(x) for x in s.gouts)
            edge_text.update(self.edge_grads(s))
        marks[g.op_id(step.node)] = "current"
        for k, t in enumerate(self.roots):
            edge_text[(g.op_id(t.grad_fn), f"out{k}", -1)] = "g = " + fmt_value(self.seeds[k])
        return {"marks": marks, "edge_text": edge_text, "op_grads": op_grads}

    def edge_grads(self, step: BackwardStep) -> dict:
        """(source id, this node's id, input slot) -> text of the gradient sent along it."""
        g = self.graph
        dst = g.op_id(step.node)
        out = {}
        for e in g.edges:
            if e.dst == dst and not e.const and step.gxs[e.pos] is not None:
                out[(e.src, e.dst, e.pos)] = "g = " + fmt_value(step.gxs[e.pos])
        return out


def _sizes(arrays) -> str:
    """'(2, 3) |g| 0.41' per array, one line each, for the notebook table."""
    lines = []
    for a in arrays:
        if a is None:
            lines.append("&mdash;")
            continue
        h = np.asarray(host(a), dtype=np.float64)
        lines.append(f"{fmt_shape(h.shape)} &nbsp;|g| {np.sqrt((h * h).sum()):.4g}")
    return "<br>".join(lines)


def _walk(roots, seeds):
    """The engine's own backward walk (`engine.run_backward`), kept step by step through its
    `visit` callback, without freeing, hooks or touching any `.grad`."""
    count_consumers(roots, "build the Stepper before calling backward, or pass "
                           "retain_graph=True to that backward")
    steps, done = [], []

    def visit(fn, gouts, gxs):
        gouts = gouts or [None] * fn.n_out
        steps.append(BackwardStep(len(steps), fn, tuple(gouts), tuple(gxs), frozenset(done)))
        done.append(op_id(fn))

    leaves = run_backward(roots, seeds, retain_graph=True, run_hooks=False, visit=visit)
    return steps, leaves
