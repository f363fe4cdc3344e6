"""`srgan-fast video IN OUT`: decode, upscale, encode, with everything else kept.

* Video: decoded to RGB, upscaled by the engine (`Engine.stream`: decoding overlaps
  upscaling through a bounded queue, so memory stays flat for any length), encoded with
  libx264 by default; each output frame keeps its input frame's timestamp (pts) exactly,
  variable frame rate included (the encoder and the stream use the input's time base;
  Matroska stores milliseconds, so there pts are rounded to the nearest ms).
* Audio and subtitle streams are copied packet for packet, untouched.
* Colour and depth (srgan_fast.video_color, docs/video.md): the source's matrix, primaries,
  transfer and range are kept on the output, and the planes are converted with the source's
  matrix; untagged sources are read as players read them (BT.601 below 720 lines, BT.709
  from 720 up, limited range) and the output is tagged with that. `color_matrix` /
  `color_range` override mistagged sources. PQ / HLG pass through with their tags (a note
  says the model was trained on SDR). 8-bit sources run the engine on uint8 RGB; 10-bit and
  deeper ones (yuv420p10le, P010) on float32 RGB, never quantised in between, and are
  written at their depth (libx265, else libx264 yuv420p10le) unless `pix_fmt` says otherwise.
* Planes: the decoder's I420 / NV12 / P010 planes are taken by DLPack (no copy) and
  converted by the native kernels (csrc/, 8-bit BT.601/709) or by torch (any depth or
  matrix), on the engine's device; no swscale rgb24 round trip. With device="cuda" and a
  CUDA-capable FFmpeg, decoding runs on the GPU (PyAV hwaccel) and the frames stay there.
* Rotation: the input's display matrix (portrait phone video) is copied to the output.
* The output is written beside the target under a temporary name and renamed over it once
  at least one frame is in it: a job that fails before the first frame (a bad --codec, an
  unreadable input, --start past the end) leaves an existing file of that name untouched.
* Ctrl-C, SIGTERM (or any error) still closes the output properly: a playable partial file.
  Further Ctrl-C / SIGTERM while the file is being closed are held until it is done.
* An undecodable frame stops the job with the file and the time named; with
  `skip_bad_frames=True` such frames are skipped and counted.
Needs PyAV (`pip install av`).
"""

from __future__ import annotations

import os
import signal
import sys
import threading
import time
from fractions import Fraction
from pathlib import Path

from .errors import Interrupted, MissingDependency, SignalGuard, UserError
from .options import RunOptions
from .video_color import ColorError, resolve_tags

__all__ = ["upscale_video", "VideoError"]


class VideoError(UserError, ValueError):
    """A video file that cannot be read or written (the message names it and says where)."""


def _need_av():
    try:
        import av
    except ImportError:
        raise MissingDependency("video needs PyAV: pip install av") from None
    return av


