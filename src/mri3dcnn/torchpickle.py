"""Torch's legacy (non-zip) `torch.save` format read into NumPy, without PyTorch.

A pickle can run any code it names, so the unpickler here resolves only the handful of
globals a state dict of tensors needs (`collections.OrderedDict`, torch's tensor rebuild
functions and storage types, each mapped to a harmless local stand-in) and refuses every
other one before anything is called.
"""

from __future__ import annotations

import pickle
from collections import OrderedDict
from pathlib import Path

import numpy as np


class _Storage:
    def __init__(self, dtype: np.dtype, numel: int):
        self.dtype, self.numel, self.data = dtype, numel, None


_STORAGE_TYPES = {"FloatStorage": np.float32, "DoubleStorage": np.float64,
                  "HalfStorage": np.float16, "LongStorage": np.int64, "IntStorage": np.int32,
                  "ByteStorage": np.uint8, "BoolStorage": np.bool_}


def _rebuild_tensor(storage, offset, size, stride, *args):
    return ("tensor", storage, offset, tuple(size), tuple(stride))


class _TorchUnpickler(pickle.Unpickler):
    """Only the few globals a state dict needs; anything else is refused."""

    def find_class(self, module, name):
        if module == "collections" and name == "OrderedDict":
            return OrderedDict
        if module == "torch._utils" and name in ("_rebuild_tensor", "_rebuild_tensor_v2"):
            return _rebuild_tensor
        if module == "torch" and name in _STORAGE_TYPES:
            return _STORAGE_TYPES[name]
        raise pickle.UnpicklingError(f"refusing to load {module}.{name}")

    def __init__(self, f, storages):
        super().__init__(f)
        self.storages = storages

    def persistent_load(self, pid):
        kind, dtype, key, _location, numel = pid[:5]
        if kind != "storage":
            raise pickle.UnpicklingError(f"unexpected persistent id {kind!r}")
        if key not in self.storages:
            self.storages[key] = _Storage(np.dtype(dtype), int(numel))
        return self.storages[key]


def read_torch_legacy(path: str | Path) -> dict[str, np.ndarray]:
    """A state dict saved by torch's legacy (non-zip) `torch.save`, as NumPy arrays."""
    storages: dict[str, _Storage] = {}
    with open(path, "rb") as f:
        for _ in range(3):  # magic number, protocol version, system info: plain values
            _TorchUnpickler(f, storages).load()
        state = _TorchUnpickler(f, storages).load()
        keys = _TorchUnpickler(f, storages).load()
        for key in keys:
            st = storages[key]
            numel = int(np.frombuffer(f.read(8), "<i8")[0])
            st.data = np.frombuffer(f.read(numel * st.dtype.itemsize), st.dtype)
    out = {}
    for name, value in state.items():
        if not (isinstance(value, tuple) and value and value[0] == "tensor"):
            continue
        _, st, offset, size, stride = value
        item = st.dtype.itemsize
        arr = np.lib.stride_tricks.as_strided(st.data[offset:], shape=size,
                                              strides=tuple(s * item for s in stride))
        out[name] = np.array(arr)
    return out
