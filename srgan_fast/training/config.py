"""One config per training run: a dataclass, named presets, `--set key=value` overrides."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, fields, replace

__all__ = ["TrainConfig", "PRESETS", "from_preset", "apply_overrides"]


@dataclass
class TrainConfig:
    # what to train
    phase: str = "srresnet"  # "srresnet" (MSE) or "srgan" (content + 1e-3 adversarial)
    model: str = "srresnet_x4"  # generator preset (srgan_fast.families.srresnet.PRESETS)
    # generator weights to start from: a bundled name ("srresnet_x4") or a .safetensors path
    # (absolute, relative to the current folder, or to the repository). The srgan phase starts
    # from the phase-1 generator, as the paper; in the srresnet phase it fine-tunes.
    init_from: str = ""
    content_loss: str = "vgg54"  # srgan phase: "vgg54" or "mse" (the paper's SRGAN-MSE)
    vgg_weights: str = ""  # torchvision-format VGG19 file; "" = look in the torch hub cache;
    #                        "random" = random init (tests only)
    adv_weight: float = 1e-3
    vgg_scale: float = 1.0 / 12.75  # the paper rescales VGG feature maps by 1/12.75
    # data
    train_dirs: list[str] = field(default_factory=lambda: ["T91/HR", "BSD200/HR"])
    val_dir: str = "Set5"  # a folder with HR/ (and LR_x4/), relative to data_root or absolute
    data_root: str = ""  # "" = $SRGAN_FAST_DATA or ../shared/datasets
    crop: int = 96  # HR crop size (the paper's 96x96)
    batch_size: int = 16
    # no effect (the photos live on the training device); kept so the command recorded in the
    # bundled srresnet_x4's model card (`--set ... workers=12`) still replays as written
    workers: int = 0
    # optimisation (Adam, the paper's betas)
    iters: int = 100_000
    lr: float = 1e-4
    betas: tuple[float, float] = (0.9, 0.999)
    lr_milestones: list[int] = field(default_factory=list)  # steps where lr is multiplied by 0.1
    # fractions of max_minutes after which lr is multiplied by 0.1 (for wall-clock-bounded runs;
    # not step-exact on resume)
    time_milestones: list[float] = field(default_factory=list)
    # runtime
    device: str = "auto"  # auto = cuda when available
    amp: str = "none"  # "none" or "bf16" (autocast; GPU)
    channels_last: bool = True
    # torch.compile the generator (and discriminator): "off" or a torch.compile mode
    # ("default", "reduce-overhead" = CUDA graphs, "max-autotune-no-cudagraphs", ...)
    compile: str = "off"
    seed: int = 0
    out: str = "runs/srresnet_x4"
    log_every: int = 100
    val_every: int = 2000
    ckpt_every: int = 2000
    # stop cleanly (with a checkpoint) after this much run time, counted across --resume
    # (up to the last checkpoint of each earlier part); 0 = off
    max_minutes: float = 0.0
    samples: int = 4  # validation crops saved as images (samples/step_N.png) at each validation

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2)


PRESETS: dict[str, TrainConfig] = {
    "srresnet_x4": TrainConfig(),
    "srgan_x4": TrainConfig(
        phase="srgan",
        init_from="srresnet_x4",
        iters=100_000,
        lr_milestones=[50_000],  # the paper: 1e-4, then 1e-5
        out="runs/srgan_x4",
    ),
    # for tests: seconds on a CPU
    "tiny": TrainConfig(
        model="tiny_x4",
        crop=32,
        batch_size=2,
        iters=4,
        log_every=1,
        val_every=0,
        ckpt_every=2,
        out="runs/tiny",
        channels_last=False,
    ),
}


_COMPILE_MODES = ("off", "default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs")


def from_preset(name: str) -> TrainConfig:
    try:
        return replace(PRESETS[name])
    except KeyError:
        raise ValueError(f"unknown training preset {name!r}; known: {', '.join(PRESETS)}") from None


def _coerce(value: str, current):
    if isinstance(current, bool):
        if value.lower() in ("1", "true", "yes", "on"):
            return True
        if value.lower() in ("0", "false", "no", "off"):
            return False
        raise ValueError(f"expected a boolean, got {value!r}")
    if isinstance(current, int):
        return int(value.replace("_", ""))
    if isinstance(current, float):
        return float(value)
    if isinstance(current, (list, tuple)):
        items = [v for v in value.split(",") if v != ""]
        proto = current[0] if current else ((0.0 if "." in value else 0) if value[:1].isdigit() else "")
        out = [_coerce(v, proto) for v in items]
        return tuple(out) if isinstance(current, tuple) else out
    return value


def apply_overrides(cfg: TrainConfig, overrides: list[str]) -> TrainConfig:
    """Apply `key=value` strings; lists are comma-separated. Unknown keys are errors."""
    names = {f.name for f in fields(cfg)}
    for ov in overrides:
        if "=" not in ov:
            raise ValueError(f"--set expects key=value, got {ov!r}")
        k, v = ov.split("=", 1)
        k = k.strip()
        if k not in names:
            raise ValueError(f"unknown config key {k!r}; known: {', '.join(sorted(names))}")
        try:
            cfg = replace(cfg, **{k: _coerce(v, getattr(cfg, k))})
        except ValueError as e:
            raise ValueError(f"--set {k}={v}: {e}") from None
    if cfg.phase not in ("srresnet", "srgan"):
        raise ValueError(f"phase must be srresnet or srgan, got {cfg.phase!r}")
    if cfg.content_loss not in ("vgg54", "mse"):
        raise ValueError(f"content_loss must be vgg54 or mse, got {cfg.content_loss!r}")
    if cfg.amp not in ("none", "bf16"):
        raise ValueError(f"amp must be none or bf16, got {cfg.amp!r}")
    if cfg.compile not in _COMPILE_MODES:
        raise ValueError(f"compile must be one of {', '.join(_COMPILE_MODES)}, got {cfg.compile!r}")
    # numbers that would fail minutes in (or leave an empty run folder) fail here, before anything
    for name in ("batch_size", "crop", "iters"):
        if getattr(cfg, name) < 1:
            raise ValueError(f"{name} must be at least 1, got {getattr(cfg, name)}")
    for name in ("log_every", "val_every", "ckpt_every", "samples", "max_minutes", "adv_weight", "workers"):
        if getattr(cfg, name) < 0:
            raise ValueError(f"{name} must not be negative, got {getattr(cfg, name)}")
    if not cfg.lr > 0:
        raise ValueError(f"lr must be positive, got {cfg.lr}")
    return cfg
