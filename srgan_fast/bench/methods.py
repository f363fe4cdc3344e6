"""What `srgan-fast bench` times: one (name, dtype, build) per method (methods_for), and how
a method's output is checked against the fp32 eager reference (psnr01)."""

from __future__ import annotations

import copy
import math
import tempfile
from pathlib import Path

import torch

from ..backends import backend_names, get_backend
from ..engine import Engine
from ..families.srresnet.arch import Generator, output_to_unit
from ..plan import compile_plan

BASELINE = ("eager NCHW", "fp32")  # the row every "vs eager fp32" ratio divides by


def psnr01(a: torch.Tensor, b: torch.Tensor) -> float:
    mse = torch.mean((a.float().cpu() - b.float().cpu()) ** 2).item()
    return math.inf if mse == 0 else 10 * math.log10(1.0 / mse)


def methods_for(
    device: torch.device,
    dtypes: list[str],
    model: Generator,
    which: list[str] | None,
    max_autotune: bool = False,
    memory_budget: int | None = None,
):
    """(name, dtype, build) where build() returns fn(x_nchw_float01) -> output (any layout)."""
    out = []

    def eager(dtype, cl):
        def build():
            m = load_like(model).to(device, dtype)
            if cl:
                m = m.to(memory_format=torch.channels_last)

            @torch.inference_mode()
            def fn(x):
                x = x.to(dtype)
                if cl:
                    x = x.contiguous(memory_format=torch.channels_last)
                return output_to_unit(m, m(x).float())

            return fn

        return build

    def compiled(dtype, mode):
        def build():
            m = load_like(model).to(device, dtype).to(memory_format=torch.channels_last)
            cm = torch.compile(m, mode=mode)

            @torch.inference_mode()
            def fn(x):
                return output_to_unit(m, cm(x.to(dtype).contiguous(memory_format=torch.channels_last)).float())

            return fn

        return build

    def ort(provider):
        def build():
            from ..weights.onnx import export_onnx, onnx_session

            # the same export as `srgan-fast export` (output already mapped to [0, 1])
            f = export_onnx(model, Path(tempfile.mkdtemp()) / "g.onnx")
            sess = onnx_session(f, threads=torch.get_num_threads(), provider=provider)
            name = sess.get_inputs()[0].name

            def fn(x):
                return torch.from_numpy(sess.run(None, {name: x.cpu().numpy()})[0])

            return fn

        return build

    def engine(backend, dtype, graph=False):
        def build():
            e = Engine(
                compile_plan(model), device=device, dtype=dtype, backend=backend, cuda_graph=graph,
                memory_budget=memory_budget,
            )  # fmt: skip

            def fn(x):  # the engine's own layout: NHWC in, NHWC out
                return e.upscale(x)

            fn.nhwc = True
            fn.engine = e  # "auto" chooses at its first call: _prepare reads e.backend after it
            return fn

        return build

    def engine_rows(dtype):
        """One row per registered backend that benches on this device (backends.Backend)."""
        rows = []
        for name in backend_names():
            b = get_backend(name)
            if device.type in b.bench_devices:
                rows.append((f"engine {name}", dtype, engine(name, dtype)))
                if device.type == "cuda" and b.cuda_graph:
                    rows.append((f"engine {name} + CUDA graph", dtype, engine(name, dtype, graph=True)))
        return rows

    f32 = torch.float32
    lo = {"fp16": torch.float16, "bf16": torch.bfloat16, "fp32": f32}
    out.append(("eager NCHW", "fp32", eager(f32, False)))
    out.append(("eager channels_last", "fp32", eager(f32, True)))
    if device.type == "cpu":
        out.append(("torch.compile", "fp32", compiled(f32, None)))
        out.append(("ONNX Runtime (CPU EP)", "fp32", ort("CPUExecutionProvider")))
        out += engine_rows("fp32")
        # what a user gets by default: the backend the CPU calibration picks (srgan_fast/backends/auto.py)
        out.append(("engine auto", "fp32", engine("auto", "fp32")))
    else:
        for d in dtypes:
            if d == "fp32":
                continue
            out.append(("eager channels_last", d, eager(lo[d], True)))
            out.append(("torch.compile", d, compiled(lo[d], None)))
            out.append(("torch.compile reduce-overhead", d, compiled(lo[d], "reduce-overhead")))
            if max_autotune:
                out.append(("torch.compile max-autotune", d, compiled(lo[d], "max-autotune-no-cudagraphs")))
            out += engine_rows(d)
    if which:
        out = [m for m in out if any(w.lower() in m[0].lower() for w in which)]
    return out


def load_like(model: Generator) -> Generator:
    """A fresh copy of the model (any family), in eval mode."""
    return copy.deepcopy(model).eval()
