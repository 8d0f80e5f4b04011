"""Runs a ``Plan``: contents decoded ahead, one program call per bucket batch, files written behind it.

    decode ahead (``reading``) ─ bucket batches ─ ``Runner.stylize`` ─ finite? ─ write behind (``writing``)

``run`` loads the weights (``load_runner``: only the networks the mode needs), then streams the plan's
pairs through one jitted program per shape bucket over this process's devices (``compute``). Each
batch's files are written on a background thread while the next batch computes; every pair's outcome
goes to the run summary and the progress bar, and a content that cannot be read fails its pairs while
the run goes on (a run of one pair refuses it at once).

An ``Engine`` computes the plan elsewhere: ``ray_engine.RayEngine`` hands its pairs to actors that
each call ``load_runner`` once and ``compute`` per batch, and records what they send back.
"""
from __future__ import annotations

import time
from pathlib import Path
from typing import Callable, Protocol, Sequence

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
               log: Callable[[str], None], compiled: set[reading.Bucket] | None = None):
    self.plan, self.runner, self.records, self.writer, self.log = plan, runner, records, writer, log
    self.mask = reading.user_mask(plan)
    self.written: list[Path] = []
    # Buckets whose program was announced; a Ray actor passes its own, kept across its batches.
    self.compiled = set() if compiled is None else compiled

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
    units = bucket_units(plan, self.records)
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


def bucket_units(plan: Plan, records: writing.Records) -> list[reading.Unit]:
  """The plan's pairs to do grouped by shape bucket, from the contents' headers; the pairs of a content
  whose header is refused are recorded as failed."""
  req = plan.request
  return reading.plan_units(plan, req.settings.size or None, req.io_threads, records.failed)


def load_runner(plan: Plan, log: Callable[[str], None]) -> Runner:
  """The plan's weights, checked and placed: only the networks its mode needs."""
  req = plan.request
  return Runner.load(req.weights, runner_lib.networks_for(req.settings.mode, bool(req.mask)),
                     dtype=req.dtype, log=log)


def compute(plan: Plan, runner: Runner, records: writing.Records, log: Callable[[str], None],
            compiled: set[reading.Bucket] | None = None) -> list[Path]:
  """Stylises ``plan.todo`` with ``runner``, files written behind the computing; returns the files."""
  with writing.Writer(background=plan.request.io_threads > 0) as writer:
    return Pipeline(plan, runner, records, writer, log, compiled).run()


class Engine(Protocol):
  """Computes a plan's pairs somewhere else than this process's devices. A context manager: entered
  before the plan is made (a cluster starts before JAX's runtime does), left after the run."""

  def __enter__(self) -> Engine: ...

  def __exit__(self, *exc) -> None: ...

  def compute(self, plan: Plan, records: writing.Records, log: Callable[[str], None]) -> list[Path]:
    """Stylises ``plan.todo``, each outcome into ``records``; returns the files written."""


def run(plan: Plan, *, log: Callable[[str], None], progress: bool | None, start: float,
        process: int = 0, processes: int = 1, engine: Engine | None = None) -> writing.Report:
  """Runs ``plan`` (its skipped pairs recorded first) on this process's devices, or on ``engine``, and
  returns the run's ``Report``; ``start``: when the run began (``time.perf_counter``), for its seconds."""
  bar = tqdm(total=len(plan.todo), unit="image", position=process if processes > 1 else None,
             desc=f"process {process}/{processes}" if processes > 1 else None,
             disable=None if progress is None else not progress)
  with writing.Records(plan, bar, log) as records, bar:
    records.skipped(plan.skipped)
    written: list[Path] = []
    if plan.todo and engine is not None:
      written = engine.compute(plan, records, log)
    elif plan.todo:
      runner = load_runner(plan, log)
      if processes > 1:
        log(f"process {process} of {processes}: {runner.mesh.size} device(s) of its own")
      written = compute(plan, runner, records, log)
    seconds = time.perf_counter() - start   # this process's work, not the wait for the others below
  return records.report(written, seconds, process, processes)
