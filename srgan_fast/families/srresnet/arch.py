"""The SRGAN generator (SRResNet) and discriminator of Ledig et al., CVPR 2017, in plain PyTorch.

This is the reference every fused kernel and the whole engine are compared against, so it
stays deliberately plain: no fusion, no layout tricks.

Paper defaults (Fig. 4 of the paper):
  * generator: conv9x9 3->64 + PReLU; B = 16 residual blocks of
    conv3x3-BN-PReLU-conv3x3-BN with an identity skip; conv3x3-BN plus a long skip from the
    head; log2(scale) upsample blocks of conv3x3 64->256, PixelShuffle(2), PReLU;
    conv9x9 64->3.
  * input RGB in [0, 1]; output in [-1, 1] (the HR targets are scaled to [-1, 1]).
    `to_unit_range` maps the output to [0, 1] and clamps.
  * discriminator: 8 conv3x3 layers (64, 64, 128, 128, 256, 256, 512, 512 channels,
    strides 1, 2, 1, 2, ...), BN on all but the first, LeakyReLU(0.2), dense 1024,
    LeakyReLU(0.2), dense 1 (a logit: the trainer uses BCE-with-logits).
"""

from __future__ import annotations

import math
import numbers
from dataclasses import dataclass, fields
from typing import ClassVar

import torch
from torch import nn

from .. import FamilyConfig

__all__ = [
    "GeneratorConfig",
    "Generator",
    "Discriminator",
    "ResidualBlock",
    "UpsampleBlock",
    "expected_shapes",
    "to_unit_range",
    "output_to_unit",
]


@dataclass(frozen=True)
class GeneratorConfig(FamilyConfig):
    """Shape of an SRResNet/SRGAN generator. Presets: see `PRESETS` and `from_name`."""

    family: ClassVar[str] = "srresnet"  # the model family (weights files record it)
    PRESET_KIND: ClassVar[str] = "generator"
    NOT_AN_OBJECT: ClassVar[str] = "config must be a JSON object, got {got}"

    num_blocks: int = 16
    channels: int = 64
    scale: int = 4
    in_channels: int = 3
    out_channels: int = 3
    head_kernel: int = 9
    tail_kernel: int = 9

    def __post_init__(self):
        # Configs come from untrusted weights files too: check types and ranges before anything
        # is built (a file claiming num_blocks=10**12 must fail here, not fill the memory).
        for f in fields(self):
            v = getattr(self, f.name)
            if isinstance(v, bool) or not isinstance(v, numbers.Integral):
                raise ValueError(f"config {f.name} must be an integer, got {type(v).__name__} {v!r}")
            object.__setattr__(self, f.name, int(v))
        if self.scale not in (2, 4, 8):
            raise ValueError(f"scale must be 2, 4 or 8 (a power of two), got {self.scale}")
        if self.num_blocks < 0 or self.channels < 1:
            raise ValueError(f"bad config: num_blocks={self.num_blocks}, channels={self.channels}")
        for name, top in LIMITS.items():
            if getattr(self, name) > top:
                raise ValueError(f"config {name}={getattr(self, name)} is over the limit of {top}")
        if min(self.in_channels, self.out_channels) < 1:
            raise ValueError(f"bad config: in_channels={self.in_channels}, out_channels={self.out_channels}")
        for k in (self.head_kernel, self.tail_kernel):
            if k < 1 or k % 2 == 0:
                raise ValueError(f"kernel sizes must be odd and positive, got {k}")

    @property
    def num_upsample(self) -> int:
        return int(math.log2(self.scale))


# Sane maxima, far above any published SRResNet/SRGAN (16 blocks x 64 channels), low enough that
# a config read from a file cannot ask for unbounded work.
LIMITS = {
    "num_blocks": 256, "channels": 1024, "in_channels": 4, "out_channels": 4, "head_kernel": 15, "tail_kernel": 15,
}  # fmt: skip

PRESETS: dict[str, GeneratorConfig] = {
    "srresnet_x4": GeneratorConfig(num_blocks=16, channels=64, scale=4),
    "srresnet_x2": GeneratorConfig(num_blocks=16, channels=64, scale=2),
    "srresnet_x8": GeneratorConfig(num_blocks=16, channels=64, scale=8),
    # tiny: for tests and the Triton interpreter (seconds, not minutes)
    "tiny_x4": GeneratorConfig(num_blocks=2, channels=16, scale=4),
}
GeneratorConfig.PRESETS = PRESETS


def expected_shapes(config: GeneratorConfig) -> dict[str, tuple[int, ...]]:
    """Name -> shape of every tensor of `Generator(config).state_dict()`, building nothing
    (tests/contracts/test_hostile_inputs.py checks it against the real module); the weights loader
    checks a file's header against it before anything is built."""
    c, hk, tk = config.channels, config.head_kernel, config.tail_kernel
    out: dict[str, tuple[int, ...]] = {}

    def conv(name, cout, cin, k):
        out[f"{name}.weight"], out[f"{name}.bias"] = (cout, cin, k, k), (cout,)

    def bn(name):
        for k in ("weight", "bias", "running_mean", "running_var"):
            out[f"{name}.{k}"] = (c,)
        out[f"{name}.num_batches_tracked"] = ()

    conv("conv_first", c, config.in_channels, hk)
    out["act_first.weight"] = (c,)
    for i in range(config.num_blocks):
        conv(f"body.{i}.conv1", c, c, 3)
        bn(f"body.{i}.bn1")
        out[f"body.{i}.act.weight"] = (c,)
        conv(f"body.{i}.conv2", c, c, 3)
        bn(f"body.{i}.bn2")
    conv("conv_body", c, c, 3)
    bn("bn_body")
    for i in range(config.num_upsample):
        conv(f"upsample.{i}.conv", 4 * c, c, 3)
        out[f"upsample.{i}.act.weight"] = (c,)
    conv("conv_last", config.out_channels, c, tk)
    return out


