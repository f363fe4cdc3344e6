"""The output side of `srgan-fast video`: encoder and codec checks, colour tags, encoder
options, the streams copied from the input, and the muxing and closing of the file."""

from __future__ import annotations

import sys
import threading
from dataclasses import dataclass, field
from fractions import Fraction

from . import VideoError

__all__ = ["Output", "choose_format", "open_output", "hdr10_params"]


@dataclass
class Output:
    """The output file being written: its container, its video stream, the streams copied from
    the input (input stream index -> output stream), and how frames reach the encoder."""

    container: object
    stream: object
    copied: dict
    codec: str
    pix_fmt: str
    work_fmt: str  # the planes the converter makes; swscale only for a --pix-fmt other than these
    space: str  # swscale's names for the matrix and range (YUV -> YUV: same matrix)
    rng: str
    width: int
    height: int
    # the reader thread muxes copied packets while the encoder muxes video ones
    mux_lock: threading.Lock = field(default_factory=threading.Lock)
    last_dts: int | None = None  # of the last encoded video packet muxed
    last_pts: int | None = None  # of the last frame handed to the encoder
    retimed: list = field(default_factory=list)  # source times of frames whose pts went backwards

    def mux(self, packet) -> None:
        with self.mux_lock:
            self.container.mux(packet)

    def write(self, frame, pts, time_base) -> None:
        """Encode one upscaled frame (from the converter) with its input frame's timestamp.

        A pts at or before the previous one (a spliced or damaged source: frames out of order)
        is moved to one tick after it, and the frame's source time noted in `retimed`: FFmpeg's
        encoders refuse such a frame (mpeg4 and ffv1 with EINVAL) or the muxer does."""
        if self.pix_fmt != self.work_fmt:
            frame = frame.reformat(format=self.pix_fmt, src_colorspace=self.space, dst_colorspace=self.space,
                                   src_color_range=self.rng, dst_color_range=self.rng)  # fmt: skip
        if pts is not None and self.last_pts is not None and pts <= self.last_pts:
            self.retimed.append(float(pts * time_base))
            pts = self.last_pts + 1
        if pts is not None:
            self.last_pts = pts
        frame.pts = pts
        frame.time_base = time_base
        for packet in self.stream.encode(frame):
            self.mux(self._checked_dts(packet))

    def flush(self) -> None:
        """The frames the encoder still holds."""
        for packet in self.stream.encode():
            self.mux(self._checked_dts(packet))

    def _checked_dts(self, packet):
        """The packet with a decode timestamp the muxer can take. libx265 (through PyAV) can hand
        back an uninitialised dts at the flush of a 1-2 frame clip (seen: -9e13 for pts 0), and the
        mp4 muxer then fails ("Not yet implemented in FFmpeg" / "pts < dts") after the frames were
        encoded. A dts is kept when it is at most the pts, above the previous packet's, and within
        2**30 ticks of the pts; otherwise it is the pts (first packet) or one tick past the
        previous dts."""
        pts, dts = packet.pts, packet.dts
        if pts is not None:
            lo = pts - (1 << 30) if self.last_dts is None else self.last_dts + 1
            if dts is None or not lo <= dts <= pts:
                packet.dts = dts = pts if self.last_dts is None else lo
        if dts is not None:
            self.last_dts = dts
        return packet

    def close(self) -> None:
        self.container.close()


def hdr10_params(mastering: bytes | None, light: bytes | None) -> tuple[str | None, str | None]:
    """(master-display, max-cll) in x265's syntax from a decoded frame's HDR10 side data
    (FFmpeg's AVMasteringDisplayMetadata and AVContentLightMetadata, as bytes), or None each
    where absent or unset. master-display: G(x,y)B(x,y)R(x,y)WP(x,y)L(max,min), chromaticities
    in units of 0.00002 and luminances of 0.0001 cd/m2 (SMPTE ST 2086, as the HEVC SEI holds
    them); max-cll: MaxCLL,MaxFALL in cd/m2."""
    import struct

    md = None
    if mastering is not None and len(mastering) >= 88:
        v = struct.unpack("<20i2i", mastering[:88])
        q = [Fraction(v[i], v[i + 1]) if v[i + 1] else Fraction(0) for i in range(0, 20, 2)]
        has_primaries, has_luminance = v[20], v[21]
        if has_primaries and has_luminance:
            c = [round(x * 50000) for x in q[:8]]  # r, g, b, white point: (x, y) each
            lum_min, lum_max = round(q[8] * 10000), round(q[9] * 10000)
            md = (f"G({c[2]},{c[3]})B({c[4]},{c[5]})R({c[0]},{c[1]})WP({c[6]},{c[7]})"
                  f"L({lum_max},{lum_min})")  # fmt: skip
    cll = None
    if light is not None and len(light) >= 8:
        max_cll, max_fall = struct.unpack("<2I", light[:8])
        cll = f"{max_cll},{max_fall}"
    return md, cll


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
    from .color import WORK_FORMATS, work_bits

    want = [WORK_FORMATS[b] for b in (16, 12, 10, 8) if b <= work_bits(bits)]
    return next((f for f in want if f in formats), "yuv420p" if not formats or "yuv420p" in formats else formats[0])


