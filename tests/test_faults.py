"""The fault suite: saves killed midway, resumed training, hostile and damaged files.

- A process saving in a loop is killed (SIGKILL) at random moments, again and again: the
  destination always loads, bit for bit, as one of the two states it alternates between, and the
  temporary files of killed saves do not pile up (the next save removes them).
- Training killed in the middle of a step (its update made, its checkpoint not yet written) and
  resumed from its last checkpoint ends bit-identical to a run that was never interrupted.
- Hostile files (pickle payloads, huge declared shapes, deep nesting, bad headers) and damaged
  ones (every kind of bit flip, truncation, random bytes) are refused with a ValueError naming the
  path; nothing in them runs, and loading allocates no more than the file's size.
"""
from __future__ import annotations

import io
import json
import os
import pickle
import signal
import subprocess
import sys
import textwrap
import time
import tracemalloc
import zipfile

import numpy as np
import pytest

import minigrad as mg

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _run(code: str, *args, **kw) -> subprocess.Popen:
    env = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
    return subprocess.Popen([sys.executable, "-c", textwrap.dedent(code), *args], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **kw)


def _states():
    rng = np.random.default_rng(0)
    a = {"w": rng.standard_normal((256, 512)), "step": 1}
    b = {"w": rng.standard_normal((256, 512)), "step": 2}
    return a, b


SAVER = """
import sys
import numpy as np
import minigrad as mg
rng = np.random.default_rng(0)
states = [{"w": rng.standard_normal((256, 512)), "step": 1},
          {"w": rng.standard_normal((256, 512)), "step": 2}]
print("ready", flush=True)
i = 0
while True:
    mg.save(states[i % 2], sys.argv[1])
    i += 1
"""


def _temporaries(directory, name):
    return [n for n in os.listdir(directory) if n.startswith(f".{name}.") and n.endswith(".tmp")]


def test_kill_during_save_leaves_old_or_new_and_no_pile(tmp_path):
    a, b = _states()
    path = str(tmp_path / "ckpt.npz")
    mg.save(a, path)
    rng = np.random.default_rng(1)
    kills, mid_write, most_left = 12, 0, 0
    for _ in range(kills):
        proc = _run(SAVER, path)
        assert proc.stdout.readline().strip() == "ready"
        time.sleep(rng.uniform(0.0, 0.25))
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        proc.stdout.close()
        proc.stderr.close()
        left = _temporaries(tmp_path, "ckpt.npz")
        mid_write += bool(left)
        most_left = max(most_left, len(left))
        got = mg.load(path)
        assert got["step"] in (1, 2)
        want = a if got["step"] == 1 else b
        assert np.array_equal(got["w"], want["w"]) and got["w"].dtype == want["w"].dtype
    # a killed save leaves at most its own temporary file; the next one removes it
    assert most_left <= 1
    mg.save(a, path)
    assert _temporaries(tmp_path, "ckpt.npz") == []
    print(f"{kills} kills, {mid_write} of them mid-write")


TRAINER = """
import sys
import numpy as np
import minigrad as mg
import rnn

import time

steps, path, out = int(sys.argv[1]), sys.argv[2], sys.argv[3]
mode = sys.argv[4] if len(sys.argv) > 4 else ""
resume = mode == "resume"
hold = int(mode[5:]) if mode.startswith("hold:") else None  # stop mid-step after that step
cell = rnn.LSTMCell(3, 5, rng=0, dtype="float64")
head = mg.nn.Linear(5, 2, rng=1, dtype="float64")
params = list(cell.parameters()) + list(head.parameters())
opt = mg.optim.Adam(params, lr=0.01)
start = 0
if resume:
    ckpt = mg.load(path)
    cell.load_state_dict(ckpt["cell"])
    head.load_state_dict(ckpt["head"])
    opt.load_state_dict(ckpt["opt"])
    start = ckpt["step"]
for step in range(start, steps):
    data = np.random.default_rng(1000 + step)  # the batch is a function of the step alone
    x = mg.tensor(data.standard_normal((4, 2, 3)))
    y = mg.tensor(data.standard_normal((2, 2)))
    out_seq, _ = rnn.unroll(cell, x)
    loss = ((head(out_seq[-1]) - y) ** 2).mean()
    opt.zero_grad()
    loss.backward()
    opt.step()
    if hold is not None and step == hold:
        time.sleep(120)  # the update is made, its checkpoint not yet written: killed here
    mg.save({"cell": cell.state_dict(), "head": head.state_dict(), "opt": opt.state_dict(),
             "step": step + 1}, path)
    print(step + 1, flush=True)
np.savez(out, *[p.numpy() for p in params])
"""


