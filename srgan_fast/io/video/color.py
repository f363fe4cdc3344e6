"""Colour and depth for `srgan-fast video`: which YUV<->RGB conversion a stream needs, the tags
its output carries, and the plane conversions between a decoder's frames and the engine.

Rules (docs/video.md):
* The source's matrix, primaries, transfer and range are kept on the output, and the matrix
  the planes are converted with is the source's: the output decodes to the colours the
  source decodes to. `matrix=` / `full_range=` override mistagged sources (the output is
  then tagged with what was used).
* Untagged sources follow the players' convention: BT.601 below 720 lines, BT.709 from 720
  up; limited range (full range for the yuvj* formats). Untagged primaries/transfer follow
  the matrix's standard. The output is always tagged explicitly, so a 480p source upscaled
  to 1920 lines is not re-read as BT.709 by a player.
* PQ / HLG (HDR10, HLG) pass through: the code values are upscaled as they are, the tags
  are kept; the caller prints that the model was trained on SDR.
* Depth: 8-bit sources run the engine on uint8 RGB; deeper ones (P010, yuv420p10le, ...) on
  float32 RGB in [0, 1], never quantised in between, and are written at their depth.

Planes come out of PyAV frames by DLPack (no copy, CPU or CUDA hw frames alike:
`frame_planes`). 8-bit BT.601/BT.709 planes are converted by the native kernels
(srgan_fast.io.yuv, csrc/; CPU, and CUDA when built with nvcc); everything else (10-16 bit,
BT.2020, SMPTE 240M, FCC) by the torch float code here, on the planes' device. Both use the
same formulas as csrc/frame_io.h: chroma upsampled by repetition, downsampled as the mean
RGB of each 2x2 block.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ...errors import UserError

__all__ = [
    "ColorError",
    "ColorTags",
    "YuvPlanes",
    "resolve_tags",
    "parse_matrix",
    "parse_range",
    "frame_planes",
    "yuv_to_rgb",
    "rgb_to_yuv",
    "write_planes",
]

# FFmpeg's enums (libavutil/pixfmt.h): AVColorSpace -> (Kr, Kb), the luma weights
KR_KB = {1: (0.2126, 0.0722), 4: (0.30, 0.11), 5: (0.299, 0.114), 6: (0.299, 0.114), 7: (0.212, 0.087),
         9: (0.2627, 0.0593)}  # fmt: skip
MATRIX_NAMES = {1: "BT.709", 4: "FCC", 5: "BT.601", 6: "BT.601", 7: "SMPTE 240M", 9: "BT.2020"}
MATRIX_CHOICES = {"bt601": 6, "601": 6, "smpte170m": 6, "bt470bg": 5, "bt709": 1, "709": 1, "bt2020": 9,
                  "2020": 9, "bt2020nc": 9, "smpte240m": 7, "fcc": 4}  # fmt: skip
RANGE_CHOICES = {"limited": False, "tv": False, "mpeg": False, "full": True, "pc": True, "jpeg": True}
# the standard primaries / transfer that go with a matrix, for sources that leave them untagged
STANDARD_PRI_TRC = {1: (1, 1), 4: (4, 4), 5: (5, 6), 6: (6, 6), 7: (7, 7), 9: (9, 14)}
UNSPECIFIED = 2
PQ, HLG = 16, 18  # AVCOL_TRC_SMPTE2084, AVCOL_TRC_ARIB_STD_B67


class ColorError(UserError, ValueError):
    """A colour matrix or pixel format this pipeline cannot convert (the message says what to pass)."""


def parse_matrix(name: str | int | None) -> int | None:
    """--color-matrix value -> AVColorSpace (bt601, bt709, bt2020, smpte240m, fcc; or 601/709/2020)."""
    if name is None or isinstance(name, int):
        return name
    key = str(name).lower().replace("-", "").replace(".", "").replace("_", "")
    if key not in MATRIX_CHOICES:
        raise ColorError(f"--color-matrix {name!r}: use one of bt601, bt709, bt2020, smpte240m, fcc")
    return MATRIX_CHOICES[key]


def parse_range(name: str | bool | None) -> bool | None:
    """--color-range value -> full range? (limited/tv/mpeg or full/pc/jpeg)."""
    if name is None or isinstance(name, bool):
        return name
    key = str(name).lower()
    if key not in RANGE_CHOICES:
        raise ColorError(f"--color-range {name!r}: use limited (tv) or full (pc)")
    return RANGE_CHOICES[key]


@dataclass(frozen=True)
class ColorTags:
    """What the planes mean: AVColorSpace / AVColorPrimaries / AVColorTransferCharacteristic
    codes and the range. `guessed` names what was not tagged in the source."""

    matrix: int
    primaries: int
    transfer: int
    full_range: bool
    guessed: tuple[str, ...] = ()

    @property
    def matrix_name(self) -> str:
        return MATRIX_NAMES[self.matrix]

    @property
    def range_code(self) -> int:  # AVColorRange: 1 MPEG (limited), 2 JPEG (full)
        return 2 if self.full_range else 1

    @property
    def hdr(self) -> str | None:
        return {PQ: "PQ (HDR10)", HLG: "HLG"}.get(self.transfer)

    @property
    def native_matrix(self) -> int | None:
        """601 / 709 when the native (csrc) kernels can convert this matrix, else None."""
        return {1: 709, 5: 601, 6: 601}.get(self.matrix)


def resolve_tags(
    matrix: int | None,
    primaries: int | None,
    transfer: int | None,
    color_range: int | None,
    height: int,
    pix_fmt: str = "",
    *,
    override_matrix: int | str | None = None,
    override_range: bool | str | None = None,
) -> ColorTags:
    """The source's tags (FFmpeg codes, None or 2 = untagged) with the defaults and overrides
    applied; see the module doc. `height`: the source's, for the untagged-matrix convention."""
    guessed = []
    m = parse_matrix(override_matrix)
    if m is None:
        m = int(matrix) if matrix is not None else UNSPECIFIED
        if m in (0, UNSPECIFIED, 3):  # 0 (RGB) on YUV planes is a mistag; 3 is reserved
            m = 6 if height < 720 else 1
            guessed.append("matrix")
        elif m not in KR_KB:
            raise ColorError(
                f"colour matrix {m} (AVColorSpace) is not supported (BT.601, BT.709, BT.2020 NCL, SMPTE 240M, "
                "FCC are); pass --color-matrix to say how the source was encoded"
            )
    full = parse_range(override_range)
    if full is None:
        if color_range in (1, 2):
            full = int(color_range) == 2
        else:
            full = pix_fmt.startswith("yuvj")
            guessed.append("range")
    pri = int(primaries) if primaries is not None else UNSPECIFIED
    trc = int(transfer) if transfer is not None else UNSPECIFIED
    std_pri, std_trc = STANDARD_PRI_TRC[m]
    if pri in (0, UNSPECIFIED, 3):
        pri = std_pri
        guessed.append("primaries")
    if trc in (0, UNSPECIFIED, 3):
        trc = std_trc
        guessed.append("transfer")
    return ColorTags(m, pri, trc, bool(full), tuple(guessed))


