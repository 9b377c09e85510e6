"""mg.save / mg.load: round trips, atomic writes, clear errors, and exact training resumption."""
import os
import zipfile

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import minigrad as mg
from minigrad import backend
from minigrad.testing.fakedevice import FakeArray, fake_xp
from minigrad.testing.fakedevice import to_device as fake_to_device
from minigrad.testing.fakedevice import to_host as fake_to_host


def same(a, b):
    """Deep equality that also checks types, dtypes and shapes (NaN equals NaN)."""
    assert type(a) is type(b), (type(a), type(b))
    if isinstance(a, np.ndarray):
        assert a.dtype == b.dtype and a.shape == b.shape
        np.testing.assert_array_equal(a, b)
    elif isinstance(a, np.generic):
        assert a.dtype == b.dtype and (a == b or (a != a and b != b))
    elif isinstance(a, dict):
        assert list(a) == list(b)
        for k in a:
            same(a[k], b[k])
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b)
        for x, y in zip(a, b):
            same(x, y)
    elif isinstance(a, float) and a != a:
        assert b != b
    else:
        assert a == b


def test_nested_round_trip(tmp_path):
    obj = {
        "model": {"w": np.arange(6, dtype=np.float32).reshape(2, 3), "b": np.zeros(0)},
        "optim": {"state": {0: {"step": 3, "m": np.ones((2, 2))}},
                  "param_groups": [{"lr": 0.1, "betas": (0.9, 0.999), "nesterov": False,
                                    "params": [0]}]},
        "step": 10, "name": "run-1 ünïcode", "none": None, "nan": float("nan"),
        "inf": -float("inf"), "big": 2 ** 100, "ints": np.array([1, -2], np.int64),
        "flags": np.array([True, False]), "half": np.float16(1.5), "i32": np.int32(-7),
        "complex": np.array([1 + 2j]), "empty": {}, "nested": [[1, [2.5]], ()],
    }
    path = tmp_path / "ckpt.npz"
    mg.save(obj, path)
    same(mg.load(path), obj)
    mg.save(obj, str(path))                     # str paths too, and overwriting
    same(mg.load(str(path)), obj)


@given(arr=hnp.arrays(dtype=st.sampled_from([np.float32, np.float64, np.int64, np.uint8,
                                              np.bool_]),
                      shape=hnp.array_shapes(min_dims=0, max_dims=3, min_side=0, max_side=4)))
def test_arrays_round_trip_bit_exact(tmp_path_factory, arr):
    path = tmp_path_factory.mktemp("arr") / "a.npz"
    mg.save({"a": arr, "list": [arr, arr[...]]}, path)
    out = mg.load(path)
    same(out["a"], arr)
    assert out["a"].tobytes() == arr.tobytes()   # NaN payloads and -0.0 included


def test_tensors_and_device_arrays_load_as_host_numpy(tmp_path):
    if "fake" not in backend._devices:
        mg.register_device("fake", FakeArray, fake_xp, fake_to_device, fake_to_host)
    t = mg.tensor([[1.0, 2.0]], device="fake")
    mg.save({"t": t, "raw": t.data, "host": mg.tensor([3.0])}, tmp_path / "d.npz")
    out = mg.load(tmp_path / "d.npz")
    assert all(type(v) is np.ndarray for v in out.values())
    np.testing.assert_array_equal(out["t"], [[1.0, 2.0]])
    np.testing.assert_array_equal(out["raw"], [[1.0, 2.0]])


def test_unsupported_content_raises_type_error(tmp_path):
    with pytest.raises(TypeError, match=r"save: obj\['x'\] is a set"):
        mg.save({"x": {1, 2}}, tmp_path / "bad.npz")
    with pytest.raises(TypeError, match="keys must be str or int"):
        mg.save({(1, 2): 3}, tmp_path / "bad.npz")
    with pytest.raises(TypeError, match="dtype object"):
        mg.save({"x": np.array([object()])}, tmp_path / "bad.npz")
    assert os.listdir(tmp_path) == []


