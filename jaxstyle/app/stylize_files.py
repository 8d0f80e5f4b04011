"""Stylises image files: the library behind ``python -m infer.portrait`` (importable, no shell needed).

    run(Request(content=["photos/"], style=["styles/"], output="out", sheet=True))

- Inputs (``sources.py``): ``content`` and ``style`` each name files, folders, ``.txt`` lists of paths
  and ``tfds:NAME[:SPLIT]`` datasets; every content is paired with every style, content-major.
- Outputs: ``OUTPUT/CONTENT__STYLE.png``, or exactly ``OUTPUT`` when there is one pair and ``OUTPUT``
  has an image suffix. ``save_mask`` / ``sheet``: ``True`` writes ``NAME.mask.png`` / ``NAME.sheet.png``
  next to the output, a folder writes ``FOLDER/NAME.png``. Every file is written atomically; no output
  may be an input, and no two outputs may share a path (checked before anything runs).
- Collections (``collection.py``): each process of a ``jax.distributed`` job
  (``sharding.initialize_distributed``) takes a contiguous share of the pairs and runs it on its own
  devices; processes meet only at the start and at the end, where they add up their counts. Pairs whose
  files are whole already are skipped (``overwrite`` redoes them). A content that cannot be read (not an
  image, truncated, a bomb, NaN) fails its pairs, each recorded with the one-line reason in the run
  summary, and the run goes on; ``run`` raises ``PairsFailed`` at the end when any failed. A run of one
  pair refuses a bad content at once, as a single command always has. Styles (and ``mask``) are read
  before anything runs and a bad one is refused: every pair of that style would fail.
- Pipeline: the contents' headers are read first (``image_io.probe_hw``, no pixels decoded) to group the
  pairs by shape bucket; Grain then decodes the contents on ``io_threads`` threads ahead of the program,
  and one thread writes each batch's files while the next batch computes (``io_threads=0``: decoding,
  computing and writing take turns on one thread). A kill loses at most the batch computing and the one
  being written.
- Batching: pairs are grouped by shape bucket (``buckets.py``: content sides rounded up to multiples of
  128, styles padded to one square), and each group runs through the one jitted program of
  ``portrait.make_program`` over this process's devices, in batches padded (repeating the last pair)
  to the group's batch size, a multiple of the device count. Padding is reflection at the bottom/right;
  the program is told each picture's valid size (padded positions are never attention keys nor in
  SANet's statistics), and every output is cropped back to its content's exact size. A folder of mixed
  sizes at one ``--size`` compiles about three programs (portrait, square, landscape), and JAX's
  persistent cache (``compile_cache.py``) keeps them for later runs. The sheet's "plain" panel is the
  portrait program's background row (no second program).
- Video: one video as ``content`` goes to ``stylize_video.run_video`` (frames in batches, audio copied).
- Weights: a ``weights.py`` folder whose manifest names the model config; the ImageNet VGG-19 encoder comes
  from ``jaxstyle.checkpoints.pretrained``'s cache when the manifest says so. Missing weights are an error that says
  how to get them: a picture from random weights is never made.

Errors meant for the user are ``ImageError`` (an input or output file), ``WeightsError`` (the weights),
``UsageError`` (options that do not fit together; ``request.py`` holds the checks) and ``PairsFailed``;
each has a one-line message.
"""
from __future__ import annotations

import concurrent.futures
import dataclasses
import functools
import itertools
import sys
import threading
import time
from pathlib import Path
from typing import Callable, Iterator, Sequence

import grain
import jax
import numpy as np
from tqdm import tqdm

from jaxstyle.app import collection
from jaxstyle.app import sources
from jaxstyle.app import stylize_video
from jaxstyle.app.collection import DONE, FAILED, SKIPPED, Outcome, Report, Summary
from jaxstyle.app.request import (Request, UsageError, check_finite, check_request, check_writable_paths,
                                  load_params, out_of_memory_as_usage_error, per_call, stylize_batch)
from jaxstyle.app.sources import Input, expand_inputs
from jaxstyle.io import image_io
from jaxstyle.io import video
from jaxstyle.io.image_io import IMAGE_SUFFIXES, ImageError
from jaxstyle.io.sheet import comparison_sheet, sheet_panels
from jaxstyle.program import buckets
from jaxstyle.program import compile_cache
from jaxstyle.program import portrait
from jaxstyle.program import sharding

