"""Frames in, frames out: what the engine accepts and how it gives results back.

`as_nhwc` turns any supported frame(s) into an NHWC tensor plus a note of how to give the
result back; `give_back` does that. `nv12_to_rgb` / `rgb_to_nv12` adapt decoder planes on
either side (colour conversion: srgan_fast.io.yuv, csrc/frame_io*). The rules are listed in
srgan_fast/engine.py's docstring and tested in tests/engine/test_engine.py.
"""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np
import torch

__all__ = ["as_nhwc", "give_back", "nv12_to_rgb", "rgb_to_nv12"]


def as_nhwc(frames: Any) -> tuple[torch.Tensor, dict]:
    """Any supported frame(s) -> (NHWC tensor, how to give the result back)."""
    meta: dict = {}
    if isinstance(frames, np.ndarray):
        meta["kind"] = "numpy"
        if frames.size == 0:
            raise ValueError(f"empty frame: shape {frames.shape}")
        if frames.dtype == np.float64:
            frames = frames.astype(np.float32)
        if frames.dtype not in (np.uint8, np.uint16, np.float32, np.float16):
            raise TypeError(f"unsupported array dtype {frames.dtype}; use uint8, uint16 or float in [0, 1]")
        if frames.dtype == np.uint16:
            meta["u16"] = True
            frames = frames.astype(np.float32) / 65535.0
        with warnings.catch_warnings():
            # np.asarray(PIL image) is read-only; the engine never writes into its input, so
            # torch's "not writable" warning would only be noise on ordinary input
            warnings.filterwarnings("ignore", message="The given NumPy array is not writable")
            t = torch.from_numpy(np.ascontiguousarray(frames))  # copies negative-stride views
    elif isinstance(frames, torch.Tensor):
        meta["kind"] = "torch"
        meta["device"] = frames.device
        if frames.numel() == 0:
            raise ValueError(f"empty frame: shape {tuple(frames.shape)}")
        t = frames
        if t.dtype == torch.float64:
            t = t.float()
        if t.dtype not in (torch.uint8, torch.float32, torch.float16, torch.bfloat16):
            raise TypeError(f"unsupported tensor dtype {t.dtype}; use uint8 or float in [0, 1]")
    elif hasattr(frames, "__dlpack__"):  # CuPy, JAX, ... : zero-copy through DLPack
        meta["kind"] = "dlpack"
        meta["module"] = type(frames).__module__.split(".")[0]
        t = torch.from_dlpack(frames)
        meta["device"] = t.device
        if t.numel() == 0:
            raise ValueError(f"empty frame: shape {tuple(t.shape)}")
        if t.dtype == torch.float64:
            t = t.float()
        if t.dtype not in (torch.uint8, torch.float32, torch.float16, torch.bfloat16):
            raise TypeError(f"unsupported dtype {t.dtype}; use uint8 or float in [0, 1]")
    else:
        raise TypeError(f"expected a numpy array, torch tensor or DLPack array, got {type(frames).__name__}")
    if t.dim() not in (3, 4):
        raise ValueError(f"expected HxWxC or NxHxWxC, got shape {tuple(t.shape)}")
    meta["batched"] = t.dim() == 4
    if t.dim() == 3:
        t = t[None]
    c = t.shape[-1]
    if c not in (1, 3):
        if t.shape[1] in (1, 3) and c not in (1, 2, 4):
            raise ValueError(
                f"shape {tuple(t.shape[1:] if not meta['batched'] else t.shape)} looks channels-first "
                "(CHW); pass HxWxC (e.g. x.permute(1, 2, 0) or np.moveaxis(x, 0, -1))"
            )
        if c == 4:
            raise ValueError("4 channels (RGBA?): pass RGB; upscale_files keeps alpha (bicubic)")
        raise ValueError(f"expected 1 (gray) or 3 (RGB) channels, got {c}")
    if t.is_floating_point():
        finite = torch.isfinite(t).all()
        if not bool(finite):
            raise ValueError("input contains NaN or Inf")
        t = t.float().clamp(0.0, 1.0)
    if c == 1:
        t = t.expand(*t.shape[:-1], 3)
    meta["u8"] = t.dtype == torch.uint8
    return t, meta


def give_back(y: torch.Tensor, meta: dict):
    if not meta["batched"]:
        y = y[0]
    if meta.get("u16"):
        y = torch.floor(y.float() * 65535.0 + 0.5).clamp(0, 65535).to(torch.int32)
    if meta["kind"] == "numpy":
        a = y.cpu().numpy()
        return a.astype(np.uint16) if meta.get("u16") else a
    y = y.to(meta["device"])
    if meta["kind"] == "dlpack":
        if meta["module"] == "cupy":
            import cupy

            return cupy.from_dlpack(y)
        return y  # other producers get a torch tensor (itself a DLPack producer)
    return y


def nv12_to_rgb(y, uv, matrix: int = 709, full_range: bool = False):
    """Decoder planes (numpy, or torch on CPU/CUDA) -> an HxWx3 uint8 RGB frame of the same kind."""
    from .io import yuv as fio

    return fio.yuv420_to_rgb(y, uv, fmt="nv12", matrix=matrix, full_range=full_range, out_dtype="u8")


def rgb_to_nv12(rgb, matrix: int = 709, full_range: bool = False):
    """An HxWx3 uint8 RGB frame -> (y, uv) planes for an encoder, of the same kind."""
    from .io import yuv as fio

    if isinstance(rgb, torch.Tensor):
        rgb = rgb.contiguous()
    return fio.rgb_to_yuv420(rgb, fmt="nv12", matrix=matrix, full_range=full_range)
