"""Hostile and unusual inputs (issue 13): every case ends with the right exit code, exactly one
line on stderr (never a traceback), bounded work, and nothing already written lost.

The CLI runs in-process (`srgan_fast.cli.main`) with the tiny model; only the signal tests
start a subprocess. What held before this issue is pinned here too, next to what was fixed:
pickles refused with no code run, tiling exact down to tile 1 (the engine-level proof is
tests/engine/test_engine.py::test_tiles_smaller_than_the_halo), fp16 overflow never a black frame
(engine level: test_engine.py::test_nonfinite_fp16_is_detected_never_a_black_frame).
"""

from __future__ import annotations

import fractions
import json
import os
import re
import signal
import struct
import subprocess
import sys
import time
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from srgan_fast.cli import main
from srgan_fast.families.srresnet.arch import Generator
from srgan_fast.io.images import ImageError, load_image
from srgan_fast.reference import upscale_reference
from srgan_fast.weights import WeightsError, load_generator, save_generator

from ..conftest import cli, one_line_error

ROOT = Path(__file__).resolve().parents[2]
# a folder no one can write into, root included (sysfs refuses new entries); used only where
# sysfs is mounted
UNWRITABLE = Path("/sys/srgan-fast-test")
HAVE_SYSFS = Path("/sys/kernel").is_dir()


def _img(path, h=5, w=7, seed=0):
    a = np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)
    Image.fromarray(a).save(path)
    return a


# ---------------------------------------------------------------- weights files


def _safetensors(path: Path, meta: dict, header_extra: dict | None = None, data: bytes = b"") -> Path:
    """A hand-made safetensors file: JSON header (metadata + tensor entries) and raw data."""
    h = dict(header_extra or {})
    h["__metadata__"] = meta
    raw = json.dumps(h).encode()
    path.write_bytes(struct.pack("<Q", len(raw)) + raw + data)
    return path


def _edit_entry(raw: bytes, tensor: str, **changes) -> bytes:
    """A safetensors file's bytes with `changes` made to one tensor's header entry; the data as is."""
    n = int.from_bytes(raw[:8], "little")
    h = json.loads(raw[8 : 8 + n])
    h[tensor].update(changes)
    hb = json.dumps(h).encode()
    return struct.pack("<Q", len(hb)) + hb + raw[8 + n :]


@pytest.mark.parametrize(
    "config,msg",
    [
        ({"num_blocks": 10**12}, "num_blocks=1000000000000 is over the limit"),
        ({"num_blocks": 100000}, "num_blocks=100000 is over the limit"),
        ({"channels": 10**6}, "channels=1000000 is over the limit"),
        ({"channels": "64"}, "channels must be an integer, got str"),
        ({"scale": 4.0}, "scale must be an integer"),
        ({"scale": 3}, "scale must be 2, 4 or 8"),
        ({"num_blocks": -1}, "bad config"),
        ({"head_kernel": 4}, "odd"),
        ({"nonsense": 1}, "unknown GeneratorConfig fields"),
        ([16, 64], "must be a JSON object"),
    ],
)
def test_hostile_weights_config_fails_fast_with_one_line(tmp_path, capsys, config, msg):
    p = _safetensors(tmp_path / "evil.safetensors", {"format": "srgan_fast/1", "config": json.dumps(config)})
    assert p.stat().st_size < 1024
    t = time.perf_counter()
    with pytest.raises(WeightsError, match=msg):
        load_generator(p)
    assert time.perf_counter() - t < 1.0
    _img(tmp_path / "in.png")
    err = one_line_error(capsys, "upscale", tmp_path / "in.png", "-o", tmp_path / "o.png", "--model", p)
    assert msg.split(",")[0] in err and "evil.safetensors" in err
    assert not (tmp_path / "o.png").exists()


_COMPACT = {"num_in_ch": 3, "num_out_ch": 3, "num_feat": 16, "num_conv": 2, "upscale": 4, "act_type": "prelu"}


