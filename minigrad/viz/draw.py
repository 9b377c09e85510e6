"""`draw`: the graph behind some outputs as a `graphviz.Digraph`, grouped by module or time step.

Op nodes (rounded boxes) show the op, its output shapes and values and what it saved; tensor
nodes (plain boxes) are parameters, other leaves, constants and the outputs. An edge carries one
tensor from its producer to the input slot of its consumer; a bold edge is an array the consumer
saved for backward, a dashed one a constant (no gradient flows back along it). Ops that a
`create_graph=True` backward recorded (the gradient graph) are drawn in their own colour, with the
order of the derivative they compute; a legend box says what each colour and line means.
"""
from __future__ import annotations

import os
import shutil
from collections import defaultdict

from minigrad.viz.graph import Graph, build, fmt_shape, fmt_value, outputs_of, saved_names

try:
    import graphviz
except ImportError as e:  # pragma: no cover - graphviz is a dependency of minigrad[viz]
    raise ImportError("minigrad.viz needs the graphviz Python package: "
                      "pip install 'minigrad[viz]' (and the Graphviz program for rendering)") from e


class GraphvizNotFoundError(RuntimeError):
    """Rendering needs Graphviz's `dot` program, and it is not on PATH."""


_INSTALL = ("rendering a graph needs the Graphviz program `dot`, which is not on PATH. Install "
            "it with `apt-get install graphviz` (Debian/Ubuntu), `brew install graphviz` (macOS) "
            "or `conda install -c conda-forge graphviz`, or from https://graphviz.org/download/ ; "
            "the DOT text is still available as `.source`")


def check_dot() -> None:
    """Raise `GraphvizNotFoundError` with install instructions when `dot` is missing."""
    if shutil.which("dot") is None:
        raise GraphvizNotFoundError(_INSTALL)


class Digraph(graphviz.Digraph):
    """A `graphviz.Digraph` whose `render(path)` writes exactly `path` (SVG, PNG or PDF)."""

    def pipe(self, *args, **kwargs):
        check_dot()
        try:
            return super().pipe(*args, **kwargs)
        except graphviz.ExecutableNotFound as e:
            raise GraphvizNotFoundError(_INSTALL) from e

    def render(self, path, format: str | None = None) -> str:
        """Write the drawing to `path`; the format comes from its suffix (.svg, .png, .pdf).

        >>> mg.viz.draw(loss).render("out/loss.svg")  # doctest: +SKIP
        """
        path = os.fspath(path)
        fmt = format or os.path.splitext(path)[1].lstrip(".").lower()
        if fmt not in ("svg", "png", "pdf"):
            raise ValueError(f"render: cannot tell the format of {path!r}; "
                             "use a .svg, .png or .pdf name or pass format=")
        data = self.pipe(format=fmt)
        os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
        with open(path, "wb") as f:
            f.write(data)
        return path


# Colours, also used by the HTML stepper's style sheet.
FILL = {"op": "#eeeeee", "gradop": "#ecd9f7", "param": "#cfe2ff", "leaf": "#d8f0d8",
        "const": "#f7f7f7", "output": "#ffe0b0", "more": "#ffffff"}
LEGEND = {"op": "op (forward)", "gradop": "op of a create_graph backward",
          "param": "parameter", "leaf": "leaf input", "const": "constant", "output": "output"}
MARK = {"current": "#ff8c69", "fdone": "#bfe0ff", "bdone": "#ffd9a0"}
GRAD_COLOR = "#b03000"


