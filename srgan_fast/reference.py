"""Pure-PyTorch references: the one copy that tests, benchmarks and the CLI compare against."""

from __future__ import annotations

import copy

import numpy as np
import torch

from .models import Generator, to_unit_range

__all__ = ["DTYPES", "parse_dtype", "check_device", "to_uint8", "upscale_reference"]

DTYPES = {
    "fp32": torch.float32,
    "float32": torch.float32,
    "fp16": torch.float16,
    "float16": torch.float16,
    "half": torch.float16,
    "bf16": torch.bfloat16,
    "bfloat16": torch.bfloat16,
}


def parse_dtype(name: str | torch.dtype) -> torch.dtype:
    if isinstance(name, torch.dtype):
        if name not in (torch.float32, torch.float16, torch.bfloat16):
            raise ValueError(f"unsupported dtype {name}; use fp32, fp16 or bf16")
        return name
    try:
        return DTYPES[name.lower()]
    except KeyError:
        raise ValueError(f"unknown dtype {name!r}; use fp32, fp16 or bf16") from None


def check_device(device: str | torch.device) -> torch.device:
    """A torch.device that exists on this machine, or a ValueError that says why not."""
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError):
        raise ValueError(f"unknown device {device!r}; use cpu, cuda or cuda:N") from None
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(f"device {device!r} asked for, but this machine has no CUDA GPU")
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise ValueError(f"device {device!r}: only {torch.cuda.device_count()} GPU(s) here")
    elif dev.type != "cpu":
        raise ValueError(f"unsupported device {device!r}; use cpu or cuda")
    return dev


def to_uint8(y01: torch.Tensor) -> torch.Tensor:
    """[0, 1] float -> uint8, rounding half up (values are non-negative)."""
    return torch.floor(y01.float() * 255.0 + 0.5).clamp_(0, 255).to(torch.uint8)


@torch.inference_mode()
def upscale_reference(
    model: Generator,
    lr: np.ndarray,
    device: str | torch.device = "cpu",
    dtype: str | torch.dtype = "fp32",
) -> np.ndarray:
    """Upscale one HxWx3 uint8 image with the plain model; returns sHxsWx3 uint8."""
    if lr.dtype != np.uint8 or lr.ndim != 3 or lr.shape[2] != 3:
        raise ValueError(f"expected an HxWx3 uint8 image, got {lr.dtype} {lr.shape}")
    dev = check_device(device)
    dt = parse_dtype(dtype)
    x = torch.from_numpy(np.ascontiguousarray(lr)).to(dev).permute(2, 0, 1)[None]
    x = x.to(dt) / 255.0
    p0 = next(model.parameters())
    # never change the caller's model in place: cast a copy when device or dtype differ
    m = model if (p0.device == dev and p0.dtype == dt) else copy.deepcopy(model).to(dev, dt)
    y = m(x)
    if not torch.isfinite(y).all():
        raise FloatingPointError(
            f"the model produced non-finite values in {dt} (fp16 overflow?); rerun with fp32"
        )
    return to_uint8(to_unit_range(y.float()))[0].permute(1, 2, 0).cpu().numpy()
