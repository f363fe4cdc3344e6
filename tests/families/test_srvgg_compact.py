"""SRVGGNetCompact (Real-ESRGAN's compact video models) on the fused plan: random weights only.

The reference module is checked against the published architecture's layout (key names,
shapes, forward formula); the plan against the module on every backend, tiled and untiled,
with uint8 and float I/O; the kernel's new epilogues (PixelShuffle(4) store, nearest-upsampled
uint8/float skip, clamp-only map) against conv2d_fused_reference.
"""

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from srgan_fast.engine import Engine
from srgan_fast.families.srvgg_compact import (
    CompactConfig,
    compact_state_from_checkpoint,
    compile_compact_plan,
    random_compact,
)
from srgan_fast.plan import INPUT, OUT_MAP_CLAMP, compile_plan
from srgan_fast.reference import conv2d_fused_reference, run_plan_reference, upscale_reference
from srgan_fast.weights import WeightsError, load_generator, save_generator

from ..conftest import diff_msg, model_output
from . import contract

TINY = CompactConfig(num_feat=16, num_conv=2)


def _random(cfg, seed=0, act_scale=0.25):
    """A compact model with random weights scaled so activations stay O(1) through the body."""
    return random_compact(cfg, seed=seed, slope=act_scale)


def test_module_has_the_published_layout_and_formula():
    m = _random(CompactConfig())  # realesr-animevideov3: 16 body convs
    sd = m.state_dict()
    # body.0 conv 3->64, body.1 PReLU(64), ..., body.33 PReLU, body.34 conv 64->48
    assert len(sd) == 2 * 18 + 17 and list(sd)[:3] == ["body.0.weight", "body.0.bias", "body.1.weight"]
    assert sd["body.34.weight"].shape == (48, 64, 3, 3) and sd["body.33.weight"].shape == (64,)
    assert CompactConfig.from_name("realesr-general-x4v3").num_conv == 32
    # the formula, written out independently: convs + PReLU, shuffle, + nearest upsample
    x = torch.rand(1, 3, 5, 6)
    y = x
    for i in range(0, 34, 2):
        y = F.prelu(F.conv2d(y, sd[f"body.{i}.weight"], sd[f"body.{i}.bias"], padding=1), sd[f"body.{i + 1}.weight"])
    y = F.conv2d(y, sd["body.34.weight"], sd["body.34.bias"], padding=1)
    y = F.pixel_shuffle(y, 4) + x.repeat_interleave(4, 2).repeat_interleave(4, 3)
    with torch.no_grad():
        got = m(x)
    assert torch.allclose(got, y, atol=1e-6), diff_msg(got, y)


def test_plan_dataflow_halo_and_exact_reference():
    m = _random(TINY, act_scale=0.3)
    plan = compile_plan(m)  # dispatches on the model family
    assert [op.kind for op in plan.ops] == ["head", "body_conv", "body_conv", "tail"]
    tail = plan.ops[-1]
    assert tail.shuffle and tail.shuffle_r == 4 and tail.skip == INPUT and tail.skip_up == 4
    assert tail.out_map == OUT_MAP_CLAMP and plan.scale == 4
    assert plan.halo == 4 and plan.receptive_radius == 4.0  # one LR pixel per 3x3 conv
    assert plan.buffers["out"] == (3, 4)
    assert plan.model_macs == 9 * (3 * 16 + 16 * 16 * 2 + 16 * 48)
    x = torch.rand(3, 3, 7, 13)
    got = run_plan_reference(plan, x)
    want = model_output(m, x)
    assert torch.equal(got, want), diff_msg(got, want)


@pytest.mark.parametrize("act", ["relu", "leakyrelu"])
def test_constant_slope_activations(act):
    m = _random(CompactConfig(num_feat=8, num_conv=1, upscale=2, act_type=act))
    x = torch.rand(1, 3, 6, 5)
    got = torch.from_numpy(Engine(m, backend="torch").upscale(x.permute(0, 2, 3, 1).numpy())).permute(0, 3, 1, 2)
    want = model_output(m, x)
    assert (got - want).abs().max() <= 1e-5, diff_msg(got, want)


