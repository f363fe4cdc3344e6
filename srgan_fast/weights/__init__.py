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

import functools
import json
import math
import os
import re
import warnings
from pathlib import Path

import torch

from ..errors import UserError
from ..families import Family, get_family
from ..families.srresnet.arch import Generator, GeneratorConfig, expected_shapes  # noqa: F401 - expected_shapes re-exported

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
BUNDLED_DIR = Path(__file__).resolve().parent  # the bundled NAME.safetensors (+ NAME.json) live beside this file


class WeightsError(UserError, ValueError):
    """A weights file is missing, not safetensors, or does not fit the model."""


def _sniff(path: Path) -> None:
    """Refuse pickles and other non-safetensors files with a message that says what to do."""
    with open(path, "rb") as f:
        head = f.read(9)
    size = path.stat().st_size
    # safetensors: u64 little-endian header length, then the JSON header
    if len(head) == 9 and head[8:9] == b"{":
        if int.from_bytes(head[:8], "little") <= size - 8:
            return
        raise WeightsError(f"{path}: truncated safetensors file (its header runs past the end, {size} bytes)")
    if head[:2] == b"PK" or head[:1] == b"\x80":
        raise WeightsError(
            f"{path}: this is a PyTorch pickle checkpoint (torch.save). srgan_fast never unpickles "
            "weights (unpickling runs arbitrary code). Convert it once, in a Python you trust: "
            "`srgan-fast convert IN.pth OUT.safetensors` (loads it with torch.load(weights_only=True))."
        )
    raise WeightsError(f"{path}: not a safetensors file")


_MAX_HEADER = 100 << 20  # the safetensors format's own limit on the JSON header
_DTYPE_BYTES = {
    "F64": 8, "F32": 4, "F16": 2, "BF16": 2, "F8_E4M3": 1, "F8_E5M2": 1, "C64": 8,
    "I64": 8, "I32": 4, "I16": 2, "I8": 1, "U64": 8, "U32": 4, "U16": 2, "U8": 1, "BOOL": 1,
}  # fmt: skip


def read_header(path: str | os.PathLike) -> tuple[dict[str, tuple[str, tuple[int, ...]]], dict]:
    """Names, dtypes and shapes of the tensors in a safetensors file, and its raw metadata.

    Reads only the header and checks that it describes the file exactly: every tensor's byte
    range lies inside the file, has the size its dtype and shape say, and the ranges tile the
    data section. A truncated or doctored file fails here, before any tensor is read.
    """
    path = Path(path)
    if not path.exists():
        raise WeightsError(f"{path}: no such weights file")
    if path.is_dir():
        raise WeightsError(f"{path}: is a folder; give a .safetensors file or a bundled model name")
    _sniff(path)
    size = path.stat().st_size
    with open(path, "rb") as f:
        n = int.from_bytes(f.read(8), "little")
        if n > _MAX_HEADER:
            raise WeightsError(f"{path}: safetensors header of {n} bytes is over the format's limit")
        raw = f.read(n)
    bad = f"{path}: truncated or corrupt safetensors file"
    try:
        header = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise WeightsError(f"{bad} (header is not JSON)") from None
    if not isinstance(header, dict):
        raise WeightsError(f"{bad} (header is not a JSON object)")
    meta = header.pop("__metadata__", None) or {}
    if not isinstance(meta, dict) or not all(isinstance(v, str) for v in meta.values()):
        raise WeightsError(f"{bad} (metadata must map names to strings)")
    data = size - 8 - n
    tensors: dict[str, tuple[str, tuple[int, ...]]] = {}
    ranges = []
    for name, t in header.items():
        try:
            dt, shape, (a, b) = t["dtype"], tuple(t["shape"]), t["data_offsets"]
            ok = dt in _DTYPE_BYTES and all(type(d) is int and d >= 0 for d in (*shape, a, b))
        except (TypeError, KeyError, ValueError):
            ok = False
        if not ok:
            raise WeightsError(f"{bad} (bad entry for tensor {name!r})")
        if b > data:
            raise WeightsError(f"{bad}: tensor {name!r} ends at byte {b} but the data section has {data}")
        if b - a != math.prod(shape) * _DTYPE_BYTES[dt]:
            raise WeightsError(f"{bad}: tensor {name!r} {dt}{list(shape)} does not fill bytes {a}..{b}")
        tensors[name] = (dt, shape)
        ranges.append((a, b))
    end = 0
    for a, b in sorted(ranges):
        if a != end:
            raise WeightsError(f"{bad} (tensor data overlaps or leaves gaps at byte {a})")
        end = b
    if end != data:
        raise WeightsError(f"{bad} (data section has {data} bytes, the tensors {end})")
    return tensors, meta


