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

from ..conftest import need

REPO = Path(__file__).resolve().parents[2]


def _cfg(datasets, out, *sets):
    from srgan_fast.training import apply_overrides, from_preset

    need(datasets, "T91/HR")
    return apply_overrides(
        from_preset("tiny"),
        [f"out={out}", f"data_root={datasets}", "train_dirs=T91/HR", "val_dir=", *sets],
    )


def _records(run):
    return [json.loads(line) for line in (Path(run) / "log.jsonl").read_text().splitlines() if line]


def _losses(run):
    return [r["loss"] for r in _records(run) if "loss" in r]


def _state(run):
    """Every tensor of a run's state.safetensors: weights, BN buffers, Adam moments, RNG."""
    from safetensors.torch import load_file

    return load_file(str(Path(run) / "state.safetensors"))


def _assert_same_state(a, b):
    assert sorted(a) == sorted(b)
    differ = [k for k in a if not torch.equal(a[k], b[k])]
    assert not differ, f"{len(differ)} tensors differ, e.g. {differ[:6]}"


def test_resume_equals_uninterrupted(datasets, tmp_path):
    from srgan_fast.training import train

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
    _assert_same_state(_state(tmp_path / "full"), _state(tmp_path / "part"))


def _discriminator_logits(run, datasets, g):
    """Logits of the run's trained discriminator on real T91 crops and on the generator `g`'s
    output for their LR, batched [real, fake] in train mode, the way the trainer calls it."""
    from srgan_fast.families.srresnet.arch import Discriminator
    from srgan_fast.io.images import list_images, load_image
    from srgan_fast.quality.metrics import imresize, modcrop
    from srgan_fast.training.checkpoint import load_state

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
    from srgan_fast.training import train

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
        recs = [r for r in _records(tmp_path / run) if "loss" in r]
        assert s["steps"] == 2 and len(recs) == 2
        # the generator's loss is content + adv_weight * adversarial, as logged
        for r in recs:
            assert r["loss"] == pytest.approx(r["content"] + adv_weight * r["adv"], rel=1e-6, abs=1e-9), r
            assert r["lossG"] == r["loss"] and r["crops_s"] > 0 and r["tflops"] > 0, r
        # D's mean belief that real / fake crops are real: probabilities, and a 2-step D is unsure
        assert all(0.05 < r["d_real"] < 0.95 and 0.05 < r["d_fake"] < 0.95 for r in recs)
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
    # that the adversarial gradient reaches the generator, and with which sign, is
    # test_generator_step_raises_fixed_discriminators_belief (no datasets needed)


# --- the GAN step's adversarial sign, VGG54's input mapping, the paper's constants -----------


class _OneBatch:
    """Stands in for DeviceCrops: every step gets the same (LR, HR) batch."""

    def __init__(self, lr, hr):
        self.lr, self.hr = lr, hr

    def batch(self, step):
        return self.lr, self.hr


class _FrozenOptimizer:
    """An optimizer that never steps: keeps the discriminator fixed through `Step`."""

    param_groups = []

    def zero_grad(self, set_to_none=True):
        pass

    def step(self):
        pass


