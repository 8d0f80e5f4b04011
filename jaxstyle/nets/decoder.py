"""SANet/AdaIN decoder: VGG-19 mirrored from relu4_1 back to an RGB image in [0, 1].

Nearest ×2 upsampling and reflection padding, layer for layer the ``decoder`` ``nn.Sequential`` of the
published SANet code (so ``decoder_iter_*.pth`` imports 1:1). Output is cropped to ``out_hw`` so inputs
whose sides are not multiples of 8 come back at their own size. Each upsample is handed to the conv
after it (``conv.upsample_conv``), which may skip forming the upsampled image.
"""
from __future__ import annotations

import functools
from typing import Sequence

import jax
import jax.numpy as jnp
import flax.linen as nn

from jaxstyle.nets.conv import Conv
from jaxstyle.nets.ops import upsample2x

# (name, output channels, upsample ×2 after the ReLU) in forward order.
DECODER_LAYERS = (
    ("conv4_1", 256, True),
    ("conv3_4", 256, False), ("conv3_3", 256, False), ("conv3_2", 256, False), ("conv3_1", 128, True),
    ("conv2_2", 128, False), ("conv2_1", 64, True),
    ("conv1_2", 64, False), ("conv1_1", 3, False),
)


class Decoder(nn.Module):
  layers: Sequence[tuple[str, int, bool]] = DECODER_LAYERS
  formulation: str = "auto"
  dtype: jnp.dtype = jnp.float32

  @nn.compact
  def __call__(self, x: jax.Array, out_hw: tuple[int, int] | None = None) -> jax.Array:
    conv = functools.partial(Conv, padding="reflect", formulation=self.formulation, dtype=self.dtype)
    x = x.astype(self.dtype)
    upsample = False
    for i, (name, features, upsample_after) in enumerate(self.layers):
      # The ×2 upsample rides with the next conv; every conv but the last one has a ReLU.
      x = conv(features, relu=i < len(self.layers) - 1, name=name)(x, upsample=upsample)
      upsample = upsample_after
    if upsample:
      x = upsample2x(x)
    if out_hw is not None:
      x = x[:, :out_hw[0], :out_hw[1]]
    return x
