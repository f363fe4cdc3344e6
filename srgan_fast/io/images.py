"""Reading and writing images as RGB arrays, with every PNG flavour handled explicitly.

* RGB / RGBA / palette / gray / gray+alpha / CMYK / YCbCr 8-bit images load as HxWx3 uint8.
* Grayscale (mode L, e.g. Set14's bridge.png) is expanded to three equal channels: the
  network is RGB, and the Y channel of an expanded gray image is an affine map of the gray
  value, so scores stay meaningful.
* Alpha (RGBA, LA, palette with transparency) is returned separately; callers decide what to
  do with it (upscale keeps it, bicubic-resized; see `upscale`).
* 16-bit images (16-bit PNG and TIFF, gray or colour, with or without alpha) load as uint8,
  rounding v / 257, unless `depth16=True`: then as uint16, all 16 bits (16-bit colour through
  PyAV, since Pillow reads it as 8 bits; without PyAV they stay 8-bit and `info` says so).
  `save_image` writes uint16 arrays as 16-bit PNG.
* `info` (a dict the caller passes) receives what the pixels alone do not carry: the ICC
  profile ("icc_profile", bytes or None), the bit depth of the file ("bits", 8 or 16) and
  whether the returned array kept it ("bits_kept"). `save_image(..., icc_profile=)` writes
  the profile back, so colour-managed viewers show the output as the input.
"""

from __future__ import annotations

import errno
import os
import struct
import zlib
from pathlib import Path

import numpy as np

from ..errors import UserError

__all__ = [
    "ImageError",
    "load_image",
    "save_image",
    "IMAGE_SUFFIXES",
    "list_images",
    "list_images_report",
    "image_size",
    "check_target",
    "DEFAULT_QUALITY",
]

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp")
# JPEG/WebP quality when none is given: Pillow's own default (75 JPEG, 80 WebP) throws away
# the detail the network just added; 95 with 4:4:4 chroma keeps it at about 2x the size
DEFAULT_QUALITY = 95


class ImageError(UserError, ValueError):
    """An image file is missing, unreadable, hostile or of an unsupported kind."""


def load_image(path: str | os.PathLike, with_alpha: bool = False, *, depth16: bool = False, info: dict | None = None):
    """Load `path` as an HxWx3 RGB array (and an HxW alpha or None if asked): uint8, or uint16
    for a 16-bit file when `depth16` is set. `info`, if given, is filled in (module docstring).

    The EXIF orientation tag is applied, as image viewers do (a portrait phone JPEG comes out
    portrait). Refused with an ImageError, never a traceback: files whose header claims more
    than Pillow's decompression-bomb limit (`PIL.Image.MAX_IMAGE_PIXELS`, 89 Mpx, x2) before
    anything is decoded, and animated or multi-frame files (GIF, APNG, WebP, TIFF pages),
    which are not one image (camera MPO JPEGs load their main picture).
    """
    from PIL import Image, ImageOps, UnidentifiedImageError

    path = Path(path)
    if not path.exists():
        raise ImageError(f"{path}: no such file")
    if path.is_dir():
        raise ImageError(f"{path}: is a folder, not an image")
    info = {} if info is None else info
    try:
        with Image.open(path) as im:
            frames = getattr(im, "n_frames", 1)
            # MPO: a camera JPEG whose extra frames are previews or a stereo pair; frame 0 is the photo
            if frames > 1 and im.format != "MPO":
                raise ImageError(
                    f"{path}: has {frames} frames ({im.format}, animated or multi-page); srgan-fast upscale takes "
                    "single images: upscale an animation with `srgan-fast video` or extract its frames first"
                )
            bits = 16 if _is_16bit(im) else 8
            info.update(icc_profile=im.info.get("icc_profile") or None, bits=bits, bits_kept=bits == 8)
            if depth16 and bits == 16 and im.mode not in _GRAY16:
                # Pillow reads 16-bit colour as 8 bits: decode the file with FFmpeg instead
                got = _load_16bit_colour(path, im.mode == "RGBA", _orientation(im))
                if got is not None:
                    info["bits_kept"] = True
                    return got if with_alpha else got[0]
            im.load()
            im = ImageOps.exif_transpose(im) or im
            rgb, alpha = _to_rgb_alpha(im, path, depth16)
            if rgb.dtype == np.uint16:
                info["bits_kept"] = True
    except UnidentifiedImageError:
        raise ImageError(f"{path}: not an image Pillow can read") from None
    except Image.DecompressionBombError as e:
        raise ImageError(f"{path}: refused, too many pixels for an image file ({e})") from None
    except (OSError, ValueError, SyntaxError, EOFError, struct.error) as e:
        if isinstance(e, ImageError):
            raise
        raise ImageError(f"{path}: unreadable image ({type(e).__name__}: {e})") from None
    return (rgb, alpha) if with_alpha else rgb


_GRAY16 = ("I;16", "I;16B", "I;16L", "I")


