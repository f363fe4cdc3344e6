"""Pure-PyTorch references: the one copy that tests, benchmarks and the CLI compare against."""

from __future__ import annotations

import copy

import numpy as np
import torch
import torch.nn.functional as F

from .families.srresnet.arch import Generator, output_to_unit
from .runtime import check_device, parse_dtype

__all__ = [
    "to_uint8",
    "upscale_reference",
    "reference_forward",
    "conv2d_fused_reference",
    "resblock_fused_reference",
    "run_plan_reference",
    "register_reference",
    "REFERENCE_STEPS",
]


def to_uint8(y01: torch.Tensor) -> torch.Tensor:
    """[0, 1] float -> uint8, rounding half up (values are non-negative)."""
    return torch.floor(y01.float() * 255.0 + 0.5).clamp_(0, 255).to(torch.uint8)


def reference_forward(model: Generator, lr: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """The plain model on one HxWx3 frame (uint8, or float in [0, 1]) on the model's device;
    returns its raw 1x3xsHxsW output in [-1, 1]. The one copy that `upscale_reference` and the
    engine's "reference" backend share (so they agree bit for bit)."""
    x = lr.permute(2, 0, 1)[None]
    x = x.to(dtype) / 255.0 if x.dtype == torch.uint8 else x.to(dtype)
    return model(x)


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
    p0 = next(model.parameters())
    # never change the caller's model in place: cast a copy when device or dtype differ
    m = model if (p0.device == dev and p0.dtype == dt) else copy.deepcopy(model).to(dev, dt)
    y = reference_forward(m, torch.from_numpy(np.require(lr, requirements=("C", "W"))).to(dev), dt)
    if not torch.isfinite(y).all():
        raise FloatingPointError(f"the model produced non-finite values in {dt} (fp16 overflow?); rerun with fp32")
    return to_uint8(output_to_unit(m, y.float()))[0].permute(1, 2, 0).cpu().numpy()


def conv2d_fused_reference(
    x: torch.Tensor,
    weight: torch.Tensor,
    bias: torch.Tensor,
    prelu: torch.Tensor | None = None,
    skip: torch.Tensor | None = None,
    shuffle: bool = False,
    out_map: bool | int = False,
    out_u8: bool = False,
    shuffle_factor: int = 2,
    skip_upsample: int = 1,
    skip_mode: str = "nearest",
) -> torch.Tensor:
    """The math of one fused op (see srgan_fast.plan), in plain PyTorch, NCHW.

    conv (stride 1, zero padding K//2) + bias -> [PixelShuffle(shuffle_factor)] -> [PReLU]
    -> [+ skip, upsampled by skip_upsample: skip_mode "nearest", or "bilinear" as
    F.interpolate(align_corners=False)] -> [out_map 1: map [-1, 1] to [0, 1] and clamp; 2: clamp
    to [0, 1]] -> [round to uint8].
    """
    y = F.conv2d(x, weight, bias, padding=weight.shape[-1] // 2)
    if shuffle:
        y = F.pixel_shuffle(y, shuffle_factor)
    if prelu is not None:
        y = F.prelu(y, prelu)
    if skip is not None:
        if skip.dtype == torch.uint8:
            skip = skip.to(y.dtype) / 255.0
        if skip_mode not in ("nearest", "bilinear"):
            raise ValueError(f"skip_mode must be nearest or bilinear, got {skip_mode!r}")
        if skip_upsample != 1 and skip_mode == "bilinear":
            skip = F.interpolate(skip, scale_factor=skip_upsample, mode="bilinear", align_corners=False)
        elif skip_upsample != 1:
            skip = F.interpolate(skip, scale_factor=skip_upsample, mode="nearest")
        y = y + skip
    if int(out_map) == 2:
        y = y.clamp(0.0, 1.0)
    elif out_map:
        y = ((y + 1.0) * 0.5).clamp(0.0, 1.0)
    if out_map and out_u8:
        y = to_uint8(y)
    return y


def resblock_fused_reference(
    x: torch.Tensor,
    w1: torch.Tensor,
    b1: torch.Tensor,
    prelu: torch.Tensor,
    w2: torch.Tensor,
    b2: torch.Tensor,
) -> torch.Tensor:
    """A residual block with BN folded, in plain PyTorch, NCHW:
    y = x + conv2(PReLU(conv1(x) + b1)) + b2, both convs stride 1, zero padding K//2."""
    t = F.prelu(F.conv2d(x, w1, b1, padding=w1.shape[-1] // 2), prelu)
    return F.conv2d(t, w2, b2, padding=w2.shape[-1] // 2) + x


def _conv2d_fused_step(op, src, skip):
    return conv2d_fused_reference(src, op.weight, op.bias, op.prelu, skip, op.shuffle, op.out_map,
                                  shuffle_factor=op.shuffle_r, skip_upsample=op.skip_up,
                                  skip_mode=op.skip_mode)  # fmt: skip


def _resblock_fused_step(op, src, skip):
    return resblock_fused_reference(src, op.weight, op.bias, op.prelu, op.weight2, op.bias2)


def run_plan_reference(plan, x: torch.Tensor) -> torch.Tensor:
    """Execute a Plan op by op with the ops' PyTorch references (NCHW, input in [0, 1])."""

    def step(op, src, skip):
        if op.fn not in REFERENCE_STEPS:
            raise KeyError(f"no reference for fused op {op.fn!r}; register one with reference.register_reference")
        return REFERENCE_STEPS[op.fn](op, src, skip)

    return plan.run(x, step)


# fused op name -> its reference step, called with the plan's FusedOp, its input and skip (NCHW)
# (one name across kernel, reference, test and bench; `register_reference` adds one)
REFERENCE_STEPS = {"conv2d_fused": _conv2d_fused_step, "resblock_fused": _resblock_fused_step}


def register_reference(fn: str, step) -> None:
    """Make `run_plan_reference` run ops named `fn` with `step(op, src, skip) -> output`."""
    REFERENCE_STEPS[fn] = step
