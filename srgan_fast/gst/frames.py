"""Raw video buffers <-> RGB frames for the `srganfast` element (numpy; no gi, no torch).

A buffer is described as GstVideoInfo describes it: a format, width, height, and per plane an
offset and a row stride in bytes (rows are padded, e.g. RGB rows to 4 bytes). The colour
conversions are the package's own (srgan_fast.io.yuv, csrc/frame_io.h): BT.601 or BT.709,
limited or full range, the same code `Engine.upscale_nv12` and `srgan-fast video` use, so the
element's output equals theirs exactly.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["FORMATS", "Layout", "unpack", "pack", "to_rgb", "from_rgb"]

FORMATS = ("RGB", "NV12", "I420")


@dataclass(frozen=True)
class Layout:
    """Where a frame's planes lie in a buffer (bytes), as a GstVideoInfo (or a GstVideoMeta) says."""

    format: str
    width: int
    height: int
    offsets: tuple[int, ...]
    strides: tuple[int, ...]
    size: int

    @property
    def planes(self) -> list[tuple[int, int]]:
        """(rows, bytes per row) of each plane."""
        w, h = self.width, self.height
        ch, cw = (h + 1) // 2, (w + 1) // 2
        planes = {"RGB": [(h, 3 * w)], "NV12": [(h, w), (ch, 2 * cw)], "I420": [(h, w), (ch, cw), (ch, cw)]}
        return planes[self.format]

    def with_planes(self, offsets: tuple[int, ...], strides: tuple[int, ...]) -> Layout:
        """The same frame with planes at other offsets and row strides (a GstVideoMeta's: a decoder's
        padded rows); the size is the end of the last byte any plane reads."""
        if len(offsets) != len(self.planes) or len(strides) != len(self.planes):
            raise ValueError(f"{self.format} has {len(self.planes)} planes, got {len(offsets)} offsets and "
                             f"{len(strides)} strides")  # fmt: skip
        size = 0
        for (rows, row_bytes), off, stride in zip(self.planes, offsets, strides):
            if off < 0 or stride < row_bytes:
                raise ValueError(f"{self.format} plane at offset {off} with stride {stride}: the stride must be at "
                                 f"least the row's {row_bytes} bytes and the offset not negative")  # fmt: skip
            size = max(size, off + stride * (rows - 1) + row_bytes)
        return Layout(self.format, self.width, self.height, tuple(offsets), tuple(strides), size)


def unpack(data, layout: Layout) -> list[np.ndarray]:
    """A buffer's bytes -> views of its planes (RGB: one (h, w, 3) plane; NV12: y (h, w) and
    uv (ch, 2*cw); I420: y, u, v). The views keep the row stride (no copy)."""
    buf = np.frombuffer(data, dtype=np.uint8)
    if buf.size < layout.size:
        raise ValueError(f"buffer of {buf.size} bytes is smaller than a {layout.format} frame ({layout.size} bytes)")
    out = []
    for (rows, row_bytes), off, stride in zip(layout.planes, layout.offsets, layout.strides):
        plane = np.lib.stride_tricks.as_strided(buf[off:], shape=(rows, row_bytes), strides=(stride, 1))
        out.append(plane.reshape(rows, row_bytes // 3, 3) if layout.format == "RGB" else plane)
    return out


def pack(planes: list[np.ndarray], layout: Layout) -> bytes:
    """Planes -> a buffer's bytes in `layout` (row padding zero-filled)."""
    buf = np.zeros(layout.size, dtype=np.uint8)
    for plane, (rows, row_bytes), off, stride in zip(planes, layout.planes, layout.offsets, layout.strides):
        dst = np.lib.stride_tricks.as_strided(buf[off:], shape=(rows, row_bytes), strides=(stride, 1))
        dst[...] = np.asarray(plane).reshape(rows, row_bytes)
    return buf.tobytes()


def to_rgb(planes: list[np.ndarray], fmt: str, matrix: int = 709, full_range: bool = False) -> np.ndarray:
    """Planes of one frame -> a new (h, w, 3) uint8 RGB array (never a view of the planes)."""
    if fmt == "RGB":  # a copy: the planes may view a buffer mapping that ends after this call
        return np.array(planes[0], copy=True, order="C")
    from ..io.yuv import yuv420_to_rgb

    if fmt == "NV12":
        return yuv420_to_rgb(planes[0], planes[1], fmt="nv12", matrix=matrix, full_range=full_range, out_dtype="u8")
    return yuv420_to_rgb(
        planes[0], planes[1], planes[2], fmt="i420", matrix=matrix, full_range=full_range, out_dtype="u8"
    )


def from_rgb(rgb: np.ndarray, fmt: str, matrix: int = 709, full_range: bool = False) -> list[np.ndarray]:
    """(h, w, 3) uint8 RGB -> the planes of `fmt`."""
    if fmt == "RGB":
        return [rgb]
    from ..io.yuv import rgb_to_yuv420

    return list(rgb_to_yuv420(np.ascontiguousarray(rgb), fmt=fmt.lower(), matrix=matrix, full_range=full_range))
