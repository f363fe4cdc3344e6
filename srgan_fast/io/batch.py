"""`srgan-fast upscale`: image files in, upscaled image files out."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import numpy as np

from ..errors import UsageError
from ..options import RunOptions
from ..quality.metrics import imresize
from .images import IMAGE_SUFFIXES, ImageError, image_size, list_images_report, load_image, save_image
from .paths import check_outputs  # lives in paths.py (shared by four commands); srgan_fast.io.batch still offers it

__all__ = [
    "upscale_files", "collect_inputs", "check_outputs", "load_input", "save_output", "TINY_SIDE",
    "check_size", "output_paths",
]  # fmt: skip


def load_input(src: Path, on_error: str, *, depth16: bool = False, info: dict | None = None):
    """(rgb, alpha) of an input image; None when it is unreadable and on_error is "skip"
    (the reason goes to stderr). The single-process and the Ray paths share this.
    depth16 / info: as `images.load_image` (16-bit files as uint16; ICC profile and depth)."""
    try:
        return load_image(src, with_alpha=True, depth16=depth16, info=info)
    except ImageError as e:
        if on_error == "fail":
            raise
        print(f"upscale: skipped {e}", file=sys.stderr)
        return None


def save_output(dst: Path, sr, alpha, *, icc_profile: bytes | None = None, quality: int | None = None) -> None:
    """Write an upscaled image; an alpha channel is resized with MATLAB-style bicubic. The output
    folder was made (and probed) by `check_outputs` before any work: found gone, it is an error
    (io.paths.OutputFolderGone), never silently made again."""
    a = None
    if alpha is not None:
        a = imresize(alpha, output_shape=sr.shape[:2])
        if a.dtype != np.uint8:  # 16-bit alpha: imresize returns float
            a = np.clip(np.floor(a + 0.5), 0, np.iinfo(alpha.dtype).max).astype(alpha.dtype)
    save_image(dst, sr, a, icc_profile=icc_profile, quality=quality, make_folders=False)


def collect_inputs(inputs: list[str | os.PathLike], notes: list[str] | None = None) -> list[Path]:
    """Expand folders into their images; every named path must exist. What a folder holds
    besides images directly in it (subfolders, files without an image suffix) is not read,
    and said in one line per folder: appended to `notes`, or printed on stderr now."""
    out: list[Path] = []
    for i in inputs:
        p = Path(i)
        if p.is_dir():
            imgs, other = list_images_report(p)
            if not imgs:
                raise ImageError(f"{p}: folder holds no images ({', '.join(IMAGE_SUFFIXES)})")
            if other:
                note = f"upscale: {p}: not read: {_describe_skipped(other)}"
                if notes is None:
                    print(note, file=sys.stderr)
                else:
                    notes.append(note)
            out += imgs
        elif p.exists():
            out.append(p)
        else:
            raise ImageError(f"{p}: no such file or folder")
    if not out:
        raise ImageError("no input images given")
    return out


def _describe_skipped(paths: list[Path]) -> str:
    def some(ps):
        names = [q.name for q in ps]
        return ", ".join(names[:5]) + (", ..." if len(names) > 5 else "")

    subs = [q for q in paths if q.is_dir()]
    files = [q for q in paths if not q.is_dir()]
    parts = []
    if subs:
        parts.append(f"{len(subs)} subfolder(s) ({some(subs)}; name them to upscale them)")
    if files:
        parts.append(f"{len(files)} file(s) without an image suffix ({some(files)}; {', '.join(IMAGE_SUFFIXES)})")
    return " and ".join(parts)


# Images under TINY_SIDE pixels on a side are padded on that side by edge replication to
# PAD_TO pixels, upscaled, and cropped back: at 1-2 pixels the network's zero padding
# outweighs the pixels themselves (a 1x1 red image came out grey, mean error 55 codes; padded
# to 8: 1.2 codes). From 3 pixels on, the image is upscaled as it is (3x3: 6 codes, the
# border effect every image has at its edges).
TINY_SIDE = 3
PAD_TO = 8


def upscale_padded(engine, lr: np.ndarray, progress=None) -> np.ndarray:
    """engine.upscale(lr) for an NxHxWx3 batch, with sides under TINY_SIDE edge-padded to
    PAD_TO and the output cropped back to H*s x W*s."""
    n, h, w, _ = lr.shape
    if h >= TINY_SIDE and w >= TINY_SIDE:
        return engine.upscale(lr, progress=progress)
    ph, pw = (PAD_TO - h if h < TINY_SIDE else 0), (PAD_TO - w if w < TINY_SIDE else 0)
    top, left = ph // 2, pw // 2
    padded = np.pad(lr, ((0, 0), (top, ph - top), (left, pw - left), (0, 0)), mode="edge")
    s = engine.scale
    return engine.upscale(padded, progress=progress)[:, top * s : (top + h) * s, left * s : (left + w) * s]


def _say_what_is_lost(src: Path, dst: Path, info: dict, notes: list[str]) -> None:
    """One line (into `notes`) for what the output cannot keep of the input: 16 bits per
    channel, an ICC profile."""
    if info.get("bits") == 16 and not info.get("bits_kept"):
        why = (
            f"{dst.suffix} holds 8 bits per channel here; write .png to keep 16"
            if dst.suffix.lower() != ".png"
            else "16-bit colour needs PyAV to be read in full (pip install av)"
        )
        notes.append(f"upscale: {src}: 16-bit image written with 8 bits per channel ({why})")
    if info.get("icc_profile") and dst.suffix.lower() == ".bmp":
        notes.append(f"upscale: {src}: its ICC colour profile is dropped (BMP cannot hold one; write .png, .jpg, "
                     ".webp or .tiff to keep it)")  # fmt: skip


DEFAULT_MAX_PIXELS = 4096 * 4096  # input pixels; a 16 Mpx photo becomes 268 Mpx at x4
_ANNOUNCE_PIXELS = 512 * 512  # inputs this large get a size/time estimate (a short probe run)


def check_size(src: Path, max_pixels: int | None, on_error: str) -> bool:
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


def output_paths(inputs: list[Path], output: Path) -> list[Path]:
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


def upscale_files(
    inputs: list[str | os.PathLike],
    output: str | os.PathLike,
    options: RunOptions | str | None = None,
    *,
    batch: int = 1,
    on_error: str = "fail",
    progress: bool = True,
    max_pixels: int | None = DEFAULT_MAX_PIXELS,
    quality: int | None = None,
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
    quality: JPEG/WebP quality 1-100 (default images.DEFAULT_QUALITY, 95).
    Alpha channels are kept: resized with MATLAB-style bicubic, since the network is RGB only.
    Kept too: the ICC profile (where the output format holds one; BMP: said on stderr) and
    16 bits per channel into .png (into other formats: 8 bits, said on stderr). Images of 1-2
    pixels on a side are padded by edge replication and cropped back (TINY_SIDE).
    """
    from ..stream import group_same_shape
    from ..weights import load_generator

    if isinstance(options, str):  # upscale_files(inputs, output, "srresnet_x4") as in 0.1
        options, overrides = None, {"model": options, **overrides}
    opts = RunOptions.resolve(options, **overrides)
    if on_error not in ("fail", "skip"):
        raise ValueError(f"on_error must be fail or skip, got {on_error!r}")
    if batch < 1:
        raise ValueError(f"--batch must be at least 1, got {batch}")
    if max_pixels is not None and max_pixels < 0:
        raise ValueError(f"--max-pixels must be 0 (no limit) or positive, got {max_pixels}")
    if quality is not None and not (isinstance(quality, int) and 1 <= quality <= 100):
        raise ValueError(f"--quality must be an integer from 1 to 100, got {quality!r}")
    notes: list[str] = []  # said at the end, so that an error stays the only line
    files = collect_inputs(inputs, notes)
    outs = output_paths(files, Path(output))
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
            info: dict = {}
            png = dst.suffix.lower() == ".png"
            try:
                ok = check_size(src, max_pixels, on_error)
                got = load_input(src, on_error, depth16=png, info=info) if ok else None
            except ImageError as e:  # end the stream: what was read before the bad file is still written
                failure.append(e)
                return
            if got is None:
                skipped += 1
                if bar is not None:
                    bar.update(1)
                continue
            _say_what_is_lost(src, dst, info, notes)
            yield dst, got[0], got[1], src, info.get("icc_profile")

    written: list[Path] = []
    for group in group_same_shape(loaded(), batch, key=lambda item: (item[1].shape, item[1].dtype)):
        lr = np.stack([item[1] for item in group])
        srs = upscale_padded(engine, lr, progress=_announce(engine, lr.shape, group[0][3], progress))
        for (dst, _, alpha, _, icc), sr in zip(group, srs):
            save_output(dst, sr, alpha, icc_profile=icc, quality=quality)
            written.append(dst)
        if bar is not None:
            bar.update(len(group))
    if bar is not None:
        bar.close()
    if failure:
        raise failure[0]
    for note in notes:
        print(note, file=sys.stderr)
    if skipped:
        print(f"upscale: {skipped} of {len(files)} input(s) skipped", file=sys.stderr)
    return written
