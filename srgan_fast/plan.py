"""Inference plan: the generator as a dataflow of fused ops, BN folded, buffers assigned.

`compile_generator` makes every op of the SRGAN generator one `conv2d_fused` (the op's name
across kernel, reference, test and benchmark): a KxK convolution with stride 1 and zero padding
K//2, followed by an epilogue chosen per op (DESIGN.md in the team's shared docs, "Fused ops";
docs/architecture.md here). Transforms (`fuse_residual_blocks`, or one of yours on
`Plan.dataflow` / `Plan.rewrite`) may turn ops into others, e.g. `resblock_fused`:

  kind          epilogue                                   skip (added in the epilogue)
  head          + bias, PReLU                              -
  block_conv1   + bias (BN folded), PReLU                  -
  block_conv2   + bias (BN folded), + skip                 the block's input
  trunk_end     + bias (BN folded), + skip                 the head's output (long skip)
  upsample      + bias, PixelShuffle(2) in the store, PReLU of the shuffled channel
  tail          + bias, map [-1, 1] -> [0, 1], clamp (and uint8 rounding on request)

Other model families are other compile functions emitting the same op, registered with their
family (srgan_fast.families; this module registers the paper's network as "srresnet"):
the SRVGGNetCompact plan (srgan_fast/compact.py) adds a PixelShuffle(4) store (`shuffle_r`),
the nearest-upsampled network input as the skip (`skip_up`) and a clamp-only output map
(`out_map=OUT_MAP_CLAMP`).

The plan is an explicit dataflow: each op reads buffer `src`, adds buffer `skip` (or none) and
writes buffer `dst`. Buffers are assigned once, here, by liveness (a buffer is reused when
the value it held is dead and the shape per LR pixel matches), so every runner is a plain
loop over `Plan.run` and the memory a call needs is known from the plan alone
(`activation_elems_per_lr_pixel`). `INPUT` is the caller's tensor, `OUTPUT` a fresh tensor
handed back to the caller.

BN is folded once, here, in float64: w' = w * g / sqrt(v + eps), b' = (b - m) * g / sqrt(v + eps) + beta.
Kernels never see BN.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field, fields, replace
from typing import Any

import torch

from .families import family_of

__all__ = [
    "FusedOp",
    "Plan",
    "compile_plan",
    "fuse_residual_blocks",
    "fold_bn",
    "subpixel_tail_weight",
    "prelu_weight",
    "const_slope",
    "PlanBuilder",
    "assign_buffers",
    "value_shapes",
    "place_slice",
    "INPUT",
    "OUTPUT",
    "OUT_MAP_PM1",
    "OUT_MAP_CLAMP",
]

KINDS = ("head", "block_conv1", "block_conv2", "trunk_end", "upsample", "tail")
INPUT = "in"  # buffer name of the network input (the caller's tensor)
OUTPUT = "out"  # buffer name of the network output (a fresh tensor, never reused)
OUT_MAP_PM1 = 1  # out_map: the network's output is in [-1, 1]: (y + 1) / 2, clamp to [0, 1]
OUT_MAP_CLAMP = 2  # out_map: the network's output is in [0, 1] already: clamp only


@dataclass
class FusedOp:
    """One fused op of the dataflow. A convolution's op has `weight`/`bias`; an op that is not a
    convolution (`weight=None`) names its channel count in `channels` and keeps its tensors in
    `params` (e.g. a per-channel scale): it has no reach (radius 0) and no multiply-adds."""

    kind: str  # the op's role in the network (for profiles and messages; runners never branch on it)
    weight: torch.Tensor | None  # (Cout, Cin, K, K), float32, BN folded; None: not a convolution
    bias: torch.Tensor | None  # (Cout,), float32
    prelu: torch.Tensor | None = None  # per output channel (after shuffle when `shuffle`)
    shuffle: bool = False  # PixelShuffle(shuffle_r) in the store
    out_map: bool | int = False  # 0/False none; 1/True (OUT_MAP_PM1): [-1, 1] -> [0, 1], clamp; 2: clamp
    scale_in: int = 1  # resolution of this op's input relative to the LR frame
    src: str = INPUT  # buffer read
    dst: str = OUTPUT  # buffer written
    skip: str | None = None  # buffer added in the epilogue (same shape as the output), or None
    fn: str = "conv2d_fused"  # the fused op (kernels/<fn>.py, reference.<fn>_reference)
    shuffle_r: int = 2  # the pixel-shuffle factor when `shuffle` (2 or 4)
    skip_up: int = 1  # the skip is at output resolution / skip_up, added nearest-upsampled
    skip_mode: str = "nearest"  # how a skip_up > 1 skip is upsampled: "nearest" or "bilinear" (align_corners=False)
    # resblock_fused only: the block's second conv (weight, bias with BN folded); `weight`,
    # `bias`, `prelu` are its first conv, and the skip is the op's own input `src`
    weight2: torch.Tensor | None = None
    bias2: torch.Tensor | None = None
    channels: int | None = None  # an op without a weight: its channels in and out
    params: dict[str, torch.Tensor] = field(default_factory=dict)  # an op's other tensors, by name
    # the first channel this op writes in its dst buffer (a dense block's conv writes its slice of
    # one wide buffer: "Wide buffers" in Plan's docstring); 0 with a wider buffer starts a new value
    dst_off: int = 0

    @property
    def k(self) -> int:
        return int(self.weight.shape[-1]) if self.weight is not None else 1

    @property
    def cin(self) -> int:
        return int(self.weight.shape[1]) if self.weight is not None else int(self.channels)

    @property
    def cout(self) -> int:
        return int(self.weight.shape[0]) if self.weight is not None else int(self.channels)

    @property
    def scale_out(self) -> int:
        return self.scale_in * (self.shuffle_r if self.shuffle else 1)

    @property
    def out_channels(self) -> int:
        """Channels of the tensor this op writes (after the shuffle, when it shuffles)."""
        return self.cout // self.shuffle_r**2 if self.shuffle else self.cout

    @property
    def radius(self) -> int:
        """Pixels (at input resolution) of context on each side: K//2, plus conv2's with weight2."""
        return self.k // 2 + (int(self.weight2.shape[-1]) // 2 if self.weight2 is not None else 0)

    def macs_per_lr_pixel(self) -> int:
        if self.weight is None:
            return 0
        macs = self.cin * self.cout * self.k * self.k
        if self.weight2 is not None:
            macs += self.weight2[0].numel() * self.weight2.shape[0]
        return macs * self.scale_in * self.scale_in


