"""Memory accounting: bytes of arrays the graph holds for backward, counted by the engine.

What is counted. Every recorded node keeps the arrays it saved (`Function.save_for_backward`)
until its backward ran. While a tracker is active, the engine reports each such node when it is
recorded (`hold`) and when it is freed after its backward (`release`); a node dropped without
backward (its graph garbage-collected) is released too. The tracker counts:

- each saved array once, by identity, however many nodes hold it (a weight's transpose saved by
  every time step of a cell is counted once per distinct array object);
- `nbytes` of that array (a view counts its own size, not its base's);
- NOT the arrays that are the `.data` of a leaf tensor given to that node (parameters and user
  inputs exist whether or not a graph is recorded, so they are not memory the graph costs),
  nor views of such an array (`x[t]` of an input sequence `x`, the slice of it a checkpointed
  segment keeps): a view is counted by its base, and a leaf's base costs nothing. The leaves
  looked at are those within 64 nodes upstream of the node saving the view;
- everything an op saves through `save_for_backward`, the index arrays of indexing included.

The figures are exact and deterministic: they depend only on the ops run, never on the allocator.
`live_bytes` is what is held now, `peak_bytes` the most held at any moment since the tracker
started. The figures stop changing when the `with` block exits.

>>> import minigrad as mg
>>> w = mg.randn(64, 64, requires_grad=True)
>>> with mg.memory.track() as m:
...     h = mg.tanh(mg.randn(8, 64) @ w)   # tanh keeps its (8, 64) float32 output: 2048 bytes
...     h.sum().backward()
>>> m.peak_bytes, m.live_bytes
(2048, 0)
"""
from __future__ import annotations

import collections
import weakref

from minigrad.modes import state
from minigrad.tensor import Tensor

__all__ = ["Tracker", "track", "summary", "Summary", "saved_arrays"]


def saved_arrays(fn, inputs=None) -> list:
    """The arrays node `fn` holds for backward that count as graph memory (see module doc).

    `inputs` are the tensors the node was applied to; when not given (a node seen later while
    walking a graph), the leaf inputs are found from the node's parents and version checks.
    """
    if inputs is None:
        inputs = [p[0] for p in fn.parents if p is not None and p[1] < 0]
        if fn.checks:
            inputs += [r for r, _ in fn.checks if isinstance(r, Tensor)]
    leaf_arrays = [t.data for t in inputs if isinstance(t, Tensor) and t.is_leaf]
    leaf_ids = {id(a) for a in leaf_arrays}
    out, bases = [], None
    for a in fn.saved:
        if not hasattr(a, "nbytes") or id(a) in leaf_ids:
            continue
        base = getattr(a, "base", None)
        if base is not None:
            if bases is None:
                bases = _leaf_bases(fn, leaf_arrays)
            if id(base) in bases:
                continue
        out.append(a)
    return out


def _leaf_bases(fn, leaf_arrays, limit=64) -> set:
    """ids of the arrays holding the data of the leaves among `leaf_arrays` and those upstream
    of `fn` (breadth first, at most `limit` nodes): a saved view of one of them is free."""
    arrays = list(leaf_arrays)
    seen, queue = {id(fn)}, collections.deque([fn])
    while queue:
        node = queue.popleft()
        for p in node.parents or ():
            if p is None:
                continue
            if p[1] < 0:
                arrays.append(p[0].data)
            elif id(p[0]) not in seen and len(seen) < limit:
                seen.add(id(p[0]))
                queue.append(p[0])
    ids = set()
    for a in arrays:
        ids.add(id(a))
        base = getattr(a, "base", None)
        if base is not None:
            ids.add(id(base))
    return ids


