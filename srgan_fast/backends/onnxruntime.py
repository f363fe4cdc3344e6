"""The "onnxruntime" and "onnxruntime_model" backends: ONNX Runtime's CPU provider on an ONNX graph.

* onnxruntime: the plan itself, not the plain model: the torch backend's own ops (BN folded,
  the sub-pixel tail, any family's plan, wide buffers written functionally) traced once by the
  TorchScript exporter with batch, height and width dynamic, so its fp32 output matches the torch
  backend's to float rounding (max abs diff ~1e-6 in [0, 1] units) and tiles like it.
* onnxruntime_model: the plan's plain model (`plan.source`), exported as `srgan-fast export`
  does; ONNX Runtime folds BN and fuses Conv+activation itself, and for some families its graph
  of the plain model runs faster than the plan's (measured: MSRResNet, RRDBNet on the 2-core
  dev VM). Not for plans a transform changed (they have no plain model).
`backend="auto"` on a CPU times these against torch and keeps the fastest (srgan_fast/calibrate.py).

I/O is handled as the torch backend does: uint8 input is divided by 255 in fp32 before the
graph; the graph returns float in [0, 1]; uint8 output is `reference.to_uint8` (half up) of that.
The graph has a second output, an fp32 sum (of the tail's input; of the model's raw output), so
NaN/Inf is caught before clamping and rounding could hide it.

Export costs about a second for srresnet_x4 on a quiet 2-core machine (10 s on a loaded one);
the serialized graph is kept in the cache folder (`<cache>/onnx/`, beside the calibration's
choices; the newest 8) and in memory, so a model is exported once per machine, not once per
process. A cached graph is trusted only after a check: it carries, in the ONNX model's
metadata_props, the digest of what it was made from (the plan's weights and structure, which
graph, the opset and the torch / srgan_fast versions) and the sha256 of the graph itself; it is
read only if it is a regular file of a size the plan bounds. A file that fails any of these (a
graph another model left, a damaged or truncated file, a FIFO, a link to /dev/zero) is ignored
with one line and exported again. fp32 on CPU only: ONNX Runtime's CPU provider has no
fp16/bf16 convolutions worth the name.
"""

from __future__ import annotations

import copy
import hashlib
import io
import os
import threading
import warnings
from dataclasses import fields, replace

import torch
import torch.nn.functional as F

from ..families.srresnet.arch import output_to_unit
from ..plan import Plan
from ..reference import to_uint8
from .aten import TorchRunner
from .base import BackendUnavailable, Runner
from .registry import Backend

__all__ = [
    "OrtRunner",
    "OrtModelRunner",
    "ort_importable",
    "plan_key",
    "export_plan_onnx",
    "export_model_onnx",
    "OPSET",
]

OPSET = 17
_INSTALL = "backend 'onnxruntime' needs ONNX Runtime: pip install onnxruntime (or 'srgan-fast[bench]')"
_EXPORTS: dict[str, bytes] = {}  # key -> serialized ONNX graph (this process; sessions hold their own copy)
_EXPORTS_MAX = 2
_DISK_MAX = 8  # graphs kept in the cache folder
_LOCK = threading.Lock()


def _import_problem() -> str | None:
    """None when onnxruntime imports, else what to do about it."""
    try:
        import onnxruntime  # noqa: F401
    except ImportError:
        return _INSTALL
    except Exception as e:  # a broken install (missing shared library, ...): say which, do not hide it
        return f"backend 'onnxruntime': onnxruntime is installed but fails to import ({type(e).__name__}: {e})"
    return None


def ort_importable() -> bool:
    return _import_problem() is None


def _require_ort():
    why = _import_problem()
    if why is not None:
        raise BackendUnavailable(why)
    import onnxruntime as ort

    return ort


def plan_key(plan: Plan) -> str:
    """sha256 of everything the exported graph depends on: every op's fields (tensors by their
    bytes), the buffers, and the torch version that traces it."""
    h = hashlib.sha256(f"torch {torch.__version__} opset {OPSET}".encode())
    h.update(repr(sorted(plan.buffers.items())).encode())

    def feed(v):
        if isinstance(v, torch.Tensor):
            t = v.detach().to("cpu", torch.float32).contiguous()
            h.update(repr(tuple(t.shape)).encode())
            h.update(t.numpy().tobytes())
        elif isinstance(v, dict):
            for k in sorted(v):
                h.update(k.encode())
                feed(v[k])
        else:
            h.update(repr(v).encode())

    for op in plan.ops:
        for f in fields(op):
            h.update(f.name.encode())
            feed(getattr(op, f.name))
    return h.hexdigest()


