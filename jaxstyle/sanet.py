"""Style-attentional network (Park & Lee, CVPR 2019) and the multi-level transform.

``SANet``: ``O = out_conv(softmax(F(norm(c))ᵀ G(norm(s))) · H(s)) + c`` with 1×1 convs f, g, h.
``Transform``: ``merge_conv(W1·sanet4_1(c4, s4) + W2·resize(sanet5_1(c5, s5)))``, where the relu5_1 branch
is resized to the relu4_1 shape (SANet's fixed ×2 upsample breaks on odd sizes) and W1/W2 are the
per-region weights of the portrait method (W1 = W2 = 1 is SANet as published).

Attention runs in query chunks so no N×N matrix larger than ``chunk × N_style`` ever exists: at 2048² the
full relu4_1 attention would be 65536² floats (17 GB in f32). Each chunk is
``jax.nn.dot_product_attention`` with ``scale=1``, so XLA fuses softmax and both matmuls per chunk.
"""
from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import flax.linen as nn

from jaxstyle.conv import Conv

EPS = 1e-5


def mean_std(x: jax.Array, eps: float = EPS) -> tuple[jax.Array, jax.Array]:
  """Per-channel spatial mean and std of NHWC ``x`` (unbiased variance, as PyTorch's SANet), in f32."""
  x = x.astype(jnp.float32)
  n = x.shape[1] * x.shape[2]
  mean = x.mean(axis=(1, 2), keepdims=True)
  var = ((x - mean) ** 2).sum(axis=(1, 2), keepdims=True) / max(n - 1, 1)
  return mean, jnp.sqrt(var + eps)


def mean_variance_norm(x: jax.Array) -> jax.Array:
  mean, std = mean_std(x)
  return ((x.astype(jnp.float32) - mean) / std).astype(x.dtype)


def attention(q: jax.Array, k: jax.Array, v: jax.Array, chunk: int = 4096) -> jax.Array:
  """softmax(q kᵀ) v over ``[B, N, C]`` arrays, scale 1, in query chunks of at most ``chunk``."""
  b, n, c = q.shape
  attend = lambda qc: jax.nn.dot_product_attention(
      qc[:, :, None, :], k[:, :, None, :], v[:, :, None, :], scale=1.0)[:, :, 0, :]
  if n <= chunk:
    return attend(q)
  n_chunks = -(-n // chunk)
  q = jnp.pad(q, ((0, 0), (0, n_chunks * chunk - n), (0, 0)))
  q = q.reshape(b, n_chunks, chunk, c).swapaxes(0, 1)
  out = jax.lax.map(attend, q)                                   # n_chunks b chunk c
  return out.swapaxes(0, 1).reshape(b, n_chunks * chunk, c)[:, :n]


class SANet(nn.Module):
  channels: int = 512
  chunk: int = 4096
  formulation: str = "auto"
  dtype: jnp.dtype = jnp.float32

  @nn.compact
  def __call__(self, content: jax.Array, style: jax.Array) -> jax.Array:
    conv1x1 = functools.partial(Conv, self.channels, kernel_size=1, formulation=self.formulation,
                                dtype=self.dtype)
    f = conv1x1(name="f")(mean_variance_norm(content))
    g = conv1x1(name="g")(mean_variance_norm(style))
    h = conv1x1(name="h")(style)
    b, hc, wc, c = f.shape
    flat = lambda x: x.reshape(x.shape[0], -1, x.shape[-1])
    o = attention(flat(f), flat(g), flat(h), self.chunk).reshape(b, hc, wc, c)
    return conv1x1(name="out_conv")(o) + content.astype(self.dtype)


def resize_to(x: jax.Array, hw: tuple[int, int]) -> jax.Array:
  """Nearest-neighbour resize of NHWC ``x`` to ``hw``; for an exact ×2 it equals PyTorch's Upsample."""
  if x.shape[1:3] == tuple(hw):
    return x
  rows = (jnp.arange(hw[0]) * x.shape[1]) // hw[0]
  cols = (jnp.arange(hw[1]) * x.shape[2]) // hw[1]
  return x[:, rows][:, :, cols]


class Transform(nn.Module):
  """Both SANets and the merge conv. ``weights`` is a ``[R, 2]`` array of (W1, W2) rows, one per region.

  The attention of each level is computed once; the R weighted merges share it. Returns ``[R, B, h, w, C]``.
  """
  channels: int = 512
  chunk: int = 4096
  formulation: str = "auto"
  dtype: jnp.dtype = jnp.float32

  @nn.compact
  def __call__(self, c4, s4, c5, s5, weights: jax.Array) -> jax.Array:
    sanet = functools.partial(SANet, self.channels, self.chunk, self.formulation, self.dtype)
    o4 = sanet(name="sanet4_1")(c4, s4)
    o5 = resize_to(sanet(name="sanet5_1")(c5, s5), o4.shape[1:3])
    weights = jnp.asarray(weights, self.dtype)
    mixed = weights[:, 0, None, None, None, None] * o4 + weights[:, 1, None, None, None, None] * o5
    r, b = mixed.shape[:2]
    merge = Conv(self.channels, 3, padding="reflect", formulation=self.formulation, dtype=self.dtype,
                 name="merge_conv")
    out = merge(mixed.reshape(r * b, *mixed.shape[2:]))
    return out.reshape(r, b, *out.shape[1:])
