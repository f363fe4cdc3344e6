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

The set-up (issue 29): with a venv activated (its bin first on PATH, VIRTUAL_ENV set), the
loader's embedded Python finds the venv's python3 and, without gst-env's fix, fails and gets
libgstpython blacklisted in a registry. Every subprocess here runs with XDG_CACHE_HOME in a
temporary folder, so no test reads or writes the user's GStreamer registries.
"""

from __future__ import annotations

import os
import shlex
import subprocess
import sys

import numpy as np
import pytest

from srgan_fast.engine import Engine
from srgan_fast.gst import GST_PACKAGES, embedded_dir, import_gi, missing, plugin_dir
from srgan_fast.gst.frames import Layout, from_rgb, pack, to_rgb, unpack

from ..conftest import save_tiny_x4

_environ = dict(os.environ)  # import_gi sets PYTHONPATH and GST_REGISTRY for Gst.init's plugin scanner
try:
    import_gi()
    from gi.repository import Gst, GstVideo
except (ImportError, ValueError) as e:
    pytest.skip(f"GStreamer from Python unavailable ({e})", allow_module_level=True)

Gst.init(None)
os.environ.clear()  # the rest of the test session sees the environment it started with
os.environ.update(_environ)


@pytest.fixture(scope="module")
def model_path(tmp_path_factory):
    return save_tiny_x4(tmp_path_factory.mktemp("gst"))


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


def isolated(cache) -> dict[str, str]:
    """os.environ without GStreamer/Python path variables, caches (so registries) under `cache`."""
    drop = ("GST_REGISTRY", "GST_REGISTRY_1_0", "GST_PLUGIN_PATH", "GST_PLUGIN_PATH_1_0", "PYTHONPATH", "PYTHONHOME")
    env = {k: v for k, v in os.environ.items() if k not in drop}
    env["XDG_CACHE_HOME"] = str(cache)
    return env


def with_exports(env: dict[str, str], *args: str) -> dict[str, str]:
    """`env` after `eval "$(srgan-fast gst-env ...)"` run in it."""
    r = subprocess.run([sys.executable, "-m", "srgan_fast.cli", "gst-env", *args], env=env, capture_output=True,
                       text=True, timeout=600)  # fmt: skip
    assert r.returncode == 0, r.stderr
    env = dict(env)
    for line in r.stdout.splitlines():
        (word, assignment) = shlex.split(line)
        assert word == "export"
        k, v = assignment.split("=", 1)
        env[k] = v
    return env


@pytest.fixture(scope="module")
def gst_env(tmp_path_factory):
    why = missing()
    if why is not None:
        pytest.skip(why)
    env = with_exports(isolated(tmp_path_factory.mktemp("cache")))
    assert {"GST_PLUGIN_PATH", "PYTHONPATH", "GST_REGISTRY"} <= set(env)
    assert os.path.isfile(os.path.join(env["GST_PLUGIN_PATH"].split(os.pathsep)[0], "python", "srganfast.py"))
    return env


@pytest.fixture(scope="module")
def venv():
    """The venv this test runs in (sys.prefix), activated as `source bin/activate` does."""
    why = missing()
    if why is not None:
        pytest.skip(why)
    if sys.prefix == sys.base_prefix or not os.path.isfile(os.path.join(sys.prefix, "bin", "python3")):
        pytest.skip(f"not run from a venv ({sys.executable}): nothing to activate")

    def activate(env):
        env = dict(env, VIRTUAL_ENV=sys.prefix)
        env["PATH"] = os.pathsep.join([os.path.join(sys.prefix, "bin"), env.get("PATH", "")])
        return env

    return activate


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


# --- an activated venv, and a registry poisoned by a failed load (issue 29) ------------------------


def old_exports(env: dict[str, str]) -> dict[str, str]:
    """What gst-env exported before issue 29: the plugin folder and site-packages, nothing else."""
    sites = [p for p in with_exports(env)["PYTHONPATH"].split(os.pathsep) if p != str(embedded_dir())]
    return dict(env, GST_PLUGIN_PATH=str(plugin_dir()), PYTHONPATH=os.pathsep.join(sites))


def blacklist(env: dict[str, str], registry) -> subprocess.CompletedProcess:
    """A failed load: the old exports from an activated venv (the embedded Python gets the venv's home)."""
    r = subprocess.run(["gst-inspect-1.0", "srganfast"], env=dict(old_exports(env), GST_REGISTRY=str(registry)),
                       capture_output=True, text=True, timeout=300)  # fmt: skip
    assert r.returncode != 0 and "pygobject initialization failed" in r.stderr, r.stdout + r.stderr
    from srgan_fast.gst.check import blacklisted

    assert "libgstpython.so" in blacklisted(registry), "the failed load did not blacklist libgstpython"
    return r


def check_gst_launch(env, engine, model_path, tmp_path):
    w, h, n = 12, 8, 3
    caps = f"video/x-raw,format=RGB,width={w},height={h},framerate=30/1"
    src, dst = tmp_path / "in.raw", tmp_path / "out.raw"
    r = gst_launch(env, f"videotestsrc num-buffers={n} pattern=snow ! {caps} ! tee name=t t. ! queue ! filesink "
                        f"location={src} t. ! queue ! srganfast model={model_path} backend=torch batch=2 ! filesink "
                        f"location={dst}")  # fmt: skip
    assert r.returncode == 0, r.stdout + r.stderr
    lin, lout = layout(caps), layout(f"video/x-raw,format=RGB,width={4 * w},height={4 * h},framerate=30/1")
    raw_in, raw_out = src.read_bytes(), dst.read_bytes()
    assert len(raw_out) == n * lout.size
    frames = [unpack(raw_in[i * lin.size : (i + 1) * lin.size], lin) for i in range(n)]
    for i, want in enumerate(expected(engine, frames, "RGB", 2)):
        assert_planes_equal(raw_out[i * lout.size : (i + 1) * lout.size], want, lout, f"gst-launch frame {i}")


def test_gst_launch_with_the_venv_activated(venv, engine, model_path, tmp_path):
    """`source .venv/bin/activate; eval "$(srgan-fast gst-env)"`, then gst-launch-1.0 and gst-inspect-1.0:
    srganfast loads, equals Engine.upscale, and the shell's own python3 is the venv's, unchanged."""
    base = venv(isolated(tmp_path / "cache"))
    env = with_exports(base)
    check_gst_launch(env, engine, model_path, tmp_path)
    r = subprocess.run(["gst-inspect-1.0", "srganfast"], env=env, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0 and "SRGAN super-resolution" in r.stdout, r.stdout + r.stderr
    # PYTHONPATH's entries are added (as before issue 29); the interpreter's home and stdlib stay
    probe = "import json, os, sys, sysconfig; print(sys.prefix, sys.base_prefix, os.__file__, json.__file__)"
    ran = [subprocess.run(["python3", "-c", probe], env=e, capture_output=True, text=True, check=True).stdout
           for e in (base, env)]  # fmt: skip
    assert ran[0] == ran[1] and ran[0].split()[0] == sys.prefix, ran
    default = tmp_path / "cache" / "gstreamer-1.0"  # GStreamer's default registry: never written here
    assert not default.exists() or not any(default.iterdir()), list(default.iterdir())


def test_failed_load_leaves_gst_envs_registry_working(venv, engine, model_path, tmp_path):
    """A registry where libgstpython got blacklisted (the user's default one, by the old exports) does
    not stop srganfast loading through gst-env's exports; --check names it and the command that clears it."""
    base = venv(isolated(tmp_path / "cache"))
    poisoned = tmp_path / "cache" / "gstreamer-1.0" / "registry.x86_64.bin"
    blacklist(base, poisoned)
    env = with_exports(base)
    assert env["GST_REGISTRY"] != str(poisoned)
    check_gst_launch(env, engine, model_path, tmp_path)
    r = subprocess.run([sys.executable, "-m", "srgan_fast.cli", "gst-env", "--check"], env=env, capture_output=True,
                       text=True, timeout=600)  # fmt: skip
    assert r.returncode == 0 and "export GST_REGISTRY=" in r.stdout, r.stderr
    assert f"{poisoned} has libgstpython blacklisted by an earlier failed load" in r.stderr, r.stderr
    assert f"rm -f {poisoned}" in r.stderr, r.stderr


def test_check_names_a_blacklisted_gst_env_registry(venv, tmp_path):
    """gst-env's own registry poisoned: --check exits 2 naming it and `rm -f` it; after that command, 0."""
    base = venv(isolated(tmp_path / "cache"))
    ours = with_exports(base)["GST_REGISTRY"]
    blacklist(base, ours)

    def check():
        return subprocess.run([sys.executable, "-m", "srgan_fast.cli", "gst-env", "--check"], env=base,
                              capture_output=True, text=True, timeout=600)  # fmt: skip

    r = check()
    assert r.returncode == 2 and r.stdout == "", r.stdout + r.stderr
    assert f"blacklisted loader: {ours} has libgstpython blacklisted" in r.stderr, r.stderr
    fix = r.stderr.split("fix: ", 1)[1].splitlines()[0]
    assert fix == f"rm -f {shlex.quote(ours)}", fix
    subprocess.run(fix, shell=True, check=True)
    r = check()
    assert r.returncode == 0 and "export GST_REGISTRY=" in r.stdout, r.stderr


def test_check_names_the_wrong_python(venv, tmp_path):
    """The old exports in an activated venv: the embedded Python took the venv's home; the fix is gst-env."""
    from srgan_fast.gst.check import diagnose

    env = old_exports(venv(isolated(tmp_path / "cache")))
    env["GST_REGISTRY"] = str(tmp_path / "registry.bin")
    d = diagnose(env)
    assert not d.ok and d.cause.startswith("wrong Python"), d.report()
    assert os.path.join(sys.prefix, "bin", "python3") in d.cause, d.cause
    assert d.fix == 'eval "$(srgan-fast gst-env)"', d.fix


def test_check_names_a_missing_package(gst_env, tmp_path):
    """The embedded Python reaches srgan_fast (the checkout) but not its dependencies: pip install them."""
    from srgan_fast.gst.check import diagnose

    repo = os.path.dirname(os.path.dirname(os.path.abspath(__import__("srgan_fast").__file__)))
    env = isolated(tmp_path / "cache")  # no venv on PATH: the system Python, without the venv's packages
    env["PATH"] = os.pathsep.join(p for p in env["PATH"].split(os.pathsep) if p != os.path.join(sys.prefix, "bin"))
    env.update(GST_PLUGIN_PATH=str(plugin_dir()), PYTHONPATH=os.pathsep.join([str(embedded_dir()), repo]),
               GST_REGISTRY=str(tmp_path / "registry.bin"))  # fmt: skip
    d = diagnose(env)
    assert not d.ok and d.cause.startswith("missing package"), d.report()
    assert "No module named" in d.cause and d.fix.startswith(f"{shlex.quote(sys.executable)} -m pip install "), d


def test_sitecustomize_is_a_no_op_in_python(tmp_path):
    """The exported PYTHONPATH reaches every Python of the shell: there, embedded/sitecustomize changes
    nothing and still runs the sitecustomize it shadows."""
    other = tmp_path / "other"
    other.mkdir()
    (other / "sitecustomize.py").write_text("import sys\nsys.shadowed_ran = True\n")
    probe = "import sys; print(getattr(sys, 'shadowed_ran', False), sys.path[1:])"
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(embedded_dir()), str(other)]))
    with_ = subprocess.run([sys.executable, "-c", probe], env=env, capture_output=True, text=True, check=True)
    env["PYTHONPATH"] = str(other)
    without = subprocess.run([sys.executable, "-c", probe], env=env, capture_output=True, text=True, check=True)
    assert with_.stderr == "" and with_.stdout.startswith("True "), with_.stdout + with_.stderr
    assert with_.stdout.replace(str(embedded_dir()) + "', '", "") == without.stdout


