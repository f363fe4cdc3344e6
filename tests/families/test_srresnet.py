import pytest
import torch
import torch.nn.functional as F

from srgan_fast.families.srresnet.arch import (
    Discriminator,
    Generator,
    GeneratorConfig,
    count_parameters,
    to_unit_range,
)
from srgan_fast.plan import compile_plan

from ..conftest import randomize_bn
from . import contract


def _tiny():
    torch.manual_seed(0)
    return randomize_bn(Generator("tiny_x4"))  # random BN statistics and PReLU slopes: folding shows


SPEC = contract.Spec(
    _tiny,
    backends=("torch", "native", "triton"),
    tile_backends=("torch", "native"),
    parity_shapes=((1, 1, 1), (1, 7, 13), (3, 5, 6)),
    halo_cut=4,  # the 9x9 tail's last half LR pixel of reach is below 1e-4
    hostile=(
        ({"num_blocks": 10**6}, "num_blocks=1000000 is over the limit"),
        ({"channels": 2**20}, "channels=1048576 is over the limit"),
        ({"channels": "16"}, "channels must be an integer, got str"),
        ({"scale": 4.0}, "scale must be an integer"),
        ({"scale": 3}, "scale must be 2, 4 or 8"),
        ({"num_blocks": -1}, "bad config"),
        ({"head_kernel": 4}, "odd"),
        ({"nonsense": 1}, "unknown GeneratorConfig fields"),
        ({"num_blocks": 3}, "missing keys"),  # the header's names checked against the config, before building
    ),
)


@pytest.mark.parametrize("check", contract.CHECKS)
def test_family_contract(check, tmp_path, monkeypatch):
    contract.run(check, SPEC, tmp_path, monkeypatch)


@pytest.mark.cuda
def test_fp16_cuda_within_twice_pytorchs_own_error():
    contract.check_fp16_cuda(_tiny())


def test_srresnet_x4_parameter_count_matches_paper_layout():
    assert count_parameters(Generator("srresnet_x4")) == 1_550_659


@pytest.mark.parametrize("name,ups", [("srresnet_x2", 1), ("srresnet_x4", 2), ("srresnet_x8", 3)])
def test_presets_scale_and_upsample_blocks(name, ups):
    cfg = GeneratorConfig.from_name(name)
    assert cfg.num_upsample == ups and cfg.scale == 2**ups
    assert len(Generator(cfg).upsample) == ups


def test_unknown_preset_and_bad_scale_raise():
    with pytest.raises(ValueError, match="unknown generator preset"):
        GeneratorConfig.from_name("nope")
    with pytest.raises(ValueError, match="scale"):
        GeneratorConfig(scale=3)


