"""`srgan-fast video IN OUT`: decode, upscale, encode, with everything else kept.

* Video: decoded to RGB, upscaled by the engine (`Engine.stream`: decoding overlaps
  upscaling through a bounded queue, so memory stays flat for any length), encoded with
  libx264 by default; each output frame keeps its input frame's timestamp (pts) exactly,
  variable frame rate included (the encoder and the stream use the input's time base;
  Matroska stores milliseconds, so there pts are rounded to the nearest ms).
* Audio and subtitle streams are copied packet for packet, untouched.
* Colour and depth (srgan_fast.io.video.color, docs/video.md): the source's matrix, primaries,
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
* The output is written beside the target under a temporary name (io.paths.atomic_output) and
  renamed over it only when the container closed without error and holds a frame: a job that
  fails at any point (a bad --codec, an unreadable input, an engine or encoder error, a full
  disk at the last flush) leaves an existing file of that name byte-equal and no temporary
  file; an output folder removed during the job is an error, never exit 0.
* Ctrl-C or SIGTERM still closes the output properly, and that playable partial file replaces
  the target. Further Ctrl-C / SIGTERM while the file is being closed are held until it is done.
  Every step of the closing is tried whatever the others did, so a failure anywhere (reader,
  engine, encoder, muxer, disk) ends the job within seconds, never a hang.
* An undecodable frame stops the job with the file and the time named; with
  `skip_bad_frames=True` such frames are skipped and counted.
Needs PyAV (`pip install av`).

Here: upscale_video (checks, probing, the steps in order); reader.py (demux + decode on the
engine's reader thread); writer.py (encoder and codec checks, colour tags, options, mux, close);
color.py (colour tags and plane conversions).
"""

from __future__ import annotations

import errno
import os
import signal
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from ...errors import Interrupted, MissingDependency, SignalGuard, UserError
from ...options import RunOptions
from .color import ColorError, resolve_tags

__all__ = ["upscale_video", "VideoError"]


class VideoError(UserError, ValueError):
    """A video file that cannot be read or written (the message names it and says where)."""


@dataclass
class VideoJob:
    """What one `upscale_video` call asked for, checked (the output is written to `part`, then
    renamed over `dst`)."""

    src: Path
    dst: Path
    part: Path
    batch: int = 1
    codec: str | None = None
    crf: int = 18
    bitrate: int | None = None
    pix_fmt: str | None = None
    color_matrix: int | None = None
    color_range: bool | None = None
    start: float = 0.0
    max_frames: int | None = None
    progress: bool = True
    skip_bad_frames: bool = False
    hdr10: tuple | None = None  # the source's (mastering display, content light) side data, bytes or None


def _need_av():
    try:
        import av
    except ImportError:
        raise MissingDependency("video needs PyAV: pip install av") from None
    return av


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
    from ..paths import check_outputs
    from .color import parse_matrix, parse_range

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
    counts = {"frames_in": 0, "frames_out": 0, "frames_skipped": 0, "packets_copied": 0}
    from ..paths import atomic_output

    interrupted = None
    # everything is written to `part`; it replaces `dst` only when the container closed without
    # error and holds a frame (after Ctrl-C/SIGTERM too: a playable partial file); any failure,
    # at the last flush or close included, leaves `dst` as it was and no temporary file behind
    with atomic_output(dst) as part:
        job = VideoJob(src, dst, part, batch=batch, codec=codec, crf=crf, bitrate=bitrate, pix_fmt=pix_fmt,
                       color_matrix=color_matrix, color_range=color_range, start=start, max_frames=max_frames,
                       progress=progress, skip_bad_frames=skip_bad_frames, hdr10=probe["hdr10"])  # fmt: skip
        try:
            res = _upscale_video(av, engine, inp, vin, job, counts, probe)
        except Interrupted as e:
            if not (counts["frames_out"] and counts.get("closed")):
                raise
            interrupted = e  # the partial file is complete: it replaces dst below
        except (OSError, av.error.FFmpegError) as e:
            raise _named(e, part, dst) from None
    if interrupted is not None:
        raise interrupted
    return res


