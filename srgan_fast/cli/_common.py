"""What several commands' parsers share."""

from __future__ import annotations

from ..options import RunOptions


def add_runtime(sp, backend_default, model=True, tile=True, quiet=True):
    """The runtime flags (--model, --device, --dtype, --backend, ...; RunOptions) and -q/--quiet."""
    RunOptions.add_arguments(sp, backend_default, model=model, tile=tile)
    if quiet:
        sp.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
