"""One clip through the program: frames in batches, the blend weight smoothed over time, audio copied.

    decode ─ resize ─ batches of frames ─ ``Runner.stylize`` (sharded over devices) ─ smooth blend weight
                                                                  over time ─ blend ─ encode
    audio packets ────────────────────────────────────────────────────────── copied as they are

- Frames are resized to ``--size`` on their longer side (sides rounded down to even: H.264's 4:2:0 needs
  it), the style to the frames' longer side (also with ``--size 0``), and stylised in batches of the
  device count (or ``--batch-size``), the last batch padded by repeating its last frame, so one clip
  compiles one program. Every frame has one shape, so no shape bucket is needed: frames run at their
  exact size.
- Files in and out, frame rate, audio and upright frames: ``jaxstyle.io.video``.
- Portrait clips: the program's per-frame blend weights are smoothed over time and the two transfers
  blended again on the host with the smoothed weight (``jaxstyle.program.temporal``); its flicker is
  logged before and after.
"""
from __future__ import annotations

import dataclasses
import time
from pathlib import Path
from typing import Callable, Iterator, Sequence

import numpy as np

from jaxstyle.app.request import (Request, Settings, UsageError, check_not_inputs, check_writable_paths,
                                  style_sides)
from jaxstyle.io import video
from jaxstyle.program import temporal
from jaxstyle.program.runner import Batch, Runner, check_finite, networks_for


@dataclasses.dataclass(frozen=True)
class ClipPlan:
  """What stylising one clip needs before any frame is decoded: its header and the files it writes."""
  content: Path
  info: video.Probe
  hw: tuple[int, int]            # the frames' size
  outputs: Sequence[Path]        # one per style


def output_path(output: str, content: Path, style_stem: str, n_styles: int) -> Path:
  """``output`` itself when it names one video file for one style, else ``output/CONTENT__STYLE.mp4``."""
  out = Path(output)
  if out.suffix.lower() in video.VIDEO_SUFFIXES and not out.is_dir():
    if n_styles > 1:
      raise UsageError(f"--output {out} names one video but there are {n_styles} styles: give a folder")
    path = out
  else:
    path = out / f"{content.stem}__{style_stem}.mp4"
  if path.suffix.lower() not in video.OUTPUT_CODECS:
    raise UsageError(f"--output {path}: videos are written as {', '.join(sorted(video.OUTPUT_CODECS))}")
  return path


def plan_clip(req: Request, content: Path, style_stems: Sequence[str], style_files: Sequence[Path]) -> ClipPlan:
  """Probes ``content`` and refuses, before any work, what would fail: image-only options, outputs
  that are inputs, a container that cannot take the clip's audio, unwritable folders."""
  if req.mask or req.save_mask or req.sheet:
    raise UsageError("--mask, --save-mask and --sheet are for images, not video")
  info = video.probe(content)
  hw = video.frame_hw(info.hw, req.settings.size, content)
  outputs = [output_path(req.output, content, stem, len(style_stems)) for stem in style_stems]
  check_not_inputs(outputs, [content, *style_files])
  for path in outputs:
    video.check_output(content, path)
  check_writable_paths(outputs)
  return ClipPlan(content, info, hw, outputs)


def load_runner(req: Request, log: Callable[[str], None]) -> Runner:
  """The weights a clip needs (no mask: SegNet in portrait mode), loaded once for all its styles."""
  return Runner.load(req.weights, networks_for(req.settings.mode, False), dtype=req.dtype, log=log)


@dataclasses.dataclass(frozen=True)
class Stylizer:
  """Runs the program on a list of frames with one style; returns its outputs per frame."""
  runner: Runner
  settings: Settings
  style: np.ndarray
  batch: int
  style_person: np.ndarray | None = None   # the style at the person's own scale, when it has one

  @property
  def portrait(self) -> bool:
    return self.settings.mode == "portrait"

  def __call__(self, frames: list[np.ndarray]) -> list[dict[str, np.ndarray]]:
    x = np.stack(frames + frames[-1:] * (self.batch - len(frames)))
    repeat = lambda style: None if style is None else np.broadcast_to(style, (self.batch, *style.shape))
    s = self.settings
    batch = Batch(x, repeat(self.style), style_person=repeat(self.style_person))
    outs = self.runner.stylize(batch, s.controls.as_array(), mode=s.mode, feather=s.feather,
                               keep_color=s.preserve_color, count=len(frames))
    for out in outs:
      check_finite(out, Path("video frames"))
    return outs


def clip_style_sides(settings: Settings, hw: tuple[int, int]) -> tuple[tuple[int, int | None], str | None]:
  """``request.style_sides`` of a clip of ``hw`` frames: the style at the frames' scale, also with
  ``--size 0``."""
  return style_sides(dataclasses.replace(settings, size=settings.size or max(hw)))


def stylize_clip(src: Path, dst: Path, stylizer: Stylizer, info: video.Probe, hw: tuple[int, int], *,
                 log: Callable[[str], None], progress: bool | None,
                 on_frame: Callable[[int], None] | None = None) -> dict[str, float]:
  """Writes ``dst``: every frame of ``src`` stylised, same rate, audio copied. Returns statistics.
  ``on_frame``: ``video.transcode``'s (progress; what it raises stops the clip, no file left)."""
  raw, smooth = temporal.Flicker(), temporal.Flicker()
  start, first_batch = time.perf_counter(), None

  def stylised(frames: Iterator[np.ndarray]) -> Iterator[np.ndarray]:
    def results():
      nonlocal first_batch
      for batch in video.batches(frames, stylizer.batch):
        yield from stylizer(batch)
        if first_batch is None:
          first_batch = (time.perf_counter(), len(batch))
    if stylizer.portrait:
      return temporal.blend_smoothed(results(), raw, smooth)
    return (r["image"] for r in results())

  frames_done = video.transcode(src, dst, info, hw, stylised, progress=progress, on_frame=on_frame)
  end = time.perf_counter()
  steady = (frames_done - first_batch[1]) / (end - first_batch[0]) if first_batch and \
      frames_done > first_batch[1] else float("nan")
  stats = {"frames": frames_done, "seconds": end - start, "frames_per_s": steady,
           "flicker_raw": raw.value, "flicker_smoothed": smooth.value}
  message = (f"{dst}: {frames_done} frames in {end - start:.1f} s; {steady:.2f} frames/s after the first "
             "batch (which compiles)")
  if raw.count:
    message += f"; blend-weight flicker (mean |Δ| between frames) {raw.value:.4f} → {smooth.value:.4f} smoothed"
  log(message)
  return stats