# --- properties, latency, video meta ------------------------------------------------------------


@pytest.mark.parametrize("prop,valid", [("tile=-1", "0 (whole frames"), ("tile=1048577", "0 (whole frames"),
                                        ("batch=0", "1..256"), ("batch=257", "1..256")])  # fmt: skip
def test_out_of_range_property_is_refused(element, model_path, prop, valid):
    """Not GLib's warning and the default: the pipeline does not start, and the error names the property."""
    caps = "video/x-raw,format=RGB,width=4,height=4,framerate=30/1"
    outs, _, err = run_inprocess(caps, [bytes(layout(caps).size)], f"model={model_path} backend=torch {prop}")
    assert outs == [] and err is not None, (outs, err)
    assert f"srganfast: {prop} is out of range; use {valid}" in err, err


def test_gst_launch_bad_tile_is_one_error_line(gst_env, model_path, tmp_path):
    r = gst_launch(
        gst_env,
        f"videotestsrc num-buffers=1 ! video/x-raw,format=RGB,width=8,height=8 ! srganfast model={model_path} "
        f"backend=torch tile=-1 ! filesink location={tmp_path / 'x.raw'}",
    )
    out = r.stdout + r.stderr
    assert r.returncode != 0, out
    errors = [line for line in out.splitlines() if line.startswith("ERROR: from element")]
    assert len(errors) == 1 and "srganfast: tile=-1 is out of range" in errors[0], out
    assert "GLib-GObject" not in out and "Traceback" not in out, out
    assert not (tmp_path / "x.raw").exists() or (tmp_path / "x.raw").stat().st_size == 0


