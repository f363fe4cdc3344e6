#!/usr/bin/env bash
# Everything a lent GPU (H100/H200) is needed for, in priority order, as one prepared script.
#
#   bash benchmarks/card_session.sh OUTDIR [PART]       PART: 1 (default), 2 or 3
#   CARD_DRY=1 bash benchmarks/card_session.sh OUTDIR [PART]   # the CPU dry run (no GPU; ~1 min)
#
# A session has 15 device-minutes in all, start-up included, and one call may run 10: each part
# fits one call of <= 9.5 min (timeout_s=570), run back to back on the warm machine. Every stage
# is cut to what is left of CARD_DEADLINE (540 s from the script's start), so a slow stage costs
# the stages after it, never the call (the bench's per-row times are in card_bench.log as they come).
#
#   PART 1, kernels (issue 17), <= 9 min, in this order:
#     env; install (no deps, no csrc build); the cuda tests of the kernels, the engine and the
#     compact family; the TMA loop's repeated (x20) border/race tests on their own; the bench
#     (270p -> 1080p fp16, batch 8: eager, torch.compile, every Triton backend with and without
#     CUDA graphs); the per-op profile (pointer loop, TMA loop, cuDNN); the loaded kernels'
#     registers, spills and shared memory beside the static table of the card's architecture
#     (benchmarks/kernel_check.py --arch 80/86/89/90, on the card's own Triton), with the
#     autotuner's choices; then auto's picks (the first-use probe: every candidate's time, and
#     why any was dropped) for srresnet_x4 and the compact model.
#   PART 2, the SRGAN model (issue 18), ~4 min: benchmarks/gpu_train.sh's srgan and eval stages
#     (needs the packed data: carry .device_data, made by `python -m srgan_fast.training.pack_data
#     .device_data` here), then torch.compile max-autotune as its own step if time is left.
#   PART 3, the rest, ~9 min: batch 1 with CUDA graphs, RRDBNet x4 (cuda parity; batch 1 and 4
#     against eager and torch.compile), every autotune config forced (cuda tests), 540p -> 4K
#     through the tiler, the autotune report, compact rows, then video decode on the GPU (NVDEC +
#     DLPack, benchmarks/card_video.py; needs PyAV on the card, else it says so and is skipped).
#
# From the device tool (commit first; results come back under $OUT):
#   run(command="bash benchmarks/card_session.sh $OUT/card 1", timeout_s=570)
#   run(command="bash benchmarks/card_session.sh $OUT/card 2", carry=[".device_data"], timeout_s=570)
# Then commit OUTDIR under benchmarks/results/<card>_<date>/ with the commit it ran (card.txt).
# Every stage has its own timeout, so a slow stage costs its own minutes, not the next stage's.
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${1:?usage: bash benchmarks/card_session.sh OUTDIR [1|2|3]}
PART=${2:-1}
case "$PART" in 1 | 2 | 3) ;; *) echo "PART must be 1, 2 or 3, got $PART" >&2; exit 2 ;; esac
PY=${PYTHON:-python3}
DRY=${CARD_DRY:-0}
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1
status=0
t0=$(date +%s)
stage() { echo; echo "== [$(($(date +%s) - t0)) s] $*"; }
# run a stage with its own time limit; a failure is recorded, the next stage still runs
DEADLINE=${CARD_DEADLINE:-540}
step() {
  local limit=$1; shift
  local left=$((DEADLINE - ($(date +%s) - t0)))
  if [ "$left" -lt 20 ]; then echo "   (skipped: ${left} s left of the ${DEADLINE} s budget)"; status=1; return 0; fi
  [ "$limit" -gt "$left" ] && limit=$left
  timeout "$limit" "$@"
  local rc=$?
  if [ $rc -eq 124 ]; then echo "   (timed out after $limit s)"; status=1
  elif [ $rc -ne 0 ]; then echo "   (exit $rc)"; status=1; fi
  return 0
}

if [ "$DRY" = 1 ]; then
  export TRITON_INTERPRET=1 CUDA_VISIBLE_DEVICES=""
  DEV=cpu
