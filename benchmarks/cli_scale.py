"""The CLI at folder scale: programs compiled for a folder of mixed sizes, and a second run's time.

    python -m benchmarks.cli_scale --portraits DIR --styles A.jpg B.jpg --n 13 --size 384

1. The first ``--n`` images of ``--portraits`` (by name) × the styles, one CLI run, with an empty
   compile cache: counts the programs the run compiles (one "compiling …" line per program).
2. One pair, run twice as two fresh processes sharing one new compile cache: wall and CPU seconds of
   each, the second loading its program from the persistent cache.
Prints one JSON line. Each run is ``python -m infer.portrait`` in a subprocess, as a user would.
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from jaxstyle.io.image_io import IMAGE_SUFFIXES


def cpu_seconds() -> float:
  usage = resource.getrusage(resource.RUSAGE_CHILDREN)
  return usage.ru_utime + usage.ru_stime


def cli(args: list[str], cache: Path) -> tuple[float, float, str]:
  """(wall seconds, CPU seconds, stderr) of one CLI run. CPU time is reported too because this machine
  is shared: wall time moves with other jobs' load, CPU time much less."""
  env = {**os.environ, "JAXSTYLE_COMPILE_CACHE": str(cache)}
  start, cpu = time.perf_counter(), cpu_seconds()
  proc = subprocess.run([sys.executable, "-m", "infer.portrait", *args], capture_output=True, text=True,
                        env=env, check=False)
  seconds = time.perf_counter() - start
  if proc.returncode:
    raise SystemExit(proc.stderr)
  return seconds, cpu_seconds() - cpu, proc.stderr


def portraits_parser(n: int) -> argparse.ArgumentParser:
  """The flags of the CLI benchmarks: the first ``--n`` of ``--portraits`` × ``--styles`` at ``--size``."""
  p = argparse.ArgumentParser()
  p.add_argument("--portraits", required=True)
  p.add_argument("--styles", nargs="+", required=True)
  p.add_argument("--n", type=int, default=n)
  p.add_argument("--size", type=int, default=384)
  p.add_argument("--weights", default=None)
  return p


def main() -> None:
  p = portraits_parser(13)
  p.add_argument("--skip-folder", action="store_true")
  a = p.parse_args()
  portraits = sorted(f for f in Path(a.portraits).iterdir() if f.suffix.lower() in IMAGE_SUFFIXES)[:a.n]
  common = ["--size", str(a.size)] + (["--weights", a.weights] if a.weights else [])
  report: dict = {"size": a.size, "portraits": [f.name for f in portraits], "styles": a.styles}
  with tempfile.TemporaryDirectory() as tmp:
    tmp = Path(tmp)
    with tempfile.TemporaryDirectory() as folder:
      for f in portraits:   # one folder of exactly these files
        (Path(folder) / f.name).symlink_to(f.resolve())
      if not a.skip_folder:
        seconds, cpu, log = cli(["--content", folder, "--style", *a.styles, "-o", str(tmp / "folder"), *common],
                           tmp / "cache_folder")
        report["folder"] = {"pairs": len(portraits) * len(a.styles), "seconds": round(seconds, 1),
                            "cpu_seconds": round(cpu, 1),
                            "programs": log.count("compiling the "),
                            "buckets": [line.split(" program for ")[1].split(" (")[0]
                                        for line in log.splitlines() if "compiling the " in line]}
    pair = ["--content", str(portraits[0]), "--style", a.styles[0], *common]
    runs = [cli(pair + ["-o", str(tmp / f"pair{i}.png")], tmp / "cache_pair")[:2] for i in range(2)]
    report["pair_twice"] = {"first_s": round(runs[0][0], 1), "second_s": round(runs[1][0], 1),
                            "ratio": round(runs[1][0] / runs[0][0], 3),
                            "first_cpu_s": round(runs[0][1], 1), "second_cpu_s": round(runs[1][1], 1),
                            "cpu_ratio": round(runs[1][1] / runs[0][1], 3)}
  print(json.dumps(report))


if __name__ == "__main__":
  main()
