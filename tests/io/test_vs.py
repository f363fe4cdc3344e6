"""The VapourSynth filter srgan_fast.vs.upscale against Engine.upscale, and docs/video.md against VapourSynth R81.

VapourSynth R81 is on PyPI only for Python >= 3.12 (cp312-abi3), so these tests run in .venv-vs
(`make vs-deps`; `.ci/run` runs `.venv-vs/bin/python -m pytest tests/io/test_vs.py`); under any
Python without vapoursynth the module skips, saying so.

Exactness: RGBS output equals Engine.upscale of the same frames grouped into engine calls as the
filter groups them (batch), to the bit (0 difference); RGBH output equals that float32 result
rounded to float16. YUV and integer-RGB output equal the same core.resize calls (with the matrix,
range and chroma siting given explicitly) around those engine calls, to the bit. Batched against
per-frame results: within 1e-5 (the convolutions differ in float summation order with the batch).
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

vs = pytest.importorskip(
    "vapoursynth",
    reason=f"VapourSynth is not importable in this Python ({sys.version.split()[0]}); its R81 wheel needs "
    "Python >= 3.12: `make vs-deps`, then `.venv-vs/bin/python -m pytest tests/io/test_vs.py` (.ci/run does)",
)

from srgan_fast.engine import Engine  # noqa: E402
from srgan_fast.vs import upscale  # noqa: E402

from ..conftest import save_tiny_x4  # noqa: E402

core = vs.core
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def model_path(tmp_path_factory):
    return save_tiny_x4(tmp_path_factory.mktemp("vs"))


@pytest.fixture(scope="module")
def engine(model_path):
    return Engine(model_path, backend="torch")


def clip_from_planes(fmt: int, frames: list[list[np.ndarray]], props: dict | None = None) -> vs.VideoNode:
    """A clip whose frame n has the planes frames[n] (and the props, if given)."""
    h, w = frames[0][0].shape
    blank = core.std.BlankClip(format=fmt, width=w, height=h, length=len(frames), keep=True)

    def fill(n, f):
        out = f.copy()
        for p, plane in enumerate(frames[n]):
            np.copyto(np.asarray(out[p]), plane, casting="same_kind")
        out.props.update(props or {})
        return out

    return blank.std.ModifyFrame(blank, fill)


def clip_from_rgb(fmt: int, rgb: np.ndarray, props: dict | None = None) -> vs.VideoNode:
    """NxHxWx3 -> a planar RGB clip."""
    return clip_from_planes(fmt, [[x[..., p] for p in range(3)] for x in rgb], props)


def rgb_of(clip: vs.VideoNode) -> np.ndarray:
    return np.stack([np.stack([np.asarray(f[p]) for p in range(3)], axis=-1) for f in clip.frames()])


def planes_of(clip: vs.VideoNode) -> list[list[np.ndarray]]:
    return [[np.asarray(f[p]).copy() for p in range(f.format.num_planes)] for f in clip.frames()]


def by_batches(engine, x: np.ndarray, batch: int) -> np.ndarray:
    """What the filter must produce: engine calls of `batch` frames, the last one shorter (float
    frames clamped to [0, 1] first, as the engine does and as the filter does for converted clips)."""
    if x.dtype.kind == "f":
        x = np.clip(x, 0.0, 1.0)
    return np.concatenate([engine.upscale(x[i : i + batch]) for i in range(0, len(x), batch)])


def assert_equal(got: np.ndarray, want: np.ndarray, what: str, atol: float = 0.0):
    assert got.shape == want.shape, f"{what}: shape {got.shape} != {want.shape}"
    diff = np.abs(got.astype(np.float64) - want.astype(np.float64))
    where = np.unravel_index(int(diff.argmax()), diff.shape)
    assert diff.max() <= atol, f"{what}: max diff {diff.max():.3g} at {where}, mean {diff.mean():.3g} (atol {atol})"


RNG = np.random.default_rng(0)
PROPS = {"_Transfer": 1, "_Primaries": 1, "_SARNum": 10, "_SARDen": 11, "_FieldBased": 0, "user_prop": 7}


@pytest.mark.parametrize("fmt", ["RGBS", "RGBH"])
@pytest.mark.parametrize("n,w,h,batch", [(5, 13, 7, 1), (5, 13, 7, 3), (2, 31, 17, 8), (1, 1, 1, 2)])
def test_rgb_float_equals_engine(engine, fmt, n, w, h, batch):
    dtype = np.float32 if fmt == "RGBS" else np.float16
    x = RNG.random((n, h, w, 3), dtype=np.float32).astype(dtype)
    out = upscale(clip_from_rgb(getattr(vs, fmt), x), model=engine, batch=batch)
    assert (out.format.name, out.width, out.height, out.num_frames) == (fmt, 4 * w, 4 * h, n)
    want = by_batches(engine, x, batch).astype(dtype)
    assert_equal(rgb_of(out), want, f"{fmt} {n}x{w}x{h} batch {batch}")


def test_tile_equals_engine_tile(model_path):
    x = RNG.random((3, 23, 29, 3), dtype=np.float32)
    out = upscale(clip_from_rgb(vs.RGBS, x), model=model_path, backend="torch", tile=8, batch=2, device="cpu")
    assert_equal(rgb_of(out), by_batches(Engine(model_path, backend="torch", tile=8), x, 2), "tile 8")


def test_batch_equals_per_frame(engine):
    x = RNG.random((4, 9, 11, 3), dtype=np.float32)
    clip = clip_from_rgb(vs.RGBS, x)
    assert_equal(rgb_of(upscale(clip, model=engine, batch=4)), rgb_of(upscale(clip, model=engine)), "4 vs 1", 1e-5)


def test_out_of_order_and_parallel_requests(engine):
    """Frames asked for backwards, twice, and from 4 threads at once: the same frames as in order
    (the batch cache neither serves a wrong batch nor needs its frames in order)."""
    x = RNG.random((7, 6, 5, 3), dtype=np.float32)
    want = by_batches(engine, x, 3)
    out = upscale(clip_from_rgb(vs.RGBS, x), model=engine, batch=3)
    for n in [6, 5, 0, 3, 3, 1, 6, 2, 4]:
        f = out.get_frame(n)
        assert_equal(np.stack([np.asarray(f[p]) for p in range(3)], -1), want[n], f"frame {n} out of order")
    threads = core.num_threads
    core.num_threads = 4
    try:
        futures = [out.get_frame_async(n) for n in reversed(range(7))]
        got = {6 - i: fu.result() for i, fu in enumerate(futures)}
    finally:
        core.num_threads = threads
    for n, f in got.items():
        assert_equal(np.stack([np.asarray(f[p]) for p in range(3)], -1), want[n], f"frame {n} in parallel")


def test_props_kept(engine):
    x = RNG.random((3, 6, 8, 3), dtype=np.float32)
    props = {**PROPS, "_Matrix": 0, "_Range": vs.RANGE_FULL}
    out = upscale(clip_from_rgb(vs.RGBS, x, props), model=engine, batch=2)
    for n, f in enumerate(out.frames()):
        got = {k: f.props.get(k) for k in props}
        assert got == props, f"frame {n}: props {got} != {props}"
        assert (f.props["_DurationNum"], f.props["_DurationDen"]) == (1, 24), f"frame {n}: duration not kept"


def yuv_clip(fmt: int, n: int, w: int, h: int, props: dict) -> vs.VideoNode:
    """Random YUV planes within the limited range of the format's depth."""
    f = core.get_video_format(fmt)
    lo, hi = 16 << (f.bits_per_sample - 8), 235 << (f.bits_per_sample - 8)
    dt = np.uint8 if f.bytes_per_sample == 1 else np.uint16
    cw, ch = w >> f.subsampling_w, h >> f.subsampling_h
    frames = [[RNG.integers(lo, hi + 1, s).astype(dt) for s in [(h, w), (ch, cw), (ch, cw)]] for _ in range(n)]
    return clip_from_planes(fmt, frames, props)