@pytest.mark.parametrize(
    "field,value",
    [
        ("num_conv", 10**6),  # a 1 KB file claiming a million convs: building it (even on meta) takes hours
        ("num_conv", 10**12),
        ("num_conv", 257),  # just over the limit
        ("num_feat", 10**6),
        ("num_feat", 1025),
        ("num_conv", 2.5),
        ("num_feat", 64.0),
        ("num_conv", True),
        ("num_in_ch", 10**6),
        ("num_conv", "16"),
        ("num_feat", None),
    ],
)
def test_hostile_compact_config_fails_fast_without_building(tmp_path, capsys, monkeypatch, field, value):
    # the SRVGGNetCompact family (the engine's compact models): a header-only file whose config
    # claims an absurd size is refused from its metadata, in one line naming the field, and the
    # model is never built
    from srgan_fast.families.srvgg_compact import FAMILY, SRVGGNetCompact

    def built(self, *args, **kwargs):
        raise AssertionError(f"SRVGGNetCompact built from a hostile config ({field}={value!r})")

    monkeypatch.setattr(SRVGGNetCompact, "__init__", built)
    cfg = dict(_COMPACT, **{field: value})
    if field == "num_in_ch":
        cfg["num_out_ch"] = value  # the model requires them equal: only the size is wrong
    meta = {"format": "srgan_fast/1", "family": FAMILY, "config": json.dumps(cfg)}
    p = _safetensors(tmp_path / "evil.safetensors", meta)
    assert p.stat().st_size < 1024

    def fields_named(msg):  # in what follows the file's name (the CLI's prefix says "upscale")
        return [f for f in _COMPACT if re.search(rf"\b{f}\b", msg.split("evil.safetensors", 1)[-1])]

    t = time.perf_counter()
    with pytest.raises(WeightsError) as e:
        load_generator(p)
    assert time.perf_counter() - t < 2.0
    msg = str(e.value)
    assert len(msg.splitlines()) == 1 and "evil.safetensors" in msg, msg
    assert fields_named(msg) == [field], msg
    if type(value) is int:  # the size the file claims is shown
        assert str(value) in msg, msg
    _img(tmp_path / "in.png")
    t = time.perf_counter()
    err = one_line_error(capsys, "upscale", tmp_path / "in.png", "-o", tmp_path / "o.png", "--model", p)
    assert time.perf_counter() - t < 2.0
    assert "evil.safetensors" in err and fields_named(err) == [field], err
    assert not (tmp_path / "o.png").exists()


def test_header_is_checked_against_the_config_before_anything_is_built(tmp_path, capsys):
    # the largest config the limits allow (256 blocks x 1024 channels: 19 GB of fp32 weights),
    # and no tensors: refused from the header alone, in well under a second
    cfg = {"num_blocks": 256, "channels": 1024}
    p = _safetensors(tmp_path / "big.safetensors", {"format": "srgan_fast/1", "config": json.dumps(cfg)})
    t = time.perf_counter()
    with pytest.raises(WeightsError, match=r"missing keys \(3858\): act_first.weight"):
        load_generator(p)
    assert time.perf_counter() - t < 1.0
    # a tiny model's tensors under the default model's config: every wrong shape is named
    bad = save_generator(Generator("tiny_x4").state_dict(), tmp_path / "mislabelled.safetensors",
                         config=Generator("srresnet_x4").config)  # fmt: skip
    _img(tmp_path / "in.png")
    err = one_line_error(capsys, "upscale", tmp_path / "in.png", "-o", tmp_path / "o.png", "--model", bad)
    assert "do not fit the model: missing keys (210)" in err
    assert "wrong shapes (42): act_first.weight: file (16,) vs model (64,)" in err


@pytest.mark.parametrize("name", ["tiny_x4", "srresnet_x2", "srresnet_x8", "odd"])
def test_expected_shapes_match_the_module(name):
    from srgan_fast.families.srresnet.arch import GeneratorConfig
    from srgan_fast.weights import expected_shapes

    cfg = GeneratorConfig(3, 5, 2, 1, 2, 3, 7) if name == "odd" else GeneratorConfig.from_name(name)
    want = {k: tuple(v.shape) for k, v in Generator(cfg).state_dict().items()}
    assert expected_shapes(cfg) == want and list(expected_shapes(cfg)) == list(want)


