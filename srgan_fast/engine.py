"""The inference engine: a Plan executed by a backend, frames in, frames out.

    eng = Engine("srresnet_x4", device="cuda", dtype="fp16")      # backend "auto" -> triton
    hr = eng.upscale(lr)     # HxWx3 or NxHxWx3, uint8 or float in [0, 1], numpy or torch

Backends (the registry in srgan_fast/backends/; `backend_names()` lists them)
  torch      aten ops per fused op (F.conv2d on BN-folded weights, channels_last): a CPU path
             and a second reference.
  native     the project's own CPU kernels (csrc/cpu_conv_impl.h): Winograd F(6x6,3x3) (RRDBNet F(4x4)) for 3x3
             convs (F(2x2,3x3) in bf16), direct convs for the rest, epilogues fused; AVX-512,
             AVX2 or a generic build chosen at run time; fp32, and bf16 on avx512_bf16 CPUs.
  triton     one `conv2d_fused` launch per fused op, NHWC, uint8 in/out fused into the head and
             tail. On a GPU; on a CPU only through the interpreter (TRITON_INTERPRET=1, for tests).
  reference  the plain PyTorch model (unfused; never tiled automatically): the yardstick.
  triton_fused  triton with each residual block as one `resblock_fused` launch (a candidate,
             unmeasured on a GPU; never picked by auto).
  triton_tma triton with conv2d_fused's TMA main loop (Hopper tensor descriptors; a candidate
             until its CUDA tests have passed on a card; never picked by auto).
  onnxruntime  the plan exported to ONNX (dynamic N/H/W, in memory) run by ONNX Runtime's CPU
             provider; fp32, CPU only, needs onnxruntime (srgan_fast/backends/onnxruntime.py).
  onnxruntime_model  the same on the plain model's graph (as `srgan-fast export` writes it).
  auto       On a CPU: the fastest of native, torch,
             onnxruntime and onnxruntime_model for this model shape, dtype, machine and frame-size class, measured at
             the first frame of a class (2 x 4-8 calls on one frame of at most 128x128) and cached
             in ~/.cache/srgan_fast/backend_choice.json. On CUDA the same over triton and torch, each with CUDA
             graphs on and off where it can be captured (frames of at most 256x256), after a probe frame that
             drops, with one line, a candidate that fails to compile or launch or differs from torch beyond the
             fp16 rule; torch is always a candidate, so auto is never wrong nor slower than it (with
             cuda_graph=True: triton, the static rule). SRGAN_FAST_CALIBRATE=0 turns that off
             (the static rule: native on a CPU, triton on CUDA). `engine.backend` names the backend in use (the static
             rule's until the first frame, unless cached), `engine.backend_choice.describe()` says how it was chosen
             (srgan_fast/backends/auto.py).

What lives where: the plan (srgan_fast/plan.py) is the dataflow; runners (srgan_fast/backends/) execute
it; input/output adapters (adapters.py) turn frames into NHWC tensors and back; streaming
(stream.py); tiling (tiling.py). The Engine ties them together and owns the policies: which
runner, tile or not, what to do with non-finite output.

Input rules (each a defined result or a clear error, tested in tests/engine/test_engine.py)
  * uint8 -> uint8 out; float32/float64/float16/bfloat16 in [0, 1] -> float32 out in [0, 1];
    uint16 is scaled by 1/65535 and returned as uint16. Float values outside [0, 1] are clamped
    (decoders overshoot slightly), with a RuntimeWarning when the maximum is over 1.5 (0..255
    data in a float array would come out mostly white); NaN/Inf input is an error.
  * 1 channel is taken as gray and expanded to RGB (output is 3 channels); 2 or 4 channels are
    errors (alpha: use srgan_fast.io.batch.upscale_files, which keeps it); a 3xHxW array with a
    last dimension other than 3 is refused as CHW.
  * DLPack producers (CuPy, ...) are taken without a copy and given back as the same kind;
    `upscale_nv12(y, uv)` takes decoder planes (colour conversion in csrc/).
  * zero-size frames are errors; 1x1 frames run, but as the network defines them: its zero
    padding outweighs a frame of 1-2 pixels, which comes out greyed (`upscale_files` pads
    such images by edge replication and crops back: upscale.TINY_SIDE);
    non-contiguous and negative-stride views are copied; a list of frames of different sizes
    returns a list.
  * memory_budget bounds one call: a batch whose activations exceed it is run in parts (as
    many frames per call as fit), and a frame that alone exceeds it is tiled.
  * fp16/bf16 output that is not finite is never returned: it raises NonFiniteOutputError,
    or with on_nonfinite="fp32" the frame is recomputed in fp32 (with a warning).
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass

import torch

from .adapters import as_nhwc, give_back, nv12_to_rgb, rgb_to_nv12
from .backends import BackendUnavailable, CudaGraphRunner, Runner, choose_backend
from .families.srresnet import Generator
from .plan import Plan, compile_plan
from .runtime import check_device, default_memory_budget, parse_dtype
from .tiling import MAX_HALO_WORK, MemoryBudgetError, choose_tiling, halo_work_factor, run_tiled

__all__ = ["Engine", "JobEstimate", "NonFiniteOutputError", "BackendUnavailable", "MemoryBudgetError"]


class NonFiniteOutputError(FloatingPointError):
    """The network produced NaN/Inf (fp16 overflow in a trained GAN, or a broken model)."""


@dataclass(frozen=True)
class JobEstimate:
    """What a call will cost (Engine.estimate)."""

    out_h: int
    out_w: int
    frames: int
    tile: int | None  # LR tile side, None = whole frames
    tiles: int  # tile-images over all frames
    halo_work: float  # work over the untiled work (1.0 untiled)
    macs: float  # multiply-adds, halo included
    seconds: float | None  # estimated on this engine, when timed

    def describe(self) -> str:
        mpx = self.out_h * self.out_w * self.frames / 1e6
        s = f"{self.out_w}x{self.out_h} output ({mpx:.1f} Mpx)"
        if self.tile is not None:
            s += f", {self.tiles} tiles of {self.tile} px (+{(self.halo_work - 1) * 100:.0f}% halo work)"
        if self.seconds is not None:
            m, sec = divmod(int(round(self.seconds)), 60)
            s += f", about {m} min {sec} s" if m else f", about {sec} s"
        return s


def _budget(value) -> int:
    """memory_budget as bytes: an int, or a size string ("512M", "2G") as the CLI takes it."""
    from .options import parse_size

    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        raise ValueError(f"memory_budget must be bytes or a size such as '512M', got {value!r}")
    try:
        return parse_size(str(value))
    except Exception as e:  # argparse.ArgumentTypeError: a ValueError here
        raise ValueError(f"memory_budget: {e}") from None


def _warn_if_not_unit_range(frames) -> None:
    """A float array of 0..255 values is clamped to [0, 1] (mostly white): say so."""
    if isinstance(frames, torch.Tensor):
        if not frames.is_floating_point() or frames.numel() == 0:
            return
        top = float(frames.detach().max())
    elif hasattr(frames, "dtype") and hasattr(frames, "max") and getattr(frames.dtype, "kind", "") == "f":
        if frames.size == 0:
            return
        top = float(frames.max())
    else:
        return
    if 1.5 < top < float("inf"):  # decoders overshoot by a little, 0..255 data by 254 (Inf: refused later)
        warnings.warn(
            f"float input should be in [0, 1] but its maximum is {top:g}: values above 1 are clamped to 1 "
            "(0..255 data? pass uint8, or divide by 255)",
            RuntimeWarning,
            stacklevel=3,
        )


def _as_plan(model) -> Plan:
    if isinstance(model, Plan):
        return model
    if isinstance(model, (str, os.PathLike)):  # else a module of a registered family (compile_plan)
        from .weights import load_generator

        model = load_generator(model)
    return compile_plan(model)


class Engine:
    """Upscale frames with a plan on a backend. See the module docstring for the rules.

    model: bundled name, .safetensors path, Generator or Plan.
    device: "cpu", "cuda", "cuda:N". dtype: "fp32" (parity), "fp16", "bf16".
    backend: "auto", or a registered backend ("torch", "triton", "reference"; srgan_fast/backends/).
    tile: LR tile size (None: whole frames unless memory_budget forces tiling).
    memory_budget: bytes of activations one call may use, or a size string as the CLI takes it
        ("512M", "2G"; default: half the GPU's free memory; on a CPU 40% of the available
        memory, at least 4 GiB); larger batches are
        run in parts, larger frames tiled.
    tile_batch: tiles run together per call.
    on_nonfinite: "raise" or "fp32" (recompute the frame in fp32).
    cuda_graph: on CUDA, capture the whole network once per input shape and replay it
        (backends.CudaGraphRunner): one launch instead of 37 per call, which matters when frames
        are small. Untiled frames only (tiled calls run normally).
    """

    def __init__(
        self,
        model: str | os.PathLike | Generator | Plan = "srresnet_x4",
        device: str | torch.device = "cpu",
        dtype: str | torch.dtype = "fp32",
        backend: str = "auto",
        tile: int | None = None,
        memory_budget: int | str | None = None,
        tile_batch: int = 4,
        on_nonfinite: str = "raise",
        cuda_graph: bool = False,
    ):
        self.device = check_device(device)
        self.dtype = parse_dtype(dtype)
        if on_nonfinite not in ("raise", "fp32"):
            raise ValueError(f"on_nonfinite must be 'raise' or 'fp32', got {on_nonfinite!r}")
        if tile is not None and tile < 1:
            raise ValueError(f"tile must be positive, got {tile}")
        if cuda_graph and self.device.type != "cuda":
            raise ValueError("cuda_graph=True needs a CUDA device")
        runner, self._auto = None, None
        if backend == "auto" and (self.device.type == "cpu" or (self.device.type == "cuda" and not cuda_graph)):
            # the fastest backend (on CUDA: of those a probe frame found right), measured per
            # frame-size class at the first such frame and cached per machine (GPU) and model
            # shape (srgan_fast/backends/auto.py; upscale() asks it)
            from .backends.auto import make_auto

            self.plan = _as_plan(model)
            self._auto = make_auto(self.plan, self.device, self.dtype)
            self._backend, runner, self.backend_choice = self._auto.first()
        else:
            self._backend = choose_backend(backend, self.device)
            self.backend_choice = None
        if cuda_graph and not self._backend.cuda_graph:
            raise ValueError(f"backend {self._backend.name!r} cannot be captured in a CUDA graph; use triton")
        if runner is None:
            self.plan = _as_plan(model)
            if backend == "auto":
                from .backends.auto import Choice

                self.backend_choice = Choice(self._backend.name, "static rule (highest priority)")
        self.backend = self._backend.name
        self.on_nonfinite = on_nonfinite
        self.tile = tile
        self.tile_batch = max(1, int(tile_batch))
        self.memory_budget = _budget(memory_budget) if memory_budget else default_memory_budget(self.device)
        self._warned: tuple = ()
        self._rate: float | None = None
        self._runner = runner if runner is not None else self._make_runner(self.dtype)
        self._fp32_runner: Runner | None = None
        self.cuda_graph = cuda_graph
        self._graph_runner = CudaGraphRunner(lambda: self._make_runner(self.dtype)) if cuda_graph else None

    @property
    def scale(self) -> int:
        return self.plan.scale

    def _make_runner(self, dtype: torch.dtype) -> Runner:
        return self._backend.runner(self.plan, self.device, dtype)

    def bytes_per_lr_pixel(self) -> int:
        """Activation memory per LR pixel of one call (the plan's buffers with the runner's slack)."""
        return self._runner.bytes_per_lr_pixel()

    def _tiling(self, h: int, w: int, n: int) -> tuple[int | None, int]:
        """(tile or None for whole frames, tiles per call) for a batch of n frames of h x w."""
        if self.tile is not None:
            return (self.tile if (self.tile < h or self.tile < w) else None), self.tile_batch
        if not self._runner.tileable or h * w * n * self.bytes_per_lr_pixel() <= self.memory_budget:
            return None, self.tile_batch
        tile, per_call = choose_tiling(self.memory_budget, self.bytes_per_lr_pixel(), self.plan.halo, self.tile_batch)
        if tile >= max(h, w):
            return None, per_call
        factor = halo_work_factor(h, w, tile, self.plan.halo)
        if factor > MAX_HALO_WORK and (h, w, tile) != self._warned:
            self._warned = (h, w, tile)
            warnings.warn(
                f"the memory budget ({self.memory_budget / 2**20:.0f} MiB) forces {tile}-pixel tiles with a "
                f"{self.plan.halo}-pixel halo on this {w}x{h} frame: {factor:.1f}x the untiled work; raise the "
                "budget (--memory-budget) for speed",
                RuntimeWarning,
                stacklevel=4,
            )
        return tile, per_call

    def _frames_per_call(self, h: int, w: int, n: int) -> int:
        """How many of n frames of h x w one call may take within the memory budget (at least
        1: a frame over the budget alone is tiled). An explicit `tile` takes the whole batch:
        its tiles are batched `tile_batch` at a time anyway."""
        if self.tile is not None or n <= 1:
            return n
        return max(1, min(n, self.memory_budget // max(1, h * w * self.bytes_per_lr_pixel())))

    def _run(self, runner: Runner, x: torch.Tensor, out_u8: bool, progress=None) -> torch.Tensor | None:
        """Run `x` (NHWC on the device) through `runner`, in parts when the batch is over the
        memory budget, tiled when a frame is, and return the output if every value was finite,
        else None."""
        n, h, w, _ = x.shape
        per = self._frames_per_call(h, w, n)
        if per < n:
            out, parts = None, range(0, n, per)
            for k, i in enumerate(parts):
                # frames over the budget go one per call (per == 1), so every part has the same tiles
                cb = None if progress is None else (lambda d, t, k=k: progress(k * t + d, len(parts) * t))
                y = self._run(runner, x[i : i + per], out_u8, cb)
                if y is None:
                    return None
                if out is None:
                    out = torch.empty((n, *y.shape[1:]), dtype=y.dtype, device=y.device)
                out[i : i + per] = y
            return out
        tile, per_call = self._tiling(h, w, n)
        if tile is None and self._graph_runner is not None and runner is self._runner:
            runner = self._graph_runner
        runner.finite.reset()
        if tile is None:
            y = runner(x, out_u8)
        else:
            y = run_tiled(
                lambda t: runner(t, out_u8), x, self.scale, tile, self.plan.halo, per_call, progress=progress
            )
        return y if runner.finite else None

    def estimate(self, h: int, w: int, n: int = 1, timed: bool = False) -> JobEstimate:
        """How big upscaling n frames of h x w LR pixels is: output size, tiling, multiply-adds
        (halo included) and, with `timed`, seconds on this engine (from a short probe run,
        measured once)."""
        tile, per_call = self._tiling(h, w, self._frames_per_call(h, w, n))
        factor = 1.0 if tile is None else halo_work_factor(h, w, tile, self.plan.halo)
        tiles = 1 if tile is None else len(range(0, h, tile)) * len(range(0, w, tile))
        macs = self.plan.macs_per_lr_pixel() * h * w * n * factor
        seconds = macs / self.measure_rate() if timed else None
        return JobEstimate(h * self.scale, w * self.scale, n, tile, tiles * n, factor, macs, seconds)

    def measure_rate(self) -> float:
        """Multiply-adds per second of this engine on a 48x48 LR probe (warm-up excluded)."""
        if self._rate is None:
            import time

            probe = torch.rand(1, 48, 48, 3, device=self.device)
            self._runner(probe, False)
            if self.device.type == "cuda":
                torch.cuda.synchronize(self.device)
            t0 = time.perf_counter()
            self._runner(probe, False)
            if self.device.type == "cuda":
                torch.cuda.synchronize(self.device)
            self._rate = self.plan.macs_per_lr_pixel() * 48 * 48 / max(time.perf_counter() - t0, 1e-9)
        return self._rate

    def upscale(self, frames, progress: Callable[[int, int], None] | None = None):
        """Upscale one frame (HxWxC), a batch (NxHxWxC) or a list of frames; see module doc.
        `progress(done, total)` is called after each batch of tiles of a tiled frame."""
        if isinstance(frames, (list, tuple)):
            return [self.upscale(f, progress) for f in frames]
        _warn_if_not_unit_range(frames)
        x, meta = as_nhwc(frames)
        x = x.to(self.device)
        if self._auto is not None:
            self._choose_runner(x.shape[1], x.shape[2])
        y = self._run(self._runner, x, meta["u8"], progress)
        if y is None:
            y = self._nonfinite(x, meta["u8"], progress)
        return give_back(y, meta)

    def _choose_runner(self, h: int, w: int) -> None:
        """backend "auto": the runner measured fastest for frames of this size class
        (measured now if this machine has not seen the class yet); self.backend follows it."""
        if self.tile is not None:  # the runner sees tiles (with their halo), not whole frames
            h, w = min(h, self.tile + 2 * self.plan.halo), min(w, self.tile + 2 * self.plan.halo)
        b, runner, self.backend_choice = self._auto.choose(h, w)
        if runner is not self._runner:
            self._backend, self._runner, self.backend = b, runner, b.name
            self._fp32_runner, self._rate = None, None

    def upscale_nv12(self, y, uv, matrix: int = 709, full_range: bool = False, out: str = "nv12"):
        """Upscale one NV12 frame from a decoder (numpy, or torch on CPU/CUDA; CUDA needs the
        native extension built with nvcc). Returns (y, uv) planes of the upscaled frame, or an
        RGB uint8 frame with out="rgb". Colour conversion: srgan_fast.adapters (csrc/)."""
        if out not in ("nv12", "rgb"):
            raise ValueError(f"out must be nv12 or rgb, got {out!r}")
        sr = self.upscale(nv12_to_rgb(y, uv, matrix=matrix, full_range=full_range))
        return sr if out == "rgb" else rgb_to_nv12(sr, matrix=matrix, full_range=full_range)

    def stream(self, frames: Iterable, batch: int = 1, queue_size: int = 4) -> Iterator:
        """Upscale an iterable of frames, yielding results in order.

        A producer thread pulls from `frames` (e.g. a decoder) into a bounded queue while this
        thread upscales, so decoding overlaps compute and memory stays flat for any length.
        Consecutive frames of one shape and kind are upscaled `batch` at a time. A `(y, uv)`
        tuple is an NV12 frame (BT.709, limited range) and yields `(y, uv)` planes back.
        Closing the generator early stops the producer and joins its thread (stream.py).
        """
        from .stream import stream

        return stream(self, frames, batch=batch, queue_size=queue_size)

    def _nonfinite(self, x: torch.Tensor, out_u8: bool = False, progress=None) -> torch.Tensor:
        if self.dtype == torch.float32:  # no lower precision to blame: the weights are broken
            raise NonFiniteOutputError(
                "non-finite output in fp32: the model's weights overflow on this input (a broken or diverged "
                "model; check it with a known-good one)"
            )
        msg = f"non-finite output in {self.dtype} (activation overflow)"
        if self.on_nonfinite == "raise":
            raise NonFiniteOutputError(msg + "; use dtype='fp32' or Engine(..., on_nonfinite='fp32')")
        warnings.warn(msg + "; recomputing this frame in fp32", RuntimeWarning, stacklevel=3)
        if self._fp32_runner is None:
            self._fp32_runner = self._make_runner(torch.float32)
        y = self._run(self._fp32_runner, x, out_u8, progress)
        if y is None:
            raise NonFiniteOutputError(f"non-finite output even in fp32: the model itself is broken ({msg})")
        return y
