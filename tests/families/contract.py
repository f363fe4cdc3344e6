"""What every model family must pass (spandrel's tests/util.py pattern): one copy of each rule,
which each family's test file calls for its own small models in a few lines:

    SPECS = [contract.Spec(lambda: random_x(TINY, seed=1), backends=("torch", "triton"), hostile=...)]

    @pytest.mark.parametrize("check", contract.CHECKS)
    @pytest.mark.parametrize("spec", SPECS, ids=...)
    def test_family_contract(spec, check, tmp_path, monkeypatch):
        contract.run(check, spec, tmp_path, monkeypatch)

The checks (each also callable alone): weights save/load bit-exact, the plan against the plain
module on every backend in fp32, tiled == untiled with tiles sized from the plan's halo (and the
halo needed in full), uint8 in and out, a hostile config refused before anything is built,
foreign checkpoints converted back bit for bit, and fp16 on CUDA within twice PyTorch's own
fp16 error. Failure messages give the max and mean difference and where the max is.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pytest
import torch

from srgan_fast.backends import TorchRunner
from srgan_fast.engine import Engine
from srgan_fast.families import detect_family, family_of
from srgan_fast.families.srresnet.arch import output_to_unit
from srgan_fast.plan import compile_plan
from srgan_fast.reference import upscale_reference
from srgan_fast.tiling import run_tiled
from srgan_fast.weights import WeightsError, load_generator, read_metadata, save_generator
from srgan_fast.weights.convert import convert, load_checkpoint

from ..conftest import TRITON_DEVICE, diff_msg, to_nchw, to_nhwc

CHECKS = ("save_load", "parity", "tiling", "uint8", "hostile_config", "convert")


@dataclass(frozen=True)
class Spec:
    """One small model of a family and what the contract holds it to."""

    build: Callable[[], torch.nn.Module]  # a fresh random model (eval, fp32), the same one each call
    backends: tuple[str, ...] = ("torch",)  # held to the module in parity and uint8
    tile_backends: tuple[str, ...] = ("torch",)  # tiled against torch untiled
    halo_cut: int = 1  # this many LR pixels less of halo must show at the tile borders (> 1e-4)
    # (config fields a weights file claims, the refusal's pattern): all refused before the module is built
    hostile: tuple[tuple[dict, str], ...] = ()
    # model -> {file name: object torch.save writes} for `convert`; None: the plain state dict
    checkpoints: Callable[[torch.nn.Module], dict] | None = None
    inside: float = 0.9  # the least fraction of the module's output strictly inside (0, 1): a real image
    parity_shapes: tuple[tuple[int, int, int], ...] = ((2, 7, 13),)  # (batch, H, W), odd sizes


def run(check: str, spec: Spec, tmp_path, monkeypatch) -> None:
    """Run one of CHECKS for `spec` (the family test files parametrize over CHECKS)."""
    m = spec.build()
    if check == "save_load":
        check_save_load(m, tmp_path)
    elif check == "parity":
        check_parity(m, spec.backends, spec.parity_shapes, inside=spec.inside)
    elif check == "tiling":
        check_tiling(m, spec.tile_backends, halo_cut=spec.halo_cut)
    elif check == "uint8":
        check_uint8(m, spec.backends)
    elif check == "hostile_config":
        assert spec.hostile, "a family's spec lists the hostile configs its loader must refuse"
        check_hostile_config(m, spec.hostile, tmp_path, monkeypatch)
    elif check == "convert":
        check_convert(m, tmp_path, spec.checkpoints(m) if spec.checkpoints else None)
    else:
        raise ValueError(f"unknown check {check!r}; known: {', '.join(CHECKS)}")


def unit_output(m, x):
    """The plain module's output in [0, 1], clamped, by its `output_range` (as the engine maps it)."""
    with torch.no_grad():
        return output_to_unit(m, m(x))


def _device(backend):
    if backend.startswith("triton"):
        pytest.importorskip("triton")
        return TRITON_DEVICE
    return "cpu"


def _diff(got, want):
    """conftest.diff_msg for numpy arrays (NHWC: the index is (n, h, w, c))."""
    return diff_msg(torch.from_numpy(np.asarray(got)), torch.from_numpy(np.asarray(want)))


def _rand(*shape, seed):
    return torch.rand(*shape, generator=torch.Generator().manual_seed(seed))


# ---------------------------------------------------------------- the checks