def test_truncated_or_doctored_safetensors(tmp_path, capsys):
    good = save_generator(Generator("tiny_x4"), tmp_path / "good.safetensors").read_bytes()
    n = int.from_bytes(good[:8], "little")
    cases = {
        "half.safetensors": (good[: len(good) // 2], "truncated or corrupt safetensors file: tensor"),
        "head.safetensors": (good[:20], "truncated safetensors file"),
        "padded.safetensors": (good + b"\0" * 64, "data section has"),
        "badjson.safetensors": (good[:8] + b"{" + b"x" * (n - 1) + good[8 + n :], "header is not JSON"),
    }
    # a tensor whose dtype or shape does not fit its byte range, and nothing else wrong: the
    # ranges still tile the data section exactly and the file length is right. Refused by the
    # size check itself (without it, a later check would give another reason, or none)
    a, b = json.loads(good[8 : 8 + n])["conv_first.bias"]["data_offsets"]  # F32[16]: 64 bytes
    for name, change, desc in (
        ("dtype", {"dtype": "F16"}, "F16[16]"),
        ("shape", {"shape": [15]}, "F32[15]"),
        ("wide", {"dtype": "F64"}, "F64[16]"),
        ("empty", {"shape": [0, 16]}, "F32[0, 16]"),
    ):
        data = _edit_entry(good, "conv_first.bias", **change)
        assert data.endswith(good[8 + n :])  # the data section as it was: only the header says otherwise
        cases[f"{name}.safetensors"] = (data, f"tensor 'conv_first.bias' {desc} does not fill bytes {a}..{b}")
    _img(tmp_path / "in.png")
    for name, (data, msg) in cases.items():
        p = tmp_path / name
        p.write_bytes(data)
        with pytest.raises(WeightsError, match=re.escape(msg)):
            load_generator(p)
        err = one_line_error(capsys, "upscale", tmp_path / "in.png", "-o", tmp_path / "o.png", "--model", p)
        assert name in err and msg in err
    # overlapping tensor byte ranges (two tensors reading the same bytes) are refused too
    sd = {"a": torch.zeros(2), "b": torch.zeros(2)}
    from safetensors.torch import save_file

    save_file(sd, str(tmp_path / "ov.safetensors"))
    raw = (tmp_path / "ov.safetensors").read_bytes()
    m = int.from_bytes(raw[:8], "little")
    h = json.loads(raw[8 : 8 + m])
    h["b"]["data_offsets"] = h["a"]["data_offsets"]
    _safetensors(tmp_path / "ov2.safetensors", {}, h, raw[8 + m :])
    with pytest.raises(WeightsError, match="overlaps or leaves gaps"):
        load_generator(tmp_path / "ov2.safetensors")


def test_model_naming_a_folder(tmp_path, capsys):
    _img(tmp_path / "in.png")
    (tmp_path / "models").mkdir()
    err = one_line_error(capsys, "upscale", tmp_path / "in.png", "-o", tmp_path / "o.png", "--model",
                          tmp_path / "models")  # fmt: skip
    assert "is a folder" in err


class _Evil:
    """Unpickling this runs a shell command: it must never be unpickled."""

    marker = ""

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_pickles_refused_with_no_code_run(tmp_path, capsys):
    marker = tmp_path / "PWNED"
    _Evil.marker = str(marker)
    evil = tmp_path / "evil.pth"
    torch.save({"state_dict": Generator("tiny_x4").state_dict(), "x": _Evil()}, evil)
    with pytest.raises(WeightsError, match="pickle"):
        load_generator(evil)  # held before: the loader never unpickles
    _img(tmp_path / "in.png")
    err = one_line_error(capsys, "upscale", tmp_path / "in.png", "-o", tmp_path / "o.png", "--model", evil)
    assert "srgan-fast convert" in err
    err = one_line_error(capsys, "convert", evil, tmp_path / "o.safetensors", "--config", "tiny_x4")
    assert "refused" in err and "nothing of it was run" in err
    assert not marker.exists() and not (tmp_path / "o.safetensors").exists()
    # a truncated checkpoint and a folder given to convert: one line each
    evil.write_bytes(evil.read_bytes()[:200])
    assert "not a readable PyTorch checkpoint" in one_line_error(capsys, "convert", evil, tmp_path / "o.safetensors")
    assert "is a folder" in one_line_error(capsys, "convert", tmp_path, tmp_path / "o.safetensors")


# ---------------------------------------------------------------- images


def _png_header_only(path: Path, w: int, h: int) -> Path:
    """A 70-byte PNG whose header claims w x h pixels (a decompression bomb's calling card)."""

    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0)
    body = chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b"")
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + body)
    return path


