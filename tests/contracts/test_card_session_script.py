"""benchmarks/card_session.sh in its CPU dry run (CARD_DRY=1): every stage of each part runs its
command path without a GPU, so a lent card's minutes are not spent on a typo."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "benchmarks" / "card_session.sh"


def _run(out, part, **env):
    e = dict(os.environ, CARD_DRY="1", PYTHON=sys.executable, **env)
    return subprocess.run(["bash", str(SCRIPT), str(out), part], cwd=REPO, env=e, capture_output=True, text=True,
                          timeout=900)  # fmt: skip


def test_card_session_refuses_a_bad_part(tmp_path):
    r = _run(tmp_path, "4")
    assert r.returncode == 2 and "PART must be 1, 2 or 3" in r.stderr


@pytest.mark.slow
def test_card_session_part1_dry_run(tmp_path):
    r = _run(tmp_path / "card", "1")
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-2000:]
    out = tmp_path / "card"
    kc = (out / "kernel_check.md").read_text()
    assert "every variant passes" in kc and "sm_90a" in kc  # the card's architecture (the dry run: sm_90a)
    assert "| srresnet_x4 | 1x16x16 | backend " in (out / "auto_picks.md").read_text()  # auto's pick, and how
    assert "test_resblock_fused_cuda" in (out / "cuda_tests.log").read_text()
    assert "test_conv2d_fused_tma_cuda_repeated" in (out / "cuda_tests_tma.log").read_text()
    assert "| engine torch | fp32 | 16x16 | 1 |" in (out / "card_bench.md").read_text()
    assert "commit:" in (out / "card.txt").read_text()


def test_card_session_part3_dry_run(tmp_path):
    r = _run(tmp_path / "card", "3")
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-2000:]
    assert "tests collected" in (tmp_path / "card" / "cuda_tests_configs.log").read_text()


def test_card_session_stages_never_outlive_the_deadline(tmp_path):
    # a deadline already spent: every stage is skipped with a line, none runs, the part fails
    r = _run(tmp_path / "card", "1", CARD_DEADLINE="0")
    assert r.returncode == 1 and r.stdout.count("(skipped: ") >= 5, r.stdout[-3000:]


@pytest.mark.slow
def test_card_session_part2_dry_run_trains(datasets, tmp_path):
    from ..conftest import need

    need(datasets, "T91/HR", "Set5/HR", "Set14/HR")
    r = _run(tmp_path / "card", "2", SRGAN_FAST_DATA=str(datasets))
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-2000:]
    train = tmp_path / "card" / "train"
    assert (train / "srgan" / "DONE").exists() and (train / "eval.json").exists()
