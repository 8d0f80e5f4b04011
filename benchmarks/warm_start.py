"""Where a second CLI run of one pair spends its wall time, and that wall time, as fresh processes.

    python -m benchmarks.warm_start --rounds 3 --baseline /tmp/old_checkout     # alternated, both trees

Each round runs, in turn, every variant as a fresh process on the same pair (``--content`` ×
``--style`` at ``--size``, ``--overwrite``), after one warm-up run of each that fills the caches:

- ``wall``: the command itself (``python -m infer.portrait``), wall seconds from spawn to exit;
- ``breakdown``: the same run inside this script's instrumentation (``--child``), which times, in the
  child: ``import jax``, the rest of the command's imports, the weights (folder read and hashed, the
  ImageNet VGG-19, the shapes check, placing them), finding the program (tracing, lowering and JAX's
  persistent-cache lookup, or the executable cache: ``program/executables.py``), computing, decoding the
  inputs and writing the PNG; what remains of the wall time is interpreter start and exit.

Variants: ``--dtypes`` (default: the command's default, ``auto``) for this checkout and, with
``--baseline DIR``, for another checkout of the code run from ``DIR`` (this environment's packages, the
editable install's finder removed), so a before/after pair is measured alternately under the same load;
``--tree DIR`` runs this side from a frozen copy too (any edit of the package makes its kept executables
foreign, by design).
Rows go to ``--out`` (a CSV: date, tree, dtype, round, measure, phase, seconds, load average) and a
summary (medians) to stdout. On a 2-core machine shared with other jobs, report the load with the numbers.
"""
from __future__ import annotations

import argparse
import csv
import datetime
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
COLUMNS = ("date", "tree", "dtype", "round", "measure", "phase", "seconds", "load1", "cpu")
PHASES = ("import jax", "import the command", "weights: read folder + sha256", "weights: ImageNet VGG-19",
          "weights: shapes check", "weights: place", "program: trace + lower", "program: JAX cache / compile",
          "program: executable cache", "compute", "decode inputs", "write png", "other in process",
          "interpreter start + exit")


def cpu_name() -> str:
  try:
    return next(l.split(":", 1)[1].strip() for l in Path("/proc/cpuinfo").read_text().splitlines()
                if l.startswith("model name"))
  except (OSError, StopIteration):
    return "unknown"


# ---------------------------------------------------------------------------------------- the child


