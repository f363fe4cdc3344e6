"""Old module paths, kept importable after the 2026-12 layout (one table instead of shim files).

Each row maps a module path that READMEs, notebooks or plugins may still import to the module
that now holds the code. Importing the old name gives the very same module object (not a copy
that re-exports names), so `srgan_fast.runners.register_backend`, `from srgan_fast import
models` and `monkeypatch.setattr(srgan_fast.calibrate, ...)` keep meaning what they meant.

The finder is installed when this module is imported (first thing in `srgan_fast/__init__.py`);
it imports nothing until an old name is asked for. New code imports the new paths;
tests/contracts/test_legacy_paths.py pins every row.
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.util
import sys

# old module -> new module
ALIASES: dict[str, str] = {
    # families/ (issue 30)
    "srgan_fast.models": "srgan_fast.families.srresnet.arch",
    "srgan_fast.compact": "srgan_fast.families.srvgg_compact",
    "srgan_fast.msrresnet": "srgan_fast.families.msrresnet",
    "srgan_fast.rrdbnet": "srgan_fast.families.rrdbnet",
    # backends/ (issue 30)
    "srgan_fast.runners": "srgan_fast.backends",
    "srgan_fast.ort_backend": "srgan_fast.backends.onnxruntime",
    "srgan_fast.calibrate": "srgan_fast.backends.auto",
    # weights/ (issue 30)
    "srgan_fast.convert": "srgan_fast.weights.convert",
    "srgan_fast.export": "srgan_fast.weights.onnx",
    # io/ (issue 30)
    "srgan_fast.images": "srgan_fast.io.images",
    "srgan_fast.upscale": "srgan_fast.io.batch",
    "srgan_fast.ray": "srgan_fast.io.ray",
    "srgan_fast.frame_io": "srgan_fast.io.yuv",
    "srgan_fast.frame_io_reference": "srgan_fast.io.yuv_reference",
    "srgan_fast.video": "srgan_fast.io.video",
    "srgan_fast.video_color": "srgan_fast.io.video.color",
    # quality/ (issue 30)
    "srgan_fast.metrics": "srgan_fast.quality.metrics",
    "srgan_fast.evaluate": "srgan_fast.quality.evaluate",
    "srgan_fast.datasets": "srgan_fast.quality.datasets",
    "srgan_fast.demo": "srgan_fast.quality.demo",
}


class _AliasLoader(importlib.abc.Loader):
    def __init__(self, target: str):
        self.target = target

    def create_module(self, spec):
        # the real module, imported under its own name; the import system then files it under
        # the old name too. It keeps its __name__, but the import system sets __spec__ to the
        # alias's spec: exec_module puts the module's own back (its relative imports need it)
        module = importlib.import_module(self.target)
        self.spec = module.__spec__
        return module

    def exec_module(self, module):
        module.__spec__ = self.spec


class _AliasFinder(importlib.abc.MetaPathFinder):
    def find_spec(self, fullname, path=None, target=None):
        new = ALIASES.get(fullname)
        if new is None:
            return None
        return importlib.util.spec_from_loader(fullname, _AliasLoader(new))


def install() -> None:
    if not any(isinstance(f, _AliasFinder) for f in sys.meta_path):
        sys.meta_path.insert(0, _AliasFinder())


install()
