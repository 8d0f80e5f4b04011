"""VGG encoder (Simonyan & Zisserman 2015): the frozen feature extractor of SANet and SegNet.

Inputs are NHWC RGB images in [0, 1]; the network applies its own input convention (``preprocess``):

- ``"caffe"``: the original ImageNet weights (Oxford / Keras ``vgg19_weights_tf_dim_ordering``): BGR,
  0–255, minus the mean pixel (103.939, 116.779, 123.68); zero padding as in training.
- ``"torchvision"``: torchvision's ``vgg19``: RGB, ImageNet mean/std normalisation, zero padding.
- ``"normalised"``: AdaIN/SANet's ``vgg_normalised.pth``: a leading learnt 1×1 conv (``conv0``) takes the
  [0, 1] RGB input; reflection padding.

Max-pools are 2×2/2 with ``ceil_mode`` (odd sizes round up, as the SANet encoder does): the max of the
four window views, plus, as a separate compare-and-select, their argmax positions (0..3 within each
window, first max on ties), which SegNet's decoder unpools with. The forward pass returns every
intermediate ``relu{block}_{i}``, ``pool{block}`` and ``pool{block}_indices``; XLA removes the unused
ones, so a program without SegNet (plain mode, the style image) computes no indices at all.
"""
from __future__ import annotations

import functools
from typing import Sequence

import jax
import jax.numpy as jnp
import flax.linen as nn

from jaxstyle.conv import Conv

VGG16_BLOCKS = ((64, 64), (128, 128), (256, 256, 256), (512, 512, 512), (512, 512, 512))
VGG19_BLOCKS = ((64, 64), (128, 128), (256,) * 4, (512,) * 4, (512,) * 4)
TINY_BLOCKS = ((4, 4), (8, 8), (8, 8), (16, 16), (16, 16))  # tests only

CAFFE_MEAN_BGR = (103.939, 116.779, 123.68)
IMAGENET_MEAN_RGB = (0.485, 0.456, 0.406)
IMAGENET_STD_RGB = (0.229, 0.224, 0.225)
PADDING_FOR = {"caffe": "zero", "torchvision": "zero", "normalised": "reflect"}

# Layers whose features style transfer uses.
STYLE_LAYERS = ("relu1_1", "relu2_1", "relu3_1", "relu4_1", "relu5_1")


def layer_names(blocks: Sequence[Sequence[int]]) -> list[str]:
  """Conv layer names in forward order: conv1_1, conv1_2, ..., conv5_4."""
  return [f"conv{b + 1}_{i + 1}" for b, block in enumerate(blocks) for i in range(len(block))]


def preprocess(x: jax.Array, mode: str) -> jax.Array:
  if mode == "caffe":
    return x[..., ::-1] * 255.0 - jnp.asarray(CAFFE_MEAN_BGR, x.dtype)
  if mode == "torchvision":
    return (x - jnp.asarray(IMAGENET_MEAN_RGB, x.dtype)) / jnp.asarray(IMAGENET_STD_RGB, x.dtype)
  if mode == "normalised":
    return x
  raise ValueError(f"unknown VGG preprocess {mode!r}")


def _pool_padding(hw: Sequence[int]) -> tuple[tuple[int, int], ...]:
  """ceil mode: one row/column of -inf below/right of an odd side."""
  return ((0, 0), (0, hw[0] % 2), (0, hw[1] % 2), (0, 0))


def _window_views(x: jax.Array) -> tuple[jax.Array, ...]:
  """The four pixels of every 2×2 window of NHWC ``x`` in raster order, odd sides padded with -inf."""
  if x.shape[1] % 2 or x.shape[2] % 2:
    x = jnp.pad(x, _pool_padding(x.shape[1:3]), constant_values=-jnp.inf)
  return x[:, 0::2, 0::2], x[:, 0::2, 1::2], x[:, 1::2, 0::2], x[:, 1::2, 1::2]


def max_pool(x: jax.Array) -> jax.Array:
  """2×2 stride-2 max-pool of NHWC ``x``, ceil mode, no indices: the elementwise max of the window views.

  One fused loop and differentiable (SANet's losses backpropagate through the encoder). Not
  ``lax.reduce_window``: XLA:CPU runs that as a loop of its own, and it changed how the rest of the
  program compiled — the plain program at 512² took 17% longer and its image moved by 2e-4, where this
  form is bit-identical to the previous pool (docs/scaling.md §2, item 8).
  """
  a, b, c, d = _window_views(x)
  return jnp.maximum(jnp.maximum(a, b), jnp.maximum(c, d))


