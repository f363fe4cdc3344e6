"""The GStreamer element `srganfast` (srgan_fast/gst) against Engine.upscale, pixel for pixel.

Two ways in: in this process (the venv's Python, gi loaded by srgan_fast.gst.import_gi; a
pipeline appsrc ! srganfast ! appsink), and through gst-launch-1.0, whose gst-python plugin
loader embeds the system python3 and finds the element through `srgan-fast gst-env`.

Exactness: RGB output must equal Engine.upscale of the same frames, grouped into engine calls as
the element groups them (batch). NV12/I420 go through the package's own conversions
(srgan_fast.io.yuv, as Engine.upscale_nv12 does) with the caps' matrix and range, which are
deterministic: the expected planes are those conversions around Engine.upscale, equal exactly
(0 levels), not within 1. Skips, naming what to install, without gi, GStreamer's typelibs,
gst-launch-1.0 or the python plugin loader.
"""

from __future__ import annotations

import os
import shlex
import subprocess
import sys

import numpy as np
import pytest
import torch

from srgan_fast.engine import Engine
from srgan_fast.families.srresnet.arch import Generator
from srgan_fast.gst import GST_PACKAGES, import_gi, missing
from srgan_fast.gst.frames import Layout, from_rgb, pack, to_rgb, unpack
from srgan_fast.weights import save_generator

from ..conftest import randomize_bn

try:
    import_gi()
    from gi.repository import Gst, GstVideo
except (ImportError, ValueError) as e:
    pytest.skip(f"GStreamer from Python unavailable ({e})", allow_module_level=True)

Gst.init(None)


@pytest.fixture(scope="module")
def model_path(tmp_path_factory):
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("gst") / "tiny_x4.safetensors"
    return str(save_generator(randomize_bn(Generator("tiny_x4")), path))


@pytest.fixture(scope="module")
def engine(model_path):
    return Engine(model_path, backend="torch")


@pytest.fixture(scope="module")
def element():
    from srgan_fast.gst import element

    assert element.register()
    return element


def layout(caps: str) -> Layout:
    info = GstVideo.VideoInfo.new_from_caps(Gst.Caps.from_string(caps))
    n = info.finfo.n_planes
    return Layout(info.finfo.name, info.width, info.height, tuple(info.offset[:n]), tuple(info.stride[:n]), info.size)


def random_planes(lay: Layout, rng) -> list[np.ndarray]:
    planes = [rng.integers(0, 256, (rows, row_bytes), dtype=np.uint8) for rows, row_bytes in lay.planes]
    if lay.format == "RGB":
        planes[0] = planes[0].reshape(lay.height, lay.width, 3)
    return planes


def expected(engine, frames: list[list[np.ndarray]], fmt: str, batch: int, matrix=601, full=False, out_fmt=None):
    """What the element must produce: engine calls of `batch` frames, colour conversions of the
    package around them (the caps' matrix and range on both sides)."""
    out_fmt = out_fmt or fmt
    rgb = [to_rgb(p, fmt, matrix, full) for p in frames]
    sr = []
    for i in range(0, len(rgb), batch):
        sr.extend(engine.upscale(np.stack(rgb[i : i + batch])))
    return [from_rgb(x, out_fmt, matrix, full) for x in sr]


