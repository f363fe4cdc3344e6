"""`srgan-fast bench`: the engine timed against eager PyTorch, torch.compile and ONNX Runtime,
on a CPU also OpenVINO and ncnn from the [bench] extra (srgan_fast.bench). It has its own
parser: main() hands run() the raw arguments, before argparse (whose REMAINDER drops
--options); the subparser here is for --help only."""

from __future__ import annotations

import argparse


def add_parser(sub) -> None:
    b = sub.add_parser(
        "bench",
        help="time the engine against eager PyTorch, torch.compile, ONNX Runtime, OpenVINO, ncnn (see its --help)",
        add_help=False,
    )
    b.add_argument("rest", nargs=argparse.REMAINDER, help="arguments for the benchmark")


def run(argv: list[str]) -> int:
    from ..bench import main as bench_main

    return bench_main(argv, prog="srgan-fast bench")
