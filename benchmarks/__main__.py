"""`python -m benchmarks ...` = `srgan-fast bench ...`."""

import sys

from srgan_fast.bench import main

sys.exit(main(prog="python -m benchmarks"))
