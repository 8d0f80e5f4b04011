"""What a person style of its own costs: GFLOP (XLA's count) and CPU ms of the portrait program, in one run.

    python -m benchmarks.style_scale_cost [--size 512] [--scales 0.67,1.0] [--repeats 5] [--out CSV]

The whole program (``portrait.make_program``, random weights of the "default" model) at ``--size``² with
the style read once at the content's scale (the program before the style-scale control), against the
background's style at the first of ``--scales`` × the side and the person's at the second (default: the
CLI's, ``request.STYLE_SCALES``): one style pass at that side when the two are equal, else a second style
VGG pass and its two attentions. Calls alternate between the two programs (median of ``--repeats``), so
a busy machine slows both alike.
"""
from __future__ import annotations

import argparse
import csv
import dataclasses
import datetime
import platform
import time
from pathlib import Path

import jax
import numpy as np

from jaxstyle.app import request
from jaxstyle.nets import model
from jaxstyle.program import portrait
from jaxstyle.program import profiling
from jaxstyle.program import sharding


def main() -> int:
  ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  ap.add_argument("--size", type=int, default=512)
  ap.add_argument("--scales", type=lambda t: tuple(map(float, t.split(","))), default=request.STYLE_SCALES["portrait"],
                  metavar="BACKGROUND,PERSON")
  ap.add_argument("--repeats", type=int, default=5)
  ap.add_argument("--dtype", default="float32", choices=("float32", "bfloat16"))
  ap.add_argument("--out", help="append the rows to this CSV")
  args = ap.parse_args()
  cfg = dataclasses.replace(model.MODEL_CONFIGS["default"], dtype=args.dtype)
  params = model.init_params(cfg, jax.random.key(0))
  rng = np.random.default_rng(0)
  picture = lambda side: rng.uniform(size=(1, side, side, 3)).astype(np.float32)
  content = picture(args.size)
  sides = [round(s * args.size) for s in args.scales]
  scaled = (portrait.Batch(content, picture(sides[0])) if sides[0] == sides[1] else
            portrait.Batch(content, picture(sides[0]), style_person=picture(sides[1])))
  batches = {f"style {args.size}² (scale 1)": portrait.Batch(content, picture(args.size)),
             f"background style {sides[0]}², person {sides[1]}²": scaled}
  mesh = sharding.data_mesh(jax.devices()[:1])
  controls = portrait.Controls().as_array()
  program = portrait.make_program(cfg, mesh)
  flops = {k: profiling.counted_flops(cfg, lambda c, b=b: portrait.make_program(c, mesh).lower(params, b, controls))
           for k, b in batches.items()}
  for b in batches.values():
    jax.block_until_ready(program(params, b, controls))
  times = {k: [] for k in batches}
  for _ in range(args.repeats):
    for k, b in batches.items():
      start = time.perf_counter()
      jax.block_until_ready(program(params, b, controls))
      times[k].append(time.perf_counter() - start)
  base = next(iter(batches))
  rows = [{"date": datetime.date.today().isoformat(), "cpu": profiling.device_name(), "size": args.size,
           "dtype": args.dtype, "program": k, "gflop": round(flops[k] / 1e9, 1),
           "ms": round(1e3 * float(np.median(times[k]))), "ratio": round(float(np.median(times[k]) /
                                                                             np.median(times[base])), 3)}
          for k in batches]
  print(f"| portrait program, {args.size}², {args.dtype}, {profiling.device_name()} ({platform.processor()}) "
        f"| GFLOP | ms (median of {args.repeats}) | ÷ scale 1 |")
  print("|---|---|---|---|")
  for r in rows:
    print(f"| {r['program']} | {r['gflop']} | {r['ms']} | {r['ratio']:.2f}× |")
  if args.out:
    path = Path(args.out)
    new = not path.exists()
    with open(path, "a", newline="") as f:
      writer = csv.DictWriter(f, fieldnames=list(rows[0]))
      if new:
        writer.writeheader()
      writer.writerows(rows)
  return 0


if __name__ == "__main__":
  raise SystemExit(main())
