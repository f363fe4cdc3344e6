"""The same crop from bicubic, our MSE and GAN models, the authors' SRGAN and the HR photo, side by side.

    python benchmarks/texture_figure.py [--set Set14 --image baboon --box X Y SIZE] [-o docs/srgan_x4_crops.png]

Each panel is labelled with its method and the texture ratio of the whole image (`srgan-fast
eval`'s measure: mean Y gradient magnitude over the HR photo's; 1.0 = as much fine detail).
The models run through the engine's plain reference backend on the MATLAB LR_x4 input, fp32.
Panels are upscaled x2 by pixel repetition so the texture is visible at README size.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from srgan_fast.io.images import load_image  # noqa: E402
from srgan_fast.quality.datasets import find_dataset  # noqa: E402
from srgan_fast.quality.metrics import imresize, modcrop, texture_ratio  # noqa: E402


def panels(dataset: str, image: str, models: list[str]) -> list[tuple[str, np.ndarray, float]]:
    from srgan_fast.options import RunOptions
    from srgan_fast.weights import load_generator

    root = find_dataset(dataset)
    hr = modcrop(load_image(root / "HR" / f"{image}.png"), 4)
    lr = load_image(root / "LR_x4" / f"{image}.png")
    out = [("bicubic", imresize(lr, scale=4))]
    for m in models:
        engine = RunOptions.resolve(None, backend="reference", device="cpu").engine(load_generator(m))
        out.append((Path(m).stem if m.endswith(".safetensors") else m, engine.upscale(lr)))
    authors = root / "x4" / "SRGAN-VGG54"
    cand = sorted(authors.glob(f"{image}*")) if authors.is_dir() else []
    if cand:
        out.append(("authors' SRGAN-VGG54", load_image(cand[0])))
    out.append(("HR", hr))
    return [(name, im, texture_ratio(im, hr, shave=4)) for name, im in out]


def figure(items, box: tuple[int, int, int], zoom: int = 2) -> Image.Image:
    x, y, size = box
    label_h = 18
    tiles = []
    for name, im, tex in items:
        crop = im[y : y + size, x : x + size]
        if crop.ndim == 2:
            crop = np.stack([crop] * 3, -1)
        tile = Image.fromarray(crop).resize((size * zoom, size * zoom), Image.NEAREST)
        canvas = Image.new("RGB", (tile.width, tile.height + label_h), "white")
        canvas.paste(tile, (0, label_h))
        ImageDraw.Draw(canvas).text((3, 3), f"{name}  texture {tex:.2f}", fill="black")
        tiles.append(canvas)
    gap = 4
    W = sum(t.width for t in tiles) + gap * (len(tiles) - 1)
    fig = Image.new("RGB", (W, tiles[0].height), "white")
    cx = 0
    for t in tiles:
        fig.paste(t, (cx, 0))
        cx += t.width + gap
    return fig


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--set", default="Set14", help="dataset with HR/, LR_x4/ and x4/SRGAN-VGG54/ (default Set14)")
    p.add_argument("--image", default="baboon", help="image stem (default baboon: fur, the texture GANs restore)")
    p.add_argument("--box", type=int, nargs=3, default=[300, 40, 120], metavar=("X", "Y", "SIZE"),
                   help="HR crop: left, top, side in pixels (default 300 40 120)")  # fmt: skip
    p.add_argument("--models", default="srresnet_x4,srgan_x4", help="comma-separated bundled models or files")
    p.add_argument("-o", "--output", default="docs/srgan_x4_crops.png", help="PNG to write")
    a = p.parse_args(argv)
    items = panels(a.set, a.image, [m for m in a.models.split(",") if m])
    fig = figure(items, tuple(a.box))
    Path(a.output).parent.mkdir(parents=True, exist_ok=True)
    fig.save(a.output, optimize=True)
    for name, _, tex in items:
        print(f"{name}: texture {tex:.3f}")
    print(f"wrote {a.output} ({fig.width}x{fig.height})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
