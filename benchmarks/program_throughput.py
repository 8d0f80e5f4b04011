"""Images/s, compile time, FLOPs and peak memory of the portrait program on the current backend.

    python -m benchmarks.program_throughput --size 512 --batch 8 32 64 --dtype bfloat16
    python -m benchmarks.program_throughput --size 2048 --batch 1

Random real-size weights (``model.init_params`` of the "default" model config); one jitted program over
all local devices; median of ``--repeats`` timed calls after one warm-up; FLOPs, peak memory and the
device name from ``jaxstyle.program.profiling``. Prints one line per configuration and, with ``--csv``,
appends rows to a CSV file.
"""
from __future__ import annotations

import argparse
import csv
import dataclasses
import time

import jax
import numpy as np

from jaxstyle.nets import model
from jaxstyle.program import portrait
from jaxstyle.program import profiling
from jaxstyle.program import sharding


def measure(size: int, batch: int, dtype: str, repeats: int, mode: str) -> dict:
  cfg = dataclasses.replace(model.MODEL_CONFIGS["default"], dtype=dtype)
  mesh = sharding.data_mesh()
  params = model.init_params(cfg, jax.random.key(0))
  rng = np.random.default_rng(0)
  content = rng.uniform(size=(batch, size, size, 3)).astype(np.float32)
  style = rng.uniform(size=(batch, size, size, 3)).astype(np.float32)
  controls = portrait.Controls().as_array()
  inputs = portrait.Batch(content, style)
  program = portrait.make_program(cfg, mesh, mode=mode)
  t0 = time.perf_counter()
  compiled = program.lower(params, inputs, controls).compile()
  compile_s = time.perf_counter() - t0
  flops = profiling.counted_flops(
      cfg, lambda c: portrait.make_program(c, mesh, mode=mode).lower(params, inputs, controls))
  flops = float("nan") if flops is None else flops
  jax.block_until_ready(compiled(params, inputs, controls))
  times = []
  for _ in range(repeats):
    t0 = time.perf_counter()
    jax.block_until_ready(compiled(params, inputs, controls))
    times.append(time.perf_counter() - t0)
  step = float(np.median(times))
  peak, _ = profiling.peak_memory()
  return {"backend": jax.default_backend(), "device": profiling.device_name(),
          "devices": len(jax.devices()), "mode": mode, "size": size, "batch": batch, "dtype": dtype,
          "compile_s": round(compile_s, 2), "ms_per_batch": round(step * 1e3, 2),
          "img_per_s": round(batch / step, 2), "gflop_per_img": round(flops / batch / 1e9, 1),
          "tflop_per_s": round(flops / step / 1e12, 1),
          "peak_gib": None if peak is None else round(peak / 2**30, 2)}


def main():
  ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
  ap.add_argument("--size", type=int, nargs="+", default=[512])
  ap.add_argument("--batch", type=int, nargs="+", default=[1])
  ap.add_argument("--dtype", nargs="+", default=["float32"])
  ap.add_argument("--mode", default="portrait")
  ap.add_argument("--repeats", type=int, default=5)
  ap.add_argument("--csv")
  args = ap.parse_args()
  for dtype in args.dtype:
    for size in args.size:
      for batch in args.batch:
        try:
          row = measure(size, batch, dtype, args.repeats, args.mode)
        except Exception as e:  # pylint: disable=broad-except  (an OOM is a result, not a crash)
          row = {"size": size, "batch": batch, "dtype": dtype, "error": " ".join(str(e).split())[:200]}
        print(row, flush=True)
        if args.csv:
          with open(args.csv, "a", newline="") as f:
            w = csv.DictWriter(f, fieldnames=list(row))
            if f.tell() == 0:
              w.writeheader()
            w.writerow(row)


if __name__ == "__main__":
  main()
