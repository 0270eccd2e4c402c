"""The restricted unpickler: a state dict of tensors loads, anything that names code fails."""

import io
import pickle
import struct
import sys
import types
from collections import OrderedDict

import numpy as np
import pytest

from mri3dcnn.torchpickle import read_torch_legacy

HEADER = (0x1950A86A20F9469CFC6C, 1001, {"little_endian": True})


def _legacy_file(path, state: bytes, storages=(), header=HEADER):
    """torch's legacy `torch.save` layout: three header pickles, the state pickle, the
    storage keys, then each storage's element count and raw little-endian bytes."""
    with open(path, "wb") as f:
        for obj in header:
            pickle.dump(obj, f, protocol=2)
        f.write(state)
        pickle.dump([k for k, _ in storages], f, protocol=2)
        for _, arr in storages:
            f.write(struct.pack("<q", arr.size) + arr.astype("<f4").tobytes())
    return path


@pytest.fixture
def fake_torch(monkeypatch):
    """Stand-ins registered as `torch` and `torch._utils`, so that pickle writes the very
    global names a real state dict holds."""
    torch, utils = types.ModuleType("torch"), types.ModuleType("torch._utils")

    class FloatStorage:
        pass

    def _rebuild_tensor_v2(*args):
        raise AssertionError("never called when writing")

    FloatStorage.__module__, FloatStorage.__qualname__ = "torch", "FloatStorage"
    _rebuild_tensor_v2.__module__ = "torch._utils"
    _rebuild_tensor_v2.__qualname__ = "_rebuild_tensor_v2"
    torch.FloatStorage, utils._rebuild_tensor_v2 = FloatStorage, _rebuild_tensor_v2
    monkeypatch.setitem(sys.modules, "torch", torch)
    monkeypatch.setitem(sys.modules, "torch._utils", utils)
    return torch, utils


def test_a_state_dict_of_tensors_loads(tmp_path, fake_torch):
    torch, utils = fake_torch
    weights = np.arange(6, dtype=np.float32).reshape(2, 3)

    class Storage:
        pass

    class Tensor:
        def __reduce__(self):
            return utils._rebuild_tensor_v2, (STORAGE, 0, (3, 2), (1, 3), False, OrderedDict())

    STORAGE = Storage()

    class TorchPickler(pickle.Pickler):
        def persistent_id(self, obj):
            return ("storage", torch.FloatStorage, "0", "cpu", 6) if obj is STORAGE else None

    buf = io.BytesIO()
    TorchPickler(buf, protocol=2).dump(OrderedDict(w=Tensor()))
    path = _legacy_file(tmp_path / "ok.pth", buf.getvalue(), [("0", weights)])
    out = read_torch_legacy(path)
    np.testing.assert_array_equal(out["w"], weights.T)  # strides (1, 3): a transposed view


class _Call:
    """Pickles as a call of `func(*args)`: what a malicious file holds."""

    def __init__(self, func, *args):
        self.func, self.args = func, args

    def __reduce__(self):
        return self.func, self.args


@pytest.mark.parametrize("where", ["state", "header"])
@pytest.mark.parametrize("call", [_Call(__import__("os").system, "touch pwned"),
                                  _Call(eval, "1 + 1"), _Call(print, "x")],
                         ids=["os.system", "builtins.eval", "builtins.print"])
def test_a_pickle_naming_code_is_refused(tmp_path, monkeypatch, call, where):
    monkeypatch.chdir(tmp_path)
    evil = pickle.dumps(call, protocol=4)
    if where == "state":
        path = _legacy_file(tmp_path / "bad.pth", evil)
    else:
        path = tmp_path / "bad.pth"
        path.write_bytes(evil)
    with pytest.raises(pickle.UnpicklingError, match="refusing to load"):
        read_torch_legacy(path)
    assert not (tmp_path / "pwned").exists()


def test_an_unknown_persistent_id_is_refused(tmp_path):
    class P(pickle.Pickler):
        def persistent_id(self, obj):
            return ("file", "x", "0", "cpu", 1) if obj == "ref" else None

    buf = io.BytesIO()
    P(buf, protocol=2).dump({"w": "ref"})
    with pytest.raises(pickle.UnpicklingError, match="unexpected persistent id"):
        read_torch_legacy(_legacy_file(tmp_path / "odd.pth", buf.getvalue()))
