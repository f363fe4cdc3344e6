"""Review round 3 of issues 29/31 (atomic_output and the writers): hostile output paths that the
first round let through -- a symlinked output, a long (but legal) file name, a file whose
permission bits the user chose, a container that refuses the codec."""

import json
import os
import stat
import sys

import numpy as np
import pytest

from srgan_fast.io.images import save_image
from srgan_fast.io.paths import atomic_output

RGB = np.zeros((4, 6, 3), np.uint8)


def test_a_symlinked_output_replaces_the_file_it_points_to_and_keeps_the_link(tmp_path):
    """Before: the link itself was replaced by a regular file and the file it pointed to kept
    its old content (a plain write, as before atomic_output, goes through the link)."""
    real = tmp_path / "renders" / "v3.png"
    real.parent.mkdir()
    real.write_bytes(b"old")
    link = tmp_path / "latest.png"
    link.symlink_to(real)
    save_image(link, RGB)
    assert link.is_symlink() and os.readlink(link) == str(real)
    assert real.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert not [p for p in (*tmp_path.iterdir(), *real.parent.iterdir()) if ".partial" in p.name]


def test_a_failed_write_through_a_symlink_keeps_the_target_and_names_the_users_path(tmp_path):
    real = tmp_path / "real.bin"
    real.write_bytes(b"previous")
    link = tmp_path / "out.bin"
    link.symlink_to(real)
    with pytest.raises(OSError) as e:
        with atomic_output(link) as tmp:
            tmp.write_bytes(b"half")
            raise OSError(28, "No space left on device", str(tmp))
    assert e.value.filename == str(link)
    assert real.read_bytes() == b"previous" and link.is_symlink()
    assert [p.name for p in tmp_path.iterdir() if ".partial" in p.name] == []


def test_a_cache_symlink_is_replaced_not_followed(tmp_path):
    from srgan_fast.backends import auto

    victim = tmp_path / "victim.json"
    victim.write_text("keep me")
    path = tmp_path / auto.CACHE_FILE
    path.symlink_to(victim)
    auto._write_cache(path, "key", {"backend": "torch"})
    assert victim.read_text() == "keep me"
    assert path.is_file() and not path.is_symlink() and "key" in json.loads(path.read_text())


def test_a_long_but_legal_output_name_is_written(tmp_path):
    """Before: a 249-byte name failed with 'File name too long' (the temporary name added ~20
    bytes past the file system's 255)."""
    out = tmp_path / ("a" * 245 + ".png")
    save_image(out, RGB)
    assert out.is_file() and [p.name for p in tmp_path.iterdir()] == [out.name]
    uni = tmp_path / ("é" * 124 + ".png")  # 252 bytes in UTF-8
    save_image(uni, RGB)
    assert uni.is_file()


def test_replacing_a_file_keeps_its_permission_bits(tmp_path):
    """Before: a 0600 file came back 0644 (the new file's umask default): readable by everyone."""
    out = tmp_path / "private.png"
    out.write_bytes(b"old")
    os.chmod(out, 0o600)
    save_image(out, RGB)
    assert stat.S_IMODE(out.stat().st_mode) == 0o600
    fresh = tmp_path / "fresh.png"  # a new file: the umask's mode, as any write
    save_image(fresh, RGB)
    assert stat.S_IMODE(fresh.stat().st_mode) & 0o600 == 0o600


def _nearest_x4():
    import torch

    from srgan_fast.families.srvgg_compact import CompactConfig, SRVGGNetCompact

    m = SRVGGNetCompact(CompactConfig(num_feat=4, num_conv=1, upscale=4)).eval()
    with torch.no_grad():
        for p in m.parameters():
            p.zero_()
    return m


def _clip(path, n=2, w=32, h=24):
    av = pytest.importorskip("av")
    out = av.open(str(path), "w")
    vs = out.add_stream("libx264", rate=25)
    vs.width, vs.height, vs.pix_fmt = w, h, "yuv420p"
    for i in range(n):
        img = np.full((h, w, 3), 40 * i, np.uint8)
        for p in vs.encode(av.VideoFrame.from_ndarray(img, format="rgb24")):
            out.mux(p)
    for p in vs.encode():
        out.mux(p)
    out.close()


