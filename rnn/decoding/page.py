"""The beam, step by step: one self-contained HTML page (no network) for a `BeamTrace`.

The page holds the Graphviz drawing of `draw_beam` as inline SVG, the frames as data and a few
lines of script. Frame 0 shows the root; frame t reveals what step t added: the hypotheses the
beam kept, the extensions it cut, the ones that finished with EOS (the step's nodes outlined in
red, a side panel listing them as text); the last frame marks the returned best path. Buttons,
a slider and the arrow keys (Home/End jump, space plays) move between frames; the page opens at
the drawing's actual size, and "fit" (or f) shrinks a large tree to the window.
"""
from __future__ import annotations

import html
import json
import os
import re

from minigrad import checks
from minigrad.viz.html import FRAME_PLAYER_HTML, FRAME_PLAYER_JS
from rnn.decoding.beam import BeamTrace
from rnn.decoding.picture import draw_beam, sequence_text

__all__ = ["BeamStepper", "beam_stepper", "save_beam_html"]

BEST_COLOR = "#1f5fbf"  # the best path, as draw_beam marks it
CURRENT_COLOR = "#d62728"


class BeamStepper:
    """A beam page: `.html` (the whole page), `.save(path)`, and shown inline in a notebook."""

    def __init__(self, page: str, title: str):
        self.html = page
        self.title = title

    def save(self, path) -> str:
        """Write the page to `path` (folders made as needed); returns the path as a str."""
        path = os.fspath(path)
        os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
        with open(path, "w", encoding="utf-8") as f:
            f.write(self.html)
        return path

    def _repr_html_(self) -> str:
        # an iframe keeps the page's ids and script apart from the notebook and other outputs
        return (f'<iframe srcdoc="{html.escape(self.html, quote=True)}" '
                f'title="{html.escape(self.title, quote=True)}" '
                'style="width: 100%; height: 560px; border: 1px solid #ddd"></iframe>')


def beam_stepper(trace: BeamTrace, example: int = 0, vocab=None,
                 title: str | None = None) -> BeamStepper:
    """The step-by-step page of example `example`'s search tree (see the module docstring).

    `vocab` maps token ids to text (a str of characters or a list of strings); default: the ids.
    Needs the graphviz package and Graphviz's `dot` program.

    >>> import numpy as np, minigrad as mg
    >>> from rnn.decoding import beam_search, beam_stepper
    >>> table = np.random.default_rng(0).normal(size=(5, 5))
    >>> step = lambda tokens, state: (mg.log_softmax(mg.tensor(table[tokens])), state)
    >>> _, trace = beam_search(step, None, 0, 4, 3, 5, return_trace=True, batch_size=1)
    >>> page = beam_stepper(trace, vocab="abcd$")      # doctest: +SKIP
    >>> page.save("out/beam.html")                     # doctest: +SKIP
    'out/beam.html'
    """
    where = "beam_stepper"
    if not isinstance(trace, BeamTrace):
        raise TypeError(f"{where}: expected the BeamTrace of beam_search(..., "
                        f"return_trace=True), got {type(trace).__name__}")
    example = checks.integer(example, where, "example", low=0, high=len(trace.best) - 1)
    if title is None:
        title = f"beam search, beam {trace.beam_size}, example {example}"
    graph = draw_beam(trace, example, vocab, highlight_best=False)
    svg = graph.pipe(format="svg").decode("utf-8")
    svg = svg[svg.index("<svg"):]  # drop the XML prolog and the DTD reference

    nodes = [n for n in trace.nodes if n.example == example]
    last = max(n.step for n in nodes)
    text = {n.id: sequence_text([p.token for p in trace.path(n.id)[1:]], vocab) for n in nodes}
    # Graphviz titles (shown on hover) are its internal names: a node's becomes its sequence
    svg = re.sub(r"<title>n(\d+)</title>",
                 lambda m: f"<title>{html.escape(text.get(int(m.group(1)), '')) or 'BOS'}</title>",
                 svg)
    svg = re.sub(r"<title>[^<]*(-&gt;|->)[^<]*</title>", "", svg)
    frames = [_frame_start(nodes, trace.beam_size)]
    frames += [_frame_step(t, last, [n for n in nodes if n.step == t], text)
               for t in range(1, last + 1)]
    frames.append(_frame_result(trace, example, nodes, text))
    data = {
        "nodes": [{"id": n.id, "step": n.step, "status": n.status, "chosen": n.chosen}
                  for n in nodes],
        "frames": frames,
    }
    page = _PAGE.format(title=html.escape(title), svg=svg, css=_CSS, script=_SCRIPT,
                        player=FRAME_PLAYER_HTML,
                        data=json.dumps(data).replace("</", "<\\/"))
    return BeamStepper(page, title)