def _named(e: Exception, part: Path, dst: Path) -> Exception:
    """The error with the user's file named in place of the temporary one it was written to (a
    full disk is found by whichever write hits it; FFmpeg names the file it was writing)."""
    name = getattr(e, "filename", None)
    ours = name is not None and os.path.basename(str(name)) == part.name
    if getattr(e, "errno", None) in _DISK_ERRNOS and (ours or name is None):
        return OSError(e.errno, e.strerror or str(e), str(dst))
    if ours:
        return VideoError(f"{dst}: FFmpeg could not write it ({e.strerror or e}); try another --codec, or a .mkv "
                          "output, which takes the most")  # fmt: skip
    return e


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
                  "range": None, "height": 0, "hdr10": None}  # fmt: skip
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
                hdr10 = [None, None]
                for item in frame.side_data:
                    kind = str(item.type)
                    if "DISPLAYMATRIX" in kind:
                        m = [int(v) for v in memoryview(bytes(item)).cast("i")]
                        info["display_matrix"] = m if len(m) == 9 else None
                    elif "MASTERING_DISPLAY_METADATA" in kind:
                        hdr10[0] = bytes(item)
                    elif "CONTENT_LIGHT_LEVEL" in kind:
                        hdr10[1] = bytes(item)
                info["hdr10"] = tuple(hdr10) if any(hdr10) else None
                break
    except (av.error.FFmpegError, ValueError, IndexError, TypeError):
        pass
    return info


def _upscale_video(av, engine, inp, vin, job: VideoJob, counts: dict, probe: dict) -> dict:
    """The job once the input is open: the output set up (writer), the frames read (reader),
    upscaled and encoded (_encode_all), the result summed up. `inp` and the output are closed
    on every path; `counts` is filled in as it goes (the caller keeps or removes `job.part`)."""
    from .color import PlaneConverter, source_bits, work_bits
    from .reader import Reader
    from .writer import choose_format, open_output

    fmt = probe["pix_fmt"] or getattr(vin.codec_context.format, "name", "")  # "" when nothing decodes
    bits = source_bits(fmt) if fmt else 8
    tags = _source_tags(av, inp, vin, job, probe, fmt)
    codec, pix_fmt = choose_format(av, job.codec, job.pix_fmt, bits, job.dst.suffix)
    out_bits = source_bits(pix_fmt)
    if work_bits(out_bits) < work_bits(bits):  # as images say for 16 -> 8 bits
        print(f"video: {job.src} is {bits}-bit; {codec} writes it as {pix_fmt} ({work_bits(out_bits)}-bit), so the "
              "extra depth is lost (libx265, libx264, ffv1 or prores_ks keep it; or choose --pix-fmt)",
              file=sys.stderr)  # fmt: skip
    conv = PlaneConverter(tags, engine.device, float_path=max(bits, out_bits) > 8, out_bits=out_bits)
    output = open_output(av, inp, vin, job, tags=tags, codec=codec, pix_fmt=pix_fmt, work_fmt=conv.out_format,
                         scale=engine.scale, display_matrix=probe["display_matrix"])  # fmt: skip
    reader = Reader(av, inp, vin, output, conv, job, counts)
    dt = _encode_all(engine, inp, vin, reader, output, conv, job, counts)
    if output.retimed:
        shown = ", ".join(f"{t:.3f} s" for t in output.retimed[:5]) + (", ..." if len(output.retimed) > 5 else "")
        print(f"video: {len(output.retimed)} frame(s) of {job.src} had timestamps at or before the previous "
              f"frame's ({shown}; a spliced or damaged file): written in decode order, each one tick after the "
              "previous", file=sys.stderr)  # fmt: skip
    if reader.bad_at:
        shown = ", ".join(reader.bad_at[:5]) + (", ..." if len(reader.bad_at) > 5 else "")
        print(f"video: skipped {len(reader.bad_at)} undecodable frame(s) of {job.src} ({shown})", file=sys.stderr)
    if counts["frames_out"] == 0:  # e.g. --start past the end: say so, leave no empty file
        raise VideoError(f"{job.src}: no video frame to upscale (after --start {job.start} s?); nothing written")
    return _summary(job, counts, dt, tags, bits, out_bits, output, conv)


def _source_tags(av, inp, vin, job: VideoJob, probe: dict, fmt: str):
    """The source's colour tags (ColorTags), its mistags overridden by --color-matrix/--color-range;
    `inp` is closed when they cannot be had."""
    if (
        (job.color_matrix is not None or job.color_range is not None)
        and fmt
        and (av.VideoFormat(fmt).is_rgb or fmt.startswith(("gray", "pal")))
    ):
        inp.close()
        raise VideoError(f"{job.src}: --color-matrix/--color-range describe YUV sources; this one is {fmt}")
    try:
        return resolve_tags(probe["matrix"], probe["primaries"], probe["transfer"], probe["range"],
                            probe["height"] or vin.codec_context.height, fmt,
                            override_matrix=job.color_matrix, override_range=job.color_range)  # fmt: skip
    except ColorError:
        inp.close()
        raise


