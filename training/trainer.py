"""The reference trainer: SRResNet (MSE) phase and SRGAN (content + adversarial) phase.

Runs on one CPU/GPU, or under `torchrun --nproc_per_node N` with DistributedDataParallel
(gloo on CPU, nccl on GPU). Rank r of w takes its own share of every step's samples, so
the global batch is w x batch_size.
"""

from __future__ import annotations

import json
import math
import os
import sys
import time
from dataclasses import asdict
from pathlib import Path

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch.utils.data import DataLoader

from srgan_fast.datasets import data_root
from srgan_fast.models import Discriminator, Generator, GeneratorConfig
from srgan_fast.weights import load_generator, save_generator

from .checkpoint import load_state, save_state
from .config import TrainConfig
from .data import OffsetSampler, PairedCrops, load_photos

__all__ = ["train"]


def _resolve_dir(p: str, root: Path | None) -> Path:
    q = Path(p)
    if q.is_absolute() or q.exists() or root is None:
        return q
    return root / q


def _lr_at(cfg: TrainConfig, step: int, elapsed_s: float = 0.0) -> float:
    n = sum(1 for m in cfg.lr_milestones if step >= m)
    if cfg.max_minutes:
        n += sum(1 for f in cfg.time_milestones if elapsed_s >= f * cfg.max_minutes * 60)
    return cfg.lr * 0.1**n


def _unwrap(m):
    return m.module if hasattr(m, "module") else m


