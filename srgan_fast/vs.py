"""VapourSynth filter: the engine as a Python function on clips, in the form vsrealesrgan and vs-mlrt use.

    import vapoursynth as vs
    from srgan_fast.vs import upscale
    clip = upscale(clip, model="srresnet_x4", backend="auto", tile=None, batch=4)

Formats (constant format and size only; anything else raises vs.Error with one line):
  RGBS / RGBH       planes straight into the engine (float in [0, 1]; values outside are clamped, as
                    Engine.upscale does); the result is RGBS / RGBH, every frame equal to Engine.upscale
                    of the same frames grouped `batch` at a time (RGBH: the engine's float32 output
                    rounded to float16).
  RGB24/30/48, YUV  converted to RGBS with core.resize (Point for RGB, Bicubic for YUV's chroma), upscaled,
  (any subsampling, and converted back to the input's format at the output size: YUV420P10 in ->
   integer or float) YUV420P10 out. The conversion reads each frame's _Matrix, _Range and _ChromaLocation;
                    an untagged matrix (absent or 2) is taken as BT.601 (ST 170M) below 720 lines and
                    BT.709 from 720 up, as `srgan-fast video` does (docs/video.md), and the output is
                    tagged with it. Absent _Range: limited for YUV, full for RGB. The output's _Matrix,
                    _Range and _ChromaLocation (left where absent) are what the conversion used, so
                    both directions use the same matrix and range.
  GRAY, variable    refused (vs.Error).

Frame props: each output frame carries its source frame's props (_Matrix, _Transfer, _Primaries,
_Range, _SARNum/_SARDen, _Duration*, _FieldBased, user props). _SARNum/_SARDen are kept as they are:
the filter scales both axes by the same integer, so the pixel aspect ratio does not change.

Batching: output frame n belongs to batch n // batch; the first request for any frame of a batch
runs the engine once on all of its source frames (the last batch may be shorter) and the results
are kept until each frame of the batch has been served (seeking may leave a batch half served: a
few such batches are kept, then the oldest is dropped and would be recomputed). One engine per
call of upscale(); its calls are serialised by a lock, so the device sees one stream of batches
while VapourSynth requests frames from several threads. Frames come as CPU memory (VapourSynth
has no GPU frames): with device="cuda" each batch is copied up and back once.
"""

from __future__ import annotations

import os
import threading
from collections import OrderedDict

import numpy as np

try:
    import vapoursynth as vs
except ImportError as e:  # the filter is nothing without it: say how to get it
    raise ImportError(
        "srgan_fast.vs needs VapourSynth (pip install vapoursynth; R81 wheels are cp312-abi3, so Python >= 3.12: "
        "`make vs-deps` sets up .venv-vs)"
    ) from e

from .engine import Engine

__all__ = ["upscale"]

UNSPECIFIED = 2  # _Matrix / _Transfer / _Primaries: "unspecified" (ITU-T H.273, as in FFmpeg)


def default_matrix(height: int) -> int:
    """The matrix an untagged YUV clip is read with: the players' convention, as io/video/color.py."""
    return vs.MATRIX_ST170_M if height < 720 else vs.MATRIX_BT709


def _props_range(props, default: int) -> int:
    """_Range (R81: 0 limited, 1 full), else the deprecated _ColorRange (0 full, 1 limited)."""
    if "_Range" in props:
        return int(props["_Range"])
    if "_ColorRange" in props:
        return vs.RANGE_LIMITED if int(props["_ColorRange"]) == 1 else vs.RANGE_FULL
    return default


