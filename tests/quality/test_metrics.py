import json
import math

import numpy as np
import pytest
from PIL import Image

from srgan_fast.io.images import list_images
from srgan_fast.quality.evaluate import evaluate, format_table
from srgan_fast.quality.metrics import (
    gradient_magnitude,
    imresize,
    modcrop,
    psnr,
    psnr_ssim_y,
    rgb_to_y,
    ssim,
    texture_ratio,
)

from ..conftest import need


def test_rgb_to_y_is_bt601_matlab():
    img = np.array([[[0, 0, 0], [255, 255, 255], [255, 0, 0]]], dtype=np.uint8)
    y = rgb_to_y(img)
    assert y[0, 0] == pytest.approx(16.0)
    assert y[0, 1] == pytest.approx(235.0)
    assert y[0, 2] == pytest.approx(16 + 65.481)
    with pytest.raises(TypeError, match="uint8"):
        rgb_to_y(img.astype(np.float32))


def test_psnr_known_values():
    a = np.zeros((8, 8))
    assert psnr(a, a + 1.0) == pytest.approx(20 * math.log10(255.0))
    assert psnr(a, a) == math.inf


def test_ssim_identity_and_known_drop():
    rng = np.random.default_rng(0)
    a = rng.uniform(0, 255, (40, 40))
    assert ssim(a, a) == pytest.approx(1.0)
    # a constant offset only changes the luminance term
    b = a + 10
    assert 0.9 < ssim(a, b) < 1.0
    assert ssim(a, 255 - a) < 0  # structure reversed
    with pytest.raises(ValueError, match="11x11"):
        ssim(a[:5, :5], a[:5, :5])


def test_shave_and_crop_rules():
    """shave=4 drops exactly 4 pixels on every border, PSNR and SSIM alike; an HR image one
    pixel larger is cropped to the SR's size from the top-left."""
    hr = np.random.default_rng(0).integers(0, 171, (25, 25, 3), dtype=np.uint8)  # 25x25: cropped to 24x24
    kept = np.zeros((24, 24), bool)
    kept[4:20, 4:20] = True  # 16x16 are scored
    # SR differs from HR only in the 4-pixel band that is shaved, on all four sides: a perfect score
    sr = hr[:24, :24].copy()
    sr[~kept] += 85
    p, s = psnr_ssim_y(sr, hr, shave=4)
    assert p == math.inf and s == pytest.approx(1.0)
    # SR differs only on the outermost scored ring (rows and columns 4 and 19): 60 of the 256 scored
    # pixels, each of whose Y moves by 85 * (65.481 + 128.553 + 24.966) / 255 = 73, so the MSE is
    # 60 * 73^2 / 256 = 1248.98 and the PSNR 10 log10(255^2 / 1248.98) = 17.1652 dB
    ring = kept.copy()
    ring[5:19, 5:19] = False
    assert ring.sum() == 60
    sr = hr[:24, :24].copy()
    sr[ring] += 85
    p, s = psnr_ssim_y(sr, hr, shave=4)
    assert p == pytest.approx(17.1652, abs=1e-4)
    assert s == pytest.approx(ssim(rgb_to_y(sr)[4:20, 4:20], rgb_to_y(hr)[4:20, 4:20])) and s < 1.0
    with pytest.raises(ValueError, match="does not match"):
        psnr_ssim_y(sr[:10], hr, shave=4)


def test_gradient_magnitude_known_values():
    ramp = np.tile(np.arange(6, dtype=np.float64) * 3.0, (5, 1))  # d/dx = 3, d/dy = 0
    assert gradient_magnitude(ramp) == pytest.approx(3.0)
    assert gradient_magnitude(ramp.T) == pytest.approx(3.0)
    diag = np.add.outer(np.arange(4.0), np.arange(4.0))  # dx = dy = 1 everywhere
    assert gradient_magnitude(diag) == pytest.approx(math.sqrt(2.0))
    # a single step at column 2: only the 4 rows' differences at x = 1 -> 2 are 10
    step = np.zeros((5, 4))
    step[:, 2:] = 10.0
    assert gradient_magnitude(step) == pytest.approx(10.0 * 4 / (4 * 3))
    assert gradient_magnitude(np.full((3, 3), 7.0)) == 0.0
    with pytest.raises(ValueError, match="2-D"):
        gradient_magnitude(np.zeros((1, 5)))


def test_texture_ratio_one_for_the_photo_below_one_when_blurred_above_when_noisy():
    rng = np.random.default_rng(0)
    hr = np.clip(rng.normal(128, 40, (64, 64, 3)), 0, 255).astype(np.uint8)
    assert texture_ratio(hr, hr, shave=4) == pytest.approx(1.0)
    blurred = imresize(imresize(hr, scale=0.25), scale=4)
    r = texture_ratio(blurred, hr, shave=4)
    assert 0.0 < r < 0.6, r
    smooth = imresize(imresize(hr, scale=0.5), scale=2)
    noisy = np.clip(smooth.astype(np.int16) + rng.integers(-60, 61, smooth.shape), 0, 255).astype(np.uint8)
    assert texture_ratio(noisy, smooth, shave=4) > 1.5
    # the HR side is cropped to the SR size like psnr_ssim_y, and a flat HR is refused
    assert texture_ratio(hr[:60, :60], np.pad(hr, ((0, 3), (0, 3), (0, 0)))[:63, :63], shave=4) == pytest.approx(
        texture_ratio(hr[:60, :60], hr[:60, :60], shave=4)
    )
    with pytest.raises(ValueError, match="flat"):
        texture_ratio(hr, np.full_like(hr, 9), shave=4)


