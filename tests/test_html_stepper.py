"""The HTML stepper: a self-contained page, driven in real headless Chromium.

Chromium is driven through its DevTools protocol over `--remote-debugging-pipe` (JSON messages
ending in a NUL byte on file descriptors 3 and 4), so the test needs nothing beyond the standard
library and the `chromium` binary (Debian package `chromium`).
"""
from __future__ import annotations

import json
import os
import re
import select
import shutil
import subprocess
import tempfile
import time

import numpy as np
import pytest

import minigrad as mg
from minigrad.nn import Module, Parameter

CHROMIUM = next((shutil.which(n) for n in ("chromium", "chromium-browser", "google-chrome")
                 if shutil.which(n)), None)
needs_dot = pytest.mark.skipif(shutil.which("dot") is None,
                               reason="Graphviz `dot` is not installed (apt-get install graphviz)")


class Browser:
    """Headless Chromium with one page, spoken to over the DevTools pipe."""

    def __init__(self, binary, timeout=30.0):
        self.timeout = timeout
        self.profile = tempfile.mkdtemp(prefix="mg-chromium-")
        cmd_r, self._cmd_w = os.pipe()      # we write commands, Chromium reads them on fd 3
        self._out_r, out_w = os.pipe()      # Chromium writes replies on fd 4
        high_r, high_w = os.dup(cmd_r), os.dup(out_w)  # above 4, so dup2 below cannot clash

        def child_fds():
            os.dup2(high_r, 3)
            os.dup2(high_w, 4)

        flags = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--disable-extensions", "--remote-debugging-pipe",
                 f"--user-data-dir={self.profile}", "about:blank"]
        # the child closes unlisted descriptors after preexec_fn ran, so keep 3 and 4
        self.proc = subprocess.Popen([binary, *flags], pass_fds=(3, 4),
                                     preexec_fn=child_fds, stdout=subprocess.DEVNULL,
                                     stderr=subprocess.DEVNULL)
        for fd in (cmd_r, out_w, high_r, high_w):
            os.close(fd)
        self._buf = b""
        self._id = 0
        self.session = None

    def send(self, method, params=None, session=True):
        self._id += 1
        msg = {"id": self._id, "method": method, "params": params or {}}
        if session and self.session:
            msg["sessionId"] = self.session
        os.write(self._cmd_w, json.dumps(msg).encode() + b"\0")
        deadline = time.monotonic() + self.timeout
        while True:
            while b"\0" in self._buf:
                raw, self._buf = self._buf.split(b"\0", 1)
                reply = json.loads(raw)
                if reply.get("id") == self._id:
                    if "error" in reply:
                        raise RuntimeError(f"chromium: {method}: {reply['error']}")
                    return reply["result"]
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([self._out_r], [], [], left)[0]:
                raise TimeoutError(f"chromium did not answer {method}")
            chunk = os.read(self._out_r, 1 << 16)
            if not chunk:
                raise RuntimeError("chromium closed the DevTools pipe")
            self._buf += chunk

    def open(self, path):
        url = "file://" + os.path.abspath(path)
        target = self.send("Target.createTarget", {"url": url}, session=False)["targetId"]
        self.session = self.send("Target.attachToTarget",
                                 {"targetId": target, "flatten": True}, session=False)["sessionId"]
        deadline = time.monotonic() + self.timeout
        while self.js("document.readyState") != "complete" or self.js(
                "document.body && document.body.dataset.frame") is None:
            if time.monotonic() > deadline:
                raise TimeoutError(f"page {url} did not load")
            time.sleep(0.05)

    def js(self, expr):
        r = self.send("Runtime.evaluate", {"expression": expr, "returnByValue": True})
        if "exceptionDetails" in r:
            raise RuntimeError(f"chromium: {expr}: {r['exceptionDetails']}")
        return r["result"].get("value")

    def key(self, key, code=None, keycode=0):
        for kind in ("keyDown", "keyUp"):
            self.send("Input.dispatchKeyEvent", {"type": kind, "key": key, "code": code or key,
                                                 "windowsVirtualKeyCode": keycode})

    def click(self, selector):
        box = self.js(f"JSON.stringify(document.querySelector({json.dumps(selector)})"
                      ".getBoundingClientRect())")
        r = json.loads(box)
        x, y = r["x"] + r["width"] / 2, r["y"] + r["height"] / 2
        for kind in ("mousePressed", "mouseReleased"):
            self.send("Input.dispatchMouseEvent", {"type": kind, "x": x, "y": y,
                                                   "button": "left", "clickCount": 1})

    def close(self):
        try:
            self.send("Browser.close", session=False)
        except (RuntimeError, TimeoutError, OSError):
            pass
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        for fd in (self._cmd_w, self._out_r):
            try:
                os.close(fd)
            except OSError:
                pass
        shutil.rmtree(self.profile, ignore_errors=True)


