"""One array-module switch: which library (`xp`) holds an array, and moving arrays between devices.

Every op finds its `xp` from its inputs through `get_array_module`, so NumPy is never called on
device data. A device is registered once with its array type, its module and two copy functions.
"""
from __future__ import annotations

import numpy as np

from minigrad import checks

# name -> Device: "cpu" always, "cuda" once CuPy finds a GPU, "fake" when the tests register it
_devices: dict[str, "Device"] = {}
# array type -> Device, the hot lookup made by every op (read it, never write it: register_device)
array_types: dict[type, "Device"] = {}


class Device:
    """A device: its name, the array type and module (`xp`) that live there, and host copies."""

    __slots__ = ("name", "array_type", "xp", "to_device", "to_host")

    def __init__(self, name, array_type, xp, to_device, to_host):
        self.name, self.array_type, self.xp = name, array_type, xp
        self.to_device, self.to_host = to_device, to_host

    def __repr__(self):
        return f"device('{self.name}')"


def register_device(name: str, array_type: type, xp, to_device, to_host) -> Device:
    """Make a device known: `to_device(host ndarray) -> array`, `to_host(array) -> host ndarray`."""
    if not isinstance(name, str) or not name or ":" in name:
        raise ValueError(f"register_device: name must be a non-empty str without ':', got "
                         f"{name!r}")
    if not isinstance(array_type, type):
        raise TypeError(f"register_device: array_type must be a class, got "
                        f"{type(array_type).__name__}")
    for fn, what in ((to_device, "to_device"), (to_host, "to_host")):
        if not callable(fn):
            raise TypeError(f"register_device: {what} must be callable")
    dev = Device(name, array_type, xp, to_device, to_host)
    _devices[name] = dev
    array_types[array_type] = dev
    return dev


register_device("cpu", np.ndarray, np, lambda a: a, lambda a: a)


def _cuda() -> Device:
    try:
        import cupy
    except ImportError as e:
        raise RuntimeError(
            "device 'cuda' needs CuPy, which is not installed: pip install 'minigrad[gpu]'") from e
    try:
        count = cupy.cuda.runtime.getDeviceCount()
    except Exception as e:  # CuPy raises its own CUDARuntimeError when no driver is present
        raise RuntimeError(f"device 'cuda': CuPy is installed but no GPU is usable ({e})") from e
    if count == 0:
        raise RuntimeError("device 'cuda': CuPy is installed but no GPU is present")
    return register_device("cuda", cupy.ndarray, cupy, cupy.asarray, cupy.asnumpy)


def get_device(device, where: str = "device") -> Device:
    """The Device for a name ('cpu', 'cuda', 'cuda:0') or a Device; errors start with `where`
    (the public function asking) and say what is missing."""
    if isinstance(device, Device):
        return device
    if device is None:
        return _devices["cpu"]
    if not isinstance(device, str):
        raise TypeError(f"{where}: device must be a string such as 'cpu' or 'cuda', got "
                        f"{device!r}")
    name = device.split(":")[0]
    if name in _devices:
        return _devices[name]
    if name == "cuda":
        return _cuda()
    raise ValueError(f"{where}: unknown device {device!r}; known: "
                     f"{sorted(_devices) + ['cuda']}")


def device_of(array) -> Device:
    """The Device holding `array` (Python and NumPy scalars count as cpu)."""
    dev = array_types.get(type(array))
    if dev is not None:
        return dev
    for t, d in array_types.items():
        if isinstance(array, t):
            return d
    return _devices["cpu"]


def is_array(obj) -> bool:
    """True for an array of a registered device (a NumPy ndarray, a CuPy array, ...)."""
    return type(obj) in array_types or isinstance(obj, np.ndarray)


def get_array_module(*arrays):
    """The array module (`numpy`, `cupy`, ...) of the arrays given; scalars count as NumPy."""
    for a in arrays:
        dev = array_types.get(type(a))
        if dev is not None and dev.xp is not np:
            return dev.xp
    return np


def to_device(array, device) -> object:
    """Copy `array` (any device) to `device`; a no-op when it already lives there."""
    dst = get_device(device)
    src = device_of(array)
    if src is dst:
        return array
    host = src.to_host(array) if src.name != "cpu" else np.asarray(array)
    return dst.to_device(host)


def to_host(array) -> np.ndarray:
    """A host NumPy copy (or view, for cpu) of `array`."""
    dev = device_of(array)
    return np.asarray(array) if dev.name == "cpu" else dev.to_host(array)


# --- Python data to arrays ---------------------------------------------------------------------

_default_float = [np.dtype(np.float32)]


def set_default_dtype(dtype) -> None:
    """Set the float dtype given to Python floats and lists of them (float32 unless changed)."""
    _default_float[0] = checks.dtype(dtype, "set_default_dtype", kinds="f")


def get_default_dtype() -> np.dtype:
    return _default_float[0]


def as_array(data, dtype=None, device=None, where: str = "tensor"):
    """`data` as an array on `device`. Arrays keep their dtype; Python data follows NumPy's
    kinds, with floats in the default float dtype: ints and integer lists give int64, bools
    bool, floats (and lists mixing floats) the default dtype; `dtype` overrides all of that.
    Only numbers make arrays: None, strings, objects are refused (errors start with `where`)."""
    if type(data) not in array_types and hasattr(data, "requires_grad"):  # a Tensor
        data = data.data
    dev = get_device(device, where) if device is not None else None
    if dtype is not None:
        dtype = checks.dtype(dtype, where)
    src = array_types.get(type(data))
    if src is None:  # Python data (or a NumPy scalar): build on the host first
        arr = _host_array(data, dtype, where)
        src, data = _devices["cpu"], arr
    else:
        if data.dtype.kind not in "biufc":
            raise TypeError(f"{where}: an array of dtype {data.dtype} cannot be a tensor "
                            "(numbers only)")
        if dtype is not None and data.dtype != dtype:
            data = data.astype(dtype)
    if dev is not None and dev is not src:
        host = data if src.name == "cpu" else src.to_host(data)
        data = dev.to_device(np.asarray(host, order="C"))  # ascontiguousarray makes 0-d 1-d
    return data


def _host_array(data, dtype, where):
    """Python data (or a NumPy scalar) as a host array of numbers (see `as_array`)."""
    if data is None or isinstance(data, (str, bytes, dict, set)):
        raise TypeError(f"{where}: cannot make a tensor of {type(data).__name__} {data!r:.40}; "
                        "give numbers, a list of numbers or an array")
    try:
        if dtype is None and not isinstance(data, np.generic):
            arr = np.asarray(data)
            if arr.dtype.kind == "O" and any(v is None for v in arr.flat):
                raise TypeError("it holds None")
            if arr.dtype.kind in "fO":
                arr = np.asarray(data, dtype=_default_float[0])
            elif arr.dtype.kind in "iu":
                arr = arr.astype(np.int64, copy=False)
        else:
            arr = np.asarray(data, dtype=dtype)
    except (TypeError, ValueError, OverflowError) as e:
        kind = TypeError if isinstance(e, TypeError) else ValueError
        raise kind(f"{where}: cannot make a tensor of this {type(data).__name__}: {e}") from None
    if arr.dtype.kind not in "biufc":
        raise TypeError(f"{where}: data of dtype {arr.dtype} cannot be a tensor (numbers only)")
    return arr