def _is_16bit(im) -> bool:
    """16 bits per channel in the file (Pillow reports 16-bit colour as mode RGB/RGBA and
    says so only in the raw mode of its decoder tiles)."""
    if im.mode in ("I;16", "I;16B", "I;16L"):
        return True
    if im.mode == "I":  # a 16-bit gray PNG in older Pillow; a 32-bit TIFF otherwise
        return im.format == "PNG"
    if im.format not in ("PNG", "TIFF"):  # BMP's "BGR;16" is 16 bits per pixel (5-6-5), not per channel
        return False
    return any(";16" in str(getattr(t, "args", t[3] if len(t) > 3 else "")) for t in (im.tile or []))


def _orientation(im) -> int:
    try:
        return int(im.getexif().get(0x0112, 1))
    except Exception:  # a broken EXIF block is ignored, as exif_transpose does
        return 1


def _apply_orientation(a: np.ndarray, o: int) -> np.ndarray:
    """ImageOps.exif_transpose on an HxW(xC) array."""
    t = (1, 0) + tuple(range(2, a.ndim))
    ops = {
        2: lambda x: x[:, ::-1],
        3: lambda x: x[::-1, ::-1],
        4: lambda x: x[::-1],
        5: lambda x: x.transpose(t),
        6: lambda x: np.rot90(x, k=-1),
        7: lambda x: x[::-1, ::-1].transpose(t),
        8: lambda x: np.rot90(x, k=1),
    }
    return np.ascontiguousarray(ops[o](a)) if o in ops else a


def _load_16bit_colour(path: Path, has_alpha: bool, orientation: int):
    """(rgb uint16, alpha uint16 or None) of a 16-bit colour file decoded by FFmpeg (PyAV), or
    None when PyAV is missing or cannot decode it (the caller then reads 8 bits)."""
    try:
        import av
    except ImportError:
        return None
    try:
        with av.open(str(path)) as c:
            frame = next(c.decode(video=0))
            a = frame.to_ndarray(format="rgba64le" if has_alpha else "rgb48le")
    except (av.error.FFmpegError, StopIteration, ValueError, IndexError):
        return None
    a = _apply_orientation(a, orientation)
    if has_alpha:
        return np.ascontiguousarray(a[..., :3]), np.ascontiguousarray(a[..., 3])
    return np.ascontiguousarray(a), None


def _to_rgb_alpha(im, path, depth16: bool = False):
    mode = im.mode
    if mode in _GRAY16:
        a = np.asarray(im, dtype=np.float64)
        sixteen = mode.startswith("I;16") or im.format == "PNG" or a.max() > 255
        top = 65535.0 if sixteen else 255.0
        if depth16 and sixteen:
            g = np.clip(a, 0, 65535).astype(np.uint16)
        else:
            g = np.clip(np.floor(a * (255.0 / top) + 0.5), 0, 255).astype(np.uint8)
        return np.repeat(g[:, :, None], 3, axis=2), None
    if mode == "F":
        raise ImageError(f"{path}: floating-point images (mode F) are not supported")
    if mode == "P":
        im = im.convert("RGBA" if "transparency" in im.info else "RGB")
        mode = im.mode
    if mode in ("1", "L"):
        g = np.asarray(im.convert("L"))
        return np.repeat(g[:, :, None], 3, axis=2).copy(), None
    if mode == "LA":
        la = np.asarray(im)
        return np.repeat(la[:, :, :1], 3, axis=2).copy(), la[:, :, 1].copy()
    if mode in ("RGBA", "RGBa"):
        a = np.asarray(im.convert("RGBA"))
        return a[:, :, :3].copy(), a[:, :, 3].copy()
    return np.asarray(im.convert("RGB")).copy(), None


def check_target(path: str | os.PathLike) -> None:
    """Refuse to write over anything but a regular file (or nothing): writers rename a finished
    temporary file over the target, which would replace a device node, a FIFO or a socket
    (`/dev/full` run as root) with a plain file."""
    p = Path(path)
    if os.path.lexists(p) and not p.is_file():
        what = "a folder" if p.is_dir() else "not a regular file"
        raise ImageError(f"{p}: is {what}; refusing to replace it, give the path of a file to write")


