"""``python -m infer.studio`` in a subprocess on a free loopback port, driven by a real headless Chromium
(Debian's ``chromium`` + ``chromium-driver``, installed by ``make setup-test``) and by ``gradio_client``.

Tiny random weights at 64 px: the server compiles three small programs on the first request (and the
whole program for the clip and camera tests). Chromium's fake camera plays a y4m clip the fixture writes.
"""
import io
import json
import os
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from benchmarks import studio_media_shots as media_shots
from jaxstyle.io import assets
from jaxstyle.io import image_io
from test_multiprocess import free_port

EXAMPLES = assets.root() / "examples"
ROOT = Path(__file__).resolve().parent.parent
WAIT = 240   # seconds for a page change: the first request compiles, and CI shares two cores


@pytest.fixture(scope="module")
def server(tiny_weights, tmp_path_factory):
  """The studio as a user starts it, with HOME, TMPDIR and its working folder in fresh folders."""
  root = tmp_path_factory.mktemp("studio")
  for sub in ("home", "tmp", "cwd"):
    (root / sub).mkdir()
  port = free_port()
  env = {**os.environ, "HOME": str(root / "home"), "TMPDIR": str(root / "tmp"), "PYTHONPATH": str(ROOT),
         "JAXSTYLE_COMPILE_CACHE": "0", "JAX_DISABLE_MOST_OPTIMIZATIONS": "true"}
  log = open(root / "server.log", "w")
  proc = subprocess.Popen([sys.executable, "-m", "infer.studio", "--port", str(port), "--weights",
                           str(tiny_weights), "--size", "64"], cwd=root / "cwd", env=env, stdout=log,
                          stderr=subprocess.STDOUT)
  url = f"http://127.0.0.1:{port}"
  deadline = time.monotonic() + WAIT
  while True:
    try:
      urllib.request.urlopen(url, timeout=5).read()
      break
    except OSError:
      if proc.poll() is not None or time.monotonic() > deadline:
        proc.kill()
        pytest.fail(f"the studio did not start:\n{(root / 'server.log').read_text()[-3000:]}")
      time.sleep(0.5)
  yield url, root
  proc.terminate()
  proc.wait(30)
  log.close()
  assert not list((root / "tmp").iterdir())   # the server removed its temporary folder


