#!/usr/bin/env bash
# The prepared GPU run of issue 13's side by side (docs/scaling.md, "Owed on a GPU"): ≤ 5 minutes on one
# H100/H200. The plain and the portrait program at 512², bfloat16, batch 64, in one process: JAX, the same
# graph in PyTorch eager (bf16, channels_last, SDPA) and under torch.compile, timed interleaved, every
# output checked against JAX's, and JAX's bf16 image against the float32 JAX program's.
#
#   bash benchmarks/gpu_side_by_side.sh [OUTDIR]        # OUTDIR defaults to $OUT; run from the repo root
#
# Needs a CUDA jax and a CUDA torch in $PYTHON (default python3), with flax/optax of pyproject.toml.
# Writes OUTDIR/gpu_side_by_side.csv (copy it to docs/runs/) and OUTDIR/gpu_side_by_side.log. Rows are
# written as they complete (JAX + eager before torch.compile starts), so the hard limit below keeps
# whatever finished. SMOKE=1: the tiny model at 64² on whatever device there is (checks the script).
set -u
OUTDIR=${1:-${OUT:-/tmp/out}}
PY=${PYTHON:-python3}
mkdir -p "$OUTDIR"
export PYTHONUNBUFFERED=1 XLA_PYTHON_CLIENT_PREALLOCATE=false
LIMIT=${LIMIT:-285}      # seconds, hard (timeout); the run needs ~2 × (2 JAX compiles + torch.compile)

if [ "${SMOKE:-0}" = 1 ]; then
  ARGS=(--model tiny --size 64 --batch 2 --repeats 3)
else
  ARGS=(--model default --size 512 --batch 64 --dtype bfloat16 --repeats 10)
fi

nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>/dev/null
"$PY" -c "import jax, torch; print('jax', jax.__version__, jax.devices(), '| torch', torch.__version__, \
'cuda', torch.cuda.is_available())"
timeout -s TERM -k 5 "$LIMIT" "$PY" -m benchmarks.gpu_side_by_side "${ARGS[@]}" --programs plain,portrait \
  --out "$OUTDIR/gpu_side_by_side.csv" 2>&1 | grep -v -e "^W0000" -e "^I0000" | tee "$OUTDIR/gpu_side_by_side.log"
echo "=== exit ${PIPESTATUS[0]} after ${SECONDS} s"
[ -f "$OUTDIR/gpu_side_by_side.csv" ] && cat "$OUTDIR/gpu_side_by_side.csv"
exit 0
