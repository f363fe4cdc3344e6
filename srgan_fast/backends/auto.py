"""How `Engine(backend="auto")` chooses: by measuring, once per machine (or GPU), model shape
and frame-size class. `AutoCpu` on a CPU, `AutoCuda` on a GPU; one class does the work for both
(`Auto`: one probe, one measuring loop, one cache file), the two differ in their candidates,
what names the machine in the cache key, and whether each candidate's output is checked.

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

On CUDA (issue 28) the same steps run with these differences, because a GPU brings a risk a CPU
does not: our Triton kernels have been checked statically for sm_80/86/89/90a, but a config can
still fail to launch, or be wrong, on a card nobody ran them on.

- candidates: the backends with "cuda" in `auto_devices` (triton, torch = cuDNN), each of
  those that can be captured (`Backend.cuda_graph`) also as "<name>+graph" (the whole network
  replayed from a CUDA graph, `CudaGraphRunner`); `triton_tma` only where the GPU has TMA
  (sm_90+) and TRITON_TMA_CHECKED_ON_CARD says its CUDA tests passed on a card. torch is
  always one, and it is the fallback: its errors raise (they are the engine's own path), every
  other candidate's are a drop.
- the probe: the first call of each candidate on the class's frame is checked against the
  torch backend: its float output's max error against torch in fp32 (no TF32) must be at most
  twice torch's own error in the engine's dtype, + 1e-3 (the D6 rule the fp16 tests state:
  tests/families/contract.py). A candidate that fails to build (Triton's compile), to launch,
  or is beyond that (NaN included) is dropped with one line (a RuntimeWarning) saying why; the
  fastest of the rest is picked. So auto is never wrong, and never slower than torch (it is
  timed beside the others).
- a cached pick is trusted only after the same check on one frame (a hit costs the pick's and
  torch's runner and three probe calls); a pick that fails it is dropped and the class measured
  again. An entry names what its measurement dropped, and a dropped candidate is never its pick.
- size classes go up to 256 px (a GPU's per-pixel speed settles later than a CPU's); every
  timed call is synchronized before and after.
- the key names the GPU (name, sm_XY), its driver, and the torch/CUDA/Triton versions.

Cost on CUDA: a miss compiles every Triton candidate at the probe size (seconds: Triton's
cache keeps the binaries for the next process) and runs 2 x 4-8 calls of each; a hit, the
three checking calls.

The cache file is trusted only as far as it is checked (issue 31): it is read only if it is a
regular file of at most CACHE_MAX_BYTES (a FIFO would hang a plain read, a symlink to /dev/zero
fill memory), as a JSON object, and each entry carries a digest of its key (what it was made
from: model shape, dtype, machine, versions, class) and its content, checked on load. Anything
else (a FIFO, a device, a folder, a file over the bound, garbage JSON, an entry whose digest
does not match) is ignored with one line and measured again; the next write replaces the file
(a folder stays: it is the user's). Writes hold a lock file beside the cache while they read,
merge and replace it (through `io.paths.atomic_output`), so two processes calibrating at once
keep both their entries and a reader sees the old file or the new, never half of one.

SRGAN_FAST_CALIBRATE=0 (or off/no/false): no timing and no file; "auto" is the registry's
static rule (the highest priority: native where srgan_fast._C is built, else torch; on CUDA
triton, unchecked). SRGAN_FAST_CALIBRATE=refresh: measure again and overwrite the entries.
SRGAN_FAST_CACHE_DIR: where the file lives (default $XDG_CACHE_HOME/srgan_fast or
~/.cache/srgan_fast).
"""

from __future__ import annotations

import contextlib
import dataclasses
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
from .base import BackendUnavailable, CudaGraphRunner, Runner
from .registry import Backend, backend_names, choose_backend, get_backend

__all__ = [
    "Choice",
    "Auto",
    "AutoCpu",
    "AutoCuda",
    "CudaInfo",
    "size_class",
    "cache_path",
    "calibration_key",
    "CALIBRATION_SIZE",
    "CALIBRATION_SIZE_CUDA",
    "CALIBRATION_ROUNDS",
    "TRITON_TMA_CHECKED_ON_CARD",
]

