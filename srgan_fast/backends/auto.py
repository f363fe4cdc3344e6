"""How `Engine(backend="auto")` chooses on a CPU: by measuring, once per machine, model shape
and frame-size class.

On a CPU more than one backend can run a plan (native, torch, and onnxruntime where it imports), and
which is faster depends on the family, the frame size and the machine: on the 2-core EPYC dev
VM ONNX Runtime ran 32x32 compact frames 1.5x faster than the torch backend and 128-192 px
frames at 0.7-0.8x its speed, and srresnet_x4 swings around 1.0x with the load. No static
rule holds, so:

1. the candidates are the registered backends with "cpu" in `auto_devices` that can run here
   (`Backend.requires`); with one (no onnxruntime), it is the choice and nothing is timed;
2. the choice is made per size class of the frames, at the first call that brings one: a frame
   of h x w LR pixels is in class (ceil(log2 h'), ceil(log2 w')) with h' = min(h, 128),
   w' = min(w, 128) (larger frames: the 128 class; per-pixel speed has settled by then);
3. the cache (a small JSON file, `cache_path()`) is read under a key made of the plan's
   structure (family, layer shapes; not the weights), the dtype, the candidates, the machine
   (CPU model, logical CPUs, torch threads), the torch/onnxruntime versions and the class;
4. on a miss, every candidate's runner is built (onnxruntime: the export, ~0.5 s for
   srresnet_x4) and upscales one random uint8 h' x w' frame: one untimed call each, then
   rounds that each run every candidate once (the order reversed every other round, so load
   from other jobs falls on both alike): 3, or up to 7 while the rounds disagree on the winner
   (a 3-round calibration picked torch for MSRResNet in a load spike, which 16 bench rounds
   then found 1.7x slower than onnxruntime); the lowest median wins and is written to the
   cache with the times. A candidate that cannot run this plan/dtype (onnxruntime is
   fp32 only) drops out.

Cost: nothing at Engine creation (the torch runner is built, as before). A miss costs 2 x 4
(at most 2 x 8) calls of one frame of at most 128x128 LR pixels plus the export: for
srresnet_x4 at 128x128 ~4 s on the idle 2-core VM (measured 7-22 s as the engine's first call
when it was loaded, export included), at 32x32 under 1 s; the compact model a quarter of that.
Small frames thus pay a small calibration. A hit costs a JSON read (and the export, once per
engine, when onnxruntime is the choice).

SRGAN_FAST_CALIBRATE=0 (or off/no/false): no timing and no file; "auto" is the registry's
static rule (the highest priority: native where srgan_fast._C is built, else torch).
SRGAN_FAST_CALIBRATE=refresh: measure again and overwrite the entries. SRGAN_FAST_CACHE_DIR:
where the file lives (default $XDG_CACHE_HOME/srgan_fast or ~/.cache/srgan_fast). CUDA's "auto"
is not touched by any of this.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import math
import os
import platform
import statistics
import time
import warnings
from dataclasses import dataclass, field, fields
from pathlib import Path

import torch

from ..plan import Plan
from .base import BackendUnavailable, Runner
from .registry import Backend, backend_names, choose_backend, get_backend

__all__ = ["Choice", "AutoCpu", "size_class", "cache_path", "calibration_key", "CALIBRATION_SIZE", "CALIBRATION_ROUNDS"]

CALIBRATION_SIZE = (128, 128)  # the largest calibration frame, LR (h, w)
CALIBRATION_ROUNDS = 3  # timed rounds at least ...
CALIBRATION_MAX_ROUNDS = 7  # ... and at most, while the rounds disagree on the winner
ENV = "SRGAN_FAST_CALIBRATE"
CACHE_FILE = "backend_choice.json"


@dataclass
class Choice:
    """What "auto" chose and why (Engine.backend_choice)."""

    backend: str
    how: str  # "only candidate", "static rule", "measured", "cached"
    times_s: dict[str, float] = field(default_factory=dict)  # median seconds per candidate
    skipped: dict[str, str] = field(default_factory=dict)  # candidate -> why it could not run
    size: tuple = ()  # the (h, w) LR frame it was measured on

    def describe(self) -> str:
        s = f"backend {self.backend} ({self.how}"
        if self.times_s:
            at = f" on {self.size[0]}x{self.size[1]} LR" if self.size else ""
            s += f"{at}: " + ", ".join(f"{k} {v * 1000:.0f} ms" for k, v in sorted(self.times_s.items()))
        if self.skipped:
            s += "; not candidates: " + "; ".join(self.skipped.values())
        return s + ")"


def cache_path() -> Path:
    base = os.environ.get("SRGAN_FAST_CACHE_DIR")
    if not base:
        xdg = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
        base = os.path.join(xdg, "srgan_fast")
    return Path(base) / CACHE_FILE


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _versions() -> str:
    v = f"torch {torch.__version__}"
    try:
        import onnxruntime

        v += f", onnxruntime {onnxruntime.__version__}"
    except ImportError:
        pass
    return v


def _structure(plan: Plan) -> str:
    """The plan's shape without its weights: what its speed depends on."""
    parts = [type(plan.config).__name__, repr(sorted(plan.buffers.items())), f"source={plan.source is not None}"]
    for op in plan.ops:
        for f in fields(op):
            v = getattr(op, f.name)
            if isinstance(v, torch.Tensor):
                v = tuple(v.shape)
            elif isinstance(v, dict):
                v = {k: tuple(t.shape) if isinstance(t, torch.Tensor) else t for k, t in sorted(v.items())}
            parts.append(f"{f.name}={v!r}")
    return hashlib.sha256("|".join(parts).encode()).hexdigest()[:16]