def test_torch_backend_fp32_full_size_and_tiling():
    m = _random(CompactConfig())  # the published size, 64 features, 16 convs
    x = torch.rand(2, 3, 19, 23)
    eng = Engine(m, backend="torch")
    got = torch.from_numpy(eng.upscale(x.permute(0, 2, 3, 1).numpy())).permute(0, 3, 1, 2)
    want = model_output(m, x)
    assert (got - want).abs().max() <= 1e-4, diff_msg(got, want)
    tiled = Engine(m, backend="torch", tile=7).upscale(x.permute(0, 2, 3, 1).numpy())
    d = np.abs(tiled - eng.upscale(x.permute(0, 2, 3, 1).numpy())).max()
    assert d <= 1e-5, d


def test_bf16_cpu_within_twice_pytorchs_own_error():
    m = _random(CompactConfig(num_feat=32, num_conv=4))
    x = torch.rand(1, 3, 16, 16)
    want = model_output(m, x)
    mb = _random(CompactConfig(num_feat=32, num_conv=4)).to(torch.bfloat16)
    with torch.no_grad():
        torch_err = (mb(x.bfloat16()).float().clamp(0, 1) - want).abs().max().item()
    got = torch.from_numpy(Engine(m, backend="torch", dtype="bf16").upscale(x.permute(0, 2, 3, 1).numpy()))
    err = (got.permute(0, 3, 1, 2) - want).abs().max().item()
    assert 0 < torch_err and err <= 2 * torch_err + 1e-3, (err, torch_err)


SPEC = contract.Spec(
    lambda: _random(TINY, act_scale=0.3),
    backends=("torch", "native", "triton"),
    tile_backends=("torch", "native", "triton"),
    inside=0.6,  # the nearest-upsampled input plus a residual: a third of it clamped
    hostile=(
        ({"num_conv": 10**6}, "num_conv=1000000 is out of range"),
        ({"num_feat": 2**20}, "num_feat=1048576 is out of range"),
        ({"num_conv": 2.5}, "an integer is needed"),
        ({"num_conv": True}, "an integer is needed"),
        ({"upscale": 3}, "upscale must be 2 or 4"),
        ({"act_type": "gelu"}, "act_type must be one of"),
        ({"act_type": 3}, "act_type must be a string"),
        ({"num_in_ch": 1}, "num_in_ch must equal num_out_ch"),
        ({"num_conv": -1}, "bad SRVGGNetCompact config"),
        ({"nonsense": 1}, "unknown CompactConfig fields"),
    ),
    # Real-ESRGAN's files: params_ema preferred to params
    checkpoints=lambda m: {
        "realesr-tiny.pth": {"params": _random(TINY, seed=4).state_dict(), "params_ema": m.state_dict()}
    },
)


@pytest.mark.parametrize("check", contract.CHECKS)
def test_family_contract(check, tmp_path, monkeypatch):
    contract.run(check, SPEC, tmp_path, monkeypatch)


@pytest.mark.cuda
def test_fp16_cuda_within_twice_pytorchs_own_error():
    contract.check_fp16_cuda(_random(CompactConfig()), shape=(2, 3, 64, 48), cuda_graph=True)


@pytest.mark.parametrize(
    "n,h,w,cin,cout,r,skip,u8skip,u8out",
    [
        (1, 5, 7, 16, 48, 4, True, False, False),
        (2, 3, 4, 16, 48, 4, True, True, True),
        (1, 4, 5, 16, 12, 2, True, True, False),
        (1, 3, 3, 16, 48, 4, False, False, False),
    ],
    ids=["r4_skip", "r4_u8skip_u8out", "r2_u8skip", "r4_noskip"],
)
def test_kernel_shuffle_factor_and_upsampled_skip(n, h, w, cin, cout, r, skip, u8skip, u8out):
    kern = pytest.importorskip("srgan_fast.kernels.conv2d_fused")
    g = torch.Generator().manual_seed(1)
    x = torch.rand(n, cin, h, w, generator=g)
    wt = torch.randn(cout, cin, 3, 3, generator=g) * 0.2
    b = torch.randn(cout, generator=g) * 0.1
    oc = cout // (r * r)
    sk = torch.rand(n, oc, h, w, generator=g) if skip else None
    if u8skip:
        sk = (sk * 255).round().to(torch.uint8)
    want = conv2d_fused_reference(x, wt, b, skip=sk, shuffle=True, out_map=OUT_MAP_CLAMP, out_u8=u8out,
                                  shuffle_factor=r, skip_upsample=r)  # fmt: skip
    y = kern.conv2d_fused(
        x.permute(0, 2, 3, 1).contiguous(), kern.pack_weight(wt, torch.float32, True, factor=r),
        kern.pack_bias(b, True, factor=r), 3, skip=None if sk is None else sk.permute(0, 2, 3, 1).contiguous(),
        shuffle=True, out_map=OUT_MAP_CLAMP, out_u8=u8out, shuffle_factor=r, skip_upsample=r,
    ).permute(0, 3, 1, 2)  # fmt: skip
    if u8out:
        assert (y.int() - want.int()).abs().max() <= 1
    else:
        assert (y - want).abs().max() <= 2e-5, diff_msg(y, want)
    assert 0 < want.float().mean() < (255 if u8out else 1)  # the clamp leaves a real image


