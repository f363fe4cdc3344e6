"""The plan as a dataflow and the runner protocol: buffers, memory, the backend registry."""

import numpy as np
import pytest
import torch

from srgan_fast.backends import (
    BUILTIN,
    Backend,
    DuplicateBackendError,
    TorchRunner,
    backend_names,
    choose_backend,
    get_backend,
    register_backend,
)
from srgan_fast.cli import build_parser
from srgan_fast.engine import Engine
from srgan_fast.families.srresnet.arch import Generator, GeneratorConfig
from srgan_fast.options import RunOptions
from srgan_fast.plan import INPUT, OUTPUT, compile_plan
from srgan_fast.reference import run_plan_reference

from ..conftest import diff_msg, randomize_bn


def _live_check(plan):
    """Replay the dataflow on value names: every op must read the value its source op wrote
    (no buffer was overwritten while still needed) and never write a buffer it reads."""
    holds = {INPUT: "input"}
    for i, op in enumerate(plan.ops):
        assert op.dst not in (op.src, op.skip), f"op {i} writes a buffer it reads"
        assert op.src in holds and (op.skip is None or op.skip in holds), f"op {i} reads an unwritten buffer"
        holds[op.dst] = i
    return holds


def test_srresnet_x4_dataflow_and_memory():
    plan = compile_plan(Generator("srresnet_x4"))
    _live_check(plan)
    # head, block temp, two ping-pong trunk buffers at LR, then each upsample's output: 6 buffers
    inter = {k: v for k, v in plan.buffers.items() if k not in (INPUT, OUTPUT)}
    assert len(inter) == 6, plan.describe()
    assert plan.activation_elems_per_lr_pixel() == 4 * 64 + 64 * 4 + 256 * 4 == 1536
    assert plan.output_elems_per_lr_pixel() == 3 * 16
    assert plan.bytes_per_lr_pixel(2) == 1536 * 2 + 48 * 4
    # the long skip reads the head's buffer, which nothing else may have overwritten
    head, trunk_end = plan.ops[0], plan.ops[33]
    assert trunk_end.kind == "trunk_end" and trunk_end.skip == head.dst
    assert all(op.dst != head.dst for op in plan.ops[1:33])
    # each block's second conv adds the block's input: the buffer its first conv read
    for c1, c2 in zip(plan.ops[1:33:2], plan.ops[2:33:2]):
        assert c2.skip == c1.src and c2.src == c1.dst


@pytest.mark.parametrize(
    "cfg",
    [GeneratorConfig(num_blocks=0, channels=8, scale=2), GeneratorConfig(num_blocks=3, channels=8, scale=8)],
    ids=["0blocks_x2", "3blocks_x8"],
)
@pytest.mark.parametrize("subpixel", [True, False])
def test_any_depth_and_scale_runs_the_dataflow_exactly(cfg, subpixel):
    torch.manual_seed(3)
    g = randomize_bn(Generator(cfg)).eval()
    plan = compile_plan(g, subpixel_tail=subpixel)
    _live_check(plan)
    x = torch.rand(2, 3, 5, 7)
    with torch.no_grad():
        want = (g(x) + 1) / 2
    got = run_plan_reference(plan, x)
    assert (got - want.clamp(0, 1)).abs().max() <= 2e-6, diff_msg(got, want)


def test_a_new_backend_is_one_registration(monkeypatch):
    """Register a backend: the Engine runs it, the CLI offers it, bench would list it."""
    calls = []

    class CountingRunner(TorchRunner):
        name = "counting"

        def conv2d_fused(self, op, weight, src, skip, out_u8):
            calls.append(op.kind)
            return super().conv2d_fused(op, weight, src, skip, out_u8)

    import srgan_fast.backends.registry as registry

    monkeypatch.setattr(registry, "_REGISTRY", dict(registry._REGISTRY))
    register_backend(Backend("counting", CountingRunner, "counts its ops", bench_devices=("cpu",)))
    assert "counting" in backend_names() and get_backend("counting").runner is CountingRunner
    torch.manual_seed(0)
    g = randomize_bn(Generator("tiny_x4"))
    x = np.random.default_rng(0).random((1, 6, 5, 3), dtype=np.float32)
    got = Engine(g, backend="counting").upscale(x)
    want = Engine(g, backend="torch").upscale(x)
    assert np.array_equal(got, want)
    assert len(calls) == len(compile_plan(g).ops)
    args = build_parser().parse_args(["upscale", "a.png", "-o", "b", "--backend", "counting"])
    assert RunOptions.from_args(args).backend == "counting"