def test_generator_step_raises_fixed_discriminators_belief():
    """One srgan-phase `Step` with the discriminator held fixed and the adversarial term alone
    (content 0, adv_weight 1): the generator is trained towards D saying "real", so D's logit on
    every generated crop goes up, and the logged adversarial loss is BCE(D(G(x)), 1)."""
    from dataclasses import replace

    import torch.nn.functional as F

    from srgan_fast.families.srresnet.arch import Discriminator, Generator, GeneratorConfig
    from srgan_fast.training import from_preset
    from srgan_fast.training.trainer import Step, _adam

    torch.manual_seed(0)
    cfg = replace(from_preset("tiny"), phase="srgan", adv_weight=1.0)
    G = Generator(GeneratorConfig.from_name("tiny_x4")).train()
    D = Discriminator().train()
    lr_b = torch.rand(4, 3, 8, 8)  # the trainer's ranges: LR in [0, 1], HR in [-1, 1]
    hr_b = torch.rand(4, 3, 32, 32) * 2 - 1
    d_before = [p.detach().clone() for p in D.parameters()]  # (BN running stats do move: unused in train mode)
    with torch.no_grad():
        z0 = D(G(lr_b))
    optG = _adam(G.parameters(), cfg, torch.device("cpu"))

    def no_content(sr, hr):
        return (sr * 0).sum()

    step = Step(cfg, _OneBatch(lr_b, hr_b), G, D, optG, _FrozenOptimizer(), no_content, torch.device("cpu"))
    out = step(0, 1e-4)  # one Adam step of the paper's lr: each weight moves by ~1e-4 down its gradient
    with torch.no_grad():
        z1 = D(G(lr_b))
    assert all(torch.equal(p, q) for p, q in zip(D.parameters(), d_before))  # D was fixed
    # the step's adversarial term is BCE against the target "real" (1), on the pre-step crops
    want = F.binary_cross_entropy_with_logits(z0, torch.ones_like(z0))
    assert out["adv"].item() == pytest.approx(want.item(), rel=1e-5), (out["adv"].item(), want.item())
    assert out["loss"].item() == pytest.approx(want.item(), rel=1e-5)  # content 0, adv_weight 1
    # the sign: D's belief that the generated crops are real went up, on every crop, clearly
    # (measured rise ~0.15 per logit; with the target "fake" every logit falls by as much)
    rise = z1 - z0
    assert rise.min() > 0.05, (z0.tolist(), z1.tolist())
    assert torch.sigmoid(z1).mean() > torch.sigmoid(z0).mean()
    assert F.binary_cross_entropy_with_logits(z1, torch.ones_like(z1)) < want


def test_vgg54_maps_minus1_1_to_imagenet_normalised_input():
    """VGG54 takes images in [-1, 1] (the generator's range) and must hand VGG19 what it was
    trained on: [0, 1] pixels normalised by ImageNet's mean and std, channel by channel."""
    from srgan_fast.training.losses import VGG54

    torch.manual_seed(0)
    vgg = VGG54("random")
    seen = []
    vgg.features[0].register_forward_pre_hook(lambda m, args: seen.append(args[0].detach().clone()))
    values = (-1.0, -0.5, 0.0, 1.0)
    x = torch.tensor(values).view(4, 1, 1, 1).expand(4, 3, 16, 16).contiguous()
    with torch.no_grad():
        f = vgg.feats(x)
    assert len(seen) == 1 and seen[0].shape == (4, 3, 16, 16)
    mean, std = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)  # ImageNet's, as torchvision's VGG19
    for i, v in enumerate(values):
        for c in range(3):
            want = ((v + 1) / 2 - mean[c]) / std[c]
            got = seen[0][i, c]
            err = (got - want).abs().max().item()
            assert err < 1e-6, f"pixel {v} channel {c}: VGG19 gets {got.flatten()[0].item():.6f}, want {want:.6f}"
    # -1 (black) -> -mean/std; +1 (white) -> (1 - mean)/std: literal values for channel 0
    assert seen[0][0, 0, 0, 0].item() == pytest.approx(-2.1179039, abs=1e-6)
    assert seen[0][3, 0, 0, 0].item() == pytest.approx(2.2489083, abs=1e-6)
    # the feature maps are rescaled by the paper's 1/12.75
    with torch.no_grad():
        assert torch.allclose(f, vgg.features(seen[0]) / 12.75, rtol=1e-6, atol=1e-7)
    # forward(sr, hr) sends both images through the same mapping
    seen.clear()
    with torch.no_grad():
        vgg(x, -x)
    assert len(seen) == 2 and torch.allclose(seen[1][0], seen[0][3], atol=1e-6)  # hr = +1 where sr = -1


