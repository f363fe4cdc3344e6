"""Training state as safetensors (no pickle): weights, Adam moments, step, torch RNG states.

(Training samples are a pure function of (seed, index), so no numpy RNG state is needed.)

Files in a run folder: `last.safetensors` / `best.safetensors` (generator weights, loadable
by srgan_fast.load_generator), `state.safetensors` (everything needed to resume). Each is
written to a temp file and renamed, so a crash never leaves a half-written checkpoint.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

__all__ = ["save_state", "load_state", "StateError"]


class StateError(ValueError):
    """state.safetensors cannot be resumed from (corrupt, truncated, or another run's)."""


def _optim_tensors(prefix: str, opt: torch.optim.Optimizer, out: dict, meta: dict) -> None:
    sd = opt.state_dict()
    for pid, st in sd["state"].items():
        for k, v in st.items():
            t = v if isinstance(v, torch.Tensor) else torch.tensor(v)
            out[f"{prefix}/state/{pid}/{k}"] = t.detach().cpu().contiguous()
    meta[f"{prefix}/param_groups"] = sd["param_groups"]


def _optim_restore(prefix: str, opt: torch.optim.Optimizer, tensors: dict, meta: dict) -> None:
    state: dict[int, dict] = {}
    for key, t in tensors.items():
        if not key.startswith(prefix + "/state/"):
            continue
        pid, k = key[len(prefix) + len("/state/") :].split("/", 1)
        state.setdefault(int(pid), {})[k] = t
    opt.load_state_dict({"state": state, "param_groups": meta[f"{prefix}/param_groups"]})


def save_state(path: Path, step: int, models: dict, optims: dict, extra: dict) -> None:
    from safetensors.torch import save_file

    tensors: dict[str, torch.Tensor] = {}
    meta: dict = {"step": step, **extra}
    for name, m in models.items():
        for k, v in m.state_dict().items():
            tensors[f"model/{name}/{k}"] = v.detach().cpu().contiguous()
    for name, o in optims.items():
        _optim_tensors(f"optim/{name}", o, tensors, meta)
    tensors["rng/torch"] = torch.get_rng_state()
    if torch.cuda.is_available():
        tensors["rng/cuda"] = torch.cuda.get_rng_state()
    from ..io.paths import atomic_output

    with atomic_output(path) as tmp:  # a crash or a full disk keeps the previous checkpoint whole
        save_file(tensors, str(tmp), metadata={"json": json.dumps(meta)})


def load_state(path: Path, models: dict, optims: dict) -> dict:
    """Restore models and optimizers from `path`; its metadata (step, ...). StateError if unusable."""
    from safetensors import safe_open
    from safetensors.torch import load_file

    fix = "delete it to start this run over, or start without --resume"
    try:
        tensors = load_file(str(path))
        with safe_open(str(path), framework="pt") as f:
            meta = json.loads((f.metadata() or {})["json"])
        int(meta["step"])
        rng = tensors["rng/torch"]
    except Exception as e:  # safetensors raises its own error types for every kind of damage
        why = f"{type(e).__name__}: {e}".splitlines()[0][:200]
        raise StateError(f"{path} is corrupt or truncated ({why}); {fix}") from None
    try:
        for name, m in models.items():
            pre = f"model/{name}/"
            m.load_state_dict({k[len(pre) :]: v for k, v in tensors.items() if k.startswith(pre)})
        for name, o in optims.items():
            _optim_restore(f"optim/{name}", o, tensors, meta)
    except (RuntimeError, KeyError, ValueError) as e:
        why = str(e).strip().splitlines()[0][:200]
        raise StateError(
            f"{path} does not fit this run's config (phase, model): {why}; {fix}, or resume with the config "
            "it was written with (config.json in the same folder)"
        ) from None
    torch.set_rng_state(rng)
    if "rng/cuda" in tensors and torch.cuda.is_available():
        torch.cuda.set_rng_state(tensors["rng/cuda"])
    return meta
