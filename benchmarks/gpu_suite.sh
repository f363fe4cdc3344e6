#!/usr/bin/env bash
# The one command for a machine with an NVIDIA GPU:
#   bash benchmarks/gpu_suite.sh [OUTDIR]        (default: benchmarks/results)
# 1. installs the checkout in place (no network needed: --no-deps --no-build-isolation)
#    and builds csrc/ where it has sources;
# 2. runs the `cuda`-marked tests;
# 3. runs the GPU benchmark presets (with the bf16 matmul peak, torch.compile default and
#    reduce-overhead), 540p -> 4K through the tiler, the autotune choices and the per-op profile;
# torch.compile mode=max-autotune compiles for minutes: run it once per card on its own with
#   python -m srgan_fast.bench --device cuda --preset 270p --batch 8 --max-autotune --methods compile
# and writes logs, JSON rows and the markdown table to OUTDIR. Prints the table last.
# STAGES picks what runs (default all, in this order): "tests bench tiled autotune compact rrdbnet profile";
# install + build always run. A device session has 10 minutes a call and 15 in all: e.g.
#   STAGES="tests bench profile" bash benchmarks/gpu_suite.sh OUT     (about 6 min)
#   STAGES="tiled autotune compact" bash benchmarks/gpu_suite.sh OUT  (about 4 min)
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${1:-benchmarks/results}
PY=${PYTHON:-python3}
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1
status=0
STAGES=${STAGES:-tests bench tiled autotune profile compact rrdbnet}
want() { [[ " $STAGES " == *" $1 "* ]]; }

{
  echo "date: $(date -u +%FT%TZ)"
  nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm --format=csv
  $PY -c "import sys, torch, triton; print('python', sys.version.split()[0], 'torch', torch.__version__, 'triton', triton.__version__)"
} 2>&1 | tee "$OUT/gpu_env.txt"

echo "== install + build"
$PY -m pip install -q --no-deps --no-build-isolation -e . > "$OUT/gpu_build.log" 2>&1 || { echo "install failed: see $OUT/gpu_build.log"; tail -20 "$OUT/gpu_build.log"; exit 1; }
if ls csrc/*.cu >/dev/null 2>&1; then
  SRGAN_FAST_CUDA=1 $PY setup.py build_ext --inplace --force >> "$OUT/gpu_build.log" 2>&1 || { echo "csrc build failed"; status=1; }
else
  echo "csrc: no CUDA sources yet, nothing to build"
fi

if want tests; then
echo "== cuda tests"
SRGAN_FAST_AUTOTUNE=0 timeout 240 $PY -m pytest -q -m cuda -p no:cacheprovider -rs tests 2>&1 | tee "$OUT/gpu_tests.log" | tail -25
[ "${PIPESTATUS[0]}" -eq 0 ] || status=1
fi

if want bench; then
echo "== benchmarks"
timeout 330 $PY -m srgan_fast.bench --device cuda --preset 270p --batch 1 8 --dtype fp16 \
  --out "$OUT" --plot "$OUT/gpu_bench.png" > "$OUT/gpu_bench.md" 2> "$OUT/gpu_bench.log" || status=1
tail -5 "$OUT/gpu_bench.log"
fi

if want tiled; then
echo "== 540p -> 4K through the tiler (1 GiB budget) vs 1080p output, engine rows only"
timeout 150 $PY -m srgan_fast.bench --device cuda --preset 540p --batch 1 --dtype fp16 --methods engine \
  --memory-budget 1G --no-peak --out "$OUT" > "$OUT/gpu_bench_540p_tiled.md" 2>> "$OUT/gpu_bench.log" || status=1
tail -4 "$OUT/gpu_bench_540p_tiled.md"
fi

if want autotune; then
echo "== autotune choices per (op, batch)"
timeout 120 $PY benchmarks/autotune_report.py --preset 270p --batch 1 8 --dtype fp16 > "$OUT/gpu_autotune.md" 2>&1 || status=1
head -30 "$OUT/gpu_autotune.md"
fi

if want compact; then
echo "== compact model (SRVGGNetCompact, realesr-animevideov3 shape, random weights: timing only)"
$PY -c "from srgan_fast.families.srvgg_compact import random_compact; from srgan_fast.weights import save_generator; \
save_generator(random_compact('realesr-animevideov3'), '$OUT/realesr-animevideov3-random.safetensors')" || status=1
timeout 200 $PY -m srgan_fast.bench --device cuda --preset 270p --batch 1 8 --dtype fp16 --methods eager engine \
  --model "$OUT/realesr-animevideov3-random.safetensors" --out "$OUT" > "$OUT/gpu_bench_compact.md" \
  2>> "$OUT/gpu_bench.log" || status=1
rm -f "$OUT/realesr-animevideov3-random.safetensors"
fi

if want rrdbnet; then
echo "== RRDBNet x4 (RealESRGAN_x4plus shape, random weights: timing only), batch 1 and 4"
$PY -c "from srgan_fast.families.rrdbnet import random_rrdbnet; from srgan_fast.weights import save_generator; \
save_generator(random_rrdbnet(), '$OUT/rrdbnet-x4plus-random.safetensors')" || status=1
timeout 280 $PY -m srgan_fast.bench --device cuda --preset 270p --batch 1 4 --dtype fp16 \
  --methods "eager channels_last" "torch.compile" "engine triton" "engine triton_tma" \
  --model "$OUT/rrdbnet-x4plus-random.safetensors" --out "$OUT" > "$OUT/gpu_bench_rrdbnet.md" \
  2>> "$OUT/gpu_bench.log" || status=1
rm -f "$OUT/rrdbnet-x4plus-random.safetensors"
fi

if want profile; then
echo "== per-op profile"
timeout 120 $PY benchmarks/profile_ops.py --preset 270p --batch 8 --dtype fp16 > "$OUT/gpu_profile_ops.md" 2>&1 || status=1
cat "$OUT/gpu_profile_ops.md"
fi
echo
[ -f "$OUT/gpu_bench.md" ] && cat "$OUT/gpu_bench.md"
echo
[ -f "$OUT/gpu_bench_compact.md" ] && cat "$OUT/gpu_bench_compact.md"
echo
[ -f "$OUT/gpu_bench_rrdbnet.md" ] && cat "$OUT/gpu_bench_rrdbnet.md"
exit $status