def _check_names_and_shapes(found: dict[str, tuple[int, ...]], expected: dict[str, tuple[int, ...]], source: str):
    missing = sorted(set(expected) - set(found))
    unexpected = sorted(set(found) - set(expected))
    shapes = sorted(
        f"{k}: file {found[k]} vs model {expected[k]}" for k in set(expected) & set(found) if found[k] != expected[k]
    )
    if missing or unexpected or shapes:

        def some(items, sep):  # the first few: the CLI prints this on one line
            return sep.join(items[:6]) + (f"{sep}..." if len(items) > 6 else "")

        lines = [f"{source or 'weights'} do not fit the model:"]
        if missing:
            lines.append(f"  missing keys ({len(missing)}): {some(missing, ', ')}")
        if unexpected:
            lines.append(f"  unexpected keys ({len(unexpected)}): {some(unexpected, ', ')}")
        if shapes:
            lines.append(f"  wrong shapes ({len(shapes)}): {some(shapes, '; ')}")
        raise WeightsError("\n".join(lines))


def family_from_metadata(meta: dict, source: str = "") -> Family:
    """The model family a weights file's metadata names ("srresnet" when it names none)."""
    try:
        return get_family(meta.get("family", "srresnet"))
    except ValueError as e:
        raise WeightsError(f"{source}: {e}") from None


def config_from_metadata(meta: dict, source: str = ""):
    """The config of a weights file's (raw, string-valued) metadata in its family's class,
    validated and bounded (a GeneratorConfig for the paper's network)."""
    family = family_from_metadata(meta, source)
    if "config" not in meta:
        raise WeightsError(
            f"{source}: no model config in the metadata (not written by srgan_fast); "
            "convert it with `srgan-fast convert --config srresnet_x4 ...`"
        )
    try:
        d = json.loads(meta["config"]) if isinstance(meta["config"], str) else meta["config"]
        return family.config.from_dict(d)
    except (json.JSONDecodeError, ValueError, TypeError) as e:
        raise WeightsError(f"{source}: bad {family.name} config in the metadata: {e}") from None


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
    if path.is_dir():
        raise WeightsError(f"{path}: is a folder; give the .safetensors file to write")
    from ..io.paths import atomic_output

    # a complete, fsync'ed file renamed over `path`, or `path` as it was (io.paths.atomic_output)
    with atomic_output(path) as tmp:
        try:
            save_file(tensors, str(tmp), metadata=meta)
        except Exception as e:  # a failed write is a SafetensorError naming no file: an OSError naming `path`
            code = re.search(r"\(os error (\d+)\)", str(e)) if type(e).__name__ == "SafetensorError" else None
            if code is None:
                raise
            raise OSError(int(code.group(1)), os.strerror(int(code.group(1))), str(path)) from None
        os.chmod(tmp, 0o644)  # safetensors creates 0600 files; weights are not secrets
    return path


def read_metadata(path: str | os.PathLike) -> dict:
    """The file's metadata, with "config" and "card" decoded from JSON."""
    path = Path(path)
    return _decode_metadata(read_header(path)[1], path)


def _decode_metadata(meta: dict, path: Path) -> dict:
    meta = dict(meta)
    for k in ("config", "card"):
        if k in meta:
            try:
                meta[k] = json.loads(meta[k])
            except json.JSONDecodeError:
                raise WeightsError(f"{path}: metadata {k!r} is not JSON") from None
    return meta


def load_state(path: str | os.PathLike) -> tuple[dict[str, torch.Tensor], dict]:
    """Raw tensors and decoded metadata of a safetensors weights file (header checked first)."""
    path = Path(path)
    meta = read_metadata(path)
    return _load_file(path), meta


def _load_file(path: Path) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    try:
        return load_file(str(path))
    except Exception as e:  # SafetensorError is not exported under a stable name
        if type(e).__name__ != "SafetensorError":
            raise
        raise WeightsError(f"{path}: corrupt safetensors file ({e})") from None


def check_state(model: torch.nn.Module, state: dict[str, torch.Tensor], source: str = "") -> None:
    """Raise WeightsError naming every missing, unexpected and wrongly shaped key."""
    expected = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    _check_names_and_shapes({k: tuple(v.shape) for k, v in state.items()}, expected, source)


