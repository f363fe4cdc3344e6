"""The msrresnet plan: the module compiled into fused ops."""

from __future__ import annotations

import torch

from ...plan import INPUT, OUT_MAP_CLAMP, FusedOp, Plan, assign_buffers, fold_bn
from .arch import LRELU, MSRResNet


def compile_msrresnet_plan(model: MSRResNet) -> Plan:
    """An MSRResNet as 2 * num_block + log2(upscale) + 3 fused ops (see the module docstring)."""
    cfg = model.config
    f = cfg.num_feat
    ops: list[FusedOp] = []
    values: dict[str, tuple[int, int]] = {INPUT: (cfg.num_in_ch, 1)}

    def emit(kind, src, conv, skip=None, **kw) -> str:
        op = FusedOp(kind, *fold_bn(conv, None), src=src, skip=skip, dst=f"v{len(ops)}", **kw)
        ops.append(op)
        values[op.dst] = (op.out_channels, op.scale_out)
        return op.dst

    def lrelu():
        return torch.full((f,), LRELU)

    x = emit("head", INPUT, model.conv_first, prelu=lrelu())
    for blk in model.body:
        t = emit("block_conv1", x, blk.conv1, prelu=torch.zeros(f))  # ReLU: slope 0
        x = emit("block_conv2", t, blk.conv2, skip=x)
    s = 1
    for up in model.upconvs():
        x = emit("upsample", x, up, prelu=lrelu(), shuffle=True, shuffle_r=2, scale_in=s)
        s *= 2
    x = emit("hr_conv", x, model.conv_hr, prelu=lrelu(), scale_in=s)
    emit("tail", x, model.conv_last, skip=INPUT, skip_up=s, skip_mode="bilinear", out_map=OUT_MAP_CLAMP, scale_in=s)
    model_macs = sum(op.macs_per_lr_pixel() for op in ops)
    buffers = assign_buffers(ops, values)
    return Plan(cfg, ops, model_macs, buffers, source=model)
