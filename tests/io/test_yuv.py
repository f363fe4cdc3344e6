"""csrc frame I/O: the C++ twins equal the numpy reference exactly (integer levels), for every
format, matrix, range, odd sizes and pitched rows; CUDA kernels equal the twins (GPU only)."""

import numpy as np
import pytest
import torch

from srgan_fast.data import sample_path
from srgan_fast.io.images import load_image
from srgan_fast.io.yuv_reference import nhwc_to_packed_ref, packed_to_nhwc_ref, rgb_to_yuv420_ref, yuv420_to_rgb_ref

C = pytest.importorskip("srgan_fast._C", reason="native extension not built (pip install -e . builds it)")
from srgan_fast.io import yuv as frame_io  # noqa: E402

SIZES = [(1, 1), (7, 13), (31, 17), (16, 24)]
MODES = [(601, False), (601, True), (709, False), (709, True)]


def planes(h, w, seed, pitch_pad=0, fmt="nv12"):
    """Random 4:2:0 planes as views into wider buffers (pitch != width) when pitch_pad > 0."""
    rng = np.random.default_rng(seed)
    ch, cw = (h + 1) // 2, (w + 1) // 2
    ybuf = rng.integers(0, 256, (h, w + pitch_pad), dtype=np.uint8)
    if fmt == "nv12":
        uvbuf = rng.integers(0, 256, (ch, 2 * cw + pitch_pad), dtype=np.uint8)
        uv = uvbuf[:, : 2 * cw]
        return ybuf[:, :w], uv, uv[:, 0::2], uv[:, 1::2]
    ubuf = rng.integers(0, 256, (ch, cw + pitch_pad), dtype=np.uint8)
    vbuf = rng.integers(0, 256, (ch, cw + pitch_pad), dtype=np.uint8)
    return ybuf[:, :w], ubuf[:, :cw], ubuf[:, :cw], vbuf[:, :cw]


@pytest.mark.parametrize("fmt", ["nv12", "i420"])
@pytest.mark.parametrize("matrix,full", MODES, ids=[f"bt{m}_{'full' if f else 'limited'}" for m, f in MODES])
@pytest.mark.parametrize("h,w", SIZES, ids=[f"{h}x{w}" for h, w in SIZES])
def test_yuv420_to_rgb_equals_reference(fmt, matrix, full, h, w):
    y, a, u, v = planes(h, w, seed=h * 100 + w, pitch_pad=5, fmt=fmt)
    for out_dtype in ("f32", "f16", "u8"):
        for bgr in (False, True):
            got = frame_io.yuv420_to_rgb(y, a, None if fmt == "nv12" else v, fmt=fmt, matrix=matrix,
                                       full_range=full, out_dtype=out_dtype, bgr=bgr)  # fmt: skip
            want = yuv420_to_rgb_ref(y, u, v, matrix, full, out_dtype, bgr)
            assert got.dtype == want.dtype and np.array_equal(got, want), (out_dtype, bgr)


@pytest.mark.parametrize("fmt", ["nv12", "i420"])
@pytest.mark.parametrize("matrix,full", MODES, ids=[f"bt{m}_{'full' if f else 'limited'}" for m, f in MODES])
@pytest.mark.parametrize("h,w", SIZES, ids=[f"{h}x{w}" for h, w in SIZES])
def test_rgb_to_yuv420_equals_reference(fmt, matrix, full, h, w):
    rng = np.random.default_rng(h * 7 + w)
    base = rng.integers(0, 256, (h, w + 3, 3), dtype=np.uint8)[:, :w]  # pitched rows
    inputs = [base, base.astype(np.float32) / 255, (base.astype(np.float32) / 255).astype(np.float16),
              rng.uniform(-0.2, 1.2, (h, w, 3)).astype(np.float32)]  # fmt: skip
    for x in inputs:
        for bgr in (False, True):
            got = frame_io.rgb_to_yuv420(x, fmt=fmt, matrix=matrix, full_range=full, bgr=bgr)
            y, u, v = rgb_to_yuv420_ref(x, matrix, full, bgr)
            assert np.array_equal(got[0], y), (x.dtype, bgr)
            if fmt == "nv12":
                assert np.array_equal(got[1][:, 0::2], u) and np.array_equal(got[1][:, 1::2], v)
            else:
                assert np.array_equal(got[1], u) and np.array_equal(got[2], v)


def test_packed_rgb_bgr_round_trip_and_reference():
    rng = np.random.default_rng(1)
    packed = rng.integers(0, 256, (9, 14, 3), dtype=np.uint8)
    pitched = np.zeros((9, 20, 3), np.uint8)
    pitched[:, :14] = packed
    view = pitched[:, :14]
    for bgr in (False, True):
        for dt in ("f32", "f16", "u8"):
            got = frame_io.packed_to_nhwc(view, bgr=bgr, out_dtype=dt)
            assert np.array_equal(got, packed_to_nhwc_ref(packed, bgr, dt))
        x = frame_io.packed_to_nhwc(view, bgr=bgr)
        back = np.zeros((9, 17, 3), np.uint8)[:, :14]
        frame_io.nhwc_to_packed(x, bgr=bgr, out=back)
        assert np.array_equal(back, packed) and np.array_equal(back, nhwc_to_packed_ref(x, bgr))
    f = rng.uniform(-0.5, 1.5, (5, 6, 3)).astype(np.float32)
    assert np.array_equal(frame_io.nhwc_to_packed(f), nhwc_to_packed_ref(f))


