"""frame_io against the standards, not against our own formulas: the 8-bit Y'CbCr codes of the
colour bars and primaries, written here as literal numbers, for both the C++ twin
(srgan_fast.io.yuv) and the numpy reference (srgan_fast.io.yuv_reference).

Sources of the numbers:
* ITU-R BT.601-7, 2.5.1-2.5.3: E'Y = 0.299 R + 0.587 G + 0.114 B; 8-bit limited range
  Y = 219 E'Y + 16, Cb/Cr = 224 E'Cb/Cr + 128 (black 16, white 235, chroma 16..240).
* ITU-R BT.709-6, items 3.2-3.5: E'Y = 0.2126 R + 0.7152 G + 0.0722 B, same quantization.
* Full range: ITU-T T.871 (JFIF) for BT.601 (Y = 255 E'Y, C = 255 E'C + 128, rounded and
  clipped to 0..255) and ITU-T H.273 (VideoFullRangeFlag = 1) for BT.709.
The bar codes (100% and 75% amplitude, order white, yellow, cyan, green, magenta, red, blue,
black) are the ones printed in colour-bar tables (e.g. K. Jack, Video Demystified, ch. 3);
each was also checked against the equations above in exact arithmetic: none lies within
0.03 of a rounding boundary, so float32 arithmetic cannot flip them.
"""

import numpy as np
import pytest

from srgan_fast.io import yuv_reference as ref

BARS_RGB = np.array([(1, 1, 1), (1, 1, 0), (0, 1, 1), (0, 1, 0), (1, 0, 1), (1, 0, 0), (0, 0, 1), (0, 0, 0)])
BAR_NAMES = ["white", "yellow", "cyan", "green", "magenta", "red", "blue", "black"]

# (matrix, amplitude) -> (Y, Cb, Cr) per bar, 8-bit limited range
BAR_CODES = {
    (601, 1.00): [(235, 128, 128), (210, 16, 146), (170, 166, 16), (145, 54, 34),
                  (106, 202, 222), (81, 90, 240), (41, 240, 110), (16, 128, 128)],
    (601, 0.75): [(180, 128, 128), (162, 44, 142), (131, 156, 44), (112, 72, 58),
                  (84, 184, 198), (65, 100, 212), (35, 212, 114), (16, 128, 128)],
    (709, 1.00): [(235, 128, 128), (219, 16, 138), (188, 154, 16), (173, 42, 26),
                  (78, 214, 230), (63, 102, 240), (32, 240, 118), (16, 128, 128)],
    (709, 0.75): [(180, 128, 128), (168, 44, 136), (145, 147, 44), (133, 63, 52),
                  (63, 193, 204), (51, 109, 212), (28, 212, 120), (16, 128, 128)],
}  # fmt: skip

# full range (T.871 / H.273): black, white and the primaries; yellow and cyan are left out
# because one of their chroma values is exactly x.5 before rounding
FULL_RGB = np.array([(0, 0, 0), (1, 1, 1), (1, 0, 0), (0, 1, 0), (0, 0, 1)])
FULL_CODES = {
    601: [(0, 128, 128), (255, 128, 128), (76, 85, 255), (150, 44, 21), (29, 255, 107)],
    709: [(0, 128, 128), (255, 128, 128), (54, 99, 255), (182, 30, 12), (18, 255, 116)],
}


def _native():
    pytest.importorskip("srgan_fast._C", reason="native extension not built (pip install -e . builds it)")
    from srgan_fast.io import yuv as frame_io

    return frame_io


def encode(impl, rgb, matrix, full):
    """(h, w, 3) float32 RGB -> (Y, U, V) planes with the implementation under test."""
    if impl == "reference":
        return ref.rgb_to_yuv420_ref(rgb, matrix, full)
    return _native().rgb_to_yuv420(rgb, fmt="i420", matrix=matrix, full_range=full)


def decode(impl, y, u, v, matrix, full):
    if impl == "reference":
        return ref.yuv420_to_rgb_ref(y, u, v, matrix, full, out_dtype="u8")
    return _native().yuv420_to_rgb(y, u, v, fmt="i420", matrix=matrix, full_range=full, out_dtype="u8")


def bar_image(rgb_rows, amplitude):
    """One bar per 2x2 chroma block: (2, 2 * n, 3) float32."""
    x = (np.asarray(rgb_rows, np.float64) * amplitude).astype(np.float32)
    return np.repeat(np.repeat(x[None], 2, axis=0), 2, axis=1)