def check_save_load(m, tmp_path):
    """save_generator then load_generator gives the same family, config and every tensor bit for
    bit; the engine takes the file's path as it takes the module."""
    fam = family_of(m)
    path = save_generator(m, tmp_path / f"{fam.name}.safetensors")
    meta = read_metadata(path)
    assert meta.get("family", "srresnet") == fam.name and meta["config"] == m.config.to_dict(), meta
    loaded = load_generator(path)
    assert type(loaded) is type(m) and loaded.config == m.config
    want, got = m.state_dict(), loaded.state_dict()
    assert list(got) == list(want)
    differ = [k for k in want if not torch.equal(got[k], want[k])]
    assert not differ, f"tensors changed by the round trip: {differ[:10]}"
    x = _rand(1, 3, 7, 13, seed=1)
    assert torch.equal(unit_output(loaded, x), unit_output(m, x))
    y = Engine(str(path), backend="torch").upscale(to_nhwc(x))  # --model path.safetensors
    z = Engine(m, backend="torch").upscale(to_nhwc(x))
    assert np.array_equal(y, z), _diff(y, z)


def check_parity(m, backends=("torch",), shapes=((2, 7, 13),), atol=1e-4, inside=0.9):
    """The compiled plan on each backend against the plain module, fp32, [0, 1] inputs: max abs <= atol."""
    plan = compile_plan(m)
    assert plan.scale == m.config.scale
    assert plan.halo == int(np.ceil(plan.receptive_radius)), (plan.halo, plan.receptive_radius)
    for i, (n, h, w) in enumerate(shapes):
        x = _rand(n, 3, h, w, seed=10 + i)
        want = unit_output(m, x)
        real = ((want > 0) & (want < 1)).float().mean().item()
        assert real >= inside, f"the module's output is {real:.1%} inside (0, 1): a clamped image, not a test"
        for backend in backends:
            got = to_nchw(Engine(m, backend=backend, device=_device(backend)).upscale(to_nhwc(x)))
            assert got.shape == want.shape, (backend, got.shape, want.shape)
            err = (got - want).abs().max().item()
            assert err <= atol, f"{backend} {n}x{h}x{w}: " + diff_msg(got, want)


def check_tiling(m, backends=("torch",), atol=1e-5, halo_cut=1):
    """Tiled == untiled with tiles smaller than the plan's halo, on a frame where some tiles' halos
    are cut off inside it; and `halo_cut` LR pixels less of halo show at the tile borders (1 where
    the far end of the receptive field is above float noise; a deep residual trunk damps it)."""
    plan = compile_plan(m)
    halo, scale = plan.halo, plan.scale
    tile = max(1, halo - 1)  # below the halo: the inner tiles' regions reach past their neighbours
    x = to_nhwc(_rand(1, 3, halo + tile + 3, halo + 2 * tile + 2, seed=20))
    whole = Engine(m, backend="torch").upscale(x)
    for backend in backends:
        tiled = Engine(m, backend=backend, device=_device(backend), tile=tile, tile_batch=16).upscale(x)
        d = np.abs(tiled - whole).max()
        assert d <= atol, f"{backend} tile {tile}, halo {halo}: " + _diff(tiled, whole)
    runner = TorchRunner(plan, torch.device("cpu"), torch.float32)
    xs = torch.from_numpy(x)
    exact = run_tiled(lambda t: runner(t, False), xs, scale, tile, halo).numpy()
    short = run_tiled(lambda t: runner(t, False), xs, scale, tile, halo - halo_cut).numpy()
    assert np.abs(exact - whole).max() <= atol, _diff(exact, whole)
    cut = np.abs(short - whole).max()
    assert cut > 1e-4, f"halo {halo} - {halo_cut} changes the image by {cut:.2e} only: is the plan's halo too large?"


def check_uint8(m, backends=("torch",)):
    """uint8 in, uint8 out: the reference backend equals upscale_reference and the float route
    rounded; every backend within one level of it, on at most 0.1% of the values."""
    x = torch.randint(0, 256, (1, 9, 11, 3), dtype=torch.uint8, generator=torch.Generator().manual_seed(30)).numpy()
    ref = Engine(m, backend="reference").upscale(x)
    assert ref.dtype == np.uint8 and ref.std() > 2, ref.std()  # a picture, not a flat or clamped frame
    assert np.array_equal(ref[0], upscale_reference(m, x[0]))
    fl = Engine(m, backend="torch").upscale(x.astype(np.float32) / 255)
    assert np.abs(ref.astype(int) - np.floor(fl * 255 + 0.5)).max() <= 1
    for backend in backends:
        got = Engine(m, backend=backend, device=_device(backend)).upscale(x)  # the head (and a skip) read uint8
        assert got.dtype == np.uint8 and got.shape == ref.shape, (backend, got.dtype, got.shape)
        d = np.abs(got.astype(int) - ref)
        assert d.max() <= 1 and (d > 0).mean() <= 1e-3, f"{backend}: {(d > 0).mean():.2%} differ; " + _diff(got, ref)


