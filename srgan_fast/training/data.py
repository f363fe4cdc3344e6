"""Training data kept on the training device: (LR, HR) uint8 photos -> aligned random crops.

LR images are made once per photo with the metrics module's MATLAB-compatible bicubic (the
same degradation as the test sets' LR_x4). All photos then live in two flat uint8 tensors on
the device (LR and HR, HWC, concatenated), and a batch is one gather: the crop position,
flips and transpose of every sample turn into an index map by integer arithmetic on the
device, so the hot path has no per-sample Python, numpy or worker process.

Randomness is a counter-based hash (`hash32`) of (seed, global sample index, draw), not a
stateful RNG: the batch of step k on rank r of w is a pure function of (seed, k, r, w) and
the photos, identical on CPU and GPU, so `--resume` at step k sees exactly the batches an
uninterrupted run would, and DDP ranks take disjoint sample indices of every step.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import torch

from srgan_fast.io.images import list_images, load_image
from srgan_fast.quality.metrics import imresize, modcrop

__all__ = ["DeviceCrops", "load_photos", "hash32", "sample_draws", "reference_crop"]

_M32 = 0xFFFFFFFF
# draws per sample: photo, y, x, hflip, vflip, transpose
_PHOTO, _Y, _X, _HFLIP, _VFLIP, _TRANSPOSE = range(6)
_NDRAWS = 6


def load_photos(dirs: list[Path], scale: int, min_hr: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """(LR, HR) uint8 pairs for every photo big enough for an HR crop of `min_hr`."""
    pairs = []
    for d in dirs:
        for p in list_images(d):
            hr = modcrop(load_image(p), scale)
            if min(hr.shape[:2]) < min_hr:
                warnings.warn(
                    f"{p}: {hr.shape[1]}x{hr.shape[0]} is smaller than the {min_hr} crop; skipped",
                    stacklevel=2,
                )
                continue
            pairs.append((imresize(hr, scale=1.0 / scale), hr))
    if not pairs:
        raise FileNotFoundError(f"no training photos of at least {min_hr}px found in {dirs}")
    return pairs


def hash32(x: torch.Tensor) -> torch.Tensor:
    """A 32-bit integer mixing hash (Mueller's) on int64 tensors holding values in [0, 2**32).

    Multipliers are below 2**31, so every product fits an int64 without overflow: the result
    is the same on every device and every torch version.
    """
    x = x & _M32
    x = (((x >> 16) ^ x) * 0x45D9F3B) & _M32
    x = (((x >> 16) ^ x) * 0x45D9F3B) & _M32
    return (x >> 16) ^ x


def sample_draws(seed: int, index: torch.Tensor) -> torch.Tensor:
    """(N, 6) uniform 32-bit draws for global sample indices `index` (int64, any device)."""
    index = index.to(torch.int64)
    k = torch.arange(_NDRAWS, dtype=torch.int64, device=index.device)
    s = hash32(torch.tensor(seed & _M32, dtype=torch.int64, device=index.device) * 8 + k)  # (6,)
    hi = hash32((index >> 32)[:, None] ^ s)
    return hash32((index & _M32)[:, None] ^ hi)


def _below(draw: torch.Tensor, n: torch.Tensor | int) -> torch.Tensor:
    """An integer in [0, n) from a 32-bit draw (multiply-shift; n < 2**31 so no overflow)."""
    return (draw * n) >> 32


class DeviceCrops:
    """All training photos on `device`; `batch(step)` -> (LR in [0, 1], HR in [-1, 1]) NCHW float.

    rank r of `world` takes global sample indices (step * world + r) * batch + [0, batch).
    """

    def __init__(
        self,
        pairs: list[tuple[np.ndarray, np.ndarray]],
        crop: int,
        scale: int,
        seed: int,
        batch: int,
        device: str | torch.device = "cpu",
        rank: int = 0,
        world: int = 1,
        channels_last: bool = True,
    ):
        if crop % scale:
            raise ValueError(f"crop {crop} must be a multiple of the scale {scale}")
        small = [i for i, (_, hr) in enumerate(pairs) if min(hr.shape[:2]) < crop]
        if small:
            raise ValueError(f"photos {small[:5]} are smaller than the {crop} crop")
        self.crop, self.scale, self.seed, self.batch_size = crop, scale, seed, batch
        self.rank, self.world, self.channels_last = rank, world, channels_last
        self.device = torch.device(device)
        self.n = len(pairs)
        dev = self.device

        def pack(imgs):
            # one flat buffer of 4-byte RGBX pixels (int32 words: a gather moves whole words,
            # ~8x faster than 3-byte rows on a CPU) and each photo's pixel offset in it
            sizes = [im.shape[0] * im.shape[1] for im in imgs]
            if sum(sizes) >= 2**31:
                raise ValueError(f"{sum(sizes)} training pixels: more than 2**31 do not fit one buffer")
            offs = np.concatenate([[0], np.cumsum(sizes)[:-1]]).astype(np.int64)
            flat = np.zeros((sum(sizes), 4), np.uint8)
            flat[:, :3] = np.concatenate([np.ascontiguousarray(im).reshape(-1, 3) for im in imgs])
            return (
                torch.from_numpy(flat.view(np.int32).reshape(-1)).to(dev),
                torch.from_numpy(offs).to(dev),
                torch.tensor([im.shape[0] for im in imgs], dtype=torch.int64, device=dev),
                torch.tensor([im.shape[1] for im in imgs], dtype=torch.int64, device=dev),
            )

        self.lr_buf, self.lr_off, self.lr_h, self.lr_w = pack([p[0] for p in pairs])
        self.hr_buf, self.hr_off, self.hr_h, self.hr_w = pack([p[1] for p in pairs])
        self.nbytes = (self.lr_buf.numel() + self.hr_buf.numel()) * 4
        self._ramp = {c: torch.arange(c, dtype=torch.int64, device=dev) for c in (crop // scale, crop)}

    def indices(self, step: int) -> torch.Tensor:
        base = (step * self.world + self.rank) * self.batch_size
        return torch.arange(base, base + self.batch_size, dtype=torch.int64, device=self.device)

    def params(self, step: int) -> dict[str, torch.Tensor]:
        """Per-sample photo, LR crop origin (y, x) and flips/transpose (0/1) of step `step`."""
        d = sample_draws(self.seed, self.indices(step))
        photo = _below(d[:, _PHOTO], self.n)
        lc = self.crop // self.scale
        y = _below(d[:, _Y], self.lr_h[photo] - lc + 1)
        x = _below(d[:, _X], self.lr_w[photo] - lc + 1)
        return {
            "photo": photo,
            "y": y,
            "x": x,
            "hflip": d[:, _HFLIP] >> 31,
            "vflip": d[:, _VFLIP] >> 31,
            "transpose": d[:, _TRANSPOSE] >> 31,
        }

    def _gather(self, buf, off, width, p, y0, x0, c) -> torch.Tensor:
        # Output pixel (u, v) of sample n reads the crop at (u, v), or at (v, u) when transposed,
        # each coordinate mirrored by its flip (flips come before the transpose, as in
        # `reference_crop`). Its flat index splits into a row part and a column part:
        #   idx[n, u, v] = A[n, u] + B[n, v]
        # with A the row term and B the column term, swapped for transposed samples.
        r = self._ramp[c].view(1, c)
        rows = torch.where(p["vflip"].view(-1, 1).bool(), c - 1 - r, r)
        cols = torch.where(p["hflip"].view(-1, 1).bool(), c - 1 - r, r)
        ph = p["photo"]
        row_term = off[ph].view(-1, 1) + (y0.view(-1, 1) + rows) * width[ph].view(-1, 1)
        col_term = x0.view(-1, 1) + cols
        t = p["transpose"].view(-1, 1).bool()
        a, b = torch.where(t, col_term, row_term), torch.where(t, row_term, col_term)
        idx = (a[:, :, None] + b[:, None, :]).to(torch.int32)
        words = buf.index_select(0, idx.view(-1))  # one 4-byte RGBX word per pixel
        return words.view(torch.uint8).view(-1, c, c, 4)[..., :3]  # (N, c, c, 3) uint8

    def batch(self, step: int) -> tuple[torch.Tensor, torch.Tensor]:
        p = self.params(step)
        lc, s = self.crop // self.scale, self.scale
        lr = self._gather(self.lr_buf, self.lr_off, self.lr_w, p, p["y"], p["x"], lc)
        hr = self._gather(self.hr_buf, self.hr_off, self.hr_w, p, p["y"] * s, p["x"] * s, self.crop)
        # NHWC uint8 permuted to NCHW is channels_last: say so, or the cast transposes (3x slower)
        fmt = torch.channels_last if self.channels_last else torch.contiguous_format
        lr = lr.permute(0, 3, 1, 2).to(torch.float32, memory_format=fmt).mul_(1.0 / 255.0)
        hr = hr.permute(0, 3, 1, 2).to(torch.float32, memory_format=fmt).mul_(1.0 / 127.5).sub_(1.0)
        return lr, hr


def reference_crop(pairs, crop: int, scale: int, p: dict, i: int) -> tuple[np.ndarray, np.ndarray]:
    """Sample i of `DeviceCrops.params` cut with numpy slicing (the plain reference for tests)."""
    lr, hr = pairs[int(p["photo"][i])]
    lc, s = crop // scale, scale
    y, x = int(p["y"][i]), int(p["x"][i])
    lr = lr[y : y + lc, x : x + lc]
    hr = hr[y * s : (y + lc) * s, x * s : (x + lc) * s]
    if p["hflip"][i]:
        lr, hr = lr[:, ::-1], hr[:, ::-1]
    if p["vflip"][i]:
        lr, hr = lr[::-1], hr[::-1]
    if p["transpose"][i]:
        lr, hr = lr.transpose(1, 0, 2), hr.transpose(1, 0, 2)
    return np.ascontiguousarray(lr), np.ascontiguousarray(hr)