def bar_planes(codes):
    c = np.asarray(codes, np.uint8)
    y = np.repeat(np.repeat(c[None, :, 0], 2, axis=0), 2, axis=1)
    return y, c[None, :, 1].copy(), c[None, :, 2].copy()


IMPLS = ["reference", "native"]
BAR_KEYS = list(BAR_CODES)
BAR_IDS = [f"bt{m}_{int(a * 100)}pct" for m, a in BAR_KEYS]


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("matrix,amplitude", BAR_KEYS, ids=BAR_IDS)
def test_colour_bars_encode_to_the_standard_codes(impl, matrix, amplitude):
    y, u, v = encode(impl, bar_image(BARS_RGB, amplitude), matrix, full=False)
    got = np.stack([y[0, ::2], u[0], v[0]], axis=1).astype(int)
    want = np.array(BAR_CODES[matrix, amplitude])
    bad = [(n, g.tolist(), w.tolist()) for n, g, w in zip(BAR_NAMES, got, want) if not np.array_equal(g, w)]
    assert not bad, f"(bar, got YCbCr, standard YCbCr): {bad}"
    assert np.array_equal(y[1], y[0])  # both rows of each bar


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("matrix,amplitude", BAR_KEYS, ids=BAR_IDS)
def test_standard_codes_decode_to_the_colour_bars(impl, matrix, amplitude):
    """Decoding the codes gives the bars back within 1 level of 255: each code is the exact value
    rounded to an integer (<= 0.5 code, i.e. <= 0.58 level in Y and, through the largest chroma
    coefficient 1.86 * 255/224, <= 1.06 levels in B), and the worst of these bars measures 1 level.
    A wrong matrix, range or chroma order moves some bar by 16 levels or more (measured)."""
    y, u, v = bar_planes(BAR_CODES[matrix, amplitude])
    rgb = decode(impl, y, u, v, matrix, full=False)
    got = rgb[0, ::2].astype(int)
    want = np.round(BARS_RGB * amplitude * 255).astype(int)
    d = np.abs(got - want)
    assert d.max() <= 1, f"max {d.max()} levels at {BAR_NAMES[int(d.max(axis=1).argmax())]}: {got.tolist()}"
    assert np.array_equal(rgb[1], rgb[0])


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("matrix", [601, 709])
def test_full_range_black_white_and_primaries(impl, matrix):
    y, u, v = encode(impl, bar_image(FULL_RGB, 1.0), matrix, full=True)
    got = np.stack([y[0, ::2], u[0], v[0]], axis=1).astype(int)
    assert np.array_equal(got, np.array(FULL_CODES[matrix])), got.tolist()
    # and back: black/white exactly, the primaries within 1 level (clipped chroma 255.5 -> 255
    # of red's Cr and blue's Cb costs at most 0.5 code * 1.86 = 0.93 level)
    rgb = decode(impl, *bar_planes(FULL_CODES[matrix]), matrix, full=True)[0, ::2].astype(int)
    assert np.array_equal(rgb[:2], [[0, 0, 0], [255, 255, 255]])
    assert np.abs(rgb - FULL_RGB * 255).max() <= 1, rgb.tolist()


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("matrix", [601, 709])
def test_limited_range_black_white_and_footroom(impl, matrix):
    """Y 16 is black and 235 white (BT.601/709 limited range); codes outside 16..235 clip."""
    y = np.array([[16, 235, 0, 255, 126, 126]] * 2, np.uint8)
    u = v = np.full((1, 3), 128, np.uint8)
    rgb = decode(impl, y, u, v, matrix, full=False).astype(int)
    # 126 -> (126 - 16) / 219 * 255 = 128.08 -> 128
    assert rgb[0, :, 0].tolist() == [0, 255, 0, 255, 128, 128]
    assert (rgb == rgb[..., :1]).all()  # neutral chroma: grey


def test_nv12_interleaves_cb_before_cr():
    """NV12 (the layout decoders hand over) stores Cb then Cr: the red bar's (90, 240) in BT.601."""
    fio = _native()
    y, uv = fio.rgb_to_yuv420(bar_image(BARS_RGB, 1.0), fmt="nv12", matrix=601)
    cb_cr = [tuple(int(a) for a in p) for p in uv[0].reshape(-1, 2)]
    assert cb_cr == [(cb, cr) for _, cb, cr in BAR_CODES[601, 1.0]]