@dataclass
class YuvPlanes:
    """4:2:0 planes as torch tensors (views into the frame where possible). layout "i420":
    y (h, w), u, v (ch, cw); "nv12": y (h, w), u = interleaved uv (ch, cw, 2), v None. Samples
    are `bits` deep, stored `shift` bits up (P010 keeps 10 bits in the top of 16)."""

    layout: str
    bits: int
    y: torch.Tensor
    u: torch.Tensor
    v: torch.Tensor | None = None
    shift: int = 0


# decoder formats taken as they are: name -> (layout, bits, shift)
DIRECT = {"yuv420p": ("i420", 8, 0), "yuvj420p": ("i420", 8, 0), "yuv420p9le": ("i420", 9, 0),
          "yuv420p10le": ("i420", 10, 0), "yuv420p12le": ("i420", 12, 0), "yuv420p14le": ("i420", 14, 0),
          "yuv420p16le": ("i420", 16, 0), "nv12": ("nv12", 8, 0), "p010le": ("nv12", 10, 6),
          "p016le": ("nv12", 16, 0)}  # fmt: skip


def source_bits(pix_fmt: str) -> int:
    """Luma depth of a pixel format (8 for anything PyAV cannot describe)."""
    import av

    try:
        return max(c.bits for c in av.VideoFormat(pix_fmt).components)
    except (ValueError, TypeError):
        return 8


