"""The README is the front door: its examples run as written, and its two set-up commands are
the ones CI and users run."""
import pathlib
import re

ROOT = pathlib.Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text()


def test_python_examples_run_verbatim():
    ns = {"__name__": "readme"}
    blocks = re.findall(r"^```python\n(.*?)^```", README, re.S | re.M)
    assert len(blocks) >= 3
    for k, src in enumerate(blocks):
        exec(compile(src, f"README.md block {k}", "exec"), ns)
    assert ns["out"].shape == (20, 4, 8) and ns["h"].shape == (4, 8)
    for p in ns["bi"].parameters():  # the backward in the MUT1 block reached every weight
        assert p.grad is not None and p.grad.shape == p.shape


def test_two_setup_commands_and_ci_runs_the_test_one():
    setup = re.findall(r"^python3 -m venv \.venv .*$", README, re.M)
    assert len(setup) == 2, setup
    demo, tests = setup
    assert "python -m demos." in demo and "pytest" in tests
    ci = (ROOT / ".ci" / "run").read_text()
    # .ci/run takes the test command from the README itself, so the two cannot drift apart
    assert "grep -m1 -E '^python3 -m venv" in ci and "pytest" in ci
    module = re.search(r"python -m (demos\.\w+)", demo).group(1)
    assert (ROOT / (module.replace(".", "/") + ".py")).exists()
