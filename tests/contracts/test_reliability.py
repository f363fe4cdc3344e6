"""Issue 22: nothing a user has is destroyed, nothing wrong is written silently, every limit holds.

Each case checks the exit code, the single stderr line, and that the user's files are byte-equal
before and after. The CLI runs in-process with the tiny model (tests/contracts/test_hostile_inputs.py
holds the helpers and the cases of issue 13).
"""

from __future__ import annotations

import errno
import json
import os
import stat
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from srgan_fast.cli import main
from srgan_fast.engine import Engine
from srgan_fast.families.srresnet.arch import Generator
from srgan_fast.weights import WeightsError, load_generator, save_generator
from tests.conftest import cli, one_line_error
from tests.contracts.test_hostile_inputs import av, make_corrupt_clip, needs_av, video_pts


def _img(path, h=5, w=7, seed=0, **save):
    a = np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)
    Image.fromarray(a).save(path, **save)
    return a


def _snapshot(folder: Path) -> dict[str, bytes | str]:
    """Every entry under `folder`: file bytes, or what kind of thing it is."""
    snap: dict[str, bytes | str] = {}
    for p in sorted(folder.rglob("*")):
        mode = p.lstat().st_mode
        snap[str(p.relative_to(folder))] = p.read_bytes() if stat.S_ISREG(mode) else stat.filemode(mode)[0]
    return snap


# ---------------------------------------------------------------- data loss


@needs_av
def test_video_failing_before_the_first_frame_keeps_the_existing_output(tmp_path, tiny_model, capsys):
    src, prev = tmp_path / "in.mkv", tmp_path / "prev.mp4"
    make_corrupt_clip(src, n=3, bad=99)
    prev.write_bytes(b"last week's render, hours of work")
    before = _snapshot(tmp_path)
    m = ["--model", tiny_model, "-q"]
    assert "not an encoder" in one_line_error(capsys, "video", src, prev, "--codec", "nosuch", *m)
    assert "no video frame" in one_line_error(capsys, "video", src, prev, "--start", "100", *m)
    make_corrupt_clip(tmp_path / "bad.mkv", n=3, bad=0)  # the first frame is undecodable
    before = _snapshot(tmp_path)
    assert "before the first frame" in one_line_error(capsys, "video", tmp_path / "bad.mkv", prev, *m)
    assert _snapshot(tmp_path) == before  # prev.mp4 byte-equal, no partial file left beside it
    rc, out, _ = cli(capsys, "video", src, prev, *m)  # a job that works replaces it
    assert rc == 0 and json.loads(out)["frames_out"] == 3 and len(video_pts(prev)) == 3
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(["in.mkv", "bad.mkv", "prev.mp4", "tiny.safetensors"])


def test_export_refuses_its_own_weights_as_output(tmp_path, tiny_model, capsys):
    before = _snapshot(tmp_path)
    err = one_line_error(capsys, "export", tiny_model, tiny_model)
    assert "is an input" in err and str(tiny_model) in err
    assert _snapshot(tmp_path) == before
    load_generator(tiny_model)  # still the weights


@needs_av
def test_writers_refuse_targets_that_are_not_regular_files(tmp_path, tiny_model, capsys):
    _img(tmp_path / "a.png")
    src = tmp_path / "in.mkv"
    make_corrupt_clip(src, n=2, bad=99)
    fifo_png, fifo_onnx, fifo_mp4 = tmp_path / "o.png", tmp_path / "o.onnx", tmp_path / "o.mp4"
    for f in (fifo_png, fifo_onnx, fifo_mp4):
        os.mkfifo(f)  # stands for /dev/full: a node that a rename would replace with a plain file
    before = _snapshot(tmp_path)
    m = ["--model", tiny_model, "-q"]
    for argv in (["upscale", tmp_path / "a.png", "-o", fifo_png, *m], ["export", tiny_model, fifo_onnx],
                 ["video", src, fifo_mp4, *m]):  # fmt: skip
        err = one_line_error(capsys, *argv)
        assert "not a regular file" in err and "refusing to replace it" in err, err
    assert _snapshot(tmp_path) == before
    assert all(stat.S_ISFIFO(f.lstat().st_mode) for f in (fifo_png, fifo_onnx, fifo_mp4))


