"""The srvgg_compact network: config, module, shapes, random init (see the package docstring)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from .. import FamilyConfig, check_limits, random_init

FAMILY = "srvgg_compact"  # the weights file's "family" metadata for this model
ACTS = {"prelu": None, "relu": 0.0, "leakyrelu": 0.1}  # act_type -> constant slope (None: learnt)
# Sane maxima, far above the published models (32 convs x 64 features), low enough that a config
# read from a file cannot ask for unbounded work (10**6 convs would take hours to build).
LIMITS = {"num_in_ch": 4, "num_out_ch": 4, "num_feat": 1024, "num_conv": 256, "upscale": 4}


@dataclass(frozen=True)
class CompactConfig(FamilyConfig):
    """Shape of an SRVGGNetCompact (the published defaults)."""

    family: ClassVar[str] = FAMILY
    PRESET_KIND: ClassVar[str] = "compact"
    num_in_ch: int = 3
    num_out_ch: int = 3
    num_feat: int = 64
    num_conv: int = 16
    upscale: int = 4
    act_type: str = "prelu"

    def __post_init__(self):
        # configs come from untrusted weights files too: types and bounds before anything is built
        check_limits(self, LIMITS)
        if not isinstance(self.act_type, str):
            raise ValueError(f"config act_type must be a string, got {type(self.act_type).__name__}")
        if self.upscale not in (2, 4):
            raise ValueError(f"SRVGGNetCompact: upscale must be 2 or 4 (the shuffle factors), got {self.upscale}")
        if self.num_in_ch != self.num_out_ch:
            raise ValueError("SRVGGNetCompact adds its upsampled input to its output: num_in_ch must equal num_out_ch")
        if self.num_conv < 0 or self.num_feat < 1 or self.num_in_ch < 1:
            raise ValueError(f"bad SRVGGNetCompact config: {self}")
        if self.act_type not in ACTS:
            raise ValueError(f"act_type must be one of {', '.join(ACTS)}, got {self.act_type!r}")


COMPACT_PRESETS: dict[str, CompactConfig] = {
    "realesr-animevideov3": CompactConfig(num_conv=16),
    "realesr-general-x4v3": CompactConfig(num_conv=32),
    # tiny: for tests and the Triton interpreter
    "tiny_compact_x4": CompactConfig(num_feat=16, num_conv=2),
}
CompactConfig.PRESETS = COMPACT_PRESETS


def _act(act_type: str, channels: int) -> nn.Module:
    if act_type == "prelu":
        return nn.PReLU(channels)
    if act_type == "relu":
        return nn.ReLU()
    return nn.LeakyReLU(ACTS["leakyrelu"])


class SRVGGNetCompact(nn.Module):
    """SRVGGNetCompact. Input (N, C, H, W) in [0, 1]; output (N, C, rH, rW) in [0, 1] (unclamped)."""

    output_range = (0.0, 1.0)  # `models.output_to_unit` clamps, nothing more

    def __init__(self, config: CompactConfig | str = "realesr-animevideov3"):
        super().__init__()
        if isinstance(config, str):
            config = CompactConfig.from_name(config)
        self.config = config
        f, r = config.num_feat, config.upscale
        layers: list[nn.Module] = [nn.Conv2d(config.num_in_ch, f, 3, padding=1), _act(config.act_type, f)]
        for _ in range(config.num_conv):
            layers += [nn.Conv2d(f, f, 3, padding=1), _act(config.act_type, f)]
        layers.append(nn.Conv2d(f, config.num_out_ch * r * r, 3, padding=1))
        self.body = nn.ModuleList(layers)  # the published names: body.N
        self.upsampler = nn.PixelShuffle(r)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = x
        for layer in self.body:
            y = layer(y)
        return self.upsampler(y) + F.interpolate(x, scale_factor=self.config.upscale, mode="nearest")


def random_compact(config: CompactConfig | str = "realesr-animevideov3", seed: int = 0, slope: float = 0.25):
    """An SRVGGNetCompact with random weights scaled so activations stay O(1) through the body
    (He-like init, PReLU slopes in [0, slope)): for timing and parity tests, nothing downloaded."""
    return random_init(SRVGGNetCompact(config).eval(), seed, gain=1.6, slope=slope)
