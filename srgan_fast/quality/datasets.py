"""Where the shared test and training photos live. Never copied into this repository.

Order: an explicit path, then $SRGAN_FAST_DATA, then ../shared/datasets beside the checkout
(or beside the current folder).
"""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["data_root", "find_dataset"]

_REPO = Path(__file__).resolve().parents[2]


def data_root(explicit: str | os.PathLike | None = None) -> Path | None:
    """The datasets folder, or None when none of the candidates exists."""
    cands = []
    if explicit:
        cands.append(Path(explicit))
    if os.environ.get("SRGAN_FAST_DATA"):
        cands.append(Path(os.environ["SRGAN_FAST_DATA"]))
    cands += [_REPO.parent / "shared" / "datasets", Path.cwd().parent / "shared" / "datasets"]
    for c in cands:
        if c.is_dir():
            return c
    return None


def find_dataset(name: str, root: str | os.PathLike | None = None) -> Path:
    """Path of dataset `name` (e.g. "Set5"); FileNotFoundError saying where it looked."""
    r = data_root(root)
    if r is None or not (r / name).is_dir():
        raise FileNotFoundError(
            f"dataset {name!r} not found (looked in --data / $SRGAN_FAST_DATA / ../shared/datasets)"
        )
    return r / name
