"""The srvgg_compact plan: the module compiled into fused ops."""

from __future__ import annotations

import torch
from torch import nn

from ...plan import INPUT, OUT_MAP_CLAMP, FusedOp, Plan, assign_buffers, fold_bn
from .arch import ACTS, SRVGGNetCompact


def _slopes(act: nn.Module, act_type: str, channels: int) -> torch.Tensor:
    if act_type == "prelu":
        a = act.weight.detach().float()
        return a.expand(channels).contiguous() if a.numel() == 1 else a.contiguous()
    return torch.full((channels,), ACTS[act_type])


def compile_compact_plan(model: SRVGGNetCompact) -> Plan:
    """An SRVGGNetCompact as num_conv + 2 fused ops (see the module docstring)."""
    cfg = model.config
    convs = [m for m in model.body if isinstance(m, nn.Conv2d)]
    acts = [m for m in model.body if not isinstance(m, nn.Conv2d)]
    ops: list[FusedOp] = []
    values: dict[str, tuple[int, int]] = {INPUT: (cfg.num_in_ch, 1)}
    x = INPUT
    for i, (conv, act) in enumerate(zip(convs[:-1], acts)):
        w, b = fold_bn(conv, None)
        op = FusedOp("head" if i == 0 else "body_conv", w, b, prelu=_slopes(act, cfg.act_type, cfg.num_feat),
                     src=x, dst=f"v{len(ops)}")  # fmt: skip
        ops.append(op)
        values[op.dst] = (op.out_channels, 1)
        x = op.dst
    w, b = fold_bn(convs[-1], None)
    r = cfg.upscale
    tail = FusedOp("tail", w, b, shuffle=True, shuffle_r=r, skip=INPUT, skip_up=r, out_map=OUT_MAP_CLAMP,
                   src=x, dst=f"v{len(ops)}")  # fmt: skip
    ops.append(tail)
    values[tail.dst] = (tail.out_channels, r)
    model_macs = sum(op.macs_per_lr_pixel() for op in ops)
    buffers = assign_buffers(ops, values)
    return Plan(cfg, ops, model_macs, buffers, source=model)
