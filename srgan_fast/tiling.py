"""Exact tiling: tiles read with a halo of ceil(receptive radius) LR pixels, centers kept.

A tile's region is its own rectangle grown by the halo and clipped to the frame, so at the
true image border the network sees the same zero padding as on the whole frame, and inside
the frame every kept output pixel sees exactly the inputs it would see untiled. Tiled output
therefore equals untiled output up to float summation order (tested).
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Callable

import torch

__all__ = ["tile_regions", "run_tiled", "tile_size_for_budget"]


def tile_regions(h: int, w: int, tile: int, halo: int):
    """(core y0, y1, x0, x1), (region y0, y1, x0, x1) for every tile of an h x w frame."""
    if tile < 1:
        raise ValueError(f"tile must be at least 1 pixel, got {tile}")
    out = []
    for y0 in range(0, h, tile):
        y1 = min(h, y0 + tile)
        for x0 in range(0, w, tile):
            x1 = min(w, x0 + tile)
            out.append(
                (
                    (y0, y1, x0, x1),
                    (max(0, y0 - halo), min(h, y1 + halo), max(0, x0 - halo), min(w, x1 + halo)),
                )
            )
    return out


def run_tiled(
    fn: Callable[[torch.Tensor], torch.Tensor],
    x: torch.Tensor,
    scale: int,
    tile: int,
    halo: int,
    batch: int = 4,
    out_dtype: torch.dtype | None = None,
) -> torch.Tensor:
    """Apply `fn` (NHWC LR -> NHWC HR, scale x) to `x` tile by tile; tiles of one region shape
    are batched together, up to `batch` tile-images per call."""
    n, h, w, _ = x.shape
    regions = tile_regions(h, w, tile, halo)
    groups: dict[tuple[int, int], list] = defaultdict(list)
    for core, reg in regions:
        groups[(reg[1] - reg[0], reg[3] - reg[2])].append((core, reg))
    out = None
    for items in groups.values():
        jobs = [(i, core, reg) for i in range(n) for core, reg in items]
        for k in range(0, len(jobs), batch):
            chunk = jobs[k : k + batch]
            inp = torch.stack([x[i, r[0] : r[1], r[2] : r[3]] for i, _, r in chunk])
            y = fn(inp)
            if out is None:
                out = torch.empty((n, h * scale, w * scale, y.shape[-1]), dtype=out_dtype or y.dtype, device=y.device)
            for j, (i, c, r) in enumerate(chunk):
                oy, ox = (c[0] - r[0]) * scale, (c[2] - r[2]) * scale
                out[i, c[0] * scale : c[1] * scale, c[2] * scale : c[3] * scale] = y[
                    j, oy : oy + (c[1] - c[0]) * scale, ox : ox + (c[3] - c[2]) * scale
                ]
    return out


def tile_size_for_budget(budget_bytes: int, bytes_per_lr_pixel: int, halo: int, batch: int = 1) -> int:
    """Largest square LR tile whose region (tile + 2 halo)^2 fits the budget."""
    side = math.isqrt(max(1, budget_bytes // max(1, bytes_per_lr_pixel * batch)))
    return max(8, side - 2 * halo)
