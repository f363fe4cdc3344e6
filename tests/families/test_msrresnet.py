"""BasicSR's MSRResNet on the fused plan: random weights only (nothing downloaded).

The reference module is checked against BasicSR's layout (key names, shapes) and its forward
formula written out independently; the plan against the module on every backend, tiled and
untiled, with uint8 and float I/O; the kernel's bilinear skip epilogue against
F.interpolate(mode="bilinear", align_corners=False) through conv2d_fused_reference; BasicSR
checkpoints through `srgan-fast convert`; hostile configs refused before anything is built.
"""

import math

import pytest
import torch
import torch.nn.functional as F

from srgan_fast import families
from srgan_fast.families.msrresnet import (
    MSRResNet,
    MSRResNetConfig,
    compile_msrresnet_plan,
    msrresnet_expected_shapes,
    msrresnet_state_from_checkpoint,
    random_msrresnet,
)
from srgan_fast.plan import INPUT, OUT_MAP_CLAMP, compile_plan, fuse_residual_blocks
from srgan_fast.reference import conv2d_fused_reference, run_plan_reference
from srgan_fast.weights import WeightsError, load_generator, save_generator

from ..conftest import TRITON_DEVICE, diff_msg, model_output
from . import contract

TINY = {2: MSRResNetConfig(num_feat=16, num_block=2, upscale=2), 4: MSRResNetConfig(num_feat=16, num_block=2)}


def _hand_radius(cfg):
    """LR pixels each 3x3 conv reaches, counted by hand: conv_first, 2 per block, upconv1 at LR;
    upconv2 at 2x (x4 only); conv_hr and conv_last at the output resolution."""
    r = 1 + 2 * cfg.num_block + 1
    if cfg.upscale == 4:
        r += 1 / 2
    return r + 2 / cfg.upscale


# ---------------------------------------------------------------- the module


def test_module_has_the_basicsr_layout_and_formula():
    m = random_msrresnet(seed=11)  # the defaults: x4, 16 blocks x 64
    sd = m.state_dict()
    names = ["conv_first"] + [f"body.{i}.conv{j}" for i in range(16) for j in (1, 2)]
    names += ["upconv1", "upconv2", "conv_hr", "conv_last"]
    assert list(sd) == [f"{n}.{p}" for n in names for p in ("weight", "bias")]
    assert sd["upconv2.weight"].shape == (256, 64, 3, 3) and sd["conv_last.weight"].shape == (3, 64, 3, 3)
    assert sd["body.15.conv2.weight"].shape == (64, 64, 3, 3) and sd["conv_first.weight"].shape == (64, 3, 3, 3)
    assert {k: tuple(v.shape) for k, v in sd.items()} == msrresnet_expected_shapes(m.config)
    x2 = MSRResNet(MSRResNetConfig(num_feat=8, num_block=1, upscale=2))
    assert "upconv2.weight" not in x2.state_dict()
    assert {k: tuple(v.shape) for k, v in x2.state_dict().items()} == msrresnet_expected_shapes(x2.config)
    # the formula, written out independently
    x = torch.rand(1, 3, 5, 6)

    def conv(t, name):
        return F.conv2d(t, sd[f"{name}.weight"], sd[f"{name}.bias"], padding=1)

    y = F.leaky_relu(conv(x, "conv_first"), 0.1)
    for i in range(16):
        y = y + conv(F.relu(conv(y, f"body.{i}.conv1")), f"body.{i}.conv2")
    for up in ("upconv1", "upconv2"):
        y = F.leaky_relu(F.pixel_shuffle(conv(y, up), 2), 0.1)
    y = conv(F.leaky_relu(conv(y, "conv_hr"), 0.1), "conv_last")
    y = y + F.interpolate(x, scale_factor=4, mode="bilinear", align_corners=False)
    with torch.no_grad():
        got = m(x)
    assert got.shape == (1, 3, 20, 24) and torch.allclose(got, y, atol=1e-6), diff_msg(got, y)
    assert m.output_range == (0.0, 1.0)


