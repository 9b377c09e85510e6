"""`html_stepper` and `save_html`: one self-contained page that steps through the forward, then
the backward pass."""
from __future__ import annotations

import html
import json
import os
import re

import numpy as np

from minigrad.viz.draw import FILL, GRAD_COLOR, MARK, layout
from minigrad.viz.graph import fmt_shape, fmt_value, host
from minigrad.viz.stepper import Stepper

PANEL_VALUES = 64  # arrays up to this size are printed whole in the side panel


class HTMLStepper:
    """A self-contained page stepping through a graph (`html_stepper` makes one): `.html` is the
    page, `.save(path)` writes it, and in Jupyter it displays inline (an iframe holding the
    page itself: no file, no network)."""

    def __init__(self, page: str, title: str):
        self.html = page
        self.title = title

    def save(self, path) -> str:
        """Write the page to `path` (folders are created); returns `path`."""
        os.makedirs(os.path.dirname(os.path.abspath(os.fspath(path))), exist_ok=True)
        with open(path, "w", encoding="utf-8") as f:
            f.write(self.html)
        return os.fspath(path)

    def _repr_html_(self) -> str:
        return (f'<iframe srcdoc="{html.escape(self.html, quote=True)}" '
                f'title="{html.escape(self.title, quote=True)}" '
                'style="width: 100%; height: 640px; border: 1px solid #ccc"></iframe>')

    def __repr__(self):
        return f"HTMLStepper({self.title!r}, {len(self.html):,} characters)"


def html_stepper(outputs, *, grad_outputs=None, group: str | None = None,
                 title: str = "minigrad graph") -> HTMLStepper:
    """A page stepping through the graph of `outputs` (or of a `Stepper`): forward, then
    backward.

    The page holds one SVG drawing (laid out by Graphviz `dot`) that opens fitted to the window
    (fit / zoom buttons, keys f + - 0), the title, the steps as data and a few lines of script:
    previous / next / play buttons, arrow keys (Home/End jump, space plays). The current node is
    red, finished ones blue (forward) or orange (backward), gradients appear on the edges as
    they are sent, and a side panel shows the node's values and gradients. Nothing is fetched
    from the network. Build the graph inside `mg.viz.record()` to see forward values.

    >>> import minigrad as mg
    >>> w = mg.tensor([1.0, -2.0], requires_grad=True, name="w")
    >>> with mg.viz.record():
    ...     loss = (mg.tanh(w) * w).sum()
    >>> page = mg.viz.html_stepper(loss, title="tanh(w) w")  # doctest: +SKIP
    >>> page                     # in Jupyter: the stepper, inline  # doctest: +SKIP
    >>> page.save("out/tanh.html")  # doctest: +SKIP
    """
    st = outputs if isinstance(outputs, Stepper) else Stepper(outputs, grad_outputs)
    g = st.graph
    edge_text = {}
    for s in st:
        edge_text.update(st.edge_grads(s))
    for k, t in enumerate(st.roots):
        if t.grad_fn is not None:
            edge_text[(g.op_id(t.grad_fn), f"out{k}", -1)] = _seed_text(st.seeds[k])
    names = _names(g)
    svg = layout(g, group=group, edge_text=edge_text, classes=True).pipe(format="svg")
    svg = _readable_tooltips(svg.decode("utf-8"), names)

    frames = []
    for s in st.forward_steps:
        frames.append({"phase": "forward", "k": s.index, "node": g.op_id(s.node),
                       "panel": _forward_panel(s, g, names, len(st.forward_steps))})
    for s in st:
        frames.append({"phase": "backward", "k": s.index, "node": g.op_id(s.node),
                       "panel": _backward_panel(s, g, names, len(st))})
    data = {
        "ops": [g.op_id(fn) for fn in g.ops],
        "bwd": {g.op_id(s.node): s.index for s in st},
        "gedges": [{"id": _edge_id(src, dst, pos), "dst": dst}
                   for (src, dst, pos) in edge_text],
        "frames": frames,
    }
    page = _PAGE.format(title=html.escape(title), svg=svg, css=_css(), player=FRAME_PLAYER_HTML,
                        data=json.dumps(data).replace("</", "<\\/"), script=_SCRIPT)
    return HTMLStepper(page, title)