def draw(outputs, *, show_values: bool = True, show_grads: bool = True, group: str | None = None,
         max_nodes: int | None = None, rankdir: str = "TB", fold: bool = False,
         legend: bool = True) -> Digraph:
    """Draw the graph that produced `outputs` (a Tensor or a sequence of Tensors).

    Nodes show op name, shape, dtype and name (parameters by dotted path once
    `Module.name_parameters()` ran); values and `.grad` of small tensors (at most 8 elements)
    whole, of larger ones as min/mean/max/norm. Values of intermediate results are known only
    for graphs built inside `mg.viz.record()`.

    `group="module"` draws each module's ops in a box; `group="time"` one box per time step
    (nodes tagged by `mg.tag_scope("time", t)`, as `rnn.unroll` does), and with `fold=True` a run
    of identical consecutive steps is drawn once, labelled with its count. `max_nodes` keeps the
    last `max_nodes` ops (those nearest the outputs). Returns a `Digraph`: `.source` is the DOT
    text, `.render("g.svg")` writes an image, Jupyter shows it inline.

    Drawing a gradient that `mg.grad(..., create_graph=True)` returned shows the graph of the
    backward pass (ops in lilac, labelled "d1" for a first derivative, "d2" for the graph of a
    second one, ...) joined to the forward graph it reads (grey ops). `legend=False` leaves out
    the box that explains the colours and lines.

    >>> import minigrad as mg
    >>> w = mg.tensor([[0.5, -1.0]], requires_grad=True, name="w")
    >>> with mg.viz.record():
    ...     loss = mg.tanh(w * 2.0).sum()
    >>> g = mg.viz.draw(loss)
    >>> "Tanh" in g.source
    True
    """
    if group not in (None, "module", "time"):
        raise ValueError(f"draw: group must be None, 'module' or 'time', got {group!r}")
    if fold and group != "time":
        raise ValueError("draw: fold=True folds identical time steps and needs group='time'")
    if max_nodes is not None and max_nodes < 1:
        raise ValueError(f"draw: max_nodes must be a positive int, got {max_nodes}")
    if max_nodes is not None and fold:
        raise ValueError("draw: pass fold=True or max_nodes, not both (a folded box could lose "
                         "the step it stands for)")
    if rankdir not in ("TB", "BT", "LR", "RL"):
        raise ValueError(f"draw: rankdir must be TB, BT, LR or RL, got {rankdir!r}")
    return layout(build(outputs), show_values=show_values, show_grads=show_grads, group=group,
                  max_nodes=max_nodes, rankdir=rankdir, fold=fold, legend=legend)


def _tag(fn, key):
    """The innermost value of tag `key` on a node, or None."""
    for k, v in reversed(fn.tags):
        if k == key:
            return v
    return None


def _fold(g: Graph):
    """Fold runs of identical consecutive time steps: (op id -> representative op id, runs).

    Two steps are identical when their ops, in creation order, have the same names and input
    shapes and read the same leaves, with references to the step before written relatively.
    """
    steps = defaultdict(list)
    for fn in g.ops:
        t = _tag(fn, "time")
        if t is not None:
            steps[t].append(fn)
    order = list(steps)  # ops are in creation order, so steps are too
    where = {}
    for t in order:
        for pos, fn in enumerate(steps[t]):
            where[id(fn)] = (t, pos)

    def signature(k):
        t, prev = order[k], order[k - 1] if k else None
        sig = []
        for fn in steps[t]:
            ins = []
            for p in fn.parents:
                if p is None:
                    ins.append(None)
                    continue
                src, idx, shape = p
                if idx < 0:
                    ins.append(("leaf", id(src), shape))
                    continue
                st, pos = where.get(id(src), (None, None))
                if st == t:
                    ins.append(("in", pos, idx, shape))
                elif st is not None and st == prev:
                    ins.append(("prev", pos, idx, shape))
                else:  # e.g. step t's slice of a sequence split before the loop
                    ins.append(("ext", src.name, shape))
            sig.append((fn.name, tuple(ins)))
        return tuple(sig)

    sigs = [signature(k) for k in range(len(order))]
    runs = []  # lists of time values, each run folded when longer than one
    for k, t in enumerate(order):
        if runs and sigs[k] == sigs[k - 1]:
            runs[-1].append(t)
        else:
            runs.append([t])
    rep = {}
    for run in runs:
        first = steps[run[0]]
        for t in run[1:]:
            for fn, r in zip(steps[t], first):
                rep[g.op_id(fn)] = g.op_id(r)
    return rep, runs


