"""The rrdbnet plan: the module compiled into fused ops."""

from __future__ import annotations

import torch
from torch import nn

from ...plan import INPUT, OUT_MAP_CLAMP, Plan, PlanBuilder, const_slope
from .arch import LRELU, RES_SCALE, RRDBNet


def nearest_subpixel_weight(w: torch.Tensor, b: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """A KxK conv applied to a x2 nearest-upsampled map, as a conv on the map itself with 4x the
    outputs (one per output phase, PixelShuffle(2) order) followed by PixelShuffle(2).

    Output pixel (2Y+i, 2X+j) sums w[o, c, dy+R, dx+R] * A[c, (2Y+i+dy) // 2, (2X+j+dx) // 2]: the
    tap lands on the low-resolution pixel Y + (i+dy) // 2, so the phase-(i, j) kernel is the KxK
    taps summed onto a (2*ceil(R/2)+1)^2 kernel (3x3 for K=3). Zero padding maps to zero padding
    (row -1 at the high resolution is row -1 below). Returns (weight, bias) in fp32."""
    cout, c, k, _ = w.shape
    r = k // 2
    ru = (r + 1) // 2
    ku = 2 * ru + 1
    wu = torch.zeros(cout * 4, c, ku, ku, dtype=torch.float64)
    wd = w.double()
    for i in range(2):
        for j in range(2):
            for dy in range(-r, r + 1):
                for dx in range(-r, r + 1):
                    wu[i * 2 + j :: 4, :, (i + dy) // 2 + ru, (j + dx) // 2 + ru] += wd[:, :, dy + r, dx + r]
    return wu.float().contiguous(), b.detach().float().repeat_interleave(4).contiguous()


def _wb(conv: nn.Conv2d, scale: float = 1.0) -> tuple[torch.Tensor, torch.Tensor]:
    return (conv.weight.detach().double() * scale).float().contiguous(), (conv.bias.detach().double() * scale).float()


def compile_rrdbnet_plan(model: RRDBNet) -> Plan:
    """An RRDBNet as 15 * num_block + 6 fused ops (see the module docstring)."""
    cfg = model.config
    f, g = cfg.num_feat, cfg.num_grow_ch
    plan = PlanBuilder(cfg, cfg.num_in_ch)
    emit = plan.emit  # a dense conv writes a slice of the wide value `dst` (at `dst_off`)

    # each value below that an RDB reads is the prefix of its wide buffer (f + 4g channels)
    feat = x = emit("head", INPUT, *_wb(model.conv_first))
    for rrdb in model.body:
        rrdb_in = x
        for j, rdb in enumerate((rrdb.rdb1, rrdb.rdb2, rrdb.rdb3)):
            for i, conv in enumerate(rdb.convs()[:4]):  # conv_i writes channels f + i*g .. of x's buffer
                emit("dense_conv", x, *_wb(conv), dst=x, dst_off=f + i * g, prelu=const_slope(LRELU, g))
            if j < 2:  # rdb: 0.2 * conv5 + x, written as the next RDB's input
                x = emit("dense_out", x, *_wb(rdb.conv5, RES_SCALE), skip=x)
            else:  # rrdb: 0.2 * (0.2 * conv5 + r2) + rrdb_in, r2 the first f channels conv5 reads
                w, b = _wb(rdb.conv5, RES_SCALE * RES_SCALE)
                w = w.double()
                w[:, :f, 1, 1] += RES_SCALE * torch.eye(f, dtype=torch.float64)
                x = emit("rrdb_out", x, w.float().contiguous(), b, skip=rrdb_in)
    x = emit("trunk_end", x, *_wb(model.conv_body), skip=feat)
    s = 1
    for up in (model.conv_up1, model.conv_up2):
        x = emit("upsample", x, *nearest_subpixel_weight(up.weight.detach(), up.bias.detach()),
                 prelu=const_slope(LRELU, f), shuffle=True, shuffle_r=2, scale_in=s)  # fmt: skip
        s *= 2
    x = emit("hr_conv", x, *_wb(model.conv_hr), prelu=const_slope(LRELU, f), scale_in=s)
    emit("tail", x, *_wb(model.conv_last), out_map=OUT_MAP_CLAMP, scale_in=s)
    return plan.build(source=model)  # the sub-pixel convs do the network's MACs
