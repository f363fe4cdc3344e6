"""`srgan-fast train`: the trainer, the same as `python -m training` (srgan_fast.training).
It has its own parser: main() hands run() the raw arguments,
before argparse (whose REMAINDER drops --options); the subparser here is for --help only."""

from __future__ import annotations

import argparse


def add_parser(sub) -> None:
    t = sub.add_parser("train", help="train a model (same as python -m training; see its --help)", add_help=False)
    t.add_argument("rest", nargs=argparse.REMAINDER, help="arguments for the trainer")


def run(argv: list[str]) -> int:
    from ..training.__main__ import main as train_main

    return train_main(argv)
