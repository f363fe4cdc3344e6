"""ESRGAN's RRDBNet on the fused engine: the module against the published formulas, the plan's wide
buffers (dense concatenation without copies), parity of every backend, exact tiling with the
plan's large halo, the three checkpoint layouts, and hostile configs."""

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from srgan_fast import families
from srgan_fast.engine import Engine
from srgan_fast.families.rrdbnet import (
    RRDBNet,
    RRDBNetConfig,
    compile_rrdbnet_plan,
    nearest_subpixel_weight,
    random_rrdbnet,
    rrdbnet_expected_shapes,
    rrdbnet_state_from_checkpoint,
)
from srgan_fast.plan import INPUT, OUT_MAP_CLAMP, compile_plan, fuse_residual_blocks
from srgan_fast.reference import run_plan_reference
from srgan_fast.weights import WeightsError, load_generator, read_metadata

from ..conftest import diff_msg, model_output, to_nchw, to_nhwc
from . import contract

TINY = RRDBNetConfig(num_feat=16, num_block=2, num_grow_ch=8)
SMALL = RRDBNetConfig(num_feat=8, num_block=1, num_grow_ch=4)  # halo 19: the contract's tiling stays cheap


def _rand(*shape, seed):
    return torch.rand(*shape, generator=torch.Generator().manual_seed(seed))


# ---------------------------------------------------------------- the module


def test_module_has_the_published_layout_and_formula():
    m = random_rrdbnet(TINY, seed=1)
    sd = m.state_dict()
    assert set(sd) == set(rrdbnet_expected_shapes(TINY)) and len(sd) == 2 * (1 + 2 * 15 + 5)
    assert {k: tuple(v.shape) for k, v in sd.items()} == rrdbnet_expected_shapes(TINY)
    assert tuple(sd["body.1.rdb3.conv4.weight"].shape) == (8, 16 + 3 * 8, 3, 3)  # BasicSR's names and shapes
    # the forward pass written out with F.* from the paper's description, independently of the module
    x = _rand(1, 3, 7, 6, seed=2)

    def conv(name, t):
        return F.conv2d(t, sd[f"{name}.weight"], sd[f"{name}.bias"], padding=1)

    def lrelu(t):
        return torch.where(t >= 0, t, 0.2 * t)

    feat = conv("conv_first", x)
    h = feat
    for b in range(2):
        inp = h
        for r in (1, 2, 3):
            cat = [h]
            for c in range(1, 5):
                cat.append(lrelu(conv(f"body.{b}.rdb{r}.conv{c}", torch.cat(cat, 1))))
            h = h + 0.2 * conv(f"body.{b}.rdb{r}.conv5", torch.cat(cat, 1))
        h = inp + 0.2 * h
    h = feat + conv("conv_body", h)
    h = lrelu(conv("conv_up1", h.repeat_interleave(2, 2).repeat_interleave(2, 3)))
    h = lrelu(conv("conv_up2", h.repeat_interleave(2, 2).repeat_interleave(2, 3)))
    want = conv("conv_last", lrelu(conv("conv_hr", h)))
    with torch.no_grad():
        got = m(x)
    assert got.shape == (1, 3, 28, 24)
    assert (got - want).abs().max() <= 1e-5, diff_msg(got, want)


