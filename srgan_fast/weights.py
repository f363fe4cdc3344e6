"""Generator weights as safetensors files, with the model config in the metadata. Never pickle.

File layout: the tensors of `Generator.state_dict()` under their own names, plus metadata
  "format": "srgan_fast/1", "config": GeneratorConfig as JSON, and free-form JSON under
  "card" (training run, measured PSNR/SSIM, ...). "family" names the model family
  ("srresnet", the default when absent, so older files load; "srvgg_compact" for Real-ESRGAN's
  compact models, whose "config" is a compact.CompactConfig).

Bundled models live in `srgan_fast/weights/NAME.safetensors`; `resolve()` takes a bundled
name or a path.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import torch

from .models import Generator, GeneratorConfig

__all__ = [
    "WeightsError",
    "save_generator",
    "load_generator",
    "load_state",
    "resolve",
    "bundled_models",
    "BUNDLED_DIR",
]

FORMAT = "srgan_fast/1"
BUNDLED_DIR = Path(__file__).resolve().parent / "weights"


class WeightsError(ValueError):
    """A weights file is missing, not safetensors, or does not fit the model."""


def _sniff(path: Path) -> None:
    """Refuse pickles and other non-safetensors files with a message that says what to do."""
    with open(path, "rb") as f:
        head = f.read(9)
    size = path.stat().st_size
    # safetensors: u64 little-endian header length, then the JSON header
    if len(head) == 9 and head[8:9] == b"{" and int.from_bytes(head[:8], "little") <= size - 8:
        return
    if head[:2] == b"PK" or head[:1] == b"\x80":
        raise WeightsError(
            f"{path}: this is a PyTorch pickle checkpoint (torch.save). srgan_fast never unpickles "
            "weights (unpickling runs arbitrary code). Convert it once, in a Python you trust: "
            "`srgan-fast convert IN.pth OUT.safetensors` (loads it with torch.load(weights_only=True))."
        )
    raise WeightsError(f"{path}: not a safetensors file")


def save_generator(
    model: Generator | dict,
    path: str | os.PathLike,
    config: GeneratorConfig | None = None,
    card: dict | None = None,
    dtype: torch.dtype | None = None,
) -> Path:
    """Write a generator's weights (and config, card) to `path` atomically."""
    from safetensors.torch import save_file

    if isinstance(model, torch.nn.Module):  # a Generator, or a module of another family (with .config)
        config = config or model.config
        state = model.state_dict()
    else:
        state = model
        if config is None:
            raise ValueError("save_generator needs a config when given a state dict")
    tensors = {}
    for k, v in state.items():
        v = v.detach().to("cpu")
        if dtype is not None and v.is_floating_point():
            v = v.to(dtype)
        tensors[k] = v.contiguous()
    meta = {"format": FORMAT, "config": json.dumps(config.to_dict())}
    family = getattr(config, "family", "srresnet")
    if family != "srresnet":  # srresnet files stay byte-identical to before families existed
        meta["family"] = family
    if card:
        meta["card"] = json.dumps(card)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    save_file(tensors, str(tmp), metadata=meta)
    os.chmod(tmp, 0o644)  # safetensors creates 0600 files; weights are not secrets
    os.replace(tmp, path)
    return path


def read_metadata(path: str | os.PathLike) -> dict:
    """The file's metadata, with "config" and "card" decoded from JSON."""
    from safetensors import safe_open

    path = Path(path)
    _sniff(path)
    with safe_open(str(path), framework="pt") as f:
        meta = dict(f.metadata() or {})
    for k in ("config", "card"):
        if k in meta:
            meta[k] = json.loads(meta[k])
    return meta


def load_state(path: str | os.PathLike) -> tuple[dict[str, torch.Tensor], dict]:
    """Raw tensors and decoded metadata of a safetensors weights file."""
    from safetensors.torch import load_file

    path = Path(path)
    if not path.exists():
        raise WeightsError(f"{path}: no such weights file")
    _sniff(path)
    meta = read_metadata(path)
    return load_file(str(path)), meta


def check_state(model: torch.nn.Module, state: dict[str, torch.Tensor], source: str = "") -> None:
    """Raise WeightsError naming every missing, unexpected and wrongly shaped key."""
    expected = model.state_dict()
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    shapes = sorted(
        f"{k}: file {tuple(state[k].shape)} vs model {tuple(expected[k].shape)}"
        for k in set(expected) & set(state)
        if tuple(state[k].shape) != tuple(expected[k].shape)
    )
    if missing or unexpected or shapes:
        lines = [f"{source or 'weights'} do not fit the model:"]
        if missing:
            lines.append(f"  missing keys ({len(missing)}): {', '.join(missing[:20])}")
        if unexpected:
            lines.append(f"  unexpected keys ({len(unexpected)}): {', '.join(unexpected[:20])}")
        if shapes:
            lines.append(f"  wrong shapes ({len(shapes)}): {'; '.join(shapes[:20])}")
        raise WeightsError("\n".join(lines))


