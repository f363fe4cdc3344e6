import pytest
import torch

from srgan_fast.families.srresnet.arch import Generator
from srgan_fast.weights import (
    WeightsError,
    bundled_models,
    load_generator,
    read_metadata,
    save_generator,
)
from srgan_fast.weights.convert import convert


def _randomize(g):
    with torch.no_grad():
        for b in g.modules():
            if isinstance(b, torch.nn.BatchNorm2d):
                b.running_mean.uniform_(-0.5, 0.5)
                b.running_var.uniform_(0.5, 2.0)
    return g


def test_round_trip_is_bit_exact(tmp_path):
    g = _randomize(Generator("tiny_x4"))
    p = save_generator(g, tmp_path / "m.safetensors", card={"note": "x"})
    h = load_generator(p)
    for (k, a), (k2, b) in zip(g.state_dict().items(), h.state_dict().items()):
        assert k == k2 and torch.equal(a, b), k
    meta = read_metadata(p)
    assert meta["config"]["num_blocks"] == 2 and meta["card"] == {"note": "x"}
    x = torch.rand(1, 3, 9, 11)
    with torch.no_grad():
        assert torch.equal(g.eval()(x), h(x))


def test_wrong_keys_and_shapes_are_named(tmp_path):
    g = Generator("tiny_x4")
    sd = g.state_dict()
    sd["body.0.conv1.weight"] = torch.zeros(16, 16, 5, 5)
    del sd["conv_last.bias"]
    sd["extra.weight"] = torch.zeros(1)
    p = save_generator(sd, tmp_path / "bad.safetensors", config=g.config)
    with pytest.raises(WeightsError) as e:
        load_generator(p)
    msg = str(e.value)
    assert "conv_last.bias" in msg and "extra.weight" in msg and "body.0.conv1.weight" in msg
    assert "(16, 16, 5, 5)" in msg


def test_pickle_refused_with_conversion_hint_and_convert_works(tmp_path):
    g = _randomize(Generator("tiny_x4"))
    pth = tmp_path / "m.pth"
    torch.save({"state_dict": {"module." + k: v for k, v in g.state_dict().items()}}, pth)
    with pytest.raises(WeightsError, match="pickle.*srgan-fast convert"):
        load_generator(pth)
    out = convert(pth, tmp_path / "m.safetensors", family="srresnet", config="tiny_x4").path
    h = load_generator(out)
    assert all(torch.equal(a, b) for a, b in zip(g.state_dict().values(), h.state_dict().values()))


def test_missing_and_garbage_files(tmp_path):
    with pytest.raises(WeightsError, match="no such weights file"):
        load_generator(tmp_path / "nope.safetensors")
    junk = tmp_path / "junk.safetensors"
    junk.write_bytes(b"hello world, not weights")
    with pytest.raises(WeightsError, match="not a safetensors file"):
        load_generator(junk)
    with pytest.raises(WeightsError, match="unknown model"):
        load_generator("no_such_bundled_model")


def test_fp16_storage_loads_as_fp32(tmp_path):
    g = Generator("tiny_x4")
    p = save_generator(g, tmp_path / "h.safetensors", dtype=torch.float16)
    h = load_generator(p)
    w = h.conv_first.weight
    assert w.dtype == torch.float32
    assert torch.equal(w, g.conv_first.weight.half().float())


def test_bundled_models_are_listed_and_load():
    models = bundled_models()
    assert "srresnet_x4" in [m["name"] for m in models]
    for m in models:
        assert "error" not in m, m
        g = load_generator(m["name"])
        assert g.config.scale == m["config"]["scale"]


def test_bundled_default_reaches_its_card_on_set5(datasets):
    from srgan_fast.quality.evaluate import evaluate

    from ..conftest import need

    need(datasets, "Set5/HR")
    g = load_generator("srresnet_x4")
    res = evaluate(datasets / "Set5", method=g, progress=False)
    assert abs(res["mean_psnr"] - g.card["eval"]["Set5"]["psnr"]) < 0.01
    assert res["mean_psnr"] > 31.0  # bicubic is 28.43
