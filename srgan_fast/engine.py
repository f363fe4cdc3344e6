"""The inference engine: a Plan executed by a backend, frames in, frames out.

    eng = Engine("srresnet_x4", device="cuda", dtype="fp16")      # backend "auto" -> triton
    hr = eng.upscale(lr)     # HxWx3 or NxHxWx3, uint8 or float in [0, 1], numpy or torch

Backends
  torch   aten ops per fused op (F.conv2d on BN-folded weights, channels_last): the CPU path
          and a second reference.
  triton  one `conv2d_fused` launch per fused op, NHWC, uint8 in/out fused into the head and
          tail. On a GPU; on a CPU only through the interpreter (TRITON_INTERPRET=1, for tests).

Input rules (each a defined result or a clear error, tested in tests/test_engine.py)
  * uint8 -> uint8 out; float32/float64/float16/bfloat16 in [0, 1] -> float32 out in [0, 1];
    uint16 is scaled by 1/65535 and returned as uint16. Float values outside [0, 1] are clamped
    (decoders overshoot slightly); NaN/Inf input is an error.
  * 1 channel is taken as gray and expanded to RGB (output is 3 channels); 2 or 4 channels are
    errors (alpha: use srgan_fast.upscale.upscale_files, which keeps it); a 3xHxW array with a
    last dimension other than 3 is refused as CHW.
  * DLPack producers (CuPy, ...) are taken without a copy and given back as the same kind;
    `upscale_nv12(y, uv)` takes decoder planes (colour conversion in csrc/).
  * zero-size frames are errors; 1x1 frames work; non-contiguous and negative-stride views
    are copied; a list of frames of different sizes returns a list.
  * fp16/bf16 output that is not finite is never returned: it raises NonFiniteOutputError,
    or with on_nonfinite="fp32" the frame is recomputed in fp32 (with a warning).
"""

from __future__ import annotations

import os
import warnings
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from .models import Generator
from .plan import Plan
from .plan import compile as compile_plan
from .reference import check_device, parse_dtype
from .tiling import run_tiled, tile_size_for_budget

__all__ = ["Engine", "NonFiniteOutputError", "BackendUnavailable"]


class NonFiniteOutputError(FloatingPointError):
    """The network produced NaN/Inf (fp16 overflow in a trained GAN, or a broken model)."""


class BackendUnavailable(RuntimeError):
    """A backend was asked for that this machine cannot run; the message says what to install."""


# ----------------------------------------------------------------------------------------
# runners: NHWC tensors on the engine's device in, NHWC tensors out


class _FiniteFlag:
    """Whether every tail input since reset() was finite. Checked on the tail's input because
    uint8 rounding of the output would hide NaN as a black pixel. Stays on the device until read."""

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


