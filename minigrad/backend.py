"""One array-module switch: which library (`xp`) holds an array, and moving arrays between devices.

Every op finds its `xp` from its inputs through `get_array_module`, so NumPy is never called on
device data. A device is registered once with its array type, its module and two copy functions.
"""
from __future__ import annotations

import numpy as np

# name -> Device: "cpu" always, "cuda" once CuPy finds a GPU, "fake" when the tests register it
_devices: dict[str, "Device"] = {}
# array type -> Device, the hot lookup made by every op
_by_type: dict[type, "Device"] = {}


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
    dev = Device(name, array_type, xp, to_device, to_host)
    _devices[name] = dev
    _by_type[array_type] = dev
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


def get_device(device) -> Device:
    """The Device for a name ('cpu', 'cuda', 'cuda:0') or a Device; errors say what is missing."""
    if isinstance(device, Device):
        return device
    if device is None:
        return _devices["cpu"]
    if not isinstance(device, str):
        raise TypeError(f"device must be a string such as 'cpu' or 'cuda', got {device!r}")
    name = device.split(":")[0]
    if name in _devices:
        return _devices[name]
    if name == "cuda":
        return _cuda()
    raise ValueError(f"unknown device {device!r}; known: {sorted(_devices) + ['cuda']}")


def device_of(array) -> Device:
    """The Device holding `array` (Python and NumPy scalars count as cpu)."""
    dev = _by_type.get(type(array))
    if dev is not None:
        return dev
    for t, d in _by_type.items():
        if isinstance(array, t):
            return d
    return _devices["cpu"]


def is_array(obj) -> bool:
    """True for an array of a registered device (a NumPy ndarray, a CuPy array, ...)."""
    return type(obj) in _by_type or isinstance(obj, np.ndarray)


def get_array_module(*arrays):
    """The array module (`numpy`, `cupy`, ...) of the arrays given; scalars count as NumPy."""
    for a in arrays:
        dev = _by_type.get(type(a))
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