@pytest.mark.parametrize("matrix", [601, 709])
def test_round_trip_on_a_photo_is_within_chroma_subsampling_error(matrix):
    from srgan_fast.quality.metrics import psnr, rgb_to_y

    rgb = load_image(sample_path())[:255, :253]  # odd sizes
    y, uv = frame_io.rgb_to_yuv420(rgb, matrix=matrix)
    back = frame_io.yuv420_to_rgb(y, uv, matrix=matrix, out_dtype="u8")
    d = np.abs(back.astype(int) - rgb.astype(int))
    assert psnr(back.astype(float), rgb.astype(float)) > 33  # colour detail lost to 4:2:0
    assert np.abs(rgb_to_y(back) - rgb_to_y(rgb)).mean() < 1.5  # luma survives (but for rounding)
    assert d.max() < 128


def test_binding_checks_every_argument():
    y = np.zeros((4, 6), np.uint8)
    uv = np.zeros((2, 6), np.uint8)
    out = np.zeros((4, 6, 3), np.float32)
    ok = dict(fmt="nv12", y=y.ctypes.data, y_pitch=6, u=uv.ctypes.data, u_pitch=6, v=0, v_pitch=0,
              out=out.ctypes.data, out_dtype="f32", height=4, width=6, matrix=709, full_range=False)  # fmt: skip
    C.yuv420_to_rgb(**ok)
    for bad, msg in [
        (dict(y=0), "null pointer"),
        (dict(y_pitch=5), "pitch 5 is smaller"),
        (dict(u_pitch=4), "uv pitch"),
        (dict(matrix=2020), "601 or 709"),
        (dict(out_dtype="f64"), "f32, f16 or u8"),
        (dict(height=0), "positive"),
        (dict(fmt="yuy2"), "nv12 or i420"),
    ]:
        with pytest.raises(ValueError, match=msg):
            C.yuv420_to_rgb(**{**ok, **bad})
    with pytest.raises(ValueError, match="u plane must be \\(2, 3\\)"):
        frame_io.yuv420_to_rgb(y, uv[:, :2], fmt="i420", v=uv[:, :2])
    with pytest.raises(TypeError, match="uint8"):
        frame_io.yuv420_to_rgb(y.astype(np.float32), uv)


def test_torch_cpu_tensors_work_like_numpy():
    y, uv, u, v = planes(10, 12, seed=3)
    got = frame_io.yuv420_to_rgb(torch.from_numpy(y.copy()), torch.from_numpy(uv.copy()))
    assert isinstance(got, torch.Tensor) and np.array_equal(got.numpy(), yuv420_to_rgb_ref(y, u, v))


@pytest.mark.cuda
@pytest.mark.parametrize("fmt", ["nv12", "i420"])
@pytest.mark.parametrize("matrix,full", MODES, ids=[f"bt{m}_{'full' if f else 'limited'}" for m, f in MODES])
def test_cuda_kernels_equal_cpu_twins(fmt, matrix, full):
    if not C.has_cuda():  # benchmarks/gpu_suite.sh builds with SRGAN_FAST_CUDA=1, so it cannot miss this
        pytest.skip("srgan_fast._C was built without nvcc: rebuild with SRGAN_FAST_CUDA=1 to test the CUDA kernels")
    for h, w in SIZES:
        y, a, u, v = planes(h, w, seed=h + w, pitch_pad=3, fmt=fmt)
        t = lambda p: torch.from_numpy(np.ascontiguousarray(p)).cuda()  # noqa: E731
        for dt in ("f32", "f16", "u8"):
            got = frame_io.yuv420_to_rgb(t(y), t(a), None if fmt == "nv12" else t(v), fmt=fmt, matrix=matrix,
                                       full_range=full, out_dtype=dt).cpu().numpy()  # fmt: skip
            want = frame_io.yuv420_to_rgb(y, a, None if fmt == "nv12" else v, fmt=fmt, matrix=matrix,
                                        full_range=full, out_dtype=dt)  # fmt: skip
            assert np.array_equal(got, want), (h, w, dt)
        rgb = np.random.default_rng(h).integers(0, 256, (h, w, 3), dtype=np.uint8)
        for x in (rgb, rgb.astype(np.float32) / 255):
            g = [p.cpu().numpy() for p in frame_io.rgb_to_yuv420(t(x), fmt=fmt, matrix=matrix, full_range=full)]
            c = frame_io.rgb_to_yuv420(x, fmt=fmt, matrix=matrix, full_range=full)
            assert all(np.array_equal(a_, b_) for a_, b_ in zip(g, c))
        p = frame_io.packed_to_nhwc(t(rgb), bgr=True).cpu().numpy()
        assert np.array_equal(p, frame_io.packed_to_nhwc(rgb, bgr=True))
        assert np.array_equal(frame_io.nhwc_to_packed(t(p), bgr=True).cpu().numpy(), rgb)