@dataclass
class Plan:
    """The network as fused ops over named buffers (see the module docstring).

    Wide buffers: a dense block (RRDBNet's) concatenates its input and each conv's output along
    channels. Here that costs no copy: the block's values live in one buffer as wide as the
    concatenation; the op that starts it writes channels [0, C) (`dst_off` 0), each later op
    writes its slice at `dst_off`, and every op reads the first `cin` channels of its `src`
    (its skip the first `out_channels` of `skip`), so a conv reading "the concatenation so far"
    reads a prefix of the buffer. Kernels see strided NHWC views (unit channel stride)."""

    config: Any  # the family's config (it has `.scale`): GeneratorConfig, CompactConfig, ...
    ops: list[FusedOp] = field(default_factory=list)
    model_macs: int = 0  # multiply-adds per LR pixel of the network itself (for TFLOP/s)
    # buffer name -> (channels, scale relative to LR), INPUT and OUTPUT included
    buffers: dict[str, tuple[int, int]] = field(default_factory=dict)
    # the module the plan was compiled from (the "reference" backend runs it), if any
    source: Any = field(default=None, repr=False, compare=False)

    @property
    def scale(self) -> int:
        return self.config.scale

    @property
    def receptive_radius(self) -> float:
        """Radius in LR pixels: each KxK op at input resolution s reaches (K//2)/s LR pixels, in
        series; a skip read bilinearly upsampled reaches one pixel of its own resolution, in
        parallel with the convolutions (MSRResNet's input skip: 1 LR pixel)."""
        convs = sum(op.radius / op.scale_in for op in self.ops)
        skips = [op.skip_up / op.scale_out for op in self.ops if op.skip is not None and op.skip_mode == "bilinear"]
        return max([convs, *skips])

    @property
    def halo(self) -> int:
        """LR pixels of context a tile needs on each side for exact results."""
        return math.ceil(self.receptive_radius)

    def macs_per_lr_pixel(self) -> int:
        """Multiply-adds the plan's ops execute (a sub-pixel tail adds zero taps)."""
        return sum(op.macs_per_lr_pixel() for op in self.ops)

    def activation_elems_per_lr_pixel(self) -> int:
        """Elements per LR pixel of every intermediate buffer, all live at once (a runner that
        keeps a pool, as the Triton one does, holds exactly these)."""
        return sum(c * s * s for name, (c, s) in self.buffers.items() if name not in (INPUT, OUTPUT))

    def output_elems_per_lr_pixel(self) -> int:
        c, s = self.buffers[OUTPUT]
        return c * s * s

    def bytes_per_lr_pixel(self, itemsize: int, output_itemsize: int = 4) -> int:
        """Activation bytes per LR pixel of one call: the buffers in `itemsize`, the output fp32."""
        return self.activation_elems_per_lr_pixel() * itemsize + self.output_elems_per_lr_pixel() * output_itemsize

    def run(self, x, step: Callable[[FusedOp, Any, Any], Any], channel_dim: int = 1, place=None):
        """Execute the dataflow: `step(op, src, skip)` computes one op (skip is None when the
        op has none) and returns the tensor for `op.dst`. The one loop every runner uses.

        Wide buffers (see the class docstring): `src` is the first `op.cin` channels of the
        buffer read and `skip` its first `op.out_channels` (views along `channel_dim`: 1 for
        NCHW, 3 for NHWC); an op writing a slice of a wide buffer hands its output to
        `place(op, base, y, channels, channel_dim)`, which puts it at channel `op.dst_off` of
        `base` (the buffer's tensor; None for the op that starts the value) and returns the
        whole buffer (default `place_slice`: allocate, copy; a runner that wrote in place
        returns its buffer)."""
        bufs = {INPUT: x}
        place = place or place_slice
        for op in self.ops:
            src = _prefix(bufs[op.src], op.cin, channel_dim)
            skip = _prefix(bufs[op.skip], op.out_channels, channel_dim) if op.skip is not None else None
            y = step(op, src, skip)
            width = self.buffers[op.dst][0]
            if width != op.out_channels:  # a slice of a wide buffer
                bufs[op.dst] = place(op, bufs[op.dst] if op.dst_off else None, y, width, channel_dim)
            else:
                bufs[op.dst] = y
        return bufs[OUTPUT]

    def to(self, device=None, dtype=None) -> Plan:
        """A copy with every tensor moved/cast (weights in `dtype`; math stays fp32 in kernels):
        every tensor field of each op and every tensor in its `params`, whatever the op."""

        def mv(v):
            if isinstance(v, torch.Tensor):
                return v.to(device=device, dtype=dtype)
            if isinstance(v, dict):
                return {k: mv(t) for k, t in v.items()}
            return v

        ops = [replace(op, **{f.name: mv(getattr(op, f.name)) for f in fields(op)}) for op in self.ops]
        return Plan(self.config, ops, self.model_macs, dict(self.buffers), self.source)

    def dataflow(self) -> list[tuple[FusedOp, str, str | None, str]]:
        """The ops as (op, src value, skip value, dst value) with one value name per op output
        (`v<i>`, INPUT for the input): the plan before buffers were assigned, recovered by
        replaying which value each buffer holds. Transforms rewrite this list, then `rewrite`."""
        holds: dict[str, str] = {INPUT: INPUT}  # buffer -> the value it holds now
        out = []
        for i, op in enumerate(self.ops):
            src = holds[op.src]
            skip = holds[op.skip] if op.skip is not None else None
            if not op.dst_off:  # a new value; a write at dst_off > 0 adds a slice to the one held
                holds[op.dst] = f"v{i}"
            out.append((op, src, skip, holds[op.dst]))
        return out

    def rewrite(self, flow: list[tuple[FusedOp, str, str | None, str]], exact: bool) -> Plan:
        """A new plan from a dataflow list (as `dataflow` returns, ops added, merged or removed;
        value names are free-form, the last op's output is the network's): buffers assigned anew,
        this plan untouched. `exact`: the new plan computes what this one does (a fusion); only
        then does it keep `source`, the plain model the "reference" backend runs: a transform
        that changes the math must not be checked against the model it no longer is."""
        ops = [replace(op, src=src, skip=skip, dst=dst) for op, src, skip, dst in flow]
        buffers = assign_buffers(ops, value_shapes(ops, self.buffers[INPUT]))
        return Plan(self.config, ops, self.model_macs, buffers, self.source if exact else None)

    def describe(self) -> str:
        """One line per op: what it reads, adds and writes (for docs and debugging)."""
        lines = []
        for i, op in enumerate(self.ops):
            skip = f" + {op.skip}" if op.skip else ""
            if op.weight2 is not None:  # resblock_fused: two convs, the skip is the input
                k2 = int(op.weight2.shape[-1])
                lines.append(f"{i:3d} {op.kind:12s} {op.fn} {op.k}x{op.k}+{k2}x{k2} {op.cin}->{op.cout}: "
                             f"{op.src} (+ itself) -> {op.dst}")  # fmt: skip
                continue
            dst = op.dst
            if self.buffers.get(op.dst, (op.out_channels,))[0] != op.out_channels:  # a slice of a wide buffer
                dst = f"{op.dst}[{op.dst_off}:{op.dst_off + op.out_channels}]"
            lines.append(
                f"{i:3d} {op.kind:12s} {op.fn} {op.k}x{op.k} {op.cin}->{op.cout}"
                f"{f' shuffle{op.shuffle_r}' if op.shuffle else ''}: {op.src}{skip}"
                f"{f' ({op.skip_mode} upsampled x{op.skip_up})' if op.skip_up != 1 else ''} -> {dst}"
            )
        return "\n".join(lines)


