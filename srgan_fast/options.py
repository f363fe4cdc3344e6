"""The options every command shares (model, device, dtype, backend, tile), declared once.

    opts = RunOptions(model="srresnet_x4", device="cuda", dtype="fp16")
    engine = opts.engine()

The CLI adds them to each command's parser with `RunOptions.add_arguments` and reads them back
with `RunOptions.from_args`; the library functions (`upscale_files`, `upscale_video`,
`evaluate`, `demo`, `upscale_files_ray`) take `options=` and/or the same names as keywords.
"""

from __future__ import annotations

import argparse
import math
from dataclasses import dataclass, fields, replace

__all__ = ["RunOptions", "parse_size"]


def parse_size(text: str) -> int:
    """'512M', '2G', '1.5G', '300000' (bytes) -> bytes; an argparse type."""
    units = {"k": 2**10, "m": 2**20, "g": 2**30, "t": 2**40}
    t = str(text).strip().lower().removesuffix("ib").removesuffix("b")
    try:
        n = float(t[:-1]) * units[t[-1]] if t and t[-1] in units else float(t)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a size: {text!r} (use e.g. 512M or 2G)") from None
    if not (n >= 1 and math.isfinite(n)):
        raise argparse.ArgumentTypeError(f"size must be a positive, finite number of bytes, got {text!r}")
    return int(n)


@dataclass(frozen=True)
class RunOptions:
    model: str = "srresnet_x4"  # bundled name or .safetensors path (or a Generator, from Python)
    device: str = "cpu"  # cpu, cuda, cuda:N
    dtype: str = "fp32"  # fp32 (parity), fp16, bf16
    backend: str = "auto"  # auto or a registered backend (srgan_fast.backends)
    tile: int | None = None  # LR tile size; None = whole frames unless memory forces tiles
    # bytes per call, or "512M"/"2G"; None = half the GPU's free memory / on a CPU 40% of the
    # available RAM, at least 4 GiB
    memory_budget: int | str | None = None

    def __post_init__(self):
        if isinstance(self.memory_budget, str):  # the same strings the CLI takes
            try:
                object.__setattr__(self, "memory_budget", parse_size(self.memory_budget))
            except argparse.ArgumentTypeError as e:
                raise ValueError(f"memory_budget: {e}") from None

    def validate(self) -> RunOptions:
        """Fail early, with one line, on values that would fail later (before any file is read)."""
        from .backends import backend_names
        from .runtime import check_device, parse_dtype

        check_device(self.device)
        parse_dtype(self.dtype)
        if self.backend != "auto" and self.backend not in backend_names():
            raise ValueError(f"unknown backend {self.backend!r}; use auto, {', '.join(backend_names())}")
        if self.tile is not None and (not isinstance(self.tile, int) or self.tile < 1):
            raise ValueError(f"tile must be a positive number of LR pixels, got {self.tile!r}")
        if self.memory_budget is not None and (not isinstance(self.memory_budget, int) or self.memory_budget < 1):
            raise ValueError(f"memory_budget must be a positive number of bytes, got {self.memory_budget!r}")
        return self

    @classmethod
    def resolve(cls, options: RunOptions | None = None, **overrides) -> RunOptions:
        """`options` (or the defaults) with keyword overrides; None values are ignored, unknown
        names are a TypeError that names them."""
        names = {f.name for f in fields(cls)}
        bad = sorted(set(overrides) - names)
        if bad:
            raise TypeError(f"unknown option(s) {', '.join(bad)}; RunOptions has {', '.join(sorted(names))}")
        base = options if options is not None else cls()
        return replace(base, **{k: v for k, v in overrides.items() if v is not None}).validate()

    def engine(self, model=None, **kw):
        """An Engine with these options (`model` overrides self.model, e.g. an already loaded one)."""
        from .engine import Engine

        return Engine(
            self.model if model is None else model, device=self.device, dtype=self.dtype, backend=self.backend,
            tile=self.tile, memory_budget=self.memory_budget, **kw,
        )  # fmt: skip

    @staticmethod
    def add_arguments(
        parser: argparse.ArgumentParser, backend_default: str = "auto", model: bool = True, tile: bool = True
    ) -> None:
        """The shared flags, with help; `backend_default` differs per command (eval/demo measure
        the plain model by default, upscale/video run the engine)."""
        from .backends import backend_names, get_backend

        if model:
            parser.add_argument("--model", default=RunOptions.model, help="bundled model name or .safetensors path")
        parser.add_argument("--device", default=RunOptions.device, help="cpu, cuda or cuda:N (default: cpu)")
        parser.add_argument("--dtype", default=RunOptions.dtype, help="fp32 (parity), fp16 or bf16 (fast; GPU)")
        names = backend_names()
        parser.add_argument(
            "--backend",
            default=backend_default,
            choices=["auto", *names],
            help="; ".join(f"{n} = {get_backend(n).help}" for n in names)
            + "; auto = triton on CUDA; on a CPU the fastest of torch and the onnxruntime backends for this model and "
            "frame size, timed at its first frame and cached in ~/.cache/srgan_fast (SRGAN_FAST_CALIBRATE=0: torch) "
            f"(default: {backend_default})",
        )
        if tile:
            parser.add_argument(
                "--tile", type=int, default=None, help="LR tile size for large frames (default: from the memory budget)"
            )
            parser.add_argument(
                "--memory-budget",
                dest="memory_budget",
                type=parse_size,
                default=None,
                metavar="BYTES",
                help="activation memory one engine call may use, e.g. 512M or 2G; larger frames are tiled "
                "(default: half the GPU's free memory, 4G on a CPU)",
            )

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> RunOptions:
        vals = {f.name: getattr(args, f.name) for f in fields(cls) if hasattr(args, f.name)}
        return cls(**vals).validate()
