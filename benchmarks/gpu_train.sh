#!/usr/bin/env bash
# The training session for a lent GPU (issue 12 sections 1-3), as one resumable script:
#
#   bash benchmarks/gpu_train.sh OUTDIR [STAGE ...]      STAGES: probe srresnet srgan eval (default: all)
#
#   (a) probe     ~2.5 min: crops/s and TFLOP/s of the srresnet_x4 step at batch 64 and 128 (eager)
#                 and at batch 64 with torch.compile (OUTDIR/probe/results.jsonl, table.md)
#   (b) srresnet  srresnet_x4 from scratch, TRAIN_SRRESNET_MIN (5.5) minutes of run time, bf16,
#                 batch TRAIN_BATCH (64), lr TRAIN_LR (2e-4) x0.1 at 72% and 90% of the time,
#                 compile if the probe found it >= 15% faster; validation on Set5 about once a
#                 minute; then Set5/Set14 of its best.safetensors against the bundled model
#   (c) srgan     srgan_x4 (content_loss=mse, the paper's SRGAN-MSE) for TRAIN_SRGAN_MIN (2.5)
#                 minutes from (b)'s best if it beats the bundled srresnet_x4 on Set5, else from
#                 the bundled one; lr 1e-4 then 1e-5 at half time; sample crops at each validation
#   (d) eval      Set5/Set14 Y-PSNR/SSIM of bicubic, bundled srresnet_x4, (b) and (c) -> eval.json;
#                 OUTDIR/summary.md, printed last
#
# Device budget (15 min a session, start-up included; one command may run 10 min): with the
# defaults, `probe srresnet` takes ~8.7 min and `srgan eval` ~3.2 min, so run them as two calls
# back to back on the warm machine, e.g. (from the repository root, after
# `python -m srgan_fast.training.pack_data .device_data` here, ~5 min of CPU):
#   run(command="bash benchmarks/gpu_train.sh runs/gpu_train probe srresnet; \
#                python3 -m srgan_fast.training.report pack runs/gpu_train $OUT", carry=[".device_data"], timeout_s=590)
#   run(command="bash benchmarks/gpu_train.sh runs/gpu_train srgan eval; \
#                python3 -m srgan_fast.training.report pack runs/gpu_train $OUT", carry=[".device_data"], timeout_s=330)
# Make the second call at once: a machine stays warm ~30 s, and runs/ (ignored by git) is kept
# only on a warm machine. If it was given back, (c) starts from the bundled model, unless you
# carry the srresnet_best.safetensors that call 1 returned and set TRAIN_SRGAN_INIT to it.
# Then commit OUTDIR's summary.md to benchmarks/results/<card>_<date>/train/ and the curves
# to docs/; bundle a model only if it beats the bundled one on Set5 and Set14.
#
# Safe if killed: every stage checkpoints (ckpt about every 30 s, and on SIGTERM/SIGINT at a
# step boundary); rerunning the same command skips finished stages (DONE markers) and resumes
# an unfinished run with --resume, its max_minutes counting the time already spent.
#
# Data: $SRGAN_FAST_DATA, else ./.device_data (packed by training.pack_data), else
# ../shared/datasets. SRGAN_TRAIN_SMOKE=1: a dry run on the CPU in about two minutes (tiny model,
# T91 only, seconds per stage, no compile, no eval of the bundled model), to check the script
# end to end without a GPU.
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${1:?usage: bash benchmarks/gpu_train.sh OUTDIR [probe|srresnet|srgan|eval ...]}
shift
STAGES=" ${*:-probe srresnet srgan eval} "
PY=${PYTHON:-python3}
export PYTHONUNBUFFERED=1
mkdir -p "$OUT"
if [ -z "${SRGAN_FAST_DATA:-}" ] && [ -d .device_data ]; then
  export SRGAN_FAST_DATA=$PWD/.device_data
fi