def test_decompression_bomb_refused_skipped_and_nothing_lost(tmp_path, tiny_model, capsys):
    src = tmp_path / "in"
    src.mkdir()
    a = _img(src / "a.png")
    _png_header_only(src / "b.png", 100000, 100000)
    c = _img(src / "c.png", seed=1)
    with pytest.raises(ImageError, match="too many pixels"):
        load_image(src / "b.png")
    want = {k: upscale_reference(load_generator(tiny_model), v) for k, v in (("a", a), ("c", c))}
    for batch in ("1", "4"):
        out = tmp_path / f"fail{batch}"
        err = one_line_error(capsys, "upscale", src, "-o", out, "--model", tiny_model, "-q", "--batch", batch)
        assert "b.png" in err and "too many pixels" in err
        # a.png was done before b.png failed: it is written, and right
        assert sorted(p.name for p in out.iterdir()) == ["a.png"]
        assert np.array_equal(np.array(Image.open(out / "a.png")), want["a"])
    rc, out, err = cli(capsys, "upscale", src, "-o", tmp_path / "skip", "--model", tiny_model, "-q", "--on-error=skip")
    assert rc == 0 and "skipped" in err and "b.png" in err and "1 of 3" in err
    for k in ("a", "c"):
        assert np.array_equal(np.array(Image.open(tmp_path / "skip" / f"{k}.png")), want[k])


def test_exif_orientation_is_applied(tmp_path, tiny_model, capsys):
    a = np.random.default_rng(2).integers(0, 256, (6, 10, 3), dtype=np.uint8)
    im = Image.fromarray(a)
    exif = im.getexif()
    exif[0x0112] = 6  # "rotate 90 CW to display": a phone held upright
    im.save(tmp_path / "portrait.png", exif=exif.tobytes())
    got = load_image(tmp_path / "portrait.png")
    assert np.array_equal(got, np.rot90(a, k=-1))  # lossless PNG: exact
    im.save(tmp_path / "portrait.jpg", exif=exif.tobytes(), quality=95)
    assert load_image(tmp_path / "portrait.jpg").shape == (10, 6, 3)
    rc, _, _ = cli(capsys, "upscale", tmp_path / "portrait.png", "-o", tmp_path / "o.png", "--model", tiny_model, "-q")
    assert rc == 0
    out = np.array(Image.open(tmp_path / "o.png"))
    assert np.array_equal(out, upscale_reference(load_generator(tiny_model), np.rot90(a, k=-1).copy()))


@pytest.mark.parametrize("kind", ["gif", "apng", "tiff"])
def test_animated_and_multi_frame_inputs_are_refused(tmp_path, tiny_model, capsys, kind):
    frames = [Image.fromarray(np.full((8, 8, 3), 40 * i, np.uint8)) for i in range(3)]
    p = tmp_path / {"gif": "a.gif", "apng": "a.png", "tiff": "a.tiff"}[kind]
    frames[0].save(p, save_all=True, append_images=frames[1:])
    err = one_line_error(capsys, "upscale", p, "-o", tmp_path / "o.png", "--model", tiny_model, "-q")
    assert "has 3 frames" in err and "srgan-fast video" in err
    assert not (tmp_path / "o.png").exists()
    frames[0].save(tmp_path / "still.gif")  # a one-frame GIF is an ordinary image
    assert load_image(tmp_path / "still.gif").shape == (8, 8, 3)


def test_camera_mpo_jpeg_loads_its_main_picture(tmp_path):
    # phones and stereo cameras write MPO JPEGs: frame 0 is the photo, the rest previews
    main_pic = np.zeros((16, 16, 3), np.uint8)
    main_pic[:, :8] = 200
    Image.fromarray(main_pic).save(tmp_path / "p.jpg", format="MPO", save_all=True, quality=100,
                                   append_images=[Image.fromarray(np.full((8, 8, 3), 50, np.uint8))])  # fmt: skip
    with Image.open(tmp_path / "p.jpg") as im:
        assert im.format == "MPO" and im.n_frames == 2
    got = load_image(tmp_path / "p.jpg")
    assert got.shape == (16, 16, 3) and np.abs(got.astype(int) - main_pic).max() <= 8


def test_output_paths_refused_before_any_work(tmp_path, tiny_model, capsys):
    a = tmp_path / "a.png"
    _img(a)
    before = a.read_bytes()
    m = ["--model", tiny_model, "-q"]
    err = one_line_error(capsys, "upscale", a, "-o", a, *m)
    assert "is an input" in err and a.read_bytes() == before
    err = one_line_error(capsys, "upscale", a, "-o", tmp_path / "out.gif", *m)
    assert "cannot write .gif" in err and not (tmp_path / "out.gif").exists()
    (tmp_path / "file").write_text("x")
    err = one_line_error(capsys, "upscale", a, "-o", tmp_path / "file" / "sub" / "o.png", *m)
    assert "is a file" in err
    err = one_line_error(capsys, "upscale", tmp_path, "-o", tmp_path / "file" / "out", *m)
    assert "is a file" in err


