"""Video in, video out: ``--content clip.mp4 --output out.mp4``, one output per style.

``stylize`` plans the clip (``clip.plan_clip``: its header, the outputs, every refusal before any
work), loads the weights once and stylises the clip with each style in turn (``clip.stylize_clip``),
the style read at the frames' scale. A video is stylised by one process.
"""
from __future__ import annotations

import time
from pathlib import Path
from typing import Callable

import jax

from jaxstyle.app import clip as clip_lib
from jaxstyle.app import collection
from jaxstyle.app import sources
from jaxstyle.app.request import Request, UsageError


def is_video_request(req: Request) -> bool:
  """Whether ``req``'s content is a video; refuses (``UsageError``) a video among other contents."""
  if not any(sources.is_video(p) for p in req.content):
    return False
  if len(req.content) != 1 or Path(req.content[0]).is_dir():
    raise UsageError("give one video as --content (a video is stylised on its own)")
  if jax.process_count() > 1:
    raise UsageError("a video is stylised by one process: start it without --num_processes")
  return True


def stylize(req: Request, *, log: Callable[[str], None], progress: bool | None,
            start: float) -> collection.Report:
  """Stylises the one video of ``req`` with every style; returns the run's ``Report`` (a clip counts
  as one done item per style)."""
  content = Path(req.content[0])
  styles = sources.expand_inputs(req.style, "--style", req.tfds_data_dir)
  plan = clip_lib.plan_clip(req, content, [s.stem for s in styles], [s for s in styles if isinstance(s, Path)])
  runner = clip_lib.load_runner(req, log)
  batch = runner.batch_size(req.batch_size)
  hw, info, mode = plan.hw, plan.info, req.settings.mode
  # The style at the frames' scale: it is encoded again with every batch.
  (background, person), note = clip_lib.clip_style_sides(req.settings, hw)
  if note:
    log(note)
  for style_input, path in zip(styles, plan.outputs):
    style = sources.read(style_input, background)
    style_person = None if person is None else sources.read(style_input, person)
    log(f"compiling the {mode} program for {hw[1]}x{hw[0]} frames (style {style.shape[1]}x"
        f"{style.shape[0]}, batch {batch}; first call, can take a minute unless cached); "
        f"{info.frames or 'unknown number of'} frames at {float(info.rate):.3g} fps")
    stylizer = clip_lib.Stylizer(runner, req.settings, style, batch, style_person)
    clip_lib.stylize_clip(content, path, stylizer, info, hw, log=log, progress=progress)
  counts = {collection.DONE: len(plan.outputs), collection.SKIPPED: 0, collection.FAILED: 0}
  return collection.Report(list(plan.outputs), counts, counts, time.perf_counter() - start)