class _Sums:
    """Stands in for a TorchRunner's FiniteFlag while tracing: records the fp32 sum of each
    checked tensor, which becomes the graph's second output."""

    def __init__(self):
        self.sums: list[torch.Tensor] = []

    def update(self, x: torch.Tensor):
        self.sums.append(torch.sum(x, dtype=torch.float32))

    def reset(self):
        self.sums.clear()


class _ExportRunner(TorchRunner):
    """The torch runner restricted to plain aten ops, which the ONNX exporter knows (a fused
    oneDNN fast path in TorchRunner, if it has one, is switched off by this flag), with a PReLU
    whose slope is one number for every channel (SRGAN's nn.PReLU(), MSRResNet's LeakyReLU)
    written as LeakyRelu: the same values, and ONNX Runtime fuses Conv+LeakyRelu (not PRelu)."""

    onednn_fusion = False

    def place(self, op, base, y, channels, dim):
        """A slice of a wide buffer (RRDBNet's dense blocks), written functionally: the exporter
        drops in-place writes into views, so the buffer is rebuilt by padding and concatenation."""
        c = y.shape[dim]
        if base is None:  # the op that starts the value writes its first channels; the rest is zero
            pad = [0, 0] * (y.dim() - 1 - dim) + [op.dst_off, channels - op.dst_off - c]
            return F.pad(y, pad)
        parts = [base.narrow(dim, 0, op.dst_off), y]
        if op.dst_off + c < channels:
            parts.append(base.narrow(dim, op.dst_off + c, channels - op.dst_off - c))
        return torch.cat(parts, dim)

    def conv2d_fused(self, op, weight, src, skip, out_u8):
        a = op.prelu
        if a is None or skip is not None or op.out_map or not bool((a == a.flatten()[0]).all()):
            return super().conv2d_fused(op, weight, src, skip, out_u8)
        # conv (+ shuffle) then the activation: TorchRunner's order when there is no skip/out_map
        y = super().conv2d_fused(replace(op, prelu=None), weight, src, None, out_u8)
        return F.leaky_relu(y, float(a.flatten()[0]))


class _Traced(torch.nn.Module):
    """NHWC float [0, 1] -> (NHWC float [0, 1], sum of the tail's input): the torch runner."""

    def __init__(self, plan: Plan):
        super().__init__()
        self.runner = _ExportRunner(plan, torch.device("cpu"), torch.float32)
        self.runner.finite = _Sums()

    def forward(self, x):
        sums = self.runner.finite
        sums.reset()
        y = self.runner(x, False)
        total = sums.sums[0]
        for s in sums.sums[1:]:
            total = total + s
        return y, total


def export_plan_onnx(plan: Plan) -> bytes:
    """The plan as a serialized ONNX graph (input `x`: N,H,W,3 float; outputs `y`: N,sH,sW,3
    float in [0, 1] and `check`: a scalar that is finite iff the tail's input was), cached in
    memory and on disk by `plan_key`."""
    tensors = [v for op in plan.ops for f in fields(op) for v in _tensors(getattr(op, f.name))]
    return _exported(
        "plan " + plan_key(plan),
        lambda: _Traced(plan.to(device="cpu", dtype=torch.float32)).eval(),
        _size_bound(tensors),
    )


def _tensors(v):
    if isinstance(v, torch.Tensor):
        yield v
    elif isinstance(v, dict):
        for x in v.values():
            yield from _tensors(x)


def _size_bound(tensors) -> int:
    """The most bytes a cached graph of these weights can hold: each in fp32, twice over (the
    exporter may keep a weight in two forms), plus 16 MiB for the graph itself."""
    return 2 * 4 * sum(t.numel() for t in tensors) + (16 << 20)


def _disk_dir():
    from .auto import cache_path

    return cache_path().parent / "onnx"


# ---- the graph cache on disk: what each file was made from is in it, and checked on load

