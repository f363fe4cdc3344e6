"""`srgan-fast bench --order interleaved` (issue 20): methods timed round by round, so load
that changes during a run on a shared machine cannot move the ratios between them.

The timing logic runs against a simulated clock and fake methods whose cost scales with a
simulated machine load; one quick real CPU run checks the whole command end to end.
"""

from __future__ import annotations

import json
import statistics

import pytest
import torch

from srgan_fast import bench
from srgan_fast.families.srresnet.arch import Generator
from srgan_fast.weights import save_generator


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory):
    torch.manual_seed(3)
    return str(save_generator(Generator("tiny_x4"), tmp_path_factory.mktemp("bench") / "tiny.safetensors"))


class World:
    """A simulated machine: a clock, and a background load (a function of that clock) that
    stretches every call; a call's duration is its cost times the load when it starts."""

    def __init__(self, load):
        self.t = 0.0
        self.load = load

    def clock(self) -> float:
        return self.t

    def method(self, cost: float, out=None):
        def fn(*_):
            self.t += cost * self.load(self.t)
            return out

        return fn


def step_load(at: float, before: float = 1.0, after: float = 4.0):
    return lambda t: before if t < at else after


# ---------------------------------------------------------------- round order


@pytest.mark.parametrize("n", [2, 3, 4, 5, 6])
def test_round_orders_balance_positions_and_predecessors(n):
    """A cycle (n rounds for even n, 2n for odd) puts every method in every position equally
    often, and right after every other method equally often, whatever the seed."""
    cycle = n if n % 2 == 0 else 2 * n
    for seed in (None, 0, 1):
        orders = bench.round_orders(n, 2 * cycle, seed)
        assert len(orders) == 2 * cycle
        for o in orders:
            assert sorted(o) == list(range(n))  # each method exactly once per round
        for c in (orders[:cycle], orders[cycle:]):
            for pos in range(n):
                col = [o[pos] for o in c]
                assert all(col.count(i) == cycle // n for i in range(n))
            pairs = [(o[k], o[k + 1]) for o in c for k in range(n - 1)]
            want = cycle // n  # times each ordered pair (a just before b) occurs
            assert all(pairs.count((a, b)) == want for a in range(n) for b in range(n) if a != b)


def test_round_orders_rotate_and_are_seeded():
    plain = bench.round_orders(5, 5, seed=None)
    for r in range(5):  # each round is the first rotated r steps (in method numbers)
        assert plain[r] == [(v + r) % 5 for v in plain[0]]
    assert bench.round_orders(3, 3, seed=None) == [[0, 1, 2], [1, 2, 0], [2, 0, 1]]
    assert bench.round_orders(4, 8, seed=3) == bench.round_orders(4, 8, seed=3)
    assert bench.round_orders(4, 8, seed=3) != bench.round_orders(4, 8, seed=4)
    design, seeded = bench.round_orders(4, 4, None), bench.round_orders(4, 8, seed=0)
    for c in (0, 4):  # the same design, the methods relabelled per cycle
        label = dict(zip(design[0], seeded[c]))
        assert [[label[v] for v in o] for o in design] == seeded[c : c + 4]
    assert bench.round_orders(1, 2) == [[0], [0]] and bench.round_orders(0, 2) == [[], []]


def test_time_interleaved_runs_rounds_in_the_seeded_order():
    seen = []
    calls = [lambda r, i=i: seen.append((r, i)) for i in range(3)]
    times, errors = bench.time_interleaved(calls, rounds=4, warmup=2, seed=7)
    assert not errors and [len(t) for t in times] == [4, 4, 4]  # warm-up rounds not timed
    want = [(r, i) for r, o in enumerate(bench.round_orders(3, 6, seed=7)) for i in o]
    assert seen == want


# ---------------------------------------------------------------- ratios under moving load


def test_per_round_ratio_survives_a_load_step_that_fools_sequential_timing():
    """Eager costs 1.0, the fast method 0.5 (2x); the machine's load goes from 1 to 4 halfway
    through. Timed one method after the other, the fast one meets all of the load and looks
    2x slower than eager; timed in rounds, every clean round says 2x and the median does."""
    true_speedup = 2.0
    rounds = 9

    w = World(step_load(at=rounds * 1.0))  # eager's repeats end just as the load arrives
    base, fast = w.method(1.0), w.method(0.5)
    seq_base = bench.time_fn(base, [None], torch.device("cpu"), 0, rounds, clock=w.clock)
    seq_fast = bench.time_fn(fast, [None], torch.device("cpu"), 0, rounds, clock=w.clock)
    seq = bench.timing_stats(seq_fast, seq_base, paired=False)
    assert seq["speedup_vs_eager_fp32"] == pytest.approx(0.5)  # wrong by 4x
    assert seq["speedup_vs_eager_fp32_paired"] is None  # no rounds to pair

    w = World(step_load(at=rounds * 1.5 / 2))  # the step lands mid-run, inside some round
    calls = [lambda r: w.method(1.0)(), lambda r: w.method(0.5)()]
    times, errors = bench.time_interleaved(calls, rounds, warmup=0, seed=0, clock=w.clock)
    assert not errors
    st = bench.timing_stats(times[1], times[0], paired=True)
    assert st["speedup_vs_eager_fp32_paired"] == pytest.approx(true_speedup, rel=1e-12)
    # each row's median and spread come from its own samples (both loads show in the range)
    assert st["min_s"] == pytest.approx(0.5) and st["max_s"] == pytest.approx(2.0)
    assert st["median_s"] == statistics.median(times[1])
    # the one round that straddles the step is the only one off 2x
    ratios = bench.per_round_speedups(times[0], times[1])
    assert sum(abs(r - true_speedup) > 1e-9 for r in ratios) <= 1


def test_per_round_ratio_under_load_that_changes_every_round():
    """Load swinging from round to round (1x, 3x, 1.5x, 5x, ...): each method's own times
    spread 5x, yet its per-round ratio to eager is exact in every round."""
    pattern = [1.0, 3.0, 1.5, 5.0, 2.0, 1.0, 4.0]
    w = World(lambda t: 1.0)
    costs = [1.0, 0.8, 0.5]
    calls = [lambda r, c=c: w.method(c * pattern[r % len(pattern)])() for c in costs]
    times, errors = bench.time_interleaved(calls, rounds=21, warmup=1, seed=1, clock=w.clock)
    assert not errors
    for c, t in zip(costs[1:], times[1:]):
        st = bench.timing_stats(t, times[0], paired=True)
        assert st["speedup_vs_eager_fp32_paired"] == pytest.approx(1.0 / c, rel=1e-9)
        assert st["speedup_vs_eager_fp32_paired_min"] == pytest.approx(st["speedup_vs_eager_fp32_paired_max"])
        assert st["max_s"] / st["min_s"] == pytest.approx(5.0)  # the load itself did swing


def test_a_method_that_fails_mid_run_is_dropped_and_the_others_go_on():
    w = World(lambda t: 1.0)

    def flaky(r):
        if r == 3:
            raise RuntimeError("out of memory")
        w.method(0.5)()

    times, errors = bench.time_interleaved([lambda r: w.method(1.0)(), flaky], rounds=6, warmup=1, clock=w.clock)
    assert list(errors) == [1] and "out of memory" in str(errors[1])
    assert len(times[0]) == 6 and len(times[1]) == 2  # timed rounds 0 and 1 (r = 1, 2)
    assert bench.per_round_speedups(times[0], times[1]) == [2.0, 2.0]


def _fake_methods(world, out_shape):
    out = torch.zeros(out_shape)

    def make(cost):
        return lambda: world.method(cost, out)

    def methods_for(device, dtypes, model, which, *a, **k):
        return [
            ("eager NCHW", "fp32", make(1.0)),
            ("fake fast", "fp32", make(0.5)),
            ("fake slow", "fp32", make(2.0)),
        ]

    return methods_for


@pytest.mark.parametrize("order", ["interleaved", "sequential"])
def test_main_reports_per_round_ratios_with_fake_methods_under_moving_load(
    order, tiny_model, tmp_path, monkeypatch, capsys
):
    """The whole command with the methods replaced by fakes (eager 1.0, fast 0.5, slow 2.0)
    on a simulated clock, and a neighbour's job that quadruples the load once eager's
    sequential repeats are over: interleaved rows keep the true ratios, sequential ones are
    off by 4x, as the issue saw (engine/ONNX Runtime 2.2 one run, 0.45 the next)."""
    w = World(step_load(at=11.0))  # sequential: eager's first call, 1 warm-up, 9 repeats
    monkeypatch.setattr(bench, "now", w.clock)
    monkeypatch.setattr(bench, "methods_for", _fake_methods(w, (1, 3, 32, 32)))
    argv = ["--model", tiny_model, "--preset", "8x8", "--repeats", "9", "--warmup", "1", "--order", order]
    argv += ["--out", str(tmp_path)]
    assert bench.main(argv) == 0
    rows = [json.loads(x) for x in (tmp_path / "bench_engine.jsonl").read_text().splitlines()]
    assert [r["method"] for r in rows] == ["eager NCHW", "fake fast", "fake slow"]
    assert all(r["order"] == order and len(r["times_s"]) == 9 and r["repeats"] == 9 for r in rows)
    assert all(r["median_s"] == statistics.median(r["times_s"]) for r in rows)
    fast, slow = rows[1], rows[2]
    if order == "interleaved":
        assert fast["speedup_vs_eager_fp32_paired"] == pytest.approx(2.0, rel=1e-9)
        assert slow["speedup_vs_eager_fp32_paired"] == pytest.approx(0.5, rel=1e-9)
        assert fast["speedup_vs_eager_fp32_paired_min"] <= 2.0 <= fast["speedup_vs_eager_fp32_paired_max"]
        assert fast["max_s"] == pytest.approx(4 * fast["min_s"])  # its own samples show the load
        assert rows[0]["order_seed"] == 0
        assert "| fake fast | fp32 | 8x8 |" in capsys.readouterr().out
    else:
        assert fast["speedup_vs_eager_fp32"] == pytest.approx(0.5)  # true 2.0
        assert slow["speedup_vs_eager_fp32"] == pytest.approx(0.125)  # true 0.5
        assert fast["speedup_vs_eager_fp32_paired"] is None and rows[0]["order_seed"] is None


# ---------------------------------------------------------------- the real command


def test_real_cpu_run_of_two_cheap_methods(tiny_model, tmp_path, capsys):
    argv = ["--device", "cpu", "--model", tiny_model, "--preset", "12x10", "--repeats", "3", "--warmup", "1"]
    argv += ["--methods", "eager NCHW", "engine torch", "--out", str(tmp_path)]
    assert bench.main(argv) == 0
    rows = [json.loads(x) for x in (tmp_path / "bench_engine.jsonl").read_text().splitlines()]
    assert [r["method"] for r in rows] == ["eager NCHW", "engine torch"]
    for r in rows:
        assert r["order"] == "interleaved" and len(r["times_s"]) == 3
        assert r["min_s"] <= r["median_s"] <= r["max_s"] and r["host_peak_rss_mib"] > 0
        assert r["speedup_vs_eager_fp32_paired_min"] <= r["speedup_vs_eager_fp32_paired"]
        assert r["speedup_vs_eager_fp32_paired"] <= r["speedup_vs_eager_fp32_paired_max"]
    assert rows[0]["speedup_vs_eager_fp32"] == 1.0 and rows[0]["speedup_vs_eager_fp32_paired"] == 1.0
    assert rows[1]["psnr_vs_fp32_db"] > 100  # the engine still matches fp32 eager
    out = capsys.readouterr().out
    assert "order interleaved (seed 0)" in out and "vs eager fp32 per round (min-max)" in out
    assert "| engine torch | fp32 | 12x10 |" in out


def test_default_output_is_a_fresh_run_folder_in_the_current_directory(tiny_model, tmp_path, monkeypatch):
    tracked = bench.Path(bench.__file__).resolve().parents[2] / "benchmarks" / "results" / "bench_engine.jsonl"
    before = tracked.stat() if tracked.exists() else None
    monkeypatch.chdir(tmp_path)
    argv = ["--model", tiny_model, "--preset", "8x8", "--repeats", "1", "--warmup", "0", "--methods", "eager NCHW"]
    assert bench.main(argv) == 0
    runs = list((tmp_path / "bench_results").iterdir())
    assert len(runs) == 1 and runs[0].name.endswith("-tiny")
    assert len((runs[0] / "bench_engine.jsonl").read_text().splitlines()) == 1
    table = (runs[0] / "table.md").read_text()
    assert "--methods 'eager NCHW'" in table and "| eager NCHW | fp32 | 8x8 |" in table
    after = tracked.stat() if tracked.exists() else None
    assert (before and (before.st_size, before.st_mtime_ns)) == (after and (after.st_size, after.st_mtime_ns))
    # a second run in the same second gets its own folder
    a, b = bench.default_run_dir("x.safetensors", tmp_path), None
    a.mkdir(parents=True)
    b = bench.default_run_dir("x.safetensors", tmp_path)
    assert a != b and a.name.endswith("-x") and not b.exists()


def test_order_flag():
    p = bench.build_parser()
    assert p.parse_args([]).order == "interleaved" and p.parse_args([]).out is None
    assert p.parse_args(["--order", "sequential"]).order == "sequential"
    with pytest.raises(SystemExit):
        p.parse_args(["--order", "shuffled"])
    help_text = p.format_help()
    assert "--order {interleaved,sequential}" in help_text and "rounds" in help_text