@pytest.mark.parametrize("up", [2, 4])
def test_plan_dataflow_halo_and_exact_reference(up):
    cfg = TINY[up]
    m = random_msrresnet(cfg, seed=20 + up)
    plan = compile_plan(m)  # dispatches on the model family
    ups = ["upsample"] * (2 if up == 4 else 1)
    assert [op.kind for op in plan.ops] == ["head", *["block_conv1", "block_conv2"] * 2, *ups, "hr_conv", "tail"]
    head, tail = plan.ops[0], plan.ops[-1]
    assert torch.equal(head.prelu, torch.full((16,), 0.1))  # LeakyReLU(0.1) as a constant PReLU
    assert all(torch.equal(op.prelu, torch.zeros(16)) for op in plan.ops if op.kind == "block_conv1")  # ReLU
    assert all(op.prelu is None and op.skip is not None for op in plan.ops if op.kind == "block_conv2")
    for op in plan.ops:
        if op.kind == "upsample":
            assert op.shuffle and op.shuffle_r == 2 and torch.equal(op.prelu, torch.full((16,), 0.1))
    assert tail.skip == INPUT and tail.skip_up == up and tail.skip_mode == "bilinear"
    assert tail.out_map == OUT_MAP_CLAMP and tail.scale_in == up and tail.prelu is None
    assert all(op.skip_mode == "nearest" for op in plan.ops[:-1])
    assert plan.scale == up and plan.buffers["out"] == (3, up)
    # the halo: the plan's receptive radius, which a hand count gives as 7 for 2 blocks (x2 and x4)
    assert plan.receptive_radius == _hand_radius(cfg) == 7.0 and plan.halo == 7
    lr = 9 * (3 * 16 + 4 * 16 * 16 + 16 * 64)
    hr = 9 * (16 * 64 * 4 if up == 4 else 0) + 9 * (16 * 16 + 16 * 3) * up * up
    assert plan.model_macs == lr + hr == plan.macs_per_lr_pixel()
    x = torch.rand(3, 3, 7, 10)
    got = run_plan_reference(plan, x)
    want = model_output(m, x)
    assert (got - want).abs().max() <= 1e-6, diff_msg(got, want)
    # the residual blocks are what fuse_residual_blocks fuses (backend triton_fused)
    fused = fuse_residual_blocks(plan)
    assert [op.fn for op in fused.ops].count("resblock_fused") == 2 and fused.halo == 7
    got = run_plan_reference(fused, x)
    assert (got - want).abs().max() <= 1e-5, diff_msg(got, want)


# ---------------------------------------------------------------- the backends


SPECS = [
    contract.Spec(
        lambda up=up: random_msrresnet(TINY[up], seed=30 + up),
        backends=("torch", "native", "triton"),
        tile_backends=("torch", "native"),
        hostile=(
            ({"num_block": 10**6}, "num_block=1000000 is out of range"),
            ({"num_feat": 2**20}, "num_feat=1048576 is out of range"),
            ({"num_block": 2.0}, "an integer is needed"),
            ({"num_block": True}, "an integer is needed"),
            ({"upscale": 3}, "x3"),
            ({"upscale": 8}, "out of range"),
            ({"num_block": -1}, "bad MSRResNet config"),
            ({"num_out_ch": 1}, "num_in_ch must equal num_out_ch"),
            ({"res_scale": 0.2}, "unknown MSRResNetConfig fields"),
            ({"num_block": 3}, "missing keys"),  # the header's names checked against the config, before building
        ),
        checkpoints=lambda m: {"basicsr.pth": {"params_ema": m.state_dict()}},
    )
    for up in (2, 4)
]


@pytest.mark.parametrize("check", contract.CHECKS)
@pytest.mark.parametrize("spec", SPECS, ids=["x2", "x4"])
def test_family_contract(spec, check, tmp_path, monkeypatch):
    contract.run(check, spec, tmp_path, monkeypatch)


@pytest.mark.cuda
def test_fp16_cuda_within_twice_pytorchs_own_error():
    contract.check_fp16_cuda(random_msrresnet(seed=151))


def test_triton_tiled_equals_untiled():
    m = random_msrresnet(MSRResNetConfig(num_feat=16, num_block=0, upscale=2), seed=61)
    assert compile_plan(m).halo == 3  # 1 + 1 LR pixels, then 2 x 1/2 at the output resolution
    contract.check_tiling(m, ("triton",))  # (the x2 and x4 specs tile on torch)


# ---------------------------------------------------------------- the kernel's bilinear skip

# (n, h, w, r, u8 skip, shuffle): the skip is the op's output / r, read bilinearly
BILINEAR = [
    (1, 5, 7, 2, False, False),
    (2, 3, 5, 4, False, False),
    (1, 7, 3, 4, True, False),
    (2, 1, 1, 2, True, False),
    (1, 3, 5, 4, False, True),  # conv at r/2 resolution, PixelShuffle(2), then the skip at 1/r
]


def _bilinear_case(n, h, w, r, u8, shuffle, seed):
    g = torch.Generator().manual_seed(seed)
    s = 2 if shuffle else 1
    cin, cout = 16, 3 * s * s
    hh, ww = h * r // s, w * r // s  # the conv's own resolution
    x = torch.rand(n, cin, hh, ww, generator=g)
    sk = torch.randn(n, 3, h, w, generator=g)
    if u8:
        sk = (torch.rand(n, 3, h, w, generator=g) * 255).round().to(torch.uint8)
    wt = torch.randn(cout, cin, 3, 3, generator=g) * 0.2
    b = torch.randn(cout, generator=g) * 0.1
    return x, sk, wt, b, s