def test_no_folders_are_made_beyond_the_last_one(tmp_path, tiny_model, capsys):
    _img(tmp_path / "a.png")
    before = _snapshot(tmp_path)
    nowhere = tmp_path / "no" / "sub"
    for argv in (["export", tiny_model, nowhere / "x.onnx"],
                 ["upscale", tmp_path / "a.png", "-o", nowhere / "o.png", "--model", tiny_model]):  # fmt: skip
        err = one_line_error(capsys, *argv)
        assert "no such folder" in err and "create it first" in err
    assert _snapshot(tmp_path) == before and not (tmp_path / "no").exists()
    rc, _, _ = cli(capsys, "upscale", tmp_path / "a.png", "-o", tmp_path / "new" / "o.png", "--model", tiny_model)
    assert rc == 0 and (tmp_path / "new" / "o.png").is_file()  # the last folder of the path is made


# ---------------------------------------------------------------- silent wrong output


def test_tiny_images_keep_their_colour(tmp_path, tiny_model, capsys):
    from srgan_fast.io.batch import PAD_TO

    col = np.array([200, 40, 90], np.uint8)
    sizes = ((1, 1), (2, 1), (1, 2), (2, 2), (1, 9))
    (tmp_path / "in").mkdir()
    for h, w in sizes:
        Image.fromarray(np.broadcast_to(col, (h, w, 3)).copy()).save(tmp_path / "in" / f"{h}x{w}.png")
    rc, _, _ = cli(capsys, "upscale", tmp_path / "in", "-o", tmp_path / "o", "-q")  # srresnet_x4
    assert rc == 0
    for h, w in sizes:
        out = np.array(Image.open(tmp_path / "o" / f"{h}x{w}.png")).astype(int)
        assert out.shape == (4 * h, 4 * w, 3)
        assert np.abs(out - col).mean() < 6, (h, w, out.reshape(-1, 3).mean(0))  # was up to 55 codes off: grey
    # exactly: edge-replicated to PAD_TO on the short side, upscaled, cropped back
    a = _img(tmp_path / "thin.png", h=2, w=11)
    rc, _, _ = cli(capsys, "upscale", tmp_path / "thin.png", "-o", tmp_path / "o.png", "--model", tiny_model)
    top = (PAD_TO - 2) // 2
    want = Engine(tiny_model, backend="torch").upscale(np.pad(a, ((top, PAD_TO - 2 - top), (0, 0), (0, 0)), "edge"))
    assert np.array_equal(np.array(Image.open(tmp_path / "o.png")), want[4 * top : 4 * top + 8])


def _broken_weights(path: Path, key: str, value) -> Path:
    g = Generator("tiny_x4")
    state = g.state_dict()
    state[key] = value(state[key].clone())
    return save_generator(state, path, config=g.config)


@pytest.mark.parametrize(
    "key,value,msg",
    [
        ("conv_first.weight", lambda t: t.to(torch.int32), "is int32; weights must be floating point"),
        ("body.0.conv1.weight", lambda t: t.index_fill_(0, torch.tensor([1]), float("nan")), "NaN/Inf"),
        ("conv_first.bias", lambda t: t.fill_(float("inf")), r"holds 16 NaN/Inf value\(s\)"),
        ("body.0.bn1.running_var", lambda t: t.fill_(-1.0), "negative variances"),
    ],
    ids=["int32", "nan", "inf", "negative-variance"],
)
def test_weights_that_cannot_be_right_are_refused_at_load(tmp_path, capsys, key, value, msg):
    p = _broken_weights(tmp_path / "broken.safetensors", key, value)
    with pytest.raises(WeightsError, match=msg):
        load_generator(p)
    _img(tmp_path / "a.png")
    err = one_line_error(capsys, "upscale", tmp_path / "a.png", "-o", tmp_path / "o.png", "--model", p)
    assert "broken.safetensors" in err and repr(key) in err and msg.split(";")[0].replace("\\", "") in err
    assert not (tmp_path / "o.png").exists()


def test_fp32_overflow_does_not_say_use_fp32(tmp_path, capsys):
    hot = Generator("tiny_x4")
    with torch.no_grad():
        hot.conv_first.weight.fill_(1e37)  # finite weights whose activations overflow fp32
    p = save_generator(hot, tmp_path / "hot.safetensors")
    _img(tmp_path / "a.png")
    err = one_line_error(capsys, "upscale", tmp_path / "a.png", "-o", tmp_path / "o.png", "--model", p,
                          "--backend", "torch")  # fmt: skip
    assert "non-finite output in fp32" in err and "use dtype" not in err


def _icc() -> bytes:
    from PIL import ImageCms

    return ImageCms.ImageCmsProfile(ImageCms.createProfile("LAB")).tobytes()  # anything but sRGB


