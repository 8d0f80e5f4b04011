"""VGG encoder (Simonyan & Zisserman 2015): the frozen feature extractor of SANet and SegNet.

Inputs are NHWC RGB images in [0, 1]; the network applies its own input convention (``preprocess``):

- ``"caffe"``: the original ImageNet weights (Oxford / Keras ``vgg19_weights_tf_dim_ordering``): BGR,
  0–255, minus the mean pixel (103.939, 116.779, 123.68); zero padding as in training.
- ``"torchvision"``: torchvision's ``vgg19``: RGB, ImageNet mean/std normalisation, zero padding.
- ``"normalised"``: AdaIN/SANet's ``vgg_normalised.pth``: a leading learnt 1×1 conv (``conv0``) takes the
  [0, 1] RGB input; reflection padding.

Max-pools are 2×2/2 with ``ceil_mode`` (``ops.max_pool_with_indices``): the max of the four window
views, plus, as a separate compare-and-select, their argmax positions (0..3 within each window, first
max on ties), which SegNet's decoder unpools with. The forward pass returns every
intermediate ``relu{block}_{i}``, ``pool{block}`` and ``pool{block}_indices``; XLA removes the unused
ones, so a program without SegNet (plain mode, the style image) computes no indices at all.
"""
from __future__ import annotations

import functools
from typing import Sequence

import jax
import jax.numpy as jnp
import flax.linen as nn

from jaxstyle.nets.conv import Conv
from jaxstyle.nets.ops import max_pool_with_indices

VGG19_BLOCKS = ((64, 64), (128, 128), (256,) * 4, (512,) * 4, (512,) * 4)

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
        x = conv(features, relu=True, name=f"conv{b}_{i}")(x)
        out[f"relu{b}_{i}"] = x
        if self.depth == f"relu{b}_{i}":
          return out
    x, out[f"pool{len(self.blocks)}_indices"] = max_pool_with_indices(x)
    out[f"pool{len(self.blocks)}"] = x
    if self.depth != f"pool{len(self.blocks)}":
      raise ValueError(f"VGG depth {self.depth!r} is not a layer of this network")
    return out


VGG19 = functools.partial(VGG, blocks=VGG19_BLOCKS)
