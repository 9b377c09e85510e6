"""mg.viz: drawings checked against the graph (rendered by real `dot`), grouping by time step and by
module, folding of identical steps, and every Stepper frame against the engine's gradients."""
from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import graphviz
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import minigrad as mg
from minigrad.engine import GraphFreedError, state
from minigrad.nn import Module, Parameter
from minigrad.viz.draw import MARK

needs_dot = pytest.mark.skipif(shutil.which("dot") is None,
                               reason="Graphviz `dot` is not installed (apt-get install graphviz)")


# --- helpers ----------------------------------------------------------------------------------

def svg_counts(digraph):
    """(nodes, edges, clusters) of the SVG that `dot` draws, the legend's aside."""
    svg = digraph.pipe(format="svg").decode()
    return tuple(len(re.findall(r'<g id="(?!legend)[^"]*" class="%s' % kind, svg))
                 for kind in ("node", "edge\"", "cluster\""))


def dot_nodes(source):
    """Node statements of a DOT text: id -> label (the legend's aside)."""
    return {k: v for k, v in re.findall(r'^\s*(\w+) \[label="((?:[^"\\]|\\.)*)"', source, re.M)
            if not k.startswith("legend")}


def dot_clusters(source):
    """Cluster label -> ids of the nodes declared directly inside it (DOT text, nesting aware)."""
    stack, out = [], {}
    for line in source.splitlines():
        s = line.strip()
        if s.startswith("subgraph cluster"):
            stack.append(None)
        elif "[" not in s and stack and stack[-1] is None and " label=" in f" {s}":
            label = re.search(r'(?:^| )label=("(?:[^"\\]|\\.)*"|\S+)', s).group(1)
            stack[-1] = label.strip('"')
            out.setdefault(stack[-1], set())
        elif s == "}" and stack:
            stack.pop()
        else:
            m = re.match(r'(\w+) \[label=', s)
            if m and stack:
                out[stack[-1]].add(m.group(1))
    out.pop("legend", None)  # the legend box is checked on its own
    return out


def dot_edges(source):
    """(src, dst, attributes) of the edges of a DOT text, the legend's aside."""
    return [e for e in re.findall(r'^\s*(\w+) -> (\w+)(?: \[(.*)\])?$', source, re.M)
            if not e[0].startswith("legend")]


class Cell(Module):
    """h' = tanh(x U + h W) * sigmoid(h): 6 ops per step (2 MatMul, Add, Tanh, Sigmoid, Mul)."""

    OPS = ["MatMul", "MatMul", "Add", "Tanh", "Sigmoid", "Mul"]

    def __init__(self, rng, n_in=2, n_h=3):
        super().__init__()
        self.u = Parameter(rng.standard_normal((n_in, n_h)))
        self.w = Parameter(rng.standard_normal((n_h, n_h)) * 0.5)

    def forward(self, x, h):
        return mg.tanh(x @ self.u + h @ self.w) * mg.sigmoid(h)


def unrolled(T, seed=0, extra_at=None, B=2):
    """A T-step recurrence tagged by time; loss = sum(h_T ** 2) (2 ops: Mul, Sum)."""
    rng = np.random.default_rng(seed)
    cell = Cell(rng).name_parameters("cell")
    x = mg.tensor(rng.standard_normal((T, B, 2)), name="x")
    h0 = mg.tensor(rng.standard_normal((B, 3)), requires_grad=True, name="h0")
    hs = []
    with mg.viz.record():
        h = h0
        for t in range(T):
            with mg.tag_scope("time", t):
                h = cell(x[t], h)
                if t == extra_at:
                    h = mg.relu(h)
            hs.append(h)
        loss = (h * h).sum()
    return loss, cell, h0, hs


class Collect:
    """Every tensor any op produces, through the engine's recorder hook (independent of viz)."""

    def __enter__(self):
        self.tensors = []
        self.prev, state.recorder = (state.recorder,
                                     lambda fn, ins, outs, kwargs: self.tensors.extend(outs))
        return self

    def __exit__(self, *exc):
        state.recorder = self.prev


# --- drawing: counts against the graph ---------------------------------------------------------