@pytest.mark.parametrize("suffix", [".png", ".jpg", ".webp", ".tiff"])
def test_icc_profile_is_carried_to_the_output(tmp_path, tiny_model, capsys, suffix):
    icc = _icc()
    _img(tmp_path / "a.jpg", icc_profile=icc, quality=95)
    rc, _, err = cli(capsys, "upscale", tmp_path / "a.jpg", "-o", tmp_path / f"o{suffix}", "--model", tiny_model, "-q")
    assert rc == 0 and err == ""
    with Image.open(tmp_path / f"o{suffix}") as im:
        assert im.info.get("icc_profile") == icc


def test_icc_profile_into_bmp_is_said(tmp_path, tiny_model, capsys):
    _img(tmp_path / "a.png", icc_profile=_icc())
    rc, _, err = cli(capsys, "upscale", tmp_path / "a.png", "-o", tmp_path / "o.bmp", "--model", tiny_model, "-q")
    assert rc == 0 and len(err.splitlines()) == 1 and "ICC colour profile is dropped" in err


@needs_av
def test_video_rotation_is_kept(tmp_path, tiny_model, capsys):
    src, dst = tmp_path / "portrait.mp4", tmp_path / "o.mp4"
    out = av.open(str(src), mode="w")
    vs = out.add_stream("libx264", rate=25)
    vs.width, vs.height, vs.pix_fmt = 16, 12, "yuv420p"
    vs.set_display_rotation(90)  # a phone held upright
    for i in range(3):
        for p in vs.encode(av.VideoFrame.from_ndarray(np.full((12, 16, 3), 60 * i, np.uint8), format="rgb24")):
            out.mux(p)
    for p in vs.encode():
        out.mux(p)
    out.close()
    rc, _, _ = cli(capsys, "video", src, dst, "--model", tiny_model, "-q")
    assert rc == 0
    with av.open(str(dst)) as c:
        f = next(c.decode(video=0))
        assert (f.width, f.height) == (64, 48) and f.rotation == 90


def _png16(path: Path, a: np.ndarray, **kw) -> None:
    from srgan_fast.io.images import _png16 as write

    path.write_bytes(write(a, **kw))


def _bits(path: Path) -> int:
    raw = path.read_bytes()
    assert raw[12:16] == b"IHDR"
    return raw[24]


@needs_av
@pytest.mark.parametrize("channels", [1, 3, 4])
def test_16bit_png_keeps_16_bits(tmp_path, tiny_model, capsys, channels):
    rng = np.random.default_rng(5)
    a = rng.integers(0, 65536, (6, 5, 3), dtype=np.uint16)
    if channels == 1:
        Image.fromarray(a[..., 0]).save(tmp_path / "in.png")  # Pillow writes 16-bit gray
        a = np.repeat(a[..., :1], 3, axis=2)
        assert _bits(tmp_path / "in.png") == 16
    elif channels == 3:
        _png16(tmp_path / "in.png", a)
    else:
        alpha = rng.integers(0, 65536, (6, 5), dtype=np.uint16)
        _png16(tmp_path / "in.png", np.dstack([a, alpha]))
    rc, _, err = cli(capsys, "upscale", tmp_path / "in.png", "-o", tmp_path / "o.png", "--model", tiny_model, "-q")
    assert rc == 0 and err == ""
    assert _bits(tmp_path / "o.png") == 16
    with av.open(str(tmp_path / "o.png")) as c:
        got = next(c.decode(video=0)).to_ndarray(format="rgba64le" if channels == 4 else "rgb48le")
    assert np.array_equal(got[..., :3], Engine(tiny_model).upscale(a))  # uint16 in, uint16 out (the CLI's backend)
    # into a format that holds 8 bits: written, and said in one line
    rc, _, err = cli(capsys, "upscale", tmp_path / "in.png", "-o", tmp_path / "o.tiff", "--model", tiny_model, "-q")
    assert rc == 0 and len(err.splitlines()) == 1 and "16-bit image written with 8 bits per channel" in err


def test_16bit_and_8bit_images_of_one_size_are_not_batched_together(tmp_path, tiny_model, capsys):
    (tmp_path / "in").mkdir()
    a16 = np.random.default_rng(1).integers(0, 65536, (6, 5, 3), dtype=np.uint16)
    _png16(tmp_path / "in" / "a.png", a16)
    a8 = _img(tmp_path / "in" / "b.png", h=6, w=5)
    out = tmp_path / "o"
    rc, _, _ = cli(capsys, "upscale", tmp_path / "in", "-o", out, "--model", tiny_model, "-q", "--batch", "2")
    assert rc == 0 and _bits(out / "a.png") == (16 if av is not None else 8)
    assert _bits(out / "b.png") == 8
    assert np.array_equal(np.array(Image.open(out / "b.png")), Engine(tiny_model, backend="torch").upscale(a8))