else
  DEV=cuda
fi

stage "env (part $PART)"
{
  echo "date: $(date -u +%FT%TZ)"
  echo "commit: $(git rev-parse HEAD 2>/dev/null || echo "${CARD_COMMIT:-unknown (no .git on the device: say which commit in the results README)}")"
  if [ "$DRY" = 1 ]; then echo "CARD_DRY=1: CPU dry run, no GPU figures"; else
    nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm --format=csv; fi
  $PY -c "import sys, torch, triton; print('python', sys.version.split()[0], 'torch', torch.__version__, 'triton', triton.__version__)"
} 2>&1 | tee "$OUT/card.txt"

if [ "$DRY" != 1 ]; then
  stage "install (no deps, no network)"
  SRGAN_FAST_BUILD_EXT=0 timeout 90 $PY -m pip install -q --no-deps --no-build-isolation -e . > "$OUT/install.log" 2>&1 \
    || { tail -20 "$OUT/install.log"; exit 1; }
fi

if [ "$PART" = 1 ]; then
  TESTS="tests/kernels/test_conv2d_fused.py tests/kernels/test_resblock_fused.py tests/engine/test_engine_cuda.py tests/families/test_srvgg_compact.py"
  stage "cuda tests: kernels (pointer and TMA loops, every dtype), resblock_fused, engine, compact"
  if [ "$DRY" = 1 ]; then
    step 120 $PY -m pytest -q -m cuda -p no:cacheprovider --collect-only $TESTS > "$OUT/cuda_tests.log" 2>&1
  else
    SRGAN_FAST_AUTOTUNE=0 step 170 $PY -m pytest -q -m cuda -p no:cacheprovider -rs $TESTS \
      -k "not tma_cuda_repeated and not every_autotune_config" > "$OUT/cuda_tests.log" 2>&1
  fi
  tail -4 "$OUT/cuda_tests.log"

  stage "cuda tests: the TMA loop x20 (zero fill at the borders, mbarrier pipeline)"
  if [ "$DRY" = 1 ]; then
    step 60 $PY -m pytest -q -m cuda -p no:cacheprovider --collect-only -k tma_cuda_repeated tests/kernels/test_conv2d_fused.py \
      > "$OUT/cuda_tests_tma.log" 2>&1
  else
    SRGAN_FAST_AUTOTUNE=0 step 90 $PY -m pytest -q -m cuda -p no:cacheprovider -rs -k tma_cuda_repeated \
      tests/kernels/test_conv2d_fused.py > "$OUT/cuda_tests_tma.log" 2>&1
  fi
  tail -4 "$OUT/cuda_tests_tma.log"

  stage "bench: 270p -> 1080p fp16, batch 8"
  if [ "$DRY" = 1 ]; then
    step 300 $PY -m srgan_fast.bench --device cpu --preset 16x16 --batch 1 --repeats 1 --warmup 1 --no-peak \
      --methods "eager NCHW" "engine torch" --out "$OUT" > "$OUT/card_bench.md" 2> "$OUT/card_bench.log"
  else
    step 200 $PY -m srgan_fast.bench --device cuda --preset 270p --batch 8 --dtype fp16 \
      --methods "eager channels_last" "torch.compile" engine --out "$OUT" --plot "$OUT/card_bench.png" \
      > "$OUT/card_bench.md" 2> "$OUT/card_bench.log"
  fi
  cat "$OUT/card_bench.md"; [ -s "$OUT/card_bench.md" ] || tail -20 "$OUT/card_bench.log"

  stage "per-op profile: pointer loop, TMA loop, cuDNN"
  if [ "$DRY" = 1 ]; then
    step 60 $PY benchmarks/profile_ops.py --help > "$OUT/profile_ops.md" 2>&1
  else
    step 90 $PY benchmarks/profile_ops.py --preset 270p --batch 8 --dtype fp16 > "$OUT/profile_ops.md" 2>&1
  fi
  cat "$OUT/profile_ops.md"

  stage "static kernel check for this card's architecture, then the loaded kernels beside it"
  if [ "$DRY" = 1 ]; then ARCH=90; else
    ARCH=$($PY -c "import torch; m, n = torch.cuda.get_device_capability(); print(10 * m + n)" 2>/dev/null); fi
  case "$ARCH" in 80 | 86 | 89 | 90) ;; *)
    echo "   (kernel_check knows sm_80/86/89/90a, this card is sm_${ARCH:-?}: sm_90a's table is shown)"; ARCH=90 ;;
  esac
  # srresnet_x4's plan on the card's architecture: what loaded_kernels.py runs (~10 s on 16 cores, ~40 s on 2)
  step $([ "$DRY" = 1 ] && echo 240 || echo 60) $PY benchmarks/kernel_check.py --arch "$ARCH" --model srresnet \
    --json "$OUT/kernel_check.json" > "$OUT/kernel_check.md" 2>&1
  sed -n '/: best variant per op kind/,$p' "$OUT/kernel_check.md"
  if [ "$DRY" = 1 ]; then
    step 60 $PY benchmarks/loaded_kernels.py --help > "$OUT/loaded_kernels.md" 2>&1
  else  # the card's n_regs / n_spills / shared of every loaded kernel, the static row beside each
    step 90 $PY benchmarks/loaded_kernels.py --static "$OUT/kernel_check.json" > "$OUT/loaded_kernels.md" 2>&1
  fi
  tail -3 "$OUT/loaded_kernels.md"

  stage "auto's picks: the first-use probe on this card (srresnet_x4 batch 8 and 1, compact batch 8)"
  # its own cache file (returned with the results): a fresh card's first run, as a user's
  SRGAN_FAST_CACHE_DIR="$OUT/auto_cache" step $([ "$DRY" = 1 ] && echo 120 || echo 150) $PY - "$DEV" \
    > "$OUT/auto_picks.md" 2>&1 <<'PY'
