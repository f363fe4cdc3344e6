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

import math
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
    "CompactConfig",
    "SRVGGNetCompact",
    "compile_compact_plan",
    "compact_state_from_checkpoint",
    "random_compact",
    "COMPACT_PRESETS",
    "FAMILY",
]

FAMILY = "srvgg_compact"  # the weights file's "family" metadata for this model
ACTS = {"prelu": None, "relu": 0.0, "leakyrelu": 0.1}  # act_type -> constant slope (None: learnt)
# Sane maxima, far above the published models (32 convs x 64 features), low enough that a config
# read from a file cannot ask for unbounded work (10**6 convs would take hours to build).
LIMITS = {"num_in_ch": 4, "num_out_ch": 4, "num_feat": 1024, "num_conv": 256, "upscale": 4}


@dataclass(frozen=True)
class CompactConfig(FamilyConfig):
    """Shape of an SRVGGNetCompact (the published defaults)."""

    family: ClassVar[str] = FAMILY
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

    @property
    def scale(self) -> int:
        return self.upscale

    @property
    def in_channels(self) -> int:
        return self.num_in_ch

    @classmethod
    def from_name(cls, name: str) -> CompactConfig:
        try:
            return COMPACT_PRESETS[name]
        except KeyError:
            raise ValueError(f"unknown compact preset {name!r}; known: {', '.join(sorted(COMPACT_PRESETS))}") from None


COMPACT_PRESETS: dict[str, CompactConfig] = {
    "realesr-animevideov3": CompactConfig(num_conv=16),
    "realesr-general-x4v3": CompactConfig(num_conv=32),
    # tiny: for tests and the Triton interpreter
    "tiny_compact_x4": CompactConfig(num_feat=16, num_conv=2),
}


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


def _slopes(act: nn.Module, act_type: str, channels: int) -> torch.Tensor:
    if act_type == "prelu":
        a = act.weight.detach().float()
        return a.expand(channels).contiguous() if a.numel() == 1 else a.contiguous()
    return torch.full((channels,), ACTS[act_type])


def compile_compact_plan(model: SRVGGNetCompact) -> Plan:
    """An SRVGGNetCompact as num_conv + 2 fused ops (see the module docstring)."""
    cfg = model.config
    convs = [m for m in model.body if isinstance(m, nn.Conv2d)]
    acts = [m for m in model.body if not isinstance(m, nn.Conv2d)]
    ops: list[FusedOp] = []
    values: dict[str, tuple[int, int]] = {INPUT: (cfg.num_in_ch, 1)}
    x = INPUT
    for i, (conv, act) in enumerate(zip(convs[:-1], acts)):
        w, b = fold_bn(conv, None)
        op = FusedOp("head" if i == 0 else "body_conv", w, b, prelu=_slopes(act, cfg.act_type, cfg.num_feat),
                     src=x, dst=f"v{len(ops)}")  # fmt: skip
        ops.append(op)
        values[op.dst] = (op.out_channels, 1)
        x = op.dst
    w, b = fold_bn(convs[-1], None)
    r = cfg.upscale
    tail = FusedOp("tail", w, b, shuffle=True, shuffle_r=r, skip=INPUT, skip_up=r, out_map=OUT_MAP_CLAMP,
                   src=x, dst=f"v{len(ops)}")  # fmt: skip
    ops.append(tail)
    values[tail.dst] = (tail.out_channels, r)
    model_macs = sum(op.macs_per_lr_pixel() for op in ops)
    buffers = assign_buffers(ops, values)
    return Plan(cfg, ops, model_macs, buffers, source=model)


