"""Export a model to ONNX for other runtimes (ONNX Runtime, TensorRT, vs-mlrt), checked after export.

    srgan-fast export srresnet_x4 srresnet_x4.onnx            # fp32, opset 17
    srgan-fast export my_compact.safetensors out.onnx --fp16

The graph takes `input` (N, 3, H, W) float RGB in [0, 1] and returns `output` (N, 3, sH, sW)
float in [0, 1] (the model's output mapped and clamped, as the engine returns it), with batch,
height and width dynamic. `--fp16` stores weights and I/O in float16. Every export is then run
in ONNX Runtime (CPU) on a small random input and compared with the engine's torch backend in
fp32; the maximum absolute difference is printed and an export beyond the tolerance is refused.
Uses the TorchScript exporter (`torch.onnx.export(..., dynamo=False)`), which handles the
dynamic shapes of both model families.
"""

from __future__ import annotations

import copy
import os
from pathlib import Path

import torch
from torch import nn

from ..families.srresnet.arch import output_to_unit

__all__ = ["UnitRangeModel", "export_onnx", "check_onnx", "onnx_session", "export", "DEFAULT_OPSET", "TOLERANCE"]

DEFAULT_OPSET = 17
# max abs difference in [0, 1] units between ONNX Runtime and the engine: fp32 rounding of a
# different summation order; fp16 storage costs about 1e-3 per layer in the worst pixel
TOLERANCE = {"fp32": 1e-4, "fp16": 1e-2}


class UnitRangeModel(nn.Module):
    """A model whose raw output is mapped to [0, 1] and clamped (`output_to_unit`), so the
    exported graph's I/O convention is the one other runtimes expect."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return output_to_unit(self.model, self.model(x))


def _load(model) -> nn.Module:
    if isinstance(model, (str, os.PathLike)):
        from . import load_generator

        return load_generator(model)
    return model


def export_onnx(model, path: str | os.PathLike, fp16: bool = False, opset: int = DEFAULT_OPSET) -> Path:
    """Write `model` (a bundled name, .safetensors path or module) to `path` as ONNX with dynamic
    batch/height/width and [0, 1] float I/O. Returns the path. The caller's module is not changed."""
    if opset < 11:
        raise ValueError(f"opset must be at least 11 (PixelShuffle as DepthToSpace), got {opset}")
    dtype = torch.float16 if fp16 else torch.float32
    path = Path(path)
    if not path.parent.is_dir():  # no folders are made here (export() makes at most the last one)
        raise ValueError(f"{path.parent}: no such folder; create it first")
    from ..io.images import check_target

    check_target(path)
    m = UnitRangeModel(copy.deepcopy(_load(model)).float().eval()).to(dtype)
    dims = {0: "batch", 2: "height", 3: "width"}
    with torch.no_grad():
        try:
            torch.onnx.export(
                m, (torch.rand(1, 3, 16, 16, dtype=dtype),), str(path), input_names=["input"],
                output_names=["output"], dynamic_axes={"input": dims, "output": dims}, opset_version=opset,
                dynamo=False,
            )  # fmt: skip
        except RuntimeError as e:
            if "opset" not in str(e).lower():
                raise
            raise ValueError(f"--opset {opset}: this torch cannot export it ({str(e).splitlines()[0]})") from None
    return path


def onnx_session(path: str | os.PathLike, threads: int | None = None, provider: str = "CPUExecutionProvider"):
    """An ONNX Runtime session for `path` (onnxruntime is an optional dependency)."""
    try:
        import onnxruntime as ort
    except ImportError:
        raise RuntimeError("checking an ONNX export needs onnxruntime: pip install onnxruntime") from None
    so = ort.SessionOptions()
    so.log_severity_level = 3  # no warnings about fp16 casts on the CPU
    if threads:
        so.intra_op_num_threads = threads
    return ort.InferenceSession(str(path), so, providers=[provider])


def check_onnx(model, path: str | os.PathLike, size: tuple[int, int, int] = (2, 19, 24), seed: int = 0) -> float:
    """Max abs difference (in [0, 1] units) between the ONNX file run in ONNX Runtime and the
    engine's torch backend in fp32, on a random batch of `size` = (N, H, W), a shape other than
    the export's so the dynamic axes are exercised."""
    from ..engine import Engine

    model = _load(model)
    n, h, w = size
    x = torch.rand(n, 3, h, w, generator=torch.Generator().manual_seed(seed))
    sess = onnx_session(path)
    inp = sess.get_inputs()[0]
    feed = x.numpy().astype("float16" if "float16" in inp.type else "float32")
    y = torch.from_numpy(sess.run(None, {inp.name: feed})[0]).float()
    want = torch.from_numpy(Engine(model, backend="torch").upscale(x.permute(0, 2, 3, 1).numpy())).permute(0, 3, 1, 2)
    if y.shape != want.shape:
        raise RuntimeError(f"ONNX output shape {tuple(y.shape)} != engine output {tuple(want.shape)}")
    return (y - want).abs().max().item()


def export(
    model, out: str | os.PathLike, fp16: bool = False, opset: int = DEFAULT_OPSET, tolerance: float | None = None
) -> tuple[Path, float]:
    """Export and check (see the module docstring); returns (path, max abs difference). Raises
    ValueError (and removes the file) when the difference exceeds `tolerance`."""
    if tolerance is not None and not tolerance >= 0:
        raise ValueError(f"--tolerance must be 0 or more, got {tolerance}")
    out = Path(out)
    if out.is_dir():
        raise ValueError(f"{out}: is a folder; give the .onnx file to write")
    from ..io.paths import check_outputs

    sources = []
    if isinstance(model, (str, os.PathLike)):
        from . import resolve

        sources.append(resolve(model))
    # before any work: `export X.safetensors X.safetensors` must not replace the weights with
    # the graph, nor `export m /dev/full` the device node with a file; only the last folder of
    # `out` is made, where its parent exists
    check_outputs(sources, [out])
    model = _load(model)
    from ..io.paths import atomic_output

    # exported beside `out`, checked, fsync'ed and renamed only then (io.paths.atomic_output): a
    # failed export, a full disk or Ctrl-C never removes or truncates a good file
    with atomic_output(out) as tmp:
        export_onnx(model, tmp, fp16=fp16, opset=opset)
        diff = check_onnx(model, tmp)
        tol = TOLERANCE["fp16" if fp16 else "fp32"] if tolerance is None else tolerance
        if not diff <= tol:  # NaN fails too
            raise ValueError(
                f"{out}: ONNX Runtime output differs from the engine by {diff:.3g} (max abs, [0, 1] units) > "
                f"tolerance {tol:g}; nothing written (pass a larger --tolerance if that difference is acceptable)"
            )
    return out, diff
