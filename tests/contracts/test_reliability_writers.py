"""Issue 31: every writer (upscale, convert, export, eval --json, demo --out) replaces the user's
file only by a complete one (io.paths.atomic_output).

For each writer: a full disk that surfaces only at the last moment (the fsync before the rename,
as delayed allocation and NFS report it) leaves the previous file byte-equal and no temporary
file, and says so in one line naming the user's file; an output folder removed while the file is
written is an error (exit 2), never exit 0, and the message never names a temporary file.
"""

from __future__ import annotations

import errno
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from srgan_fast.families.srresnet.arch import Generator
from tests.conftest import one_line_error

from .test_reliability import _snapshot


def _img(path, h=32, w=32, seed=0):
    Image.fromarray(np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)).save(path)


def _no_temp_named(err: str) -> None:
    assert ".partial" not in err and ".tmp" not in err and "converting" not in err and "exporting" not in err, err


TORCH = ("--backend", "torch")

# Each writer: (the command line, the file it writes, what it needs). `out` is the folder the
# output lies in, made by the test with a previous output of the same name in it.


def _upscale(tmp_path, model):
    _img(tmp_path / "a.png")
    # --backend torch: the test is of the writer, whichever engine "auto" would pick here
    return ["upscale", tmp_path / "a.png", "-o", tmp_path / "out" / "a.png", "--model", model, "-q", *TORCH], "a.png"


def _convert(tmp_path, model):
    torch.save(Generator("tiny_x4").state_dict(), tmp_path / "g.pth")
    return ["convert", tmp_path / "g.pth", tmp_path / "out" / "g.safetensors"], "g.safetensors"


def _export(tmp_path, model):
    pytest.importorskip("onnxruntime")
    return ["export", model, tmp_path / "out" / "m.onnx"], "m.onnx"


def _eval(tmp_path, model):
    (tmp_path / "data").mkdir()
    _img(tmp_path / "data" / "x.png", 32, 48)
    return ["eval", "--data", tmp_path / "data", "--json", tmp_path / "out" / "r.json", "-q"], "r.json"


def _demo(tmp_path, model):
    return ["demo", "--out", tmp_path / "out", "--model", model], "lr.png"  # the first of the four it writes


WRITERS = {"upscale": _upscale, "convert": _convert, "export": _export, "eval-json": _eval, "demo": _demo}


def _fsync_fails_under(monkeypatch, folder: Path, calls: list):
    """os.fsync raising ENOSPC for files under `folder`: a full disk that shows only when the
    data reaches it (the writer's own writes all succeeded)."""
    real = os.fsync

    def fsync(fd):
        if os.readlink(f"/proc/self/fd/{fd}").startswith(str(folder)):
            calls.append(fd)
            raise OSError(errno.ENOSPC, "No space left on device")
        return real(fd)

    monkeypatch.setattr(os, "fsync", fsync)


@pytest.mark.skipif(not os.path.isdir("/proc/self/fd"), reason="needs /proc/self/fd")
@pytest.mark.parametrize("writer", list(WRITERS))
def test_disk_full_at_the_last_moment_keeps_the_previous_file(tmp_path, tiny_model, capsys, monkeypatch, writer):
    argv, name = WRITERS[writer](tmp_path, tiny_model)
    out = tmp_path / "out"
    out.mkdir()
    (out / name).write_bytes(b"yesterday's output")
    before = _snapshot(out)
    calls: list = []
    _fsync_fails_under(monkeypatch, out, calls)
    err = one_line_error(capsys, *argv)
    assert calls, "the new file was never fsync'ed before replacing the old one"
    assert str(out / name) in err and "disk is full" in err, err
    _no_temp_named(err)
    assert _snapshot(out) == before  # byte-equal, and no temporary file left


def _remove_folder_after(monkeypatch, owner, attr: str, folder: Path, nth: int = 1):
    """`owner.attr` runs, then (at its `nth` call) `folder` is removed: as if the user (or a
    cleaner) removed the output folder while the file was being written."""
    real = getattr(owner, attr)
    n = [0]

    def wrapped(*a, **k):
        r = real(*a, **k)
        n[0] += 1
        if n[0] == nth:
            shutil.rmtree(folder)
        return r

    monkeypatch.setattr(owner, attr, wrapped)


def _where_each_writer_writes():
    import pathlib

    import safetensors.torch

    return {
        "upscale": (Image.Image, "save"),
        "convert": (safetensors.torch, "save_file"),
        "export": (torch.onnx, "export"),
        "eval-json": (pathlib.Path, "write_text"),
        "demo": (Image.Image, "save"),
    }


@pytest.mark.parametrize("writer", list(WRITERS))
def test_output_folder_removed_while_writing_is_an_error(tmp_path, tiny_model, capsys, monkeypatch, writer):
    argv, name = WRITERS[writer](tmp_path, tiny_model)
    out = tmp_path / "out"
    out.mkdir()
    owner, attr = _where_each_writer_writes()[writer]
    _remove_folder_after(monkeypatch, owner, attr, out)
    err = one_line_error(capsys, *argv)  # exit 2, one line: never exit 0 with no file
    assert "removed while writing" in err and str(out) in err, err
    _no_temp_named(err)
    assert not out.exists()  # and nothing made it again


def test_upscale_does_not_make_again_a_folder_removed_between_images(tmp_path, tiny_model, capsys, monkeypatch):
    """The first image written, the folder removed: the second is an error, not a new folder
    holding only the second image (and exit 0)."""
    import srgan_fast.io.batch as batch

    src = tmp_path / "in"
    src.mkdir()
    _img(src / "a.png")
    _img(src / "b.png", seed=1)
    out = tmp_path / "out"
    _remove_folder_after(monkeypatch, batch, "save_output", out)
    err = one_line_error(capsys, "upscale", src, "-o", out, "--model", tiny_model, "-q", *TORCH)
    assert str(out) in err and "b.png" in err and "gone" in err, err
    _no_temp_named(err)
    assert not out.exists()


def test_convert_full_disk_in_the_writer_names_the_output(tmp_path, capsys, monkeypatch):
    """safetensors reports a failed write as its own SafetensorError naming no file: one line
    naming the output, and the previous file kept."""
    import safetensors.torch

    torch.save(Generator("tiny_x4").state_dict(), tmp_path / "g.pth")
    dst = tmp_path / "g.safetensors"
    dst.write_bytes(b"previous")

    def full(tensors, filename, metadata=None):
        Path(filename).write_bytes(b"half a file")
        err = type("SafetensorError", (Exception,), {})
        raise err("Error while serializing: I/O error: No space left on device (os error 28)")

    monkeypatch.setattr(safetensors.torch, "save_file", full)
    err = one_line_error(capsys, "convert", tmp_path / "g.pth", dst)
    assert str(dst) in err and "disk is full" in err, err
    _no_temp_named(err)
    assert dst.read_bytes() == b"previous"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["g.pth", "g.safetensors"]


def test_convert_of_negative_variances_names_the_input(tmp_path, capsys):
    """A check of the converted file used to name the temporary file it was written to."""
    state = Generator("tiny_x4").state_dict()
    state["body.0.bn1.running_var"].fill_(-1.0)
    src = tmp_path / "theirs.pth"
    torch.save(state, src)
    dst = tmp_path / "mine.safetensors"
    err = one_line_error(capsys, "convert", src, dst)
    assert str(src) in err and "'body.0.bn1.running_var' holds negative variances" in err, err
    _no_temp_named(err)
    assert not dst.exists() and sorted(p.name for p in tmp_path.iterdir()) == ["theirs.pth"]