CALIBRATION_SIZE = (128, 128)  # the largest calibration frame, LR (h, w)
CALIBRATION_SIZE_CUDA = (256, 256)  # ... on a GPU, whose per-pixel speed settles at larger frames
CALIBRATION_ROUNDS = 3  # timed rounds at least ...
CALIBRATION_MAX_ROUNDS = 7  # ... and at most, while the rounds disagree on the winner
ENV = "SRGAN_FAST_CALIBRATE"
CACHE_FILE = "backend_choice.json"
FALLBACK_CUDA = "torch"  # the reference of the probe on CUDA, always a candidate, never dropped
PROBE_ATOL = 1e-3  # the D6 rule: error <= 2 x torch's own error in the dtype + this (unit range)

# triton_tma (conv2d_fused's TMA main loop) joins CUDA's candidates on sm_90+ only once its CUDA
# tests have passed on a card: set this to True in the commit that records such a run
# (benchmarks/card_session.sh part 1: the cuda tests and the TMA loop's x20 border/race tests).
# Until then no card has run it, and the probe's one frame is not a race test.
TRITON_TMA_CHECKED_ON_CARD = False


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


def _cpu_machine() -> str:
    return f"{_cpu_model()} x{os.cpu_count()} threads {torch.get_num_threads()}"


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


def calibration_key(
    plan: Plan, dtype: torch.dtype, candidates: list[str], machine: str | None = None, versions: str | None = None
) -> str:
    """The cache key: model shape, dtype, candidates, machine, versions (the CPU's by default;
    AutoCuda passes the GPU's: `CudaInfo.machine()`, `_cuda_versions()`)."""
    return " | ".join(
        [
            f"{type(plan.config).__name__} {_structure(plan)}",
            str(dtype).replace("torch.", ""),
            ",".join(sorted(candidates)),
            _cpu_machine() if machine is None else machine,
            _versions() if versions is None else versions,
            f"rounds {CALIBRATION_ROUNDS}",
        ]
    )


# ---- the cache file: read only when it is what it claims, written whole under a lock

# the calibration cache holds one small entry per (model shape, dtype, machine, versions):
# a few KB in practice; anything past this is not our file
CACHE_MAX_BYTES = 4 << 20
LOCK_WAIT_S = 10.0  # a writer waits this long for another's lock, then writes without it


def _one_line(e: BaseException | str, limit: int = 300) -> str:
    """An error as one line of at most `limit` characters (Triton's compile errors span pages)."""
    s = " ".join(str(e).split())
    s = f"{type(e).__name__}: {s}" if isinstance(e, BaseException) else s
    return s if len(s) <= limit else s[: limit - 3] + "..."


def _say(msg: str, stacklevel: int = 3) -> None:
    warnings.warn(msg, RuntimeWarning, stacklevel=stacklevel + 1)


def _read_cache(path: Path, quiet: bool = False) -> dict:
    """The cache's entries, or {} when it is absent or not to be trusted (said in one line
    unless `quiet`): not a regular file, over CACHE_MAX_BYTES, not a JSON object."""
    from ..io.paths import NotARegularFile, read_regular_file

    why = None
    try:
        if path.is_dir():  # (opened, a folder reads as an empty file or EISDIR, by platform)
            why = f"{path}: is a folder, not a regular file"
        else:
            data = json.loads(read_regular_file(path, CACHE_MAX_BYTES))
            if isinstance(data, dict):
                return data
            why = f"{path}: holds JSON that is not an object ({type(data).__name__})"
    except FileNotFoundError:
        return {}  # the first run: nothing to say
    except NotARegularFile as e:  # a FIFO would hang a plain read, /dev/zero would fill memory
        why = str(e)
    except ValueError as e:  # garbage, a truncated file, bytes that are not UTF-8
        why = f"{path}: is not valid JSON ({_one_line(e, 120)})"
    except OSError as e:
        from ..io.paths import cache_folder_problem

        folder = cache_folder_problem(path)  # a file where the cache folder should be: said once
        if folder is not None:
            if folder and not quiet:
                _say(folder)
            return {}
        why = f"{path}: cannot be read ({e.strerror or e})"
    if not quiet:
        _say(f"calibration cache {why}; ignored: measuring again (and replacing it)")
    return {}


