"""Small things a new user meets first: what dir(mg) lists, the permissions of saved files, and
the BLAS thread knob."""
import os
import stat
import sys

import numpy as np
import pytest

import minigrad as mg


def test_save_load_and_the_thread_knob_are_listed_by_dir():
    names = dir(mg)
    for name in ("save", "load", "set_num_threads", "get_num_threads", "nn", "optim", "viz"):
        assert name in names, name
    for name in ("save", "load", "set_num_threads", "get_num_threads"):
        assert name in mg.__all__ and callable(getattr(mg, name))


@pytest.mark.skipif(os.name != "posix", reason="file modes and umask are POSIX")
@pytest.mark.parametrize("umask", [0o022, 0o077, 0o002])
def test_saved_files_follow_the_umask_like_any_new_file(tmp_path, umask):
    old = os.umask(umask)
    try:
        with open(tmp_path / "plain.txt", "w") as f:  # the reference: an ordinary new file
            f.write("x")
        mg.save({"w": np.ones(3)}, tmp_path / "ckpt.npz")
    finally:
        os.umask(old)
    mode = stat.S_IMODE(os.stat(tmp_path / "ckpt.npz").st_mode)
    assert mode == 0o666 & ~umask == stat.S_IMODE(os.stat(tmp_path / "plain.txt").st_mode)
    np.testing.assert_array_equal(mg.load(tmp_path / "ckpt.npz")["w"], np.ones(3))


def test_set_num_threads_sets_what_threadpoolctl_reports():
    threadpoolctl = pytest.importorskip("threadpoolctl")
    if not any(p["user_api"] == "blas" for p in threadpoolctl.threadpool_info()):
        pytest.skip("threadpoolctl finds no BLAS library under NumPy")
    before = mg.get_num_threads()
    try:
        mg.set_num_threads(1)
        # checked with threadpoolctl itself, not through get_num_threads
        assert {p["num_threads"] for p in threadpoolctl.threadpool_info()
                if p["user_api"] == "blas"} == {1}
        assert mg.get_num_threads() == 1
    finally:
        mg.set_num_threads(before)


def test_set_num_threads_rejects_bad_counts():
    with pytest.raises(ValueError, match="set_num_threads: n must be at least 1, got 0"):
        mg.set_num_threads(0)
    with pytest.raises(TypeError, match="set_num_threads: n must be an int, got float"):
        mg.set_num_threads(2.0)
    with pytest.raises(TypeError, match="got bool"):
        mg.set_num_threads(True)


def test_without_threadpoolctl_the_error_says_what_to_do(monkeypatch):
    monkeypatch.setitem(sys.modules, "threadpoolctl", None)  # import now fails
    with pytest.raises(ImportError, match=r"set_num_threads: needs threadpoolctl \(pip install "
                                          r"threadpoolctl.*OMP_NUM_THREADS"):
        mg.set_num_threads(1)
    with pytest.raises(ImportError, match="get_num_threads: needs threadpoolctl"):
        mg.get_num_threads()
    # the demos still run: they say the thread count is unknown
    from demos import _common
    with _common.blas_threads(1) as n:
        assert n is None
