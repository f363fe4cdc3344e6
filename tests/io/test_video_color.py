"""`srgan-fast video` colour and depth (srgan_fast.io.video.color): 10-bit kept at 10 bits, tags kept
or overridden, planes taken from the decoder by DLPack (the path a CUDA hw frame takes, tested
here with CPU frames). An identity-like model (SRVGGNetCompact whose last conv is zero: the
output is the input upsampled by nearest neighbour) makes every value predictable."""

import numpy as np
import pytest
import torch

from srgan_fast.families.srvgg_compact import CompactConfig, SRVGGNetCompact
from srgan_fast.io.video import upscale_video
from srgan_fast.io.video.color import (
    ColorTags,
    PlaneConverter,
    YuvPlanes,
    frame_planes,
    resolve_tags,
    rgb_to_yuv,
    write_planes,
    yuv_to_rgb,
)
from srgan_fast.io.yuv_reference import rgb_to_yuv420_ref, yuv420_to_rgb_ref

av = pytest.importorskip("av")

BANDS = (500, 501, 502, 503)  # four 10-bit luma levels: one 8-bit level spans all four


@pytest.fixture(scope="module")
def nearest_x4():
    m = SRVGGNetCompact(CompactConfig(num_feat=4, num_conv=1, upscale=4)).eval()
    with torch.no_grad():
        for p in m.parameters():
            p.zero_()  # last conv 0 -> output = nearest-upsampled input (PReLU slopes irrelevant)
    return m


def make_planar_clip(path, y, u, v, pix_fmt="yuv420p10le", tags=(9, 9, 16, 1), codec="ffv1", n=2):
    """A lossless clip whose every frame has exactly these planes and these tags."""
    h, w = y.shape
    out = av.open(str(path), mode="w")
    vs = out.add_stream(codec, rate=25)
    vs.width, vs.height, vs.pix_fmt = w, h, pix_fmt
    if codec == "libx265":
        vs.options = {"x265-params": "lossless=1:log-level=error"}
    cc = vs.codec_context
    cc.colorspace, cc.color_primaries, cc.color_trc, cc.color_range = tags
    for i in range(n):
        f = av.VideoFrame(w, h, pix_fmt)
        write_planes(f, (torch.as_tensor(y), torch.as_tensor(u), torch.as_tensor(v)))
        f.colorspace, f.color_primaries, f.color_trc, f.color_range = tags
        f.pts = i
        for p in vs.encode(f):
            out.mux(p)
    for p in vs.encode():
        out.mux(p)
    out.close()