class Cell(Module):
    """A two-gate recurrent cell small enough to check by eye: h' = tanh(x U + h W) * sigmoid(h)."""

    def __init__(self, rng, n_in=2, n_h=2):
        super().__init__()
        self.u = Parameter(rng.standard_normal((n_in, n_h)))
        self.w = Parameter(rng.standard_normal((n_h, n_h)))

    def forward(self, x, h):
        return mg.tanh(x @ self.u + h @ self.w) * mg.sigmoid(h)


def _graph(steps=2, seed=0):
    rng = np.random.default_rng(seed)
    cell = Cell(rng).name_parameters("cell")
    x = mg.tensor(rng.standard_normal((steps, 1, 2)), name="x")
    h0 = mg.tensor(rng.standard_normal((1, 2)), requires_grad=True, name="h0")
    with mg.viz.record():
        h = h0
        for t in range(steps):
            with mg.tag_scope("time", t):
                h = cell(x[t], h)
        loss = (h * h).sum()
    return loss, cell, h0


@pytest.fixture(scope="module")
def page(tmp_path_factory):
    if shutil.which("dot") is None:
        pytest.skip("Graphviz `dot` is not installed (apt-get install graphviz)")
    loss, cell, h0 = _graph()
    path = tmp_path_factory.mktemp("html") / "stepper.html"
    mg.viz.save_html(loss, path)
    st = mg.viz.Stepper(loss)
    return path, loss, cell, h0, st


@needs_dot
def test_page_is_self_contained(page):
    path, *_ = page
    text = path.read_text()
    # no external script, style sheet, image or font: the only URLs are XML namespace names
    assert not re.search(r"<script[^>]+src=|<link|<img|@import|url\(", text)
    urls = set(re.findall(r"https?://[^\"' )]+", text))
    assert urls <= {"http://www.w3.org/2000/svg", "http://www.w3.org/1999/xlink"}
    assert "<!DOCTYPE svg" not in text


@needs_dot
def test_frames_cover_forward_then_backward(page):
    path, loss, cell, h0, st = page
    data = json.loads(re.search(r'<script id="data" type="application/json">(.*?)</script>',
                                path.read_text(), re.S).group(1).replace("<\\/", "</"))
    frames = data["frames"]
    n_ops = len(st.graph.ops)
    # forward op by op in creation order, then backward in the engine's order
    assert [f["node"] for f in frames[:n_ops]] == [f"op{fn.seq}" for fn in st.graph.ops]
    assert [f["node"] for f in frames[n_ops:]] == [f"op{s.node.seq}" for s in st]
    assert len(frames) == 2 * n_ops
    # every highlighted id is a node of the inline SVG
    svg_ids = set(re.findall(r'<g id="(op\d+)" class="node', path.read_text()))
    assert {f["node"] for f in frames} <= svg_ids


