"""Bundled sample photo for the demo (no dataset needed)."""

from pathlib import Path

SAMPLE = Path(__file__).resolve().parent / "sample_hr.png"


def sample_path() -> Path:
    return SAMPLE
