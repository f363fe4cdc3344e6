"""Frame format conversion on CPU or GPU through the native extension srgan_fast._C.

    rgb = yuv420_to_rgb(y, uv)                          # NV12 from a decoder -> HxWx3 float
    y, uv = rgb_to_yuv420(rgb_u8, fmt="nv12")           # back, for an encoder

Arrays: numpy (CPU) or torch tensors (CPU or CUDA; CUDA needs the extension built with
nvcc). Planes may have a row pitch larger than their width (views into decoder surfaces);
elements within a row must be contiguous. The result is allocated as the input's kind, on
its device. Formulas and rounding: csrc/frame_io.h; numpy reference: srgan_fast.io.yuv_reference.
"""

from __future__ import annotations

import numpy as np

__all__ = ["native", "yuv420_to_rgb", "rgb_to_yuv420", "packed_to_nhwc", "nhwc_to_packed"]

_DT = {"f32": "f32", "float32": "f32", "f16": "f16", "float16": "f16", "u8": "u8", "uint8": "u8"}


def native():
    """The compiled extension; a clear error when it was not built."""
    try:
        from .. import _C
    except ImportError as e:
        raise ImportError(
            "srgan_fast._C (csrc/ frame I/O) is not built: reinstall from a checkout with a C++ compiler "
            "(`pip install -e .`, or `python setup.py build_ext --inplace`; CUDA kernels need nvcc)"
        ) from e
    return _C


def _info(a, name: str):
    """(pointer, row pitch in bytes, is_cuda, stream) of a 2-D or 3-D array with contiguous rows."""
    try:
        import torch
    except ImportError:  # pragma: no cover - torch is a dependency
        torch = None
    if torch is not None and isinstance(a, torch.Tensor):
        if a.stride(-1) != 1 or (a.dim() == 3 and a.stride(-2) != a.shape[-1]):
            raise ValueError(f"{name}: elements within a row must be contiguous, got strides {a.stride()}")
        cuda = a.is_cuda
        stream = torch.cuda.current_stream(a.device).cuda_stream if cuda else 0
        return a.data_ptr(), a.stride(0) * a.element_size(), cuda, stream
    if isinstance(a, np.ndarray):
        if a.strides[-1] != a.itemsize or (a.ndim == 3 and a.strides[-2] != a.shape[-1] * a.itemsize):
            raise ValueError(f"{name}: elements within a row must be contiguous, got strides {a.strides}")
        return a.ctypes.data, a.strides[0], False, 0
    raise TypeError(f"{name}: expected a numpy array or torch tensor, got {type(a).__name__}")


def _empty_like(ref, shape, dtype: str):
    if isinstance(ref, np.ndarray):
        return np.empty(shape, dtype={"f32": np.float32, "f16": np.float16, "u8": np.uint8}[dtype])
    import torch

    td = {"f32": torch.float32, "f16": torch.float16, "u8": torch.uint8}[dtype]
    return torch.empty(shape, dtype=td, device=ref.device)


def _dtype_name(a) -> str:
    s = str(a.dtype).replace("torch.", "")
    if s not in _DT:
        raise TypeError(f"unsupported dtype {a.dtype}; use uint8, float16 or float32")
    return _DT[s]


def _check_u8(a, name):
    if _dtype_name(a) != "u8":
        raise TypeError(f"{name} must be uint8, got {a.dtype}")


def yuv420_to_rgb(y, u, v=None, fmt="nv12", matrix=709, full_range=False, out_dtype="f32", bgr=False):
    """4:2:0 planes -> (h, w, 3) RGB. nv12: `u` is the interleaved UV plane (ceil(h/2), 2*ceil(w/2));
    i420: `u` and `v` are (ceil(h/2), ceil(w/2)). out_dtype f32/f16 (in [0, 1]) or u8."""
    C = native()
    if fmt not in ("nv12", "i420"):
        raise ValueError(f"fmt must be nv12 or i420, got {fmt!r}")
    if out_dtype not in _DT:
        raise ValueError(f"out_dtype must be f32, f16 or u8, got {out_dtype!r}")
    if y.ndim != 2:
        raise ValueError(f"y must be (h, w), got shape {tuple(y.shape)}")
    h, w = y.shape
    ch, cw = (h + 1) // 2, (w + 1) // 2
    _check_u8(y, "y")
    _check_u8(u, "u")
    want = (ch, 2 * cw) if fmt == "nv12" else (ch, cw)
    if tuple(u.shape[:2]) != want and not (fmt == "nv12" and tuple(u.shape) == (ch, cw, 2)):
        raise ValueError(
            f"{'uv' if fmt == 'nv12' else 'u'} plane must be {want} for a {h}x{w} frame, got {tuple(u.shape)}"
        )
    if fmt == "i420":
        if v is None or tuple(v.shape) != (ch, cw):
            raise ValueError(f"i420 needs a v plane of {(ch, cw)}")
        _check_u8(v, "v")
    yp, ypitch, cuda, stream = _info(y, "y")
    up, upitch, ucuda, _ = _info(u, "u")
    vp, vpitch, vcuda = (0, 0, cuda) if v is None else _info(v, "v")[:3]
    if not (cuda == ucuda == vcuda):
        raise ValueError("all planes must be on the same device")
    out = _empty_like(y, (h, w, 3), _DT[out_dtype])
    op, _, _, _ = _info(out, "out")
    C.yuv420_to_rgb(fmt, yp, ypitch, up, upitch, vp, vpitch, op, _DT[out_dtype], h, w, matrix, full_range, bgr,
                    cuda, stream)  # fmt: skip
    return out


