r"""decode -> upscale -> encode fps: an earlier srgan_fast/video.py ("before") against this one
("after"), interleaved rounds (the order alternating), medians; --backend torch on the CPU.

    git show 35ea8d0:srgan_fast/video.py | sed 's/from \./from srgan_fast./' > /tmp/video_before.py
    python benchmarks/video_fps.py /tmp/video_before.py      # 35ea8d0: swscale to rgb24 and back
"""

import importlib.util
import statistics
import sys
import tempfile
from pathlib import Path

import av
import numpy as np
import torch

spec = importlib.util.spec_from_file_location("video_before", sys.argv[1])
video_before = importlib.util.module_from_spec(spec)
spec.loader.exec_module(video_before)
from srgan_fast.families.srresnet.arch import Generator  # noqa: E402
from srgan_fast.io.video import upscale_video as after  # noqa: E402
from srgan_fast.weights import save_generator  # noqa: E402

d = Path(tempfile.mkdtemp())


def clip(path, n, w, h, pix_fmt="yuv420p"):
    out = av.open(str(path), "w")
    vs = out.add_stream("libx264", rate=25)
    vs.width, vs.height, vs.pix_fmt = w, h, pix_fmt
    vs.options = {"crf": "18"}
    yy, xx = np.mgrid[0:h, 0:w]
    for i in range(n):
        img = np.stack([(xx * 3 + i * 5) % 256, (yy * 2 + i * 3) % 256, ((xx + yy) + 40 * np.sin(xx / 9.0)) % 256], -1)
        f = av.VideoFrame.from_ndarray(img.astype(np.uint8), format="rgb24").reformat(format=pix_fmt)
        for p in vs.encode(f):
            out.mux(p)
    for p in vs.encode():
        out.mux(p)
    out.close()


torch.manual_seed(3)
tiny = str(save_generator(Generator("tiny_x4"), d / "tiny.safetensors"))
cases = [
    ("tiny_x4 320x180->1280x720, 24 frames", tiny, (24, 320, 180), 5, "yuv420p"),
    ("srresnet_x4 64x48->256x192, 6 frames", "srresnet_x4", (6, 64, 48), 5, "yuv420p"),
    ("tiny_x4 10-bit source (before: 8-bit out; after: 10-bit out), libx264", tiny, (24, 320, 180), 3, "yuv420p10le"),
]
print(f"torch threads {torch.get_num_threads()}, PyAV {av.__version__}")
for name, model, (n, w, h), rounds, fmt in cases:
    src = d / f"in_{w}x{h}_{fmt}.mp4"
    clip(src, n, w, h, fmt)
    fps = {"before": [], "after": []}
    for r in range(rounds):
        order = [("before", video_before.upscale_video), ("after", after)]
        if r % 2:
            order.reverse()
        for tag, fn in order:
            res = fn(src, d / f"o_{tag}.mp4", model=model, backend="torch", progress=False, codec="libx264")
            fps[tag].append(res["fps"])
            if tag == "after" and r == 0:
                print(name, "after:", res.get("conversion"), res.get("pix_fmt"), res.get("codec"))
    b, a = statistics.median(fps["before"]), statistics.median(fps["after"])
    print(
        f"| {name} | before {b:.2f} fps | after {a:.2f} fps | x{a / b:.2f} | "
        f"runs b={[round(x, 2) for x in fps['before']]} a={[round(x, 2) for x in fps['after']]}"
    )