def save_html(outputs, path, *, grad_outputs=None, group: str | None = None,
              title: str = "minigrad graph") -> str:
    """Write `html_stepper(outputs, ...)`'s page to `path`; returns `path`.

    >>> import minigrad as mg
    >>> w = mg.tensor([1.0, -2.0], requires_grad=True, name="w")
    >>> with mg.viz.record():
    ...     loss = (mg.tanh(w) * w).sum()
    >>> mg.viz.save_html(loss, "out/tanh.html")  # doctest: +SKIP
    """
    return html_stepper(outputs, grad_outputs=grad_outputs, group=group, title=title).save(path)


def _readable_tooltips(svg: str, names: dict) -> str:
    """The SVG without its XML prolog and Graphviz's <title> elements (raw ids such as `%3` or
    `op17`, which browsers show on hover); each node gets its readable name as tooltip."""
    svg = svg[svg.index("<svg"):]  # drop the XML prolog and the DTD reference
    svg = re.sub(r"<title>[^<]*</title>\n?", "", svg)

    def node_title(m):
        name = names.get(m.group(2))
        return m.group(1) + (f"<title>{html.escape(name)}</title>\n" if name else "")
    return re.sub(r'(<g id="([^"]+)" class="node[^"]*">\n)', node_title, svg)


def _edge_id(src, dst, pos):
    return f"e_{src}_{dst}_{pos if pos >= 0 else 'out'}"


def _seed_text(a):
    return "g = " + fmt_value(a)


def _names(g):
    """Drawing id -> a readable name for every source of an edge."""
    names = {t.id: t.name for t in g.tensors}
    for fn in g.ops:
        names[g.op_id(fn)] = f"{fn.name} #{fn.seq}"
    return names


def _array_html(a, label):
    """A labelled value block; small arrays also carry their numbers as JSON (for tools/tests)."""
    if a is None:
        return f"<div class='v'><b>{html.escape(label)}</b>: none</div>"
    if not hasattr(a, "shape"):
        return f"<div class='v'><b>{html.escape(label)}</b>: {html.escape(repr(a))}</div>"
    h = host(a)
    head = f"<b>{html.escape(label)}</b> {fmt_shape(h.shape, h.dtype)}"
    if h.size <= PANEL_VALUES:
        body = np.array2string(h, precision=4, separator=" ", suppress_small=True,
                               max_line_width=48)
        vals = json.dumps(h.astype(float).ravel().tolist() if h.dtype.kind in "fciub" else [])
        return (f"<div class='v'>{head}<pre data-values='{html.escape(vals)}'>"
                f"{html.escape(body)}</pre></div>")
    f = h.astype(float)
    body = (f"min {f.min():.4g}  mean {f.mean():.4g}  max {f.max():.4g}\n"
            f"norm {float((f * f).sum()) ** 0.5:.4g}")
    return f"<div class='v'>{head}<pre>{html.escape(body)}</pre></div>"


def _tags_html(fn):
    if not fn.tags:
        return ""
    tags = ", ".join(f"{k} = {v}" for k, v in fn.tags)
    return f"<div class='tags'>{html.escape(tags)}</div>"


def _inputs(g, fn):
    return sorted((e for e in g.edges if e.dst == g.op_id(fn)), key=lambda e: e.pos)


def _forward_panel(s, g, names, n):
    fn = s.node
    parts = [f"<h2>forward {s.index + 1}/{n}: {html.escape(fn.name)} "
             f"<small>#{fn.seq}</small></h2>", _tags_html(fn), "<h3>inputs</h3>"]
    for e in _inputs(g, fn):
        src = names.get(e.src, e.src)
        parts.append(f"<div class='in'>in{e.pos} ← {html.escape(src)} "
                     f"{fmt_shape(e.shape)}{' (saved)' if e.saved else ''}</div>")
    parts.append("<h3>outputs</h3>")
    if s.outputs is None:
        parts.append("<div class='v'>values not recorded (build the graph inside "
                     "mg.viz.record())</div>")
    else:
        for k, a in enumerate(s.outputs):
            parts.append(_array_html(a, f"out{k}" if len(s.outputs) > 1 else "out"))
    return "".join(parts)


def _backward_panel(s, g, names, n):
    fn = s.node
    parts = [f"<h2>backward {s.index + 1}/{n}: {html.escape(fn.name)} "
             f"<small>#{fn.seq}</small></h2>", _tags_html(fn),
             "<h3>gradient arriving</h3><div class='gouts'>"]
    for k, a in enumerate(s.gouts):
        parts.append(_array_html(a, f"gout{k}" if len(s.gouts) > 1 else "gout"))
    parts.append("</div><h3>gradients sent to inputs</h3><div class='gxs'>")
    for e in _inputs(g, fn):
        if e.const:
            continue
        parts.append(f"<div class='gx' data-src='{html.escape(e.src)}' data-pos='{e.pos}'>")
        parts.append(_array_html(s.gxs[e.pos], f"gx{e.pos} → {names.get(e.src, e.src)}"))
        parts.append("</div>")
    parts.append("</div>")
    return "".join(parts)


