"""The input side of `srgan-fast video`: demux and decode in one pass, on Engine.stream's reader
thread. Video frames come out converted for the engine; audio and subtitle packets are muxed
into the output as they come."""

from __future__ import annotations

import threading

from . import VideoError

__all__ = ["Reader"]


def _why(e) -> str:
    return getattr(e, "strerror", None) or str(e)


class Reader:
    """One job's demuxer and decoder. `frames()` is the generator the engine's reader thread
    runs; `first_pts` holds each yielded frame's pts (in order), `bad_at` where frames could
    not be decoded (with skip_bad_frames). `start` seeks the input now."""

    def __init__(self, av, inp, vin, output, conv, job, counts: dict):
        self.av, self.inp, self.vin, self.output, self.conv, self.job, self.counts = (
            av, inp, vin, output, conv, job, counts
        )  # fmt: skip
        # The reader thread holds `busy` while it touches the containers (released around each
        # yield); closing takes it, so the files are never closed under a running decoder.
        self.busy = threading.Lock()
        self.closing = threading.Event()
        self.start_pts = int(job.start / vin.time_base) if job.start else None
        if job.start:
            inp.seek(self.start_pts, stream=vin)
        self.first_pts: list = []
        self.bad_at: list[str] = []
        self.last_good: list = []  # [time of the last frame decoded], for error messages

    def where(self) -> str:
        # a threaded decoder reports an error a few packets late: name the last good frame
        return f"after the frame at {self.last_good[0]:.3f} s" if self.last_good else "before the first frame"

    def frames(self):
        """Demux in one pass: video frames are yielded, other packets are muxed right away."""
        av, inp, vin, out, conv, counts = self.av, self.inp, self.vin, self.output, self.conv, self.counts
        src, max_frames, start_pts = self.job.src, self.job.max_frames, self.start_pts
        busy, closing = self.busy, self.closing
        copied = out.copied
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
                    raise VideoError(f"{src}: unreadable {self.where()} ({_why(e)})") from None
                if packet.stream.index in copied:
                    if packet.dts is None:
                        continue
                    packet.stream = copied[packet.stream.index]
                    out.mux(packet)
                    counts["packets_copied"] += 1
                    continue
                try:
                    decoded = packet.decode()
                except av.error.FFmpegError as e:
                    if not self.job.skip_bad_frames:
                        raise VideoError(
                            f"{src}: cannot decode a video frame {self.where()} ({_why(e)}); "
                            "pass --skip-bad-frames to skip undecodable frames"
                        ) from None
                    counts["frames_skipped"] += 1
                    self.bad_at.append(self.where())
                    continue
                for frame in decoded:
                    if frame.pts is not None:
                        self.last_good[:] = [float(frame.pts * frame.time_base)]
                    if start_pts is not None and frame.pts is not None and frame.pts < start_pts:
                        continue
                    if max_frames is not None and counts["frames_in"] >= max_frames:
                        return
                    counts["frames_in"] += 1
                    self.first_pts.append(frame.pts)
                    rgb = conv.to_rgb(frame)
                    busy.release()
                    try:
                        yield rgb
                    finally:
                        busy.acquire()
                    if closing.is_set():
                        return
