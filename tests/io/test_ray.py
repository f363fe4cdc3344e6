"""Ray Data batch path: a local Ray with 2 CPU workers writes exactly what the single-process path writes."""

import numpy as np
import pytest
import torch
from PIL import Image

from srgan_fast.families.srresnet.arch import Generator
from srgan_fast.io.batch import upscale_files
from srgan_fast.weights import save_generator

ray = pytest.importorskip("ray", reason="Ray not installed (pip install 'ray[data]')")


def test_ray_equals_single_process(tmp_path):
    from srgan_fast.io.ray import upscale_files_ray

    torch.manual_seed(5)
    model = save_generator(Generator("tiny_x4"), tmp_path / "tiny.safetensors")
    src = tmp_path / "in"
    src.mkdir()
    rng = np.random.default_rng(0)
    for i, (h, w) in enumerate([(9, 11), (9, 11), (6, 5), (12, 7), (9, 11)]):
        Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)).save(src / f"im{i}.png")
    (src / "broken.png").write_text("not an image")
    single = upscale_files([src], tmp_path / "single", model=str(model), backend="torch", on_error="skip",
                           progress=False)  # fmt: skip
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        dist = upscale_files_ray([src], tmp_path / "ray", model=str(model), backend="torch", workers=2, batch=2,
                                 on_error="skip")  # fmt: skip
    finally:
        ray.shutdown()
    assert [p.name for p in single] == [p.name for p in dist] == [f"im{i}.png" for i in range(5)]
    for a, b in zip(single, dist):
        assert np.array_equal(np.array(Image.open(a)), np.array(Image.open(b))), a.name