def test_presets_pin_the_papers_constants():
    """Ledig et al. 2017 (SRGAN), section 3.2: Adam (beta1 0.9), batches of 16 random 96x96 HR
    crops; SRResNet with MSE at lr 1e-4; SRGAN from the SRResNet weights, VGG54 content loss with
    maps rescaled by 1/12.75, adversarial weight 1e-3, lr 1e-4 for the first half of its updates
    then 1e-5. (The paper's update counts, 1e6 and 1e5 + 1e5, are not the presets': not pinned.)"""
    from srgan_fast.training import PRESETS, from_preset
    from srgan_fast.training.config import TrainConfig

    assert TrainConfig().adv_weight == 1e-3
    p1, p2 = from_preset("srresnet_x4"), from_preset("srgan_x4")
    for c in (p1, p2):
        assert c.model == "srresnet_x4"
        assert c.lr == 1e-4 and c.betas[0] == 0.9
        assert c.batch_size == 16 and c.crop == 96
    assert p1.phase == "srresnet" and p1.lr_milestones == []
    assert p2.phase == "srgan" and p2.init_from == "srresnet_x4"
    assert p2.content_loss == "vgg54" and p2.vgg_scale == 1 / 12.75
    assert p2.adv_weight == 1e-3
    # one drop by 10 (the trainer multiplies lr by 0.1 per milestone passed), half way through
    assert p2.lr_milestones == [p2.iters // 2]
    assert p2.lr * 0.1 == pytest.approx(1e-5, rel=1e-12)
    assert PRESETS["srgan_x4"].adv_weight == 1e-3  # the table itself, not only a copy


def test_training_ranges_lr_0_1_hr_minus1_1():
    """The data the trainer feeds: LR in [0, 1] (pixel / 255), HR in [-1, 1] (pixel / 127.5 - 1)."""
    import numpy as np

    from srgan_fast.training.data import DeviceCrops

    hr = np.empty((32, 32, 3), np.uint8)
    hr[:] = (0, 51, 255)
    lr = np.empty((8, 8, 3), np.uint8)
    lr[:] = (0, 102, 255)
    lr_b, hr_b = DeviceCrops([(lr, hr)], 32, 4, seed=0, batch=2, channels_last=False).batch(0)
    assert lr_b.shape == (2, 3, 8, 8) and hr_b.shape == (2, 3, 32, 32)
    for c, (want_lr, want_hr) in enumerate(((0.0, -1.0), (0.4, -0.6), (1.0, 1.0))):
        assert torch.allclose(lr_b[:, c], torch.full_like(lr_b[:, c], want_lr), atol=1e-6), c
        assert torch.allclose(hr_b[:, c], torch.full_like(hr_b[:, c], want_hr), atol=1e-6), c


def test_vgg54_without_weights_is_a_clear_error(tmp_path, monkeypatch):
    from srgan_fast.training.losses import VGG54

    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    with pytest.raises(FileNotFoundError, match="content_loss=mse"):
        VGG54("")


def test_config_overrides():
    from srgan_fast.training import apply_overrides, from_preset

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
        "srgan_fast.training",
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


# --- on-device data -------------------------------------------------------------------------


def _photos(datasets, crop=32):
    from srgan_fast.training.data import load_photos

    need(datasets, "T91/HR")
    return load_photos([datasets / "T91" / "HR"], 4, crop)


def test_device_crops_equal_numpy_slicing(datasets):
    """The on-device gather (index arithmetic) cuts exactly the crops numpy slicing cuts."""
    import numpy as np

    from srgan_fast.training.data import DeviceCrops, reference_crop

    pairs = _photos(datasets)
    ds = DeviceCrops(pairs, 32, 4, seed=7, batch=48)
    p = ds.params(5)
    lr, hr = ds.batch(5)
    assert lr.is_contiguous(memory_format=torch.channels_last) and lr.dtype == torch.float32
    for i in range(48):
        want_lr, want_hr = reference_crop(pairs, 32, 4, p, i)
        got_lr = (lr[i].permute(1, 2, 0) * 255).round().to(torch.uint8).numpy()
        got_hr = ((hr[i].permute(1, 2, 0) + 1) * 127.5).round().to(torch.uint8).numpy()
        assert np.array_equal(got_lr, want_lr), i
        assert np.array_equal(got_hr, want_hr), i
    # all 8 flip/transpose combinations occur, and crops reach every photo's far edge
    combos = {(int(a), int(b), int(c)) for a, b, c in zip(p["hflip"], p["vflip"], p["transpose"])}
    assert len(combos) == 8
    big = ds.params(0)  # 48 samples is too few for the edge check: use many steps' draws
    ys = torch.cat([ds.params(s)["y"] - (ds.lr_h[ds.params(s)["photo"]] - 8) for s in range(200)])
    assert int(ys.max()) == 0 and int(ys.min()) < -20 and big["photo"].max() < len(pairs)


def test_device_crops_pure_function_of_step_and_rank(datasets):
    from srgan_fast.training.data import DeviceCrops

    pairs = _photos(datasets)
    a = DeviceCrops(pairs, 32, 4, seed=0, batch=4)
    b = DeviceCrops(pairs, 32, 4, seed=0, batch=4)
    for s in (3, 0, 3):  # any order, any object: step 3 is step 3
        la, ha = a.batch(s)
        lb, hb = b.batch(3)
        assert torch.equal(ha, hb) == (s == 3)
    # DDP: rank r of 2 takes indices (2 step + r) * batch + [0, batch): disjoint, and rank 0's
    # share equals the first half of a single process's batch of 2 x batch
    r0 = DeviceCrops(pairs, 32, 4, seed=0, batch=4, rank=0, world=2)
    r1 = DeviceCrops(pairs, 32, 4, seed=0, batch=4, rank=1, world=2)
    one = DeviceCrops(pairs, 32, 4, seed=0, batch=8)
    assert set(r0.indices(9).tolist()).isdisjoint(r1.indices(9).tolist())
    assert torch.equal(torch.cat([r0.batch(9)[1], r1.batch(9)[1]]), one.batch(9)[1])
    assert not torch.equal(DeviceCrops(pairs, 32, 4, seed=1, batch=4).batch(3)[1], hb)


def test_hash_draws_are_uniform_and_fixed():
    from srgan_fast.training.data import hash32, sample_draws

    d = sample_draws(0, torch.arange(20000))
    assert d.min() >= 0 and d.max() < 2**32
    bits = (d >> 31).float().mean(0)  # each of the 6 draws' top bit: a fair coin
    assert ((bits - 0.5).abs() < 0.02).all(), bits

    # the same values as the hash on Python ints (no int64 overflow anywhere), fixed forever:
    # a change of hash would silently change every run's data
    def ref(x):
        x &= 0xFFFFFFFF
        x = (((x >> 16) ^ x) * 0x45D9F3B) & 0xFFFFFFFF
        x = (((x >> 16) ^ x) * 0x45D9F3B) & 0xFFFFFFFF
        return (x >> 16) ^ x

    xs = [0, 1, 12345, 2**31 - 1, 2**31, 2**32 - 1]
    assert hash32(torch.tensor(xs)).tolist() == [ref(x) for x in xs]
    assert [ref(x) for x in (1, 2**32 - 1)] == [824515495, 539527247]


# --- run time, init_from, interruption, corrupt state -----------------------------------------


def _set_state_meta(path, **kv):
    from safetensors import safe_open
    from safetensors.torch import load_file, save_file

    t = load_file(str(path))
    with safe_open(str(path), framework="pt") as f:
        meta = json.loads(f.metadata()["json"])
    meta.update(kv)
    save_file(t, str(path), metadata={"json": json.dumps(meta)})


def test_max_minutes_and_time_milestones_count_across_resume(datasets, tmp_path):
    from srgan_fast.training import train

    run = tmp_path / "run"
    train(_cfg(datasets, run, "iters=2", "lr=1e-3"), progress=False)
    # pretend the first part ran 10 minutes: a budget of 9 is spent, resuming trains nothing
    _set_state_meta(run / "state.safetensors", elapsed_s=600.0)
    s = train(_cfg(datasets, run, "iters=6", "max_minutes=9"), resume=True, progress=False)
    assert s["steps"] == 2 and s["seconds"] >= 600
    assert [r for r in _records(run) if r.get("event") == "stop"][-1]["step"] == 2
    # with 20 minutes, the 50% milestone (600 s) is already behind: lr is 0.1 x from the first step
    train(
        _cfg(datasets, run, "iters=4", "lr=1e-3", "max_minutes=20", "time_milestones=0.5"), resume=True, progress=False
    )
    recs = [r for r in _records(run) if "loss" in r]
    assert [r["lr"] for r in recs] == pytest.approx([1e-3, 1e-3, 1e-4, 1e-4])
    assert all(r["elapsed_s"] > 600 for r in recs[2:])


def test_srgan_preset_init_from_bundled_any_folder(datasets, tmp_path, monkeypatch):
    """The srgan_x4 preset starts from the bundled srresnet_x4, whatever the current folder."""
    from srgan_fast.training import apply_overrides, from_preset, train
    from srgan_fast.training.trainer import resolve_init

    need(datasets, "T91/HR")
    monkeypatch.chdir(tmp_path)
    bundled = resolve_init("srresnet_x4")
    assert bundled.is_file() and bundled.parent.name == "weights"
    # the old preset's repository-relative path still resolves from another folder
    assert resolve_init("srgan_fast/weights/srresnet_x4.safetensors") == bundled
    cfg = apply_overrides(
        from_preset("srgan_x4"),
        ["out=g", f"data_root={datasets}", "train_dirs=T91/HR", "val_dir=", "content_loss=mse"]
        + ["crop=32", "batch_size=2", "iters=1", "log_every=1", "channels_last=false"],
    )
    assert cfg.init_from == "srresnet_x4"
    train(cfg, progress=False)
    assert json.loads((tmp_path / "g" / "config.json").read_text())["init_from"] == "srresnet_x4"
    w0 = load_generator("srresnet_x4").conv_first.weight
    w1 = load_generator(tmp_path / "g" / "last.safetensors").conv_first.weight
    assert 0 < (w0 - w1).abs().max() <= 1.5e-4  # one Adam step of lr 1e-4 from the bundled weights


def test_init_from_relative_path_is_recorded_absolute(datasets, tmp_path, monkeypatch):
    from srgan_fast.training import train

    train(_cfg(datasets, tmp_path / "p1", "iters=1"), progress=False)
    monkeypatch.chdir(tmp_path)
    train(_cfg(datasets, tmp_path / "p2", "iters=1", "init_from=p1/last.safetensors"), progress=False)
    rec = json.loads((tmp_path / "p2" / "config.json").read_text())["init_from"]
    assert rec == str((tmp_path / "p1" / "last.safetensors").resolve())
    with pytest.raises(ValueError, match="no such weights file"):
        train(_cfg(datasets, tmp_path / "p3", "iters=1", "init_from=nope/x.safetensors"), progress=False)


def _interrupt_at(monkeypatch, call: int):
    """Make the generator send this process SIGINT right after its `call`-th training forward:
    the BN buffers are updated, the optimizer step of that training step has not run."""
    import signal

    import srgan_fast.training.trainer as tr

    calls = {"n": 0}

    class Interrupting(tr.Generator):
        def forward(self, x):
            y = super().forward(x)
            if self.training:
                calls["n"] += 1
                if calls["n"] == call:
                    os.kill(os.getpid(), signal.SIGINT)
            return y

    monkeypatch.setattr(tr, "Generator", Interrupting)
    return calls


def test_sigint_mid_step_then_resume_is_exact(datasets, tmp_path, monkeypatch, capsys):
    """Ctrl-C inside a step: the checkpoint is taken at the step boundary, and resuming gives
    bit-identical weights, BN buffers and Adam moments to a run never interrupted."""
    import threading

    from srgan_fast.training import train
    from srgan_fast.training.__main__ import main
    from srgan_fast.training.trainer import Interrupted

    if threading.current_thread() is not threading.main_thread():
        pytest.skip("signal handlers (and this test's SIGINT) need the main thread")
    full = tmp_path / "full"
    train(_cfg(datasets, full, "iters=6", "ckpt_every=100"), progress=False)

    part = tmp_path / "part"
    _interrupt_at(monkeypatch, 3)
    with pytest.raises(Interrupted) as e:
        train(_cfg(datasets, part, "iters=6", "ckpt_every=100"), progress=False)
    assert e.value.step == 3 and e.value.signame == "SIGINT"
    assert [r for r in _records(part) if r.get("event") == "interrupted"][0]["step"] == 3
    monkeypatch.undo()
    train(_cfg(datasets, part, "iters=6", "ckpt_every=100"), resume=True, progress=False)
    assert _losses(full) == _losses(part)
    _assert_same_state(_state(full), _state(part))

    # the command line: one line, exit 130, and the checkpoint is there to resume from
    _interrupt_at(monkeypatch, 2)
    capsys.readouterr()
    args = ["--preset", "tiny", "-q", "--set", f"out={tmp_path / 'cli'}", f"data_root={datasets}"]
    rc = main([*args, "train_dirs=T91/HR", "val_dir=", "iters=5"])
    err = capsys.readouterr().err.strip()
    assert rc == 130 and len(err.splitlines()) == 1, err
    assert "SIGINT at step 2" in err and "--resume" in err
    assert (tmp_path / "cli" / "state.safetensors").exists()


def test_corrupt_state_on_resume_is_one_clear_line(datasets, tmp_path, capsys):
    from srgan_fast.training import train
    from srgan_fast.training.__main__ import main
    from srgan_fast.training.checkpoint import StateError

    run = tmp_path / "run"
    train(_cfg(datasets, run, "iters=1"), progress=False)
    st = run / "state.safetensors"
    st.write_bytes(st.read_bytes()[: st.stat().st_size // 2])  # truncated, as by a full disk
    with pytest.raises(StateError, match="state.safetensors is corrupt or truncated.*delete it"):
        train(_cfg(datasets, run, "iters=2"), resume=True, progress=False)
    args = ["--preset", "tiny", "-q", "--resume", "--set", f"out={run}", f"data_root={datasets}", "iters=2"]
    assert main(args) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and str(st) in err and "without --resume" in err, err
    # another phase's state: says it does not fit, not a traceback
    train(_cfg(datasets, tmp_path / "p1", "iters=1"), progress=False)
    with pytest.raises(StateError, match="does not fit"):
        train(
            _cfg(datasets, tmp_path / "p1", "iters=2", "phase=srgan", "content_loss=mse"), resume=True, progress=False
        )


def test_validation_saves_fixed_sample_crops(datasets, tmp_path):
    import numpy as np
    from PIL import Image

    from srgan_fast.io.images import list_images, load_image
    from srgan_fast.quality.metrics import modcrop
    from srgan_fast.training import train

    need(datasets, "Set5/HR")
    run = tmp_path / "v"
    train(_cfg(datasets, run, "iters=2", "val_dir=Set5", "val_every=1", "samples=2"), progress=False)
    files = sorted((run / "samples").glob("*.png"))
    assert [f.name for f in files] == ["step_0000001.png", "step_0000002.png"]
    im = np.asarray(Image.open(files[-1]))
    assert im.shape == (2 * 192, 3 * 192, 3)  # 2 crops of 48 LR px: LR (nearest) | SR | HR
    hr = modcrop(load_image(list_images(datasets / "Set5" / "HR")[0]), 4)
    y, x = (hr.shape[0] // 4 - 48) // 2 * 4, (hr.shape[1] // 4 - 48) // 2 * 4
    assert np.array_equal(im[:192, 384:], hr[y : y + 192, x : x + 192])
    assert not np.array_equal(im[:192, 192:384], np.asarray(Image.open(files[0]))[:192, 192:384])  # SR moved
    vals = [r for r in _records(run) if "val_psnr" in r]
    assert [r["step"] for r in vals] == [1, 2]
    # the texture measure is logged beside PSNR; a tiny random model is far from the photos'
    assert all(0.0 <= r["val_texture"] < 5.0 and r["val_texture"] != 1.0 for r in vals), vals


@pytest.mark.slow
def test_compile_matches_eager(datasets, tmp_path):
    """compile=default (inductor, C++ on the CPU) trains to the same weights up to rounding."""
    from srgan_fast.training import train

    train(_cfg(datasets, tmp_path / "e", "iters=3"), progress=False)
    train(_cfg(datasets, tmp_path / "c", "iters=3", "compile=default"), progress=False)
    a = load_generator(tmp_path / "e" / "last.safetensors").state_dict()
    b = load_generator(tmp_path / "c" / "last.safetensors").state_dict()
    worst = max((a[k] - b[k]).abs().max().item() for k in a)
    assert worst < 1e-4, worst
    assert _losses(tmp_path / "e") == pytest.approx(_losses(tmp_path / "c"), rel=1e-3)


def test_stop_sync_decides_time_budget_milestones_and_ddp_agreement():
    """The stop decision alone: max_minutes and time_milestones from the run time, a signal
    first; under DDP only every 16 steps, with rank 0's clock and any rank's signal."""
    from srgan_fast.training.trainer import _StopFlag, _StopSync

    flag = _StopFlag()  # not entered: no handlers, signame None until set
    s = _StopSync(10, [0.5, 0.8])
    assert [(s(3, t, flag), s.time_drops) for t in (0.0, 299.0, 300.0, 480.0, 600.0)] == [
        (None, 0),
        (None, 0),
        (None, 1),
        (None, 2),
        (None, 2),  # the budget is spent only past 600 s
    ]
    assert s(7, 601.2, flag) == "max_minutes=10 reached at step 7 (10.02 min in all)"
    none = _StopSync(0, [0.5])  # max_minutes=0: no budget, milestones ignored
    assert none(5, 1e9, flag) is None and none.time_drops == 0
    flag.signame = "SIGINT"
    assert s(8, 601.2, flag) == "signal"  # a signal wins over the clock

    def ranks(*others):
        """reduce_max as if the other ranks sent `others`; records what this rank sent."""
        sent = []

        def reduce_max(v):
            sent.append(v)
            return [max(col) for col in zip(v, *others)]

        return sent, reduce_max

    # rank 1, over budget on its own clock: off the 16-step grid nothing is exchanged or decided
    flag = _StopFlag()
    sent, rmax = ranks([0.0, 0.0, 1.0])
    r1 = _StopSync(10, [0.5], world=2, is_main=False, reduce_max=rmax)
    assert r1(5, 700.0, flag) is None and sent == [] and r1.time_drops == 0
    # on it: rank 1's clock does not count, rank 0's milestone does (the same lr on every rank)
    assert r1(16, 700.0, flag) is None and sent == [[0.0, 0.0, 0.0]] and r1.time_drops == 1
    # rank 0's budget is spent: rank 1 stops too (its message gives its own clock)
    sent, rmax = ranks([0.0, 1.0, 1.0])
    r1 = _StopSync(10, [0.5], world=2, is_main=False, reduce_max=rmax)
    assert r1(32, 120.0, flag) == "max_minutes=10 reached at step 32 (2.00 min in all)"
    assert r1.time_drops == 1
    # rank 0, over budget: it sends its clock's verdict and stops
    sent, rmax = ranks([0.0, 0.0, 0.0])
    r0 = _StopSync(10, [0.5], world=2, is_main=True, reduce_max=rmax)
    assert r0(48, 601.2, flag).startswith("max_minutes=10 reached at step 48") and sent == [[0.0, 1.0, 1.0]]
    # another rank was signalled: this one stops too, as by SIGTERM
    sent, rmax = ranks([1.0, 0.0, 0.0])
    r0 = _StopSync(10, [], world=2, is_main=True, reduce_max=rmax)
    assert r0(15, 0.0, flag) is None and flag.signame is None  # not yet: off the grid
    assert r0(16, 0.0, flag) == "signal" and flag.signame == "SIGTERM"
    # this rank's own signal is sent to the others and keeps its name
    flag = _StopFlag()
    flag.signame = "SIGINT"
    sent, rmax = ranks([0.0, 0.0, 0.0])
    r1 = _StopSync(0, [], world=2, is_main=False, reduce_max=rmax)
    assert r1(0, 0.0, flag) == "signal" and sent == [[1.0, 0.0, 0.0]] and flag.signame == "SIGINT"
