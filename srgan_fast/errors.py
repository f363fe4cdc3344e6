"""User errors versus bugs: what the CLI prints as one line (exit 2) and what keeps its traceback.

A *user error* is something the person running the command can fix: a missing or hostile
file, a folder that cannot be written, a flag out of range, a missing optional package, a
GPU out of memory. Everything else (a Triton compile error, a shape bug in the engine, a
`RuntimeError` from deep inside torch) is a bug and keeps its traceback, exit code 1.

This module imports nothing heavy, so any module of the package can derive its errors from
`UserError` (`ImageError`, `WeightsError` and friends also stay `ValueError`s for callers
that catch those).
"""

from __future__ import annotations

import errno
import signal
import sys
import threading

__all__ = ["UserError", "UsageError", "MissingDependency", "Interrupted", "SignalGuard", "user_message"]


class UserError(Exception):
    """Base of the errors the user can fix; the message says how."""


class UsageError(UserError, ValueError):
    """A bad argument or a bad combination of arguments."""


class MissingDependency(UserError, RuntimeError):
    """An optional package a command needs is not installed (the message names it)."""


class Interrupted(KeyboardInterrupt):
    """Ctrl-C or SIGTERM, after the command has cleaned up; the message says what was kept."""

    def __init__(self, message: str = "interrupted", signum: int = 2):
        super().__init__(message)
        self.signum = signum


class SignalGuard:
    """SIGINT and SIGTERM as one clean exception: the first raises `Interrupted` (so `finally`
    blocks close files, where SIGTERM's default would kill the process mid-write); every later
    one, and any that arrives while `closing` is set, is only recorded, so a second Ctrl-C
    cannot cut the clean-up short. Guards nest and share what was received; they install
    handlers only in the main thread (elsewhere they do nothing) and restore them on exit.
    """

    received: int | None = None  # shared by nested guards: the first signal of the outermost one
    _depth = 0

    def __init__(self):
        self.got: int | None = None
        self.closing = False
        self._old: dict = {}

    def __enter__(self):
        if threading.current_thread() is threading.main_thread():
            if SignalGuard._depth == 0:
                SignalGuard.received = None
            SignalGuard._depth += 1
            for s in (signal.SIGINT, signal.SIGTERM):
                self._old[s] = signal.signal(s, self._handler)
        return self

    def _handler(self, signum, frame):
        first = SignalGuard.received is None
        self.got = self.got or signum
        SignalGuard.received = SignalGuard.received or signum
        if first and not self.closing:
            raise Interrupted(signum=signum)

    def __exit__(self, *exc):
        if self._old:
            for s, h in self._old.items():
                signal.signal(s, h)
            SignalGuard._depth -= 1
        return False


# plain library exceptions that argument checks across the package raise for user errors
_PLAIN_USER_ERRORS = (ValueError, FileNotFoundError, FloatingPointError)

_OS_HINTS = {
    errno.EACCES: "choose a folder you can write to",
    errno.EPERM: "choose a folder you can write to",
    errno.EROFS: "the file system is read-only; choose another folder",
    errno.ENOSPC: "the disk is full; free space or choose another folder",
    errno.EFBIG: "larger than this file system or the process's file-size limit (ulimit -f) allows; choose "
    "another folder",
    errno.ENOTDIR: "a part of the path is a file, not a folder",
    errno.EISDIR: "give a file, not a folder",
    errno.EEXIST: "a file of that name is in the way",
}


def _oom_types() -> tuple:
    torch = sys.modules.get("torch")  # never import torch just to classify an error
    if torch is None:
        return ()
    return tuple(t for t in (getattr(torch, "OutOfMemoryError", None), getattr(torch.cuda, "OutOfMemoryError", None))
                 if isinstance(t, type))  # fmt: skip


# errors of the machine rather than of a file, that a write can raise with no file name (a
# full disk surfaces in whichever write hits it, often deep in a library's buffered writer)
_NAMELESS_OS_ERRORS = {
    errno.ENOSPC: "no space left on device: the disk is full; free space or choose another folder",
    errno.EDQUOT: "disk quota exceeded; free space or choose another folder",
    errno.EROFS: "read-only file system; choose another folder",
}


def _remote_message(e: BaseException) -> str | None:
    """The one-line message of a user error a distributed runner (Ray) wrapped. Ray re-raises a
    worker's exception as RayTaskError(UserCodeException), with the original exception only
    as text: its traceback's last line for one of our UserError classes is the message."""
    if not type(e).__module__.startswith("ray."):
        return None
    import importlib
    import re

    found = None
    for m in re.finditer(r"^(srgan_fast(?:\.\w+)*)\.(\w+): (.+)$", str(e), re.MULTILINE):
        try:
            cls = getattr(importlib.import_module(m.group(1)), m.group(2))
        except (ImportError, AttributeError):
            continue
        if isinstance(cls, type) and issubclass(cls, UserError):
            found = m.group(3)
    return _one_line(found) if found else None


def user_message(e: BaseException) -> str | None:
    """The one-line message for a user error, or None when `e` is a bug (keep its traceback)."""
    remote = _remote_message(e)
    if remote is not None:
        return remote
    oom = _oom_types()
    if oom and isinstance(e, oom):
        return (
            "out of GPU memory: pass --tile N (e.g. --tile 128) or a smaller --memory-budget (e.g. 2G) to upscale "
            "in tiles, a smaller --batch, or --dtype fp16"
        )
    if isinstance(e, MemoryError):
        return (
            "out of memory: pass --tile N (e.g. --tile 128) or --memory-budget (e.g. 2G) to upscale in tiles, "
            "or a smaller --batch"
        )
    if isinstance(e, UserError):  # runners.BackendUnavailable included
        return _one_line(str(e))
    if isinstance(e, OSError) and e.filename is not None and e.errno is not None:
        # a file the user named (or a folder it lies in) cannot be read or written
        name = e.filename if e.filename2 is None else f"{e.filename} -> {e.filename2}"
        hint = _OS_HINTS.get(e.errno)
        return _one_line(f"{name}: {e.strerror or e}" + (f" ({hint})" if hint else ""))
    if isinstance(e, OSError) and e.errno in _NAMELESS_OS_ERRORS:
        return _NAMELESS_OS_ERRORS[e.errno]
    if isinstance(e, _PLAIN_USER_ERRORS) and not _raised_in_kernel_launcher(e):
        return _one_line(str(e))
    return None


def _raised_in_kernel_launcher(e: BaseException) -> bool:
    """A ValueError from a kernel launcher's checks is the engine's bug (it validates the
    user's input before any launch), so it keeps its traceback."""
    tb, where = e.__traceback__, ""
    while tb is not None:
        where, tb = tb.tb_frame.f_globals.get("__name__", ""), tb.tb_next
    return where.startswith("srgan_fast.kernels")


def _one_line(msg: str) -> str:
    """Multi-line messages (e.g. every wrong key of a weights file) joined with '; '."""
    out = ""
    for part in (p.strip() for p in msg.splitlines()):
        if part:
            out += part if not out else (" " if out.endswith(":") else "; ") + part
    return out or "error"