def _digest(key: str, entry: dict) -> str:
    """What identifies an entry: its key (what it was made from) and its content."""
    body = json.dumps({k: v for k, v in entry.items() if k != "digest"}, sort_keys=True)
    return hashlib.sha256(f"{key}\n{body}".encode()).hexdigest()


def _signed(key: str, entry: dict) -> dict:
    return dict(entry, digest=_digest(key, entry))


@contextlib.contextmanager
def _locked(path: Path):
    """An exclusive lock on `path`'s lock file while the block reads, merges and writes, so two
    processes calibrating at once keep both entries. Where there is no flock (Windows) or the
    lock file cannot be made, or another holder keeps it past LOCK_WAIT_S (a stuck process), the
    block runs without it: a lost entry is measured again, the file stays whole either way."""
    try:
        import fcntl
    except ImportError:
        yield
        return
    lock = path.with_name(f".{path.name}.lock")
    try:
        flags = os.O_RDWR | os.O_CREAT | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0) | getattr(os, "O_NOFOLLOW", 0)
        fd = os.open(lock, flags, 0o644)  # (a symlink planted there is not followed: no lock, no harm)
    except OSError:
        yield
        return
    try:
        deadline = time.monotonic() + LOCK_WAIT_S
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    break
                time.sleep(0.02)
            except OSError:
                break
        yield
    finally:
        os.close(fd)  # (releases the lock)


def _write_cache(path: Path, key: str, entry: dict) -> None:
    """Add (or replace) one entry, signed; the file is replaced whole (atomic_output)."""
    from ..io.paths import atomic_output

    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with _locked(path):
            data = _read_cache(path, quiet=True)  # the lookup said it already
            data[key] = _signed(key, entry)
            with atomic_output(path, suffix=".tmp", follow_symlinks=False) as tmp:
                Path(tmp).write_text(json.dumps(data, indent=1, sort_keys=True) + "\n")
    except OSError:
        pass  # a read-only home, a folder in the file's place: the choice stands for this engine


# ---- measuring


def measure(
    runners: dict[str, Runner],
    size=CALIBRATION_SIZE,
    rounds: int = CALIBRATION_ROUNDS,
    max_rounds: int = CALIBRATION_MAX_ROUNDS,
    clock=None,
    warm: bool = True,
    device: torch.device | None = None,
    sync=None,
) -> dict[str, float]:
    """Median seconds per runner on one random uint8 frame of `size` (on `device`): one untimed
    call each, then rounds of every runner once (the order reversed every other round): `rounds`
    of them, and more, up to `max_rounds`, until the runner with the lowest median was also the
    faster in every round against every other (load that comes and goes on a shared machine
    makes three rounds disagree; a clear winner stops at three). `sync()` (CUDA: synchronize)
    runs before each clock read, so a GPU's queued work is inside the call that queued it."""
    clock = clock or time.perf_counter
    sync = sync or (lambda: None)
    x = _frame(size, device)
    names = list(runners)
    for n in names if warm else ():  # (warm=False: the caller made the untimed calls)
        runners[n](x, True)
    times: dict[str, list[float]] = {n: [] for n in names}
    for r in range(max(rounds, max_rounds)):
        for n in names if r % 2 == 0 else names[::-1]:
            sync()
            t0 = clock()
            runners[n](x, True)
            sync()
            times[n].append(clock() - t0)
        if r + 1 >= rounds and _settled(times):
            break
    return {n: statistics.median(t) for n, t in times.items()}


