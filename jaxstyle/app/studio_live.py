"""The studio's live camera: frames stylised one at a time with the style's features computed once.

    live = Live(studio)
    image, fps = live.frame("tab-1", camera_frame_uint8, Upload("starry.jpg"), Settings(size=256))

- Each frame is resized to ``settings.size`` on its longer side (sides even, as a clip's) and run by the
  whole program (``Runner.stylize``) at its exact size, so a camera compiles one program per size.
- The style is read and encoded once per (style, side): its VGG features (``Runner.style_features``)
  stand in for the picture in the ``Batch``, so a frame runs the content's passes only.
- Portrait frames are blended with the blend weight smoothed over the last frames
  (``temporal.LiveBlend``: the clip's Gaussian, its past half, so no frame waits for the next).
- Frames that arrive while one computes are not queued here: the page's stream keeps only the newest
  frame (Gradio's streaming input holds one pending frame per stream and replaces it), so a slow
  machine shows fewer frames, never older ones.
- ``fps`` is frames finished per second over the last ``FPS_WINDOW`` frames of the tab.
"""
from __future__ import annotations

import collections
import dataclasses
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from jaxstyle.app.request import Settings, UsageError, style_sides
from jaxstyle.io import image_io
from jaxstyle.program import temporal
from jaxstyle.program.runner import Batch, check_finite

LIVE_SIZES = (64, 512)     # the camera's size slider: 384 px runs ~1 frame/s on 2 CPU cores (README)
DEFAULT_LIVE_SIZE = 256
FPS_WINDOW = 10


@dataclasses.dataclass
class _Tab:
  style_key: tuple | None = None
  style: dict | None = None
  style_person: dict | None = None
  blend: temporal.LiveBlend = dataclasses.field(default_factory=temporal.LiveBlend)
  done: collections.deque = dataclasses.field(default_factory=lambda: collections.deque(maxlen=FPS_WINDOW))


def frame_hw(hw: tuple[int, int], size: int) -> tuple[int, int]:
  h, w = image_io.longest_side_hw(hw, size)
  return h - h % 2, w - w % 2


class Live:
  """Camera frames of many tabs through a ``Studio``'s runner (module docstring)."""

  def __init__(self, studio: Any):
    self.studio = studio      # ``studio.Studio``: its runner, and its uploads read once
    self._tabs: dict[str, _Tab] = {}
    self._lock = threading.Lock()

  def _features(self, tab: str, state: _Tab, style, settings: Settings, hw: tuple[int, int]) -> None:
    """The style's features at the sides these frames ask for, encoded when the style or side changed."""
    (background, person), _ = style_sides(dataclasses.replace(settings, size=max(hw)))
    key = (str(style.path), background, person)
    if state.style_key == key:
      return
    runner = self.studio.runner

    def encode(side):
      image = self.studio.style_image(tab, style, side)
      return runner.style_features(np.broadcast_to(image, (runner.batch_size(), *image.shape)))

    state.style = encode(background)
    state.style_person = None if person is None else encode(person)
    state.style_key = key

  def frame(self, tab: str, frame: np.ndarray, style, settings: Settings) -> tuple[np.ndarray, float]:
    """``frame`` (``[H, W, 3]`` uint8 RGB) stylised at ``settings`` (its ``size``: the frame's longer
    side), and the tab's frames per second so far."""
    if frame.ndim != 3 or frame.shape[2] != 3 or frame.dtype != np.uint8:
      raise UsageError(f"a camera frame is [H, W, 3] uint8, not {frame.shape} {frame.dtype}")
    if not image_io.MIN_SIDE <= settings.size <= LIVE_SIZES[1]:
      raise UsageError(f"the camera's size must be {image_io.MIN_SIDE}..{LIVE_SIZES[1]}, not {settings.size}")
    hw = frame_hw(frame.shape[:2], settings.size)
    if min(hw) < image_io.MIN_SIDE:
      raise UsageError(f"{frame.shape[1]}x{frame.shape[0]} frames at {settings.size} px are too small")
    with self._lock:
      state = self._tabs.setdefault(tab, _Tab())
    self._features(tab, state, style, settings, hw)
    x = np.asarray(Image.fromarray(frame).resize(hw[::-1], Image.Resampling.BILINEAR), np.float32) / 255
    runner = self.studio.runner
    n = runner.batch_size()
    s = settings
    batch = Batch(np.broadcast_to(x, (n, *x.shape)), state.style, style_person=state.style_person)
    [out] = runner.stylize(batch, s.controls.as_array(), mode=s.mode, feather=s.feather,
                           keep_color=s.preserve_color, count=1)
    check_finite(out, Path("camera frame"))
    image = state.blend(out) if s.mode == "portrait" else out["image"]
    state.done.append(time.perf_counter())
    seconds = state.done[-1] - state.done[0]
    fps = (len(state.done) - 1) / seconds if seconds > 0 else 0.0
    return np.clip(image, 0, 1), fps

  def close_tab(self, tab: str) -> None:
    with self._lock:
      self._tabs.pop(tab, None)
