"""Foreign SRResNet/SRGAN checkpoints mapped onto Generator by order and shape; made in the test.

Two foreign layouts, each with its own module code (written to a file, as a user would pass
it with --module): a BasicSR-style naming with BN (torch.save, nested under "params") and a
flat `layers.N` naming without BN, bias-free body convs, single-slope PReLUs and output in
[0, 1] (safetensors). Nothing is downloaded.
"""

import numpy as np
import pytest
import torch

from srgan_fast.cli import main
from srgan_fast.engine import Engine
from srgan_fast.families.srresnet.convert import map_foreign_srresnet
from srgan_fast.weights import BUNDLED_DIR, WeightsError, load_generator
from srgan_fast.weights.convert import convert, load_checkpoint, load_module

from ..conftest import diff_msg, randomize_bn

FOREIGN = '''
import math
import torch
from torch import nn


class Block(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.conv1 = nn.Conv2d(c, c, 3, 1, 1)
        self.bn1 = nn.BatchNorm2d(c)
        self.prelu = nn.PReLU(c)
        self.conv2 = nn.Conv2d(c, c, 3, 1, 1)
        self.bn2 = nn.BatchNorm2d(c)

    def forward(self, x):
        return x + self.bn2(self.conv2(self.prelu(self.bn1(self.conv1(x)))))


class MSRResNetBN(nn.Module):
    """BasicSR-style names, the paper's layers (with BN); output in [-1, 1]."""

    def __init__(self, num_feat=16, num_block=2, upscale=4):
        super().__init__()
        self.conv_first = nn.Conv2d(3, num_feat, 9, 1, 4)
        self.prelu_first = nn.PReLU(num_feat)
        self.body = nn.Sequential(*[Block(num_feat) for _ in range(num_block)])
        self.conv_after_body = nn.Conv2d(num_feat, num_feat, 3, 1, 1)
        self.bn_after_body = nn.BatchNorm2d(num_feat)
        ups = []
        for _ in range(int(math.log2(upscale))):
            ups += [nn.Conv2d(num_feat, 4 * num_feat, 3, 1, 1), nn.PixelShuffle(2), nn.PReLU(num_feat)]
        self.upconv = nn.Sequential(*ups)
        self.conv_last = nn.Conv2d(num_feat, 3, 9, 1, 4)

    def forward(self, x):
        f = self.prelu_first(self.conv_first(x))
        t = self.bn_after_body(self.conv_after_body(self.body(f))) + f
        return self.conv_last(self.upconv(t))


class FlatNoBN(nn.Module):
    """layers.N names, no BN, bias-free body convs, one PReLU slope each; output in [0, 1]."""

    def __init__(self, c=8, blocks=1):
        super().__init__()
        L = [nn.Conv2d(3, c, 9, padding=4), nn.PReLU()]
        for _ in range(blocks):
            L += [nn.Conv2d(c, c, 3, padding=1, bias=False), nn.PReLU(), nn.Conv2d(c, c, 3, padding=1, bias=False)]
        L += [nn.Conv2d(c, c, 3, padding=1), nn.Conv2d(c, 4 * c, 3, padding=1), nn.PixelShuffle(2), nn.PReLU()]
        L += [nn.Conv2d(c, 3, 9, padding=4)]
        self.layers = nn.ModuleList(L)
        self.blocks = blocks

    def forward(self, x):
        L = self.layers
        f = L[1](L[0](x))
        y = f
        for b in range(self.blocks):
            i = 2 + 3 * b
            y = y + L[i + 2](L[i + 1](L[i](y)))
        i = 2 + 3 * self.blocks
        t = L[i](y) + f
        return L[i + 4](L[i + 3](L[i + 2](L[i + 1](t))))
'''


@pytest.fixture()
def foreign_file(tmp_path):
    f = tmp_path / "their_arch.py"
    f.write_text(FOREIGN)
    return f


def _randomize(m, seed):
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in m.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * 0.1 + (0.2 if p.dim() == 1 else 0))
    return randomize_bn(m, seed)


def test_basicsr_style_with_bn_parity_against_its_module(tmp_path, foreign_file):
    src = _randomize(load_module(f"{foreign_file}:MSRResNetBN"), 1)
    ckpt = tmp_path / "msrresnet.pth"
    torch.save({"params": src.state_dict(), "iter": 100}, ckpt)
    rep = convert(ckpt, tmp_path / "m.safetensors", module=f"{foreign_file}:MSRResNetBN")
    assert rep.family == "srresnet" and rep.max_abs_diff is not None and rep.max_abs_diff <= 1e-5
    assert rep.config["num_blocks"] == 2 and rep.config["channels"] == 16 and rep.config["scale"] == 4
    # the engine on the converted file == the source module, mapped to [0, 1]
    x = torch.rand(1, 3, 9, 10)
    with torch.no_grad():
        want = ((src(x) + 1) / 2).clamp(0, 1)
    got = Engine(str(rep.path), backend="torch").upscale(x.permute(0, 2, 3, 1).numpy())
    d = np.abs(got - want.permute(0, 2, 3, 1).numpy()).max()
    assert d <= 1e-5, d


