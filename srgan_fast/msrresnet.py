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

import re
from dataclasses import dataclass
from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from .families import Family, FamilyConfig, check_limits, register_family
from .plan import INPUT, OUT_MAP_CLAMP, FusedOp, Plan, assign_buffers, fold_bn
from .weights import WeightsError, check_state, unnest_state

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

FAMILY = "msrresnet"  # the weights file's "family" metadata for this model
LRELU = 0.1  # BasicSR's LeakyReLU slope
UPSCALES = (2, 4)  # x3 needs PixelShuffle(3), which the fused store does not have
# Sane maxima, far above the published models (16 blocks x 64 features), low enough that a config
# read from a file cannot ask for unbounded work (10**6 blocks would take hours to build).
LIMITS = {"num_in_ch": 4, "num_out_ch": 4, "num_feat": 1024, "num_block": 256, "upscale": 4}
_LAYER = r"(conv_first|upconv1|upconv2|conv_hr|conv_last|body\.\d+\.conv[12])"
_KEY = re.compile(_LAYER + r"\.(weight|bias)")


@dataclass(frozen=True)
class MSRResNetConfig(FamilyConfig):
    """Shape of a BasicSR MSRResNet (its defaults: x4, 16 blocks of 64 features)."""

    family: ClassVar[str] = FAMILY
    num_in_ch: int = 3
    num_out_ch: int = 3
    num_feat: int = 64
    num_block: int = 16
    upscale: int = 4

    def __post_init__(self):
        # configs come from untrusted weights files too: types and bounds before anything is built
        check_limits(self, LIMITS)
        if self.upscale == 3:
            raise ValueError(
                "MSRResNet x3 (one upconv with PixelShuffle(3)) is not supported: the fused kernels "
                "pixel-shuffle by 2 and 4 only; use an x2 or x4 model"
            )
        if self.upscale not in UPSCALES:
            raise ValueError(f"MSRResNet: upscale must be 2 or 4, got {self.upscale}")
        if self.num_in_ch != self.num_out_ch:
            raise ValueError("MSRResNet adds its upsampled input to its output: num_in_ch must equal num_out_ch")
        if self.num_block < 0 or self.num_feat < 1 or self.num_in_ch < 1:
            raise ValueError(f"bad MSRResNet config: {self}")

    @property
    def scale(self) -> int:
        return self.upscale

    @property
    def in_channels(self) -> int:
        return self.num_in_ch


class ResidualBlockNoBN(nn.Module):
    """conv3x3, ReLU, conv3x3, + identity (BasicSR's block, res_scale 1)."""

    def __init__(self, num_feat: int = 64):
        super().__init__()
        self.conv1 = nn.Conv2d(num_feat, num_feat, 3, 1, 1)
        self.conv2 = nn.Conv2d(num_feat, num_feat, 3, 1, 1)
        self.relu = nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv2(self.relu(self.conv1(x)))


class MSRResNet(nn.Module):
    """MSRResNet. Input (N, C, H, W) in [0, 1]; output (N, C, rH, rW) in [0, 1] (unclamped)."""

    output_range = (0.0, 1.0)  # `models.output_to_unit` clamps, nothing more

    def __init__(self, config: MSRResNetConfig | None = None):
        super().__init__()
        config = MSRResNetConfig() if config is None else config
        self.config = config
        f = config.num_feat
        self.conv_first = nn.Conv2d(config.num_in_ch, f, 3, 1, 1)
        self.body = nn.Sequential(*[ResidualBlockNoBN(f) for _ in range(config.num_block)])
        self.upconv1 = nn.Conv2d(f, 4 * f, 3, 1, 1)
        if config.upscale == 4:
            self.upconv2 = nn.Conv2d(f, 4 * f, 3, 1, 1)
        self.pixel_shuffle = nn.PixelShuffle(2)
        self.conv_hr = nn.Conv2d(f, f, 3, 1, 1)
        self.conv_last = nn.Conv2d(f, config.num_out_ch, 3, 1, 1)
        self.lrelu = nn.LeakyReLU(LRELU)

    def upconvs(self) -> list[nn.Conv2d]:
        return [self.upconv1, self.upconv2] if self.config.upscale == 4 else [self.upconv1]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.body(self.lrelu(self.conv_first(x)))
        for up in self.upconvs():
            out = self.lrelu(self.pixel_shuffle(up(out)))
        out = self.conv_last(self.lrelu(self.conv_hr(out)))
        return out + F.interpolate(x, scale_factor=self.config.upscale, mode="bilinear", align_corners=False)


