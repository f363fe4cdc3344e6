"""The reference trainer: SRResNet (MSE) phase and SRGAN (content + adversarial) phase.

Runs on one CPU/GPU, or under `torchrun --nproc_per_node N` with DistributedDataParallel
(gloo on CPU, nccl on GPU). Rank r of w takes its own share of every step's samples, so
the global batch is w x batch_size.

Speed: the photos live on the training device and each batch is one gather (`data.py`);
the loop reads nothing back from the device except at log, validation and checkpoint
steps, so the CPU queues work ahead of the GPU. Adam is fused on CUDA; `compile` wraps the
networks in torch.compile.

Interruptions: SIGINT (Ctrl-C) and SIGTERM only raise a flag; the loop finishes the step in
flight, writes a checkpoint at that step boundary (weights, BN buffers, Adam moments, step,
run time) and raises `Interrupted`, so `--resume` continues exactly as if never stopped. A
second signal stops at once (the last checkpoint on disk stays whole: writes are atomic).
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import signal
import sys
import threading
import time
from dataclasses import asdict, replace
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
import torch.nn.functional as F

from srgan_fast.families.srresnet import Discriminator, Generator, GeneratorConfig
from srgan_fast.quality.datasets import data_root
from srgan_fast.weights import BUNDLED_DIR, WeightsError, check_state, resolve, save_generator
from srgan_fast.weights import load_state as load_weights

from .checkpoint import load_state, save_state
from .config import TrainConfig
from .data import DeviceCrops, load_photos

__all__ = ["train", "Interrupted", "resolve_init", "generator_macs"]

_REPO = Path(__file__).resolve().parents[2]  # the checkout (srgan_fast/training/trainer.py)


class Interrupted(KeyboardInterrupt):
    """Training stopped by SIGINT/SIGTERM after a checkpoint at a step boundary."""

    def __init__(self, step: int, signame: str, run: Path):
        super().__init__(f"{signame} at step {step}; checkpoint in {run}; continue with --resume")
        self.step, self.signame, self.run = step, signame, run


def _resolve_dir(p: str, root: Path | None) -> Path:
    q = Path(p)
    if q.is_absolute() or q.exists() or root is None:
        return q
    return root / q


def resolve_init(spec: str) -> Path:
    """`init_from` -> a weights file: a bundled name, else a path (absolute, relative to the
    current folder, else to the repository checkout). Never depends on the current folder
    for bundled names."""
    p = Path(spec).expanduser()
    try:
        return resolve(p if p.is_absolute() else spec).resolve()
    except WeightsError:
        if not p.is_absolute() and (_REPO / p).is_file():
            return (_REPO / p).resolve()
        raise


def generator_macs(gcfg: GeneratorConfig) -> int:
    """Multiply-adds per LR pixel of the generator's forward pass (from the engine's plan)."""
    from srgan_fast.plan import compile_plan

    with torch.random.fork_rng(devices=[]):  # a throw-away model must not move the run's RNG
        return compile_plan(Generator(gcfg)).model_macs


def _unwrap(m):
    m = getattr(m, "_orig_mod", m)  # torch.compile
    return m.module if hasattr(m, "module") else m  # DDP


def _adam(params, cfg: TrainConfig, dev: torch.device) -> torch.optim.Adam:
    # fused Adam: one kernel for all parameters on CUDA; the CPU keeps the foreach version
    return torch.optim.Adam(params, lr=cfg.lr, betas=tuple(cfg.betas), fused=dev.type == "cuda")


class _StopFlag:
    """SIGINT/SIGTERM set a flag; a second signal raises KeyboardInterrupt at once."""

    SIGNALS = (signal.SIGINT, signal.SIGTERM)

    def __init__(self):
        self.signame: str | None = None
        self._old: dict = {}

    def _handler(self, signum, frame):
        if self.signame is not None:
            raise KeyboardInterrupt(f"second {signal.Signals(signum).name}: stopped without a checkpoint")
        self.signame = signal.Signals(signum).name

    def __enter__(self):
        if threading.current_thread() is threading.main_thread():  # signals only reach the main thread
            for s in self.SIGNALS:
                self._old[s] = signal.signal(s, self._handler)
        return self

    def __exit__(self, *exc):
        for s, h in self._old.items():
            signal.signal(s, h)
        return False


class Step:
    """One training step (both phases) on batch `step` of `data`; returns detached loss tensors.

    Shared by `train` and the throughput probe (`training.bench`), so the probe times the
    real step. Nothing is read back from the device here.
    """

    def __init__(self, cfg: TrainConfig, data, G, D, optG, optD, content, dev: torch.device):
        self.cfg, self.data, self.G, self.D, self.optG, self.optD = cfg, data, G, D, optG, optD
        self.content, self.dev, self.amp = content, dev, cfg.amp == "bf16"

    def __call__(self, step: int, lr: float) -> dict[str, torch.Tensor]:
        cfg, G, D, optG, optD = self.cfg, self.G, self.D, self.optG, self.optD
        bce = F.binary_cross_entropy_with_logits
        lr_b, hr_b = self.data.batch(step)
        for o in (optG, optD):
            for g in o.param_groups if o is not None else ():
                g["lr"] = lr

        def autocast():
            return torch.autocast(self.dev.type, dtype=torch.bfloat16, enabled=self.amp)

        with autocast():
            sr = G(lr_b)
        if cfg.phase == "srresnet":
            loss = F.mse_loss(sr.float(), hr_b)
            optG.zero_grad(set_to_none=True)
            loss.backward()
            optG.step()
            return {"loss": loss.detach()}
        # discriminator step: real and fake in one forward (one DDP forward per backward)
        with autocast():
            logits = D(torch.cat([hr_b, sr.detach()])).float()
        n = hr_b.shape[0]
        lossD = bce(logits[:n], torch.ones_like(logits[:n])) + bce(logits[n:], torch.zeros_like(logits[n:]))
        optD.zero_grad(set_to_none=True)
        lossD.backward()
        optD.step()
        # generator step: content + adv_weight * adversarial
        with autocast():
            fake_logits = D(sr).float()
            c = self.content(sr.float(), hr_b) if self.content is not None else F.mse_loss(sr.float(), hr_b)
        adv = bce(fake_logits, torch.ones_like(fake_logits))
        lossG = c + cfg.adv_weight * adv
        optG.zero_grad(set_to_none=True)
        lossG.backward()
        optG.step()
        with torch.no_grad():
            return {
                "loss": lossG.detach(),
                "lossG": lossG.detach(),
                "content": c.detach(),
                "adv": adv.detach(),
                "lossD": lossD.detach(),
                # the discriminator's mean belief that real / fake crops are real
                "d_real": torch.sigmoid(logits[:n].detach()).mean(),
                "d_fake": torch.sigmoid(logits[n:].detach()).mean(),
            }


def _val_crops(val_dir: Path, scale: int, n: int, lr_size: int = 48) -> list[tuple[np.ndarray, np.ndarray]]:
    """A fixed set of (LR, HR) centre crops of the first `n` validation photos."""
    from srgan_fast.io.images import list_images, load_image
    from srgan_fast.quality.metrics import imresize, modcrop

    hr_dir = val_dir / "HR" if (val_dir / "HR").is_dir() else val_dir
    out = []
    for p in list_images(hr_dir)[:n]:
        hr = modcrop(load_image(p), scale)
        lr = imresize(hr, scale=1.0 / scale)
        c = min(lr_size, *lr.shape[:2])
        y, x = (lr.shape[0] - c) // 2, (lr.shape[1] - c) // 2
        out.append((lr[y : y + c, x : x + c], hr[y * scale : (y + c) * scale, x * scale : (x + c) * scale]))
    return out


def _save_samples(g, crops, dev, path: Path) -> None:
    """One row per crop: LR (nearest-neighbour) | SR | HR, as one PNG."""
    from srgan_fast.families.srresnet import to_unit_range
    from srgan_fast.io.images import save_image

    rows = []
    with torch.no_grad():
        for lr, hr in crops:
            x = torch.from_numpy(np.ascontiguousarray(lr)).permute(2, 0, 1)[None].float().div(255).to(dev)
            sr = to_unit_range(g(x).float())[0].permute(1, 2, 0).mul(255).round().byte().cpu().numpy()
            s = hr.shape[0] // lr.shape[0]
            near = np.repeat(np.repeat(lr, s, axis=0), s, axis=1)
            rows.append(np.concatenate([near, sr, hr], axis=1))
    w = max(r.shape[1] for r in rows)
    rows = [np.pad(r, ((0, 0), (0, w - r.shape[1]), (0, 0))) for r in rows]
    save_image(path, np.concatenate(rows, axis=0))


def train(cfg: TrainConfig, resume: bool = False, progress: bool = True) -> dict:
    """Train as `cfg` says; returns a summary (steps, final loss, best validation PSNR).

    Raises `Interrupted` (a KeyboardInterrupt) after a step-boundary checkpoint on SIGINT/SIGTERM.
    """
    t_enter = time.time()
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
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    is_main = rank == 0

    run = Path(cfg.out)
    state_path = run / "state.safetensors"
    if resume and not state_path.exists():
        raise FileNotFoundError(f"--resume: no {state_path} to resume from")

    torch.manual_seed(cfg.seed)
    gcfg = GeneratorConfig.from_name(cfg.model)
    G = Generator(gcfg)
    if cfg.init_from and not resume:  # a resumed run takes its weights from state.safetensors
        init = resolve_init(cfg.init_from)
        # config.json names the file whatever the current folder: bundled by name, others absolute
        cfg = replace(cfg, init_from=init.stem if init.parent == BUNDLED_DIR.resolve() else str(init))
        state, meta = load_weights(init)
        if meta.get("config") and GeneratorConfig.from_dict(meta["config"]) != gcfg:
            raise ValueError(
                f"init_from {init} holds a {meta['config']} generator, not model={cfg.model} ({gcfg.to_dict()})"
            )
        check_state(G, state, str(init))
        G.load_state_dict({k: v.float() if v.is_floating_point() else v for k, v in state.items()})
    D = Discriminator() if cfg.phase == "srgan" else None
    mem = torch.channels_last if cfg.channels_last else torch.contiguous_format
    G = G.to(dev, memory_format=mem)
    if D is not None:
        D = D.to(dev, memory_format=mem)
    content = None
    if cfg.phase == "srgan" and cfg.content_loss == "vgg54":
        from .losses import VGG54

        content = VGG54(cfg.vgg_weights, scale=cfg.vgg_scale).to(dev, memory_format=mem)

    optG = _adam(G.parameters(), cfg, dev)
    optD = _adam(D.parameters(), cfg, dev) if D else None
    models = {"G": G} | ({"D": D} if D else {})
    optims = {"G": optG} | ({"D": optD} if optD else {})

    start, best, elapsed_before, loss_before = 0, -math.inf, 0.0, math.nan
    if resume:
        meta = load_state(state_path, models, optims)
        start, best = int(meta["step"]), float(meta.get("best_psnr", -math.inf))
        best = best if best > -1e8 else -math.inf  # -1e9 stands for "not validated yet"
        elapsed_before = float(meta.get("elapsed_s", 0.0))
        loss_before = float(meta.get("loss", math.nan))
    if is_main:
        run.mkdir(parents=True, exist_ok=True)
        (run / "config.json").write_text(cfg.to_json() + "\n")

    def elapsed() -> float:
        """Run time across --resume: this part's time since train() began plus earlier parts'."""
        return elapsed_before + time.time() - t_enter

    if world > 1:
        ddp = torch.nn.parallel.DistributedDataParallel
        ids = [dev.index] if dev.type == "cuda" else None
        G = ddp(G, device_ids=ids)
        if D is not None:
            D = ddp(D, device_ids=ids)
    G_run, D_run = G, D
    if cfg.compile != "off":
        G_run = torch.compile(G, mode=cfg.compile)
        D_run = torch.compile(D, mode=cfg.compile) if D is not None else None

    root = data_root(cfg.data_root or None)
    dirs = [_resolve_dir(d, root) for d in cfg.train_dirs]
    data = DeviceCrops(
        load_photos(dirs, gcfg.scale, cfg.crop),
        cfg.crop,
        gcfg.scale,
        cfg.seed,
        cfg.batch_size,
        device=dev,
        rank=rank,
        world=world,
        channels_last=cfg.channels_last,
    )
    val_dir = _resolve_dir(cfg.val_dir, root) if cfg.val_dir else None
    crops = _val_crops(val_dir, gcfg.scale, cfg.samples) if (val_dir is not None and cfg.samples and is_main) else []
    # generator work per crop: forward + backward ~ 3 forwards, 2 FLOP per multiply-add
    flop_per_crop = 3 * 2 * generator_macs(gcfg) * (cfg.crop // gcfg.scale) ** 2
    crops_per_step = cfg.batch_size * world

    log = open(run / "log.jsonl", "a") if is_main else None
    bar = None
    if is_main and progress:
        from tqdm import tqdm

        bar = tqdm(total=cfg.iters, initial=start, desc=f"train {cfg.phase}", unit="it", file=sys.stderr)

    def write(rec: dict) -> None:
        if log is not None:
            log.write(json.dumps(rec) + "\n")
            log.flush()

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
            {"best_psnr": best if math.isfinite(best) else -1e9, "elapsed_s": elapsed(), "loss": loss_val},
        )

    def validate(step: int) -> float:
        nonlocal best
        from srgan_fast.quality.evaluate import evaluate

        g = _unwrap(G)
        g.eval()
        res = evaluate(val_dir, method=g, device=str(dev), progress=False)
        if crops:
            _save_samples(g, crops, dev, run / "samples" / f"step_{step:07d}.png")
        g.train()
        write(
            {
                "step": step,
                "val_psnr": res["mean_psnr"],
                "val_ssim": res["mean_ssim"],
                "val_texture": res["mean_texture"],
                "elapsed_s": elapsed(),
            }
        )
        if bar is not None:
            bar.write(
                f"step {step}: {val_dir.name} PSNR {res['mean_psnr']:.3f} dB SSIM {res['mean_ssim']:.4f} "
                f"texture {res['mean_texture']:.3f}"
            )
        if res["mean_psnr"] > best:
            best = res["mean_psnr"]
            card = {
                "trained": f"{cfg.phase} {step} it",
                "config": asdict(cfg),
                "val": {val_dir.name: {"psnr": res["mean_psnr"], "ssim": res["mean_ssim"]}},
            }
            save_generator(g, run / "best.safetensors", card=card)
        return res["mean_psnr"]

    one_step = Step(cfg, data, G_run, D_run, optG, optD, content, dev)
    step = start
    t_log, step_log = time.time(), start
    loss_val = loss_before
    stats: dict[str, torch.Tensor] = {}
    stop_reason = None
    G.train()
    if D is not None:
        D.train()
    if is_main:
        write({"event": "start" if not resume else "resume", "step": start, "elapsed_s": elapsed()})

    time_drops = 0  # time_milestones passed (decided on rank 0: every rank must use the same lr)

    def sync(step: int) -> str | None:
        """Stop here? ("signal" / a max_minutes message / None); updates time_drops. Under DDP the
        ranks agree (rank 0's clock, any rank's signal) every 16 steps, and only then stop."""
        nonlocal time_drops
        t = elapsed()
        timeup = bool(cfg.max_minutes and t > cfg.max_minutes * 60)
        drops = sum(1 for f in cfg.time_milestones if t >= f * cfg.max_minutes * 60) if cfg.max_minutes else 0
        if world > 1:
            if step % 16:
                return None
            v = torch.tensor([1.0 if flag.signame else 0.0, float(timeup and is_main), float(drops * is_main)])
            v = v.to(dev)
            dist.all_reduce(v, op=dist.ReduceOp.MAX)
            sig, timeup, drops = (bool(v[0].item()), bool(v[1].item()), int(v[2].item()))
            if sig and not flag.signame:
                flag.signame = "SIGTERM"  # another rank was signalled
        time_drops = drops
        if flag.signame:
            return "signal"
        if timeup:
            return f"max_minutes={cfg.max_minutes} reached at step {step} ({t / 60:.2f} min in all)"
        return None

    def finite_loss() -> float:
        v = stats["loss"].item()
        if not math.isfinite(v):
            raise FloatingPointError(f"loss became {v} at or before step {step}; lower lr or disable amp")
        return v

    with _StopFlag() as flag:
        try:
            while step < cfg.iters:
                why = sync(step)
                if why:
                    stop_reason = why
                    break
                cur_lr = cfg.lr * 0.1 ** (sum(1 for m in cfg.lr_milestones if step >= m) + time_drops)
                stats = one_step(step, cur_lr)
                step += 1
                if bar is not None:
                    bar.update(1)
                if is_main and cfg.log_every and step % cfg.log_every == 0:
                    loss_val = finite_loss()
                    if dev.type == "cuda":
                        torch.cuda.synchronize()
                    now = time.time()
                    it_s = (step - step_log) / max(now - t_log, 1e-9)
                    t_log, step_log = now, step
                    rec = {k: v.item() for k, v in stats.items()}
                    rec.update(
                        step=step,
                        lr=cur_lr,
                        it_s=it_s,
                        crops_s=it_s * crops_per_step,
                        tflops=it_s * crops_per_step * flop_per_crop / 1e12,
                        elapsed_s=elapsed(),
                    )
                    write(rec)
                    if bar is not None:
                        bar.set_postfix(
                            loss=f"{loss_val:.4g}",
                            lr=f"{cur_lr:.0e}",
                            crops_s=f"{rec['crops_s']:.0f}",
                            TFLOPs=f"{rec['tflops']:.3g}",
                        )
                if is_main and val_dir is not None and cfg.val_every and step % cfg.val_every == 0:
                    validate(step)
                if cfg.ckpt_every and step % cfg.ckpt_every == 0:
                    loss_val = finite_loss()
                    checkpoint(step, loss_val)
        finally:
            if bar is not None:
                bar.close()
        if stats:
            loss_val = finite_loss()
        if stop_reason == "signal":
            # the step in flight has finished: this checkpoint is at a step boundary
            checkpoint(step, loss_val)
            write({"event": "interrupted", "signal": flag.signame, "step": step, "elapsed_s": elapsed()})
            if log is not None:
                log.close()
            raise Interrupted(step, flag.signame, run)
        if stop_reason:
            write({"event": "stop", "reason": stop_reason, "step": step, "elapsed_s": elapsed()})
            if bar is not None:
                print(stop_reason + "; stopping", file=sys.stderr)
        # a signal from here on finds the run complete: it only shortens nothing
        # (a resumed run that had nothing left to do was validated at this step before)
        if is_main and val_dir is not None and cfg.val_every and step % cfg.val_every != 0 and step > start:
            validate(step)
        checkpoint(step, loss_val)
    if log is not None:
        log.close()
    if is_main:
        _plot(run)
    if world > 1:
        dist.barrier()

    h = hashlib.sha256()
    for v in _unwrap(G).parameters():  # BN running stats are per rank until the next forward
        h.update(v.detach().cpu().contiguous().numpy().tobytes())
    summary = {
        "weights_sha": h.hexdigest()[:16],
        "steps": step,
        "loss": loss_val,
        "best_psnr": best if math.isfinite(best) else None,
        "run": str(run),
        "seconds": elapsed(),
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
