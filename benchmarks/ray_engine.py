"""The Ray engine against the local engine on one machine: its overhead in images/s, and its start-up.

    python -m benchmarks.ray_engine --portraits ../shared/data/portraits \\
        --styles ../shared/data/styles/sanet_wave.jpg ../shared/data/styles/sanet_Starry.jpg --n 20 --size 384

The first ``--n`` portraits (by name) whose longer side is at least ``--size`` × the styles (40 pairs by
default), shipped weights, each run a fresh ``python -m infer.portrait`` into a fresh folder:
``--engine local``, then ``--engine ray`` (a local cluster of this machine's cores started by the run,
one actor holding all of them), alternated for ``--rounds`` rounds, all in one invocation and sharing
one compile cache that a warm-up run of each engine (one content per shape bucket) filled first.

Per run, from the outputs' modification times (every file is renamed into place once it is whole):
- start-up: launch to the first output (interpreter, imports, for Ray the cluster and the actor's
  process, the weights, the programs from the cache, and the first pair's computing);
- steady images/s: the pairs after the first over the seconds from the first output to the last (the
  engine's throughput once running, start-up excluded);
- wall seconds, launch to exit (Ray's shutdown included);
- the 1-minute load average at its end: about the core count from the run itself, more when other work
  shared the machine (which slows either engine).

Writes ``--csv`` (one row per run, replacing this table) and prints the table with the CPU model, the
date and the load average before and after: a machine shared with other work slows both engines.
"""
from __future__ import annotations

import argparse
import csv
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchmarks.collection_throughput import cpu_model
from jaxstyle.io import image_io
from jaxstyle.program import buckets

COLUMNS = ["date", "cpu", "cores", "load_before", "load_after", "round", "engine", "pairs", "size",
           "startup_s", "steady_images_per_s", "wall_s", "load_at_end"]


def parser() -> argparse.ArgumentParser:
  p = argparse.ArgumentParser()
  p.add_argument("--portraits", required=True)
  p.add_argument("--styles", nargs="+", required=True)
  p.add_argument("--n", type=int, default=20)
  p.add_argument("--size", type=int, default=384)
  p.add_argument("--weights", default=None)
  p.add_argument("--rounds", type=int, default=2)
  p.add_argument("--csv", default="docs/runs/ray_engine.csv")
  return p


def run_cli(args: list[str], out: Path, env: dict, pairs: int) -> dict:
  """One fresh CLI run into ``out``: its start-up, steady images/s and wall seconds."""
  start = time.time()
  proc = subprocess.run([sys.executable, "-m", "infer.portrait", *args, "--output", str(out)],
                        env=env, text=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
  wall = time.time() - start
  if proc.returncode:
    raise SystemExit(proc.stderr[-3000:])
  times = sorted(p.stat().st_mtime for p in out.glob("*__*.png") if not p.name.startswith("."))
  assert len(times) == pairs, (len(times), proc.stderr[-2000:])
  # The run itself holds the 1-minute load near the core count; more is other work on the machine.
  return {"startup_s": round(times[0] - start, 2),
          "steady_images_per_s": round((pairs - 1) / (times[-1] - times[0]), 4),
          "wall_s": round(wall, 1), "load_at_end": round(os.getloadavg()[0], 2)}


def main() -> None:
  a = parser().parse_args()
  files = sorted(f for f in Path(a.portraits).iterdir() if image_io.is_image(f))
  contents = [f for f in files if max(image_io.probe_hw(f)) >= a.size][:a.n]
  pairs = len(contents) * len(a.styles)
  options = ["--size", str(a.size)] + (["--weights", a.weights] if a.weights else [])
  head = {"date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "cpu": cpu_model(),
          "cores": len(os.sched_getaffinity(0)), "load_before": round(os.getloadavg()[0], 2),
          "pairs": pairs, "size": a.size}
  rows = []
  with tempfile.TemporaryDirectory() as tmp:
    tmp = Path(tmp)
    (tmp / "photos").mkdir()
    for f in contents:
      (tmp / "photos" / f.name).symlink_to(f.resolve())
    env = {**os.environ, "JAXSTYLE_COMPILE_CACHE": str(tmp / "xla")}
    by_bucket = {buckets.content_bucket(image_io.probe_hw(f, a.size)): f for f in contents}
    warm = ["--content", *map(str, by_bucket.values()), "--style", a.styles[0], *options]
    for engine in ("local", "ray"):
      run_cli(warm + ["--engine", engine], tmp / f"warm_{engine}", env, len(by_bucket))
    full = ["--content", str(tmp / "photos"), "--style", *a.styles, *options]
    for r in range(a.rounds):
      for engine in ("local", "ray"):
        result = run_cli(full + ["--engine", engine], tmp / f"{engine}_{r}", env, pairs)
        rows.append({"round": r, "engine": engine, **result})
        print(f"round {r} {engine:5s}: start-up {result['startup_s']:.1f} s, "
              f"{result['steady_images_per_s']:.3f} images/s after it, {result['wall_s']:.1f} s wall, "
              f"load {result['load_at_end']}",
              flush=True)
  head["load_after"] = round(os.getloadavg()[0], 2)
  rows = [{**head, **row} for row in rows]
  path = Path(a.csv)
  path.parent.mkdir(parents=True, exist_ok=True)
  with path.open("w", newline="") as f:
    w = csv.DictWriter(f, fieldnames=COLUMNS)
    w.writeheader()
    w.writerows(rows)
  mean = {e: {k: statistics.mean(r[k] for r in rows if r["engine"] == e)
              for k in ("startup_s", "steady_images_per_s", "wall_s")} for e in ("local", "ray")}
  print(f"{pairs} pairs at {a.size} px on {head['cpu']} ({head['cores']} cores), {head['date']}, load "
        f"{head['load_before']} before, {head['load_after']} after; mean of {a.rounds} alternated rounds:")
  for e, m in mean.items():
    print(f"  {e:5s} {m['steady_images_per_s']:.3f} images/s after start-up; start-up {m['startup_s']:.1f} s;"
          f" wall {m['wall_s']:.1f} s")
  print(f"  ray / local: {mean['ray']['steady_images_per_s'] / mean['local']['steady_images_per_s']:.3f}x "
        f"images/s; start-up +{mean['ray']['startup_s'] - mean['local']['startup_s']:.1f} s")


if __name__ == "__main__":
  main()