def child(argv: list[str]) -> None:
  """Runs the command in this process with timers around its parts; prints one JSON line of seconds."""
  t0 = time.perf_counter()
  spans: dict[str, float] = {}

  def add(name, seconds):
    spans[name] = spans.get(name, 0.0) + seconds

  def timed(name, fn):
    def wrapped(*a, **k):
      start = time.perf_counter()
      try:
        return fn(*a, **k)
      finally:
        add(name, time.perf_counter() - start)
    return wrapped

  start = time.perf_counter()
  import jax  # noqa: F401  pylint: disable=g-import-not-at-top,unused-import  (timed: the import itself)
  add("import jax", time.perf_counter() - start)
  from jax._src import monitoring  # pylint: disable=g-import-not-at-top
  events = {"/jax/core/compile/jaxpr_trace_duration": "program: trace + lower",
            "/jax/core/compile/jaxpr_to_mlir_module_duration": "program: trace + lower",
            "/jax/core/compile/backend_compile_duration": "program: JAX cache / compile"}
  monitoring.register_event_duration_secs_listener(
      lambda event, seconds, **kw: add(events[event], seconds) if event in events else None)
  start = time.perf_counter()
  from jaxstyle.commands import portrait as command  # pylint: disable=g-import-not-at-top
  add("import the command", time.perf_counter() - start)
  from jaxstyle.checkpoints import loading  # pylint: disable=g-import-not-at-top
  from jaxstyle.io import image_io  # pylint: disable=g-import-not-at-top
  from jaxstyle.program import runner  # pylint: disable=g-import-not-at-top
  loading.weights_lib.load = timed("weights: read folder + sha256", loading.weights_lib.load)
  loading.imagenet_encoder = timed("weights: ImageNet VGG-19", loading.imagenet_encoder)
  loading.check_shapes = timed("weights: shapes check", loading.check_shapes)
  # What ``Runner.load`` does besides ``loading.load`` (placing the params, the dtype's choice, the
  # cache folders): its total less that of ``loading.load``, whose parts are the spans above.
  runner.loading.load = timed("loading.load", runner.loading.load)
  runner.Runner.load = classmethod(timed("Runner.load", runner.Runner.load.__func__))
  image_io.load_image = timed("decode inputs", image_io.load_image)
  image_io.save_image_atomic = timed("write png", image_io.save_image_atomic)
  try:
    from jaxstyle.program import executables  # pylint: disable=g-import-not-at-top
    get = executables.Cached._get  # pylint: disable=protected-access

    def get_timed(*a, **k):   # exclusive of the tracing and compiling a miss does (JAX's events)
      jax_before = spans.get("program: trace + lower", 0) + spans.get("program: JAX cache / compile", 0)
      start = time.perf_counter()
      try:
        return get(*a, **k)
      finally:
        jax_during = spans.get("program: trace + lower", 0) + spans.get("program: JAX cache / compile", 0) - jax_before
        add("program: executable cache", time.perf_counter() - start - jax_during)
    executables.Cached._get = get_timed  # pylint: disable=protected-access
  except ImportError:   # a tree from before the executable cache
    pass
  stylize = runner.Runner.stylize

  def stylize_timed(self, *a, **k):
    start = time.perf_counter()
    before = sum(v for n, v in spans.items() if n.startswith("program:"))
    try:
      return stylize(self, *a, **k)
    finally:
      lookup = sum(v for n, v in spans.items() if n.startswith("program:")) - before
      add("compute", time.perf_counter() - start - lookup)
  runner.Runner.stylize = stylize_timed
  try:
    command.main(argv)
  except SystemExit:
    pass
  total = time.perf_counter() - t0
  spans["weights: place"] = spans.pop("Runner.load", 0.0) - spans.get("loading.load", 0.0)
  spans.pop("loading.load", None)   # its parts are the other "weights:" spans; the rest of it is "other"
  spans["other in process"] = total - sum(spans.values())
  print(json.dumps({"in_process": total, "spans": spans}), flush=True)


# ---------------------------------------------------------------------------------------- the parent


def command(tree: Path | None, dtype: str | None, args, instrumented: bool) -> tuple[list[str], dict]:
  """The argv and environment of one run of ``tree`` (None: this checkout)."""
  flags = ["--content", args.content, "--style", args.style, "--output", args.output, "--size", str(args.size),
           "--overwrite"] + ([] if dtype is None else ["--dtype", dtype])
  env = dict(os.environ)
  if instrumented:
    entry = ["-m", "benchmarks.warm_start", "--child", "--"]
  else:
    entry = ["-m", "infer.portrait"]
  if tree is None:
    return [sys.executable, *entry, *flags], {**env, "PYTHONPATH": str(ROOT)}
  # Another checkout: this environment's packages, the editable install's finder removed, ``tree`` first
  # (the instrumentation is this file, run by path; the code it times is the tree's).
  run = (f"runpy.run_path({__file__!r}, run_name='__main__')" if instrumented else
         f"runpy.run_module({entry[1]!r}, run_name='__main__')")
  boot = ("import sys, runpy; sys.meta_path[:] = [f for f in sys.meta_path if 'editable' not in "
          f"type(f).__module__]; sys.path.insert(0, {str(tree)!r}); sys.argv = ['x'] + sys.argv[1:]; {run}")
  return [sys.executable, "-c", boot, *entry[2:], *flags], env


def run_once(tree, dtype, args, instrumented) -> tuple[float, dict | None]:
  argv, env = command(tree, dtype, args, instrumented)
  start = time.perf_counter()
  proc = subprocess.run(argv, env=env, capture_output=True, text=True, cwd=ROOT, timeout=1800)
  wall = time.perf_counter() - start
  if proc.returncode != 0:
    raise RuntimeError(f"{argv} failed:\n{proc.stderr[-3000:]}")
  report = None
  if instrumented:
    report = json.loads([l for l in proc.stdout.splitlines() if l.startswith("{")][-1])
  return wall, report


