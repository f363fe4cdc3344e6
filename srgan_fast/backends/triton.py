"""Backends "triton", "triton_fused" and "triton_tma": one Triton kernel launch per fused op (srgan_fast.kernels)."""

from __future__ import annotations

import os
from collections.abc import Callable

import torch

from ..plan import OUTPUT, FusedOp, Plan, fuse_residual_blocks
from ..runtime import triton_importable
from .base import PlanRunner
from .registry import Backend


class TritonRunner(PlanRunner):
    """One `conv2d_fused` launch per op, NHWC; intermediate buffers from a pool keyed by the
    plan's buffer names (one live shape per buffer), the output a fresh tensor."""

    name = "triton"
    slack = 1.25
    impl = "pointer"  # conv2d_fused's main loop (kernels/conv2d_fused.py: "pointer" or "tma")
    channel_dim = 3  # NHWC

    def __init__(self, plan: Plan, device: torch.device, dtype: torch.dtype):
        from ..kernels import conv2d_fused as k

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
        from ..kernels.resblock_fused import resblock_fused

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


def has_tma(capability: tuple[int, int]) -> bool:
    """Whether a GPU of this compute capability has TMA (the copy engine of triton_tma's loop)
    and wgmma: sm_90 and later. Ampere and Ada (sm_80/86/89) have neither."""
    return tuple(capability) >= (9, 0)


def _tma_requires(device: torch.device) -> str | None:
    why = _triton_requires("triton_tma")(device)
    if why is None and device.type == "cuda" and os.environ.get("TRITON_INTERPRET") != "1":
        try:
            cap = torch.cuda.get_device_capability(device)
        except (RuntimeError, AssertionError):  # no CUDA here: the launch says so, as before
            return why
        if not has_tma(cap):
            return (f"backend 'triton_tma' needs TMA (sm_90 or later); this GPU is sm_{cap[0]}{cap[1]}. "
                    "Use backend 'triton'.")  # fmt: skip
    return why


BACKENDS = (
    Backend(
        "triton",
        TritonRunner,
        "one Triton conv2d_fused launch per fused op, NHWC, uint8 I/O fused (CUDA; CPU via TRITON_INTERPRET=1)",
        auto_devices=("cuda",),
        priority=2,
        bench_devices=("cuda",),
        requires=_triton_requires("triton"),
        cuda_graph=True,
    ),
    Backend(
        "triton_fused",
        TritonFusedRunner,
        "triton with each residual block as one resblock_fused launch (a candidate, unmeasured; "
        "CUDA; CPU via TRITON_INTERPRET=1)",
        bench_devices=("cuda",),
        requires=_triton_requires("triton_fused"),
        cuda_graph=True,
    ),
    Backend(
        "triton_tma",
        TritonTmaRunner,
        "triton with conv2d_fused's TMA main loop (Hopper tensor descriptors; a candidate until its CUDA "
        "tests pass on a card; CPU via TRITON_INTERPRET=1)",
        bench_devices=("cuda",),
        requires=_tma_requires,
        cuda_graph=True,
    ),
)