def check_hostile_config(m, cases, tmp_path, monkeypatch, seconds=2.0):
    """A weights file whose config is hostile is refused fast, naming the file, before
    the module class is ever instantiated (its __init__ is watched)."""
    from safetensors import safe_open
    from safetensors.torch import save_file

    path = save_generator(m, tmp_path / "ok.safetensors")
    with safe_open(str(path), "pt") as f:
        meta, state = f.metadata(), {k: f.get_tensor(k) for k in f.keys()}
    cls = type(m)
    built = []
    real_init = cls.__init__
    monkeypatch.setattr(cls, "__init__", lambda self, *a, **k: built.append(1) or real_init(self, *a, **k))
    for bad, msg in cases:
        meta["config"] = json.dumps(dict(m.config.to_dict(), **bad))
        save_file(state, str(tmp_path / "bad.safetensors"), metadata=meta)
        t = time.perf_counter()
        with pytest.raises(WeightsError, match=msg) as e:
            load_generator(tmp_path / "bad.safetensors")
        assert time.perf_counter() - t < seconds, bad
        assert "bad.safetensors" in str(e.value), str(e.value)  # the file is named
        assert built == [], f"{cls.__name__} built from {bad}"
    t = time.perf_counter()
    with pytest.raises(ValueError, match=cases[0][1]):
        type(m.config).from_dict(dict(m.config.to_dict(), **cases[0][0]))
    assert time.perf_counter() - t < seconds


def check_convert(m, tmp_path, checkpoints=None):
    """Each foreign checkpoint of the module (default: its state dict, saved with torch.save) is
    detected as its family and converted to the same config and every tensor bit for bit."""
    fam = family_of(m)
    want = m.state_dict()
    x = _rand(1, 3, 6, 7, seed=40)
    for name, obj in (checkpoints or {"state.pth": want}).items():
        src, dst = tmp_path / name, tmp_path / f"{name}.safetensors"
        torch.save(obj, src)
        assert detect_family(load_checkpoint(src)).name == fam.name, name
        report = convert(src, dst)
        assert report.family == fam.name and report.config == m.config.to_dict(), (name, report)
        loaded = load_generator(dst)
        assert type(loaded) is type(m) and loaded.config == m.config, name
        got = loaded.state_dict()
        differ = [k for k in want if not torch.equal(got[k], want[k])]
        assert not differ and set(got) == set(want), (name, differ[:10])
        assert torch.equal(unit_output(loaded, x), unit_output(m, x)), name


def check_fp16_cuda(m, backends=("torch", "triton"), shape=(2, 3, 48, 40), cuda_graph=False):
    """fp16 on CUDA: each backend's error against the fp32 module (no TF32) at most twice PyTorch's
    own fp16 error, + 1e-3 (the D6 rule); with cuda_graph, the triton backend's graph replay too."""
    if not torch.cuda.is_available():
        pytest.skip("needs a CUDA GPU")
    m = m.cuda()
    x = torch.rand(*shape, device="cuda")
    with torch.no_grad(), torch.backends.cudnn.flags(enabled=True, allow_tf32=False):
        want = output_to_unit(m, m(x))
        torch_err = (output_to_unit(m, m.half()(x.half()).float()) - want).abs().max().item()
    m.float()
    runs = [(b, False) for b in backends] + ([("triton", True)] if cuda_graph else [])
    for backend, graph in runs:
        eng = Engine(m, device="cuda", dtype="fp16", backend=backend, cuda_graph=graph)
        got = eng.upscale(x.permute(0, 2, 3, 1)).permute(0, 3, 1, 2).float()
        err = (got - want).abs().max().item()
        assert err <= 2 * torch_err + 1e-3, f"{backend} graph={graph}: PyTorch fp16 {torch_err:.3e}; " + diff_msg(
            got.cpu(), want.cpu()
        )