# (format, size, props on the source, (matrix, range, chromaloc) the conversion must use)
YUV_CASES = [
    ("YUV420P10", (14, 10), {"_Matrix": 1, "_Range": vs.RANGE_LIMITED}, (1, vs.RANGE_LIMITED, vs.CHROMA_LEFT)),
    ("YUV420P10", (14, 10), {"_Matrix": 9, "_Range": vs.RANGE_FULL, "_ChromaLocation": 2}, (9, vs.RANGE_FULL, 2)),
    ("YUV444P8", (9, 7), {}, (vs.MATRIX_ST170_M, vs.RANGE_LIMITED, vs.CHROMA_LEFT)),  # untagged, < 720 lines
    ("YUV422P8", (12, 6), {"_Matrix": 2, "_ColorRange": 0}, (6, vs.RANGE_FULL, vs.CHROMA_LEFT)),  # legacy: 0 full
]


@pytest.mark.filterwarnings("ignore:The _ColorRange frame property has been deprecated:DeprecationWarning")
@pytest.mark.parametrize("fmt,size,props,used", YUV_CASES, ids=[f"{c[0]}-{i}" for i, c in enumerate(YUV_CASES)])
def test_yuv_equals_resize_around_engine(engine, fmt, size, props, used):
    matrix, rng, chromaloc = used
    src = yuv_clip(getattr(vs, fmt), 4, *size, {**PROPS, **props})
    out = upscale(src, model=engine, batch=3)
    assert (out.format.name, out.width, out.height, out.num_frames) == (fmt, 4 * size[0], 4 * size[1], 4)
    # the same conversions with every tag given explicitly, the engine in between
    rgb = src.resize.Bicubic(format=vs.RGBS, matrix_in=matrix, range_in=rng, chromaloc_in=chromaloc)
    up = clip_from_rgb(vs.RGBS, by_batches(engine, rgb_of(rgb), 3), {"_Matrix": 0, "_Range": vs.RANGE_FULL})
    want = up.resize.Bicubic(format=getattr(vs, fmt), matrix=matrix, range=rng, chromaloc=chromaloc)
    for n, (g, w) in enumerate(zip(planes_of(out), planes_of(want))):
        for p in range(3):
            assert_equal(g[p], w[p], f"{fmt} frame {n} plane {p}")
    for n, f in enumerate(out.frames()):
        want_props = {**PROPS, "_Matrix": matrix, "_Range": rng}
        if out.format.subsampling_w or out.format.subsampling_h:  # (resize tags siting only where there is one)
            want_props["_ChromaLocation"] = chromaloc
        got = {k: f.props.get(k) for k in want_props}
        assert got == want_props, f"frame {n}: props {got} != {want_props}"


