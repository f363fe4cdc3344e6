"""Tiling geometry, checked directly and where one pixel of halo shows.

A deep network's outermost taps move its output by less than 1e-5, so "tiled equals untiled"
on srresnet_x4 cannot tell a right halo from one 16 pixels short. These tests can: the regions
are checked against their definition, and the whole engine is tiled on a 0-block SRResNet
(head, trunk end, upsample, tail: radius 8.25 LR px at x4), where one pixel short is ~1e-3 off.
"""

import numpy as np
import pytest
import torch

from srgan_fast.engine import Engine
from srgan_fast.families.srresnet.arch import Generator, GeneratorConfig
from srgan_fast.plan import compile_plan
from srgan_fast.tiling import run_tiled, tile_regions

from ..conftest import randomize_bn


def test_tile_regions_literal():
    # a 5 x 7 frame in 3-pixel tiles with a 1-pixel halo, written out by hand
    want = [
        ((0, 3, 0, 3), (0, 4, 0, 4)),
        ((0, 3, 3, 6), (0, 4, 2, 7)),
        ((0, 3, 6, 7), (0, 4, 5, 7)),
        ((3, 5, 0, 3), (2, 5, 0, 4)),
        ((3, 5, 3, 6), (2, 5, 2, 7)),
        ((3, 5, 6, 7), (2, 5, 5, 7)),
    ]
    assert tile_regions(5, 7, 3, 1) == want


@pytest.mark.parametrize("h,w,tile,halo", [(1, 1, 1, 0), (13, 10, 7, 4), (9, 31, 4, 40), (64, 48, 16, 3)])
def test_tile_regions_cover_once_and_grow_by_the_halo(h, w, tile, halo):
    seen = np.zeros((h, w), int)
    for (y0, y1, x0, x1), (ry0, ry1, rx0, rx1) in tile_regions(h, w, tile, halo):
        seen[y0:y1, x0:x1] += 1
        assert 0 < y1 - y0 <= tile and 0 < x1 - x0 <= tile
        # the region is the core grown by exactly `halo` on each side, clipped to the frame
        assert (ry0, ry1, rx0, rx1) == (max(0, y0 - halo), min(h, y1 + halo), max(0, x0 - halo), min(w, x1 + halo))
    assert (seen == 1).all()  # every pixel kept by exactly one tile


@pytest.fixture(scope="module")
def shallow():
    torch.manual_seed(3)
    g = randomize_bn(Generator(GeneratorConfig(num_blocks=0, channels=8, scale=4)))
    with torch.no_grad():  # weights large enough that the outermost taps move the output
        for m in g.modules():
            if isinstance(m, torch.nn.Conv2d):
                m.weight.mul_(3.0)
    return g


def test_shallow_net_radius(shallow):
    plan = compile_plan(shallow)
    # 9x9 head 4 + trunk end 1 + upsample 1 + upsample at 2x 0.5 + the sub-pixel tail (5x5 at 2x) 1
    assert plan.receptive_radius == pytest.approx(7.5) and plan.halo == 8


def test_tiled_equals_untiled_where_one_pixel_shows(shallow):
    x = np.random.default_rng(0).random((2, 23, 19, 3), dtype=np.float32)
    full = Engine(shallow, backend="torch").upscale(x)
    tiled = Engine(shallow, backend="torch", tile=6).upscale(x)
    assert np.abs(full - tiled).max() <= 1e-5, np.abs(full - tiled).max()
    # the yardstick can fail: the same tiles read with a halo one pixel short are visibly off
    plan = compile_plan(shallow)
    runner = Engine(plan, backend="torch")._runner

    def fn(t):
        return runner(t, False)

    xt = torch.from_numpy(x)
    short = run_tiled(fn, xt, 4, 6, plan.halo - 1).numpy()
    right = run_tiled(fn, xt, 4, 6, plan.halo).numpy()
    assert np.abs(right - full).max() <= 1e-5
    assert np.abs(short - full).max() > 1e-4, np.abs(short - full).max()