class _TorchRunner:
    """The plan with aten ops, NCHW tensors in channels_last memory (NHWC bytes)."""

    name = "torch"

    def __init__(self, plan: Plan, device: torch.device, dtype: torch.dtype):
        self.plan = plan.to(device=device, dtype=dtype)
        for op in self.plan.ops:
            op.weight = op.weight.contiguous(memory_format=torch.channels_last)
        self.dtype = dtype
        self.finite = _FiniteFlag()

    def __call__(self, x: torch.Tensor, out_u8: bool) -> torch.Tensor:
        # fp32 is the parity mode: no TF32 in cuDNN (its default for fp32 convolutions)
        with torch.inference_mode(), torch.backends.cudnn.flags(enabled=True, allow_tf32=False):
            return self._run(x, out_u8)

    def _run(self, x: torch.Tensor, out_u8: bool) -> torch.Tensor:
        x = x.permute(0, 3, 1, 2)  # NHWC bytes viewed as NCHW channels_last
        x = x.to(self.dtype) / 255.0 if x.dtype == torch.uint8 else x.to(self.dtype)
        x = x.contiguous(memory_format=torch.channels_last)
        head = block_in = None
        for op in self.plan.ops:
            if op.out_map:
                self.finite.update(x)
            y = F.conv2d(x, op.weight, op.bias, padding=op.k // 2)
            if op.shuffle:
                y = F.pixel_shuffle(y, 2).contiguous(memory_format=torch.channels_last)
            if op.prelu is not None:
                y = F.prelu(y, op.prelu)
            if op.skip == "block":
                y.add_(block_in)
            elif op.skip == "head":
                y.add_(head)
            if op.out_map:
                y = y.float().add_(1.0).mul_(0.5).clamp_(0.0, 1.0)
                if out_u8:
                    y = torch.floor(y * 255.0 + 0.5).to(torch.uint8)
            if op.kind == "block_conv1":
                block_in = x
            if op.kind == "head":
                head = y
            x = y
        return x.permute(0, 2, 3, 1)


class _TritonRunner:
    """One conv2d_fused launch per op; activations NHWC in reused buffers."""

    name = "triton"

    def __init__(self, plan: Plan, device: torch.device, dtype: torch.dtype):
        from .kernels.conv2d_fused import conv2d_fused, pack_bias, pack_weight

        self._conv = conv2d_fused
        self.dtype = dtype
        self.ops = []
        for op in plan.ops:
            self.ops.append(
                dict(
                    op=op,
                    w=pack_weight(op.weight, dtype, shuffle=op.shuffle).to(device),
                    b=pack_bias(op.bias, shuffle=op.shuffle).to(device),
                    a=None if op.prelu is None else op.prelu.float().to(device),
                )
            )
        self._bufs: dict[tuple, torch.Tensor] = {}
        self.finite = _FiniteFlag()

    def _buf(self, slot: str, shape: tuple, dtype: torch.dtype, device) -> torch.Tensor:
        key = (slot, shape, dtype, str(device))
        t = self._bufs.get(key)
        if t is None:
            # one live shape per slot: drop buffers of other shapes so memory stays bounded
            for k in [k for k in self._bufs if k[0] == slot]:
                del self._bufs[k]
            t = self._bufs[key] = torch.empty(shape, dtype=dtype, device=device)
        return t

    @torch.inference_mode()
    def __call__(self, x: torch.Tensor, out_u8: bool) -> torch.Tensor:
        if x.dtype != torch.uint8:
            x = x.to(self.dtype)
        x = x.contiguous()
        n, h, w, _ = x.shape
        dev = x.device
        head = cur = None
        cur_slot = None
        for i, d in enumerate(self.ops):
            op = d["op"]
            s_out = op.scale_out
            shape = (n, h * s_out, w * s_out, op.cout // 4 if op.shuffle else op.cout)
            if op.kind == "tail":
                self.finite.update(x)
                # the output goes to the caller: a fresh tensor, never a reused buffer
                y = self._conv(
                    x, d["w"], d["b"], op.k, shuffle=op.shuffle, out_map=True, out_u8=out_u8, out_dtype=torch.float32
                )
            else:
                if op.kind in ("block_conv2", "trunk_end"):
                    # ping-pong between two buffers, never the one holding the skip input
                    slot = "b" if cur_slot == "a" else "a"
                else:
                    slot = {"head": "head", "block_conv1": "t"}.get(op.kind, f"up{i}")
                out = self._buf(slot, shape, self.dtype, dev)
                skip = cur if op.skip == "block" else head if op.skip == "head" else None
                y = self._conv(x, d["w"], d["b"], op.k, prelu=d["a"], skip=skip, shuffle=op.shuffle, out=out)
                if op.kind == "head":
                    head = cur = y
                    cur_slot = "head"
                elif op.kind in ("block_conv2", "trunk_end"):
                    cur, cur_slot = y, slot
            x = y
        return x


# ----------------------------------------------------------------------------------------
# input handling


def _as_tensor(frames: Any) -> tuple[torch.Tensor, dict]:
    """Any supported frame(s) -> (NHWC tensor, how to give the result back)."""
    meta: dict = {}
    if isinstance(frames, np.ndarray):
        meta["kind"] = "numpy"
        if frames.size == 0:
            raise ValueError(f"empty frame: shape {frames.shape}")
        if frames.dtype == np.float64:
            frames = frames.astype(np.float32)
        if frames.dtype not in (np.uint8, np.uint16, np.float32, np.float16):
            raise TypeError(f"unsupported array dtype {frames.dtype}; use uint8, uint16 or float in [0, 1]")
        if frames.dtype == np.uint16:
            meta["u16"] = True
            frames = frames.astype(np.float32) / 65535.0
        t = torch.from_numpy(np.ascontiguousarray(frames))  # copies negative-stride views
    elif isinstance(frames, torch.Tensor):
        meta["kind"] = "torch"
        meta["device"] = frames.device
        if frames.numel() == 0:
            raise ValueError(f"empty frame: shape {tuple(frames.shape)}")
        t = frames
        if t.dtype == torch.float64:
            t = t.float()
        if t.dtype not in (torch.uint8, torch.float32, torch.float16, torch.bfloat16):
            raise TypeError(f"unsupported tensor dtype {t.dtype}; use uint8 or float in [0, 1]")
    elif hasattr(frames, "__dlpack__"):  # CuPy, JAX, ... : zero-copy through DLPack
        meta["kind"] = "dlpack"
        meta["module"] = type(frames).__module__.split(".")[0]
        t = torch.from_dlpack(frames)
        meta["device"] = t.device
        if t.numel() == 0:
            raise ValueError(f"empty frame: shape {tuple(t.shape)}")
        if t.dtype == torch.float64:
            t = t.float()
        if t.dtype not in (torch.uint8, torch.float32, torch.float16, torch.bfloat16):
            raise TypeError(f"unsupported dtype {t.dtype}; use uint8 or float in [0, 1]")
    else:
        raise TypeError(f"expected a numpy array, torch tensor or DLPack array, got {type(frames).__name__}")
    if t.dim() not in (3, 4):
        raise ValueError(f"expected HxWxC or NxHxWxC, got shape {tuple(t.shape)}")
    meta["batched"] = t.dim() == 4
    if t.dim() == 3:
        t = t[None]
    c = t.shape[-1]
    if c not in (1, 3):
        if t.shape[1] in (1, 3) and c not in (1, 2, 4):
            raise ValueError(
                f"shape {tuple(t.shape[1:] if not meta['batched'] else t.shape)} looks channels-first "
                "(CHW); pass HxWxC (e.g. x.permute(1, 2, 0) or np.moveaxis(x, 0, -1))"
            )
        if c == 4:
            raise ValueError("4 channels (RGBA?): pass RGB; upscale_files keeps alpha (bicubic)")
        raise ValueError(f"expected 1 (gray) or 3 (RGB) channels, got {c}")
    if t.is_floating_point():
        finite = torch.isfinite(t).all()
        if not bool(finite):
            raise ValueError("input contains NaN or Inf")
        t = t.float().clamp(0.0, 1.0)
    if c == 1:
        t = t.expand(*t.shape[:-1], 3)
    meta["u8"] = t.dtype == torch.uint8
    return t, meta


def _give_back(y: torch.Tensor, meta: dict):
    if not meta["batched"]:
        y = y[0]
    if meta.get("u16"):
        y = torch.floor(y.float() * 65535.0 + 0.5).clamp(0, 65535).to(torch.int32)
    if meta["kind"] == "numpy":
        a = y.cpu().numpy()
        return a.astype(np.uint16) if meta.get("u16") else a
    y = y.to(meta["device"])
    if meta["kind"] == "dlpack":
        if meta["module"] == "cupy":
            import cupy

            return cupy.from_dlpack(y)
        return y  # other producers get a torch tensor (itself a DLPack producer)
    return y


# ----------------------------------------------------------------------------------------


class Engine:
    """Upscale frames with a plan on a backend. See the module docstring for the rules.

    model: bundled name, .safetensors path, Generator or Plan.
    device: "cpu", "cuda", "cuda:N". dtype: "fp32" (parity), "fp16", "bf16".
    backend: "torch", "triton" or "auto" (triton on CUDA when importable, else torch).
    tile: LR tile size (None: whole frames unless memory_budget forces tiling).
    memory_budget: bytes of activations one call may use (default: half the GPU's free memory,
        4 GiB on a CPU); larger frames and batches are tiled.
    tile_batch: tiles run together per call.
    on_nonfinite: "raise" or "fp32" (recompute the frame in fp32).
    cuda_graph: on CUDA, capture the whole network once per input shape (after two warm-up
        runs, so Triton autotuning stays outside the capture) and replay it: one launch
        instead of 37 per call, which matters when frames are small. Each captured shape
        keeps its own buffers; untiled frames only (tiled calls run normally).
    """

    def __init__(
        self,
        model: str | os.PathLike | Generator | Plan = "srresnet_x4",
        device: str | torch.device = "cpu",
        dtype: str | torch.dtype = "fp32",
        backend: str = "auto",
        tile: int | None = None,
        memory_budget: int | None = None,
        tile_batch: int = 4,
        on_nonfinite: str = "raise",
        cuda_graph: bool = False,
    ):
        self.device = check_device(device)
        self.dtype = parse_dtype(dtype)
        if isinstance(model, Plan):
            self.plan = model
        else:
            if not isinstance(model, Generator):
                from .weights import load_generator

                model = load_generator(model)
            self.plan = compile_plan(model)
        if on_nonfinite not in ("raise", "fp32"):
            raise ValueError(f"on_nonfinite must be 'raise' or 'fp32', got {on_nonfinite!r}")
        if tile is not None and tile < 1:
            raise ValueError(f"tile must be positive, got {tile}")
        self.on_nonfinite = on_nonfinite
        self.tile = tile
        self.tile_batch = max(1, int(tile_batch))
        self.memory_budget = int(memory_budget) if memory_budget else _default_budget(self.device)
        self.backend = self._choose_backend(backend)
        self._runner = self._make_runner(self.backend, self.dtype)
        self._fp32_runner = None
        if cuda_graph and self.device.type != "cuda":
            raise ValueError("cuda_graph=True needs a CUDA device")
        self.cuda_graph = cuda_graph
        self._graphs: dict = {}

    @property
    def scale(self) -> int:
        return self.plan.scale

    def _choose_backend(self, backend: str) -> str:
        if backend not in ("auto", "torch", "triton"):
            raise ValueError(f"unknown backend {backend!r}; use auto, torch or triton")
        if backend == "auto":
            if self.device.type == "cuda" and _triton_importable():
                return "triton"
            return "torch"
        if backend == "triton":
            if not _triton_importable():
                raise BackendUnavailable("backend 'triton' needs Triton: pip install 'srgan-fast[triton]'")
            if self.device.type != "cuda" and os.environ.get("TRITON_INTERPRET") != "1":
                raise BackendUnavailable(
                    "backend 'triton' runs on CUDA GPUs; on a CPU only through the interpreter "
                    "(set TRITON_INTERPRET=1 before Python starts; slow, for tests). Use backend 'torch'."
                )
        return backend

    def _make_runner(self, backend: str, dtype: torch.dtype):
        if backend == "triton":
            return _TritonRunner(self.plan, self.device, dtype)
        return _TorchRunner(self.plan, self.device, dtype)

    def bytes_per_lr_pixel(self) -> int:
        """Activation memory per LR pixel of one call: the Triton runner's buffer pool (every slot
        live at once) and the fp32 output, with slack for the tile batch's input and rounding."""
        item = torch.finfo(self.dtype).bits // 8
        c = self.plan.config.channels
        # buffers: head, block temp, two ping-pong trunk buffers at LR, then each upsample's output
        elems = 4 * c + sum(op.cout * op.scale_in**2 for op in self.plan.ops if op.kind == "upsample")
        tail = self.plan.ops[-1]
        out = tail.cout // (4 if tail.shuffle else 1) * self.plan.scale**2 * 4  # fp32 output
        # the torch runner also holds shuffle copies and conv temporaries: more slack
        slack = 1.25 if self.backend == "triton" else 2.0
        return int((elems * item + out) * slack)

    def _tile_for(self, h: int, w: int, n: int) -> int | None:
        if self.tile is not None:
            return self.tile if (self.tile < h or self.tile < w) else None
        if h * w * n * self.bytes_per_lr_pixel() <= self.memory_budget:
            return None
        return tile_size_for_budget(self.memory_budget, self.bytes_per_lr_pixel(), self.plan.halo, self.tile_batch)

    def _run(self, runner, x: torch.Tensor, out_u8: bool) -> torch.Tensor:
        n, h, w, _ = x.shape
        tile = self._tile_for(h, w, n)
        if tile is None:
            return runner(x, out_u8)
        return run_tiled(lambda t: runner(t, out_u8), x, self.scale, tile, self.plan.halo, self.tile_batch)

    def upscale(self, frames):
        """Upscale one frame (HxWxC), a batch (NxHxWxC) or a list of frames; see module doc."""
        if isinstance(frames, (list, tuple)):
            return [self.upscale(f) for f in frames]
        x, meta = _as_tensor(frames)
        x = x.to(self.device)
        if self.cuda_graph and self._tile_for(*x.shape[1:3], x.shape[0]) is None:
            y, finite = self._run_graph(x, meta["u8"])
        else:
            self._runner.finite.reset()
            y = self._run(self._runner, x, out_u8=meta["u8"])
            finite = bool(self._runner.finite)
        if not finite:
            y = self._nonfinite(x, out_u8=meta["u8"])
        return _give_back(y, meta)

    def _run_graph(self, x: torch.Tensor, out_u8: bool):
        key = (tuple(x.shape), x.dtype, out_u8)
        entry = self._graphs.get(key)
        if entry is None:
            if len(self._graphs) >= 8:  # bound the memory held by captured shapes
                self._graphs.pop(next(iter(self._graphs)))
            runner = self._make_runner(self.backend, self.dtype)  # its own buffers
            static_in = x.clone()
            side = torch.cuda.Stream(self.device)
            side.wait_stream(torch.cuda.current_stream(self.device))
            with torch.cuda.stream(side):
                for _ in range(2):  # compile and autotune outside the capture
                    runner.finite.reset()
                    runner(static_in, out_u8)
            torch.cuda.current_stream(self.device).wait_stream(side)
            graph = torch.cuda.CUDAGraph()
            runner.finite.reset()
            with torch.cuda.graph(graph):
                static_out = runner(static_in, out_u8)
            entry = self._graphs[key] = (graph, static_in, static_out, runner.finite.ok, runner)
        graph, static_in, static_out, flag, _ = entry
        static_in.copy_(x)
        graph.replay()
        return static_out.clone(), bool(flag)

    def upscale_nv12(self, y, uv, matrix: int = 709, full_range: bool = False, out: str = "nv12"):
        """Upscale one NV12 frame from a decoder (numpy, or torch on CPU/CUDA; CUDA needs the
        native extension built with nvcc). Returns (y, uv) planes of the upscaled frame, or an
        RGB uint8 frame with out="rgb". Colour conversion: srgan_fast.frames (csrc/)."""
        from . import frames as fio

        if out not in ("nv12", "rgb"):
            raise ValueError(f"out must be nv12 or rgb, got {out!r}")
        rgb = fio.yuv420_to_rgb(y, uv, fmt="nv12", matrix=matrix, full_range=full_range, out_dtype="u8")
        sr = self.upscale(rgb)
        if out == "rgb":
            return sr
        if isinstance(sr, torch.Tensor):
            sr = sr.contiguous()
        return fio.rgb_to_yuv420(sr, fmt="nv12", matrix=matrix, full_range=full_range)

    def stream(self, frames, batch: int = 1, queue_size: int = 4):
        """Upscale an iterable of frames, yielding results in order.

        A producer thread pulls from `frames` (e.g. a decoder) into a bounded queue while this
        thread upscales, so decoding overlaps compute and memory stays flat for any length.
        Consecutive frames of one shape and kind are upscaled `batch` at a time. A `(y, uv)`
        tuple is an NV12 frame (BT.709, limited range) and yields `(y, uv)` planes back.
        Closing the generator early stops the producer.
        """
        import queue
        import threading

        if batch < 1 or queue_size < 1:
            raise ValueError(f"batch and queue_size must be positive, got {batch}, {queue_size}")
        q: queue.Queue = queue.Queue(maxsize=queue_size)
        stop = threading.Event()
        done = object()

        def put(item) -> bool:
            while not stop.is_set():
                try:
                    q.put(item, timeout=0.1)
                    return True
                except queue.Full:
                    continue
            return False

        def producer():
            try:
                for f in frames:
                    if not put(f):
                        return
            except BaseException as e:  # handed to the consumer, raised there
                put(_Raised(e))
            put(done)

        t = threading.Thread(target=producer, name="srgan_fast-stream-reader", daemon=True)
        t.start()
        pending: list = []

        def key(f):
            return (type(f), tuple(f.shape), str(getattr(f, "dtype", "")), str(getattr(f, "device", "")))

        def flush():
            if isinstance(pending[0], tuple):  # NV12 planes: one frame at a time
                out = [self.upscale_nv12(*pending[0])]
            elif len(pending) == 1:
                out = [self.upscale(pending[0])]
            else:
                stacked = np.stack(pending) if isinstance(pending[0], np.ndarray) else torch.stack(pending)
                out = list(self.upscale(stacked))
            pending.clear()
            return out

        try:
            while True:
                item = q.get()
                if item is done:
                    break
                if isinstance(item, _Raised):
                    raise item.exc
                nv12 = isinstance(item, tuple)
                if pending and (nv12 or isinstance(pending[0], tuple) or key(item) != key(pending[0])
                                or len(pending) >= batch):  # fmt: skip
                    yield from flush()
                pending.append(item)
            if pending:
                yield from flush()
        finally:
            stop.set()

    def _nonfinite(self, x: torch.Tensor, out_u8: bool = False) -> torch.Tensor:
        msg = f"non-finite output in {self.dtype} (activation overflow)"
        if self.on_nonfinite == "raise" or self.dtype == torch.float32:
            raise NonFiniteOutputError(msg + "; use dtype='fp32' or Engine(..., on_nonfinite='fp32')")
        warnings.warn(msg + "; recomputing this frame in fp32", RuntimeWarning, stacklevel=3)
        if self._fp32_runner is None:
            self._fp32_runner = self._make_runner(self.backend, torch.float32)
        self._fp32_runner.finite.reset()
        y = self._run(self._fp32_runner, x, out_u8)
        if not self._fp32_runner.finite:
            raise NonFiniteOutputError(f"non-finite output even in fp32: the model itself is broken ({msg})")
        return y


class _Raised:
    def __init__(self, exc: BaseException):
        self.exc = exc


def _default_budget(device: torch.device) -> int:
    if device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(device)
        return int(free * 0.5)
    return 4 << 30


def _triton_importable() -> bool:
    try:
        import triton  # noqa: F401
    except ImportError:
        return False
    return True
