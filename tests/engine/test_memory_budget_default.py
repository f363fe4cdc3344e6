"""The CPU's default memory budget: 40% of the memory available now, never under 4 GiB (a flat
4 GiB tiled 540p MSRResNet/RRDBNet frames, whose halos then cost 2.4x the work)."""

import torch

from srgan_fast import runtime


def test_cpu_budget_follows_available_memory_with_a_floor(monkeypatch):
    cpu = torch.device("cpu")
    monkeypatch.setattr(runtime, "_available_ram", lambda: 30 << 30)
    assert runtime.default_memory_budget(cpu) == int((30 << 30) * 0.4)
    monkeypatch.setattr(runtime, "_available_ram", lambda: 2 << 30)  # a small machine: the floor
    assert runtime.default_memory_budget(cpu) == 4 << 30
    monkeypatch.setattr(runtime, "_available_ram", lambda: None)  # no /proc/meminfo (macOS, Windows)
    assert runtime.default_memory_budget(cpu) == 4 << 30


def test_available_ram_reads_meminfo_here():
    avail = runtime._available_ram()
    assert avail is None or avail > 64 << 20