def _check_clip(clip) -> None:
    if not isinstance(clip, vs.VideoNode):
        raise vs.Error(f"srgan_fast.vs.upscale: clip must be a vapoursynth.VideoNode, got {type(clip).__name__}")
    fmt = clip.format
    if fmt is None or fmt.id == 0 or fmt.color_family == vs.UNDEFINED:
        raise vs.Error("srgan_fast.vs.upscale: variable-format clips are not supported (make the format constant)")
    if clip.width == 0 or clip.height == 0:
        raise vs.Error("srgan_fast.vs.upscale: variable-size clips are not supported (make the size constant)")
    if fmt.color_family not in (vs.RGB, vs.YUV):
        raise vs.Error(
            f"srgan_fast.vs.upscale: {fmt.name} is not supported: pass RGBS, RGBH, integer RGB or YUV "
            "(e.g. core.resize.Point(clip, format=vs.RGBS))"
        )


class _Batcher:
    """ModifyFrame selector: f[0] is a frame of the output template, f[1 + k] is source frame
    (n // B) * B + k (clips padded to whole batches). Runs the engine once per batch."""

    def __init__(self, engine: Engine, batch: int, num_frames: int, keep: int, clamp: bool):
        self.engine, self.batch, self.num_frames, self.keep, self.clamp = engine, batch, num_frames, keep, clamp
        self.lock = threading.Lock()
        self.done: OrderedDict[int, list] = OrderedDict()  # batch index -> [outputs, frames served]

    def __call__(self, n: int, f: list) -> vs.VideoFrame:
        b, k = divmod(n, self.batch)
        real = min(self.batch, self.num_frames - b * self.batch)  # the last batch may be shorter
        with self.lock:
            entry = self.done.get(b)
            if entry is None:
                x = np.stack([_read_rgb(fr) for fr in f[1 : 1 + real]])
                if self.clamp:  # YUV -> RGB overshoots: clamped here as the engine would, without its warning
                    np.clip(x, 0.0, 1.0, out=x)
                entry = self.done[b] = [self.engine.upscale(x), 0]
                while len(self.done) > self.keep:  # half-served batches after seeks
                    self.done.popitem(last=False)
            y = entry[0][k]
            entry[1] += 1
            if entry[1] >= real:
                self.done.pop(b, None)
        out = f[0].copy()
        for p in range(3):
            np.copyto(np.asarray(out[p]), y[..., p], casting="same_kind")  # RGBH: float32 -> float16
        out.props.clear()
        out.props.update(f[1 + k].props)
        return out


def _read_rgb(frame: vs.VideoFrame) -> np.ndarray:
    """An RGBS/RGBH frame's planes as one HxWx3 array (a copy: the frame's rows are padded)."""
    return np.stack([np.asarray(frame[p]) for p in range(3)], axis=-1)


