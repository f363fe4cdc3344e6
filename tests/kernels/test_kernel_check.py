"""The static kernel check (benchmarks/kernel_check.py): the binaries of every Triton launch,
compiled here without a GPU for sm_80, sm_86, sm_89 and sm_90a, hold the kernels issues' targets
(issue 28: Ampere and Ada as Hopper), and the autotuners' prunes drop what a device cannot run.

The compile tests need the card's Triton (3.6.0, pinned in the dev/CI install) and skip with
another. The default run compiles a representative subset, every architecture once: srresnet_x4
(every kernel: the 9x9 head, the pointer and TMA loops, resblock_fused) on sm_90a and sm_86 (the
tightest limits: 99 KB, 1,536 threads and 16 CTAs an SM), and the compact family's plan with
uint8 I/O (the video path: an upsampled uint8 skip under a x4 shuffle, the tail that spilled) on
sm_80 and sm_89: about 130 distinct binaries, 46 s cold on 2 quiet cores (140 s when other
jobs shared them), 13 s with the cache below. The full sweep, 4 families x 4 architectures with
float I/O (435 binaries, 210 s cold on 2 cores), is `-m slow`. Compiled binaries and their SASS are kept
between runs (--cache) in $SRGAN_FAST_KERNEL_CACHE, default ~/.cache/srgan_fast/kernel_check:
Triton keys a binary by the kernel's source, constexprs, options, target and versions, the
SASS by the binary's hash, so an edited kernel is compiled again and every check still reads
every variant."""

import json
import os
import subprocess
import sys
from types import SimpleNamespace

import pytest
import torch

triton = pytest.importorskip("triton")

from srgan_fast.kernels import conv2d_fused as cf  # noqa: E402
from srgan_fast.kernels import resblock_fused as rf  # noqa: E402
from srgan_fast.kernels.resblock_fused import ctas_per_sm  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
CHECK = os.path.join(ROOT, "benchmarks", "kernel_check.py")
SM86 = dict(smem_limit=99 * 1024, capability=86)  # RTX 30xx, A6000: 99 KB of shared memory a program
SM80 = dict(smem_limit=163 * 1024, capability=80)  # A100


def test_ctas_per_sm_matches_the_occupancy_rules():
    # yardsticks: the shared kernel_report's readings of main at 4487512 (CUDA occupancy rules)
    assert ctas_per_sm(232, 73728, 4) == 2  # 232 regs x 128 threads: registers limit
    assert ctas_per_sm(141, 24576, 4) == 3  # 141 -> 144 regs per thread after the 256-per-warp rounding
    assert ctas_per_sm(64, 51200, 8) == 4  # 64 regs: 4 x 256 threads; shared 4 x 52 KB fits 228 KB
    assert ctas_per_sm(32, 0, 1) == 32  # the 32-CTA cap
    assert ctas_per_sm(255, 200 * 1024, 8) == 1  # never 0: a kernel that fits at all fits once
    assert ctas_per_sm(73, 0, 4) == 6  # 73 -> 80 registers a thread (256 per warp): 7 without the rounding
    assert ctas_per_sm(32, 57 * 1024, 4) == 3  # 57 KB + the 1 KB each CTA reserves: 4 without the reserve
    # sm_86: 1,536 threads, 16 CTAs and 100 KB an SM
    sm86 = dict(smem=100 * 1024, threads=1536, ctas=16)
    assert ctas_per_sm(32, 0, 8, sm86) == 6  # threads: 6 x 256
    assert ctas_per_sm(32, 0, 1, sm86) == 16  # the 16-CTA cap
    assert ctas_per_sm(64, 49152, 4, sm86) == 2  # 2 x (48 + 1) KB of 100 KB


# ---------------------------------------------------------------------------- the prunes


def _cfg(c):
    return (tuple(sorted(c.kwargs.items())), c.num_warps, c.num_stages)


def _w(dtype):
    return {"w_ptr": torch.empty(0, dtype=dtype), "w1_ptr": torch.empty(0, dtype=dtype)}


