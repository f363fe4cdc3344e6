"""Inference plan: the generator as a list of fused ops, BN folded, receptive radius known.

Every op is one `conv2d_fused`: a KxK convolution with stride 1 and zero padding K//2,
followed by an epilogue chosen per op (DESIGN.md, "Fused ops"):

  kind          epilogue                                   skip source
  head          + bias, PReLU                              -
  block_conv1   + bias (BN folded), PReLU                  -
  block_conv2   + bias (BN folded), + skip                 the block's input
  trunk_end     + bias (BN folded), + skip                 the head's output (long skip)
  upsample      + bias, PixelShuffle(2) in the store, PReLU of the shuffled channel
  tail          + bias, map [-1, 1] -> [0, 1], clamp (and uint8 rounding on request)

BN is folded once, here, in float64: w' = w * g / sqrt(v + eps), b' = (b - m) * g / sqrt(v + eps) + beta.
Kernels never see BN.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch

from .models import Generator, GeneratorConfig

__all__ = ["FusedOp", "Plan", "compile", "fold_bn"]

KINDS = ("head", "block_conv1", "block_conv2", "trunk_end", "upsample", "tail")


@dataclass
class FusedOp:
    kind: str
    weight: torch.Tensor  # (Cout, Cin, K, K), float32, BN folded
    bias: torch.Tensor  # (Cout,), float32
    prelu: torch.Tensor | None = None  # per output channel (after shuffle for "upsample")
    skip: str | None = None  # None, "block" (the block's input) or "head"
    shuffle: bool = False  # PixelShuffle(2) in the store
    out_map: bool = False  # [-1, 1] -> [0, 1] and clamp (tail)
    scale_in: int = 1  # resolution of this op's input relative to the LR frame

    @property
    def k(self) -> int:
        return int(self.weight.shape[-1])

    @property
    def cin(self) -> int:
        return int(self.weight.shape[1])

    @property
    def cout(self) -> int:
        return int(self.weight.shape[0])

    @property
    def scale_out(self) -> int:
        return self.scale_in * (2 if self.shuffle else 1)

    def macs_per_lr_pixel(self) -> int:
        return self.cin * self.cout * self.k * self.k * self.scale_in * self.scale_in


@dataclass
class Plan:
    config: GeneratorConfig
    ops: list[FusedOp] = field(default_factory=list)
    model_macs: int = 0  # multiply-adds per LR pixel of the network itself (for TFLOP/s)

    @property
    def scale(self) -> int:
        return self.config.scale

    @property
    def receptive_radius(self) -> float:
        """Radius in LR pixels: each KxK op at input resolution s reaches (K//2)/s LR pixels."""
        return sum((op.k // 2) / op.scale_in for op in self.ops)

    @property
    def halo(self) -> int:
        """LR pixels of context a tile needs on each side for exact results."""
        return math.ceil(self.receptive_radius)

    def macs_per_lr_pixel(self) -> int:
        """Multiply-adds the plan's ops execute (a sub-pixel tail adds zero taps)."""
        return sum(op.macs_per_lr_pixel() for op in self.ops)

    def elems_per_lr_pixel(self) -> int:
        """Largest activation (elements per LR pixel) any op writes: sizes buffers and tiles."""
        return max(op.cout * op.scale_in * op.scale_in for op in self.ops)

    def to(self, device=None, dtype=None) -> Plan:
        """A copy with every tensor moved/cast (weights in `dtype`; math stays fp32 in kernels)."""

        def mv(t):
            return None if t is None else t.to(device=device, dtype=dtype)

        ops = [
            FusedOp(
                op.kind,
                mv(op.weight),
                mv(op.bias),
                mv(op.prelu),
                op.skip,
                op.shuffle,
                op.out_map,
                op.scale_in,
            )
            for op in self.ops
        ]
        return Plan(self.config, ops, self.model_macs)


def fold_bn(conv: torch.nn.Conv2d, bn: torch.nn.BatchNorm2d | None) -> tuple[torch.Tensor, torch.Tensor]:
    """Conv weight and bias with an eval-mode BN folded in, computed in float64, returned fp32."""
    w = conv.weight.detach().double()
    b = conv.bias.detach().double() if conv.bias is not None else torch.zeros(w.shape[0], dtype=torch.float64)
    if bn is not None:
        g = bn.weight.detach().double() if bn.weight is not None else torch.ones_like(b)
        beta = bn.bias.detach().double() if bn.bias is not None else torch.zeros_like(b)
        inv = g / torch.sqrt(bn.running_var.detach().double() + bn.eps)
        w = w * inv.view(-1, 1, 1, 1)
        b = (b - bn.running_mean.detach().double()) * inv + beta
    return w.float().contiguous(), b.float().contiguous()


def _prelu_weight(act: torch.nn.PReLU, channels: int) -> torch.Tensor:
    a = act.weight.detach().float()
    return a.expand(channels).contiguous() if a.numel() == 1 else a.contiguous()


def subpixel_tail_weight(w: torch.Tensor) -> torch.Tensor:
    """Rewrite a KxK tail conv that reads a pixel-shuffled map as a conv on the unshuffled map.

    The tail (Cout x C x K x K, at resolution 2s) reads A = PixelShuffle(U), U having 4C
    channels at resolution s. Output pixel (2y+i, 2x+j) sums w[o, c, dy+R, dx+R] *
    A[c, 2y+i+dy, 2x+j+dx] over |dy|, |dx| <= R = K//2. Writing 2y+i+dy = 2Y+a (a = row
    phase in U), that is a conv on U with a KU x KU kernel, KU = 2*ceil(R/2)+1 (5 for K=9),
    and 4*Cout outputs, one per output phase (i, j); its taps are the KxK taps re-indexed
    (zero where none lands).
    Output channel o*4 + i*2 + j is PixelShuffle order, so the store shuffles it back.
    Exact: the same products, summed in another order; zero padding maps to zero padding.
    """
    cout, c, k, _ = w.shape
    r = k // 2
    ru = (r + 1) // 2  # reach at resolution s: rows 2y+i+dy with i in {0,1}, |dy| <= r
    ku = 2 * ru + 1
    wu = torch.zeros(cout * 4, c * 4, ku, ku, dtype=torch.float64)
    wd = w.double()
    for i in range(2):
        for j in range(2):
            for a in range(2):
                for b in range(2):
                    for ky in range(ku):
                        dy = 2 * (ky - ru) + a - i
                        if abs(dy) > r:
                            continue
                        for kx in range(ku):
                            dx = 2 * (kx - ru) + b - j
                            if abs(dx) > r:
                                continue
                            # U channel c*4 + a*2 + b is A channel c at phase (a, b)
                            wu[i * 2 + j :: 4, a * 2 + b :: 4, ky, kx] = wd[:, :, dy + r, dx + r]
    return wu.float().contiguous()


def compile(generator: Generator, subpixel_tail: bool = True) -> Plan:  # noqa: A001 - the plan's verb
    """Turn a (trained) Generator into a Plan. BN uses its running statistics (eval mode).

    subpixel_tail: run the 9x9 tail (3 outputs) on the last upsample's unshuffled 4C-channel
    map as a 5x5 conv with 12 outputs and shuffle in its store (`subpixel_tail_weight`): the
    last upsample then stores unshuffled (its PReLU repeated per phase). Exact, and 3 outputs
    padded to a 16-wide matrix tile waste 5.3x where 12 waste 1.3x.
    """
    if not isinstance(generator, Generator):
        raise TypeError(f"plan.compile needs a srgan_fast Generator, got {type(generator).__name__}")
    g = generator
    c = g.config.channels
    ops: list[FusedOp] = []
    w, b = fold_bn(g.conv_first, None)
    ops.append(FusedOp("head", w, b, prelu=_prelu_weight(g.act_first, c)))
    for blk in g.body:
        w, b = fold_bn(blk.conv1, blk.bn1)
        ops.append(FusedOp("block_conv1", w, b, prelu=_prelu_weight(blk.act, c)))
        w, b = fold_bn(blk.conv2, blk.bn2)
        ops.append(FusedOp("block_conv2", w, b, skip="block"))
    w, b = fold_bn(g.conv_body, g.bn_body)
    ops.append(FusedOp("trunk_end", w, b, skip="head"))
    s = 1
    for up in g.upsample:
        w, b = fold_bn(up.conv, None)
        ops.append(FusedOp("upsample", w, b, prelu=_prelu_weight(up.act, c), shuffle=True, scale_in=s))
        s *= 2
    w, b = fold_bn(g.conv_last, None)
    ops.append(FusedOp("tail", w, b, out_map=True, scale_in=s))
    plan = Plan(g.config, ops)
    plan.model_macs = plan.macs_per_lr_pixel()
    if subpixel_tail and g.config.num_upsample > 0:
        up, tail = ops[-2], ops[-1]
        ops[-2] = FusedOp(
            "upsample", up.weight, up.bias, prelu=up.prelu.repeat_interleave(4), shuffle=False, scale_in=up.scale_in
        )
        wu = subpixel_tail_weight(tail.weight)
        ops[-1] = FusedOp(
            "tail", wu, tail.bias.repeat_interleave(4).contiguous(), out_map=True, shuffle=True, scale_in=up.scale_in
        )
    return plan
