"""Video in, video out: ``--content clip.mp4 --output out.mp4`` through the same portrait program.

    decode ─ resize ─ batches of frames ─ program (sharded over devices) ─ smooth blend weight over time
                                                                          ─ blend ─ encode
    audio packets ──────────────────────────────────────────────────────────── copied as they are

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

import jax
import numpy as np

from jaxstyle.app import sources
from jaxstyle.app.request import (Request, UsageError, check_finite, check_writable_paths, load_params,
                                  pad_batch, per_call, stylize_batch)
from jaxstyle.io import image_io
from jaxstyle.io import video
from jaxstyle.nets import model as model_lib
from jaxstyle.program import portrait
from jaxstyle.program import temporal


@dataclasses.dataclass(frozen=True)
class Stylizer:
  """Runs the program on a list of frames; returns its outputs per frame."""
  mode: str
  program: Callable
  mesh: jax.sharding.Mesh
  params: model_lib.Params
  style: np.ndarray
  controls: np.ndarray
  batch: int

  @property
  def portrait(self) -> bool:
    return self.mode == "portrait"

  def __call__(self, frames: list[np.ndarray]) -> list[dict[str, np.ndarray]]:
    x = pad_batch(np.stack(frames), self.batch)
    styles = np.broadcast_to(self.style, (self.batch, *self.style.shape))
    out = stylize_batch(self.program, self.mesh, self.params, x, styles, self.controls)
    out = {k: np.asarray(v)[:len(frames)] for k, v in out.items()}
    check_finite(out, Path("video frames"))
    return [{k: v[i] for k, v in out.items()} for i in range(len(frames))]


def stylize_clip(src: Path, dst: Path, stylizer: Stylizer, info: video.Probe, hw: tuple[int, int], *,
                 log: Callable[[str], None], progress: bool | None) -> dict[str, float]:
  """Writes ``dst``: every frame of ``src`` stylised, same rate, audio copied. Returns statistics."""
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

  frames_done = video.transcode(src, dst, info, hw, stylised, progress=progress)
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


def output_path(output: str, content: Path, style: sources.Input, n_styles: int) -> Path:
  """``output`` itself when it names one video file for one style, else ``output/CONTENT__STYLE.mp4``."""
  out = Path(output)
  if out.suffix.lower() in video.VIDEO_SUFFIXES and not out.is_dir():
    if n_styles > 1:
      raise UsageError(f"--output {out} names one video but there are {n_styles} styles: give a folder")
    path = out
  else:
    path = out / f"{content.stem}__{style.stem}.mp4"
  if path.suffix.lower() not in video.OUTPUT_CODECS:
    raise UsageError(f"--output {path}: videos are written as {', '.join(sorted(video.OUTPUT_CODECS))}")
  return path


def run_video(req: Request, content: Path, styles: Sequence[sources.Input], *, log: Callable[[str], None],
              progress: bool | None) -> list[Path]:
  """Stylises one video ``content`` with every style of ``styles`` (``stylize_files.run`` calls this)."""
  if req.mask or req.save_mask or req.sheet:
    raise UsageError("--mask, --save-mask and --sheet are for images, not video")
  info = video.probe(content)
  hw = video.frame_hw(info.hw, req.size, content)
  outputs = [output_path(req.output, content, s, len(styles)) for s in styles]
  for path in outputs:
    if image_io.same_file(path, content) or any(image_io.same_file(path, s) for s in styles
                                                   if isinstance(s, Path)):
      raise UsageError(f"{path}: refusing to overwrite an input (choose another --output)")
    video.check_output(content, path)
  check_writable_paths(outputs)
  params, cfg, mesh = load_params(req, False)
  program = portrait.make_program(cfg, mesh, mode=req.mode, feather=req.feather,
                                  keep_color=req.preserve_color)
  batch = per_call(req, mesh)
  for style_path, path in zip(styles, outputs):
    # The style at the frames' scale (also with --size 0): it is encoded again with every batch.
    style = sources.read(style_path, req.size or max(hw))
    log(f"compiling the {req.mode} program for {hw[1]}x{hw[0]} frames (style {style.shape[1]}x"
        f"{style.shape[0]}, batch {batch}; first call, can take a minute unless cached); "
        f"{info.frames or 'unknown number of'} frames at {float(info.rate):.3g} fps")
    stylizer = Stylizer(req.mode, program, mesh, params, style, req.controls.as_array(), batch)
    stylize_clip(content, path, stylizer, info, hw, log=log, progress=progress)
  return outputs