def test_unwritable_output_folder(tmp_path, tiny_model, capsys):
    if not HAVE_SYSFS and os.geteuid() == 0:
        pytest.skip("no folder here that root cannot write (no sysfs)")
    a = tmp_path / "a.png"
    _img(a)
    if HAVE_SYSFS:
        err = one_line_error(capsys, "upscale", a, "-o", UNWRITABLE / "o.png", "--model", tiny_model)
        assert "cannot write there" in err and str(UNWRITABLE) in err
    if os.geteuid() != 0:  # permission bits bind only non-root users
        ro = tmp_path / "ro"
        ro.mkdir(mode=0o555)
        try:
            err = one_line_error(capsys, "upscale", a, "-o", ro / "o.png", "--model", tiny_model)
            assert "cannot write there" in err
        finally:
            ro.chmod(0o755)


def test_alpha_into_jpeg_is_one_line(tmp_path, tiny_model, capsys):
    rgba = np.random.default_rng(0).integers(0, 256, (5, 6, 4), dtype=np.uint8)
    Image.fromarray(rgba, "RGBA").save(tmp_path / "a.png")
    err = one_line_error(capsys, "upscale", tmp_path / "a.png", "-o", tmp_path / "o.jpg", "--model", tiny_model)
    assert "alpha" in err and not (tmp_path / "o.jpg").exists()


def test_tile_1_through_the_cli_equals_untiled(tmp_path, tiny_model, capsys):
    _img(tmp_path / "a.png", h=6, w=5)
    for tile, name in ((None, "full.png"), (1, "t1.png")):
        extra = ["--tile", str(tile)] if tile else []
        rc, _, _ = cli(capsys, "upscale", tmp_path / "a.png", "-o", tmp_path / name, "--model", tiny_model, *extra)
        assert rc == 0
    assert np.array_equal(np.array(Image.open(tmp_path / "full.png")), np.array(Image.open(tmp_path / "t1.png")))


def test_fp16_overflow_is_one_line_never_a_black_image(tmp_path, capsys):
    hot = Generator("tiny_x4")
    with torch.no_grad():
        hot.conv_first.weight.mul_(2e5)  # activations overflow fp16 (max 65504)
    p = save_generator(hot, tmp_path / "hot.safetensors")
    _img(tmp_path / "a.png")
    err = one_line_error(capsys, "upscale", tmp_path / "a.png", "-o", tmp_path / "o.png", "--model", p,
                          "--dtype", "fp16", "--backend", "torch")  # fmt: skip
    assert "non-finite" in err and "fp32" in err
    assert not (tmp_path / "o.png").exists()


# ---------------------------------------------------------------- user errors vs bugs


def test_internal_errors_keep_their_traceback(tmp_path, tiny_model, capsys, monkeypatch):
    from srgan_fast.engine import Engine

    _img(tmp_path / "a.png")
    argv = ["upscale", str(tmp_path / "a.png"), "-o", str(tmp_path / "o.png"), "--model", str(tiny_model), "-q"]

    def compile_error(self, x, **k):
        raise RuntimeError("triton: CompilationError at 12:4 (an internal bug)")

    monkeypatch.setattr(Engine, "upscale", compile_error)
    with pytest.raises(RuntimeError, match="CompilationError"):  # not swallowed as a "user error"
        main(argv)
    monkeypatch.setattr(Engine, "upscale", lambda self, x, **k: None.shape)
    with pytest.raises(AttributeError):
        main(argv)
    # a kernel launcher's own check failing is the engine's bug, not the user's (a stand-in
    # launcher, so that this runs without Triton)
    launcher: dict = {"__name__": "srgan_fast.kernels.conv2d_fused"}
    exec("def launch(x):\n    raise ValueError('x must be NHWC (4-D), got shape (3,)')", launcher)
    monkeypatch.setattr(Engine, "upscale", lambda self, x, **k: launcher["launch"](x))
    with pytest.raises(ValueError, match="NHWC"):
        main(argv)


