"""A run's results: each pair's files written behind the computing, and its outcome recorded.

- ``Writer`` writes a batch's files on one background thread while the next batch computes; at most
  one batch waits, so a kill loses at most that one and the one computing. Every file is written
  atomically (``image_io.save_image_atomic``), never over an input.
- ``Records``: each pair's outcome (done, skipped, failed with its reason) in the run summary and on
  the progress bar, and the ``Report`` at the end with the totals of every process. A Ray actor's
  records hand each outcome to a sink instead, and the driver records them (``record``) as they arrive.
"""
from __future__ import annotations

import concurrent.futures
import functools
import threading
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
from tqdm import tqdm

from jaxstyle.app import collection
from jaxstyle.app.collection import DONE, FAILED, SKIPPED, Outcome, Report, Summary
from jaxstyle.app.plan import Job, Plan
from jaxstyle.io import image_io
from jaxstyle.io.image_io import ImageError
from jaxstyle.io.sheet import comparison_sheet, sheet_panels


class Writer:
  """Writes batches on one background thread while the next batch computes (or in the caller's thread
  when not ``background``). At most one batch waits to be written, so a kill loses at most that one and
  the one computing; an error in a write is raised by the next ``submit`` or on leaving the ``with``,
  which always waits for the write in flight."""

  def __init__(self, background: bool):
    self._pool = concurrent.futures.ThreadPoolExecutor(1) if background else None
    self._pending: concurrent.futures.Future | None = None

  def submit(self, fn: Callable, *args) -> None:
    self.wait()
    if self._pool is None:
      fn(*args)
    else:
      self._pending = self._pool.submit(fn, *args)

  def wait(self) -> None:
    if self._pending is not None:
      pending, self._pending = self._pending, None
      pending.result()

  def __enter__(self) -> Writer:
    return self

  def __exit__(self, exc_type, *exc) -> None:
    try:
      if exc_type is None:
        self.wait()
      elif self._pending is not None:   # already failing: let the write finish, keep the first error
        concurrent.futures.wait([self._pending])
    finally:
      if self._pool is not None:
        self._pool.shutdown()


def write_outputs(plan: Plan, job: Job, out: dict[str, np.ndarray], content: np.ndarray) -> list[Path]:
  """Saves one pair's image (and mask and sheet when asked); returns the paths."""
  controls, style = plan.request.settings.controls, plan.styles[job.style]
  save = functools.partial(image_io.save_image_atomic, inputs=plan.inputs)
  written = [save(job.image, out["image"])]
  if job.mask:
    written.append(save(job.mask, out["mask"]))
  if job.sheet:
    written.append(save(job.sheet, comparison_sheet(sheet_panels(content, style, out, controls))))
  return written


# Where an actor hands each outcome (job, status, seconds, reason) to send it back to the driver.
Sink = Callable[[Job, str, float, "str | None"], None]


class Records:
  """Each pair's outcome, into the run summary (``plan.summary``; ``collection.Summary``), onto the
  progress ``bar`` (None: none) and to ``sink`` when given (a Ray actor's way back to the driver).
  Thread-safe: the writing thread records finished pairs while the main thread records failed and
  skipped ones. A context manager: leaving it closes the summary."""

  def __init__(self, plan: Plan, bar: tqdm | None, log: Callable[[str], None], sink: Sink | None = None):
    self.plan, self.bar, self.log, self.sink = plan, bar, log, sink
    self.summary = Summary(plan.summary)
    self._lock = threading.Lock()

  def __enter__(self) -> Records:
    return self

  def __exit__(self, *exc) -> None:
    self.summary.close()

  def _add(self, job: Job, status: str, seconds: float, reason: str | None = None) -> None:
    self.summary.add(Outcome(*self.plan.names(job), str(job.image), status, seconds, reason))
    if self.sink is not None:
      self.sink(job, status, seconds, reason)
    if status != SKIPPED and self.bar is not None:   # the bar counts the pairs to compute
      with self._lock:
        self.bar.update(1)

  def skipped(self, jobs: Sequence[Job]) -> None:
    """Pairs written by an earlier run."""
    for job in jobs:
      self._add(job, SKIPPED, 0.0)

  def done(self, job: Job, seconds: float) -> None:
    self._add(job, DONE, seconds)

  def failed(self, jobs: Sequence[Job], error: ImageError, seconds: float) -> None:
    """A content that cannot be read fails its pairs (a run of one pair refuses it instead)."""
    if self.plan.strict:
      raise error
    self.log(f"failed: {error}")
    for job in jobs:
      self._add(job, FAILED, seconds / len(jobs), str(error))

  def record(self, job: Job, status: str, seconds: float, reason: str | None = None) -> None:
    """An outcome decided in another process (a Ray actor's ``sink``), recorded as if decided here."""
    if status == FAILED:
      self.log(f"failed: {reason}")
    self._add(job, status, seconds, reason)

  def report(self, written: list[Path], seconds: float, process: int, processes: int) -> Report:
    """What the run did; the processes meet here to add up their counts (``collection.totals``)."""
    counts = self.summary.counts
    return Report(written, counts, collection.totals(counts), seconds, self.plan.summary,
                  self.summary.first_failure, process, processes)
