"""SANet training losses (Park & Lee 2019, eq. 4–7) and the SegNet loss.

All take dicts of VGG features (``relu1_1``..``relu5_1``) or images in [0, 1] and return f32 scalars;
"mse" is PyTorch's ``MSELoss`` (mean over every element), as in the published SANet code.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp

from jaxstyle.nets.ops import mean_std, mean_variance_norm
from jaxstyle.nets.vgg import STYLE_LAYERS

CONTENT_LAYERS = ("relu4_1", "relu5_1")


def mse(a: jax.Array, b: jax.Array) -> jax.Array:
  return jnp.mean((a.astype(jnp.float32) - b.astype(jnp.float32)) ** 2)


def content_loss(out_feats: dict, content_feats: dict) -> jax.Array:
  """Mean-variance-normalised feature distance at relu4_1 and relu5_1."""
  return sum(mse(mean_variance_norm(out_feats[k]), mean_variance_norm(content_feats[k]))
             for k in CONTENT_LAYERS)


def style_loss(out_feats: dict, style_feats: dict) -> jax.Array:
  """Distance of per-channel means and stds at relu1_1..relu5_1."""
  total = 0.0
  for k in STYLE_LAYERS:
    (mo, so), (ms, ss) = mean_std(out_feats[k]), mean_std(style_feats[k])
    total = total + mse(mo, ms) + mse(so, ss)
  return total


def identity_pixel_loss(i_cc: jax.Array, content: jax.Array, i_ss: jax.Array, style: jax.Array):
  """λ_identity1 term: I_cc should reproduce the content image, I_ss the style image."""
  return mse(i_cc, content) + mse(i_ss, style)


def identity_feature_loss(f_cc: dict, content_feats: dict, f_ss: dict, style_feats: dict):
  """λ_identity2 term: the same at every style layer of VGG."""
  return sum(mse(f_cc[k], content_feats[k]) + mse(f_ss[k], style_feats[k]) for k in STYLE_LAYERS)


def segmentation_loss(logits: jax.Array, target: jax.Array, dice_weight: float = 1.0) -> jax.Array:
  """Binary cross-entropy on person logits plus ``dice_weight`` × soft Dice; ``target`` in [0, 1]."""
  logits, target = logits.astype(jnp.float32), target.astype(jnp.float32)
  bce = jnp.mean(jnp.maximum(logits, 0) - logits * target + jnp.log1p(jnp.exp(-jnp.abs(logits))))
  p = jax.nn.sigmoid(logits)
  inter = jnp.sum(p * target, axis=(1, 2))
  dice = 1.0 - (2 * inter + 1.0) / (jnp.sum(p, axis=(1, 2)) + jnp.sum(target, axis=(1, 2)) + 1.0)
  return bce + dice_weight * jnp.mean(dice)


def iou(pred_mask: jax.Array, target: jax.Array) -> jax.Array:
  """Per-image IoU of binary masks (thresholded at 0.5), 1 where both are empty."""
  p, t = pred_mask > 0.5, target > 0.5
  inter = jnp.sum(p & t, axis=(1, 2))
  union = jnp.sum(p | t, axis=(1, 2))
  return jnp.where(union > 0, inter / jnp.maximum(union, 1), 1.0)
