"""The output-path guard every command that writes files shares (upscale, upscale --ray,
video, convert, export): refuse, before any work, outputs that would overwrite an input or
cannot be written."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from ..errors import UsageError
from .images import ImageError, check_target

__all__ = ["check_outputs"]


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