def _run_engine(rgb: vs.VideoNode, engine: Engine, batch: int, clamp: bool = False) -> vs.VideoNode:
    """RGBS/RGBH clip -> the same format at the engine's scale, batch frames per engine call."""
    n, s = rgb.num_frames, engine.plan.scale
    batch = min(batch, n)
    pad = (-n) % batch
    padded = rgb + rgb[-1] * pad if pad else rgb
    # shifted[k][j] = padded[(j // batch) * batch + k]: every frame of j's batch, for ModifyFrame
    if batch == 1:
        shifted = [rgb]
    else:  # (SelectEvery refuses a cycle of 1)
        shifted = [padded.std.SelectEvery(cycle=batch, offsets=[k] * batch) for k in range(batch)]
    template = rgb.std.BlankClip(width=rgb.width * s, height=rgb.height * s, keep=True)
    keep = max(2, -(-vs.core.num_threads // batch) + 1)
    return template.std.ModifyFrame(clips=[template, *shifted], selector=_Batcher(engine, batch, n, keep, clamp))


def _to_rgbs(clip: vs.VideoNode) -> vs.VideoNode:
    """Integer RGB / YUV -> RGBS, each frame converted with its own tags (matrix filled in where untagged)."""
    if clip.format.color_family == vs.RGB:
        return clip.resize.Point(format=vs.RGBS)
    tagged = clip.std.SetFrameProps(_Matrix=default_matrix(clip.height))

    def fill_matrix(n, f):
        return tagged if int(f.props.get("_Matrix", UNSPECIFIED)) == UNSPECIFIED else clip

    return clip.std.FrameEval(fill_matrix, prop_src=[clip], clip_src=[clip, tagged]).resize.Bicubic(format=vs.RGBS)


def _from_rgbs(up: vs.VideoNode, src: vs.VideoNode) -> vs.VideoNode:
    """The upscaled RGBS clip -> src's format, with the matrix, range and chroma siting each source
    frame was read with (resize needs them as arguments: its output tags are not read from props)."""
    fmt, yuv = src.format, src.format.color_family == vs.YUV
    out_template = up.std.BlankClip(format=fmt.id, keep=True)
    converted: dict[tuple, vs.VideoNode] = {}

    def back(n, f):
        p = f.props
        if yuv:
            m = int(p.get("_Matrix", UNSPECIFIED))
            key = (
                default_matrix(src.height) if m == UNSPECIFIED else m,
                _props_range(p, vs.RANGE_LIMITED),
                int(p.get("_ChromaLocation", vs.CHROMA_LEFT)),
            )
        else:
            key = (vs.MATRIX_RGB, _props_range(p, vs.RANGE_FULL), None)
        clip = converted.get(key)
        if clip is None:
            if yuv:
                clip = up.resize.Bicubic(format=fmt.id, matrix=key[0], range=key[1], chromaloc=key[2])
            else:
                clip = up.resize.Point(format=fmt.id, range=key[1])
            converted[key] = clip
        return clip

    return out_template.std.FrameEval(back, prop_src=[src], clip_src=[up])


def upscale(
    clip: vs.VideoNode,
    model: str | os.PathLike | Engine = "srresnet_x4",
    backend: str = "auto",
    tile: int | None = None,
    batch: int = 1,
    device: str | None = None,
    dtype: str = "fp32",
    memory_budget: int | str | None = None,
) -> vs.VideoNode:
    """Upscale a clip with an SRGAN-family model (see the module docstring for formats and props).

    clip: constant-format RGBS/RGBH (straight into the engine), integer RGB or YUV (converted with
        core.resize and back to the same format).
    model: a bundled name ("srresnet_x4", "srgan_x4", ...), a .safetensors path, or an Engine
        (then backend/tile/device/dtype/memory_budget must be left at their defaults).
    backend: Engine's backend ("auto", "torch", "native", "triton", "onnxruntime", ...).
    tile: LR tile side (None: whole frames, unless memory_budget forces tiles).
    batch: frames per engine call (>= 1).
    device: "cpu", "cuda", "cuda:N"; None: "cuda" when torch sees a GPU, else "cpu".
    dtype: "fp32", "fp16", "bf16" (the engine's compute type; output is the clip's format).
    """
    _check_clip(clip)
    if isinstance(batch, bool) or not isinstance(batch, int) or batch < 1:
        raise ValueError(f"srgan_fast.vs.upscale: batch must be an integer >= 1, got {batch!r}")
    if tile is not None and (isinstance(tile, bool) or not isinstance(tile, int) or tile < 1):
        raise ValueError(f"srgan_fast.vs.upscale: tile must be None or an integer >= 1, got {tile!r}")
    if isinstance(model, Engine):
        if (backend, tile, device, dtype, memory_budget) != ("auto", None, None, "fp32", None):
            raise ValueError("srgan_fast.vs.upscale: with an Engine as model, set backend/tile/device/dtype on it")
        engine = model
    else:
        if device is None:
            import torch

            device = "cuda" if torch.cuda.is_available() else "cpu"
        engine = Engine(model, device=device, dtype=dtype, backend=backend, tile=tile, memory_budget=memory_budget)

    fmt = clip.format
    if fmt.id in (vs.RGBS, vs.RGBH):
        return _run_engine(clip, engine, batch)
    return _from_rgbs(_run_engine(_to_rgbs(clip), engine, batch, clamp=True), clip)