@pytest.mark.browser
@pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed (apt-get install chromium)")
@needs_dot
def test_chromium_steps_through_the_page(page):
    path, loss, cell, h0, st = page
    n_ops = len(st.graph.ops)
    expected = [f"op{fn.seq}" for fn in st.graph.ops] + [f"op{s.node.seq}" for s in st]
    b = Browser(CHROMIUM)
    try:
        b.open(path)
        current = "Array.from(document.querySelectorAll('g.node.current')).map(e => e.id)"
        assert b.js(current) == [expected[0]]
        b.key("ArrowRight", keycode=39)
        assert b.js(current) == [expected[1]]
        assert b.js("document.querySelectorAll('g.node.fdone').length") == 1
        b.click("#next")
        assert b.js(current) == [expected[2]]
        b.key("ArrowLeft", keycode=37)
        assert b.js(current) == [expected[1]]

        # jump to the first backward frame: the root node, fed the seed gradient 1
        b.js(f"document.getElementById('slider').value = {n_ops};"
             "document.getElementById('slider').dispatchEvent(new Event('input'))")
        assert b.js(current) == [expected[n_ops]]
        # step through the backward pass; each frame's panel must show the engine's gradients
        for k, s in enumerate(st):
            if k:
                b.key("ArrowRight", keycode=39)
            assert b.js(current) == [expected[n_ops + k]]
            assert b.js("document.querySelectorAll('g.node.bdone').length") == k
            gouts = b.js("Array.from(document.querySelectorAll('#panel .gouts pre'))"
                         ".map(p => JSON.parse(p.dataset.values))")
            assert len(gouts) == len(s.gouts)
            for got, want in zip(gouts, s.gouts):
                np.testing.assert_allclose(got, np.ravel(want), rtol=1e-12, atol=1e-15)
        # on the last frame every edge that carried a gradient (and the seed's) is marked sent
        n_sent = b.js("document.querySelectorAll('g.edge.sent').length")
        assert n_sent == len([k for s in st for k in st.edge_grads(s)]) + 1

        # Home, then play: frames advance by themselves
        b.key("Home", keycode=36)
        assert b.js(current) == [expected[0]]
        b.click("#play")
        deadline = time.monotonic() + 10
        while b.js("Number(document.body.dataset.frame)") < 2 and time.monotonic() < deadline:
            time.sleep(0.1)
        assert b.js("Number(document.body.dataset.frame)") >= 2
        b.click("#play")
    finally:
        b.close()


@needs_dot
def test_panel_gradients_sum_to_engine_grads(page):
    """The gradients a page shows flowing into each leaf add up to what `mg.grad` computes."""
    path, loss, cell, h0, st = page
    text = path.read_text()
    data = json.loads(re.search(r'<script id="data" type="application/json">(.*?)</script>',
                                text, re.S).group(1).replace("<\\/", "</"))
    leaf_id = {t.name: t.id for t in st.graph.tensors}
    sums = {}
    for f in data["frames"]:
        for src, vals in re.findall(r"<div class='gx' data-src='(\w+)' data-pos='\d+'>"
                                    r"<div class='v'><b>[^<]*</b>[^<]*<pre data-values='([^']*)'",
                                    f["panel"]):
            v = np.array(json.loads(vals.replace("&quot;", '"')))
            sums[src] = sums.get(src, 0) + v
    wanted = [cell.u, cell.w, h0]
    grads = mg.grad(loss, wanted, retain_graph=True)
    for t, g in zip(wanted, grads):
        np.testing.assert_allclose(sums[leaf_id[t.name]], g.numpy().ravel(), rtol=1e-12)


