"""Style-attentional network (Park & Lee, CVPR 2019) and the multi-level transform.

``SANet``: ``O = out_conv(softmax(F(norm(c))ᵀ G(norm(s))) · H(s)) + c`` with 1×1 convs f, g, h.
``Transform``: ``merge_conv(W1·sanet4_1(c4, s4) + W2·resize(sanet5_1(c5, s5)))``, where the relu5_1 branch
is resized to the relu4_1 shape (SANet's fixed ×2 upsample breaks on odd sizes) and W1/W2 are the
per-region weights of the portrait method (W1 = W2 = 1 is SANet as published).

Attention runs in query chunks so no N×N matrix larger than ``chunk × N_style`` ever exists: at 2048² the
full relu4_1 attention would be 65536² floats (17 GB in f32). The chunk also shrinks so that one image's
score block stays within ``max_scores`` entries (default ``MAX_SCORES``, 256 MiB in f32): 4096 queries
up to 1024² images, 1024 at 2048² (``docs/scaling.md`` has the compiled programs' memory). Both limits
are Flax module fields (``ModelConfig.attention_chunk`` / ``attention_max_scores``);
``model.unchunked`` lifts them for FLOP counting, as XLA's cost analysis counts the body of the
chunk loop once. Each chunk is
``jax.nn.dot_product_attention`` with ``scale=1``, so XLA fuses softmax and both matmuls per chunk;
with the ``"onednn"`` conv formulation (bf16 on CPUs with bf16 units) the two products run on oneDNN
instead (``onednn.matmul``) and the softmax, in float32, stays with XLA.
"""
from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import flax.linen as nn

from jaxstyle.nets import onednn
from jaxstyle.nets.conv import Conv, resolve_formulation
from jaxstyle.nets.ops import mean_variance_norm, resize_nearest

# Most attention scores (query × key pairs) one image holds at a time: 2**26 floats = 256 MiB in f32.
MAX_SCORES = 2**26


def query_chunk(n_keys: int, chunk: int = 4096, max_scores: int = MAX_SCORES) -> int:
  """Queries per attention block: at most ``chunk`` and ``max_scores / n_keys`` (≥ 128)."""
  return max(min(chunk, max_scores // n_keys), min(chunk, 128))


def attention_onednn(q: jax.Array, k: jax.Array, v: jax.Array, key_mask: jax.Array | None = None) -> jax.Array:
  """softmax(q kᵀ) v of ``[B, N, C]`` arrays with both products on oneDNN, the scores in float32."""
  scores = onednn.matmul(q, k, transpose_b=True, out_dtype=jnp.float32)
  if key_mask is not None:
    scores = jnp.where(key_mask[:, None, :], scores, jnp.finfo(jnp.float32).min)
  return onednn.matmul(jax.nn.softmax(scores, axis=-1).astype(v.dtype), v)


def attention(q: jax.Array, k: jax.Array, v: jax.Array, chunk: int = 4096,
              max_scores: int = MAX_SCORES, key_mask: jax.Array | None = None,
              formulation: str = "auto") -> jax.Array:
  """softmax(q kᵀ) v over ``[B, N, C]`` arrays, scale 1, in query chunks (``query_chunk``).

  ``key_mask [B, N_keys]`` (True = valid): masked keys get no attention weight (padding of a bucket).
  ``formulation``: the conv formulation; ``"onednn"`` puts both products on oneDNN.
  """
  b, n, c = q.shape
  chunk = query_chunk(k.shape[1], chunk, max_scores)
  mask = None if key_mask is None else key_mask[:, None, None, :]
  if resolve_formulation(formulation, q.dtype) == "onednn":
    attend = lambda qc: attention_onednn(qc, k, v, key_mask)
  else:
    attend = lambda qc: jax.nn.dot_product_attention(
        qc[:, :, None, :], k[:, :, None, :], v[:, :, None, :], mask=mask, scale=1.0)[:, :, 0, :]
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
  max_scores: int = MAX_SCORES

  @nn.compact
  def __call__(self, content: jax.Array, style: jax.Array, content_mask: jax.Array | None = None,
               style_mask: jax.Array | None = None) -> jax.Array:
    """``*_mask [B, h, w]`` (True = valid) mark the real positions of padded inputs: statistics and
    attention keys come from them only, so the valid part of the output is that of the unpadded pair."""
    conv1x1 = functools.partial(Conv, self.channels, kernel_size=1, formulation=self.formulation,
                                dtype=self.dtype)
    f = conv1x1(name="f")(mean_variance_norm(content, content_mask))
    g = conv1x1(name="g")(mean_variance_norm(style, style_mask))
    h = conv1x1(name="h")(style)
    b, hc, wc, c = f.shape
    flat = lambda x: x.reshape(x.shape[0], -1, x.shape[-1])
    keys = None if style_mask is None else style_mask.reshape(b, -1)
    o = attention(flat(f), flat(g), flat(h), self.chunk, self.max_scores, keys,
                  self.formulation).reshape(b, hc, wc, c)
    return conv1x1(name="out_conv")(o) + content.astype(self.dtype)


def weigh(o4: jax.Array, o5: jax.Array, weights: jax.Array) -> jax.Array:
  """``W1·o4 + W2·o5`` for each row (W1, W2) of ``weights [R, 2]``: ``[R, B, h, w, C]``."""
  weights = jnp.asarray(weights, o4.dtype)
  return weights[:, 0, None, None, None, None] * o4 + weights[:, 1, None, None, None, None] * o5


class Transform(nn.Module):
  """Both SANets and the merge conv. ``weights`` is a ``[R, 2]`` array of (W1, W2) rows, one per region.

  ``attend`` runs the two SANets once; ``merge`` applies the 3×3 merge conv to ``[R, B, h, w, C]``
  weighted sums of their outputs, so R regions share one attention. ``__call__`` is both, as published
  (W1 = W2 = 1). Returns ``[R, B, h, w, C]``.
  """
  channels: int = 512
  chunk: int = 4096
  formulation: str = "auto"
  dtype: jnp.dtype = jnp.float32
  max_scores: int = MAX_SCORES

  def setup(self):
    sanet = functools.partial(SANet, self.channels, self.chunk, self.formulation, self.dtype,
                              self.max_scores)
    self.sanet4_1 = sanet()
    self.sanet5_1 = sanet()
    self.merge_conv = Conv(self.channels, 3, padding="reflect", formulation=self.formulation,
                           dtype=self.dtype)

  def attend(self, c4, s4, c5, s5, masks: tuple | None = None) -> tuple[jax.Array, jax.Array]:
    """(sanet4_1(c4, s4), sanet5_1(c5, s5) resized to the relu4_1 shape).

    ``masks``: the valid positions (c4, s4, c5, s5) of padded inputs (``SANet``), or None.
    """
    m4c, m4s, m5c, m5s = masks or (None,) * 4
    o4 = self.sanet4_1(c4, s4, m4c, m4s)
    return o4, resize_nearest(self.sanet5_1(c5, s5, m5c, m5s), o4.shape[1:3])

  def merge(self, mixed: jax.Array) -> jax.Array:
    r, b = mixed.shape[:2]
    # Batch-major [B·R]: a batch sharded over devices stays sharded (an [R·B] merge would gather it).
    out = self.merge_conv(mixed.swapaxes(0, 1).reshape(b * r, *mixed.shape[2:]))
    return out.reshape(b, r, *out.shape[1:]).swapaxes(0, 1)

  def __call__(self, c4, s4, c5, s5, weights: jax.Array) -> jax.Array:
    return self.merge(weigh(*self.attend(c4, s4, c5, s5), weights))
