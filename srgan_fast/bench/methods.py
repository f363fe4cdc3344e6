"""What `srgan-fast bench` times: one (name, dtype, build) per method (methods_for), and how
a method's output is checked against the fp32 eager reference (psnr01, accuracy).

On a CPU the rows include other runtimes on the same network, optional (`pip install
'srgan-fast[bench]'`): OpenVINO on the project's ONNX export (`OpenVINO f32`, and `OpenVINO
default`, whatever precision OpenVINO picks on this CPU: bf16 where the CPU has it), and ncnn
on the model converted once by pnnx, run in fp32. Without the package a row is skipped with a
one-line reason (MissingDependency, raised by its build)."""

from __future__ import annotations

import copy
import importlib
import math
import subprocess
import tempfile
import warnings
import weakref
from pathlib import Path

import numpy as np
import torch

from ..backends import backend_names, get_backend
from ..engine import Engine
from ..errors import MissingDependency
from ..families.srresnet.arch import Generator, output_to_unit
from ..plan import compile_plan

BASELINE = ("eager NCHW", "fp32")  # the row every "vs eager fp32" ratio divides by


# the packages of the optional rows: what `pip install 'srgan-fast[bench]'` adds
PEER_EXTRA = "pip install 'srgan-fast[bench]'"


def psnr01(a: torch.Tensor, b: torch.Tensor) -> float:
    mse = torch.mean((a.float().cpu() - b.float().cpu()) ** 2).item()
    return math.inf if mse == 0 else 10 * math.log10(1.0 / mse)


def accuracy(y: torch.Tensor, ref: torch.Tensor) -> dict:
    """A method's output against the fp32 reference (both NCHW in [0, 1]): PSNR (dB), the
    max abs difference, and the share of 8-bit values round(255 x) that differ. One image at
    a time, so a large batch costs one image's temporaries."""
    if tuple(y.shape) != tuple(ref.shape):
        raise RuntimeError(f"output shape {tuple(y.shape)} != the fp32 reference's {tuple(ref.shape)}")
    sq, worst, changed, count = 0.0, 0.0, 0, 0
    for a, b in zip(y, ref):
        a, b = a.float().cpu(), b.float().cpu()
        d = a - b
        sq += torch.sum(d.double() ** 2).item()
        worst = max(worst, d.abs().max().item())
        changed += torch.count_nonzero(torch.round(a.clamp(0, 1) * 255) != torch.round(b.clamp(0, 1) * 255)).item()
        count += d.numel()
    mse = sq / max(count, 1)
    return {
        "psnr_vs_fp32_db": math.inf if mse == 0 else 10 * math.log10(1.0 / mse),
        "max_abs_err_vs_fp32": worst,
        "u8_changed_share": changed / max(count, 1),
    }


def _optional(module: str, role: str = ""):
    """Import an optional runtime, or say in one line which package the row needs and how to
    get it (the bench prints it as the row's reason to skip)."""
    try:
        return importlib.import_module(module)
    except ImportError:
        raise MissingDependency(f"needs the package {module}{role}, not installed here: {PEER_EXTRA}") from None


# OpenVINO's element types (Type.get_type_name()) as the bench's dtype names
_OV_DTYPES = {"f32": "fp32", "bf16": "bf16", "f16": "fp16"}


def openvino_default_dtype() -> str:
    """The precision OpenVINO's CPU plugin runs fp32 models in by default on this machine
    (bf16 on CPUs with AVX-512 BF16 or AMX), or "default" when OpenVINO cannot say (absent)."""
    try:
        import openvino as ov

        t = ov.Core().get_property("CPU", "INFERENCE_PRECISION_HINT").get_type_name()
    except Exception:  # absent or no CPU plugin: the row's build reports why
        return "default"
    return _OV_DTYPES.get(t, t)


_OV_PROPERTIES = ("INFERENCE_PRECISION_HINT", "PERFORMANCE_HINT", "INFERENCE_NUM_THREADS", "NUM_STREAMS")


def _ov_value(v) -> str:
    """A compiled model's property as a short string: an element type by its name ("f32", "bf16")."""
    return v.get_type_name() if hasattr(v, "get_type_name") else str(v)


