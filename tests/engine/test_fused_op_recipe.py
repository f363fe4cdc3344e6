"""The recipe for a new fused op, followed from outside the package: a non-conv op
(`scale_fused`: y = x * s[c]) inserted after the head by a plan transform. It needs its
reference step, one method per runner, and the transform written on the plan's dataflow; no
buffer bookkeeping, no fake conv weight, no edit of plan.py, runners.py or reference.py
(docs/architecture.md, "Where to add things")."""

import numpy as np
import pytest
import torch

from srgan_fast.backends import Backend, BackendUnavailable, TorchRunner, register_backend
from srgan_fast.backends.registry import _REGISTRY
from srgan_fast.engine import Engine
from srgan_fast.families.srresnet import Generator
from srgan_fast.plan import FusedOp, compile_plan
from srgan_fast.reference import REFERENCE_STEPS, register_reference, run_plan_reference

from ..conftest import randomize_bn


def scale_fused_reference(x, scale):  # NCHW
    return x * scale.view(1, -1, 1, 1)


class ScaleTorchRunner(TorchRunner):
    name = "torch_scale"

    def scale_fused(self, op, prepared, src, skip, out_u8):
        return src * op.params["scale"].view(1, -1, 1, 1)


def insert_scale_after_head(plan, scale):
    flow = plan.dataflow()
    head = flow[0][3]
    op = FusedOp("scale", None, None, fn="scale_fused", channels=flow[0][0].out_channels, params={"scale": scale})
    # the op reads the head's value and writes a new one; every later reader of the head reads it
    out = [flow[0], (op, head, None, "scaled")]
    for o, src, skip, dst in flow[1:]:
        out.append((o, "scaled" if src == head else src, "scaled" if skip == head else skip, dst))
    return plan.rewrite(out, exact=False)  # the math changed: the plain model is no longer this plan


@pytest.fixture
def scaled_plan():
    torch.manual_seed(0)
    g = randomize_bn(Generator("tiny_x4"))
    register_reference("scale_fused", lambda op, src, skip: scale_fused_reference(src, op.params["scale"]))
    register_backend(Backend("torch_scale", ScaleTorchRunner, "test: torch + scale_fused"))
    plan = compile_plan(g)
    yield plan, insert_scale_after_head(plan, torch.rand(16) * 2 + 0.5)
    REFERENCE_STEPS.pop("scale_fused")
    _REGISTRY.pop("torch_scale")


def test_a_non_conv_op_runs_exactly_tiled_and_untiled(scaled_plan):
    plan, scaled = scaled_plan
    assert [op.fn for op in scaled.ops][:2] == ["conv2d_fused", "scale_fused"]
    assert scaled.receptive_radius == plan.receptive_radius  # no reach, no multiply-adds
    assert scaled.macs_per_lr_pixel() == plan.macs_per_lr_pixel()
    assert scaled.activation_elems_per_lr_pixel() >= plan.activation_elems_per_lr_pixel()
    x = np.random.default_rng(0).random((1, 11, 9, 3), dtype=np.float32)
    want = run_plan_reference(scaled, torch.from_numpy(x).permute(0, 3, 1, 2)).permute(0, 2, 3, 1).numpy()
    got = Engine(scaled, backend="torch_scale").upscale(x)
    assert np.abs(got - want).max() <= 1e-5, np.abs(got - want).max()  # (the tail maps to [0, 1] itself)
    unscaled = Engine(plan, backend="torch").upscale(x)
    assert np.abs(got - unscaled).max() > 1e-3  # the op did something
    tiled = Engine(scaled, backend="torch_scale", tile=4).upscale(x)
    assert np.abs(tiled - got).max() <= 1e-5
    # its tensors travel with the plan like any weight
    assert scaled.to(dtype=torch.float64).ops[1].params["scale"].dtype == torch.float64


def test_a_transform_that_changes_the_math_drops_the_reference_model(scaled_plan):
    plan, scaled = scaled_plan
    assert plan.source is not None and scaled.source is None
    with pytest.raises(BackendUnavailable, match="transform changed its math"):
        Engine(scaled, backend="reference")
    # a runner without a method for the op refuses the plan up front, naming the op
    with pytest.raises(BackendUnavailable, match="cannot run fused op 'scale_fused'"):
        Engine(scaled, backend="torch")