def test_exif_orientation_on_arrays_matches_pillow():
    from PIL import ImageOps

    from srgan_fast.io.images import _apply_orientation

    a = np.random.default_rng(0).integers(0, 256, (3, 5, 3), dtype=np.uint8)
    for o in range(1, 9):
        im = Image.fromarray(a)
        exif = im.getexif()
        exif[0x0112] = o
        im.info["exif"] = exif.tobytes()
        want = np.asarray(ImageOps.exif_transpose(im))
        assert np.array_equal(_apply_orientation(a, o), want), o


def test_float_input_of_0_to_255_warns(tiny_model):
    e = Engine(tiny_model, backend="torch")
    x = np.random.default_rng(0).random((4, 5, 3), dtype=np.float32)
    with pytest.warns(RuntimeWarning, match=r"maximum is 2\d\d.*divide by 255"):
        e.upscale(x * 255)
    with pytest.warns(RuntimeWarning, match="maximum is"):
        e.upscale(torch.from_numpy(x * 255))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        e.upscale(np.minimum(x * 1.2, 1.2))  # a decoder's overshoot: clamped, no warning
        e.upscale((x * 255).astype(np.uint8))


# ---------------------------------------------------------------- promises


def test_memory_budget_splits_batches_and_takes_size_strings(tiny_model):
    from srgan_fast.options import RunOptions

    assert Engine(tiny_model, backend="torch", memory_budget="512M").memory_budget == 512 << 20
    assert RunOptions(memory_budget="2G").memory_budget == 2 << 30
    with pytest.raises(ValueError, match="memory_budget: not a size"):
        Engine(tiny_model, backend="torch", memory_budget="lots")
    e = Engine(tiny_model, backend="torch")
    bpp = e.bytes_per_lr_pixel()
    budget = bpp * 16 * 16 * 5  # five 16x16 frames per call
    small = Engine(tiny_model, backend="torch", memory_budget=budget)
    calls: list[tuple] = []
    real = small._runner.__class__.__call__
    small._runner.__class__.__call__ = lambda self, x, u8: calls.append(tuple(x.shape)) or real(self, x, u8)
    try:
        x = np.random.default_rng(0).integers(0, 256, (12, 16, 16, 3), dtype=np.uint8)
        y = small.upscale(x)
    finally:
        small._runner.__class__.__call__ = real
    assert [c[0] for c in calls] == [5, 5, 2]
    assert all(n * h * w * bpp <= budget for n, h, w, _ in calls)
    assert np.array_equal(y, np.concatenate([e.upscale(x[i : i + 1]) for i in range(12)]))
    assert small.estimate(16, 16, 12).tile is None


def test_disk_full_is_one_line_and_keeps_the_old_output(tmp_path, tiny_model, capsys, monkeypatch):
    from srgan_fast.errors import user_message

    _img(tmp_path / "a.png")
    (tmp_path / "o.png").write_bytes(b"yesterday's output")
    before = _snapshot(tmp_path)

    def full(self, fp, *a, **k):
        raise OSError(errno.ENOSPC, "No space left on device")  # as a buffered write raises it: no file name

    monkeypatch.setattr(Image.Image, "save", full)
    err = one_line_error(capsys, "upscale", tmp_path / "a.png", "-o", tmp_path / "o.png", "--model", tiny_model)
    assert "o.png" in err and "disk is full" in err
    assert _snapshot(tmp_path) == before  # no temporary file left, the old output intact
    assert "disk is full" in user_message(OSError(errno.ENOSPC, "No space left on device"))


def test_symlink_loop_in_an_input_folder_is_one_line_or_skipped(tmp_path, tiny_model, capsys):
    src = tmp_path / "in"
    src.mkdir()
    _img(src / "a.png")
    os.symlink("loop.png", src / "loop.png")
    err = one_line_error(capsys, "upscale", src, "-o", tmp_path / "o", "--model", tiny_model, "-q")
    assert "loop.png" in err
    rc, _, err = cli(capsys, "upscale", src, "-o", tmp_path / "s", "--model", tiny_model, "-q", "--on-error", "skip")
    assert rc == 0 and "loop.png" in err and "1 of 2 input(s) skipped" in err
    assert sorted(p.name for p in (tmp_path / "s").iterdir()) == ["a.png"]