def layout(g: Graph, *, show_values=True, show_grads=True, group=None, max_nodes=None,
           rankdir="TB", fold=False, marks=None, edge_text=None, op_grads=None,
           classes=False, legend=False) -> Digraph:
    """Build the Digraph for `g`. Steppers add `marks` (node id -> current/fdone/bdone),
    `edge_text` ((src, dst, pos) -> gradient text) and `op_grads` (op id -> text);
    `classes=True` leaves colouring to a style sheet (the HTML stepper); `legend=True` adds the
    box explaining colours and lines."""
    marks = marks or {}
    edge_text = edge_text or {}
    op_grads = op_grads or {}
    dot = Digraph(graph_attr={"rankdir": rankdir, "fontname": "Helvetica", "fontsize": "11",
                              "nodesep": "0.25", "ranksep": "0.3"},
                  node_attr={"fontname": "Helvetica", "fontsize": "10", "style": "filled",
                             "shape": "box", "margin": "0.08,0.04"},
                  edge_attr={"fontname": "Helvetica", "fontsize": "9", "arrowsize": "0.6"})
    ops = g.ops
    dropped = set()
    if max_nodes is not None and len(ops) > max_nodes:
        dropped = {g.op_id(fn) for fn in ops[:len(ops) - max_nodes]}
        ops = ops[len(ops) - max_nodes:]
    rep, runs = _fold(g) if fold else ({}, [])
    folded_label = {}
    for run in runs:
        if len(run) > 1:
            folded_label[run[0]] = (f"t = {run[0]} … {run[-1]}  ({len(run)} identical steps, "
                                    f"values not shown)")

    # cluster chain per op: the nested boxes it is drawn in
    def chain(fn):
        if group == "module":
            return tuple(v for k, v in fn.tags if k == "module")
        if group == "time":
            t = _tag(fn, "time")
            return () if t is None else (t,)
        return ()

    out_shapes = {}
    for e in g.edges:
        if not e.src.startswith(("leaf", "out")) and "_c" not in e.src:
            out_shapes[(e.src, e.out_idx)] = e.shape
    tree = {"nodes": [], "kids": {}}
    chains = {}
    kinds_drawn = set()

    def place(ch, line):
        box = tree
        for k in range(len(ch)):
            box = box["kids"].setdefault(ch[:k + 1], {"nodes": [], "kids": {}})
        box["nodes"].append(line)

    def attrs(nid, kind):
        a = {"id": nid}
        if classes:
            a["class"] = kind
            a["fillcolor"] = FILL[kind]
        else:
            a["fillcolor"] = MARK.get(marks.get(nid), FILL[kind])
            if marks.get(nid) == "current":
                a["penwidth"] = "3"
        if kind in ("op", "gradop"):
            a["style"] = "rounded,filled"
        elif kind == "const":
            a["style"] = "dashed,filled"
        return a

    for fn in ops:
        nid = g.op_id(fn)
        if nid in rep:
            continue
        ch = chain(fn)
        chains[nid] = ch
        lines = [fn.name]
        outs = outputs_of(fn)
        meta = getattr(fn, "out_meta", None) if fn.n_out > 1 else None
        many = fn.n_out > 4  # e.g. a sequence split into T steps: one line, not T
        for k in range(1 if many else fn.n_out):
            if outs is not None:
                shape, dtype = tuple(outs[k].shape), outs[k].dtype
            elif meta is not None:
                shape, dtype = meta[k]
            else:
                shape, dtype = out_shapes.get((nid, k)), None
            prefix = f"[{k}] " if fn.n_out > 1 else ""
            if many:
                lines.append(f"{fn.n_out} outputs like [0]: " + fmt_shape(shape or (), dtype))
            elif shape is not None:
                lines.append(prefix + fmt_shape(shape, dtype))
            if show_values and outs is not None and nid not in rep.values() and not many:
                lines.append(fmt_value(outs[k]))
        saved = saved_names(fn)
        if saved:
            lines.append("saves: " + ", ".join(saved))
        if show_grads and nid in op_grads:
            lines.append("grad: " + op_grads[nid])
        order = _tag(fn, "grad")
        if order is not None:
            lines[0] += f"  (d{order})"
        kinds_drawn.add("op" if order is None else "gradop")
        place(ch, (nid, _label(lines), attrs(nid, "op" if order is None else "gradop")))
    if dropped:
        place((), ("more", f"… {len(dropped)} earlier ops not drawn", attrs("more", "more")))

    kept_ids = {g.op_id(fn) for fn in ops}
    used = set()
    for e in g.edges:
        if (e.dst in kept_ids and e.dst not in rep) or e.dst.startswith("out"):
            used.add(e.src)
    for t in g.tensors:
        if t.id not in used and t.kind != "output":
            continue
        lines = [t.name, fmt_shape(t.shape, t.dtype)]
        consumer = t.id.split("_c")[0] if t.kind == "const" else None
        if show_values and t.value is not None and consumer not in rep.values():
            lines.append(fmt_value(t.value))
        if show_grads and t.grad is not None:
            lines.append("grad: " + fmt_value(t.grad))
        ch = ()
        if t.kind == "const":
            ch = chains.get(consumer, ())
        elif group == "module" and t.kind == "param" and "." in t.name:
            module = t.name.rsplit(".", 1)[0]
            ch = next((c for c in chains.values() if c and c[-1] == module), ())
        kinds_drawn.add(t.kind)
        place(ch, (t.id, _label(lines), attrs(t.id, t.kind)))

    _emit(dot, tree, group, folded_label, [0])
    if legend:
        _legend(dot, [k for k in LEGEND if k in kinds_drawn], attrs)

    # edges, mapped onto representatives and drawn once each with a count
    time_of = {g.op_id(fn): _tag(fn, "time") for fn in g.ops}
    n_out = {g.op_id(fn): fn.n_out for fn in g.ops}
    in_runs = set(rep) | set(rep.values())
    drawn = {}
    for e in g.edges:
        if e.dst not in kept_ids and not e.dst.startswith("out"):
            continue
        if e.const and e.dst in rep:
            continue
        src = "more" if e.src in dropped else rep.get(e.src, e.src)
        dst = rep.get(e.dst, e.dst)
        # parallel edges stay apart (x * x), but copies folded onto one pair are merged
        key = (src, dst) if e.src in in_runs or e.dst in in_runs else (src, dst, e.pos, e.out_idx)
        if key in drawn:
            drawn[key][1] += 1
            continue
        # an edge between two steps of one folded run is the recurrence: drawn as a loop
        recurrent = (fold and time_of.get(e.src) is not None and time_of.get(e.dst) is not None
                     and time_of[e.src] != time_of[e.dst] and chains.get(src) == chains.get(dst))
        drawn[key] = [e, 1, recurrent]
    for key, (e, n, recurrent) in drawn.items():
        src, dst = key[:2]
        a = {"id": f"e_{e.src}_{e.dst}_{e.pos if e.pos >= 0 else 'out'}"}
        label = []
        if 1 < n_out.get(e.src, 1) <= 4:
            label.append(f"[{e.out_idx}]")
        # inside a folded box every edge repeats once per step: only crossings get a count
        inside = src in in_runs and dst in in_runs and chains.get(src) == chains.get(dst)
        if n > 1 and (recurrent or not inside):
            label.append(f"×{n}")
        if recurrent:
            label.append("t→t+1")
            a["style"] = "dashed"
            a["constraint"] = "false"
        if e.saved:
            a["penwidth"] = "2"
        if e.const:
            a["style"] = "dashed"
            a["color"] = "#888888"
        if label:
            a["taillabel" if classes else "label"] = " ".join(label)
        text = edge_text.get((e.src, e.dst, e.pos))
        if text is not None:
            a["label"] = text
            a["fontcolor"] = GRAD_COLOR
        dot.edge(src, dst, **a)
    return dot


