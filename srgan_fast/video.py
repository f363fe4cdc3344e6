"""`srgan-fast video IN OUT`: decode, upscale, encode, with everything else kept.

* Video: decoded to RGB, upscaled by the engine (`Engine.stream`: decoding overlaps
  upscaling through a bounded queue, so memory stays flat for any length), encoded with
  libx264 by default; each output frame keeps its input frame's timestamp (pts) and the
  stream keeps the input's time base and frame rate.
* Audio and subtitle streams are copied packet for packet, untouched.
* Colour: the output is tagged BT.709 when it is HD (height >= 720), else BT.601, limited
  range, and converted to YUV with that matrix.
* Ctrl-C (or any error) still closes the output properly: a playable partial file.
Needs PyAV (`pip install av`).
"""

from __future__ import annotations

import os
import sys
import threading
import time
from pathlib import Path

from .options import RunOptions

__all__ = ["upscale_video"]


def _need_av():
    try:
        import av
    except ImportError:
        raise RuntimeError("video needs PyAV: pip install av") from None
    return av


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
    **overrides,
) -> dict:
    """Upscale the first video stream of `src` into `dst`; returns counts and timings.
    options / overrides: model, device, dtype, backend, tile (srgan_fast.options.RunOptions)."""
    av = _need_av()
    opts = RunOptions.resolve(options, **overrides)

    src, dst = Path(src), Path(dst)
    if not src.exists():
        raise FileNotFoundError(f"{src}: no such file")
    if src.resolve() == dst.resolve():
        raise ValueError("output must differ from input")
    if max_frames is not None and max_frames < 1:
        raise ValueError(f"--frames must be positive, got {max_frames}")
    engine = opts.engine()
    s = engine.scale
    try:
        inp = av.open(str(src))
    except av.error.FFmpegError as e:
        raise ValueError(f"{src}: not a video PyAV can read ({e})") from None
    if not inp.streams.video:
        inp.close()
        raise ValueError(f"{src}: has no video stream")
    vin = inp.streams.video[0]
    vin.thread_type = "AUTO"
    dst.parent.mkdir(parents=True, exist_ok=True)
    out = av.open(str(dst), mode="w")
    w, h = vin.codec_context.width * s, vin.codec_context.height * s
    rate = vin.average_rate or vin.guessed_rate or 25
    vout = out.add_stream(codec, rate=rate)
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
    if bitrate:
        vout.bit_rate = int(bitrate)
    elif "264" in codec or "265" in codec:
        vout.options = {"crf": str(crf)}
    copied = {}
    for st in list(inp.streams.audio) + list(inp.streams.subtitles):
        try:
            copied[st.index] = out.add_stream_from_template(st)
        except (ValueError, av.error.FFmpegError) as e:
            print(f"video: stream #{st.index} ({st.type}) not copied: {e}", file=sys.stderr)
    mux_lock = threading.Lock()
    start_pts = int(start / vin.time_base) if start else None
    if start:
        inp.seek(start_pts, stream=vin)
    counts = {"frames_in": 0, "frames_out": 0, "packets_copied": 0}
    first_pts: list = []

    def frames():
        """Demux in one pass: video frames are yielded, other packets are muxed right away."""
        streams = [vin] + [inp.streams[i] for i in copied]
        for packet in inp.demux(streams):
            if packet.stream.index in copied:
                if packet.dts is None:
                    continue
                packet.stream = copied[packet.stream.index]
                with mux_lock:
                    out.mux(packet)
                counts["packets_copied"] += 1
                continue
            for frame in packet.decode():
                if start_pts is not None and frame.pts is not None and frame.pts < start_pts:
                    continue
                if max_frames is not None and counts["frames_in"] >= max_frames:
                    return
                counts["frames_in"] += 1
                first_pts.append(frame.pts)
                yield frame.to_ndarray(format="rgb24")

    total = vin.frames or None
    if max_frames:
        total = min(total or max_frames, max_frames)
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=total, desc=f"upscale x{s} {src.name}", unit="frame", file=sys.stderr)
    t0 = time.perf_counter()
    try:
        for i, rgb in enumerate(engine.stream(frames(), batch=batch)):
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
    finally:  # Ctrl-C or an error still leaves a playable file
        try:
            for packet in vout.encode():
                with mux_lock:
                    out.mux(packet)
        finally:
            out.close()
            inp.close()
            if bar is not None:
                bar.close()
    dt = time.perf_counter() - t0
    return {
        **counts,
        "seconds": dt,
        "fps": counts["frames_out"] / dt if dt else 0.0,
        "output": str(dst),
        "size": f"{w}x{h}",
        "colorspace": "BT.709" if hd else "BT.601",
    }