def test_out_of_memory_says_to_tile(tmp_path, tiny_model, capsys, monkeypatch):
    from srgan_fast.engine import Engine

    def oom(self, x, **k):
        raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 20.00 GiB")

    monkeypatch.setattr(Engine, "upscale", oom)
    _img(tmp_path / "a.png")
    err = one_line_error(capsys, "upscale", tmp_path / "a.png", "-o", tmp_path / "o.png", "--model", tiny_model)
    assert "out of GPU memory" in err and "--tile" in err


def test_ctrl_c_is_one_line_exit_130(tmp_path, tiny_model, capsys, monkeypatch):
    from srgan_fast.engine import Engine

    monkeypatch.setattr(Engine, "upscale", lambda self, x, **k: (_ for _ in ()).throw(KeyboardInterrupt))
    _img(tmp_path / "a.png")
    argv = ["upscale", tmp_path / "a.png", "-o", tmp_path / "o.png", "--model", tiny_model]
    err = one_line_error(capsys, *argv, code=130)
    assert "interrupted" in err


def test_debug_env_shows_the_trace(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("SRGAN_FAST_DEBUG", "1")
    _img(tmp_path / "a.png")
    with pytest.raises(WeightsError):
        main(["upscale", str(tmp_path / "a.png"), "-o", str(tmp_path / "o.png"), "--model", str(tmp_path)])


def test_pass_through_commands_share_the_error_handling(capsys, monkeypatch):
    import srgan_fast.bench

    def broken(argv, prog=None):
        raise FileNotFoundError("bench: no such preset file x.json")

    monkeypatch.setattr(srgan_fast.bench, "main", broken)
    assert "no such preset file" in one_line_error(capsys, "bench", "--preset", "x")
    monkeypatch.setattr(srgan_fast.bench, "main", lambda argv, prog=None: {}["bug"])
    with pytest.raises(KeyError):
        main(["bench"])
    assert "unknown config key" in one_line_error(capsys, "train", "--set", "bogus=1")


# ---------------------------------------------------------------- video

try:
    import av
except ImportError:  # the video tests skip; everything above still runs
    av = None
needs_av = pytest.mark.skipif(av is None, reason="PyAV not installed (pip install av)")


def make_vfr_clip(path: Path, n=24, w=16, h=12) -> None:
    """Phone-style variable frame rate: time base 1/90000, ~30 fps with jitter, 3 dropped frames."""
    rng = np.random.default_rng(0)
    tb = fractions.Fraction(1, 90000)
    out = av.open(str(path), mode="w")
    vs = out.add_stream("libx264", rate=30)
    vs.width, vs.height, vs.pix_fmt = w, h, "yuv420p"
    vs.time_base = vs.codec_context.time_base = tb
    yy, xx = np.mgrid[0:h, 0:w]
    t = 0
    for i in range(n):
        t += 3000 + int(rng.integers(-400, 400)) + (3000 if i in (5, 6, 13) else 0)
        img = np.stack([(xx * 9 + i * 7) % 256, (yy * 11 + i * 5) % 256, ((xx + yy) * 6) % 256], -1)
        f = av.VideoFrame.from_ndarray(img.astype(np.uint8), format="rgb24")
        f.pts, f.time_base = t, tb
        for p in vs.encode(f):
            out.mux(p)
    for p in vs.encode():
        out.mux(p)
    out.close()


def make_corrupt_clip(path: Path, n=12, bad=5, w=16, h=12) -> None:
    """FFV1 in Matroska at 25 fps whose packet `bad` (t = bad/25 s) is garbage."""
    out = av.open(str(path), mode="w")
    vs = out.add_stream("ffv1", rate=25)
    vs.width, vs.height, vs.pix_fmt = w, h, "yuv420p"
    yy, xx = np.mgrid[0:h, 0:w]
    packets = []
    for i in range(n):
        img = np.stack([(xx * 9 + i * 7) % 256, (yy * 11 + i * 5) % 256, ((xx + yy) * 6) % 256], -1)
        packets += vs.encode(av.VideoFrame.from_ndarray(img.astype(np.uint8), format="rgb24"))
    packets += vs.encode()
    for k, p in enumerate(packets):
        if k == bad:
            junk = av.Packet(b"\x00 garbage, not a frame " * 4)
            junk.pts, junk.dts, junk.time_base, junk.stream = p.pts, p.dts, p.time_base, p.stream
            junk.is_keyframe = True
            p = junk
        out.mux(p)
    out.close()


def video_pts(path: Path) -> list[fractions.Fraction]:
    with av.open(str(path)) as c:
        return [f.pts * f.time_base for f in c.decode(c.streams.video[0])]


@needs_av
def test_vfr_video_keeps_every_timestamp(tmp_path, tiny_model, capsys):
    src = tmp_path / "phone.mp4"
    make_vfr_clip(src)
    want = video_pts(src)
    assert len(want) == 24 and len({b - a for a, b in zip(want, want[1:])}) > 10  # really variable
    for name in ("o.mp4", "o.mkv"):
        rc, out, _ = cli(capsys, "video", src, tmp_path / name, "--model", tiny_model, "-q", "--batch", "3")
        assert rc == 0 and json.loads(out)["frames_out"] == 24
        got = video_pts(tmp_path / name)
        assert len(got) == 24
        if name.endswith(".mp4"):
            assert got == want  # exact: mp4 keeps the 1/90000 time base
        else:  # Matroska stores milliseconds: each pts rounded to the nearest ms, order kept
            assert max(abs(g - w) for g, w in zip(got, want)) <= fractions.Fraction(1, 2000)
            assert all(b > a for a, b in zip(got, got[1:]))
    rc, _, _ = cli(capsys, "video", tmp_path / "o.mkv", tmp_path / "again.mkv", "--model", tiny_model, "-q")
    assert rc == 0 and video_pts(tmp_path / "again.mkv") == video_pts(tmp_path / "o.mkv")  # mkv -> mkv exact


@needs_av
def test_corrupt_frame_is_named_or_skipped(tmp_path, tiny_model, capsys):
    src, dst = tmp_path / "broken.mkv", tmp_path / "o.mp4"
    make_corrupt_clip(src)
    err = one_line_error(capsys, "video", src, dst, "--model", tiny_model, "-q")
    assert "broken.mkv" in err and "after the frame at 0.160 s" in err and "--skip-bad-frames" in err
    # a failure leaves no output (and a previous file byte-equal: tests/io/test_video_reliability.py)
    assert not dst.exists() and not [p for p in tmp_path.iterdir() if ".partial" in p.name]
    rc, out, err = cli(capsys, "video", src, dst, "--model", tiny_model, "-q", "--skip-bad-frames")
    assert rc == 0 and json.loads(out)["frames_skipped"] == 1
    assert "skipped 1 undecodable frame(s)" in err and len(err.splitlines()) == 1
    want = [fractions.Fraction(i, 25) for i in range(12) if i != 5]
    assert video_pts(dst) == want


@needs_av
def test_video_output_errors_are_one_line(tmp_path, tiny_model, capsys):
    src = tmp_path / "in.mkv"
    make_corrupt_clip(src, n=3, bad=99)
    m = ["--model", tiny_model, "-q"]
    if HAVE_SYSFS:
        assert "cannot write there" in one_line_error(capsys, "video", src, UNWRITABLE / "o.mp4", *m)
    (tmp_path / "f").write_text("x")
    assert "is a file" in one_line_error(capsys, "video", src, tmp_path / "f" / "o.mp4", *m)
    assert "is a folder" in one_line_error(capsys, "video", src, tmp_path, *m)
    assert "cannot write this file" in one_line_error(capsys, "video", src, tmp_path / "o.xyz", *m)
    assert "not an encoder" in one_line_error(capsys, "video", src, tmp_path / "o.mp4", "--codec", "nope", *m)
    assert not (tmp_path / "o.mp4").exists()
    assert "output must differ" in one_line_error(capsys, "video", src, src, *m)


_SLOW_VIDEO = """
import sys, time
from pathlib import Path
from srgan_fast.engine import Engine
from srgan_fast.cli import main
real, n, ready = Engine.upscale, [0], Path(sys.argv[1])
def slow(self, x):
    n[0] += 1
    if n[0] == 4:
        ready.touch()  # the test sends its signals now
    time.sleep(0.1)
    return real(self, x)
Engine.upscale = slow
sys.argv = ["srgan-fast", *sys.argv[2:]]
sys.exit(main())
"""


@needs_av
@pytest.mark.parametrize("signals", [("SIGINT", "SIGINT"), ("SIGTERM",)], ids=["ctrl-c-twice", "sigterm"])
def test_interrupted_video_is_playable_with_one_line(tmp_path, tiny_model, signals):
    src, dst, ready = tmp_path / "in.mkv", tmp_path / "o.mp4", tmp_path / "ready"
    make_corrupt_clip(src, n=200, bad=10**9)
    argv = ["video", src, dst, "--model", tiny_model, "-q"]
    proc = subprocess.Popen([sys.executable, "-c", _SLOW_VIDEO, str(ready), *map(str, argv)], cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)  # fmt: skip
    deadline = time.time() + 120
    while not ready.exists() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.05)
    assert ready.exists(), proc.communicate()
    for s in signals:
        proc.send_signal(getattr(signal, s))
        time.sleep(0.02)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 128 + getattr(signal, signals[0]), err
    assert len(err.splitlines()) == 1 and "interrupted" in err and "playable" in err, err
    got = video_pts(dst)  # the container was finalised: it opens and decodes
    assert 3 <= len(got) < 200 and got == [fractions.Fraction(i, 25) for i in range(len(got))]