def _prefix(t, channels: int, dim: int):
    """The first `channels` channels of `t` (a view; `t` itself when it has no more)."""
    return t if t.shape[dim] == channels else t.narrow(dim, 0, channels)


def place_slice(op: FusedOp, base, y, channels: int, dim: int):
    """Put an op's output `y` at channels [op.dst_off, op.dst_off + C) of its wide buffer `base`
    (allocated, `channels` wide, when None: the op starts the value) and return `base`."""
    if base is None:
        shape = list(y.shape)
        shape[dim] = channels
        cl = dim == 1 and y.dim() == 4 and y.is_contiguous(memory_format=torch.channels_last)
        base = torch.empty(shape, dtype=y.dtype, device=y.device,
                           memory_format=torch.channels_last if cl else torch.contiguous_format)  # fmt: skip
    base.narrow(dim, op.dst_off, y.shape[dim]).copy_(y)
    return base


def value_shapes(ops: list[FusedOp], input_shape: tuple[int, int]) -> dict[str, tuple[int, int]]:
    """(channels, scale) of every value the ops write (value names in `dst`, SSA): an op's output,
    or for a wide value (ops writing slices at `dst_off`) the channels its slices span."""
    values: dict[str, tuple[int, int]] = {INPUT: input_shape}
    for op in ops:
        end = op.dst_off + op.out_channels
        if op.dst_off:
            if op.dst not in values:
                raise ValueError(f"{op.kind} writes channels {op.dst_off}.. of {op.dst!r}, which no earlier op started")
            c, s = values[op.dst]
            if s != op.scale_out:
                raise ValueError(f"{op.kind} writes a slice of {op.dst!r} at scale {op.scale_out}, the value is at {s}")
            values[op.dst] = (max(c, end), s)
        else:
            values[op.dst] = (end, op.scale_out)
    for op in ops:  # every read stays inside the value read (a prefix of it)
        for v, c in ((op.src, op.cin), (op.skip, op.out_channels)):
            if v is not None and v in values and values[v][0] < c:
                raise ValueError(f"{op.kind} reads {c} channels of {v!r}, which has {values[v][0]}")
    return values


