"""The paper's network compiled into fused ops (the plan docs/architecture.md draws)."""

from __future__ import annotations

from ...plan import INPUT, Plan, PlanBuilder, fold_bn, prelu_weight, subpixel_tail_weight
from .arch import Generator


def compile_generator(generator: Generator, subpixel_tail: bool = True) -> Plan:
    """Turn a (trained) Generator into a Plan. BN uses its running statistics (eval mode).

    subpixel_tail: run the 9x9 tail (3 outputs) on the last upsample's unshuffled 4C-channel
    map as a 5x5 conv with 12 outputs and shuffle in its store (`subpixel_tail_weight`): the
    last upsample then stores unshuffled (its PReLU repeated per phase). Exact, and 3 outputs
    padded to a 16-wide matrix tile waste 5.3x where 12 waste 1.3x.
    """
    g = generator
    c = g.config.channels
    plan = PlanBuilder(g.config, g.config.in_channels)
    emit = plan.emit
    head = emit("head", INPUT, *fold_bn(g.conv_first, None), prelu=prelu_weight(g.act_first, c))
    x = head
    for blk in g.body:
        t = emit("block_conv1", x, *fold_bn(blk.conv1, blk.bn1), prelu=prelu_weight(blk.act, c))
        x = emit("block_conv2", t, *fold_bn(blk.conv2, blk.bn2), skip=x)
    x = emit("trunk_end", x, *fold_bn(g.conv_body, g.bn_body), skip=head)
    s = 1
    n_up = len(g.upsample)
    for j, up in enumerate(g.upsample):
        w, b = fold_bn(up.conv, None)
        a = prelu_weight(up.act, c)
        if subpixel_tail and j == n_up - 1:
            # the last upsample stores unshuffled; the tail below shuffles (PReLU per phase)
            x = emit("upsample", x, w, b, prelu=a.repeat_interleave(4), scale_in=s)
        else:
            x = emit("upsample", x, w, b, prelu=a, shuffle=True, scale_in=s)
            s *= 2
    w, b = fold_bn(g.conv_last, None)
    s_tail = s * 2 if subpixel_tail and n_up else s  # the tail's resolution in the network itself
    model_macs = sum(op.macs_per_lr_pixel() for op in plan.ops) + w[0].numel() * w.shape[0] * s_tail**2
    if subpixel_tail and n_up:
        emit("tail", x, subpixel_tail_weight(w), b.repeat_interleave(4).contiguous(), out_map=True, shuffle=True,
             scale_in=s)  # fmt: skip
    else:
        emit("tail", x, w, b, out_map=True, scale_in=s)
    return plan.build(source=g, model_macs=model_macs)