@needs_dot
def test_page_has_its_title_and_no_raw_graphviz_tooltips(tmp_path):
    loss, cell, h0 = _graph(steps=3)
    page = mg.viz.html_stepper(loss, title="two <gates> & a loss")
    text = page.html
    # the title is on the page itself, not only in the tab (escaped like any text)
    assert "<h1 id=\"title\">two &lt;gates&gt; &amp; a loss</h1>" in text
    # Graphviz's <title> elements carry raw ids ("%3", "op17", "op1->op2"), shown on hover;
    # the only titles left are the page's and each node's readable name
    titles = re.findall(r"<title>([^<]*)</title>", text)
    assert titles[0] == "two &lt;gates&gt; &amp; a loss"
    st = mg.viz.Stepper(loss)
    readable = {f"{fn.name} #{fn.seq}" for fn in st.graph.ops} | {t.name for t in st.graph.tensors}
    assert titles[1:] and set(titles[1:]) <= readable
    assert not any(re.fullmatch(r"%\d+|op\d+|.*(-&gt;|->).*", t) for t in titles)
    # save writes exactly that page
    assert page.save(tmp_path / "a" / "p.html") == str(tmp_path / "a" / "p.html")
    assert (tmp_path / "a" / "p.html").read_text() == text


@needs_dot
def test_html_stepper_displays_inline_in_a_notebook():
    import html as html_module
    loss, *_ = _graph()
    page = mg.viz.html_stepper(loss)
    shown = page._repr_html_()
    # an iframe holding the page itself: nothing to fetch, no file
    m = re.fullmatch(r'<iframe srcdoc="([^"]*)" title="[^"]*" style="[^"]*"></iframe>', shown)
    assert m and html_module.unescape(m.group(1)) == page.html
    assert not re.search(r"<script[^>]+src=|<link|<img", html_module.unescape(m.group(1)))


@pytest.mark.browser
@pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed (apt-get install chromium)")
@needs_dot
def test_chromium_opens_the_page_fitted_to_the_window(tmp_path):
    """A tall graph (a 3-step LSTM composed from primitives) is seen whole at the opening view;
    the zoom buttons switch to actual size (the current node scrolled into view) and back."""
    import rnn
    cell = rnn.LSTMCell(2, 3, fused=False, rng=0)
    x = mg.randn(3, 2, 2, rng=1)
    with mg.viz.record():
        out, _ = rnn.unroll(cell, x, per_step=True)
        loss = (out * out).sum()
    path = mg.viz.save_html(loss, tmp_path / "lstm.html", title="3-step LSTM")
    b = Browser(CHROMIUM)
    try:
        b.open(path)
        rect = ("(() => {const p = document.getElementById('graph').getBoundingClientRect(),"
                " s = document.querySelector('#graph svg').getBoundingClientRect();"
                " return [p.left, p.top, p.right, p.bottom, s.left, s.top, s.right, s.bottom,"
                " s.width, s.height]})()")
        pl, pt, pr, pb, sl, st_, sr, sb, sw, sh = b.js(rect)
        assert b.js("document.body.dataset.zoom") == "fit"
        # the whole drawing lies inside the pane, and it fills the pane in one direction
        assert pl <= sl and pt <= st_ and sr <= pr and sb <= pb
        assert sw >= 0.8 * (pr - pl - 16) or sh >= 0.8 * (pb - pt - 16)
        assert b.js("document.getElementById('graph').scrollHeight <= "
                    "document.getElementById('graph').clientHeight")
        assert b.js("document.getElementById('title').textContent") == "3-step LSTM"
        natural = b.js("document.querySelector('#graph svg').viewBox.baseVal.height * 4 / 3")
        assert sh < natural  # this graph is taller than the window: fitted means shrunk
        b.click("#actual")
        assert b.js("document.body.dataset.zoom") == "1"
        assert b.js("document.querySelector('#graph svg').getBoundingClientRect().height") == \
            pytest.approx(natural, rel=1e-3)
        # at actual size the current node is scrolled into the pane
        node = b.js("(() => {const r = document.querySelector('g.node.current')"
                    ".getBoundingClientRect(); return [r.left, r.top, r.right, r.bottom]})()")
        assert pl <= node[0] and node[2] <= pr and pt <= node[1] and node[3] <= pb
        b.key("f", keycode=70)
        assert b.js("document.body.dataset.zoom") == "fit"
        assert b.js("document.querySelector('#graph svg').getBoundingClientRect().height") == \
            pytest.approx(sh, rel=1e-3)
    finally:
        b.close()
