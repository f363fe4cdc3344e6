"""The library stays quiet on ordinary input: a read-only numpy array (what `np.asarray(PIL
image)` gives) goes through every public entry point without a warning, and gives the same
result as a writable copy.

Each case runs in a fresh interpreter: torch's "The given NumPy array is not writable"
warning is issued once per process, so an earlier test in this process could hide it.
"""

import subprocess
import sys

import pytest

SCRIPT = r"""
import sys, warnings
import numpy as np
import torch
from PIL import Image

from srgan_fast.families.srresnet.arch import Generator

torch.manual_seed(0)
g = Generator("tiny_x4").eval()
rgb = np.random.default_rng(0).integers(0, 256, (6, 7, 3), dtype=np.uint8)
img = np.asarray(Image.fromarray(rgb))  # read-only, as PIL hands it over
assert not img.flags.writeable
case, tmp = sys.argv[1], sys.argv[2]

def run(x):
    if case == "engine":
        from srgan_fast.engine import Engine
        return Engine(g, backend="torch").upscale(x)
    if case == "reference":
        from srgan_fast.reference import upscale_reference
        return upscale_reference(g, x)
    if case == "nv12":
        from srgan_fast.engine import Engine
        from srgan_fast.io.yuv_reference import rgb_to_yuv420_ref
        y, u, v = rgb_to_yuv420_ref(np.asarray(x))
        uv = np.stack([u, v], axis=-1).reshape(u.shape[0], -1)
        y.flags.writeable = uv.flags.writeable = False
        return np.concatenate([p.ravel() for p in Engine(g, backend="torch").upscale_nv12(y, uv)])
    if case == "files":
        import os
        from srgan_fast.io.batch import upscale_files
        from srgan_fast.weights import save_generator
        src = os.path.join(tmp, f"in{x.flags.writeable:d}.png")
        Image.fromarray(x).save(src)
        model = save_generator(g, os.path.join(tmp, "tiny.safetensors"))
        (out,) = upscale_files([src], os.path.join(tmp, f"out{x.flags.writeable:d}"), model=str(model),
                               backend="torch", progress=False)
        return np.asarray(Image.open(out))
    raise SystemExit(f"unknown case {case}")

with warnings.catch_warnings():
    warnings.simplefilter("error")  # any warning fails the case, with its traceback
    quiet = run(img)
loud = run(img.copy())
assert np.array_equal(quiet, loud), "read-only input gave another result than a writable copy"
assert quiet.std() > 0
print("quiet")
"""


def _run(case, tmp_path):
    r = subprocess.run([sys.executable, "-c", SCRIPT, case, str(tmp_path)], capture_output=True, text=True,
                       timeout=300)  # fmt: skip
    assert r.returncode == 0 and "quiet" in r.stdout, r.stderr[-3000:]


@pytest.mark.parametrize("case", ["nv12", "files"])
def test_read_only_input_is_quiet(case, tmp_path):
    if case == "nv12":
        pytest.importorskip("srgan_fast._C", reason="native extension not built")
    _run(case, tmp_path)


# np.ascontiguousarray keeps a read-only array read-only, and torch.from_numpy warns on it:
# adapters.as_nhwc silences that warning (the engine never writes into its input) and
# upscale_reference copies such arrays (np.require).
def test_read_only_input_to_engine_upscale_is_quiet(tmp_path):
    _run("engine", tmp_path)


def test_read_only_input_to_upscale_reference_is_quiet(tmp_path):
    _run("reference", tmp_path)
