"""`srgan-fast bench --device cpu`'s optional peer rows (issue 26): OpenVINO (f32 hint, and its
default precision) and ncnn (converted by pnnx, fp32), from the `[bench]` extra; and the
GFLOP/s column with each row's share of the CPU matmul peak measured in the same run.

Without the packages the rows are skipped with a one-line reason (no ImportError traceback);
with them, each row's output is checked against the engine's fp32 output on tiny models.
"""

from __future__ import annotations

import json
import statistics
import sys
import types

import numpy as np
import pytest
import torch

from srgan_fast import bench
from srgan_fast.bench import methods as bench_methods
from srgan_fast.engine import Engine
from srgan_fast.errors import MissingDependency
from srgan_fast.families.srresnet.arch import Generator
from srgan_fast.families.srvgg_compact.arch import CompactConfig, random_compact
from srgan_fast.plan import compile_plan
from srgan_fast.weights import load_generator, save_generator

CPU = torch.device("cpu")
PEERS = ["OpenVINO", "ncnn"]  # --methods substrings of the three peer rows
PEER_ROWS = {"OpenVINO f32": ("openvino",), "OpenVINO default": ("openvino",), "ncnn": ("ncnn", "pnnx")}


@pytest.fixture(scope="module")
def tiny_file(tmp_path_factory):
    torch.manual_seed(3)
    return str(save_generator(Generator("tiny_x4"), tmp_path_factory.mktemp("peers") / "tiny.safetensors"))


def _tiny_models():
    torch.manual_seed(5)
    return {
        "compact": random_compact(CompactConfig(num_feat=16, num_conv=2), seed=1),
        "srresnet": Generator("tiny_x4").eval(),  # 9x9 head/tail, BN, PReLU, (y + 1) / 2 output
    }


# ---------------------------------------------------------------- packages absent


@pytest.mark.parametrize("hidden", [("openvino", "ncnn", "pnnx"), ("pnnx",)])
def test_rows_without_their_packages_raise_a_one_line_reason(hidden, monkeypatch):
    for name in hidden:
        monkeypatch.setitem(sys.modules, name, None)  # `import name` now raises ImportError
    model = random_compact(CompactConfig(num_feat=4, num_conv=1), seed=0)
    rows = bench.methods_for(CPU, ["fp32"], model, PEERS)
    assert [r[0] for r in rows] == list(PEER_ROWS)
    for name, _, build in rows:
        missing = [p for p in PEER_ROWS[name] if p in hidden]
        if not missing:  # pnnx hidden alone: the OpenVINO rows do not need it
            continue
        with pytest.raises(MissingDependency) as e:
            build()
        msg = str(e.value)
        assert len(msg.splitlines()) == 1
        # names a package of the row (the one hidden, or one that is not installed on this machine)
        assert any(f"package {p}" in msg for p in PEER_ROWS[name]), msg
        assert "pip install 'srgan-fast[bench]'" in msg
    if "openvino" in hidden:  # OpenVINO cannot say its default precision: the row says so
        assert dict((n, d) for n, d, _ in rows)["OpenVINO default"] == "default"


def test_bench_skips_absent_peers_in_one_line_each(tiny_file, tmp_path, monkeypatch, capsys):
    for name in ("openvino", "ncnn", "pnnx"):
        monkeypatch.setitem(sys.modules, name, None)
    argv = ["--device", "cpu", "--model", tiny_file, "--preset", "8x8", "--repeats", "1", "--warmup", "0"]
    argv += ["--no-peak", "--methods", "eager NCHW", *PEERS, "--out", str(tmp_path)]
    assert bench.main(argv) == 0
    err = capsys.readouterr().err
    assert "Traceback" not in err and "ImportError" not in err
    skipped = [line for line in err.splitlines() if "skipped" in line]
    assert len(skipped) == 3, err
    for line, (row, pkgs) in zip(skipped, PEER_ROWS.items()):
        assert line.strip().startswith(row) and "MissingDependency" in line
        assert f"package {pkgs[0]}" in line and "srgan-fast[bench]" in line
    rows = [json.loads(x) for x in (tmp_path / "bench_engine.jsonl").read_text().splitlines()]
    assert [r["method"] for r in rows] == ["eager NCHW"]


def test_a_pnnx_killed_for_its_memory_fails_the_row_with_a_reason(tmp_path, monkeypatch):
    """pnnx's conversion can be OOM-killed on big models: it runs in a child process, so the
    bench survives and the row says why (here a stand-in pnnx that SIGKILLs itself)."""
    exe = tmp_path / "pnnx"
    exe.write_text("#!/bin/sh\nkill -9 $$\n")
    exe.chmod(0o755)
    monkeypatch.setitem(sys.modules, "pnnx", types.SimpleNamespace(EXEC_PATH=str(exe)))
    model = random_compact(CompactConfig(num_feat=4, num_conv=1), seed=0)
    with pytest.raises(RuntimeError, match=r"pnnx could not convert the model \(killed by signal 9 \(out of memory"):
        bench_methods.pnnx_to_ncnn(model, 3, 8, 8)


# ---------------------------------------------------------------- GFLOP/s and the peak


def test_cpu_peak_is_measured_per_dtype():
    for dtype in (torch.float32, torch.bfloat16):
        assert bench.cpu_peak_matmul_gflops(dtype, n=64, calls=3) > 0


