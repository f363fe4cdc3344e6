"""Tiles chosen with the halo's cost in mind; big jobs announced, bounded and tracked per tile."""

import numpy as np
import pytest
import torch
from PIL import Image

from srgan_fast.cli import main
from srgan_fast.engine import Engine
from srgan_fast.families.srresnet.arch import Generator
from srgan_fast.tiling import MemoryBudgetError, choose_tiling, halo_work_factor

from ..conftest import randomize_bn


@pytest.fixture(scope="module")
def tiny():
    torch.manual_seed(0)
    return randomize_bn(Generator("tiny_x4"))


@pytest.fixture(scope="module")
def tiny_file(tiny, tmp_path_factory):
    from srgan_fast.weights import save_generator

    return str(save_generator(tiny, tmp_path_factory.mktemp("w") / "tiny.safetensors"))


def test_choose_tiling_prefers_larger_tiles_over_batching():
    bpp, halo = 1000, 40
    # room for 4 tiles of 256 + halo: all four together
    assert choose_tiling(4 * 336**2 * bpp, bpp, halo, batch=4) == (256, 4)
    # room for one such tile only: one per call, not four 88-px tiles with 2.8x the work
    t, b = choose_tiling(336**2 * bpp, bpp, halo, batch=4)
    assert (t, b) == (256, 1)
    assert halo_work_factor(1000, 1000, 256, halo) < 1.6 < halo_work_factor(1000, 1000, 88, halo)
    with pytest.raises(MemoryBudgetError, match=r"cannot hold one tile: a 1-pixel tile with its 40-pixel halo needs"):
        choose_tiling(80**2 * bpp, bpp, halo, batch=4)


def test_impossible_budget_is_one_line_from_the_cli(tmp_path, capsys):
    Image.fromarray(np.zeros((24, 24, 3), np.uint8)).save(tmp_path / "a.png")
    rc = main(["upscale", str(tmp_path / "a.png"), "-o", str(tmp_path / "o.png"), "--memory-budget", "1M", "-q"])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1 and "cannot hold one tile" in err[0] and "--memory-budget" in err[0], err


def test_progress_per_tile_and_estimate(tiny):
    e = Engine(tiny, backend="torch", tile=16, tile_batch=2)
    x = np.random.default_rng(0).random((40, 40, 3), dtype=np.float32)
    seen = []
    y = e.upscale(x, progress=lambda done, total: seen.append((done, total)))
    # 9 tiles of 3 x 3 different region shapes (16, 16, 8 with a 12-px halo): one call each
    assert seen == [(i, 9) for i in range(1, 10)], seen
    assert np.abs(y - Engine(tiny, backend="torch").upscale(x)).max() <= 1e-5
    est = e.estimate(40, 40, timed=True)
    assert (est.out_h, est.out_w, est.tile, est.tiles) == (160, 160, 16, 9)
    # by hand, halo 12: tiles [0, 16), [16, 32), [32, 40) read rows [0, 28), [4, 40), [20, 40), so
    # 28 + 36 + 20 = 84 rows (and columns): 84^2 = 7056 LR pixels computed for 1600 kept
    assert e.plan.halo == 12
    assert est.halo_work == pytest.approx(7056 / 1600)
    # per LR pixel the plan does head 3*16*81 + 5 convs 16*16*9 + upsample 16*64*9 (at 1x) and
    # 4 * 16*64*9 (at 2x) + sub-pixel tail 4 * 64*12*25 (at 2x) = 138288 multiply-adds
    assert est.macs == pytest.approx(138288 * 7056)
    assert est.seconds is not None and est.seconds > 0
    assert "160x160 output" in est.describe() and "9 tiles of 16 px" in est.describe()


def test_max_pixels_refuses_from_the_header_and_skip_keeps_going(tmp_path, capsys, tiny_file):
    src = tmp_path / "in"
    src.mkdir()
    Image.fromarray(np.full((8, 8, 3), 90, np.uint8)).save(src / "a_small.png")
    Image.fromarray(np.zeros((64, 80, 3), np.uint8)).save(src / "b_big.png")
    Image.fromarray(np.full((8, 8, 3), 30, np.uint8)).save(src / "c_small.png")
    out = tmp_path / "out"
    args = ["upscale", str(src), "-o", str(out), "--model", tiny_file, "-q", "--max-pixels", "1000"]
    rc = main(args)
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1 and "80x64 is 0.0 Mpx, over --max-pixels 1000" in err[0], err
    rc = main([*args, "--on-error", "skip"])
    cap = capsys.readouterr()
    assert rc == 0 and "skipped" in cap.err and "b_big.png" in cap.err
    assert sorted(p.name for p in out.iterdir()) == ["a_small.png", "c_small.png"]
    assert main([*args[:-2], "--max-pixels", "0"]) == 0
    assert (out / "b_big.png").exists()


def test_large_inputs_are_announced(tmp_path, capsys, monkeypatch, tiny_file):
    import srgan_fast.io.batch as up

    monkeypatch.setattr(up, "_ANNOUNCE_PIXELS", 30 * 30)
    Image.fromarray(np.zeros((32, 40, 3), np.uint8)).save(tmp_path / "a.png")
    rc = main(["upscale", str(tmp_path / "a.png"), "-o", str(tmp_path / "o.png"), "--model", tiny_file, "--tile", "16"])
    err = capsys.readouterr().err
    assert rc == 0 and "a.png: 40x32 -> 160x128 output" in err and "6 tiles of 16 px" in err and "about" in err, err


