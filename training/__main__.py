"""`python -m training ...` = `python -m srgan_fast.training ...` = `srgan-fast train ...`."""

import sys

from srgan_fast.training.__main__ import main

sys.exit(main())
