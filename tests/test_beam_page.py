"""The beam's HTML page: frames checked against the search tree walked here, and the page
driven in real headless Chromium (the `Browser` of test_html_stepper.py)."""
from __future__ import annotations

import base64
import html
import json
import os
import re
import shutil
import time

import numpy as np
import pytest

import minigrad as mg
from rnn.decoding import BeamStepper, beam_search, beam_stepper, save_beam_html
from test_html_stepper import CHROMIUM, Browser

needs_dot = pytest.mark.skipif(shutil.which("dot") is None,
                               reason="Graphviz `dot` is not installed (apt-get install graphviz)")
VOCAB = "abcd$"  # 4 is EOS


class Bigram:
    """log_probs = log_softmax(T[token] + bias): a fixed random bigram table, and a per-example
    bias as the state, so the examples of a batch search different trees."""

    def __init__(self, seed=0, V=5):
        self.table = np.random.default_rng(seed).normal(size=(V, V)) * 2

    def step(self, tokens, bias):
        return mg.log_softmax(mg.tensor(self.table[tokens] + bias.numpy())), bias


def search(example_count=2, K=3, max_len=6):
    bias = mg.tensor(np.random.default_rng(7).normal(size=(example_count, 5)))
    return beam_search(Bigram(), bias, 0, 4, K, max_len, n_best=2, return_trace=True)


def page_data(text):
    raw = re.search(r'<script id="data" type="application/json">(.*?)</script>', text, re.S)
    return json.loads(raw.group(1).replace("<\\/", "</"))


def walk(trace, node_id):
    """The tokens from the root to node_id, following parents (written here, not trace.path)."""
    tokens = []
    while trace.nodes[node_id].parent is not None:
        tokens.append(trace.nodes[node_id].token)
        node_id = trace.nodes[node_id].parent
    return tokens[::-1]


@needs_dot
def test_frames_follow_the_search_tree(tmp_path):
    hyps, trace = search()
    page = beam_stepper(trace, example=1, vocab=VOCAB, title="two <examples>")
    assert isinstance(page, BeamStepper)
    text = page.html
    # self-contained: no script, style sheet, image or font from elsewhere
    assert not re.search(r"<script[^>]+src=|<link|<img|@import|url\(", text)
    assert set(re.findall(r"https?://[^\"' )]+", text)) <= {"http://www.w3.org/2000/svg",
                                                             "http://www.w3.org/1999/xlink"}
    assert "<h1 id=\"title\">two &lt;examples&gt;</h1>" in text
    mine = [n for n in trace.nodes if n.example == 1]
    data = page_data(text)
    assert sorted(n["id"] for n in data["nodes"]) == sorted(n.id for n in mine)
    # every node and the edge into it is addressable in the inline SVG
    for n in mine:
        assert f'<g id="n{n.id}" class="node">' in text
        if n.parent is not None:
            assert f'<g id="e{n.id}" class="edge">' in text
    last = max(n.step for n in mine)
    frames = data["frames"]
    assert len(frames) == last + 2 and frames[-1]["final"]
    assert [f["step"] for f in frames[:-1]] == list(range(last + 1))
    # each step's panel lists exactly the sequences that step kept, finished and cut
    for t in range(1, last + 1):
        panel = html.unescape(frames[t]["panel"])
        listed = re.findall(r"<td class='seq'>([^<]*)</td><td>(-?[\d.]+)</td>", panel)
        want = {("".join(VOCAB[k] for k in walk(trace, n.id)), f"{n.log_prob:.3f}")
                for n in mine if n.step == t}
        assert set(listed) == want and len(listed) == len(want)
    # the result frame names the best hypothesis beam_search returned
    best = "".join(VOCAB[k] for k in hyps[1][0].tokens)
    assert f"<span class='seq'>{best}</span>" in html.unescape(frames[-1]["panel"])
    assert f"score {hyps[1][0].score:.3f}" in frames[-1]["panel"]
    # saved as is; shown in a notebook as an iframe holding the page itself
    path = save_beam_html(trace, tmp_path / "x" / "beam.html", example=1, vocab=VOCAB,
                          title="two <examples>")
    assert path == str(tmp_path / "x" / "beam.html") and open(path).read() == text
    m = re.fullmatch(r'<iframe srcdoc="([^"]*)" title="[^"]*" style="[^"]*"></iframe>',
                     page._repr_html_())
    assert m and html.unescape(m.group(1)) == text