def _launch(x, sk, wt, b, s, r, mode="bilinear", impl="pointer", out_map=0):
    kern = pytest.importorskip("srgan_fast.kernels.conv2d_fused")
    shuffle, dev = s > 1, TRITON_DEVICE
    y = kern.conv2d_fused(
        x.permute(0, 2, 3, 1).contiguous().to(dev), kern.pack_weight(wt, torch.float32, shuffle).to(dev),
        kern.pack_bias(b, shuffle).to(dev), 3, skip=sk.permute(0, 2, 3, 1).contiguous().to(dev),
        shuffle=shuffle, out_map=out_map, skip_upsample=r, skip_mode=mode, impl=impl,
    )  # fmt: skip
    return y.permute(0, 3, 1, 2).cpu()


@pytest.mark.parametrize("case", BILINEAR, ids=["r2", "r4_b2", "r4_u8", "r2_u8_1x1", "r4_shuffle2"])
def test_kernel_bilinear_skip_alone_matches_interpolate(case):
    """With a zero conv the op's output is the upsampled skip itself: F.interpolate's to 1e-6."""
    n, h, w, r, u8, shuffle = case
    x, sk, wt, b, s = _bilinear_case(*case, seed=70 + r)
    got = _launch(x, sk, torch.zeros_like(wt), torch.zeros_like(b), s, r)
    want = conv2d_fused_reference(x, torch.zeros_like(wt), torch.zeros_like(b), skip=sk, shuffle=shuffle,
                                  skip_upsample=r, skip_mode="bilinear")  # fmt: skip
    sf = sk.float() / 255 if u8 else sk
    assert torch.equal(want, F.interpolate(sf, scale_factor=r, mode="bilinear", align_corners=False))
    assert got.shape == want.shape == (n, 3, h * r, w * r)
    assert (got - want).abs().max() <= 1e-6, diff_msg(got, want)
    if h * w > 1:  # not the nearest upsample
        near = F.interpolate(sf, scale_factor=r, mode="nearest")
        assert (want - near).abs().max() > 1e-2


@pytest.mark.parametrize("case", BILINEAR, ids=["r2", "r4_b2", "r4_u8", "r2_u8_1x1", "r4_shuffle2"])
def test_kernel_conv_plus_bilinear_skip(case):
    n, h, w, r, u8, shuffle = case
    x, sk, wt, b, s = _bilinear_case(*case, seed=80 + r)
    got = _launch(x, sk, wt, b, s, r, out_map=OUT_MAP_CLAMP)
    want = conv2d_fused_reference(x, wt, b, skip=sk, shuffle=shuffle, out_map=OUT_MAP_CLAMP, skip_upsample=r,
                                  skip_mode="bilinear")  # fmt: skip
    assert (got - want).abs().max() <= 2e-5, diff_msg(got, want)
    assert 0 < want.mean() < 1


def test_kernel_bilinear_skip_through_the_tma_loop(monkeypatch):
    kern = pytest.importorskip("srgan_fast.kernels.conv2d_fused")
    calls = []
    launch = kern._launch_tma
    monkeypatch.setattr(kern, "_launch_tma", lambda *a: calls.append(1) or launch(*a))
    x, sk, wt, b, s = _bilinear_case(1, 3, 5, 4, False, False, seed=91)
    got = _launch(x, sk, wt, b, s, 4, impl="tma")
    want = conv2d_fused_reference(x, wt, b, skip=sk, skip_upsample=4, skip_mode="bilinear")
    assert calls == [1] and (got - want).abs().max() <= 2e-5, diff_msg(got, want)


def test_kernel_and_reference_refuse_an_unknown_skip_mode():
    x, sk, wt, b, s = _bilinear_case(1, 2, 2, 2, False, False, seed=95)
    with pytest.raises(ValueError, match="skip_mode"):
        _launch(x, sk, wt, b, s, 2, mode="bicubic")
    with pytest.raises(ValueError, match="skip_mode"):
        conv2d_fused_reference(x, wt, b, skip=sk, skip_upsample=2, skip_mode="bicubic")


# ---------------------------------------------------------------- weights, convert, the CLI


