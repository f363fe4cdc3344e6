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


class _StopSync:
    """Stop before step `step`? ("signal" / a max_minutes message / None); also keeps
    `time_drops`, the `time_milestones` passed (each one more 0.1 x lr).

    `t` is the run time in seconds across --resume; `flag` is the `_StopFlag`. Alone, this is
    decided at every step. Under DDP the ranks agree every `every` steps (rank 0's clock, any
    rank's signal), and only then stop; `reduce_max` is the element-wise max over the ranks
    of a list of floats (an all_reduce).
    """

    def __init__(self, max_minutes, time_milestones, world: int = 1, is_main: bool = True, reduce_max=None, every=16):
        self.max_minutes, self.time_milestones = max_minutes, time_milestones
        self.world, self.is_main, self.reduce_max, self.every = world, is_main, reduce_max, every
        self.time_drops = 0  # decided on rank 0: every rank must use the same lr

    def __call__(self, step: int, t: float, flag) -> str | None:
        mm = self.max_minutes
        timeup = bool(mm and t > mm * 60)
        drops = sum(1 for f in self.time_milestones if t >= f * mm * 60) if mm else 0
        if self.world > 1:
            if step % self.every:
                return None
            v = self.reduce_max(
                [1.0 if flag.signame else 0.0, float(timeup and self.is_main), float(drops * self.is_main)]
            )
            sig, timeup, drops = bool(v[0]), bool(v[1]), int(v[2])
            if sig and not flag.signame:
                flag.signame = "SIGTERM"  # another rank was signalled
        self.time_drops = drops
        if flag.signame:
            return "signal"
        if timeup:
            return f"max_minutes={mm} reached at step {step} ({t / 60:.2f} min in all)"
        return None


def _all_reduce_max(vals: list[float], dev: torch.device) -> list[float]:
    v = torch.tensor(vals).to(dev)
    dist.all_reduce(v, op=dist.ReduceOp.MAX)
    return v.tolist()


