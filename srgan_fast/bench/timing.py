"""The benchmark's clock and timing loops: one method on its own (time_fn), several in
seeded, rotating rounds (round_orders, time_interleaved), and the statistics of a row
(timing_stats, per_round_speedups). Shared by the benchmark scripts (training/bench.py,
benchmarks/profile_ops.py): one copy, and one set of JSON keys in every results file."""

from __future__ import annotations

import random
import statistics
import time

import torch


def sync(device: torch.device) -> None:
    """Wait for `device` (a no-op on the CPU) so that a clock read sees finished work."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def now() -> float:
    """The benchmark's clock (time.perf_counter; a test replaces it with a simulated one)."""
    return time.perf_counter()


def time_fn(fn, inputs, device, warmup: int, repeats: int, clock=None) -> list[float]:
    """Seconds of each of `repeats` calls fn(inputs[i % len]), after `warmup` untimed ones;
    the device is synchronised before each clock read (one method on its own: `srgan-fast
    bench --order sequential`; time_interleaved times several methods round by round)."""
    clock = clock or now
    for i in range(warmup):
        fn(inputs[i % len(inputs)])
    sync(device)
    times = []
    for i in range(repeats):
        x = inputs[i % len(inputs)]
        sync(device)
        t0 = clock()
        fn(x)
        sync(device)
        times.append(clock() - t0)
    return times


def cuda_time(fn, repeats: int = 20, warmup: int = 3) -> float:
    """Median milliseconds of fn() on the current CUDA stream, timed with CUDA events."""
    for _ in range(warmup):
        fn()
    ts = []
    for _ in range(repeats):
        a, b = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        a.record()
        fn()
        b.record()
        b.synchronize()
        ts.append(a.elapsed_time(b))
    return statistics.median(ts)


def peak_matmul_tflops(device: torch.device, n: int = 8192, dtype=torch.bfloat16, repeats: int = 20) -> float:
    """The card's practical tensor-core peak, measured now: a large bf16 matmul (TFLOP/s)."""
    a = torch.randn(n, n, device=device, dtype=dtype)
    b = torch.randn(n, n, device=device, dtype=dtype)
    for _ in range(3):
        a @ b
    sync(device)
    t0 = time.perf_counter()
    for _ in range(repeats):
        a @ b
    sync(device)
    return 2 * n**3 * repeats / (time.perf_counter() - t0) / 1e12


def cpu_peak_matmul_gflops(dtype=torch.float32, n: int = 2048, calls: int = 5) -> float:
    """This CPU's practical matmul peak, measured now with torch's current threads (those the
    bench runs with): the median GFLOP/s of `calls` torch.mm(n x n, n x n) after one untimed
    call. fp32 and bf16 each have their own (a row is compared with the peak of its dtype)."""
    g = torch.Generator().manual_seed(0)
    a = torch.randn(n, n, generator=g).to(dtype)
    b = torch.randn(n, n, generator=g).to(dtype)
    torch.mm(a, b)
    times = []
    for _ in range(max(1, calls)):
        t0 = time.perf_counter()
        torch.mm(a, b)
        times.append(time.perf_counter() - t0)
    return 2 * n**3 / statistics.median(times) / 1e9


def round_orders(n: int, rounds: int, seed: int | None = 0) -> list[list[int]]:
    """The order in which n methods run in each of `rounds` rounds (indices 0..n-1).

    Rounds come in cycles: the rows of a Williams design (n rows for even n, 2n for odd n,
    each the first rotated by one more step), so over a cycle every method runs equally
    often in every position, and just after every other method equally often (whose
    leftovers in caches and thread pools it meets), the standard balance of a crossover
    trial. Each cycle relabels the methods by a permutation drawn from `seed` (the same
    orders on every run with one seed; seed None: none, round r is the design's row r)."""
    if n == 0:
        return [[] for _ in range(rounds)]
    first, lo, hi = [0], 1, n - 1  # 0, 1, n-1, 2, n-2, ...: consecutive steps all differ mod n
    while lo <= hi:
        first.append(lo)
        lo += 1
        if lo <= hi:
            first.append(hi)
            hi -= 1
    rows = [[(v + r) % n for v in first] for r in range(n)]
    if n % 2:
        rows += [row[::-1] for row in rows]
    rng = random.Random(seed)
    orders: list[list[int]] = []
    label = list(range(n))
    for r in range(rounds):
        if r % len(rows) == 0 and seed is not None:
            label = list(range(n))
            rng.shuffle(label)
        orders.append([label[v] for v in rows[r % len(rows)]])
    return orders


def time_interleaved(
    calls,
    rounds: int,
    warmup: int = 0,
    seed: int | None = 0,
    device: torch.device | None = None,
    clock=None,
    pause: float = 0.0,
) -> tuple[list[list[float]], dict[int, BaseException]]:
    """Time methods in rounds: `warmup` untimed rounds, then `rounds` timed ones; every round
    runs each method once, calls[i](r) for round r (0-based, warm-up rounds included), in
    the order round_orders(len(calls), warmup + rounds, seed) gives.

    Returns (times, errors): times[i][k] is method i's seconds in timed round k, so
    times[i][k] and times[j][k] ran moments apart, under the same load. The device is
    synchronised before each clock read. A method that raises is dropped from the rounds
    that follow (its error in errors[i]; its list stops there). `pause`: seconds slept before
    each call, so a runtime whose idle threads spin on after its call (ONNX Runtime's pool)
    does not slow the method that runs next."""
    device = device or torch.device("cpu")
    clock = clock or now
    times: list[list[float]] = [[] for _ in calls]
    errors: dict[int, BaseException] = {}
    for r, order in enumerate(round_orders(len(calls), warmup + rounds, seed)):
        for i in order:
            if i in errors:
                continue
            if pause > 0:
                time.sleep(pause)
            try:
                sync(device)
                t0 = clock()
                calls[i](r)
                sync(device)
                t = clock() - t0
            except Exception as e:  # reported by the caller, the other methods go on
                errors[i] = e
                continue
            if r >= warmup:
                times[i].append(t)
    return times, errors


def per_round_speedups(base_times: list[float], times: list[float]) -> list[float]:
    """base/method for each round both have (speed-up over the baseline, round by round)."""
    return [b / t for b, t in zip(base_times, times)]


def timing_stats(times: list[float], base_times: list[float] | None, paired: bool) -> dict:
    """A row's timing keys from its own samples: median, min, max; speed-up over the
    baseline's median (speedup_vs_eager_fp32, as before interleaving); with paired=True
    (the samples came from the same rounds as base_times) also the median, min and max of
    the per-round speed-ups, which load that moves between rounds does not bias."""
    med = statistics.median(times)
    out = {
        "median_s": med,
        "min_s": min(times),
        "max_s": max(times),
        "speedup_vs_eager_fp32": statistics.median(base_times) / med if base_times else None,
        "speedup_vs_eager_fp32_paired": None,
        "speedup_vs_eager_fp32_paired_min": None,
        "speedup_vs_eager_fp32_paired_max": None,
    }
    if paired and base_times:
        s = per_round_speedups(base_times, times)
        if s:
            out["speedup_vs_eager_fp32_paired"] = statistics.median(s)
            out["speedup_vs_eager_fp32_paired_min"] = min(s)
            out["speedup_vs_eager_fp32_paired_max"] = max(s)
    return out
