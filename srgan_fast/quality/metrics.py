"""Quality metrics exactly as the SR literature computes them, and MATLAB's bicubic imresize.

Conventions (the ones behind the numbers in SRGAN, EDSR, RCAN ... tables):
  * images are uint8 RGB (the SR output is rounded to uint8 before scoring);
  * PSNR and SSIM on the Y channel of ITU-R BT.601 YCbCr, as MATLAB's rgb2ycbcr:
    Y = 16 + (65.481 R + 128.553 G + 24.966 B) with R, G, B in [0, 1], kept in double
    (not re-rounded), on the 0..255 scale;
  * `shave` (= the scale factor) pixels cropped from every border before scoring;
  * SSIM as Wang et al.'s ssim.m: 11x11 Gaussian window, sigma 1.5, K1 = 0.01, K2 = 0.03,
    L = 255, 'valid' filtering, mean of the SSIM map;
  * LR images made by MATLAB's imresize(..., 'bicubic'): cubic kernel with a = -0.5,
    antialiased (kernel stretched by 1/scale) when shrinking, uint8 rounding after each
    1-D pass, border pixels replicated (bit-exact against Set5/Set14 LR_x4).
"""

from __future__ import annotations

import math

import numpy as np

__all__ = [
    "rgb_to_y",
    "psnr",
    "ssim",
    "psnr_ssim_y",
    "gradient_magnitude",
    "texture_ratio",
    "imresize",
    "modcrop",
]


def _as_float_255(img: np.ndarray) -> np.ndarray:
    if img.dtype == np.uint8:
        return img.astype(np.float64)
    raise TypeError(f"expected a uint8 image, got {img.dtype}; round your output to uint8 first")


def rgb_to_y(img: np.ndarray) -> np.ndarray:
    """BT.601 luma (MATLAB rgb2ycbcr) of a uint8 HxWx3 RGB image, as float64 in [16, 235].

    A 2-D (grayscale) image is taken to be its own luma: it is returned as float64 unchanged,
    which is what scoring a grayscale image in these tables has always meant.
    """
    x = _as_float_255(img)
    if x.ndim == 2:
        return x
    if x.ndim != 3 or x.shape[2] != 3:
        raise ValueError(f"expected HxWx3 RGB or HxW gray, got shape {img.shape}")
    return 16.0 + (65.481 * x[..., 0] + 128.553 * x[..., 1] + 24.966 * x[..., 2]) / 255.0


def _shave(a: np.ndarray, shave: int) -> np.ndarray:
    if shave <= 0:
        return a
    if a.shape[0] <= 2 * shave or a.shape[1] <= 2 * shave:
        raise ValueError(f"image {a.shape[:2]} too small to shave {shave} pixels per border")
    return a[shave:-shave, shave:-shave]


def psnr(a: np.ndarray, b: np.ndarray, peak: float = 255.0) -> float:
    """PSNR in dB between two float arrays of the same shape (inf when equal)."""
    if a.shape != b.shape:
        raise ValueError(f"shape mismatch: {a.shape} vs {b.shape}")
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    if mse == 0:
        return math.inf
    return 10.0 * math.log10(peak * peak / mse)


def _gaussian_window(size: int = 11, sigma: float = 1.5) -> np.ndarray:
    ax = np.arange(size, dtype=np.float64) - (size - 1) / 2.0
    g = np.exp(-(ax**2) / (2.0 * sigma**2))
    w = np.outer(g, g)
    return w / w.sum()


def _filter_valid(x: np.ndarray, w: np.ndarray) -> np.ndarray:
    """2-D correlation, 'valid' region only (MATLAB filter2(w, x, 'valid'))."""
    k = w.shape[0]
    h, wd = x.shape
    win = np.lib.stride_tricks.sliding_window_view(x, (k, k))  # (h-k+1, w-k+1, k, k)
    assert win.shape[:2] == (h - k + 1, wd - k + 1)
    return np.einsum("ijkl,kl->ij", win, w, optimize=True)


