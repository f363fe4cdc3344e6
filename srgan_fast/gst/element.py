"""`srganfast`: a GstBase.BaseTransform that upscales raw video with srgan_fast's Engine.

Pads: video/x-raw, format RGB, NV12 or I420, on both sides; the source pad's width and height
are the model's scale times the sink pad's (x4 for the bundled srresnet_x4). The output keeps
the input's format unless downstream asks for another of the three. YUV is converted to RGB
and back with the caps' colorimetry: its matrix (BT.601 or BT.709; others are refused) and
range (limited or full), through the package's own conversions (srgan_fast.io.yuv), so a
frame comes out exactly as `Engine.upscale` (RGB) or `Engine.upscale_nv12` (NV12) gives it.
Caps without colorimetry get GStreamer's defaults (BT.601 below 720 lines, BT.709 from 720);
YUV output of YUV input is given the input's colorimetry, so a 270p -> 1080p stream keeps its
matrix instead of switching to the HD default.

Properties: model (bundled name or .safetensors path), device, dtype, backend, tile (LR tile
size 1..2**20, 0 = from the memory budget), batch (frames per engine call, 1..256: the element
holds up to batch - 1 frames, flushed at EOS and on caps changes, and adds that many frame
durations at the negotiated framerate to LATENCY query answers; none where the framerate is
0/1, i.e. variable). Bad values (unknown model, dtype, device; tile or batch out of range) are
reported as one GStreamer error message naming the property when the element starts, never as a
Python traceback or GLib's warning: the integer properties take any gint so that GLib does not
drop an out-of-range value and run with the default.

Input buffers are read where their GstVideoMeta says the planes lie (decoders' padded strides
and plane offsets), else where the caps' GstVideoInfo says; the element offers GstVideoMeta in
allocation queries, so upstream may hand such buffers over without a copy.

Registration: srgan_fast/gst/plugin/python/srganfast.py exposes this class to the gst-python
plugin loader; from Python, `register()` adds it to the running process.
"""

from __future__ import annotations

import traceback

from . import import_gi
from .frames import FORMATS, Layout, from_rgb, pack, to_rgb, unpack

import_gi()
from gi.repository import GLib, GObject, Gst, GstBase, GstVideo  # noqa: E402

Gst.init(None)

__all__ = ["SrganFast", "register", "ELEMENT_NAME"]

ELEMENT_NAME = "srganfast"
_MAX = 2147483647
_CAPS = Gst.Caps.from_string(
    f"video/x-raw, format=(string){{ {', '.join(FORMATS)} }}, width=(int)[1,{_MAX}], height=(int)[1,{_MAX}], "
    f"framerate=(fraction)[0/1,{_MAX}/1]"
)
_YUV = ("NV12", "I420")
_MATRIX = {GstVideo.VideoColorMatrix.BT601: 601, GstVideo.VideoColorMatrix.BT709: 709}
_FULL_RANGE = getattr(GstVideo.VideoColorRange, "0_255")  # not a Python identifier
_SIZE_FIELDS = ("width", "height")
_GINT_MIN = -2147483648
# valid ranges of the integer properties, checked at start (see the module docstring)
_RANGES = {"tile": (0, 1 << 20, "0 (whole frames, or tiles from the memory budget) or an LR tile size of 1..1048576"),
           "batch": (1, 256, "1..256 frames per engine call")}  # fmt: skip


def _default_model() -> str:
    from ..options import RunOptions

    return RunOptions.model


