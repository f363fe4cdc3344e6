"""csrc/build_ext.py: the extension lists every header its sources include in `depends`, so an
edit to a header alone rebuilds srgan_fast._C (setuptools rebuilds only when a source or a
`depends` file is newer than the module; without them the old binary stayed, and the tests
ran against it).

The fast tests read the Extension objects (C++ only, and with a stand-in nvcc: nothing is
compiled); the slow one builds a copy of csrc/ twice, with a header edited in between.
"""

from __future__ import annotations

import importlib.util
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
CSRC = ROOT / "csrc"
_INCLUDE = re.compile(r'^\s*#\s*include\s*"([^"]+)"', re.M)

pytest.importorskip("pybind11", reason="the build script needs pybind11")


def _build_module():
    spec = importlib.util.spec_from_file_location("_srgan_build_ext_under_test", CSRC / "build_ext.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def quoted_includes(source: Path, include_dirs: list[str]) -> set[Path]:
    """Every file `source` includes with quotes, directly or through other included files."""
    found: set[Path] = set()
    todo = [source.resolve()]
    while todo:
        f = todo.pop()
        for name in _INCLUDE.findall(f.read_text()):
            cands = [f.parent / name, *(Path(d) / name for d in include_dirs)]
            hit = next((c.resolve() for c in cands if c.is_file()), None)
            assert hit is not None, f'{f.name}: #include "{name}" is not in its folder nor the include dirs'
            if hit not in found:
                found.add(hit)
                todo.append(hit)
    return found


def _extensions(monkeypatch, nvcc: bool):
    monkeypatch.chdir(ROOT)  # the build script names its sources relative to the working folder, as setup.py runs
    mod = _build_module()
    if nvcc:  # a stand-in nvcc: only the Extension objects are made, nothing runs
        monkeypatch.setattr(mod, "find_nvcc", lambda: "/opt/stand-in-cuda/bin/nvcc")
        monkeypatch.setattr(mod, "cuda_lib_dir", lambda nvcc: "/opt/stand-in-cuda/lib64")
    else:
        monkeypatch.setenv("SRGAN_FAST_CUDA", "0")
    exts, cmdclass = mod.extensions()
    assert exts and "build_ext" in cmdclass
    return exts


# (ids without the word "cuda": conftest skips tests of that keyword on machines with no GPU)
@pytest.mark.parametrize("nvcc", [False, True], ids=["cpp_only", "with_nvcc"])
def test_every_included_header_is_a_dependency(monkeypatch, nvcc):
    exts = _extensions(monkeypatch, nvcc)
    for ext in exts:
        cu = [Path(s) for s in getattr(ext, "cu_sources", [])]
        assert bool(cu) == nvcc, (ext.name, cu)  # the CUDA variant really has its .cu sources
        sources = [Path(s) for s in ext.sources] + cu
        depends = {Path(d).resolve() for d in ext.depends}
        assert all(d.is_file() for d in depends), sorted(map(str, depends))
        headers = set().union(*(quoted_includes(s, ext.include_dirs) for s in sources))
        # frame_io.h reaches the sources only through frame_io_ops.h: the parse follows includes
        assert {"frame_io.h", "frame_io_ops.h"} <= {h.name for h in headers}, headers
        missing = sorted(h.name for h in headers - depends)
        assert not missing, f"{ext.name}: headers the sources include but `depends` lacks: {missing}"
        # .cu files are compiled by BuildExt, outside setuptools' sources: an edit to one must relink too
        assert not [s.name for s in cu if s.resolve() not in depends], ext.depends


def test_depends_names_every_header_in_csrc(monkeypatch):
    # a header added to csrc/ later is a dependency before anyone remembers to list it
    (ext,) = _extensions(monkeypatch, nvcc=False)
    assert {Path(d).name for d in ext.depends} >= {p.name for p in CSRC.glob("*.h")}
    assert all(not os.path.isabs(d) for d in ext.depends)  # relative, like the sources


def _build(tmp: Path) -> str:
    env = {**os.environ, "SRGAN_FAST_CUDA": "0", "SRGAN_FAST_BUILD_EXT": "1"}
    r = subprocess.run([sys.executable, "setup.py", "build_ext", "--inplace"], cwd=tmp, env=env,
                       capture_output=True, text=True, timeout=900)  # fmt: skip
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    return r.stdout + r.stderr


def _mtimes(tmp: Path) -> dict[str, int]:
    files = [*tmp.glob("build/temp*/csrc/*.o"), *tmp.glob("build/lib*/srgan_fast/_C*.so"), *tmp.glob("srgan_fast/_C*")]
    return {str(f.relative_to(tmp)): f.stat().st_mtime_ns for f in files}


@pytest.mark.slow
def test_editing_a_header_alone_rebuilds_the_extension(tmp_path):
    shutil.copytree(CSRC, tmp_path / "csrc", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / "setup.py", tmp_path / "setup.py")
    (tmp_path / "srgan_fast").mkdir()  # where --inplace puts the module
    log = _build(tmp_path)
    assert "-c csrc/bindings.cpp" in log and "-c csrc/frame_io_cpu.cpp" in log, log[-3000:]
    before = _mtimes(tmp_path)
    assert len(before) == 4, before  # 2 objects, the built module and its in-place copy
    # nothing changed: nothing is compiled (so the rebuilds below are the headers' doing)
    log = _build(tmp_path)
    assert "-c csrc/" not in log and _mtimes(tmp_path) == before, log[-3000:]
    # bindings.cpp and frame_io_cpu.cpp include frame_io_ops.h, which includes frame_io.h
    for k, header in enumerate(("frame_io.h", "frame_io_ops.h")):
        probe = f"srgan-fast-probe:{header}:{k}"
        h = tmp_path / "csrc" / header
        h.write_text(h.read_text() + f'\n__attribute__((used)) static const char sf_probe_{k}[] = "{probe}";\n')
        newest = max(before.values())
        os.utime(h, ns=(newest + 2 * 10**9, newest + 2 * 10**9))  # newer, also on coarse-timestamp filesystems
        log = _build(tmp_path)
        assert "-c csrc/bindings.cpp" in log and "-c csrc/frame_io_cpu.cpp" in log, f"{header}: {log[-3000:]}"
        after = _mtimes(tmp_path)
        assert after.keys() == before.keys() and all(after[f] != before[f] for f in before), (header, before, after)
        # the module tests import is the new binary: it holds the edited header's bytes
        (so,) = (tmp_path / "srgan_fast").glob("_C*.so")
        assert probe.encode() in so.read_bytes(), header
        before = after
