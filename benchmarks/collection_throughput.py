"""A collection through the CLI: 2 processes × 1 core against 1 process × 2 cores, overlap on and off.

    python -m benchmarks.collection_throughput \\
        --portraits ../shared/data/portraits --styles ../shared/data/styles/sanet_wave.jpg \\
        ../shared/data/styles/sanet_Starry.jpg --n 20 --size 384

The first ``--n`` portraits (by name) whose longer side is at least ``--size`` (no upscaled thumbnails)
× the styles, with the shipped weights, each configuration a fresh output folder:

1. ``1 process × 2 cores``: one ``python -m infer.portrait`` pinned to cores 0 and 1;
2. ``1 process × 2 cores, no overlap``: the same with ``--io-threads 0`` (decode, compute and write in
   turn): the decode/compute overlap gain is (1) over (2);
3. ``2 processes × 1 core``: a ``jax.distributed`` job on loopback, process ``i`` pinned to core ``i``.

All share one compile cache, filled first by a warm-up run of one content per shape bucket. JAX writes
that cache only from process 0 and, on CPU, keys it by device, so process 1 of the 2-process job
compiles its programs in every run: its compile seconds (``JAX_LOG_COMPILES``) are measured apart.
Per configuration: wall seconds from start to the last process's exit (start-up included), the run's
own seconds (the slowest process's "in X s": weights, programs, decoding, computing, writing) and the
same without compiling (each process's run seconds less its compile seconds), each as images/s. The
ratios come from one invocation. Prints a table and one JSON line, with the CPU model, the date and the
load average before and after.
"""
from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchmarks import cli_scale
from jaxstyle.io import image_io
from jaxstyle.program import buckets


def cpu_model() -> str:
  for line in Path("/proc/cpuinfo").read_text().splitlines():
    if line.startswith("model name"):
      return line.split(":", 1)[1].strip()
  return "unknown"


def free_port() -> int:
  with socket.socket() as s:
    s.bind(("localhost", 0))
    return s.getsockname()[1]


def cli(args: list[str], cores: str, extra_env: dict | None = None) -> subprocess.Popen:
  return subprocess.Popen(["taskset", "-c", cores, sys.executable, "-m", "infer.portrait", *args],
                          env={**os.environ, **(extra_env or {})}, text=True, stdout=subprocess.DEVNULL,
                          stderr=subprocess.PIPE)


def run(processes: list[subprocess.Popen], pairs: int) -> dict:
  start = time.perf_counter()
  logs = [p.communicate()[1] for p in processes]
  wall = time.perf_counter() - start
  for p, log in zip(processes, logs):
    if p.returncode:
      raise SystemExit(log[-3000:])
  # "N done, ... of M pairs in X s": each process's own time, from weights loading to its last file.
  own = [float(re.search(r"(\d+) done, .* pairs? in ([0-9.]+) s", log).group(2)) for log in logs]
  done = sum(int(re.search(r"(\d+) done", log).group(1)) for log in logs)
  assert done == pairs, logs
  # JAX_LOG_COMPILES: "Finished XLA compilation of jit(program) in X sec" (a cache hit takes ~0.1 s).
  compile_s = [sum(map(float, re.findall(r"compilation of jit\(program\) in ([0-9.]+) sec", log)))
               for log in logs]
  warm = max(o - c for o, c in zip(own, compile_s))
  return {"wall_s": round(wall, 1), "run_s": round(max(own), 1),
          "compile_s": [round(c, 1) for c in compile_s], "run_without_compile_s": round(warm, 1),
          "images_per_s_wall": round(pairs / wall, 3), "images_per_s_run": round(pairs / max(own), 3),
          "images_per_s_without_compile": round(pairs / warm, 3)}


def main() -> None:
  a = cli_scale.portraits_parser(20).parse_args()
  files = sorted(f for f in Path(a.portraits).iterdir() if image_io.is_image(f))
  contents = [f for f in files if max(image_io.probe_hw(f)) >= a.size][:a.n]
  pairs = len(contents) * len(a.styles)
  options = ["--size", str(a.size)] + (["--weights", a.weights] if a.weights else [])
  report = {"cpu": cpu_model(), "date": time.strftime("%Y-%m-%d %H:%M"), "load_before": os.getloadavg(),
            "pairs": pairs, "size": a.size,
            "contents": [f.name for f in contents], "styles": [Path(s).name for s in a.styles]}
  with tempfile.TemporaryDirectory() as tmp:
    tmp = Path(tmp)
    (tmp / "photos").mkdir()
    for f in contents:
      (tmp / "photos" / f.name).symlink_to(f.resolve())
    env = {"JAXSTYLE_COMPILE_CACHE": str(tmp / "xla"), "JAX_LOG_COMPILES": "1"}
    by_bucket = {buckets.content_bucket(image_io.probe_hw(f, a.size)): f for f in contents}
    run([cli(["--content", *map(str, by_bucket.values()), "--style", a.styles[0], "--output",
              str(tmp / "warm"), *options], "0,1", env)], len(by_bucket))
    args = lambda out: ["--content", str(tmp / "photos"), "--style", *a.styles, "--output", str(tmp / out),
                        *options]
    port = free_port()
    report["runs"] = {
        "1 process x 2 cores": run([cli(args("one"), "0,1", env)], pairs),
        "1 process x 2 cores, no overlap": run([cli(args("serial") + ["--io-threads", "0"], "0,1", env)],
                                               pairs),
        "2 processes x 1 core": run([cli(args("two") + ["--coordinator_address", f"localhost:{port}",
                                                       "--num_processes", "2", "--process_id", str(i)],
                                         str(i), env) for i in range(2)], pairs),
    }
  runs = report["runs"]
  ratio = lambda a, b, key: round(runs[a][key] / runs[b][key], 3)
  one, serial, two = runs
  report["overlap_gain"] = ratio(one, serial, "images_per_s_run")
  report["two_processes_vs_one"] = {key: ratio(two, one, key) for key in (
      "images_per_s_wall", "images_per_s_run", "images_per_s_without_compile")}
  report["load_after"] = os.getloadavg()
  print(f"{pairs} pairs at {a.size} on {report['cpu']}, {report['date']} (load {report['load_before'][0]:.2f}"
        f" before, {report['load_after'][0]:.2f} after)")
  for name, r in runs.items():
    print(f"  {name:34s} {r['images_per_s_run']:.3f} images/s ({r['run_s']} s, of which compiling "
          f"{max(r['compile_s'])} s; {r['wall_s']} s with start-up); without compiling "
          f"{r['images_per_s_without_compile']:.3f} images/s")
  print(f"  overlap gain {report['overlap_gain']:.3f}x; 2 processes / 1 process: "
        + ", ".join(f"{v:.3f}x ({k})" for k, v in report["two_processes_vs_one"].items()))
  print(json.dumps(report))


if __name__ == "__main__":
  main()