def rgb_to_yuv420(rgb, fmt="nv12", matrix=709, full_range=False, bgr=False):
    """(h, w, 3) RGB (uint8, or float in [0, 1]; rows may be pitched) -> (y, uv) for nv12 or
    (y, u, v) for i420, uint8, rounded and clamped."""
    C = native()
    if fmt not in ("nv12", "i420"):
        raise ValueError(f"fmt must be nv12 or i420, got {fmt!r}")
    if rgb.ndim != 3 or rgb.shape[2] != 3:
        raise ValueError(f"rgb must be (h, w, 3), got shape {tuple(rgb.shape)}")
    h, w = rgb.shape[:2]
    ch, cw = (h + 1) // 2, (w + 1) // 2
    dt = _dtype_name(rgb)
    ip, ipitch_bytes, cuda, stream = _info(rgb, "rgb")
    item = {"f32": 4, "f16": 2, "u8": 1}[dt]
    y = _empty_like(rgb, (h, w), "u8")
    if fmt == "nv12":
        uv = _empty_like(rgb, (ch, 2 * cw), "u8")
        planes = (y, uv)
        (yp, ypp, _, _), (up, upp, _, _) = _info(y, "y"), _info(uv, "uv")
        vp, vpp = 0, 0
    else:
        u, v = _empty_like(rgb, (ch, cw), "u8"), _empty_like(rgb, (ch, cw), "u8")
        planes = (y, u, v)
        (yp, ypp, _, _), (up, upp, _, _), (vp, vpp, _, _) = _info(y, "y"), _info(u, "u"), _info(v, "v")
    C.rgb_to_yuv420(fmt, ip, dt, ipitch_bytes // item, yp, ypp, up, upp, vp, vpp, h, w, matrix, full_range, bgr,
                    cuda, stream)  # fmt: skip
    return planes


def packed_to_nhwc(packed, bgr=False, out_dtype="f32"):
    """(h, w, 3) uint8 RGB/BGR (rows may be pitched) -> contiguous (h, w, 3) RGB in [0, 1] (or u8)."""
    C = native()
    _check_u8(packed, "packed")
    if packed.ndim != 3 or packed.shape[2] != 3:
        raise ValueError(f"packed must be (h, w, 3), got shape {tuple(packed.shape)}")
    h, w = packed.shape[:2]
    ip, ipitch, cuda, stream = _info(packed, "packed")
    out = _empty_like(packed, (h, w, 3), _DT[out_dtype])
    C.packed_to_nhwc(ip, ipitch, bgr, _info(out, "out")[0], _DT[out_dtype], h, w, cuda, stream)
    return out


def nhwc_to_packed(x, bgr=False, out=None):
    """Contiguous (h, w, 3) RGB (f32/f16 in [0, 1], or u8) -> (h, w, 3) uint8 RGB/BGR, written into
    `out` (which may be a pitched view) when given."""
    C = native()
    if x.ndim != 3 or x.shape[2] != 3:
        raise ValueError(f"x must be (h, w, 3), got shape {tuple(x.shape)}")
    h, w = x.shape[:2]
    xp, xpitch, cuda, stream = _info(x, "x")
    if xpitch != w * 3 * x.element_size() if hasattr(x, "element_size") else xpitch != w * 3 * x.itemsize:
        raise ValueError("x must be contiguous (h, w, 3)")
    if out is None:
        out = _empty_like(x, (h, w, 3), "u8")
    if tuple(out.shape) != (h, w, 3):
        raise ValueError(f"out must be {(h, w, 3)}, got {tuple(out.shape)}")
    op, opitch, _, _ = _info(out, "out")
    C.nhwc_to_packed(xp, _dtype_name(x), op, opitch, bgr, h, w, cuda, stream)
    return out