def max_pool_indices(x: jax.Array, pooled: jax.Array) -> jax.Array:
  """Position 0..3 (raster order in the 2×2 window) of each window's max, the first one on ties.

  Compare-and-select against ``pooled = max_pool(x)``: elementwise work that fuses into one loop
  (an argmax over a stacked window axis is a variadic reduce, which was 29% of a GPU portrait call).
  Only SegNet's decoder reads the result; where nothing does (plain mode, the style image), XLA
  removes it.
  """
  views = _window_views(x)
  indices = jnp.full(pooled.shape, 3, jnp.int8)
  for k in (2, 1, 0):                   # the earliest equal position is selected last: first max wins
    indices = jnp.where(views[k] == pooled, jnp.int8(k), indices)
  return indices


def max_pool_with_indices(x: jax.Array) -> tuple[jax.Array, jax.Array]:
  """2×2 stride-2 max-pool, ceil mode. Returns (pooled, argmax in raster order 0..3 per window)."""
  pooled = max_pool(x)
  return pooled, max_pool_indices(x, pooled)


def _upsample2(x: jax.Array, hw: tuple[int, int]) -> jax.Array:
  """Nearest ×2 upsample of the spatial axes of ``x``, cropped to ``hw``."""
  b, h, w, c = x.shape
  up = jnp.broadcast_to(x[:, :, None, :, None], (b, h, 2, w, 2, c)).reshape(b, 2 * h, 2 * w, c)
  return up[:, :hw[0], :hw[1]]


def max_unpool(x: jax.Array, indices: jax.Array, out_hw: tuple[int, int]) -> jax.Array:
  """SegNet unpooling: puts each value back at its max-pool argmax, zeros elsewhere; crops to out_hw.

  One select: the ×2 upsampled values where the upsampled index equals the pixel's own window
  position, 0 elsewhere.
  """
  rows = jax.lax.broadcasted_iota(jnp.int32, out_hw, 0) % 2
  cols = jax.lax.broadcasted_iota(jnp.int32, out_hw, 1) % 2
  position = (2 * rows + cols).astype(jnp.int8)[None, :, :, None]
  here = _upsample2(indices.astype(jnp.int8), out_hw) == position
  return jnp.where(here, _upsample2(x, out_hw), jnp.zeros((), x.dtype))


class VGG(nn.Module):
  """VGG encoder up to ``depth`` (a ``relu{b}_{i}`` or ``pool{b}`` name)."""
  blocks: Sequence[Sequence[int]] = VGG19_BLOCKS
  preprocess: str = "caffe"
  depth: str = "relu5_1"
  formulation: str = "auto"
  dtype: jnp.dtype = jnp.float32

  @nn.compact
  def __call__(self, x: jax.Array) -> dict[str, jax.Array]:
    padding = PADDING_FOR[self.preprocess]
    conv = functools.partial(Conv, padding=padding, formulation=self.formulation, dtype=self.dtype)
    x = preprocess(x.astype(jnp.float32), self.preprocess).astype(self.dtype)
    if self.preprocess == "normalised":
      x = Conv(3, kernel_size=1, formulation=self.formulation, dtype=self.dtype, name="conv0")(x)
    out = {}
    for b, block in enumerate(self.blocks, start=1):
      if b > 1:
        x, out[f"pool{b - 1}_indices"] = max_pool_with_indices(x)   # XLA drops unread indices
        out[f"pool{b - 1}"] = x
        if self.depth == f"pool{b - 1}":
          return out
      for i, features in enumerate(block, start=1):
        x = nn.relu(conv(features, name=f"conv{b}_{i}")(x))
        out[f"relu{b}_{i}"] = x
        if self.depth == f"relu{b}_{i}":
          return out
    x, out[f"pool{len(self.blocks)}_indices"] = max_pool_with_indices(x)
    out[f"pool{len(self.blocks)}"] = x
    if self.depth != f"pool{len(self.blocks)}":
      raise ValueError(f"VGG depth {self.depth!r} is not a layer of this network")
    return out


VGG16 = functools.partial(VGG, blocks=VGG16_BLOCKS)
VGG19 = functools.partial(VGG, blocks=VGG19_BLOCKS)
