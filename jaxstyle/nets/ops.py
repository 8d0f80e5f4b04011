"""Small array operations shared by the networks and the program: statistics, resizing, pooling, blur.

Everything is NHWC (``[B, H, W, C]``) unless a docstring says ``[B, H, W]``; nothing here has
parameters. Max-pools are 2×2/2 with ``ceil_mode`` (odd sizes round up, as the SANet encoder does).
"""
from __future__ import annotations

import functools
import math
from typing import Sequence

import jax
import jax.numpy as jnp

EPS = 1e-5


def mean_std(x: jax.Array, mask: jax.Array | None = None,
             eps: float = EPS) -> tuple[jax.Array, jax.Array]:
  """Per-channel spatial mean and std of ``x`` (unbiased variance, as PyTorch's SANet), in f32.

  ``mask [B, H, W]`` (True = valid) restricts both to an image's valid positions, so a picture padded
  into a larger shape bucket keeps its own statistics.
  """
  x = x.astype(jnp.float32)
  if mask is None:   # the unpadded case (and training) keeps the plain reductions
    m, n = 1.0, x.shape[1] * x.shape[2]
  else:
    m = mask[..., None].astype(jnp.float32)
    n = m.sum(axis=(1, 2), keepdims=True)
  mean = (x * m).sum(axis=(1, 2), keepdims=True) / jnp.maximum(n, 1)
  var = (((x - mean) * m) ** 2).sum(axis=(1, 2), keepdims=True) / jnp.maximum(n - 1, 1)
  return mean, jnp.sqrt(var + eps)


def mean_variance_norm(x: jax.Array, mask: jax.Array | None = None) -> jax.Array:
  """``x`` normalised to zero mean and unit std per channel (over ``mask``'s valid positions)."""
  mean, std = mean_std(x, mask)
  return ((x.astype(jnp.float32) - mean) / std).astype(x.dtype)


def resize_nearest(x: jax.Array, hw: Sequence[int]) -> jax.Array:
  """Nearest-neighbour resize of ``x`` to ``hw``; an exact ×2 equals PyTorch's ``Upsample(2)``."""
  if x.shape[1:3] == tuple(hw):
    return x
  rows = (jnp.arange(hw[0]) * x.shape[1]) // hw[0]
  cols = (jnp.arange(hw[1]) * x.shape[2]) // hw[1]
  return x[:, rows][:, :, cols]


def upsample2x(x: jax.Array, hw: Sequence[int] | None = None) -> jax.Array:
  """Nearest ×2 upsample of ``x`` (one broadcast, no gather), cropped to ``hw`` when given."""
  b, h, w = x.shape[:3]
  up = jnp.broadcast_to(x[:, :, None, :, None], (b, h, 2, w, 2, *x.shape[3:]))
  up = up.reshape(b, 2 * h, 2 * w, *x.shape[3:])
  return up if hw is None else up[:, :hw[0], :hw[1]]