def resolve(name_or_path: str | os.PathLike) -> Path:
    """A bundled model name (e.g. "srresnet_x4") or a path -> the weights file's path."""
    p = Path(name_or_path)
    if p.suffix == ".safetensors" or p.exists() or os.sep in str(name_or_path):
        if not p.exists():
            raise WeightsError(f"{p}: no such weights file")
        if p.is_dir():
            raise WeightsError(f"{p}: is a folder; give a .safetensors file or a bundled model name")
        return p
    cand = BUNDLED_DIR / f"{name_or_path}.safetensors"
    if cand.exists():
        return cand
    known = ", ".join(m["name"] for m in bundled_models()) or "(none bundled)"
    raise WeightsError(f"unknown model {str(name_or_path)!r}: not a file, nor a bundled model ({known})")


def load_generator(name_or_path: str | os.PathLike, device: str | torch.device = "cpu") -> torch.nn.Module:
    """Build the model a weights file describes (a Generator, or a module of another registered
    family, srgan_fast.families) and load it strictly, in eval mode, fp32."""
    path = resolve(name_or_path)
    # Everything the file says is checked before anything is built or read: the family, the
    # config's types and ranges (its class bounds them: a metadata claim costs nothing to
    # make), then every tensor's name and shape against that config.
    header, raw_meta = read_header(path)
    family = family_from_metadata(raw_meta, str(path))
    config = config_from_metadata(raw_meta, str(path))
    _check_names_and_shapes({k: shape for k, (_, shape) in header.items()}, family.shapes(config), str(path))
    meta = _decode_metadata(raw_meta, path)
    state = _load_file(path)
    _check_values(state, path)  # before anything is built from them
    model = family.module(config)
    model.load_state_dict({k: v.float() if v.is_floating_point() else v for k, v in state.items()}, strict=True)
    model.card = meta.get("card", {})
    return model.to(device).eval()


# integer tensors a module's state dict holds on purpose (BatchNorm's step counter)
_INTEGER_KEYS = ("num_batches_tracked",)


def _check_values(state: dict[str, torch.Tensor], path: Path) -> None:
    """Refuse, naming the file and the tensor, weights that load but cannot be right: integer
    tensors where floats belong (an int32 file gave a flat grey image), NaN/Inf values, and
    negative BatchNorm variances (both failed only later, as a misleading overflow message)."""
    for name, v in state.items():
        if name.rsplit(".", 1)[-1] in _INTEGER_KEYS:
            continue
        if not v.is_floating_point():
            raise WeightsError(
                f"{path}: tensor {name!r} is {str(v.dtype).removeprefix('torch.')}; weights must be floating point "
                "(float32, float16, bfloat16); the file was not written from a trained model"
            )
        bad = int((~torch.isfinite(v)).sum())
        if bad:
            raise WeightsError(
                f"{path}: tensor {name!r} holds {bad} NaN/Inf value(s) of {v.numel()}; the weights are broken "
                "(a diverged training run?): use an earlier checkpoint"
            )
        if name.endswith("running_var") and bool((v < 0).any()):
            raise WeightsError(
                f"{path}: tensor {name!r} holds negative variances (min {float(v.min()):.3g}); "
                "the file is corrupt or not BatchNorm statistics"
            )


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


def checkpoint_path(src: str | os.PathLike) -> Path:
    """`src` as a Path to an existing checkpoint file, or one WeightsError line."""
    src = Path(src)
    if not src.exists():
        raise WeightsError(f"{src}: no such checkpoint")
    if src.is_dir():
        raise WeightsError(f"{src}: is a folder; give the .pth/.pt checkpoint file")
    return src