@needs_dot
def test_small_graph_nodes_edges_and_labels():
    w = mg.tensor([[0.5, -1.0]], dtype="float64", requires_grad=True, name="w")
    x = mg.tensor([[2.0, 3.0]], dtype="float64", requires_grad=True, name="x")
    b = mg.tensor(np.arange(12.0).reshape(3, 4), requires_grad=True, name="b")
    with mg.viz.record():
        loss = (w * x).sum() + b.sum()
    g = mg.viz.draw(loss)
    # ops Mul, Sum, Sum, Add; tensors w, x, b, output; edges w, x -> Mul -> Sum, b -> Sum,
    # two Sums -> Add -> output
    assert svg_counts(g) == (8, 7, 0)
    nodes = dot_nodes(g.source)
    assert len(nodes) == 8
    labels = "\n".join(nodes.values())
    # names, shapes, dtypes; small values whole; a 12-element tensor summarised by NumPy's numbers
    assert "w\\n(1, 2) float64\\n[[ 0.5 -1. ]]" in labels
    assert "[[ 1. -3.]]" in labels  # w * x
    bv = np.arange(12.0)
    assert (f"min {bv.min():.3g}  mean {bv.mean():.3g}\\nmax {bv.max():.3g}  "
            f"norm {np.linalg.norm(bv):.3g}") in labels
    assert "output\\n() float64\\n" + f"{0.5 * 2 - 1.0 * 3 + 66:.4g}" in labels
    # Mul saved both inputs: both edges into it are bold, and its label says so
    mul = next(k for k, v in nodes.items() if v.startswith("Mul"))
    assert "saves: in0, in1" in nodes[mul]
    into_mul = [e for e in dot_edges(g.source) if e[1] == mul]
    assert len(into_mul) == 2 and all("penwidth=2" in e[2] for e in into_mul)

    loss.backward()
    g2 = mg.viz.draw(loss)
    labels2 = "\n".join(dot_nodes(g2.source).values())
    assert "grad: [[2. 3.]]" in labels2          # d loss / d w = x
    assert "saves: freed" in labels2
    assert "grad:" not in "\n".join(dot_nodes(mg.viz.draw(loss, show_grads=False).source).values())
    assert "[[ 1. -3.]]" not in mg.viz.draw(loss, show_values=False).source


OPS = {"tanh": (1, mg.tanh), "sigmoid": (1, mg.sigmoid), "mul": (2, mg.mul), "add": (2, mg.add),
       "matmul": (2, mg.matmul)}


@needs_dot
@given(st.lists(st.tuples(st.sampled_from(sorted(OPS)), st.integers(0, 50), st.integers(0, 50)),
                min_size=1, max_size=6), st.integers(1, 3))
def test_random_graph_counts_match_rendered_svg(program, n):
    """Random programs over a pool of tensors: every op and every used leaf appears once, every
    input as an edge (x * x gives two), checked in the DOT text and in dot's SVG."""
    leaves = [mg.tensor(np.eye(n) + k, requires_grad=True, name=f"a{k}") for k in range(2)]
    pool, used, n_edges = list(leaves), set(), 0
    for name, i, j in program:
        arity, f = OPS[name]
        args = [pool[i % len(pool)], pool[j % len(pool)]][:arity]
        used.update(k for k, a in enumerate(leaves) for x in args if x is a)
        pool.append(f(*args))
        n_edges += arity
    results = pool[2:]
    loss = mg.stack([r.sum() for r in results]).sum()
    n_ops = 2 * len(results) + 2                       # each op, its Sum, then Stack and Sum
    n_edges += 2 * len(results) + 1 + 1                # into the Sums, into Stack, Sum, output
    g = mg.viz.draw(loss)
    assert len(dot_nodes(g.source)) == n_ops + len(used) + 1
    assert len(dot_edges(g.source)) == n_edges
    assert svg_counts(g) == (n_ops + len(used) + 1, n_edges, 0)


