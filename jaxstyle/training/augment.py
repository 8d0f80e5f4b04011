"""Person-mask training data made varied inside the jitted step: composites and photometric noise.

A few hundred portraits teach SegNet their own backgrounds. ``paste`` cuts a person out with its mask and
puts it on a person-free photo at a random scale (log-uniform, 0.5–2× the crop's height) and position,
so the decoder must find people by what they look like, not by where portraits put them. ``photometric``
then changes brightness, contrast, saturation and white balance, blurs (upscaled thumbnails and phone
photos are soft), adds sensor noise and JPEG blocking. Image and mask go through the same geometry, so
they stay aligned; only the image gets the photometric noise.

Every draw comes from a key the caller folds from ``(seed, stream, step)``: a resumed run sees the same
batches as an uninterrupted one.
"""
from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np

from jaxstyle.nets import ops


@dataclasses.dataclass(frozen=True)
class AugmentConfig:
  paste_prob: float = 0.5                # of the samples: a person pasted on a person-free photo
  negative_prob: float = 0.1             # a person-free photo alone (all-background target)
  scale_range: tuple[float, float] = (0.5, 2.0)   # person height / crop height when pasted
  brightness: float = 0.3                # × U(1 − b, 1 + b)
  contrast: float = 0.3
  saturation: float = 0.4
  white_balance: float = 0.1             # per-channel gains × U(1 − w, 1 + w)
  blur_prob: float = 0.3
  blur_sigma: float = 2.0                # max Gaussian σ in pixels
  noise: float = 0.03                    # max std of additive Gaussian noise
  jpeg_prob: float = 0.3
  jpeg_quality: tuple[int, int] = (20, 90)


NO_AUGMENT = AugmentConfig(paste_prob=0.0, negative_prob=0.0, brightness=0.0, contrast=0.0,
                           saturation=0.0, white_balance=0.0, blur_prob=0.0, noise=0.0, jpeg_prob=0.0)

BLUR_RADIUS = 6   # taps each side: covers 3σ of the largest blur (``blur_sigma``)


def paste(person: jax.Array, width: jax.Array, transposed: jax.Array, background: jax.Array,
          key: jax.Array, scale_range: tuple[float, float]) -> tuple[jax.Array, jax.Array]:
  """One person (a stored RGB+mask image, ``data.ResidentImages`` layout) pasted on ``background``.

  ``person [H, Wmax, 4]`` uint8 or float in [0, 1]; its valid width is ``width`` and it is stored
  transposed when ``transposed``. ``background [S, S, 3]`` in [0, 1]. Returns (image ``[S, S, 3]``,
  mask ``[S, S]``): the person layer resampled to a height of ``scale × S`` at a random offset (the
  layer may overhang the crop; one shorter than the crop stands on its bottom edge) and alpha-blended
  by its own mask.
  """
  size = background.shape[0]
  height = person.shape[0]
  k_scale, k_y, k_x = jax.random.split(key, 3)
  lo, hi = np.log(scale_range[0]), np.log(scale_range[1])
  f = jnp.exp(jax.random.uniform(k_scale, (), minval=lo, maxval=hi)) * size / height
  ext_h, ext_w = height * f, width.astype(jnp.float32) * f

  def offset(k, extent):
    return jax.random.uniform(k, (), minval=jnp.minimum(0.0, size - extent),
                              maxval=jnp.maximum(0.0, size - extent))

  # A person smaller than the crop stands on its bottom edge: portraits end where the frame cuts them,
  # and a torso cut off in mid-air is a border no real photo has.
  top = jnp.where(ext_h < size, size - ext_h, offset(k_y, ext_h))
  layer = jax.image.scale_and_translate(
      person.astype(jnp.float32) / (255.0 if person.dtype == jnp.uint8 else 1.0), (size, size, 4),
      (0, 1), jnp.stack([f, f]), jnp.stack([top, offset(k_x, ext_w)]), "linear")
  layer = jnp.where(transposed, layer.transpose(1, 0, 2), layer)
  alpha = jnp.clip(layer[..., 3], 0.0, 1.0)
  image = alpha[..., None] * layer[..., :3] + (1 - alpha[..., None]) * background
  return image, alpha


def blur(image: jax.Array, sigma: jax.Array) -> jax.Array:
  """Gaussian blur of ``[H, W, C]`` with edge padding (``ops.gaussian_blur``, channels as items)."""
  channels = image.transpose(2, 0, 1)
  out = ops.gaussian_blur(channels, jnp.broadcast_to(sigma, channels.shape[:1]), max_sigma=BLUR_RADIUS / 3)
  return out.transpose(1, 2, 0)


def _dct_matrix(n: int = 8) -> np.ndarray:
  k, i = np.meshgrid(np.arange(n), np.arange(n), indexing="ij")
  m = np.cos(np.pi * (2 * i + 1) * k / (2 * n)) * np.sqrt(2.0 / n)
  m[0] /= np.sqrt(2.0)
  return m.astype(np.float32)   # orthonormal DCT-II: rows are the basis vectors


