"""Numpy reference of the frame I/O kernels in csrc/ (the copy their tests compare against).

Same formulas as csrc/frame_io.h, in float32, each product and sum in the same order, so
the C++ twins and the CUDA kernels (built without FMA contraction) equal it bit for bit.
YUV is 8-bit 4:2:0; chroma is upsampled by repetition (each sample covers its 2x2 block) and
downsampled as the mean RGB of each 2x2 block (odd edges replicate the last row/column).
"""

from __future__ import annotations

import numpy as np

__all__ = ["coeffs", "yuv420_to_rgb_ref", "rgb_to_yuv420_ref", "packed_to_nhwc_ref", "nhwc_to_packed_ref"]

f32 = np.float32


def coeffs(matrix: int = 709, full_range: bool = False) -> dict:
    if matrix not in (601, 709):
        raise ValueError(f"matrix must be 601 or 709, got {matrix}")
    kr, kb = (0.2126, 0.0722) if matrix == 709 else (0.299, 0.114)
    kg = 1.0 - kr - kb
    yr = 255.0 if full_range else 219.0
    cr = 255.0 if full_range else 224.0
    d = dict(
        kr=kr, kg=kg, kb=kb, rv=2.0 * (1.0 - kr), gu=2.0 * kb * (1.0 - kb) / kg, gv=2.0 * kr * (1.0 - kr) / kg,
        bu=2.0 * (1.0 - kb), cbs=1.0 / (2.0 * (1.0 - kb)), crs=1.0 / (2.0 * (1.0 - kr)),
        yoff=0.0 if full_range else 16.0, ys=1.0 / yr, yr=yr, cs=1.0 / cr, cr_=cr,
    )  # fmt: skip
    return {k: f32(v) for k, v in d.items()}


def _level(v: np.ndarray) -> np.ndarray:
    return np.clip(np.floor(v + f32(0.5)), 0, 255).astype(np.uint8)


def _unit(x: np.ndarray) -> np.ndarray:
    if x.dtype == np.uint8:
        return x.astype(f32) / f32(255.0)
    return np.clip(x.astype(f32), f32(0), f32(1))


def _store(x: np.ndarray, out_dtype: str) -> np.ndarray:
    if out_dtype in ("u8", "uint8"):
        return _level(np.clip(x, f32(0), f32(1)) * f32(255.0))
    if out_dtype in ("f16", "float16"):
        return x.astype(np.float16)
    return x


def yuv420_to_rgb_ref(y, u, v, matrix=709, full_range=False, out_dtype="f32", bgr=False) -> np.ndarray:
    """Y (h, w), U and V (ceil(h/2), ceil(w/2)) uint8 -> (h, w, 3) RGB (or BGR)."""
    c = coeffs(matrix, full_range)
    h, w = y.shape
    up = lambda p: np.repeat(np.repeat(p, 2, axis=0), 2, axis=1)[:h, :w].astype(f32)  # noqa: E731
    yy = (y.astype(f32) - c["yoff"]) * c["ys"]
    cb = (up(u) - f32(128.0)) * c["cs"]
    cr = (up(v) - f32(128.0)) * c["cs"]
    r = np.clip(yy + c["rv"] * cr, f32(0), f32(1))
    g = np.clip((yy - c["gu"] * cb) - c["gv"] * cr, f32(0), f32(1))
    b = np.clip(yy + c["bu"] * cb, f32(0), f32(1))
    rgb = np.stack([b, g, r] if bgr else [r, g, b], axis=-1)
    return _store(rgb, out_dtype)


def rgb_to_yuv420_ref(rgb, matrix=709, full_range=False, bgr=False):
    """(h, w, 3) RGB (uint8, or float in [0, 1]) -> Y (h, w), U, V (ceil(h/2), ceil(w/2)) uint8."""
    c = coeffs(matrix, full_range)
    x = _unit(rgb)
    r, g, b = (x[..., 2], x[..., 1], x[..., 0]) if bgr else (x[..., 0], x[..., 1], x[..., 2])

    def luma(r, g, b):
        return (c["kr"] * r + c["kg"] * g) + c["kb"] * b

    y = _level(c["yoff"] + c["yr"] * luma(r, g, b))
    h, w = r.shape
    pad = ((0, h % 2), (0, w % 2))

    def mean(p):
        p = np.pad(p, pad, mode="edge")
        return (((p[0::2, 0::2] + p[0::2, 1::2]) + p[1::2, 0::2]) + p[1::2, 1::2]) / f32(4.0)

    mr, mg, mb = mean(r), mean(g), mean(b)
    ym = luma(mr, mg, mb)
    u = _level(f32(128.0) + c["cr_"] * ((mb - ym) * c["cbs"]))
    v = _level(f32(128.0) + c["cr_"] * ((mr - ym) * c["crs"]))
    return y, u, v


def packed_to_nhwc_ref(packed: np.ndarray, bgr=False, out_dtype="f32") -> np.ndarray:
    x = packed[..., ::-1] if bgr else packed
    return _store(x.astype(f32) / f32(255.0), out_dtype)


def nhwc_to_packed_ref(x: np.ndarray, bgr=False) -> np.ndarray:
    u8 = _level(_unit(x) * f32(255.0)) if x.dtype != np.uint8 else x
    return np.ascontiguousarray(u8[..., ::-1] if bgr else u8)