def test_integer_rgb_equals_point_around_engine(engine):
    x = RNG.integers(0, 256, (3, 5, 6, 3)).astype(np.uint8)
    out = upscale(clip_from_rgb(vs.RGB24, x, PROPS), model=engine, batch=2)
    assert (out.format.name, out.width, out.height) == ("RGB24", 24, 20)
    up = clip_from_rgb(vs.RGBS, by_batches(engine, x.astype(np.float32) / 255, 2))
    assert_equal(rgb_of(out), rgb_of(up.resize.Point(format=vs.RGB24)), "RGB24")
    assert {k: out.get_frame(1).props.get(k) for k in PROPS} == PROPS


def _bad_clips():
    rgb = core.std.BlankClip(format=vs.RGBS, width=8, height=8, length=2)
    return {
        "not a clip": (np.zeros((8, 8, 3), np.float32), "must be a vapoursynth.VideoNode"),
        "gray": (core.std.BlankClip(format=vs.GRAY8, width=8, height=8), "Gray8 is not supported"),
        "variable format": (
            core.std.Splice([rgb, core.std.BlankClip(format=vs.RGB24, width=8, height=8)], mismatch=True),
            "variable-format",
        ),
        "variable size": (
            core.std.Splice([rgb, core.std.BlankClip(format=vs.RGBS, width=4, height=8)], mismatch=True),
            "variable-size",
        ),
    }


@pytest.mark.parametrize("case", ["not a clip", "gray", "variable format", "variable size"])
def test_bad_clips_refused(engine, case):
    clip, message = _bad_clips()[case]
    with pytest.raises(vs.Error) as e:
        upscale(clip, model=engine)
    assert message in str(e.value) and "\n" not in str(e.value).strip(), str(e.value)


@pytest.mark.parametrize(
    "kwargs,message",
    [
        ({"batch": 0}, "batch must be an integer >= 1"),
        ({"batch": 2.0}, "batch must be an integer >= 1"),
        ({"tile": 0}, "tile must be None or an integer >= 1"),
        ({"model": "no_such_model"}, "no_such_model"),
    ],
)
def test_bad_arguments_refused(kwargs, message):
    clip = core.std.BlankClip(format=vs.RGBS, width=8, height=8, length=2)
    with pytest.raises((ValueError, FileNotFoundError, KeyError)) as e:
        upscale(clip, **{"backend": "torch", "device": "cpu", **kwargs})
    assert message in str(e.value), str(e.value)


def test_engine_with_engine_settings_refused(engine):
    clip = core.std.BlankClip(format=vs.RGBS, width=8, height=8, length=2)
    with pytest.raises(ValueError, match="set backend/tile/device/dtype on it"):
        upscale(clip, model=engine, tile=8)


# docs/video.md against the wheel: the frame-prop numbering it states for the colour range


def _doc() -> str:
    return (ROOT / "docs" / "video.md").read_text(encoding="utf-8")


