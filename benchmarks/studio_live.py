"""The studio's camera and clips on this machine (shipped weights, the default dtype): not a test.

    python -m benchmarks.studio_live --out docs/runs/studio_live.csv

- **live fps**: the camera's function (``studio_live.Live.frame``, what each streamed frame runs; the
  browser's round trip excluded) on 640x480 frames of the bundled portrait panning, portrait mode, at
  each ``--live-sizes`` for ``--live-seconds`` after a warm-up frame (which compiles).
- **clip**: a ``--clip-seconds`` 720p clip (24 fps, the bundled portrait panning) at the page's default
  size through the studio's clip function (``studio_clip.Clips``, in this process, warm) against the
  CLI (``python -m infer.portrait``, a fresh process, compile cache warm: its second run), wall time.
- **RSS**: this process's resident memory once started, after the first clip, after a
  ``--session-seconds`` live session and after each of two more clips (bounded, or growing with use).
Writes one CSV row per measurement with the CPU model (``lscpu``).
"""
from __future__ import annotations

import argparse
import csv
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from jaxstyle.app import studio as studio_lib
from jaxstyle.app import studio_clip
from jaxstyle.app import studio_live
from jaxstyle.app.request import Settings
from jaxstyle.io import image_io
from jaxstyle.io import video

ROOT = Path(__file__).resolve().parent.parent
PORTRAIT = ROOT / "examples" / "content" / "grace_hopper.jpg"
STYLE = ROOT / "examples" / "styles" / "starry_night.jpg"


def cpu_model() -> str:
  for line in subprocess.run(["lscpu"], capture_output=True, text=True).stdout.splitlines():
    if line.startswith("Model name:"):
      return line.split(":", 1)[1].strip()
  return "unknown"


def rss_mib() -> float:
  for line in Path("/proc/self/status").read_text().splitlines():
    if line.startswith("VmRSS:"):
      return int(line.split()[1]) / 1024
  raise RuntimeError("no VmRSS")


def camera_frames(n: int = 30) -> list[np.ndarray]:
  """640x480 uint8 views panning over the bundled portrait: a camera's frames."""
  image = image_io.load_image(PORTRAIT)
  with tempfile.TemporaryDirectory() as tmp:
    path = video.pan_clip(image, Path(tmp) / "pan.mp4", frames=n, hw=(480, 640), rate=30)
    with video.av.open(str(path)) as c:
      return [f.to_ndarray(format="rgb24") for f in c.decode(c.streams.video[0])]


def live_fps(live, frames, size: int, seconds: float) -> tuple[float, int]:
  settings = Settings(size=size)
  style = studio_lib.Upload(STYLE)
  live.frame("bench", frames[0], style, settings)           # compiles
  start, n = time.perf_counter(), 0
  while time.perf_counter() - start < seconds:
    live.frame("bench", frames[n % len(frames)], style, settings)
    n += 1
  return n / (time.perf_counter() - start), n


def main(argv=None) -> int:
  p = argparse.ArgumentParser()
  p.add_argument("--out", default="docs/runs/studio_live.csv")
  p.add_argument("--live-sizes", default="256,384")
  p.add_argument("--live-seconds", type=float, default=20)
  p.add_argument("--session-seconds", type=float, default=120)
  p.add_argument("--clip-seconds", type=float, default=10)
  args = p.parse_args(argv)
  rows, cpu = [], cpu_model()
  add = lambda what, value, unit, note="": rows.append(
      {"measure": what, "value": f"{value:.3g}", "unit": unit, "note": note, "cpu": cpu})
  studio = studio_lib.Studio(None, log=lambda _: None)
  live = studio_live.Live(studio)
  frames = camera_frames()
  add("rss_started", rss_mib(), "MiB", "the studio's objects made, nothing computed")
  for size in map(int, args.live_sizes.split(",")):
    fps, n = live_fps(live, frames, size, args.live_seconds)
    add(f"live_fps_{size}px", fps, "frames/s", f"portrait mode, {n} frames of 640x480")
    print(rows[-1], flush=True)

  folder = tempfile.TemporaryDirectory()
  tmp = Path(folder.name)
  clip = video.pan_clip(image_io.load_image(PORTRAIT), tmp / "clip720.mp4",
                        frames=int(24 * args.clip_seconds), hw=(720, 1280), rate=24)
  studio.results_dir = tmp / "results"
  clips = studio_clip.Clips(studio, log=lambda _: None)
  settings = Settings(size=studio_lib.DEFAULT_PAGE_SIZE)
  start = time.perf_counter()
  clips.stylize("bench", studio_lib.Upload(clip), studio_lib.Upload(STYLE), settings)
  add("clip_studio_s", time.perf_counter() - start, "s",
      f"{args.clip_seconds:g} s 1280x720 24 fps at {settings.size} px, warm studio process")
  print(rows[-1], flush=True)
  cli = [sys.executable, "-m", "infer.portrait", "--content", str(clip), "--style", str(STYLE), "--size",
         str(settings.size), "--output", str(tmp / "cli.mp4")]
  for run in ("first", "second"):
    start = time.perf_counter()
    subprocess.run(cli, cwd=ROOT, check=True, capture_output=True)
    add(f"clip_cli_{run}_s", time.perf_counter() - start, "s", "fresh process" +
        (", compile cache warm" if run == "second" else ""))
    print(rows[-1], flush=True)

  # Memory: a live session at 256 px, then three clips (the one above counts as the first); the RSS
  # after each step shows whether it grows with use.
  add("rss_after_first_clip", rss_mib(), "MiB", "after the live rates and the first clip")
  live_fps(live, frames, 256, args.session_seconds)
  add("rss_after_live_session", rss_mib(), "MiB", f"after {args.session_seconds:g} s live at 256 px")
  for n in (2, 3):
    clips.stylize("bench", studio_lib.Upload(clip), studio_lib.Upload(STYLE), settings)
    add(f"rss_after_clip_{n}", rss_mib(), "MiB", f"{args.clip_seconds:g} s clips")
  print(rows[-4:], flush=True)
  folder.cleanup()
  Path(args.out).parent.mkdir(parents=True, exist_ok=True)
  with open(args.out, "w", newline="") as f:
    writer = csv.DictWriter(f, fieldnames=list(rows[0]))
    writer.writeheader()
    writer.writerows(rows)
  return 0


if __name__ == "__main__":
  raise SystemExit(main())