def openvino_fn(onnx_path, precision: str | None, threads: int):
    """fn(x NCHW float [0, 1]) -> NCHW output, by OpenVINO's CPU plugin on an ONNX file of the
    project's export. precision: INFERENCE_PRECISION_HINT ("f32"), or None for OpenVINO's
    default. The graph is reshaped to each input's static shape and compiled at the first call
    with that shape (the bench's untimed first call); fn.properties: what the compiled model
    reports for the row's settings."""
    ov = _optional("openvino")
    core = ov.Core()
    cfg = {"PERFORMANCE_HINT": "LATENCY", "INFERENCE_NUM_THREADS": int(threads)}
    if precision:
        cfg["INFERENCE_PRECISION_HINT"] = precision
    compiled: dict[tuple, tuple] = {}

    def fn(x):
        a = np.ascontiguousarray(x.detach().cpu().float().numpy())
        got = compiled.get(a.shape)
        if got is None:
            m = core.read_model(str(onnx_path))
            m.reshape(list(a.shape))
            cm = core.compile_model(m, "CPU", cfg)
            got = compiled[a.shape] = (cm, cm.create_infer_request())
            fn.properties = {k: _ov_value(cm.get_property(k)) for k in _OV_PROPERTIES}
        req = got[1]
        req.infer({0: a}, share_inputs=True)  # `a` is referenced here until infer returns
        return torch.from_numpy(np.array(req.get_output_tensor(0).data))  # a copy: OpenVINO reuses its buffer

    fn.properties = {}
    return fn


# pnnx's ncnn files per model and LR size: a model is converted once per run, whatever the batch
_NCNN_FILES: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def pnnx_to_ncnn(model: torch.nn.Module, channels: int, h: int, w: int) -> tuple[Path, Path]:
    """(param, bin) of `model` (output mapped to [0, 1] as the ONNX export's) converted by pnnx
    to ncnn in fp32: traced here, converted by pnnx's own binary in a child process, so that a
    conversion the kernel kills for its memory (pnnx can take tens of GB on big models) fails
    this row with a reason instead of killing the bench."""
    pnnx = _optional("pnnx", " (its converter to ncnn)")
    per_model = _NCNN_FILES.setdefault(model, {})
    key = (channels, h, w)
    if key not in per_model:
        from ..weights.onnx import UnitRangeModel

        tmp = tempfile.TemporaryDirectory(prefix="srgan_fast_pnnx_")
        d = Path(tmp.name)
        m = UnitRangeModel(load_like(model).float())
        with torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore")  # TracerWarnings: the shapes are the ones converted
            torch.jit.trace(m, torch.rand(1, channels, h, w)).save(str(d / "m.pt"))
        outs = {"ncnnparam": "m.ncnn.param", "ncnnbin": "m.ncnn.bin", "ncnnpy": "m_ncnn.py"}
        outs |= {"pnnxparam": "m.pnnx.param", "pnnxbin": "m.pnnx.bin", "pnnxpy": "m_pnnx.py", "pnnxonnx": "m.pnnx.onnx"}
        cmd = [pnnx.EXEC_PATH, str(d / "m.pt"), f"inputshape=[1,{channels},{h},{w}]f32", "device=cpu", "fp16=0"]
        cmd += [f"{k}={d / v}" for k, v in outs.items()]  # everything it writes stays in d
        r = subprocess.run(cmd, cwd=d, capture_output=True, text=True)
        param, bin_ = d / "m.ncnn.param", d / "m.ncnn.bin"
        if r.returncode != 0 or not (param.exists() and bin_.exists()):
            why = f"killed by signal {-r.returncode}" if r.returncode < 0 else f"exit code {r.returncode}"
            if r.returncode == -9:
                why += " (out of memory?)"
            last = (r.stderr.strip() or r.stdout.strip()).splitlines()[-1:] or [""]
            raise RuntimeError(f"pnnx could not convert the model ({why}) {last[0][:100]}".rstrip())
        per_model[key] = tmp  # the folder lives as long as the model
    d = Path(per_model[key].name)
    return d / "m.ncnn.param", d / "m.ncnn.bin"


# ncnn options of the fp32 row: no fp16 or bf16 storage, packing or arithmetic (ncnn's defaults
# turn the fp16 ones on, used wherever the CPU supports them; bf16 storage is off by default)
NCNN_FP32_OPTIONS = {
    "use_fp16_storage": False,
    "use_fp16_packed": False,
    "use_fp16_arithmetic": False,
    "use_bf16_storage": False,
    "use_bf16_packed": False,
}