def assign_buffers(ops: list[FusedOp], values: dict[str, tuple[int, int]]) -> dict[str, tuple[int, int]]:
    """Map the ops' value names (one per op output, SSA) onto reusable buffers, in place.

    A value's buffer is freed after its last reader; an op never writes a buffer it reads
    (a convolution reads its input's neighbours), except the slice of a wide value that it
    does not read (`dst_off`: the value's buffer, kept). The last op writes OUTPUT. Returns the
    buffers' (channels, scale)."""
    last_use: dict[str, int] = {}
    for i, op in enumerate(ops):
        for v in (op.src, op.skip):
            if v is not None:
                last_use[v] = i
        if op.dst_off:  # a slice written into a value keeps its buffer, even after its last reader
            last_use[op.dst] = max(last_use.get(op.dst, i), i)
    buffers: dict[str, tuple[int, int]] = {INPUT: values[INPUT]}
    where = {INPUT: INPUT}  # value -> buffer
    holder: dict[str, str] = {}  # buffer -> value it holds now
    for i, op in enumerate(ops):
        src, skip = where[op.src], (where[op.skip] if op.skip is not None else None)
        shape = values[op.dst]
        if op.dst_off:  # another slice of a wide value: its buffer
            if i == len(ops) - 1:
                raise ValueError("the last op must write the whole output, not a slice of it")
            buf = where[op.dst]
        elif i == len(ops) - 1:
            buf = OUTPUT
        else:
            free = [b for b, v in holder.items() if last_use.get(v, -1) < i and buffers[b] == shape]
            buf = free[0] if free else f"buf{len(buffers) - 1}"
        buffers[buf] = shape
        holder[buf] = op.dst
        where[op.dst] = buf
        op.src, op.skip, op.dst = src, skip, buf
    return buffers


