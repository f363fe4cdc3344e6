"""The wheel installs one top-level package, srgan_fast, with kernels/, training/, the bundled
weights and the sample photo inside it (no top-level `kernels` or `training` module)."""

import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


def test_wheel_layout(tmp_path):
    env = dict(os.environ, SRGAN_FAST_CUDA="0")  # the CPU part is enough to check the layout
    cmd = [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(tmp_path)]
    r = subprocess.run(cmd + [str(REPO)], capture_output=True, text=True, env=env, timeout=600)
    if r.returncode != 0 and "No module named" in r.stderr:
        pytest.skip(f"build tools missing in this environment: {r.stderr.strip().splitlines()[-1]}")
    assert r.returncode == 0, r.stderr[-2000:]
    (whl,) = tmp_path.glob("srgan_fast-*.whl")
    names = zipfile.ZipFile(whl).namelist()
    tops = {n.split("/")[0] for n in names if not n.split("/")[0].endswith(".dist-info")}
    assert tops == {"srgan_fast"}, tops
    for must in ("srgan_fast/kernels/conv2d_fused.py", "srgan_fast/training/trainer.py",
                 "srgan_fast/weights/srresnet_x4.safetensors", "srgan_fast/data/sample_hr.png",
                 "srgan_fast/gst/element.py", "srgan_fast/gst/plugin/python/srganfast.py"):  # fmt: skip
        assert must in names, must
    assert any(n.startswith("srgan_fast/_C") and n.endswith(".so") for n in names)
    entry = next(n for n in names if n.endswith("entry_points.txt"))
    assert "srgan-fast = srgan_fast.cli:main" in zipfile.ZipFile(whl).read(entry).decode()
