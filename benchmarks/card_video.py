"""Card step (issue 19): decode -> upscale -> encode with NVDEC frames handed to the engine by
DLPack (PyAV hwaccel) against CPU decoding, same engine, interleaved; 8-bit H.264 and 10-bit PQ
HEVC. Checks: gpu_decoded_frames == frames (else the hwaccel fell back to software), both decode
paths give the same pixels (PSNR >= 45 dB between the two outputs), 10-bit in -> 10-bit out with
its tags. Rows go to OUT/card_video.jsonl. Unverified until it has run on a card.

    python benchmarks/card_video.py OUT cuda 0      # on the card (benchmarks/card_session.sh part 3)
    python benchmarks/card_video.py OUT cpu 1       # the CPU dry run
"""

import json
import statistics
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch

try:
    import av
except ImportError:
    sys.exit("card_video: PyAV is not installed here (pip install 'srgan-fast[video]'); step skipped")

from srgan_fast.io.video import upscale_video
from srgan_fast.io.video.color import write_planes


def clip(path, codec, pix_fmt, tags, w, h, n):
    """A synthetic clip with moving ramps, tagged (matrix, primaries, transfer, range)."""
    o = av.open(str(path), "w")
    vs = o.add_stream(codec, rate=24)
    vs.width, vs.height, vs.pix_fmt = w, h, pix_fmt
    if codec == "libx265":
        vs.options = {"x265-params": "log-level=error"}
    cc = vs.codec_context
    cc.colorspace, cc.color_primaries, cc.color_trc, cc.color_range = tags
    yy, xx = np.mgrid[0:h, 0:w]
    top = 1023 if "10" in pix_fmt else 255
    for i in range(n):
        f = av.VideoFrame(w, h, pix_fmt)
        y = ((xx * 3 + yy + i * 4) % (top - 100) + 64).astype(np.int16)
        c = np.full((h // 2, w // 2), (top + 1) // 2, np.int16) + ((xx[::2, ::2] + i) % 40 - 20).astype(np.int16)
        write_planes(f, (torch.from_numpy(y), torch.from_numpy(c), torch.from_numpy(c[:, ::-1].copy())))
        f.colorspace, f.color_primaries, f.color_trc, f.color_range = tags
        f.pts = i
        for p in vs.encode(f):
            o.mux(p)
    for p in vs.encode():
        o.mux(p)
    o.close()


def y_planes(path):
    with av.open(str(path)) as c:
        return [f.to_ndarray().astype(np.float64)[: f.height] for f in c.decode(video=0)]


def main(out: Path, dev: str, dry: bool) -> None:
    d = Path(tempfile.mkdtemp())
    out.mkdir(parents=True, exist_ok=True)
    w, h, n = (64, 36, 4) if dry else (480, 270, 48)
    cases = [
        ("h264 8-bit bt709", d / "a.mp4", "libx264", "yuv420p", (1, 1, 1, 1)),
        ("hevc 10-bit PQ bt2020", d / "b.mp4", "libx265", "yuv420p10le", (9, 9, 16, 1)),
    ]
    kw = dict(device=dev, dtype="fp32" if dry else "fp16", model="srresnet_x4", progress=False, batch=4)
    gpu = torch.cuda.get_device_name() if dev == "cuda" else "cpu"
    with open(out / "card_video.jsonl", "a") as rows:
        for name, src, codec, fmt, tags in cases:
            clip(src, codec, fmt, tags, w, h, n)
            fps, gpu_frames = {True: [], False: []}, 0
            for r in range(1 if dry else 3):
                for hw in (True, False) if r % 2 == 0 else (False, True):  # interleaved
                    res = upscale_video(src, d / f"o_{hw}.mp4", hwaccel=hw, **kw)
                    fps[hw].append(res["fps"])
                    gpu_frames = res["gpu_decoded_frames"] if hw else gpu_frames
                    row = {"case": name, "hwaccel": hw, "gpu": gpu, **res}
                    rows.write(json.dumps(row) + "\n")
                    print(json.dumps(row))
            a, b = y_planes(d / "o_True.mp4"), y_planes(d / "o_False.mp4")
            mse = np.mean([np.mean((x - y) ** 2) for x, y in zip(a, b)])
            top = 1023 if "10" in fmt else 255
            psnr = 10 * np.log10(top**2 / max(mse, 1e-12))
            with av.open(str(d / "o_True.mp4")) as c:
                cc = c.streams.video[0].codec_context
                got = (int(cc.colorspace), int(cc.color_primaries), int(cc.color_trc), int(cc.color_range))
                got_fmt = cc.format.name
            hw_fps, sw_fps = statistics.median(fps[True]), statistics.median(fps[False])
            print(
                f"{name}: NVDEC {hw_fps:.1f} fps vs CPU decode {sw_fps:.1f} fps; "
                f"gpu-decoded frames {gpu_frames}/{res['frames_out']}; outputs agree to {psnr:.1f} dB; "
                f"tags {got}, {got_fmt}"
            )
            assert got == tags and got_fmt == fmt, (got, got_fmt, tags, fmt)
            assert psnr >= 45 or dry, psnr
            assert gpu_frames == res["frames_out"] or dry, f"{name}: NVDEC decoded {gpu_frames} frames (a fallback)"


if __name__ == "__main__":
    main(Path(sys.argv[1]), sys.argv[2], sys.argv[3] == "1")