def fold_bn(conv: torch.nn.Conv2d, bn: torch.nn.BatchNorm2d | None) -> tuple[torch.Tensor, torch.Tensor]:
    """Conv weight and bias with an eval-mode BN folded in, computed in float64, returned fp32."""
    w = conv.weight.detach().double()
    b = conv.bias.detach().double() if conv.bias is not None else torch.zeros(w.shape[0], dtype=torch.float64)
    if bn is not None:
        g = bn.weight.detach().double() if bn.weight is not None else torch.ones_like(b)
        beta = bn.bias.detach().double() if bn.bias is not None else torch.zeros_like(b)
        inv = g / torch.sqrt(bn.running_var.detach().double() + bn.eps)
        w = w * inv.view(-1, 1, 1, 1)
        b = (b - bn.running_mean.detach().double()) * inv + beta
    return w.float().contiguous(), b.float().contiguous()


def prelu_weight(act: torch.nn.PReLU, channels: int) -> torch.Tensor:
    """A PReLU's slopes as one per channel (a single learnt slope repeated)."""
    a = act.weight.detach().float()
    return a.expand(channels).contiguous() if a.numel() == 1 else a.contiguous()


def const_slope(slope: float, channels: int) -> torch.Tensor:
    """A fixed activation as the epilogue's PReLU: `slope` per channel (LeakyReLU(slope); ReLU is 0)."""
    return torch.full((channels,), float(slope))


class PlanBuilder:
    """What a family's compile function fills: `emit` appends one fused op and names the value it
    writes (SSA: `v<i>` for the i-th op, or the wide value `dst` whose slice at `dst_off` it
    writes); `build` gives the Plan, its buffers assigned (`value_shapes`, `assign_buffers`)."""

    def __init__(self, config, in_channels: int):
        self.config = config
        self.in_channels = in_channels
        self.ops: list[FusedOp] = []

    def emit(self, kind: str, src: str, weight, bias, skip: str | None = None, dst: str | None = None, **kw) -> str:
        """Append an op reading value `src` (and `skip`); returns the name of the value it writes."""
        op = FusedOp(kind, weight, bias, src=src, skip=skip, dst=dst or f"v{len(self.ops)}", **kw)
        self.ops.append(op)
        return op.dst

    def build(self, source=None, model_macs: int | None = None) -> Plan:
        """The Plan of the ops emitted. model_macs: the network's own multiply-adds per LR pixel
        (default: the ops', where they do the network's work)."""
        if model_macs is None:
            model_macs = sum(op.macs_per_lr_pixel() for op in self.ops)
        buffers = assign_buffers(self.ops, value_shapes(self.ops, (self.in_channels, 1)))
        return Plan(self.config, self.ops, model_macs, buffers, source=source)


