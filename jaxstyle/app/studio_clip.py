"""The studio's clips: an uploaded video stylised with the page's settings by the CLI's own clip code.

    clips = Clips(studio)
    out = clips.stylize("tab-1", Upload("me.mp4"), Upload("starry.jpg"), Settings(size=384),
                        on_progress=lambda p: print(p.done, p.total, p.frames_per_s))

- The refusals are the CLI's: ``clip.plan_clip`` probes the clip (not a readable video, no video
  stream, no frame rate, frames too large or too small) before any frame is decoded, and a picture
  upload that is not a video suffix is refused as the CLI tells a video apart (``video.is_video``). The
  studio adds a cap on the clip's length (``max_seconds``), counted also while decoding, for
  containers whose header does not say.
- The frames go through ``clip.Stylizer`` and ``clip.stylize_clip`` as the CLI's do: frames in batches
  of the device count, the blend weight smoothed over time, audio copied. The output is an MP4 (H.264,
  what a browser plays) unless its audio fits MP4 only re-encoded: then Matroska, which takes it as it is.
- One clip computes at a time (a lock; the page also queues them on their own). ``cancel`` stops a
  tab's clip at its next frame; a cancelled or failed clip leaves no file (``video.transcode`` writes
  through a temporary file, and the clip's folder goes with it).
"""
from __future__ import annotations

import dataclasses
import shutil
import tempfile
import threading
import time
from pathlib import Path
from typing import Callable

from jaxstyle.app import clip as clip_lib
from jaxstyle.app import studio as studio_lib
from jaxstyle.app.request import Request, Settings, UsageError
from jaxstyle.io import video

MAX_CLIP_SECONDS = 60    # at 384 px a 2-core CPU stylises ~2 frames/s: a minute of 30 fps is ~15 minutes
VIDEO_SUFFIXES = video.VIDEO_SUFFIXES


class Cancelled(UsageError):
  """A clip stopped by ``Clips.cancel`` (nothing written)."""


@dataclasses.dataclass(frozen=True)
class Progress:
  done: int
  total: int               # 0 when the container does not say
  seconds: float

  @property
  def frames_per_s(self) -> float:
    return self.done / self.seconds if self.seconds > 0 else 0.0

  @property
  def eta_s(self) -> float | None:
    fps = self.frames_per_s
    return (self.total - self.done) / fps if self.total and fps else None

  def line(self) -> str:
    eta = "" if self.eta_s is None else f", about {self.eta_s:.0f} s left"
    total = f"/{self.total}" if self.total else ""
    return f"{self.done}{total} frames, {self.frames_per_s:.2f} frames/s{eta}"


@dataclasses.dataclass(frozen=True)
class ClipResult:
  path: Path
  frames: int
  seconds: float
  frames_per_s: float      # after the first batch (which may compile)
  flicker: tuple[float, float] | None   # blend-weight flicker, raw → smoothed (portrait mode)


class Clips:
  """Clips stylised by a ``Studio``'s runner, one at a time (module docstring)."""

  def __init__(self, studio: studio_lib.Studio, *, max_seconds: float = MAX_CLIP_SECONDS,
               log: Callable[[str], None] = print):
    self.studio, self.max_seconds, self.log = studio, max_seconds, log
    self._one = threading.Lock()
    self._cancelled: set[str] = set()
    self._running: set[str] = set()

  def cancel(self, tab: str) -> None:
    """Stops ``tab``'s running clip at its next frame. A queued one is Gradio's to cancel (the page's
    button cancels its event); a tab without a running clip leaves nothing behind here."""
    if tab in self._running:
      self._cancelled.add(tab)

  def stylize(self, tab: str, clip: studio_lib.Upload, style: studio_lib.Upload, settings: Settings, *,
              on_progress: Callable[[Progress], None] | None = None) -> ClipResult:
    """``clip`` stylised with ``style`` at ``settings``: a new file under the studio's results folder.
    Raises the CLI's one-line refusals (``VideoError``, ``ImageError``, ``UsageError``), ``Cancelled``."""
    studio_lib.check_settings(settings, self.studio.max_size)
    src = Path(clip.path)
    if not video.is_video(src):
      raise UsageError(f"{clip.label()}: not a video file (one of {', '.join(sorted(VIDEO_SUFFIXES))})")
    with self._one:
      self._cancelled.discard(tab)    # a cancel that came as the last clip of the tab ended
      self._running.add(tab)
      folder = self._results_folder()
      try:
        return self._run(tab, src, clip.label(), style, settings, folder, on_progress)
      except BaseException:
        shutil.rmtree(folder, ignore_errors=True)
        raise
      finally:
        self._running.discard(tab)
        self._cancelled.discard(tab)

  def _results_folder(self) -> Path:
    if self.studio.results_dir is None:
      self.studio.results_dir = Path(tempfile.mkdtemp(prefix="jaxstyle-studio-"))
    self.studio.results_dir.mkdir(parents=True, exist_ok=True)
    return Path(tempfile.mkdtemp(dir=self.studio.results_dir))

  def _run(self, tab: str, src: Path, label: str, style: studio_lib.Upload, settings: Settings, folder: Path,
           on_progress: Callable[[Progress], None] | None) -> ClipResult:
    dst = folder / f"{Path(label).stem}__{Path(style.label()).stem}.mp4"
    try:
      video.check_output(src, dst)
    except video.VideoError:     # audio MP4 cannot take as it is (an unreadable clip: plan_clip says so)
      dst = dst.with_suffix(".mkv")
    req = Request(content=[str(src)], style=[style.label()], output=str(dst), settings=settings)
    plan = clip_lib.plan_clip(req, src, [Path(style.label()).stem], [])
    info, hw = plan.info, plan.hw
    max_frames = int(self.max_seconds * info.rate)
    if info.frames > max_frames:
      raise UsageError(f"{label}: {float(info.frames / info.rate):.1f} s is longer than the "
                       f"{self.max_seconds:g} s a clip may be here")
    (background, person), _ = clip_lib.clip_style_sides(settings, hw)
    style_image = self.studio.style_image(tab, style, background)
    style_person = None if person is None else self.studio.style_image(tab, style, person)
    runner = self.studio.runner
    stylizer = clip_lib.Stylizer(runner, settings, style_image, runner.batch_size(), style_person)
    start = time.perf_counter()

    def on_frame(done: int) -> None:
      if tab in self._cancelled:
        raise Cancelled(f"{label}: cancelled")
      if done > max_frames:
        raise UsageError(f"{label}: longer than the {self.max_seconds:g} s a clip may be here")
      if on_progress is not None:
        on_progress(Progress(done, info.frames, time.perf_counter() - start))

    stats = clip_lib.stylize_clip(src, dst, stylizer, info, hw, log=self.log, progress=False, on_frame=on_frame)
    flicker = (stats["flicker_raw"], stats["flicker_smoothed"]) if stylizer.portrait else None
    return ClipResult(dst, int(stats["frames"]), stats["seconds"], stats["frames_per_s"], flicker)
