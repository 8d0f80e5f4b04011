"""Temporal mask smoothing for video: SegNet sees each frame alone, so its mask flickers at the person's edge.

The blend weight of frame t is a centred Gaussian average (σ = ``SMOOTH_SIGMA`` frames, cut at
``SMOOTH_RADIUS``) of the per-frame blend weights (the program's ``weight``: the person's weight in its
blend), renormalised at the clip's ends; being centred it adds no lag (frames wait ``SMOOTH_RADIUS``
frames for their future). ``Flicker`` (mean absolute change between consecutive frames) measures the
effect. A live camera has no future frames: ``LiveBlend`` averages the same Gaussian's past half
(frames t − ``SMOOTH_RADIUS`` .. t), so it adds no wait. All pure NumPy.
"""
from __future__ import annotations

import collections
import dataclasses
from typing import Iterable, Iterator

import numpy as np

SMOOTH_SIGMA = 1.0     # frames
SMOOTH_RADIUS = 2      # frames each side: 2σ holds 95% of the weight


def temporal_weights(radius: int = SMOOTH_RADIUS, sigma: float = SMOOTH_SIGMA) -> np.ndarray:
  """Gaussian weights of frame offsets −radius..radius (unnormalised: the ends renormalise)."""
  return np.exp(-0.5 * (np.arange(-radius, radius + 1) / sigma) ** 2)


def smooth_masks(masks: Iterable[np.ndarray], radius: int = SMOOTH_RADIUS,
                 sigma: float = SMOOTH_SIGMA) -> Iterator[np.ndarray]:
  """Centred Gaussian average over time of a stream of ``[H, W]`` masks, one out per one in.

  Holds ``radius`` future masks; at the clip's ends the window is cut and its weights renormalised.
  """
  weights = temporal_weights(radius, sigma)
  window: list[np.ndarray] = []   # masks t − radius .. t + radius that exist
  first = 0                       # index in the clip of window[0]
  t = 0                           # next mask to emit

  def emit(t):
    lo, hi = max(t - radius, first), min(t + radius, first + len(window) - 1)
    w = weights[lo - t + radius:hi - t + radius + 1]
    return np.tensordot(w / w.sum(), np.stack(window[lo - first:hi - first + 1]), axes=1)

  for mask in masks:
    window.append(mask)
    if first + len(window) - 1 >= t + radius:   # t's future has arrived
      yield emit(t).astype(mask.dtype)
      t += 1
      if t - radius > first:
        window.pop(0)
        first += 1
  while t < first + len(window):
    yield emit(t).astype(window[0].dtype)
    t += 1


@dataclasses.dataclass
class Flicker:
  """Running mean absolute change between consecutive masks."""
  total: float = 0.0
  count: int = 0
  last: np.ndarray | None = None

  def add(self, mask: np.ndarray) -> None:
    if self.last is not None:
      self.total += float(np.abs(mask - self.last).mean())
      self.count += 1
    self.last = mask

  @property
  def value(self) -> float:
    return self.total / max(self.count, 1)


def blend_smoothed(results: Iterable[dict[str, np.ndarray]], raw: Flicker,
                   smooth: Flicker) -> Iterator[np.ndarray]:
  """Portrait frames: the two transfers blended with the temporally smoothed blend weight
  (``smooth_masks`` of each result's ``weight``). Records its flicker before and after smoothing."""
  held: collections.deque = collections.deque()

  def masks():
    for r in results:
      held.append(r)
      raw.add(r["weight"])
      yield r["weight"]

  for mask in smooth_masks(masks()):
    r = held.popleft()
    smooth.add(mask)
    yield mask[..., None] * r["person"] + (1 - mask[..., None]) * r["background"]


class LiveBlend:
  """Portrait frames of a live stream: each blended with the causal Gaussian average of the last
  ``radius`` + 1 blend weights (no future frame to wait for), records its flicker. A frame of another
  shape starts the history again."""

  def __init__(self, radius: int = SMOOTH_RADIUS, sigma: float = SMOOTH_SIGMA):
    self.weights = temporal_weights(radius, sigma)[:radius + 1]     # offsets −radius..0
    self.history: collections.deque = collections.deque(maxlen=radius + 1)
    self.raw, self.smooth = Flicker(), Flicker()

  def reset(self) -> None:
    self.history.clear()
    self.raw, self.smooth = Flicker(), Flicker()

  def __call__(self, result: dict[str, np.ndarray]) -> np.ndarray:
    weight = result["weight"]
    if self.history and self.history[-1].shape != weight.shape:
      self.reset()
    self.history.append(weight)
    self.raw.add(weight)
    w = self.weights[-len(self.history):]
    mask = np.tensordot(w / w.sum(), np.stack(self.history), axes=1).astype(weight.dtype)
    self.smooth.add(mask)
    return mask[..., None] * result["person"] + (1 - mask[..., None]) * result["background"]