def latency(model_path, batch: int, fps: str) -> tuple[bool, int, int]:
    """The LATENCY query answer at srganfast's src pad once one frame (held for the batch) has set caps."""
    import time

    p = Gst.parse_launch(f"appsrc name=src format=time caps=video/x-raw,format=RGB,width=4,height=4,framerate={fps} "
                         f"! srganfast name=sr model={model_path} backend=torch batch={batch} "
                         "! appsink name=sink sync=false")  # fmt: skip
    src, sr = p.get_by_name("src"), p.get_by_name("sr")
    try:
        assert p.set_state(Gst.State.PLAYING) != Gst.StateChangeReturn.FAILURE
        assert (
            src.emit(
                "push-buffer", Gst.Buffer.new_wrapped(bytes(layout("video/x-raw,format=RGB,width=4,height=4").size))
            )
            == Gst.FlowReturn.OK
        )
        for _ in range(200):
            if sr.srcpad.get_current_caps() is not None:
                break
            time.sleep(0.05)
        q = Gst.Query.new_latency()
        assert sr.srcpad.query(q)
        return q.parse_latency()
    finally:
        p.set_state(Gst.State.NULL)


def test_latency_query_reports_the_batch(element, model_path):
    """batch=4 at 25 fps holds 3 frames: 120 ms more than batch=1; nothing added at a variable framerate."""
    live1, min1, max1 = latency(model_path, 1, "25/1")
    live4, min4, max4 = latency(model_path, 4, "25/1")
    assert min4 - min1 == 3 * Gst.SECOND // 25, (min1, min4)
    assert max1 == Gst.CLOCK_TIME_NONE and max4 == Gst.CLOCK_TIME_NONE or max4 - max1 == 3 * Gst.SECOND // 25
    assert latency(model_path, 4, "0/1")[1] == min1


