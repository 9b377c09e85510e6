"""Shared test setup: hypothesis profiles, the "fake" stand-in device, and the gpu/browser markers.

HYPOTHESIS_PROFILE picks the profile: "dev" (default, quick) or "ci" (derandomized, more examples).
"""
import os

import pytest
from hypothesis import HealthCheck, settings

import minigrad as mg
from minigrad.testing.fakedevice import FakeArray, fake_xp, to_device, to_host

# deadline=None: timings on shared CI machines vary too much for per-example deadlines
# too_slow: a loaded 2-core machine can be slow to draw examples without anything being wrong
settings.register_profile("dev", max_examples=20, deadline=None,
                          suppress_health_check=[HealthCheck.too_slow])
settings.register_profile("ci", max_examples=50, deadline=None, derandomize=True,
                          print_blob=True, suppress_health_check=[HealthCheck.too_slow])
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "dev"))

# Cells are compiled with NumPy's executor unless a test asks for numba (rnn.compiling("numba")
# or "auto"): numba compiles every new program once, about a second each, and the suite draws
# hundreds of programs (hypothesis). tests/test_jit.py, test_compiled.py and
# test_compiled_builtin.py run numba's executor. Set MINIGRAD_COMPILE=auto to run every test
# through it. Children of the tests (demos, docs blocks) inherit the variable.
os.environ.setdefault("MINIGRAD_COMPILE", "numpy")

# every test may use device="fake": a GPU stand-in on which any stray NumPy call raises TypeError
mg.register_device("fake", FakeArray, fake_xp, to_device, to_host)


def _gpu_missing() -> str | None:
    """Why the gpu tests cannot run here, or None when CuPy sees a GPU."""
    try:
        import cupy
    except ImportError:
        return "CuPy is not installed"
    try:
        if cupy.cuda.runtime.getDeviceCount() == 0:
            return "CuPy is installed but no GPU is present"
    except Exception as e:  # CuPy raises its own runtime error when there is no driver
        return f"CuPy is installed but no GPU is usable ({type(e).__name__})"
    return None


def pytest_collection_modifyitems(config, items):
    gpu_reason = None
    gpu_checked = False
    browser_missing = not os.path.exists("/usr/bin/chromium")
    for item in items:
        if "gpu" in item.keywords:
            if not gpu_checked:
                gpu_reason, gpu_checked = _gpu_missing(), True
            if gpu_reason:
                item.add_marker(pytest.mark.skip(reason=f"gpu test: {gpu_reason}"))
        if "browser" in item.keywords and browser_missing:
            item.add_marker(pytest.mark.skip(reason="/usr/bin/chromium is not installed"))


def pytest_configure(config):
    # also declared in pyproject.toml; repeated so the markers exist when run from elsewhere
    config.addinivalue_line("markers", "gpu: needs a CUDA GPU and CuPy (skipped otherwise)")
    config.addinivalue_line("markers", "browser: drives headless Chromium (skipped otherwise)")


@pytest.fixture(autouse=True, scope="session")
def _jit_cache_in_tmp(tmp_path_factory):
    """numba's compiled loops (minigrad.jit) are cached in a temporary directory, never in the
    user's cache."""
    before = os.environ.get("MINIGRAD_JIT_CACHE")
    os.environ["MINIGRAD_JIT_CACHE"] = str(tmp_path_factory.mktemp("jit_cache"))
    yield
    if before is None:
        del os.environ["MINIGRAD_JIT_CACHE"]
    else:
        os.environ["MINIGRAD_JIT_CACHE"] = before
