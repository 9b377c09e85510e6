"""docs/training.md's ```python blocks run as written, each alone in a fresh process."""
from __future__ import annotations

import os
import pathlib
import re
import subprocess
import sys

ROOT = pathlib.Path(__file__).resolve().parent.parent


def test_docs_training_blocks_run_alone():
    text = (ROOT / "docs" / "training.md").read_text()
    blocks = re.findall(r"^```python\n(.*?)^```", text, re.S | re.M)
    assert len(blocks) >= 5
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    for k, src in enumerate(blocks):
        out = subprocess.run([sys.executable, "-c", src], capture_output=True, text=True,
                             env=env, cwd=ROOT, timeout=120)
        assert out.returncode == 0, f"docs/training.md block {k}:\n{out.stderr}"


def test_docstring_examples_run():
    import doctest
    import importlib
    for name in ("rnn.reinforce", "rnn.training.rollout", "rnn.training.scheduled_sampling",
                 "rnn.training.sequence_level", "rnn.training.professor_forcing",
                 "rnn.training.raml", "rnn.training.schedules", "rnn.training.rewards"):
        result = doctest.testmod(importlib.import_module(name))
        assert result.failed == 0 and result.attempted > 0, name
