"""`srgan-fast eval`: score a method on a folder of HR images the way SR papers do."""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

import numpy as np
import torch

from ..io.images import IMAGE_SUFFIXES, ImageError, list_images, load_image
from ..options import RunOptions
from .metrics import imresize, modcrop, psnr_ssim_y, texture_ratio

__all__ = ["evaluate", "format_table"]


def _hr_folder(data: Path) -> Path:
    if (data / "HR").is_dir():
        return data / "HR"
    if data.is_dir():
        return data
    raise FileNotFoundError(f"{data}: no such dataset folder")


def _find_output(folder: Path, stem: str) -> Path:
    for suf in IMAGE_SUFFIXES:
        p = folder / f"{stem}{suf}"
        if p.exists():
            return p
    raise FileNotFoundError(f"{folder}: no output image named {stem}.*")


def evaluate(
    data: str | os.PathLike,
    method="bicubic",
    scale: int | None = None,
    options: RunOptions | None = None,
    *,
    json_path: str | os.PathLike | None = None,
    progress: bool = True,
    **overrides,
) -> dict:
    """Y-PSNR/SSIM and texture of `method` on every HR image in `data` (a folder, or one with
    HR/ inside).

    texture: `metrics.texture_ratio`, the SR image's mean Y gradient magnitude over the HR
    image's (1.0 = as much fine detail as the photo; MSE-trained models sit well below it).

    method: "bicubic" (MATLAB imresize of the LR image), a folder of SR outputs named like
    the HR files, a model (bundled name or .safetensors path) or a Generator instance.
    LR inputs: `data/LR_x{scale}` when it exists (e.g. the MATLAB-made Set5 LR_x4), else made
    here from the mod-cropped HR image with the same MATLAB-compatible imresize.
    options / overrides: device, dtype, backend, tile. Without `options` the backend defaults
        to "reference" (the plain model, the yardstick); a RunOptions given keeps its own backend.
    """
    defaults = {"backend": "reference"} if options is None else {}
    opts = RunOptions.resolve(options, **{**defaults, **overrides})
    data = Path(data)
    hr_dir = _hr_folder(data)
    model = None
    kind = "bicubic"
    if isinstance(method, torch.nn.Module):
        kind, model, method = "model", method, "model"
        scale = model.config.scale
    elif method != "bicubic":
        if Path(method).is_dir():
            kind = "folder"
        else:
            from ..weights import load_generator

            kind = "model"
            model = load_generator(method)
            if scale is not None and scale != model.config.scale:
                raise ValueError(f"--scale {scale} but model {method} is x{model.config.scale}")
            scale = model.config.scale
    scale = 4 if scale is None else scale
    if scale not in (2, 3, 4, 8):
        raise ValueError(f"--scale must be 2, 3, 4 or 8, got {scale}")
    lr_dir = data / f"LR_x{scale}"
    files = list_images(hr_dir)
    if not files:
        raise ImageError(f"{hr_dir}: no images")
    if json_path:
        from ..io.paths import check_outputs

        # before any work, as every writer: never over an input, a device node or a FIFO; only the
        # last folder of the path is made, where its parent exists
        check_outputs(files, [Path(json_path)])
    engine = opts.engine(model) if kind == "model" else None
    rows = []
    t0 = time.perf_counter()
    iterator = files
    if progress:
        from tqdm import tqdm

        iterator = tqdm(files, desc=f"eval {method}", unit="img", file=sys.stderr, leave=False)
    for f in iterator:
        hr = modcrop(load_image(f), scale)
        if kind == "folder":
            sr = load_image(_find_output(Path(method), f.stem))
        else:
            lr_path = lr_dir / f.name
            lr = load_image(lr_path) if lr_path.exists() else imresize(hr, scale=1.0 / scale)
            if kind == "bicubic":
                sr = imresize(lr, scale=scale)
            else:
                sr = engine.upscale(lr)
        p, s = psnr_ssim_y(sr, hr, shave=scale)
        rows.append({"image": f.stem, "psnr": p, "ssim": s, "texture": texture_ratio(sr, hr, shave=scale)})
    result = {
        "data": str(data),
        "method": method,
        "scale": scale,
        "metric": "Y-channel (BT.601) PSNR/SSIM, shave=scale, uint8; texture = mean Y gradient "
        "magnitude (forward differences) of SR over HR's, same crop",
        "images": rows,
        "mean_psnr": float(np.mean([r["psnr"] for r in rows])),
        "mean_ssim": float(np.mean([r["ssim"] for r in rows])),
        "mean_texture": float(np.mean([r["texture"] for r in rows])),
        "seconds": time.perf_counter() - t0,
    }
    if json_path:
        from ..io.paths import atomic_output

        # the previous file stays until the new one is complete (a full disk, Ctrl-C, the folder removed)
        with atomic_output(json_path) as tmp:
            tmp.write_text(json.dumps(result, indent=2) + "\n")
    return result


def format_table(result: dict) -> str:
    """The per-image table SR papers print, with the mean last."""
    name = Path(result["data"]).name
    lines = [
        f"{name} x{result['scale']}  method: {result['method']}",
        "| image | PSNR (dB) | SSIM | texture |",
        "| --- | ---: | ---: | ---: |",
    ]
    for r in result["images"]:
        lines.append(f"| {r['image']} | {r['psnr']:.2f} | {r['ssim']:.4f} | {r['texture']:.3f} |")
    lines.append(
        f"| **mean** | **{result['mean_psnr']:.2f}** | **{result['mean_ssim']:.4f}** "
        f"| **{result['mean_texture']:.3f}** |"
    )
    return "\n".join(lines)