Bucket = tuple[tuple[int, int], tuple[int, int]]   # (content bucket, style bucket): one program


@dataclasses.dataclass(frozen=True)
class Job:
  """One (content, style) pair and the files it writes."""
  content: int
  style: int
  image: Path
  mask: Path | None
  sheet: Path | None

  @property
  def outputs(self) -> list[Path]:
    return [p for p in (self.image, self.mask, self.sheet) if p]


def check_writable(jobs: Sequence[Job]) -> None:
  """Every output folder is, or can be made, a writable folder: found before any computing."""
  check_writable_paths([p for job in jobs for p in job.outputs])


def side_path(where: bool | str, image: Path, kind: str) -> Path | None:
  """Where a mask/sheet goes: next to ``image``, into a folder, or exactly ``where`` when it names an
  image file (one pair only: two pairs writing one file are refused by ``plan_jobs``)."""
  if not where:
    return None
  if where is True:
    return image.with_name(f"{image.stem}.{kind}.png")
  if Path(where).suffix.lower() in IMAGE_SUFFIXES:
    return Path(where)
  return Path(where) / f"{image.stem}.png"


def input_files(contents: Sequence[Input], styles: Sequence[Input], req: Request) -> list[Path]:
  """Every input that is a file (contents, styles, ``--mask``): what no output may overwrite."""
  return [p for p in (*contents, *styles, *([Path(req.mask)] if req.mask else [])) if isinstance(p, Path)]


def plan_jobs(contents: Sequence[Input], styles: Sequence[Input], req: Request) -> list[Job]:
  """One ``Job`` per pair, content-major; refuses outputs that are inputs or that collide."""
  out = Path(req.output)
  names_a_file = out.suffix.lower() in IMAGE_SUFFIXES and not out.is_dir()
  n_pairs = len(contents) * len(styles)
  if names_a_file and n_pairs > 1:
    raise UsageError(f"--output {out} names one file but there are {n_pairs} (content, style) pairs: "
                     "give a folder")
  jobs = []
  for (c, content), (s, style) in itertools.product(enumerate(contents), enumerate(styles)):
    image = out if names_a_file else out / f"{content.stem}__{style.stem}.png"
    jobs.append(Job(c, s, image, side_path(req.save_mask, image, "mask"),
                    side_path(req.sheet, image, "sheet")))
  inputs = set().union(*map(image_io.file_ids, input_files(contents, styles, req)))
  seen: dict[Path, Path] = {}
  for job in jobs:
    for path in job.outputs:
      if image_io.file_ids(path) & inputs:
        raise UsageError(f"{path}: refusing to overwrite an input image (choose another --output)")
      key = path.resolve()
      if key in seen:
        raise UsageError(f"{path} would be written twice: inputs {contents[job.content].name} / "
                         f"{styles[job.style].name} share a name with another pair's")
      seen[key] = path
  return jobs


# --- the pipeline ------------------------------------------------------------------------------------


def threaded_map(fn: Callable, items: Sequence, threads: int) -> Iterator:
  """``map(fn, items)`` in order, computed by ``threads`` Grain threads a few items ahead of the caller
  (``threads`` = 0: in the caller's thread, one at a time)."""
  options = grain.ReadOptions(num_threads=threads, prefetch_buffer_size=2 * threads)
  return iter(grain.MapDataset.source(items).map(fn).to_iter_dataset(options))


@dataclasses.dataclass(frozen=True)
class Unit:
  """A content and its pairs of one bucket: decoded once for all of them."""
  content: Input
  jobs: tuple[Job, ...]
  bucket: Bucket
  hw: tuple[int, int]   # the content's size, from its header


@dataclasses.dataclass(frozen=True)
class Decoded:
  unit: Unit
  pixels: np.ndarray | None
  error: ImageError | None
  seconds: float


def attempt(fn: Callable, *args) -> tuple[object | None, ImageError | None, float]:
  """``(fn(*args), None, seconds)``, or ``(None, the ImageError, seconds)``."""
  start = time.perf_counter()
  try:
    return fn(*args), None, time.perf_counter() - start
  except ImageError as e:
    return None, e, time.perf_counter() - start