def test_ray_wrapped_user_error_is_one_line():
    from srgan_fast.errors import user_message

    # what Ray Data raises at the driver: the worker's exception survives only as text
    wrapped = type("RayTaskError(UserCodeException)", (Exception,), {"__module__": "ray.exceptions"})
    e = wrapped(
        'ray::MapWorker(MapBatches(_Upscaler)).submit() (pid=1)\n  File "srgan_fast/images.py", line 66\n'
        "srgan_fast.io.images.ImageError: /data/in/bad.png: unreadable image (OSError: image file is truncated)\n\n"
        "The above exception was the direct cause of the following exception:\n"
        "ray.exceptions.UserCodeException: UDF failed to process a data block."
    )
    assert user_message(e) == "/data/in/bad.png: unreadable image (OSError: image file is truncated)"
    bug = wrapped("srgan_fast.engine.Oops: x\nKeyError: 'bug'")
    assert user_message(bug) is None  # a bug in a worker keeps its traceback


def test_stream_delivers_good_frames_before_the_source_fails(tiny_model):
    e = Engine(tiny_model, backend="torch")
    frames = [np.random.default_rng(i).integers(0, 256, (4, 5, 3), dtype=np.uint8) for i in range(3)]

    def source():
        yield from frames
        raise OSError("decoder: end of stream unexpected")

    got = []
    with pytest.raises(OSError, match="decoder"):
        for y in e.stream(source(), batch=4):
            got.append(y)
    assert len(got) == 3 and all(np.array_equal(g, e.upscale(f)) for g, f in zip(got, frames))


def test_what_a_folder_holds_besides_images_is_said(tmp_path, tiny_model, capsys):
    src = tmp_path / "in"
    (src / "sub").mkdir(parents=True)
    _img(src / "a.png")
    _img(src / "sub" / "b.png")
    _img(src / "noext", format="PNG")  # a PNG without a suffix
    (src / "x.png").mkdir()  # a folder named like an image
    (src / ".DS_Store").write_bytes(b"")
    rc, _, err = cli(capsys, "upscale", src, "-o", tmp_path / "o", "--model", tiny_model, "-q")
    assert rc == 0 and len(err.splitlines()) == 1, err
    assert "not read: 2 subfolder(s) (sub, x.png" in err and "1 file(s) without an image suffix (noext" in err
    assert ".DS_Store" not in err
    assert sorted(p.name for p in (tmp_path / "o").iterdir()) == ["a.png"]


def test_jpeg_quality_flag_and_default(tmp_path, tiny_model, capsys):
    a = _img(tmp_path / "a.png", h=8, w=8)
    sr = Engine(tiny_model, backend="torch").upscale(a)
    for flag, q in (([], 95), (["--quality", "50"], 50)):
        rc, _, _ = cli(capsys, "upscale", tmp_path / "a.png", "-o", tmp_path / "o.jpg", "--model", tiny_model, *flag)
        assert rc == 0
        Image.fromarray(sr).save(tmp_path / "ref.jpg", quality=q, subsampling=0 if q >= 90 else -1)
        with Image.open(tmp_path / "o.jpg") as got, Image.open(tmp_path / "ref.jpg") as ref:
            assert got.quantization == ref.quantization and got.layer == ref.layer
    m = ["--model", tiny_model]
    assert "from 1 to 100" in one_line_error(capsys, "upscale", tmp_path / "a.png", "-o", tmp_path / "p.jpg",
                                              "--quality", "0", *m)  # fmt: skip
    assert "--ray" in one_line_error(capsys, "upscale", tmp_path / "a.png", "-o", tmp_path / "p.jpg", "--quality",
                                      "90", "--ray", *m)  # fmt: skip
    assert not (tmp_path / "p.jpg").exists()


@needs_av
def test_video_crf_and_bitrate_out_of_range_are_refused(tmp_path, tiny_model, capsys):
    # found in review: x264 clamped --crf 99 to 51 (its worst quality) without a word
    src = tmp_path / "in.mkv"
    make_corrupt_clip(src, n=2, bad=99)
    m = ["--model", tiny_model, "-q"]
    assert "--crf must be 0-51" in one_line_error(capsys, "video", src, tmp_path / "o.mp4", "--crf", "99", *m)
    assert "--bitrate must be a positive" in one_line_error(capsys, "video", src, tmp_path / "o.mp4", "--bitrate",
                                                           "-5", *m)  # fmt: skip
    assert not (tmp_path / "o.mp4").exists()


