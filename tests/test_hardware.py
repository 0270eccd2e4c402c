"""oneDNN is on in every process that imports the package, unless the user turned it off."""

import os
import subprocess
import sys

from mri3dcnn.hardware import cpu_info

PROBE = ("import mri3dcnn, tensorflow; from mri3dcnn.hardware import onednn_enabled; "
         "print(onednn_enabled())")


def _probe(env_value: str | None) -> str:
    env = {k: v for k, v in os.environ.items() if k != "TF_ENABLE_ONEDNN_OPTS"}
    if env_value is not None:
        env["TF_ENABLE_ONEDNN_OPTS"] = env_value
    out = subprocess.run([sys.executable, "-c", PROBE], env=env, capture_output=True,
                         text=True, check=True)
    return out.stdout.strip().splitlines()[-1]


def test_importing_the_package_turns_onednn_on():
    assert _probe(None) == "True"


def test_the_users_choice_wins():
    assert _probe("0") == "False"


def test_cpu_info_reads_vector_extensions(tmp_path):
    f = tmp_path / "cpuinfo"
    f.write_text("processor\t: 0\nmodel name\t: Test CPU\nflags\t\t: fpu sse avx avx2 fma\n")
    info = cpu_info(f)
    assert info["cpu"] == "Test CPU"
    assert info["vector_extensions"] == ["avx", "avx2", "fma"]
    assert info["avx512"] is False