def msrresnet_expected_shapes(cfg: MSRResNetConfig) -> dict[str, tuple[int, ...]]:
    """Every tensor's name -> shape for a config, building nothing."""
    f, cin, cout = cfg.num_feat, cfg.num_in_ch, cfg.num_out_ch
    out: dict[str, tuple[int, ...]] = {"conv_first.weight": (f, cin, 3, 3), "conv_first.bias": (f,)}
    for i in range(cfg.num_block):
        for c in ("conv1", "conv2"):
            out[f"body.{i}.{c}.weight"] = (f, f, 3, 3)
            out[f"body.{i}.{c}.bias"] = (f,)
    for name in ("upconv1", "upconv2")[: 2 if cfg.upscale == 4 else 1]:
        out[f"{name}.weight"] = (4 * f, f, 3, 3)
        out[f"{name}.bias"] = (4 * f,)
    out.update({"conv_hr.weight": (f, f, 3, 3), "conv_hr.bias": (f,)})
    out.update({"conv_last.weight": (cout, f, 3, 3), "conv_last.bias": (cout,)})
    return out


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


def random_msrresnet(config: MSRResNetConfig | None = None, seed: int = 0) -> MSRResNet:
    """An MSRResNet with random weights scaled so activations stay O(1) through the body
    (He-like init): for timing and parity tests, nothing downloaded."""
    g = torch.Generator().manual_seed(seed)
    m = MSRResNet(config).eval()
    with torch.no_grad():
        for name, mod in m.named_modules():
            if isinstance(mod, nn.Conv2d):
                fan = mod.weight[0].numel()
                # residual branches and the detail added to the bilinear base scaled down: the
                # output stays mostly inside [0, 1], where the clamp hides nothing
                gain = {"conv_last": 0.1}.get(name, 0.5 if name.endswith("conv2") else 1.6)
                mod.weight.copy_(torch.randn(mod.weight.shape, generator=g) * (gain / fan) ** 0.5)
                mod.bias.copy_(torch.randn(mod.bias.shape, generator=g) * 0.05)
    return m


def msrresnet_state_from_checkpoint(obj) -> tuple[dict[str, torch.Tensor], MSRResNetConfig]:
    """The state dict and config of a BasicSR MSRResNet checkpoint (a dict of tensors under
    BasicSR's names, possibly under `params_ema` (preferred) or `params`). The config is read off
    the shapes; anything else is refused, listing what did not match."""
    state = unnest_state(obj)
    if not state:
        raise WeightsError("no state dict found in the checkpoint")
    stray = sorted(k for k in state if not _KEY.fullmatch(k))
    needed = ("conv_first.weight", "upconv1.weight", "conv_last.weight")
    absent = [k for k in needed if k not in state or state[k].dim() != 4]
    if stray or absent:
        raise WeightsError(
            "not a BasicSR MSRResNet checkpoint: expected conv_first, body.N.conv1/conv2, upconv1[, upconv2], "
            "conv_hr, conv_last (weight and bias each)"
            + (f"; unexpected keys ({len(stray)}): {', '.join(stray[:10])}" if stray else "")
            + (f"; missing: {', '.join(absent)}" if absent else "")
        )
    w0, wu, wl = state["conv_first.weight"], state["upconv1.weight"], state["conv_last.weight"]
    feat, cin = int(w0.shape[0]), int(w0.shape[1])
    if int(wu.shape[0]) == 9 * feat and "upconv2.weight" not in state:
        raise WeightsError(
            f"upconv1 has {wu.shape[0]} = 9 x {feat} outputs: an x3 MSRResNet (PixelShuffle(3)), which is not "
            "supported (the fused kernels pixel-shuffle by 2 and 4 only)"
        )
    blocks = sorted({int(k.split(".")[1]) for k in state if k.startswith("body.")})
    if blocks != list(range(len(blocks))):
        raise WeightsError(f"residual blocks must be body.0 .. body.N-1 without gaps; found indices {blocks[:40]}")
    try:
        cfg = MSRResNetConfig(num_in_ch=cin, num_out_ch=int(wl.shape[0]), num_feat=feat, num_block=len(blocks),
                              upscale=4 if "upconv2.weight" in state else 2)  # fmt: skip
    except ValueError as e:
        raise WeightsError(f"not a supported MSRResNet checkpoint: {e}") from None
    with torch.device("meta"):  # names and shapes only: nothing allocated
        check_state(MSRResNet(cfg), state, "checkpoint")
    return state, cfg


def _convert(state, config=None, output_range=None, act=None):
    """The family's `convert`: a BasicSR checkpoint, keys kept as they are."""
    if config is not None:
        raise ValueError("--config is for the paper's network; an MSRResNet's config is read off its shapes")
    if act is not None:
        raise ValueError("--act is for compact models; MSRResNet's activations are fixed (LeakyReLU 0.1, ReLU)")
    if output_range is not None and tuple(output_range) != (0.0, 1.0):
        raise ValueError("MSRResNet's output is in [0, 1]: use --output-range 0,1 (the default for it)")
    new, cfg = msrresnet_state_from_checkpoint(state)
    return new, cfg, {k: k for k in new}, {}


def _looks_msrresnet(state: dict) -> bool:
    """BasicSR's MSRResNet names and nothing else: conv_first, body.N.conv1/2, upconv1[, upconv2],
    conv_hr, conv_last."""
    keys = set(state)
    core = {f"{n}.{p}" for n in ("conv_first", "upconv1", "conv_hr", "conv_last") for p in ("weight", "bias")}
    return core <= keys and all(_KEY.fullmatch(k) for k in keys)


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
