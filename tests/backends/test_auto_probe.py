"""backend "auto" on CUDA (issue 28): the first-use probe, on the CPU with stand-in backends.

Each stand-in runs the torch backend's real math (so right is right and wrong is wrong by the
D6 rule) on a fake clock (so fast and slow are what the test says): one that fails to build
(a Triton compile error), one that fails to launch, one that is wrong, one that is slow, one
good (with its CUDA-graph variant, a stand-in too). The GPU's name, capability and driver are a
stand-in `CudaInfo`. What a real card adds (synchronize, CudaGraphRunner, Triton's compile) is
run by benchmarks/card_session.sh."""

import json
import warnings

import pytest
import torch

from srgan_fast.backends import Backend, Runner, TorchRunner, auto, get_backend
from srgan_fast.families.srvgg_compact import CompactConfig, random_compact
from srgan_fast.plan import compile_plan

CPU = torch.device("cpu")
GPU = auto.CudaInfo("NVIDIA GeForce RTX 4090 (stand-in)", (8, 9), "555.42.02")
PLAN = compile_plan(random_compact(CompactConfig(num_feat=16, num_conv=3, upscale=4), seed=1))
# what each stand-in costs per call on the fake clock; "triton" is the good one and "+graph"
# saves it GRAPH_SAVES per call; "triton_wrong" is the fastest of all, so only its check drops it
COSTS = {"torch": 10.0, "triton": 5.0, "triton_slow": 20.0, "triton_wrong": 1.0, "triton_launch": 1.0,
         "triton_compile": 1.0}  # fmt: skip
GRAPH_SAVES = 2.0
COMPILE_ERROR = (
    "triton.runtime.errors.OutOfResources: out of resource: shared memory, Required: 232448,\n"
    "Hardware limit: 101376. Reducing block sizes or `num_stages` may help."
)


class _Clock:
    t = 0.0

    def __call__(self):
        return self.t


@pytest.fixture(autouse=True)
def _own_cache(tmp_path, monkeypatch):
    """Never read or write the user's calibration cache; the stand-in GPU."""
    monkeypatch.setenv("SRGAN_FAST_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.delenv("SRGAN_FAST_CALIBRATE", raising=False)
    monkeypatch.setattr(auto, "_cuda_info", lambda device: GPU)


def _standins(monkeypatch, clock, costs=COSTS, built=None):
    """Register (for auto only) a stand-in backend per entry of `costs`, and the graph stand-in."""
    built = [] if built is None else built

    def make(name):
        class StandIn(TorchRunner):
            def __init__(self, plan, device, dtype):
                built.append(name)
                if name == "triton_compile":
                    raise RuntimeError(COMPILE_ERROR)
                super().__init__(plan, device, dtype)

            def __call__(self, x, out_u8):
                clock.t += costs[name]
                if name == "triton_launch":
                    raise RuntimeError("CUDA error: too many resources requested for launch")
                y = super().__call__(x, out_u8)
                if name == "triton_wrong":  # a plausible image, darker by half
                    y = y // 2 if y.dtype == torch.uint8 else y * 0.5
                return y

        return Backend(name, StandIn, "stand-in", auto_devices=("cuda",), cuda_graph=name == "triton",
                       priority=2 if name.startswith("triton") else 1)  # fmt: skip

    class Graph(Runner):
        def __init__(self, make_inner):
            inner = make_inner()
            super().__init__(inner.plan, inner.device, inner.dtype)
            self.inner = inner

        def __call__(self, x, out_u8):
            clock.t -= GRAPH_SAVES
            return self.inner(x, out_u8)

    backends = [make(n) for n in costs]
    monkeypatch.setattr(auto, "_candidates", lambda device: backends)
    monkeypatch.setattr(auto, "_graph_runner", Graph)
    return built


def _choose(clock, dtype=torch.float32, size=(40, 48)):
    with warnings.catch_warnings(record=True) as w:
        warnings.simplefilter("always")
        got = auto.AutoCuda(PLAN, CPU, dtype, clock=clock).choose(*size)
    return got, [str(x.message) for x in w if issubclass(x.category, RuntimeWarning)]


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=["fp32", "bf16"])
def test_the_probe_drops_the_failing_and_the_wrong_and_picks_the_fastest_right_one(monkeypatch, dtype):
    clock = _Clock()
    built = _standins(monkeypatch, clock)
    (b, runner, choice), said = _choose(clock, dtype)
    assert b.name == "triton+graph" and choice.how == "measured" and choice.size == (40, 48)
    assert set(choice.times_s) == {"torch", "triton", "triton+graph", "triton_slow"}
    assert choice.times_s["triton+graph"] == 5.0 - GRAPH_SAVES and choice.times_s["torch"] == 10.0
    # each dropped candidate: one line, saying which and why
    for name, why in [("triton_compile", "failed to build (RuntimeError: triton.runtime.errors.OutOfResources"),
                      ("triton_launch", "failed on a 48x40 frame (RuntimeError: CUDA error: too many resources"),
                      ("triton_wrong", "differs from torch on a 48x40 frame: max error")]:  # fmt: skip
        lines = [s for s in said if f"'{name}'" in s]
        assert len(lines) == 1 and why in lines[0] and "\n" not in lines[0] and "dropped" in lines[0], said
        assert "RTX 4090" in lines[0] and why in choice.skipped[name]
    assert len(said) == 3, said
    # the pick upscales as torch does (it is torch's math); the fp16/bf16 rule is what dropped the wrong one
    x = torch.randint(0, 256, (1, 40, 48, 3), dtype=torch.uint8)
    assert torch.equal(runner(x, True), TorchRunner(PLAN, CPU, dtype)(x, True))
    # the cache: one entry, under a key naming the GPU, its driver and the versions
    (key, entry), = json.loads(auto.cache_path().read_text()).items()  # fmt: skip
    for part in ("NVIDIA GeForce RTX 4090 (stand-in) sm_89", "driver 555.42.02", f"torch {torch.__version__}",
                 f"cuda {torch.version.cuda}", "triton ", "class 6,6"):  # fmt: skip
        assert part in key, (part, key)
    assert entry["backend"] == "triton+graph" and set(entry["dropped"]) == {"triton_compile", "triton_launch",
                                                                            "triton_wrong"}  # fmt: skip
    # every candidate built (triton twice: with and without graphs; in bf16 torch twice: fp32 for the reference)
    assert set(built) == set(COSTS) and built.count("triton") == 2