class ResidualBlock(nn.Module):
    """conv3x3-BN-PReLU-conv3x3-BN, plus the block input."""

    def __init__(self, channels: int):
        super().__init__()
        self.conv1 = nn.Conv2d(channels, channels, 3, padding=1)
        self.bn1 = nn.BatchNorm2d(channels)
        self.act = nn.PReLU(channels)
        self.conv2 = nn.Conv2d(channels, channels, 3, padding=1)
        self.bn2 = nn.BatchNorm2d(channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.act(self.bn1(self.conv1(x)))
        return x + self.bn2(self.conv2(y))


class UpsampleBlock(nn.Module):
    """conv3x3 C->4C, PixelShuffle(2), PReLU(C): doubles height and width."""

    def __init__(self, channels: int):
        super().__init__()
        self.conv = nn.Conv2d(channels, channels * 4, 3, padding=1)
        self.shuffle = nn.PixelShuffle(2)
        self.act = nn.PReLU(channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.shuffle(self.conv(x)))


class Generator(nn.Module):
    """SRResNet / SRGAN generator. Input (N, 3, H, W) in [0, 1]; output (N, 3, sH, sW) in [-1, 1]."""

    output_range = (-1.0, 1.0)  # what the raw output spans (`output_to_unit` reads it)

    def __init__(self, config: GeneratorConfig | str = "srresnet_x4"):
        super().__init__()
        if isinstance(config, str):
            config = GeneratorConfig.from_name(config)
        self.config = config
        c = config.channels
        self.conv_first = nn.Conv2d(config.in_channels, c, config.head_kernel, padding=config.head_kernel // 2)
        self.act_first = nn.PReLU(c)
        self.body = nn.Sequential(*[ResidualBlock(c) for _ in range(config.num_blocks)])
        self.conv_body = nn.Conv2d(c, c, 3, padding=1)
        self.bn_body = nn.BatchNorm2d(c)
        self.upsample = nn.Sequential(*[UpsampleBlock(c) for _ in range(config.num_upsample)])
        self.conv_last = nn.Conv2d(c, config.out_channels, config.tail_kernel, padding=config.tail_kernel // 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        head = self.act_first(self.conv_first(x))
        trunk = self.bn_body(self.conv_body(self.body(head))) + head
        return self.conv_last(self.upsample(trunk))


def to_unit_range(y: torch.Tensor) -> torch.Tensor:
    """Map generator output from [-1, 1] to [0, 1] and clamp."""
    return ((y + 1.0) * 0.5).clamp_(0.0, 1.0)


def output_to_unit(model: nn.Module, y: torch.Tensor) -> torch.Tensor:
    """A model's raw output mapped to [0, 1] and clamped, by its `output_range`: [-1, 1] for
    the SRGAN generator (`to_unit_range`), [0, 1] for SRVGGNetCompact (a clamp)."""
    lo, hi = getattr(model, "output_range", (-1.0, 1.0))
    if (lo, hi) == (0.0, 1.0):
        return y.clamp_(0.0, 1.0)
    if (lo, hi) == (-1.0, 1.0):
        return to_unit_range(y)
    raise ValueError(f"unsupported output range {(lo, hi)}")


class Discriminator(nn.Module):
    """VGG-style discriminator of the paper; returns one logit per image.

    Works for any input size of at least 16x16: an adaptive average pool brings the last
    feature map to 6x6, which is exactly the paper's map for 96x96 crops (a no-op there).
    """

    CHANNELS = (64, 64, 128, 128, 256, 256, 512, 512)

    def __init__(self, in_channels: int = 3, pool_size: int = 6):
        super().__init__()
        layers: list[nn.Module] = []
        cin = in_channels
        for i, cout in enumerate(self.CHANNELS):
            stride = 1 if i % 2 == 0 else 2
            layers.append(nn.Conv2d(cin, cout, 3, stride=stride, padding=1, bias=(i == 0)))
            if i > 0:
                layers.append(nn.BatchNorm2d(cout))
            layers.append(nn.LeakyReLU(0.2, inplace=True))
            cin = cout
        self.features = nn.Sequential(*layers)
        self.pool = nn.AdaptiveAvgPool2d(pool_size)
        self.classifier = nn.Sequential(
            nn.Flatten(),
            nn.Linear(cin * pool_size * pool_size, 1024),
            nn.LeakyReLU(0.2, inplace=True),
            nn.Linear(1024, 1),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[-1] < 16 or x.shape[-2] < 16:
            raise ValueError(f"discriminator needs inputs of at least 16x16, got {tuple(x.shape)}")
        return self.classifier(self.pool(self.features(x))).squeeze(1)


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())