def _paper_forward(sd: dict, x: torch.Tensor, num_blocks: int, num_upsample: int) -> torch.Tensor:
    """The generator of Ledig et al. (Fig. 4), written from the paper with F.conv2d and the
    state dict's tensors only: BN (inference) and PReLU as formulas, PixelShuffle by its
    definition out[c, 2h + i, 2w + j] = in[4c + 2i + j, h, w] (Shi et al.)."""

    def conv(t, name):
        w = sd[f"{name}.weight"]
        return F.conv2d(t, w, sd[f"{name}.bias"], padding=w.shape[-1] // 2)

    def bn(t, name, eps=1e-5):
        mean, var = sd[f"{name}.running_mean"], sd[f"{name}.running_var"]
        gamma, beta = sd[f"{name}.weight"], sd[f"{name}.bias"]
        return ((t - mean[:, None, None]) / torch.sqrt(var[:, None, None] + eps)) * gamma[:, None, None] + beta[
            :, None, None
        ]

    def prelu(t, name):
        return torch.where(t >= 0, t, sd[f"{name}.weight"][:, None, None] * t)

    def shuffle2(t):
        n, c4, h, w = t.shape
        return t.reshape(n, c4 // 4, 2, 2, h, w).permute(0, 1, 4, 2, 5, 3).reshape(n, c4 // 4, 2 * h, 2 * w)

    head = prelu(conv(x, "conv_first"), "act_first")  # conv 9x9 + PReLU
    t = head
    for i in range(num_blocks):  # conv-BN-PReLU-conv-BN, + the block input
        b = f"body.{i}"
        t = t + bn(conv(prelu(bn(conv(t, f"{b}.conv1"), f"{b}.bn1"), f"{b}.act"), f"{b}.conv2"), f"{b}.bn2")
    t = bn(conv(t, "conv_body"), "bn_body") + head  # conv-BN, + the long skip from the head
    for i in range(num_upsample):  # conv 3x3 C -> 4C, PixelShuffle x2, PReLU(C)
        t = prelu(shuffle2(conv(t, f"upsample.{i}.conv")), f"upsample.{i}.act")
    return conv(t, "conv_last")  # conv 9x9 C -> 3


def test_forward_matches_the_paper_written_functionally():
    # random BN statistics and per-channel PReLU slopes: a BN, slope or shuffle-order slip shows
    g = randomize_bn(Generator("tiny_x4"), seed=3)
    x = torch.rand(2, 3, 7, 13)
    with torch.no_grad():
        got = g(x)
        want = _paper_forward(g.state_dict(), x, num_blocks=2, num_upsample=2)
    assert got.shape == (2, 3, 28, 52)
    assert torch.allclose(got, want, rtol=0, atol=1e-5), (got - want).abs().max()


def test_plan_receptive_radius_is_the_modules_reach():
    """Plan.receptive_radius (the one copy; the tiler's halo is its ceiling) against what the
    module does: a change in one LR column moves HR outputs exactly scale x radius HR pixels
    beyond that column's own scale x scale footprint, on either side, and no further."""
    g = Generator("tiny_x4").eval()
    plan = compile_plan(g)
    # by hand: head 9x9 4 + 2 blocks x 2 convs 3x3 4 + conv_body 1 + upsample convs 1 (at 1x) and
    # 1/2 (at 2x) + tail 9x9 at 4x 4/4 = 11.5 LR pixels
    assert plan.receptive_radius == 11.5 and plan.halo == 12
    x = torch.rand(1, 3, 4, 40)
    reach = []
    for col in (0, 39):
        x2 = x.clone()
        x2[..., col] += 0.5
        with torch.no_grad():
            d = (g(x) - g(x2)).abs().amax(dim=(0, 1, 2))
        moved = torch.nonzero(d > 0)
        reach.append((int(moved.min()), int(moved.max())))
    # column 0 is HR 0..3, moved up to 3 + 4 x 11.5; column 39 is HR 156..159, moved down to 156 - 46
    assert reach == [(0, 49), (110, 159)]


def test_to_unit_range_maps_and_clamps():
    y = torch.tensor([-2.0, -1.0, 0.0, 1.0, 3.0])
    assert torch.equal(to_unit_range(y), torch.tensor([0.0, 0.0, 0.5, 1.0, 1.0]))


def test_discriminator_logits_and_any_size():
    d = Discriminator().eval()
    assert [m.out_channels for m in d.features if isinstance(m, torch.nn.Conv2d)] == list(Discriminator.CHANNELS)
    assert [m.stride[0] for m in d.features if isinstance(m, torch.nn.Conv2d)] == [1, 2] * 4
    x = torch.rand(2, 3, 96, 96) * 2 - 1
    with torch.no_grad():
        out = d(x)
        # at 96x96 the adaptive pool is the identity: same logits without it
        f = d.features(x)
        assert f.shape[-2:] == (6, 6)
        assert torch.allclose(out, d.classifier(f).squeeze(1))
        assert d(torch.rand(1, 3, 40, 57)).shape == (1,)
    with pytest.raises(ValueError, match="at least 16x16"):
        d(torch.rand(1, 3, 8, 8))
