"""Every bundled model (srgan_fast/weights/*.safetensors: srresnet_x4, srgan_x4, ...) runs on the
engine exactly as its plain module, tiled or not, and scores on Set5 what its model card says."""

import numpy as np
import pytest
import torch

from srgan_fast.engine import Engine
from srgan_fast.families.srresnet.arch import output_to_unit
from srgan_fast.quality.evaluate import evaluate
from srgan_fast.weights import bundled_models, load_generator

from ..conftest import need

BUNDLED = [m["name"] for m in bundled_models()]


def test_the_paper_models_are_bundled_and_listed(capsys):
    from srgan_fast.cli import main

    assert {"srresnet_x4", "srgan_x4"} <= set(BUNDLED), BUNDLED
    assert main(["models", "-q"]) == 0
    rows = {r.split("|")[1].strip(): r for r in capsys.readouterr().out.splitlines() if r.startswith("| srg")}
    assert "| srresnet | x4 | 16 blocks x 64 |" in rows["srgan_x4"], rows
    card = load_generator("srgan_x4").card
    assert card["steps"] >= 1000 and card["paper_steps"] == 200_000 and card["train_config"]["phase"] == "srgan"
    assert f"({card['eval']['Set5']['texture']:.2f})" in rows["srgan_x4"]


def test_upscale_with_srgan_x4_runs_offline(tmp_path, capsys):
    from PIL import Image

    from srgan_fast.cli import main

    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 256, (10, 12, 3), dtype=np.uint8)).save(tmp_path / "in.png")
    assert main(["upscale", str(tmp_path / "in.png"), "-o", str(tmp_path / "o.png"), "--model", "srgan_x4",
                 "--backend", "torch", "-q"]) == 0  # fmt: skip
    got = np.asarray(Image.open(tmp_path / "o.png"))
    want = Engine("srgan_x4", backend="reference").upscale(np.asarray(Image.open(tmp_path / "in.png")))
    assert got.shape == (40, 48, 3) and np.abs(got.astype(int) - want.astype(int)).max() <= 1


@pytest.fixture(scope="module")
def crop(datasets):
    """A real LR photo crop with texture (Set14 baboon, MATLAB LR_x4), 29x37, float [0, 1]."""
    from srgan_fast.io.images import load_image

    need(datasets, "Set14/LR_x4/baboon.png")
    return load_image(datasets / "Set14/LR_x4/baboon.png")[40:69, 60:97].astype(np.float32)[None] / 255


@pytest.mark.parametrize("name", BUNDLED)
def test_a_bundled_model_on_the_engine_equals_its_module_tiled_or_not(name, crop):
    g = load_generator(name)
    with torch.no_grad():
        want = output_to_unit(g, g(torch.from_numpy(crop).permute(0, 3, 1, 2))).clamp(0, 1).permute(0, 2, 3, 1).numpy()
    got = Engine(g, backend="torch").upscale(crop)
    err = np.abs(got - want)
    assert err.max() <= 1e-4, f"{name}: engine vs module max {err.max():.2e} mean {err.mean():.2e}"
    tiled = Engine(g, backend="torch", tile=16).upscale(crop)  # 29x37 in tiles of 16: 3x3 tiles
    d = np.abs(tiled - got)
    assert d.max() <= 1e-5, f"{name}: tiled vs untiled max {d.max():.2e} at {np.unravel_index(d.argmax(), d.shape)}"
    u8 = Engine(g, backend="torch").upscale((crop * 255).round().astype(np.uint8))
    assert u8.dtype == np.uint8 and np.abs(u8.astype(np.float32) - want * 255).max() <= 1.0


@pytest.mark.parametrize("name", BUNDLED)
def test_a_bundled_model_scores_what_its_card_says(name, datasets):
    need(datasets, "Set5/HR")
    card = load_generator(name).card
    res = evaluate(datasets / "Set5", method=name, progress=False)
    want = card["eval"]["Set5"]
    assert abs(res["mean_psnr"] - want["psnr"]) <= 0.01, (name, res["mean_psnr"], want)
    assert abs(res["mean_ssim"] - want["ssim"]) <= 1e-4, (name, res["mean_ssim"], want)
    if "texture" in want:
        assert abs(res["mean_texture"] - want["texture"]) <= 1e-3, (name, res["mean_texture"], want)
