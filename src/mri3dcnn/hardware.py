"""What this machine computes with: CPU model, vector extensions, TensorFlow's oneDNN state.

Timings mean little without the host they came from: benchmarks and the book print this
next to every throughput figure.
"""

from __future__ import annotations

import os
import platform
from pathlib import Path

#: vector extensions that decide TensorFlow's CPU kernels (and its oneDNN default)
VECTOR_FLAGS = ("avx", "avx2", "fma", "avx512f", "avx512_bf16", "avx512_vnni", "amx_tile")


def cpu_info(cpuinfo: str | Path = "/proc/cpuinfo") -> dict:
    """CPU model, logical cores and which of `VECTOR_FLAGS` the CPU reports."""
    model, flags = platform.processor() or platform.machine(), set()
    path = Path(cpuinfo)
    if path.exists():
        for line in path.read_text().splitlines():
            key, _, value = line.partition(":")
            key = key.strip()
            if key == "model name":
                model = value.strip()
            elif key == "flags":
                flags = set(value.split())
                break
    return {"cpu": model, "cores": os.cpu_count() or 1,
            "vector_extensions": [f for f in VECTOR_FLAGS if f in flags],
            "avx512": "avx512f" in flags}


def onednn_enabled() -> bool:
    """Whether TensorFlow runs its oneDNN kernels in this process (imports TensorFlow)."""
    import tensorflow  # noqa: F401  (the flag is read when TensorFlow loads)
    from tensorflow.python.util import _pywrap_util_port

    return bool(_pywrap_util_port.IsMklEnabled())


def describe(with_tensorflow: bool = True) -> str:
    """One line naming the host, for benchmark tables and chapter footers."""
    c = cpu_info()
    ext = ", ".join(c["vector_extensions"]) or "none reported"
    line = f"{c['cpu']}, {c['cores']} logical cores, vector extensions: {ext}"
    if with_tensorflow:
        line += f"; TensorFlow oneDNN {'on' if onednn_enabled() else 'off'}"
    return line
