#!/usr/bin/env bash
# Issue 26's CPU figures: the engine (native, torch, auto, ONNX Runtime) against PyTorch eager,
# torch.compile, ONNX Runtime, OpenVINO (f32 and its default, bf16 here) and ncnn (fp32), on the
# four families at 128x128 LR (RRDBNet 64x64) and at a 540p frame, plus 1 vs 2 threads and the
# per-op table. One sitting on a quiet CPU: about 45 minutes on the 2-vCPU Zen 4 VM. Needs the
# [bench] extra (pip install -e '.[bench]'); rows whose package is absent are skipped.
#
#   bash benchmarks/cpu_session.sh            -> benchmarks/results/cpu_<UTC date>/
#   OUT=dir PARTS="128 540p threads ops" bash benchmarks/cpu_session.sh
#
# Interleaved rounds (every method once per round, Williams order), 0.3 s pause before each timed
# call; ratios per round against the same round's rows (python benchmarks/ratio_vs_best.py DIR).
# Random weights (seed 0) for compact/MSRResNet/RRDBNet, as ../shared/docs/cpu-peers-2026-12-06.md.
set -uo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
OUT=${OUT:-benchmarks/results/cpu_$(date -u +%F)}
PARTS=${PARTS:-"128 540p threads ops"}
MODELS=${MODELS_DIR:-${TMPDIR:-/tmp}/srgan_fast_cpu_models}
mkdir -p "$OUT" "$MODELS"
export SRGAN_FAST_CACHE_DIR
SRGAN_FAST_CACHE_DIR=$(mktemp -d)  # auto calibrates afresh, as a new user's first run would

"$PY" - "$MODELS" <<'EOF'
import sys, torch
from srgan_fast.compact import random_compact
from srgan_fast.msrresnet import random_msrresnet
from srgan_fast.rrdbnet import random_rrdbnet
from srgan_fast.weights import save_generator
d = sys.argv[1]
for name, make in (("compact", lambda: random_compact("realesr-animevideov3")), ("msrresnet", random_msrresnet),
                   ("rrdbnet", random_rrdbnet)):
    torch.manual_seed(0)
    save_generator(make(), f"{d}/{name}.safetensors")
EOF

{
  echo "commit $(git rev-parse --short HEAD) $(git status --porcelain | grep -q . && echo '(+ uncommitted changes)')"
  "$PY" -c "from srgan_fast.backends import native; print('native isa', native.isa())"
  lscpu | grep -E "Model name|^CPU\(s\)|Thread|Flags" | sed 's/Flags:.*/Flags: (avx512f, avx512_bf16: '"$(grep -o -m1 'avx512_bf16' /proc/cpuinfo)"')/'
} > "$OUT/machine.txt"

bench() {  # name, then bench arguments
  local name=$1
  shift
  echo "== $name start $(date -u +%T) load $(cut -d' ' -f1-3 /proc/loadavg)" | tee -a "$OUT/load.txt"
  "$PY" -m srgan_fast.cli bench --device cpu --pause 0.3 --out "$OUT/$name" "$@" > "$OUT/$name.log" 2>&1
  echo "== $name end $(date -u +%T) rc $? load $(cut -d' ' -f1-3 /proc/loadavg)" | tee -a "$OUT/load.txt"
}

for part in $PARTS; do
  case $part in
    128)
      bench srresnet_x4_128 --model srresnet_x4 --preset 128 --repeats 9 --warmup 1 --dtype bf16
      bench compact_128 --model "$MODELS/compact.safetensors" --preset 128 --repeats 11 --warmup 1 --dtype bf16
      bench msrresnet_128 --model "$MODELS/msrresnet.safetensors" --preset 128 --repeats 9 --warmup 1 --dtype bf16
      bench rrdbnet_64 --model "$MODELS/rrdbnet.safetensors" --preset 64x64 --repeats 9 --warmup 1 --dtype bf16
      ;;
    540p)  # the fastest peers of the 128 runs, our rows; RRDBNet's calls take a minute or more each
      bench srresnet_x4_540p --model srresnet_x4 --preset 540p --repeats 3 --warmup 0 --dtype bf16 \
        --methods "OpenVINO" "ncnn" "engine native" "engine torch" "engine auto"
      bench compact_540p --model "$MODELS/compact.safetensors" --preset 540p --repeats 3 --warmup 0 --dtype bf16 \
        --methods "OpenVINO" "ncnn" "engine native" "engine torch" "engine auto"
      bench msrresnet_540p --model "$MODELS/msrresnet.safetensors" --preset 540p --repeats 3 --warmup 0 \
        --dtype bf16 --methods "OpenVINO" "engine native" "engine auto"
      bench rrdbnet_540p --model "$MODELS/rrdbnet.safetensors" --preset 540p --repeats 2 --warmup 0 --dtype bf16 \
        --methods "OpenVINO" "engine native"
      ;;
    threads)  # the same kernels on 1 and 2 threads
      for t in 1 2; do
        bench "threads${t}_srresnet_x4_128" --model srresnet_x4 --preset 128 --repeats 5 --warmup 1 --threads "$t" \
          --dtype bf16 --methods "OpenVINO" "engine native" --no-peak
        bench "threads${t}_rrdbnet_64" --model "$MODELS/rrdbnet.safetensors" --preset 64x64 --repeats 5 --warmup 1 \
          --threads "$t" --dtype bf16 --methods "OpenVINO" "engine native" --no-peak
      done
      ;;
    ops)  # per conv: torch's aten op, native (Winograd where it applies), native direct
      for fam in srresnet_x4 compact msrresnet rrdbnet; do
        size=128
        [ "$fam" = rrdbnet ] && size=64
        for dt in fp32 bf16; do
          "$PY" benchmarks/cpu_ops.py "$fam" --size "$size" --rounds 5 --pause 0 --dtype "$dt" \
            --json "$OUT/ops_${fam}_${dt}.json" > "$OUT/ops_${fam}_${dt}.md" 2>&1
        done
      done
      ;;
  esac
done
echo "done: $OUT"