def test_resume_after_kill_is_bit_identical(tmp_path):
    steps = 30
    whole = _run(TRAINER, str(steps), str(tmp_path / "a.npz"), str(tmp_path / "whole.npz"))
    assert whole.wait(timeout=120) == 0, whole.stderr.read()
    ckpt = str(tmp_path / "b.npz")
    # it trains a third of the way, then holds in the middle of step 12 (the update made, its
    # checkpoint not written), where it is killed: the resume starts from step 11's checkpoint
    killed = _run(TRAINER, str(steps), ckpt, str(tmp_path / "unused.npz"), "hold:11")
    for _ in range(11):
        killed.stdout.readline()
    killed.send_signal(signal.SIGKILL)
    killed.wait()
    reached = mg.load(ckpt)["step"]
    assert reached == 11
    resumed = _run(TRAINER, str(steps), ckpt, str(tmp_path / "resumed.npz"), "resume")
    assert resumed.wait(timeout=120) == 0, resumed.stderr.read()
    for proc in (whole, killed, resumed):
        proc.stdout.close()
        proc.stderr.close()
    w, r = np.load(tmp_path / "whole.npz"), np.load(tmp_path / "resumed.npz")
    assert len(w.files) == len(r.files) > 0
    for k in w.files:
        assert np.array_equal(w[k], r[k]), f"parameter {k} differs after resuming"


# --- hostile files --------------------------------------------------------------------------