@needs_av
def test_start_past_the_end_is_one_line_and_writes_nothing(tmp_path, tiny_model, capsys):
    src = tmp_path / "phone.mp4"
    make_vfr_clip(src)  # under one second
    err = one_line_error(capsys, "video", src, tmp_path / "late.mp4", "--model", tiny_model, "-q", "--start", "100")
    assert "no video frame to upscale" in err and not (tmp_path / "late.mp4").exists()
    assert "--batch must be positive" in one_line_error(
        capsys, "video", src, tmp_path / "b.mp4", "--model", tiny_model, "-q", "--batch", "0"
    )


# ---------------------------------------------------------------- found in review


def test_convert_refuses_to_overwrite_its_input_and_leaves_nothing_on_failure(tmp_path, tiny_model, capsys):
    before = tiny_model.read_bytes()
    assert "the output is the input" in one_line_error(capsys, "convert", tiny_model, tiny_model)
    assert tiny_model.read_bytes() == before
    # a check that fails after writing (here: the user's --module cannot be built) leaves no file
    (tmp_path / "mod.py").write_text("import torch\nclass M(torch.nn.Module):\n    def __init__(self, a):\n"
                                     "        super().__init__()\n")  # fmt: skip
    err = one_line_error(capsys, "convert", tiny_model, tmp_path / "c.safetensors", "--module",
                          f"{tmp_path / 'mod.py'}:M", "--module-args", '{"b": 2}')  # fmt: skip
    assert "failed" in err and "unexpected keyword" in err
    mod = f"{tmp_path / 'mod.py'}:M"
    err = one_line_error(capsys, "convert", tiny_model, tmp_path / "c.safetensors", "--module", mod, "--module-args",
                          "{bad")  # fmt: skip
    assert "--module-args" in err
    assert not list(tmp_path.glob("*c.safetensors*")) and not list(tmp_path.glob(".*tmp"))
    _img(tmp_path / "notckpt.png")
    err = one_line_error(capsys, "convert", tmp_path / "notckpt.png", tmp_path / "c.safetensors")
    assert "not a PyTorch checkpoint" in err


