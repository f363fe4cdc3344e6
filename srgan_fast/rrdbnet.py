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

import re
from dataclasses import dataclass
from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from .families import Family, FamilyConfig, check_limits, register_family
from .plan import INPUT, OUT_MAP_CLAMP, FusedOp, Plan, assign_buffers, value_shapes
from .weights import WeightsError, check_state, unnest_state

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

    @property
    def in_channels(self) -> int:
        return self.num_in_ch


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


def nearest_subpixel_weight(w: torch.Tensor, b: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """A KxK conv applied to a x2 nearest-upsampled map, as a conv on the map itself with 4x the
    outputs (one per output phase, PixelShuffle(2) order) followed by PixelShuffle(2).

    Output pixel (2Y+i, 2X+j) sums w[o, c, dy+R, dx+R] * A[c, (2Y+i+dy) // 2, (2X+j+dx) // 2]: the
    tap lands on the low-resolution pixel Y + (i+dy) // 2, so the phase-(i, j) kernel is the KxK
    taps summed onto a (2*ceil(R/2)+1)^2 kernel (3x3 for K=3). Zero padding maps to zero padding
    (row -1 at the high resolution is row -1 below). Returns (weight, bias) in fp32."""
    cout, c, k, _ = w.shape
    r = k // 2
    ru = (r + 1) // 2
    ku = 2 * ru + 1
    wu = torch.zeros(cout * 4, c, ku, ku, dtype=torch.float64)
    wd = w.double()
    for i in range(2):
        for j in range(2):
            for dy in range(-r, r + 1):
                for dx in range(-r, r + 1):
                    wu[i * 2 + j :: 4, :, (i + dy) // 2 + ru, (j + dx) // 2 + ru] += wd[:, :, dy + r, dx + r]
    return wu.float().contiguous(), b.detach().float().repeat_interleave(4).contiguous()


def _wb(conv: nn.Conv2d, scale: float = 1.0) -> tuple[torch.Tensor, torch.Tensor]:
    return (conv.weight.detach().double() * scale).float().contiguous(), (conv.bias.detach().double() * scale).float()


def compile_rrdbnet_plan(model: RRDBNet) -> Plan:
    """An RRDBNet as 15 * num_block + 6 fused ops (see the module docstring)."""
    cfg = model.config
    f, g = cfg.num_feat, cfg.num_grow_ch
    ops: list[FusedOp] = []

    def emit(kind, src, wb, skip=None, dst=None, **kw) -> str:
        """Append an op reading value `src`; it writes a new value, or a slice of `dst`."""
        op = FusedOp(kind, *wb, src=src, skip=skip, dst=dst or f"v{len(ops)}", **kw)
        ops.append(op)
        return op.dst

    def lrelu(c):
        return torch.full((c,), LRELU)

    # each value below that an RDB reads is the prefix of its wide buffer (f + 4g channels)
    feat = x = emit("head", INPUT, _wb(model.conv_first))
    for rrdb in model.body:
        rrdb_in = x
        for j, rdb in enumerate((rrdb.rdb1, rrdb.rdb2, rrdb.rdb3)):
            for i, conv in enumerate(rdb.convs()[:4]):  # conv_i writes channels f + i*g .. of x's buffer
                emit("dense_conv", x, _wb(conv), dst=x, dst_off=f + i * g, prelu=lrelu(g))
            if j < 2:  # rdb: 0.2 * conv5 + x, written as the next RDB's input
                x = emit("dense_out", x, _wb(rdb.conv5, RES_SCALE), skip=x)
            else:  # rrdb: 0.2 * (0.2 * conv5 + r2) + rrdb_in, r2 the first f channels conv5 reads
                w, b = _wb(rdb.conv5, RES_SCALE * RES_SCALE)
                w = w.double()
                w[:, :f, 1, 1] += RES_SCALE * torch.eye(f, dtype=torch.float64)
                x = emit("rrdb_out", x, (w.float().contiguous(), b), skip=rrdb_in)
    x = emit("trunk_end", x, _wb(model.conv_body), skip=feat)
    s = 1
    for up in (model.conv_up1, model.conv_up2):
        x = emit("upsample", x, nearest_subpixel_weight(up.weight.detach(), up.bias.detach()), prelu=lrelu(f),
                 shuffle=True, shuffle_r=2, scale_in=s)  # fmt: skip
        s *= 2
    x = emit("hr_conv", x, _wb(model.conv_hr), prelu=lrelu(f), scale_in=s)
    emit("tail", x, _wb(model.conv_last), out_map=OUT_MAP_CLAMP, scale_in=s)
    model_macs = sum(op.macs_per_lr_pixel() for op in ops)  # the sub-pixel convs do the network's MACs
    buffers = assign_buffers(ops, value_shapes(ops, (cfg.num_in_ch, 1)))
    return Plan(cfg, ops, model_macs, buffers, source=model)


def random_rrdbnet(config: RRDBNetConfig | None = None, seed: int = 0) -> RRDBNet:
    """An RRDBNet with random weights (He-like, residual branches scaled down as ESRGAN's init
    does) so activations stay O(1) and the output mostly inside [0, 1]: for timing and parity
    tests, nothing downloaded."""
    gen = torch.Generator().manual_seed(seed)
    m = RRDBNet(config).eval()
    with torch.no_grad():
        for name, mod in m.named_modules():
            if isinstance(mod, nn.Conv2d):
                fan = mod.weight[0].numel()
                gain = {"conv_last": 0.008}.get(name, 0.3 if ".rdb" in name else 1.6)
                mod.weight.copy_(torch.randn(mod.weight.shape, generator=gen) * (gain / fan) ** 0.5)
                mod.bias.copy_(torch.randn(mod.bias.shape, generator=gen) * 0.05)
        m.conv_last.bias.add_(0.5)  # centre the output in [0, 1]
    return m


# ----------------------------------------------------------------------------------------
# checkpoints: BasicSR / Real-ESRGAN names, and the two original ESRGAN layouts

_ESRGAN_NEW = [  # xinntao/ESRGAN's RRDBNet_arch.py names
    (re.compile(r"RRDB_trunk\.(\d+)\.RDB([123])\.conv([1-5])\.(weight|bias)"), r"body.\1.rdb\2.conv\3.\4"),
    (re.compile(r"trunk_conv\.(weight|bias)"), r"conv_body.\1"),
    (re.compile(r"upconv([12])\.(weight|bias)"), r"conv_up\1.\2"),
    (re.compile(r"HRconv\.(weight|bias)"), r"conv_hr.\1"),
    (re.compile(r"(conv_first|conv_last)\.(weight|bias)"), r"\1.\2"),
]
_ESRGAN_OLD = [  # the original sequential "model.N" layout (model.1.sub.B is the trunk conv)
    (re.compile(r"model\.0\.(weight|bias)"), r"conv_first.\1"),
    (re.compile(r"model\.1\.sub\.(\d+)\.RDB([123])\.conv([1-5])\.0\.(weight|bias)"), r"body.\1.rdb\2.conv\3.\4"),
    (re.compile(r"model\.3\.(weight|bias)"), r"conv_up1.\1"),
    (re.compile(r"model\.6\.(weight|bias)"), r"conv_up2.\1"),
    (re.compile(r"model\.8\.(weight|bias)"), r"conv_hr.\1"),
    (re.compile(r"model\.10\.(weight|bias)"), r"conv_last.\1"),
]
_OLD_TRUNK = re.compile(r"model\.1\.sub\.(\d+)\.(weight|bias)")


def _layout(state: dict) -> str | None:
    keys = set(state)
    if "conv_first.weight" in keys and any(k.startswith("body.") and ".rdb" in k for k in keys):
        return "basicsr"
    if "conv_first.weight" in keys and any(k.startswith("RRDB_trunk.") for k in keys):
        return "esrgan"
    if "model.0.weight" in keys and any(k.startswith("model.1.sub.") and ".RDB" in k for k in keys):
        return "esrgan-old"
    return None


def _rename(state: dict, layout: str) -> tuple[dict[str, torch.Tensor], dict[str, str], list[str]]:
    """(state under BasicSR names, our key -> source key, source keys that map nowhere)."""
    if layout == "basicsr":
        return dict(state), {k: k for k in state}, []
    rules = _ESRGAN_NEW if layout == "esrgan" else _ESRGAN_OLD
    new, origin, stray = {}, {}, []
    for k, v in state.items():
        for pat, rep in rules:
            if pat.fullmatch(k):
                ours = pat.sub(rep, k)
                break
        else:
            m = _OLD_TRUNK.fullmatch(k) if layout == "esrgan-old" else None
            if m is None:
                stray.append(k)
                continue
            ours = f"conv_body.{m.group(2)}"  # the trunk conv: model.1.sub.<num_block>
        new[ours], origin[ours] = v, k
    return new, origin, stray


def rrdbnet_state_from_checkpoint(obj) -> tuple[dict[str, torch.Tensor], RRDBNetConfig, dict[str, str]]:
    """The state dict (BasicSR names), config and our key -> source key of an RRDBNet checkpoint in
    any of the three layouts (possibly under `params_ema` (preferred) / `params`). The config is
    read off the shapes; anything else is refused, listing what did not match."""
    state = unnest_state(obj)
    if not state:
        raise WeightsError("no state dict found in the checkpoint")
    layout = _layout(state)
    if layout is None:
        raise WeightsError(
            "not an RRDBNet checkpoint: expected BasicSR/Real-ESRGAN names (conv_first, body.N.rdbR.convC, "
            "conv_body, conv_up1, conv_up2, conv_hr, conv_last), ESRGAN's (conv_first, RRDB_trunk.N.RDBR.convC, "
            "trunk_conv, upconv1, upconv2, HRconv, conv_last) or the original model.0 .. model.10 layout"
        )
    new, origin, stray = _rename(state, layout)
    stray += [k for k in new if not _KEY.fullmatch(k)]
    if layout == "esrgan-old":  # the trunk conv is model.1.sub.<num_block>, once
        trunks = sorted({int(m.group(1)) for k in state if (m := _OLD_TRUNK.fullmatch(k))})
        n_blocks = len({int(k.split(".")[3]) for k in state if k.startswith("model.1.sub.") and ".RDB" in k})
        if trunks != [n_blocks]:
            raise WeightsError(
                f"not a supported RRDBNet checkpoint (original layout): the trunk conv must be model.1.sub.{n_blocks} "
                f"(after {n_blocks} RRDBs), found it at model.1.sub.{trunks or '(none)'}"
            )
    needed = ("conv_first.weight", "body.0.rdb1.conv1.weight", "conv_last.weight", "conv_up2.weight")
    absent = [k for k in needed if k not in new or new[k].dim() != 4]
    if stray or absent:
        raise WeightsError(
            f"not a supported RRDBNet checkpoint ({layout} layout)"
            + (f"; unexpected keys ({len(stray)}): {', '.join(stray[:10])}" if stray else "")
            + (f"; missing: {', '.join(absent)}" if absent else "")
            + (
                "; (an x8 ESRGAN has a third upsampling conv, which is not supported)"
                if stray and layout != "basicsr"
                else ""
            )  # fmt: skip
        )
    w0, wg, wl = new["conv_first.weight"], new["body.0.rdb1.conv1.weight"], new["conv_last.weight"]
    feat, cin, cout = int(w0.shape[0]), int(w0.shape[1]), int(wl.shape[0])
    blocks = sorted({int(k.split(".")[1]) for k in new if k.startswith("body.")})
    if blocks != list(range(len(blocks))):
        raise WeightsError(f"RRDB blocks must be body.0 .. body.N-1 without gaps; found indices {blocks[:40]}")
    # BasicSR's x2 / x1 models pixel-unshuffle the input: conv_first reads 4x / 16x the output channels
    scale = {cout: 4, 4 * cout: 2, 16 * cout: 1}.get(cin, 4)
    try:
        cfg = RRDBNetConfig(num_in_ch=cin if scale == 4 else cout, num_out_ch=cout, num_feat=feat,
                            num_block=len(blocks), num_grow_ch=int(wg.shape[0]), scale=scale)  # fmt: skip
    except ValueError as e:
        raise WeightsError(f"not a supported RRDBNet checkpoint: {e}") from None
    with torch.device("meta"):  # names and shapes only: nothing allocated
        check_state(RRDBNet(cfg), new, "checkpoint")
    return new, cfg, origin


def _convert(state, config=None, output_range=None, act=None):
    """The family's `convert`: a checkpoint in any of the three layouts, renamed to BasicSR's keys."""
    if config is not None:
        raise ValueError("--config is for the paper's network; an RRDBNet's config is read off its shapes")
    if act is not None:
        raise ValueError("--act is for compact models; RRDBNet's activations are fixed (LeakyReLU 0.2)")
    if output_range is not None and tuple(output_range) != (0.0, 1.0):
        raise ValueError("RRDBNet's output is in [0, 1]: use --output-range 0,1 (the default for it)")
    new, cfg, origin = rrdbnet_state_from_checkpoint(state)
    return new, cfg, origin, {}


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
