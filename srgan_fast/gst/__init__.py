"""GStreamer element `srganfast` (a GstBase.BaseTransform in Python) and its set-up.

    eval "$(srgan-fast gst-env)"
    gst-launch-1.0 videotestsrc num-buffers=3 ! video/x-raw,format=RGB,width=32,height=24 \\
        ! srganfast batch=2 ! filesink location=sr_128x96.rgb

Two Pythons meet here. gst-launch-1.0 runs Python plugins through the gst-python plugin loader
(Debian: gstreamer1.0-python3-plugin-loader), which embeds the *system* python3 and imports
every .py file in a `python/` folder of GST_PLUGIN_PATH. That interpreter must reach torch and
this package: `gst_env()` puts this install's site-packages on PYTHONPATH (the plugin file runs
`site.addsitedir` on it, so editable installs' .pth finders work too). The project's own
interpreter (a venv, possibly a different patch release of the same minor version) needs `gi`,
which Debian ships only for the system Python (python3-gst-1.0): `import_gi()` imports just the
`gi` package from the system's dist-packages, without putting the rest of dist-packages on
sys.path, where it could shadow the venv's packages. Both sides need the same minor version
(gi's `_gi` extension is built for one CPython ABI, e.g. cpython-311).

The embedded Python finds its home through `python3` on PATH: with a venv activated, the venv's,
and then it has no `gi` ("pygobject initialization failed"). `gst_env()` therefore also puts
`embedded/` first on PYTHONPATH: its sitecustomize gives that interpreter its own standard library
and the system's gi, and does nothing in any other Python (PYTHONHOME would break the venv's own
`python`). A failed load makes GStreamer blacklist libgstpython in its registry cache until the
file is deleted; `gst_env()` points GST_REGISTRY at a registry of this package's own
(`registry_path()`), so such a failure never reaches the user's registry. `diagnose()` (`srgan-fast
gst-env --check`) names the cause of a failed load and the command that fixes it.

Importing this package imports neither gi nor torch.
"""

from __future__ import annotations

import importlib.machinery
import importlib.util
import os
import shlex
import sys
import sysconfig
from pathlib import Path

__all__ = ["GST_PACKAGES", "import_gi", "plugin_dir", "embedded_dir", "registry_path", "gst_env", "missing"]

# what a Debian 12 machine needs (the Makefile's gst-deps target and .ci/run install these)
GST_PACKAGES = (
    "python3-gst-1.0",
    "gstreamer1.0-python3-plugin-loader",
    "gstreamer1.0-plugins-base",
    "gstreamer1.0-tools",
)
_HINT = "install them with `make gst-deps` (Debian/Ubuntu: apt-get install " + " ".join(GST_PACKAGES) + ")"

# where distributions put the system Python's gi (Debian/Ubuntu first, then Fedora/Arch)
_SYSTEM_SITES = (
    "/usr/lib/python3/dist-packages",
    f"/usr/lib/python{sys.version_info[0]}.{sys.version_info[1]}/site-packages",
    f"/usr/lib64/python{sys.version_info[0]}.{sys.version_info[1]}/site-packages",
)


def plugin_dir() -> Path:
    """The folder to put on GST_PLUGIN_PATH: it holds `python/srganfast.py`."""
    return Path(__file__).resolve().parent / "plugin"


def _system_gi() -> Path | None:
    """The system's gi package built for this interpreter's ABI, or None."""
    extra = os.environ.get("SRGAN_FAST_GI_SITE")
    for site in ([extra] if extra else []) + list(_SYSTEM_SITES):
        d = Path(site) / "gi"
        if (d / "__init__.py").is_file() and any(
            (d / f"_gi{suffix}").is_file() for suffix in importlib.machinery.EXTENSION_SUFFIXES
        ):
            return d
    return None