import sys
import time

import torch

from srgan_fast import Engine
from srgan_fast.families.srvgg_compact import random_compact
from srgan_fast.plan import compile_plan

dev = sys.argv[1]
gpu = dev == "cuda"
dt = torch.float16 if gpu else torch.float32
cases = [("srresnet_x4", 8, 270, 480), ("srresnet_x4", 1, 270, 480), ("realesr-animevideov3 (random)", 8, 270, 480)]
if not gpu:  # the dry run: the CPU's calibration, one small frame
    cases = [("srresnet_x4", 1, 16, 16)]
print(f"# auto's picks on {torch.cuda.get_device_name() if gpu else 'the CPU (dry run)'}, {dt}\n")
print("| model | frames | pick (how; candidates' times; not candidates) | first call |")
print("|---|---|---|---|")
status = 0
for name, n, h, w in cases:
    t0 = time.perf_counter()
    try:  # a failure is a finding: its row says what, the next case still runs
        model = compile_plan(random_compact()) if "random" in name else name
        e = Engine(model, device=dev, dtype=dt, backend="auto")
        e.upscale(torch.rand(n, h, w, 3, device=dev))
        if gpu:
            torch.cuda.synchronize()
        c = e.backend_choice
        pick = c.describe() if c is not None else "no choice recorded"
    except Exception as err:
        pick, status = f"**{type(err).__name__}: {str(err).splitlines()[0][:200] if str(err) else ''}**", 1
    print(f"| {name} | {n}x{h}x{w} | {pick} | {time.perf_counter() - t0:.1f} s |", flush=True)
sys.exit(status)
PY
  cat "$OUT/auto_picks.md"
fi

