"""Give the Python embedded by GStreamer's plugin loader its own home; a no-op in every other Python.

`srgan-fast gst-env` puts this folder first on PYTHONPATH, so every Python started from that
shell imports this module at start-up (site.py). Only the interpreter that libgstpython embeds
in gst-launch-1.0, gst-inspect-1.0 or gst-plugin-scanner acts on it: it calls Py_Initialize()
without a program name, so CPython looks for `python3` on PATH to find its home; with a venv
activated that is the venv's python3, whose pyvenv.cfg gives the venv's site-packages (no
`gi`: "pygobject initialization failed", and GStreamer blacklists libgstpython) and, for a venv
made from another build of the same minor version (pyenv, conda), that build's standard library.
PYTHONHOME would fix it for the embedded Python and break the venv's own `python`, hence this.

In the embedded Python (the process is not a Python executable and has libgstreamer mapped):
1. the standard library entries of sys.path are replaced by those of the loaded libpython's
   own prefix (the modules already imported by then, about 30 pure-Python start-up modules, stay);
2. the system's `gi` (PyGObject) is appended to sys.path where none is importable, so the venv's
   packages keep precedence over the system's.
Then any sitecustomize this one shadows (Debian has one in /usr/lib/python3.X) is run. Nothing
here may raise: site.py would print a traceback into every gst-launch-1.0 run.
"""

import os
import sys


def _maps() -> list[str]:
    """Paths of the shared objects mapped in this process (Linux), or [] where unreadable."""
    try:
        with open("/proc/self/maps") as f:
            return [line.split(None, 5)[5].strip() for line in f if line.count(" ") >= 5 and "/" in line]
    except (OSError, IndexError):
        return []


def _embedded(maps: list[str]) -> bool:
    """True in a GStreamer process whose Python was started by libgstpython (not in `python`)."""
    try:
        exe = os.path.realpath("/proc/self/exe")
    except OSError:
        return False
    if sys.executable and os.path.realpath(sys.executable) == exe:
        return False
    return any("/libgstreamer-1.0.so" in p for p in maps)


def _real_home(maps: list[str]) -> str | None:
    """The prefix of the libpython this process runs: the nearest parent folder of the library
    with lib/pythonX.Y/os.py (CPython's own landmark), or None (a static build: nothing to do)."""
    ver = f"{sys.version_info[0]}.{sys.version_info[1]}"
    for p in maps:
        if os.path.basename(p).startswith(f"libpython{ver}"):
            d = os.path.dirname(p)
            while d != os.path.dirname(d):
                if os.path.isfile(os.path.join(d, "lib", f"python{ver}", "os.py")):
                    return d
                d = os.path.dirname(d)
    return None


def _fix_stdlib(home: str) -> None:
    ver = f"{sys.version_info[0]}.{sys.version_info[1]}"
    now = os.path.dirname(os.__file__)  # the standard library CPython found
    want = os.path.join(home, "lib", f"python{ver}")
    if os.path.realpath(now) == os.path.realpath(want):
        return
    old_prefix = os.path.dirname(os.path.dirname(now))  # .../lib/pythonX.Y -> ...
    new = []
    for p in sys.path:
        if p == now or p.startswith(now + os.sep):
            p = want + p[len(now) :]
        elif p == os.path.join(old_prefix, "lib", f"python{sys.version_info[0]}{sys.version_info[1]}.zip"):
            p = os.path.join(home, "lib", os.path.basename(p))
        new.append(p)
    sys.path[:] = new


def _add_system_gi() -> None:
    import importlib.machinery
    import importlib.util

    if importlib.util.find_spec("gi") is not None:
        return
    ver = f"{sys.version_info[0]}.{sys.version_info[1]}"
    for site in ("/usr/lib/python3/dist-packages", f"/usr/lib/python{ver}/site-packages",
                 f"/usr/lib64/python{ver}/site-packages", f"/usr/lib/python{ver}/dist-packages"):  # fmt: skip
        gi = os.path.join(site, "gi")
        if os.path.isfile(os.path.join(gi, "__init__.py")) and any(
            os.path.isfile(os.path.join(gi, "_gi" + s)) for s in importlib.machinery.EXTENSION_SUFFIXES
        ):
            sys.path.append(site)
            return


def _run_shadowed() -> None:
    """Run the next `sitecustomize` on sys.path after this one, as site.py would have."""
    import importlib.machinery
    import importlib.util

    here = os.path.dirname(os.path.abspath(__file__))
    rest = [p for p in sys.path if os.path.abspath(p or os.curdir) != here]
    spec = importlib.machinery.PathFinder.find_spec("sitecustomize", rest)
    if spec is None or spec.origin is None or os.path.dirname(os.path.abspath(spec.origin)) == here:
        return
    module = importlib.util.module_from_spec(spec)
    sys.modules["sitecustomize"] = module
    spec.loader.exec_module(module)


def _main() -> None:
    maps = _maps()
    if _embedded(maps):
        try:
            home = _real_home(maps)
            if home is not None:
                _fix_stdlib(home)
            _add_system_gi()
        except Exception as e:  # the loader then fails with its own message; say why here first
            sys.stderr.write(f"srgan_fast sitecustomize: cannot set up the embedded Python ({e!r})\n")
    try:
        _run_shadowed()
    except Exception as e:
        sys.stderr.write(f"srgan_fast sitecustomize: the shadowed sitecustomize failed ({e!r})\n")


_main()
