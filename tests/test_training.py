"""Trainer: resume equals an uninterrupted run; DDP on 2 CPU processes; both phases run."""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
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


def _discriminator_logits(run, datasets, g):
    """Logits of the run's trained discriminator on real T91 crops and on the generator `g`'s
    output for their LR, batched [real, fake] in train mode, the way the trainer calls it."""
    from srgan_fast.images import list_images, load_image
    from srgan_fast.metrics import imresize, modcrop
    from srgan_fast.models import Discriminator
    from training.checkpoint import load_state

    d = Discriminator()
    load_state(Path(run) / "state.safetensors", {"D": d}, {})
    photo = modcrop(load_image(list_images(datasets / "T91/HR")[0]), 4)
    hr = np.stack([photo[y : y + 32, x : x + 32] for y, x in ((0, 0), (32, 40), (64, 8), (16, 72))])
    lr = np.stack([imresize(h, scale=0.25) for h in hr])
    hr_t = torch.from_numpy(hr).permute(0, 3, 1, 2).float() / 127.5 - 1.0  # the trainer's ranges
    lr_t = torch.from_numpy(lr).permute(0, 3, 1, 2).float() / 255.0
    with torch.no_grad():
        logits = d.train()(torch.cat([hr_t, g.eval()(lr_t)]))
    return logits[:4], logits[4:]


def test_srgan_phase_mse_and_vgg_paths(datasets, tmp_path):
    from training import train

    train(_cfg(datasets, tmp_path / "p1", "iters=2"), progress=False)
    p1 = load_generator(tmp_path / "p1" / "last.safetensors")
    for run, loss, adv_weight in (("mse", "mse", 1e-3), ("mse_adv0", "mse", 0.0), ("vgg54", "vgg54", 1e-3)):
        s = train(
            _cfg(
                datasets,
                tmp_path / run,
                "phase=srgan",
                f"content_loss={loss}",
                f"adv_weight={adv_weight}",
                "vgg_weights=random",
                f"init_from={tmp_path / 'p1' / 'last.safetensors'}",
                "iters=2",
            ),
            progress=False,
        )
        recs = [json.loads(x) for x in (tmp_path / run / "log.jsonl").read_text().splitlines()]
        assert s["steps"] == 2 and len(recs) == 2
        # the generator's loss is content + adv_weight * adversarial, as logged
        for r in recs:
            assert r["loss"] == pytest.approx(r["content"] + adv_weight * r["adv"], rel=1e-6, abs=1e-9), r
        # the generator starts from phase 1: its first conv is unchanged up to 2 Adam steps
        p2 = load_generator(tmp_path / run / "last.safetensors")
        assert 0 < (p1.conv_first.weight - p2.conv_first.weight).abs().max() <= 2.5e-4
        if loss == "vgg54":
            continue
        # the discriminator learnt which is which: after 2 steps of BCE(real -> 1, fake -> 0) it
        # scores every real crop above every generated one, by a wide margin (at initialisation
        # the logits are ~0 in random order; with the labels swapped the signs flip)
        real, fake = _discriminator_logits(tmp_path / run, datasets, p2)
        assert real.min() > fake.max() and real.mean() - fake.mean() > 2.0, (real.tolist(), fake.tolist())
    # the adversarial gradient reaches the generator: with adv_weight 0 (same seed, data and
    # discriminator) its weights come out different
    g_adv = load_generator(tmp_path / "mse" / "last.safetensors").state_dict()
    g_no_adv = load_generator(tmp_path / "mse_adv0" / "last.safetensors").state_dict()
    assert any(not torch.equal(g_adv[k], g_no_adv[k]) for k in g_adv)


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