class _Run:
    """One call of `train`: the setup (device and DDP, models and optimizers, resume, data,
    log) in that order, and what the loop does at its log, validation and checkpoint steps."""

    def __init__(self, cfg: TrainConfig, resume: bool, progress: bool):
        self.t_enter = time.time()
        self.cfg, self.resume = cfg, resume
        self._device()
        self.run = Path(cfg.out)
        self.state_path = self.run / "state.safetensors"
        if resume and not self.state_path.exists():
            raise FileNotFoundError(f"--resume: no {self.state_path} to resume from")
        self._models()
        self._load_resume()
        if self.is_main:
            self.run.mkdir(parents=True, exist_ok=True)
            (self.run / "config.json").write_text(self.cfg.to_json() + "\n")
        self._wrap()
        self._data()
        self._outputs(progress)
        self.stop = _StopSync(
            self.cfg.max_minutes,
            self.cfg.time_milestones,
            self.world,
            self.is_main,
            reduce_max=lambda v: _all_reduce_max(v, self.dev),
        )
        self.one_step = Step(self.cfg, self.data, self.G_run, self.D_run, self.optG, self.optD, self.content, self.dev)
        self.t_log, self.step_log = time.time(), self.start

    # --- setup, in train()'s order ------------------------------------------------------------

    def _device(self) -> None:
        cfg = self.cfg
        self.world = int(os.environ.get("WORLD_SIZE", "1"))
        self.rank = int(os.environ.get("RANK", "0"))
        local_rank = int(os.environ.get("LOCAL_RANK", "0"))
        if cfg.device == "auto":
            dev = torch.device(f"cuda:{local_rank}" if torch.cuda.is_available() else "cpu")
        else:
            dev = torch.device(cfg.device)
            if dev.type == "cuda" and dev.index is None:
                dev = torch.device(f"cuda:{local_rank}")
        if self.world > 1 and not dist.is_initialized():
            dist.init_process_group("nccl" if dev.type == "cuda" else "gloo")
        if dev.type == "cuda":
            torch.cuda.set_device(dev)
            torch.backends.cudnn.benchmark = True
            torch.backends.cuda.matmul.allow_tf32 = True
            torch.backends.cudnn.allow_tf32 = True
        self.dev, self.is_main = dev, self.rank == 0

    def _models(self) -> None:
        cfg, dev = self.cfg, self.dev
        torch.manual_seed(cfg.seed)
        self.gcfg = gcfg = GeneratorConfig.from_name(cfg.model)
        G = Generator(gcfg)
        if cfg.init_from and not self.resume:  # a resumed run takes its weights from state.safetensors
            init = resolve_init(cfg.init_from)
            # config.json names the file whatever the current folder: bundled by name, others absolute
            cfg = self.cfg = replace(cfg, init_from=init.stem if init.parent == BUNDLED_DIR.resolve() else str(init))
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
        self.content = None
        if cfg.phase == "srgan" and cfg.content_loss == "vgg54":
            from .losses import VGG54

            self.content = VGG54(cfg.vgg_weights, scale=cfg.vgg_scale).to(dev, memory_format=mem)

        self.optG = _adam(G.parameters(), cfg, dev)
        self.optD = _adam(D.parameters(), cfg, dev) if D else None
        self.models = {"G": G} | ({"D": D} if D else {})
        self.optims = {"G": self.optG} | ({"D": self.optD} if self.optD else {})
        self.G, self.D = G, D

    def _load_resume(self) -> None:
        self.start, self.best, self.elapsed_before, self.loss_before = 0, -math.inf, 0.0, math.nan
        if self.resume:
            meta = load_state(self.state_path, self.models, self.optims)
            self.start, best = int(meta["step"]), float(meta.get("best_psnr", -math.inf))
            self.best = best if best > -1e8 else -math.inf  # -1e9 stands for "not validated yet"
            self.elapsed_before = float(meta.get("elapsed_s", 0.0))
            self.loss_before = float(meta.get("loss", math.nan))

    def _wrap(self) -> None:
        """DDP, then torch.compile; self.G / self.D become the DDP modules (`_unwrap` undoes it)."""
        cfg, G, D = self.cfg, self.G, self.D
        if self.world > 1:
            ddp = torch.nn.parallel.DistributedDataParallel
            ids = [self.dev.index] if self.dev.type == "cuda" else None
            G = ddp(G, device_ids=ids)
            if D is not None:
                D = ddp(D, device_ids=ids)
        self.G, self.D = G, D
        self.G_run, self.D_run = G, D
        if cfg.compile != "off":
            self.G_run = torch.compile(G, mode=cfg.compile)
            self.D_run = torch.compile(D, mode=cfg.compile) if D is not None else None

    def _data(self) -> None:
        cfg, gcfg = self.cfg, self.gcfg
        root = data_root(cfg.data_root or None)
        dirs = [_resolve_dir(d, root) for d in cfg.train_dirs]
        self.data = DeviceCrops(
            load_photos(dirs, gcfg.scale, cfg.crop),
            cfg.crop,
            gcfg.scale,
            cfg.seed,
            cfg.batch_size,
            device=self.dev,
            rank=self.rank,
            world=self.world,
            channels_last=cfg.channels_last,
        )
        self.val_dir = val_dir = _resolve_dir(cfg.val_dir, root) if cfg.val_dir else None
        self.crops = (
            _val_crops(val_dir, gcfg.scale, cfg.samples)
            if (val_dir is not None and cfg.samples and self.is_main)
            else []
        )
        # generator work per crop: forward + backward ~ 3 forwards, 2 FLOP per multiply-add
        self.flop_per_crop = 3 * 2 * generator_macs(gcfg) * (cfg.crop // gcfg.scale) ** 2
        self.crops_per_step = cfg.batch_size * self.world

    def _outputs(self, progress: bool) -> None:
        cfg = self.cfg
        self.log = open(self.run / "log.jsonl", "a") if self.is_main else None
        self.bar = None
        if self.is_main and progress:
            from tqdm import tqdm

            self.bar = tqdm(total=cfg.iters, initial=self.start, desc=f"train {cfg.phase}", unit="it", file=sys.stderr)

    # --- what the loop calls ------------------------------------------------------------------

    def elapsed(self) -> float:
        """Run time across --resume: this part's time since train() began plus earlier parts'."""
        return self.elapsed_before + time.time() - self.t_enter

    def write(self, rec: dict) -> None:
        if self.log is not None:
            self.log.write(json.dumps(rec) + "\n")
            self.log.flush()

    def close_log(self) -> None:
        if self.log is not None:
            self.log.close()

    def sync(self, step: int, flag: _StopFlag) -> str | None:
        """Stop here? See `_StopSync`; under DDP every rank calls this at every step."""
        return self.stop(step, self.elapsed(), flag)

    def lr(self, step: int) -> float:
        cfg = self.cfg
        return cfg.lr * 0.1 ** (sum(1 for m in cfg.lr_milestones if step >= m) + self.stop.time_drops)

    @staticmethod
    def finite_loss(stats: dict[str, torch.Tensor], step: int) -> float:
        v = stats["loss"].item()
        if not math.isfinite(v):
            raise FloatingPointError(f"loss became {v} at or before step {step}; lower lr or disable amp")
        return v

    def log_step(self, step: int, lr: float, stats: dict[str, torch.Tensor]) -> float:
        """One log.jsonl record of the step just taken (and the progress bar); returns the loss."""
        loss_val = self.finite_loss(stats, step)
        if self.dev.type == "cuda":
            torch.cuda.synchronize()
        now = time.time()
        it_s = (step - self.step_log) / max(now - self.t_log, 1e-9)
        self.t_log, self.step_log = now, step
        rec = {k: v.item() for k, v in stats.items()}
        rec.update(
            step=step,
            lr=lr,
            it_s=it_s,
            crops_s=it_s * self.crops_per_step,
            tflops=it_s * self.crops_per_step * self.flop_per_crop / 1e12,
            elapsed_s=self.elapsed(),
        )
        self.write(rec)
        if self.bar is not None:
            self.bar.set_postfix(
                loss=f"{loss_val:.4g}",
                lr=f"{lr:.0e}",
                crops_s=f"{rec['crops_s']:.0f}",
                TFLOPs=f"{rec['tflops']:.3g}",
            )
        return loss_val

    def checkpoint(self, step: int, loss_val: float) -> None:
        if not self.is_main:
            return
        cfg, best = self.cfg, self.best
        card = {"trained": f"{cfg.phase} {step} it", "config": asdict(cfg), "loss": loss_val}
        save_generator(_unwrap(self.G), self.run / "last.safetensors", card=card)
        save_state(
            self.state_path,
            step,
            {k: _unwrap(m) for k, m in self.models.items()},
            self.optims,
            {"best_psnr": best if math.isfinite(best) else -1e9, "elapsed_s": self.elapsed(), "loss": loss_val},
        )

    def validate(self, step: int) -> float:
        from srgan_fast.quality.evaluate import evaluate

        cfg, dev, val_dir = self.cfg, self.dev, self.val_dir
        g = _unwrap(self.G)
        g.eval()
        res = evaluate(val_dir, method=g, device=str(dev), progress=False)
        if self.crops:
            _save_samples(g, self.crops, dev, self.run / "samples" / f"step_{step:07d}.png")
        g.train()
        self.write(
            {
                "step": step,
                "val_psnr": res["mean_psnr"],
                "val_ssim": res["mean_ssim"],
                "val_texture": res["mean_texture"],
                "elapsed_s": self.elapsed(),
            }
        )
        if self.bar is not None:
            self.bar.write(
                f"step {step}: {val_dir.name} PSNR {res['mean_psnr']:.3f} dB SSIM {res['mean_ssim']:.4f} "
                f"texture {res['mean_texture']:.3f}"
            )
        if res["mean_psnr"] > self.best:
            self.best = res["mean_psnr"]
            card = {
                "trained": f"{cfg.phase} {step} it",
                "config": asdict(cfg),
                "val": {val_dir.name: {"psnr": res["mean_psnr"], "ssim": res["mean_ssim"]}},
            }
            save_generator(g, self.run / "best.safetensors", card=card)
        return res["mean_psnr"]

    @staticmethod
    def due(every: int, step: int) -> bool:
        """A log/validation/checkpoint step? (`every` 0 means never.)"""
        return bool(every) and step % every == 0

    def finish(self, step: int, loss_val: float) -> dict:
        """After the loop (signal handlers restored): plot, wait for the ranks, write the summary."""
        self.close_log()
        if self.is_main:
            _plot(self.run)
        if self.world > 1:
            dist.barrier()

        h = hashlib.sha256()
        for v in _unwrap(self.G).parameters():  # BN running stats are per rank until the next forward
            h.update(v.detach().cpu().contiguous().numpy().tobytes())
        summary = {
            "weights_sha": h.hexdigest()[:16],
            "steps": step,
            "loss": loss_val,
            "best_psnr": self.best if math.isfinite(self.best) else None,
            "run": str(self.run),
            "seconds": self.elapsed(),
        }
        # one file per rank: ranks share stdout, where their lines can interleave
        name = "summary.json" if self.rank == 0 else f"summary_rank{self.rank}.json"
        (self.run / name).write_text(json.dumps(summary) + "\n")
        return summary


def train(cfg: TrainConfig, resume: bool = False, progress: bool = True) -> dict:
    """Train as `cfg` says; returns a summary (steps, final loss, best validation PSNR).

    Raises `Interrupted` (a KeyboardInterrupt) after a step-boundary checkpoint on SIGINT/SIGTERM.
    """
    r = _Run(cfg, resume, progress)
    cfg = r.cfg  # init_from recorded as config.json names it
    step, loss_val = r.start, r.loss_before
    stats: dict[str, torch.Tensor] = {}
    stop_reason = None
    r.G.train()
    if r.D is not None:
        r.D.train()
    if r.is_main:
        r.write({"event": "start" if not resume else "resume", "step": r.start, "elapsed_s": r.elapsed()})

    with _StopFlag() as flag:
        try:
            while step < cfg.iters:
                stop_reason = r.sync(step, flag)
                if stop_reason:
                    break
                cur_lr = r.lr(step)
                stats = r.one_step(step, cur_lr)
                step += 1
                if r.bar is not None:
                    r.bar.update(1)
                if r.is_main and r.due(cfg.log_every, step):
                    loss_val = r.log_step(step, cur_lr, stats)
                if r.is_main and r.val_dir is not None and r.due(cfg.val_every, step):
                    r.validate(step)
                if r.due(cfg.ckpt_every, step):
                    loss_val = r.finite_loss(stats, step)
                    r.checkpoint(step, loss_val)
        finally:
            if r.bar is not None:
                r.bar.close()
        if stats:
            loss_val = r.finite_loss(stats, step)
        if stop_reason == "signal":
            # the step in flight has finished: this checkpoint is at a step boundary
            r.checkpoint(step, loss_val)
            r.write({"event": "interrupted", "signal": flag.signame, "step": step, "elapsed_s": r.elapsed()})
            r.close_log()
            raise Interrupted(step, flag.signame, r.run)
        if stop_reason:
            r.write({"event": "stop", "reason": stop_reason, "step": step, "elapsed_s": r.elapsed()})
            if r.bar is not None:
                print(stop_reason + "; stopping", file=sys.stderr)
        # a signal from here on finds the run complete: it only shortens nothing
        # (a resumed run that had nothing left to do was validated at this step before)
        if r.is_main and r.val_dir is not None and cfg.val_every and step % cfg.val_every != 0 and step > r.start:
            r.validate(step)
        r.checkpoint(step, loss_val)
    return r.finish(step, loss_val)


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
