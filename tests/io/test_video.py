"""`srgan-fast video`: frame count, timestamps, audio packets and per-frame quality, on a
synthetic 30-frame clip with an AAC track made here."""

import fractions

import numpy as np
import pytest

from srgan_fast.engine import Engine
from srgan_fast.io.video import upscale_video
from srgan_fast.quality.metrics import psnr, rgb_to_y

av = pytest.importorskip("av")


SPACE = {1: "ITU709", 6: "SMPTE170M", 9: "BT2020"}


def make_clip(path, n=30, w=40, h=32, fps=25, audio=True, tags=None):
    """A libx264 clip of moving gradients; `tags` = (matrix, primaries, transfer, range) FFmpeg
    codes tags it and converts its planes with that matrix (untagged: swscale's BT.601)."""
    out = av.open(str(path), mode="w")
    vs = out.add_stream("libx264", rate=fps)
    vs.width, vs.height, vs.pix_fmt = w, h, "yuv420p"
    vs.options = {"crf": "12"}
    if tags:
        cc = vs.codec_context
        cc.colorspace, cc.color_primaries, cc.color_trc, cc.color_range = tags
    a = None
    if audio:
        a = out.add_stream("aac", rate=44100)
        a.layout = "mono"
    yy, xx = np.mgrid[0:h, 0:w]
    for i in range(n):
        img = np.stack([(xx * 6 + i * 5) % 256, (yy * 8 + i * 3) % 256, ((xx + yy) * 4) % 256], -1).astype(np.uint8)
        f = av.VideoFrame.from_ndarray(img, format="rgb24")
        if tags:
            rng = "JPEG" if tags[3] == 2 else "MPEG"
            f = f.reformat(format="yuv420p", dst_colorspace=SPACE[tags[0]], dst_color_range=rng)
            f.colorspace, f.color_primaries, f.color_trc, f.color_range = tags
        for p in vs.encode(f):
            out.mux(p)
    for p in vs.encode():
        out.mux(p)
    if a is not None:
        t = np.arange(int(44100 * n / fps)) / 44100
        samples = (0.3 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)
        for k in range(0, len(samples), 1024):
            f = av.AudioFrame.from_ndarray(samples[None, k : k + 1024], format="fltp", layout="mono")
            f.sample_rate = 44100
            f.pts = k
            f.time_base = fractions.Fraction(1, 44100)
            for p in a.encode(f):
                out.mux(p)
        for p in a.encode():
            out.mux(p)
    out.close()


def read(path):
    c = av.open(str(path))
    v = c.streams.video[0]
    frames = [(f.pts * f.time_base, f.to_ndarray(format="rgb24")) for f in c.decode(v)]
    c.close()
    c = av.open(str(path))
    audio = [p for s in c.streams.audio for p in c.demux(s) if p.dts is not None]
    info = (v.width, v.height, len(c.streams.audio))
    c.close()
    return frames, audio, info


def test_video_keeps_frames_timestamps_audio_and_quality(tmp_path):
    src, dst = tmp_path / "in.mp4", tmp_path / "out.mp4"
    make_clip(src)
    res = upscale_video(src, dst, batch=4, crf=8, progress=False)
    fin, ain, _ = read(src)
    fout, aout, (w, h, na) = read(dst)
    with av.open(str(dst)) as c:  # SD output: tagged BT.601 (smpte170m), limited range
        cc = c.streams.video[0].codec_context
        assert (int(cc.colorspace), int(cc.color_range)) == (6, 1) and res["colorspace"] == "BT.601"
    assert res["frames_in"] == res["frames_out"] == len(fin) == len(fout) == 30
    assert (w, h, na) == (160, 128, 1)
    assert [t for t, _ in fout] == [t for t, _ in fin]  # same presentation times
    assert len(aout) == len(ain) > 0 and res["packets_copied"] == len(ain)
    assert [bytes(p) for p in aout] == [bytes(p) for p in ain]  # audio copied untouched
    eng = Engine("srresnet_x4", backend="torch")
    scores = [psnr(rgb_to_y(o), rgb_to_y(eng.upscale(i))) for (_, i), (_, o) in zip(fin, fout)]
    assert min(scores) >= 30, scores  # only the x264 re-encode (crf 8) separates them