@pytest.mark.parametrize("fmt,w,h", [("RGB", 7, 5), ("NV12", 7, 5), ("I420", 6, 4)])
def test_video_meta_strides_are_read(element, engine, model_path, fmt, w, h):
    """A decoder's buffer: rows padded to 64 bytes and planes 128 bytes apart, said by a GstVideoMeta,
    padding full of noise. The output equals Engine.upscale of the frame itself."""
    caps = f"video/x-raw,format={fmt},width={w},height={h},framerate=30/1,colorimetry=bt709"
    lin = layout(caps)
    rng = np.random.default_rng(7)
    frame = random_planes(lin, rng)
    strides = tuple(64 for _ in lin.planes)
    offsets, off = [], 0
    for rows, _ in lin.planes:
        offsets.append(off)
        off += rows * 64 + 128
    data = bytearray(rng.integers(0, 256, off, dtype=np.uint8).tobytes())  # noise in the padding
    for plane, (rows, row_bytes), o, st in zip(frame, lin.planes, offsets, strides):
        flat = np.asarray(plane).reshape(rows, row_bytes)
        for r in range(rows):
            data[o + r * st : o + r * st + row_bytes] = flat[r].tobytes()
    buf = Gst.Buffer.new_wrapped(bytes(data))
    n = len(lin.planes)
    GstVideo.buffer_add_video_meta_full(buf, GstVideo.VideoFrameFlags.NONE, GstVideo.VideoFormat.from_string(fmt),
                                        w, h, n, offsets + [0] * (4 - n), list(strides) + [0] * (4 - n))  # fmt: skip
    p = Gst.parse_launch(f"appsrc name=src format=time caps={caps} ! srganfast model={model_path} backend=torch "
                         "! appsink name=sink sync=false")  # fmt: skip
    src, sink = p.get_by_name("src"), p.get_by_name("sink")
    try:
        p.set_state(Gst.State.PLAYING)
        buf.pts = 0
        assert src.emit("push-buffer", buf) == Gst.FlowReturn.OK
        src.emit("end-of-stream")
        sample = sink.emit("try-pull-sample", 60 * Gst.SECOND)
    finally:
        p.set_state(Gst.State.NULL)
    assert sample is not None
    out = sample.get_buffer()
    ok, m = out.map(Gst.MapFlags.READ)
    got = bytes(m.data)
    out.unmap(m)
    want = expected(engine, [frame], fmt, 1, 709, False)[0]
    assert_planes_equal(got, want, layout(sample.get_caps().to_string()), f"{fmt} with video meta")


def test_missing_names_the_packages():
    """What a machine without the packages is told (the skip reasons above, gst-env --check)."""
    from srgan_fast.gst import _HINT

    assert all(p in _HINT for p in GST_PACKAGES)
