"""The output-path guard every command that writes files shares (upscale, upscale --ray,
video, convert, export): refuse, before any work, outputs that would overwrite an input or
cannot be written; the one way every writer replaces a user's file (`atomic_output`: only by a
complete one, by rename on the same filesystem). And the one way caches are read: a regular file, size-bounded, never a
FIFO (a hang) or a device (/dev/zero: unbounded memory)."""

from __future__ import annotations

import contextlib
import errno
import itertools
import os
import stat
import tempfile
from pathlib import Path

from ..errors import UsageError
from .images import ImageError, check_target

__all__ = ["atomic_output", "cache_folder_problem", "check_outputs", "read_regular_file", "NotARegularFile",
           "OutputFolderGone"]  # fmt: skip

_serial = itertools.count()


class NotARegularFile(OSError):
    """A cache path that is not a regular file of a sane size: ignored by the caller, rebuilt."""


def read_regular_file(path: str | os.PathLike, limit: int) -> bytes:
    """The bytes of `path` if it is a regular file of at most `limit` bytes (symlinks followed);
    NotARegularFile (saying what it is) otherwise, FileNotFoundError/OSError as `open`.

    Opened non-blocking, so a FIFO in the file's place returns at once instead of waiting for a
    writer; the type and size come from the open descriptor (no race with a swap after a stat),
    and no more than `limit` + 1 bytes are ever read.
    """
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0))
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            m = st.st_mode
            kind = ("a FIFO" if stat.S_ISFIFO(m) else "a folder" if stat.S_ISDIR(m)
                    else "a device" if stat.S_ISCHR(m) or stat.S_ISBLK(m) else "a socket")  # fmt: skip
            raise NotARegularFile(f"{path}: is {kind}, not a regular file")
        if st.st_size > limit:
            raise NotARegularFile(f"{path}: {st.st_size} bytes, more than the {limit} a cache file may hold")
        chunks, n = [], 0
        while n <= limit:
            b = os.read(fd, min(1 << 20, limit + 1 - n))
            if not b:
                break
            chunks.append(b)
            n += len(b)
        if n > limit:  # grew since the stat
            raise NotARegularFile(f"{path}: more than the {limit} bytes a cache file may hold")
        return b"".join(chunks)
    finally:
        os.close(fd)


class OutputFolderGone(OSError):
    """The folder of an output vanished (or became unwritable) while the file was written."""


@contextlib.contextmanager
def atomic_output(path: str | os.PathLike, *, suffix: str | None = None, follow_symlinks: bool = True):
    """Write a file so the user's `path` is replaced only by a complete one.

    Yields a temporary path in the same folder (same filesystem: the final step is a rename,
    atomic on POSIX and Windows). When the block finishes without an exception, the temporary
    file is fsync'ed and renamed over `path`; on any exception (a full disk at the last flush,
    Ctrl-C, an encoder error) it is removed and `path` is left byte-equal to what it was. The
    temporary name keeps `path`'s suffix (or `suffix`), since writers pick the format from it.

    If the folder is gone by the end (removed while a long job ran), OutputFolderGone names
    `path` and says so: never a silent exit 0 with no file.

    `path` a symlink to a regular file: with `follow_symlinks` (user outputs) the file it points
    to is replaced and the link kept, as a plain write would (a cache passes False: its link is
    replaced, never followed). An existing file's permission bits are kept (a 0600 file stays
    0600). The temporary name is cut to fit the file system's 255 bytes where `path`'s name is long.
    """
    user = Path(path)
    dst = user
    if follow_symlinks and user.is_symlink() and os.path.isfile(user):
        dst = Path(os.path.realpath(user))
    sfx = dst.suffix if suffix is None else suffix
    tail = f".{os.getpid()}.{next(_serial)}.partial{sfx}"
    stem = dst.stem
    while len(os.fsencode(f".{stem}{tail}")) > 255 and stem:
        stem = stem[:-1]
    tmp = dst.with_name(f".{stem}{tail}")
    try:
        st = os.stat(dst)
        mode = stat.S_IMODE(st.st_mode) if stat.S_ISREG(st.st_mode) else None
    except OSError:
        mode = None
    try:
        try:
            yield tmp
        except Exception as e:
            # whatever the writer made of a vanished folder (its own FileNotFoundError, a library's
            # error reading back the temporary file), the news is the folder; and an error naming
            # the temporary file, about to be removed, is said of the user's file instead
            if not dst.parent.is_dir():
                raise OutputFolderGone(errno.ENOENT, f"the output folder {dst.parent} was removed while writing; "
                                       "nothing was saved", str(user)) from None  # fmt: skip
            if (
                isinstance(e, OSError)
                and e.errno is not None
                and (e.filename is None or str(tmp) in (str(e.filename), str(e.filename2)))
            ):
                raise OSError(e.errno, e.strerror or str(e), str(user)) from None
            raise
        if not dst.parent.is_dir():
            raise OutputFolderGone(errno.ENOENT, f"the output folder {dst.parent} was removed while writing; "
                                   "nothing was saved", str(user))  # fmt: skip
        if not tmp.is_file():
            raise OutputFolderGone(errno.ENOENT, f"the file being written was removed from {dst.parent} "
                                   "(is something cleaning that folder?); nothing was saved", str(user))  # fmt: skip
        try:
            fd = os.open(tmp, os.O_RDONLY)
            try:
                os.fsync(fd)  # a full disk can surface only here (delayed allocation, NFS)
            finally:
                os.close(fd)
        except OSError as e:
            raise OSError(e.errno, e.strerror or str(e), str(user)) from None
        if mode is not None:
            with contextlib.suppress(OSError):
                os.chmod(tmp, mode)
        try:
            os.replace(tmp, dst)
        except FileNotFoundError:
            raise OutputFolderGone(errno.ENOENT, f"the output folder {dst.parent} was removed while writing; "
                                   "nothing was saved", str(user)) from None  # fmt: skip
    finally:
        try:
            tmp.unlink(missing_ok=True)
        except OSError:
            pass


