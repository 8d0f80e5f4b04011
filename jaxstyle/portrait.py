"""The portrait style-transfer program (Berezin & Volkova): one pure function, one XLA program.

    content ─ VGG ─┬─ SegNet decoder ─ sigmoid ─ feather ─────────────────────────────────┐ mask m
                   ├─ relu4_1, relu5_1 ─┬─ sanet4_1, sanet5_1 (c, s): o_s   (computed once)  │
    style ─── VGG ─┴─ relu4_1, relu5_1 ─┘  sanet4_1, sanet5_1 (c, c): o_c   (identity; only  │
                                                                         if some α < 1)    │
        region r ∈ {background, person}:  α_r·(W1_r·o4_s + W2_r·o5_s) + (1−α_r)·(o4_c + o5_c)     │
                                           → merge conv → decoder (both regions in one batch) │
                                           → m·person + (1−m)·background ◄────────────────────┘

The content's VGG features are computed once and feed SegNet and both transfers; the attention of each
SANet level is computed once per key set and shared by both regions, which differ only in (W1, W2, α).
α = 0 gives SANet's identity transfer T(c, c), which the decoder is trained to reconstruct (the identity
losses), so α trades style for content along what the decoder knows. ``mode="plain"`` is SANet as
published (one region, no mask; W = (1, 1), α = 1 reproduces the published forward pass exactly).

``stylize`` is the composition of small pure steps, each lowered on its own by
``benchmarks/flop_breakdown.py``: ``encode`` → ``attend`` and ``identity_transfer`` → ``mix`` →
``decode``; ``person_logits`` → ``blend``. Numeric controls (W1, W2, α per region) are traced
arguments, so changing them never recompiles; the program compiles once per (shape, mode).
"""
from __future__ import annotations

import dataclasses
import functools
import math
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import NamedSharding, PartitionSpec as P

from jaxstyle import decoder as decoder_lib
from jaxstyle import segnet as segnet_lib
from jaxstyle import vgg as vgg_lib
from jaxstyle.sanet import MAX_SCORES, Transform, weigh

Params = dict[str, Any]   # {"encoder"|"transform"|"decoder"|"segnet"[|"segnet_encoder"]: flax variables}


@dataclasses.dataclass(frozen=True)
class ModelConfig:
  """Architecture of every network in the program (data: see ``MODEL_CONFIGS``)."""
  encoder_blocks: tuple = vgg_lib.VGG19_BLOCKS
  preprocess: str = "caffe"            # caffe | torchvision | normalised (vgg.py)
  transform_channels: int = 512
  decoder_layers: tuple = decoder_lib.DECODER_LAYERS
  segnet: str = "shared"               # key of segnet.SEGNET_CONFIGS
  attention_chunk: int = 4096          # query rows per attention block
  attention_max_scores: int = MAX_SCORES  # and at most this many scores per image and block
  formulation: str = "auto"            # conv formulation (conv.py)
  dtype: str = "float32"               # compute dtype; params stay float32


MODEL_CONFIGS = {
    # ImageNet VGG-19 (Caffe convention) + this project's trained decoder/transform/SegNet.
    "default": ModelConfig(),
    # Checkpoints of the published SANet code (vgg_normalised.pth, decoder/transformer_iter_*.pth).
    "sanet_published": ModelConfig(preprocess="normalised"),
    # Tiny widths for tests.
    "tiny": ModelConfig(encoder_blocks=vgg_lib.TINY_BLOCKS, transform_channels=16,
                        decoder_layers=decoder_lib.TINY_DECODER_LAYERS, segnet="tiny"),
}


