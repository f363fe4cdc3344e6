"""`python -m srgan_fast.bench ...`: the same as `srgan-fast bench ...`."""

import sys

from . import main

sys.exit(main(prog="python -m srgan_fast.bench"))