def test_imresize_constant_and_linear_ramps():
    c = np.full((13, 17, 3), 77, np.uint8)
    assert np.array_equal(imresize(c, scale=4), np.full((52, 68, 3), 77, np.uint8))
    assert np.array_equal(imresize(c, scale=0.25), np.full((4, 5, 3), 77, np.uint8))
    ramp = np.tile(np.arange(32, dtype=np.float64), (8, 1))
    up = imresize(ramp, scale=2)
    # cubic convolution reproduces linear functions away from the border
    x = (np.arange(64) + 0.5) / 2 - 0.5
    assert np.allclose(up[4, 8:-8], x[8:-8], atol=1e-12)
    with pytest.raises(ValueError, match="exactly one"):
        imresize(c)


def test_imresize_matches_matlab_lr_images_bit_exactly(datasets):
    need(datasets, "Set5/HR", "Set5/LR_x4", "Set14/HR", "Set14/LR_x4")
    total = differ = 0
    for s in ("Set5", "Set14"):
        for f in list_images(datasets / s / "HR"):
            hr = np.array(Image.open(f))
            lr = np.array(Image.open(datasets / s / "LR_x4" / f.name))
            mine = imresize(modcrop(hr, 4), scale=0.25)
            total += mine.size
            differ += int((mine != lr).sum())
    assert total > 400_000
    assert differ == 0, f"{differ} of {total} values differ from MATLAB's LR_x4"


# x4 Y-PSNR (dB) / SSIM. MEASURED_*: our own measurement, with this repository's evaluate(), of
# MATLAB bicubic and of the SR images the authors published (x4/SRResNet-MSE, x4/SRGAN-VGG54 in
# the datasets folder); the test holds evaluate() to them (0.05 dB, 0.002 SSIM). PAPER_PSNR:
# what Ledig et al. (CVPR 2017) print in Table 2, kept beside for reference. The two agree
# within 0.03 dB on Set5, but on Set14 our measurement of the authors' own outputs is 0.10-0.11
# dB above the paper (28.60 vs 28.49, 26.12 vs 26.02): the published images do not reproduce
# the printed Set14 column exactly, so the paper's figure is checked only to 0.15 dB. The
# paper's SSIMs (0.9019 / 0.8184 for SRResNet) come from a different SSIM implementation and
# are not comparable with ours.
# MEASURED_TEXTURE: metrics.texture_ratio (mean Y gradient magnitude of SR over HR), our own
# measurement (2026-12-06): the GAN outputs carry 0.93-0.96 of the photos' gradient, the MSE
# outputs 0.53-0.68, bicubic 0.40-0.54.
EVAL_CASES = [
    # dataset, method, MEASURED_PSNR, MEASURED_SSIM, PAPER_PSNR, MEASURED_TEXTURE
    ("Set5", "bicubic", 28.43, 0.8111, 28.43, 0.541),
    ("Set5", "x4/SRResNet-MSE", 32.08, 0.8939, 32.05, 0.682),
    ("Set5", "x4/SRGAN-VGG54", 29.43, 0.8356, 29.40, 0.961),
    ("Set14", "x4/SRResNet-MSE", 28.60, 0.7819, 28.49, 0.528),
    ("Set14", "x4/SRGAN-VGG54", 26.12, 0.6958, 26.02, 0.928),
]


@pytest.mark.parametrize("dataset,method,measured_psnr,measured_ssim,paper_psnr,measured_texture", EVAL_CASES)
def test_eval_reproduces_our_measurement_of_the_published_outputs(
    datasets, dataset, method, measured_psnr, measured_ssim, paper_psnr, measured_texture, tmp_path
):
    need(datasets, f"{dataset}/HR")
    m = method if method == "bicubic" else str(need(datasets, f"{dataset}/{method}") / dataset / method)
    res = evaluate(datasets / dataset, method=m, json_path=tmp_path / "r.json", progress=False)
    got = res["mean_psnr"]
    where = f"{dataset} {method}: evaluate() gives {got:.3f} dB / SSIM {res['mean_ssim']:.4f}"
    assert abs(got - measured_psnr) <= 0.05, (
        f"{where}; our earlier measurement of these outputs: {measured_psnr:.2f} dB "
        f"(paper's Table 2: {paper_psnr:.2f})\n{format_table(res)}"
    )
    assert abs(res["mean_ssim"] - measured_ssim) <= 0.002, f"{where}; our measured SSIM: {measured_ssim:.4f}"
    assert abs(got - paper_psnr) <= 0.15, f"{where}; paper's Table 2: {paper_psnr:.2f} dB"
    assert abs(res["mean_texture"] - measured_texture) <= 0.005, (
        f"{where}; texture {res['mean_texture']:.4f}, our earlier measurement {measured_texture:.3f}"
    )
    assert json.loads((tmp_path / "r.json").read_text())["mean_psnr"] == res["mean_psnr"]
    assert len(res["images"]) == {"Set5": 5, "Set14": 14}[dataset]
