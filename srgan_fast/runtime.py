"""Device, dtype and memory facts of the machine: the bottom of the stack (imports only torch).

Every layer that takes a `device=` or `dtype=` argument parses it here, once, so a bad value
fails with the same message wherever it enters (CLI, Engine, reference, trainer).
"""

from __future__ import annotations

import torch

__all__ = ["DTYPES", "parse_dtype", "dtype_name", "check_device", "default_memory_budget", "triton_importable"]

DTYPES = {
    "fp32": torch.float32,
    "float32": torch.float32,
    "fp16": torch.float16,
    "float16": torch.float16,
    "half": torch.float16,
    "bf16": torch.bfloat16,
    "bfloat16": torch.bfloat16,
}


def parse_dtype(name: str | torch.dtype) -> torch.dtype:
    """fp32 (parity), fp16 or bf16 (storage; math stays fp32) as a torch.dtype, or a ValueError."""
    if isinstance(name, torch.dtype):
        if name not in (torch.float32, torch.float16, torch.bfloat16):
            raise ValueError(f"unsupported dtype {name}; use fp32, fp16 or bf16")
        return name
    if not isinstance(name, str):
        raise ValueError(f"dtype must be a string or torch.dtype, got {type(name).__name__}")
    try:
        return DTYPES[name.lower()]
    except KeyError:
        raise ValueError(f"unknown dtype {name!r}; use fp32, fp16 or bf16") from None


def dtype_name(dtype: torch.dtype) -> str:
    return {torch.float32: "fp32", torch.float16: "fp16", torch.bfloat16: "bf16"}[dtype]


def check_device(device: str | torch.device) -> torch.device:
    """A torch.device that exists on this machine, or a ValueError that says why not."""
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError):
        raise ValueError(f"unknown device {device!r}; use cpu, cuda or cuda:N") from None
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(f"device {device!r} asked for, but this machine has no CUDA GPU")
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise ValueError(f"device {device!r}: only {torch.cuda.device_count()} GPU(s) here")
    elif dev.type != "cpu":
        raise ValueError(f"unsupported device {device!r}; use cpu or cuda")
    return dev


CPU_BUDGET_MIN = 4 << 30  # the CPU budget never goes below this ...
CPU_BUDGET_SHARE = 0.4  # ... and is otherwise this share of the memory available now


def _available_ram() -> int | None:
    """MemAvailable from /proc/meminfo (Linux), else None."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return None


def default_memory_budget(device: torch.device) -> int:
    """Bytes of activations one engine call may use: half the GPU's free memory; on a CPU 40% of
    the memory available now, at least 4 GiB. (A flat 4 GiB tiled a 540p frame of MSRResNet and
    RRDBNet, whose halos then cost 2.4x the work: benchmarks/results/cpu_2026-12-06.)"""
    if device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(device)
        return int(free * 0.5)
    avail = _available_ram()
    return max(CPU_BUDGET_MIN, int(avail * CPU_BUDGET_SHARE)) if avail else CPU_BUDGET_MIN


def triton_importable() -> bool:
    try:
        import triton  # noqa: F401
    except ImportError:
        return False
    return True