def test_convert_refuses_targets_that_are_not_regular_files_and_deep_folders(tmp_path):
    from srgan_fast.weights.convert import convert

    src = tmp_path / "g.pth"
    torch.save(Generator("tiny_x4").state_dict(), src)
    fifo = tmp_path / "fifo.safetensors"
    os.mkfifo(fifo)
    with pytest.raises(Exception, match="not a regular file"):
        convert(src, fifo)
    assert stat.S_ISFIFO(os.lstat(fifo).st_mode)  # still the FIFO
    with pytest.raises(Exception, match="nonexistent"):
        convert(src, tmp_path / "nonexistent" / "sub" / "x.safetensors")
    assert not (tmp_path / "nonexistent").exists()
    assert convert(src, tmp_path / "ok.safetensors").path.exists()  # the same call to a plain file works


@pytest.mark.parametrize("bad", ["batch_size=0", "crop=-4", "iters=0", "lr=0", "val_every=-1"])
def test_train_refuses_impossible_numbers_at_once(bad, tmp_path, capsys):
    import time

    t0 = time.perf_counter()
    rc = main(["train", "--preset", "tiny", "--set", bad, f"out={tmp_path / 'run'}"])
    assert rc == 2 and time.perf_counter() - t0 < 5
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and bad.split("=")[0] in err[0], err
    assert not (tmp_path / "run").exists()  # no run folder left behind


# ---------------------------------------------------------------- issue 31: checkpoints bounded before inflating


def _zip_bomb(path: Path, mib: int = 300) -> None:
    """A torch.save checkpoint whose tensor record is swapped for `mib` MiB of zeros, deflated:
    a file of a few hundred KB whose central directory declares hundreds of MiB."""
    import io
    import zipfile

    buf = io.BytesIO()
    torch.save({"conv_first.weight": torch.zeros(4)}, buf)
    real = zipfile.ZipFile(buf)
    with zipfile.ZipFile(path, "w") as z:
        for info in real.infolist():
            if not info.filename.endswith("/data/0"):
                z.writestr(info, real.read(info.filename))
                continue
            bomb = zipfile.ZipInfo(info.filename)
            bomb.compress_type = zipfile.ZIP_DEFLATED
            with z.open(bomb, "w", force_zip64=True) as f:
                zeros = bytes(1 << 20)
                for _ in range(mib):
                    f.write(zeros)


def test_pth_zip_bomb_is_refused_before_anything_is_inflated(tmp_path, capsys, monkeypatch):
    import tracemalloc
    import zipfile

    src = tmp_path / "bomb.pth"
    _zip_bomb(src)
    assert src.stat().st_size < 1 << 20
    loads, reads = [], []
    monkeypatch.setattr(torch, "load", lambda *a, **k: loads.append(a))  # torch inflates each record whole
    real_read = zipfile.ZipExtFile.read
    monkeypatch.setattr(zipfile.ZipExtFile, "read", lambda self, *a: reads.append(self.name) or real_read(self, *a))
    tracemalloc.start()
    try:
        err = one_line_error(capsys, "convert", src, tmp_path / "out.safetensors")
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert str(src) in err and "refused before reading" in err and "data/0" in err and "300 MiB" in err, err
    assert loads == [] and reads == []  # refused from the central directory alone
    assert peak < 64 << 20, f"peak {peak / 2**20:.0f} MiB"
    assert not (tmp_path / "out.safetensors").exists()


def test_checkpoint_limits_come_from_the_models_and_pass_real_checkpoints(tmp_path):
    from srgan_fast.families.rrdbnet.arch import RRDBNet, RRDBNetConfig
    from srgan_fast.weights import checkpoint_limits, torch_load_weights_only

    one, total = checkpoint_limits()
    with torch.device("meta"):
        biggest = sum(p.numel() for p in RRDBNet(RRDBNetConfig()).parameters())  # the largest shipped default
    assert one == biggest * 8 and total == 4 * one
    # a training checkpoint (a generator and its EMA copy) still loads
    state = {"params": Generator("tiny_x4").state_dict(), "params_ema": Generator("tiny_x4").state_dict()}
    torch.save(state, tmp_path / "ok.pth")
    assert set(torch_load_weights_only(tmp_path / "ok.pth")) == {"params", "params_ema"}
