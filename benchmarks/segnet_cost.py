"""Cost of the SegNet decoder candidates per 512² image: GFLOP (XLA's count) and CPU ms, in one run.

    python -m benchmarks.segnet_cost [--size 512] [--repeats 5]

The VGG-19 pass is shared with style transfer, so the decoder's own cost is what a candidate adds; the
VGG pass is timed beside it for scale. Timings alternate between candidates (median of ``--repeats``),
so a busy machine slows all of them alike.
"""
from __future__ import annotations

import argparse
import time

import jax
import numpy as np

from jaxstyle.nets import model
from jaxstyle.program import portrait
from jaxstyle.program import profiling


def main():
  ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  ap.add_argument("--size", type=int, default=512)
  ap.add_argument("--repeats", type=int, default=5)
  ap.add_argument("--candidates", nargs="+", default=["default_noskip", "default"])
  args = ap.parse_args()
  x = np.random.default_rng(0).uniform(size=(1, args.size, args.size, 3)).astype(np.float32)
  cfg0 = model.MODEL_CONFIGS[args.candidates[0]]
  params0 = model.init_params(cfg0, jax.random.key(0))
  encode = jax.jit(lambda p, x: portrait.encode(p, cfg0, x))
  feats = encode(params0, x)
  runs = {"VGG-19 to relu5_1 (shared)": (encode, (params0, x))}
  for name in args.candidates:
    cfg = model.MODEL_CONFIGS[name]
    params = model.init_params(cfg, jax.random.key(0))
    fn = jax.jit(lambda p, f, cfg=cfg: portrait.person_logits(p, cfg, x, f))
    runs[f"SegNet decoder {name}"] = (fn, (params, feats))
  times = {k: [] for k in runs}
  flops = {k: profiling.flops(fn.lower(*a)) for k, (fn, a) in runs.items()}
  for fn, a in runs.values():
    jax.block_until_ready(fn(*a))
  for _ in range(args.repeats):
    for k, (fn, a) in runs.items():
      t = time.perf_counter()
      jax.block_until_ready(fn(*a))
      times[k].append(time.perf_counter() - t)
  print(f"| {args.size}², f32, {profiling.device_name()} | GFLOP | ms (median of {args.repeats}) |")
  print("|---|---|---|")
  for k in runs:
    print(f"| {k} | {flops[k] / 1e9:.1f} | {1e3 * np.median(times[k]):.0f} |")


if __name__ == "__main__":
  main()