def save_beam_html(trace: BeamTrace, path, example: int = 0, vocab=None,
                   title: str | None = None) -> str:
    """Write `beam_stepper(trace, example, vocab, title)` to `path`; returns the path."""
    return beam_stepper(trace, example, vocab, title).save(path)


_SWATCH = {k: f"<span class='sw {k}'></span>" for k in ("kept", "pruned", "finished")}


def _rows(nodes, text, score=False) -> str:
    if not nodes:
        return "<div class='none'>none</div>"
    rows = [f"<tr><td class='seq'>{html.escape(text[n.id]) or '&nbsp;'}</td>"
            f"<td>{n.log_prob:.3f}</td>" + (f"<td>{n.score:.3f}</td>" if score else "") + "</tr>"
            for n in nodes]
    head = "<tr><th>sequence</th><th>log p</th>" + ("<th>score</th>" if score else "") + "</tr>"
    return f"<table>{head}{''.join(rows)}</table>"


def _frame_start(nodes, K) -> dict:
    panel = ("<h2>start</h2><p>One open hypothesis: BOS. Every step extends each open "
             f"hypothesis by every token and keeps the {K} best extensions.</p>")
    return {"step": 0, "final": False, "panel": panel}


def _frame_step(t, last, at, text) -> dict:
    def of(status):
        return sorted((n for n in at if n.status == status), key=lambda n: -n.log_prob)
    kept, cut, done = of("kept"), of("pruned"), of("finished")
    parts = [f"<h2>step {t} of {last}</h2><div class='none'>this step's extensions are "
             "outlined in red in the drawing</div>",
             f"<h3>{_SWATCH['kept']}kept in the beam ({len(kept)})</h3>", _rows(kept, text),
             f"<h3>{_SWATCH['finished']}finished with EOS ({len(done)})</h3>",
             _rows(done, text, score=True),
             f"<h3>{_SWATCH['pruned']}cut from the beam ({len(cut)})</h3>", _rows(cut, text)]
    if t == last:
        parts.append("<p>The search stopped here: no open hypothesis could still beat the "
                     "best finished ones, or the length limit was reached.</p>")
    return {"step": t, "final": False, "panel": "".join(parts)}


def _frame_result(trace, example, nodes, text) -> dict:
    best = trace.best[example]
    done = sorted((n for n in nodes if n.status == "finished"), key=lambda n: -n.score)
    if best is None:
        head = "<p>No hypothesis finished within the rules.</p>"
    else:
        b = trace.nodes[best]
        head = (f"<p class='best'>best: <span class='seq'>{html.escape(text[best])}</span>"
                f"<br>log p {b.log_prob:.3f}, score {b.score:.3f}, {b.step} tokens</p>")
    parts = ["<h2>result</h2>", head, f"<h3>{_SWATCH['finished']}every finished hypothesis, "
             "best first</h3>", _rows(done, text, score=True)]
    return {"step": max(n.step for n in nodes), "final": True, "panel": "".join(parts)}


_CSS = f"""
.hidden {{ visibility: hidden; }}
g.node.current > path, g.node.current > polygon, g.node.current > ellipse {{
  stroke: {CURRENT_COLOR}; stroke-width: 2.5px; }}
g.node.best > path, g.node.best > polygon, g.node.best > ellipse {{
  stroke: {BEST_COLOR}; stroke-width: 3px; }}
g.edge.best > path {{ stroke: {BEST_COLOR}; stroke-width: 3px; }}
g.edge.best > polygon {{ stroke: {BEST_COLOR}; fill: {BEST_COLOR}; }}
"""

