"""Pack the training and validation photos small enough to travel to a lent GPU machine.

`python -m srgan_fast.training.pack_data .device_data [--data ../shared/datasets]`

The device machine sees only the checkout (64 MiB in all), not ../shared/datasets (78 MB):
T91/HR and BSD200/HR are re-encoded as lossless WebP (pixel-identical, checked on decode;
about 2/3 of the PNG size), Set5 and Set14 keep HR/ and LR_x4/ as they are (their authors'
outputs x4/ stay behind). Files already packed are skipped, so an interrupted run continues.
Name the folder in .gitignore (`/.device_data/` is) and in the device call's `carry`.
"""

from __future__ import annotations

import argparse
import shutil
import sys
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np

TRAIN = ("T91/HR", "BSD200/HR")
VAL = ("Set5/HR", "Set5/LR_x4", "Set14/HR", "Set14/LR_x4")
LIMIT = 58 * 2**20  # leaves room for the checkout itself under the 64 MiB that travel


def _webp(args: tuple[Path, Path]) -> int:
    from PIL import Image

    src, dst = args
    if not dst.exists():
        im = Image.open(src).convert("RGB")
        tmp = dst.with_suffix(".tmp.webp")
        im.save(tmp, "WEBP", lossless=True, quality=100, method=4)
        if not np.array_equal(np.asarray(Image.open(tmp).convert("RGB")), np.asarray(im)):
            raise RuntimeError(f"{src}: lossless WebP did not decode to the same pixels")
        tmp.replace(dst)
    return dst.stat().st_size


def pack(dest: Path, root: Path, workers: int = 2) -> int:
    from srgan_fast.io.images import list_images

    jobs = []
    for sub in TRAIN:
        (dest / sub).mkdir(parents=True, exist_ok=True)
        jobs += [(p, dest / sub / (p.stem + ".webp")) for p in list_images(root / sub)]
    total = 0
    with ProcessPoolExecutor(workers) as ex:
        for n in ex.map(_webp, jobs, chunksize=4):
            total += n
    for sub in VAL:
        if (root / sub).is_dir():
            shutil.copytree(root / sub, dest / sub, dirs_exist_ok=True)
            total += sum(p.stat().st_size for p in (dest / sub).iterdir())
    return total


def main(argv: list[str] | None = None) -> int:
    from srgan_fast.quality.datasets import data_root

    p = argparse.ArgumentParser(prog="python -m srgan_fast.training.pack_data", description=__doc__.splitlines()[0])
    p.add_argument("dest", help="output folder inside the checkout, e.g. .device_data")
    p.add_argument("--data", default=None, help="datasets folder (default: $SRGAN_FAST_DATA or ../shared/datasets)")
    p.add_argument("--workers", type=int, default=2, help="encoding processes (default 2)")
    args = p.parse_args(argv)
    root = data_root(args.data)
    if root is None:
        print("pack_data: error: datasets not found (pass --data DIR)", file=sys.stderr)
        return 2
    total = pack(Path(args.dest), root, args.workers)
    print(f"{args.dest}: {total / 2**20:.1f} MiB")
    if total > LIMIT:
        mib = f"{total / 2**20:.1f} MiB"
        print(f"pack_data: error: {mib} will not travel (limit ~{LIMIT / 2**20:.0f} MiB)", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