@pytest.mark.parametrize(
    "tags, want, matrix",
    [((1, 1, 1, 1), (1, 1, 1, 1), 709), (None, (6, 6, 6, 1), 601)],
    ids=["sd-tagged-bt709", "sd-untagged"],
)
def test_sd_to_hd_video_keeps_the_sources_colours(tmp_path, tags, want, matrix):
    """A 16x180 (SD) clip -> 64x720 (HD) keeps what the source means: tagged BT.709 stays
    BT.709 (matrix, primaries, transfer); untagged is read as BT.601, as players read SD, and
    the output is tagged BT.601 explicitly (an untagged 720-line file would be re-read as BT.709).
    The output's planes, decoded here with the numpy reference, match the engine's frames (the
    source decoded by its own tags) with that matrix and not the other one: a tag without the
    matching conversion would shift colours. 3 frames keep it cheap."""
    from srgan_fast.io.yuv_reference import yuv420_to_rgb_ref

    src, dst = tmp_path / "in.mp4", tmp_path / "out.mp4"
    make_clip(src, n=3, w=16, h=180, audio=False, tags=tags)
    res = upscale_video(src, dst, crf=4, progress=False)
    assert res["size"] == "64x720" and res["frames_out"] == 3
    assert res["colorspace"] == f"BT.{matrix}" and res["bits"] == {"source": 8, "output": 8}
    fin, _, _ = read(src)  # swscale, by the source's own tags (BT.601 when untagged)
    with av.open(str(dst)) as c:
        v = c.streams.video[0]
        cc = v.codec_context
        # AVCOL_SPC_BT709 / AVCOL_PRI_BT709 / AVCOL_TRC_BT709 = 1, SMPTE170M = 6; AVCOL_RANGE_MPEG = 1
        got = (int(cc.colorspace), int(cc.color_primaries), int(cc.color_trc), int(cc.color_range))
        assert got == want, got
        planes = [f.to_ndarray(format="yuv420p") for f in c.decode(v)]
    other = 601 if matrix == 709 else 709
    eng = Engine("srresnet_x4", backend="torch")
    for (_, lr), p in zip(fin, planes):
        want_y = rgb_to_y(eng.upscale(lr))
        y, u, v_ = p[:720], p[720:900].reshape(360, 32), p[900:].reshape(360, 32)
        right = psnr(rgb_to_y(yuv420_to_rgb_ref(y, u, v_, matrix=matrix, out_dtype="u8")), want_y)
        wrong = psnr(rgb_to_y(yuv420_to_rgb_ref(y, u, v_, matrix=other, out_dtype="u8")), want_y)
        assert right >= 38 and right > wrong + 8, (right, wrong)


def test_video_frame_range_and_no_audio(tmp_path):
    src, dst = tmp_path / "in.mp4", tmp_path / "out.mp4"
    make_clip(src, n=12, audio=False)
    res = upscale_video(src, dst, max_frames=5, progress=False)
    fout, aout, (_, _, na) = read(dst)
    assert res["frames_out"] == len(fout) == 5 and na == 0


def test_video_bad_input(tmp_path):
    with pytest.raises(FileNotFoundError):
        upscale_video(tmp_path / "none.mp4", tmp_path / "o.mp4", progress=False)
    (tmp_path / "bad.mp4").write_bytes(b"not a video at all")
    with pytest.raises(ValueError, match="not a video"):
        upscale_video(tmp_path / "bad.mp4", tmp_path / "o.mp4", progress=False)