def test_the_second_engine_reads_the_cache_and_checks_only_its_pick(monkeypatch):
    clock, built = _Clock(), []
    _standins(monkeypatch, clock, built=built)
    _choose(clock)
    built.clear()
    t = clock.t
    (b, _, choice), said = _choose(clock, size=(50, 60))  # another frame of the same class
    assert b.name == "triton+graph" and choice.how == "cached" and said == []
    # built: the pick and torch to check it against; never timed: one checking call each
    assert sorted(built) == ["torch", "triton"] and clock.t == t + COSTS["torch"] + COSTS["triton"] - GRAPH_SAVES
    assert "differs from torch" in choice.skipped["triton_wrong"]  # the entry says what was dropped


def test_a_dropped_candidate_is_never_picked_from_a_cache(monkeypatch):
    clock = _Clock()
    _standins(monkeypatch, clock)
    a = auto.AutoCuda(PLAN, CPU, torch.float32, clock=clock)
    cls = auto.size_class(40, 48, cap=a.cap)
    path, key = auto.cache_path(), a._key(cls)
    entry = {"backend": "triton_wrong", "times_s": {"triton_wrong": 1.0, "torch": 10.0}, "size": [40, 48]}
    # an entry (well signed: as a process with a right triton_wrong would have written it) that
    # names a candidate wrong here: checked before it is trusted, dropped, the class measured again
    auto._write_cache(path, key, entry)
    (b, _, choice), said = _choose(clock)
    assert b.name == "triton+graph" and choice.how == "measured"
    assert any("'triton_wrong' differs from torch" in s for s in said), said
    assert json.loads(path.read_text())[key]["backend"] == "triton+graph"  # rewritten
    # an entry that names one of its own drops (edited by hand, then signed): ignored
    auto._write_cache(path, key, dict(entry, dropped={"triton_wrong": "wrong"}))
    (b, _, choice), _ = _choose(clock)
    assert b.name == "triton+graph" and choice.how == "measured"
    # dropped in this engine (at one class), named by the cache for another: not picked
    a = auto.AutoCuda(PLAN, CPU, torch.float32, clock=clock)
    small = auto.size_class(8, 8, cap=a.cap)
    auto._write_cache(path, a._key(small), {"backend": "triton_launch", "times_s": {}, "size": [8, 8]})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        a.choose(40, 48)
        b, _, choice = a.choose(8, 8)
    assert "triton_launch" in a.skipped and b.name != "triton_launch" and choice.how == "measured"