# WebM holds VP8/VP9/AV1 only: the default libx264 was refused there ("--codec libx264: not an
# encoder this PyAV has", though no --codec was given)
_WEBM_CODECS = ("libvpx-vp9", "libsvtav1", "libaom-av1", "libvpx")


def choose_format(av, codec: str | None, pix_fmt: str | None, bits: int, suffix: str = "") -> tuple[str, str]:
    """(codec, pix_fmt): the ones asked for, else the defaults for a source of `bits` written to
    a file ending in `suffix` (.webm: VP9, else AV1)."""
    if codec is None and suffix.lower() == ".webm":
        codec = next((c for c in _WEBM_CODECS if c in av.codecs_available), None)
    if codec is None:  # HEVC is what 10-bit / HDR players expect; x264's High 10 where x265 is missing
        codec = "libx265" if bits > 8 and "libx265" in av.codecs_available else "libx264"
    if pix_fmt is None:
        pix_fmt = _default_pix_fmt(av, codec, bits)
    return codec, pix_fmt


def open_output(
    av, inp, vin, job, *, tags, codec: str, pix_fmt: str, work_fmt: str, scale: int, display_matrix
) -> Output:
    """Open `job.part` for writing: the video stream (codec checked, size, time base, colour tags,
    rotation, rate control), the encoder opened, the audio and subtitle streams to copy added.
    On any failure the input and the output are closed (the caller removes the partial file)."""
    src, dst = job.src, job.dst
    try:
        out = av.open(str(job.part), mode="w")
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
        if codec in av.codecs_available:  # the encoder is there; the container refuses it
            raise VideoError(f"{dst}: a {dst.suffix or 'file of this kind'} cannot hold {codec} video ({e}); "
                             "choose another --codec, or a .mkv output, which takes the most") from None  # fmt: skip
        raise VideoError(f"--codec {codec}: not an encoder this PyAV has ({e})") from None
    w, h = vin.codec_context.width * scale, vin.codec_context.height * scale
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
    if display_matrix is not None and hasattr(vout, "set_display_matrix"):
        vout.set_display_matrix(display_matrix)  # portrait phone video stays portrait
    if job.bitrate:
        vout.bit_rate = int(job.bitrate)
    elif "264" in codec or "265" in codec:
        vout.options = {"crf": str(job.crf)}
    elif codec == "libvpx-vp9":  # (.webm's default) constant quality as for x264, not libvpx's CRF 32
        vout.options = {"crf": str(job.crf), "b": "0"}
    master_display, max_cll = hdr10_params(*(job.hdr10 or (None, None)))
    if codec == "libsvtav1":  # SVT-AV1 prints a 20-line banner and its configuration otherwise
        import os

        os.environ.setdefault("SVT_LOG", "1")  # errors only (read at each encoder's start)
    if "265" in codec:  # x265 prints its whole configuration otherwise
        params = "log-level=error"
        if master_display or max_cll:  # HDR10 static metadata as SEI, where players read it
            params += ":hdr10=1" + (f":master-display={master_display}" if master_display else "")
            params += f":max-cll={max_cll}" if max_cll else ""
        vout.options = {**vout.options, "x265-params": params}
    elif (master_display or max_cll) and codec == "libsvtav1":
        to_float = {"G": 50000, "B": 50000, "R": 50000, "WP": 50000, "L": 10000}
        svt = []
        if master_display:
            import re

            svt.append("mastering-display=" + "".join(
                f"{k}({float(int(a) / to_float[k]):.5f},{float(int(b) / to_float[k]):.5f})"
                for k, a, b in re.findall(r"([A-Z]+)\((\d+),(\d+)\)", master_display)))  # fmt: skip
        if max_cll:
            svt.append(f"content-light={max_cll}")
        vout.options = {**vout.options, "svtav1-params": ":".join(svt)}
    elif master_display or max_cll:
        print(f"video: {src.name} has HDR10 mastering-display / content-light metadata; {codec} cannot carry it "
              "(libx265 and libsvtav1 do): the output has the HDR tags but not those levels",
              file=sys.stderr)  # fmt: skip
    if tags.hdr:
        print(f"video: {src.name} is {tags.hdr} HDR: upscaled as coded, tags kept; the model was trained on SDR "
              "video, so check highlights on an HDR display", file=sys.stderr)  # fmt: skip
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
    return Output(out, vout, copied, codec, pix_fmt, work_fmt, space, rng, w, h)
