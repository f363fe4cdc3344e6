"""`make demo` / `srgan-fast demo`: downscale the bundled photo 4x, upscale it back, score it."""

from __future__ import annotations

import time
from pathlib import Path

from ..data import sample_path
from ..io.images import load_image, save_image
from ..options import RunOptions
from .metrics import imresize, modcrop, psnr_ssim_y

__all__ = ["demo"]


def demo(out_dir: str = "demo_out", options: RunOptions | None = None, **overrides) -> dict:
    """options / overrides: model, device, dtype, backend. Without `options` the backend defaults
    to "reference" (the plain model); a RunOptions given keeps its own backend."""
    from ..weights import load_generator

    defaults = {"backend": "reference"} if options is None else {}
    opts = RunOptions.resolve(options, **{**defaults, **overrides})
    model, device = opts.model, opts.device
    net = load_generator(model)
    out = Path(out_dir)
    names = ("lr", "bicubic", "sr", "hr")
    from ..io.paths import check_outputs

    # before any work, as every writer: the folder made (only the last one) and probed; each image
    # then replaces its old self only when complete, and a folder removed meanwhile is an error
    check_outputs([], [out / f"{name}.png" for name in names])
    s = net.config.scale
    hr = modcrop(load_image(sample_path()), s)
    lr = imresize(hr, scale=1.0 / s)
    t0 = time.perf_counter()
    sr = opts.engine(net).upscale(lr)
    dt = time.perf_counter() - t0
    bic = imresize(lr, scale=s)
    for name, img in zip(names, (lr, bic, sr, hr)):
        save_image(out / f"{name}.png", img, make_folders=False)
    p_sr, s_sr = psnr_ssim_y(sr, hr, shave=s)
    p_bi, s_bi = psnr_ssim_y(bic, hr, shave=s)
    print(
        f"sample: {sample_path().name} {hr.shape[1]}x{hr.shape[0]}, LR {lr.shape[1]}x{lr.shape[0]} "
        f"(MATLAB bicubic /{s}); model {model}; {dt * 1000:.0f} ms on {device}"
    )
    print(f"  bicubic x{s}: Y-PSNR {p_bi:.2f} dB  SSIM {s_bi:.4f}")
    print(f"  {model}: Y-PSNR {p_sr:.2f} dB  SSIM {s_sr:.4f}  ({p_sr - p_bi:+.2f} dB over bicubic)")
    print(f"  images written to {out}/ (lr, bicubic, sr, hr)")
    return {"psnr_sr": p_sr, "psnr_bicubic": p_bi, "ssim_sr": s_sr, "ssim_bicubic": s_bi}