def _dl(plane) -> torch.Tensor:
    # the capsule, not torch.from_dlpack(plane): torch asks CUDA producers to sync with its
    # stream, which PyAV refuses ("pass stream=None"); PlaneConverter.to_rgb synchronizes instead
    return torch.utils.dlpack.from_dlpack(plane.__dlpack__())


def frame_planes(frame) -> YuvPlanes:
    """The planes of a decoded 4:2:0 frame (a DIRECT format, or a CUDA hw frame whose sw format
    is nv12 / p010le / p016le) as tensors on the frame's device, without a copy."""
    name = frame.format.name
    if name == "cuda":
        name = frame.sw_format.name if hasattr(frame.sw_format, "name") else str(frame.sw_format)
    if name not in DIRECT:
        raise ColorError(f"pixel format {name} is not a 4:2:0 format this pipeline reads directly")
    layout, bits, shift = DIRECT[name]
    if layout == "i420":
        return YuvPlanes(layout, bits, _dl(frame.planes[0]), _dl(frame.planes[1]), _dl(frame.planes[2]), shift)
    return YuvPlanes(layout, bits, _dl(frame.planes[0]), _dl(frame.planes[1]), None, shift)


def _levels(bits: int, full: bool) -> tuple[float, float, float, float]:
    """(Y offset, Y range, chroma zero, chroma range) in code values at `bits` (BT.2100 / H.273:
    limited levels scale by 2**(bits - 8), full range spans 2**bits - 1)."""
    s = float(2 ** (bits - 8))
    if full:
        top = float(2**bits - 1)
        return 0.0, top, float(2 ** (bits - 1)), top
    return 16.0 * s, 219.0 * s, 128.0 * s, 224.0 * s


def _as_float(t: torch.Tensor, shift: int, bits: int) -> torch.Tensor:
    if t.dtype == torch.uint16:  # torch's uint16 kernels are slow scalar loops: reinterpret as int16
        t = t.view(torch.int16)
        if bits + shift > 15:  # 16-bit codes (P010's top bits included) wrap negative: unwrap
            t = t.to(torch.int32).bitwise_and_(0xFFFF)
    t = t.float()
    return t / float(2**shift) if shift else t


def _yuv_matrix(tags: ColorTags, bits: int, device) -> tuple[torch.Tensor, torch.Tensor]:
    """(M, bias): RGB in [0, 1] = M @ (Y, Cb, Cr) codes + bias."""
    kr, kb = KR_KB[tags.matrix]
    kg = 1.0 - kr - kb
    yoff, yr, c0, cr_ = _levels(bits, tags.full_range)
    m = torch.tensor([[1.0, 0.0, 2.0 * (1.0 - kr)],
                      [1.0, -2.0 * kb * (1.0 - kb) / kg, -2.0 * kr * (1.0 - kr) / kg],
                      [1.0, 2.0 * (1.0 - kb), 0.0]], dtype=torch.float64)  # fmt: skip
    m = m * torch.tensor([1.0 / yr, 1.0 / cr_, 1.0 / cr_], dtype=torch.float64)
    bias = -m @ torch.tensor([yoff, c0, c0], dtype=torch.float64)
    return m.float().to(device), bias.float().to(device)


