"""Backend "torch": the fused plan with aten ops (BN folded, channels_last); the CPU path."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ..plan import OUT_MAP_CLAMP, FusedOp, Plan
from ..reference import to_uint8
from .base import PlanRunner
from .registry import Backend


class TorchRunner(PlanRunner):
    """aten ops per fused op, NCHW tensors in channels_last memory (NHWC bytes): the CPU path
    and a second reference."""

    name = "torch"
    slack = 2.0  # shuffle copies and conv temporaries beside the plan's buffers

    def __init__(self, plan: Plan, device: torch.device, dtype: torch.dtype):
        super().__init__(plan.to(device=device, dtype=dtype), device, dtype)

    def prepare_conv2d_fused(self, op: FusedOp):
        return op.weight.contiguous(memory_format=torch.channels_last)

    def prepare_resblock_fused(self, op: FusedOp):
        return tuple(w.contiguous(memory_format=torch.channels_last) for w in (op.weight, op.weight2))

    def enter(self, x):
        x = x.permute(0, 3, 1, 2)  # NHWC bytes viewed as NCHW channels_last
        x = x.to(self.dtype) / 255.0 if x.dtype == torch.uint8 else x.to(self.dtype)
        return x.contiguous(memory_format=torch.channels_last)

    def leave(self, y):
        return y.permute(0, 2, 3, 1)

    def __call__(self, x, out_u8):
        if self.device.type != "cuda" or self.dtype != torch.float32:
            return super().__call__(x, out_u8)
        # fp32 is the parity mode: no TF32 in cuDNN (its default for fp32 convolutions); every
        # other cuDNN setting stays the caller's (flags() would reset benchmark/deterministic)
        cudnn = torch.backends.cudnn
        with cudnn.flags(
            enabled=cudnn.enabled, benchmark=cudnn.benchmark, deterministic=cudnn.deterministic, allow_tf32=False
        ):
            return super().__call__(x, out_u8)

    def conv2d_fused(self, op, weight, src, skip, out_u8):
        y = F.conv2d(src, weight, op.bias, padding=op.k // 2)
        if op.shuffle:
            y = F.pixel_shuffle(y, op.shuffle_r).contiguous(memory_format=torch.channels_last)
        if op.prelu is not None:
            y = F.prelu(y, op.prelu)
        if skip is not None:
            if op.skip_up != 1 and op.skip_mode == "bilinear":  # the network input (MSRResNet)
                skip = F.interpolate(skip, scale_factor=op.skip_up, mode="bilinear", align_corners=False)
            elif op.skip_up != 1:  # the network input, nearest-upsampled (SRVGGNetCompact)
                skip = F.interpolate(skip, scale_factor=op.skip_up, mode="nearest")
            y.add_(skip)
        if op.out_map == OUT_MAP_CLAMP:
            y = y.float().clamp_(0.0, 1.0)
        elif op.out_map:
            y = y.float().add_(1.0).mul_(0.5).clamp_(0.0, 1.0)
        if op.out_map and out_u8:
            y = to_uint8(y)  # (the one rounding rule: half up)
        return y

    def resblock_fused(self, op, weights, src, skip, out_u8):
        # two aten convs: the same math as two conv2d_fused ops, so fused plans run here too
        w1, w2 = weights
        t = F.prelu(F.conv2d(src, w1, op.bias, padding=op.k // 2), op.prelu)
        return F.conv2d(t, w2, op.bias2, padding=int(w2.shape[-1]) // 2).add_(src)


BACKENDS = (
    Backend(
        "torch",
        TorchRunner,
        "the fused plan with aten ops (BN folded, channels_last): the CPU path",
        auto_devices=("cpu", "cuda"),
        priority=1,
        bench_devices=("cpu", "cuda"),
    ),
)
