"""Convert other people's checkpoints into srgan_fast safetensors files.

Two kinds of source:
  * the paper's network (SRResNet / SRGAN generator) in another codebase's layout: the keys
    differ, the layers are the paper's (same order and shapes, with or without BN). Tensors are
    grouped by module (the key up to its last dot) and each module classified by what it holds:
    conv (a 4-D weight, bias optional), BN (running statistics) or PReLU (a 1-D weight alone).
    Convs, BNs and PReLUs are then mapped in order onto `Generator`'s, shapes checked one by one
    (the config is read off the convs' shapes). Without BN, the Generator's BN layers become
    identities; a single-slope PReLU is repeated per channel. Order is the checkpoint's own for
    torch.save files; safetensors files do not keep it, so their keys are taken in natural order
    (numbers compared as numbers): convert from the .pth when that order is not the layers'.
  * Real-ESRGAN's compact models (SRVGGNetCompact, `params` / `params_ema` dicts): see compact.py.

A source whose output is in [0, 1] (`output_range=(0, 1)`) gets the affine map folded into its
last conv (w' = 2 w, b' = 2 b - 1), so the Generator's [-1, 1] convention and `to_unit_range`
hold. A parity check runs the source module when its code is given (`module="file.py:Class"`),
else a self-check (every tensor of the written file equals its source, the forward is finite).

Checkpoints are read with `torch.load(weights_only=True)` only, or as safetensors.
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
from dataclasses import dataclass
from pathlib import Path

import torch

from .errors import UsageError
from .families import convert_fn, converter, detect_family
from .models import Generator, GeneratorConfig
from .weights import (
    WeightsError,
    _load_file,
    check_state,
    checkpoint_path,
    read_header,
    save_generator,
    torch_load_weights_only,
    unnest_state,
)

__all__ = ["load_checkpoint", "map_foreign_srresnet", "convert", "ConversionReport", "load_module"]

def _natural(key: str):
    return [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", key)]


def load_checkpoint(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """The tensors of a checkpoint, in layer order as far as the file keeps it: `torch.load(...,
    weights_only=True)` for .pth/.pt (a state dict, or one nested as `weights.unnest_state` finds
    it), safetensors otherwise. A "module." prefix is dropped."""
    path = checkpoint_path(path)
    with open(path, "rb") as f:
        head = f.read(9)
    if path.suffix == ".safetensors" or (len(head) == 9 and head[8:9] == b"{"):
        read_header(path)  # byte ranges checked before any tensor is read
        raw = _load_file(path)
        obj = {k: raw[k] for k in sorted(raw, key=_natural)}
    else:
        obj = torch_load_weights_only(path)
    state = unnest_state(obj)
    if not state:
        raise WeightsError(f"{path}: no state dict (a dict of tensors) found in the checkpoint")
    return state


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


def load_module(spec: str, kwargs: dict | None = None) -> torch.nn.Module:
    """Build the source module from `file.py:ClassName` (runs that file: only code you trust)."""
    file, sep, cls = spec.rpartition(":")
    if not sep or not file or not cls:
        raise ValueError(f"--module must be FILE.py:ClassName, got {spec!r}")
    if not Path(file).is_file():
        raise ValueError(f"--module: no such file {file}")
    if kwargs is not None and not isinstance(kwargs, dict):
        raise UsageError(f"--module-args must be a JSON object of keyword arguments, got {kwargs!r}")
    try:
        ms = importlib.util.spec_from_file_location(f"_srgan_fast_src_{Path(file).stem}", file)
        mod = importlib.util.module_from_spec(ms)
        ms.loader.exec_module(mod)
    except Exception as e:  # the user's file: its errors are theirs to fix, in one line
        raise UsageError(f"--module {spec}: {file} failed to load ({type(e).__name__}: {e})") from None
    if not hasattr(mod, cls):
        raise ValueError(f"--module: {file} has no {cls}")
    try:
        return getattr(mod, cls)(**(kwargs or {}))
    except Exception as e:
        raise UsageError(f"--module {spec}: {cls}(**{kwargs or {}}) failed ({type(e).__name__}: {e})") from None


@dataclass
class ConversionReport:
    path: Path
    family: str
    config: dict
    check: str  # what was checked, with the figure
    max_abs_diff: float | None = None

    def __str__(self) -> str:
        return f"{self.path} ({self.family}, {json.dumps(self.config)}); {self.check}"


def convert_srresnet(state, config=None, output_range=None, act=None):
    """The srresnet family's `convert` (srgan_fast.families): any key layout of the paper's
    network, matched by order and shape (`map_foreign_srresnet`)."""
    if isinstance(config, str):
        config = GeneratorConfig.from_name(config)
    output_range = tuple(output_range) if output_range is not None else (-1.0, 1.0)
    new, cfg, origin = map_foreign_srresnet(state, config, output_range)
    return new, cfg, origin, {"output_range": list(output_range)}


def convert(
    src: str | os.PathLike,
    dst: str | os.PathLike,
    family: str = "auto",
    config: str | GeneratorConfig | None = None,
    output_range: tuple[float, float] | None = None,
    module: str | None = None,
    module_kwargs: dict | None = None,
    act: str | None = None,
    tolerance: float = 1e-4,
) -> ConversionReport:
    """Convert `src` (see the module docstring) to the safetensors file `dst`, checked.
    output_range: what the source model outputs, (-1, 1) or (0, 1) (default: (-1, 1) for the
    paper's network, (0, 1) for compact models, whose only convention it is)."""
    from .weights import load_generator

    src, dst = Path(src), Path(dst)
    if src.exists() and dst.exists() and src.resolve() == dst.resolve():
        raise UsageError(f"{dst}: the output is the input; write the converted file elsewhere")
    if dst.is_dir():
        raise UsageError(f"{dst}: is a folder; give the .safetensors file to write")
    from .upscale import check_outputs

    # before any work, as for export: never over a device node, a FIFO or the input; only the
    # last folder of `dst` is made, where its parent exists
    check_outputs([src] if src.exists() else [], [dst])
    state = load_checkpoint(src)
    fam = detect_family(state) if family == "auto" else converter(family)
    if output_range is None:
        output_range = getattr(fam.module, "output_range", (-1.0, 1.0))
    rng = tuple(float(v) for v in output_range)
    if rng not in ((-1.0, 1.0), (0.0, 1.0)):
        raise ValueError(f"output range must be -1,1 or 0,1, got {output_range}")
    new, cfg, origin, card_extra = convert_fn(fam)(state, config=config, output_range=rng, act=act)
    card = {"converted_from": Path(src).name, **card_extra}
    # written beside dst and renamed only once every check has passed: a failed conversion
    # leaves nothing behind and never replaces a good file
    tmp = dst.with_name(f".{dst.name}.{os.getpid()}.converting.safetensors")
    try:
        report = _write_and_check(new, tmp, cfg, card, fam, rng, state, origin, module, module_kwargs, tolerance,
                                  load_generator)  # fmt: skip
        os.replace(tmp, dst)
    finally:
        tmp.unlink(missing_ok=True)
    report.path = dst
    return report


def _write_and_check(new, path, cfg, card, fam, rng, state, origin, module, module_kwargs, tolerance, load_generator):
    path = save_generator(new, path, config=cfg, card=card)
    ours = load_generator(path)
    x = torch.rand(1, cfg.in_channels, 20, 18, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        y = ours(x)
    if not torch.isfinite(y).all():
        raise WeightsError("the converted model's output is not finite on a random input")
    if module is not None:
        srcm = load_module(module, module_kwargs).float().eval()
        try:
            srcm.load_state_dict(state, strict=True)
        except RuntimeError as e:
            msg = " ".join(ln.strip() for ln in str(e).splitlines()[1:] if ln.strip())[:400]
            raise ValueError(f"--module {module}: the checkpoint does not load into it: {msg}") from None
        with torch.no_grad():
            ys = srcm(x).float()
        if rng != tuple(getattr(ours, "output_range", (-1.0, 1.0))):  # theirs [0, 1], ours [-1, 1]
            ys = ys * 2.0 - 1.0
        if ys.shape != y.shape:
            raise ValueError(f"--module output {tuple(ys.shape)} vs converted {tuple(y.shape)}")
        diff = (ys - y).abs().max().item()
        tol = tolerance * max(1.0, ys.abs().max().item())
        if not diff <= tol:
            raise ValueError(f"parity check failed: converted model differs from {module} by {diff:.3g} > {tol:.3g}")
        return ConversionReport(path, cfg.family, cfg.to_dict(), f"parity vs {module}: max abs diff {diff:.3g}", diff)
    # self-check: each mapped tensor equals its source bit for bit (the folded last conv and
    # identity BNs excepted), read back from the written file
    sd = ours.state_dict()
    # the last conv is rewritten only where the output range was folded in (theirs [0, 1], ours [-1, 1])
    ours_range = tuple(getattr(ours, "output_range", (-1.0, 1.0)))
    folded = {"conv_last.weight", "conv_last.bias"} if rng != ours_range else set()
    bad = [k for k, s in origin.items()
           if k not in folded and not torch.equal(sd[k], state[s].to(sd[k]).expand_as(sd[k]))]  # fmt: skip
    if bad:
        raise WeightsError(f"self-check failed: {', '.join(bad[:10])} differ from the checkpoint after writing")
    check = f"self-check: {len(origin)} tensors identical, output finite"
    return ConversionReport(path, cfg.family, cfg.to_dict(), check)