def test_video_to_webm_without_codec_picks_a_webm_codec(tmp_path):
    """Before: `srgan-fast video in.mp4 out.webm` failed with "--codec libx264: not an encoder
    this PyAV has" -- no --codec was given, and the open error itself suggests a .webm name."""
    av = pytest.importorskip("av")
    from srgan_fast.io.video import upscale_video

    if not any(c in av.codecs_available for c in ("libvpx-vp9", "libsvtav1", "libaom-av1", "libvpx")):
        pytest.skip("no WebM encoder in this FFmpeg")
    src, dst = tmp_path / "in.mp4", tmp_path / "out.webm"
    _clip(src)
    res = upscale_video(src, dst, model=_nearest_x4(), progress=False, backend="torch")
    assert res["frames_out"] == 2 and res["codec"] in ("libvpx-vp9", "libsvtav1", "libaom-av1", "libvpx")
    with av.open(str(dst)) as c:
        assert sum(1 for _ in c.decode(video=0)) == 2


def test_a_container_refusing_an_existing_codec_says_so(tmp_path):
    av = pytest.importorskip("av")
    from srgan_fast.io.video import VideoError, upscale_video

    src, dst = tmp_path / "in.mp4", tmp_path / "out.webm"
    _clip(src)
    dst.write_bytes(b"previous")
    with pytest.raises(VideoError) as e:
        upscale_video(src, dst, model=_nearest_x4(), codec="libx264", progress=False, backend="torch")
    msg = str(e.value)
    assert str(dst) in msg and "cannot hold libx264" in msg and "not an encoder" not in msg, msg
    assert dst.read_bytes() == b"previous" and sorted(p.name for p in tmp_path.iterdir()) == ["in.mp4", "out.webm"]
    assert av  # (PyAV present)


def test_a_warning_of_several_lines_is_printed_as_one(monkeypatch, capsys):
    """Before: a library's warning spanning lines (torch's, ONNX export's) came out as several."""
    import warnings

    from srgan_fast import cli
    from srgan_fast.cli import models

    def run(args):
        warnings.warn("first line\n  second line\n", UserWarning, stacklevel=1)
        return 0

    def show(message, category, filename, lineno, file=None, line=None):  # as Python's, past pytest's recorder
        print(warnings.formatwarning(message, category, filename, lineno, line), end="", file=sys.stderr)

    monkeypatch.setattr(models, "run", run)
    monkeypatch.setattr(warnings, "showwarning", show)
    assert cli.main(["models"]) == 0
    err = [ln for ln in capsys.readouterr().err.splitlines() if ln.strip()]
    assert err == ["srgan-fast models: warning: first line; second line"], err


def test_libsvtav1_does_not_print_its_banner(tmp_path):
    """Before: --codec libsvtav1 printed SVT-AV1's 20-line banner and configuration to stderr
    (x265's is quieted the same way). SVT reads SVT_LOG once per process: checked in a child."""
    import subprocess
    import textwrap

    av = pytest.importorskip("av")
    if "libsvtav1" not in av.codecs_available:
        pytest.skip("no libsvtav1 in this FFmpeg")
    src, dst = tmp_path / "in.mp4", tmp_path / "out.mkv"
    _clip(src)
    code = textwrap.dedent(f"""
        import sys
        sys.path.insert(0, {os.path.dirname(__file__)!r})
        from test_review_round3 import _nearest_x4
        from srgan_fast.io.video import upscale_video
        res = upscale_video({str(src)!r}, {str(dst)!r}, model=_nearest_x4(), codec="libsvtav1", progress=False,
                            backend="torch")
        assert res["frames_out"] == 2
    """)
    env = {k: v for k, v in os.environ.items() if k != "SVT_LOG"}
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, env=env)
    assert r.returncode == 0, r.stderr[-2000:]
    assert "Svt[" not in r.stderr, r.stderr


def test_a_cache_folder_that_is_a_file_is_said_once(tmp_path):
    """SRGAN_FAST_CACHE_DIR naming a file: before, four warning lines per run (the calibration
    cache twice, the ONNX cache twice), each promising "(and replacing it)", which cannot happen."""
    import subprocess

    from PIL import Image

    (tmp_path / "notadir").write_text("x")
    Image.fromarray(np.zeros((24, 32, 3), np.uint8) + 90).save(tmp_path / "in.png")
    env = {**os.environ, "SRGAN_FAST_CACHE_DIR": str(tmp_path / "notadir"), "SRGAN_FAST_CALIBRATE": "1"}
    cmd = [sys.executable, "-m", "srgan_fast.cli", "upscale", str(tmp_path / "in.png"), "-o", str(tmp_path / "o.png")]
    r = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300)
    assert r.returncode == 0, r.stderr
    lines = [ln for ln in r.stderr.splitlines() if "warning:" in ln]
    assert len(lines) == 1, lines
    assert "notadir: is a file, not a folder" in lines[0] and "SRGAN_FAST_CACHE_DIR" in lines[0]
    assert "replacing" not in lines[0] and (tmp_path / "o.png").is_file()