def train(cfg: TrainConfig, resume: bool = False, progress: bool = True) -> dict:
    """Train as `cfg` says; returns a summary (steps, final loss, best validation PSNR)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if cfg.device == "auto":
        dev = torch.device(f"cuda:{local_rank}" if torch.cuda.is_available() else "cpu")
    else:
        dev = torch.device(cfg.device)
        if dev.type == "cuda" and dev.index is None:
            dev = torch.device(f"cuda:{local_rank}")
    if world > 1 and not dist.is_initialized():
        dist.init_process_group("nccl" if dev.type == "cuda" else "gloo")
    if dev.type == "cuda":
        torch.cuda.set_device(dev)
        torch.backends.cudnn.benchmark = True
    is_main = rank == 0

    torch.manual_seed(cfg.seed)
    gcfg = GeneratorConfig.from_name(cfg.model)
    G = Generator(gcfg)
    if cfg.phase == "srgan" and cfg.init_from:
        G.load_state_dict(load_generator(cfg.init_from).state_dict())
    D = Discriminator() if cfg.phase == "srgan" else None
    mem = torch.channels_last if cfg.channels_last else torch.contiguous_format
    G = G.to(dev, memory_format=mem)
    if D is not None:
        D = D.to(dev, memory_format=mem)
    content = None
    if cfg.phase == "srgan" and cfg.content_loss == "vgg54":
        from .losses import VGG54

        content = VGG54(cfg.vgg_weights, scale=cfg.vgg_scale).to(dev, memory_format=mem)

    optG = torch.optim.Adam(G.parameters(), lr=cfg.lr, betas=tuple(cfg.betas))
    optD = torch.optim.Adam(D.parameters(), lr=cfg.lr, betas=tuple(cfg.betas)) if D else None
    models = {"G": G} | ({"D": D} if D else {})
    optims = {"G": optG} | ({"D": optD} if optD else {})

    run = Path(cfg.out)
    state_path = run / "state.safetensors"
    start, best = 0, -math.inf
    if resume:
        if not state_path.exists():
            raise FileNotFoundError(f"--resume: no {state_path} to resume from")
        meta = load_state(state_path, models, optims)
        start, best = int(meta["step"]), float(meta.get("best_psnr", -math.inf))
    if is_main:
        run.mkdir(parents=True, exist_ok=True)
        (run / "config.json").write_text(cfg.to_json() + "\n")

    if world > 1:
        ddp = torch.nn.parallel.DistributedDataParallel
        ids = [dev.index] if dev.type == "cuda" else None
        G = ddp(G, device_ids=ids)
        if D is not None:
            D = ddp(D, device_ids=ids)

    root = data_root(cfg.data_root or None)
    dirs = [_resolve_dir(d, root) for d in cfg.train_dirs]
    pairs = load_photos(dirs, gcfg.scale, cfg.crop)
    ds = PairedCrops(pairs, cfg.crop, gcfg.scale, cfg.seed, length=(cfg.iters + 1) * world * cfg.batch_size)
    loader = DataLoader(
        ds,
        batch_size=cfg.batch_size,
        sampler=OffsetSampler(start, cfg.iters, cfg.batch_size, rank, world),
        num_workers=cfg.workers,
        pin_memory=dev.type == "cuda",
        drop_last=True,
        persistent_workers=False,
    )
    val_dir = _resolve_dir(cfg.val_dir, root) if cfg.val_dir else None

    amp = cfg.amp == "bf16"
    log = open(run / "log.jsonl", "a") if is_main else None
    bar = None
    if is_main and progress:
        from tqdm import tqdm

        bar = tqdm(total=cfg.iters, initial=start, desc=f"train {cfg.phase}", unit="it", file=sys.stderr)

    def checkpoint(step: int, loss_val: float) -> None:
        if not is_main:
            return
        card = {"trained": f"{cfg.phase} {step} it", "config": asdict(cfg), "loss": loss_val}
        save_generator(_unwrap(G), run / "last.safetensors", card=card)
        save_state(
            state_path,
            step,
            {k: _unwrap(m) for k, m in models.items()},
            optims,
            {"best_psnr": best if math.isfinite(best) else -1e9},
        )

    def validate(step: int) -> float:
        nonlocal best
        from srgan_fast.evaluate import evaluate

        g = _unwrap(G)
        g.eval()
        res = evaluate(val_dir, method=g, device=str(dev), progress=False)
        g.train()
        rec = {"step": step, "val_psnr": res["mean_psnr"], "val_ssim": res["mean_ssim"]}
        log.write(json.dumps(rec) + "\n")
        log.flush()
        if bar is not None:
            bar.write(f"step {step}: {val_dir.name} PSNR {res['mean_psnr']:.3f} dB SSIM {res['mean_ssim']:.4f}")
        if res["mean_psnr"] > best:
            best = res["mean_psnr"]
            card = {
                "trained": f"{cfg.phase} {step} it",
                "config": asdict(cfg),
                "val": {val_dir.name: {"psnr": res["mean_psnr"], "ssim": res["mean_ssim"]}},
            }
            save_generator(g, run / "best.safetensors", card=card)
        return res["mean_psnr"]

    bce = F.binary_cross_entropy_with_logits
    step = start
    t_start = time.time()
    t_log = time.time()
    loss_val = float("nan")
    G.train()
    try:
        for lr_b, hr_b in loader:
            lr_b = lr_b.to(dev, non_blocking=True).contiguous(memory_format=mem)
            hr_b = hr_b.to(dev, non_blocking=True).contiguous(memory_format=mem)
            cur_lr = _lr_at(cfg, step, time.time() - t_start)
            for o in optims.values():
                for g in o.param_groups:
                    g["lr"] = cur_lr
            with torch.autocast(dev.type, dtype=torch.bfloat16, enabled=amp):
                sr = G(lr_b)
            rec = {}
            if cfg.phase == "srresnet":
                loss = F.mse_loss(sr.float(), hr_b)
                optG.zero_grad(set_to_none=True)
                loss.backward()
                optG.step()
                rec["loss"] = loss_val = loss.item()
            else:
                # discriminator step: real and fake in one forward (one DDP forward per backward)
                with torch.autocast(dev.type, dtype=torch.bfloat16, enabled=amp):
                    logits = D(torch.cat([hr_b, sr.detach()])).float()
                n = hr_b.shape[0]
                lossD = bce(logits[:n], torch.ones_like(logits[:n])) + bce(logits[n:], torch.zeros_like(logits[n:]))
                optD.zero_grad(set_to_none=True)
                lossD.backward()
                optD.step()
                # generator step: content + adv_weight * adversarial
                with torch.autocast(dev.type, dtype=torch.bfloat16, enabled=amp):
                    fake_logits = D(sr).float()
                    c = content(sr.float(), hr_b) if content is not None else F.mse_loss(sr.float(), hr_b)
                adv = bce(fake_logits, torch.ones_like(fake_logits))
                lossG = c + cfg.adv_weight * adv
                optG.zero_grad(set_to_none=True)
                lossG.backward()
                optG.step()
                rec.update(loss=lossG.item(), content=c.item(), adv=adv.item(), lossD=lossD.item())
                loss_val = rec["loss"]
            if not math.isfinite(loss_val):
                raise FloatingPointError(f"loss became {loss_val} at step {step}; lower lr or disable amp")
            step += 1
            if bar is not None:
                bar.update(1)
                bar.set_postfix(loss=f"{loss_val:.4g}", lr=f"{cur_lr:.0e}")
            if is_main and cfg.log_every and step % cfg.log_every == 0:
                now = time.time()
                rec.update(
                    step=step,
                    lr=cur_lr,
                    it_s=cfg.log_every / max(now - t_log, 1e-9),
                    elapsed_s=now - t_start,
                )
                t_log = now
                log.write(json.dumps(rec) + "\n")
                log.flush()
            if is_main and val_dir is not None and cfg.val_every and step % cfg.val_every == 0:
                validate(step)
            if cfg.ckpt_every and step % cfg.ckpt_every == 0:
                checkpoint(step, loss_val)
            if cfg.max_minutes and (time.time() - t_start) > cfg.max_minutes * 60:
                if bar is not None:
                    bar.write(f"max_minutes={cfg.max_minutes} reached at step {step}; stopping")
                break
    except KeyboardInterrupt:
        checkpoint(step, loss_val)
        raise
    finally:
        if bar is not None:
            bar.close()
    if is_main and val_dir is not None and cfg.val_every and step % cfg.val_every != 0:
        validate(step)
    checkpoint(step, loss_val)
    if log is not None:
        log.close()
    if is_main:
        _plot(run)
    if world > 1:
        dist.barrier()
    import hashlib

    h = hashlib.sha256()
    for v in _unwrap(G).parameters():  # BN running stats are per rank until the next forward
        h.update(v.detach().cpu().contiguous().numpy().tobytes())
    summary = {
        "weights_sha": h.hexdigest()[:16],
        "steps": step,
        "loss": loss_val,
        "best_psnr": best if math.isfinite(best) else None,
        "run": str(run),
        "seconds": time.time() - t_start,
    }
    # one file per rank: ranks share stdout, where their lines can interleave
    name = "summary.json" if rank == 0 else f"summary_rank{rank}.json"
    (run / name).write_text(json.dumps(summary) + "\n")
    return summary


def _plot(run: Path) -> None:
    """loss.png (training loss and validation PSNR) when matplotlib is installed."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return
    recs = [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines() if line]
    tr = [r for r in recs if "loss" in r]
    va = [r for r in recs if "val_psnr" in r]
    if not tr and not va:
        return
    fig, ax = plt.subplots(1, 2, figsize=(10, 3.5))
    if tr:
        ax[0].semilogy([r["step"] for r in tr], [r["loss"] for r in tr])
    ax[0].set_xlabel("step")
    ax[0].set_ylabel("training loss")
    if va:
        ax[1].plot([r["step"] for r in va], [r["val_psnr"] for r in va], marker="o")
    ax[1].set_xlabel("step")
    ax[1].set_ylabel("validation Y-PSNR (dB)")
    fig.tight_layout()
    fig.savefig(run / "loss.png", dpi=100)
    plt.close(fig)
