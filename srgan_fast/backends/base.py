"""What every runner is built on: the runner protocol, the plan loop, the finite flag, CUDA graphs."""

from __future__ import annotations

from collections.abc import Callable

import torch

from ..errors import UserError
from ..plan import FusedOp, Plan, place_slice


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
