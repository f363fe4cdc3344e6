"""`srgan-fast upscale`: image files in, upscaled image files out."""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path

import numpy as np

from .errors import UsageError
from .images import IMAGE_SUFFIXES, ImageError, list_images, load_image, save_image
from .metrics import imresize

__all__ = ["upscale_files", "collect_inputs", "check_outputs", "load_input", "save_output"]


def load_input(src: Path, on_error: str):
    """(rgb, alpha) of an input image; None when it is unreadable and on_error is "skip"
    (the reason goes to stderr). The single-process and the Ray paths share this."""
    try:
        return load_image(src, with_alpha=True)
    except ImageError as e:
        if on_error == "fail":
            raise
        print(f"upscale: skipped {e}", file=sys.stderr)
        return None


def save_output(dst: Path, sr, alpha) -> None:
    """Write an upscaled image; an alpha channel is resized with MATLAB-style bicubic."""
    a = imresize(alpha, output_shape=sr.shape[:2]) if alpha is not None else None
    save_image(dst, sr, a)


def collect_inputs(inputs: list[str | os.PathLike]) -> list[Path]:
    """Expand folders into their images; every named path must exist."""
    out: list[Path] = []
    for i in inputs:
        p = Path(i)
        if p.is_dir():
            imgs = list_images(p)
            if not imgs:
                raise ImageError(f"{p}: folder holds no images ({', '.join(IMAGE_SUFFIXES)})")
            out += imgs
        elif p.exists():
            out.append(p)
        else:
            raise ImageError(f"{p}: no such file or folder")
    if not out:
        raise ImageError("no input images given")
    return out


_VIDEO_SUFFIXES = (".mp4", ".mkv", ".mov", ".avi", ".webm", ".m4v")


def _output_paths(inputs: list[Path], output: Path) -> list[Path]:
    suffix = output.suffix.lower()
    if len(inputs) == 1 and suffix in IMAGE_SUFFIXES:
        return [output]
    if suffix in IMAGE_SUFFIXES:
        raise UsageError(f"{len(inputs)} inputs need an output folder, not the file {output}")
    if suffix and not output.is_dir() and _looks_like_a_file(suffix):
        # -o out.gif used to create a folder named out.gif
        raise UsageError(
            f"-o {output}: cannot write {suffix} files; give an output file ending in "
            f"{', '.join(IMAGE_SUFFIXES)} or a folder"
        )
    names = [p.stem for p in inputs]
    dup = {n for n in names if names.count(n) > 1}
    if dup:
        raise UsageError(f"inputs share output names {sorted(dup)}; upscale them separately")
    return [output / f"{p.stem}.png" for p in inputs]


def _looks_like_a_file(suffix: str) -> bool:
    from PIL import Image

    return suffix in Image.registered_extensions() or suffix in _VIDEO_SUFFIXES


def check_outputs(inputs: list[Path], outs: list[Path]) -> None:
    """Refuse, before any work, outputs that would overwrite an input or cannot be written.

    Each output folder is created and probed with a temporary file: permission bits alone
    do not say what root, ACLs or a read-only mount allow.
    """
    srcs = {p.resolve() for p in inputs}
    for o in outs:
        if o.resolve() in srcs:
            raise UsageError(f"-o {o}: is an input; writing it would destroy the original. Choose another name")
    for folder in sorted({o.parent for o in outs}):
        blocker = next((p for p in (folder, *folder.parents) if p.exists()), None)
        if blocker is not None and not blocker.is_dir():
            raise UsageError(f"{folder}: cannot be an output folder, {blocker} is a file")
        try:
            folder.mkdir(parents=True, exist_ok=True)
            tempfile.TemporaryFile(dir=folder).close()
        except OSError as e:
            raise UsageError(
                f"{folder}: cannot write there ({e.strerror or e}); choose a folder you can write to"
            ) from None


def upscale_files(
    inputs: list[str | os.PathLike],
    output: str | os.PathLike,
    model: str = "srresnet_x4",
    device: str = "cpu",
    dtype: str = "fp32",
    backend: str = "auto",
    tile: int | None = None,
    batch: int = 1,
    on_error: str = "fail",
    progress: bool = True,
) -> list[Path]:
    """Upscale images (files or folders) into `output` (a file for one input, else a folder).

    backend: "auto" / "torch" / "triton" run the fused engine; "reference" the plain model.
    batch: consecutive images of one size run through the engine together, up to this many.
    on_error: "fail" stops at the first unreadable image; "skip" reports it on stderr and goes
        on (the returned list holds only the outputs written).
    Alpha channels are kept: resized with MATLAB-style bicubic, since the network is RGB only.
    """
    from .reference import check_device, parse_dtype
    from .weights import load_generator

    check_device(device)
    parse_dtype(dtype)
    if on_error not in ("fail", "skip"):
        raise ValueError(f"on_error must be fail or skip, got {on_error!r}")
    files = collect_inputs(inputs)
    outs = _output_paths(files, Path(output))
    check_outputs(files, outs)
    net = load_generator(model)
    engine = None
    if backend != "reference":
        from .engine import Engine

        engine = Engine(net, device=device, dtype=dtype, backend=backend, tile=tile)
    if batch < 1:
        raise ValueError(f"--batch must be at least 1, got {batch}")
    bar = None
    if progress and len(files) > 1:
        from tqdm import tqdm

        bar = tqdm(total=len(files), desc="upscale", unit="img", file=sys.stderr)
    pending: list[tuple] = []

    def flush():
        if not pending:
            return
        if engine is not None:
            srs = list(engine.upscale(np.stack([p[1] for p in pending])))
        else:
            from .reference import upscale_reference

            srs = [upscale_reference(net, p[1], device=device, dtype=dtype) for p in pending]
        for (dst, _, alpha), sr in zip(pending, srs):
            save_output(dst, sr, alpha)
            written.append(dst)
        if bar is not None:
            bar.update(len(pending))
        pending.clear()

    written: list[Path] = []
    skipped = 0
    for src, dst in zip(files, outs):
        try:
            loaded = load_input(src, on_error)
        except ImageError:
            flush()  # what was read before the bad file is still written
            raise
        if loaded is None:
            skipped += 1
            if bar is not None:
                bar.update(1)
            continue
        rgb, alpha = loaded
        if pending and pending[0][1].shape != rgb.shape:
            flush()
        pending.append((dst, rgb, alpha))
        if len(pending) >= batch:  # written as soon as done: a later failure loses nothing
            flush()
    flush()
    if bar is not None:
        bar.close()
    if skipped:
        print(f"upscale: {skipped} of {len(files)} input(s) skipped", file=sys.stderr)
    return written
