"""`mg.save` / `mg.load`: checkpoints (nested state dicts) in one `.npz` file, written atomically.

The file is a plain NumPy `.npz` archive: every array is one entry (`a0`, `a1`, ...), and the entry
`__minigrad__` holds a JSON manifest of the structure around them (dicts, lists, tuples, numbers,
strings, None). Nothing is pickled, so loading a file runs no code from it.

Saving writes a temporary file in the same directory, flushes and fsyncs it, then renames it over
the target with `os.replace` (atomic on POSIX and Windows): a crash leaves either the old file or
the new one, never half of one.

>>> import os, tempfile
>>> import minigrad as mg
>>> model = mg.nn.Linear(3, 2, rng=0)
>>> opt = mg.optim.Adam(model.parameters())
>>> path = os.path.join(tempfile.mkdtemp(), "ckpt.npz")
>>> mg.save({"model": model.state_dict(), "optim": opt.state_dict(), "step": 10}, path)
>>> ckpt = mg.load(path)
>>> _ = model.load_state_dict(ckpt["model"])
>>> ckpt["step"]
10
"""
from __future__ import annotations

import json
import os
import stat
import tempfile
import zipfile

import numpy as np

from minigrad import backend
from minigrad.tensor import Tensor

__all__ = ["load", "save"]

_MANIFEST = "__minigrad__"
_FORMAT = 1


def _encode(obj, arrays: dict, where: str):
    """The JSON description of `obj`; arrays go to `arrays` (name -> host ndarray)."""
    if isinstance(obj, Tensor):
        obj = obj.data
    if type(obj) in backend._by_type or isinstance(obj, np.ndarray):
        a = np.asarray(backend.to_host(obj))
        if a.dtype.kind not in "biufc":
            raise TypeError(f"save: {where} is an array of dtype {a.dtype}; only numbers can be "
                            "saved")
        name = f"a{len(arrays)}"
        arrays[name] = a
        return {"array": name}
    if isinstance(obj, np.generic):
        name = f"a{len(arrays)}"
        arrays[name] = np.asarray(obj)
        return {"scalar": name}
    if obj is None or isinstance(obj, (bool, int, float, str)):
        return {"value": obj}
    if isinstance(obj, dict):
        keys = list(obj)
        for k in keys:
            if not isinstance(k, (str, int)) or isinstance(k, bool):
                raise TypeError(f"save: {where} has a key {k!r} of type {type(k).__name__}; keys "
                                "must be str or int")
        return {"dict": [[k, _encode(obj[k], arrays, f"{where}[{k!r}]")] for k in keys]}
    if isinstance(obj, (list, tuple)):
        items = [_encode(v, arrays, f"{where}[{i}]") for i, v in enumerate(obj)]
        return {"tuple" if isinstance(obj, tuple) else "list": items}
    raise TypeError(f"save: {where} is a {type(obj).__name__}; a checkpoint holds dicts, lists, "
                    "tuples, arrays, Tensors, numbers, strings and None")


def _decode(node, arrays, path):
    try:
        if "array" in node:
            return arrays[node["array"]]
        if "scalar" in node:
            return arrays[node["scalar"]][()]
        if "value" in node:
            return node["value"]
        if "dict" in node:
            return {k: _decode(v, arrays, path) for k, v in node["dict"]}
        if "list" in node:
            return [_decode(v, arrays, path) for v in node["list"]]
        if "tuple" in node:
            return tuple(_decode(v, arrays, path) for v in node["tuple"])
    except (KeyError, TypeError, ValueError):
        pass
    raise ValueError(f"load: {path} has a damaged manifest (entry {str(node)[:80]})")


def save(obj, path: str | os.PathLike) -> None:
    """Write `obj` (nested dicts/lists of arrays, Tensors, numbers and strings) to `path`.

    Arrays are stored as host NumPy copies (Tensors and device arrays included). The write is
    atomic: `path` holds either its old content or the complete new one, whatever happens.

    >>> import os, tempfile
    >>> import minigrad as mg
    >>> path = os.path.join(tempfile.mkdtemp(), "ckpt.npz")
    >>> mg.save({"w": mg.ones(2), "step": 3}, path)
    >>> mg.load(path)["w"]
    array([1., 1.], dtype=float32)
    """
    path = os.fspath(path)
    arrays: dict = {}
    manifest = {"format": _FORMAT, "root": _encode(obj, arrays, "obj")}
    arrays[_MANIFEST] = np.frombuffer(json.dumps(manifest).encode(), dtype=np.uint8)
    directory = os.path.dirname(os.path.abspath(path))
    mode = _file_mode(path)
    fd, tmp = tempfile.mkstemp(dir=directory, prefix=f".{os.path.basename(path)}.",
                               suffix=".tmp")
    try:
        os.chmod(tmp, mode)  # mkstemp makes it 0600; a saved file is an ordinary file
        with os.fdopen(fd, "wb") as f:
            np.savez(f, **arrays)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
    try:  # make the rename itself durable (POSIX; directories cannot be opened on Windows)
        dfd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(dfd)
    except OSError:
        pass
    finally:
        os.close(dfd)


def _file_mode(path: str) -> int:
    """The permissions `open(path, "w")` would leave: those of the file it replaces, or
    0o666 less the process's umask for a new file."""
    try:
        return stat.S_IMODE(os.stat(path).st_mode)
    except FileNotFoundError:
        mask = os.umask(0o022)  # the only way to read the umask is to set it, then set it back
        os.umask(mask)
        return 0o666 & ~mask


def load(path: str | os.PathLike):
    """Read a checkpoint written by `save`; arrays come back as host NumPy arrays.

    Raises FileNotFoundError for a missing file and ValueError for a file that is not a complete
    minigrad checkpoint (truncated, corrupted, or another kind of file), naming the path.
    """
    path = os.fspath(path)
    if not os.path.exists(path):
        raise FileNotFoundError(f"load: no such file {path!r}")
    try:
        z = np.load(path, allow_pickle=False)
        if not isinstance(z, np.lib.npyio.NpzFile):
            raise ValueError("a single .npy array, not a checkpoint archive")
        with z:
            if _MANIFEST not in z.files:
                raise ValueError(f"no {_MANIFEST!r} manifest: not written by minigrad.save")
            # read everything now: a damaged entry fails here with a CRC or size error
            arrays = {k: z[k] for k in z.files}
    except (ValueError, OSError, EOFError, zipfile.BadZipFile, KeyError) as e:
        raise ValueError(f"load: {path!r} is not a readable minigrad checkpoint ({e})") from e
    try:
        manifest = json.loads(arrays.pop(_MANIFEST).tobytes().decode())
        root = manifest["root"]
        fmt = manifest["format"]
    except (ValueError, KeyError, TypeError, UnicodeDecodeError) as e:
        raise ValueError(f"load: {path!r} has a damaged manifest ({e})") from e
    if fmt != _FORMAT:
        raise ValueError(f"load: {path!r} uses checkpoint format {fmt}, this minigrad reads "
                         f"format {_FORMAT}")
    return _decode(root, arrays, repr(path))