def calibration_key(plan: Plan, dtype: torch.dtype, candidates: list[str]) -> str:
    return " | ".join(
        [
            f"{type(plan.config).__name__} {_structure(plan)}",
            str(dtype).replace("torch.", ""),
            ",".join(sorted(candidates)),
            f"{_cpu_model()} x{os.cpu_count()} threads {torch.get_num_threads()}",
            _versions(),
            f"rounds {CALIBRATION_ROUNDS}",
        ]
    )


# the calibration cache holds one small entry per (model shape, dtype, machine, versions):
# a few KB in practice; anything past this is not our file
CACHE_MAX_BYTES = 4 << 20


def _read_cache(path: Path, quiet: bool = False) -> dict:
    from ..io.paths import NotARegularFile, read_regular_file

    try:
        data = json.loads(read_regular_file(path, CACHE_MAX_BYTES))
        return data if isinstance(data, dict) else {}
    except NotARegularFile as e:  # a FIFO would hang a plain read, /dev/zero would fill memory
        if not quiet:
            warnings.warn(f"calibration cache {e}; ignored: measuring again (and replacing it)", stacklevel=3)
        return {}
    except (OSError, ValueError):
        return {}  # missing or damaged: measured again and rewritten


def _write_cache(path: Path, key: str, entry: dict) -> None:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        data = _read_cache(path, quiet=True)  # the lookup said it already
        data[key] = entry
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        tmp.write_text(json.dumps(data, indent=1, sort_keys=True) + "\n")
        os.replace(tmp, path)
    except OSError:
        pass  # a read-only home: the choice stands for this engine, measured again next time