@dataclasses.dataclass(frozen=True)
class Controls:
  """Per-region style controls. Background: style-dominant; person: content-dominant.

  ``Res = W1·sanet4_1 + W2·sanet5_1``: relu5_1 attention moves large, global structures of the style,
  relu4_1 attention local texture. The person keeps the local texture but little of the global
  re-arrangement, and α mixes it toward SANet's identity transfer T(c, c) (the content itself).
  """
  w1_background: float = 1.0
  w2_background: float = 1.0
  alpha_background: float = 1.0
  w1_person: float = 1.0
  w2_person: float = 0.2
  alpha_person: float = 0.6

  def as_array(self) -> np.ndarray:
    """Rows (background, person) of (W1, W2, α)."""
    return np.array([[self.w1_background, self.w2_background, self.alpha_background],
                     [self.w1_person, self.w2_person, self.alpha_person]], np.float32)


@dataclasses.dataclass(frozen=True)
class Modules:
  encoder: vgg_lib.VGG
  transform: Transform
  decoder: decoder_lib.Decoder
  segnet: segnet_lib.SegNetDecoder
  segnet_encoder: vgg_lib.VGG | None


def build(cfg: ModelConfig) -> Modules:
  dtype = jnp.dtype(cfg.dtype)
  kw = dict(formulation=cfg.formulation, dtype=dtype)
  seg_cfg = segnet_lib.SEGNET_CONFIGS[cfg.segnet]
  return Modules(
      encoder=vgg_lib.VGG(cfg.encoder_blocks, cfg.preprocess, "relu5_1", **kw),
      transform=Transform(cfg.transform_channels, cfg.attention_chunk,
                          max_scores=cfg.attention_max_scores, **kw),
      decoder=decoder_lib.Decoder(cfg.decoder_layers, **kw),
      segnet=segnet_lib.SegNetDecoder(seg_cfg, **kw),
      segnet_encoder=(vgg_lib.VGG(vgg_lib.VGG16_BLOCKS, cfg.preprocess, "pool5", **kw)
                      if seg_cfg.encoder == "vgg16" else None),
  )


@functools.partial(jax.jit, static_argnames=("cfg", "hw"))
def init_params(cfg: ModelConfig, rng: jax.Array, hw: tuple[int, int] = (64, 64)) -> Params:
  """Random float32 variables of every network (shapes do not depend on ``hw``)."""
  m = build(cfg)
  keys = jax.random.split(rng, 5)
  x = jnp.zeros((1, *hw, 3), jnp.float32)
  feats = m.encoder.init(keys[0], x)
  f = m.encoder.apply(feats, x)
  params = {
      "encoder": feats,
      "transform": m.transform.init(keys[1], f["relu4_1"], f["relu4_1"], f["relu5_1"], f["relu5_1"],
                                    jnp.ones((1, 2))),
      "decoder": m.decoder.init(keys[2], f["relu4_1"]),
  }
  if m.segnet_encoder is not None:
    params["segnet_encoder"] = m.segnet_encoder.init(keys[3], x)
    f = m.segnet_encoder.apply(params["segnet_encoder"], x)
  params["segnet"] = m.segnet.init(keys[4], f, hw)
  return params


def unchunked(cfg: ModelConfig) -> ModelConfig:
  """``cfg`` with every attention level in one block: the same arithmetic, for FLOP counting.

  XLA's cost analysis counts the body of a loop once, so a chunked attention (``lax.map`` over query
  blocks, relu4_1 from 1024² on) would count as one block's FLOPs. Lower this config, don't run it:
  at 2048² its relu4_1 scores alone are 17 GB per image in f32.
  """
  return dataclasses.replace(cfg, attention_chunk=2**62, attention_max_scores=2**62)