def random_compact(config: CompactConfig | str = "realesr-animevideov3", seed: int = 0, slope: float = 0.25):
    """An SRVGGNetCompact with random weights scaled so activations stay O(1) through the body
    (He-like init, PReLU slopes in [0, slope)): for timing and parity tests, nothing downloaded."""
    g = torch.Generator().manual_seed(seed)
    m = SRVGGNetCompact(config).eval()
    with torch.no_grad():
        for mod in m.body:
            if isinstance(mod, nn.Conv2d):
                fan = mod.weight[0].numel()
                mod.weight.copy_(torch.randn(mod.weight.shape, generator=g) * (1.6 / fan) ** 0.5)
                mod.bias.copy_(torch.randn(mod.bias.shape, generator=g) * 0.05)
            elif isinstance(mod, nn.PReLU):
                mod.weight.copy_(torch.rand(mod.weight.shape, generator=g) * slope)
    return m


def compact_state_from_checkpoint(obj, act_type: str | None = None) -> tuple[dict[str, torch.Tensor], CompactConfig]:
    """The state dict and config of a published-layout SRVGGNetCompact checkpoint (a dict of
    tensors `body.N.weight` / `body.N.bias`, possibly under `params_ema` (preferred) or
    `params`). The config is read off the shapes; `act_type` is needed only when the file has
    no PReLU weights (relu and leakyrelu have none, so the file cannot say which)."""
    state = unnest_state(obj)
    if not state:
        raise WeightsError("no state dict found in the checkpoint")
    idx = sorted({int(k.split(".")[1]) for k in state if k.startswith("body.") and k.split(".")[1].isdigit()})
    stray = sorted(k for k in state if not k.startswith("body."))
    convs = [i for i in idx if state.get(f"body.{i}.weight") is not None and state[f"body.{i}.weight"].dim() == 4]
    if stray or len(convs) < 2 or convs != list(range(0, 2 * len(convs) - 1, 2)):
        raise WeightsError(
            "not an SRVGGNetCompact checkpoint: expected convs at body.0, body.2, ..., activations between"
            + (f"; unexpected keys: {', '.join(stray[:10])}" if stray else "")
            + f"; conv indices found: {convs[:40]}"
        )
    w0, wl = state["body.0.weight"], state[f"body.{convs[-1]}.weight"]
    cin, feat = int(w0.shape[1]), int(w0.shape[0])
    rr = wl.shape[0] / cin
    r = round(math.sqrt(rr))
    if r * r != rr:
        raise WeightsError(f"last conv has {wl.shape[0]} outputs, not {cin} x r^2")
    has_prelu = "body.1.weight" in state
    if act_type is None:
        if not has_prelu:
            raise WeightsError("the checkpoint has no PReLU weights: say --act relu or --act leakyrelu")
        act_type = "prelu"
    cfg = CompactConfig(num_in_ch=cin, num_out_ch=cin, num_feat=feat, num_conv=len(convs) - 2, upscale=r,
                        act_type=act_type)  # fmt: skip
    check_state(SRVGGNetCompact(cfg), state, "checkpoint")
    return state, cfg


def _convert(state, config=None, output_range=None, act=None):
    """The family's `convert`: a published-layout checkpoint, keys kept as they are."""
    if config is not None:
        raise ValueError("--config is for the paper's network; a compact model's config is read off its shapes")
    if output_range is not None and tuple(output_range) != (0.0, 1.0):
        raise ValueError("compact models' output is in [0, 1]: use --output-range 0,1 (the default for them)")
    new, cfg = compact_state_from_checkpoint(state, act_type=act)
    return new, cfg, {k: k for k in new}, {}


def _looks_compact(state: dict) -> bool:
    """body.N weights and biases only, 3x3 convs, the last one C x r^2 outputs."""
    keys = list(state)
    if keys and all(re.fullmatch(r"body\.\d+\.(weight|bias)", k) for k in keys):
        ws = [v for k, v in state.items() if k.endswith("weight") and v.dim() == 4]
        return bool(ws) and all(w.shape[-1] == 3 for w in ws) and ws[-1].shape[0] % (4 * ws[0].shape[1]) == 0
    return False


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