def subpixel_tail_weight(w: torch.Tensor) -> torch.Tensor:
    """Rewrite a KxK tail conv that reads a pixel-shuffled map as a conv on the unshuffled map.

    The tail (Cout x C x K x K, at resolution 2s) reads A = PixelShuffle(U), U having 4C
    channels at resolution s. Output pixel (2y+i, 2x+j) sums w[o, c, dy+R, dx+R] *
    A[c, 2y+i+dy, 2x+j+dx] over |dy|, |dx| <= R = K//2. Writing 2y+i+dy = 2Y+a (a = row
    phase in U), that is a conv on U with a KU x KU kernel, KU = 2*ceil(R/2)+1 (5 for K=9),
    and 4*Cout outputs, one per output phase (i, j); its taps are the KxK taps re-indexed
    (zero where none lands).
    Output channel o*4 + i*2 + j is PixelShuffle order, so the store shuffles it back.
    Exact: the same products, summed in another order; zero padding maps to zero padding.
    """
    cout, c, k, _ = w.shape
    r = k // 2
    ru = (r + 1) // 2  # reach at resolution s: rows 2y+i+dy with i in {0,1}, |dy| <= r
    ku = 2 * ru + 1
    wu = torch.zeros(cout * 4, c * 4, ku, ku, dtype=torch.float64)
    wd = w.double()
    for i in range(2):
        for j in range(2):
            for a in range(2):
                for b in range(2):
                    for ky in range(ku):
                        dy = 2 * (ky - ru) + a - i
                        if abs(dy) > r:
                            continue
                        for kx in range(ku):
                            dx = 2 * (kx - ru) + b - j
                            if abs(dx) > r:
                                continue
                            # U channel c*4 + a*2 + b is A channel c at phase (a, b)
                            wu[i * 2 + j :: 4, a * 2 + b :: 4, ky, kx] = wd[:, :, dy + r, dx + r]
    return wu.float().contiguous()


def compile_plan(model, **options) -> Plan:
    """Turn a (trained) model of any registered family into a Plan, with its family's compile
    function and its options (`compile_generator(g, subpixel_tail=True)` for the paper's network)."""
    try:
        family = family_of(model)
    except TypeError:
        raise TypeError(
            f"compile_plan needs a srgan_fast Generator or a registered model family, got {type(model).__name__}"
        ) from None
    return family.compile(model, **options)


def _fusable_pair(a: FusedOp, b: FusedOp, a_src: str, a_dst: str, b_src: str, b_skip: str | None) -> bool:
    """Is (a, b) a residual block that resblock_fused computes: conv-PReLU then conv + a's input?"""
    plain = not (a.shuffle or b.shuffle or a.out_map or b.out_map) and a.skip_up == b.skip_up == 1
    return (
        a.fn == b.fn == "conv2d_fused"
        and plain
        and a.prelu is not None
        and b.prelu is None
        and a.skip is None
        and a.cin == a.cout == b.cin == b.cout
        and a.k == b.k
        and a.k % 2 == 1
        and a.scale_in == b.scale_in
        and b_src == a_dst
        and b_skip == a_src
    )


def fuse_residual_blocks(plan: Plan) -> Plan:
    """The plan with each residual block (block_conv1, block_conv2) as one `resblock_fused` op.

    On the plan's dataflow (`Plan.dataflow`), the pairs whose middle value has no other reader
    are merged and the plan rebuilt (`Plan.rewrite`, exact: the same math, so the reference
    backend still runs the model it came from). The receptive radius, halo, MACs and output are
    those of the plan given; the plan given is not changed."""
    flow = plan.dataflow()
    # (wide values: a pair reading or writing a slice of a wider buffer is left as it is)
    widths = value_shapes([replace(op, src=s, skip=k, dst=d) for op, s, k, d in flow], plan.buffers[INPUT])
    readers: dict[str, int] = {}
    for _, src, skip, _ in flow:
        for v in (src, skip):
            if v is not None:
                readers[v] = readers.get(v, 0) + 1
    out = []
    i = 0
    while i < len(flow):
        a, a_src, a_skip, a_dst = flow[i]
        b, b_src, b_skip, b_dst = flow[i + 1] if i + 1 < len(flow) else (None, None, None, None)
        plain = b is not None and a.dst_off == b.dst_off == 0 and widths[a_src][0] == a.cin == widths[b_dst][0]
        if plain and readers.get(a_dst, 0) == 1 and _fusable_pair(a, b, a_src, a_dst, b_src, b_skip):
            fused = FusedOp("resblock", a.weight, a.bias, prelu=a.prelu, scale_in=a.scale_in, fn="resblock_fused",
                            weight2=b.weight, bias2=b.bias)  # fmt: skip
            out.append((fused, a_src, None, b_dst))
            i += 2
            continue
        out.append(flow[i])
        i += 1
    return plan.rewrite(out, exact=True)