_CACHE_FORMAT = "srgan_fast onnx graph 2"  # part of every digest: files of another format are not looked up
_MADE_FROM = "srgan_fast.made_from"  # metadata_props key: the digest of what the graph was made from
_GRAPH_SHA = "srgan_fast.graph_sha256"  # metadata_props key: sha256 of the graph without these two entries
_METADATA_PROPS = 14  # ModelProto's field number of metadata_props (onnx.proto)


def made_from(key: str) -> str:
    """The digest that identifies a cached graph: sha256 of `key` (the plan's weights and
    structure, which graph, the opset and torch version: `plan_key`), the cache format and the
    srgan_fast version (whose exporter code made it)."""
    from .. import __version__

    return hashlib.sha256(f"{_CACHE_FORMAT}\nsrgan_fast {__version__}\n{key}".encode()).hexdigest()


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        b, n = n & 0x7F, n >> 7
        out.append(b | (0x80 if n else 0))
        if not n:
            return bytes(out)


def _read_varint(buf: bytes, i: int) -> tuple[int, int]:
    n = shift = 0
    while True:
        if i >= len(buf) or shift > 63:
            raise ValueError("truncated")
        b = buf[i]
        n |= (b & 0x7F) << shift
        i, shift = i + 1, shift + 7
        if not b & 0x80:
            return n, i


def _top_fields(buf: bytes):
    """(field number, start, end, payload span or None) of each top-level field of a serialized
    protobuf message; ValueError when the bytes are not one."""
    i = 0
    while i < len(buf):
        start = i
        tag, i = _read_varint(buf, i)
        number, wire = tag >> 3, tag & 7
        span = None
        if wire == 0:
            _, i = _read_varint(buf, i)
        elif wire == 1:
            i += 8
        elif wire == 5:
            i += 4
        elif wire == 2:
            n, i = _read_varint(buf, i)
            span, i = (i, i + n), i + n
        else:
            raise ValueError(f"wire type {wire}")
        if number == 0 or i > len(buf):
            raise ValueError("truncated")
        yield number, start, i, span


def _entry(key: str, value: str) -> bytes:
    """One metadata_props entry (a StringStringEntryProto) as a top-level ModelProto field."""
    k, v = key.encode(), value.encode()
    body = b"\x0a" + _varint(len(k)) + k + b"\x12" + _varint(len(v)) + v
    return _varint(_METADATA_PROPS << 3 | 2) + _varint(len(body)) + body


def _signed(blob: bytes, digest: str) -> bytes:
    """`blob` with the digest of what it was made from and its own sha256 in its metadata_props
    (appended fields: protobuf merges them, ONNX Runtime lists them in custom_metadata_map)."""
    return blob + _entry(_MADE_FROM, digest) + _entry(_GRAPH_SHA, hashlib.sha256(blob).hexdigest())


def _unsigned(raw: bytes) -> tuple[bytes, dict[str, str]]:
    """(the graph without our metadata entries, our entries); ValueError if `raw` is not a
    protobuf message."""
    kept, ours = [], {}
    for number, start, end, span in _top_fields(raw):
        if number == _METADATA_PROPS and span is not None:
            body = raw[span[0] : span[1]]
            entry = {n: body[sp[0] : sp[1]] for n, _, _, sp in _top_fields(body) if n in (1, 2) and sp is not None}
            key = entry.get(1, b"").decode("utf-8", "replace")
            if key in (_MADE_FROM, _GRAPH_SHA):
                ours[key] = entry.get(2, b"").decode("utf-8", "replace")
                continue
        kept.append(raw[start:end])
    return b"".join(kept), ours


def _check_cached(raw: bytes, digest: str) -> str | None:
    """None when `raw` is the graph `digest` names, intact; else why it is not."""
    try:
        graph, ours = _unsigned(raw)
    except ValueError:
        return "is not an ONNX graph"
    if _MADE_FROM not in ours:
        return "says nothing of what it was made from (not written by this srgan_fast)"
    if ours[_MADE_FROM] != digest:
        return "was made from another model, or by another version (its digest differs)"
    if ours.get(_GRAPH_SHA) != hashlib.sha256(graph).hexdigest():
        return "is damaged (its content does not match its digest)"
    return None


