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

__all__ = [
    "tile_regions",
    "run_tiled",
    "choose_tiling",
    "halo_work_factor",
    "MemoryBudgetError",
]

# tiles whose halo adds more than this much work (region area / kept area) get a warning
MAX_HALO_WORK = 2.0


class MemoryBudgetError(ValueError):
    """The memory budget cannot hold even one tile with its halo."""


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
    progress: Callable[[int, int], None] | None = None,
) -> torch.Tensor:
    """Apply `fn` (NHWC LR -> NHWC HR, scale x) to `x` tile by tile; tiles of one region shape
    are batched together, up to `batch` tile-images per call. `progress(done, total)` is
    called after each call with counts of tile-images."""
    n, h, w, _ = x.shape
    regions = tile_regions(h, w, tile, halo)
    groups: dict[tuple[int, int], list] = defaultdict(list)
    for core, reg in regions:
        groups[(reg[1] - reg[0], reg[3] - reg[2])].append((core, reg))
    out = None
    total, done = n * len(regions), 0
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
            done += len(chunk)
            if progress is not None:
                progress(done, total)
    return out


def halo_work_factor(h: int, w: int, tile: int, halo: int) -> float:
    """Work of the tiled frame over the untiled one: the summed area of the tiles' regions
    (tile + halo, clipped to the frame) over the frame's area."""
    area = sum((r[1] - r[0]) * (r[3] - r[2]) for _, r in tile_regions(h, w, tile, halo))
    return area / (h * w)


def choose_tiling(budget_bytes: int, bytes_per_lr_pixel: int, halo: int, batch: int = 4) -> tuple[int, int]:
    """(tile, tiles per call) for a memory budget, with the halo's cost in mind.

    A tile of side t computes (t + 2 halo)^2 pixels to keep t^2, so small tiles cost far more
    than their size (8-pixel tiles with a 40-pixel halo: 121x). Prefer fewer tiles per call
    and larger tiles: the largest batch (<= `batch`) whose tiles keep the halo's extra work
    within MAX_HALO_WORK; failing that, one tile per call as large as the budget allows.
    Raises MemoryBudgetError when not even a 1-pixel tile with its halo fits."""
    for b in range(max(1, batch), 0, -1):
        t = math.isqrt(max(0, budget_bytes // max(1, bytes_per_lr_pixel * b))) - 2 * halo
        if t >= 1 and ((t + 2 * halo) / t) ** 2 <= MAX_HALO_WORK:
            return t, b
    t = math.isqrt(max(0, budget_bytes // max(1, bytes_per_lr_pixel))) - 2 * halo
    if t < 1:
        need = (1 + 2 * halo) ** 2 * bytes_per_lr_pixel
        raise MemoryBudgetError(
            f"a memory budget of {budget_bytes / 2**20:.1f} MiB cannot hold one tile: a 1-pixel tile with its "
            f"{halo}-pixel halo needs {need / 2**20:.1f} MiB; raise the budget (--memory-budget) or give --tile"
        )
    return t, 1
