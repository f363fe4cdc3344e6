"""The srvgg_compact plan: the module compiled into fused ops."""

from __future__ import annotations

from torch import nn

from ...plan import INPUT, OUT_MAP_CLAMP, Plan, PlanBuilder, const_slope, fold_bn, prelu_weight
from .arch import ACTS, SRVGGNetCompact


def compile_compact_plan(model: SRVGGNetCompact) -> Plan:
    """An SRVGGNetCompact as num_conv + 2 fused ops (see the module docstring)."""
    cfg = model.config
    convs = [m for m in model.body if isinstance(m, nn.Conv2d)]
    acts = [m for m in model.body if not isinstance(m, nn.Conv2d)]
    f = cfg.num_feat
    plan = PlanBuilder(cfg, cfg.num_in_ch)
    x = INPUT
    for i, (conv, act) in enumerate(zip(convs[:-1], acts)):
        slopes = prelu_weight(act, f) if cfg.act_type == "prelu" else const_slope(ACTS[cfg.act_type], f)
        x = plan.emit("head" if i == 0 else "body_conv", x, *fold_bn(conv, None), prelu=slopes)
    r = cfg.upscale
    plan.emit("tail", x, *fold_bn(convs[-1], None), shuffle=True, shuffle_r=r, skip=INPUT, skip_up=r,
              out_map=OUT_MAP_CLAMP)  # fmt: skip
    return plan.build(source=model)