if [ "$PART" = 2 ]; then
  stage "SRGAN training stage and eval (benchmarks/gpu_train.sh srgan eval)"
  if [ "$DRY" = 1 ]; then
    SRGAN_TRAIN_SMOKE=1 step 400 bash benchmarks/gpu_train.sh "$OUT/train" srgan eval > "$OUT/train.log" 2>&1
  else
    step 330 bash benchmarks/gpu_train.sh "$OUT/train" srgan eval > "$OUT/train.log" 2>&1
  fi
  tail -30 "$OUT/train.log"
  left=$((DEADLINE - ($(date +%s) - t0)))
  if [ "$DRY" != 1 ] && [ $left -gt 200 ]; then
    stage "torch.compile max-autotune, its own step ($left s left)"
    step $((left - 20)) $PY -m srgan_fast.bench --device cuda --preset 270p --batch 8 --dtype fp16 --max-autotune \
      --methods "max-autotune" "engine triton" --out "$OUT" > "$OUT/card_bench_max_autotune.md" 2>> "$OUT/card_bench.log"
    cat "$OUT/card_bench_max_autotune.md"
  fi
fi

if [ "$PART" = 3 ]; then
  if [ "$DRY" = 1 ]; then
    stage "part 3 dry run: the commands parse"
    step 60 $PY -m pytest -q -m cuda -p no:cacheprovider --collect-only -k every_autotune_config tests \
      > "$OUT/cuda_tests_configs.log" 2>&1
    tail -2 "$OUT/cuda_tests_configs.log"
    step 30 bash -n benchmarks/gpu_suite.sh
    step 30 $PY -m py_compile benchmarks/card_video.py  # (its own CPU dry run: card_video.py OUT cpu 1)
  else
    stage "bench: batch 1 (CUDA graphs)"
    step 150 $PY -m srgan_fast.bench --device cuda --preset 270p --batch 1 --dtype fp16 \
      --methods "torch.compile" engine --out "$OUT" > "$OUT/card_bench_b1.md" 2>> "$OUT/card_bench.log"
    cat "$OUT/card_bench_b1.md"
    stage "RRDBNet x4 (issue 20): cuda parity, then 270p -> 1080p fp16 batch 1 and 4 (RealESRGAN_x4plus shape)"
    step 60 $PY -m pytest -q -m cuda -p no:cacheprovider -rs tests/families/test_rrdbnet.py > "$OUT/cuda_tests_rrdbnet.log" 2>&1
    tail -3 "$OUT/cuda_tests_rrdbnet.log"
    $PY -c "from srgan_fast.families.rrdbnet import random_rrdbnet; from srgan_fast.weights import save_generator; \
save_generator(random_rrdbnet(), '$OUT/rrdbnet-x4plus-random.safetensors')"
    step 240 $PY -m srgan_fast.bench --device cuda --preset 270p --batch 1 4 --dtype fp16 \
      --methods "eager channels_last" "torch.compile" "engine triton" "engine triton_tma" \
      --model "$OUT/rrdbnet-x4plus-random.safetensors" --out "$OUT" > "$OUT/card_bench_rrdbnet.md" 2>> "$OUT/card_bench.log"
    rm -f "$OUT/rrdbnet-x4plus-random.safetensors"
    cat "$OUT/card_bench_rrdbnet.md"
    stage "cuda tests: every autotune config forced"
    SRGAN_FAST_AUTOTUNE=0 step 120 $PY -m pytest -q -m cuda -p no:cacheprovider -rs -k every_autotune_config tests \
      > "$OUT/cuda_tests_configs.log" 2>&1
    tail -4 "$OUT/cuda_tests_configs.log"
    stage "540p -> 4K through the tiler, the autotune report, compact rows (gpu_suite.sh stages)"
    STAGES="tiled autotune compact" step 300 bash benchmarks/gpu_suite.sh "$OUT" > "$OUT/gpu_suite.log" 2>&1
    tail -30 "$OUT/gpu_suite.log"
    stage "video (issue 19): NVDEC frames by DLPack vs CPU decoding, 8-bit H.264 and 10-bit PQ HEVC"
    step 150 $PY benchmarks/card_video.py "$OUT" "$DEV" "$DRY" > "$OUT/card_video.log" 2>&1
    tail -4 "$OUT/card_video.log"
  fi
fi

stage "done (part $PART, status $status)"
exit $status