@pytest.mark.parametrize("k", [3, 5])
def test_nearest_subpixel_weight_is_upsample_then_conv(k):
    g = torch.Generator().manual_seed(k)
    w, b = torch.randn(5, 4, k, k, generator=g), torch.randn(5, generator=g)
    x = torch.randn(2, 4, 6, 7, generator=g)
    want = F.conv2d(F.interpolate(x, scale_factor=2, mode="nearest"), w, b, padding=k // 2)
    wu, bu = nearest_subpixel_weight(w, b)
    assert wu.shape == (20, 4, 2 * ((k // 2 + 1) // 2) + 1, 2 * ((k // 2 + 1) // 2) + 1)
    got = F.pixel_shuffle(F.conv2d(x, wu, bu, padding=wu.shape[-1] // 2), 2)
    assert (got - want).abs().max() <= 1e-4, diff_msg(got, want)  # borders included: zero padding maps


# ---------------------------------------------------------------- the plan


def test_plan_writes_dense_blocks_into_wide_buffers_and_matches_the_model():
    m = random_rrdbnet(TINY, seed=11)
    plan = compile_plan(m)
    nf, gc, wide = 16, 8, 16 + 4 * 8
    assert len(plan.ops) == 15 * TINY.num_block + 6
    assert all(op.fn == "conv2d_fused" for op in plan.ops)
    dense = [op for op in plan.ops if op.kind == "dense_conv"]
    assert len(dense) == 4 * 3 * TINY.num_block
    # each growth conv writes its slice of the buffer it reads (a prefix of it): no concatenation
    for i, op in enumerate(dense):
        assert op.src == op.dst and plan.buffers[op.dst] == (wide, 1)
        assert op.dst_off == nf + (i % 4) * gc and op.cin == op.dst_off and op.cout == gc
    # no value is ever copied: every op's output goes where its readers read it
    assert sum(c for name, (c, s) in plan.buffers.items() if s == 1 and name != INPUT) <= 4 * wide + 2 * nf
    assert [op.scale_in for op in plan.ops[-4:]] == [1, 2, 4, 4]
    assert plan.ops[-1].out_map == OUT_MAP_CLAMP
    assert plan.halo == math.ceil(15 * TINY.num_block + 4) and plan.receptive_radius == 15 * TINY.num_block + 4
    assert plan.macs_per_lr_pixel() == plan.model_macs  # the sub-pixel convs do the network's MACs
    x = _rand(2, 3, 9, 8, seed=12)
    want = model_output(m, x)
    got = run_plan_reference(plan, x)
    assert (got - want).abs().max() <= 1e-5, diff_msg(got, want)
    # fusing residual blocks finds none (no pair is a plain conv-PReLU-conv + input) and keeps the plan
    fused = fuse_residual_blocks(plan)
    assert [op.fn for op in fused.ops] == [op.fn for op in plan.ops] and fused.buffers == plan.buffers
    assert "buf0[16:24]" in plan.describe()


def test_residual_scales_are_where_they_belong():
    """Each 0.2 of RDB and RRDB matters: the plan without them differs from the model."""
    m = random_rrdbnet(RRDBNetConfig(num_feat=8, num_block=1, num_grow_ch=4), seed=21)
    x = _rand(1, 3, 6, 6, seed=22)
    plan = compile_plan(m)
    assert (run_plan_reference(plan, x) - model_output(m, x)).abs().max() <= 1e-5
    for kind in ("dense_out", "rrdb_out"):
        bad = compile_plan(m)
        for op in bad.ops:
            if op.kind == kind:
                op.weight = op.weight * 1.25  # 0.25 instead of 0.2
        assert (run_plan_reference(bad, x) - model_output(m, x)).abs().max() > 1e-4, kind


# ---------------------------------------------------------------- backends


SPEC = contract.Spec(
    lambda: random_rrdbnet(SMALL, seed=31),
    backends=("torch", "native", "triton", "triton_tma"),
    tile_backends=("torch", "native"),
    inside=0.99,
    halo_cut=15,  # the far end of a 0.2-scaled dense trunk's reach is below float noise
    hostile=(
        ({"num_block": 10**6}, "num_block=1000000 is out of range"),
        ({"num_grow_ch": 2**20}, "num_grow_ch=1048576 is out of range"),
        ({"num_feat": 8.0}, "an integer is needed"),
        ({"scale": 2}, "x2 .*not supported"),
        ({"num_block": -1}, "bad RRDBNet config"),
        ({"gc": 32}, "unknown RRDBNetConfig fields"),
        ({"num_block": 3}, "missing keys"),  # the header's names checked against the config, before building
    ),
    checkpoints=lambda m: {  # the three layouts, each converted back to the same model
        "realesrgan.pth": {"params": random_rrdbnet(SMALL, seed=32).state_dict(), "params_ema": m.state_dict()},
        "esrgan.pth": _esrgan_new(m.state_dict()),
        "esrgan_old.pth": _esrgan_old(m.state_dict(), SMALL.num_block),
    },
)


@pytest.mark.parametrize("check", contract.CHECKS)
def test_family_contract(check, tmp_path, monkeypatch):
    contract.run(check, SPEC, tmp_path, monkeypatch)


@pytest.mark.cuda
def test_fp16_cuda_within_twice_pytorchs_own_error():
    contract.check_fp16_cuda(random_rrdbnet(RRDBNetConfig(num_block=4), seed=91), ("torch", "triton", "triton_tma"))


def test_the_memory_budget_tiles_knowing_the_halo():
    m = random_rrdbnet(RRDBNetConfig(num_feat=8, num_block=2, num_grow_ch=4), seed=55)
    assert compile_plan(m).halo == 34
    est = Engine(m, backend="torch", memory_budget=256 * 2**20).estimate(400, 600)
    # one large tile per call rather than four small ones: the halo's extra work stays within 2x
    assert est.tile is not None and est.tile > 6 * 34 and est.halo_work <= 2.0 and est.tiles == 6
    with pytest.warns(RuntimeWarning, match="34-pixel halo .* 11.0x the untiled work"):
        est = Engine(m, backend="torch", memory_budget=32 * 2**20).estimate(400, 600)
    assert est.tile == 28
    x = to_nhwc(_rand(1, 3, 40, 44, seed=56))
    assert np.abs(Engine(m, backend="torch", tile=16).upscale(x) - Engine(m, backend="torch").upscale(x)).max() <= 1e-5


# ---------------------------------------------------------------- checkpoints


def _esrgan_new(sd):
    out = {}
    for k, v in sd.items():
        k = k.replace("conv_body", "trunk_conv").replace("body.", "RRDB_trunk.").replace(".rdb", ".RDB")
        k = k.replace("conv_up", "upconv").replace("conv_hr", "HRconv")
        out[k] = v
    return out


def _esrgan_old(sd, num_block):
    names = {"conv_first": "model.0", "conv_body": f"model.1.sub.{num_block}", "conv_up1": "model.3",
             "conv_up2": "model.6", "conv_hr": "model.8", "conv_last": "model.10"}  # fmt: skip
    out = {}
    for k, v in sd.items():
        layer, _, p = k.rpartition(".")
        if layer in names:
            out[f"{names[layer]}.{p}"] = v
        else:  # body.B.rdbR.convC -> model.1.sub.B.RDBR.convC.0
            _, b, r, c = layer.split(".")
            out[f"model.1.sub.{b}.RDB{r[-1]}.{c}.0.{p}"] = v
    return out


def test_three_checkpoint_layouts_convert_to_the_same_model(tmp_path, capsys):
    """Each layout maps to our keys (the round trip of each through `convert` is the contract's);
    the CLI names the family and records it."""
    from srgan_fast.cli import main

    cfg = RRDBNetConfig(num_feat=8, num_block=2, num_grow_ch=4)
    m, other = random_rrdbnet(cfg, seed=61), random_rrdbnet(cfg, seed=62)
    sd = m.state_dict()
    layouts = {
        "realesrgan.pth": {"params": other.state_dict(), "params_ema": sd},  # Real-ESRGAN: ema preferred
        "esrgan.pth": _esrgan_new(sd),
        "esrgan_old.pth": _esrgan_old(sd, 2),
    }
    for name, obj in layouts.items():
        state, got_cfg, origin = rrdbnet_state_from_checkpoint(obj)
        assert got_cfg == cfg and set(state) == set(sd), name
        assert all(torch.equal(state[k], sd[k]) for k in sd), name
    torch.save(layouts["esrgan_old.pth"], tmp_path / "esrgan_old.pth")
    assert main(["convert", str(tmp_path / "esrgan_old.pth"), str(tmp_path / "old.safetensors")]) == 0
    assert "rrdbnet" in capsys.readouterr().out
    meta = read_metadata(tmp_path / "old.safetensors")
    assert meta["family"] == "rrdbnet" and meta["config"] == cfg.to_dict()
    x = _rand(1, 3, 5, 6, seed=63)
    assert torch.equal(model_output(load_generator(tmp_path / "old.safetensors"), x), model_output(m, x))


def test_converter_refuses_what_it_cannot_run_listing_what_did_not_match():
    cfg = RRDBNetConfig(num_feat=8, num_block=1, num_grow_ch=4)
    sd = random_rrdbnet(cfg, seed=71).state_dict()
    x2 = dict(sd, **{"conv_first.weight": torch.zeros(8, 12, 3, 3)})  # BasicSR x2: pixel-unshuffled input
    with pytest.raises(WeightsError, match="RRDBNet x2 .*not supported"):
        rrdbnet_state_from_checkpoint(x2)
    old = _esrgan_old(sd, 1)
    x8 = dict(old, **{"model.13.weight": torch.zeros(8, 8, 3, 3), "model.13.bias": torch.zeros(8)})
    with pytest.raises(WeightsError, match="unexpected keys .*model.13.weight.*x8"):
        rrdbnet_state_from_checkpoint(x8)
    with pytest.raises(WeightsError, match=r"missing keys \(2\): conv_hr.bias, conv_hr.weight"):
        rrdbnet_state_from_checkpoint({k: v for k, v in sd.items() if not k.startswith("conv_hr")})
    with pytest.raises(WeightsError, match=r"wrong shapes \(1\): body.0.rdb2.conv3.weight"):
        rrdbnet_state_from_checkpoint(dict(sd, **{"body.0.rdb2.conv3.weight": torch.zeros(4, 8, 3, 3)}))
    with pytest.raises(WeightsError, match="without gaps"):
        rrdbnet_state_from_checkpoint(dict(sd, **{k.replace("body.0.", "body.2."): v for k, v in sd.items()}))
    with pytest.raises(WeightsError, match="not an RRDBNet checkpoint"):
        rrdbnet_state_from_checkpoint({"conv_first.weight": torch.zeros(8, 3, 3, 3)})
    # the other families' layouts are not claimed
    assert families.detect_family({"body.0.weight": torch.zeros(8, 3, 3, 3)}).name != "rrdbnet"
    from srgan_fast.families.msrresnet import MSRResNetConfig, random_msrresnet

    msr = random_msrresnet(MSRResNetConfig(num_feat=4, num_block=1)).state_dict()
    assert families.detect_family(msr).name == "msrresnet"


def test_registered_and_described():
    fam = families.get_family("rrdbnet")
    assert fam.module is RRDBNet and fam.config is RRDBNetConfig and families.converter("rrdbnet") is fam
    assert fam.describe(RRDBNetConfig().to_dict()) == ("23 RRDBs x 64, growth 32", 4)
    m = random_rrdbnet(RRDBNetConfig(num_feat=4, num_block=1, num_grow_ch=2))
    assert [op.cout for op in compile_plan(m).ops] == [op.cout for op in compile_rrdbnet_plan(m).ops]
    # RealESRGAN_x4plus's shape: 351 ops, a 349-pixel halo, and its published 16.7M parameters
    big = RRDBNetConfig()
    assert sum(math.prod(s) for s in rrdbnet_expected_shapes(big).values()) == 16_697_987
    with torch.device("meta"):
        plan = compile_plan(RRDBNet(big))
    assert len(plan.ops) == 351 and plan.halo == 349


def test_stream_and_nv12_unchanged():
    m = random_rrdbnet(RRDBNetConfig(num_feat=8, num_block=1, num_grow_ch=4), seed=95)
    eng = Engine(m, backend="torch")
    frames = [torch.randint(0, 256, (6, 8, 3), dtype=torch.uint8, generator=torch.Generator().manual_seed(i)).numpy()
              for i in range(3)]  # fmt: skip
    streamed = list(eng.stream(iter(frames), batch=2))
    assert len(streamed) == 3
    for f, s in zip(frames, streamed):
        assert np.array_equal(s, eng.upscale(f))
    from srgan_fast.adapters import nv12_to_rgb

    y = np.random.default_rng(96).integers(16, 236, (6, 8), dtype=np.uint8)
    uv = np.random.default_rng(97).integers(16, 241, (3, 4, 2), dtype=np.uint8)
    got = eng.upscale_nv12(y, uv, out="rgb")
    assert np.array_equal(got, eng.upscale(np.asarray(nv12_to_rgb(y, uv, matrix=709))))


def test_bf16_on_cpu_within_twice_pytorchs_own_error():
    """The low-precision rule, checkable without a card: the torch backend in bf16 (the wide
    buffers' slices and the folded residual scales in bf16 storage) against PyTorch's own bf16."""
    import copy

    m = random_rrdbnet(RRDBNetConfig(num_feat=16, num_block=2, num_grow_ch=8), seed=3)
    x = _rand(1, 3, 12, 10, seed=4)
    want = model_output(m, x)
    with torch.no_grad():
        torch_err = (copy.deepcopy(m).bfloat16()(x.bfloat16()).float().clamp(0, 1) - want).abs().max().item()
    got = to_nchw(Engine(m, backend="torch", dtype="bf16").upscale(to_nhwc(x)))
    err = (got - want).abs().max().item()
    assert 1e-4 < err <= 2 * torch_err, (err, torch_err)  # (bf16 for real: not an fp32 run)


def test_wide_values_keep_their_buffer_and_are_never_fused():
    """Plan mechanics on a hand-made dataflow (no family emits these today): a slice written after
    its value's last read keeps the buffer from being handed to another value, and a conv pair
    that fuse_residual_blocks would otherwise merge is left alone when it reads a prefix of a
    wide value (resblock_fused reads and writes whole buffers)."""
    from srgan_fast.plan import FusedOp, Plan, assign_buffers, value_shapes

    def conv(cin, cout, **kw):
        return FusedOp("t", torch.randn(cout, cin, 3, 3) * 0.1, torch.zeros(cout), **kw)

    ops = [
        conv(3, 4, src=INPUT, dst="v0"),  # starts v0 (8 wide)
        conv(4, 4, src="v0", dst="v1"),  # v0's last read
        conv(4, 8, src="v1", dst="v2"),  # a new 8-wide value: must not take v0's buffer ...
        conv(4, 4, src="v1", dst="v0", dst_off=4),  # ... because v0 still gets this slice
        conv(8, 3, src="v2", dst="v3"),
    ]
    buffers = assign_buffers(ops, value_shapes(ops, (3, 1)))
    assert ops[2].dst != ops[0].dst and ops[3].dst == ops[0].dst and buffers[ops[0].dst] == (8, 1)

    # a plain conv-PReLU-conv + input pair reading the prefix of a wide value: not fused
    def pair():  # (assign_buffers renames values to buffers in place: a fresh pair per plan)
        return [conv(4, 4, src="w", dst="t", prelu=torch.full((4,), 0.2)), conv(4, 4, src="t", dst="u", skip="w")]

    def fused(ops):
        plan = Plan(TINY, ops, 0, assign_buffers(ops, value_shapes(ops, (3, 1))))
        return [op.fn for op in fuse_residual_blocks(plan).ops].count("resblock_fused")

    head, tail = conv(3, 4, src=INPUT, dst="w"), conv(4, 3, src="u", dst="o")
    assert fused([head, conv(4, 4, src="w", dst="w", dst_off=4), *pair(), tail]) == 0
    assert fused([conv(3, 4, src=INPUT, dst="w"), *pair(), conv(4, 3, src="u", dst="o")]) == 1  # on a plain value


def test_converter_refuses_grey_models_and_a_misplaced_trunk():
    sd = random_rrdbnet(RRDBNetConfig(num_feat=8, num_block=1, num_grow_ch=4), seed=98).state_dict()
    grey = dict(sd, **{"conv_first.weight": torch.zeros(8, 1, 3, 3), "conv_last.weight": torch.zeros(1, 8, 3, 3),
                       "conv_last.bias": torch.zeros(1)})  # fmt: skip
    with pytest.raises(WeightsError, match="1 input and 1 output channels is not supported"):
        rrdbnet_state_from_checkpoint(grey)
    old = _esrgan_old(sd, 1)
    two = dict(old, **{"model.1.sub.7.weight": torch.zeros(8, 8, 3, 3), "model.1.sub.7.bias": torch.zeros(8)})
    with pytest.raises(WeightsError, match=r"trunk conv must be model.1.sub.1 .*found it at model.1.sub.\[1, 7\]"):
        rrdbnet_state_from_checkpoint(two)
    moved = {k.replace("model.1.sub.1.", "model.1.sub.0."): v for k, v in old.items()}
    with pytest.raises(WeightsError, match="trunk conv must be model.1.sub.1"):
        rrdbnet_state_from_checkpoint(moved)
