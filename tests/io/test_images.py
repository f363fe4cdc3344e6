import numpy as np
import pytest
from PIL import Image

from srgan_fast.io.images import ImageError, load_image, save_image


def test_gray_rgba_palette_and_16bit(tmp_path):
    g = np.arange(35, dtype=np.uint8).reshape(5, 7) * 7
    Image.fromarray(g, "L").save(tmp_path / "g.png")
    rgb = load_image(tmp_path / "g.png")
    assert rgb.shape == (5, 7, 3) and np.array_equal(rgb[..., 1], g) and np.array_equal(rgb[..., 2], g)

    rgba = np.random.default_rng(0).integers(0, 256, (4, 6, 4), dtype=np.uint8)
    Image.fromarray(rgba, "RGBA").save(tmp_path / "a.png")
    rgb, a = load_image(tmp_path / "a.png", with_alpha=True)
    assert np.array_equal(rgb, rgba[..., :3]) and np.array_equal(a, rgba[..., 3])

    g16 = np.array([[0, 257, 65535, 32896]], dtype=np.uint16)
    Image.fromarray(g16).save(tmp_path / "g16.png")
    assert Image.open(tmp_path / "g16.png").mode.startswith("I")
    rgb16 = load_image(tmp_path / "g16.png")
    assert rgb16[0, :, 0].tolist() == [0, 1, 255, 128]

    pal = Image.fromarray(g, "L").convert("P")
    pal.save(tmp_path / "p.png")
    assert np.array_equal(load_image(tmp_path / "p.png")[..., 0], g)


def test_save_round_trip_with_alpha(tmp_path):
    rgb = np.random.default_rng(1).integers(0, 256, (3, 5, 3), dtype=np.uint8)
    alpha = np.arange(15, dtype=np.uint8).reshape(3, 5) * 17  # every pixel its own value
    save_image(tmp_path / "sub" / "o.png", rgb, alpha)
    r, a = load_image(tmp_path / "sub" / "o.png", with_alpha=True)
    assert np.array_equal(r, rgb) and np.array_equal(a, alpha)
    with pytest.raises(ValueError, match="HxWx3 uint8"):
        save_image(tmp_path / "x.png", rgb.astype(np.float32))


def test_bad_files(tmp_path):
    with pytest.raises(ImageError, match="no such file"):
        load_image(tmp_path / "none.png")
    (tmp_path / "t.png").write_text("not an image")
    with pytest.raises(ImageError, match="not an image"):
        load_image(tmp_path / "t.png")
    with pytest.raises(ImageError, match="folder"):
        load_image(tmp_path)
