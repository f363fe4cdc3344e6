"""The onnxruntime backend (srgan_fast/ort_backend.py) and how "auto" chooses on a CPU
(srgan_fast/calibrate.py): parity with the torch backend, tiling, non-finite detection, the
calibration and its cache, and the message when onnxruntime is missing."""

import json
import sys

import pytest
import torch

from srgan_fast.backends import Backend, BackendUnavailable, Runner, TorchRunner, choose_backend
from srgan_fast.backends import auto as calibrate
from srgan_fast.engine import Engine, NonFiniteOutputError
from srgan_fast.families.msrresnet import MSRResNetConfig, random_msrresnet
from srgan_fast.families.rrdbnet import RRDBNetConfig, random_rrdbnet
from srgan_fast.families.srresnet.arch import Generator, GeneratorConfig
from srgan_fast.families.srvgg_compact import CompactConfig, random_compact
from srgan_fast.plan import compile_plan
from srgan_fast.reference import to_uint8

from ..conftest import diff_msg, randomize_bn

ort = pytest.importorskip("onnxruntime")
from srgan_fast.backends.onnxruntime import OrtModelRunner, OrtRunner  # noqa: E402

CPU = torch.device("cpu")


@pytest.fixture(autouse=True)
def _own_cache(tmp_path, monkeypatch):
    """Never read or write the user's calibration cache."""
    monkeypatch.setenv("SRGAN_FAST_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.delenv("SRGAN_FAST_CALIBRATE", raising=False)


def _models():
    return {
        "srresnet": randomize_bn(Generator(GeneratorConfig(num_blocks=2, channels=16, scale=4))).eval(),
        "compact": random_compact(CompactConfig(num_feat=16, num_conv=3, upscale=4), seed=1),
        "msrresnet": random_msrresnet(MSRResNetConfig(num_feat=16, num_block=2, upscale=4), seed=2),
        # wide buffers: the export writes each dense conv's slice functionally (ort_backend._ExportRunner.place)
        "rrdbnet": random_rrdbnet(RRDBNetConfig(num_feat=16, num_block=1, num_grow_ch=8), seed=3),
    }


MODELS = _models()


@pytest.mark.parametrize("runner", [OrtRunner, OrtModelRunner], ids=["plan", "model"])
@pytest.mark.parametrize("family", list(MODELS))
def test_fp32_parity_with_torch_backend(family, runner):
    plan = compile_plan(MODELS[family])
    ours, theirs = runner(plan, CPU, torch.float32), TorchRunner(plan, CPU, torch.float32)
    g = torch.Generator().manual_seed(0)
    for shape in [(1, 1, 1), (3, 7, 13), (1, 31, 17)]:  # odd sizes, batch 3: dynamic N/H/W
        x = torch.rand(*shape, 3, generator=g)
        got, want = ours(x, False), theirs(x, False)
        assert got.shape == want.shape and got.dtype == torch.float32
        assert (got - want).abs().max().item() <= 1e-4, diff_msg(got, want)
        assert bool(ours.finite)
        # uint8 in and out: the same /255 before and half-up rounding after; the two differ only
        # where the fp32 values (summed in a different order) straddle a rounding boundary:
        # one level, on a small share of pixels
        xu = (x * 255).round().to(torch.uint8)
        got_u8, want_u8 = ours(xu, True), theirs(xu, True)
        assert got_u8.dtype == torch.uint8
        d = (got_u8.int() - want_u8.int()).abs()
        assert d.max().item() <= 1 and d.float().mean().item() < 0.01, diff_msg(got_u8, want_u8)
        # and the rounding rule is reference.to_uint8 of its own float output, exactly
        assert torch.equal(got_u8, to_uint8(ours(xu, False)))


def test_tiled_equals_untiled():
    model = MODELS["srresnet"]
    x = torch.rand(2, 37, 29, 3, generator=torch.Generator().manual_seed(1)).numpy()
    whole = Engine(model, backend="onnxruntime").upscale(x)
    eng = Engine(model, backend="onnxruntime", tile=12)
    assert eng._tiling(37, 29, 2)[0] == 12  # really tiled
    tiled = eng.upscale(x)
    assert abs(tiled - whole).max() <= 1e-5, diff_msg(torch.from_numpy(tiled), torch.from_numpy(whole))


def test_nonfinite_is_detected():
    g = randomize_bn(Generator(GeneratorConfig(num_blocks=2, channels=16, scale=4))).eval()
    plan = compile_plan(g)
    plan.ops[3].bias[0] = float("inf")  # inside the trunk: clamp/round at the tail would hide it
    r = OrtRunner(plan, CPU, torch.float32)
    r.finite.reset()
    r(torch.rand(1, 9, 9, 3), True)
    assert not r.finite
    with pytest.raises(NonFiniteOutputError, match="fp32"):
        Engine(plan, backend="onnxruntime").upscale(torch.rand(9, 9, 3).numpy())


def test_fp32_only_and_cpu_only():
    plan = compile_plan(MODELS["compact"])
    with pytest.raises(BackendUnavailable, match="fp32 only"):
        OrtRunner(plan, CPU, torch.bfloat16)
    with pytest.raises(BackendUnavailable, match="does not run on cuda"):
        choose_backend("onnxruntime", torch.device("cuda"))  # (no GPU needed to be refused)


def test_missing_onnxruntime_says_what_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # import onnxruntime -> ImportError
    with pytest.raises(BackendUnavailable, match="pip install onnxruntime"):
        Engine(MODELS["compact"], backend="onnxruntime")
    eng = Engine(MODELS["compact"])  # auto: torch and native are left, measured at the first frame
    eng.upscale(torch.rand(5, 6, 3).numpy())
    assert eng.backend in ("torch", "native") and eng.backend_choice.how == "measured"
    assert set(eng.backend_choice.times_s) == {"torch", "native"}
    assert "pip install onnxruntime" in eng.backend_choice.describe()


# ---- auto on a CPU: calibration between two fake backends on a fake clock


class _Clock:
    t = 0.0

    def __call__(self):
        return self.t


def _fakes(clock, costs, built):
    """Backends whose runners cost `costs[name]` seconds of the fake clock per call."""

    def make(name):
        class Fake(Runner):
            def __call__(self, x, out_u8):
                clock.t += costs[name]
                return x

        def build(plan, device, dtype):
            built.append(name)
            return Fake(plan, device, dtype)

        return Backend(name, build, "fake", devices=("cpu",), auto_devices=("cpu",))

    return [make(n) for n in costs]


def test_auto_picks_the_faster_and_caches_it(monkeypatch):
    clock, built = _Clock(), []
    monkeypatch.setattr(calibrate, "_candidates", lambda device: _fakes(clock, {"slow": 2.0, "fast": 1.0}, built))
    plan = compile_plan(MODELS["compact"])
    b, runner, choice = calibrate.AutoCpu(plan, CPU, torch.float32, clock=clock).choose(300, 200)
    assert b.name == "fast" and choice.how == "measured" and choice.times_s == {"slow": 2.0, "fast": 1.0}
    assert choice.size == (128, 128) and sorted(built) == ["fast", "slow"]
    assert clock.t == pytest.approx(4 * 2.0 + 4 * 1.0)  # 1 untimed call + 3 rounds each
    entry = json.loads(calibrate.cache_path().read_text())
    assert [v["backend"] for v in entry.values()] == ["fast"]

    # another engine: read from the cache, nothing timed, only the chosen runner built; frames
    # over 128 px share the 128 class, and an engine starts on the cached full-size choice
    built.clear()
    t = clock.t
    auto = calibrate.AutoCpu(plan, CPU, torch.float32, clock=clock)
    assert auto.first()[0].name == "fast" and built == ["fast"]
    b, runner, choice = auto.choose(1080, 1920)
    assert b.name == "fast" and choice.how == "cached" and built == ["fast"] and clock.t == t
    # a small frame is another class: measured on its own size
    b, _, choice = auto.choose(20, 30)
    assert choice.how == "measured" and choice.size == (20, 30)
    # another dtype is another entry
    b, _, choice = calibrate.AutoCpu(plan, CPU, torch.bfloat16, clock=clock).choose(128, 128)
    assert choice.how == "measured" and len(json.loads(calibrate.cache_path().read_text())) == 3

    # refresh: measured again even though cached (and the costs changed meanwhile)
    monkeypatch.setattr(calibrate, "_candidates", lambda device: _fakes(clock, {"slow": 0.5, "fast": 1.0}, built))
    monkeypatch.setenv("SRGAN_FAST_CALIBRATE", "refresh")
    b, _, choice = calibrate.AutoCpu(plan, CPU, torch.float32, clock=clock).choose(128, 128)
    assert b.name == "slow" and choice.how == "measured"


def test_calibration_goes_on_while_the_rounds_disagree():
    clock = _Clock()

    def runner(costs):
        costs = iter(costs)

        def call(x, out_u8):
            clock.t += next(costs)

        return call

    # b is faster by its median, but one round (3.0) went to a: rounds go on to the maximum
    b_costs = [1.0, 0.5, 3.0] + [0.5] * 5  # untimed call, then 7 rounds
    times = calibrate.measure({"a": runner([1.0] * 8), "b": runner(b_costs)}, size=(4, 4), clock=clock)
    assert times == {"a": 1.0, "b": 0.5} and clock.t == pytest.approx(8 * 1.0 + sum(b_costs))
    # a clear winner: three rounds
    clock.t = 0.0
    times = calibrate.measure({"a": runner([2.0] * 8), "b": runner([1.0] * 8)}, size=(4, 4), clock=clock)
    assert times == {"a": 2.0, "b": 1.0} and clock.t == pytest.approx(4 * 2.0 + 4 * 1.0)


def test_auto_calibration_off_by_env(monkeypatch):
    clock, built = _Clock(), []
    monkeypatch.setattr(calibrate, "_candidates", lambda device: _fakes(clock, {"slow": 2.0, "fast": 1.0}, built))
    monkeypatch.setenv("SRGAN_FAST_CALIBRATE", "0")
    eng = Engine(MODELS["compact"])
    eng.upscale(torch.rand(5, 6, 3).numpy())
    assert eng.backend == "native" and "static rule" in eng.backend_choice.how  # the highest priority
    assert built == [] and clock.t == 0 and not calibrate.cache_path().exists()


def test_engine_auto_chooses_at_the_first_frame_and_says_so(monkeypatch):
    clock, built = _Clock(), []
    fakes = _fakes(clock, {"a": 3.0, "b": 1.5}, built)
    monkeypatch.setattr(calibrate, "_candidates", lambda device: fakes)
    monkeypatch.setattr(calibrate.time, "perf_counter", clock)
    eng = Engine(MODELS["compact"])  # nothing measured at creation
    assert eng.backend == "a" and clock.t == 0 and "until the first frame" in eng.backend_choice.describe()
    assert eng.upscale(torch.rand(1, 9, 7, 3)).shape == (1, 9, 7, 3)  # (the fakes return their input)
    assert eng.backend == "b" and eng.backend_choice.backend == "b"
    assert "measured on 9x7 LR: a 3000 ms, b 1500 ms" in eng.backend_choice.describe()


def test_auto_on_cpu_real_candidates():
    model = MODELS["compact"]
    eng = Engine(model)
    x = torch.rand(5, 6, 3).numpy()
    y = eng.upscale(x)
    assert eng.backend in ("torch", "native", "onnxruntime", "onnxruntime_model")
    assert eng.backend_choice.how == "measured"
    assert set(eng.backend_choice.times_s) == {"torch", "native", "onnxruntime", "onnxruntime_model"}
    want = Engine(model, backend="torch").upscale(x)
    assert abs(y - want).max() <= 1e-4
    eng2 = Engine(model)
    eng2.upscale(x)
    assert eng2.backend_choice.how == "cached" and eng2.backend == eng.backend


def test_the_model_export_needs_the_plain_model():
    plan = compile_plan(MODELS["compact"])
    bare = plan.rewrite(plan.dataflow(), exact=False)  # a transform that changed the math: no plain model
    with pytest.raises(BackendUnavailable, match="exports the plain model"):
        OrtModelRunner(bare, CPU, torch.float32)
    assert (OrtRunner(bare, CPU, torch.float32)(torch.rand(1, 4, 5, 3), False)).shape == (1, 16, 20, 3)


def test_auto_survives_an_onnxruntime_that_fails(monkeypatch):
    """A candidate that fails to build (a graph ORT refuses) or to run is dropped with its reason;
    auto goes on with the others (torch, native) and never crashes."""
    from srgan_fast.backends import onnxruntime as ort_backend

    model = MODELS["compact"]
    x = torch.rand(6, 7, 3).numpy()
    want = Engine(model, backend="torch").upscale(x)

    def refuse(*a, **k):
        raise RuntimeError("[ONNXRuntimeError] : 1 : FAIL : broken graph")

    monkeypatch.setattr(ort.InferenceSession, "__init__", refuse)
    eng = Engine(model)
    assert abs(eng.upscale(x) - want).max() <= 1e-4 and eng.backend in ("torch", "native")
    assert "onnxruntime" not in eng.backend_choice.times_s
    assert "failed to build" in eng.backend_choice.describe() or "cannot run this plan" in eng.backend_choice.describe()
    monkeypatch.undo()
    monkeypatch.setenv("SRGAN_FAST_CACHE_DIR", str(calibrate.cache_path().parent / "second"))
    monkeypatch.delenv("SRGAN_FAST_CALIBRATE", raising=False)

    def crash(self, x, out_u8):
        raise RuntimeError("ORT crashed mid-run")

    monkeypatch.setattr(ort_backend.OrtRunner, "__call__", crash)
    eng = Engine(model)
    assert abs(eng.upscale(x) - want).max() <= 1e-4 and eng.backend in ("torch", "native")
    assert "ORT crashed mid-run" in eng.backend_choice.describe()


def test_model_graph_detects_nonfinite():
    g = randomize_bn(Generator(GeneratorConfig(num_blocks=2, channels=16, scale=4))).eval()
    with torch.no_grad():
        g.body[0].conv1.bias[0] = float("inf")  # inside the trunk: the clamp at the end would hide it
    r = OrtModelRunner(compile_plan(g), CPU, torch.float32)
    r.finite.reset()
    r(torch.rand(1, 9, 9, 3), True)
    assert not r.finite


def test_exports_are_kept_on_disk_and_shapes_calibrated_apart(monkeypatch):
    from srgan_fast.backends import onnxruntime as ort_backend

    exports = []
    real = ort_backend._export
    monkeypatch.setattr(ort_backend, "_export", lambda m: exports.append(1) or real(m))
    plan = compile_plan(MODELS["msrresnet"])
    OrtRunner(plan, CPU, torch.float32)
    ort_backend._EXPORTS.clear()  # a new process: memory empty, the cache folder kept
    OrtRunner(plan, CPU, torch.float32)
    assert len(exports) == 1 and len(list((calibrate.cache_path().parent / "onnx").glob("*.onnx"))) == 1
    # two models of different shapes never share a calibration entry
    a = calibrate.calibration_key(compile_plan(MODELS["compact"]), torch.float32, ["torch"])
    other = random_compact(CompactConfig(num_feat=16, num_conv=4, upscale=4), seed=1)
    assert calibrate.calibration_key(compile_plan(other), torch.float32, ["torch"]) != a


def test_a_damaged_cache_entry_is_measured_again(monkeypatch):
    clock, built = _Clock(), []
    monkeypatch.setattr(calibrate, "_candidates", lambda device: _fakes(clock, {"slow": 2.0, "fast": 1.0}, built))
    plan = compile_plan(MODELS["compact"])
    calibrate.AutoCpu(plan, CPU, torch.float32, clock=clock).choose(128, 128)
    path = calibrate.cache_path()
    data = json.loads(path.read_text())
    for bad in ({"times_s": "x"}, {"size": "big"}, {"times_s": {"fast": "slow"}}):
        path.write_text(json.dumps({k: dict(v, **bad) for k, v in data.items()}))
        b, _, choice = calibrate.AutoCpu(plan, CPU, torch.float32, clock=clock).choose(128, 128)
        assert b.name == "fast" and choice.how == "measured", bad