def measure(
    runners: dict[str, Runner],
    size=CALIBRATION_SIZE,
    rounds: int = CALIBRATION_ROUNDS,
    max_rounds: int = CALIBRATION_MAX_ROUNDS,
    clock=None,
    warm: bool = True,
) -> dict[str, float]:
    """Median seconds per runner on one random uint8 frame of `size`: one untimed call each,
    then rounds of every runner once (the order reversed every other round): `rounds` of them,
    and more, up to `max_rounds`, until the runner with the lowest median was also the faster
    in every round against every other (load that comes and goes on a shared machine makes
    three rounds disagree; a clear winner stops at three)."""
    clock = clock or time.perf_counter
    h, w = size
    x = torch.randint(0, 256, (1, h, w, 3), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    names = list(runners)
    for n in names if warm else ():  # (warm=False: the caller made the untimed calls)
        runners[n](x, True)
    times: dict[str, list[float]] = {n: [] for n in names}
    for r in range(max(rounds, max_rounds)):
        for n in names if r % 2 == 0 else names[::-1]:
            t0 = clock()
            runners[n](x, True)
            times[n].append(clock() - t0)
        if r + 1 >= rounds and _settled(times):
            break
    return {n: statistics.median(t) for n, t in times.items()}


def _settled(times: dict[str, list[float]]) -> bool:
    best = min(times, key=lambda n: statistics.median(times[n]))
    return all(a < b for n in times if n != best for a, b in zip(times[best], times[n]))


def _candidates(device: torch.device) -> list[Backend]:
    out = []
    for name in backend_names():
        b = get_backend(name)
        if device.type in b.auto_devices:
            out.append(b)
    return sorted(out, key=lambda b: -b.priority)


def size_class(h: int, w: int) -> tuple[int, int]:
    """The calibration size class of an h x w LR frame (see the module docstring)."""
    ch, cw = CALIBRATION_SIZE
    return (max(0, math.ceil(math.log2(min(h, ch)))), max(0, math.ceil(math.log2(min(w, cw)))))


class AutoCpu:
    """Backend "auto" on a CPU for one engine: `choose(h, w)` gives (Backend, runner, Choice) for
    frames of h x w, measuring or reading the cache once per size class (module docstring).
    The runners of the backends chosen are kept for the engine's life; the others are freed."""

    def __init__(self, plan: Plan, device: torch.device, dtype: torch.dtype, clock=None):
        self.plan, self.device, self.dtype, self.clock = plan, device, dtype, clock
        self.mode = os.environ.get(ENV, "").strip().lower()
        if self.mode not in ("", "1", "on", "yes", "true", "auto", "0", "off", "no", "false", "refresh"):
            warnings.warn(f"{ENV}={self.mode!r} is not one of 0 (off), 1 (on, the default), refresh: measuring as 1",
                          RuntimeWarning, stacklevel=3)  # fmt: skip
        self.skipped: dict[str, str] = {}
        self.avail: dict[str, Backend] = {}
        if self.mode in ("0", "off", "no", "false"):
            b = choose_backend("auto", device)
            self.avail[b.name] = b
        else:
            for b in _candidates(device):
                why = b.requires(device)
                if why is None:
                    self.avail[b.name] = b
                else:
                    self.skipped[b.name] = why
        if not self.avail:
            raise BackendUnavailable(f"no backend can run on {device}: " + "; ".join(self.skipped.values()))
        self.runners: dict[str, Runner] = {}
        self.choices: dict[tuple[int, int], tuple[Backend, Runner, Choice]] = {}

    def first(self) -> tuple[Backend, Runner, Choice]:
        """Before any frame: the registry's static rule among the candidates (built now, as an
        engine's runner always was), unless the cache already has a choice for full-size frames."""
        if len(self.avail) == 1 or self.mode in ("0", "off", "no", "false"):
            return self.choose(*CALIBRATION_SIZE)
        hit = self._cached(size_class(*CALIBRATION_SIZE))
        if hit is not None:
            return hit
        b = max(self.avail.values(), key=lambda b: b.priority)
        return b, self._runner(b), Choice(b.name, "static rule until the first frame is measured", skipped=self.skipped)

    def _runner(self, b: Backend) -> Runner:
        """The candidate's runner, built once. A candidate below the top priority that fails to
        build for any reason (an export the tracer refuses, a broken onnxruntime) is reported as
        BackendUnavailable, so auto drops it and goes on with the others; the top one (torch) is
        the engine's own path, and its errors are bugs that must show."""
        if b.name not in self.runners:
            try:
                self.runners[b.name] = b.runner(self.plan, self.device, self.dtype)
            except BackendUnavailable:
                raise
            except Exception as e:
                if b.priority >= max(c.priority for c in self.avail.values()):
                    raise
                raise BackendUnavailable(f"backend {b.name!r} failed to build ({type(e).__name__}: {e})") from e
        return self.runners[b.name]

    def _drop(self, name: str, why: str) -> None:
        self.skipped[name] = why
        self.avail.pop(name, None)
        self.runners.pop(name, None)

    def _key(self, cls) -> str:
        return calibration_key(self.plan, self.dtype, list(self.avail)) + f" | class {cls[0]},{cls[1]}"

    def _cached(self, cls):
        if self.mode == "refresh":
            return None
        hit = _read_cache(cache_path()).get(self._key(cls))
        if isinstance(hit, dict) and hit.get("backend") in self.avail:
            b = self.avail[hit["backend"]]
            try:  # an entry damaged by hand: measured again (and rewritten)
                times = {str(k): float(v) for k, v in dict(hit.get("times_s", {})).items()}
                size = tuple(int(v) for v in hit.get("size", ()))
            except (TypeError, ValueError):
                return None
            try:  # only the chosen runner is built
                choice = Choice(b.name, "cached", times, self.skipped, size)
                self.choices[cls] = (b, self._runner(b), choice)
                return self.choices[cls]
            except BackendUnavailable as e:
                self._drop(b.name, str(e))
        return None

    def choose(self, h: int, w: int) -> tuple[Backend, Runner, Choice]:
        cls = size_class(h, w)
        got = self.choices.get(cls)
        if got is not None:
            return got
        if len(self.avail) == 1:
            (b,) = self.avail.values()
            how = f"static rule ({ENV}={self.mode})" if self.mode in ("0", "off", "no", "false") else "only candidate"
            self.choices[cls] = (b, self._runner(b), Choice(b.name, how, skipped=self.skipped))
            return self.choices[cls]
        got = self._cached(cls)
        if got is not None:
            return got
        runners: dict[str, Runner] = {}
        for name, b in list(self.avail.items()):
            try:
                runners[name] = self._runner(b)
            except BackendUnavailable as e:  # e.g. onnxruntime asked for bf16
                self._drop(name, str(e))
        if not runners:
            raise BackendUnavailable(
                f"no backend can run this plan on {self.device}: " + "; ".join(self.skipped.values())
            )
        if len(runners) == 1:
            return self.choose(h, w)
        size = (min(h, CALIBRATION_SIZE[0]), min(w, CALIBRATION_SIZE[1]))
        # the untimed first call of each: a candidate that fails to run is dropped, never fatal
        # (the top-priority one, the engine's own path, raises as it would without auto)
        top = max(self.avail.values(), key=lambda b: b.priority).name
        probe = torch.randint(0, 256, (1, *size, 3), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
        for n in list(runners):
            try:
                runners[n](probe, True)
            except Exception as e:
                if n == top:
                    raise
                self._drop(n, f"backend {n!r} failed on a {size[1]}x{size[0]} frame ({type(e).__name__}: {e})")
                del runners[n]
        if len(runners) == 1:
            return self.choose(h, w)
        times = measure(runners, size=size, clock=self.clock, warm=False)
        name = min(times, key=times.get)
        date = dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")
        _write_cache(
            cache_path(), self._key(cls), {"backend": name, "times_s": times, "size": list(size), "date": date}
        )
        self.choices[cls] = (self.avail[name], runners[name], Choice(name, "measured", times, self.skipped, size))
        # the losers' runners (sessions, weights) are freed; a later size class builds them again
        chosen = {id(c[1]) for c in self.choices.values()}
        self.runners = {n: r for n, r in self.runners.items() if id(r) in chosen}
        return self.choices[cls]
