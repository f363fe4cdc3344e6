"""Training data: folders of HR photos -> aligned (LR, HR) crops with flips and rotations.

LR images are made once per photo with the metrics module's MATLAB-compatible bicubic (the
same degradation as the test sets' LR_x4), then aligned crops are cut from both. Each sample
is a pure function of (seed, sample index), so a run resumed at step k sees exactly the
batches an uninterrupted run would, whatever the number of workers or processes.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from srgan_fast.images import list_images, load_image
from srgan_fast.metrics import imresize, modcrop

__all__ = ["PairedCrops", "load_photos"]


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


class PairedCrops(Dataset):
    """Index i -> (LR crop, HR crop) as float tensors: LR in [0, 1], HR in [-1, 1], CHW."""

    def __init__(self, pairs, crop: int, scale: int, seed: int, length: int):
        if crop % scale:
            raise ValueError(f"crop {crop} must be a multiple of the scale {scale}")
        self.pairs = pairs
        self.crop = crop
        self.scale = scale
        self.seed = seed
        self.length = length

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, i: int):
        rng = np.random.default_rng([self.seed, int(i)])
        lr, hr = self.pairs[int(rng.integers(len(self.pairs)))]
        lc = self.crop // self.scale
        y = int(rng.integers(lr.shape[0] - lc + 1))
        x = int(rng.integers(lr.shape[1] - lc + 1))
        s = self.scale
        lr = lr[y : y + lc, x : x + lc]
        hr = hr[y * s : (y + lc) * s, x * s : (x + lc) * s]
        if rng.random() < 0.5:  # horizontal flip
            lr, hr = lr[:, ::-1], hr[:, ::-1]
        if rng.random() < 0.5:  # vertical flip
            lr, hr = lr[::-1], hr[::-1]
        if rng.random() < 0.5:  # 90-degree rotation (transpose)
            lr, hr = lr.transpose(1, 0, 2), hr.transpose(1, 0, 2)
        lr_t = torch.from_numpy(np.ascontiguousarray(lr)).permute(2, 0, 1).float() / 255.0
        hr_t = torch.from_numpy(np.ascontiguousarray(hr)).permute(2, 0, 1).float() / 127.5 - 1.0
        return lr_t, hr_t


class OffsetSampler(torch.utils.data.Sampler):
    """Sample indices [start, stop) with a stride: rank r of w sees its own share of each step."""

    def __init__(self, start: int, stop: int, batch: int, rank: int = 0, world: int = 1):
        self.start, self.stop, self.batch, self.rank, self.world = start, stop, batch, rank, world

    def __iter__(self):
        for step in range(self.start, self.stop):
            base = (step * self.world + self.rank) * self.batch
            yield from range(base, base + self.batch)

    def __len__(self) -> int:
        return (self.stop - self.start) * self.batch