def ncnn_fn(model: torch.nn.Module, threads: int):
    """fn(x NCHW float [0, 1]) -> NCHW output by ncnn in fp32 (NCNN_FP32_OPTIONS, `threads`
    threads; its default Winograd/sgemm convolutions), on the model converted by pnnx at the
    first call with that input's size (the bench's untimed first call). ncnn runs one image
    at a time: a batch is a loop. fn.options: the options the net ran with."""
    ncnn = _optional("ncnn")
    _optional("pnnx", " (its converter to ncnn)")
    nets: dict[tuple, object] = {}

    def fn(x):
        n, c, h, w = x.shape
        net = nets.get((c, h, w))
        if net is None:
            param, bin_ = pnnx_to_ncnn(model, c, h, w)
            net = ncnn.Net()
            net.opt.num_threads = int(threads)
            for k, v in NCNN_FP32_OPTIONS.items():
                if hasattr(net.opt, k):  # use_bf16_packed is newer than some wheels
                    setattr(net.opt, k, v)
            if net.load_param(str(param)) != 0 or net.load_model(str(bin_)) != 0:
                raise RuntimeError(f"ncnn could not load {param}")
            nets[(c, h, w)] = net
            fn.options = {k: getattr(net.opt, k) for k in dir(net.opt) if k == "num_threads" or k.startswith("use_")}
        a = np.ascontiguousarray(x.detach().cpu().float().numpy())  # ncnn.Mat wraps it without a copy:
        outs = []  # `a` stays referenced until every extract has returned
        for i in range(n):
            ex = net.create_extractor()
            ex.input("in0", ncnn.Mat(a[i]))
            ret, out = ex.extract("out0")
            if ret != 0:
                raise RuntimeError(f"ncnn extract failed (code {ret})")
            outs.append(np.array(out))  # a copy, out of ncnn's allocator
        return torch.from_numpy(np.stack(outs))

    fn.options = {}
    return fn


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

    def wanted(name: str) -> bool:
        return not which or any(w.lower() in name.lower() for w in which)

    onnx_dir: list = []  # one export for every row that runs the ONNX graph

    def onnx_file() -> Path:
        from ..weights.onnx import export_onnx

        if not onnx_dir:
            onnx_dir.append(tempfile.TemporaryDirectory(prefix="srgan_fast_bench_"))
        f = Path(onnx_dir[0].name) / "g.onnx"
        if not f.exists():
            export_onnx(model, f)  # the same export as `srgan-fast export` (output already mapped to [0, 1])
        return f

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
            from ..weights.onnx import onnx_session

            sess = onnx_session(onnx_file(), threads=torch.get_num_threads(), provider=provider)
            name = sess.get_inputs()[0].name

            def fn(x):
                return torch.from_numpy(sess.run(None, {name: x.cpu().numpy()})[0])

            return fn

        return build

    def openvino(precision):
        def build():
            _optional("openvino")  # before the export: a missing package skips at once
            return openvino_fn(onnx_file(), precision, torch.get_num_threads())

        return build

    def ncnn_row():
        return ncnn_fn(model, torch.get_num_threads())

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
        # optional peers ([bench] extra): skipped with a one-line reason when absent
        out.append(("OpenVINO f32", "fp32", openvino("f32")))
        if wanted("OpenVINO default"):  # its dtype asks OpenVINO (an import): only when the row runs
            out.append(("OpenVINO default", openvino_default_dtype(), openvino(None)))
        out.append(("ncnn", "fp32", ncnn_row))
        out += engine_rows("fp32")
        # what a user gets by default: the backend the CPU calibration picks (srgan_fast/backends/auto.py)
        out.append(("engine auto", "fp32", engine("auto", "fp32")))
        if "bf16" in dtypes:  # --dtype bf16: the CPU's reduced precision (fp16 has no fast path on CPUs)
            out.append(("eager channels_last", "bf16", eager(torch.bfloat16, True)))
            for name in ("torch", "native"):
                if name in backend_names():
                    out.append((f"engine {name}", "bf16", engine(name, "bf16")))
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
        out = [m for m in out if wanted(m[0])]
    return out


def load_like(model: Generator) -> Generator:
    """A fresh copy of the model (any family), in eval mode."""
    return copy.deepcopy(model).eval()
