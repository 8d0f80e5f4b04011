#!/usr/bin/env bash
# The prepared accelerator run of the speed/scaling study (docs/scaling.md, "GPU results"): ≤ 3 minutes on
# one H100, every part under its own `timeout` so one failure or hang never costs the others.
#
#   bash benchmarks/gpu_sweep.sh [OUTDIR]          # OUTDIR defaults to $OUT; run from the repo root
#
# Writes 10 files, flat, into OUTDIR:
#   scaling_infer.{csv,md,png}  portrait program, bf16: batches 16 and 64 at 512² (the target is
#                               ≥ 400 img/s on one H100), 256² ×128, 1024² ×16, 2048² ×2
#   portrait_bench.{csv,md}     the portrait program at 512² and 1024², bf16 and f32, batch 16, JAX only,
#                               with a per-network / per-layer profile of one call at 512² bf16
#   scaling_train.{csv,md,png}  the SANet train step at 256², bf16, batch 16 (and 32 if time is left)
#   formulation_ab.{csv,md}     the portrait program at 512², bf16, batch 64 with the GPU's conv
#                               formulation ("xla") and the CPU one ("same": padding inside the convs,
#                               decoder upsample-convs as 4 phase 2×2 convs, 7% fewer FLOPs), same run
# Progress goes to stdout. Configurations shared by two parts compile once (persistent compilation cache).
# SMOKE=1 runs the same parts with the tiny model at toy sizes, to check the script on a CPU.
set -u
OUTDIR=${1:-${OUT:-/tmp/out}}
PY=${PYTHON:-python3}
mkdir -p "$OUTDIR"
export PYTHONUNBUFFERED=1 XLA_PYTHON_CLIENT_PREALLOCATE=false
export JAX_COMPILATION_CACHE_DIR=${JAX_COMPILATION_CACHE_DIR:-/tmp/jaxstyle-sweep-cache}
export JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS=0

if [ "${SMOKE:-0}" = 1 ]; then
  MODEL=tiny; INFER_GRID="32:2,4;64:1"; BENCH_SIZES=32,64; BENCH_BATCH=2; PROFILE_SIZE=32
  TRAIN_RES=32; TRAIN_BATCHES=2,4; AB_SIZE=32; AB_BATCH=2
else
  # 512:16 and 1024:16 are also portrait_bench's bf16 configurations: compiled once, cached.
  # Run in order of pixels per step: 512×16, 256×128, 2048×2, 512×64, 1024×16 (~4–17 Mpx; 512² bf16
  # throughput saturated at batch 32–64 in docs/runs/program_throughput_h100.csv).
  MODEL=default; INFER_GRID="512:16,64;256:128;1024:16;2048:2"; BENCH_SIZES=512,1024; BENCH_BATCH=16
  PROFILE_SIZE=512; TRAIN_RES=256; TRAIN_BATCHES=16,32; AB_SIZE=512; AB_BATCH=64
fi
# Seconds per part (sum 218): `timeout` is the hard limit; the sweeps also stop starting configurations
# earlier (--max-seconds) so that they end by themselves. Each configuration compiles in ~9 s on an H100;
# the train step in ~50 s (docs/runs/sanet_h100_metrics.jsonl), so its second batch size runs only if
# the first was quick.
T_INFER=${T_INFER:-68}; T_BENCH=${T_BENCH:-45}; T_TRAIN=${T_TRAIN:-65}; T_AB=${T_AB:-40}

part() {  # part NAME SECONDS command...
  local name=$1 secs=$2; shift 2
  echo "=== $name (≤ ${secs} s, at ${SECONDS} s)"
  timeout -s TERM -k 5 "$secs" "$@" 2>&1 | grep -v -e "^W0000" -e "^I0000" -e "UserWarning"
  echo "=== $name: exit ${PIPESTATUS[0]} at ${SECONDS} s"
}

nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>/dev/null

part "scaling: portrait program" "$T_INFER" "$PY" -m experiments.scaling --what infer --model "$MODEL" \
  --dtypes bfloat16 --res-batches "$INFER_GRID" --repeats 3 --max-seconds $((T_INFER - 14)) --out "$OUTDIR"

rm -f "$OUTDIR/portrait_bench.csv" "$OUTDIR/portrait_bench.md"
part "portrait_bench" "$T_BENCH" "$PY" -m benchmarks.portrait_bench --model "$MODEL" --sizes "$BENCH_SIZES" \
  --dtype bfloat16,float32 --batch "$BENCH_BATCH" --no-torch --repeats 3 --profile "$PROFILE_SIZE" \
  --csv "$OUTDIR/portrait_bench.csv" --md "$OUTDIR/portrait_bench.md"

part "scaling: SANet train step" "$T_TRAIN" "$PY" -m experiments.scaling --what train --model "$MODEL" \
  --dtypes bfloat16 --resolutions "$TRAIN_RES" --batches "$TRAIN_BATCHES" --repeats 3 \
  --max-seconds $((T_TRAIN - 50)) --out "$OUTDIR"

rm -f "$OUTDIR/formulation_ab.csv" "$OUTDIR/formulation_ab.md"
for form in xla same; do
  part "formulation $form" $((T_AB / 2)) "$PY" -m benchmarks.portrait_bench --model "$MODEL" \
    --sizes "$AB_SIZE" --dtype bfloat16 --batch "$AB_BATCH" --no-torch --repeats 3 --formulation "$form" \
    --csv "$OUTDIR/formulation_ab.csv" --md "$OUTDIR/formulation_ab.md"
done

echo "=== done in ${SECONDS} s"
ls -la "$OUTDIR"
for f in "$OUTDIR"/scaling_infer.md "$OUTDIR"/portrait_bench.md "$OUTDIR"/scaling_train.md \
         "$OUTDIR"/formulation_ab.md; do
  [ -f "$f" ] && { echo "----- $f"; cat "$f"; }
done
exit 0
