"""Batch upscaling of many images with Ray Data: one engine per actor, GPU actors where GPUs exist.

    from srgan_fast.io.ray import upscale_files_ray
    upscale_files_ray(["photos/"], "out/", workers=4, gpus_per_worker=1, device="cuda", dtype="fp16")

or `srgan-fast upscale photos/ -o out/ --ray --workers 4`. Workers read and write the files
themselves, so inputs and outputs must be on storage every Ray node sees (a local run, or a
shared filesystem). Output is identical to the single-process `upscale_files` (tested).
Needs Ray Data (`pip install 'ray[data]'`); connects to a running cluster when `address` or
RAY_ADDRESS says so, else starts a local one.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from ..options import RunOptions
from .batch import DEFAULT_MAX_PIXELS, check_size

__all__ = ["upscale_files_ray"]


class _Upscaler:
    """A Ray Data actor: builds its engine once, then upscales batches of (src, dst) paths."""

    def __init__(self, options, on_error):
        self.engine = options.engine()
        self.on_error = on_error

    def __call__(self, batch: dict) -> dict:
        from .batch import load_input, save_output

        done = []
        for src, dst in zip(batch["src"], batch["dst"]):
            loaded = load_input(Path(src), self.on_error)  # skips are reported on the worker's stderr
            if loaded is None:
                done.append("")
                continue
            save_output(Path(dst), self.engine.upscale(loaded[0]), loaded[1])
            done.append(str(dst))
        return {"dst": done}


def upscale_files_ray(
    inputs: list[str | os.PathLike],
    output: str | os.PathLike,
    options: RunOptions | None = None,
    *,
    workers: int = 2,
    gpus_per_worker: float = 0,
    batch: int = 4,
    on_error: str = "fail",
    address: str | None = None,
    max_pixels: int | None = DEFAULT_MAX_PIXELS,
    **overrides,
) -> list[Path]:
    """Upscale files/folders into `output` on a Ray cluster; returns the outputs written.
    options / overrides: model, device, dtype, backend, tile (srgan_fast.options.RunOptions)."""
    opts = RunOptions.resolve(options, **overrides)
    try:
        import ray
    except ImportError:
        from ..errors import MissingDependency

        raise MissingDependency("--ray needs Ray Data: pip install 'ray[data]'") from None
    from .batch import collect_inputs, output_paths
    from .paths import check_outputs

    if workers < 1 or batch < 1:
        raise ValueError(f"workers and batch must be positive, got {workers}, {batch}")
    if on_error not in ("fail", "skip"):
        raise ValueError(f"on_error must be fail or skip, got {on_error!r}")
    files = collect_inputs(inputs)
    outs = output_paths(files, Path(output))
    # the size limit from each header, here in the driver (cheap): workers only get what passes
    keep = [check_size(f, max_pixels, on_error) for f in files]
    files, outs = [f for f, k in zip(files, keep) if k], [o for o, k in zip(outs, keep) if k]
    check_outputs(files, outs)
    started = False
    if not ray.is_initialized():
        ray.init(address=address or os.environ.get("RAY_ADDRESS"), include_dashboard=False,
                 log_to_driver=False, ignore_reinit_error=True)  # fmt: skip
        started = True
    try:
        ds = ray.data.from_items([{"src": str(f.resolve()), "dst": str(o.resolve())} for f, o in zip(files, outs)])
        res = ds.map_batches(
            _Upscaler,
            fn_constructor_args=(opts, on_error),
            batch_size=batch,
            concurrency=workers,
            num_gpus=gpus_per_worker,
            num_cpus=1,
        )
        rows = res.take_all()
    finally:
        if started:
            ray.shutdown()
    skipped = sum(1 for r in rows if not r["dst"])
    if skipped:
        print(f"upscale --ray: {skipped} of {len(rows)} input(s) skipped (named in the workers' logs)", file=sys.stderr)
    written = {r["dst"] for r in rows if r["dst"]}
    return [o for o in outs if str(o.resolve()) in written]