if [ "${SRGAN_TRAIN_SMOKE:-0}" = 1 ]; then
  COMMON=(device=cpu model=tiny_x4 crop=32 amp=none channels_last=false train_dirs=T91/HR)
  PROBE=(--batch-sizes 4,8 --compile off --seconds 2 --warm-steps 2)
  PROBE_COMPILE=()
  BATCH=4 LR=2e-4 MIN_B=0.35 MIN_C=0.35 LOG_EVERY=5 FALLBACK_STEPS=20
else
  COMMON=(device=cuda amp=bf16 channels_last=true)
  BATCH=${TRAIN_BATCH:-64} LR=${TRAIN_LR:-2e-4}
  PROBE=(--batch-sizes "$BATCH,$((BATCH * 2))" --compile off --seconds 10 --warm-steps 10)
  PROBE_COMPILE=(--batch-sizes "$BATCH" --compile default --seconds 10 --warm-steps 5)
  [ "${TRAIN_PROBE_COMPILE:-1}" = 1 ] || PROBE_COMPILE=()
  MIN_B=${TRAIN_SRRESNET_MIN:-5.5} MIN_C=${TRAIN_SRGAN_MIN:-2.5} LOG_EVERY=200 FALLBACK_STEPS=2000
fi

say() { echo "== $(date -u +%T) $*"; }
want() { [[ "$STAGES" == *" $1 "* ]]; }

# train NAME PRESET MINUTES KEY=VALUE...: a resumable run in $OUT/NAME; returns its exit code
train() {
  local name=$1 preset=$2 minutes=$3 run=$OUT/$1
  shift 3
  if [ -f "$run/DONE" ]; then say "$name: done before, skipped"; return 0; fi
  local resume=()
  [ -f "$run/state.safetensors" ] && resume=(--resume) && say "$name: resuming from $run/state.safetensors"
  # backstop only: the run stops itself at max_minutes; SIGTERM checkpoints at a step boundary
  local limit
  limit=$($PY -c "print(int($minutes * 60 + 120))")
  local rc=0
  timeout -s TERM -k 30 "$limit" $PY -m training --preset "$preset" -q "${resume[@]}" --set \
    "${COMMON[@]}" out="$run" max_minutes="$minutes" log_every="$LOG_EVERY" "$@" \
    >> "$OUT/$name.log" 2>&1 || rc=$?
  tail -3 "$OUT/$name.log"
  if [ "$rc" -eq 0 ]; then touch "$run/DONE"; else say "$name: exit $rc (rerun the same command to resume)"; fi
  return "$rc"
}

{
  echo "date: $(date -u +%FT%TZ)  stages:$STAGES smoke: ${SRGAN_TRAIN_SMOKE:-0}  data: ${SRGAN_FAST_DATA:-../shared/datasets}"
  nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader 2>/dev/null || echo "no nvidia-smi"
  $PY -c "import sys, torch; print('python', sys.version.split()[0], 'torch', torch.__version__, 'cuda', torch.cuda.is_available())"
  git rev-parse --short HEAD 2>/dev/null || true
} | tee -a "$OUT/env.txt"

