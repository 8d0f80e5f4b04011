"""float32 on a CPU without bf16 units: oneDNN's convolutions against XLA's, with the ISA capped.

    python -m benchmarks.float32_formulations --caps native,AVX512_CORE,AVX2 --size 512 --repeats 5

Where ``auto`` computes in float32 (no AVX512-BF16 or AMX: most laptops, many servers), the program's
convolutions are XLA's (``"same"``: YNNPACK). This measures, per ISA cap, the float32 plain and portrait
programs (random weights of the default model, batch 1) with ``formulation="same"`` against
``"onednn"``: each compiled ahead of time, their outputs compared (max |Δ image|), then ``--repeats``
rounds of one call of each in turn, every other round in reverse order; the median call and the median
of the per-round ratios. A cap runs in a process of its own, as the environment must be set before
oneDNN and XLA start: ``ONEDNN_MAX_CPU_ISA`` and ``XLA_FLAGS=--xla_cpu_max_isa`` to match (``native``
sets neither). Rows go to ``--out`` with the ISA oneDNN reports under the cap and the CPU model.
"""
from __future__ import annotations

import argparse
import csv
import dataclasses
import datetime
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
FORMULATIONS = ("same", "onednn")
COLUMNS = ("date", "cap", "isa", "program", "size", "formulation", "ms", "ratio_to_same", "compile_and_first_s",
           "max_abs_diff_to_same", "load_before", "load_after", "cpu")
# oneDNN's cap names, and XLA's names for the same instruction sets.
XLA_ISA = {"AVX2": "AVX2", "AVX512_CORE": "AVX512", "AVX512_CORE_VNNI": "AVX512_VNNI"}


def cap_environment(cap: str) -> dict[str, str]:
  """This process's environment with ``cap`` (``native`` or a oneDNN ISA name) applied to both libraries."""
  env = dict(os.environ)
  if cap != "native":
    env["ONEDNN_MAX_CPU_ISA"] = cap
    env["XLA_FLAGS"] = f"{env.get('XLA_FLAGS', '')} --xla_cpu_max_isa={XLA_ISA[cap]}".strip()
  return env


def measure(programs: list[str], size: int, repeats: int) -> list[dict]:
  """The rows of this process (its ISA cap already in its environment)."""
  import jax  # pylint: disable=g-import-not-at-top  (after the cap is in the environment)
  import numpy as np  # pylint: disable=g-import-not-at-top
  from benchmarks import onednn_kernels  # pylint: disable=g-import-not-at-top
  from benchmarks import portrait_bench  # pylint: disable=g-import-not-at-top
  from experiments import scaling  # pylint: disable=g-import-not-at-top
  from jaxstyle.nets import model as model_lib  # pylint: disable=g-import-not-at-top
  from jaxstyle.nets import onednn  # pylint: disable=g-import-not-at-top
  from jaxstyle.program import portrait  # pylint: disable=g-import-not-at-top
  from jaxstyle.program import sharding  # pylint: disable=g-import-not-at-top
  if onednn.unavailable():
    raise SystemExit(f"error: the oneDNN kernels cannot run here: {onednn.unavailable()}")
  base = dataclasses.replace(model_lib.MODEL_CONFIGS["default"], dtype="float32")
  params = scaling.random_params(base)
  device = jax.devices()[0]
  mesh = sharding.data_mesh([device])
  content, style, controls = portrait_bench.inputs(size, 1)
  call_args = (params, jax.device_put(portrait.Batch(content, style), device), controls)
  rows = []
  for mode in programs:
    load_before = portrait_bench.load_average()
    calls, images, first = {}, {}, {}
    for formulation in FORMULATIONS:
      cfg = dataclasses.replace(base, formulation=formulation)
      t0 = time.perf_counter()
      compiled = portrait.make_program(cfg, mesh, mode=mode).lower(*call_args).compile()
      calls[formulation] = lambda c=compiled: jax.block_until_ready(c(*call_args))
      images[formulation] = np.asarray(calls[formulation]()["image"], np.float32)
      first[formulation] = time.perf_counter() - t0
    times = onednn_kernels.alternated({f: (lambda: None, call) for f, call in calls.items()}, repeats)
    load_after = portrait_bench.load_average()
    for formulation in FORMULATIONS:
      ratio = statistics.median(s / o for s, o in zip(times["same"], times[formulation]))
      rows.append({"program": mode, "size": size, "formulation": formulation, "isa": onednn.cpu_isa(),
                   "ms": round(1e3 * statistics.median(times[formulation]), 1), "ratio_to_same": round(ratio, 3),
                   "compile_and_first_s": round(first[formulation], 2),
                   "max_abs_diff_to_same": float(f"{np.abs(images[formulation] - images['same']).max():.2e}"),
                   "load_before": portrait_bench.fmt(load_before, ".2f"),
                   "load_after": portrait_bench.fmt(load_after, ".2f")})
      print(json.dumps(rows[-1]), file=sys.stderr, flush=True)
  return rows


def cpu_model() -> str:
  for line in Path("/proc/cpuinfo").read_text().splitlines():
    if line.startswith("model name"):
      return line.split(":", 1)[1].strip()
  return "unknown"


def main(argv=None) -> None:
  p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  p.add_argument("--caps", default="native,AVX2", help="native and/or oneDNN ISA names: " + ", ".join(XLA_ISA))
  p.add_argument("--programs", default="plain,portrait")
  p.add_argument("--size", type=int, default=512)
  p.add_argument("--repeats", type=int, default=5)
  p.add_argument("--out", default=str(ROOT / "docs" / "runs" / "float32_formulations.csv"))
  p.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
  args = p.parse_args(argv)
  if args.child:
    print(json.dumps(measure(args.programs.split(","), args.size, args.repeats)))
    return
  rows = []
  for cap in args.caps.split(","):
    if cap != "native" and cap not in XLA_ISA:
      raise SystemExit(f"error: unknown cap {cap!r}: native or one of {', '.join(XLA_ISA)}")
    proc = subprocess.run([sys.executable, "-m", "benchmarks.float32_formulations", "--child", "--programs",
                           args.programs, "--size", str(args.size), "--repeats", str(args.repeats)],
                          cwd=ROOT, env=cap_environment(cap), stdout=subprocess.PIPE, check=True, text=True)
    for row in json.loads(proc.stdout.splitlines()[-1]):
      rows.append({"date": datetime.date.today().isoformat(), "cap": cap, **row, "cpu": cpu_model()})
      print(f"{cap:>12} {row['program']:>8} {row['formulation']:>6} ({row['isa']}): {row['ms']:8.1f} ms, "
            f"same/this {row['ratio_to_same']:.2f}×, max |Δ| {row['max_abs_diff_to_same']:.1e}", flush=True)
  Path(args.out).parent.mkdir(parents=True, exist_ok=True)
  with open(args.out, "w", newline="") as f:
    writer = csv.DictWriter(f, fieldnames=COLUMNS)
    writer.writeheader()
    writer.writerows(rows)
  print(f"wrote {args.out}")


if __name__ == "__main__":
  main()