@pytest.mark.parametrize("bn", [16, 64, 128])
def test_pointer_prune_drops_what_exceeds_an_sm86_program_and_keeps_one(bn):
    """Given sm_86's 99 KB, the pointer loop's prune drops exactly the configs whose pipelined
    tiles exceed it (fp32, the parity mode: 256x64 w8s3 at 64 columns is 160 KB there) and keeps
    at least one; sm_80's 163 KB keeps the 160 KB config."""
    regs_ok = cf._prune_pointer(cf._GPU_CONFIGS, _w(torch.float32), smem_limit=None, BLOCK_N=bn)
    kept = cf._prune_pointer(cf._GPU_CONFIGS, _w(torch.float32), **SM86, BLOCK_N=bn)
    assert kept, bn
    for c in regs_ok:
        est = cf.loop_shared_bytes(c.kwargs["BLOCK_M"], bn, c.kwargs["BLOCK_K"], c.num_stages, 4, 86)
        assert (c in kept) == (est <= SM86["smem_limit"]), (bn, c, est)
    if bn == 64:
        big = [c for c in regs_ok if c not in kept]
        assert [(c.kwargs["BLOCK_M"], c.num_warps, c.num_stages) for c in big] == [(256, 8, 3)]
        assert big[0] in cf._prune_pointer(cf._GPU_CONFIGS, _w(torch.float32), **SM80, BLOCK_N=bn)
    # fp16 halves every tile: nothing is over 99 KB
    assert cf._prune_pointer(cf._GPU_CONFIGS, _w(torch.float16), **SM86, BLOCK_N=bn) == regs_ok


def test_prunes_keep_one_config_when_none_fits():
    tiny = dict(smem_limit=1024, capability=86)
    for prune, configs, kw in (
        (cf._prune_pointer, cf._GPU_CONFIGS, dict(BLOCK_N=64)),
        (cf._prune_tma, cf._TMA_CONFIGS, dict(BLOCK_N=64, BLOCK_K=64)),
        (rf._prune_resblock, rf._GPU_CONFIGS, {}),
    ):
        kept = prune(configs, _w(torch.float16), **tiny, **kw)
        assert len(kept) == 1 and kept[0] in configs


def test_prunes_read_the_launch_devices_limit(monkeypatch):
    """As the autotuner calls them (no limit given): the limit and capability come from the
    launch's CUDA device, here a stand-in sm_86 with 99 KB."""
    seen = []

    def limit(device):
        seen.append(device)
        return SM86["smem_limit"], 86

    monkeypatch.setattr(cf, "device_shared_limit", limit)
    x = SimpleNamespace(device=torch.device("cuda", 0), dtype=torch.float32)
    named = dict(_w(torch.float32), x_ptr=x)
    assert cf._prune_pointer(cf._GPU_CONFIGS, named, BLOCK_N=64) == cf._prune_pointer(
        cf._GPU_CONFIGS, named, **SM86, BLOCK_N=64
    )
    assert {_cfg(c) for c in rf._prune_resblock(rf._GPU_CONFIGS, named)} == {
        _cfg(c) for c in rf._prune_resblock(rf._GPU_CONFIGS, named, **SM86)
    }
    assert seen and all(d == torch.device("cuda", 0) for d in seen)
    # off CUDA (the interpreter, meta tensors): no shared-memory pruning
    cpu = dict(named, x_ptr=torch.empty(0))
    assert len(cf._prune_pointer(cf._GPU_CONFIGS, cpu, BLOCK_N=64)) == len(cf._GPU_CONFIGS) - len(cf._SKIP_UP_ONLY)


