"""Kept for the layout users expect: `python benchmarks/bench_engine.py` = `srgan-fast bench`."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from srgan_fast.bench import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main(prog="bench_engine.py"))
