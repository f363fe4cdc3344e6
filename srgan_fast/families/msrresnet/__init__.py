"""BasicSR's MSRResNet (the SRResNet most codebases ship) on the engine's fused kernels.

The architecture, as published in BasicSR (`basicsr/archs/srresnet_arch.py`), written here from
its description:

    conv_first 3x3 in -> F, LeakyReLU(0.1);
    body: num_block x ResidualBlockNoBN (conv1 3x3, ReLU, conv2 3x3, + identity; res_scale 1);
    x4: upconv1 3x3 F -> 4F, PixelShuffle(2), LeakyReLU(0.1); upconv2 the same;
    x2: upconv1 only;
    conv_hr 3x3 F -> F, LeakyReLU(0.1); conv_last 3x3 F -> out;
    + the input upsampled by F.interpolate(x, scale_factor=upscale, mode="bilinear", align_corners=False).

Input RGB in [0, 1]; output in [0, 1] (not clamped by the network; the engine clamps). The key
names are BasicSR's (conv_first, body.N.conv1, body.N.conv2, upconv1, upconv2, conv_hr,
conv_last; weight and bias each), so its checkpoints (`params_ema` / `params` dicts) load as they
are. BasicSR's x3 variant (one upconv with PixelShuffle(3)) is refused: the fused store shuffles
by 2 or 4 only.

The plan (`compile_msrresnet_plan`, registered with its family in srgan_fast.families) is
2 * num_block + log2(upscale) + 3 `conv2d_fused` ops: LeakyReLU(0.1) and ReLU run as PReLU with
constant slopes 0.1 and 0; each residual block is conv + PReLU(0) then conv + the block's input
(so `fuse_residual_blocks` fuses them); each upconv stores through PixelShuffle(2) with the
slope per shuffled channel; conv_hr runs at the output resolution; the last op (conv_last) adds
the network input upsampled bilinearly (`skip_mode="bilinear"`, align_corners=False; uint8
input is divided by 255 in the epilogue) and clamps to [0, 1]. Receptive radius, in LR pixels:
2 * num_block + 2 + (0.5 for x4) + 2 / upscale (the bilinear skip reaches 1 LR pixel, less than
the convolutions' chain).
"""

from __future__ import annotations

from .. import Family, register_family
from .arch import FAMILY, MSRResNet, MSRResNetConfig, ResidualBlockNoBN, msrresnet_expected_shapes, random_msrresnet
from .convert import _convert, _looks_msrresnet, msrresnet_state_from_checkpoint
from .plan import compile_msrresnet_plan

__all__ = [
    "MSRResNetConfig",
    "MSRResNet",
    "ResidualBlockNoBN",
    "compile_msrresnet_plan",
    "msrresnet_state_from_checkpoint",
    "msrresnet_expected_shapes",
    "random_msrresnet",
    "FAMILY",
]

register_family(
    Family(
        FAMILY,
        MSRResNetConfig,
        MSRResNet,
        compile_msrresnet_plan,
        expected_shapes=msrresnet_expected_shapes,
        convert_name="msrresnet",
        convert=_convert,
        detect=_looks_msrresnet,
        describe=lambda c: (f"{c.get('num_block')} blocks x {c.get('num_feat')}", c.get("upscale")),
    )
)
