"""Entry point: `python -m srgan_fast.training ...` and `srgan-fast train ...` (the same function)."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def build_parser() -> argparse.ArgumentParser:
    from .config import PRESETS

    p = argparse.ArgumentParser(
        prog="srgan-fast train",
        description="Train SRResNet (MSE) or SRGAN (content + adversarial) on folders of photos.",
        epilog="example: srgan-fast train --preset srresnet_x4 --set iters=200000 batch_size=16",
    )
    p.add_argument(
        "--preset",
        default="srresnet_x4",
        choices=sorted(PRESETS),
        help="starting config (default: srresnet_x4)",
    )
    p.add_argument(
        "--set",
        nargs="*",
        default=[],
        metavar="KEY=VALUE",
        help="override config fields, e.g. iters=1000 lr_milestones=500,800",
    )
    p.add_argument(
        "--resume",
        action="store_true",
        help="continue the run in the config's `out` folder from its state.safetensors, "
        "with that run's config.json (then --set overrides)",
    )
    p.add_argument("--print-config", action="store_true", help="print the resolved config and exit")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    return p


def main(argv: list[str] | None = None) -> int:
    from dataclasses import fields

    from .config import TrainConfig, apply_overrides, from_preset
    from .trainer import Interrupted, train

    args = build_parser().parse_args(argv)
    try:
        cfg = apply_overrides(from_preset(args.preset), args.set)
        if args.resume:
            saved = Path(cfg.out) / "config.json"
            if saved.exists():
                d = json.loads(saved.read_text())
                names = {f.name for f in fields(TrainConfig)}
                cfg = apply_overrides(TrainConfig(**{k: v for k, v in d.items() if k in names}), args.set)
        if args.print_config:
            print(cfg.to_json())
            return 0
        summary = train(cfg, resume=args.resume, progress=not args.quiet)
    except (ValueError, FileNotFoundError, FloatingPointError) as e:
        print(f"train: error: {e}", file=sys.stderr)
        return 2
    except Interrupted as e:
        print(f"train: stopped by {e}", file=sys.stderr)
        return 128 + (15 if e.signame == "SIGTERM" else 2)
    except KeyboardInterrupt as e:  # a second Ctrl-C: the last periodic checkpoint stands
        print(f"train: {e or 'interrupted'}; the last checkpoint in {cfg.out} stands", file=sys.stderr)
        return 130
    if summary is not None and summary.get("run"):
        print(json.dumps(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main())