def _read_cached(path, digest: str, limit: int) -> bytes | None:
    """The cached graph at `path` if it is a regular file of at most `limit` bytes that
    `_check_cached` accepts; None otherwise (said in one line, unless there is no file)."""
    from ..io.paths import NotARegularFile, read_regular_file

    try:
        raw = read_regular_file(path, limit)
    except FileNotFoundError:
        return None  # not exported on this machine yet: nothing to say
    except NotARegularFile as e:  # a FIFO would hang a plain read, /dev/zero would fill memory
        why = str(e).removeprefix(f"{path}: ")
    except OSError as e:
        from ..io.paths import cache_folder_problem

        folder = cache_folder_problem(path)  # a file where the cache folder should be: said once
        if folder is not None:
            if folder:
                warnings.warn(folder, RuntimeWarning, stacklevel=5)
            return None
        why = f"cannot be read ({e.strerror or e})"
    else:
        why = _check_cached(raw, digest)
        if why is None:
            try:
                os.utime(path)  # the newest are kept
            except OSError:
                pass
            return raw
    warnings.warn(f"ONNX graph cache {path}: {why}; ignored: exporting again (and replacing it)", RuntimeWarning,
                  stacklevel=5)  # fmt: skip
    return None


def _store(path, blob: bytes) -> None:
    """Write `blob` to `path` whole (io.paths.atomic_output) and keep the newest _DISK_MAX graphs.
    A cache that cannot be written is not an error: the next process exports again."""
    from ..io.paths import atomic_output

    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with atomic_output(path, follow_symlinks=False) as tmp:  # a cache: a planted link is replaced
            tmp.write_bytes(blob)
        old = sorted(path.parent.glob("*.onnx"), key=lambda q: q.stat().st_mtime)[:-_DISK_MAX]
        for q in old:
            q.unlink(missing_ok=True)
    except OSError:
        pass


def _exported(key: str, make, limit: int) -> bytes:
    """The serialized graph for `key`: from this process's memory, else from the cache folder
    (`<cache>/onnx/<digest>.onnx`, checked: `_read_cached`; a new process does not export
    again; the newest 8 kept), else exported now from `make()` and stored in both. One export
    at a time (a lock)."""
    with _LOCK:
        blob = _EXPORTS.get(key)
        if blob is not None:
            return blob
        digest = made_from(key)
        path = _disk_dir() / f"{digest[:32]}.onnx"
        blob = _read_cached(path, digest, limit)
        if blob is None:
            blob = _signed(_export(make()), digest)
            _store(path, blob)
        while len(_EXPORTS) >= _EXPORTS_MAX:
            _EXPORTS.pop(next(iter(_EXPORTS)))
        _EXPORTS[key] = blob
        return blob


class _TracedModel(torch.nn.Module):
    """NHWC float [0, 1] -> (NHWC float [0, 1], sum of the raw output): the plain model the plan
    was compiled from, as `srgan-fast export` exports it (output mapped to [0, 1] and clamped),
    with the raw output's sum as the non-finite check (NaN/Inf reach the output before the clamp)."""

    def __init__(self, model: torch.nn.Module):
        super().__init__()
        self.model = model

    def forward(self, x):
        raw = self.model(x.permute(0, 3, 1, 2))
        check = torch.sum(raw, dtype=torch.float32)
        return output_to_unit(self.model, raw).permute(0, 2, 3, 1), check


def _export(module: torch.nn.Module) -> bytes:
    dims = {0: "batch", 1: "height", 2: "width"}
    f = io.BytesIO()
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # TracerWarnings about Python ints from shapes (they are constants)
        torch.onnx.export(
            module, (torch.rand(1, 16, 16, 3),), f, input_names=["x"], output_names=["y", "check"],
            dynamic_axes={"x": dims, "y": dims}, opset_version=OPSET, dynamo=False,
        )  # fmt: skip
    return f.getvalue()