def test_bad_calls_are_named():
    with pytest.raises(TypeError, match="beam_stepper: expected the BeamTrace"):
        beam_stepper([1, 2])
    _, trace = search()
    with pytest.raises(ValueError, match="beam_stepper"):
        beam_stepper(trace, example=2)


VISIBLE = ("Array.from(document.querySelectorAll('g.node')).filter(e => /^n\\d+$/.test(e.id) &&"
           " getComputedStyle(e).visibility !== 'hidden').map(e => Number(e.id.slice(1)))"
           ".sort((a, b) => a - b)")
MARKED = ("Array.from(document.querySelectorAll('g.node.{}')).map(e => Number(e.id.slice(1)))"
          ".sort((a, b) => a - b)")


@pytest.mark.browser
@pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed (apt-get install chromium)")
@needs_dot
def test_chromium_steps_through_the_beam(tmp_path):
    hyps, trace = search()
    path = save_beam_html(trace, tmp_path / "beam.html", example=0, vocab=VOCAB)
    mine = [n for n in trace.nodes if n.example == 0]
    last = max(n.step for n in mine)
    b = Browser(CHROMIUM)
    try:
        b.open(path)
        b.send("Emulation.setDeviceMetricsOverride", {"width": 1280, "height": 720,
                                                      "deviceScaleFactor": 1, "mobile": False})
        # frame 0: the root alone
        assert b.js(VISIBLE) == [n.id for n in mine if n.step == 0]
        # each step reveals that step's nodes and outlines them as current
        for t in range(1, last + 1):
            if t % 2:
                b.key("ArrowRight", keycode=39)
            else:
                b.click("#next")
            assert b.js(VISIBLE) == sorted(n.id for n in mine if n.step <= t)
            assert b.js(MARKED.format("current")) == sorted(n.id for n in mine if n.step == t)
            assert b.js(MARKED.format("best")) == []
            assert f"step {t} of {last}" in b.js("document.getElementById('panel').textContent")
        b.key("ArrowLeft", keycode=37)
        assert b.js(VISIBLE) == sorted(n.id for n in mine if n.step <= last - 1)
        # the last frame marks the best path: the root, then one node per returned token
        b.key("End", keycode=35)
        best = b.js(MARKED.format("best"))
        assert len(best) == hyps[0][0].length + 1
        assert [trace.nodes[i].token for i in best[1:]] == hyps[0][0].tokens.tolist()
        assert b.js(MARKED.format("current")) == []
        # the mark is drawn: the best nodes' outline is the page's blue, 3px wide
        stroke = b.js(f"(() => {{ const s = getComputedStyle(document.querySelector("
                      f"'#n{best[-1]} > path, #n{best[-1]} > polygon')); "
                      f"return [s.stroke, s.strokeWidth]; }})()")
        assert stroke == ["rgb(31, 95, 191)", "3px"]
        shot = b.send("Page.captureScreenshot", {"format": "png"})["data"]
        png = base64.b64decode(shot)
        assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 10_000
        keep = os.environ.get("BEAM_SCREENSHOT")  # where to keep the picture, to look at it
        if keep:
            with open(keep, "wb") as f:
                f.write(png)
        # "fit" shrinks the drawing into the pane, and back
        assert b.js("document.body.dataset.zoom") == "1"
        b.key("f", keycode=70)
        assert b.js("document.body.dataset.zoom") == "fit"
        pane = b.js("(() => { const p = document.getElementById('graph')"
                    ".getBoundingClientRect(), s = document.querySelector('#graph svg')"
                    ".getBoundingClientRect(); return [p.left, p.top, p.right, p.bottom, "
                    "s.left, s.top, s.right, s.bottom]; })()")
        assert pane[0] <= pane[4] and pane[1] <= pane[5]
        assert pane[6] <= pane[2] + 0.5 and pane[7] <= pane[3] + 0.5
        b.click("#zoom")
        assert b.js("document.body.dataset.zoom") == "1"
        # Home, then play: the frames advance by themselves
        b.key("Home", keycode=36)
        assert b.js("Number(document.body.dataset.frame)") == 0
        b.click("#play")
        deadline = time.monotonic() + 10
        while b.js("Number(document.body.dataset.frame)") < 2 and time.monotonic() < deadline:
            time.sleep(0.1)
        assert b.js("Number(document.body.dataset.frame)") >= 2
        b.click("#play")
    finally:
        b.close()