def _encode_all(engine, inp, vin, reader, output, conv, job: VideoJob, counts: dict) -> float:
    """Upscale the reader's frames through the engine and encode them; returns the seconds taken.
    Ctrl-C, SIGTERM or an error still flushes and closes the output (a playable file) and the
    input; Ctrl-C / SIGTERM then end the job as Interrupted."""
    total = vin.frames or None
    if job.max_frames:
        total = min(total or job.max_frames, job.max_frames)
    bar = None
    if job.progress:
        from tqdm import tqdm

        bar = tqdm(total=total, desc=f"upscale x{engine.scale} {job.src.name}", unit="frame", file=sys.stderr)
    t0 = time.perf_counter()
    frames = reader.frames()
    stream = engine.stream(frames, batch=job.batch)
    interrupted = None
    handled = False  # the loop ended without an error still in flight
    with SignalGuard() as signals:
        try:
            for i, rgb in enumerate(stream):
                try:
                    output.write(conv.to_frame(rgb), reader.first_pts[i], vin.time_base)
                except sys.modules["av"].error.FFmpegError as e:
                    raise _encode_error(e, job, output, i) from None
                counts["frames_out"] += 1
                if bar is not None:
                    bar.update(1)
            handled = True
        except KeyboardInterrupt as e:
            interrupted = e.signum if isinstance(e, Interrupted) else signal.SIGINT
            handled = True
        finally:  # Ctrl-C, SIGTERM or an error still closes everything (a playable file after Ctrl-C)
            signals.closing = True  # from here on signals are recorded, not raised
            failed = _close_all(stream, reader, output, inp, bar)
            counts["closed"] = failed is None
            if failed is not None and handled:
                raise failed  # the frames went in, the file did not close: a full disk at the end
        interrupted = interrupted or signals.got
    dt = time.perf_counter() - t0
    if interrupted:
        name = "SIGTERM" if interrupted == signal.SIGTERM else "Ctrl-C"
        if counts["frames_out"] == 0:  # no frame, no playable file: leave nothing behind
            raise Interrupted(f"interrupted ({name}) before the first frame; nothing written", signum=interrupted)
        raise Interrupted(
            f"interrupted ({name}): {job.dst} is playable and holds the first {counts['frames_out']} frames",
            signum=interrupted,
        )
    return dt


_DISK_ERRNOS = (errno.ENOSPC, errno.EDQUOT, errno.EFBIG, errno.EIO, errno.EROFS)


def _encode_error(e, job: VideoJob, output, i: int) -> Exception:
    """One line for an encoder or muxer failure at frame `i`, naming the user's file (never the
    temporary one) and what to try; a full disk stays an OSError (the CLI's hint says what to do)."""
    if e.errno in _DISK_ERRNOS:
        return OSError(e.errno, e.strerror or str(e), str(job.dst))
    return VideoError(f"{job.dst}: the {output.codec} encoder or the {job.dst.suffix or 'output'} muxer refused "
                      f"frame {i} ({e.strerror or e}); try another --codec, or a .mkv output, which takes the most")


def _close_all(stream, reader, output, inp, bar) -> BaseException | None:
    """Stop the engine's stream and the reader thread, flush and close the output and the input;
    every step is tried whatever the others did (a full disk fails the flush and the close alike),
    and the reader's lock is always given back, so no thread is left waiting on it. Returns the
    first error, or None when the output closed cleanly."""
    first: list[BaseException] = []

    def attempt(step) -> None:
        try:
            step()
        except BaseException as e:  # noqa: BLE001 -- kept, raised by the caller
            if not first:
                first.append(e)

    reader.closing.set()
    attempt(stream.close)
    got_reader = reader.busy.acquire(timeout=30)  # the reader thread is out of the containers
    try:
        attempt(output.flush)
        attempt(output.close)
        attempt(inp.close)
    finally:
        if got_reader:
            reader.busy.release()
        if bar is not None:
            bar.close()
    return first[0] if first else None


def _summary(job: VideoJob, counts: dict, dt: float, tags, bits: int, out_bits: int, output, conv) -> dict:
    """upscale_video's result: counts, timings and what was written."""
    from .color import work_bits

    return {
        **{k: v for k, v in counts.items() if k != "closed"},
        "seconds": dt,
        "fps": counts["frames_out"] / dt if dt else 0.0,
        "output": str(job.dst),
        "size": f"{output.width}x{output.height}",
        "colorspace": tags.matrix_name,
        "color": {
            "matrix": tags.matrix,
            "primaries": tags.primaries,
            "transfer": tags.transfer,
            "range": "full" if tags.full_range else "limited",
            "guessed": list(tags.guessed),
        },
        "codec": output.codec,
        "pix_fmt": output.pix_fmt,
        "bits": {"source": bits, "output": work_bits(out_bits)},
        "conversion": conv.path,
        "gpu_decoded_frames": conv.hw_frames,
    }
