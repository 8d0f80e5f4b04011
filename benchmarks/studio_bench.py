"""The studio's speed and memory, as a user meets them: a warm server against the CLI.

    python -m benchmarks.studio_bench --sizes 384,512 --out docs/runs/studio_bench.json \
        --screenshot docs/img/studio.png

Starts ``python -m infer.studio`` (shipped weights) in a subprocess and calls its API through
``gradio_client`` (upload, compute, PNG, download: a page's round trip). At each size, after a warm-up
pair that compiles (or loads from the compile cache) the programs of the content's bucket:
- a **new pair**: the bundled content with a style the server has not seen (median of 3);
- a **control change**: α (person) moved on that pair (median of 3): one region's mix → decode and the
  composite;
- the **CLI**: ``python -m infer.portrait`` on one of those pairs as a fresh process, run twice; the
  second run (compile cache warm) is the reference.
Then 20 different pairs at the first size and the server's RSS (``/proc/PID/status``) after them.
``--screenshot``: the page in headless Chromium with a bundled pair stylised.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

from benchmarks.collection_throughput import free_port

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples"
SHARED = ROOT.parent / "shared" / "data"


def rss_mib(pid: int) -> float:
  for line in Path(f"/proc/{pid}/status").read_text().splitlines():
    if line.startswith("VmRSS:"):
      return int(line.split()[1]) / 1024
  raise RuntimeError("no VmRSS")


def images(folder: Path) -> list[Path]:
  return sorted(p for p in folder.iterdir() if p.suffix.lower() in (".jpg", ".jpeg", ".png"))


def start_server(port: int, log: Path) -> subprocess.Popen:
  proc = subprocess.Popen([sys.executable, "-m", "infer.studio", "--port", str(port)], cwd=ROOT,
                          stdout=open(log, "w"), stderr=subprocess.STDOUT)
  deadline = time.monotonic() + 300
  while time.monotonic() < deadline:
    try:
      urllib.request.urlopen(f"http://127.0.0.1:{port}", timeout=5).read()
      return proc
    except OSError:
      if proc.poll() is not None:
        raise RuntimeError(log.read_text()[-2000:])
      time.sleep(0.5)
  raise RuntimeError("the studio did not start")


def call(client, content: Path, style: Path, size: int, alpha_person: float | None = None) -> float:
  """Seconds of one ``/stylize`` call at the default controls (``alpha_person``: that control moved)."""
  from gradio_client import handle_file  # pylint: disable=g-import-not-at-top
  from jaxstyle.app import request  # pylint: disable=g-import-not-at-top
  from jaxstyle.program import portrait  # pylint: disable=g-import-not-at-top
  c = portrait.Controls()
  start = time.perf_counter()
  client.predict(handle_file(content), handle_file(style), None, "portrait", size,
                 c.w1_background, c.w2_background, c.alpha_background, c.w1_person, c.w2_person,
                 c.alpha_person if alpha_person is None else alpha_person, portrait.FEATHER, False,
                 *request.STYLE_SCALES["portrait"], api_name="/stylize")
  return time.perf_counter() - start


def cli_seconds(content: Path, style: Path, size: int, out: Path) -> list[float]:
  """Wall seconds of two fresh ``python -m infer.portrait`` processes on one pair."""
  times = []
  for _ in range(2):
    start = time.perf_counter()
    subprocess.run([sys.executable, "-m", "infer.portrait", "--content", str(content), "--style", str(style),
                    "--size", str(size), "--output", str(out)], cwd=ROOT, check=True, capture_output=True)
    times.append(time.perf_counter() - start)
  return times


def screenshot(url: str, path: Path, size: int) -> None:
  from selenium import webdriver  # pylint: disable=g-import-not-at-top
  from selenium.webdriver.chrome.service import Service  # pylint: disable=g-import-not-at-top
  from selenium.webdriver.common.by import By  # pylint: disable=g-import-not-at-top
  from selenium.webdriver.common.keys import Keys  # pylint: disable=g-import-not-at-top
  options = webdriver.ChromeOptions()
  options.binary_location = "/usr/bin/chromium"
  for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--window-size=1400,1250"):
    options.add_argument(arg)
  driver = webdriver.Chrome(options=options, service=Service("/usr/bin/chromedriver"))
  try:
    driver.get(url)
    time.sleep(3)
    box = driver.find_element(By.CSS_SELECTOR, "#size input[type=number]")
    box.clear()
    box.send_keys(str(size), Keys.TAB)
    driver.find_element(By.CSS_SELECTOR, "#content input[type=file]").send_keys(
        str(EXAMPLES / "content" / "grace_hopper.jpg"))
    driver.find_element(By.CSS_SELECTOR, "#style input[type=file]").send_keys(
        str(EXAMPLES / "styles" / "starry_night.jpg"))
    deadline = time.monotonic() + 300
    while not driver.find_elements(By.CSS_SELECTOR, "#person img") and time.monotonic() < deadline:
      time.sleep(0.5)
    time.sleep(2)
    driver.execute_script("window.scrollTo(0, 0)")   # typing the size scrolled the page down
    time.sleep(1)
    path.parent.mkdir(parents=True, exist_ok=True)
    driver.save_screenshot(str(path))
  finally:
    driver.quit()


def main() -> None:
  p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  p.add_argument("--sizes", default="384,512")
  p.add_argument("--out", type=Path)
  p.add_argument("--screenshot", type=Path)
  args = p.parse_args()
  from gradio_client import Client  # pylint: disable=g-import-not-at-top
  sizes = [int(s) for s in args.sizes.split(",")]
  content = EXAMPLES / "content" / "grace_hopper.jpg"
  styles = images(SHARED / "styles")
  portraits = images(SHARED / "portraits")
  report = {"cpu": next((l.split(":", 1)[1].strip() for l in subprocess.run(
      ["lscpu"], capture_output=True, text=True).stdout.splitlines() if l.startswith("Model name")),
                        platform.processor()),
            "load_before": os.getloadavg(), "date": time.strftime("%Y-%m-%d"), "sizes": {}}
  port = free_port()
  with tempfile.TemporaryDirectory() as tmp:
    server = start_server(port, Path(tmp) / "server.log")
    try:
      client = Client(f"http://127.0.0.1:{port}", verbose=False, download_files=False)
      report["rss_mib_started"] = rss_mib(server.pid)
      used = iter(styles)
      for size in sizes:
        warm = call(client, content, next(used), size)       # compiles or loads this bucket's programs
        pairs = [next(used) for _ in range(3)]
        new = [call(client, content, s, size) for s in pairs]
        change = [call(client, content, pairs[-1], size, a) for a in (0.3, 0.45, 0.15)]
        cli = cli_seconds(content, pairs[-1], size, Path(tmp) / "cli.png")
        row = {"warm_up_s": warm, "new_pair_s": new, "control_change_s": change, "cli_runs_s": cli}
        row["control_vs_new"] = statistics.median(change) / statistics.median(new)
        row["new_vs_cli_second"] = statistics.median(new) / cli[1]
        report["sizes"][size] = row
        print(size, json.dumps(row), flush=True)
      rss = []
      combos = [(c, s) for c in portraits for s in styles[:2]][:20]
      for c, s in combos:
        call(client, c, s, sizes[0])
        rss.append(rss_mib(server.pid))
      report["rss_mib_after_pairs"] = rss
      report["pairs_for_rss"] = [f"{c.name} x {s.name}" for c, s in combos]
      if args.screenshot:
        screenshot(f"http://127.0.0.1:{port}", args.screenshot, sizes[-1])
    finally:
      server.terminate()
      server.wait(30)
  report["load_after"] = os.getloadavg()
  print(json.dumps(report, indent=1))
  if args.out:
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=1) + "\n")


if __name__ == "__main__":
  main()
