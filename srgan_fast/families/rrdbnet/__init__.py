"""ESRGAN's RRDBNet (Real-ESRGAN's RealESRGAN_x4plus and the community models in ESRGAN's key
layouts) on the engine's fused kernels.

The architecture, as published (ESRGAN, Wang et al. 2018; BasicSR `basicsr/archs/rrdbnet_arch.py`),
written here from its description:

    ResidualDenseBlock (RDB): x1 = lrelu(conv1(x)); x2 = lrelu(conv2([x, x1]));
        x3 = lrelu(conv3([x, x1, x2])); x4 = lrelu(conv4([x, x1, x2, x3]));
        x5 = conv5([x, x1, x2, x3, x4]); return 0.2 * x5 + x
        (3x3 convs; conv1-4 give num_grow_ch channels, conv5 num_feat; [..] concatenates channels)
    RRDB: return 0.2 * rdb3(rdb2(rdb1(x))) + x
    RRDBNet: feat = conv_first(x); feat = feat + conv_body(body(feat))   (body: num_block RRDBs)
        feat = lrelu(conv_up1(nearest_upsample_x2(feat))); feat = lrelu(conv_up2(nearest_upsample_x2(feat)))
        out = conv_last(lrelu(conv_hr(feat)))
    lrelu: LeakyReLU(0.2). Input RGB in [0, 1]; output in [0, 1] (clamped by the engine).

Key names are BasicSR's (conv_first, body.N.rdb1..3.conv1..5, conv_body, conv_up1, conv_up2,
conv_hr, conv_last), so Real-ESRGAN checkpoints (`params_ema` / `params`) load as they are; both
original ESRGAN layouts convert (`rrdbnet_state_from_checkpoint`). BasicSR's x2 and x1 variants
(the input pixel-unshuffled to 12 or 48 channels) are refused: the plan's resolutions are whole
multiples of the input frame's.

The plan (`compile_rrdbnet_plan`): 15 * num_block + 6 `conv2d_fused` ops, nothing else.
* Dense concatenation without copies: an RDB's input and its four growth outputs live in one
  buffer num_feat + 4 * num_grow_ch channels wide (plan.Plan, "Wide buffers"); conv_i writes its
  slice (`dst_off`) and reads the prefix written so far, so no concatenation is materialised.
* LeakyReLU(0.2) is the epilogue's PReLU with constant slope 0.2.
* RDB residual: conv5's weights and bias are scaled by 0.2 (folded, in float64) and the RDB's input
  (the prefix of its buffer) is the epilogue's skip; conv5 writes into the next RDB's buffer.
* RRDB residual: 0.2 * (0.2 * conv5(W3) + r2) + x. r2 is the first num_feat channels of W3, which
  the third conv5 reads anyway, so conv5's weights become 0.04 * w5 plus 0.2 on the centre tap
  of the identity over those channels, and x (the RRDB's input) is the skip: one conv, one skip.
* Each nearest-upsample + 3x3 conv is the sub-pixel conv `nearest_subpixel_weight`: a 3x3 conv
  at the lower resolution with 4x the outputs, pixel-shuffled in the store (no upsampled
  tensor materialised). Exact: the same products, summed per phase.
* conv_hr (LeakyReLU) and conv_last (clamp to [0, 1]) at the output resolution.
Receptive radius, in LR pixels: 15 * num_block + 4 (the sub-pixel convs count 1 pixel of
their own resolution each): 349 for RealESRGAN_x4plus's 23 blocks, so tiles are large (the
tiler knows the halo: engine.Engine, tiling.choose_tiling).
"""

from __future__ import annotations

from .. import Family, register_family
from .arch import FAMILY, RRDB, ResidualDenseBlock, RRDBNet, RRDBNetConfig, random_rrdbnet, rrdbnet_expected_shapes
from .convert import _convert, _layout, rrdbnet_state_from_checkpoint
from .plan import compile_rrdbnet_plan, nearest_subpixel_weight

__all__ = [
    "RRDBNetConfig",
    "RRDBNet",
    "RRDB",
    "ResidualDenseBlock",
    "compile_rrdbnet_plan",
    "nearest_subpixel_weight",
    "rrdbnet_state_from_checkpoint",
    "rrdbnet_expected_shapes",
    "random_rrdbnet",
    "FAMILY",
]

register_family(
    Family(
        FAMILY,
        RRDBNetConfig,
        RRDBNet,
        compile_rrdbnet_plan,
        expected_shapes=rrdbnet_expected_shapes,
        convert_name="rrdbnet",
        convert=_convert,
        detect=lambda state: _layout(state) is not None,
        describe=lambda c: (
            f"{c.get('num_block')} RRDBs x {c.get('num_feat')}, growth {c.get('num_grow_ch')}",
            c.get("scale"),
        ),  # fmt: skip
    )
)