def _frame(size, device=None) -> torch.Tensor:
    """The probe frame: random uint8 NHWC, the same for every candidate and every process."""
    h, w = size
    x = torch.randint(0, 256, (1, h, w, 3), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    return x if device is None or torch.device(device).type == "cpu" else x.to(device)


def _settled(times: dict[str, list[float]]) -> bool:
    best = min(times, key=lambda n: statistics.median(times[n]))
    return all(a < b for n in times if n != best for a, b in zip(times[best], times[n]))


# ---- candidates


@dataclass(frozen=True)
class CudaInfo:
    """What names a GPU in the cache key, and what decides triton_tma."""

    name: str
    capability: tuple[int, int]
    driver: str

    def machine(self) -> str:
        return f"{self.name} sm_{self.capability[0]}{self.capability[1]} driver {self.driver}"

    @property
    def has_tma(self) -> bool:
        return tuple(self.capability) >= (9, 0)


def _nvidia_driver() -> str:
    try:  # the kernel module's release (550.54.15): what a driver update changes
        with open("/proc/driver/nvidia/version") as f:
            for word in f.readline().split():
                if word[:1].isdigit() and "." in word:
                    return word
    except OSError:
        pass
    try:  # the CUDA API level the driver supports (12040), where /proc says nothing (Windows)
        return f"cuda-api {torch._C._cuda_getDriverVersion()}"
    except Exception:
        return "unknown"


def _cuda_info(device: torch.device) -> CudaInfo:
    index = device.index if device.index is not None else torch.cuda.current_device()
    return CudaInfo(torch.cuda.get_device_name(index), tuple(torch.cuda.get_device_capability(index)), _nvidia_driver())


def _cuda_versions() -> str:
    from importlib import metadata

    try:
        triton = metadata.version("triton")
    except metadata.PackageNotFoundError:
        triton = "none"
    return f"torch {torch.__version__}, cuda {torch.version.cuda}, triton {triton}"


def _candidates(device: torch.device) -> list[Backend]:
    """The registered backends "auto" may pick on `device`, highest priority first; on CUDA
    triton_tma where the GPU has TMA and TRITON_TMA_CHECKED_ON_CARD."""
    out = []
    for name in backend_names():
        b = get_backend(name)
        if device.type in b.auto_devices:
            out.append(b)
    if (
        device.type == "cuda"
        and TRITON_TMA_CHECKED_ON_CARD
        and "triton_tma" in backend_names()
        and all(b.name != "triton_tma" for b in out)
        and _cuda_info(device).has_tma
    ):
        out.append(get_backend("triton_tma"))
    return sorted(out, key=lambda b: -b.priority)


def _graph_runner(make) -> Runner:
    """A candidate's "+graph" variant's runner (a function, so tests can stand in for CUDA)."""
    return CudaGraphRunner(make)


def _graph_variant(b: Backend) -> Backend:
    """`b` with the whole network captured in a CUDA graph and replayed (one launch per call)."""

    def build(plan: Plan, device: torch.device, dtype: torch.dtype) -> Runner:
        return _graph_runner(lambda: b.runner(plan, device, dtype))

    return dataclasses.replace(b, name=f"{b.name}+graph", runner=build, cuda_graph=False,
                               help=f"{b.help}; the whole network replayed from a CUDA graph")  # fmt: skip


def size_class(h: int, w: int, cap: tuple[int, int] = CALIBRATION_SIZE) -> tuple[int, int]:
    """The calibration size class of an h x w LR frame (see the module docstring)."""
    ch, cw = cap
    return (max(0, math.ceil(math.log2(min(h, ch)))), max(0, math.ceil(math.log2(min(w, cw)))))


# ---- auto: one engine's choice per size class


class Auto:
    """Backend "auto" for one engine: `choose(h, w)` gives (Backend, runner, Choice) for frames
    of h x w, measuring or reading the cache once per size class (module docstring). The
    runners of the backends chosen are kept for the engine's life; the others are freed.

    Subclasses say what differs by device: the candidates, the machine and versions in the key,
    the class cap, the fallback, and whether outputs are checked (`checks`) and drops said
    (`loud`)."""

    cap = CALIBRATION_SIZE
    checks = False  # compare each candidate's probe output with the fallback's (the D6 rule)
    loud = False  # say each drop in one line (a RuntimeWarning), not only in Choice.describe()
    first_how = "static rule until the first frame is measured"

    def __init__(self, plan: Plan, device: torch.device, dtype: torch.dtype, clock=None):
        self.plan, self.device, self.dtype, self.clock = plan, device, dtype, clock
        self.mode = os.environ.get(ENV, "").strip().lower()
        if self.mode not in ("", "1", "on", "yes", "true", "auto", "0", "off", "no", "false", "refresh"):
            warnings.warn(f"{ENV}={self.mode!r} is not one of 0 (off), 1 (on, the default), refresh: measuring as 1",
                          RuntimeWarning, stacklevel=3)  # fmt: skip
        self.skipped: dict[str, str] = {}
        self.avail: dict[str, Backend] = {}
        if self.off:
            b = choose_backend("auto", device)
            self.avail[b.name] = b
        else:
            for b in self.candidates():
                why = b.requires(device)
                if why is None:
                    self.avail[b.name] = b
                else:
                    self.skipped[b.name] = why
        if not self.avail:
            raise BackendUnavailable(f"no backend can run on {device}: " + "; ".join(self.skipped.values()))
        # the key names the candidates as they stood before any ran: a drop (onnxruntime in
        # bf16) must not move the entry to a key the next process never looks up
        self.names = list(self.avail)
        self.cannot_run = dict(self.skipped)  # what `requires` refused: not a drop
        self.runners: dict[str, Runner] = {}
        self.choices: dict[tuple[int, int], tuple[Backend, Runner, Choice]] = {}

    # -- what differs by device

    @property
    def off(self) -> bool:
        return self.mode in ("0", "off", "no", "false")

    def candidates(self) -> list[Backend]:
        return _candidates(self.device)

    def machine(self) -> str:
        return _cpu_machine()

    def versions(self) -> str:
        return _versions()

    def fallback(self) -> str:
        """The candidate whose failures raise (the engine's own path): on a CPU the highest
        priority still in the running."""
        return max(self.avail.values(), key=lambda b: b.priority).name

    def sync(self) -> None:
        pass

    # -- the common part

    def first(self) -> tuple[Backend, Runner, Choice]:
        """Before any frame: the fallback (built now, as an engine's runner always was), unless
        the cache already has a choice for full-size frames."""
        if len(self.avail) == 1 or self.off:
            return self.choose(*self.cap)
        hit = self._cached(size_class(*self.cap, cap=self.cap))
        if hit is not None:
            return hit
        b = self.avail[self.fallback()]
        return b, self._runner(b), Choice(b.name, self.first_how, skipped=dict(self.skipped))

    def _runner(self, b: Backend) -> Runner:
        """The candidate's runner, built once. A candidate other than the fallback that fails to
        build for any reason (an export the tracer refuses, a broken onnxruntime, a Triton
        compile error) is reported as BackendUnavailable, so auto drops it and goes on with the
        others; the fallback is the engine's own path, and its errors are bugs that must show."""
        if b.name not in self.runners:
            try:
                self.runners[b.name] = b.runner(self.plan, self.device, self.dtype)
            except BackendUnavailable:
                raise
            except Exception as e:
                if b.name == self.fallback():
                    raise
                raise BackendUnavailable(f"backend {b.name!r} failed to build ({_one_line(e)})") from e
        return self.runners[b.name]

    def _drop(self, name: str, why: str) -> None:
        why = _one_line(why, 400)  # (a backend's own message may span lines)
        self.skipped[name] = why
        self.avail.pop(name, None)
        self.runners.pop(name, None)
        if self.loud:
            _say(f"auto on {self.machine()}: {why}; dropped", stacklevel=4)

    def _key(self, cls) -> str:
        return calibration_key(self.plan, self.dtype, self.names, self.machine(), self.versions()) + (
            f" | class {cls[0]},{cls[1]}"
        )

    def _cached(self, cls):
        if self.mode == "refresh":
            return None
        key = self._key(cls)
        hit = _read_cache(cache_path()).get(key)
        if hit is None:
            return None
        if not isinstance(hit, dict) or hit.get("digest") != _digest(key, hit):
            why = "does not match its digest (edited, damaged or from an older srgan_fast)"
            _say(f"calibration cache {cache_path()}: the entry for this model and machine {why}; ignored: measuring "
                 "again (and replacing it)")  # fmt: skip
            return None
        try:  # a well-signed entry of a shape we do not know: measured again (and rewritten)
            name = str(hit["backend"])
            times = {str(k): float(v) for k, v in dict(hit.get("times_s", {})).items()}
            size = tuple(int(v) for v in hit.get("size", ()))
            dropped = {str(k): str(v) for k, v in dict(hit.get("dropped", {})).items()}
        except (KeyError, TypeError, ValueError):
            return None
        if name not in self.avail or name in dropped:  # dropped here, or by the measurement itself
            return None
        b = self.avail[name]
        try:  # only the chosen runner is built (and on CUDA torch's, to check it against)
            runner = self._runner(b)
            if self.checks and name != self.fallback():
                self._probe({name: runner}, size or self.cap, warm=False)
                if name not in self.avail:
                    return None  # said by the probe; the class is measured again
        except BackendUnavailable as e:
            self._drop(name, str(e))
            return None
        self.choices[cls] = (b, runner, Choice(name, "cached", times, {**self.skipped, **dropped}, size))
        if self.checks:
            self._keep_chosen()  # (the fallback's runner, built to check against)
        return self.choices[cls]

    def _probe(self, runners: dict[str, Runner], size, warm: bool = True) -> dict[str, Runner]:
        """The untimed first call of each runner on the probe frame (`warm`: the uint8 call the
        timing makes, so compiles stay out of it), and with `checks` the float call compared
        with the fallback's; a candidate that fails to run or is beyond the rule is dropped.
        The fallback's own failures raise. Returns the runners left."""
        top = self.fallback()
        x = _frame(size, self.device)
        label = f"on a {size[1]}x{size[0]} frame"
        for n in list(runners) if warm else ():
            try:
                runners[n](x, True)
            except Exception as e:
                if n == top:
                    raise
                self._drop(n, f"backend {n!r} failed {label} ({_one_line(e)})")
                del runners[n]
        if not self.checks or not (set(runners) - {top}):
            return runners
        ref = self._runner(self.avail[top])  # (built by now unless a cached pick is being checked)
        own = ref(x, False).float()
        if self.dtype == torch.float32:
            want, own_err = own, 0.0
        else:  # torch in fp32 (no TF32: TorchRunner's fp32 parity mode), built for the probe only
            want = self.avail[top].runner(self.plan, self.device, torch.float32)(x, False).float()
            own_err = (own - want).abs().max().item()
        tol = 2 * own_err + PROBE_ATOL
        dname = str(self.dtype).replace("torch.", "")
        for n in [n for n in runners if n != top]:
            try:
                got = runners[n](x, False)
                err = float("inf") if got.shape != want.shape else (got.float() - want).abs().max().item()
            except Exception as e:
                self._drop(n, f"backend {n!r} failed {label} ({_one_line(e)})")
                del runners[n]
                continue
            if not err <= tol:  # (NaN included)
                self._drop(n, f"backend {n!r} differs from {top} {label}: max error {err:.3g} against {top} in "
                              f"fp32, over 2 x {top}'s own {dname} error {own_err:.3g} + {PROBE_ATOL:g}")  # fmt: skip
                del runners[n]
        return runners

    def choose(self, h: int, w: int) -> tuple[Backend, Runner, Choice]:
        cls = size_class(h, w, cap=self.cap)
        got = self.choices.get(cls)
        if got is not None:
            return got
        if len(self.avail) == 1:
            (b,) = self.avail.values()
            how = f"static rule ({ENV}={self.mode})" if self.off else "only candidate"
            self.choices[cls] = (b, self._runner(b), Choice(b.name, how, skipped=dict(self.skipped)))
            return self.choices[cls]
        got = self._cached(cls)
        if got is not None:
            return got
        runners: dict[str, Runner] = {}
        for name, b in list(self.avail.items()):
            try:
                runners[name] = self._runner(b)
            except BackendUnavailable as e:  # e.g. onnxruntime asked for bf16, a Triton compile error
                self._drop(name, str(e))
        if not runners:
            raise BackendUnavailable(
                f"no backend can run this plan on {self.device}: " + "; ".join(self.skipped.values())
            )
        if len(runners) == 1:
            return self.choose(h, w)
        size = (min(h, self.cap[0]), min(w, self.cap[1]))
        # a candidate that fails to run (or, checked, is wrong) is dropped, never fatal (the
        # fallback, the engine's own path, raises as it would without auto)
        runners = self._probe(runners, size)
        if len(runners) == 1:
            return self.choose(h, w)
        times = measure(runners, size=size, clock=self.clock, warm=False, device=self.device, sync=self.sync)
        name = min(times, key=times.get)
        date = dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")
        dropped = {n: why for n, why in self.skipped.items() if n not in self.cannot_run}  # (not `requires`)
        entry = {"backend": name, "times_s": times, "size": list(size), "date": date}
        _write_cache(cache_path(), self._key(cls), dict(entry, dropped=dropped) if dropped else entry)
        self.choices[cls] = (self.avail[name], runners[name], Choice(name, "measured", times, dict(self.skipped), size))
        self._keep_chosen()
        return self.choices[cls]

    def _keep_chosen(self) -> None:
        # the losers' runners (sessions, weights) are freed; a later size class builds them again
        chosen = {id(c[1]) for c in self.choices.values()}
        self.runners = {n: r for n, r in self.runners.items() if id(r) in chosen}


class AutoCpu(Auto):
    """Backend "auto" on a CPU: native, torch and onnxruntime measured (module docstring)."""


class AutoCuda(Auto):
    """Backend "auto" on CUDA: each candidate (triton, torch = cuDNN, each with CUDA graphs on
    and off where it can be captured; triton_tma where allowed) is built and runs a probe frame
    at the first frame of a size class; a candidate that fails to compile or launch, or whose
    output is beyond the D6 rule against torch, is dropped with one line; the fastest of the
    rest is picked and cached per GPU, driver, versions and model shape. torch is always a
    candidate and the fallback, so auto is never slower than it, nor wrong."""

    cap = CALIBRATION_SIZE_CUDA
    checks = True
    loud = True
    first_how = f"{FALLBACK_CUDA}, the fallback, until the first frame is probed"

    def __init__(self, plan: Plan, device: torch.device, dtype: torch.dtype, clock=None):
        self.info = _cuda_info(torch.device(device))
        super().__init__(plan, torch.device(device), dtype, clock)

    def candidates(self) -> list[Backend]:
        out = list(_candidates(self.device))
        if all(b.name != FALLBACK_CUDA for b in out):
            out.append(get_backend(FALLBACK_CUDA))  # always one: the probe's reference
        return out + [_graph_variant(b) for b in out if b.cuda_graph]

    def machine(self) -> str:
        return self.info.machine()

    def versions(self) -> str:
        return _cuda_versions()

    def fallback(self) -> str:
        return FALLBACK_CUDA if FALLBACK_CUDA in self.avail else super().fallback()

    def sync(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)


def make_auto(plan: Plan, device: torch.device, dtype: torch.dtype) -> Auto | None:
    """The engine's "auto" for `device`: AutoCpu, AutoCuda, or None where auto is the static rule."""
    kind = {"cpu": AutoCpu, "cuda": AutoCuda}.get(torch.device(device).type)
    return None if kind is None else kind(plan, device, dtype)
