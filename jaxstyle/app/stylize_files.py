"""Stylises files: the library behind ``python -m infer.portrait`` and ``jaxstyle portrait``.

    run(Request(content=["photos/"], style=["styles/"], output="out", sheet=True))

One video as ``content`` goes to ``stylize_video`` (frames in batches, audio copied). Everything else
is planned, then run: ``plan.make_plan`` decides what this process does before any pixel is computed
(the pairs, outputs and refusals, this process's share of a ``jax.distributed`` job, what is written
already, the styles), and ``pipeline.run`` computes it (weights loaded once, one program per shape
bucket, files written behind the computing, every pair's outcome in the run summary).

``engine`` (``pipeline.Engine``: ``ray_engine.RayEngine``) computes the plan's pairs on a Ray cluster
instead of this process's devices; it starts before the plan, which starts JAX's runtime.

Errors meant for the user are ``request.REFUSALS`` (an input or output file, the weights, options that
do not fit together, memory) and ``PairsFailed``; each has a one-line message.
"""
from __future__ import annotations

import contextlib
import sys
import time
from pathlib import Path
from typing import Callable

import jax
from tqdm import tqdm

from jaxstyle.app import pipeline
from jaxstyle.app import plan as plan_lib
from jaxstyle.app import stylize_video
from jaxstyle.app.request import Request, UsageError, check_request


def _log(message: str) -> None:
  tqdm.write(message, file=sys.stderr)


def stylize(req: Request, *, log: Callable[[str], None] = _log, progress: bool | None = None,
            engine: pipeline.Engine | None = None):
  """Stylises this process's share of the (content, style) pairs of ``req`` (all of them on
  ``engine``); returns the ``collection.Report``. ``progress``: a tqdm bar with images/s and ETA on
  stderr (None: only on a terminal)."""
  start = time.perf_counter()
  check_request(req)
  if stylize_video.is_video_request(req):
    if engine is not None:
      raise UsageError("a video runs on this machine's devices, frame batches in order: drop --engine ray")
    return stylize_video.stylize(req, log=log, progress=progress, start=start)
  # Ray starts its processes before JAX starts its threads (the plan's first collective does).
  with engine if engine is not None else contextlib.nullcontext():
    process, processes = jax.process_index(), jax.process_count()
    plan = plan_lib.make_plan(req, process, processes, log)
    return pipeline.run(plan, log=log, progress=progress, start=start, process=process,
                        processes=processes, engine=engine)


def run(req: Request, *, log: Callable[[str], None] = _log, progress: bool | None = None) -> list[Path]:
  """Stylises every (content, style) pair of ``req`` (this process's share); returns the files written,
  in order. Raises ``PairsFailed`` at the end when pairs failed (``stylize`` reports them instead).

  ``progress``: a tqdm bar with ETA on stderr (None: only on a terminal).
  """
  report = stylize(req, log=log, progress=progress)
  report.raise_for_failures()
  return report.written