def pooled_hw(hw: Sequence[int], level: int) -> tuple[int, int]:
  """Spatial size at the input of max-pool ``level`` (1-based) for an ``hw`` image, ceil-mode pools."""
  h, w = hw
  for _ in range(level - 1):
    h, w = -(-h // 2), -(-w // 2)
  return h, w


def longest_side_hw(hw: Sequence[int], side: int) -> tuple[int, int]:
  """``hw`` scaled so its longer side is ``side``, aspect kept (rounded, at least 1): SegNet's smaller
  copies of the content. The rounding of ``io.image_io``'s file resize, which the bottom layers cannot
  share (``tests/test_ops.py`` holds the two equal), so a copy has the shape a file resized to ``side``
  would have."""
  h, w = hw
  scale = side / max(h, w)
  return max(1, round(h * scale)), max(1, round(w * scale))


def window_views(x: jax.Array) -> tuple[jax.Array, ...]:
  """The four pixels of every 2×2 window of ``x`` in raster order, odd sides padded with -inf."""
  if x.shape[1] % 2 or x.shape[2] % 2:
    x = jnp.pad(x, ((0, 0), (0, x.shape[1] % 2), (0, x.shape[2] % 2), (0, 0)), constant_values=-jnp.inf)
  return x[:, 0::2, 0::2], x[:, 0::2, 1::2], x[:, 1::2, 0::2], x[:, 1::2, 1::2]


def max_pool(x: jax.Array) -> jax.Array:
  """2×2 stride-2 max-pool, ceil mode, no indices: the elementwise max of the window views.

  One fused loop and differentiable (SANet's losses backpropagate through the encoder). Not
  ``lax.reduce_window``: XLA:CPU runs that as a loop of its own, and it changed how the rest of the
  program compiled — the plain program at 512² took 17% longer and its image moved by 2e-4, where this
  form is bit-identical to an argmax pool (docs/scaling.md §2, item 8).
  """
  a, b, c, d = window_views(x)
  return jnp.maximum(jnp.maximum(a, b), jnp.maximum(c, d))


def max_pool_indices(x: jax.Array, pooled: jax.Array) -> jax.Array:
  """Position 0..3 (raster order in the 2×2 window) of each window's max, the first one on ties.

  Compare-and-select against ``pooled = max_pool(x)``: elementwise work that fuses into one loop
  (an argmax over a stacked window axis is a variadic reduce, which was 29% of a GPU portrait call).
  Only SegNet's decoder reads the result; where nothing does (plain mode, the style image), XLA
  removes it.
  """
  views = window_views(x)
  indices = jnp.full(pooled.shape, 3, jnp.int8)
  for k in (2, 1, 0):                   # the earliest equal position is selected last: first max wins
    indices = jnp.where(views[k] == pooled, jnp.int8(k), indices)
  return indices


def max_pool_with_indices(x: jax.Array) -> tuple[jax.Array, jax.Array]:
  """2×2 stride-2 max-pool, ceil mode. Returns (pooled, argmax in raster order 0..3 per window)."""
  pooled = max_pool(x)
  return pooled, max_pool_indices(x, pooled)


def max_unpool(x: jax.Array, indices: jax.Array, out_hw: tuple[int, int]) -> jax.Array:
  """SegNet unpooling: puts each value back at its max-pool argmax, zeros elsewhere; crops to out_hw.

  One select: the ×2 upsampled values where the upsampled index equals the pixel's own window
  position, 0 elsewhere.
  """
  rows = jax.lax.broadcasted_iota(jnp.int32, out_hw, 0) % 2
  cols = jax.lax.broadcasted_iota(jnp.int32, out_hw, 1) % 2
  position = (2 * rows + cols).astype(jnp.int8)[None, :, :, None]
  here = upsample2x(indices.astype(jnp.int8), out_hw) == position
  return jnp.where(here, upsample2x(x, out_hw), jnp.zeros((), x.dtype))


def gaussian_taps(sigma: jax.Array, radius: int) -> jax.Array:
  """``[B, 2·radius + 1]`` normalised Gaussian taps, item b cut at ⌈3σ_b⌉ (σ_b < 1/3: identity)."""
  k = jnp.arange(-radius, radius + 1, dtype=jnp.float32)
  sigma = jnp.asarray(sigma, jnp.float32)[:, None]
  taps = jnp.exp(-0.5 * (k / jnp.maximum(sigma, 1e-6)) ** 2)
  taps = jnp.where(jnp.abs(k) <= jnp.ceil(3 * sigma), taps, 0.0)
  return taps / taps.sum(-1, keepdims=True)


def blur_matrix(n: int, sigma: jax.Array, valid: jax.Array, radius: int) -> jax.Array:
  """``[B, n, n]`` matrices A with ``(A @ x)[i] = Σ_k taps[k] · x[clip(i + k − radius, 0, valid − 1)]``:
  the 1-D Gaussian of ``gaussian_taps(sigma, radius)`` with each item's border at its ``valid [B]``
  length replicated (what padding the valid part by its edge values and convolving gives)."""
  taps = gaussian_taps(sigma, radius)                                       # B K
  last_tap = 2 * radius
  i, j = jnp.arange(n)[:, None], jnp.arange(n)[None, :]
  k = j - i + radius                                                        # the tap column j gets from row i
  inner = jnp.where((k >= 0) & (k <= last_tap), taps[:, jnp.clip(k, 0, last_tap)], 0.0)
  upto = lambda m: jnp.where(m >= 0, jnp.take_along_axis(  # Σ_{k ≤ m} taps, per item and row
      jnp.cumsum(taps, -1), jnp.clip(m, 0, last_tap), axis=1), 0.0)
  rows = jnp.broadcast_to(jnp.arange(n), taps.shape[:1] + (n,))
  valid = valid[:, None]
  first = jnp.where(valid == 1, 1.0, upto(radius - rows))                  # positions ≤ 0 land on column 0
  last = 1.0 - upto(valid - 2 - rows + radius)                             # positions ≥ valid − 1 on it
  col, valid = j[None], valid[..., None]
  return (jnp.where((col > 0) & (col < valid - 1), inner, 0.0) + jnp.where(col == 0, first[..., None], 0.0)
          + jnp.where((col == valid - 1) & (valid > 1), last[..., None], 0.0))


def gaussian_blur(x: jax.Array, sigma: float | jax.Array, hw: jax.Array | None = None,
                  max_sigma: float | None = None) -> jax.Array:
  """Separable Gaussian blur of ``[B, H, W]`` with edge-replicated borders.

  ``sigma`` is one σ or one per item; ``hw [B, 2]`` the valid corner of each item (default: all of
  it), whose edges are replicated outwards, so a padded item blurs as it would at its own size.
  ``max_sigma`` bounds σ for the static filter length (default: ``sigma`` itself, which is then static).
  Two matrix products per item (``blur_matrix``), not a convolution: XLA:CPU runs a one-channel
  convolution with a long filter far slower per FLOP than a matmul. One 512² mask on the 2-core CPU,
  σ = 0.1 × 512 (the studio's bound): 0.71 s as a convolution, 7 ms as matrices; σ = 0.01 × 512 (the
  CLI's default feather): 59 ms → 7.5 ms.
  """
  b, h, w = x.shape
  radius = int(math.ceil(3 * (sigma if max_sigma is None else max_sigma)))
  if radius < 1:
    return x
  sigma = jnp.broadcast_to(jnp.asarray(sigma, jnp.float32), (b,))
  hw = jnp.broadcast_to(jnp.asarray([h, w]), (b, 2)) if hw is None else hw
  a_h = blur_matrix(h, sigma, hw[:, 0], radius).astype(x.dtype)
  a_w = blur_matrix(w, sigma, hw[:, 1], radius).astype(x.dtype)
  matmul = functools.partial(jnp.einsum, precision=jax.lax.Precision.HIGHEST)
  return matmul("bik,bjl,bkl->bij", a_h, a_w, x)


def preserve_color(out: jax.Array, content: jax.Array) -> jax.Array:
  """Keeps the content's chroma (YIQ I, Q) and the output's luminance (Gatys et al. 2016).

  ``content`` broadcasts against ``out`` (one content for the ``[R, B, ...]`` regions of a portrait).
  """
  rgb2yiq = jnp.asarray([[0.299, 0.587, 0.114], [0.596, -0.274, -0.322], [0.211, -0.523, 0.312]])
  yiq_out, yiq_c = jnp.broadcast_arrays(out @ rgb2yiq.T, content @ rgb2yiq.T)
  yiq = jnp.concatenate([yiq_out[..., :1], yiq_c[..., 1:]], axis=-1)
  return yiq @ jnp.linalg.inv(rgb2yiq).T
