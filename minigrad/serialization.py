"""`mg.save` / `mg.load`: checkpoints (nested state dicts) in one `.npz` file, written atomically.

The file is a plain NumPy `.npz` archive: every array is one entry (`a0`, `a1`, ...), and the entry
`__minigrad__` holds a JSON manifest of the structure around them (dicts, lists, tuples, numbers,
strings, None). Nothing is pickled, so loading a file runs no code from it.

Saving writes a temporary file in the same directory, flushes and fsyncs it, then renames it over
the target with `os.replace` (atomic on POSIX and Windows): a crash leaves either the old file or
the new one, never half of one. A temporary file left by a killed process is removed when the next
save to the same destination starts, and one left by an exception or a normal exit of the saving
process is removed at once.

Loading trusts nothing in the file: every array's declared shape and dtype are read from its
header and checked against the bytes the file really holds before anything is allocated, object
(pickled) arrays are refused, the manifest's nesting is bounded (`MAX_DEPTH`), and any damage
gives a `ValueError` naming the path.

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

import atexit
import json
import os
import tempfile
import zipfile

import numpy as np

from minigrad import backend, checks
from minigrad.tensor import Tensor

__all__ = ["MAX_DEPTH", "load", "save"]

_MANIFEST = "__minigrad__"
_FORMAT = 1
MAX_DEPTH = 100  # nesting of dicts/lists/tuples that save writes and load accepts
_IN_PROGRESS: set[str] = set()  # temporary files this process is writing right now


def _encode(obj, arrays: dict, where: str, active: set, depth: int):
    """The JSON description of `obj`; arrays go to `arrays` (name -> host ndarray).

    `active` holds the ids of the containers on the path from the root, to refuse cycles.
    """
    if isinstance(obj, Tensor):
        obj = obj.data
    if backend.is_array(obj):
        a = np.asarray(backend.to_host(obj))
        if a.dtype.kind not in "biufc":
            raise TypeError(f"mg.save: {where} is an array of dtype {a.dtype}; only numbers can "
                            "be saved")
        name = f"a{len(arrays)}"
        arrays[name] = a
        return {"array": name}
    if isinstance(obj, np.generic):
        if obj.dtype.kind not in "biufc":
            raise TypeError(f"mg.save: {where} is a scalar of dtype {obj.dtype}; only numbers "
                            "can be saved")
        name = f"a{len(arrays)}"
        arrays[name] = np.asarray(obj)
        return {"scalar": name}
    if obj is None or isinstance(obj, (bool, int, float, str)):
        return {"value": obj}
    if not isinstance(obj, (dict, list, tuple)):
        raise TypeError(f"mg.save: {where} is a {type(obj).__name__}; a checkpoint holds dicts, "
                        "lists, tuples, arrays, Tensors, numbers, strings and None")
    if id(obj) in active:
        raise ValueError(f"mg.save: {where} contains itself (a reference cycle); a checkpoint "
                         "must be a tree")
    if depth >= MAX_DEPTH:
        raise ValueError(f"mg.save: {where} is nested more than {MAX_DEPTH} levels deep")
    active.add(id(obj))
    try:
        if isinstance(obj, dict):
            for k in obj:
                if not isinstance(k, (str, int)) or isinstance(k, bool):
                    raise TypeError(f"mg.save: {where} has a key {k!r} of type "
                                    f"{type(k).__name__}; keys must be str or int")
            return {"dict": [[k, _encode(v, arrays, f"{where}[{k!r}]", active, depth + 1)]
                             for k, v in obj.items()]}
        items = [_encode(v, arrays, f"{where}[{i}]", active, depth + 1)
                 for i, v in enumerate(obj)]
        return {"tuple" if isinstance(obj, tuple) else "list": items}
    finally:
        active.discard(id(obj))


def _decode(node, arrays, path, depth=0):
    if depth > MAX_DEPTH:
        raise ValueError(f"mg.load: {path} has a manifest nested more than {MAX_DEPTH} levels "
                         "deep")
    try:
        if "array" in node:
            return arrays[node["array"]]
        if "scalar" in node:
            return arrays[node["scalar"]][()]
        if "value" in node:
            value = node["value"]
            if value is None or isinstance(value, (bool, int, float, str)):
                return value
        elif "dict" in node:
            return {k: _decode(v, arrays, path, depth + 1) for k, v in node["dict"]}
        elif "list" in node:
            return [_decode(v, arrays, path, depth + 1) for v in node["list"]]
        elif "tuple" in node:
            return tuple(_decode(v, arrays, path, depth + 1) for v in node["tuple"])
    except (KeyError, TypeError, ValueError, IndexError) as e:
        if isinstance(e, ValueError) and str(e).startswith("mg.load:"):
            raise
    raise ValueError(f"mg.load: {path} has a damaged manifest (entry {str(node)[:80]})")


def _temporaries(path: str) -> list[str]:
    """Temporary files that saves to `path` may have left in its directory."""
    directory, base = os.path.split(os.path.abspath(path))
    prefix = f".{base}."
    try:
        names = os.listdir(directory)
    except OSError:
        return []
    return [os.path.join(directory, n) for n in names
            if n.startswith(prefix) and n.endswith(".tmp")]


def _writer_gone(tmp: str) -> bool:
    """True when the process that wrote `tmp` (its pid is in the name) no longer runs."""
    if tmp in _IN_PROGRESS:
        return False
    try:
        pid = int(os.path.basename(tmp).rsplit(".", 3)[-3])
    except (ValueError, IndexError):
        return False  # not a name save writes: leave it alone
    if pid == os.getpid():
        return True  # ours, and not in progress: left by an interrupted save
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except OSError:
        return False  # alive (or not ours to signal)
    return False


def _remove(path: str) -> None:
    try:
        os.unlink(path)
    except OSError:
        pass


@atexit.register
def _remove_in_progress() -> None:
    for tmp in list(_IN_PROGRESS):
        _remove(tmp)


def save(obj, path: str | os.PathLike) -> None:
    """Write `obj` (nested dicts/lists of arrays, Tensors, numbers and strings) to `path`.

    Arrays are stored as host NumPy copies (Tensors and device arrays included). The write is
    atomic: `path` holds either its old content or the complete new one, whatever happens. The
    file gets the permissions of any new file (the umask decides).

    >>> import os, tempfile
    >>> import minigrad as mg
    >>> path = os.path.join(tempfile.mkdtemp(), "ckpt.npz")
    >>> mg.save({"w": mg.ones(2), "step": 3}, path)
    >>> mg.load(path)["w"]
    array([1., 1.], dtype=float32)
    """
    path = checks.output_path(path, "mg.save")
    arrays: dict = {}
    manifest = {"format": _FORMAT, "root": _encode(obj, arrays, "obj", set(), 0)}
    arrays[_MANIFEST] = np.frombuffer(json.dumps(manifest).encode(), dtype=np.uint8)
    for tmp in _temporaries(path):
        if _writer_gone(tmp):
            _remove(tmp)
    directory = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(dir=directory, prefix=f".{os.path.basename(path)}.{os.getpid()}.",
                               suffix=".tmp")
    _IN_PROGRESS.add(tmp)
    try:
        umask = os.umask(0)
        os.umask(umask)
        os.fchmod(fd, 0o666 & ~umask)  # mkstemp makes 0600; a saved file is an ordinary file
        with os.fdopen(fd, "wb") as f:
            np.savez(f, **arrays)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        _remove(tmp)
        raise
    finally:
        _IN_PROGRESS.discard(tmp)
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


def _read_member(zf: zipfile.ZipFile, info: zipfile.ZipInfo, file_size: int) -> np.ndarray:
    """One array of the archive, its header checked against the bytes that hold it first."""
    if info.compress_type != zipfile.ZIP_STORED:
        raise ValueError(f"entry {info.filename!r} is compressed; minigrad writes stored entries")
    if info.file_size != info.compress_size or info.header_offset + info.file_size > file_size:
        raise ValueError(f"entry {info.filename!r} declares {info.file_size} bytes, more than "
                         "the file holds")
    with zf.open(info) as f:
        try:
            version = np.lib.format.read_magic(f)
            if version == (1, 0):
                shape, fortran, dtype = np.lib.format.read_array_header_1_0(f)
            elif version == (2, 0):
                shape, fortran, dtype = np.lib.format.read_array_header_2_0(f)
            else:
                raise ValueError(f"format version {version}")
        except Exception as e:  # any malformed header (numpy raises several kinds)
            raise ValueError(f"entry {info.filename!r} has a damaged array header "
                             f"({type(e).__name__})") from None
        if dtype.hasobject:
            raise ValueError(f"entry {info.filename!r} holds Python objects; minigrad never "
                             "loads pickled data")
        count = 1
        for n in shape:
            count *= n
        header = f.tell()
        if header + count * dtype.itemsize != info.file_size:
            raise ValueError(f"entry {info.filename!r} declares shape {shape} of {dtype} "
                             f"({count * dtype.itemsize} bytes) but holds "
                             f"{info.file_size - header}")
        data = f.read(count * dtype.itemsize)  # the last read checks the entry's CRC
        if len(data) != count * dtype.itemsize or f.read(1):
            raise ValueError(f"entry {info.filename!r} is truncated")
    order = "F" if fortran else "C"
    return np.frombuffer(data, dtype=dtype).reshape(shape, order=order).copy(order="K")


def load(path: str | os.PathLike):
    """Read a checkpoint written by `save`; arrays come back as host NumPy arrays.

    Raises FileNotFoundError for a missing file and ValueError for a file that is not a complete
    minigrad checkpoint (truncated, corrupted, hostile, or another kind of file), naming the path.
    Nothing in the file is executed, and nothing is allocated beyond what the file holds.
    """
    if not isinstance(path, (str, os.PathLike)):
        raise TypeError(f"mg.load: the path must be a str or os.PathLike, got "
                        f"{type(path).__name__}")
    path = os.fspath(path)
    if not os.path.exists(path):
        raise FileNotFoundError(f"mg.load: no such file {path!r}")
    if os.path.isdir(path):
        raise ValueError(f"mg.load: {path!r} is a directory, not a checkpoint file")
    try:
        file_size = os.path.getsize(path)
        with zipfile.ZipFile(path) as zf:
            infos = {i.filename: i for i in zf.infolist()}
            if f"{_MANIFEST}.npy" not in infos:
                raise ValueError(f"no {_MANIFEST!r} manifest: not written by mg.save")
            arrays = {}
            for name, info in infos.items():
                if not name.endswith(".npy"):
                    raise ValueError(f"entry {name!r} is not an array")
                arrays[name[:-4]] = _read_member(zf, info, file_size)
    except (ValueError, OSError, EOFError, zipfile.BadZipFile, KeyError, NotImplementedError,
            RuntimeError) as e:
        raise ValueError(f"mg.load: {path!r} is not a readable minigrad checkpoint "
                         f"({str(e)[:200] or type(e).__name__})") from None
    try:
        manifest = json.loads(arrays.pop(_MANIFEST).tobytes().decode())
        root = manifest["root"]
        fmt = manifest["format"]
    except (ValueError, KeyError, TypeError, UnicodeDecodeError, RecursionError) as e:
        raise ValueError(f"mg.load: {path!r} has a damaged manifest ({type(e).__name__})") \
            from None
    if fmt != _FORMAT:
        raise ValueError(f"mg.load: {path!r} uses checkpoint format {fmt}, this minigrad reads "
                         f"format {_FORMAT}")
    return _decode(root, arrays, repr(path))