def test_stream_is_ordered_batched_and_bounded():
    eng = Engine("srresnet_x4", backend="torch")
    rng = np.random.default_rng(0)
    frames = [rng.integers(0, 256, (6, 5, 3), dtype=np.uint8) for _ in range(5)]
    frames.insert(2, rng.integers(0, 256, (4, 7, 3), dtype=np.uint8))  # a size change mid-stream
    got = list(eng.stream(iter(frames), batch=3, queue_size=2))
    assert len(got) == 6
    for f, g in zip(frames, got):
        assert np.array_equal(g, eng.upscale(f))

    def failing():
        yield frames[0]
        raise OSError("decoder broke")

    with pytest.raises(OSError, match="decoder broke"):
        list(eng.stream(failing()))


def test_stream_takes_nv12_frames():
    pytest.importorskip("srgan_fast._C", reason="native extension not built")
    from srgan_fast.io import yuv as fio

    eng = Engine("srresnet_x4", backend="torch")
    rgb = np.random.default_rng(1).integers(0, 256, (6, 8, 3), dtype=np.uint8)
    planes = fio.rgb_to_yuv420(rgb)
    got = list(eng.stream([planes, rgb, planes], batch=2))
    assert len(got) == 3 and isinstance(got[0], tuple) and got[1].shape == (24, 32, 3)
    assert all(np.array_equal(a, b) for a, b in zip(got[0], eng.upscale_nv12(*planes)))


def test_interrupt_leaves_a_playable_partial_file(tmp_path, monkeypatch):
    src, dst = tmp_path / "in.mp4", tmp_path / "out.mp4"
    make_clip(src, n=20)
    real = Engine.upscale
    calls = {"n": 0}

    def upscale_then_ctrl_c(self, x):
        calls["n"] += 1
        if calls["n"] > 8:
            raise KeyboardInterrupt
        return real(self, x)

    monkeypatch.setattr(Engine, "upscale", upscale_then_ctrl_c)
    with pytest.raises(KeyboardInterrupt):
        upscale_video(src, dst, progress=False)
    fout, aout, (w, h, _) = read(dst)  # the container was finalised: it opens and decodes
    assert len(fout) == 8 and (w, h) == (160, 128)


def test_video_refuses_what_it_cannot_do_and_tags_rgb_output_as_rgb(tmp_path):
    src = tmp_path / "in.mkv"
    make_clip(src, n=2, audio=False)
    for kw, msg in [
        ({"codec": "aac"}, "an encoder of audio, not video"),
        ({"codec": "ass"}, "an encoder of subtitle, not video"),
        ({"start": float("inf")}, "--start must be"),
        ({"start": float("nan")}, "--start must be"),
        ({"bitrate": 10**20}, "--bitrate must be"),
    ]:
        with pytest.raises(ValueError, match=msg):
            upscale_video(src, tmp_path / "o.mkv", progress=False, **kw)
        assert not (tmp_path / "o.mkv").exists()
    # RGB planes out (libx264rgb): tagged RGB (no YUV matrix), so players read them as RGB
    res = upscale_video(src, tmp_path / "rgb.mkv", progress=False, codec="libx264rgb", backend="torch")
    # ... and an RGB source has no matrix to override
    with pytest.raises(ValueError, match="describe YUV sources; this one is gbr"):
        upscale_video(tmp_path / "rgb.mkv", tmp_path / "o.mkv", progress=False, color_matrix="bt709")
    assert not (tmp_path / "o.mkv").exists()
    with av.open(str(tmp_path / "rgb.mkv")) as c:
        cc = c.streams.video[0].codec_context
        got = next(c.decode(video=0)).to_ndarray(format="rgb24").astype(float)
        assert int(cc.colorspace) == 0 and cc.format.name.startswith("gbr")
    want = upscale_video(src, tmp_path / "yuv.mkv", progress=False, codec="libx264", crf=0, backend="torch")
    with av.open(str(tmp_path / "yuv.mkv")) as c:
        ref = next(c.decode(video=0)).to_ndarray(format="rgb24").astype(float)
    assert res["frames_out"] == want["frames_out"] == 2
    assert abs(got.mean(axis=(0, 1)) - ref.mean(axis=(0, 1))).max() < 3  # (read as YUV it was off by 12-31)