def bands(h=16, w=32, levels=BANDS, chroma=512):
    y = np.zeros((h, w), np.int16)
    for i, lv in enumerate(levels):
        y[:, i * w // len(levels) : (i + 1) * w // len(levels)] = lv
    c = np.full((h // 2, w // 2), chroma, np.int16)
    return y, c, c.copy()


def decoded(path):
    with av.open(str(path)) as c:
        v = c.streams.video[0]
        cc = v.codec_context
        tags = (int(cc.colorspace), int(cc.color_primaries), int(cc.color_trc), int(cc.color_range))
        frames = [f for f in c.decode(v)]
        return tags, v.codec_context.name, frames


def band_levels(frame, n=4):
    """The luma code of each band's centre column (8-bit codes for 8-bit frames)."""
    y = torch.utils.dlpack.from_dlpack(frame.planes[0].__dlpack__()).numpy()
    w = frame.width
    return [int(y[frame.height // 2, (2 * i + 1) * w // (2 * n)]) for i in range(n)]


def test_10bit_bands_one_level_apart_stay_distinct(tmp_path, nearest_x4):
    src = tmp_path / "in.mkv"
    make_planar_clip(src, *bands(), tags=(1, 1, 1, 1))  # BT.709 10-bit SDR
    res = upscale_video(src, tmp_path / "o.mkv", model=nearest_x4, codec="ffv1", progress=False)
    assert res["bits"] == {"source": 10, "output": 10} and res["pix_fmt"] == "yuv420p10le"
    assert res["conversion"] == "torch"  # float32 RGB into the engine, never uint8
    tags, _, frames = decoded(tmp_path / "o.mkv")
    assert tags == (1, 1, 1, 1) and frames[0].format.name == "yuv420p10le"
    for f in frames:
        assert band_levels(f) == list(BANDS)  # exactly the source's levels: nothing quantised
    # another --pix-fmt goes through swscale YUV -> YUV: levels kept
    res = upscale_video(src, tmp_path / "o444.mkv", model=nearest_x4, codec="ffv1", pix_fmt="yuv444p10le",
                        progress=False)  # fmt: skip
    f444 = decoded(tmp_path / "o444.mkv")[2][0]
    assert f444.format.name == "yuv444p10le" and band_levels(f444) == list(BANDS)
    # the same job through 8 bits loses them: proof that the check above can fail
    upscale_video(src, tmp_path / "o8.mkv", model=nearest_x4, codec="ffv1", pix_fmt="yuv420p", progress=False)
    got8 = band_levels(decoded(tmp_path / "o8.mkv")[2][0])
    assert len(set(got8)) <= 2 and got8 == sorted(got8), got8


def test_pq_bt2020_10bit_passes_through_with_a_note(tmp_path, nearest_x4, capsys):
    src = tmp_path / "hdr.mkv"
    make_planar_clip(src, *bands(levels=(600, 640, 700, 760), chroma=480), tags=(9, 9, 16, 1))
    res = upscale_video(src, tmp_path / "o.mp4", model=nearest_x4, crf=0, progress=False)  # default codec
    tags, codec, frames = decoded(tmp_path / "o.mp4")
    assert tags == (9, 9, 16, 1), tags  # BT.2020 NCL matrix and primaries, PQ (SMPTE 2084), limited
    assert codec == "hevc" and res["codec"] == "libx265" and frames[0].format.name == "yuv420p10le"
    assert band_levels(frames[0]) == [600, 640, 700, 760]  # x265 crf 0 on flat bands keeps them
    err = capsys.readouterr().err
    lines = [ln for ln in err.splitlines() if "trained on SDR" in ln]
    assert len(lines) == 1 and "PQ" in lines[0]


# every encoder PyAV's wheels ship that a user would pick for video, in a container that takes it
SHORT_CLIP_CODECS = {"libx265": "mp4", "libx264": "mp4", "mpeg4": "mp4", "ffv1": "mkv", "libvpx-vp9": "webm",
                     "libsvtav1": "mp4", "prores_ks": "mov", "libx264rgb": "mkv"}  # fmt: skip


@pytest.mark.parametrize("codec", list(SHORT_CLIP_CODECS))
def test_one_two_and_three_frame_clips_encode_every_time(tmp_path, nearest_x4, codec):
    """libx265 handed back an uninitialised dts at the flush of 1-2 frame clips about half the
    time (the mp4 muxer then failed and the output was a 258-byte file): now every frame
    arrives, many times over, for every shipped codec (issues 29, 31)."""
    if codec not in av.codecs_available:
        pytest.skip(f"{codec} not in this FFmpeg build")
    y, u, v = bands(levels=(600, 640, 700, 760), chroma=480)
    fmt = {"libx265": "yuv420p10le", "libx264": "yuv420p10le", "ffv1": "yuv420p10le", "mpeg4": "yuv420p"}.get(codec)
    for n in (1, 2, 3):
        src = tmp_path / f"n{n}.mkv"
        make_planar_clip(src, y, u, v, n=n)
        for i in range(6 if codec == "libx265" else 2):
            out = tmp_path / f"o{n}_{i}.{SHORT_CLIP_CODECS[codec]}"
            res = upscale_video(src, out, model=nearest_x4, codec=codec, pix_fmt=fmt, progress=False)
            assert res["frames_out"] == n and len(decoded(out)[2]) == n, (codec, n, i, res)


def test_hd_source_tagged_bt601_stays_bt601(tmp_path, nearest_x4):
    """An HD (720-line) source tagged BT.601 keeps BT.601 on a 2880-line output; its planes
    come back as they went in (the nearest-neighbour model + the same matrix both ways)."""
    y, u, v = bands(h=720, w=8, levels=(60, 90, 150, 180), chroma=120)
    v[:, :] = 140  # colours inside the RGB cube: nothing clips on the way
    src = tmp_path / "hd601.mkv"
    make_planar_clip(src, y.astype(np.uint8), u.astype(np.uint8), v.astype(np.uint8), pix_fmt="yuv420p",
                     tags=(6, 6, 6, 1), n=1)  # fmt: skip
    res = upscale_video(src, tmp_path / "o.mkv", model=nearest_x4, codec="ffv1", progress=False)
    tags, _, frames = decoded(tmp_path / "o.mkv")
    assert tags == (6, 6, 6, 1) and res["colorspace"] == "BT.601" and res["bits"]["output"] == 8
    out = frames[0].to_ndarray()
    assert out.shape == (2880 * 3 // 2, 32)
    ys = out[:2880]
    assert [int(ys[1440, c]) for c in (4, 12, 20, 28)] == [60, 90, 150, 180]
    chroma = out[2880:].reshape(-1)
    assert np.abs(chroma[: chroma.size // 2].astype(int) - 120).max() <= 1
    assert np.abs(chroma[chroma.size // 2 :].astype(int) - 140).max() <= 1


def test_color_overrides_retag_and_reconvert(tmp_path, nearest_x4):
    """A source tagged limited range whose luma really uses 0-255: read as limited, codes
    below 16 clip to black (16); with --color-range full they survive. --color-matrix
    re-tags the matrix and keeps the source's primaries and transfer."""
    y, u, v = bands(levels=(4, 10, 240, 250), chroma=128)
    src = tmp_path / "mistagged.mkv"
    make_planar_clip(src, y.astype(np.uint8), u.astype(np.uint8), v.astype(np.uint8), pix_fmt="yuv420p",
                     tags=(1, 1, 1, 1), n=1)  # fmt: skip
    upscale_video(src, tmp_path / "a.mkv", model=nearest_x4, codec="ffv1", progress=False)
    tags, _, frames = decoded(tmp_path / "a.mkv")
    assert tags == (1, 1, 1, 1) and band_levels(frames[0]) == [16, 16, 235, 235]
    res = upscale_video(src, tmp_path / "b.mkv", model=nearest_x4, codec="ffv1", progress=False,
                        color_range="full", color_matrix="bt601")  # fmt: skip
    tags, _, frames = decoded(tmp_path / "b.mkv")
    assert tags == (6, 1, 1, 2) and res["colorspace"] == "BT.601"  # matrix and range overridden
    assert band_levels(frames[0]) == [4, 10, 240, 250]


def test_untagged_sources_follow_the_players_convention():
    t = resolve_tags(None, None, None, None, height=480)
    assert (t.matrix, t.primaries, t.transfer, t.full_range) == (6, 6, 6, False)
    assert set(t.guessed) == {"matrix", "primaries", "transfer", "range"}
    t = resolve_tags(2, 2, 2, 0, height=720)
    assert (t.matrix, t.primaries, t.transfer, t.full_range) == (1, 1, 1, False)
    assert resolve_tags(2, 2, 2, 0, height=480, pix_fmt="yuvj420p").full_range
    t = resolve_tags(9, 9, 18, 1, height=2160)
    assert (t.matrix, t.transfer, t.hdr) == (9, 18, "HLG")
    with pytest.raises(ValueError, match="--color-matrix"):
        resolve_tags(14, 9, 16, 1, height=2160)  # ICtCp: not converted, said so
    assert resolve_tags(14, 9, 16, 1, height=2160, override_matrix="bt2020").matrix == 9


@pytest.mark.parametrize("matrix, code", [(601, 6), (709, 1)])
@pytest.mark.parametrize("full", [False, True])
def test_torch_conversion_equals_the_native_reference_at_8_bits(matrix, code, full):
    rng = np.random.default_rng(code + full)
    y = rng.integers(0, 256, (7, 13), dtype=np.uint8)  # odd sizes: edge chroma replicated
    u, v = rng.integers(0, 256, (2, 4, 7), dtype=np.uint8)
    tags = ColorTags(code, 1, 1, full)
    got = yuv_to_rgb(YuvPlanes("i420", 8, *map(torch.from_numpy, (y, u, v))), tags).numpy()
    ref = yuv420_to_rgb_ref(y, u, v, matrix=matrix, full_range=full)
    assert np.abs(got - ref).max() < 1e-6
    rgb = rng.integers(0, 256, (7, 13, 3), dtype=np.uint8)
    for a, b in zip(rgb_to_yuv(torch.from_numpy(rgb), tags, 8), rgb_to_yuv420_ref(rgb, matrix=matrix, full_range=full)):
        assert np.array_equal(a.numpy(), b)


def p010_and_i420_frames(h=8, w=12, seed=0):
    """The same 10-bit picture as a P010 frame (what NVDEC hands over) and a yuv420p10le one."""
    rng = np.random.default_rng(seed)
    y = rng.integers(200, 800, (h, w)).astype(np.int16)  # inside the RGB cube: nothing clips
    u, v = rng.integers(480, 544, (2, h // 2, w // 2)).astype(np.int16)
    p010 = av.VideoFrame(w, h, "p010le")
    torch.utils.dlpack.from_dlpack(p010.planes[0].__dlpack__()).copy_(torch.from_numpy(y << 6).to(torch.uint16))
    uv = np.stack([u, v], -1) << 6
    torch.utils.dlpack.from_dlpack(p010.planes[1].__dlpack__()).copy_(torch.from_numpy(uv).to(torch.uint16))
    i420 = av.VideoFrame(w, h, "yuv420p10le")
    write_planes(i420, tuple(map(torch.from_numpy, (y, u, v))))
    return p010, i420


def test_planes_are_taken_by_dlpack_without_a_copy():
    p010, i420 = p010_and_i420_frames()
    p = frame_planes(p010)
    assert (p.layout, p.bits, p.shift) == ("nv12", 10, 6) and p.u.shape == (4, 6, 2)
    assert p.y.data_ptr() == p010.planes[0].buffer_ptr and p.u.data_ptr() == p010.planes[1].buffer_ptr
    q = frame_planes(i420)
    assert q.v.data_ptr() == i420.planes[2].buffer_ptr
    assert torch.equal(p.y.int() >> 6, q.y.int()) and torch.equal(p.u[..., 1].int() >> 6, q.v.int())


class FakeCudaFrame:
    """What PyAV hands over with hwaccel=HWAccel("cuda", is_hw_owned=True): format "cuda",
    the real layout in sw_format, planes exported by __dlpack__ (here CPU planes stand in for
    device memory: everything up to the device boundary runs)."""

    def __init__(self, frame):
        self.format = type("F", (), {"name": "cuda", "is_rgb": False})()
        self.sw_format = frame.format
        self.planes = frame.planes
        self.width, self.height = frame.width, frame.height


def test_a_cuda_p010_frame_goes_to_the_engine_as_float_and_back_as_10_bit():
    p010, i420 = p010_and_i420_frames(seed=3)
    tags = ColorTags(9, 9, 16, False)
    conv = PlaneConverter(tags, "cpu", float_path=True, out_bits=10)
    rgb = conv.to_rgb(FakeCudaFrame(p010))
    assert conv.path == "torch" and rgb.dtype == torch.float32 and conv.hw_frames == 1
    assert torch.equal(rgb, conv.to_rgb(i420))  # P010 read exactly as its 10-bit twin
    back = conv.to_frame(rgb)  # rgb -> planes -> a tagged yuv420p10le frame for the encoder
    assert back.format.name == "yuv420p10le" and (back.colorspace, back.color_trc) == (9, 16)
    y0 = frame_planes(i420).y.int()
    assert (frame_planes(back).y.int() - y0).abs().max() <= 1  # only RGB clipping/chroma averaging


def test_hwaccel_is_asked_for_a_cuda_engine_only():
    from srgan_fast.io.video import _hwaccel

    assert _hwaccel(av, torch.device("cpu")) == {}
    from av.codec.hwaccel import hwdevices_available

    if "cuda" not in hwdevices_available():
        pytest.skip("this FFmpeg has no CUDA hwaccel")
    kw = _hwaccel(av, torch.device("cuda", 1))
    hw = kw["hwaccel"]
    assert hw.is_hw_owned and hw.device_id == 1 and hw.allow_software_fallback


def test_cli_overrides_reach_the_job(tmp_path, nearest_x4, capsys):
    import json

    from srgan_fast.cli import main
    from srgan_fast.weights import save_generator

    model = save_generator(nearest_x4, tmp_path / "nearest.safetensors")
    y, u, v = bands(levels=(4, 10, 240, 250), chroma=128)
    src = tmp_path / "mistagged.mkv"
    make_planar_clip(src, y.astype(np.uint8), u.astype(np.uint8), v.astype(np.uint8), pix_fmt="yuv420p",
                     tags=(1, 1, 1, 1), n=1)  # fmt: skip
    rc = main(["video", str(src), str(tmp_path / "o.mkv"), "--model", str(model), "--codec", "ffv1", "-q",
               "--color-matrix", "bt601", "--color-range", "full"])  # fmt: skip
    res = json.loads(capsys.readouterr().out)
    assert rc == 0 and res["color"] == {"matrix": 6, "primaries": 1, "transfer": 1, "range": "full", "guessed": []}
    tags, _, frames = decoded(tmp_path / "o.mkv")
    assert tags == (6, 1, 1, 2) and band_levels(frames[0]) == [4, 10, 240, 250]