def export_model_onnx(plan: Plan) -> bytes:
    """The plan's plain model (`plan.source`) as a serialized ONNX graph with the same I/O as
    `export_plan_onnx`, cached in memory by `plan_key`. ONNX Runtime folds BN and fuses
    Conv+activation itself; for some families its graph of the plain model is the faster one
    (the calibration decides, srgan_fast/calibrate.py)."""
    if plan.source is None:
        raise BackendUnavailable(
            "backend 'onnxruntime_model' exports the plain model, and this plan has none (a transform changed "
            "its math, or it was given without it); use backend 'onnxruntime'"
        )
    return _exported(
        "model " + plan_key(plan),
        lambda: _TracedModel(copy.deepcopy(plan.source).to("cpu", torch.float32)).eval(),
        _size_bound([*plan.source.parameters(), *plan.source.buffers()]),
    )


def ort_threads() -> int:
    """Intra-op threads: the same count the torch backend uses (torch.get_num_threads(): one
    per physical core unless the caller set it), so both backends use the machine alike."""
    return max(1, torch.get_num_threads())


class OrtRunner(Runner):
    """The plan's ONNX graph in an ONNX Runtime CPU session (see the module docstring)."""

    name = "onnxruntime"
    # ORT's arena holds every intermediate of a call (memory patterns are off with dynamic
    # shapes) and its NCHWc reorders add copies: budgeted as 3x the plan's buffers
    slack = 3.0

    def __init__(self, plan: Plan, device: torch.device, dtype: torch.dtype):
        ort = _require_ort()
        if torch.device(device).type != "cpu":
            raise BackendUnavailable(f"backend {self.name!r} runs on the CPU; on CUDA use triton or torch")
        if dtype != torch.float32:
            raise BackendUnavailable(
                f"backend {self.name!r} runs fp32 only (got {dtype}); use dtype='fp32' or backend 'torch'"
            )
        super().__init__(plan, device, dtype)
        so = ort.SessionOptions()
        so.log_severity_level = 3
        so.intra_op_num_threads = ort_threads()
        # ORT's default: idle pool threads spin a while before sleeping. Measured both ways on the
        # 2-core dev VM (MSRResNet, 128x128, 8 interleaved rounds): spinning 486 ms, sleeping 638 ms
        # on a quiet machine; on a loaded one sleeping had come out 1.25x faster (compact)
        so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        try:
            self.session = ort.InferenceSession(self.export(plan), so, providers=["CPUExecutionProvider"])
        except BackendUnavailable:
            raise
        except Exception as e:  # an export the tracer refuses, a graph ORT cannot load: say so, never crash auto
            raise BackendUnavailable(f"backend {self.name!r} cannot run this plan ({type(e).__name__}: {e})") from e

    @staticmethod
    def export(plan: Plan) -> bytes:
        return export_plan_onnx(plan)

    def __call__(self, x: torch.Tensor, out_u8: bool) -> torch.Tensor:
        # as TorchRunner.enter: uint8 / 255 in fp32, float cast to fp32
        x = x.to(torch.float32) / 255.0 if x.dtype == torch.uint8 else x.to(torch.float32)
        y, check = self.session.run(None, {"x": x.cpu().contiguous().numpy()})
        self.finite.update(torch.from_numpy(check))
        y = torch.from_numpy(y)
        return to_uint8(y) if out_u8 else y


class OrtModelRunner(OrtRunner):
    """ONNX Runtime on the plan's plain model (`export_model_onnx`): the graph `srgan-fast export`
    writes, run with the engine's I/O, tiling and non-finite check."""

    name = "onnxruntime_model"

    @staticmethod
    def export(plan: Plan) -> bytes:
        return export_model_onnx(plan)


def _requires(device: torch.device) -> str | None:
    return _import_problem()


BACKEND = Backend(
    "onnxruntime",
    OrtRunner,
    "the fused plan exported to ONNX, run by ONNX Runtime's CPU provider (fp32; needs onnxruntime)",
    devices=("cpu",),
    auto_devices=("cpu",),
    priority=0,  # below torch: "auto" on a CPU picks between them by measuring (backends/auto.py)
    bench_devices=("cpu",),
    requires=_requires,
)
MODEL_BACKEND = Backend(
    "onnxruntime_model",
    OrtModelRunner,
    "the plain model exported as `srgan-fast export` does, run by ONNX Runtime's CPU provider (fp32; needs "
    "onnxruntime; not for plans a transform changed)",
    devices=("cpu",),
    auto_devices=("cpu",),
    priority=0,
    bench_devices=("cpu",),
    requires=_requires,
)
BACKENDS = (BACKEND, MODEL_BACKEND)
