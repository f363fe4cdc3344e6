"""Pure-PyTorch references: the one copy that tests, benchmarks and the CLI compare against."""

from __future__ import annotations

import copy

import numpy as np
import torch
import torch.nn.functional as F

from .models import Generator, to_unit_range

__all__ = [
    "DTYPES",
    "parse_dtype",
    "check_device",
    "to_uint8",
    "upscale_reference",
    "conv2d_fused_reference",
    "run_plan_reference",
]

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
        raise FloatingPointError(f"the model produced non-finite values in {dt} (fp16 overflow?); rerun with fp32")
    return to_uint8(to_unit_range(y.float()))[0].permute(1, 2, 0).cpu().numpy()


def conv2d_fused_reference(
    x: torch.Tensor,
    weight: torch.Tensor,
    bias: torch.Tensor,
    prelu: torch.Tensor | None = None,
    skip: torch.Tensor | None = None,
    shuffle: bool = False,
    out_map: bool = False,
    out_u8: bool = False,
) -> torch.Tensor:
    """The math of one fused op (see srgan_fast.plan), in plain PyTorch, NCHW.

    conv (stride 1, zero padding K//2) + bias -> [PixelShuffle(2)] -> [PReLU] -> [+ skip]
    -> [map [-1, 1] to [0, 1] and clamp] -> [round to uint8].
    """
    y = F.conv2d(x, weight, bias, padding=weight.shape[-1] // 2)
    if shuffle:
        y = F.pixel_shuffle(y, 2)
    if prelu is not None:
        y = F.prelu(y, prelu)
    if skip is not None:
        y = y + skip
    if out_map:
        y = ((y + 1.0) * 0.5).clamp(0.0, 1.0)
        if out_u8:
            y = to_uint8(y)
    return y


def run_plan_reference(plan, x: torch.Tensor) -> torch.Tensor:
    """Execute a Plan op by op with `conv2d_fused_reference` (NCHW, input in [0, 1])."""
    head = block_in = None
    for op in plan.ops:
        skip = {"block": block_in, "head": head, None: None}[op.skip]
        if op.kind == "block_conv1":
            block_in = x
        x = conv2d_fused_reference(x, op.weight, op.bias, op.prelu, skip, op.shuffle, op.out_map)
        if op.kind == "head":
            head = x
    return x
