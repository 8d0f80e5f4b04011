"""SegNet (Badrinarayanan et al. 2017) person segmentation: a decoder that unpools with max-pool indices.

SegNet's decoder upsamples by putting each value back where its encoder max-pool found the maximum
(``ops.max_unpool``), then convolves. Unlike the original (its own VGG-16 encoder, trained with the
decoder), the encoder here is the frozen ImageNet VGG-19 pass the content image already makes for
style transfer, up to relu5_1, so segmentation costs no second VGG pass; only the decoder is trained.
Configurations (``SEGNET_CONFIGS``; the model registry in ``model.py`` names one per model):

- ``"shared"``: four unpool stages (pool4..pool1 indices), two 3×3 convs each, no normalisation,
  ~4.7 M params.
- ``"shared_skip"`` (the default model's): ``"shared"`` plus what it needs to draw boundaries and to see
  whole people: after each unpooling the encoder's own features at that resolution are added
  (``SkipFusion``: relu4_4, relu3_4, relu2_2, relu1_2), and the decoder starts from relu5_1 plus a
  pyramid of its means over 1×1, 2×2 and 4×4 grids (``PyramidContext``). Both start at zero, so
  ``"shared"`` weights load into it unchanged and training goes on from them. +10% decoder FLOPs
  (116 vs 106 GFLOP at 512², ~1% of the portrait program), +1.1 M params.

Both output one person logit per pixel at the input resolution.
"""
from __future__ import annotations

import dataclasses
import functools
from typing import Sequence

import jax
import jax.numpy as jnp
import flax.linen as nn

from jaxstyle.nets.conv import Conv
from jaxstyle.nets.ops import max_unpool, pooled_hw


@dataclasses.dataclass(frozen=True)
class SegNetConfig:
  start: str                                     # encoder feature the decoder starts from
  stages: Sequence[tuple[int, Sequence[int]]]    # (pool level to unpool with, conv widths after it)
  # Encoder feature added after each unpooling (pool level → feature name): boundaries at the unpooled
  # resolution come from the encoder's own features there, which the max-pool indices alone only hint at.
  skips: Sequence[tuple[int, str]] = ()
  # Grid sizes of the pyramid context added to the start feature (``PyramidContext``); () for none.
  context: Sequence[int] = ()


SHARED_STAGES = ((4, (512, 256)), (3, (256, 128)), (2, (128, 64)), (1, (64, 1)))
SEGNET_CONFIGS = {
    "shared": SegNetConfig("relu5_1", SHARED_STAGES),
    "shared_skip": SegNetConfig("relu5_1", SHARED_STAGES,
                                ((4, "relu4_4"), (3, "relu3_4"), (2, "relu2_2"), (1, "relu1_2")), (1, 2, 4)),
}


class SkipFusion(nn.Module):
  """``x + Dense(LayerNorm(skip))``: an encoder feature map added to the unpooled decoder features.

  The per-pixel LayerNorm makes the Caffe VGG's feature scales (means from ~20 to ~560 across blocks)
  irrelevant and needs no batch statistics (CPU batches are 2–4). The projection starts at zero, so a
  decoder trained without skips computes exactly the same function until the skips learn something.
  """
  dtype: jnp.dtype = jnp.float32

  @nn.compact
  def __call__(self, x: jax.Array, skip: jax.Array) -> jax.Array:
    skip = nn.LayerNorm(dtype=jnp.float32, name="norm")(skip.astype(jnp.float32))
    return x + nn.Dense(x.shape[-1], kernel_init=nn.initializers.zeros, dtype=self.dtype,
                        name="proj")(skip.astype(self.dtype))


def grid_means(x: jax.Array, grid: int) -> jax.Array:
  """Means of ``x [B, H, W, C]`` over a ``grid``×``grid`` partition of its spatial axes (cells of
  ⌊·⌋/⌈·⌉ sizes, as PSPNet's adaptive average pooling); ``[B, grid, grid, C]``."""
  def cells(n):
    edges = [(i * n) // grid for i in range(grid)] + [n]
    return [(edges[i], max(edges[i + 1], edges[i] + 1)) for i in range(grid)]
  return jnp.stack([jnp.stack([x[:, r0:r1, c0:c1].mean(axis=(1, 2)) for c0, c1 in cells(x.shape[2])], 1)
                    for r0, r1 in cells(x.shape[1])], 1)


class PyramidContext(nn.Module):
  """``x + Dense(concat_g upsample(LayerNorm(grid_means(x, g))))``: the whole picture's context.

  At relu5_1 a 512² image is 32×32 positions whose receptive fields (~200 px) are smaller than a close
  face: its middle looks like skin, not like part of a person. Means over 1×1, 2×2 and 4×4 grids (PSPNet,
  Zhao et al. 2017) tell every position what the rest of the picture holds. Zero-initialised like
  ``SkipFusion``.
  """
  grids: Sequence[int]
  dtype: jnp.dtype = jnp.float32

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    b, h, w, c = x.shape
    pooled = []
    for g in self.grids:
      m = nn.LayerNorm(dtype=jnp.float32, name=f"norm{g}")(grid_means(x.astype(jnp.float32), g))
      pooled.append(jax.image.resize(m, (b, h, w, c), "bilinear"))
    context = jnp.concatenate(pooled, axis=-1).astype(self.dtype)
    return x + nn.Dense(c, kernel_init=nn.initializers.zeros, dtype=self.dtype, name="proj")(context)


class SegNetDecoder(nn.Module):
  config: SegNetConfig = SEGNET_CONFIGS["shared"]
  formulation: str = "auto"
  dtype: jnp.dtype = jnp.float32

  @nn.compact
  def __call__(self, features: dict[str, jax.Array], image_hw: tuple[int, int]) -> jax.Array:
    conv = functools.partial(Conv, padding="zero", formulation=self.formulation, dtype=self.dtype)
    x = features[self.config.start].astype(self.dtype)
    if self.config.context:
      x = PyramidContext(self.config.context, self.dtype, name="context")(x)
    n_stages = len(self.config.stages)
    skips = dict(self.config.skips)
    for s, (level, widths) in enumerate(self.config.stages):
      x = max_unpool(x, features[f"pool{level}_indices"], pooled_hw(image_hw, level))
      if level in skips:
        x = SkipFusion(self.dtype, name=f"skip{level}")(x, features[skips[level]])
      for i, width in enumerate(widths):
        last = s == n_stages - 1 and i == len(widths) - 1   # the logits: no ReLU
        x = conv(width, relu=not last, name=f"unpool{level}_conv{i + 1}")(x)
    return x[..., 0].astype(jnp.float32)