def _unwinder_first() -> None:
    """Put libgcc_s's C++ unwinder in the global symbol scope before libgstreamer arrives.

    Debian's libgstreamer links libunwind, whose `_Unwind_*` symbols then interpose libgcc_s's
    for libraries loaded after it, while those loaded before (torch) keep libgcc_s's: a C++
    exception crossing both (onnxruntime's pybind11 module under torch's exception translators,
    as the CPU `auto` backend's calibration does) aborts the process. Seen 2026-11-28 with the
    venv's Python and the system's alike, when torch is imported before Gst. Loading libgcc_s
    RTLD_GLOBAL first makes everyone use it. gst-launch-1.0 needs nothing: it links libunwind
    from the start, so all libraries bind to the same unwinder (checked, no LD_PRELOAD needed)."""
    import ctypes

    try:
        ctypes.CDLL("libgcc_s.so.1", mode=ctypes.RTLD_GLOBAL)
    except OSError:  # not glibc/GCC (e.g. macOS): no libunwind clash to avoid there
        return


def _scanner_env() -> None:
    """Make os.environ safe for the plugin scanner Gst.init may start (see import_gi)."""
    env = os.environ
    here = str(embedded_dir())
    paths = [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p]
    if here not in paths:
        env["PYTHONPATH"] = os.pathsep.join([here] + paths)
    if not (env.get("GST_REGISTRY") or env.get("GST_REGISTRY_1_0")):
        env["GST_REGISTRY"] = str(registry_path(env.get("GST_PLUGIN_PATH", ""), env["PYTHONPATH"]))


def import_gi():
    """Import `gi` (PyGObject) with Gst, GstBase and GstVideo 1.0 required, and return it.

    A plain `import gi` first; if this interpreter has none (a venv without system site
    packages), the system's gi package is loaded by path as the top-level `gi` module.
    Raises ImportError naming the packages to install.

    Before anyone can call Gst.init, os.environ gets `embedded_dir()` first on PYTHONPATH and, unless
    GST_REGISTRY (or GST_REGISTRY_1_0) is set, GST_REGISTRY = `registry_path()`, as `gst_env()`
    exports them: the plugin scanner that Gst.init runs inherits this process's environment, and from
    an activated venv its embedded Python would fail and blacklist libgstpython in the user's
    default registry."""
    try:
        import gi
    except ImportError:
        d = _system_gi()
        if d is None:
            raise ImportError(
                f"PyGObject (gi) for Python {sys.version_info[0]}.{sys.version_info[1]} not found; {_HINT}"
            ) from None
        spec = importlib.util.spec_from_file_location("gi", d / "__init__.py", submodule_search_locations=[str(d)])
        gi = importlib.util.module_from_spec(spec)
        sys.modules["gi"] = gi
        try:
            spec.loader.exec_module(gi)
        except Exception:
            del sys.modules["gi"]
            raise
    _unwinder_first()
    _scanner_env()
    try:
        for ns in ("Gst", "GstBase", "GstVideo"):
            gi.require_version(ns, "1.0")
    except ValueError as e:
        raise ImportError(f"GStreamer introspection data missing ({e}); {_HINT}") from None
    return gi


def _loader_files() -> list[Path]:
    """gst-python's plugin loader (libgstpython*.so) where GStreamer looks for system plugins."""
    dirs = [d for var in ("GST_PLUGIN_SYSTEM_PATH_1_0", "GST_PLUGIN_SYSTEM_PATH")
            for d in os.environ.get(var, "").split(os.pathsep) if d]  # fmt: skip
    found = [f for d in dirs for f in Path(d).glob("libgstpython*.so")]
    for pattern in ("lib*/gstreamer-1.0/libgstpython*.so", "lib*/*/gstreamer-1.0/libgstpython*.so"):
        found += Path("/usr").glob(pattern)
    return found


