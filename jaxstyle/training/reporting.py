"""What a training run reports: metric files, one progress line per interval, sample images.

``MetricWriter`` writes TensorBoard event files (tensorboardX) and ``metrics.jsonl`` on process 0.
``clu``'s metric writers and ``periodic_actions.ReportProgress`` would do this, but importing either
imports TensorFlow (``clu.metric_writers`` loads its TF summary writer at import; clu 0.0.12), which the
base install does not have (only the ``data`` extra); tensorboardX writes the same event files.

``Reporter`` keeps each step's metrics on the device until the interval's end, then fetches them, stops
with ``NonFiniteError`` naming the first step whose metrics hold a NaN/Inf, and writes the interval's
means with img/s and an ETA.
"""
from __future__ import annotations

import json
import math
import os
import time
from pathlib import Path
from typing import Any, Callable, Iterable

from absl import logging
import jax
import numpy as np


class MetricWriter:
  """TensorBoard (tensorboardX) + ``metrics.jsonl`` in ``workdir``; a no-op except on process 0."""

  def __init__(self, workdir: str | os.PathLike, enabled: bool | None = None):
    self.workdir = Path(workdir)
    self.enabled = jax.process_index() == 0 if enabled is None else enabled
    self._tb = None
    self._jsonl = None
    self.last: dict[str, float] = {}   # the latest value written of each scalar
    if not self.enabled:
      return
    self.workdir.mkdir(parents=True, exist_ok=True)
    self._jsonl = open(self.workdir / "metrics.jsonl", "a", buffering=1)
    try:
      from tensorboardX import SummaryWriter  # pylint: disable=g-import-not-at-top
      self._tb = SummaryWriter(str(self.workdir / "tensorboard"))
    except ImportError:
      logging.warning("tensorboardX is not installed: metrics go to metrics.jsonl only")

  def scalars(self, step: int, scalars: dict[str, float]):
    if not self.enabled:
      return
    scalars = {k: float(v) for k, v in scalars.items()}
    self.last.update(scalars)
    self._jsonl.write(json.dumps({"step": int(step), "time": time.time(), **scalars}) + "\n")
    if self._tb is not None:
      for k, v in scalars.items():
        self._tb.add_scalar(k, v, step)

  def image(self, step: int, name: str, image: np.ndarray):
    """Writes a uint8 ``[H, W, 3]`` image to TensorBoard and ``workdir/samples/{name}_{step}.png``."""
    if not self.enabled:
      return
    from PIL import Image  # pylint: disable=g-import-not-at-top
    path = self.workdir / "samples" / f"{name}_{step:07d}.png"
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(image).save(path)
    if self._tb is not None:
      self._tb.add_image(name, image, step, dataformats="HWC")
    return path

  def flush(self):
    if self._tb is not None:
      self._tb.flush()

  def close(self):
    if self._tb is not None:
      self._tb.close()
    if self._jsonl is not None:
      self._jsonl.close()


class NonFiniteError(FloatingPointError):
  """A loss, gradient or parameter norm became NaN or Inf."""


def check_finite(step: int, metrics: dict[str, Any]) -> None:
  bad = {k: float(v) for k, v in metrics.items() if not np.all(np.isfinite(v))}
  if bad:
    raise NonFiniteError(f"non-finite metrics at step {step}: {bad}; training stopped (the state after "
                         f"step {step} is not saved; the last checkpoint is finite)")


class Reporter:
  """Per-step metrics → interval means in ``writer`` and one console line (loss terms, img/s, ETA).

  ``extra()`` (host-side, e.g. decode counters) is merged into each interval's scalars.
  """

  def __init__(self, writer: MetricWriter, *, num_steps: int, global_batch: int,
               extra: Callable[[], dict] | None = None):
    self.writer, self.num_steps, self.global_batch, self.extra = writer, num_steps, global_batch, extra
    self.pending: list[tuple[int, dict]] = []   # metrics still on the device
    self.checked: list[dict] = []                # fetched and finite, not yet written
    self.t_interval, self.n_interval = time.perf_counter(), 0

  def add(self, step: int, metrics: dict) -> None:
    """The metrics of the update that led to ``step`` (on the device; not waited for)."""
    self.pending.append((step, metrics))
    self.n_interval += 1

  def check(self) -> None:
    """Fetches the pending metrics; raises ``NonFiniteError`` for the first non-finite step."""
    fetched = jax.device_get([m for _, m in self.pending])
    for (s, _), m in zip(self.pending, fetched):
      check_finite(s, m)
    self.checked.extend(fetched)
    self.pending.clear()

  def report(self, step: int) -> None:
    self.check()
    if not self.checked:
      return
    means = {k: float(np.mean([m[k] for m in self.checked])) for k in self.checked[-1]}
    self.checked.clear()
    dt = time.perf_counter() - self.t_interval
    step_s = dt / max(self.n_interval, 1)
    means["time/step_s"] = step_s
    means["time/img_per_s"] = self.global_batch * self.n_interval / dt
    if self.extra is not None:
      means.update(self.extra())
    self.writer.scalars(step, means)
    terms = " ".join(f"{k.removeprefix('loss/')} {v:.4g}" for k, v in means.items()
                     if k.startswith(("loss", "train/")))
    logging.info("step %d/%d | %s | %.2f img/s | %.3f s/step | ETA %s", step, self.num_steps, terms,
                 means["time/img_per_s"], step_s, format_duration(step_s * (self.num_steps - step)))
    self.t_interval, self.n_interval = time.perf_counter(), 0


def image_grid(rows: Iterable[Iterable[np.ndarray]], pad: int = 2) -> np.ndarray:
  """uint8 grid from rows of float [0, 1] images of one size, ``pad`` white pixels between them."""
  rows = [[np.asarray(x, np.float32) for x in row] for row in rows]
  h, w = rows[0][0].shape[:2]
  n_cols = max(len(r) for r in rows)
  grid = np.ones((len(rows) * (h + pad) - pad, n_cols * (w + pad) - pad, 3), np.float32)
  for i, row in enumerate(rows):
    for j, x in enumerate(row):
      x = np.repeat(x[..., None], 3, -1) if x.ndim == 2 else x
      grid[i * (h + pad):i * (h + pad) + h, j * (w + pad):j * (w + pad) + w] = x
  return (np.clip(grid, 0, 1) * 255 + 0.5).astype(np.uint8)


def format_duration(seconds: float) -> str:
  if not math.isfinite(seconds):
    return "?"
  seconds = int(seconds)
  h, rem = divmod(seconds, 3600)
  m, s = divmod(rem, 60)
  return f"{h}h{m:02d}m" if h else f"{m}m{s:02d}s"