def ssim(a: np.ndarray, b: np.ndarray, peak: float = 255.0) -> float:
    """SSIM of Wang et al. (2004) between two 2-D float arrays, Gaussian 11x11 window."""
    if a.shape != b.shape or a.ndim != 2:
        raise ValueError(f"ssim needs two 2-D arrays of one shape, got {a.shape} and {b.shape}")
    if min(a.shape) < 11:
        raise ValueError(f"ssim needs images of at least 11x11, got {a.shape}")
    a = a.astype(np.float64)
    b = b.astype(np.float64)
    c1 = (0.01 * peak) ** 2
    c2 = (0.03 * peak) ** 2
    w = _gaussian_window()
    mu_a = _filter_valid(a, w)
    mu_b = _filter_valid(b, w)
    s_aa = _filter_valid(a * a, w) - mu_a**2
    s_bb = _filter_valid(b * b, w) - mu_b**2
    s_ab = _filter_valid(a * b, w) - mu_a * mu_b
    num = (2 * mu_a * mu_b + c1) * (2 * s_ab + c2)
    den = (mu_a**2 + mu_b**2 + c1) * (s_aa + s_bb + c2)
    return float(np.mean(num / den))


def modcrop(img: np.ndarray, scale: int) -> np.ndarray:
    """Crop height and width down to multiples of `scale` (as the benchmark scripts do)."""
    h, w = img.shape[:2]
    return img[: h - h % scale, : w - w % scale]


def _match_hr(sr: np.ndarray, hr: np.ndarray, shave: int) -> tuple[np.ndarray, np.ndarray]:
    if sr.shape[:2] != hr.shape[:2]:
        dh, dw = hr.shape[0] - sr.shape[0], hr.shape[1] - sr.shape[1]
        if 0 <= dh < max(shave, 1) and 0 <= dw < max(shave, 1):
            hr = hr[: sr.shape[0], : sr.shape[1]]
        else:
            raise ValueError(f"SR image {sr.shape[:2]} does not match HR image {hr.shape[:2]}")
    return sr, hr


def psnr_ssim_y(sr: np.ndarray, hr: np.ndarray, shave: int) -> tuple[float, float]:
    """Y-channel PSNR and SSIM of a uint8 SR image against its uint8 HR image.

    The HR image is cropped to the SR image's size when it is larger by less than one scale
    step (HR sizes that are not multiples of the scale); any other mismatch is an error.
    """
    sr, hr = _match_hr(sr, hr, shave)
    ys = _shave(rgb_to_y(sr), shave)
    yh = _shave(rgb_to_y(hr), shave)
    return psnr(ys, yh), ssim(ys, yh)


def gradient_magnitude(y: np.ndarray) -> float:
    """Mean gradient magnitude of a 2-D image: forward differences, sqrt(dx^2 + dy^2).

    Over the (H-1)x(W-1) pixels where both differences exist. A plain, parameter-free
    measure of how much fine detail (edges and texture) an image carries.
    """
    y = np.asarray(y, dtype=np.float64)
    if y.ndim != 2 or y.shape[0] < 2 or y.shape[1] < 2:
        raise ValueError(f"expected a 2-D image of at least 2x2, got shape {y.shape}")
    gx = y[:-1, 1:] - y[:-1, :-1]
    gy = y[1:, :-1] - y[:-1, :-1]
    return float(np.mean(np.sqrt(gx * gx + gy * gy)))


def texture_ratio(sr: np.ndarray, hr: np.ndarray, shave: int) -> float:
    """How much of the HR image's fine detail the SR image carries: the mean Y gradient
    magnitude of `sr` over that of `hr` (uint8 images, `shave` pixels off each border,
    the same Y and crop as `psnr_ssim_y`).

    1.0 = as much gradient as the real photo; a blurry MSE result sits well below (on Set5
    bicubic 0.54, the authors' SRResNet-MSE 0.68) and a GAN result near 1 (their
    SRGAN-VGG54 0.96). It says nothing about whether the detail is the right detail; read
    it beside PSNR/SSIM, never alone. Above 1 means more gradient than the photo (noise,
    ringing, over-sharpening).
    """
    sr, hr = _match_hr(sr, hr, shave)
    g_hr = gradient_magnitude(_shave(rgb_to_y(hr), shave))
    if g_hr == 0.0:
        raise ValueError("the HR image is flat (no gradient): texture ratio undefined")
    return gradient_magnitude(_shave(rgb_to_y(sr), shave)) / g_hr


