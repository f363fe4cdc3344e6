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

__all__ = ["GST_PACKAGES", "import_gi", "plugin_dir", "gst_env", "missing"]

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


def import_gi():
    """Import `gi` (PyGObject) with Gst, GstBase and GstVideo 1.0 required, and return it.

    A plain `import gi` first; if this interpreter has none (a venv without system site
    packages), the system's gi package is loaded by path as the top-level `gi` module.
    Raises ImportError naming the packages to install."""
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
    try:
        for ns in ("Gst", "GstBase", "GstVideo"):
            gi.require_version(ns, "1.0")
    except ValueError as e:
        raise ImportError(f"GStreamer introspection data missing ({e}); {_HINT}") from None
    return gi


def missing() -> str | None:
    """Why the element cannot run through gst-launch-1.0 here (a sentence), or None."""
    import shutil

    if shutil.which("gst-launch-1.0") is None:
        return f"gst-launch-1.0 not found; {_HINT}"
    try:
        gi = import_gi()
        from gi.repository import Gst

        del gi
    except (ImportError, ValueError) as e:
        return str(e)
    Gst.init(None)
    if Gst.Registry.get().find_plugin("python") is None:
        return f"the GStreamer python plugin loader (libgstpython) is not installed; {_HINT}"
    system = _system_python_version()
    if system is not None and system != sys.version_info[:2]:
        return (
            f"the plugin loader embeds the system Python {system[0]}.{system[1]}, which cannot import this "
            f"install's packages (Python {sys.version_info[0]}.{sys.version_info[1]}); make the venv with "
            f"/usr/bin/python3 (make venv PY=/usr/bin/python3)"
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


def gst_env() -> dict[str, str]:
    """The environment variables that let gst-launch-1.0 (and any GStreamer application) find
    `srganfast`: GST_PLUGIN_PATH (prepended to the current value) and PYTHONPATH (this install's
    site-packages, prepended)."""

    def prepend(var: str, new: list[str]) -> str:
        old = [p for p in os.environ.get(var, "").split(os.pathsep) if p and p not in new]
        return os.pathsep.join(new + old)

    return {
        "GST_PLUGIN_PATH": prepend("GST_PLUGIN_PATH", [str(plugin_dir())]),
        "PYTHONPATH": prepend("PYTHONPATH", _site_dirs()),
    }


def gst_env_script(env: dict[str, str] | None = None) -> str:
    """`export NAME=value` lines for a POSIX shell (`eval "$(srgan-fast gst-env)"`)."""
    env = gst_env() if env is None else env
    return "".join(f"export {k}={shlex.quote(v)}\n" for k, v in env.items())