def test_float_or_infinite_sizes_are_one_line(tmp_path, capsys):
    from srgan_fast.families.srvgg_compact import random_compact
    from srgan_fast.weights import save_generator

    f = save_generator(random_compact("tiny_compact_x4"), tmp_path / "c.safetensors")
    raw = f.read_bytes()
    n = int.from_bytes(raw[:8], "little")
    head = json.loads(raw[8 : 8 + n])
    cfg = json.loads(head["__metadata__"]["config"])
    cfg["upscale"] = 4.0
    head["__metadata__"]["config"] = json.dumps(cfg)
    hb = json.dumps(head).encode()
    (tmp_path / "cf.safetensors").write_bytes(len(hb).to_bytes(8, "little") + hb + raw[8 + n :])
    _img(tmp_path / "a.png")
    err = one_line_error(capsys, "upscale", tmp_path / "a.png", "-o", tmp_path / "o.png", "--model",
                          tmp_path / "cf.safetensors")  # fmt: skip
    assert "upscale=4.0 is out of range" in err
    import argparse

    from srgan_fast.options import parse_size

    for bad in ("inf", "1e400", "nan"):  # argparse turns this into its usage line and exit 2
        with pytest.raises(argparse.ArgumentTypeError, match="finite"):
            parse_size(bad)


def test_backend_messages_name_the_backend(monkeypatch):
    from srgan_fast.backends import get_backend, unavailable_reason

    monkeypatch.delenv("TRITON_INTERPRET", raising=False)
    for name in ("triton", "triton_fused"):
        why = unavailable_reason(get_backend(name), torch.device("cpu"))
        assert why is not None and why.startswith(f"backend {name!r}"), why