def test_resblock_prune_offers_each_mma_its_configs():
    """sm_8x (mma.sync) gets the configs that do not spill there, sm_90 the wgmma ones."""
    as_tuple = {_cfg(c): c for c in rf._GPU_CONFIGS}
    for cap, want in ((86, rf._MMA_SYNC), (80, rf._MMA_SYNC), (89, rf._MMA_SYNC), (90, rf._WGMMA)):
        kept = rf._prune_resblock(rf._GPU_CONFIGS, _w(torch.float16), smem_limit=99 * 1024, capability=cap)
        got = {(c.kwargs["TILE_H"], c.kwargs["TILE_W"], c.kwargs["BLOCK_M"], c.kwargs["BLOCK_N"], c.kwargs["BLOCK_K"],
                c.num_warps, c.num_stages) for c in kept}  # fmt: skip
        assert got == set(want), cap
    assert len(as_tuple) == len(rf._GPU_CONFIGS)  # no config twice


def test_upsampled_skip_prune_keeps_rows_per_warp():
    """An epilogue reading an upsampled skip keeps at most 16 rows a warp (32 spilled: the
    compact and MSRResNet tails), and on mma.sync at most 16 accumulators a thread (the compact
    tail's 32 spilled with uint8 I/O on sm_86/89): its 8-rows-a-warp config, offered to such
    epilogues only. The others keep the accumulator rule only."""
    base = dict(BLOCK_N=64, HAS_SKIP=True, SKIP_UP=4)
    only = [c for c in cf._GPU_CONFIGS if (c.kwargs["BLOCK_M"], c.kwargs["BLOCK_K"], c.num_warps, c.num_stages)
            in cf._SKIP_UP_ONLY]  # fmt: skip
    assert len(only) == len(cf._SKIP_UP_ONLY) == 1
    for prune, configs, rows, kw in (
        (cf._prune_pointer, cf._GPU_CONFIGS, lambda c: c.kwargs["BLOCK_M"], base),
        (cf._prune_tma, cf._TMA_CONFIGS, lambda c: c.kwargs["TILE_H"] * c.kwargs["TILE_W"], dict(base, BLOCK_K=64)),
    ):
        kept = prune(configs, _w(torch.float16), smem_limit=227 * 1024, capability=90, **kw)
        assert len(kept) > 1 and all(rows(c) <= 16 * c.num_warps for c in kept)
        plain = prune(configs, _w(torch.float16), **SM86, **dict(kw, HAS_SKIP=False))
        assert any(rows(c) > 16 * c.num_warps for c in plain) and not any(c in only for c in plain)
    # sm_86, the compact tail's 64 channels: the 8-rows config alone; 16 channels (MSRResNet's RGB tail) more
    assert cf._prune_pointer(cf._GPU_CONFIGS, _w(torch.float16), **SM86, **base) == only
    assert only[0] in cf._prune_pointer(cf._GPU_CONFIGS, _w(torch.float16), **SM86, **dict(base, BLOCK_N=16))
    assert len(cf._prune_pointer(cf._GPU_CONFIGS, _w(torch.float16), **SM86, **dict(base, BLOCK_N=16))) > 1


def test_autotuners_use_the_prunes():
    assert cf._conv2d_fused_tuned.early_config_prune is cf._prune_pointer
    assert cf._conv2d_fused_tma_tuned.early_config_prune is cf._prune_tma
    assert rf._resblock_fused_tuned.early_config_prune is rf._prune_resblock


def test_triton_tma_is_not_offered_without_tma(monkeypatch):
    """Ampere and Ada have no TMA and no wgmma: triton_tma's `requires` refuses them (so neither
    `auto` nor a plain request reaches the TMA loop there); Hopper is offered it."""
    from srgan_fast.backends import get_backend
    from srgan_fast.backends.triton import has_tma

    monkeypatch.delenv("TRITON_INTERPRET", raising=False)
    assert not has_tma((8, 0)) and not has_tma((8, 6)) and not has_tma((8, 9)) and has_tma((9, 0))
    for cap, refused in (((8, 6), True), ((8, 9), True), ((9, 0), False)):
        monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None, cap=cap: cap)
        why = get_backend("triton_tma").requires(torch.device("cuda"))
        assert (why is not None) == refused, (cap, why)
        assert get_backend("triton").requires(torch.device("cuda")) is None
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: (8, 6))
    assert "TMA" in get_backend("triton_tma").requires(torch.device("cuda"))