def test_backend_choice_and_errors():
    cpu = torch.device("cpu")
    assert choose_backend("auto", cpu).name == "native"  # the static rule: the highest priority
    with pytest.raises(ValueError, match="unknown backend 'nope'; use auto, torch, native"):
        choose_backend("nope", cpu)
    with pytest.raises(ValueError, match="unknown backend"):
        RunOptions(backend="nope").validate()
    with pytest.raises(TypeError, match="unknown option"):
        RunOptions.resolve(modle="x")
    # the reference backend needs the module the plan came from
    plan = compile_plan(Generator("tiny_x4"))
    plan.source = None
    with pytest.raises(RuntimeError, match="without it"):
        Engine(plan, backend="reference")


def test_reference_backend_equals_upscale_reference_bit_for_bit():
    from srgan_fast.reference import upscale_reference

    torch.manual_seed(1)
    g = randomize_bn(Generator("tiny_x4")).eval()
    lr = np.random.default_rng(4).integers(0, 256, (3, 9, 11, 3), dtype=np.uint8)
    got = Engine(g, backend="reference").upscale(lr)
    for i in range(3):
        assert np.array_equal(got[i], upscale_reference(g, lr[i]))


def test_stream_groups_and_joins_its_reader():
    import threading

    from srgan_fast.stream import group_same_shape

    items = [np.zeros((2, 2)), np.zeros((2, 2)), np.zeros((3, 2)), np.zeros((2, 2)), np.zeros((2, 2))]
    groups = list(group_same_shape(items, batch=2, key=lambda a: a.shape))
    assert [len(gr) for gr in groups] == [2, 1, 2]
    torch.manual_seed(0)
    eng = Engine(randomize_bn(Generator("tiny_x4")), backend="torch")
    frames = (np.full((4, 4, 3), i, np.uint8) for i in range(100))
    it = eng.stream(frames, batch=3)
    first = next(it)
    assert np.array_equal(first, eng.upscale(np.zeros((4, 4, 3), np.uint8)))
    it.close()
    assert not any(t.name == "srgan_fast-stream-reader" for t in threading.enumerate())


def test_finite_flag_remembers_every_update_until_reset():
    from srgan_fast.backends import FiniteFlag

    f = FiniteFlag()
    assert bool(f)  # nothing checked yet
    f.update(torch.ones(4))
    f.update(torch.tensor([1.0, float("nan")], dtype=torch.float16))  # an earlier tile went bad
    f.update(torch.ones(4))  # later tiles are fine: the flag must still say no
    assert not bool(f)
    f.reset()
    f.update(torch.full((3,), 6e4, dtype=torch.float16))  # large but finite fp16 sums past fp16's range
    assert bool(f)
    f.update(torch.tensor([float("inf")]))
    assert not bool(f)


def test_the_built_in_backends_are_listed_in_order_and_a_taken_name_is_refused(monkeypatch):
    import srgan_fast.backends.registry as registry

    assert BUILTIN == ("aten", "native", "triton", "reference", "onnxruntime")
    assert backend_names()[:8] == [
        "torch", "native", "triton", "triton_fused", "triton_tma", "reference", "onnxruntime", "onnxruntime_model",
    ]  # fmt: skip
    monkeypatch.setattr(registry, "_REGISTRY", dict(registry._REGISTRY))
    torch_backend = get_backend("torch")
    impostor = Backend("torch", TorchRunner, "a plugin's torch")
    with pytest.raises(DuplicateBackendError, match="already registered.*replace=True"):
        register_backend(impostor)
    assert get_backend("torch") is torch_backend
    assert register_backend(torch_backend) is torch_backend  # the same object again is no change
    assert register_backend(impostor, replace=True) is impostor and get_backend("torch") is impostor