def yuv_to_rgb(p: YuvPlanes, tags: ColorTags) -> torch.Tensor:
    """4:2:0 planes -> (h, w, 3) float32 RGB in [0, 1] on the planes' device, any depth/matrix.
    Planar work and one (N, 3) x (3, 3) product that writes NHWC: strided per-channel
    elementwise code ran 10x slower on the CPU."""
    h, w = p.y.shape
    if p.layout == "nv12":
        cb, cr = p.u[..., 0], p.u[..., 1]
    else:
        cb, cr = p.u, p.v
    ch, cw = cb.shape
    planes = torch.empty(3, 2 * ch, 2 * cw, device=p.y.device)
    planes[0, :h, :w] = _as_float(p.y, p.shift, p.bits)
    if (2 * ch, 2 * cw) != (h, w):  # odd sizes: the repeated last chroma row/column pads luma too
        planes[0, h:, :] = planes[0, h - 1 : h, :] if 2 * ch > h else planes[0, h:, :]
        planes[0, :, w:] = planes[0, :, w - 1 : w] if 2 * cw > w else planes[0, :, w:]
    for i, c in ((1, cb), (2, cr)):
        planes[i].view(ch, 2, cw, 2).copy_(_as_float(c, p.shift, p.bits)[:, None, :, None].expand(ch, 2, cw, 2))
    m, bias = _yuv_matrix(tags, p.bits, p.y.device)
    rgb = torch.addmm(bias, planes.view(3, -1).T, m.T).view(2 * ch, 2 * cw, 3)
    if (2 * ch, 2 * cw) != (h, w):
        rgb = rgb[:h, :w].contiguous()
    return rgb.clamp_(0.0, 1.0)


