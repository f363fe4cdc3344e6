"""The msrresnet network: config, module, shapes, random init (see the package docstring)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from .. import FamilyConfig, check_limits, random_init

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


def _gain(name: str) -> float:
    # residual branches and the detail added to the bilinear base scaled down: the output stays
    # mostly inside [0, 1], where the clamp hides nothing
    return {"conv_last": 0.1}.get(name, 0.5 if name.endswith("conv2") else 1.6)


def random_msrresnet(config: MSRResNetConfig | None = None, seed: int = 0) -> MSRResNet:
    """An MSRResNet with random weights scaled so activations stay O(1) through the body
    (He-like init): for timing and parity tests, nothing downloaded."""
    return random_init(MSRResNet(config).eval(), seed, gain=_gain)
