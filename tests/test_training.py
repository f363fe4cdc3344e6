"""Trainer: resume equals an uninterrupted run; DDP on 2 CPU processes; both phases run."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from srgan_fast.weights import load_generator

from .conftest import need

REPO = Path(__file__).resolve().parents[1]


def _cfg(datasets, out, *sets):
    from training import apply_overrides, from_preset

    need(datasets, "T91/HR")
    return apply_overrides(
        from_preset("tiny"),
        [f"out={out}", f"data_root={datasets}", "train_dirs=T91/HR", "val_dir=", *sets],
    )


def _losses(run):
    return [json.loads(line)["loss"] for line in (Path(run) / "log.jsonl").read_text().splitlines() if '"loss"' in line]


def test_resume_equals_uninterrupted(datasets, tmp_path):
    from training import train

    full = _cfg(datasets, tmp_path / "full", "iters=6", "ckpt_every=3")
    train(full, progress=False)
    part = _cfg(datasets, tmp_path / "part", "iters=3", "ckpt_every=3")
    train(part, progress=False)
    resumed = _cfg(datasets, tmp_path / "part", "iters=6", "ckpt_every=3")
    train(resumed, resume=True, progress=False)
    lf, lp = _losses(tmp_path / "full"), _losses(tmp_path / "part")
    assert len(lf) == len(lp) == 6
    assert lf == lp, (lf, lp)
    a = load_generator(tmp_path / "full" / "last.safetensors").state_dict()
    b = load_generator(tmp_path / "part" / "last.safetensors").state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_srgan_phase_mse_and_vgg_paths(datasets, tmp_path):
    from training import train

    train(_cfg(datasets, tmp_path / "p1", "iters=2"), progress=False)
    for loss in ("mse", "vgg54"):
        s = train(
            _cfg(
                datasets,
                tmp_path / loss,
                "phase=srgan",
                f"content_loss={loss}",
                "vgg_weights=random",
                f"init_from={tmp_path / 'p1' / 'last.safetensors'}",
                "iters=2",
            ),
            progress=False,
        )
        recs = [json.loads(x) for x in (tmp_path / loss / "log.jsonl").read_text().splitlines()]
        assert s["steps"] == 2
        assert all(r["lossD"] > 0 and r["adv"] > 0 for r in recs)
        # the generator starts from phase 1: its first conv is unchanged up to 2 Adam steps
        p1 = load_generator(tmp_path / "p1" / "last.safetensors").conv_first.weight
        p2 = load_generator(tmp_path / loss / "last.safetensors").conv_first.weight
        assert 0 < (p1 - p2).abs().max() <= 2.5e-4


def test_vgg54_without_weights_is_a_clear_error(tmp_path, monkeypatch):
    from training.losses import VGG54

    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    with pytest.raises(FileNotFoundError, match="content_loss=mse"):
        VGG54("")


def test_config_overrides():
    from training import apply_overrides, from_preset

    c = apply_overrides(
        from_preset("srresnet_x4"),
        ["iters=10", "lr_milestones=5,8", "amp=bf16", "channels_last=false", "lr=2e-4"],
    )
    assert (c.iters, c.lr_milestones, c.amp, c.channels_last, c.lr) == (
        10,
        [5, 8],
        "bf16",
        False,
        2e-4,
    )
    with pytest.raises(ValueError, match="unknown config key"):
        apply_overrides(c, ["nope=1"])


def test_ddp_two_cpu_processes(datasets, tmp_path):
    need(datasets, "T91/HR")
    env = dict(os.environ, OMP_NUM_THREADS="1")
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--nproc_per_node",
        "2",
        "--master_port",
        "29517",
        "-m",
        "training",
        "--preset",
        "tiny",
        "-q",
        "--set",
        f"out={tmp_path / 'ddp'}",
        f"data_root={datasets}",
        "train_dirs=T91/HR",
        "val_dir=",
        "iters=3",
        "batch_size=1",
    ]
    r = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    run = tmp_path / "ddp"
    sums = [json.loads((run / n).read_text()) for n in ("summary.json", "summary_rank1.json")]
    # DDP keeps the replicas identical: every rank ends with the same weights
    assert sums[0]["weights_sha"] == sums[1]["weights_sha"]
    assert all(s["steps"] == 3 for s in sums)