def main(argv=None) -> None:
  if argv is None and "--child" in sys.argv:
    child(sys.argv[sys.argv.index("--") + 1:])
    return
  p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                              formatter_class=argparse.RawDescriptionHelpFormatter)
  p.add_argument("--content", default="examples/content/grace_hopper.jpg")
  p.add_argument("--style", default="examples/styles/starry_night.jpg")
  p.add_argument("--size", type=int, default=512)
  p.add_argument("--output", default="/tmp/jaxstyle_warm_start.png")
  p.add_argument("--dtypes", default="default", help="comma-separated: default (no --dtype), auto, float32, …")
  p.add_argument("--baseline", type=Path, help="another checkout, measured alternately with this one")
  p.add_argument("--tree", type=Path, help="run 'this' from a copy of the checkout (frozen: an edit of the "
                                          "package makes its kept executables foreign mid-run)")
  p.add_argument("--rounds", type=int, default=3)
  p.add_argument("--out", type=Path, default=ROOT / "docs" / "runs" / "warm_start_cpu.csv")
  args = p.parse_args(argv)
  dtypes = [None if d == "default" else d for d in args.dtypes.split(",")]
  trees = [("this", args.tree and args.tree.resolve())] + (
      [("baseline", args.baseline.resolve())] if args.baseline else [])
  variants = [(name, tree, dtype) for name, tree in trees for dtype in dtypes]
  date, cpu = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M"), cpu_name()
  rows = []
  for name, tree, dtype in variants:   # warm-up: fills the compile and executable caches
    wall, _ = run_once(tree, dtype, args, False)
    print(f"warm-up {name} {dtype or 'default'}: {wall:.1f} s", flush=True)
  for r in range(args.rounds):
    for instrumented in (False, True):
      for name, tree, dtype in variants:
        if instrumented and name == "baseline":   # its spans are this code's (the runner, the commands)
          continue
        load = os.getloadavg()[0]
        wall, report = run_once(tree, dtype, args, instrumented)
        base = dict(date=date, tree=name, dtype=dtype or "default", round=r, load1=f"{load:.2f}", cpu=cpu)
        if report is None:
          rows.append({**base, "measure": "wall", "phase": "total", "seconds": f"{wall:.3f}"})
        else:
          spans = {**report["spans"], "interpreter start + exit": wall - report["in_process"]}
          rows += [{**base, "measure": "breakdown", "phase": k, "seconds": f"{v:.3f}"} for k, v in spans.items()]
        print(f"round {r} {name} {dtype or 'default'} {'breakdown' if report else 'wall'}: {wall:.2f} s "
              f"(load {load:.2f})", flush=True)
  args.out.parent.mkdir(parents=True, exist_ok=True)
  with args.out.open("w", newline="") as f:
    writer = csv.DictWriter(f, fieldnames=COLUMNS)
    writer.writeheader()
    writer.writerows(rows)
  print(summary(rows))


def summary(rows: list[dict]) -> str:
  """Medians over rounds: wall, and each phase of the breakdown, per tree and dtype."""
  keys = sorted({(r["tree"], r["dtype"]) for r in rows})
  med = lambda k, measure, phase: statistics.median(
      [float(r["seconds"]) for r in rows if (r["tree"], r["dtype"]) == k and r["measure"] == measure
       and r["phase"] == phase] or [float("nan")])
  head = "| phase | " + " | ".join(f"{t} {d}" for t, d in keys) + " |"
  lines = [head, "|---" * (len(keys) + 1) + "|",
           "| **wall (uninstrumented run)** | " + " | ".join(f"**{med(k, 'wall', 'total'):.2f} s**" for k in keys) + " |"]
  for phase in PHASES:
    lines.append(f"| {phase} | " + " | ".join(f"{med(k, 'breakdown', phase):.2f}" for k in keys) + " |")
  loads = [float(r["load1"]) for r in rows] or [float("nan")]
  lines.append(f"\nload average (1 min) {min(loads):.1f}–{max(loads):.1f} during the runs")
  return "\n".join(lines)


if __name__ == "__main__":
  main()
