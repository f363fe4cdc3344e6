"""Streams of frames: same-shape grouping (shared by Engine.stream and upscale_files) and the
read-ahead thread that lets a decoder run while the engine computes."""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable, Iterable, Iterator
from typing import Any

import numpy as np
import torch

__all__ = ["group_same_shape", "frame_key", "stream"]


def frame_key(f) -> tuple:
    """Frames that may be stacked into one batch have equal keys (kind, shape, dtype, device)."""
    return (type(f), tuple(f.shape), str(getattr(f, "dtype", "")), str(getattr(f, "device", "")))


def group_same_shape(items: Iterable, batch: int, key: Callable[[Any], Any] = frame_key) -> Iterator[list]:
    """Consecutive items with equal `key(item)`, in order, at most `batch` per group. A key of
    None never groups (the item goes alone)."""
    if batch < 1:
        raise ValueError(f"batch must be at least 1, got {batch}")
    pending: list = []
    pending_key = None
    for item in items:
        k = key(item)
        if pending and (k is None or k != pending_key):
            yield pending
            pending = []
        pending.append(item)
        pending_key = k
        if len(pending) >= batch or k is None:  # full: go now, don't wait for the next item
            yield pending
            pending = []
    if pending:
        yield pending


class _Raised:
    def __init__(self, exc: BaseException):
        self.exc = exc


_DONE = object()


def _read_ahead(frames: Iterable, queue_size: int) -> Iterator:
    """Iterate `frames` on a producer thread through a bounded queue (memory stays flat for any
    length). Errors in the producer are raised here. Closing this generator stops the producer
    and joins it (it notices within 0.1 s, or when the source yields its next item)."""
    q: queue.Queue = queue.Queue(maxsize=queue_size)
    stop = threading.Event()

    def put(item) -> bool:
        while not stop.is_set():
            try:
                q.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def producer():
        try:
            for f in frames:
                if not put(f):
                    return
        except BaseException as e:  # handed to the consumer, raised there
            put(_Raised(e))
        put(_DONE)

    t = threading.Thread(target=producer, name="srgan_fast-stream-reader", daemon=True)
    t.start()
    try:
        while True:
            item = q.get()
            if item is _DONE:
                return
            if isinstance(item, _Raised):
                raise item.exc
            yield item
    finally:
        stop.set()
        # a source blocked in its own read (a live camera) cannot be interrupted from here: the
        # thread is a daemon, so it never keeps the process alive
        t.join(timeout=10)


def stream(engine, frames: Iterable, batch: int = 1, queue_size: int = 4) -> Iterator:
    """Upscale an iterable of frames with `engine`, yielding results in order; see Engine.stream.

    When `frames` raises, the good frames read before the failure (those waiting for their
    batch to fill) are upscaled and yielded first, then the error is raised."""
    if batch < 1 or queue_size < 1:
        raise ValueError(f"batch and queue_size must be positive, got {batch}, {queue_size}")

    def key(f):
        return None if isinstance(f, tuple) else frame_key(f)  # NV12 (y, uv) planes go one by one

    failure: list[Exception] = []

    def source():
        try:
            yield from _read_ahead(frames, queue_size)
        except Exception as e:  # not KeyboardInterrupt: Ctrl-C stops at once
            failure.append(e)

    for group in group_same_shape(source(), batch, key):
        if isinstance(group[0], tuple):
            yield engine.upscale_nv12(*group[0])
        elif len(group) == 1:
            yield engine.upscale(group[0])
        else:
            stacked = np.stack(group) if isinstance(group[0], np.ndarray) else torch.stack(group)
            yield from engine.upscale(stacked)
    if failure:
        raise failure[0]