def rgb_to_yuv(rgb: torch.Tensor, tags: ColorTags, bits: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(h, w, 3) RGB (uint8, or float in [0, 1]) -> I420 planes (y, u, v) of `bits`-deep codes
    (uint8 for 8 bits, else int16), rounded and clamped, on the input's device. Chroma is
    that of the 2x2 block's mean RGB (equal, being linear, to the mean of the pixels' chroma)."""
    x = rgb.float() / 255.0 if rgb.dtype == torch.uint8 else rgb.float().clamp(0.0, 1.0)
    h, w = x.shape[:2]
    if h % 2 or w % 2:  # odd edges replicate the last row / column, as csrc does
        x = torch.nn.functional.pad(x.permute(2, 0, 1)[None], (0, w % 2, 0, h % 2), mode="replicate")
        x = x[0].permute(1, 2, 0).contiguous()
    kr, kb = KR_KB[tags.matrix]
    kg = 1.0 - kr - kb
    yoff, yr, c0, cr_ = _levels(bits, tags.full_range)
    m = torch.tensor([[kr, kg, kb], [-kr, -kg, 1.0 - kb], [1.0 - kr, -kg, -kb]], dtype=torch.float64)
    m = (m * torch.tensor([[yr], [cr_ / (2.0 * (1.0 - kb))], [cr_ / (2.0 * (1.0 - kr))]], dtype=torch.float64)).float()
    H, W = x.shape[:2]
    # (3, N) planar Y, Cb, Cr codes (no offsets yet) from the NHWC input in one product
    yuv = torch.mm(m.to(x.device), x.view(-1, 3).T).view(3, H, W)
    top = 2**bits - 1
    y = yuv[0, :h, :w].add(yoff + 0.5).floor_().clamp_(0, top)
    c = yuv[1:, 0::2] + yuv[1:, 1::2]  # 2x2 block sums: rows, then columns (a 5-d sum was 3x slower)
    c = (c[..., 0::2] + c[..., 1::2]).mul_(0.25).add_(c0 + 0.5).floor_().clamp_(0, top)
    dt = torch.uint8 if bits <= 8 else torch.int16
    return y.to(dt), c[0].to(dt), c[1].to(dt)


def write_planes(frame, planes) -> None:
    """Copy (y, u, v) tensors (any device) into a writable software I420 av.VideoFrame."""
    for i, src in enumerate(planes):
        dst = _dl(frame.planes[i])
        if src.dtype != dst.dtype:
            src = src.to(dst.dtype)
        dst.copy_(src)


WORK_FORMATS = {8: "yuv420p", 10: "yuv420p10le", 12: "yuv420p12le", 16: "yuv420p16le"}


def work_bits(bits: int) -> int:
    """The I420 depth planes of `bits` are handled at (8, 10, 12 or 16)."""
    return next(b for b in (8, 10, 12, 16) if bits <= b) if bits <= 16 else 16


def _native(device: torch.device):
    """srgan_fast._C when its kernels can run on `device`, else None (torch converts)."""
    try:
        from .. import yuv

        C = yuv.native()
    except ImportError:
        return None
    if device.type == "cuda" and not C.has_cuda():
        return None
    return C if device.type in ("cpu", "cuda") else None


class PlaneConverter:
    """One stream's conversions: a decoded av.VideoFrame -> the engine's input (an (h, w, 3)
    tensor on `device`: uint8 when `float_path` is False, else float32 in [0, 1]), and the
    engine's output -> a tagged I420 av.VideoFrame of `out_bits` (then reformatted by the
    caller when another pix_fmt was asked for). `native` (default: when available) sends
    8-bit BT.601/709 planes through csrc/; `self.path` says which ran last."""

    def __init__(self, tags: ColorTags, device="cpu", float_path: bool = False, out_bits: int = 8, native=None):
        self.tags, self.device, self.float_path = tags, torch.device(device), float_path
        self.out_bits = work_bits(out_bits)
        self.out_format = WORK_FORMATS[self.out_bits]
        self.C = _native(self.device) if native is None or native else None
        if tags.native_matrix is None:
            self.C = None
        self.path = ""
        self.hw_frames = 0  # frames that arrived as CUDA hw frames (decoded on the GPU)

    def to_rgb(self, frame) -> torch.Tensor:
        if frame.format.name != "cuda":
            return self._to_rgb(frame)
        self.hw_frames += 1
        # A CUDA hw frame: PyAV exports it without a stream handshake, so wait for the decoder
        # before reading it, and for our kernels before the decoder may reuse the surface.
        # (Written for NVDEC; unverified without a card.)
        if torch.cuda.is_available():
            torch.cuda.synchronize(self.device)
        rgb = self._to_rgb(frame)
        if rgb.is_cuda:
            torch.cuda.current_stream(rgb.device).synchronize()
        return rgb

    def _to_rgb(self, frame) -> torch.Tensor:
        name = frame.format.name
        if name != "cuda" and name not in DIRECT:
            if frame.format.is_rgb or name.startswith(("pal", "bgr", "rgb", "gbr")):
                # an RGB source: straight to the engine, the matrix only matters on the way out
                deep = max(c.bits for c in frame.format.components) > 8
                a = frame.to_ndarray(format="rgb48le" if deep else "rgb24")
                t = torch.from_numpy(a).to(self.device)
                self.path = "rgb"
                return t.float() / 65535.0 if deep else (t.float() / 255.0 if self.float_path else t)
            # other YUV layouts (4:2:2, 4:4:4, gray, ...): swscale to 4:2:0 of the same depth
            # (YUV -> YUV: no matrix involved)
            frame = frame.reformat(format=WORK_FORMATS[work_bits(source_bits(name))])
        p = frame_planes(frame)
        if p.y.device != self.device:  # software frames for a CUDA engine: planes up, not RGB
            p = YuvPlanes(p.layout, p.bits, p.y.to(self.device), p.u.to(self.device),
                          None if p.v is None else p.v.to(self.device), p.shift)  # fmt: skip
        if self.C is not None and p.bits == 8 and not self.float_path:
            from .. import yuv

            self.path = "native"  # nv12's (ch, cw, 2) uv view is taken as it is
            return yuv.yuv420_to_rgb(p.y, p.u, p.v, fmt=p.layout, matrix=self.tags.native_matrix,
                                          full_range=self.tags.full_range, out_dtype="u8")  # fmt: skip
        self.path = "torch"  # float32 for the engine whatever the depth: nothing quantised before it
        return yuv_to_rgb(p, self.tags)

    def to_planes(self, rgb: torch.Tensor):
        """Engine output (h, w, 3) -> (y, u, v) of out_bits on the output's device."""
        if self.C is not None and self.out_bits == 8:
            from .. import yuv

            return yuv.rgb_to_yuv420(rgb.contiguous(), fmt="i420", matrix=self.tags.native_matrix,
                                          full_range=self.tags.full_range)  # fmt: skip
        return rgb_to_yuv(rgb, self.tags, self.out_bits)

    def to_frame(self, rgb: torch.Tensor):
        import av

        h, w = rgb.shape[:2]
        frame = av.VideoFrame(w, h, self.out_format)
        write_planes(frame, self.to_planes(rgb))
        t = self.tags
        frame.colorspace, frame.color_primaries, frame.color_trc = t.matrix, t.primaries, t.transfer
        frame.color_range = t.range_code
        return frame