@pytest.mark.parametrize(
    "h, w, tile, tiles",
    [
        (10, 40, 16, 3),  # shorter than the tile on one side only: still cut along the other
        (40, 10, 16, 3),
        (16, 40, 16, 3),  # equal on one side
        (17, 16, 16, 2),
        (16, 16, None, 1),  # fits one tile on both sides: whole frames
        (10, 12, None, 1),
    ],
)
def test_an_explicit_tile_is_used_when_the_frame_is_longer_on_either_side(tiny, monkeypatch, h, w, tile, tiles):
    """Engine(tile=T) tiles a frame unless it fits one T x T tile (T >= both sides): a frame longer
    than T on one side only is still cut along that side (a mutation N34 survived)."""
    import srgan_fast.engine as eng

    e = Engine(tiny, backend="torch", tile=16, tile_batch=2)
    est = e.estimate(h, w, 2)
    assert (est.tile, est.tiles) == (tile, 2 * tiles)
    if tile is not None:
        # halo 12: along the long side tiles [0, 16), [16, 32), [32, 40) read 28 + 36 + 20 = 84 of 40
        # columns; 17 rows: [0, 16), [16, 17) read [0, 17) and [4, 17): 30 of 17
        expect = {40: 84 / 40, 17: 30 / 17, 16: 1.0, 10: 1.0}
        assert est.halo_work == pytest.approx(expect[h] * expect[w])
    calls = []
    real = eng.run_tiled
    monkeypatch.setattr(eng, "run_tiled", lambda *a, **k: calls.append(a[3]) or real(*a, **k))
    x = np.random.default_rng(1).random((h, w, 3), dtype=np.float32)
    y = e.upscale(x)
    assert calls == ([] if tile is None else [tile])
    assert y.shape == (4 * h, 4 * w, 3)
    assert np.abs(y - Engine(tiny, backend="torch").upscale(x)).max() <= 1e-5


def test_the_memory_budget_counts_every_frame_of_a_batch(tiny, monkeypatch):
    """A budget that holds one 64x64 frame but not four: four frames run one per call, whole (no
    tiles), and the estimate says so; with the budget under one frame, each frame is tiled, and
    the estimate counts every frame's tiles (a mutation N37 survived: the check as if n were 1)."""
    plain = Engine(tiny, backend="torch")
    bpp = plain.bytes_per_lr_pixel()
    h = w = 64
    one = h * w * bpp
    e = Engine(tiny, backend="torch", memory_budget=int(one * 1.5))
    # the one-call check counts the batch: four frames at once would need tiles
    tile, _ = e._tiling(h, w, 4)
    assert tile is not None and tile < 64
    assert e._tiling(h, w, 1) == (None, e.tile_batch)
    est = e.estimate(h, w, 4)
    assert (est.frames, est.out_h, est.out_w, est.tile, est.tiles, est.halo_work) == (4, 256, 256, None, 4, 1.0)
    assert est.macs == pytest.approx(4 * e.estimate(h, w, 1).macs)
    assert est.macs == pytest.approx(4 * h * w * e.plan.macs_per_lr_pixel())

    shapes = []
    cls = type(e._runner)
    real = cls.__call__
    monkeypatch.setattr(cls, "__call__", lambda self, x, u8: shapes.append(tuple(x.shape[:3])) or real(self, x, u8))
    x = np.random.default_rng(2).random((4, h, w, 3), dtype=np.float32)
    y = e.upscale(x)
    assert shapes == [(1, h, w)] * 4
    monkeypatch.setattr(cls, "__call__", real)
    want = plain.upscale(x)
    assert np.abs(y - want).max() <= 1e-5

    two = Engine(tiny, backend="torch", memory_budget=int(one * 2.5))  # two frames per call
    assert (two.estimate(h, w, 4).tile, two.estimate(h, w, 4).tiles) == (None, 4)
    monkeypatch.setattr(cls, "__call__", lambda self, x, u8: shapes.append(tuple(x.shape[:3])) or real(self, x, u8))
    shapes.clear()
    assert np.abs(two.upscale(x) - want).max() <= 1e-5
    assert shapes == [(2, h, w)] * 2

    # under one frame: every frame tiled, and the estimate's tiles are all four frames' tiles
    tight = Engine(tiny, backend="torch", memory_budget=int(one * 0.6))
    with pytest.warns(RuntimeWarning, match="forces 25-pixel tiles"):  # 3.1x the untiled work: said once
        one_frame = tight.estimate(h, w, 1)
    est = tight.estimate(h, w, 4)
    assert one_frame.tile is not None and one_frame.tile < 64
    t = one_frame.tile
    assert est.tile == t and est.tiles == 4 * one_frame.tiles == 4 * len(range(0, h, t)) * len(range(0, w, t))
    assert est.halo_work == pytest.approx(one_frame.halo_work) and est.halo_work > 1
    assert est.macs == pytest.approx(4 * one_frame.macs)