# The JPEG standard's luminance quantisation table (ITU-T T.81, Annex K), used for every channel.
_JPEG_LUMA = np.array([
    [16, 11, 10, 16, 24, 40, 51, 61], [12, 12, 14, 19, 26, 58, 60, 55],
    [14, 13, 16, 24, 40, 57, 69, 56], [14, 17, 22, 29, 51, 87, 80, 62],
    [18, 22, 37, 56, 68, 109, 103, 77], [24, 35, 55, 64, 81, 104, 113, 92],
    [49, 64, 78, 87, 103, 121, 120, 101], [72, 92, 95, 98, 112, 100, 103, 99]], np.float32)


def jpeg_blocks(image: jax.Array, quality: jax.Array) -> jax.Array:
  """JPEG's lossy step on ``[H, W, 3]`` (H, W multiples of 8): 8×8 DCT of YCbCr, quantised with the
  standard table scaled for ``quality`` (1–100), rounded and transformed back. No chroma subsampling."""
  h, w, _ = image.shape
  q = jnp.where(quality < 50, 5000.0 / quality, 200.0 - 2.0 * quality)
  table = jnp.clip(jnp.floor((_JPEG_LUMA * q + 50.0) / 100.0), 1.0, 255.0)
  to_ycc = jnp.asarray([[0.299, 0.587, 0.114], [-0.168736, -0.331264, 0.5], [0.5, -0.418688, -0.081312]])
  ycc = (image * 255.0) @ to_ycc.T - jnp.asarray([128.0, 0.0, 0.0])
  blocks = ycc.reshape(h // 8, 8, w // 8, 8, 3)
  d = jnp.asarray(_dct_matrix())
  coef = jnp.einsum("ki,aibjc,lj->akblc", d, blocks, d)
  coef = jnp.round(coef / table[None, :, None, :, None]) * table[None, :, None, :, None]
  blocks = jnp.einsum("ki,akblc,lj->aibjc", d, coef, d)
  rgb = (blocks.reshape(h, w, 3) + jnp.asarray([128.0, 0.0, 0.0])) @ jnp.linalg.inv(to_ycc).T
  return jnp.clip(rgb / 255.0, 0.0, 1.0)


def photometric(image: jax.Array, key: jax.Array, cfg: AugmentConfig) -> jax.Array:
  """Colour, blur, noise and JPEG changes of one ``[H, W, 3]`` image in [0, 1]."""
  ks = jax.random.split(key, 9)

  def around_one(k, r, shape=()):
    return jax.random.uniform(k, shape, minval=1.0 - r, maxval=1.0 + r)

  x = image * around_one(ks[0], cfg.brightness)
  mean = x.mean()
  x = (x - mean) * around_one(ks[1], cfg.contrast) + mean
  grey = x @ jnp.asarray([0.299, 0.587, 0.114])
  x = (x - grey[..., None]) * around_one(ks[2], cfg.saturation) + grey[..., None]
  x = jnp.clip(x * around_one(ks[3], cfg.white_balance, (3,)), 0.0, 1.0)
  sigma = jax.random.uniform(ks[4], (), maxval=cfg.blur_sigma)
  x = jnp.where(jax.random.bernoulli(ks[5], cfg.blur_prob), blur(x, sigma), x)
  x = x + jax.random.normal(ks[6], x.shape) * jax.random.uniform(ks[7], (), maxval=cfg.noise)
  x = jnp.clip(x, 0.0, 1.0)
  if cfg.jpeg_prob > 0 and x.shape[0] % 8 == 0 and x.shape[1] % 8 == 0:
    k_use, k_q = jax.random.split(ks[8])
    quality = jax.random.uniform(k_q, (), minval=cfg.jpeg_quality[0], maxval=cfg.jpeg_quality[1])
    x = jnp.where(jax.random.bernoulli(k_use, cfg.jpeg_prob), jpeg_blocks(x, quality), x)
  return x


def mix_sources(own: jax.Array, people: dict, backgrounds: jax.Array, key: jax.Array,
                cfg: AugmentConfig) -> tuple[jax.Array, jax.Array]:
  """A batch of (images ``[B, S, S, 3]``, masks ``[B, S, S]``): each sample is a portrait's own crop
  (``own``, RGB + mask), a person from ``people`` pasted on its background crop, or the background alone.

  ``people``: ``{"pixels", "widths", "transposed", "index"}``, the stored persons (``ResidentImages``
  arrays) and which one each sample pastes; ``backgrounds [B, S, S, 3]``: crops of person-free photos.
  """
  b = own.shape[0]
  k_kind, k_paste, k_photo = jax.random.split(key, 3)
  u = jax.random.uniform(k_kind, (b,))
  pixels = people["pixels"][people["index"]]
  pasted, pasted_mask = jax.vmap(paste, in_axes=(0, 0, 0, 0, 0, None))(
      pixels, people["widths"][people["index"]], people["transposed"][people["index"]], backgrounds,
      jax.random.split(k_paste, b), cfg.scale_range)
  is_paste = (u < cfg.paste_prob)[:, None, None]
  is_negative = ((u >= cfg.paste_prob) & (u < cfg.paste_prob + cfg.negative_prob))[:, None, None]
  images = jnp.where(is_paste[..., None], pasted, jnp.where(is_negative[..., None], backgrounds, own[..., :3]))
  masks = jnp.where(is_paste, pasted_mask, jnp.where(is_negative, 0.0, own[..., 3]))
  images = jax.vmap(photometric, in_axes=(0, 0, None))(images, jax.random.split(k_photo, b), cfg)
  return images, masks