status=0
if want probe; then
  if [ -f "$OUT/probe/DONE" ]; then say "probe: done before, skipped"; else
    say "probe"
    mkdir -p "$OUT/probe"
    rm -f "$OUT/probe/results.jsonl"
    timeout -s TERM -k 10 120 $PY -m srgan_fast.training.bench --preset srresnet_x4 "${PROBE[@]}" --out "$OUT/probe" \
      --set "${COMMON[@]}" > "$OUT/probe/table.md" 2>> "$OUT/probe.log" || { say "probe: failed"; status=1; }
    if [ ${#PROBE_COMPILE[@]} -gt 0 ]; then
      timeout -s TERM -k 10 150 $PY -m srgan_fast.training.bench --preset srresnet_x4 "${PROBE_COMPILE[@]}" --out "$OUT/probe" \
        --set "${COMMON[@]}" 2>> "$OUT/probe.log" | tail -n +3 >> "$OUT/probe/table.md" || say "probe: compile failed"
    fi
    cat "$OUT/probe/table.md"
    touch "$OUT/probe/DONE"
  fi
fi

COMPILE=${TRAIN_COMPILE:-auto}
if [ "$COMPILE" = auto ]; then
  COMPILE=$($PY -m srgan_fast.training.report pick-compile "$OUT/probe/results.jsonl" "$BATCH" 2>/dev/null || echo off)
fi
[ "${SRGAN_TRAIN_SMOKE:-0}" = 1 ] && COMPILE=off
# validate about once a minute, checkpoint about every 30 s, at the probe's speed
STEPS_MIN=$($PY -m srgan_fast.training.report steps "$OUT/probe/results.jsonl" "$BATCH" "$COMPILE" 60 "$FALLBACK_STEPS" 2>/dev/null \
  || echo "$FALLBACK_STEPS")
[ "${SRGAN_TRAIN_SMOKE:-0}" = 1 ] && STEPS_MIN=$FALLBACK_STEPS
CKPT=$(( STEPS_MIN / 2 > 0 ? STEPS_MIN / 2 : 1 ))

if want srresnet; then
  say "srresnet: $MIN_B min, batch $BATCH, lr $LR, compile $COMPILE, val every $STEPS_MIN steps"
  train srresnet srresnet_x4 "$MIN_B" batch_size="$BATCH" lr="$LR" compile="$COMPILE" iters=100000000 \
    time_milestones=0.72,0.9 val_dir=Set5 val_every="$STEPS_MIN" ckpt_every="$CKPT" || status=1
  if [ -f "$OUT/srresnet/best.safetensors" ]; then
    specs=(srresnet_x4_bundled=srresnet_x4 "srresnet_run=$OUT/srresnet/best.safetensors")
    [ "${SRGAN_TRAIN_SMOKE:-0}" = 1 ] && specs=("srresnet_run=$OUT/srresnet/best.safetensors")
    $PY -m srgan_fast.training.report eval "$OUT" "${specs[@]}" 2>> "$OUT/eval.log" || status=1
  fi
fi

if want srgan; then
  INIT=${TRAIN_SRGAN_INIT:-}
  if [ -z "$INIT" ]; then
    if [ "${SRGAN_TRAIN_SMOKE:-0}" = 1 ]; then
      INIT=$OUT/srresnet/best.safetensors  # this run's; the srgan stage alone: the smoke model from scratch
      [ -f "$INIT" ] || INIT=""
    else
      INIT=$($PY -m srgan_fast.training.report pick-init "$OUT" srresnet_x4 "$OUT/srresnet/best.safetensors" 2>> "$OUT/eval.log" \
        || echo srresnet_x4)
    fi
  fi
  GAN_BATCH=${TRAIN_GAN_BATCH:-$BATCH}
  say "srgan: $MIN_C min from ${INIT:-scratch}, batch $GAN_BATCH, compile $COMPILE"
  train srgan srgan_x4 "$MIN_C" content_loss=mse init_from="$INIT" batch_size="$GAN_BATCH" lr=1e-4 \
    compile="$COMPILE" iters=100000000 time_milestones=0.5 lr_milestones= val_dir=Set5 \
    val_every="$(( STEPS_MIN / 2 > 0 ? STEPS_MIN / 2 : 1 ))" ckpt_every="$CKPT" || status=1
fi

if want eval; then
  say "eval"
  specs=(bicubic srresnet_x4_bundled=srresnet_x4)
  [ "${SRGAN_TRAIN_SMOKE:-0}" = 1 ] && specs=(bicubic)  # the full model on a CPU takes minutes
  [ -f "$OUT/srresnet/best.safetensors" ] && specs+=("srresnet_run=$OUT/srresnet/best.safetensors")
  [ -f "$OUT/srgan/last.safetensors" ] && specs+=("srgan_run=$OUT/srgan/last.safetensors")
  $PY -m srgan_fast.training.report eval "$OUT" "${specs[@]}" 2>> "$OUT/eval.log" || status=1
fi

say "summary"
$PY -m srgan_fast.training.report summary "$OUT" || status=1
exit $status
