"""The module paths from before the 2026-12 layout still import, as the very modules that now
hold the code (srgan_fast/_legacy.py), so old imports, plugins and monkeypatches keep working."""

import importlib
import subprocess
import sys
import warnings

import pytest

from srgan_fast._legacy import ALIASES


@pytest.mark.parametrize("old,new", sorted(ALIASES.items()))
def test_an_old_path_is_the_new_module(old, new):
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # e.g. ImportWarning: __package__ != __spec__.parent
        mod = importlib.import_module(old)
    assert mod is importlib.import_module(new)
    assert mod.__name__ == new and mod.__spec__.name == new  # the module keeps its own identity
    parent, _, leaf = old.rpartition(".")
    assert getattr(importlib.import_module(parent), leaf) is mod  # `from srgan_fast import models`


def test_the_public_names_the_docs_use_still_import():
    code = (
        "from srgan_fast.models import Generator, GeneratorConfig, to_unit_range\n"
        "from srgan_fast.runners import Backend, TorchRunner, register_backend, backend_names\n"
        "from srgan_fast.compact import SRVGGNetCompact, random_compact\n"
        "from srgan_fast.rrdbnet import nearest_subpixel_weight\n"
        "from srgan_fast.msrresnet import MSRResNet\n"
        "from srgan_fast.io.batch import upscale_files, TINY_SIDE, check_outputs\n"
        "from srgan_fast.video import upscale_video\n"
        "from srgan_fast.quality.evaluate import evaluate\n"
        "from srgan_fast.quality.demo import demo\n"
        "from srgan_fast.quality.metrics import imresize\n"
        "from srgan_fast.weights.onnx import export_onnx\n"
        "from srgan_fast import frame_io\n"
        "frame_io.yuv420_to_rgb, frame_io.rgb_to_yuv420\n"
        "import srgan_fast.calibrate as c, srgan_fast.backends.auto as a\n"
        "assert c is a\n"
        "print('ok')\n"
    )
    r = subprocess.run([sys.executable, "-W", "error::ImportWarning", "-c", code], capture_output=True, text=True)
    assert r.returncode == 0 and r.stdout.strip() == "ok", r.stderr[-2000:]


def test_an_unknown_old_name_is_still_an_import_error():
    with pytest.raises(ModuleNotFoundError):
        importlib.import_module("srgan_fast.no_such_module")
