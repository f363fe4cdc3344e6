"""`srgan-fast video IN OUT`: decode, upscale, encode, with everything else kept.

* Video: decoded to RGB, upscaled by the engine (`Engine.stream`: decoding overlaps
  upscaling through a bounded queue, so memory stays flat for any length), encoded with
  libx264 by default; each output frame keeps its input frame's timestamp (pts) exactly,
  variable frame rate included (the encoder and the stream use the input's time base;
  Matroska stores milliseconds, so there pts are rounded to the nearest ms).
* Audio and subtitle streams are copied packet for packet, untouched.
* Colour: the output is tagged BT.709 when it is HD (height >= 720), else BT.601, limited
  range, and converted to YUV with that matrix.
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
        raise VideoError(f"cannot open the {cc.name} encoder for {vout.width}x{vout.height} ({e})") from None


def upscale_video(
    src: str | os.PathLike,
    dst: str | os.PathLike,
    options: RunOptions | None = None,
    *,
    batch: int = 1,
    codec: str = "libx264",
    crf: int = 18,
    bitrate: int | None = None,
    pix_fmt: str = "yuv420p",
    start: float = 0.0,
    max_frames: int | None = None,
    progress: bool = True,
    skip_bad_frames: bool = False,
    **overrides,
) -> dict:
    """Upscale the first video stream of `src` into `dst`; returns counts and timings.

    options / overrides: model, device, dtype, backend, tile (srgan_fast.options.RunOptions).
    skip_bad_frames: frames the decoder cannot decode are skipped and counted
        ("frames_skipped") instead of stopping the job.
    """
    av = _need_av()
    opts = RunOptions.resolve(options, **overrides)
    from .upscale import check_outputs

    src, dst = Path(src), Path(dst)
    if not src.exists():
        raise FileNotFoundError(f"{src}: no such file")
    if os.path.realpath(src) == os.path.realpath(dst):
        raise VideoError("output must differ from input")
    if max_frames is not None and max_frames < 1:
        raise VideoError(f"--frames must be positive, got {max_frames}")
    if batch < 1:
        raise VideoError(f"--batch must be positive, got {batch}")
    if bitrate is not None and bitrate < 1:
        raise VideoError(f"--bitrate must be a positive number of bits/s, got {bitrate}")
    if not bitrate and ("264" in codec or "265" in codec) and not 0 <= crf <= 51:
        # x264/x265 take 0-51 and clamp the rest without a word (--crf 99 encoded at 51, the worst)
        raise VideoError(f"--crf must be 0-51 for {codec} (lower is better, 18 is visually lossless), got {crf}")
    if dst.is_dir():
        raise VideoError(f"{dst}: is a folder; give an output file such as out.mp4")
    engine = opts.engine()  # a bad --model fails before any output folder is made
    check_outputs([src], [dst])  # folder writable, not a device node, before any work
    try:
        inp = av.open(str(src))
    except av.error.FFmpegError as e:
        raise VideoError(f"{src}: not a video PyAV can read ({e})") from None
    if not inp.streams.video:
        inp.close()
        raise VideoError(f"{src}: has no video stream")
    vin = inp.streams.video[0]
    vin.thread_type = "AUTO"
    matrix = _display_matrix(av, src)
    # everything is written to `part` and renamed over `dst` only once it holds a frame
    part = dst.with_name(f".{dst.stem}.{os.getpid()}.partial{dst.suffix}")
    counts = {"frames_in": 0, "frames_out": 0, "frames_skipped": 0, "packets_copied": 0}
    try:
        return _upscale_video(
            av, engine, inp, vin, src, dst, part, counts, matrix, batch=batch, codec=codec, crf=crf,
            bitrate=bitrate, pix_fmt=pix_fmt, start=start, max_frames=max_frames, progress=progress,
            skip_bad_frames=skip_bad_frames,
        )  # fmt: skip
    finally:
        if counts["frames_out"] and part.exists():
            os.replace(part, dst)  # done, or a playable partial file after an error or Ctrl-C
        else:
            part.unlink(missing_ok=True)  # nothing upscaled: the user's file stays as it was


def _display_matrix(av, src: Path) -> list[int] | None:
    """The display matrix (rotation/flip) of the first video frame of `src`, or None."""
    try:
        with av.open(str(src)) as c:
            for frame in c.decode(c.streams.video[0]):
                sd = frame.side_data
                for item in sd:
                    if "DISPLAYMATRIX" in str(item.type):
                        m = [int(v) for v in memoryview(bytes(item)).cast("i")]
                        return m if len(m) == 9 else None
                return None
    except (av.error.FFmpegError, ValueError, IndexError, TypeError):
        return None
    return None


def _upscale_video(
    av, engine, inp, vin, src, dst, part, counts, matrix, *, batch, codec, crf, bitrate, pix_fmt, start, max_frames,
    progress, skip_bad_frames,
) -> dict:  # fmt: skip
    s = engine.scale
    try:
        out = av.open(str(part), mode="w")
    except (av.error.FFmpegError, ValueError) as e:
        inp.close()
        raise VideoError(f"{dst}: cannot write this file ({e}); use a .mp4, .mkv, .mov or .webm name") from None

    def abandon():  # a failure before the first frame: the partial file is removed by the caller
        inp.close()
        out.close()

    try:
        vout = out.add_stream(codec, rate=vin.average_rate or vin.guessed_rate or 25)
    except (av.error.FFmpegError, ValueError) as e:
        abandon()
        raise VideoError(f"--codec {codec}: not an encoder this PyAV has ({e})") from None
    w, h = vin.codec_context.width * s, vin.codec_context.height * s
    vout.width, vout.height, vout.pix_fmt = w, h, pix_fmt
    vout.time_base = vin.time_base
    hd = h >= 720
    space = "ITU709" if hd else "ITU601"
    try:  # tags in the bitstream: what players use to pick the matrix
        cc = vout.codec_context
        cc.colorspace = 1 if hd else 6  # AVCOL_SPC_BT709 / AVCOL_SPC_SMPTE170M
        cc.color_primaries = 1 if hd else 6
        cc.color_trc = 1 if hd else 6
        cc.color_range = 1  # limited (MPEG)
    except AttributeError:  # older PyAV: no tags, conversion matrix still right
        pass
    if matrix is not None and hasattr(vout, "set_display_matrix"):
        vout.set_display_matrix(matrix)  # portrait phone video stays portrait
    if bitrate:
        vout.bit_rate = int(bitrate)
    elif "264" in codec or "265" in codec:
        vout.options = {"crf": str(crf)}
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
                    rgb = frame.to_ndarray(format="rgb24")
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
                frame = av.VideoFrame.from_ndarray(rgb, format="rgb24")
                frame = frame.reformat(format=pix_fmt, dst_colorspace=space, dst_color_range="MPEG")
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
        "colorspace": "BT.709" if hd else "BT.601",
    }
