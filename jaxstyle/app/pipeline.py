"""Runs a ``Plan``: contents decoded ahead, one program call per bucket batch, files written behind it.

    decode ahead (``reading``) ─ bucket batches ─ ``Runner.stylize`` ─ finite? ─ write behind (``writing``)

``run`` loads the weights (``Runner.load``: only the networks the mode needs), then streams the plan's
pairs through one jitted program per shape bucket over this process's devices. Each batch's files are
written on a background thread while the next batch computes; every pair's outcome goes to the run
summary and the progress bar, and a content that cannot be read fails its pairs while the run goes on
(a run of one pair refuses it at once).
"""
from __future__ import annotations

import time
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
from tqdm import tqdm

from jaxstyle.app import reading
from jaxstyle.app import writing
from jaxstyle.app.plan import Plan
from jaxstyle.program import runner as runner_lib
from jaxstyle.program.runner import Runner


class Pipeline:
  """One process's pairs through one ``Runner``; outcomes into ``records``, files through ``writer``."""

  def __init__(self, plan: Plan, runner: Runner, records: writing.Records, writer: writing.Writer,
               log: Callable[[str], None]):
    self.plan, self.runner, self.records, self.writer, self.log = plan, runner, records, writer, log
    self.mask = reading.user_mask(plan)
    self.written: list[Path] = []
    self.compiled: set[reading.Bucket] = set()

  def write(self, items: Sequence[reading.Item], outs: Sequence[dict[str, np.ndarray]],
            seconds: float) -> None:
    """Saves a batch's files (on the writing thread) and records each pair as done."""
    for item, out in zip(items, outs):
      start = time.perf_counter()
      self.written += writing.write_outputs(self.plan, item.job, out, item.content)
      self.records.done(item.job, item.seconds + seconds / len(items) + time.perf_counter() - start)

  def call(self, batcher: reading.Batcher, key: reading.Bucket, items: list[reading.Item]) -> None:
    """One program call on a batch of one bucket; its files are handed to the writer."""
    settings = self.plan.request.settings
    (h, w), ((hs, ws), *person) = key
    size = batcher.batch(key)
    if key not in self.compiled:
      self.compiled.add(key)
      n = batcher.planned.get(key, len(items))
      self.log(f"compiling the {settings.mode} program for contents padded to {w}x{h}, styles to "
               f"{ws}x{hs}{''.join(f' and {pw}x{ph} for the person' for ph, pw in person)} (batch {size}, "
               f"{n} pair{'s' * (n > 1)}; first call, can take a minute unless cached)")
    start = time.perf_counter()
    batch = reading.program_batch(items, self.plan, key, size, self.mask)
    outs = self.runner.stylize(batch, settings.controls.as_array(), mode=settings.mode,
                               feather=settings.feather, keep_color=settings.preserve_color,
                               count=len(items))
    for item, out in zip(items, outs):
      runner_lib.check_finite(out, item.job.image)
    self.writer.submit(self.write, items, outs, time.perf_counter() - start)

  def run(self) -> list[Path]:
    """Stylises the plan's pairs to do; returns the files written, in the order written."""
    req, plan = self.plan.request, self.plan
    max_side = req.settings.size or None
    units = reading.plan_units(plan, max_side, req.io_threads, self.records.failed)
    for unit in units if self.mask else ():   # a mask of another picture is refused before compiling
      self.mask(unit.hw)
    planned: dict[reading.Bucket, int] = {}
    for unit in units:
      planned[unit.bucket] = planned.get(unit.bucket, 0) + len(unit.jobs)
    batcher = reading.Batcher(planned, self.runner.batch_size(req.batch_size), self.runner.mesh.size)
    for d in reading.decode_ahead(units, max_side, req.io_threads):
      if d.error is not None:
        self.records.failed(d.unit.jobs, d.error, d.seconds)
      else:
        for job in d.unit.jobs:
          item = reading.Item(job, d.pixels, d.seconds / len(d.unit.jobs))
          for ready in batcher.add(reading.decoded_bucket(d), item):
            self.call(batcher, *ready)
      for ready in batcher.arrived(d.unit.bucket, len(d.unit.jobs)):
        self.call(batcher, *ready)
    for ready in batcher.rest():
      self.call(batcher, *ready)
    return self.written


def run(plan: Plan, *, log: Callable[[str], None], progress: bool | None, start: float,
        process: int = 0, processes: int = 1) -> writing.Report:
  """Runs ``plan`` (its skipped pairs recorded first) and returns the run's ``Report``; ``start``: when
  the run began (``time.perf_counter``), for its seconds."""
  req = plan.request
  bar = tqdm(total=len(plan.todo), unit="image", position=process if processes > 1 else None,
             desc=f"process {process}/{processes}" if processes > 1 else None,
             disable=None if progress is None else not progress)
  with writing.Records(plan, bar, log) as records, bar:
    records.skipped(plan.skipped)
    written: list[Path] = []
    if plan.todo:
      runner = Runner.load(req.weights, runner_lib.networks_for(req.settings.mode, bool(req.mask)),
                           dtype=req.dtype, log=log)
      if processes > 1:
        log(f"process {process} of {processes}: {runner.mesh.size} device(s) of its own")
      with writing.Writer(background=req.io_threads > 0) as writer:
        written = Pipeline(plan, runner, records, writer, log).run()
    seconds = time.perf_counter() - start   # this process's work, not the wait for the others below
  return records.report(written, seconds, process, processes)
