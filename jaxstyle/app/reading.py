"""Contents read for the program: headers first, pixels ahead of it, gathered into bucket batches.

- The contents' headers are read first (``sources.probe``, no pixels decoded) to group the pairs by
  shape bucket (``plan_units``; ``buckets.py``: content sides rounded up to multiples of 128, styles
  padded to one square), so a folder of mixed sizes at one ``--size`` compiles about three programs.
- Grain threads decode the contents ahead of the program (``threaded_map``); a content that cannot be
  read becomes an ``ImageError`` its pairs fail with.
- ``Batcher`` collects decoded pairs per bucket into program calls, each padded (repeating the last
  pair) to the bucket's batch size, a multiple of the device count.
"""
from __future__ import annotations

import dataclasses
import functools
import time
from typing import Callable, Iterator, Sequence

import numpy as np

from jaxstyle.app import sources
from jaxstyle.app.plan import Job, Plan
from jaxstyle.app.sources import Input
from jaxstyle.io import image_io
from jaxstyle.io.image_io import ImageError
from jaxstyle.program import buckets

# (content bucket, style buckets): one program. The style buckets are the background's and, when the
# person's style has a scale of its own, the person's.
Bucket = tuple[tuple[int, int], tuple[tuple[int, int], ...]]


def threaded_map(fn: Callable, items: Sequence, threads: int) -> Iterator:
  """``map(fn, items)`` in order, computed by ``threads`` Grain threads a few items ahead of the caller
  (``threads`` = 0, or a single item, which the caller would only wait for: in the caller's thread)."""
  if threads == 0 or len(items) <= 1:
    return map(fn, items)
  import grain  # pylint: disable=g-import-not-at-top  (0.3–0.5 s with Orbax: not for a run of one picture)
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


def style_buckets(plan: Plan, style: int) -> tuple[tuple[int, int], ...]:
  """The buckets of style ``style``: the background's, and the person's when it has its own scale."""
  pictures = [plan.styles] + ([plan.person_styles] if plan.person_styles is not None else [])
  return tuple(buckets.style_bucket(p[style].shape[:2]) for p in pictures)


def _grouped(jobs: Sequence[Job], key: Callable[[Job], object]) -> dict[object, list[Job]]:
  """``jobs`` by ``key``, the keys in order of first appearance (``itertools.groupby`` groups only
  neighbours)."""
  groups: dict[object, list[Job]] = {}
  for job in jobs:
    groups.setdefault(key(job), []).append(job)
  return groups


def plan_units(plan: Plan, size: int | None, threads: int,
               fail: Callable[[Sequence[Job], ImageError, float], None]) -> list[Unit]:
  """The plan's pairs to do as units grouped by bucket (in order of first appearance), from the
  contents' headers; the pairs of a content whose header is refused go to ``fail``."""
  # Grouped wherever a content's pairs stand (the Ray engine's come in bucket order).
  by_content = _grouped(plan.todo, lambda j: j.content)
  order = list(by_content)
  probes = threaded_map(lambda c: attempt(sources.probe, plan.contents[c], size), order, threads)
  groups: dict[Bucket, list[Unit]] = {}
  for c, (hw, error, seconds) in zip(order, probes):
    if error is not None:
      fail(by_content[c], error, seconds)
      continue
    for style_key, jobs in _grouped(by_content[c], lambda j: style_buckets(plan, j.style)).items():
      key = (buckets.content_bucket(hw), style_key)
      groups.setdefault(key, []).append(Unit(plan.contents[c], tuple(jobs), key, hw))
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


def user_mask(plan: Plan) -> Callable[[tuple[int, int]], np.ndarray] | None:
  """The request's ``--mask`` read once per content size it is asked for, or None without one."""
  path = plan.request.mask
  return None if path is None else functools.cache(lambda hw: image_io.load_mask(path, hw))


def decode_ahead(units: Sequence[Unit], max_side: int | None, threads: int) -> Iterator[Decoded]:
  """Each unit's content decoded (or its ``ImageError``), in order, ``threads`` threads ahead."""
  return threaded_map(lambda unit: Decoded(unit, *attempt(sources.read, unit.content, max_side)), units,
                      threads)


def decoded_bucket(d: Decoded) -> Bucket:
  """The bucket a decoded content runs in: that of its pixels (its header's, unless the header lied)."""
  return buckets.content_bucket(d.pixels.shape[:2]), d.unit.bucket[1]


def program_batch(items: Sequence[Item], plan: Plan, key: Bucket, size: int,
                  mask: Callable[[tuple[int, int]], np.ndarray] | None) -> buckets.Batch:
  """The ``portrait.Batch`` of one program call: ``items`` of bucket ``key`` padded to it and repeated
  up to ``size`` pairs, with the request's mask fitted to each content when there is one and the
  person's styles when they have a scale of their own."""
  contents = [it.content for it in items]
  masks = None if mask is None else [mask(c.shape[:2]) for c in contents]
  styles = [plan.styles[it.job.style] for it in items]
  person = None if plan.person_styles is None else [plan.person_styles[it.job.style] for it in items]
  return buckets.bucket_batch(contents, styles, size, (key[0], *key[1]), masks, person)
