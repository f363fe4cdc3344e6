"""The wheel installs one top-level package, srgan_fast, with kernels/, training/, the bundled
weights and the sample photo inside it (no top-level `kernels` or `training` module)."""

import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


def _wheel(tmp_path, **env_extra) -> list[str]:
    env = dict(os.environ, SRGAN_FAST_CUDA="0", **env_extra)  # the CPU part is enough to check the layout
    cmd = [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(tmp_path)]
    r = subprocess.run(cmd + [str(REPO)], capture_output=True, text=True, env=env, timeout=1200)
    if r.returncode != 0 and "No module named" in r.stderr:
        pytest.skip(f"build tools missing in this environment: {r.stderr.strip().splitlines()[-1]}")
    assert r.returncode == 0, r.stderr[-2000:]
    (whl,) = tmp_path.glob("srgan_fast-*.whl")
    names = zipfile.ZipFile(whl).namelist()
    entry = next(n for n in names if n.endswith("entry_points.txt"))
    assert "srgan-fast = srgan_fast.__main__:main" in zipfile.ZipFile(whl).read(entry).decode()
    return names


def test_wheel_layout(tmp_path):
    """The package's files, data and entry point (without the C++ extension, whose three ISA
    builds take 5-8 minutes on 2 cores: test_wheel_has_the_extension, slow)."""
    names = _wheel(tmp_path, SRGAN_FAST_BUILD_EXT="0")
    tops = {n.split("/")[0] for n in names if not n.split("/")[0].endswith(".dist-info")}
    assert tops == {"srgan_fast"}, tops
    for must in ("srgan_fast/kernels/conv2d_fused.py", "srgan_fast/training/trainer.py",
                 "srgan_fast/weights/srresnet_x4.safetensors", "srgan_fast/data/sample_hr.png",
                 "srgan_fast/gst/element.py", "srgan_fast/gst/plugin/python/srganfast.py",
                 "srgan_fast/gst/embedded/sitecustomize.py", "srgan_fast/vs.py"):  # fmt: skip
        assert must in names, must


@pytest.mark.slow
def test_wheel_has_the_extension(tmp_path):
    names = _wheel(tmp_path)
    assert any(n.startswith("srgan_fast/_C") and n.endswith(".so") for n in names)
