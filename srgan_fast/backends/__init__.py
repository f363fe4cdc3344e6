"""Runners execute a Plan on one device in one dtype; backends are named runners in a registry.

The runner protocol (what `Engine` relies on, nothing more):

    runner = Backend.runner(plan, device, dtype)   # prepare: cast/pack weights once
    y = runner(x, out_u8)                           # run a batch: NHWC in, NHWC out
    runner.finite                                   # FiniteFlag: was every output finite?
    runner.bytes_per_lr_pixel()                     # activation memory per LR pixel of a call
    runner.tileable                                 # may the engine split frames into tiles?

`x` is NHWC on the runner's device, uint8 or float in [0, 1]; the result is NHWC with 3
channels, uint8 when `out_u8` (rounded half up), else float32 in [0, 1].

Plan runners (`PlanRunner`, base.py) are a plain loop over `Plan.run`: the buffer bookkeeping
lives in the plan, and each runner implements one method per fused op, named after it
(`conv2d_fused`).

One module per backend, each defining its runner and a `BACKENDS` tuple of `Backend`s:
aten.py ("torch"), triton.py ("triton", "triton_fused", "triton_tma"), reference.py
("reference"), onnxruntime.py ("onnxruntime", "onnxruntime_model"); auto.py is how "auto"
measures on a CPU. `BUILTIN` below lists those modules in registration order (the order of
`--backend` choices and benchmark rows). A backend from outside is one `register_backend` call
(a plugin: docs/architecture.md); a taken name is refused unless `replace=True`.
"""

from __future__ import annotations

from .aten import TorchRunner
from .base import BackendUnavailable, CudaGraphRunner, FiniteFlag, PlanRunner, Runner
from .reference import ReferenceRunner
from .registry import (
    BUILTIN,
    Backend,
    DuplicateBackendError,
    backend_names,
    choose_backend,
    get_backend,
    register_backend,
    register_builtin,
    unavailable_reason,
)
from .triton import TritonFusedRunner, TritonRunner, TritonTmaRunner

__all__ = [
    "Backend",
    "BUILTIN",
    "register_backend",
    "get_backend",
    "backend_names",
    "choose_backend",
    "unavailable_reason",
    "BackendUnavailable",
    "DuplicateBackendError",
    "Runner",
    "PlanRunner",
    "FiniteFlag",
    "CudaGraphRunner",
    "TorchRunner",
    "TritonRunner",
    "TritonFusedRunner",
    "TritonTmaRunner",
    "ReferenceRunner",
]

register_builtin()