def torch_load_weights_only(src: Path):
    """`torch.load(src, weights_only=True)` on the CPU: plain tensors and containers only, never
    code. A refused pickle or an unreadable file is one WeightsError line."""
    src = checkpoint_path(src)
    with open(src, "rb") as f:
        magic = f.read(2)
    if magic != b"PK" and magic[:1] != b"\x80":  # torch.save writes a zip; very old files a bare pickle
        raise WeightsError(f"{src}: not a PyTorch checkpoint (.pth/.pt) nor a safetensors file")
    if magic == b"PK":
        check_zip_records(src)  # torch allocates and inflates each record at the size it declares
    try:
        with warnings.catch_warnings():  # torch warns about pickle protocols before refusing
            warnings.simplefilter("ignore")
            obj = torch.load(str(src), map_location="cpu", weights_only=True)
    except Exception as e:
        # weights_only=True refuses every pickled object that is not plain tensors/containers
        # (no code runs); a truncated zip or a non-checkpoint fails in torch's reader
        lines = [ln.strip() for ln in str(e).splitlines() if ln.strip()]
        if "Weights only load failed" in str(e) or type(e).__name__ == "UnpicklingError":
            why = next((ln for ln in lines if "Unsupported" in ln), "")
            raise WeightsError(
                f"{src}: refused: the checkpoint pickles objects other than tensors and nothing of it was run"
                f"{' (' + why[:120] + ')' if why else ''}; re-save it as a plain state dict of tensors"
            ) from None
        reason = f"{type(e).__name__}: {lines[0].split('. ')[0][:120] if lines else ''}"
        raise WeightsError(f"{src}: not a readable PyTorch checkpoint ({reason})") from None
    return obj


# a training checkpoint may hold the generator twice (params, params_ema) and an optimizer's two
# moments beside it: the file may declare this many times the largest generator's bytes
_CHECKPOINT_MARGIN = 4


@functools.lru_cache(maxsize=1)
def checkpoint_limits() -> tuple[int, int]:
    """(bytes one record of a .pth may declare, bytes all its records may declare together).

    Derived from the models: the largest generator the registered families' default configs
    describe (RRDBNet x4, 16.7M parameters, among the shipped ones) in float64 bounds one tensor;
    _CHECKPOINT_MARGIN times that bounds the file (134 MB and 534 MB with the shipped families).
    """
    from ..families import families

    biggest = 0
    for name in families():
        try:
            fam = get_family(name)
            biggest = max(biggest, sum(math.prod(s) for s in fam.shapes(fam.config()).values()))
        except Exception:  # a plugin family without usable defaults does not set the bound
            continue
    one = max(biggest, 1 << 20) * 8
    return one, one * _CHECKPOINT_MARGIN


def check_zip_records(src: Path) -> None:
    """Refuse a .pth (zip) whose records declare more bytes than a generator checkpoint can hold,
    reading only the zip's central directory: torch.load allocates each record at its declared
    size and inflates it, so a 400 KB file declaring a 400 MiB record (a zip bomb) would cost
    400 MiB before any check of the content."""
    import zipfile

    try:
        with zipfile.ZipFile(src) as z:  # the central directory only: nothing is inflated
            infos = z.infolist()
    except (zipfile.BadZipFile, zipfile.LargeZipFile, EOFError, ValueError) as e:
        raise WeightsError(
            f"{src}: not a readable PyTorch checkpoint (damaged zip: {e}); re-save it with torch.save"
        ) from None
    one, total = checkpoint_limits()
    mib = 1 << 20
    big = max(infos, key=lambda i: i.file_size, default=None)
    if big is not None and big.file_size > one:
        raise WeightsError(
            f"{src}: refused before reading: record {big.filename!r} declares {big.file_size / mib:.0f} MiB "
            f"({big.compress_size / mib:.1f} MiB in the file), more than one tensor of the largest supported "
            f"generator can hold ({one / mib:.0f} MiB): damaged, or not a generator checkpoint (a zip bomb?); "
            "convert a checkpoint written by torch.save"
        )
    declared = sum(i.file_size for i in infos)
    if declared > total:
        raise WeightsError(
            f"{src}: refused before reading: its records declare {declared / mib:.0f} MiB in all, more than a "
            f"checkpoint of the largest supported generator holds ({total / mib:.0f} MiB); save the generator's "
            "state dict alone (torch.save(model.state_dict(), path)) and convert that"
        )


# where training codebases nest a generator's state dict, in the order looked for (EMA first)
CHECKPOINT_NESTS = ("params_ema", "params", "state_dict", "generator", "model", "net_g", "netG", "g")


def unnest_state(obj) -> dict[str, torch.Tensor]:
    """The tensors of a loaded checkpoint: `obj` itself or the dict nested under the first of
    CHECKPOINT_NESTS it has, non-tensors dropped, a "module." prefix (DataParallel) stripped;
    {} when there is no dict of tensors."""
    if isinstance(obj, dict):
        for key in CHECKPOINT_NESTS:
            if isinstance(obj.get(key), dict):
                obj = obj[key]
                break
    if not isinstance(obj, dict):
        return {}
    return {k.removeprefix("module."): v for k, v in obj.items() if isinstance(v, torch.Tensor)}