_PAGE = """<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>{title}</title>
<style>
body {{ margin: 0; font: 14px Helvetica, Arial, sans-serif; display: flex; height: 100vh; }}
#graph {{ flex: 1; overflow: auto; padding: 8px; }}
body[data-zoom="fit"] #graph svg {{ width: 100%; height: calc(100vh - 20px); }}
#side {{ width: 360px; border-left: 1px solid #ccc; padding: 8px 12px; overflow: auto; }}
#controls button {{ font-size: 15px; margin: 2px; }}
#where {{ margin: 6px 0; font-weight: bold; }}
h1 {{ font-size: 17px; margin: 4px 0 8px; }}
h2 {{ font-size: 16px; margin: 10px 0 4px; }} h3 {{ font-size: 13px; margin: 10px 0 2px; }}
.sw {{ display: inline-block; width: 10px; height: 10px; margin-right: 5px;
  border: 1px solid #999; vertical-align: -1px; }}
.sw.kept {{ background: #ffffff; }} .sw.finished {{ background: #c9f0c9; }}
.sw.pruned {{ background: #e8e8e8; border-style: dashed; }}
table {{ border-collapse: collapse; font-size: 13px; }}
td, th {{ padding: 1px 8px 1px 0; text-align: left; }}
td.seq, span.seq {{ font-family: Menlo, Consolas, monospace; white-space: pre; }}
.best {{ color: {best}; font-weight: bold; }}
.none {{ color: #888; font-size: 12px; }}
{css}
</style></head>
<body>
<div id="graph">{svg}</div>
<div id="side">
<h1 id="title">{title}</h1>
<div id="controls">
{player}
<button id="zoom" title="fit the drawing to the window, or back to actual size (f)">fit</button>
</div>
<input id="slider" type="range" min="0" value="0" style="width: 100%">
<div id="where"></div>
<div id="panel"></div>
</div>
<script id="data" type="application/json">{data}</script>
<script>{script}</script>
</body></html>
""".replace("{best}", BEST_COLOR)

_SCRIPT = """
"use strict";
const D = JSON.parse(document.getElementById("data").textContent);
const PLAY_MS = 900;
""" + FRAME_PLAYER_JS + """

function show(i) {
  cur = Math.max(0, Math.min(D.frames.length - 1, i));
  const f = D.frames[cur];
  let first = null;
  for (const n of D.nodes) {
    const shown = n.step <= f.step;
    const current = shown && !f.final && n.step === f.step && cur > 0;
    const best = f.final && n.chosen;
    for (const el of [document.getElementById("n" + n.id),
                      document.getElementById("e" + n.id)]) {
      if (!el) continue;
      el.classList.toggle("hidden", !shown);
      el.classList.toggle("current", current);
      el.classList.toggle("best", best);
    }
    if ((current || (best && n.status === "finished")) && !first)
      first = document.getElementById("n" + n.id);
  }
  if (first) first.scrollIntoView({block: "nearest", inline: "nearest"});
  document.getElementById("panel").innerHTML = f.panel;
  document.getElementById("where").textContent = "frame " + (cur + 1) + " / " +
    D.frames.length + (f.final ? " (result)" : cur === 0 ? " (start)" : " (step " + f.step + ")");
  document.body.dataset.frame = cur;
  slider.value = cur;
}

function zoom(fit) {
  document.body.dataset.zoom = fit ? "fit" : "1";
  document.getElementById("zoom").textContent = fit ? "1:1" : "fit";
}

document.getElementById("zoom").onclick = () => zoom(document.body.dataset.zoom !== "fit");
function pageKey(ev) {
  if (ev.key !== "f") return false;
  zoom(document.body.dataset.zoom !== "fit");
  return true;
}
zoom(false);
show(0);
"""