# ----------------------------------------------------------------------------------------
# MATLAB imresize (bicubic)


def _cubic(x: np.ndarray) -> np.ndarray:
    """Keys' cubic convolution kernel with a = -0.5 (MATLAB's 'bicubic')."""
    ax = np.abs(x)
    ax2 = ax * ax
    ax3 = ax2 * ax
    return (1.5 * ax3 - 2.5 * ax2 + 1.0) * (ax <= 1) + (-0.5 * ax3 + 2.5 * ax2 - 4.0 * ax + 2.0) * (
        (ax > 1) & (ax <= 2)
    )


def _contributions(in_len: int, out_len: int, scale: float, antialias: bool = True):
    """Weights (out_len, P) and 0-based source indices (out_len, P), as MATLAB's contributions()."""
    kernel_width = 4.0
    if scale < 1 and antialias:
        kernel_width /= scale

        def kern(x):
            return scale * _cubic(scale * x)
    else:
        kern = _cubic
    x = np.arange(1, out_len + 1, dtype=np.float64)
    u = x / scale + 0.5 * (1.0 - 1.0 / scale)  # 1-based input coordinate
    left = np.floor(u - kernel_width / 2.0)
    p = int(math.ceil(kernel_width)) + 2
    idx = left[:, None] + np.arange(p, dtype=np.float64)[None, :]  # 1-based
    weights = kern(u[:, None] - idx)
    weights /= weights.sum(axis=1, keepdims=True)
    # Border: source indices are clamped to [1, in_len] (replicate). With this, the
    # MATLAB-made LR_x4 images of Set5 and Set14 are reproduced bit-exactly; mirroring
    # (symmetric padding) differs from them on 1.2% of pixels, all within 2 px of a border.
    idx0 = (np.clip(idx, 1, in_len) - 1).astype(np.int64)
    # drop columns whose weights are all zero (MATLAB does, it changes nothing numerically)
    keep = np.any(weights != 0, axis=0)
    return weights[:, keep], idx0[:, keep]


def _resize_axis(x: np.ndarray, axis: int, out_len: int, scale: float) -> np.ndarray:
    w, idx = _contributions(x.shape[axis], out_len, scale)
    xm = np.moveaxis(x, axis, 0)  # (L, ...)
    gathered = xm[idx]  # (out, P, ...)
    wshape = w.shape + (1,) * (xm.ndim - 1)
    out = np.sum(gathered * w.reshape(wshape), axis=1)
    return np.moveaxis(out, 0, axis)


def imresize(img: np.ndarray, scale: float | None = None, output_shape: tuple[int, int] | None = None) -> np.ndarray:
    """MATLAB-compatible bicubic imresize of an HxW or HxWxC image.

    uint8 in -> uint8 out, rounded half away from zero and saturated after each of the two
    1-D passes, as MATLAB's imresizemex does for uint8 images. Float in -> float64 out
    (no rounding, no clamping). Pass either `scale` (e.g. 1/4) or `output_shape` (H, W).
    """
    if (scale is None) == (output_shape is None):
        raise ValueError("pass exactly one of scale or output_shape")
    if img.ndim not in (2, 3):
        raise ValueError(f"expected an HxW or HxWxC image, got shape {img.shape}")
    h, w = img.shape[:2]
    if output_shape is None:
        sh = sw = float(scale)
        if sh <= 0:
            raise ValueError(f"scale must be positive, got {scale}")
        out_h, out_w = int(math.ceil(h * sh)), int(math.ceil(w * sw))
    else:
        out_h, out_w = (int(v) for v in output_shape)
        sh, sw = out_h / h, out_w / w
    if out_h < 1 or out_w < 1:
        raise ValueError(f"output size {(out_h, out_w)} is empty")
    is_uint8 = img.dtype == np.uint8
    x = img.astype(np.float64)

    def finish(y):
        if is_uint8:
            return np.clip(np.floor(y + 0.5), 0, 255)
        return y

    # MATLAB resizes along the dimension with the smaller scale factor first (rows on a tie)
    order = [0, 1] if sh <= sw else [1, 0]
    for axis in order:
        x = finish(_resize_axis(x, axis, out_h if axis == 0 else out_w, sh if axis == 0 else sw))
    return x.astype(np.uint8) if is_uint8 else x
