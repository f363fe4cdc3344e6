"""The paper's network from another codebase's checkpoint: any key layout, matched by order and shape."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ...weights import WeightsError, check_state
from .arch import Generator, GeneratorConfig


@dataclass
class _Layer:
    kind: str  # conv, bn, prelu
    prefix: str
    tensors: dict[str, torch.Tensor]

    def describe(self) -> str:
        t = self.tensors.get("weight", self.tensors.get("running_mean"))
        return f"{self.prefix or '(top)'} {self.kind} {tuple(t.shape)}"


def _layers(state: dict[str, torch.Tensor]) -> tuple[list[_Layer], list[str]]:
    """Group tensors by module and classify each module; returns (layers, unknown keys)."""
    groups: dict[str, dict[str, torch.Tensor]] = {}
    for k, v in state.items():
        prefix, _, leaf = k.rpartition(".")
        groups.setdefault(prefix, {})[leaf] = v
    layers, unknown = [], []
    for prefix, t in groups.items():
        w = t.get("weight")
        if "running_mean" in t and "running_var" in t:
            layers.append(_Layer("bn", prefix, t))
        elif w is not None and w.dim() == 4 and set(t) <= {"weight", "bias"}:
            layers.append(_Layer("conv", prefix, t))
        elif w is not None and w.dim() == 1 and set(t) == {"weight"}:
            layers.append(_Layer("prelu", prefix, t))
        else:
            unknown += [f"{prefix}.{leaf}" for leaf in t]
    return layers, unknown


def _infer_config(convs: list[_Layer]) -> GeneratorConfig:
    ws = [c.tensors["weight"] for c in convs]
    if len(ws) < 3:
        raise WeightsError(f"found {len(ws)} convolutions; the paper's network has at least 3 (head, trunk end, tail)")
    c = int(ws[0].shape[0])
    n_up = 0
    while len(ws) - 2 - n_up > 0 and tuple(ws[-2 - n_up].shape[:2]) == (4 * c, c):
        n_up += 1
    n_body = len(ws) - 2 - n_up  # 2 per residual block + the trunk-end conv
    if n_body < 1 or n_body % 2 == 0 or n_up not in (1, 2, 3):
        raise WeightsError(
            f"the convolutions do not form the paper's network: {len(ws)} convs, {n_up} upsample convs "
            f"({4 * c}x{c}) before the last; expected head, 2 per block, trunk end, 1-3 upsample, tail"
        )
    return GeneratorConfig(
        num_blocks=(n_body - 1) // 2, channels=c, scale=2**n_up, in_channels=int(ws[0].shape[1]),
        out_channels=int(ws[-1].shape[0]), head_kernel=int(ws[0].shape[-1]), tail_kernel=int(ws[-1].shape[-1]),
    )  # fmt: skip


def _target_layers(g: Generator) -> dict[str, list[str]]:
    """Module names of the Generator's convs, BNs and PReLUs, each list in forward order."""
    out: dict[str, list[str]] = {"conv": [], "bn": [], "prelu": []}
    kinds = {torch.nn.Conv2d: "conv", torch.nn.BatchNorm2d: "bn", torch.nn.PReLU: "prelu"}
    for name, m in g.named_modules():
        if type(m) in kinds:
            out[kinds[type(m)]].append(name)
    return out