def _legend(dot, kinds, attrs):
    """A box naming each colour drawn, and what bold and dashed edges mean."""
    with dot.subgraph(name="cluster_legend") as sub:
        sub.attr(label="legend", style="rounded", color="#bbbbbb", fontsize="10", id="legend")
        prev = None
        for kind in kinds:
            a = attrs(f"legend_{kind}", kind)
            sub.node(f"legend_{kind}", label=LEGEND[kind], fontsize="9", **a)
            if prev is not None:
                sub.edge(prev, f"legend_{kind}", style="invis", id=f"legend_e_{kind}")
            prev = f"legend_{kind}"
        sub.node("legend_a", label="", shape="point", width="0.05", id="legend_a")
        sub.node("legend_b", label="saved for backward", shape="plaintext", fontsize="9",
                 style="", id="legend_b")
        sub.node("legend_c", label="constant: no gradient", shape="plaintext", fontsize="9",
                 style="", id="legend_c")
        sub.edge("legend_a", "legend_b", penwidth="2", id="legend_e_saved")
        sub.edge("legend_a", "legend_c", style="dashed", color="#888888", id="legend_e_const")
        if prev is not None:
            sub.edge(prev, "legend_a", style="invis", id="legend_e_lines")


def _label(lines) -> str:
    # DOT wants the two characters backslash-n between lines
    return "\\n".join(line.replace("\\", "\\\\").replace("\n", "\\n") for line in lines)


def _emit(dot, box, group, folded_label, counter):
    for nid, label, a in box["nodes"]:
        dot.node(nid, label=label, **a)
    for ch, kid in box["kids"].items():
        counter[0] += 1
        with dot.subgraph(name=f"cluster{counter[0]}") as sub:
            v = ch[-1]
            if group == "time":
                label = folded_label.get(v, f"t = {v}")
            else:
                label = str(v)
            sub.attr(label=label, style="rounded", color="#7a7a7a", fontsize="11",
                     id=f"cluster_{group}_{v}".replace(" ", "_").replace(".", "_"))
            _emit(sub, kid, group, folded_label, counter)
