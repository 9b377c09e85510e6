"""docs/extending.md runs as written: each ```python block in a namespace of its own (every block
runs alone; tests/test_docs_blocks.py also runs each in a fresh process).

A block whose first line is `# requires: viz` is skipped when the graphviz package is missing.
The blocks check themselves (assert_allclose against NumPy, gradcheck against finite
differences), so running them is the test.
"""
import importlib.util
import pathlib
import re

import numpy as np
import pytest

DOC = pathlib.Path(__file__).resolve().parent.parent / "docs" / "extending.md"
BLOCK = re.compile(r"^```python\n(.*?)^```", re.S | re.M)


def blocks():
    return BLOCK.findall(DOC.read_text())


def test_doc_has_the_worked_example():
    code = "\n".join(blocks())
    assert len(blocks()) >= 4
    for needed in ("class ScaledTanh(mg.Function)", "save_for_backward", "needs_input_grad",
                   "gradcheck(", "mg.viz.draw", "mg.checkpoint", "create_graph=True",
                   "gradgradcheck(", "composed = staticmethod", "def gradient_penalty",
                   "def conjugate_gradients", "np.linalg.solve(H"):
        assert needed in code, needed


def test_doc_blocks_run_verbatim():
    has_viz = importlib.util.find_spec("graphviz") is not None
    ran, ns = 0, None
    for k, src in enumerate(blocks()):
        if src.startswith("# requires: viz") and not has_viz:
            continue
        block_ns = {"__name__": "extending_md"}
        if ns is None:  # the worked example: the first block, checked further below
            ns = block_ns
        try:
            exec(compile(src, f"{DOC.name} block {k}", "exec"), block_ns)
        except Exception as e:
            pytest.fail(f"docs/extending.md block {k} failed: {type(e).__name__}: {e}\n{src}")
        ran += 1
    assert ran >= 3

    # "runs on any device": the same op on the fake device (conftest.py) equals the CPU result
    import minigrad as mg
    x, a = ns["x"], ns["a"]
    xd, ad = x.to("fake"), a.to("fake")
    out = ns["scaled_tanh"](xd, ad)
    assert out.device == "fake"
    gx, ga = mg.grad(out.sum(), [x, a])
    ref = ns["scaled_tanh"](x, a)
    rx, ra = mg.grad(ref.sum(), [x, a])
    np.testing.assert_allclose(out.numpy(), ref.numpy())
    np.testing.assert_allclose(gx.numpy(), rx.numpy())
    np.testing.assert_allclose(ga.numpy(), ra.numpy())

    # the doc's checks have teeth: the same gradcheck call rejects a wrong backward
    from minigrad.testing import GradcheckError

    class Wrong(ns["ScaledTanh"]):
        def backward(self, gout):
            gx, ga = super().backward(gout)
            return gx, (None if ga is None else ga * 1.01)

    with pytest.raises(GradcheckError, match="gradcheck failed"):
        ns["gradcheck"](Wrong.apply, [ns["x"], ns["a"]])