def plan_units(todo: Sequence[Job], contents: Sequence[Input], styles: Sequence[np.ndarray], size: int,
               threads: int, fail: Callable[[Sequence[Job], ImageError, float], None]) -> list[Unit]:
  """``todo`` as units grouped by bucket (in order of first appearance), from the contents' headers;
  the pairs of a content whose header is refused go to ``fail``."""
  by_content = {c: list(group) for c, group in itertools.groupby(todo, key=lambda j: j.content)}
  order = list(by_content)
  probes = threaded_map(lambda c: attempt(sources.probe, contents[c], size), order, threads)
  groups: dict[Bucket, list[Unit]] = {}
  for c, (hw, error, seconds) in zip(order, probes):
    if error is not None:
      fail(by_content[c], error, seconds)
      continue
    for style_key, jobs in itertools.groupby(by_content[c],
                                             key=lambda j: buckets.style_bucket(styles[j.style].shape[:2])):
      key = (buckets.content_bucket(hw), style_key)
      groups.setdefault(key, []).append(Unit(contents[c], tuple(jobs), key, hw))
  return [unit for units in groups.values() for unit in units]


@dataclasses.dataclass(frozen=True)
class Item:
  """A decoded pair waiting for its program call."""
  job: Job
  content: np.ndarray
  seconds: float   # its share of decoding