def _css():
    shapes = "path, polygon, ellipse"

    def rule(cls, color, extra=""):
        return ", ".join(f"g.node.{cls} > {s}" for s in shapes.split(", ")) + \
            f" {{ fill: {color}; {extra} }}"
    return "\n".join([
        rule("fdone", MARK["fdone"]), rule("bdone", MARK["bdone"]),
        rule("current", MARK["current"], "stroke-width: 3px;"),
        f'g.edge text[fill="{GRAD_COLOR}"] {{ visibility: hidden; }}',
        f'g.edge.sent text[fill="{GRAD_COLOR}"] {{ visibility: visible; }}',
        f"g.edge.sent > path {{ stroke: {GRAD_COLOR}; }}",
        f"g.edge.sent > polygon {{ stroke: {GRAD_COLOR}; fill: {GRAD_COLOR}; }}",
        f".legend .op {{ background: {FILL['op']}; }} .legend .param {{ background: "
        f"{FILL['param']}; }} .legend .fdone {{ background: {MARK['fdone']}; }} "
        f".legend .bdone {{ background: {MARK['bdone']}; }} .legend .current {{ background: "
        f"{MARK['current']}; }}",
    ])


_PAGE = """<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>{title}</title>
<style>
body {{ margin: 0; font: 14px Helvetica, Arial, sans-serif; display: flex; height: 100vh; }}
#graph {{ flex: 1; overflow: auto; padding: 8px; box-sizing: border-box; }}
#graph svg {{ display: block; margin: 0 auto; }}
h1 {{ font-size: 17px; margin: 4px 0 8px; }}
#zoom {{ margin: 4px 0; font-size: 12px; }} #zoom button {{ font-size: 12px; }}
#side {{ width: 380px; border-left: 1px solid #ccc; padding: 8px 12px; overflow: auto; }}
#controls button {{ font-size: 15px; margin: 2px; }}
#where {{ margin: 6px 0; font-weight: bold; }}
pre {{ background: #f6f6f6; padding: 4px; margin: 2px 0 8px; font-size: 12px; }}
h2 {{ font-size: 16px; margin: 8px 0 4px; }} h3 {{ font-size: 13px; margin: 8px 0 2px; }}
.tags {{ color: #555; font-size: 12px; }}
.legend span {{ display: inline-block; padding: 1px 6px; margin: 1px; border: 1px solid #999;
  font-size: 11px; }}
{css}
</style></head>
<body>
<div id="graph">{svg}</div>
<div id="side">
<h1 id="title">{title}</h1>
<div id="controls">
{player}
</div>
<div id="zoom">
<button id="fit" title="fit the graph to the window (f)">fit</button>
<button id="zoomout" title="zoom out (-)">&minus;</button>
<button id="zoomin" title="zoom in (+)">+</button>
<button id="actual" title="actual size (0)">1:1</button>
<span id="scale"></span>
</div>
<input id="slider" type="range" min="0" value="0" style="width: 100%">
<div id="where"></div>
<div class="legend"><span class="op">op</span><span class="param">parameter</span>
<span class="fdone">forward done</span><span class="bdone">backward done</span>
<span class="current">current</span></div>
<div id="panel"></div>
</div>
<script id="data" type="application/json">{data}</script>
<script>{script}</script>
</body></html>
"""

# The frame player's buttons (ids first, prev, play, next, last), for a page's controls.
FRAME_PLAYER_HTML = """<button id="first" title="first (Home)">first</button>
<button id="prev" title="previous (left arrow)">&#x25C0; prev</button>
<button id="play" title="play / pause (space)">play</button>
<button id="next" title="next (right arrow)">next &#x25B6;</button>
<button id="last" title="last (End)">last</button>"""