def map_foreign_srresnet(
    state: dict[str, torch.Tensor], config: GeneratorConfig | None = None, output_range: tuple[float, float] = (-1, 1)
) -> tuple[dict[str, torch.Tensor], GeneratorConfig, dict[str, str]]:
    """Map a foreign SRResNet/SRGAN state dict onto `Generator`'s (see the module docstring).
    Returns (state dict, config, our key -> source key). Raises WeightsError listing every
    layer that did not match."""
    layers, unknown = _layers(_in_our_order(state))
    src = {k: [la for la in layers if la.kind == k] for k in ("conv", "bn", "prelu")}
    if unknown:
        raise WeightsError(
            f"{len(unknown)} tensors are not conv, BN or PReLU parameters: {', '.join(unknown[:12])}"
            + (" (the paper's network has no other layers)" if len(unknown) <= 12 else " ...")
        )
    cfg = config or _infer_config(src["conv"])
    g = Generator(cfg)
    tgt = _target_layers(g)
    expected = g.state_dict()
    problems = []
    if src["bn"] and len(src["bn"]) != len(tgt["bn"]):
        problems.append(f"BN layers: checkpoint has {len(src['bn'])}, the paper's network {len(tgt['bn'])} (or none)")
    for kind in ("conv", "prelu"):
        if len(src[kind]) != len(tgt[kind]):
            problems.append(f"{kind} layers: checkpoint has {len(src[kind])}, expected {len(tgt[kind])}")
    out: dict[str, torch.Tensor] = {}
    origin: dict[str, str] = {}
    for kind in ("conv", "bn", "prelu"):
        for i, (name, la) in enumerate(zip(tgt[kind], src[kind])):
            for leaf in ("weight", "bias", "running_mean", "running_var", "num_batches_tracked"):
                key = f"{name}.{leaf}"
                if key not in expected:
                    continue
                want = expected[key]
                t = la.tensors.get(leaf)
                if t is None:
                    if kind == "conv" and leaf == "bias":
                        t = torch.zeros_like(want)  # a conv without bias
                    elif leaf == "num_batches_tracked":
                        t = torch.zeros_like(want)
                    else:
                        problems.append(f"{kind} #{i} ({la.describe()}) has no {leaf!r} for {key}")
                        continue
                if kind == "prelu" and t.numel() == 1 and want.numel() > 1:
                    t = t.expand(want.shape)  # PReLU() with one slope for all channels
                if tuple(t.shape) != tuple(want.shape):
                    problems.append(
                        f"{kind} #{i}: checkpoint {la.prefix}.{leaf} {tuple(t.shape)} vs {key} {tuple(want.shape)}"
                    )
                    continue
                out[key] = t.to(want.dtype).clone()
                if leaf in la.tensors:
                    origin[key] = f"{la.prefix}.{leaf}"
    if problems:
        lines = [f"the checkpoint does not map onto the paper's network ({_describe(cfg)}); what did not match:"]
        lines += [f"  {p}" for p in problems[:25]]
        if len(problems) > 25:
            lines.append(f"  ... {len(problems) - 25} more")
        raise WeightsError("\n".join(lines))
    if not src["bn"]:
        for name in tgt["bn"]:  # identity BN: (x - 0) / sqrt(var + eps) * 1 + 0 with var + eps = 1
            bn = g.get_submodule(name)
            out[f"{name}.weight"] = torch.ones(bn.num_features)
            out[f"{name}.bias"] = torch.zeros(bn.num_features)
            out[f"{name}.running_mean"] = torch.zeros(bn.num_features)
            out[f"{name}.running_var"] = torch.full((bn.num_features,), 1.0 - bn.eps)
            out[f"{name}.num_batches_tracked"] = torch.zeros((), dtype=torch.long)
    lo_hi = tuple(float(v) for v in output_range)
    if lo_hi == (0.0, 1.0):  # y01 = conv(x): y = 2 y01 - 1 keeps to_unit_range(y) == clamp(y01)
        out["conv_last.weight"] = out["conv_last.weight"] * 2.0
        out["conv_last.bias"] = out["conv_last.bias"] * 2.0 - 1.0
    elif lo_hi != (-1.0, 1.0):
        raise ValueError(f"output range must be -1,1 or 0,1, got {output_range}")
    check_state(g, out, "mapped checkpoint")
    return out, cfg, origin


def _in_our_order(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """A state dict already in `Generator`'s own key layout (e.g. one of our safetensors files,
    whose key order the file did not keep) put back into forward order; others unchanged."""
    if "conv_first.weight" not in state:
        return state
    blocks = {int(k.split(".")[1]) for k in state if k.startswith("body.") and k.split(".")[1].isdigit()}
    ups = {int(k.split(".")[1]) for k in state if k.startswith("upsample.") and k.split(".")[1].isdigit()}
    try:
        w = state["conv_first.weight"]
        g = Generator(GeneratorConfig(num_blocks=len(blocks), channels=int(w.shape[0]), scale=2 ** len(ups)))
    except (ValueError, IndexError):
        return state
    order = list(g.state_dict())
    return {k: state[k] for k in order} if set(order) == set(state) else state


def _describe(cfg: GeneratorConfig) -> str:
    return f"{cfg.num_blocks} blocks x {cfg.channels} channels, x{cfg.scale}"


def convert_srresnet(state, config=None, output_range=None, act=None):
    """The srresnet family's `convert` (srgan_fast.families): any key layout of the paper's
    network, matched by order and shape (`map_foreign_srresnet`)."""
    if isinstance(config, str):
        config = GeneratorConfig.from_name(config)
    output_range = tuple(output_range) if output_range is not None else (-1.0, 1.0)
    new, cfg, origin = map_foreign_srresnet(state, config, output_range)
    return new, cfg, origin, {"output_range": list(output_range)}