class _Payload:
    """Unpickling this creates a directory: the proof that code in a file ran."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.mkdir, (self.marker,))


def _npz(path, entries: dict):
    """Write a stored zip of raw .npy byte strings (name -> bytes)."""
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as zf:
        for name, data in entries.items():
            zf.writestr(name + ".npy", data)


def _npy(array, allow_pickle=False) -> bytes:
    buf = io.BytesIO()
    np.save(buf, array, allow_pickle=allow_pickle)
    return buf.getvalue()


def _manifest(root) -> bytes:
    return _npy(np.frombuffer(json.dumps({"format": 1, "root": root}).encode(), np.uint8))


def _refused(path):
    with pytest.raises(ValueError) as info:
        mg.load(path)
    message = str(info.value)
    assert "mg.load" in message and str(path) in message
    assert "allow_pickle" not in message, "never suggest loading pickles"
    return message


def test_pickle_payloads_are_refused_without_running(tmp_path):
    marker = str(tmp_path / "ran")
    payload = np.array([_Payload(marker)], dtype=object)
    _npz(tmp_path / "obj.npz", {"__minigrad__": _manifest({"array": "a0"}),
                                "a0": _npy(payload, allow_pickle=True)})
    (tmp_path / "raw.pkl").write_bytes(pickle.dumps(_Payload(marker)))
    np.save(tmp_path / "single.npy", payload, allow_pickle=True)
    for name in ("obj.npz", "raw.pkl", "single.npy"):
        _refused(tmp_path / name)
    assert not os.path.exists(marker), "loading ran code from the file"


def test_huge_declared_shape_is_refused_before_allocating(tmp_path):
    small = _npy(np.zeros(4))
    header_end = small.index(b"\n") + 1
    header = small[:header_end].replace(b"(4,)", b"(1000000, 1000000)")
    # keep the header's length so the file stays well-formed around the lie
    header = header[:header_end - 1].rstrip(b" ")
    header = header + b" " * (header_end - 1 - len(header)) + b"\n"
    forged = header[:8] + header[8:]
    _npz(tmp_path / "huge.npz", {"__minigrad__": _manifest({"array": "a0"}),
                                 "a0": forged + small[header_end:]})
    tracemalloc.start()
    try:
        message = _refused(tmp_path / "huge.npz")
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert "1000000" in message
    assert peak < 1_000_000 + 10 * os.path.getsize(tmp_path / "huge.npz")


def test_deep_manifests_are_refused(tmp_path):
    deep = "[" * 100_000 + "]" * 100_000
    manifest = np.frombuffer(('{"format": 1, "root": ' + deep + "}").encode(), np.uint8)
    _npz(tmp_path / "deep.npz", {"__minigrad__": _npy(manifest)})
    _refused(tmp_path / "deep.npz")
    node = {"value": 1}
    for _ in range(mg.serialization.MAX_DEPTH + 5):
        node = {"list": [node]}
    _npz(tmp_path / "nested.npz", {"__minigrad__": _manifest(node)})
    assert "nested" in _refused(tmp_path / "nested.npz")


def test_malformed_headers_and_entries_are_refused(tmp_path):
    good = _npy(np.arange(3.0))
    bad_headers = {
        "unbalanced": good.replace(b"'shape': (3,)", b"'shape': (3, "),
        "not-a-dict": good.replace(b"{'descr'", b"['descr'"),
        "bad-dtype": good.replace(b"'<f8'", b"'<q9'"),
        "bad-magic": b"\x93NUMPX" + good[6:],
        "empty": b"",
    }
    for name, entry in bad_headers.items():
        _npz(tmp_path / f"{name}.npz", {"__minigrad__": _manifest({"array": "a0"}), "a0": entry})
        _refused(tmp_path / f"{name}.npz")
    _npz(tmp_path / "no-manifest.npz", {"a0": good})
    _refused(tmp_path / "no-manifest.npz")
    _npz(tmp_path / "dangling.npz", {"__minigrad__": _manifest({"array": "a7"})})
    _refused(tmp_path / "dangling.npz")
    _npz(tmp_path / "bad-value.npz", {"__minigrad__": _manifest({"value": {"x": 1}})})
    _refused(tmp_path / "bad-value.npz")
    with zipfile.ZipFile(tmp_path / "deflated.npz", "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("__minigrad__.npy", _manifest({"array": "a0"}))
        zf.writestr("a0.npy", good)
    _refused(tmp_path / "deflated.npz")


def test_every_bit_flip_is_refused_or_harmless(tmp_path):
    path = tmp_path / "ckpt.npz"
    original = {"w": np.arange(24.0).reshape(4, 6), "b": np.ones(3, np.float32), "step": 7,
                "name": "lstm"}
    mg.save(original, path)
    data = path.read_bytes()
    rng = np.random.default_rng(0)
    flipped = tmp_path / "flipped.npz"
    refused = harmless = 0
    for pos in range(len(data)):  # one random bit of every byte
        damaged = bytearray(data)
        damaged[pos] ^= 1 << int(rng.integers(8))
        flipped.write_bytes(bytes(damaged))
        try:
            got = mg.load(flipped)
        except ValueError as e:
            assert str(flipped) in str(e)
            refused += 1
            continue
        # a flip the format does not protect (a timestamp, a comment) must change nothing
        assert got["step"] == 7 and got["name"] == "lstm"
        assert np.array_equal(got["w"], original["w"]) and np.array_equal(got["b"], original["b"])
        harmless += 1
    assert refused > 0.75 * len(data)  # the rest are zip metadata no reader depends on
    print(f"{len(data)} bit flips: {refused} refused, {harmless} harmless")


def test_truncations_and_random_bytes_are_refused(tmp_path):
    path = tmp_path / "ckpt.npz"
    mg.save({"w": np.arange(100.0), "step": 1}, path)
    data = path.read_bytes()
    cut = tmp_path / "cut.npz"
    for n in range(0, len(data), 37):
        cut.write_bytes(data[:n])
        _refused(cut)
    rng = np.random.default_rng(0)
    noise = tmp_path / "noise.bin"
    for size in (1, 10, 1000, 100_000):
        noise.write_bytes(rng.integers(0, 256, size, dtype=np.uint8).tobytes())
        _refused(noise)
    noise.write_bytes(b"PK\x03\x04" + rng.integers(0, 256, 5000, dtype=np.uint8).tobytes())
    _refused(noise)


def test_saved_file_follows_the_umask(tmp_path):
    old = os.umask(0o022)
    try:
        mg.save({"a": 1}, tmp_path / "f.npz")
    finally:
        os.umask(old)
    assert (os.stat(tmp_path / "f.npz").st_mode & 0o777) == 0o644


def test_failed_save_keeps_old_file_and_leaves_nothing(tmp_path):
    path = tmp_path / "ckpt.npz"
    mg.save({"w": np.arange(3.0)}, path)

    class Exploding:
        def __array__(self, *a, **k):
            raise RuntimeError("boom")
    with pytest.raises(TypeError):
        mg.save({"w": Exploding()}, path)
    assert sorted(os.listdir(tmp_path)) == ["ckpt.npz"]
    assert np.array_equal(mg.load(path)["w"], np.arange(3.0))