def test_gflops_and_share_of_the_peak_of_each_rows_dtype(tiny_file, tmp_path, monkeypatch, capsys):
    """Each CPU row: GFLOP/s = 2 x the plan's MACs / median, and its share of the matmul peak of
    its own dtype (fp32 rows: fp32 peak, bf16 rows: bf16 peak), both measured in the run."""
    clock = [0.0]
    monkeypatch.setattr(bench, "now", lambda: clock[0])
    peaks = {torch.float32: 100.0, torch.bfloat16: 400.0}
    monkeypatch.setattr(bench, "cpu_peak_matmul_gflops", lambda dtype, **k: peaks[dtype])

    def method(cost):
        def build():
            def fn(x):
                clock[0] += cost
                return torch.zeros(x.shape[0], 3, 4 * x.shape[2], 4 * x.shape[3])

            return fn

        return build

    monkeypatch.setattr(
        bench,
        "methods_for",
        lambda *a, **k: [("eager NCHW", "fp32", method(0.5)), ("fake bf16", "bf16", method(0.25))],
    )
    argv = ["--device", "cpu", "--model", tiny_file, "--preset", "8x8", "--repeats", "3", "--warmup", "0"]
    assert bench.main([*argv, "--out", str(tmp_path)]) == 0
    rows = [json.loads(x) for x in (tmp_path / "bench_engine.jsonl").read_text().splitlines()]
    flop = 2 * compile_plan(load_generator(tiny_file)).model_macs * 8 * 8
    for r, cost, peak in zip(rows, (0.5, 0.25), (100.0, 400.0)):
        assert statistics.median(r["times_s"]) == pytest.approx(cost)
        assert r["gflops"] == pytest.approx(flop / cost / 1e9)
        assert r["share_of_peak"] == pytest.approx(r["gflops"] / peak)
        assert r["share_of_peak_dtype"] == r["dtype"]
        assert r["peak_fp32_matmul_gflops"] == 100.0 and r["peak_bf16_matmul_gflops"] == 400.0
    out = capsys.readouterr().out
    assert "peak matmul (torch.mm 2048^3" in out and "fp32 100, bf16 400 GFLOP/s" in out
    assert "| GFLOP/s (of peak) |" in out
    share = f"{rows[1]['share_of_peak']:.0%}"
    assert f"| {rows[1]['gflops']:.1f} ({share} bf16) |" in out


# ---------------------------------------------------------------- packages installed: parity


def _engine_fp32(model, x):
    y = Engine(model, device="cpu", dtype="fp32", backend="torch").upscale(x.permute(0, 2, 3, 1).contiguous())
    return torch.as_tensor(np.asarray(y)).permute(0, 3, 1, 2)


@pytest.mark.parametrize("family", ["compact", "srresnet"])
@pytest.mark.parametrize("row, tol", [("OpenVINO f32", 1e-4), ("OpenVINO default", 0.1), ("ncnn", 1e-4)])
def test_peer_row_matches_the_engine_fp32(row, tol, family):
    for pkg in PEER_ROWS[row]:
        pytest.importorskip(pkg)
    model = _tiny_models()[family]
    gen = torch.Generator().manual_seed(7)
    x = torch.rand(2, 3, 16, 16, generator=gen)  # batch 2: ncnn runs image by image
    x2 = torch.rand(2, 3, 16, 16, generator=gen)
    ((name, dtype, build),) = bench.methods_for(CPU, ["fp32"], model, [row])
    assert name == row
    want, want2 = _engine_fp32(model, x), _engine_fp32(model, x2)
    fn = build()
    y = fn(x).float()
    kept = y.clone()
    y2 = fn(x2).float()  # a second call (now compiled/converted) must not touch the first output
    assert torch.equal(y, kept)
    assert y.shape == want.shape == (2, 3, 64, 64)
    err = max((y - want).abs().max().item(), (y2 - want2).abs().max().item())
    assert err <= tol, f"{row} on {family}: max abs {err:.3g} > {tol}"
    assert (y - want).abs().mean().item() < tol / 4  # not only the worst pixel: the whole image
    if row == "OpenVINO f32" or row == "ncnn":
        assert dtype == "fp32"
        settings = fn.properties if row.startswith("OpenVINO") else fn.options
        if row == "ncnn":
            assert settings["num_threads"] == torch.get_num_threads()
            assert not any(settings[k] for k in ("use_fp16_storage", "use_fp16_packed", "use_fp16_arithmetic"))
            assert not settings["use_bf16_storage"]
        else:
            assert settings["INFERENCE_PRECISION_HINT"] == "f32"
    else:
        assert dtype == bench_methods.openvino_default_dtype() != "default"
        assert fn.properties["INFERENCE_PRECISION_HINT"] in ("f32", "bf16", "f16")


def test_bench_runs_the_peer_rows_end_to_end(tiny_file, tmp_path, capsys):
    for pkg in ("openvino", "ncnn", "pnnx"):
        pytest.importorskip(pkg)
    argv = ["--device", "cpu", "--model", tiny_file, "--preset", "16x16", "--repeats", "2", "--warmup", "0"]
    argv += ["--no-peak", "--methods", "eager NCHW", *PEERS, "--out", str(tmp_path)]
    assert bench.main(argv) == 0
    rows = {r["method"]: r for r in map(json.loads, (tmp_path / "bench_engine.jsonl").read_text().splitlines())}
    assert set(rows) == {"eager NCHW", *PEER_ROWS}
    for name in ("OpenVINO f32", "ncnn"):
        assert rows[name]["max_abs_err_vs_fp32"] <= 1e-4 and rows[name]["psnr_vs_fp32_db"] > 90
    assert rows["OpenVINO default"]["max_abs_err_vs_fp32"] <= 0.1
    assert rows["ncnn"]["runtime_settings"]["use_fp16_storage"] is False
    assert rows["OpenVINO f32"]["runtime_settings"]["INFERENCE_PRECISION_HINT"] == "f32"
    out = capsys.readouterr().out
    assert "| OpenVINO f32 | fp32 | 16x16 |" in out and "| ncnn | fp32 | 16x16 |" in out