def _scale_value(v, scale: int, up: bool):
    """A caps width/height value (int, range or list) scaled up, or down where it divides.
    None when nothing is left (no size in the range divides by the scale)."""
    if isinstance(v, int):
        if up:
            return v * scale
        return v // scale if v % scale == 0 and v >= scale else None
    if isinstance(v, Gst.IntRange):
        r = v.range  # gst-python's IntRange: r.stop is the inclusive end, and start < stop
        if up:
            step = scale * r.step
            lo, hi = r.start * scale, min(r.stop * scale, _MAX // step * step)
        else:
            step, lo, hi = 1, max(1, -(-r.start // scale)), r.stop // scale
        if lo > hi:
            return None
        return lo if lo == hi else Gst.IntRange(range(lo, hi, step))
    if isinstance(v, Gst.ValueList):
        vals = [x for x in (_scale_value(x, scale, up) for x in v) if x is not None]
        return Gst.ValueList(vals) if vals else None
    return v  # unknown kinds pass through; set_caps checks the final sizes


def _error(element, message: str, exc: BaseException | None = None) -> None:
    """Post an ERROR message (what gst-launch-1.0 prints as 'ERROR: from element ...'). A user
    error (srgan_fast.errors.user_message knows it) is the message alone; anything else is a bug
    and carries its traceback in the message's debug text."""
    if exc is not None:
        from ..errors import user_message

        msg = user_message(exc)
        message = f"{message}: {msg or f'{type(exc).__name__}: {exc}'}"
        debug = None if msg is not None else traceback.format_exc()
    else:
        debug = None
    if debug is None:  # the binding takes no NULL here; the settings are what a reader needs next
        describe = getattr(element, "_describe", None)
        debug = f"properties: {describe()}" if describe else message
    err = GLib.Error.new_literal(Gst.LibraryError.quark(), message, Gst.LibraryError.SETTINGS)
    element.post_message(Gst.Message.new_error(element, err, debug))


def _guarded(fallback):
    """A vfunc that posts an ERROR message and returns `fallback(*args)` instead of raising: a Python
    exception escaping into GStreamer prints a traceback and leaves the pipeline undefined."""

    def wrap(fn):
        def vfunc(self, *args):
            try:
                return fn(self, *args)
            except Exception as e:
                _error(self, f"srganfast: {fn.__name__.removeprefix('do_')} failed", e)
                return fallback(*args)

        vfunc.__name__ = fn.__name__
        return vfunc

    return wrap


class SrganFast(GstBase.BaseTransform):
    __gtype_name__ = "GstSrganFast"
    __gstmetadata__ = (
        "SRGAN super-resolution",
        "Filter/Effect/Converter/Video/Scaler",
        "Upscales raw video by the model's scale (x4 by default) with srgan_fast's fused engine",
        "srgan_fast",
    )
    __gsttemplates__ = (
        Gst.PadTemplate.new("sink", Gst.PadDirection.SINK, Gst.PadPresence.ALWAYS, _CAPS),
        Gst.PadTemplate.new("src", Gst.PadDirection.SRC, Gst.PadPresence.ALWAYS, _CAPS),
    )
    __gproperties__ = {
        "model": (str, "model", "bundled model name or .safetensors path", _default_model(),
                  GObject.ParamFlags.READWRITE),
        "device": (str, "device", "cpu, cuda or cuda:N", "cpu", GObject.ParamFlags.READWRITE),
        "dtype": (str, "dtype", "fp32 (parity), fp16 or bf16", "fp32", GObject.ParamFlags.READWRITE),
        "backend": (str, "backend", "auto, torch, triton, ... (srgan-fast upscale --help)", "auto",
                    GObject.ParamFlags.READWRITE),
        "tile": (int, "tile", "LR tile size in pixels, 1..1048576; 0 = whole frames unless the memory budget forces "
                 "tiles (other values are refused at start)", _GINT_MIN, _MAX, 0, GObject.ParamFlags.READWRITE),
        "batch": (int, "batch", "frames per engine call, 1..256 (adds batch - 1 frames of latency; other values are "
                  "refused at start)", _GINT_MIN, _MAX, 1, GObject.ParamFlags.READWRITE),
    }  # fmt: skip

    def __init__(self):
        super().__init__()
        self._props = {"model": _default_model(), "device": "cpu", "dtype": "fp32", "backend": "auto", "tile": 0,
                       "batch": 1}  # fmt: skip
        self._engine = None
        self._engine_key = None
        self._in: tuple | None = None  # (Layout, matrix, full_range) of the sink caps
        self._fps: tuple[int, int] = (0, 1)  # the sink caps' framerate, for LATENCY queries
        self._out: tuple | None = None  # the same for the src caps
        self._pending: list = []  # input buffers waiting for a full batch
        self._ready: list = []  # output buffers for generate_output to hand out
        self.set_qos_enabled(False)

    # properties ---------------------------------------------------------------------------
    def do_get_property(self, prop):
        return self._props[prop.name]

    def do_set_property(self, prop, value):
        changed = prop.name == "batch" and value != self._props["batch"]
        self._props[prop.name] = value
        if changed and self._in is not None:  # while streaming: the pipeline re-queries the latency
            self.post_message(Gst.Message.new_latency(self))

    def _bad_property(self) -> str | None:
        """Why an integer property is out of range (a sentence naming it), or None."""
        for name, (lo, hi, valid) in _RANGES.items():
            v = self._props[name]
            if not lo <= v <= hi:
                return f"srganfast: {name}={v} is out of range; use {valid}"
        return None

    # engine -------------------------------------------------------------------------------
    def _get_engine(self):
        """The engine for the current properties (built once per set of values), or None after
        posting an error message that says what is wrong."""
        p = self._props
        key = (p["model"], p["device"], p["dtype"], p["backend"], p["tile"])
        if self._engine is not None and self._engine_key == key:
            return self._engine
        bad = self._bad_property()
        if bad is not None:
            _error(self, bad)
            return None
        try:
            from ..options import RunOptions

            opts = RunOptions(model=p["model"], device=p["device"], dtype=p["dtype"], backend=p["backend"],
                              tile=p["tile"] or None).validate()  # fmt: skip
            self._engine = opts.engine()
            self._engine_key = key
        except Exception as e:  # a bad property is the user's to fix: one message, no traceback
            _error(self, f"srganfast: cannot load the model with {self._describe()}", e)
            self._engine = None
            return None
        return self._engine

    def _describe(self) -> str:
        p = self._props
        return " ".join(f"{k}={p[k]}" for k in ("model", "device", "dtype", "backend"))

    def _scale(self) -> int | None:
        """The model's scale without building the engine (caps are queried while linking, before
        start; a bad model is reported by start, where the error reaches the bus), or None."""
        if self._engine is not None:
            return self._engine.scale
        try:
            from ..weights import config_from_metadata, read_header, resolve

            path = resolve(self._props["model"])
            return int(config_from_metadata(read_header(path)[1], str(path)).scale)
        except Exception:  # start() reports it, with the reason
            return None

    def do_start(self):
        self._pending, self._ready = [], []
        bad = self._bad_property()  # also when the engine for the other properties is built already
        if bad is not None:
            _error(self, bad)
            return False
        return self._get_engine() is not None

    def do_stop(self):
        self._pending, self._ready = [], []
        return True

    # caps ---------------------------------------------------------------------------------
    @_guarded(lambda *a: Gst.Caps.new_empty())
    def do_transform_caps(self, direction, caps, filter_):
        scale = self._scale()
        up = direction == Gst.PadDirection.SINK  # caps of the sink pad -> what the src pad may take
        same, other = Gst.Caps.new_empty(), Gst.Caps.new_empty()
        for i in range(caps.get_size()):
            s = caps.get_structure(i).copy()
            ok = True
            for f in _SIZE_FIELDS:
                if s.has_field(f) and scale is None:
                    s.remove_field(f)  # any size until the model is known
                elif s.has_field(f):
                    v = _scale_value(s.get_value(f), scale, up)
                    if v is None:
                        ok = False
                        break
                    s.set_value(f, v)
            if not ok:
                continue
            same.append_structure(s.copy())
            # any other of our formats too (after the same one: fixation prefers the first);
            # the colour fields only make sense within YUV
            for f in ("format", "colorimetry", "chroma-site"):
                s.remove_field(f)
            other.append_structure(s)
        result = same.merge(other.intersect(_CAPS))
        if filter_ is not None:
            result = filter_.intersect_full(result, Gst.CapsIntersectMode.FIRST)
        return result

    @_guarded(lambda direction, caps, othercaps: othercaps.fixate())
    def do_fixate_caps(self, direction, caps, othercaps):
        out = othercaps.fixate()
        if direction != Gst.PadDirection.SINK:
            return out
        # YUV to YUV: keep the input's colorimetry (else a 270p -> 1080p stream would switch from
        # the SD default BT.601 to the HD default BT.709 for no reason)
        info_in = GstVideo.VideoInfo.new_from_caps(caps)
        s = out.get_structure(0)
        if (
            info_in is not None
            and info_in.finfo.name in _YUV
            and s.get_value("format") in _YUV
            and not s.has_field("colorimetry")
        ):
            s = s.copy()
            s.set_value("colorimetry", info_in.colorimetry.to_string())
            if info_in.chroma_site != GstVideo.VideoChromaSite.UNKNOWN and not s.has_field("chroma-site"):
                s.set_value("chroma-site", GstVideo.VideoChromaSite.to_string(info_in.chroma_site))
            out = Gst.Caps.new_empty()
            out.append_structure(s)
        return out

    def _side(self, caps, name: str):
        info = GstVideo.VideoInfo.new_from_caps(caps)
        if info is None:
            raise ValueError(f"{name} caps are not raw video: {caps.to_string()}")
        fmt = info.finfo.name
        if fmt not in FORMATS:
            raise ValueError(f"{name} format {fmt} is not supported; use one of {', '.join(FORMATS)}")
        n = info.finfo.n_planes
        layout = Layout(fmt, info.width, info.height, tuple(info.offset[:n]), tuple(info.stride[:n]), info.size)
        matrix, full = 709, False
        if fmt in _YUV:
            c = info.colorimetry
            if c.matrix not in _MATRIX:
                raise ValueError(
                    f"{name} colorimetry {c.to_string()}: matrix {c.matrix.value_nick} is not supported; "
                    "use bt601 or bt709 (e.g. colorimetry=bt709 in the caps)"
                )
            matrix, full = _MATRIX[c.matrix], c.range == _FULL_RANGE
        return layout, matrix, full

    @_guarded(lambda *a: False)
    def do_set_caps(self, incaps, outcaps):
        engine = self._get_engine()
        if engine is None:
            return False
        try:
            src, dst = self._side(incaps, "input"), self._side(outcaps, "output")
            s = engine.scale
            if (dst[0].width, dst[0].height) != (src[0].width * s, src[0].height * s):
                raise ValueError(
                    f"output {dst[0].width}x{dst[0].height} is not x{s} of the input {src[0].width}x{src[0].height}"
                )
        except ValueError as e:  # refused caps: the reason is the message
            _error(self, f"srganfast: {e}")
            return False
        info = GstVideo.VideoInfo.new_from_caps(incaps)
        fps = (info.fps_n, info.fps_d)
        self._in, self._out = src, dst
        if fps != self._fps:
            self._fps = fps
            if self._props["batch"] > 1:
                self.post_message(Gst.Message.new_latency(self))
        return True

    def _latency(self) -> int:
        """What batching adds: batch - 1 frame durations at the sink caps' framerate (ns), 0 where the
        framerate is unknown or variable (0/1)."""
        n, d = self._fps
        batch = self._props["batch"]
        if n <= 0 or d <= 0 or batch <= 1:
            return 0
        return Gst.util_uint64_scale_int((batch - 1) * Gst.SECOND, d, n)

    @_guarded(lambda *a: False)
    def do_gst_base_transform_query(self, direction, query):  # `do_query` is ambiguous with Gst.Element.query
        if direction != Gst.PadDirection.SRC or query.type != Gst.QueryType.LATENCY:
            return GstBase.BaseTransform.do_query(self, direction, query)
        if not GstBase.BaseTransform.do_query(self, direction, query):  # upstream's answer
            return False
        live, lo, hi = query.parse_latency()
        extra = self._latency()
        query.set_latency(live, lo + extra, hi if hi == Gst.CLOCK_TIME_NONE else hi + extra)
        return True

    @_guarded(lambda *a: False)
    def do_propose_allocation(self, decide_query, query):
        # buffers with GstVideoMeta (padded strides, plane offsets) are read as they are: no copy upstream.
        # No pool of ours: input and output sizes differ, so downstream's pool is no use upstream, and the
        # default (which forwards the query when decide_query is None) is not chained up to. The element
        # holds up to batch - 1 input buffers, so it asks upstream's pool for `batch` of them at least.
        query.add_allocation_meta(GstVideo.video_meta_api_get_type(), None)
        caps, _ = query.parse_allocation()
        info = GstVideo.VideoInfo.new_from_caps(caps) if caps is not None else None
        if info is not None and self._props["batch"] > 1:
            query.add_allocation_pool(None, info.size, self._props["batch"], 0)
        return True

    def _layout_of(self, buf, layout: Layout) -> Layout:
        """Where `buf`'s planes lie: its GstVideoMeta's offsets and strides where it has one (a
        decoder's padded rows), else the caps' `layout`."""
        meta = GstVideo.buffer_get_video_meta(buf)
        if meta is None:
            return layout
        fmt = GstVideo.VideoFormat.to_string(meta.format)
        if (fmt, meta.width, meta.height) != (layout.format, layout.width, layout.height):
            raise ValueError(f"a buffer's video meta ({fmt} {meta.width}x{meta.height}) does not match the caps "
                             f"({layout.format} {layout.width}x{layout.height})")  # fmt: skip
        n = len(layout.offsets)
        return layout.with_planes(tuple(meta.offset[:n]), tuple(meta.stride[:n]))

    # data ---------------------------------------------------------------------------------
    @_guarded(lambda *a: Gst.FlowReturn.ERROR)
    def do_submit_input_buffer(self, is_discont, inbuf):
        self._pending.append(inbuf)
        if len(self._pending) >= max(1, self._props["batch"]):
            return self._flush()
        return Gst.FlowReturn.OK

    def do_generate_output(self):
        if self._ready:
            return Gst.FlowReturn.OK, self._ready.pop(0)
        return Gst.FlowReturn.OK, None

    @_guarded(lambda *a: False)
    def do_sink_event(self, event):
        # frames held for a batch go out before EOS, and before new caps (with the old caps)
        if event.type in (Gst.EventType.EOS, Gst.EventType.CAPS) and self._pending:
            ret = self._flush()
            while self._ready and ret == Gst.FlowReturn.OK:
                ret = self.srcpad.push(self._ready.pop(0))
        elif event.type == Gst.EventType.FLUSH_STOP:
            self._pending, self._ready = [], []
        return GstBase.BaseTransform.do_sink_event(self, event)

    def _flush(self):
        """Upscale the pending frames in one engine call; their outputs join the ready list."""
        import numpy as np

        bufs, self._pending = self._pending, []
        (lin, min_, fin), (lout, mout, fout) = self._in, self._out
        try:
            frames = []
            for b in bufs:
                ok, m = b.map(Gst.MapFlags.READ)
                if not ok:
                    raise RuntimeError("cannot map an input buffer")
                try:
                    frames.append(to_rgb(unpack(m.data, self._layout_of(b, lin)), lin.format, min_, fin))
                finally:
                    b.unmap(m)
            sr = self._engine.upscale(np.stack(frames))
            for b, rgb in zip(bufs, sr):
                data = pack(from_rgb(rgb, lout.format, mout, fout), lout)
                out = Gst.Buffer.new_allocate(None, len(data), None)
                out.fill(0, data)
                out.pts, out.dts, out.duration = b.pts, b.dts, b.duration
                out.offset, out.offset_end = b.offset, b.offset_end
                if b.has_flags(Gst.BufferFlags.DISCONT):
                    out.set_flags(Gst.BufferFlags.DISCONT)
                self._ready.append(out)
        except Exception as e:
            _error(self, f"srganfast: upscaling failed ({self._describe()})", e)
            return Gst.FlowReturn.ERROR
        return Gst.FlowReturn.OK


GObject.type_register(SrganFast)


def register(plugin=None) -> bool:
    """Register the element in this process (or in `plugin`), so Gst.ElementFactory.make and
    Gst.parse_launch know `srganfast`."""
    return Gst.Element.register(plugin, ELEMENT_NAME, Gst.Rank.NONE, SrganFast)
