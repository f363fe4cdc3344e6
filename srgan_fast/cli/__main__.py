"""`python -m srgan_fast.cli ...`: the same as `srgan-fast ...`."""

import sys

from . import main

sys.exit(main())