def test_crash_mid_write_keeps_old_file(tmp_path, monkeypatch):
    path = tmp_path / "ckpt.npz"
    mg.save({"version": 1, "w": np.ones(1000)}, path)
    before = path.read_bytes()

    def crashing_savez(f, **arrays):
        f.write(b"PK\x03\x04 half of a zip file")   # partial output, then the "crash"
        raise OSError("disk full (simulated)")
    monkeypatch.setattr(np, "savez", crashing_savez)
    with pytest.raises(OSError, match="simulated"):
        mg.save({"version": 2, "w": np.zeros(1000)}, path)
    monkeypatch.undo()
    assert path.read_bytes() == before
    assert os.listdir(tmp_path) == ["ckpt.npz"]           # no temporary file left behind
    assert mg.load(path)["version"] == 1


def test_interrupt_during_replace_leaves_no_temp(tmp_path, monkeypatch):
    path = tmp_path / "ckpt.npz"

    def interrupted(src, dst):
        raise KeyboardInterrupt
    monkeypatch.setattr(os, "replace", interrupted)
    with pytest.raises(KeyboardInterrupt):
        mg.save({"a": 1}, path)
    monkeypatch.undo()
    assert os.listdir(tmp_path) == []


def test_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.npz"):
        mg.load(tmp_path / "nope.npz")


def test_bad_files_raise_value_error_naming_the_path(tmp_path):
    good = tmp_path / "good.npz"
    mg.save({"w": np.arange(10000.0), "step": 1}, good)
    data = good.read_bytes()
    cases = {
        "truncated.npz": data[: len(data) // 2],
        "cut_tail.npz": data[:-10],
        "random.npz": np.random.default_rng(0).bytes(2000),
        "empty.npz": b"",
        "corrupt.npz": data[:200] + bytes(b ^ 0xFF for b in data[200:400]) + data[400:],
    }
    for name, content in cases.items():
        (tmp_path / name).write_bytes(content)
    np.savez(tmp_path / "foreign.npz", x=np.ones(3))          # an npz without our manifest
    np.save(tmp_path / "single.npy", np.ones(3))
    with zipfile.ZipFile(tmp_path / "badjson.npz", "w") as z:
        with z.open("__minigrad__.npy", "w") as f:
            np.lib.format.write_array(f, np.frombuffer(b"{not json", np.uint8))
    for name in [*cases, "foreign.npz", "single.npy", "badjson.npz"]:
        with pytest.raises(ValueError, match=name):
            mg.load(tmp_path / name)


# --- resuming training ----------------------------------------------------------------------------

class Model(mg.nn.Module):
    def __init__(self):
        super().__init__()
        self.emb = mg.nn.Embedding(10, 6, rng=0)
        self.body = mg.nn.Sequential(mg.nn.Linear(6, 8, rng=1), mg.nn.Tanh(), mg.nn.Dropout(0.3),
                                     mg.nn.Linear(8, 10, rng=2))

    def forward(self, idx):
        return self.body(self.emb(idx))


def _batch(step):
    rng = np.random.default_rng(100 + step)
    return rng.integers(0, 10, (4, 5)), rng.integers(0, 10, (4, 5))


def _train(model, opt, sched, steps, start):
    for step in range(start, start + steps):
        x, y = _batch(step)
        opt.zero_grad()
        loss = mg.cross_entropy(model(x), y)
        loss.backward()
        mg.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        sched.step()


def _fresh():
    model = Model()
    opt = mg.optim.AdamW(model.parameters(), lr=0.05, weight_decay=0.1)
    return model, opt, mg.optim.CosineAnnealingLR(opt, T_max=8)


def test_resumed_training_is_bit_identical(tmp_path):
    mg.manual_seed(7)
    model, opt, sched = _fresh()
    _train(model, opt, sched, 6, 0)
    straight = model.state_dict()

    mg.manual_seed(7)
    model, opt, sched = _fresh()
    _train(model, opt, sched, 3, 0)
    mg.save({"model": model.state_dict(), "optim": opt.state_dict(), "sched": sched.state_dict(),
             "rng": mg.random.get_state(), "step": 3}, tmp_path / "ckpt.npz")
    del model, opt, sched

    mg.manual_seed(12345)                  # another process, another seed: all comes from the file
    ckpt = mg.load(tmp_path / "ckpt.npz")
    model, opt, sched = _fresh()
    model.load_state_dict(ckpt["model"])
    opt.load_state_dict(ckpt["optim"])
    sched.load_state_dict(ckpt["sched"])
    mg.random.set_state(ckpt["rng"])
    _train(model, opt, sched, 3, ckpt["step"])
    resumed = model.state_dict()
    assert list(resumed) == list(straight)
    for k in straight:
        assert resumed[k].tobytes() == straight[k].tobytes(), k