def resolve(name_or_path: str | os.PathLike) -> Path:
    """A bundled model name (e.g. "srresnet_x4") or a path -> the weights file's path."""
    p = Path(name_or_path)
    if p.suffix == ".safetensors" or p.exists() or os.sep in str(name_or_path):
        if not p.exists():
            raise WeightsError(f"{p}: no such weights file")
        return p
    cand = BUNDLED_DIR / f"{name_or_path}.safetensors"
    if cand.exists():
        return cand
    known = ", ".join(m["name"] for m in bundled_models()) or "(none bundled)"
    raise WeightsError(f"unknown model {str(name_or_path)!r}: not a file, nor a bundled model ({known})")


def load_generator(name_or_path: str | os.PathLike, device: str | torch.device = "cpu") -> Generator:
    """Build the generator a weights file describes and load it (strictly), in eval mode, fp32."""
    path = resolve(name_or_path)
    state, meta = load_state(path)
    if "config" not in meta:
        raise WeightsError(
            f"{path}: no model config in the metadata (not written by srgan_fast); "
            "convert it with `srgan-fast convert --config srresnet_x4 ...`"
        )
    family = meta.get("family", "srresnet")
    if family != "srresnet":
        return _load_family(path, family, state, meta, device)
    config = GeneratorConfig.from_dict(meta["config"])
    model = Generator(config)
    check_state(model, state, str(path))
    state = {k: v.float() if v.is_floating_point() else v for k, v in state.items()}
    model.load_state_dict(state, strict=True)
    model.card = meta.get("card", {})
    return model.to(device).eval()


def model_families() -> dict:
    """family name -> (config class, module class) of every model family a file may hold."""
    from .compact import FAMILY, CompactConfig, SRVGGNetCompact

    return {"srresnet": (GeneratorConfig, Generator), FAMILY: (CompactConfig, SRVGGNetCompact)}


def _load_family(path: Path, family: str, state: dict, meta: dict, device) -> torch.nn.Module:
    fams = model_families()
    if family not in fams:
        raise WeightsError(f"{path}: unknown model family {family!r}; known: {', '.join(fams)}")
    config_cls, model_cls = fams[family]
    model = model_cls(config_cls.from_dict(meta["config"]))
    check_state(model, state, str(path))
    model.load_state_dict({k: v.float() if v.is_floating_point() else v for k, v in state.items()}, strict=True)
    model.card = meta.get("card", {})
    return model.to(device).eval()


def bundled_models() -> list[dict]:
    """Name, path, config and model card of each bundled weights file."""
    out = []
    for p in sorted(BUNDLED_DIR.glob("*.safetensors")):
        try:
            meta = read_metadata(p)
        except Exception as e:  # a broken bundled file is listed with its error, not hidden
            out.append({"name": p.stem, "path": str(p), "error": str(e)})
            continue
        out.append(
            {
                "name": p.stem,
                "path": str(p),
                "family": meta.get("family", "srresnet"),
                "config": meta.get("config", {}),
                "card": meta.get("card", {}),
            }
        )
    return out


def convert_checkpoint(
    src: str | os.PathLike, dst: str | os.PathLike, config: GeneratorConfig | str = "srresnet_x4"
) -> Path:
    """Convert a PyTorch checkpoint of this generator layout to safetensors.

    Loads with `torch.load(weights_only=True)`, which refuses arbitrary pickled objects.
    Accepts a bare state dict or one nested under "state_dict", "params", "generator" or
    "model"; a "module." prefix (DataParallel) is stripped.
    """
    if isinstance(config, str):
        config = GeneratorConfig.from_name(config)
    obj = torch.load(str(src), map_location="cpu", weights_only=True)
    for key in ("state_dict", "params", "generator", "model"):
        if isinstance(obj, dict) and key in obj and isinstance(obj[key], dict):
            obj = obj[key]
            break
    if not isinstance(obj, dict):
        raise WeightsError(f"{src}: no state dict found in the checkpoint")
    state = {k.removeprefix("module."): v for k, v in obj.items() if isinstance(v, torch.Tensor)}
    model = Generator(config)
    check_state(model, state, str(src))
    return save_generator(state, dst, config=config, card={"converted_from": Path(src).name})