def _open_encoder(vout, tb: Fraction) -> None:
    """Open the encoder in the input's time base, so every pts survives exactly. Codecs that
    cap the time base (MPEG-4 part 2: 16-bit denominator) get the finest one they take."""
    av = sys.modules["av"]
    cc = vout.codec_context
    cc.time_base = tb
    try:
        cc.open()
        return
    except av.error.FFmpegError:
        pass
    k = -(-tb.denominator // 65535)
    cc.time_base = Fraction(tb.numerator, tb.denominator // k) if tb.numerator == 1 else Fraction(1, 65535)
    try:
        cc.open()
    except av.error.FFmpegError as e:
        takes = [f.name for f in (av.codec.Codec(cc.name, "w").video_formats or [])]
        if takes and vout.pix_fmt not in takes:
            raise VideoError(f"--codec {cc.name} cannot encode {vout.pix_fmt}; it takes: {', '.join(takes)} "
                             "(--pix-fmt)") from None  # fmt: skip
        raise VideoError(f"cannot open the {cc.name} encoder for {vout.width}x{vout.height} ({e})") from None


def _default_pix_fmt(av, codec: str, bits: int) -> str:
    """4:2:0 at the source's depth, or the deepest 4:2:0 the encoder takes below it."""
    try:
        formats = [f.name for f in (av.codec.Codec(codec, "w").video_formats or [])]
    except (av.error.FFmpegError, ValueError, TypeError):
        formats = []
    from .video_color import WORK_FORMATS, work_bits

    want = [WORK_FORMATS[b] for b in (16, 12, 10, 8) if b <= work_bits(bits)]
    return next((f for f in want if f in formats), "yuv420p" if not formats or "yuv420p" in formats else formats[0])


def upscale_video(
    src: str | os.PathLike,
    dst: str | os.PathLike,
    options: RunOptions | None = None,
    *,
    batch: int = 1,
    codec: str | None = None,
    crf: int = 18,
    bitrate: int | None = None,
    pix_fmt: str | None = None,
    color_matrix: str | int | None = None,
    color_range: str | bool | None = None,
    start: float = 0.0,
    max_frames: int | None = None,
    progress: bool = True,
    skip_bad_frames: bool = False,
    hwaccel: bool = True,
    **overrides,
) -> dict:
    """Upscale the first video stream of `src` into `dst`; returns counts and timings.

    options / overrides: model, device, dtype, backend, tile (srgan_fast.options.RunOptions).
    codec: encoder; default libx264 for 8-bit sources, libx265 (else libx264) for deeper ones.
    pix_fmt: output pixel format; default the source's depth in 4:2:0 (yuv420p, yuv420p10le, ...).
    color_matrix / color_range: how the source was really encoded when its tags are wrong
        (bt601, bt709, bt2020, smpte240m, fcc / limited, full); the output is tagged with them.
    skip_bad_frames: frames the decoder cannot decode are skipped and counted
        ("frames_skipped") instead of stopping the job.
    hwaccel: with a CUDA engine, decode on its GPU (PyAV's CUDA hwaccel; frames stay on the
        device and reach the engine by DLPack). False decodes on the CPU (for comparisons).
    """
    av = _need_av()
    opts = RunOptions.resolve(options, **overrides)
    from .upscale import check_outputs
    from .video_color import parse_matrix, parse_range

    src, dst = Path(src), Path(dst)
    if not src.exists():
        raise FileNotFoundError(f"{src}: no such file")
    if os.path.realpath(src) == os.path.realpath(dst):
        raise VideoError("output must differ from input")
    if max_frames is not None and max_frames < 1:
        raise VideoError(f"--frames must be positive, got {max_frames}")
    if batch < 1:
        raise VideoError(f"--batch must be positive, got {batch}")
    if bitrate is not None and not 1 <= bitrate <= 2**31 - 1:
        raise VideoError(f"--bitrate must be a positive number of bits/s below 2^31, got {bitrate}")
    if start is not None and not (0 <= start < 1e9):  # (NaN fails this too)
        raise VideoError(f"--start must be a number of seconds from 0, got {start}")
    if not bitrate and (codec is None or "264" in codec or "265" in codec) and not 0 <= crf <= 51:
        # x264/x265 take 0-51 and clamp the rest without a word (--crf 99 encoded at 51, the worst)
        raise VideoError(f"--crf must be 0-51 for {codec or 'x264/x265'} (lower is better, 18 is visually "
                         f"lossless), got {crf}")  # fmt: skip
    color_matrix, color_range = parse_matrix(color_matrix), parse_range(color_range)  # bad values fail first
    if dst.is_dir():
        raise VideoError(f"{dst}: is a folder; give an output file such as out.mp4")
    engine = opts.engine()  # a bad --model fails before any output folder is made
    check_outputs([src], [dst])  # folder writable, not a device node, before any work
    probe = _probe(av, src)
    try:
        inp = av.open(str(src), **(_hwaccel(av, engine.device) if hwaccel else {}))
    except av.error.FFmpegError as e:
        raise VideoError(f"{src}: not a video PyAV can read ({e})") from None
    if not inp.streams.video:
        inp.close()
        raise VideoError(f"{src}: has no video stream")
    vin = inp.streams.video[0]
    vin.thread_type = "AUTO"
    # everything is written to `part` and renamed over `dst` only once it holds a frame
    part = dst.with_name(f".{dst.stem}.{os.getpid()}.partial{dst.suffix}")
    counts = {"frames_in": 0, "frames_out": 0, "frames_skipped": 0, "packets_copied": 0}
    try:
        return _upscale_video(
            av, engine, inp, vin, src, dst, part, counts, probe, batch=batch, codec=codec, crf=crf,
            bitrate=bitrate, pix_fmt=pix_fmt, color_matrix=color_matrix, color_range=color_range, start=start,
            max_frames=max_frames, progress=progress, skip_bad_frames=skip_bad_frames,
        )  # fmt: skip
    finally:
        if counts["frames_out"] and part.exists():
            os.replace(part, dst)  # done, or a playable partial file after an error or Ctrl-C
        else:
            part.unlink(missing_ok=True)  # nothing upscaled: the user's file stays as it was


def _hwaccel(av, device) -> dict:
    """av.open keywords that decode on the engine's GPU: PyAV's CUDA hwaccel with the frames
    left on the device (is_hw_owned), handed to the engine by DLPack. Software decoding where
    the engine is on the CPU, or FFmpeg has no CUDA (the decoder falls back per stream too)."""
    if getattr(device, "type", str(device)) != "cuda":
        return {}
    try:
        from av.codec.hwaccel import HWAccel, hwdevices_available
    except ImportError:  # PyAV < 17: no hwaccel, software decoding
        return {}
    if "cuda" not in hwdevices_available():
        return {}
    index = getattr(device, "index", None) or 0
    return {"hwaccel": HWAccel("cuda", device=str(index), allow_software_fallback=True, is_hw_owned=True)}


def _probe(av, src: Path) -> dict:
    """The first video frame's display matrix (rotation/flip), pixel format and colour tags,
    with the stream's tags where the frame has none (None where unreadable)."""
    info: dict = {"display_matrix": None, "pix_fmt": "", "matrix": None, "primaries": None, "transfer": None,
                  "range": None, "height": 0}  # fmt: skip
    try:
        with av.open(str(src)) as c:
            st = c.streams.video[0]
            cc = st.codec_context
            for key, attr in (("matrix", "colorspace"), ("primaries", "color_primaries"),
                              ("transfer", "color_trc"), ("range", "color_range")):  # fmt: skip
                info[key] = getattr(cc, attr, None)
            info["pix_fmt"] = cc.format.name if cc.format is not None else ""
            info["height"] = cc.height
            for frame in c.decode(st):
                info["pix_fmt"], info["height"] = frame.format.name, frame.height
                for key, attr in (("matrix", "colorspace"), ("primaries", "color_primaries"),
                                  ("transfer", "color_trc"), ("range", "color_range")):  # fmt: skip
                    v = getattr(frame, attr, None)
                    unset = (0,) if key == "range" else (0, 2)  # AVCOL_RANGE_UNSPECIFIED; reserved, unspecified
                    if v is not None and int(v) not in unset or info[key] is None:
                        info[key] = v
                for item in frame.side_data:
                    if "DISPLAYMATRIX" in str(item.type):
                        m = [int(v) for v in memoryview(bytes(item)).cast("i")]
                        info["display_matrix"] = m if len(m) == 9 else None
                break
    except (av.error.FFmpegError, ValueError, IndexError, TypeError):
        pass
    return info


def _upscale_video(
    av, engine, inp, vin, src, dst, part, counts, probe, *, batch, codec, crf, bitrate, pix_fmt, color_matrix,
    color_range, start, max_frames, progress, skip_bad_frames,
) -> dict:  # fmt: skip
    from .video_color import PlaneConverter, source_bits, work_bits

    s = engine.scale
    fmt = probe["pix_fmt"] or getattr(vin.codec_context.format, "name", "")  # "" when nothing decodes
    bits = source_bits(fmt) if fmt else 8
    if (color_matrix is not None or color_range is not None) and fmt and (
        av.VideoFormat(fmt).is_rgb or fmt.startswith(("gray", "pal"))
    ):
        inp.close()
        raise VideoError(f"{src}: --color-matrix/--color-range describe YUV sources; this one is {fmt}")
    try:
        tags = resolve_tags(probe["matrix"], probe["primaries"], probe["transfer"], probe["range"],
                            probe["height"] or vin.codec_context.height, fmt,
                            override_matrix=color_matrix, override_range=color_range)  # fmt: skip
    except ColorError:
        inp.close()
        raise
    if codec is None:  # HEVC is what 10-bit / HDR players expect; x264's High 10 where x265 is missing
        codec = "libx265" if bits > 8 and "libx265" in av.codecs_available else "libx264"
    if pix_fmt is None:
        pix_fmt = _default_pix_fmt(av, codec, bits)
    out_bits = source_bits(pix_fmt)
    conv = PlaneConverter(tags, engine.device, float_path=max(bits, out_bits) > 8, out_bits=out_bits)
    try:
        out = av.open(str(part), mode="w")
    except (av.error.FFmpegError, ValueError) as e:
        inp.close()
        raise VideoError(f"{dst}: cannot write this file ({e}); use a .mp4, .mkv, .mov or .webm name") from None

    def abandon():  # a failure before the first frame: the partial file is removed by the caller
        inp.close()
        out.close()

    try:
        kind = av.codec.Codec(codec, "w").type
    except (av.error.FFmpegError, ValueError) as e:
        abandon()
        raise VideoError(f"--codec {codec}: not an encoder this PyAV has ({e})") from None
    if kind != "video":
        abandon()
        raise VideoError(f"--codec {codec}: an encoder of {kind}, not video (e.g. libx264, libx265, ffv1)")
    try:
        vout = out.add_stream(codec, rate=vin.average_rate or vin.guessed_rate or 25)
    except (av.error.FFmpegError, ValueError) as e:
        abandon()
        raise VideoError(f"--codec {codec}: not an encoder this PyAV has ({e})") from None
    w, h = vin.codec_context.width * s, vin.codec_context.height * s
    vout.width, vout.height, vout.pix_fmt = w, h, pix_fmt
    vout.time_base = vin.time_base
    try:  # tags in the bitstream (x264/x265 VUI) and the container: what players use
        cc = vout.codec_context
        cc.colorspace, cc.color_primaries, cc.color_trc = tags.matrix, tags.primaries, tags.transfer
        cc.color_range = tags.range_code
        if av.VideoFormat(pix_fmt).is_rgb:  # RGB planes (libx264rgb, ffv1 gbrp): no YUV matrix, full range
            cc.colorspace, cc.color_range = 0, 2
    except AttributeError:  # older PyAV: no tags, conversion matrix still right
        pass
    if probe["display_matrix"] is not None and hasattr(vout, "set_display_matrix"):
        vout.set_display_matrix(probe["display_matrix"])  # portrait phone video stays portrait
    if bitrate:
        vout.bit_rate = int(bitrate)
    elif "264" in codec or "265" in codec:
        vout.options = {"crf": str(crf)}
    if "265" in codec:  # x265 prints its whole configuration otherwise
        vout.options = {**vout.options, "x265-params": "log-level=error"}
    if tags.hdr:
        print(f"video: {src.name} is {tags.hdr} HDR: upscaled as coded, tags kept; the model was trained on SDR "
              "video, so check highlights on an HDR display", file=sys.stderr)  # fmt: skip
    work_fmt = conv.out_format
    # swscale only for a --pix-fmt other than the 4:2:0 planes made here (YUV -> YUV: same matrix)
    space = {1: "ITU709", 5: "ITU601", 6: "SMPTE170M", 7: "SMPTE240M", 9: "BT2020", 4: "FCC"}[tags.matrix]
    rng = "JPEG" if tags.full_range else "MPEG"
    try:
        # the encoder's default time base (1/rate) rounds variable-rate timestamps: collisions
        # made the mp4 muxer fail and moved mkv frames
        _open_encoder(vout, vin.time_base)
    except BaseException:
        abandon()
        raise
    copied = {}
    for st in list(inp.streams.audio) + list(inp.streams.subtitles):
        try:
            copied[st.index] = out.add_stream_from_template(st)
        except (ValueError, av.error.FFmpegError) as e:
            print(f"video: stream #{st.index} ({st.type}) not copied: {e}", file=sys.stderr)
    mux_lock = threading.Lock()
    # The reader thread holds `busy` while it touches the containers (released around each
    # yield); closing takes it, so the files are never closed under a running decoder.
    busy = threading.Lock()
    closing = threading.Event()
    start_pts = int(start / vin.time_base) if start else None
    if start:
        inp.seek(start_pts, stream=vin)
    first_pts: list = []
    bad_at: list[str] = []

    last_good: list = []  # [time of the last frame decoded], for error messages

    def where() -> str:
        # a threaded decoder reports an error a few packets late: name the last good frame
        return f"after the frame at {last_good[0]:.3f} s" if last_good else "before the first frame"

    def why(e) -> str:
        return getattr(e, "strerror", None) or str(e)

    def frames():
        """Demux in one pass: video frames are yielded, other packets are muxed right away."""
        streams = [vin] + [inp.streams[i] for i in copied]
        with busy:
            if closing.is_set():
                return
            packets = inp.demux(streams)
            while True:
                try:
                    packet = next(packets)
                except StopIteration:
                    return
                except av.error.FFmpegError as e:
                    raise VideoError(f"{src}: unreadable {where()} ({why(e)})") from None
                if packet.stream.index in copied:
                    if packet.dts is None:
                        continue
                    packet.stream = copied[packet.stream.index]
                    with mux_lock:
                        out.mux(packet)
                    counts["packets_copied"] += 1
                    continue
                try:
                    decoded = packet.decode()
                except av.error.FFmpegError as e:
                    if not skip_bad_frames:
                        raise VideoError(
                            f"{src}: cannot decode a video frame {where()} ({why(e)}); "
                            "pass --skip-bad-frames to skip undecodable frames"
                        ) from None
                    counts["frames_skipped"] += 1
                    bad_at.append(where())
                    continue
                for frame in decoded:
                    if frame.pts is not None:
                        last_good[:] = [float(frame.pts * frame.time_base)]
                    if start_pts is not None and frame.pts is not None and frame.pts < start_pts:
                        continue
                    if max_frames is not None and counts["frames_in"] >= max_frames:
                        return
                    counts["frames_in"] += 1
                    first_pts.append(frame.pts)
                    rgb = conv.to_rgb(frame)
                    busy.release()
                    try:
                        yield rgb
                    finally:
                        busy.acquire()
                    if closing.is_set():
                        return

    total = vin.frames or None
    if max_frames:
        total = min(total or max_frames, max_frames)
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=total, desc=f"upscale x{s} {src.name}", unit="frame", file=sys.stderr)
    t0 = time.perf_counter()
    reader = frames()
    stream = engine.stream(reader, batch=batch)
    interrupted = None
    with SignalGuard() as signals:
        try:
            for i, rgb in enumerate(stream):
                frame = conv.to_frame(rgb)
                if pix_fmt != work_fmt:
                    frame = frame.reformat(format=pix_fmt, src_colorspace=space, dst_colorspace=space,
                                           src_color_range=rng, dst_color_range=rng)  # fmt: skip
                frame.pts = first_pts[i]
                frame.time_base = vin.time_base
                for packet in vout.encode(frame):
                    with mux_lock:
                        out.mux(packet)
                counts["frames_out"] += 1
                if bar is not None:
                    bar.update(1)
        except KeyboardInterrupt as e:
            interrupted = e.signum if isinstance(e, Interrupted) else signal.SIGINT
        finally:  # Ctrl-C, SIGTERM or an error still leaves a playable file
            signals.closing = True  # from here on signals are recorded, not raised
            closing.set()
            stream.close()
            got_reader = busy.acquire(timeout=30)
            try:
                for packet in vout.encode():
                    with mux_lock:
                        out.mux(packet)
            finally:
                out.close()
                inp.close()
                if got_reader:
                    busy.release()
                if bar is not None:
                    bar.close()
        interrupted = interrupted or signals.got
    dt = time.perf_counter() - t0
    if interrupted:
        name = "SIGTERM" if interrupted == signal.SIGTERM else "Ctrl-C"
        if counts["frames_out"] == 0:  # no frame, no playable file: leave nothing behind
            raise Interrupted(f"interrupted ({name}) before the first frame; nothing written", signum=interrupted)
        raise Interrupted(
            f"interrupted ({name}): {dst} is playable and holds the first {counts['frames_out']} frames",
            signum=interrupted,
        )
    if bad_at:
        shown = ", ".join(bad_at[:5]) + (", ..." if len(bad_at) > 5 else "")
        print(f"video: skipped {len(bad_at)} undecodable frame(s) of {src} ({shown})", file=sys.stderr)
    if counts["frames_out"] == 0:  # e.g. --start past the end: say so, leave no empty file
        raise VideoError(f"{src}: no video frame to upscale (after --start {start} s?); nothing written")
    return {
        **counts,
        "seconds": dt,
        "fps": counts["frames_out"] / dt if dt else 0.0,
        "output": str(dst),
        "size": f"{w}x{h}",
        "colorspace": tags.matrix_name,
        "color": {
            "matrix": tags.matrix,
            "primaries": tags.primaries,
            "transfer": tags.transfer,
            "range": "full" if tags.full_range else "limited",
            "guessed": list(tags.guessed),
        },
        "codec": codec,
        "pix_fmt": pix_fmt,
        "bits": {"source": bits, "output": work_bits(out_bits)},
        "conversion": conv.path,
        "gpu_decoded_frames": conv.hw_frames,
    }
