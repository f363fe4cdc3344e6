"""Build script.

Packaging metadata lives in pyproject.toml. This file exists for the native part:
`csrc/` is compiled into `srgan_fast._C` when its sources exist. Switches:

  SRGAN_FAST_BUILD_EXT=0        skip the native extension entirely
  SRGAN_FAST_CUDA=1 / 0         force / skip the CUDA part (default: build it when nvcc is found)
  SRGAN_FAST_CUDA_ARCHS="80;90" GPU architectures to build for

`import srgan_fast` never needs the extension: asking for a backend that uses it says how
to build it.
"""

import os

from setuptools import setup

ext_modules = []
cmdclass = {}
if os.environ.get("SRGAN_FAST_BUILD_EXT", "1") != "0" and os.path.exists("csrc/build_ext.py"):
    import importlib.util

    spec = importlib.util.spec_from_file_location("_srgan_build_ext", "csrc/build_ext.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    ext_modules, cmdclass = mod.extensions()

setup(ext_modules=ext_modules, cmdclass=cmdclass)
