"""The static kernel check (benchmarks/kernel_check.py): the sm_90a binaries of every Triton
launch, compiled here without a GPU, hold the kernels issue's targets.

It compiles 94 kernel variants (64 distinct binaries) with the card's Triton (3.6.0, pinned in the
dev/CI install) in about 30 s on 2 quiet cores; with another Triton the binaries are not the card's, so it
skips. Compiled binaries and their SASS are kept between runs (--cache) in
$SRGAN_FAST_KERNEL_CACHE, default ~/.cache/srgan_fast/kernel_check: Triton keys a binary by the
kernel's source, constexprs, options and versions, the SASS by the binary's hash, so an edited
kernel is compiled again and every check still reads every variant (about 8 s when nothing changed)."""

import json
import os
import subprocess
import sys

import pytest

triton = pytest.importorskip("triton")

from srgan_fast.kernels.resblock_fused import ctas_per_sm  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
CHECK = os.path.join(ROOT, "benchmarks", "kernel_check.py")


def test_ctas_per_sm_matches_the_occupancy_rules():
    # yardsticks: the shared kernel_report's readings of main at 4487512 (CUDA occupancy rules)
    assert ctas_per_sm(232, 73728, 4) == 2  # 232 regs x 128 threads: registers limit
    assert ctas_per_sm(141, 24576, 4) == 3  # 141 -> 144 regs per thread after the 256-per-warp rounding
    assert ctas_per_sm(64, 51200, 8) == 4  # 64 regs: 4 x 256 threads; shared 4 x 52 KB fits 228 KB
    assert ctas_per_sm(32, 0, 1) == 32  # the 32-CTA cap
    assert ctas_per_sm(255, 200 * 1024, 8) == 1  # never 0: a kernel that fits at all fits once
    assert ctas_per_sm(73, 0, 4) == 6  # 73 -> 80 registers a thread (256 per warp): 7 without the rounding
    assert ctas_per_sm(32, 57 * 1024, 4) == 3  # 57 KB + the 1 KB each CTA reserves: 4 without the reserve


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    if triton.__version__ != "3.6.0":
        pytest.skip(f"triton {triton.__version__} here; the check reads the card's 3.6.0 binaries (make venv pins it)")
    tools = os.path.join(os.path.dirname(triton.__file__), "backends", "nvidia", "bin")
    if not os.path.exists(os.path.join(tools, "cuobjdump")):
        pytest.skip("this triton wheel has no bundled cuobjdump")
    out = tmp_path_factory.mktemp("kc") / "rows.json"
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
    p = subprocess.run([sys.executable, CHECK, "--jobs", "2", "--json", str(out), *kept],
                       capture_output=True, text=True, cwd=ROOT, env=env, timeout=600)  # fmt: skip
    return p, json.loads(out.read_text()) if out.exists() else []


def test_kernel_check_passes(report):
    p, rows = report
    assert p.returncode == 0, p.stdout[-4000:] + p.stderr[-2000:]
    assert "every variant passes" in p.stdout
    assert len(rows) >= 60  # three backends' kernels, every autotune config


def test_no_variant_spills_and_every_conv_is_wgmma(report):
    _, rows = report
    for r in rows:
        assert "error" not in r, r
        assert r["local"] == 0 and r["stl_ldl"] == 0, (r["ops"], r["config"], r["local"])
        assert r["hgmma"] > 0, (r["ops"], r["config"])


def test_targets_of_the_kernels_issue(report):
    _, rows = report

    def best(pred):
        return min(r["ins_per_mma"] for r in rows if pred(r))

    body = best(lambda r: any(k in r["ops"] for k in ("block_conv1", "block_conv2")))
    head = best(lambda r: r["ops"] == "head")
    assert body <= 25, body
    assert head <= 150, head
    for r in rows:
        if r["ops"] == "tail":  # no scalar loads of an operand, and its wgmma overlap
            assert all(lp["narrow_ldg"] == 0 for lp in r["loops"]), r["config"]
            assert r["async_mma"], r["config"]
        if r["kernel"] == "tma":
            assert r["tma"] > 0 and all(lp["tma"] > 0 and lp["cpasync"] == 0 for lp in r["loops"]), r["config"]
        if r["kernel"] in ("pointer", "tma"):  # operands arrive by copies, never gathered into registers
            assert all(lp["ldg"] == 0 for lp in r["loops"]), (r["ops"], r["config"])


def test_resblock_grid_is_what_its_compiled_kernel_lets_reside(monkeypatch):
    """The launcher's persistent grid: SMs x ctas_per_sm(the loaded kernel's registers and shared
    memory), per config (the GPU path, exercised with a stand-in compiled kernel)."""
    from types import SimpleNamespace

    import torch

    from srgan_fast.kernels import resblock_fused as rf

    fake = SimpleNamespace(n_regs=141, metadata=SimpleNamespace(shared=24576), _init_handles=lambda: None)
    monkeypatch.setattr(rf._resblock_fused_kernel, "warmup", lambda *a, **k: fake)
    monkeypatch.setattr(rf, "_device_limits", lambda d: (132, dict(regs=65536, smem=233472, threads=2048)))
    monkeypatch.setattr(rf, "_PROGRAMS", {})
    x = torch.empty(1, 8, 8, 64)
    cfg = {"TILE_H": 16, "TILE_W": 16, "BLOCK_M": 64, "num_warps": 4}
    assert rf._programs_for(cfg, [x], {"C": 64, "K": 3}, torch.device("cpu")) == 132 * 3
    fake.n_regs = 232  # 232 registers: 2 CTAs of 4 warps fit
    assert rf._programs_for(dict(cfg, TILE_H=8), [x], {"C": 64, "K": 3}, torch.device("cpu")) == 132 * 2


def test_kernel_check_refuses_a_bad_size():
    p = subprocess.run([sys.executable, CHECK, "--size", "270by480"], capture_output=True, text=True, cwd=ROOT)
    assert p.returncode == 2 and "HxW" in p.stderr
