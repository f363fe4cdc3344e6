import pytest
import torch

from srgan_fast.models import (
    Discriminator,
    Generator,
    GeneratorConfig,
    count_parameters,
    receptive_radius_lr,
    to_unit_range,
)


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


def test_forward_matches_hand_composed_layers():
    g = Generator("tiny_x4").eval()
    x = torch.rand(1, 3, 7, 13)
    with torch.no_grad():
        h = g.act_first(g.conv_first(x))
        t = h
        for b in g.body:
            t = t + b.bn2(b.conv2(b.act(b.bn1(b.conv1(t)))))
        t = g.bn_body(g.conv_body(t)) + h
        for u in g.upsample:
            t = torch.nn.functional.prelu(torch.nn.functional.pixel_shuffle(u.conv(t), 2), u.act.weight)
        want = g.conv_last(t)
        got = g(x)
    assert got.shape == (1, 3, 28, 52)
    assert torch.equal(got, want)


def test_receptive_radius_and_locality():
    cfg = GeneratorConfig.from_name("srresnet_x4")
    assert receptive_radius_lr(cfg) == pytest.approx(39.5)
    # tiny: a change at LR column 0 cannot reach HR pixels further than the radius
    g = Generator("tiny_x4").eval()
    r = receptive_radius_lr(g.config)
    x = torch.rand(1, 3, 4, 40)
    x2 = x.clone()
    x2[..., 0] += 0.5
    with torch.no_grad():
        d = (g(x) - g(x2)).abs().amax(dim=(0, 1, 2))
    reach = int(torch.nonzero(d > 0).max())
    assert reach < (r + 1) * 4 and reach > 4


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
