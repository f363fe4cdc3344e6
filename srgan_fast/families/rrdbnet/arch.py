"""The rrdbnet network: config, module, shapes, random init (see the package docstring)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from .. import FamilyConfig, check_limits, random_init

FAMILY = "rrdbnet"
LRELU = 0.2  # ESRGAN's LeakyReLU slope
RES_SCALE = 0.2  # the residual scaling of RDB and RRDB
# Sane maxima, far above the published models (23 blocks x 64 features, growth 32), low enough
# that a config read from a file cannot ask for unbounded work.
LIMITS = {"num_in_ch": 4, "num_out_ch": 4, "num_feat": 512, "num_block": 128, "num_grow_ch": 256, "scale": 4}
_LAYER = r"(conv_first|conv_body|conv_up1|conv_up2|conv_hr|conv_last|body\.\d+\.rdb[123]\.conv[1-5])"
_KEY = re.compile(_LAYER + r"\.(weight|bias)")


@dataclass(frozen=True)
class RRDBNetConfig(FamilyConfig):
    """Shape of an RRDBNet (its defaults: RealESRGAN_x4plus / ESRGAN x4, 23 blocks of 64, growth 32)."""

    family: ClassVar[str] = FAMILY
    num_in_ch: int = 3
    num_out_ch: int = 3
    num_feat: int = 64
    num_block: int = 23
    num_grow_ch: int = 32
    scale: int = 4

    def __post_init__(self):
        check_limits(self, LIMITS)  # configs come from untrusted files too: bounds before anything is built
        if self.scale in (1, 2):
            c = self.num_in_ch * (4 if self.scale == 2 else 16)
            raise ValueError(
                f"RRDBNet x{self.scale} (its input pixel-unshuffled to {c} channels) is not supported: "
                "the engine runs x4 RRDBNet models"
            )
        if self.scale != 4:
            raise ValueError(f"RRDBNet: scale must be 4, got {self.scale}")
        if min(self.num_in_ch, self.num_out_ch, self.num_feat, self.num_grow_ch) < 1 or self.num_block < 0:
            raise ValueError(f"bad RRDBNet config: {self}")
        if self.num_in_ch != 3 or self.num_out_ch != 3:
            raise ValueError(
                f"RRDBNet with {self.num_in_ch} input and {self.num_out_ch} output channels is not supported: "
                "the engine runs RGB models (3 in, 3 out)"
            )


class ResidualDenseBlock(nn.Module):
    """Five 3x3 convs densely connected; 0.2-scaled residual."""

    def __init__(self, num_feat: int = 64, num_grow_ch: int = 32):
        super().__init__()
        f, g = num_feat, num_grow_ch
        self.conv1 = nn.Conv2d(f, g, 3, 1, 1)
        self.conv2 = nn.Conv2d(f + g, g, 3, 1, 1)
        self.conv3 = nn.Conv2d(f + 2 * g, g, 3, 1, 1)
        self.conv4 = nn.Conv2d(f + 3 * g, g, 3, 1, 1)
        self.conv5 = nn.Conv2d(f + 4 * g, f, 3, 1, 1)
        self.lrelu = nn.LeakyReLU(LRELU)

    def convs(self) -> list[nn.Conv2d]:
        return [self.conv1, self.conv2, self.conv3, self.conv4, self.conv5]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        feats = [x]
        for conv in self.convs()[:4]:
            feats.append(self.lrelu(conv(torch.cat(feats, 1))))
        return self.conv5(torch.cat(feats, 1)) * RES_SCALE + x


class RRDB(nn.Module):
    """Three residual dense blocks; 0.2-scaled residual."""

    def __init__(self, num_feat: int = 64, num_grow_ch: int = 32):
        super().__init__()
        self.rdb1 = ResidualDenseBlock(num_feat, num_grow_ch)
        self.rdb2 = ResidualDenseBlock(num_feat, num_grow_ch)
        self.rdb3 = ResidualDenseBlock(num_feat, num_grow_ch)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.rdb3(self.rdb2(self.rdb1(x))) * RES_SCALE + x


class RRDBNet(nn.Module):
    """RRDBNet x4. Input (N, C, H, W) in [0, 1]; output (N, C, 4H, 4W) in [0, 1] (unclamped)."""

    output_range = (0.0, 1.0)  # `models.output_to_unit` clamps, nothing more

    def __init__(self, config: RRDBNetConfig | None = None):
        super().__init__()
        config = RRDBNetConfig() if config is None else config
        self.config = config
        f = config.num_feat
        self.conv_first = nn.Conv2d(config.num_in_ch, f, 3, 1, 1)
        self.body = nn.Sequential(*[RRDB(f, config.num_grow_ch) for _ in range(config.num_block)])
        self.conv_body = nn.Conv2d(f, f, 3, 1, 1)
        self.conv_up1 = nn.Conv2d(f, f, 3, 1, 1)
        self.conv_up2 = nn.Conv2d(f, f, 3, 1, 1)
        self.conv_hr = nn.Conv2d(f, f, 3, 1, 1)
        self.conv_last = nn.Conv2d(f, config.num_out_ch, 3, 1, 1)
        self.lrelu = nn.LeakyReLU(LRELU)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        feat = self.conv_first(x)
        feat = feat + self.conv_body(self.body(feat))
        for up in (self.conv_up1, self.conv_up2):
            feat = self.lrelu(up(F.interpolate(feat, scale_factor=2, mode="nearest")))
        return self.conv_last(self.lrelu(self.conv_hr(feat)))


def rrdbnet_expected_shapes(cfg: RRDBNetConfig) -> dict[str, tuple[int, ...]]:
    """Every tensor's name -> shape for a config, building nothing."""
    f, g = cfg.num_feat, cfg.num_grow_ch
    out: dict[str, tuple[int, ...]] = {}

    def conv(name, cout, cin):
        out[f"{name}.weight"] = (cout, cin, 3, 3)
        out[f"{name}.bias"] = (cout,)

    conv("conv_first", f, cfg.num_in_ch)
    for b in range(cfg.num_block):
        for r in (1, 2, 3):
            for i in range(4):
                conv(f"body.{b}.rdb{r}.conv{i + 1}", g, f + i * g)
            conv(f"body.{b}.rdb{r}.conv5", f, f + 4 * g)
    for name in ("conv_body", "conv_up1", "conv_up2", "conv_hr"):
        conv(name, f, f)
    conv("conv_last", cfg.num_out_ch, f)
    return out


def _gain(name: str) -> float:
    return {"conv_last": 0.008}.get(name, 0.3 if ".rdb" in name else 1.6)


def random_rrdbnet(config: RRDBNetConfig | None = None, seed: int = 0) -> RRDBNet:
    """An RRDBNet with random weights (He-like, residual branches scaled down as ESRGAN's init
    does) so activations stay O(1) and the output mostly inside [0, 1]: for timing and parity
    tests, nothing downloaded."""
    m = random_init(RRDBNet(config).eval(), seed, gain=_gain)
    with torch.no_grad():
        m.conv_last.bias.add_(0.5)  # centre the output in [0, 1]
    return m