def run_inprocess(caps_in: str, buffers: list[bytes], props: str, caps_out: str | None = None):
    """appsrc ! srganfast ! appsink: (output buffers' bytes, output caps, error message or None)."""
    tail = f" ! {caps_out}" if caps_out else ""
    p = Gst.parse_launch(
        f"appsrc name=src format=time caps={caps_in.replace(' ', '')} ! srganfast {props}{tail} "
        "! appsink name=sink sync=false"
    )
    src, sink = p.get_by_name("src"), p.get_by_name("sink")
    bus = p.get_bus()

    def error():
        msg = bus.pop_filtered(Gst.MessageType.ERROR)
        return None if msg is None else msg.parse_error()[0].message

    try:
        if p.set_state(Gst.State.PLAYING) == Gst.StateChangeReturn.FAILURE:  # start() refused
            return [], None, error()
        for i, data in enumerate(buffers):
            b = Gst.Buffer.new_wrapped(data)
            b.pts, b.duration = i * Gst.SECOND // 30, Gst.SECOND // 30
            if src.emit("push-buffer", b) != Gst.FlowReturn.OK:
                break
        src.emit("end-of-stream")
        outs, caps, err = [], None, None
        for _ in range(600):  # up to a minute, polled so that an error ends the wait at once
            sample = sink.emit("try-pull-sample", Gst.SECOND // 10)
            if sample is None:
                err = err or error()
                if sink.get_property("eos") or err is not None:
                    break
                continue
            buf, caps = sample.get_buffer(), sample.get_caps().to_string()
            ok, m = buf.map(Gst.MapFlags.READ)
            assert ok
            outs.append((bytes(m.data), buf.pts))
            buf.unmap(m)
        return outs, caps, err or error()
    finally:
        p.set_state(Gst.State.NULL)


def assert_planes_equal(got: bytes, want: list[np.ndarray], lay: Layout, what: str):
    for k, (g, w) in enumerate(zip(unpack(got, lay), want)):
        g, w = g.astype(np.int16), np.asarray(w).reshape(g.shape).astype(np.int16)
        d = np.abs(g - w)
        assert d.max() == 0, (
            f"{what} plane {k}: max diff {d.max()} levels, {np.count_nonzero(d)} of {d.size} values differ, "
            f"first at {np.unravel_index(int(d.argmax()), d.shape)}"
        )


@pytest.mark.parametrize(
    "fmt,w,h,batch,colorimetry",
    [
        ("RGB", 7, 5, 1, None),  # odd width: RGB rows padded to 4 bytes on both sides
        ("RGB", 6, 4, 2, None),  # 3 frames in calls of 2 + 1 (the last flushed at EOS)
        ("NV12", 7, 5, 1, None),  # no colorimetry in the caps: GStreamer's SD default, bt601 limited
        ("I420", 6, 4, 2, "bt709"),
        ("NV12", 6, 4, 1, "1:3:5:1"),  # BT.709 matrix, full range
    ],
)
def test_inprocess_equals_engine(element, engine, model_path, fmt, w, h, batch, colorimetry):
    caps = f"video/x-raw,format={fmt},width={w},height={h},framerate=30/1"
    if colorimetry:
        caps += f",colorimetry={colorimetry}"
    lin = layout(caps)
    rng = np.random.default_rng(1)
    frames = [random_planes(lin, rng) for _ in range(3)]
    outs, out_caps, err = run_inprocess(
        caps, [pack(f, lin) for f in frames], f"model={model_path} backend=torch batch={batch}"
    )
    assert err is None, err
    assert len(outs) == 3 and [pts for _, pts in outs] == [i * Gst.SECOND // 30 for i in range(3)]
    out = Gst.Caps.from_string(out_caps).get_structure(0)
    assert (out.get_value("format"), out.get_value("width"), out.get_value("height")) == (fmt, 4 * w, 4 * h)
    matrix, full = 601, False
    if colorimetry == "bt709":
        matrix = 709
    elif colorimetry == "1:3:5:1":
        matrix, full = 709, True
    if fmt != "RGB":  # YUV out of YUV in keeps the input's colorimetry (not the default of its size)
        info_in = GstVideo.VideoInfo.new_from_caps(Gst.Caps.from_string(caps))
        assert out.get_value("colorimetry") == info_in.colorimetry.to_string()
    want = expected(engine, frames, fmt, batch, matrix, full)
    lout = layout(out_caps)
    for i, ((got, _), wp) in enumerate(zip(outs, want)):
        assert_planes_equal(got, wp, lout, f"{fmt} frame {i}")
    if fmt == "NV12":  # the same as the engine's own NV12 entry point
        y, uv = engine.upscale_nv12(frames[0][0], frames[0][1], matrix=matrix, full_range=full)
        assert_planes_equal(outs[0][0], [y, uv], lout, "NV12 vs Engine.upscale_nv12")


def test_i420_against_the_numpy_reference(element, engine, model_path):
    """A cross-check that shares no code with the element but the engine: buffers laid out and read
    by hand from GstVideoInfo's offsets and strides, colour converted by the numpy reference
    (srgan_fast.io.yuv_reference). It equals csrc's conversion up to float rounding: within 1 level."""
    from srgan_fast.io.yuv_reference import rgb_to_yuv420_ref, yuv420_to_rgb_ref

    w, h = 7, 5
    caps = f"video/x-raw,format=I420,width={w},height={h},framerate=30/1,colorimetry=bt709"
    rng = np.random.default_rng(4)
    cw, ch = (w + 1) // 2, (h + 1) // 2
    y, u, v = (rng.integers(16, 236, s, dtype=np.uint8) for s in ((h, w), (ch, cw), (ch, cw)))

    def by_hand(caps, planes):
        info = GstVideo.VideoInfo.new_from_caps(Gst.Caps.from_string(caps))
        buf = bytearray(info.size)
        for k, p in enumerate(planes):
            for r in range(p.shape[0]):
                start = info.offset[k] + r * info.stride[k]
                buf[start : start + p.shape[1]] = p[r].tobytes()
        return bytes(buf), info

    data, _ = by_hand(caps, (y, u, v))
    outs, out_caps, err = run_inprocess(caps, [data], f"model={model_path} backend=torch")
    assert err is None, err
    info = GstVideo.VideoInfo.new_from_caps(Gst.Caps.from_string(out_caps))
    got = []
    for k, (rows, cols) in enumerate(((4 * h, 4 * w), (2 * h, 2 * w), (2 * h, 2 * w))):
        raw = np.frombuffer(outs[0][0], np.uint8)
        got.append(np.stack([raw[info.offset[k] + r * info.stride[k] :][:cols] for r in range(rows)]))
    sr = engine.upscale(yuv420_to_rgb_ref(y, u, v, matrix=709, out_dtype="u8"))
    for k, (g, want) in enumerate(zip(got, rgb_to_yuv420_ref(sr, matrix=709))):
        d = np.abs(g.astype(np.int16) - want.astype(np.int16))
        assert d.max() <= 1, f"plane {k}: max diff {d.max()} levels, {np.count_nonzero(d)} of {d.size} differ"


def test_onnxruntime_backend_in_process(element, model_path):
    """torch first, then Gst, then onnxruntime's exporter: without import_gi's libgcc_s fix the C++
    unwinders of libgcc_s and libunwind (linked by libgstreamer) mix and the process aborts."""
    pytest.importorskip("onnxruntime")
    from srgan_fast.backends import backend_names

    if "onnxruntime" not in backend_names():
        pytest.skip("no onnxruntime backend registered")
    caps = "video/x-raw,format=RGB,width=6,height=4,framerate=30/1"
    lin = layout(caps)
    frames = [random_planes(lin, np.random.default_rng(5))]
    outs, out_caps, err = run_inprocess(caps, [pack(f, lin) for f in frames], f"model={model_path} backend=onnxruntime")
    assert err is None, err
    want = expected(Engine(model_path, backend="onnxruntime"), frames, "RGB", 1)
    assert_planes_equal(outs[0][0], want[0], layout(out_caps), "onnxruntime RGB")


def test_caps_change_flushes_the_batch(element, engine, model_path):
    """With batch=2, a frame held when the size changes comes out first, at its own size."""
    c1, c2 = ("video/x-raw,format=RGB,width=6,height=4,framerate=30/1",
              "video/x-raw,format=RGB,width=7,height=5,framerate=30/1")  # fmt: skip
    rng = np.random.default_rng(6)
    f1, f2 = random_planes(layout(c1), rng), random_planes(layout(c2), rng)
    p = Gst.parse_launch(f"appsrc name=src format=time ! srganfast model={model_path} backend=torch batch=2 "
                         "! appsink name=sink sync=false")  # fmt: skip
    src, sink = p.get_by_name("src"), p.get_by_name("sink")
    try:
        p.set_state(Gst.State.PLAYING)
        for i, (caps, f) in enumerate(((c1, f1), (c2, f2))):
            src.set_property("caps", Gst.Caps.from_string(caps))
            b = Gst.Buffer.new_wrapped(pack(f, layout(caps)))
            b.pts = i * Gst.SECOND // 30
            assert src.emit("push-buffer", b) == Gst.FlowReturn.OK
        src.emit("end-of-stream")
        samples = [sink.emit("try-pull-sample", 20 * Gst.SECOND) for _ in range(2)]
    finally:
        p.set_state(Gst.State.NULL)
    assert all(s is not None for s in samples)
    for s, f, caps in zip(samples, (f1, f2), (c1, c2)):
        lout = layout(s.get_caps().to_string())
        assert (lout.width, lout.height) == (4 * layout(caps).width, 4 * layout(caps).height)
        buf = s.get_buffer()
        ok, m = buf.map(Gst.MapFlags.READ)
        got = bytes(m.data)
        buf.unmap(m)
        assert_planes_equal(got, [engine.upscale(f[0])], lout, f"frame of {caps}")


def test_colorimetry_changes_the_output(element, model_path):
    """The caps' matrix is used: the same bytes as bt601 and as bt709 come out differently."""
    base = "video/x-raw,format=NV12,width=6,height=4,framerate=30/1"
    data = pack(random_planes(layout(base), np.random.default_rng(2)), layout(base))
    res = [run_inprocess(f"{base},colorimetry={c}", [data], f"model={model_path} backend=torch") for c in
           ("bt601", "bt709")]  # fmt: skip
    assert res[0][2] is None and res[1][2] is None
    assert res[0][0][0][0] != res[1][0][0][0]


def test_format_change_rgb_in_nv12_out(element, engine, model_path):
    caps = "video/x-raw,format=RGB,width=6,height=4,framerate=30/1"
    lin = layout(caps)
    frames = [random_planes(lin, np.random.default_rng(3))]
    outs, out_caps, err = run_inprocess(
        caps, [pack(f, lin) for f in frames], f"model={model_path} backend=torch",
        caps_out="video/x-raw,format=NV12,colorimetry=bt709",
    )  # fmt: skip
    assert err is None, err
    assert_planes_equal(outs[0][0], expected(engine, frames, "RGB", 1, 709, False, out_fmt="NV12")[0],
                        layout(out_caps), "RGB -> NV12")  # fmt: skip


@pytest.mark.parametrize(
    "props,message",
    [
        ("model=/no/such/model.safetensors", "no such weights file"),
        ("model=no_such_model", "unknown model 'no_such_model'"),
        ("dtype=fp13", "unknown dtype 'fp13'"),
        ("device=tpu", "unknown device 'tpu'"),
    ],
)
def test_bad_property_is_a_gstreamer_error(element, model_path, props, message):
    if "model=" not in props:
        props = f"model={model_path} {props}"
    caps = "video/x-raw,format=RGB,width=4,height=4,framerate=30/1"
    outs, _, err = run_inprocess(caps, [bytes(layout(caps).size)], props)
    assert outs == []
    assert err is not None and message in err, err


def test_bad_colorimetry_is_refused(element, model_path):
    caps = "video/x-raw,format=NV12,width=4,height=4,framerate=30/1,colorimetry=bt2020"
    outs, _, err = run_inprocess(caps, [bytes(layout(caps).size)], f"model={model_path} backend=torch")
    assert outs == [] and err is not None and "bt601 or bt709" in err, err


# --- through gst-launch-1.0 (the system python3 in the gst-python plugin loader) ---------------


@pytest.fixture(scope="module")
def gst_env():
    why = missing()
    if why is not None:
        pytest.skip(why)
    r = subprocess.run([sys.executable, "-m", "srgan_fast.cli", "gst-env"], capture_output=True, text=True,
                       check=True)  # fmt: skip
    env = dict(os.environ)
    for line in r.stdout.splitlines():
        (word, assignment) = shlex.split(line)
        assert word == "export"
        k, v = assignment.split("=", 1)
        env[k] = v
    assert {"GST_PLUGIN_PATH", "PYTHONPATH"} <= set(env)
    assert os.path.isfile(os.path.join(env["GST_PLUGIN_PATH"].split(os.pathsep)[0], "python", "srganfast.py"))
    return env


def gst_launch(env, pipeline: str, timeout=180):
    return subprocess.run(["gst-launch-1.0", "-q", *shlex.split(pipeline)], env=env, capture_output=True,
                          text=True, timeout=timeout)  # fmt: skip


@pytest.mark.parametrize("fmt", ["RGB", "NV12"])
def test_gst_launch_equals_engine(gst_env, engine, model_path, tmp_path, fmt):
    """videotestsrc ! tee: the raw input to one file, srganfast's output to another."""
    w, h, n = 32, 24, 3
    caps = f"video/x-raw,format={fmt},width={w},height={h},framerate=30/1"
    src, dst = tmp_path / "in.raw", tmp_path / "out.raw"
    r = gst_launch(
        gst_env,
        f"videotestsrc num-buffers={n} pattern=snow ! {caps} ! tee name=t "
        f"t. ! queue ! filesink location={src} "
        f"t. ! queue ! srganfast model={model_path} backend=torch batch=2 ! filesink location={dst}",
    )
    assert r.returncode == 0, r.stdout + r.stderr
    lin = layout(caps)
    lout = layout(f"video/x-raw,format={fmt},width={4 * w},height={4 * h},framerate=30/1")
    raw_in, raw_out = src.read_bytes(), dst.read_bytes()
    assert len(raw_in) == n * lin.size and len(raw_out) == n * lout.size
    frames = [unpack(raw_in[i * lin.size : (i + 1) * lin.size], lin) for i in range(n)]
    want = expected(engine, frames, fmt, 2)  # videotestsrc caps carry no colorimetry: bt601 limited
    for i in range(n):
        assert_planes_equal(raw_out[i * lout.size : (i + 1) * lout.size], want[i], lout, f"gst-launch {fmt} {i}")


def test_gst_launch_bad_dtype_is_one_error_line(gst_env, model_path, tmp_path):
    r = gst_launch(
        gst_env,
        f"videotestsrc num-buffers=1 ! video/x-raw,format=RGB,width=8,height=8 ! srganfast model={model_path} "
        f"dtype=fp13 ! filesink location={tmp_path / 'x.raw'}",
    )
    out = r.stdout + r.stderr
    assert r.returncode != 0
    assert "unknown dtype 'fp13'; use fp32, fp16 or bf16" in out, out
    assert "Traceback" not in out, out


def test_missing_names_the_packages():
    """What a machine without the packages is told (the skip reasons above, gst-env --check)."""
    from srgan_fast.gst import _HINT

    assert all(p in _HINT for p in GST_PACKAGES)