def write_y4m(path, frames=10, wh=(160, 120)):
  """A raw YUV 4:2:0 clip (what Chromium's fake camera plays, in a loop): a bright bar sliding right."""
  w, h = wh
  with open(path, "wb") as f:
    f.write(f"YUV4MPEG2 W{w} H{h} F10:1 Ip A1:1 C420jpeg\n".encode())
    for i in range(frames):
      y = np.full((h, w), 60, np.uint8)
      y[20:80, 10 + 8 * i:60 + 8 * i] = 200
      f.write(b"FRAME\n" + y.tobytes() + np.full((h // 2, w // 2), 128, np.uint8).tobytes() * 2)
  return path


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
  from selenium import webdriver  # pylint: disable=g-import-not-at-top
  from selenium.webdriver.chrome.service import Service  # pylint: disable=g-import-not-at-top
  options = webdriver.ChromeOptions()
  options.binary_location = "/usr/bin/chromium"
  camera = write_y4m(tmp_path_factory.mktemp("camera") / "camera.y4m")
  for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--window-size=1400,1800",
              "--use-fake-device-for-media-stream", "--use-fake-ui-for-media-stream",
              f"--use-file-for-fake-video-capture={camera}"):
    options.add_argument(arg)
  options.set_capability("goog:loggingPrefs", {"performance": "ALL"})
  driver = webdriver.Chrome(options=options, service=Service("/usr/bin/chromedriver"))
  yield driver
  driver.quit()


def wait_for(condition, what: str):
  return media_shots.wait_for(condition, what, WAIT, 0.25)


def result_src(driver) -> str | None:
  from selenium.webdriver.common.by import By  # pylint: disable=g-import-not-at-top
  images = driver.find_elements(By.CSS_SELECTOR, "#result img")
  return images[0].get_attribute("src") if images else None


def read_image(url: str) -> np.ndarray:
  return np.asarray(Image.open(io.BytesIO(urllib.request.urlopen(url, timeout=30).read())).convert("RGB"),
                    np.float32) / 255


def test_a_browser_uploads_moves_a_slider_and_survives_a_corrupt_file(server, browser, tmp_path):
  from selenium.webdriver.common.by import By  # pylint: disable=g-import-not-at-top
  from selenium.webdriver.common.keys import Keys  # pylint: disable=g-import-not-at-top
  url, root = server
  browser.get(url)

  def upload(elem_id, path):
    """Drops ``path`` on a file input, clearing the file it holds first (a held file hides the input)."""
    for clear in browser.find_elements(By.CSS_SELECTOR, f"#{elem_id} button[aria-label=Clear]"):
      clear.click()
    wait_for(lambda: browser.find_elements(By.CSS_SELECTOR, f"#{elem_id} input[type=file]"),
             f"the file input of {elem_id}")[0].send_keys(str(path))

  mine = tmp_path / "me.png"              # not a bundled example: its upload must not be kept
  Image.open(EXAMPLES / "content" / "grace_hopper.jpg").save(mine)
  upload("content", mine)
  upload("style", EXAMPLES / "styles" / "great_wave.jpg")
  first_src = wait_for(lambda: result_src(browser), "the first result")
  first = read_image(first_src)
  want_hw = np.asarray(Image.open(mine)).shape[:2]
  assert max(first.shape[:2]) == 64 and abs(first.shape[1] / first.shape[0] - want_hw[1] / want_hw[0]) < 0.05
  assert first.std() > 0.02                                           # a picture, not a flat fill

  box = browser.find_element(By.CSS_SELECTOR, "#alpha_person input[type=number]")
  box.clear()
  box.send_keys("0", Keys.TAB)                                         # the slider's release
  moved_src = wait_for(lambda: result_src(browser) not in (None, first_src) and result_src(browser),
                       "the result after moving α (person)")
  moved = read_image(moved_src)
  assert moved.shape == first.shape and float(np.abs(moved - first).max()) > 0.02

  whole = EXAMPLES / "content" / "astronaut.jpg"
  (tmp_path / "broken.jpg").write_bytes(whole.read_bytes()[:3000])
  upload("content", tmp_path / "broken.jpg")
  wait_for(lambda: "truncated or corrupt" in browser.find_element(By.TAG_NAME, "body").text,
           "the error message of a truncated upload")
  assert "broken.jpg" in browser.find_element(By.TAG_NAME, "body").text

  # The next good request works: the bundled astronaut, picked in the gallery.
  browser.find_elements(By.CSS_SELECTOR, "#content_examples button.thumbnail-item")[0].click()
  good_src = wait_for(lambda: result_src(browser) not in (None, moved_src) and result_src(browser),
                      "the result after the error")
  good = read_image(good_src)
  astronaut_hw = np.asarray(Image.open(whole)).shape[:2]
  assert abs(good.shape[1] / good.shape[0] - astronaut_hw[1] / astronaut_hw[0]) < 0.05

  # A picked example is read but, unlike an upload, its copy stays: the gallery still shows it.
  for thumbnail in browser.find_elements(By.CSS_SELECTOR, "#content_examples img"):
    assert read_image(thumbnail.get_attribute("src")).size

  # Offline: every request the page made went to the server itself.
  hosts = set()
  for entry in browser.get_log("performance"):
    message = json.loads(entry["message"])["message"]
    requested = message.get("params", {}).get("request", {}).get("url", "")
    if "://" in requested and not requested.startswith(("data:", "blob:")):
      hosts.add(requested.split("/")[2])
  assert hosts == {url.split("/")[2]}, hosts
  # Uploads are read and deleted (the galleries' copies of bundled examples stay); nothing is written
  # outside the server's temporary folder.
  assert not list((root / "cwd").iterdir())
  assert not [p for p in (root / "home").rglob("*") if image_io.is_image(p)]
  [temp] = list((root / "tmp").glob("jaxstyle-studio-*"))
  assert not [p for p in temp.rglob("*") if p.name in ("me.png", "broken.jpg") and p.stat().st_size]
  assert list(temp.rglob("astronaut__great_wave.png"))                    # the download


def test_the_api_client_gets_the_same_function(server, tmp_path):
  from gradio_client import Client, handle_file  # pylint: disable=g-import-not-at-top
  url, _ = server
  client = Client(url, verbose=False, download_files=False)
  api = client.view_api(return_format="dict")["named_endpoints"]["/stylize"]
  names = [p["parameter_name"] for p in api["parameters"]]
  assert names[:5] == ["content", "style", "mask", "mode", "size"] and names[-4:] == [
      "feather", "preserve_color", "style_scale_background", "style_scale_person"]
  out = client.predict(handle_file(EXAMPLES / "content" / "astronaut.jpg"),
                       handle_file(EXAMPLES / "styles" / "starry_night.jpg"), None, "plain", 64,
                       1, 1, 1, 1, 0.2, 0.6, 0.01, False, 1, 1, api_name="/stylize")
  image, download, mask = out[:3]
  assert mask is None and image["url"].startswith(url)
  assert max(read_image(download["url"]).shape[:2]) == 64
  from gradio_client.exceptions import AppError  # pylint: disable=g-import-not-at-top
  with pytest.raises(AppError, match="greater than maximum"):   # Gradio checks the sliders' ranges
    client.predict(handle_file(EXAMPLES / "content" / "astronaut.jpg"),
                   handle_file(EXAMPLES / "styles" / "starry_night.jpg"), None, "portrait", 64,
                   1, 1, 1, 1, 0.2, 7, 0.01, False, 1, 1, api_name="/stylize")
  (tmp_path / "notes.png").write_text("not a picture")
  with pytest.raises(AppError, match="notes.png: not an image file"):       # and the studio the files
    client.predict(handle_file(tmp_path / "notes.png"), handle_file(EXAMPLES / "styles" / "starry_night.jpg"),
                   None, "portrait", 64, 1, 1, 1, 1, 0.2, 0.6, 0.01, False, 1, 1, api_name="/stylize")


def test_every_default_control_sits_on_the_sliders_grid():
  import dataclasses
  from jaxstyle.app import studio_ui
  from jaxstyle.program import portrait
  for value in dataclasses.astuple(portrait.Controls()):
    steps = value / studio_ui.CONTROL_STEP
    assert abs(steps - round(steps)) < 1e-6, value   # a browser would snap it to another value


def set_number(driver, elem_id, value):
  from selenium.webdriver.common.by import By  # pylint: disable=g-import-not-at-top
  from selenium.webdriver.common.keys import Keys  # pylint: disable=g-import-not-at-top
  box = driver.find_element(By.CSS_SELECTOR, f"#{elem_id} input[type=number]")
  box.clear()
  box.send_keys(str(value), Keys.TAB)


def pick_style(driver, index):
  from selenium.webdriver.common.by import By  # pylint: disable=g-import-not-at-top
  wait_for(lambda: driver.find_elements(By.CSS_SELECTOR, "#style_examples button.thumbnail-item"),
           "the bundled paintings")[index].click()
  wait_for(lambda: ".jpg" in driver.find_element(By.ID, "style").text, "the style picked")


def body_text(driver) -> str:
  from selenium.webdriver.common.by import By  # pylint: disable=g-import-not-at-top
  return driver.find_element(By.TAG_NAME, "body").text


def test_the_camera_streams_stylised_frames_and_shows_its_rate(server, browser):
  from selenium.webdriver.common.by import By  # pylint: disable=g-import-not-at-top
  url, _ = server
  browser.get(url)
  pick_style(browser, 0)
  set_number(browser, "live_size", 64)
  browser.find_element(By.CSS_SELECTOR, "#camera div[title='grant webcam access'] button").click()
  wait_for(lambda: browser.find_elements(By.CSS_SELECTOR, "#camera button[aria-label='capture photo']"),
           "the camera's record button")[0].click()
  live_src = lambda: next((i.get_attribute("src") for i in browser.find_elements(By.CSS_SELECTOR, "#live_result img")),
                          None)
  first = wait_for(live_src, "the first stylised camera frame")
  second = wait_for(lambda: live_src() not in (None, first) and live_src(), "a second stylised frame")
  images = [read_image(src) for src in (first, second)]
  # The fake camera's 160x120 frames at the camera size 64: stylised (coloured: the camera's frames are
  # grey), not the frames themselves.
  assert all(image.shape == (48, 64, 3) for image in images)
  assert all(float(np.abs(image - image.mean(axis=2, keepdims=True)).max()) > 0.05 for image in images)
  rate = wait_for(lambda: [t for t in [browser.find_element(By.ID, "live_fps").text] if "frames/s" in t
                           and float(t.split()[0]) > 0], "the frames per second")
  assert "64x48" in rate[0]
  browser.get("about:blank")      # ends the stream


def test_a_clip_uploaded_in_the_page_comes_back_whole_and_a_corrupt_one_gets_a_message(server, browser, tmp_path):
  from clips import read_clip, write_clip  # pylint: disable=g-import-not-at-top
  from selenium.webdriver.common.by import By  # pylint: disable=g-import-not-at-top
  url, root = server
  browser.get(url)
  pick_style(browser, 1)
  clip = write_clip(tmp_path / "walk.mp4", frames=10, audio_seconds=0.4)
  wait_for(lambda: browser.find_elements(By.CSS_SELECTOR, "#clip input[type=file]"), "the clip input")[0].send_keys(
      str(clip))
  video_src = lambda: next((v.get_attribute("src") for v in browser.find_elements(By.CSS_SELECTOR, "#clip_result video")
                            if v.get_attribute("src")), None)
  src = wait_for(video_src, "the stylised clip")
  assert "10 frames in" in browser.find_element(By.ID, "clip_status").text
  (tmp_path / "back.mp4").write_bytes(urllib.request.urlopen(src, timeout=30).read())
  frames, rate, audio = read_clip(tmp_path / "back.mp4")
  assert len(frames) == 10 and rate == 24 and frames[0].shape == (52, 64, 3) and len(audio) > 0

  broken = tmp_path / "broken.mp4"
  broken.write_bytes(clip.read_bytes()[:600])
  for clear in browser.find_elements(By.CSS_SELECTOR, "#clip button[aria-label=Clear]"):
    clear.click()
  wait_for(lambda: browser.find_elements(By.CSS_SELECTOR, "#clip input[type=file]"), "the clip input")[0].send_keys(
      str(broken))
  wait_for(lambda: "broken.mp4: not a readable video" in body_text(browser), "the corrupt clip's message")
  [temp] = list((root / "tmp").glob("jaxstyle-studio-*"))
  written = [p.name for p in (temp / "results").rglob("*") if p.is_file()]
  assert "walk__" in " ".join(written) and not [n for n in written if "broken" in n]


def test_the_api_stylises_a_clip_and_a_camera_frame(server, tmp_path):
  from clips import read_clip, write_clip  # pylint: disable=g-import-not-at-top
  from gradio_client import Client, handle_file  # pylint: disable=g-import-not-at-top
  url, _ = server
  client = Client(url, verbose=False)
  settings = ["portrait", 64, 1, 1, 1, 1, 0.2, 0.6, 0.01, False, 0.67, 0.67]
  style = handle_file(EXAMPLES / "styles" / "starry_night.jpg")
  clip = write_clip(tmp_path / "api.mp4", frames=6)
  played, download, line = client.predict(handle_file(clip), style, *settings, api_name="/stylize_clip")
  assert len(read_clip(download)[0]) == 6 and "6 frames in" in line
  frame = tmp_path / "frame.png"
  Image.fromarray(np.random.default_rng(0).integers(0, 256, (120, 160, 3), np.uint8)).save(frame)
  image, rate = client.predict(handle_file(frame), style, *settings, api_name="/live_frame")
  assert np.asarray(Image.open(image)).shape == (48, 64, 3) and "64x48" in rate