def test_cli_convert_a_basicsr_checkpoint(tmp_path, capsys):
    from srgan_fast.cli import main

    cfg = MSRResNetConfig(num_feat=8, num_block=3, upscale=2)
    m, other = random_msrresnet(cfg, seed=111), random_msrresnet(cfg, seed=112)
    torch.save({"params": other.state_dict(), "params_ema": m.state_dict()}, tmp_path / "msrresnet_x2.pth")
    assert families.detect_family(m.state_dict()).name == "msrresnet"
    assert main(["convert", str(tmp_path / "msrresnet_x2.pth"), str(tmp_path / "x2.safetensors")]) == 0
    out = capsys.readouterr().out
    assert "msrresnet" in out and "self-check" in out
    loaded = load_generator(tmp_path / "x2.safetensors")
    assert isinstance(loaded, MSRResNet) and loaded.config == cfg  # read off the shapes; ema preferred
    x = torch.rand(1, 3, 5, 4)
    assert torch.equal(model_output(loaded, x), model_output(m, x))
    # x4, the BasicSR defaults' layout (upconv2), with the family named
    m4 = random_msrresnet(MSRResNetConfig(num_feat=8, num_block=1), seed=113)
    torch.save({"params_ema": m4.state_dict()}, tmp_path / "x4.pth")
    args = ["convert", str(tmp_path / "x4.pth"), str(tmp_path / "x4.safetensors"), "--family", "msrresnet"]
    assert main(args) == 0
    loaded = load_generator(tmp_path / "x4.safetensors")
    assert loaded.config == MSRResNetConfig(num_feat=8, num_block=1) and torch.equal(
        model_output(loaded, x), model_output(m4, x)
    )
    # its output is [0, 1] by definition: a contrary flag is a user error
    args = ["convert", str(tmp_path / "x4.pth"), str(tmp_path / "y.safetensors"), "--output-range=-1,1"]
    assert main(args) == 2 and "0,1" in capsys.readouterr().err
    assert not (tmp_path / "y.safetensors").exists()


def test_converter_refuses_x3_and_foreign_layouts_listing_what_did_not_match():
    with pytest.raises(ValueError, match="x3"):
        MSRResNetConfig(upscale=3)
    sd = random_msrresnet(MSRResNetConfig(num_feat=8, num_block=1, upscale=2), seed=121).state_dict()
    x3 = dict(sd, **{"upconv1.weight": torch.zeros(72, 8, 3, 3), "upconv1.bias": torch.zeros(72)})
    with pytest.raises(WeightsError, match="x3 MSRResNet"):
        msrresnet_state_from_checkpoint({"params_ema": x3})
    with pytest.raises(WeightsError, match="unexpected keys .*: conv_body.weight"):
        msrresnet_state_from_checkpoint(dict(sd, **{"conv_body.weight": torch.zeros(8, 8, 3, 3)}))
    with pytest.raises(WeightsError, match=r"missing keys \(2\): conv_hr.bias, conv_hr.weight"):
        msrresnet_state_from_checkpoint({k: v for k, v in sd.items() if not k.startswith("conv_hr")})
    with pytest.raises(WeightsError, match=r"wrong shapes \(1\): upconv1.weight"):
        msrresnet_state_from_checkpoint(dict(sd, **{"upconv1.weight": torch.zeros(16, 8, 3, 3)}))
    with pytest.raises(WeightsError, match="missing: conv_first.weight"):
        msrresnet_state_from_checkpoint({k: v for k, v in sd.items() if k != "conv_first.weight"})
    gap = {k.replace("body.0.", "body.2."): v for k, v in sd.items()}
    with pytest.raises(WeightsError, match="without gaps"):
        msrresnet_state_from_checkpoint(gap)
    # the detector claims exactly these names: not compact's body.N, not ours with extra keys
    assert not families.detect_family({"body.0.weight": torch.zeros(8, 3, 3, 3)}).name == "msrresnet"
    assert families.detect_family(dict(sd, **{"conv_body.weight": torch.zeros(1)})).name == "srresnet"


def test_registered_and_described_as_srgan_fast_models_lists_it(tmp_path, monkeypatch, capsys):
    from srgan_fast import weights
    from srgan_fast.cli import main

    fam = families.get_family("msrresnet")
    assert fam.module is MSRResNet and fam.config is MSRResNetConfig and families.converter("msrresnet") is fam
    assert fam.describe(MSRResNetConfig().to_dict()) == ("16 blocks x 64", 4)
    assert fam.shapes(TINY[2]) == msrresnet_expected_shapes(TINY[2])
    m = random_msrresnet(TINY[4], seed=141)
    assert [op.cout for op in compile_plan(m).ops] == [op.cout for op in compile_msrresnet_plan(m).ops]
    save_generator(m, tmp_path / "msrresnet_tiny.safetensors")
    monkeypatch.setattr(weights, "BUNDLED_DIR", tmp_path)
    assert main(["models", "-q"]) == 0
    out = capsys.readouterr().out
    assert "| msrresnet_tiny | msrresnet | x4 | 2 blocks x 16 |" in out, out


def test_hand_count_matches_the_formula():
    for nb, up in [(0, 2), (1, 4), (16, 4), (5, 2)]:
        cfg = MSRResNetConfig(num_feat=4, num_block=nb, upscale=up)
        plan = compile_plan(MSRResNet(cfg))
        assert plan.receptive_radius == _hand_radius(cfg) and plan.halo == math.ceil(_hand_radius(cfg))
