"""Runners execute a Plan on one device in one dtype; backends are named runners in a registry.

The runner protocol (what `Engine` relies on, nothing more):

    runner = Backend.runner(plan, device, dtype)   # prepare: cast/pack weights once
    y = runner(x, out_u8)                           # run a batch: NHWC in, NHWC out
    runner.finite                                   # FiniteFlag: was every output finite?
    runner.bytes_per_lr_pixel()                     # activation memory per LR pixel of a call
    runner.tileable                                 # may the engine split frames into tiles?

`x` is NHWC on the runner's device, uint8 or float in [0, 1]; the result is NHWC with 3
channels, uint8 when `out_u8` (rounded half up), else float32 in [0, 1].

Plan runners (`PlanRunner`) are a plain loop over `Plan.run`: the buffer bookkeeping lives in
the plan, and each runner implements one method per fused op, named after it
(`conv2d_fused`). Adding a backend is one `register_backend` call; see docs/architecture.md.
"""

from __future__ import annotations

import copy
import os
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from .errors import UserError
from .plan import OUT_MAP_CLAMP, OUTPUT, FusedOp, Plan, fuse_residual_blocks, place_slice
from .reference import to_uint8
from .runtime import triton_importable

__all__ = [
    "BackendUnavailable",
    "FiniteFlag",
    "Runner",
    "PlanRunner",
    "TorchRunner",
    "TritonRunner",
    "TritonFusedRunner",
    "TritonTmaRunner",
    "ReferenceRunner",
    "CudaGraphRunner",
    "Backend",
    "register_backend",
    "get_backend",
    "backend_names",
    "choose_backend",
]


class BackendUnavailable(UserError, RuntimeError):
    """A backend was asked for that this machine cannot run; the message says what to install."""


class FiniteFlag:
    """Whether every checked tensor since reset() was finite. Runners check the tail's input,
    because uint8 rounding of the output would hide NaN as a black pixel. Stays on the device
    until read (no sync per call)."""

    def __init__(self):
        self.ok = None

    def reset(self):
        self.ok = None

    def update(self, x: torch.Tensor):
        # a float32-accumulated sum is finite iff every element is (NaN and Inf propagate; finite
        # fp16/bf16 values cannot sum past fp32's range), and it allocates no temporaries, where
        # isfinite(x).all() costs an abs() copy and two bool maps of the largest activation
        f = torch.isfinite(torch.sum(x, dtype=torch.float32))
        self.ok = f if self.ok is None else self.ok & f

    def __bool__(self) -> bool:
        return self.ok is None or bool(self.ok)


class Runner:
    """Base of every runner: holds the plan, device, dtype and the finite flag."""

    name = "runner"
    slack = 1.25  # activation memory over the plan's buffers (allocator rounding, temporaries)
    tileable = True

    def __init__(self, plan: Plan, device: torch.device, dtype: torch.dtype):
        self.plan = plan
        self.device = torch.device(device)
        self.dtype = dtype
        self.finite = FiniteFlag()

    def bytes_per_lr_pixel(self) -> int:
        item = torch.finfo(self.dtype).bits // 8
        return int(self.plan.bytes_per_lr_pixel(item) * self.slack)

    def __call__(self, x: torch.Tensor, out_u8: bool) -> torch.Tensor:
        raise NotImplementedError


class PlanRunner(Runner):
    """A runner that executes the plan op by op: once per op `prepare_<op.fn>(op)` (or
    `prepare(op)` when the runner has no such method), then for each call `enter(x)`, one
    `<op.fn>(op, prepared, src, skip, out_u8)` per op, `leave(y)`."""

    def __init__(self, plan: Plan, device: torch.device, dtype: torch.dtype):
        super().__init__(plan, device, dtype)
        for op in self.plan.ops:
            if not callable(getattr(self, op.fn, None)):
                raise BackendUnavailable(f"backend {self.name!r} cannot run fused op {op.fn!r}")
        self._prepared = {id(op): getattr(self, f"prepare_{op.fn}", self.prepare)(op) for op in self.plan.ops}

    channel_dim = 1  # where channels are in this runner's tensors (NCHW; 3 for NHWC)

    def prepare(self, op: FusedOp):
        return op

    def place(self, op: FusedOp, base, y, channels: int, dim: int):
        """Put `y` into its slice of a wide buffer (Plan.run; default: allocate, copy)."""
        return place_slice(op, base, y, channels, dim)

    def enter(self, x: torch.Tensor) -> torch.Tensor:
        return x

    def leave(self, y: torch.Tensor) -> torch.Tensor:
        return y

    def __call__(self, x: torch.Tensor, out_u8: bool) -> torch.Tensor:
        def step(op, src, skip):
            if op.out_map:
                self.finite.update(src)
            return getattr(self, op.fn)(op, self._prepared[id(op)], src, skip, out_u8)

        with torch.inference_mode():
            return self.leave(self.plan.run(self.enter(x), step, self.channel_dim, self.place))


