"""Every fenced ```python block in README.md and docs/*.md runs ALONE, as written, in a fresh
Python process (its own imports and definitions; nothing carried over from an earlier block).

The working directory is a fresh temporary folder, so blocks that write files leave nothing in
the repository; the repository is on PYTHONPATH. A block that needs an optional program or
package says so on its first line, `# requires: viz` (the graphviz package and the `dot`
program) or `# requires: matplotlib`, and is skipped with that reason where it is missing.
"""
import importlib.util
import os
import pathlib
import re
import shutil
import subprocess
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parent.parent
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
BLOCK = re.compile(r"^```python\n(.*?)^```", re.S | re.M)
REQUIRES = re.compile(r"^# requires: (.+)$")


def blocks():
    for page in PAGES:
        text = page.read_text()
        for m in BLOCK.finditer(text):
            line = text.count("\n", 0, m.start()) + 2  # first line of the code
            yield pytest.param(m.group(1), id=f"{page.relative_to(ROOT)}:{line}")


def missing(src: str) -> str | None:
    """Why this block cannot run here, or None."""
    first = src.splitlines()[0] if src.strip() else ""
    m = REQUIRES.match(first)
    if not m:
        return None
    for need in (w.strip() for w in m.group(1).split(",")):
        if need == "viz":
            if importlib.util.find_spec("graphviz") is None:
                return "needs the graphviz Python package (the viz extra)"
            if shutil.which("dot") is None:
                return "needs Graphviz's dot program"
        elif need == "matplotlib":
            if importlib.util.find_spec("matplotlib") is None:
                return "needs matplotlib (the demos extra)"
        else:
            raise ValueError(f"unknown '# requires: {need}' in a docs block")
    return None


def test_pages_have_blocks():
    assert len(list(blocks())) >= 12


@pytest.mark.parametrize("src", list(blocks()))
def test_block_runs_alone(src, tmp_path):
    reason = missing(src)
    if reason:
        pytest.skip(reason)
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(
        [str(ROOT)] + [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]),
        MPLBACKEND="Agg")
    proc = subprocess.run([sys.executable, "-c", src], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=300)
    # a block added without its `# requires:` line still skips, rather than fails, where an
    # optional piece is missing; where it is installed the block runs and must pass
    absent = re.search(r"No module named '(graphviz|matplotlib)'|GraphvizNotFoundError|"
                       r"ExecutableNotFound", proc.stderr)
    if proc.returncode != 0 and absent:
        pytest.skip(f"an optional dependency is missing: {absent.group(0)}")
    assert proc.returncode == 0, (f"block failed alone (exit {proc.returncode}):\n{src}\n"
                                  f"--- stderr ---\n{proc.stderr[-3000:]}")