class Batcher:
  """Decoded pairs collected per bucket into program calls: a full batch goes at once, a bucket's last
  partial batch as soon as its last planned pair has arrived (or at the end, for a picture whose decoded
  size was not the one its header promised)."""

  def __init__(self, planned: dict[Bucket, int], batch_size: int, devices: int):
    self.planned, self.left = planned, dict(planned)
    self.batch_size, self.devices = batch_size, devices
    self.pending: dict[Bucket, list[Item]] = {}

  def batch(self, key: Bucket) -> int:
    """The bucket's batch: ``batch_size``, or fewer (a multiple of the devices) for a small bucket."""
    return min(self.batch_size, -(-max(self.planned.get(key, 1), 1) // self.devices) * self.devices)

  def add(self, key: Bucket, item: Item) -> Iterator[tuple[Bucket, list[Item]]]:
    self.pending.setdefault(key, []).append(item)
    if len(self.pending[key]) == self.batch(key):
      yield key, self.pending.pop(key)

  def arrived(self, planned_key: Bucket, n: int) -> Iterator[tuple[Bucket, list[Item]]]:
    self.left[planned_key] -= n
    if self.left[planned_key] == 0 and planned_key in self.pending:
      yield planned_key, self.pending.pop(planned_key)

  def rest(self) -> Iterator[tuple[Bucket, list[Item]]]:
    while self.pending:
      yield self.pending.popitem()


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


def write_outputs(job: Job, out: dict[str, np.ndarray], controls: portrait.Controls, content: np.ndarray,
                  style: np.ndarray, inputs: Sequence[Path]) -> list[Path]:
  """Saves one pair's image (and mask and sheet when asked); returns the paths. Refuses an output
  that is not finite (``check_finite``)."""
  check_finite(out, job.image)
  save = functools.partial(image_io.save_image_atomic, inputs=inputs)
  written = [save(job.image, out["image"])]
  if job.mask:
    written.append(save(job.mask, out["mask"]))
  if job.sheet:
    written.append(save(job.sheet, comparison_sheet(sheet_panels(content, style, out, controls))))
  return written


def _log(message: str) -> None:
  tqdm.write(message, file=sys.stderr)


def stylize(req: Request, *, log: Callable[[str], None] = _log, progress: bool | None = None) -> Report:
  """Stylises this process's share of the (content, style) pairs of ``req``; returns the ``Report``.

  ``progress``: a tqdm bar with images/s and ETA on stderr (None: only on a terminal).
  """
  start = time.perf_counter()
  check_request(req)
  compile_cache.enable(log)
  process, processes = jax.process_index(), jax.process_count()
  if any(video.is_video(p) for p in req.content):
    if len(req.content) != 1 or Path(req.content[0]).is_dir():
      raise UsageError("give one video as --content (a video is stylised on its own)")
    if processes > 1:
      raise UsageError("a video is stylised by one process: start it without --num_processes")
    styles = expand_inputs(req.style, "--style", req.tfds_data_dir)
    written = stylize_video.run_video(req, Path(req.content[0]), styles, log=log, progress=progress)
    counts = {DONE: len(written), SKIPPED: 0, FAILED: 0}
    return Report(written, counts, counts, time.perf_counter() - start)
  sharding.sum_over_processes(np.zeros(1))   # the start line, where the processes' collectives connect
  contents = expand_inputs(req.content, "--content", req.tfds_data_dir)
  style_items = expand_inputs(req.style, "--style", req.tfds_data_dir)
  if req.mask and len(contents) != 1:
    raise UsageError(f"--mask is one person's mask: give exactly one --content image, "
                     f"not {len(contents)}")
  jobs = plan_jobs(contents, style_items, req)
  summary_path = collection.summary_path(req.summary, req.output, len(jobs), process, processes)
  check_writable(jobs)
  check_writable_paths([summary_path] if summary_path else [])
  mine = collection.share(jobs, process, processes)
  image_io.remove_partials(p for job in mine for p in job.outputs)
  todo = list(mine) if req.overwrite else [j for j in mine if not collection.is_done(j.outputs)]
  if processes > 1:
    log(f"process {process} of {processes}: {len(mine)} of {len(jobs)} pairs, "
        f"{jax.local_device_count()} device(s) of its own")
  if len(todo) < len(mine):
    log(f"{len(mine) - len(todo)} of {len(mine)} pairs are written already: skipped "
        "(--overwrite redoes them)")
  styles = [sources.read(s, req.size or None) for s in style_items]   # a bad style is refused here
  with Summary(summary_path) as summary:
    pending = set(todo)
    for job in (j for j in mine if j not in pending):
      summary.add(outcome(job, contents, style_items, SKIPPED, 0.0))
    pipeline = Pipeline(req, contents, style_items, styles, summary, strict=len(jobs) == 1, log=log,
                        progress=progress)
    written = pipeline.run(todo) if todo else []
  counts, seconds = summary.counts, time.perf_counter() - start   # this process's work, not the wait below
  totals = sharding.sum_over_processes(np.asarray([counts[s] for s in collection.STATUSES]))
  return Report(written, counts, dict(zip(collection.STATUSES, map(int, totals))), seconds, summary_path,
                summary.first_failure, process, processes)


def outcome(job: Job, contents: Sequence[Input], styles: Sequence[Input], status: str, seconds: float,
            reason: str | None = None) -> Outcome:
  return Outcome(sources.label(contents[job.content]), sources.label(styles[job.style]), str(job.image),
                 status, seconds, reason)


class Pipeline:
  """Runs this process's pairs: contents decoded ahead (Grain threads), one program call per batch, each
  batch's files written behind the next call (``Writer``); every pair's outcome goes to ``summary``."""

  def __init__(self, req: Request, contents: Sequence[Input], style_items: Sequence[Input],
               styles: Sequence[np.ndarray], summary: Summary, *, strict: bool,
               log: Callable[[str], None], progress: bool | None):
    self.req, self.contents, self.style_items, self.styles = req, contents, style_items, styles
    self.summary, self.strict, self.log, self.progress = summary, strict, log, progress
    self.inputs = input_files(contents, style_items, req)
    self.user_mask = functools.cache(lambda hw: image_io.load_mask(req.mask, hw))
    self.written: list[Path] = []
    self.compiled: set[Bucket] = set()
    self._lock = threading.Lock()   # the writing thread records finished pairs, this one failed ones

  def record(self, job: Job, status: str, seconds: float, reason: str | None = None) -> None:
    self.summary.add(outcome(job, self.contents, self.style_items, status, seconds, reason))
    with self._lock:
      self.bar.update(1)

  def fail(self, jobs: Sequence[Job], error: ImageError, seconds: float) -> None:
    """A content that cannot be read fails its pairs (a run of one pair refuses it instead)."""
    if self.strict:
      raise error
    self.log(f"failed: {error}")
    for job in jobs:
      self.record(job, FAILED, seconds / len(jobs), str(error))

  def write(self, items: list[Item], outs: list[dict[str, np.ndarray]], seconds: float) -> None:
    for item, out in zip(items, outs):
      start = time.perf_counter()
      self.written += write_outputs(item.job, out, self.req.controls, item.content,
                                    self.styles[item.job.style], self.inputs)
      self.record(item.job, DONE, item.seconds + seconds / len(items) + time.perf_counter() - start)

  def call(self, key: Bucket, items: list[Item]) -> None:
    """One program call on a batch of one bucket; its files are handed to the writer."""
    (h, w), (hs, ws) = key
    batch = self.batcher.batch(key)
    if key not in self.compiled:
      self.compiled.add(key)
      n = self.batcher.planned.get(key, len(items))
      self.log(f"compiling the {self.req.mode} program for contents padded to {w}x{h}, styles to "
               f"{ws}x{hs} (batch {batch}, {n} pair{'s' * (n > 1)}; first call, can take a minute "
               "unless cached)")
    start = time.perf_counter()
    cs, ss = [it.content for it in items], [self.styles[it.job.style] for it in items]
    masks = [self.user_mask(x.shape[:2]) for x in cs] if self.req.mask else None
    c, s, sizes, m = buckets.bucket_batch(cs, ss, batch, key, masks)
    with out_of_memory_as_usage_error(f"{w}x{h}", batch):
      out = stylize_batch(self.program, self.mesh, self.params, c, s, self.req.controls.as_array(), m, sizes)
      out = {k: np.asarray(v) for k, v in out.items()}
    outs = [{k: buckets.crop(v[i], cs[i].shape[:2]) for k, v in out.items()} for i in range(len(items))]
    self.writer.submit(self.write, items, outs, time.perf_counter() - start)

  def run(self, todo: Sequence[Job]) -> list[Path]:
    """Stylises ``todo``; returns the files written."""
    req = self.req
    self.params, cfg, self.mesh = load_params(req, bool(req.mask))
    self.program = portrait.make_program(cfg, self.mesh, mode=req.mode, feather=req.feather,
                                         keep_color=req.preserve_color, with_sizes=True,
                                         with_mask=bool(req.mask))
    process, processes = jax.process_index(), jax.process_count()
    self.bar = tqdm(total=len(todo), unit="image", position=process if processes > 1 else None,
                    desc=f"process {process}/{processes}" if processes > 1 else None,
                    disable=None if self.progress is None else not self.progress)
    with self.bar, Writer(background=req.io_threads > 0) as self.writer:
      units = plan_units(todo, self.contents, self.styles, req.size or None, req.io_threads, self.fail)
      for unit in units if req.mask else ():   # a mask of another picture is refused before compiling
        self.user_mask(unit.hw)
      planned: dict[Bucket, int] = {}
      for unit in units:
        planned[unit.bucket] = planned.get(unit.bucket, 0) + len(unit.jobs)
      self.batcher = Batcher(planned, per_call(req, self.mesh), self.mesh.size)
      decode = lambda unit: Decoded(unit, *attempt(sources.read, unit.content, req.size or None))
      for d in threaded_map(decode, units, req.io_threads):
        if d.error is not None:
          self.fail(d.unit.jobs, d.error, d.seconds)
        else:
          key = (buckets.content_bucket(d.pixels.shape[:2]), d.unit.bucket[1])
          for job in d.unit.jobs:
            for ready in self.batcher.add(key, Item(job, d.pixels, d.seconds / len(d.unit.jobs))):
              self.call(*ready)
        for ready in self.batcher.arrived(d.unit.bucket, len(d.unit.jobs)):
          self.call(*ready)
      for ready in self.batcher.rest():
        self.call(*ready)
    return self.written


def run(req: Request, *, log: Callable[[str], None] = _log, progress: bool | None = None) -> list[Path]:
  """Stylises every (content, style) pair of ``req`` (this process's share); returns the files written,
  in order. Raises ``PairsFailed`` at the end when pairs failed (``stylize`` reports them instead).

  ``progress``: a tqdm bar with ETA on stderr (None: only on a terminal).
  """
  report = stylize(req, log=log, progress=progress)
  report.raise_for_failures()
  return report.written