def gaussian_blur(x: jax.Array, sigma: float) -> jax.Array:
  """Separable Gaussian blur of ``[B, H, W]`` with edge-replicated borders."""
  radius = int(math.ceil(3 * sigma))
  if radius < 1:
    return x
  taps = np.exp(-0.5 * (np.arange(-radius, radius + 1) / sigma) ** 2)
  taps = jnp.asarray(taps / taps.sum(), x.dtype)
  x = jnp.pad(x, ((0, 0), (radius, radius), (radius, radius)), mode="edge")[..., None]
  x = jax.lax.conv_general_dilated(x, taps.reshape(-1, 1, 1, 1), (1, 1), "VALID",
                                   dimension_numbers=("NHWC", "HWIO", "NHWC"))
  x = jax.lax.conv_general_dilated(x, taps.reshape(1, -1, 1, 1), (1, 1), "VALID",
                                   dimension_numbers=("NHWC", "HWIO", "NHWC"))
  return x[..., 0]


def person_logits(params: Params, cfg: ModelConfig, content: jax.Array, content_feats: dict) -> jax.Array:
  """SegNet person logits ``[B, H, W]``; reuses the content VGG pass unless the config has its own."""
  m = build(cfg)
  feats = content_feats
  if m.segnet_encoder is not None:
    feats = m.segnet_encoder.apply(params["segnet_encoder"], content)
  return m.segnet.apply(params["segnet"], feats, content.shape[1:3])


def preserve_color(out: jax.Array, content: jax.Array) -> jax.Array:
  """Keeps the content's chroma (YIQ I, Q) and the output's luminance (Gatys et al. 2016)."""
  rgb2yiq = jnp.asarray([[0.299, 0.587, 0.114], [0.596, -0.274, -0.322], [0.211, -0.523, 0.312]])
  yiq_out, yiq_c = out @ rgb2yiq.T, content @ rgb2yiq.T
  yiq = jnp.concatenate([yiq_out[..., :1], yiq_c[..., 1:]], axis=-1)
  return yiq @ jnp.linalg.inv(rgb2yiq).T


def encode(params: Params, cfg: ModelConfig, images: jax.Array) -> dict[str, jax.Array]:
  """VGG features (and SegNet's pooling indices) of RGB ``images`` in [0, 1]."""
  return build(cfg).encoder.apply(params["encoder"], images)


def attend(params: Params, cfg: ModelConfig, content_feats: dict, style_feats: dict):
  """(sanet4_1, sanet5_1 resized to relu4_1): the attention of content queries to style keys."""
  return build(cfg).transform.apply(params["transform"], content_feats["relu4_1"], style_feats["relu4_1"],
                                    content_feats["relu5_1"], style_feats["relu5_1"], method=Transform.attend)


def identity_transfer(params: Params, cfg: ModelConfig, content_feats: dict, alpha: jax.Array) -> jax.Array:
  """SANet's identity transfer T(c, c) at W = (1, 1), ``[1, B, h, w, C]``; zeros when every α is 1.

  α mixes toward it (``mix``); the decoder was trained to reconstruct it (identity losses), which raw
  relu4_1 features are not. With α = 1 everywhere (plain SANet, the default background) it is
  multiplied by 0, so ``lax.cond`` skips its attention: 8% of the plain program at 512², 35% at 2048².
  """
  def compute():
    return weigh(*attend(params, cfg, content_feats, content_feats), jnp.ones((1, 2)))

  shape = jax.eval_shape(compute)
  return jax.lax.cond(jnp.all(alpha == 1), lambda: jnp.zeros(shape.shape, shape.dtype), compute)


def mix(params: Params, cfg: ModelConfig, stylised: tuple[jax.Array, jax.Array], identity: jax.Array,
        controls: jax.Array) -> jax.Array:
  """Per region r (rows of ``controls``): merge_conv(α_r·(W1_r·o4 + W2_r·o5) + (1 − α_r)·T(c, c))."""
  weighted = weigh(*stylised, controls[:, :2])
  alpha = controls[:, 2, None, None, None, None].astype(weighted.dtype)
  return build(cfg).transform.apply(params["transform"], alpha * weighted + (1 - alpha) * identity,
                                    method=Transform.merge)


