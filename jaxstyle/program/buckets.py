"""Shape buckets: pictures of many sizes share a handful of compiled programs.

XLA compiles one program per input shape, and on a 2-core CPU (or any GPU) a compile costs far more
than stylising one picture. So the CLI pads every content to a *bucket*: each side rounded up to a
multiple of ``STEP`` (of ``SMALL_STEP`` below ``STEP``). At ``--size 384`` every content is 384 on its
long side, so all contents fall into (384, 128·k) or (128·k, 384): in practice three shapes (portrait,
square, landscape). Styles are padded to one square (``style_bucket``): the style is only attention
keys and one VGG pass, the cheapest input to pad, and a single style shape keeps the number of
programs at the number of content buckets instead of their product with the style buckets.

Padding is on the bottom and right, by reflection, so the VGG convolutions near the valid border see
image-like surroundings (as the reflect-padded decoder and SANet's own statistics expect), not a hard
edge of zeros. The program is told each item's valid size (``portrait.Batch.sizes``): SANet's
mean/std and its attention keys come from valid positions only, and the feathered mask is that of the
valid size. Outputs are cropped back with ``crop``. What cannot be exact is the receptive field of the
convolutions across the valid border (padded pixels are reflections, not what a smaller conv padding
would give): measured in ``tests/test_portrait.py`` and README.
"""
from __future__ import annotations

import numpy as np

from jaxstyle.program.portrait import Batch

STEP = 128
SMALL_STEP = 16     # a multiple of VGG's 16× reduction to relu5_1: no ceil-mode remainder cells


def bucket_side(n: int) -> int:
  """``n`` rounded up to a multiple of ``STEP`` (of ``SMALL_STEP`` for ``n`` ≤ ``STEP``)."""
  step = STEP if n > STEP else SMALL_STEP
  return -(-n // step) * step


def content_bucket(hw: tuple[int, int]) -> tuple[int, int]:
  return bucket_side(hw[0]), bucket_side(hw[1])


def style_bucket(hw: tuple[int, int]) -> tuple[int, int]:
  """One square per long side: styles add no programs of their own."""
  side = bucket_side(max(hw))
  return side, side


def pad_to(x: np.ndarray, hw: tuple[int, int], mode: str = "reflect") -> np.ndarray:
  """``x [H, W, ...]`` padded at the bottom and right to ``hw`` (``reflect`` for images, ``edge`` for
  masks)."""
  widths = [(0, hw[0] - x.shape[0]), (0, hw[1] - x.shape[1])] + [(0, 0)] * (x.ndim - 2)
  if min(widths[0][1], widths[1][1]) < 0:
    raise ValueError(f"cannot pad {x.shape[:2]} to the smaller {hw}")
  return np.pad(x, widths, mode=mode)


def crop(x: np.ndarray, hw: tuple[int, int]) -> np.ndarray:
  """The valid top-left ``hw`` corner of a padded ``[H, W, ...]`` output."""
  return x[:hw[0], :hw[1]]


def pad_items(items: list[np.ndarray], hw: tuple[int, int], batch: int,
              mode: str = "reflect") -> np.ndarray:
  """``items`` padded to ``hw`` and stacked, the last one repeated up to ``batch`` items."""
  items = [pad_to(x, hw, mode) for x in items]
  return np.stack(items + items[-1:] * (batch - len(items)))


def sizes_of(contents: list[np.ndarray], styles: list[np.ndarray], batch: int,
             person_styles: list[np.ndarray] | None = None) -> np.ndarray:
  """``[batch, 4]`` int32 (content h, w, style h, w; ``[batch, 6]`` with the person's styles' h, w) for
  ``portrait.Batch.sizes``, the last pair repeated as ``pad_items`` does."""
  pictures = zip(contents, styles) if person_styles is None else zip(contents, styles, person_styles)
  rows = [tuple(hw for x in group for hw in x.shape[:2]) for group in pictures]
  return np.asarray(rows + rows[-1:] * (batch - len(rows)), np.int32)


def bucket_batch(contents: list[np.ndarray], styles: list[np.ndarray], batch: int, hw: tuple,
                 masks: list[np.ndarray] | None = None, person_styles: list[np.ndarray] | None = None
                 ) -> Batch:
  """One program call's ``portrait.Batch``: contents and styles padded to their buckets ``hw``
  (content's, style's[, the person's styles']) and repeated up to ``batch`` items, their valid
  ``sizes_of``, the person masks (edge-padded) and the person's styles if any."""
  m = None if masks is None else pad_items(masks, hw[0], batch, "edge")
  p = None if person_styles is None else pad_items(person_styles, hw[2], batch)
  return Batch(pad_items(contents, hw[0], batch), pad_items(styles, hw[1], batch),
               sizes_of(contents, styles, batch, person_styles), m, p)

