"""Screenshots of the studio's clip and camera sections, as a user sees them: not a test.

    python -m benchmarks.studio_media_shots --clip docs/img/studio_clip.png --camera docs/img/studio_camera.png

Starts ``python -m infer.studio`` (shipped weights, the default dtype) on a free loopback port and drives
headless Chromium (Debian's ``chromium`` + ``chromedriver``). Its fake camera plays the bundled portrait
panning (640x480, written as the raw y4m Chromium reads); the camera section is shot once stylised
frames and their rate are showing. Then a ``--clip-seconds`` clip of the same pan is uploaded, and the
clip section is shot once the stylised clip is back in the page.
"""
from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

from benchmarks import studio_live
from benchmarks.collection_throughput import free_port
from benchmarks.studio_bench import start_server
from jaxstyle.io import assets
from jaxstyle.io import image_io
from jaxstyle.io import video

EXAMPLES = assets.root() / "examples"
PORTRAIT = EXAMPLES / "content" / "grace_hopper.jpg"
WAIT = 600   # seconds for the page to show a result: the first request of a size compiles


def write_y4m(path: Path, frames: list[np.ndarray], rate: int) -> Path:
  """RGB frames as YUV4MPEG2 4:2:0, full range (``C420jpeg``): what Chromium's fake camera plays."""
  h, w, _ = frames[0].shape
  with open(path, "wb") as f:
    f.write(f"YUV4MPEG2 W{w} H{h} F{rate}:1 Ip A1:1 C420jpeg\n".encode())
    for frame in frames:
      y, cb, cr = Image.fromarray(frame).convert("YCbCr").split()
      half = (w // 2, h // 2)
      f.write(b"FRAME\n" + y.tobytes() + cb.resize(half, Image.BILINEAR).tobytes()
              + cr.resize(half, Image.BILINEAR).tobytes())
  return path


def wait_for(condition, what: str, timeout: float = WAIT, interval: float = 0.5):
  """``condition()``'s first true value, polled every ``interval`` s (also the browser test's)."""
  deadline = time.monotonic() + timeout
  while time.monotonic() < deadline:
    value = condition()
    if value:
      return value
    time.sleep(interval)
  raise TimeoutError(f"timed out waiting for {what}")


def shoot(driver, elem_id: str, path: Path) -> None:
  """The window with the section holding ``elem_id`` at its top."""
  from selenium.webdriver.common.by import By  # pylint: disable=g-import-not-at-top
  driver.execute_script("arguments[0].closest('.row, .gr-group, .block').scrollIntoView(true); "
                        "window.scrollBy(0, -60)", driver.find_element(By.ID, elem_id))
  time.sleep(1.5)
  path.parent.mkdir(parents=True, exist_ok=True)
  driver.save_screenshot(str(path))
  print(f"wrote {path}", flush=True)


def main() -> None:
  p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  p.add_argument("--clip", type=Path, default=Path("docs/img/studio_clip.png"))
  p.add_argument("--camera", type=Path, default=Path("docs/img/studio_camera.png"))
  p.add_argument("--clip-seconds", type=float, default=2)
  args = p.parse_args()
  from selenium import webdriver  # pylint: disable=g-import-not-at-top
  from selenium.webdriver.chrome.service import Service  # pylint: disable=g-import-not-at-top
  from selenium.webdriver.common.by import By  # pylint: disable=g-import-not-at-top
  with tempfile.TemporaryDirectory() as tmp:
    tmp = Path(tmp)
    camera = write_y4m(tmp / "camera.y4m", studio_live.camera_frames(60), 30)
    (tmp / "clip").mkdir()
    clip = video.pan_clip(image_io.load_image(PORTRAIT), tmp / "clip" / "pan.mp4",
                          frames=int(24 * args.clip_seconds), hw=(720, 1280), rate=24)
    port = free_port()
    server = start_server(port, tmp / "server.log")
    options = webdriver.ChromeOptions()
    options.binary_location = "/usr/bin/chromium"
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--window-size=1400,900",
                "--use-fake-device-for-media-stream", "--use-fake-ui-for-media-stream",
                f"--use-file-for-fake-video-capture={camera}"):
      options.add_argument(arg)
    driver = webdriver.Chrome(options=options, service=Service("/usr/bin/chromedriver"))
    try:
      driver.get(f"http://127.0.0.1:{port}")
      wait_for(lambda: driver.find_elements(By.CSS_SELECTOR, "#style_examples button.thumbnail-item"),
               "the bundled paintings")[0].click()
      driver.find_element(By.CSS_SELECTOR, "#camera div[title='grant webcam access'] button").click()
      wait_for(lambda: driver.find_elements(By.CSS_SELECTOR, "#camera button[aria-label='capture photo']"),
               "the camera's record button")[0].click()
      wait_for(lambda: "frames/s" in driver.find_element(By.ID, "live_fps").text, "the camera's rate")
      time.sleep(10)    # a few more frames, so the rate shown is a steady one
      shoot(driver, "camera", args.camera)
      driver.get(f"http://127.0.0.1:{port}")    # ends the stream
      wait_for(lambda: driver.find_elements(By.CSS_SELECTOR, "#style_examples button.thumbnail-item"),
               "the bundled paintings")[0].click()
      wait_for(lambda: driver.find_elements(By.CSS_SELECTOR, "#clip input[type=file]"), "the clip input")[0] \
          .send_keys(str(clip))
      wait_for(lambda: [v for v in driver.find_elements(By.CSS_SELECTOR, "#clip_result video")
                        if v.get_attribute("src")], "the stylised clip")
      wait_for(lambda: "frames in" in driver.find_element(By.ID, "clip_status").text, "the clip's line")
      driver.execute_script("document.querySelector('#clip_result video').currentTime = 1.0")
      shoot(driver, "clip", args.clip)
    finally:
      driver.quit()
      server.terminate()
      server.wait(30)


if __name__ == "__main__":
  main()