def test_resblock_grid_is_what_its_compiled_kernel_lets_reside(monkeypatch):
    """The launcher's persistent grid: SMs x ctas_per_sm(the loaded kernel's registers and shared
    memory), per config (the GPU path, exercised with a stand-in compiled kernel)."""
    fake = SimpleNamespace(n_regs=141, metadata=SimpleNamespace(shared=24576), _init_handles=lambda: None)
    monkeypatch.setattr(rf._resblock_fused_kernel, "warmup", lambda *a, **k: fake)
    monkeypatch.setattr(rf, "_device_limits", lambda d: (132, dict(regs=65536, smem=233472, threads=2048)))
    monkeypatch.setattr(rf, "_PROGRAMS", {})
    x = torch.empty(1, 8, 8, 64)
    cfg = {"TILE_H": 16, "TILE_W": 16, "BLOCK_M": 64, "num_warps": 4}
    assert rf._programs_for(cfg, [x], {"C": 64, "K": 3}, torch.device("cpu")) == 132 * 3
    fake.n_regs = 232  # 232 registers: 2 CTAs of 4 warps fit
    assert rf._programs_for(dict(cfg, TILE_H=8), [x], {"C": 64, "K": 3}, torch.device("cpu")) == 132 * 2


# ---------------------------------------------------------------------------- the compiled binaries


def _kernel_check(tmp, name, *argv):
    if triton.__version__ != "3.6.0":
        pytest.skip(f"triton {triton.__version__} here; the check reads the card's 3.6.0 binaries (make venv pins it)")
    tools = os.path.join(os.path.dirname(triton.__file__), "backends", "nvidia", "bin")
    if not os.path.exists(os.path.join(tools, "cuobjdump")):
        pytest.skip("this triton wheel has no bundled cuobjdump")
    out = tmp / f"{name}.json"
    env = dict(os.environ)
    env.pop("TRITON_INTERPRET", None)
    cache = os.environ.get("SRGAN_FAST_KERNEL_CACHE") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "srgan_fast", "kernel_check"
    )
    try:
        os.makedirs(cache, exist_ok=True)
        kept = ["--cache", cache]
    except OSError:  # a read-only home: compile everything afresh
        kept = []
    p = subprocess.run([sys.executable, CHECK, "--jobs", "2", "--json", str(out), *kept, *argv],
                       capture_output=True, text=True, cwd=ROOT, env=env, timeout=900)  # fmt: skip
    return p, json.loads(out.read_text()) if out.exists() else []


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    """srresnet_x4 on sm_90a and sm_86, the compact plan with uint8 I/O on sm_80 and sm_89."""
    tmp = tmp_path_factory.mktemp("kc")
    p1, rows1 = _kernel_check(tmp, "srresnet", "--model", "srresnet", "--arch", "86,90")
    p2, rows2 = _kernel_check(tmp, "compact", "--model", "compact", "--arch", "80,89", "--io", "u8")
    return [p1, p2], rows1 + rows2


def _assert_rows(rows):
    for r in rows:
        where = (r["sm"], r["family"], r["backend"], r["ops"], r["config"])
        assert "error" not in r, (where, r["error"])
        assert r["local"] == 0 and r["stl_ldl"] == 0, (where, r["local"])
        if r["arch"] >= 90:
            assert r["hgmma"] > 0, where
        else:  # mma.sync, and nothing of Hopper's
            assert r["hmma"] > 0 and r["hgmma"] == 0 and r["tma"] == 0 and r["kernel"] != "tma", where
        # launches there: shared memory, threads and registers a program
        assert r["shared"] <= {80: 163, 86: 99, 89: 99, 90: 227}[r["arch"]] * 1024, where
        assert r["shared"] <= r["est_shared"], where  # the prune's estimate bounds the compiled kernel
        assert r["regs"] * 32 * r["config"]["num_warps"] <= 65536, where
        for lp in r["loops"]:
            assert lp["cpasync"] + lp["tma"] > 0 and lp["narrow_ldg"] == 0, where
            if r["kernel"] in ("pointer", "tma"):  # operands arrive by copies, never gathered into registers
                assert lp["ldg"] == 0, where