def test_flat_layout_without_bn_01_output_from_safetensors(tmp_path, foreign_file):
    from safetensors.torch import save_file

    src = _randomize(load_module(f"{foreign_file}:FlatNoBN"), 2)
    ckpt = tmp_path / "flat.safetensors"
    save_file({k: v.contiguous() for k, v in src.state_dict().items()}, str(ckpt))
    state = load_checkpoint(ckpt)
    mapped, cfg, origin = map_foreign_srresnet(state, output_range=(0, 1))
    assert (cfg.num_blocks, cfg.channels, cfg.scale) == (1, 8, 2)
    assert origin["body.0.conv2.weight"] == "layers.4.weight" and origin["conv_body.weight"] == "layers.5.weight"
    assert torch.equal(mapped["body.0.conv1.bias"], torch.zeros(8))  # bias-free conv
    assert torch.equal(mapped["act_first.weight"], state["layers.1.weight"].expand(8))  # one slope, per channel
    rep = convert(ckpt, tmp_path / "f.safetensors", output_range=(0, 1), module=f"{foreign_file}:FlatNoBN")
    assert rep.max_abs_diff <= 1e-5
    g = load_generator(rep.path)
    x = torch.rand(2, 3, 7, 6)
    with torch.no_grad():
        want = src(x).clamp(0, 1)  # a [0, 1] model: the engine's output is its clamp
        got = ((g(x) + 1) / 2).clamp(0, 1)
    assert (got - want).abs().max() <= 1e-5, diff_msg(got, want)
    # without the module code: a self-check of every tensor
    rep2 = convert(ckpt, tmp_path / "g.safetensors", output_range=(0, 1))
    assert "self-check" in rep2.check and "identical" in rep2.check


def test_mismatch_lists_what_did_not_match(tmp_path, foreign_file):
    src = _randomize(load_module(f"{foreign_file}:MSRResNetBN"), 1)
    sd = {k: v for k, v in src.state_dict().items() if not k.startswith("body.1.prelu")}  # drop one PReLU
    torch.save(sd, tmp_path / "broken.pth")
    with pytest.raises(WeightsError, match=r"(?s)does not map.*prelu layers: checkpoint has 4, expected 5"):
        convert(tmp_path / "broken.pth", tmp_path / "x.safetensors")
    sd = dict(src.state_dict())
    sd["extra.thing"] = torch.zeros(2, 2)
    torch.save(sd, tmp_path / "extra.pth")
    with pytest.raises(WeightsError, match="not conv, BN or PReLU parameters: extra.thing"):
        convert(tmp_path / "extra.pth", tmp_path / "x.safetensors")
    # a preset that does not fit: each wrong shape is named
    torch.save(src.state_dict(), tmp_path / "ok.pth")
    with pytest.raises(WeightsError, match=r"conv #0: checkpoint conv_first.weight \(16, 3, 9, 9\) vs conv_first"):
        convert(tmp_path / "ok.pth", tmp_path / "x.safetensors", config="srresnet_x4")
    assert not (tmp_path / "x.safetensors").exists()


class NotWeights:
    """Any object beyond tensors and containers: unpickling it would run its class's code."""


def test_pickled_code_is_refused(tmp_path):
    torch.save({"model": NotWeights(), "w": torch.zeros(1)}, tmp_path / "whole.pth")
    with pytest.raises(WeightsError, match="pickles objects other than tensors and nothing of it was run"):
        load_checkpoint(tmp_path / "whole.pth")


def test_bundled_model_round_trips_bit_for_bit(tmp_path):
    src = BUNDLED_DIR / "srresnet_x4.safetensors"
    rep = convert(src, tmp_path / "again.safetensors")
    a, b = load_generator(src).state_dict(), load_generator(rep.path).state_dict()
    assert list(a) == list(b) and all(torch.equal(a[k], b[k]) for k in a)


def test_cli_convert_parity_and_error_exit(tmp_path, foreign_file, capsys):
    src = _randomize(load_module(f"{foreign_file}:MSRResNetBN", {"num_feat": 8, "num_block": 1, "upscale": 2}), 3)
    torch.save(src.state_dict(), tmp_path / "s.pth")
    kw = '{"num_feat": 8, "num_block": 1, "upscale": 2}'
    args = ["convert", str(tmp_path / "s.pth"), str(tmp_path / "s.safetensors"), "--module",
            f"{foreign_file}:MSRResNetBN", "--module-args", kw]  # fmt: skip
    assert main(args) == 0
    assert "parity vs" in capsys.readouterr().out
    assert main(["convert", str(tmp_path / "s.pth"), str(tmp_path / "t.safetensors"), "--config", "tiny_x4"]) == 2
    err = capsys.readouterr().err
    assert "what did not match" in err and "conv #0" in err


def test_models_lists_family_and_how_to_bring_your_own(capsys):
    assert main(["models"]) == 0
    out = capsys.readouterr().out
    assert "| srresnet_x4 | srresnet | x4 | 16 blocks x 64 |" in out
    assert "srgan-fast convert" in out and "SRVGGNetCompact" in out and "--model" in out
    assert main(["models", "-q"]) == 0
    assert "convert" not in capsys.readouterr().out