def test_auto_is_never_slower_than_torch(monkeypatch):
    clock = _Clock()
    _standins(monkeypatch, clock, costs={"torch": 1.0, "triton": 5.0, "triton_slow": 20.0})
    (b, _, choice), _ = _choose(clock)
    assert b.name == "torch" and choice.how == "measured"
    # every other candidate fails: torch, without timing anything
    clock = _Clock()
    _standins(monkeypatch, clock, costs={"torch": 1.0, "triton_compile": 1.0, "triton_launch": 1.0})
    (b, _, choice), said = _choose(clock)
    assert b.name == "torch" and choice.how == "only candidate" and len(said) == 2


def test_torch_is_always_a_candidate_and_its_failure_is_not_swallowed(monkeypatch):
    clock = _Clock()
    _standins(monkeypatch, clock, costs={"triton": 5.0})  # the registry's stand-ins lack torch: added
    a = auto.AutoCuda(PLAN, CPU, torch.float32, clock=clock)
    assert sorted(a.avail) == ["torch", "triton", "triton+graph"] and a.fallback() == "torch"
    b, _, choice = a.first()
    assert b.name == "torch" and "until the first frame is probed" in choice.how

    def broken(self, x, out_u8):
        raise RuntimeError("cuDNN error: CUDNN_STATUS_INTERNAL_ERROR")

    monkeypatch.setattr(TorchRunner, "__call__", broken)
    with pytest.raises(RuntimeError, match="CUDNN_STATUS_INTERNAL_ERROR"), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # (the stand-in triton runs torch's math: it fails first, a drop)
        a.choose(40, 48)


def test_calibrate_env_works_as_on_a_cpu(monkeypatch):
    clock = _Clock()
    _standins(monkeypatch, clock)
    monkeypatch.setenv("SRGAN_FAST_CALIBRATE", "0")  # the static rule: nothing probed, no file
    (b, _, choice), said = _choose(clock)
    assert choice.how.startswith("static rule") and clock.t == 0 and not auto.cache_path().exists()
    monkeypatch.setenv("SRGAN_FAST_CALIBRATE", "1")
    _choose(clock)
    costs = dict(COSTS, triton_slow=0.5)  # the slow one got fast: refresh measures again
    _standins(monkeypatch, clock, costs=costs)
    (b, _, choice), _ = _choose(clock)
    assert b.name == "triton+graph" and choice.how == "cached"
    monkeypatch.setenv("SRGAN_FAST_CALIBRATE", "refresh")
    (b, _, choice), _ = _choose(clock)
    assert b.name == "triton_slow" and choice.how == "measured"


@pytest.mark.parametrize(
    "flag, capability, joins", [(False, (9, 0), False), (True, (8, 9), False), (True, (9, 0), True)]
)
def test_triton_tma_joins_only_with_tma_and_the_card_flag(monkeypatch, flag, capability, joins):
    monkeypatch.setattr(auto, "TRITON_TMA_CHECKED_ON_CARD", flag)
    monkeypatch.setattr(auto, "_cuda_info", lambda device: auto.CudaInfo("stand-in", capability, "1"))
    names = [b.name for b in auto._candidates(torch.device("cuda"))]
    assert ("triton_tma" in names) == joins and {"torch", "triton"} <= set(names)
    assert "triton_tma" not in [b.name for b in auto._candidates(CPU)]


def test_the_real_cuda_candidates_and_key():
    """The registry's backends on a stand-in GPU: triton and torch, triton also with CUDA graphs
    (torch cannot be captured); the machine and versions in the key."""
    if get_backend("triton").requires(torch.device("cuda")) is not None:
        pytest.skip("triton not importable")
    a = auto.AutoCuda(PLAN, torch.device("cuda"), torch.float16)
    assert sorted(a.names) == ["torch", "triton", "triton+graph"]
    assert a.avail["triton+graph"].cuda_graph is False  # (already captured: never captured again)
    key = a._key((8, 8))
    assert "sm_89 driver 555.42.02" in key and "float16" in key and "triton 3" in key