@needs_dot
def test_render_writes_svg_png_and_checks_suffix(tmp_path):
    loss, *_ = unrolled(2)
    g = mg.viz.draw(loss)
    assert g.render(tmp_path / "g.svg") == str(tmp_path / "g.svg")
    assert b"<svg" in (tmp_path / "g.svg").read_bytes()
    g.render(tmp_path / "sub" / "g.png")
    assert (tmp_path / "sub" / "g.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with pytest.raises(ValueError, match="format"):
        g.render(tmp_path / "g.txt")
    # what Jupyter calls to show it inline
    assert "<svg" in g._repr_mimebundle_()["image/svg+xml"]


def test_without_dot_source_is_there_and_render_says_how_to_install(tmp_path, monkeypatch):
    loss, *_ = unrolled(2)
    monkeypatch.setenv("PATH", str(tmp_path))  # an empty directory: no `dot`
    g = mg.viz.draw(loss, group="time")
    assert isinstance(g, graphviz.Digraph)
    assert g.source.startswith("digraph") and "Tanh" in g.source
    for call in (lambda: g.render(tmp_path / "g.svg"), lambda: g.pipe(format="svg")):
        with pytest.raises(mg.viz.GraphvizNotFoundError) as e:
            call()
        msg = str(e.value)
        assert "apt-get install graphviz" in msg and "brew install graphviz" in msg
        assert "conda" in msg
    assert not (tmp_path / "g.svg").exists()
    with pytest.raises(mg.viz.GraphvizNotFoundError):
        mg.viz.save_html(loss, tmp_path / "page.html")


def test_bad_arguments():
    loss, *_ = unrolled(1)
    with pytest.raises(ValueError, match="group"):
        mg.viz.draw(loss, group="layer")
    with pytest.raises(ValueError, match="fold"):
        mg.viz.draw(loss, fold=True)
    with pytest.raises(ValueError, match="max_nodes"):
        mg.viz.draw(loss, max_nodes=0)
    with pytest.raises(ValueError, match="not both"):
        mg.viz.draw(loss, group="time", fold=True, max_nodes=3)
    with pytest.raises(ValueError, match="rankdir"):
        mg.viz.draw(loss, rankdir="XY")
    with pytest.raises(TypeError, match="Tensor"):
        mg.viz.draw([loss, 3.0])


def test_unrecorded_graph_still_draws_shapes_and_names():
    w = mg.tensor(np.ones((2, 3)), requires_grad=True, name="w")
    loss = mg.tanh(w).sum()             # no record(): no intermediate values
    nodes = dot_nodes(mg.viz.draw(loss).source)
    tanh = next(v for v in nodes.values() if v.startswith("Tanh"))
    assert tanh == "Tanh\\n(2, 3)\\nsaves: (2, 3)"
    assert "w\\n(2, 3) float64" in "\n".join(nodes.values())


# --- grouping -----------------------------------------------------------------------------------

@needs_dot
@pytest.mark.parametrize("T", [1, 3])
def test_group_by_time_puts_each_step_in_its_box(T):
    loss, cell, h0, hs = unrolled(T)
    g = mg.viz.draw(loss, group="time")
    clusters = dot_clusters(g.source)
    assert sorted(clusters) == [f"t = {t}" for t in range(T)]
    names = dot_nodes(g.source)
    for t in range(T):
        ops = sorted(names[i].split("\\n")[0] for i in clusters[f"t = {t}"]
                     if re.fullmatch(r"op\d+", i))
        assert ops == sorted(Cell.OPS)
        assert f"op{hs[t].grad_fn.seq}" in clusters[f"t = {t}"]
    # the loss ops, the leaves and the output stay outside; x[t] constants sit in their step
    inside = set().union(*clusters.values())
    assert {i for i in names if i not in inside} == {
        f"op{loss.grad_fn.seq}", f"op{loss.grad_fn.parents[0][0].seq}",
        "leaf0", "leaf1", "leaf2", "out0"}
    assert sum(i.startswith("op") and "_c" in i for i in inside) == T
    n, e, c = svg_counts(g)
    assert (n, c) == (len(names), T)


@needs_dot
def test_fold_draws_a_long_run_once_with_its_count():
    drawn = []
    for T in (12, 40):
        loss, *_ = unrolled(T)
        g = mg.viz.draw(loss, group="time", fold=True)
        clusters = dot_clusters(g.source)
        # step 0 reads the leaf h0, steps 1.. read the step before: two kinds of step
        assert sorted(clusters) == ["t = 0", f"t = 1 … {T - 1}  ({T - 1} identical steps, "
                                             "values not shown)"]
        nodes = dot_nodes(g.source)
        assert sum(i.startswith("op") and "_c" not in i for i in nodes) == 2 * 6 + 2
        # the recurrence is one dashed loop per state read, counted T - 2 times
        loops = [e for e in dot_edges(g.source) if "t→t+1" in (e[2] or "")]
        assert len(loops) == 2 and all(f"×{T - 2} t→t+1" in e[2] for e in loops)
        drawn.append(svg_counts(g))
    assert drawn[0] == drawn[1]                   # a longer sequence draws the same picture
    assert drawn[0][0] == 14 + 3 + 2 + 1          # ops, u w h0, two x[t] constants, output


def test_fold_keeps_a_different_step_apart():
    # step 3 has one more op (relu) and step 4 reads it instead of a Mul: both stand alone
    loss, *_ = unrolled(7, extra_at=3)
    labels = sorted(dot_clusters(mg.viz.draw(loss, group="time", fold=True).source))
    assert labels == ["t = 0", "t = 1 … 2  (2 identical steps, values not shown)", "t = 3",
                      "t = 4", "t = 5 … 6  (2 identical steps, values not shown)"]


class Linear(Module):
    def __init__(self, rng, n_in, n_out):
        super().__init__()
        self.weight = Parameter(rng.standard_normal((n_in, n_out)))
        self.bias = Parameter(np.zeros(n_out))

    def forward(self, x):
        return x @ self.weight + self.bias


class Net(Module):
    def __init__(self, rng):
        super().__init__()
        self.enc = Linear(rng, 3, 4)
        self.head = Linear(rng, 4, 2)

    def forward(self, x):
        return self.head(mg.tanh(self.enc(x)))


@needs_dot
def test_group_by_module_nests_boxes_and_places_parameters():
    net = Net(np.random.default_rng(1)).name_parameters()
    x = mg.tensor(np.ones((5, 3)))
    loss = mg.mean(net(x) ** 2)
    g = mg.viz.draw(loss, group="module")
    clusters = dot_clusters(g.source)
    nodes = dot_nodes(g.source)
    assert set(clusters) == {"Net", "enc", "head"}
    kind = {k: nodes[k].split("\\n")[0] for k in nodes}
    assert sorted(kind[i] for i in clusters["enc"]) == ["Add", "MatMul", "enc.bias", "enc.weight"]
    assert sorted(kind[i] for i in clusters["head"]) == ["Add", "MatMul", "head.bias",
                                                          "head.weight"]
    assert sorted(kind[i] for i in clusters["Net"]) == ["Tanh"]   # nested: only its own node
    assert svg_counts(g)[2] == 3
    # each box is declared inside Net's box
    src = g.source
    assert src.index("label=Net") < src.index("label=enc") < src.index("label=head")


def test_max_nodes_keeps_the_ops_nearest_the_output():
    loss, *_ = unrolled(4)
    full = dot_nodes(mg.viz.draw(loss).source)
    n_ops = sum(k.startswith("op") and "_c" not in k for k in full)
    g = mg.viz.draw(loss, max_nodes=5)
    nodes = dot_nodes(g.source)
    ops = sorted((int(k[2:]) for k in nodes if re.fullmatch(r"op\d+", k)))
    assert len(ops) == 5 and ops == sorted(int(k[2:]) for k in full
                                           if re.fullmatch(r"op\d+", k))[-5:]
    assert nodes["more"] == f"… {n_ops - 5} earlier ops not drawn"


# --- stepping ----------------------------------------------------------------------------------

def lstm_loss(T, B, H, seed):
    """A composed 4-gate LSTM (float64), every tensor it makes collected through the engine."""
    rng = np.random.default_rng(seed)
    I = 2
    w_ih = mg.tensor(rng.standard_normal((I, 4 * H)) * 0.5, requires_grad=True, name="w_ih")
    w_hh = mg.tensor(rng.standard_normal((H, 4 * H)) * 0.5, requires_grad=True, name="w_hh")
    b = mg.tensor(rng.standard_normal(4 * H) * 0.1, requires_grad=True, name="b")
    x = mg.tensor(rng.standard_normal((T, B, I)))
    with Collect() as col, mg.viz.record():
        h = c = mg.zeros(B, H, dtype="float64")
        for t in range(T):
            with mg.tag_scope("time", t):
                i, f, g, o = mg.split(x[t] @ w_ih + h @ w_hh + b, 4, axis=1)
                c = mg.sigmoid(f) * c + mg.sigmoid(i) * mg.tanh(g)
                h = mg.sigmoid(o) * mg.tanh(c)
        loss = (h * h).sum() + c.mean()
    return loss, [w_ih, w_hh, b], col.tensors


@given(st.integers(1, 3), st.integers(1, 3), st.integers(1, 3), st.integers(0, 2**16))
def test_every_backward_step_matches_the_engine(T, B, H, seed):
    loss, leaves, tensors = lstm_loss(T, B, H, seed)
    stepper = mg.viz.Stepper(loss)

    # order: the engine runs a node's output hooks when it reaches it, in its own order
    order = []
    for t in tensors:
        if t.requires_grad and t._node is not None:
            t.register_hook(lambda g, fn=t._node: order.append(fn) if (
                not order or order[-1] is not fn) else None)
    engine = mg.grad(loss, tensors + leaves, retain_graph=True, allow_unused=True)
    assert [s.node for s in stepper] == order

    grad_of = {(id(t._node), t._idx): g for t, g in zip(tensors, engine) if t._node is not None}
    sent = {}
    for s in stepper:
        # the gradient arriving at each output is d loss / d output, as the engine computed it
        for k, gout in enumerate(s.gouts):
            want = grad_of.get((id(s.node), k))
            np.testing.assert_allclose(gout, 0 if want is None else want.numpy(), rtol=1e-10,
                                       atol=1e-14)
        for i, p in enumerate(s.node.parents):
            if p is not None and s.gxs[i] is not None:
                key = (id(p[0]), p[1])
                sent[key] = sent.get(key, 0) + s.gxs[i]
                assert s.gxs[i].shape == p[2]
    # what the steps send into each tensor adds up to its gradient; for leaves, to mg.grad's
    for t, g in zip(tensors + leaves, engine):
        key = (id(t._node), t._idx) if t._node is not None else (id(t), -1)
        if g is not None and key in sent:
            np.testing.assert_allclose(sent[key], g.numpy(), rtol=1e-10, atol=1e-14)
    for t, g in zip(leaves, engine[len(tensors):]):
        np.testing.assert_allclose(stepper.grad(t), g.numpy(), rtol=1e-10)
        assert t.grad is None                     # stepping leaves .grad alone

    # forward steps replay the ops in creation order with the values they produced
    fsteps = stepper.forward_steps
    assert [f.node.seq for f in fsteps] == sorted(f.node.seq for f in fsteps)
    produced = {id(t._node): [] for t in tensors if t._node is not None}
    for t in tensors:
        if t._node is not None:
            produced[id(t._node)].append(t.data)
    for f in fsteps:
        assert len(f.outputs) == len(produced[id(f.node)])
        for a, b in zip(f.outputs, produced[id(f.node)]):
            np.testing.assert_array_equal(a, b)

    # the graph was not freed: a normal backward still runs and agrees
    loss.backward()
    for t, g in zip(leaves, engine[len(tensors):]):
        np.testing.assert_allclose(t.grad.numpy(), g.numpy(), rtol=1e-12)


def test_hand_computed_steps():
    w = mg.tensor([0.3, -0.7], dtype="float64", requires_grad=True, name="w")
    x = mg.tensor([2.0, 5.0], dtype="float64", requires_grad=True, name="x")
    loss = (mg.tanh(w) * x).sum()
    s = mg.viz.Stepper(loss)
    assert [k.node.name for k in s] == ["Sum", "Mul", "Tanh"]
    tw = np.tanh([0.3, -0.7])
    np.testing.assert_allclose(s[0].gouts[0], 1.0)
    np.testing.assert_allclose(s[0].gxs[0], [1.0, 1.0])
    np.testing.assert_allclose(s[1].gxs[0], [2.0, 5.0])           # to tanh(w): x
    np.testing.assert_allclose(s[1].gxs[1], tw)                   # to x: tanh(w)
    np.testing.assert_allclose(s[2].gxs[0], [2.0, 5.0] * (1 - tw ** 2))
    np.testing.assert_allclose(s.grad(w), [2.0, 5.0] * (1 - tw ** 2))
    assert s[2].done == {f"op{s[0].node.seq}", f"op{s[1].node.seq}"}
    assert [f.node.name for f in s.forward_steps] == ["Tanh", "Mul", "Sum"]
    assert s.forward_steps[0].outputs is None                    # not recorded


def test_stepper_and_draw_stay_on_the_device():
    """On the 'fake' device (any stray NumPy call on its arrays raises) values still print."""
    w = mg.tensor([[0.3, -0.7, 1.1]], dtype="float64", requires_grad=True, device="fake")
    x = mg.tensor([[2.0], [5.0]], dtype="float64", device="fake")
    with mg.viz.record():
        loss = mg.sigmoid(x * w).mean()
    s = mg.viz.Stepper(loss)
    want = mg.grad(loss, w, retain_graph=True)
    np.testing.assert_allclose(mg.tensor(s.grad(w)).numpy(), want.numpy(), rtol=1e-12)
    xs, ws = np.array([[2.0], [5.0]]), np.array([[0.3, -0.7, 1.1]])
    sig = 1 / (1 + np.exp(-xs * ws))
    np.testing.assert_allclose(want.numpy(), (sig * (1 - sig) * xs).sum(0, keepdims=True) / 6)
    label = next(v for v in dot_nodes(s.draw(s[1]).source).values() if v.startswith("Sigmoid"))
    assert np.array2string(sig, precision=3, separator=" ", suppress_small=True,
                           max_line_width=60).replace("\n", "\\n") in label


def test_grad_outputs_seed_a_vector_output():
    w = mg.tensor([0.3, -0.7], dtype="float64", requires_grad=True)
    v = np.array([2.0, -1.0])
    s = mg.viz.Stepper(mg.exp(w), grad_outputs=mg.tensor(v))
    np.testing.assert_allclose(s[0].gouts[0], v)
    np.testing.assert_allclose(s.grad(w), v * np.exp([0.3, -0.7]))
    with pytest.raises(ValueError, match="requires grad"):
        mg.viz.Stepper(mg.tensor([1.0]))
    with pytest.raises(ValueError, match="2 grad_outputs"):
        mg.viz.Stepper(mg.exp(w), grad_outputs=[v, v])


def test_stepper_on_a_freed_graph_says_why():
    w = mg.tensor([1.0, 2.0], requires_grad=True)
    loss = mg.tanh(w).sum()
    loss.backward()
    with pytest.raises(GraphFreedError, match="retain_graph"):
        mg.viz.Stepper(loss)


@needs_dot
def test_stepper_draw_marks_nodes_and_edges():
    loss, leaves, _ = lstm_loss(2, 1, 2, 0)
    s = mg.viz.Stepper(loss)
    k = 6
    g = s.draw(s[k])
    nodes = dict(re.findall(r'^\s*(\w+) \[label=.*?fillcolor="([^"]+)"', g.source, re.M))
    assert nodes[f"op{s[k].node.seq}"] == MARK["current"]
    assert sorted(i for i, c in nodes.items() if c == MARK["bdone"]) == sorted(s[k].done)
    # one gradient label per gradient sent so far, plus the seed on the output edge
    n_sent = sum(x is not None for step in s[:k + 1] for x in step.gxs)
    labels = [e for e in dot_edges(g.source) if e[2] and 'label="g = ' in e[2]]
    assert len(labels) == n_sent + 1
    nf, ef, _ = svg_counts(g)
    assert (nf, ef) == svg_counts(mg.viz.draw(loss))[:2]
    fwd = s.draw(s.forward_steps[3]).source
    marks = re.findall(r'fillcolor="([^"]+)" id=op\d+', fwd)
    assert marks.count(MARK["fdone"]) == 3 and marks.count(MARK["current"]) == 1


def test_demo_writes_and_prints_its_files(tmp_path):
    if shutil.which("dot") is None:
        pytest.skip("Graphviz `dot` is not installed")
    root = Path(__file__).resolve().parents[1]
    run = subprocess.run([sys.executable, "-m", "demos.graph_tour", "--out", str(tmp_path),
                          "--steps", "2", "--long", "6"], cwd=root, capture_output=True,
                         text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    paths = [Path(line) for line in run.stdout.splitlines() if line.startswith(str(tmp_path))]
    assert sorted(p.suffix for p in paths) == [".html", ".png", ".png", ".png", ".svg"]
    for p in paths:
        assert p.parent == tmp_path and p.stat().st_size > 0


def test_stepper_displays_in_a_notebook_as_a_table_of_the_backward_pass():
    """Jupyter's rich display of a Stepper: one row per backward node with the shape and norm of
    each gradient, against gradients written out by hand with NumPy."""
    wv = np.array([1.0, -2.0])
    w = mg.tensor(wv, dtype="float64", requires_grad=True, name="w")
    loss = (mg.tanh(w) * w).sum()
    html = mg.viz.Stepper(loss)._repr_html_()
    rows = re.findall(r"<tr><td>(\d+)</td><td><b>(\w+)</b> #\d+</td><td>(.*?)</td>"
                      r"<td>(.*?)</td></tr>", html)
    assert [(k, op) for k, op, *_ in rows] == [("0", "Sum"), ("1", "Mul"), ("2", "Tanh")]

    def norms(cell):
        return [float(v) for v in re.findall(r"\|g\| ([-\d.e+]+)", cell)]
    t = np.tanh(wv)
    # Sum: gets 1, sends ones; Mul(tanh w, w): sends w to tanh's output and tanh(w) to w;
    # Tanh: sends w (1 - tanh(w)^2)
    expect = [([1.0], [np.sqrt(2)]), ([np.sqrt(2)], [np.linalg.norm(wv), np.linalg.norm(t)]),
              ([np.linalg.norm(wv)], [np.linalg.norm(wv * (1 - t * t))])]
    for (_, _, arriving, sent), (want_in, want_out) in zip(rows, expect):
        np.testing.assert_allclose(norms(arriving), want_in, rtol=1e-3)
        np.testing.assert_allclose(norms(sent), want_out, rtol=1e-3)
    assert "(2,)" in rows[1][3] and "http" not in html


# --- the legend and the gradient graph ----------------------------------------------------------

def legend_labels(source):
    return {a or b for a, b in re.findall(r'^\s*legend_\w+ \[label=(?:"([^"]*)"|(\w+))', source,
                                          re.M)} - {""}


def test_the_legend_names_the_colours_drawn_and_the_edges():
    w = mg.tensor(np.ones((2, 2)), requires_grad=True, name="w")
    loss = (mg.tanh(w) * np.ones(2)).sum()
    labels = legend_labels(mg.viz.draw(loss).source)
    assert {"op (forward)", "leaf input", "output", "saved for backward",
            "constant: no gradient"} <= labels
    assert "op of a create_graph backward" not in labels and "parameter" not in labels
    assert legend_labels(mg.viz.draw(loss, legend=False).source) == set()


def test_the_gradient_graph_is_drawn_apart_from_the_forward_graph():
    x = mg.tensor([0.5, -1.0], requires_grad=True, name="x")
    y = (mg.tanh(x) ** 2).sum()
    (g,) = mg.grad(y, [x], create_graph=True)
    (hv,) = mg.grad((g * np.array([1.0, 2.0])).sum(), [x], create_graph=True)
    src = mg.viz.draw(hv).source
    nodes = dot_nodes(src)
    fills = dict(re.findall(r'^\s*(\w+) \[label=.*fillcolor="([^"]+)"', src, re.M))
    forward = [k for k, v in nodes.items() if v.startswith("Tanh\\n")]
    first = [k for k, v in nodes.items() if "(d1)" in v.split("\\n")[0]]
    second = [k for k, v in nodes.items() if "(d2)" in v.split("\\n")[0]]
    assert len(forward) == 1 and first and second
    assert fills[forward[0]] == "#eeeeee"
    assert {fills[k] for k in first + second} == {"#ecd9f7"}
    assert "op of a create_graph backward" in legend_labels(src)


def test_the_gradient_graph_examples_of_docs_viz_run(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    doc = (Path(__file__).resolve().parent.parent / "docs" / "viz.md").read_text()
    section = doc.split("## The gradient graph")[1].split("\n## ")[0]
    blocks = re.findall(r"^```python\n(.*?)^```", section, re.S | re.M)
    assert len(blocks) == 2
    for k, src in enumerate(blocks):
        exec(compile(src, f"docs/viz.md gradient graph block {k}", "exec"), {})
    assert (tmp_path / "dtanh2.svg").exists() and (tmp_path / "hvp.svg").exists()