_folder_problems_said: set[str] = set()


def cache_folder_problem(path: str | os.PathLike) -> str | None:
    """Why nothing can be cached under the folder of `path` (a part of that folder is a file),
    said once per process; None where the folder is usable or simply absent (it is made)."""
    folder = Path(path).parent
    blocker = next((p for p in (folder, *folder.parents) if os.path.lexists(p)), None)
    if blocker is None or blocker.is_dir():
        return None
    why = (f"cache folder {blocker}: is a file, not a folder, so nothing is cached and every run measures and "
           "exports again; remove that file, or set SRGAN_FAST_CACHE_DIR to a folder")  # fmt: skip
    if why in _folder_problems_said:
        return ""  # known, already said: the caller stays quiet
    _folder_problems_said.add(why)
    return why


def _real(p: Path) -> str:
    # os.path.realpath, not Path.resolve: a symlink loop is a path like any other here (its
    # reading fails later with one line), never a RuntimeError
    return os.path.realpath(p)


def check_outputs(inputs: list[Path], outs: list[Path]) -> None:
    """Refuse, before any work, outputs that would overwrite an input or cannot be written.

    An output must be a regular file or absent (a device node, FIFO or folder in its place is
    refused: the finished file is renamed over the target). Only the last folder of an output
    path is ever created, and only where its parent exists (`-o /nonexistent/sub/x.png` is
    refused, not made at the root). Each output folder is probed with a temporary file:
    permission bits alone do not say what root, ACLs or a read-only mount allow.
    """
    srcs = {_real(p) for p in inputs}
    for o in outs:
        if _real(o) in srcs:
            raise UsageError(f"{o}: is an input; writing it would destroy the original. Choose another name")
        try:
            check_target(o)
        except ImageError as e:
            raise UsageError(str(e)) from None
    for folder in sorted({o.parent for o in outs}):
        blocker = next((p for p in (folder, *folder.parents) if p.exists()), None)
        if blocker is not None and not blocker.is_dir():
            raise UsageError(f"{folder}: cannot be an output folder, {blocker} is a file")
        if not folder.is_dir() and not folder.parent.is_dir():
            raise UsageError(
                f"{folder}: no such folder, and neither is {folder.parent}; create it first "
                "(only the last folder of an output path is made)"
            )
        try:
            folder.mkdir(exist_ok=True)
            tempfile.TemporaryFile(dir=folder).close()
        except OSError as e:
            raise UsageError(
                f"{folder}: cannot write there ({e.strerror or e}); choose a folder you can write to"
            ) from None
