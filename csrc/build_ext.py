"""How setup.py builds csrc/ into srgan_fast._C.

* C++ part (pybind11 binding + OpenMP CPU twins): always, with g++.
* CUDA part: when nvcc is found (or SRGAN_FAST_CUDA=1, which makes a missing nvcc an
  error); SRGAN_FAST_CUDA=0 skips it. Architectures from SRGAN_FAST_CUDA_ARCHS (default
  "80;90"), plus PTX of the newest for later GPUs. cudart is linked statically, so the module
  imports on machines with no GPU or driver (calls then fail with a CUDA error message).
* CPU convolution kernels (cpu_conv_impl.h): compiled once per ISA from cpu_conv_{avx512,avx2,
  generic}.cpp, each with its own -m flags and FMA contraction on (the x86 ISA builds only on
  x86-64; `generic` everywhere); cpu_conv.cpp picks one at run time from the CPU's features.
* FMA contraction is off on both sides (frame I/O) (-ffp-contract=off, --fmad=false): the colour math
  must equal the float32 numpy reference bit for bit.
* `depends` lists every csrc header (and the .cu sources, which setuptools does not see as
  sources): build_ext rebuilds only when a source or a depends file is newer than the module,
  so without it an edit to frame_io.h alone left the old binary in place
  (tests/contracts/test_build_ext.py).
"""

from __future__ import annotations

import os
import platform
import shutil
import subprocess
from pathlib import Path

from setuptools import Extension
from setuptools.command.build_ext import build_ext

HERE = Path(__file__).resolve().parent


def find_nvcc() -> str | None:
    flag = os.environ.get("SRGAN_FAST_CUDA", "")
    if flag == "0":
        return None
    cands = [shutil.which("nvcc")]
    for env in ("CUDA_HOME", "CUDA_PATH"):
        if os.environ.get(env):
            cands.append(os.path.join(os.environ[env], "bin", "nvcc"))
    cands.append("/usr/local/cuda/bin/nvcc")
    for c in cands:
        if c and os.path.exists(c):
            return c
    if flag == "1":
        raise RuntimeError("SRGAN_FAST_CUDA=1 but nvcc was not found (set CUDA_HOME or put nvcc on PATH)")
    return None


def cuda_lib_dir(nvcc: str) -> str:
    roots = [
        os.environ.get("CUDA_HOME"),
        os.environ.get("CUDA_PATH"),
        "/usr/local/cuda",
        os.path.dirname(os.path.dirname(os.path.realpath(nvcc))),
    ]
    for r in roots:
        if r and os.path.exists(os.path.join(r, "lib64", "libcudart_static.a")):
            return os.path.join(r, "lib64")
    raise RuntimeError(f"libcudart_static.a not found near {nvcc}; set CUDA_HOME")


def gencode_flags() -> list[str]:
    archs = [
        a.strip() for a in os.environ.get("SRGAN_FAST_CUDA_ARCHS", "80;90").replace(",", ";").split(";") if a.strip()
    ]
    flags = []
    for a in archs:
        flags += ["-gencode", f"arch=compute_{a},code=sm_{a}"]
    flags += ["-gencode", f"arch=compute_{archs[-1]},code=compute_{archs[-1]}"]
    return flags


def isa_sources() -> list[tuple[str, list[str]]]:
    """(source, extra flags) of each ISA build of the CPU convolution kernels for this machine's
    architecture (flags for the compiler, not for the CPU that builds: any x86-64 build machine
    emits all three, and the module picks at run time)."""
    common = ["-O3", "-std=c++20", "-fopenmp", "-ffp-contract=fast", "-fPIC", "-fvisibility=hidden"]
    out = [("cpu_conv_generic.cpp", common)]
    if platform.machine().lower() in ("x86_64", "amd64"):
        out += [
            ("cpu_conv_avx2.cpp", [*common, "-mavx2", "-mfma"]),
            (
                "cpu_conv_avx512.cpp",
                [*common, "-mavx512f", "-mavx512bw", "-mavx512vl", "-mavx512dq", "-mavx512bf16", "-mfma"],
            ),
        ]
    return out


class BuildExt(build_ext):
    """build_ext that compiles the ISA builds of the CPU kernels and the .cu sources with nvcc
    (each with its own flags) and links their objects in."""

    def build_extension(self, ext):
        objs = []
        for src, flags in getattr(ext, "isa_sources", []):
            objs += self.compiler.compile(
                [src], output_dir=self.build_temp, include_dirs=ext.include_dirs, extra_postargs=flags
            )
        ext.extra_objects = list(ext.extra_objects or []) + objs
        nvcc = getattr(ext, "nvcc", None)
        if nvcc:
            os.makedirs(self.build_temp, exist_ok=True)
            objs = []
            for src in ext.cu_sources:
                obj = os.path.join(self.build_temp, Path(src).name + ".o")
                cmd = [
                    nvcc,
                    "-c",
                    src,
                    "-o",
                    obj,
                    "-O3",
                    "--fmad=false",
                    "-std=c++17",
                    "-Xcompiler",
                    "-fPIC",
                    f"-I{HERE}",
                    "-DSRGAN_FAST_WITH_CUDA",
                    *gencode_flags(),
                ]
                print(" ".join(cmd))
                subprocess.check_call(cmd)
                objs.append(obj)
            ext.extra_objects = list(ext.extra_objects or []) + objs
        super().build_extension(ext)


def headers() -> list[str]:
    """Every header in csrc/ (the sources include them with quotes, directly or through one
    another): a change to any of them rebuilds the extension."""
    return sorted(p.name for p in HERE.iterdir() if p.suffix in (".h", ".hpp", ".cuh"))


def extensions():
    import pybind11

    nvcc = find_nvcc()
    rel = os.path.relpath(HERE, Path.cwd())
    ext = Extension(
        "srgan_fast._C",
        sources=[os.path.join(rel, s) for s in ("bindings.cpp", "frame_io_cpu.cpp", "cpu_conv.cpp")],
        include_dirs=[pybind11.get_include(), str(HERE)],
        extra_compile_args=["-O3", "-std=c++17", "-fopenmp", "-ffp-contract=off", "-fvisibility=hidden"],
        extra_link_args=["-fopenmp"],
        depends=[os.path.join(rel, h) for h in headers()],
        language="c++",
    )
    ext.nvcc = nvcc
    ext.isa_sources = [(os.path.join(rel, src), flags) for src, flags in isa_sources()]
    # compiled in BuildExt, outside setuptools' sources: listed so an edit relinks the module
    ext.depends += [src for src, _ in ext.isa_sources]
    ext.cu_sources = []
    if nvcc:
        ext.cu_sources = [str(HERE / "frame_io_cuda.cu")]
        # nvcc compiles these in BuildExt, outside setuptools' sources: listed here, so that an
        # edit to a .cu file relinks the module too
        ext.depends += [os.path.join(rel, Path(s).name) for s in ext.cu_sources]
        ext.define_macros = [("SRGAN_FAST_WITH_CUDA", "1")]
        ext.extra_link_args += [f"-L{cuda_lib_dir(nvcc)}", "-lcudart_static", "-lrt", "-ldl", "-lpthread"]
    return [ext], {"build_ext": BuildExt}