class TorchRunner(PlanRunner):
    """aten ops per fused op, NCHW tensors in channels_last memory (NHWC bytes): the CPU path
    and a second reference."""

    name = "torch"
    slack = 2.0  # shuffle copies and conv temporaries beside the plan's buffers

    def __init__(self, plan: Plan, device: torch.device, dtype: torch.dtype):
        super().__init__(plan.to(device=device, dtype=dtype), device, dtype)

    def prepare_conv2d_fused(self, op: FusedOp):
        return op.weight.contiguous(memory_format=torch.channels_last)

    def prepare_resblock_fused(self, op: FusedOp):
        return tuple(w.contiguous(memory_format=torch.channels_last) for w in (op.weight, op.weight2))

    def enter(self, x):
        x = x.permute(0, 3, 1, 2)  # NHWC bytes viewed as NCHW channels_last
        x = x.to(self.dtype) / 255.0 if x.dtype == torch.uint8 else x.to(self.dtype)
        return x.contiguous(memory_format=torch.channels_last)

    def leave(self, y):
        return y.permute(0, 2, 3, 1)

    def __call__(self, x, out_u8):
        if self.device.type != "cuda" or self.dtype != torch.float32:
            return super().__call__(x, out_u8)
        # fp32 is the parity mode: no TF32 in cuDNN (its default for fp32 convolutions); every
        # other cuDNN setting stays the caller's (flags() would reset benchmark/deterministic)
        cudnn = torch.backends.cudnn
        with cudnn.flags(
            enabled=cudnn.enabled, benchmark=cudnn.benchmark, deterministic=cudnn.deterministic, allow_tf32=False
        ):
            return super().__call__(x, out_u8)

    def conv2d_fused(self, op, weight, src, skip, out_u8):
        y = F.conv2d(src, weight, op.bias, padding=op.k // 2)
        if op.shuffle:
            y = F.pixel_shuffle(y, op.shuffle_r).contiguous(memory_format=torch.channels_last)
        if op.prelu is not None:
            y = F.prelu(y, op.prelu)
        if skip is not None:
            if op.skip_up != 1 and op.skip_mode == "bilinear":  # the network input (MSRResNet)
                skip = F.interpolate(skip, scale_factor=op.skip_up, mode="bilinear", align_corners=False)
            elif op.skip_up != 1:  # the network input, nearest-upsampled (SRVGGNetCompact)
                skip = F.interpolate(skip, scale_factor=op.skip_up, mode="nearest")
            y.add_(skip)
        if op.out_map == OUT_MAP_CLAMP:
            y = y.float().clamp_(0.0, 1.0)
        elif op.out_map:
            y = y.float().add_(1.0).mul_(0.5).clamp_(0.0, 1.0)
        if op.out_map and out_u8:
            y = to_uint8(y)  # (the one rounding rule: half up)
        return y

    def resblock_fused(self, op, weights, src, skip, out_u8):
        # two aten convs: the same math as two conv2d_fused ops, so fused plans run here too
        w1, w2 = weights
        t = F.prelu(F.conv2d(src, w1, op.bias, padding=op.k // 2), op.prelu)
        return F.conv2d(t, w2, op.bias2, padding=int(w2.shape[-1]) // 2).add_(src)


class TritonRunner(PlanRunner):
    """One `conv2d_fused` launch per op, NHWC; intermediate buffers from a pool keyed by the
    plan's buffer names (one live shape per buffer), the output a fresh tensor."""

    name = "triton"
    slack = 1.25
    impl = "pointer"  # conv2d_fused's main loop (kernels/conv2d_fused.py: "pointer" or "tma")
    channel_dim = 3  # NHWC

    def __init__(self, plan: Plan, device: torch.device, dtype: torch.dtype):
        from .kernels import conv2d_fused as k

        self._k = k
        self._pool: dict[str, torch.Tensor] = {}
        super().__init__(plan, device, dtype)

    def prepare_resblock_fused(self, op: FusedOp):
        k, dev = self._k, self.device
        return (
            k.pack_weight(op.weight, self.dtype).to(dev),
            op.bias.float().to(dev),
            op.prelu.float().to(dev),
            k.pack_weight(op.weight2, self.dtype).to(dev),
            op.bias2.float().to(dev),
        )

    def prepare_conv2d_fused(self, op: FusedOp):
        k, dev = self._k, self.device
        return (
            k.pack_weight(op.weight, self.dtype, shuffle=op.shuffle, factor=op.shuffle_r).to(dev),
            k.pack_bias(op.bias, shuffle=op.shuffle, factor=op.shuffle_r).to(dev),
            None if op.prelu is None else op.prelu.float().to(dev),
        )

    def enter(self, x):
        return (x if x.dtype == torch.uint8 else x.to(self.dtype)).contiguous()

    def _buffer(self, name: str, shape: tuple, device) -> torch.Tensor:
        t = self._pool.get(name)
        if t is None or tuple(t.shape) != shape or t.device != device:
            t = self._pool[name] = torch.empty(shape, dtype=self.dtype, device=device)
        return t

    def destination(self, op: FusedOp, src: torch.Tensor) -> torch.Tensor | None:
        """Where `op` writes: its pooled buffer, or None when it writes the network's output
        (that goes to the caller: a fresh fp32 tensor, never a pooled buffer). Every op's method
        asks here, so the rule lives once."""
        if op.dst == OUTPUT:
            return None
        n, h, w, _ = src.shape
        s = op.scale_out // op.scale_in
        width = self.plan.buffers[op.dst][0]
        buf = self._buffer(op.dst, (n, h * s, w * s, width), src.device)
        # a slice of a wide buffer (a dense block's concatenation): written in place, no copy
        return buf if width == op.out_channels else buf.narrow(3, op.dst_off, op.out_channels)

    def place(self, op, base, y, channels, dim):
        buf = self._pool[op.dst]  # `destination` gave the op its slice of this buffer
        view = buf.narrow(3, op.dst_off, op.out_channels)
        if y.data_ptr() != view.data_ptr():  # (an op method that allocated its own output)
            view.copy_(y)
        return buf

    def conv2d_fused(self, op, prepared, src, skip, out_u8):
        w, b, a = prepared
        out = self.destination(op, src)
        out_dtype = torch.float32 if out is None else None
        return self._k.conv2d_fused(
            src, w, b, op.k, prelu=a, skip=skip, shuffle=op.shuffle, out_map=op.out_map,
            out_u8=out_u8 and bool(op.out_map), out=out, out_dtype=out_dtype, shuffle_factor=op.shuffle_r,
            skip_upsample=op.skip_up, skip_mode=op.skip_mode, impl=self.impl,
        )  # fmt: skip

    def resblock_fused(self, op, prepared, src, skip, out_u8):
        from .kernels.resblock_fused import resblock_fused

        w1, b1, a, w2, b2 = prepared
        out = self.destination(op, src)
        y = resblock_fused(src, w1, b1, a, w2, b2, op.k, out=out)
        return y.float() if out is None else y  # (never the network's last op in SRGAN)


class TritonFusedRunner(TritonRunner):
    """TritonRunner on `fuse_residual_blocks(plan)`: each residual block is one resblock_fused
    launch (a candidate, unmeasured; the triton_fused backend)."""

    name = "triton_fused"

    def __init__(self, plan: Plan, device: torch.device, dtype: torch.dtype):
        super().__init__(fuse_residual_blocks(plan), device, dtype)


class TritonTmaRunner(TritonRunner):
    """TritonRunner with conv2d_fused's TMA main loop (Hopper tensor descriptors; launches TMA
    cannot take run the pointer loop): a candidate until its CUDA tests pass on a card, so never
    picked by "auto" (the triton_tma backend)."""

    name = "triton_tma"
    impl = "tma"


class ReferenceRunner(Runner):
    """The plain PyTorch model the plan was compiled from (NCHW, as trained): the yardstick.
    Never tiled automatically, so its output is the whole-frame reference."""

    name = "reference"
    slack = 3.0
    tileable = False

    def __init__(self, plan: Plan, device: torch.device, dtype: torch.dtype):
        if plan.source is None:
            raise BackendUnavailable(
                "backend 'reference' runs the plain PyTorch model, but this plan has none: it was given "
                "without it, or a transform changed its math (Plan.rewrite(..., exact=False)); pass the "
                "Generator (or a model name), or check the plan op by op with reference.run_plan_reference"
            )
        super().__init__(plan, device, dtype)
        # a copy: never change the caller's model in place
        self.model = copy.deepcopy(plan.source).to(self.device, dtype).eval()

    def __call__(self, x, out_u8):
        from .models import output_to_unit
        from .reference import reference_forward, to_uint8

        with torch.inference_mode():
            # frame by frame, as upscale_reference does: the same bits for every batch size
            ys = []
            for frame in x:
                y = reference_forward(self.model, frame, self.dtype)
                self.finite.update(y)
                y = output_to_unit(self.model, y.float())
                ys.append(to_uint8(y) if out_u8 else y)
            return torch.cat(ys).permute(0, 2, 3, 1)


class CudaGraphRunner(Runner):
    """Wraps a runner factory: captures the whole network once per input shape (after two
    warm-up runs, so Triton autotuning stays outside the capture) and replays it, one launch
    instead of one per op. Each captured shape keeps its own runner and buffers (at most
    `max_shapes`, oldest dropped)."""

    name = "cuda_graph"

    def __init__(self, make: Callable[[], Runner], max_shapes: int = 8):
        self._make = make
        inner = make()
        super().__init__(inner.plan, inner.device, inner.dtype)
        self.slack = inner.slack
        self._graphs: dict = {}
        self.max_shapes = max_shapes

    def __call__(self, x, out_u8):
        key = (tuple(x.shape), x.dtype, out_u8)
        entry = self._graphs.get(key)
        if entry is None:
            if len(self._graphs) >= self.max_shapes:
                self._graphs.pop(next(iter(self._graphs)))
            entry = self._graphs[key] = self._capture(x, out_u8)
        graph, static_in, static_out, flag, _runner = entry
        static_in.copy_(x)
        graph.replay()
        self.finite.ok = flag
        return static_out.clone()

    def _capture(self, x, out_u8):
        runner = self._make()  # its own buffers
        static_in = x.clone()
        dev = static_in.device
        side = torch.cuda.Stream(dev)
        side.wait_stream(torch.cuda.current_stream(dev))
        with torch.cuda.stream(side):
            for _ in range(2):  # compile and autotune outside the capture
                runner.finite.reset()
                runner(static_in, out_u8)
        torch.cuda.current_stream(dev).wait_stream(side)
        graph = torch.cuda.CUDAGraph()
        runner.finite.reset()
        with torch.cuda.graph(graph):
            static_out = runner(static_in, out_u8)
        return graph, static_in, static_out, runner.finite.ok, runner


# ----------------------------------------------------------------------------------------
# the backend registry: Engine, the CLI's --backend choices and the benchmark's rows read it


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


def register_backend(backend: Backend) -> Backend:
    """Add (or replace) a backend; everything that lists backends sees it."""
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


def _triton_requires(name: str) -> Callable[[torch.device], str | None]:
    def requires(device: torch.device) -> str | None:
        if not triton_importable():
            return f"backend {name!r} needs Triton: pip install 'srgan-fast[triton]'"
        if device.type != "cuda" and os.environ.get("TRITON_INTERPRET") != "1":
            return (
                f"backend {name!r} runs on CUDA GPUs; on a CPU only through the interpreter "
                "(set TRITON_INTERPRET=1 before Python starts; slow, for tests). Use backend 'torch'."
            )
        return None

    return requires


register_backend(
    Backend(
        "torch",
        TorchRunner,
        "the fused plan with aten ops (BN folded, channels_last): the CPU path",
        auto_devices=("cpu", "cuda"),
        priority=1,
        bench_devices=("cpu", "cuda"),
    )
)
register_backend(
    Backend(
        "triton",
        TritonRunner,
        "one Triton conv2d_fused launch per fused op, NHWC, uint8 I/O fused (CUDA; CPU via TRITON_INTERPRET=1)",
        auto_devices=("cuda",),
        priority=2,
        bench_devices=("cuda",),
        requires=_triton_requires("triton"),
        cuda_graph=True,
    )
)
register_backend(
    Backend(
        "triton_fused",
        TritonFusedRunner,
        "triton with each residual block as one resblock_fused launch (a candidate, unmeasured; "
        "CUDA; CPU via TRITON_INTERPRET=1)",
        bench_devices=("cuda",),
        requires=_triton_requires("triton_fused"),
        cuda_graph=True,
    )
)
register_backend(
    Backend(
        "triton_tma",
        TritonTmaRunner,
        "triton with conv2d_fused's TMA main loop (Hopper tensor descriptors; a candidate until its CUDA "
        "tests pass on a card; CPU via TRITON_INTERPRET=1)",
        bench_devices=("cuda",),
        requires=_triton_requires("triton_tma"),
        cuda_graph=True,
    )
)
register_backend(
    Backend(
        "reference",
        ReferenceRunner,
        "the plain PyTorch model, unfused (the yardstick)",
    )
)
