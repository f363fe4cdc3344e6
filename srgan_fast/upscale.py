"""`srgan-fast upscale`: image files in, upscaled image files out."""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path

import numpy as np

from .errors import UsageError
from .images import IMAGE_SUFFIXES, ImageError, image_size, list_images, load_image, save_image
from .metrics import imresize
from .options import RunOptions

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


DEFAULT_MAX_PIXELS = 4096 * 4096  # input pixels; a 16 Mpx photo becomes 268 Mpx at x4
_ANNOUNCE_PIXELS = 512 * 512  # inputs this large get a size/time estimate (a short probe run)


def _check_size(src: Path, max_pixels: int | None, on_error: str) -> bool:
    """True when `src` is within `max_pixels`; else an ImageError, or False under "skip"."""
    if not max_pixels:
        return True
    try:
        w, h = image_size(src)
    except ImageError as e:
        if on_error == "fail":
            raise
        print(f"upscale: skipped {e}", file=sys.stderr)
        return False
    if w * h <= max_pixels:
        return True
    msg = (
        f"{src}: {w}x{h} is {w * h / 1e6:.1f} Mpx, over --max-pixels {max_pixels} ({max_pixels / 1e6:.1f} Mpx); "
        "raise --max-pixels (0 = no limit) if you mean it"
    )
    if on_error == "fail":
        raise ImageError(msg)
    print(f"upscale: skipped {msg}", file=sys.stderr)
    return False


def _announce(engine, shape, src: Path, progress: bool):
    """For a large input: print its size and estimated time, and return a per-tile progress
    callback (a tqdm bar) when it is tiled; None otherwise."""
    n, h, w = shape[:3]
    if h * w < _ANNOUNCE_PIXELS:
        return None
    est = engine.estimate(h, w, n, timed=True)
    print(f"upscale: {src.name}: {w}x{h} -> {est.describe()} on {engine.device}", file=sys.stderr)
    if not progress or est.tile is None:
        return None
    from tqdm import tqdm

    bar = tqdm(total=est.tiles, desc=f"tiles of {src.name}", unit="tile", file=sys.stderr, leave=False)

    def update(done, total):
        bar.update(done - bar.n)
        if done >= total:
            bar.close()

    return update


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
    options: RunOptions | str | None = None,
    *,
    batch: int = 1,
    on_error: str = "fail",
    progress: bool = True,
    max_pixels: int | None = DEFAULT_MAX_PIXELS,
    **overrides,
) -> list[Path]:
    """Upscale images (files or folders) into `output` (a file for one input, else a folder).

    options: a RunOptions (model, device, dtype, backend, tile), or a model name; keyword
        overrides of the same names (`model=`, `device=`, ...) apply on top. backend "reference"
        runs the plain model, the others the fused engine.
    batch: consecutive images of one size run through the engine together, up to this many.
    on_error: "fail" stops at the first unreadable image; "skip" reports it on stderr and goes
        on (the returned list holds only the outputs written).
    max_pixels: refuse (or skip) inputs with more pixels than this (width x height, read from
        the header before decoding); 0 or None: no limit. Large jobs say up front how big they
        are and how long they should take here, and show progress per tile.
    Alpha channels are kept: resized with MATLAB-style bicubic, since the network is RGB only.
    """
    from .stream import group_same_shape
    from .weights import load_generator

    if isinstance(options, str):  # upscale_files(inputs, output, "srresnet_x4") as in 0.1
        options, overrides = None, {"model": options, **overrides}
    opts = RunOptions.resolve(options, **overrides)
    if on_error not in ("fail", "skip"):
        raise ValueError(f"on_error must be fail or skip, got {on_error!r}")
    if batch < 1:
        raise ValueError(f"--batch must be at least 1, got {batch}")
    if max_pixels is not None and max_pixels < 0:
        raise ValueError(f"--max-pixels must be 0 (no limit) or positive, got {max_pixels}")
    files = collect_inputs(inputs)
    outs = _output_paths(files, Path(output))
    net = load_generator(opts.model)  # a bad --model fails before any output folder is made
    check_outputs(files, outs)
    engine = opts.engine(net)
    bar = None
    if progress and len(files) > 1:
        from tqdm import tqdm

        bar = tqdm(total=len(files), desc="upscale", unit="img", file=sys.stderr)
    skipped = 0
    failure: list[ImageError] = []

    def loaded():
        nonlocal skipped
        for src, dst in zip(files, outs):
            try:
                got = load_input(src, on_error) if _check_size(src, max_pixels, on_error) else None
            except ImageError as e:  # end the stream: what was read before the bad file is still written
                failure.append(e)
                return
            if got is None:
                skipped += 1
                if bar is not None:
                    bar.update(1)
                continue
            yield dst, got[0], got[1], src

    written: list[Path] = []
    for group in group_same_shape(loaded(), batch, key=lambda item: item[1].shape):
        lr = np.stack([item[1] for item in group])
        srs = engine.upscale(lr, progress=_announce(engine, lr.shape, group[0][3], progress))
        for (dst, _, alpha, _), sr in zip(group, srs):
            save_output(dst, sr, alpha)
            written.append(dst)
        if bar is not None:
            bar.update(len(group))
    if bar is not None:
        bar.close()
    if failure:
        raise failure[0]
    if skipped:
        print(f"upscale: {skipped} of {len(files)} input(s) skipped", file=sys.stderr)
    return written