def decode(params: Params, cfg: ModelConfig, t: jax.Array, hw: tuple[int, int]) -> jax.Array:
  """``[R, B, h, w, C]`` → images ``[R, B, H, W, 3]`` clipped to [0, 1], all regions in one batch.

  Regions and batch share the decoder's batch axis batch-major, so a sharded batch stays sharded.
  """
  r = t.shape[0]
  images = build(cfg).decoder.apply(params["decoder"], t.swapaxes(0, 1).reshape(-1, *t.shape[2:]), hw)
  return jnp.clip(images.astype(jnp.float32), 0, 1).reshape(-1, r, *hw, 3).swapaxes(0, 1)


def blend(mask: jax.Array, images: jax.Array, feather: float) -> tuple[jax.Array, jax.Array]:
  """(feathered mask, mask·person + (1 − mask)·background) for ``images`` = (background, person)."""
  mask = gaussian_blur(mask.astype(jnp.float32), feather * max(mask.shape[1:3]))
  return mask, mask[..., None] * images[1] + (1 - mask[..., None]) * images[0]


def stylize(params: Params, content: jax.Array, style: jax.Array, controls: jax.Array,
            mask: jax.Array | None = None, *, cfg: ModelConfig, mode: str = "portrait",
            feather: float = 0.01, keep_color: bool = False) -> dict[str, jax.Array]:
  """Stylises ``content [B, H, W, 3]`` with ``style [B, Hs, Ws, 3]`` (both RGB in [0, 1]).

  ``controls`` is ``Controls.as_array()``; ``mask [B, H, W]`` in [0, 1] replaces SegNet when given;
  ``feather`` is the Gaussian σ of the mask edge as a fraction of the longer image side.
  Returns ``image`` and, in portrait mode, ``mask``, ``background`` and ``person`` (all [0, 1]).
  """
  if mode not in ("portrait", "plain"):
    raise ValueError(f"mode must be 'portrait' or 'plain', not {mode!r}")
  hw = content.shape[1:3]
  content_feats = encode(params, cfg, content)
  style_feats = encode(params, cfg, style)
  controls = controls[:2 if mode == "portrait" else 1].astype(jnp.float32)
  identity = identity_transfer(params, cfg, content_feats, controls[:, 2])
  t = mix(params, cfg, attend(params, cfg, content_feats, style_feats), identity, controls)
  images = decode(params, cfg, t, hw)
  if keep_color:
    images = jnp.clip(preserve_color(images, content.astype(jnp.float32)[None]), 0, 1)
  if mode == "plain":
    return {"image": images[0]}
  if mask is None:
    mask = jax.nn.sigmoid(person_logits(params, cfg, content, content_feats))
  mask, image = blend(mask, images, feather)
  return {"image": image, "mask": mask, "background": images[0], "person": images[1]}


def data_mesh(devices=None) -> jax.sharding.Mesh:
  """A 1-D mesh over all (or the given) devices with the axis ``data``."""
  devices = np.asarray(jax.devices() if devices is None else devices)
  return jax.sharding.Mesh(devices, ("data",))


def make_program(cfg: ModelConfig, mesh: jax.sharding.Mesh, *, mode: str = "portrait",
                 feather: float = 0.01, keep_color: bool = False, with_mask: bool = False):
  """``stylize`` jitted as one program, batch-parallel over the mesh's ``data`` axis.

  Params and controls are replicated; content, style, mask and every output are sharded on the batch
  axis, whose size must be a multiple of the mesh size.
  """
  batch, replicated = NamedSharding(mesh, P("data")), NamedSharding(mesh, P())
  fn = functools.partial(stylize, cfg=cfg, mode=mode, feather=feather, keep_color=keep_color)
  if with_mask:
    return jax.jit(fn, in_shardings=(replicated, batch, batch, replicated, batch),
                   out_shardings=batch)
  return jax.jit(lambda p, c, s, k: fn(p, c, s, k), in_shardings=(replicated, batch, batch, replicated),
                 out_shardings=batch)
