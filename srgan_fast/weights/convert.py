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

from ..errors import UsageError
from ..families import convert_fn, converter, detect_family
from ..families.srresnet.arch import GeneratorConfig
from . import (
    WeightsError,
    _load_file,
    checkpoint_path,
    read_header,
    save_generator,
    torch_load_weights_only,
    unnest_state,
)

__all__ = ["load_checkpoint", "convert", "ConversionReport", "load_module"]


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
    from . import load_generator

    src, dst = Path(src), Path(dst)
    if src.exists() and dst.exists() and src.resolve() == dst.resolve():
        raise UsageError(f"{dst}: the output is the input; write the converted file elsewhere")
    if dst.is_dir():
        raise UsageError(f"{dst}: is a folder; give the .safetensors file to write")
    from ..io.paths import check_outputs

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
    _refuse_bad_values(new, origin, src)  # named by the input and its own key, before anything is written
    from ..io.paths import atomic_output

    # written beside dst, checked, fsync'ed and renamed only once every check has passed
    # (io.paths.atomic_output): a failed conversion leaves nothing behind and never replaces a good file
    tmp = None
    try:
        with atomic_output(dst) as tmp:
            report = _write_and_check(new, tmp, cfg, card, fam, rng, state, origin, module, module_kwargs,
                                      tolerance, load_generator, src)  # fmt: skip
    except WeightsError as e:
        # a check of the written file names the temporary file, gone by now: name the input
        if tmp is None or str(tmp) not in str(e):
            raise
        raise WeightsError(str(e).replace(str(tmp), f"{src} (as converted)")) from None
    report.path = dst
    return report


def _refuse_bad_values(new: dict, origin: dict, src: Path) -> None:
    """What `load_generator` refuses (NaN/Inf, integer weights, negative BN variances), said of
    the input file and its own key names rather than of the file being written."""
    from . import _check_values

    _check_values({origin.get(k, k): v for k, v in new.items() if isinstance(v, torch.Tensor)}, src)


def _write_and_check(
    new, path, cfg, card, fam, rng, state, origin, module, module_kwargs, tolerance, load_generator, src
):
    path = save_generator(new, path, config=cfg, card=card)
    ours = load_generator(path)
    x = torch.rand(1, cfg.in_channels, 20, 18, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        y = ours(x)
    if not torch.isfinite(y).all():
        raise WeightsError(
            f"{src}: converted, the model's output is not finite on a random input (weights too large for fp32?); "
            "the checkpoint cannot be used"
        )
    if module is not None:
        srcm = load_module(module, module_kwargs).float().eval()
        try:
            srcm.load_state_dict(state, strict=True)
        except RuntimeError as e:
            msg = " ".join(ln.strip() for ln in str(e).splitlines()[1:] if ln.strip())[:400]
            raise ValueError(f"--module {module}: {src} does not load into it: {msg}") from None
        with torch.no_grad():
            ys = srcm(x).float()
        if rng != tuple(getattr(ours, "output_range", (-1.0, 1.0))):  # theirs [0, 1], ours [-1, 1]
            ys = ys * 2.0 - 1.0
        if ys.shape != y.shape:
            raise ValueError(f"--module output {tuple(ys.shape)} vs converted {tuple(y.shape)}")
        diff = (ys - y).abs().max().item()
        tol = tolerance * max(1.0, ys.abs().max().item())
        if not diff <= tol:
            raise ValueError(
                f"{src}: parity check failed: the converted model differs from {module} by {diff:.3g} > {tol:.3g} "
                "(max abs); check --family, --config and --output-range"
            )
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
        raise WeightsError(
            f"{src}: self-check failed: {', '.join(bad[:10])} differ from the checkpoint after writing; "
            "this is a bug, please report it"
        )
    check = f"self-check: {len(origin)} tensors identical, output finite"
    return ConversionReport(path, cfg.family, cfg.to_dict(), check)
