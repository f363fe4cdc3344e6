"""The msrresnet plan: the module compiled into fused ops."""

from __future__ import annotations

from ...plan import INPUT, OUT_MAP_CLAMP, Plan, PlanBuilder, const_slope, fold_bn
from .arch import LRELU, MSRResNet


def compile_msrresnet_plan(model: MSRResNet) -> Plan:
    """An MSRResNet as 2 * num_block + log2(upscale) + 3 fused ops (see the module docstring)."""
    cfg = model.config
    f = cfg.num_feat
    plan = PlanBuilder(cfg, cfg.num_in_ch)
    emit = plan.emit
    x = emit("head", INPUT, *fold_bn(model.conv_first, None), prelu=const_slope(LRELU, f))
    for blk in model.body:
        t = emit("block_conv1", x, *fold_bn(blk.conv1, None), prelu=const_slope(0.0, f))  # ReLU: slope 0
        x = emit("block_conv2", t, *fold_bn(blk.conv2, None), skip=x)
    s = 1
    for up in model.upconvs():
        x = emit("upsample", x, *fold_bn(up, None), prelu=const_slope(LRELU, f), shuffle=True, shuffle_r=2, scale_in=s)
        s *= 2
    x = emit("hr_conv", x, *fold_bn(model.conv_hr, None), prelu=const_slope(LRELU, f), scale_in=s)
    emit("tail", x, *fold_bn(model.conv_last, None), skip=INPUT, skip_up=s, skip_mode="bilinear",
         out_map=OUT_MAP_CLAMP, scale_in=s)  # fmt: skip
    return plan.build(source=model)