def missing() -> str | None:
    """Why the element cannot run through gst-launch-1.0 here, with the command that fixes it
    (a sentence), or None. Loads no plugin and touches no registry: Gst is not initialised."""
    import shutil

    if shutil.which("gst-launch-1.0") is None or shutil.which("gst-inspect-1.0") is None:
        return f"gst-launch-1.0 not found; {_HINT}"
    try:
        import_gi()
    except (ImportError, ValueError) as e:
        return str(e)
    if not _loader_files():
        return f"the GStreamer python plugin loader (libgstpython) is not installed; {_HINT}"
    system = _system_python_version()
    if system is not None and system != sys.version_info[:2]:
        return (
            f"wrong Python: the plugin loader embeds the system Python {system[0]}.{system[1]}, which cannot "
            f"import this install's packages (Python {sys.version_info[0]}.{sys.version_info[1]}); make the venv "
            f"with /usr/bin/python3: make venv PY=/usr/bin/python3"
        )
    return None


def _system_python_version() -> tuple[int, int] | None:
    """(major, minor) of /usr/bin/python3, the Python Debian's plugin loader embeds, or None."""
    import subprocess

    if not os.path.exists("/usr/bin/python3"):
        return None
    r = subprocess.run(["/usr/bin/python3", "-c", "import sys; print(*sys.version_info[:2])"],
                       capture_output=True, text=True, timeout=30)  # fmt: skip
    parts = r.stdout.split()
    return (int(parts[0]), int(parts[1])) if r.returncode == 0 and len(parts) == 2 else None


def _site_dirs() -> list[str]:
    """This install's site-packages (purelib, platlib). An editable install is reached through
    its .pth finder there: the plugin file runs `site.addsitedir` on each PYTHONPATH entry."""
    dirs: list[str] = []
    for key in ("purelib", "platlib"):
        p = sysconfig.get_paths()[key]
        if p not in dirs and Path(p).is_dir():
            dirs.append(p)
    return dirs


def embedded_dir() -> Path:
    """The folder put first on PYTHONPATH: its sitecustomize gives the Python embedded by
    GStreamer's plugin loader its own home (a no-op in any other Python)."""
    return Path(__file__).resolve().parent / "embedded"


def registry_path(plugin_path: str, python_path: str) -> Path:
    """The GStreamer registry cache `gst_env()` exports as GST_REGISTRY: this package's own, under
    $XDG_CACHE_HOME/srgan_fast (default ~/.cache), one per GST_PLUGIN_PATH and PYTHONPATH (GStreamer
    rescans the python loader when GST_PLUGIN_PATH changes, but not when PYTHONPATH does)."""
    import hashlib
    import platform

    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    key = hashlib.sha1(f"{plugin_path}\0{python_path}".encode()).hexdigest()[:12]
    return cache / "srgan_fast" / "gstreamer-1.0" / f"registry-{key}.{platform.machine() or 'any'}.bin"


def gst_env() -> dict[str, str]:
    """The environment variables that let gst-launch-1.0 (and any GStreamer application) find
    `srganfast`: GST_PLUGIN_PATH (prepended to the current value), PYTHONPATH (embedded_dir() and
    this install's site-packages, prepended) and GST_REGISTRY (registry_path(), replacing any)."""

    def prepend(var: str, new: list[str]) -> str:
        old = [p for p in os.environ.get(var, "").split(os.pathsep) if p and p not in new]
        return os.pathsep.join(new + old)

    env = {
        "GST_PLUGIN_PATH": prepend("GST_PLUGIN_PATH", [str(plugin_dir())]),
        "PYTHONPATH": prepend("PYTHONPATH", [str(embedded_dir())] + _site_dirs()),
    }
    env["GST_REGISTRY"] = str(registry_path(env["GST_PLUGIN_PATH"], env["PYTHONPATH"]))
    return env


def gst_env_script(env: dict[str, str] | None = None) -> str:
    """`export NAME=value` lines for a POSIX shell (`eval "$(srgan-fast gst-env)"`)."""
    env = gst_env() if env is None else env
    return "".join(f"export {k}={shlex.quote(v)}\n" for k, v in env.items())
