"""Real-ESRGAN's compact video models (SRVGGNetCompact) on the engine's fused kernels.

The architecture, as published by Wang et al. (Real-ESRGAN, `realesrgan/archs/srvgg_arch.py`),
written here from its description:

    conv3x3 in -> F, act(F); num_conv x [conv3x3 F -> F, act(F)]; conv3x3 F -> out * r^2;
    PixelShuffle(r); + the input upsampled r times by nearest neighbour.

Input RGB in [0, 1]; output in [0, 1] (not clamped by the network; the engine clamps). All
layers live in one `body` list (convs at even indices, activations at odd ones), so the
published checkpoints (`params` / `params_ema` dicts with `body.N.weight` / `body.N.bias`)
load as they are. Presets: realesr-animevideov3 (num_conv 16), realesr-general-x4v3 (32).

The plan (`compile_compact_plan`, registered with its family in srgan_fast.families) is num_conv + 2
`conv2d_fused` ops: conv + bias + PReLU for all but the last; the last conv stores through a
PixelShuffle(r) index map, adds the network input read at (y // r, x // r) (the nearest
upsample; uint8 input is divided by 255 in the epilogue) and clamps to [0, 1]. ReLU and
LeakyReLU(0.1) variants run as PReLU with constant slopes 0 and 0.1. Receptive radius:
num_conv + 2 LR pixels.
"""

from __future__ import annotations

from .. import Family, register_family
from .arch import COMPACT_PRESETS, FAMILY, CompactConfig, SRVGGNetCompact, random_compact
from .convert import _convert, _looks_compact, compact_state_from_checkpoint
from .plan import compile_compact_plan

__all__ = [
    "CompactConfig",
    "SRVGGNetCompact",
    "compile_compact_plan",
    "compact_state_from_checkpoint",
    "random_compact",
    "COMPACT_PRESETS",
    "FAMILY",
]

register_family(
    Family(
        FAMILY,
        CompactConfig,
        SRVGGNetCompact,
        compile_compact_plan,
        convert_name="compact",
        convert=_convert,
        detect=_looks_compact,
        describe=lambda c: (f"{c.get('num_conv')} convs x {c.get('num_feat')}", c.get("upscale")),
    )
)
