#!/usr/bin/env bash
# Every benchmark on one GPU (bf16 autocast), results in one folder, within an 8-minute budget.
#
#   benchmarks/gpu.sh [OUT_DIR]          # default: benchmarks/results/gpu-<date>-<git sha>
#   SMOKE=1 DEVICE=cpu PRECISION=fp32 benchmarks/gpu.sh /tmp/gpu-smoke   # tiny sizes: does it all run?
#
# Each script writes its table (CSV + JSON) to OUT_DIR and its output to OUT_DIR/<name>.log; a
# script that fails or runs out of time is reported and the next one runs. summary.txt collects
# every table. The scripts synchronise CUDA before each reading of the clock (bench_io.timed).
# Environment: DEVICE (cuda), PRECISION (bf16), SMOKE (unset), BUDGET_S (480, the whole run),
# LIMIT_SCALE (1; 6 with SMOKE: a loaded CPU is slow even at tiny sizes) multiplies each script's
# time limit, WORKERS (loader processes for the loading benchmark: cores - 1, at most 15).
set -u
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/.." && pwd)
sha=$(git -C "$repo" rev-parse --short HEAD 2>/dev/null || echo nogit)
out=${1:-$here/results/gpu-$(date +%Y%m%d-%H%M%S)-$sha}
device=${DEVICE:-cuda}
precision=${PRECISION:-bf16}
budget=${BUDGET_S:-480}
workers=${WORKERS:-$(python -c "import os; print(max(1, min(15, (os.cpu_count() or 2) - 1)))")}
smoke=()
[ -n "${SMOKE:-}" ] && smoke=(--smoke)
limit_scale=${LIMIT_SCALE:-$([ -n "${SMOKE:-}" ] && echo 6 || echo 1)}
mkdir -p "$out"
export PYTHONPATH="$repo/src${PYTHONPATH:+:$PYTHONPATH}"
start=$(date +%s)
status=()

run() {  # run <label> <seconds at most> <script> [args...]
  local label=$1 limit=$(($2 * limit_scale)) script=$3
  shift 3
  local left=$((budget - ($(date +%s) - start)))
  if [ "$left" -le 5 ]; then
    status+=("$label: skipped (budget spent)")
    return
  fi
  [ "$limit" -gt "$left" ] && limit=$left
  local t0=$(date +%s)
  echo "== $label (at most ${limit} s)"
  timeout --signal=INT --kill-after=10 "$limit" python "$here/$script" "$@" --device "$device" --precision "$precision" \
    --out-dir "$out" "${smoke[@]}" >"$out/$label.log" 2>&1
  local rc=$? dt=$(($(date +%s) - t0))
  case $rc in
    0) status+=("$label: ok (${dt} s)") ;;
    124 | 130 | 137) status+=("$label: TIMED OUT after ${dt} s (partial output in $label.log)") ;;
    *) status+=("$label: FAILED, exit $rc (${dt} s; see $label.log)") ;;
  esac
  { echo "## $label ($script $*), exit $rc, ${dt} s"; grep -v "^  \|Warning\|warn(" "$out/$label.log" | tail -n 40; echo; } >>"$out/summary.txt"
}

{ echo "# c2srt benchmarks, $(date -Is), git $sha, device $device, precision $precision${SMOKE:+, smoke}"; nvidia-smi --query-gpu=name,memory.total --format=csv,noheader 2>/dev/null; echo; } >"$out/summary.txt"
# the issue's figures first: images/s of bare / MKT / C2SRT at 1,006 and 7,586 labels, then the
# training step at batch 64 (Open Images size, then NUS-WIDE size)
run heads_overhead 90 heads_overhead.py --iters 5 --warmup 2
run train_step_openimages 90 train_step.py --labels 7186 --sparse --batch 64 --iters 3 --breakdown
run train_step_nuswide 60 train_step.py --labels 925 --batch 64 --iters 3
run ist_approx 45 ist_approx.py --random-only --iters 3
run loading 90 loading.py --images 3200 --workers "$workers" --iters 5
run predict_speed 45 predict_speed.py --iters 3
run eval_scale 60 eval_scale.py
run graph_build 60 graph_build.py --threads "$workers"
run image_check 30 image_check.py --workers "$workers"

total=$(($(date +%s) - start))
{ echo "# status (total ${total} s of a ${budget} s budget)"; printf '%s\n' "${status[@]}"; } | tee -a "$out/summary.txt"
echo "results in $out (summary.txt)"
