"""The trainer moved to `srgan_fast.training` (2026-12). This folder only keeps
`python -m training ...` (the command recorded in model cards) working from a checkout."""