def save_image(
    path: str | os.PathLike,
    rgb: np.ndarray,
    alpha: np.ndarray | None = None,
    *,
    icc_profile: bytes | None = None,
    quality: int | None = None,
    make_folders: bool = True,
) -> None:
    """Save an HxWx3 uint8 (or uint16: 16-bit PNG) array, plus optional HxW alpha of the same
    dtype, to `path`. `icc_profile` is embedded (PNG, JPEG, WebP, TIFF). `quality` (1-100) is for
    JPEG and WebP; default DEFAULT_QUALITY (95, JPEG 4:4:4 chroma). Folders are created unless
    `make_folders` is False: then a missing folder is `OutputFolderGone` (a command that made its
    output folder up front and finds it gone must fail, not silently make it again)."""
    from PIL import Image

    if rgb.dtype not in (np.uint8, np.uint16) or rgb.ndim != 3 or rgb.shape[2] != 3:
        raise ValueError(f"save_image needs HxWx3 uint8 (or uint16), got {rgb.dtype} {rgb.shape}")
    if quality is not None and not (isinstance(quality, int) and 1 <= quality <= 100):
        raise ValueError(f"--quality must be an integer from 1 to 100, got {quality!r}")
    path = Path(path)
    fmt = Image.registered_extensions().get(path.suffix.lower())
    if fmt is None:
        raise ImageError(f"{path}: unknown image suffix; use one of {', '.join(IMAGE_SUFFIXES)}")
    if alpha is not None:
        if alpha.shape != rgb.shape[:2]:
            raise ValueError(f"alpha {alpha.shape} does not match image {rgb.shape[:2]}")
        if fmt in ("JPEG", "BMP"):
            raise ImageError(f"{path}: {fmt} cannot hold the input's alpha channel; write .png, .webp or .tiff")
    sixteen = rgb.dtype == np.uint16
    if sixteen and fmt != "PNG":
        raise ImageError(f"{path}: 16-bit output needs .png ({fmt} is written with 8 bits per channel here)")
    check_target(path)
    if make_folders:
        path.parent.mkdir(parents=True, exist_ok=True)
    elif not path.parent.is_dir():
        from .paths import OutputFolderGone

        raise OutputFolderGone(errno.ENOENT, f"the output folder {path.parent} is gone (removed while the run went "
                               "on?); nothing more was saved", str(path))  # fmt: skip
    kw: dict = {}
    if icc_profile and fmt in ("PNG", "JPEG", "WEBP", "TIFF"):
        kw["icc_profile"] = icc_profile
    if fmt in ("JPEG", "WEBP"):
        kw["quality"] = DEFAULT_QUALITY if quality is None else quality
        if fmt == "JPEG" and kw["quality"] >= 90:
            kw["subsampling"] = 0  # 4:4:4: the upscaled chroma is detail too
    from .paths import atomic_output

    # written under a temporary name, fsync'ed and renamed (io.paths.atomic_output): a killed run
    # or a full disk never leaves half an image, and the previous file stays until the new one is whole
    with atomic_output(path) as tmp:
        if sixteen:
            a = rgb if alpha is None else np.dstack([rgb, alpha.astype(np.uint16)])
            tmp.write_bytes(_png16(a, icc_profile))
        else:
            arr = np.ascontiguousarray(rgb) if alpha is None else np.dstack([rgb, alpha.astype(np.uint8)])
            Image.fromarray(arr, "RGB" if alpha is None else "RGBA").save(tmp, format=fmt, **kw)


def _png16(a: np.ndarray, icc_profile: bytes | None = None) -> bytes:
    """A 16-bit PNG (RGB or RGBA, HxWxC uint16) with an optional iCCP chunk: Pillow cannot
    write 16-bit colour."""
    h, w, c = a.shape
    rows = np.empty((h, 1 + w * c * 2), np.uint8)
    rows[:, 0] = 0  # filter type None
    rows[:, 1:] = np.ascontiguousarray(a.astype(">u2")).view(np.uint8).reshape(h, -1)

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    out = b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 16, 6 if c == 4 else 2, 0, 0, 0))
    if icc_profile:
        out += chunk(b"iCCP", b"ICC profile\x00\x00" + zlib.compress(icc_profile))
    return out + chunk(b"IDAT", zlib.compress(rows.tobytes(), 6)) + chunk(b"IEND", b"")


def list_images(folder: str | os.PathLike) -> list[Path]:
    """Image files directly in `folder`, sorted by name."""
    return list_images_report(folder)[0]


def list_images_report(folder: str | os.PathLike) -> tuple[list[Path], list[Path]]:
    """(image files directly in `folder`, sorted; what else is there and is not read: subfolders
    and files without an image suffix, hidden files excepted)."""
    folder = Path(folder)
    if not folder.is_dir():
        raise ImageError(f"{folder}: not a folder")
    images, other = [], []
    for p in sorted(folder.iterdir()):
        if p.suffix.lower() in IMAGE_SUFFIXES and not p.is_dir():
            images.append(p)
        elif not p.name.startswith("."):
            other.append(p)
    return images, other


def image_size(path: str | os.PathLike) -> tuple[int, int]:
    """(width, height) from the file's header, without decoding the pixels."""
    import warnings

    from PIL import Image, UnidentifiedImageError

    try:
        with warnings.catch_warnings():  # only the header is read: a large size is the caller's call
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(path) as im:
                return im.size
    except Image.DecompressionBombError as e:
        raise ImageError(f"{path}: refused, too many pixels for an image file ({e})") from None
    except (OSError, UnidentifiedImageError) as e:
        raise ImageError(f"{path}: not an image Pillow can read ({e})") from None
