"""`srgan-fast gst-env --check`: does srganfast load with gst-env's exports, and if not, why.

Every GStreamer run here uses a registry of its own (a fresh temporary file, or gst-env's), so a
check never writes to the user's registry. The causes named, each with the one command that fixes it:
- missing package: GStreamer's tools, PyGObject, the python plugin loader (`make gst-deps`), or a
  module the embedded Python cannot import (`pip install` it);
- wrong Python: the loader's embedded Python found another Python's home through `python3` on
  PATH and cannot import gi, or the system Python is another minor version than this one;
- blacklisted loader: a registry recorded an earlier failed load of libgstpython, which GStreamer
  does not retry until that file is deleted (`rm -f` it).
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from . import _HINT, _system_gi, embedded_dir, missing, plugin_dir

__all__ = ["Diagnosis", "diagnose", "blacklisted"]

_TIMEOUT = 300  # a first scan of every system plugin, then the model's first load: seconds on 2 cores


@dataclass
class Diagnosis:
    """`cause` and `fix` (a shell command) when srganfast does not load with the exports; `notes`
    about the current shell that do not stop it loading through gst-env's exports."""

    cause: str | None = None
    fix: str | None = None
    notes: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.cause is None

    def report(self) -> str:
        lines = [] if self.ok else [f"srgan-fast gst-env: {self.cause}", f"  fix: {self.fix}"]
        return "".join(f"{line}\n" for line in lines + [f"srgan-fast gst-env: note: {n}" for n in self.notes])


def _inspect(env: dict[str, str], *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["gst-inspect-1.0", *args], env=env, capture_output=True, text=True, timeout=_TIMEOUT)


def blacklisted(registry: str | Path, env: dict[str, str] | None = None) -> list[str]:
    """Files a registry cache records as blacklisted (failed to load), read without rescanning or
    writing it (GST_REGISTRY_UPDATE=no); [] if it does not exist."""
    if not Path(registry).is_file():
        return []
    env = {**(os.environ if env is None else env), "GST_REGISTRY": str(registry), "GST_REGISTRY_UPDATE": "no"}
    out = _inspect(env, "-b").stdout
    return [line.strip() for line in out.split("Blacklisted files:", 1)[-1].splitlines()
            if line.strip() and not line.strip().startswith("Total count")]  # fmt: skip


def _user_registries() -> list[Path]:
    """The registry caches GStreamer uses without gst-env's exports: GST_REGISTRY(_1_0) where the
    shell sets one, and the default ($XDG_CACHE_HOME/gstreamer-1.0/registry.<cpu>.bin)."""
    regs = [Path(os.environ[v]) for v in ("GST_REGISTRY_1_0", "GST_REGISTRY") if os.environ.get(v)]
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "gstreamer-1.0"
    return list(dict.fromkeys(regs + sorted(cache.glob("registry.*.bin"))))


def _path_python(env: dict[str, str]) -> str:
    """`python3` on the env's PATH, as the embedded Python finds its home, described."""
    exe = shutil.which("python3", path=env.get("PATH", ""))
    if exe is None:
        return "no python3 on PATH"
    for cfg in (Path(exe).parent / "pyvenv.cfg", Path(exe).parent.parent / "pyvenv.cfg"):
        if cfg.is_file():
            home = re.search(r"^home\s*=\s*(.*)$", cfg.read_text(), re.M)
            return f"{exe} (a venv of {home.group(1).strip() if home else 'an unknown Python'})"
    return exe


def _classify(out: str, env: dict[str, str]) -> tuple[str, str]:
    """(cause, fix) from the output of a failed first load (a fresh registry: the scanner's errors)."""
    if re.search(r"pygobject initialization failed|can't find gi|No module named '?gi'?\b", out):
        if _system_gi() is None:
            return "missing package: the embedded Python finds no PyGObject (gi)", "make gst-deps"
        pythonpath = env.get("PYTHONPATH", "").split(os.pathsep)
        cause = (
            f"wrong Python: the python plugin loader's embedded Python took its home from {_path_python(env)} "
            "and cannot import gi (pygobject initialization failed), so GStreamer blacklists libgstpython"
        )
        if pythonpath[:1] != [str(embedded_dir())]:
            return cause, 'eval "$(srgan-fast gst-env)"'
        return cause, "make venv PY=/usr/bin/python3  # a venv of the system Python, whose home is the loader's"
    m = re.search(r"srganfast: cannot import srgan_fast into (\S+) \S+ \((.*?)\); run", out)
    if m:
        module = re.search(r"No module named '([\w.]+)'", m.group(2))
        name = module.group(1).split(".")[0] if module else None
        cause = f"missing package: the embedded Python {m.group(1)} cannot import srgan_fast ({m.group(2)})"
        if name is None or name == "srgan_fast":
            return cause, 'eval "$(srgan-fast gst-env)"  # with the srgan-fast of the environment that has it'
        return cause, f"{shlex.quote(sys.executable)} -m pip install {name}"
    tail = "\n".join(out.strip().splitlines()[-15:])
    return f"gst-inspect-1.0 cannot load srganfast:\n{tail}", f"GST_DEBUG=python:6 gst-inspect-1.0 srganfast  # {_HINT}"


def diagnose(env: dict[str, str]) -> Diagnosis:
    """Whether `gst-inspect-1.0 srganfast` works with `env` (gst_env()'s exports) and why not."""
    d = Diagnosis()
    why = missing()
    if why is not None:
        fix = "make venv PY=/usr/bin/python3" if why.startswith("wrong Python") else "make gst-deps"
        d.cause, d.fix = why, fix
    full = {**os.environ, **env}
    if d.ok:
        with tempfile.TemporaryDirectory(prefix="srgan_fast_gst_") as tmp:  # a first load, its errors shown
            r = _inspect({**full, "GST_REGISTRY": os.path.join(tmp, "registry.bin")}, "srganfast")
        if r.returncode != 0:
            d.cause, d.fix = _classify(r.stdout + r.stderr, full)
        elif _inspect(full, "srganfast").returncode != 0:  # loads fresh, not through gst-env's registry
            reg = env["GST_REGISTRY"]
            what = ("has libgstpython blacklisted" if any("libgstpython" in b for b in blacklisted(reg, full))
                    else "caches the python plugin loader without srganfast")  # fmt: skip
            d.cause = f"blacklisted loader: {reg} {what}, from an earlier failed load"
            d.fix = f"rm -f {shlex.quote(reg)}"
    for reg in _user_registries():  # Python elements stay missing there, without gst-env's exports
        if str(reg) != env["GST_REGISTRY"] and any("libgstpython" in b for b in blacklisted(reg)):
            d.notes.append(
                f"{reg} has libgstpython blacklisted by an earlier failed load: GStreamer's Python elements stay "
                f"missing in shells without gst-env's exports until: rm -f {shlex.quote(str(reg))}"
            )
    here = os.environ.get("GST_PLUGIN_PATH", "").split(os.pathsep)
    if str(plugin_dir()) in here and any(os.environ.get(k) != env[k] for k in ("PYTHONPATH", "GST_REGISTRY")):
        d.notes.append('this shell has older or other gst-env exports (its embedded Python may be the wrong one): '
                       'eval "$(srgan-fast gst-env)"')  # fmt: skip
    return d
