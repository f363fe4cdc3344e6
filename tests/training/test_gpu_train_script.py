"""benchmarks/gpu_train.sh end to end in its CPU dry-run mode (SRGAN_TRAIN_SMOKE=1)."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from ..conftest import need

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_gpu_train_script_smoke(datasets, tmp_path):
    need(datasets, "T91/HR", "Set5/HR", "Set14/HR")
    out = tmp_path / "train"
    env = dict(os.environ, SRGAN_TRAIN_SMOKE="1", SRGAN_FAST_DATA=str(datasets), PYTHON=sys.executable)
    cmd = ["bash", str(REPO / "benchmarks" / "gpu_train.sh"), str(out)]
    r = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=900)
    assert r.returncode == 0, (r.stdout[-3000:], r.stderr[-3000:])
    summary = (out / "summary.md").read_text()
    assert "(a) throughput probe" in summary and "(b) srresnet_x4" in summary and "srgan_run" in summary
    probe = [json.loads(x) for x in (out / "probe" / "results.jsonl").read_text().splitlines()]
    assert [p["batch"] for p in probe] == [4, 8] and all(p["crops_s"] > 0 for p in probe)
    for run in ("srresnet", "srgan"):
        assert (out / run / "DONE").exists() and (out / run / "last.safetensors").exists()
        assert list((out / run / "samples").glob("step_*.png"))
    gan = [json.loads(x) for x in (out / "srgan" / "log.jsonl").read_text().splitlines()]
    assert json.loads((out / "srgan" / "config.json").read_text())["init_from"] == str(
        (out / "srresnet" / "best.safetensors").resolve()
    )
    assert any("d_real" in g for g in gan) or any(g.get("event") == "stop" for g in gan)
    ev = json.loads((out / "eval.json").read_text())
    assert ev["bicubic"]["Set5"]["psnr"] == pytest.approx(28.43, abs=0.01)  # the published bicubic figure
    # a second call finds every stage done and only prints the summary again
    r2 = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert r2.returncode == 0 and r2.stdout.count("done before, skipped") == 3, r2.stdout[-2000:]
    # pack: at most 4 files, all small enough to come back from a device call
    packed = subprocess.run(
        [sys.executable, "-m", "srgan_fast.training.report", "pack", str(out), str(tmp_path / "pack")],
        cwd=REPO, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert packed.returncode == 0, packed.stderr
    files = sorted(p.name for p in (tmp_path / "pack").iterdir())
    assert files == ["gpu_train_results.tgz", "srgan_last.safetensors", "srresnet_best.safetensors"]
    assert all(p.stat().st_size < 16 * 2**20 for p in (tmp_path / "pack").iterdir())