FRAME_PLAYER_JS = """
// The frame player shared by minigrad's step-by-step pages. The page's script defines, before
// this: D (with D.frames) and PLAY_MS; after it: show(i) (draws frame i, sets cur and
// slider.value) and pageKey(ev) (the page's own keys; true when it handled one).
let cur = 0, timer = null;
const slider = document.getElementById("slider");
slider.max = D.frames.length - 1;

function play() {
  if (timer) { clearInterval(timer); timer = null; }
  else {
    if (cur === D.frames.length - 1) show(0);
    timer = setInterval(() => {
      if (cur >= D.frames.length - 1) { clearInterval(timer); timer = null; setLabel(); return; }
      show(cur + 1);
    }, PLAY_MS);
  }
  setLabel();
}
function setLabel() { document.getElementById("play").textContent = timer ? "pause" : "play"; }

document.getElementById("first").onclick = () => show(0);
document.getElementById("prev").onclick = () => show(cur - 1);
document.getElementById("next").onclick = () => show(cur + 1);
document.getElementById("last").onclick = () => show(D.frames.length - 1);
document.getElementById("play").onclick = play;
slider.oninput = () => show(parseInt(slider.value, 10));
document.addEventListener("keydown", (ev) => {
  if (ev.key === "ArrowRight") show(cur + 1);
  else if (ev.key === "ArrowLeft") show(cur - 1);
  else if (ev.key === "Home") show(0);
  else if (ev.key === "End") show(D.frames.length - 1);
  else if (ev.key === " ") play();
  else if (!pageKey(ev)) return;
  ev.preventDefault();
});
"""


_SCRIPT = """
"use strict";
const D = JSON.parse(document.getElementById("data").textContent);
const PLAY_MS = 700;
const fwdIndex = {};
D.ops.forEach((id, k) => { fwdIndex[id] = k; });
""" + FRAME_PLAYER_JS + """

// Zoom: the page opens with the whole graph fitted to its pane ("fit"; refitted when the
// window changes size); the buttons and keys f + - 0 zoom, and above the fitted size the
// current node is kept in view.
const pane = document.getElementById("graph");
const svg = pane.querySelector("svg");
const box = svg.viewBox.baseVal;
const natural = {w: box.width * 4 / 3, h: box.height * 4 / 3};  // Graphviz sizes are in pt
let fitted = true, scale = 1;
function fitScale() {
  const w = pane.clientWidth - 16, h = pane.clientHeight - 16;
  return Math.min(w / natural.w, h / natural.h, 1);
}
function zoom(s, fit) {
  fitted = fit;
  scale = fit ? fitScale() : Math.max(0.05, Math.min(s, 4));
  svg.setAttribute("width", (natural.w * scale).toFixed(1) + "px");
  svg.setAttribute("height", (natural.h * scale).toFixed(1) + "px");
  document.getElementById("scale").textContent =
    Math.round(scale * 100) + "%" + (fitted ? " (fitted)" : "");
  document.body.dataset.zoom = fitted ? "fit" : String(scale);
  follow();
}
function follow() {
  const node = document.getElementById(D.frames[cur].node);
  if (node && !fitted) node.scrollIntoView({block: "center", inline: "center"});
}
window.addEventListener("resize", () => { if (fitted) zoom(1, true); });

function show(i) {
  cur = Math.max(0, Math.min(D.frames.length - 1, i));
  const f = D.frames[cur];
  for (const id of D.ops) {
    const el = document.getElementById(id);
    if (!el) continue;
    el.classList.remove("current", "fdone", "bdone");
    if (f.phase === "forward") {
      if (fwdIndex[id] < f.k) el.classList.add("fdone");
    } else if (D.bwd[id] !== undefined && D.bwd[id] < f.k) {
      el.classList.add("bdone");
    }
  }
  const node = document.getElementById(f.node);
  if (node) node.classList.add("current");
  follow();
  for (const e of D.gedges) {
    const el = document.getElementById(e.id);
    if (!el) continue;
    const sent = f.phase === "backward" &&
      (D.bwd[e.dst] === undefined || D.bwd[e.dst] <= f.k);
    el.classList.toggle("sent", sent);
  }
  document.getElementById("panel").innerHTML = f.panel;
  document.getElementById("where").textContent =
    "step " + (cur + 1) + " / " + D.frames.length + " (" + f.phase + ")";
  document.body.dataset.frame = cur;
  document.body.dataset.node = f.node;
  slider.value = cur;
}

document.getElementById("fit").onclick = () => zoom(1, true);
document.getElementById("zoomin").onclick = () => zoom(scale * 1.25, false);
document.getElementById("zoomout").onclick = () => zoom(scale / 1.25, false);
document.getElementById("actual").onclick = () => zoom(1, false);
function pageKey(ev) {
  if (ev.key === "f") zoom(1, true);
  else if (ev.key === "+" || ev.key === "=") zoom(scale * 1.25, false);
  else if (ev.key === "-") zoom(scale / 1.25, false);
  else if (ev.key === "0") zoom(1, false);
  else return false;
  return true;
}
show(0);
zoom(1, true);
"""
