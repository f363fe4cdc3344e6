"""Reading and writing images as uint8 RGB arrays, with every PNG flavour handled explicitly.

* RGB / RGBA / palette / gray / gray+alpha / CMYK / YCbCr 8-bit images load as HxWx3 uint8.
* Grayscale (mode L, e.g. Set14's bridge.png) is expanded to three equal channels: the
  network is RGB, and the Y channel of an expanded gray image is an affine map of the gray
  value, so scores stay meaningful.
* Alpha (RGBA, LA, palette with transparency) is returned separately; callers decide what to
  do with it (upscale keeps it, bicubic-resized; see `upscale`).
* 16-bit grayscale PNGs (modes I;16, I) are reduced to 8 bits by rounding v / 257.
"""

from __future__ import annotations

import os
import struct
from pathlib import Path

import numpy as np

from .errors import UserError

__all__ = ["ImageError", "load_image", "save_image", "IMAGE_SUFFIXES", "list_images", "image_size"]

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp")


class ImageError(UserError, ValueError):
    """An image file is missing, unreadable, hostile or of an unsupported kind."""


def load_image(path: str | os.PathLike, with_alpha: bool = False):
    """Load `path` as an HxWx3 uint8 RGB array (and an HxW uint8 alpha or None if asked).

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
    try:
        with Image.open(path) as im:
            frames = getattr(im, "n_frames", 1)
            # MPO: a camera JPEG whose extra frames are previews or a stereo pair; frame 0 is the photo
            if frames > 1 and im.format != "MPO":
                raise ImageError(
                    f"{path}: has {frames} frames ({im.format}, animated or multi-page); srgan-fast upscale takes "
                    "single images: upscale an animation with `srgan-fast video` or extract its frames first"
                )
            im.load()
            im = ImageOps.exif_transpose(im) or im
            rgb, alpha = _to_rgb_alpha(im, path)
    except UnidentifiedImageError:
        raise ImageError(f"{path}: not an image Pillow can read") from None
    except Image.DecompressionBombError as e:
        raise ImageError(f"{path}: refused, too many pixels for an image file ({e})") from None
    except (OSError, ValueError, SyntaxError, EOFError, struct.error) as e:
        if isinstance(e, ImageError):
            raise
        raise ImageError(f"{path}: unreadable image ({type(e).__name__}: {e})") from None
    return (rgb, alpha) if with_alpha else rgb


def _to_rgb_alpha(im, path):
    mode = im.mode
    if mode in ("I;16", "I;16B", "I;16L", "I"):
        a = np.asarray(im, dtype=np.float64)
        top = 65535.0 if mode.startswith("I;16") or a.max() > 255 else 255.0
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


def save_image(path: str | os.PathLike, rgb: np.ndarray, alpha: np.ndarray | None = None) -> None:
    """Save an HxWx3 uint8 array (plus optional HxW alpha) to `path`; folders are created."""
    from PIL import Image

    if rgb.dtype != np.uint8 or rgb.ndim != 3 or rgb.shape[2] != 3:
        raise ValueError(f"save_image needs HxWx3 uint8, got {rgb.dtype} {rgb.shape}")
    path = Path(path)
    fmt = Image.registered_extensions().get(path.suffix.lower())
    if fmt is None:
        raise ImageError(f"{path}: unknown image suffix; use one of {', '.join(IMAGE_SUFFIXES)}")
    if alpha is not None:
        if alpha.shape != rgb.shape[:2]:
            raise ValueError(f"alpha {alpha.shape} does not match image {rgb.shape[:2]}")
        if fmt in ("JPEG", "BMP"):
            raise ImageError(f"{path}: {fmt} cannot hold the input's alpha channel; write .png, .webp or .tiff")
        im = Image.fromarray(np.dstack([rgb, alpha]), "RGBA")
    else:
        im = Image.fromarray(np.ascontiguousarray(rgb), "RGB")
    path.parent.mkdir(parents=True, exist_ok=True)
    # written under a temporary name and renamed: a killed run never leaves half an image
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        im.save(tmp, format=fmt)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def list_images(folder: str | os.PathLike) -> list[Path]:
    """Image files directly in `folder`, sorted by name."""
    folder = Path(folder)
    if not folder.is_dir():
        raise ImageError(f"{folder}: not a folder")
    return sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)


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