def _best(rows, arch, pred, family="srresnet"):
    return min(r["ins_per_mma"] for r in rows if r["arch"] == arch and r["family"] == family and pred(r))


def _body(r):
    return any(k in r["ops"] for k in ("block_conv1", "block_conv2", "body_conv", "dense_conv"))


def test_kernel_check_passes(report):
    procs, rows = report
    for p in procs:
        assert p.returncode == 0, p.stdout[-4000:] + p.stderr[-2000:]
        assert "every variant passes" in p.stdout
    assert {r["arch"] for r in rows} == {80, 86, 89, 90}
    assert len([r for r in rows if r["arch"] == 90 and r["family"] == "srresnet"]) >= 60  # three backends
    assert {(r["family"], r["arch"]) for r in rows} == {("srresnet", 86), ("srresnet", 90), ("compact", 80),
                                                         ("compact", 89)}  # fmt: skip


def test_no_variant_spills_or_loses_its_mma(report):
    _assert_rows(report[1])


def test_targets_of_the_kernels_issues(report):
    _, rows = report
    assert _best(rows, 90, _body) <= 25  # sm_90a: wgmma, the kernels issue's targets
    assert _best(rows, 90, lambda r: r["ops"] == "head") <= 150
    # issue 28: the mma.sync loop
    assert _best(rows, 86, _body) <= 40
    assert _best(rows, 80, _body, "compact") <= 40 and _best(rows, 89, _body, "compact") <= 40
    for r in rows:
        if r["arch"] == 90 and r["family"] == "srresnet" and r["ops"] == "tail":  # its wgmma overlap
            assert r["async_mma"], r["config"]
        if r["kernel"] == "tma":
            assert r["tma"] > 0 and all(lp["tma"] > 0 and lp["cpasync"] == 0 for lp in r["loops"]), r["config"]


def test_resblock_grid_per_architecture(report):
    """The persistent grid is the reference card's SMs x the CTAs that fit on that architecture."""
    sms = {86: 82, 90: 132}
    res = [r for r in report[1] if r["kernel"] == "resblock"]
    assert {r["arch"] for r in res} == {86, 90}
    for r in res:
        assert r["programs"] == sms[r["arch"]] * r["ctas_per_sm"] and r["ctas_per_sm"] >= 1


@pytest.mark.slow
def test_kernel_check_every_family_on_every_architecture(tmp_path):
    """The full sweep: srresnet, compact, MSRResNet and RRDBNet on sm_80, sm_86, sm_89, sm_90a."""
    p, rows = _kernel_check(tmp_path, "all")
    assert p.returncode == 0, p.stdout[-4000:] + p.stderr[-2000:]
    assert {(r["family"], r["arch"]) for r in rows} == {
        (f, a) for f in ("srresnet", "compact", "msrresnet", "rrdbnet") for a in (80, 86, 89, 90)
    }
    _assert_rows(rows)
    for arch in (80, 86, 89):
        for fam in ("srresnet", "compact", "msrresnet", "rrdbnet"):
            assert _best(rows, arch, _body, fam) <= 40, (arch, fam)


def test_kernel_check_refuses_a_bad_size_or_arch():
    p = subprocess.run([sys.executable, CHECK, "--size", "270by480"], capture_output=True, text=True, cwd=ROOT)
    assert p.returncode == 2 and "HxW" in p.stderr
    p = subprocess.run([sys.executable, CHECK, "--arch", "75"], capture_output=True, text=True, cwd=ROOT)
    assert p.returncode == 2 and "--arch" in p.stderr