def _numbering(prop: str) -> dict[str, int]:
    """`{prop}` ... 0 = limited, 1 = full  ->  {"limited": 0, "full": 1}, from the first such statement."""
    m = re.search(rf"`{prop}`[^\n]*?(\d) = (full|limited), (\d) = (full|limited)", _doc())
    assert m, f"docs/video.md states no numbering for `{prop}` (e.g. '`{prop}` ... 0 = limited, 1 = full')"
    return {m.group(2): int(m.group(1)), m.group(4): int(m.group(3))}


def test_docs_range_numbering_is_r81s():
    assert _numbering("_Range") == {"limited": int(vs.RANGE_LIMITED), "full": int(vs.RANGE_FULL)}
    # and what resize does with the prop: the value the doc gives for full reads the frame as full range
    src = core.std.BlankClip(format=vs.YUV444P8, width=4, height=4, length=1, color=[30, 128, 128])
    for name, value in _numbering("_Range").items():
        tagged = src.std.SetFrameProps(_Matrix=1, _Range=value).resize.Point(format=vs.RGBS)
        explicit = src.resize.Point(format=vs.RGBS, matrix_in=1, range_in_s=name)
        assert_equal(rgb_of(tagged), rgb_of(explicit), f"_Range={value} read as {name}")


@pytest.mark.filterwarnings("ignore:The _ColorRange frame property has been deprecated:DeprecationWarning")
def test_docs_legacy_colorrange_numbering_is_what_r81_reads():
    """The doc keeps the deprecated `_ColorRange` (other way round) only as what R81 still reads."""
    src = core.std.BlankClip(format=vs.YUV444P8, width=4, height=4, length=1, color=[30, 128, 128])
    for name, value in _numbering("_ColorRange").items():
        tagged = src.std.SetFrameProps(_Matrix=1, _ColorRange=value).resize.Point(format=vs.RGBS)
        explicit = src.resize.Point(format=vs.RGBS, matrix_in=1, range_in_s=name)
        assert_equal(rgb_of(tagged), rgb_of(explicit), f"_ColorRange={value} read as {name}")
    props_read = re.search(r"\*\*Frame props read\*\*[^\n]*(?:\n  [^\n]*)*", _doc())
    assert props_read and "`_Range`" in props_read.group(0), "docs/video.md: the props read must name `_Range`"


# vspipe, as docs/video.md says to use it


def _vspipe_env(tmp_path) -> dict:
    """`vapoursynth config` into a config folder of the test's own (the user's is left alone)."""
    env = {**os.environ, "XDG_CONFIG_HOME": str(tmp_path / "config")}
    bindir = Path(sys.executable).parent
    r = subprocess.run([str(bindir / "vapoursynth"), "config"], env=env, capture_output=True, text=True, timeout=60)
    assert r.returncode == 0 and "successfully" in r.stdout, r.stdout + r.stderr
    return env


def read_y4m(data: bytes) -> tuple[dict, list[bytes]]:
    header, rest = data.split(b"\n", 1)
    fields = {t[:1].decode(): t[1:].decode() for t in header.split()[1:]}
    frames = [chunk.split(b"\n", 1)[1] for chunk in rest.split(b"FRAME")[1:]]
    return fields, frames


def test_vspipe_y4m_equals_filter(tmp_path, model_path, engine):
    """The docs' vspipe command on a .vpy that calls upscale: Y4M out, frames equal to the filter's."""
    script = tmp_path / "upscale.vpy"
    script.write_text(
        "import vapoursynth as vs\n"
        "from srgan_fast.vs import upscale\n"
        "core = vs.core\n"
        "clip = core.std.BlankClip(format=vs.YUV420P8, width=16, height=12, length=3, color=[80, 100, 150])\n"
        "clip = core.std.SetFrameProps(clip, _Matrix=1, _Range=0)\n"
        "clip = upscale(clip, model=model, backend='torch', batch=2)\n"
        "clip.set_output()\n"
    )
    vspipe = str(Path(sys.executable).parent / "vspipe")
    r = subprocess.run(
        [vspipe, "-c", "y4m", "-a", f"model={model_path}", str(script), "-"],
        env=_vspipe_env(tmp_path),
        capture_output=True,
        timeout=300,
    )
    assert r.returncode == 0, r.stderr.decode(errors="replace")
    fields, frames = read_y4m(r.stdout)
    assert (fields["W"], fields["H"], fields["C"], len(frames)) == ("64", "48", "420", 3), fields
    src = core.std.BlankClip(format=vs.YUV420P8, width=16, height=12, length=3, color=[80, 100, 150])
    want = upscale(src.std.SetFrameProps(_Matrix=1, _Range=0), model=engine, batch=2)
    for n, (got, planes) in enumerate(zip(frames, planes_of(want))):
        assert got == b"".join(p.tobytes() for p in planes), f"vspipe frame {n} differs from the filter's"
