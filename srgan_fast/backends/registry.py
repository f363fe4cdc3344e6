"""The backend registry: Engine, the CLI's --backend choices and the benchmark's rows read it."""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch

from .base import BackendUnavailable

if TYPE_CHECKING:
    from ..plan import Plan
    from .base import Runner

@dataclass(frozen=True)
class Backend:
    name: str
    runner: Callable[[Plan, torch.device, torch.dtype], Runner]
    help: str
    devices: tuple[str, ...] = ("cpu", "cuda")  # device types it runs on
    auto_devices: tuple[str, ...] = ()  # device types where "auto" may pick it ...
    priority: int = 0  # ... the highest priority first
    bench_devices: tuple[str, ...] = ()  # device types where `srgan-fast bench` gives it a row
    cuda_graph: bool = False  # can be captured whole in a CUDA graph
    requires: Callable[[torch.device], str | None] = lambda device: None  # why not, or None


_REGISTRY: dict[str, Backend] = {}


class DuplicateBackendError(ValueError):
    """A backend was registered under a name that is taken (pass replace=True to mean it)."""


def register_backend(backend: Backend, *, replace: bool = False) -> Backend:
    """Add a backend; everything that lists backends sees it. A taken name is refused
    (DuplicateBackendError) unless `replace=True`: a plugin cannot shadow `torch` by accident."""
    old = _REGISTRY.get(backend.name)
    if old is not None and old is not backend and not replace:
        raise DuplicateBackendError(
            f"a backend named {backend.name!r} is already registered ({old.help}); pass replace=True to replace it"
        )
    _REGISTRY[backend.name] = backend
    return backend


def backend_names() -> list[str]:
    return list(_REGISTRY)


def get_backend(name: str) -> Backend:
    try:
        return _REGISTRY[name]
    except KeyError:
        raise ValueError(f"unknown backend {name!r}; use auto, {', '.join(_REGISTRY)}") from None


def unavailable_reason(backend: Backend, device: torch.device) -> str | None:
    if device.type not in backend.devices:
        return f"backend {backend.name!r} does not run on {device.type} (only {', '.join(backend.devices)})"
    return backend.requires(device)


def choose_backend(name: str, device: torch.device) -> Backend:
    """The named backend if it can run on `device` (else BackendUnavailable saying what to do);
    "auto": the highest-priority one that can."""
    if name == "auto":
        ok = [b for b in _REGISTRY.values() if device.type in b.auto_devices and unavailable_reason(b, device) is None]
        if not ok:
            raise BackendUnavailable(f"no backend can run on {device}")
        return max(ok, key=lambda b: b.priority)
    b = get_backend(name)
    why = unavailable_reason(b, device)
    if why:
        raise BackendUnavailable(why)
    return b


# The shipped backends: modules of this package, each with a BACKENDS tuple, registered in
# this order.
BUILTIN = ("aten", "native", "triton", "reference", "onnxruntime")


def register_builtin() -> None:
    """Register BUILTIN's backends, in order (once: srgan_fast.backends does it at import)."""
    for name in BUILTIN:
        for backend in importlib.import_module(f"{__package__}.{name}").BACKENDS:
            register_backend(backend)