class Tracker:
    """Counts the bytes the graph holds for backward; made by `track()`.

    Attributes: `live_bytes`, `peak_bytes` (ints), `live_arrays` (how many distinct arrays are
    held now). Trackers nest: an inner one counts what happens inside it, and the outer one
    still sees everything.
    """

    def __init__(self):
        self.live_bytes = 0
        self.peak_bytes = 0
        self._arrays = {}   # id(array) -> [number of nodes holding it, nbytes]
        self._nodes = {}    # id(node) -> (ids of the arrays it holds, finalizer)
        self._outer = None
        self._active = False

    @property
    def live_arrays(self) -> int:
        return len(self._arrays)

    def reset_peak(self) -> None:
        """Start measuring the peak again from what is live now."""
        self.peak_bytes = self.live_bytes

    # --- called by the engine -----------------------------------------------------------------
    def hold(self, fn, inputs) -> None:
        if self._outer is not None:
            self._outer.hold(fn, inputs)
        keys = []
        arrays = self._arrays
        for a in saved_arrays(fn, inputs):
            k = id(a)
            entry = arrays.get(k)
            if entry is None:
                arrays[k] = [1, int(a.nbytes)]
                self.live_bytes += int(a.nbytes)
            else:
                entry[0] += 1
            keys.append(k)
        if self.live_bytes > self.peak_bytes:
            self.peak_bytes = self.live_bytes
        # a graph dropped without backward never reaches `release`: count its nodes out on GC
        fin = weakref.finalize(fn, self._drop, id(fn))
        fin.atexit = False
        self._nodes[id(fn)] = (keys, fin)

    def release(self, fn) -> None:
        if self._outer is not None:
            self._outer.release(fn)
        entry = self._nodes.get(id(fn))
        if entry is not None:
            entry[1].detach()
            self._drop(id(fn))

    def _drop(self, node_id) -> None:
        entry = self._nodes.pop(node_id, None)
        if entry is None:
            return
        arrays = self._arrays
        for k in entry[0]:
            a = arrays[k]
            a[0] -= 1
            if a[0] == 0:
                self.live_bytes -= a[1]
                del arrays[k]

    # --- context manager ----------------------------------------------------------------------
    def __enter__(self) -> "Tracker":
        if self._active:
            raise RuntimeError("memory.track: this tracker is already active")
        self._active = True
        self._outer = state.tracker
        state.tracker = self
        return self

    def __exit__(self, *exc) -> None:
        state.tracker = self._outer
        self._outer = None
        self._active = False
        # freeze the figures: nodes still alive are no longer followed
        for _, fin in self._nodes.values():
            fin.detach()
        self._nodes.clear()
        self._arrays.clear()

    def __repr__(self):
        return f"Tracker(live_bytes={self.live_bytes}, peak_bytes={self.peak_bytes})"


def track() -> Tracker:
    """Count the bytes held for backward by graphs recorded inside the block (see module doc).

    >>> import minigrad as mg
    >>> with mg.memory.track() as m:
    ...     y = mg.exp(mg.tensor([1.0, 2.0], requires_grad=True))  # Exp keeps its output
    >>> m.peak_bytes
    8
    """
    return Tracker()


class Summary:
    """What a graph holds for backward, by op: `by_op[name] = {"nodes", "arrays", "bytes"}`.

    `total_bytes` counts each array once (as the tracker does); `str(summary)` is a table.
    """

    def __init__(self, by_op: dict, total_bytes: int, n_nodes: int):
        self.by_op = by_op
        self.total_bytes = total_bytes
        self.n_nodes = n_nodes

    def table(self) -> str:
        rows = sorted(self.by_op.items(), key=lambda kv: (-kv[1]["bytes"], kv[0]))
        width = max([len("total")] + [len(name) for name, _ in rows])
        lines = [f"{'op':<{width}}  {'nodes':>7}  {'arrays':>7}  {'bytes':>14}"]
        for name, r in rows:
            lines.append(f"{name:<{width}}  {r['nodes']:>7}  {r['arrays']:>7}  {r['bytes']:>14,}")
        lines.append(f"{'total':<{width}}  {self.n_nodes:>7}  "
                     f"{sum(r['arrays'] for _, r in rows):>7}  {self.total_bytes:>14,}")
        return "\n".join(lines)

    __str__ = table

    def __repr__(self):
        return f"Summary(total_bytes={self.total_bytes}, ops={len(self.by_op)})"


def summary(*tensors: Tensor) -> Summary:
    """Walk the graph behind `tensors` and list the bytes its nodes hold for backward, by op.

    An array held by several nodes is counted once, under the earliest node (creation order)
    that holds it. Nodes whose backward already ran hold nothing.

    >>> import minigrad as mg
    >>> x = mg.tensor([1.0, 2.0], requires_grad=True)
    >>> print(mg.memory.summary(mg.exp(x) * mg.tanh(x)))  # Mul's inputs are already counted
    op       nodes   arrays           bytes
    Exp          1        1               8
    Tanh         1        1               8
    Mul          1        0               0
    total        3        2              16
    """
    for t in tensors:
        if not isinstance(t, Tensor):
            raise TypeError(f"memory.summary: expected Tensors, got {type(t).__name__}")
    nodes = {}
    stack = [t.grad_fn for t in tensors if t.grad_fn is not None]
    while stack:  # iterative: a 10^4-step unrolled graph would overflow recursion
        fn = stack.pop()
        if id(fn) in nodes:
            continue
        nodes[id(fn)] = fn
        stack.extend(p[0] for p in fn.parents if p is not None and p[1] >= 0)
    by_op = {}
    seen = set()
    total = 0
    for fn in sorted(nodes.values(), key=lambda f: f.seq):
        row = by_op.setdefault(fn.name, {"nodes": 0, "arrays": 0, "bytes": 0})
        row["nodes"] += 1
        for a in saved_arrays(fn):
            if id(a) not in seen:
                seen.add(id(a))
                row["arrays"] += 1
                row["bytes"] += int(a.nbytes)
                total += int(a.nbytes)
    return Summary(by_op, total, len(nodes))