def test_kernel_refuses_bad_shuffle_factor():
    kern = pytest.importorskip("srgan_fast.kernels.conv2d_fused")
    with pytest.raises(ValueError, match="factor"):
        kern.pack_weight(torch.zeros(48, 4, 3, 3), shuffle=True, factor=3)
    with pytest.raises(ValueError, match="Cout % 16"):
        kern.pack_bias(torch.zeros(12), shuffle=True, factor=4)


def test_converter_rejects_a_foreign_layout_with_a_clear_message():
    sd = {"conv_first.weight": torch.zeros(16, 3, 3, 3), "body.0.weight": torch.zeros(16, 16, 3, 3)}
    with pytest.raises(WeightsError, match="unexpected keys: conv_first.weight"):
        compact_state_from_checkpoint(sd)
    m = _random(CompactConfig(num_feat=8, num_conv=1, act_type="relu"))
    with pytest.raises(WeightsError, match="--act relu"):
        compact_state_from_checkpoint(m.state_dict())
    _, cfg = compact_state_from_checkpoint(m.state_dict(), act_type="relu")
    assert cfg.act_type == "relu" and cfg.num_conv == 1


def test_compile_compact_plan_is_registered():
    m = _random(TINY)
    assert [op.cout for op in compile_plan(m).ops] == [op.cout for op in compile_compact_plan(m).ops]
    with pytest.raises(TypeError, match="registered model family"):
        compile_plan(torch.nn.Conv2d(3, 3, 3))


def test_cli_upscale_stream_and_nv12_take_a_compact_file(tmp_path):
    from PIL import Image

    from srgan_fast.cli import main

    m = _random(TINY, seed=6, act_scale=0.3)
    f = save_generator(m, tmp_path / "compact.safetensors")
    a = np.random.default_rng(0).integers(0, 256, (9, 11, 3), dtype=np.uint8)
    Image.fromarray(a).save(tmp_path / "in.png")
    assert main(["upscale", str(tmp_path / "in.png"), "-o", str(tmp_path / "out.png"), "--model", str(f), "-q"]) == 0
    out = np.array(Image.open(tmp_path / "out.png"))
    want = upscale_reference(m, a)
    assert out.shape == (36, 44, 3) and np.abs(out.astype(int) - want).max() <= 1
    eng = Engine(str(f), backend="torch")
    frames = [a, a[::-1].copy(), a]
    got = list(eng.stream(iter(frames), batch=2))
    assert all(np.array_equal(g, eng.upscale(fr)) for g, fr in zip(got, frames))
    y, uv = eng.upscale_nv12(np.full((8, 10), 120, np.uint8), np.full((4, 10), 128, np.uint8))
    assert y.shape == (32, 40) and uv.shape == (16, 40)


def test_cli_convert_detects_the_published_layout(tmp_path, capsys):
    from srgan_fast.cli import main

    m = _random(CompactConfig(num_feat=8, num_conv=3, upscale=2), seed=7)
    torch.save({"params_ema": m.state_dict()}, tmp_path / "realesr-x2.pth")
    assert main(["convert", str(tmp_path / "realesr-x2.pth"), str(tmp_path / "x2.safetensors")]) == 0
    out = capsys.readouterr().out
    assert "srvgg_compact" in out and "self-check: 14 tensors identical" in out
    loaded = load_generator(tmp_path / "x2.safetensors")
    x = torch.rand(1, 3, 5, 4)
    assert loaded.config.upscale == 2 and torch.equal(model_output(loaded, x), model_output(m, x))
    # a compact model's output is [0, 1] by definition: a contrary flag is a user error
    args = ["convert", str(tmp_path / "realesr-x2.pth"), str(tmp_path / "y.safetensors"), "--output-range=-1,1"]
    assert main(args) == 2 and "0,1" in capsys.readouterr().err
