"""The portrait style-transfer program (Berezin & Volkova): one pure function, one XLA program.

    content ─ VGG ─┬─ SegNet decoder ─ sigmoid ─ ≥ 0.5 ─ edge inside the outline ─────────┐ weight m
                   ├─ relu4_1, relu5_1 ─┬─ sanet4_1, sanet5_1 (c, s): o_s   (computed once)  │
    style ─── VGG ─┴─ relu4_1, relu5_1 ─┘  sanet4_1, sanet5_1 (c, c): o_c   (identity; only  │
                                                                         if some α < 1)    │
        region r ∈ {background, person}:  α_r·(W1_r·o4_s + W2_r·o5_s) + (1−α_r)·(o4_c + o5_c)     │
                                           → merge conv → decoder (both regions in one batch) │
                                           → m·person + (1−m)·background ◄────────────────────┘

The content's VGG features are computed once and feed SegNet and both transfers (SegNet also reads
smaller copies of the content, ``segment``); the attention of each SANet level is computed once per key
set and shared by both regions, which differ only in (W1, W2, α), unless the person's style is the
painting at another scale (``Batch.style_person``: one more style VGG pass and its attentions, which
only the person's transfer mixes).
α = 0 gives SANet's identity transfer T(c, c), which the decoder is trained to reconstruct (the identity
losses), so α trades style for content along what the decoder knows. ``mode="plain"`` is SANet as
published (one region, no mask; W = (1, 1), α = 1 reproduces the published forward pass exactly).

``stylize`` is the composition of small pure steps, each lowered on its own by
``benchmarks/flop_breakdown.py``: ``encode`` → ``attend`` and ``identity_transfer`` → ``mix`` →
``decode``; ``person_logits`` → ``blend_weight`` → ``blend``. Numeric controls (W1, W2, α per region)
are traced arguments, so changing them never recompiles; the program compiles once per (shape, mode).
Its inputs are one ``Batch`` pytree. Inputs padded into a shape bucket (``buckets.py``) carry their
valid sizes (``Batch.sizes``): SANet's statistics and attention keys then come from valid positions
only and the mask is feathered at the valid size, so one program serves every picture of a bucket.

The blend's soft edge lies inside the person's outline (``blend_weight``): the background keeps the
style-dominant transfer up to the outline instead of a band of the content-dominant one around the person.

The same steps split in two where a control moves (the studio, ``app/studio.py``): ``prepare`` is what a
pair fixes (both VGG passes, both attentions, the identity transfer and the unfeathered mask), computed
once and kept; ``render`` is what the controls change (``transfer``: mix → decode per region, then
``composite``: preserve colour → feather → blend). ``stylize`` is ``render ∘ prepare``. In ``render``
the feather and the preserve-colour switch are traced too (the blur's filter is sized by
``MAX_FEATHER``), so no slider value recompiles; ``make_split_programs`` jits the halves, and
``restyle`` redoes one region's style attention from the kept content features (a style-scale slider).
"""
from __future__ import annotations

import dataclasses
import functools
import statistics
from typing import Callable, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from jaxstyle.nets import ops
from jaxstyle.nets.model import ModelConfig, Params, build
from jaxstyle.nets.sanet import Transform, weigh
from jaxstyle.program import sharding

# The largest mask feather (σ as a fraction of the longer side): a tenth already blurs the mask into a
# gradient across the person, and a traced feather's blur filter is sized by it (``feather_mask``).
MAX_FEATHER = 0.1
# The blend's edge (``blend_weight``), chosen with the person's controls (``benchmarks/controls_search.py``
# step ``edge``, docs/quality.md): a Gaussian of σ = FEATHER × the longer side (2–5 px at 384–1024 px)
# centred EDGE_INSET σ inside the person's outline. Centred on the outline, half of the edge's band lay
# outside the person and showed the content-dominant transfer there as a halo; 2.75 σ in, Φ(−2.75) = 0.3%
# of it reaches the outline.
FEATHER = 0.005
EDGE_INSET = 2.75


@dataclasses.dataclass(frozen=True)
class Controls:
  """Per-region style controls. Background: style-dominant; person: content-dominant.

  ``Res = W1·sanet4_1 + W2·sanet5_1``: relu5_1 attention moves large, global structures of the style,
  relu4_1 attention local texture. The person keeps the local texture but little of the global
  re-arrangement, and α mixes it toward SANet's identity transfer T(c, c) (the content itself).

  The defaults are ``benchmarks/controls_search.py``'s picks on the quality harness's training-side pairs
  (docs/quality.md): the person takes more relu4_1 texture and some relu5_1 (W = (1.625, 0.5)) at a lower
  α (0.4), the most person style that kept every face of the search's pairs and their NME under the
  Magenta + mask blend's. The background stays plain SANet: no W or α in range raised its style gain
  significantly without erasing the scene.
  """
  w1_background: float = 1.0
  w2_background: float = 1.0
  alpha_background: float = 1.0
  w1_person: float = 1.625
  w2_person: float = 0.5
  alpha_person: float = 0.4

  def as_array(self) -> np.ndarray:
    """Rows (background, person) of (W1, W2, α)."""
    return np.array([[self.w1_background, self.w2_background, self.alpha_background],
                     [self.w1_person, self.w2_person, self.alpha_person]], np.float32)


def person_logits(params: Params, cfg: ModelConfig, content: jax.Array, content_feats: dict) -> jax.Array:
  """SegNet person logits ``[B, H, W]`` from the content's VGG features (the pass style transfer makes)."""
  return build(cfg).segnet.apply(params["segnet"], content_feats, content.shape[1:3])


def encode(params: Params, cfg: ModelConfig, images: jax.Array) -> dict[str, jax.Array]:
  """VGG features (and SegNet's pooling indices) of RGB ``images`` in [0, 1]."""
  return build(cfg).encoder.apply(params["encoder"], images)


def valid_mask(image_hw: tuple[int, int], feat_hw: tuple[int, int], hw: jax.Array | None) -> jax.Array | None:
  """``[B, h, w]`` True where a feature of a padded image (``image_hw``) lies in its valid corner ``hw``.

  VGG's ceil-mode pools halve rounding up, so a feature is valid when it saw at least one valid pixel.
  """
  if hw is None:
    return None
  halvings = next(k for k in range(8) if ops.pooled_hw(image_hw, k + 1) == tuple(feat_hw))
  for _ in range(halvings):
    hw = (hw + 1) // 2
  rows = jnp.arange(feat_hw[0]) < hw[:, :1]
  cols = jnp.arange(feat_hw[1]) < hw[:, 1:]
  return rows[:, :, None] & cols[:, None, :]


def level_masks(content_hw, content_feats, style_hw, style_feats, content_sizes, style_sizes) -> tuple | None:
  """Valid masks (c4, s4, c5, s5) for ``Transform.attend`` from the valid ``[B, 2]`` (h, w) of padded
  images of shapes ``content_hw`` / ``style_hw``; None when not padded."""
  if content_sizes is None:
    return None
  return tuple(valid_mask(image_hw, feats[layer].shape[1:3], hw)
               for layer in ("relu4_1", "relu5_1")
               for image_hw, feats, hw in ((content_hw, content_feats, content_sizes),
                                           (style_hw, style_feats, style_sizes)))


def attend(params: Params, cfg: ModelConfig, content_feats: dict, style_feats: dict,
           masks: tuple | None = None):
  """(sanet4_1, sanet5_1 resized to relu4_1): the attention of content queries to style keys.

  ``masks``: ``level_masks`` of padded inputs (statistics and keys from valid positions only).
  """
  return build(cfg).transform.apply(params["transform"], content_feats["relu4_1"], style_feats["relu4_1"],
                                    content_feats["relu5_1"], style_feats["relu5_1"], masks,
                                    method=Transform.attend)


def identity_transfer(params: Params, cfg: ModelConfig, content_feats: dict, alpha: jax.Array | None,
                      masks: tuple | None = None) -> jax.Array:
  """SANet's identity transfer T(c, c) at W = (1, 1), ``[1, B, h, w, C]``; zeros when every α is 1.

  α mixes toward it (``mix``); the decoder was trained to reconstruct it (identity losses), which raw
  relu4_1 features are not. With α = 1 everywhere (plain SANet, the default background) it is
  multiplied by 0, so ``lax.cond`` skips its attention: 8% of the plain program at 512², 35% at 2048².
  ``alpha=None`` (α not known yet: a pair prepared for any control) always computes it.
  """
  def compute():
    content_masks = None if masks is None else (masks[0], masks[0], masks[2], masks[2])
    return weigh(*attend(params, cfg, content_feats, content_feats, content_masks), jnp.ones((1, 2)))

  if alpha is None:
    return compute()
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


def feather_mask(mask: jax.Array, feather: float | jax.Array, hw: jax.Array | None = None,
                 max_feather: float | None = None) -> jax.Array:
  """``mask [B, H, W]`` blurred with σ = ``feather`` × the longer side: a soft edge for the blend.

  ``hw [B, 2]``: the valid corner of each padded item, whose own longer side sets its σ.
  ``max_feather`` (a number) bounds a traced ``feather`` and sizes the blur's filter, so every feather
  up to it runs in one compiled program; taps beyond ⌈3σ⌉ are zero, so the result does not depend on it.
  """
  longest = max(mask.shape[1:3])
  bound = feather if max_feather is None else max_feather
  sigma = feather * (longest if hw is None else hw.max(axis=1))
  blurred = ops.gaussian_blur(mask.astype(jnp.float32), sigma, hw, bound * longest)
  return jnp.clip(blurred, 0, 1)   # a weighted mean of [0, 1] values, but its rounding can pass 1


def blend_weight(mask: jax.Array, feather: float | jax.Array, hw: jax.Array | None = None,
                 max_feather: float | None = None, inset: float = EDGE_INSET) -> jax.Array:
  """The person's weight in the blend, ``[B, H, W]``: ``mask`` ≥ 0.5 (the person's outline) with a
  Gaussian edge of σ = ``feather`` × the longer side centred ``inset`` σ inside the outline.

  The outline is moved in by the feather's own blur: a straight edge blurred is Φ(d/σ) at a distance d
  inside it, so keeping where the blurred outline is ≥ Φ(``inset``) keeps what lies ≥ ``inset`` σ inside
  (corners round off; parts thinner than 2·``inset`` σ, such as strands of hair, take the background's
  transfer). ``inset`` < 3: the blur's taps end at 3σ. At feather 0 this is the thresholded mask.
  Arguments as ``feather_mask``.
  """
  assert 0 <= inset < 3, inset
  outline = (mask >= 0.5).astype(jnp.float32)
  if inset:
    level = statistics.NormalDist().cdf(inset)
    outline = (feather_mask(outline, feather, hw, max_feather) >= level).astype(jnp.float32)
  return feather_mask(outline, feather, hw, max_feather)


def segment(params: Params, cfg: ModelConfig, content: jax.Array, feather: float,
            content_feats: dict | None = None) -> jax.Array:
  """The person mask the program returns: SegNet → sigmoid → feather, ``[B, H, W]`` in [0, 1]. Its 0.5
  level is the outline the blend follows (``blend_weight``)."""
  return feather_mask(person_probability(params, cfg, content, content_feats), feather)


def person_probability(params: Params, cfg: ModelConfig, content: jax.Array,
                       content_feats: dict | None = None) -> jax.Array:
  """SegNet → sigmoid, ``[B, H, W]`` in [0, 1]: the mask before its feather.

  SegNet reads the content's own VGG pass and, for each of ``cfg.segnet_sides`` shorter than the
  content's longer side, an antialiased downscale (a VGG pass of its own); the logits, resized to the
  content, are averaged. At 512 px the decoder's context (~200 px at relu5_1) does not cover a close
  face, whose middle then reads as skin rather than person; at 192–256 px it does, while the full size
  keeps the outline sharp (``docs/segnet.md`` has the IoU of each combination).
  """
  b, h, w = content.shape[:3]
  if content_feats is None:
    content_feats = encode(params, cfg, content)
  logits = person_logits(params, cfg, content, content_feats)
  sides = [side for side in cfg.segnet_sides if side < max(h, w)]
  for side in sides:
    small = jax.image.resize(content, (b, *ops.longest_side_hw((h, w), side), 3), "linear", antialias=True)
    small_logits = person_logits(params, cfg, small, encode(params, cfg, small))
    logits = logits + jax.image.resize(small_logits, (b, h, w), "linear")
  return jax.nn.sigmoid(logits / (1 + len(sides)))


def blend(mask: jax.Array, images: jax.Array) -> jax.Array:
  """mask·person + (1 − mask)·background for ``images`` = (background, person)."""
  return mask[..., None] * images[1] + (1 - mask[..., None]) * images[0]


def keep_colors(images: jax.Array, content: jax.Array, keep: bool | jax.Array) -> jax.Array:
  """``images [R, B, H, W, 3]`` with the content's colours (``ops.preserve_color``) when ``keep``.

  ``keep``: a Python bool (the CLI's static flag: nothing computed when False) or a traced one (a
  studio switch: both computed, one selected, no recompile).
  """
  if keep is False:
    return images
  kept = jnp.clip(ops.preserve_color(images, content.astype(jnp.float32)[None]), 0, 1)
  return kept if keep is True else jnp.where(keep, kept, images)


MODES = ("portrait", "plain")
REGION_NAMES = ("background", "person")


def region_count(mode: str) -> int:
  """Regions a mode renders: background and person, or plain SANet's one."""
  if mode not in MODES:
    raise ValueError(f"mode must be one of {', '.join(MODES)}, not {mode!r}")
  return 2 if mode == "portrait" else 1


STYLE_LAYERS = ("relu4_1", "relu5_1")     # the style features its attention reads (``style_features``)


class Batch(NamedTuple):
  """One program call's inputs, each with the batch on its leading axis: a pytree, placed and sharded
  as one value (``sharding.place_batch``).

  ``content [B, H, W, 3]`` and ``style [B, Hs, Ws, 3]``: RGB in [0, 1] (or, for unpadded contents, the
  style's ``style_features``, which skips its VGG pass). ``style_person [B, Hp, Wp, 3]``:
  the style at the scale the person's transfer asks for, when it differs from the background's
  (``Settings.style_scale_*``; absent: the person uses ``style`` too, and no second style pass runs).
  ``sizes [B, 4]`` int32 (content h, w, style h, w; and person style h, w: ``[B, 6]``): the valid
  top-left corners of inputs padded into a shape bucket (``buckets.py``); only valid positions give
  SANet statistics and attention keys, and the mask's feather is that of the valid size. ``mask [B, H,
  W]`` in [0, 1]: a person mask that replaces SegNet's. An absent field is another pytree, so it
  compiles its own program, as another shape would.
  """
  content: jax.Array | np.ndarray
  style: jax.Array | np.ndarray
  sizes: jax.Array | np.ndarray | None = None
  mask: jax.Array | np.ndarray | None = None
  style_person: jax.Array | np.ndarray | None = None

  def as_numpy(self) -> Batch:
    """The host arrays the programs take: float32 pictures and masks, int32 sizes; style features
    (``style_features``) as computed, in the compute dtype."""
    f32 = lambda x: x if x is None or isinstance(x, dict) else np.ascontiguousarray(x, np.float32)
    sizes = None if self.sizes is None else np.ascontiguousarray(self.sizes, np.int32)
    return Batch(f32(self.content), f32(self.style), sizes, f32(self.mask), f32(self.style_person))

  def style_sizes(self, region: int) -> jax.Array | None:
    """The valid ``[B, 2]`` (h, w) of region ``region``'s style (0: ``style``, 1: ``style_person``)."""
    return None if self.sizes is None else self.sizes[:, 2 + 2 * region:4 + 2 * region]


def style_features(params: Params, style: jax.Array, *, cfg: ModelConfig) -> dict[str, jax.Array]:
  """The style's VGG features that its attention reads (``STYLE_LAYERS``): a ``Batch.style`` that the
  program does not encode again, for many contents with one style (the studio's live camera)."""
  feats = encode(params, cfg, style)
  return {layer: feats[layer] for layer in STYLE_LAYERS}


def style_attention(params: Params, cfg: ModelConfig, content_hw: tuple[int, int], content_feats: dict,
                    content_sizes: jax.Array | None, style: jax.Array | dict, style_sizes: jax.Array | None):
  """((sanet4_1, sanet5_1), level masks) of the content's queries to one style's keys: the style's VGG
  pass (none when ``style`` is already its ``style_features``) and both attentions (``attend``), valid
  positions only when padded (``level_masks``)."""
  if isinstance(style, dict):
    style_feats, style_hw = style, None   # unpadded frames: no level masks, so no image shape needed
    if content_sizes is not None:
      raise ValueError("style features are for unpadded contents (no Batch.sizes)")
  else:
    style_feats, style_hw = encode(params, cfg, style), style.shape[1:3]
  masks = level_masks(content_hw, content_feats, style_hw, style_feats, content_sizes, style_sizes)
  return attend(params, cfg, content_feats, style_feats, masks), masks


# Where ``prepare`` keeps each region's attention outputs: the background's, the person's own style's.
ATTENTION_KEYS = (("o4", "o5"), ("o4_person", "o5_person"))
CONTENT_LAYERS = ("relu4_1", "relu5_1")   # the content features a style's attention reads (``restyle``)


def prepare(params: Params, batch: Batch, *, cfg: ModelConfig, mode: str = "portrait",
            alpha: jax.Array | None = None) -> dict[str, jax.Array]:
  """What a batch of pairs fixes, whatever the controls: ``render``'s input.

  ``content`` (kept for preserve colour), ``o4`` / ``o5`` (the attention outputs, ``style_attention``;
  and ``o4_person`` / ``o5_person`` of the person's own style when the batch has one), ``identity``
  (T(c, c), ``[B, h, w, C]``), the content's ``relu4_1`` / ``relu5_1`` (what ``restyle`` reads), the
  content's valid ``hw`` when the batch is padded and, in portrait mode, ``mask``: the batch's, or
  SegNet's before the feather (``person_probability``). ``alpha``: the α values it will be rendered
  with, when known (``stylize``: the identity attention is skipped when all are 1); None computes it
  for any α. Every value has the batch on its leading axis.
  """
  content, sizes = batch.content, batch.sizes
  portrait_mode = region_count(mode) == 2
  content_feats = encode(params, cfg, content)
  content_sizes = None if sizes is None else sizes[:, :2]
  attention = functools.partial(style_attention, params, cfg, content.shape[1:3], content_feats, content_sizes)
  (o4, o5), masks = attention(batch.style, batch.style_sizes(0))
  out = {"content": content, "o4": o4, "o5": o5,
         "identity": identity_transfer(params, cfg, content_feats, alpha, masks)[0],
         **{layer: content_feats[layer] for layer in CONTENT_LAYERS}}
  if portrait_mode and batch.style_person is not None:
    (out["o4_person"], out["o5_person"]), _ = attention(batch.style_person, batch.style_sizes(1))
  if content_sizes is not None:
    out["hw"] = content_sizes
  if portrait_mode:
    out["mask"] = person_probability(params, cfg, content, content_feats) if batch.mask is None else batch.mask
  return out


def restyle(params: Params, prepared: dict, style: jax.Array, style_sizes: jax.Array | None, *,
            cfg: ModelConfig, region: int) -> dict[str, jax.Array]:
  """``prepared`` with region ``region``'s attention redone for another ``style`` (the same painting at
  another scale: the studio's style-scale sliders): one style VGG pass and both attentions, the
  content's features read from ``prepared``."""
  feats = {layer: prepared[layer] for layer in CONTENT_LAYERS}
  (o4, o5), _ = style_attention(params, cfg, prepared["content"].shape[1:3], feats, prepared.get("hw"), style,
                                style_sizes)
  k4, k5 = ATTENTION_KEYS[region]
  return {**prepared, k4: o4, k5: o5}


def without_person_style(prepared: dict) -> dict:
  """``prepared`` with the person's own attention outputs dropped: the person mixes the background's."""
  return {k: v for k, v in prepared.items() if k not in ATTENTION_KEYS[1]}


def region_prepared(prepared: dict, region: int) -> dict:
  """``prepared`` as one region's transfer sees it: the person's own attention outputs in place of the
  background's when its style was encoded at another scale (``Batch.style_person``)."""
  if region == 0 or ATTENTION_KEYS[1][0] not in prepared:
    return prepared
  return {**prepared, **dict(zip(ATTENTION_KEYS[0], (prepared[k] for k in ATTENTION_KEYS[1])))}


def transfer(params: Params, prepared: dict, controls: jax.Array, *, cfg: ModelConfig) -> jax.Array:
  """mix → decode for each row (W1, W2, α) of ``controls``: region images ``[R, B, H, W, 3]`` in [0, 1].

  Row r is region r's (background, person): with a person style of its own (``region_prepared``), the
  person's row mixes its own attention outputs. One row alone is the background's; the studio passes
  ``region_prepared(prepared, 1)`` to redo the person alone.
  """
  stylised = tuple(prepared[k] for k in ATTENTION_KEYS[0])
  if ATTENTION_KEYS[1][0] in prepared and len(controls) == 2:
    stylised = tuple(jnp.stack([prepared[a], prepared[b]]) for a, b in zip(*ATTENTION_KEYS))
  t = mix(params, cfg, stylised, prepared["identity"][None], controls.astype(jnp.float32))
  return decode(params, cfg, t, prepared["content"].shape[1:3])


def composite(prepared: dict, images: jax.Array, feather: float | jax.Array = FEATHER,
              keep_color: bool | jax.Array = False, *, mode: str = "portrait",
              max_feather: float | None = None, inset: float = EDGE_INSET) -> dict[str, jax.Array]:
  """Region ``images`` (``transfer``; background, person) → preserve colour → blend (``blend_weight``).

  Returns ``stylize``'s outputs. ``feather`` / ``keep_color`` may be traced (``max_feather`` then bounds
  the feather: ``feather_mask``); ``inset`` is ``blend_weight``'s.
  """
  images = keep_colors(images, prepared["content"], keep_color)
  if region_count(mode) == 1:
    return {"image": images[0]}
  content_hw = prepared.get("hw")
  weight = blend_weight(prepared["mask"], feather, content_hw, max_feather, inset)
  return {"image": blend(weight, images), "weight": weight, "background": images[0], "person": images[1],
          "mask": feather_mask(prepared["mask"], feather, content_hw, max_feather)}


def render(params: Params, prepared: dict, controls: jax.Array, feather: float | jax.Array = FEATHER,
           keep_color: bool | jax.Array = False, *, cfg: ModelConfig, mode: str = "portrait",
           max_feather: float | None = None) -> dict[str, jax.Array]:
  """What a control change recomputes: ``transfer`` of each region, then ``composite``."""
  controls = controls[:region_count(mode)]
  return composite(prepared, transfer(params, prepared, controls, cfg=cfg), feather, keep_color,
                   mode=mode, max_feather=max_feather)


def stylize(params: Params, batch: Batch, controls: jax.Array, *, cfg: ModelConfig, mode: str = "portrait",
            feather: float = FEATHER, keep_color: bool = False) -> dict[str, jax.Array]:
  """Stylises ``batch.content`` with ``batch.style`` (``Batch``).

  ``controls`` is ``Controls.as_array()``; ``feather`` is the Gaussian σ of the mask's and the blend's
  edge as a fraction of the longer image side. Outputs keep the padded shape: crop them to
  ``batch.sizes``. Returns ``image`` and, in portrait mode, ``mask`` (SegNet's or the batch's,
  feathered: the person mask ``--save-mask`` writes, whose 0.5 level is the outline), ``weight`` (the
  person's weight in the blend, ``blend_weight``), ``background`` and ``person`` (all [0, 1]).
  ``render ∘ prepare``, with the feather and preserve colour static (the CLI's one program).
  """
  controls = controls[:region_count(mode)].astype(jnp.float32)
  prepared = prepare(params, batch, cfg=cfg, mode=mode, alpha=controls[:, 2])
  return render(params, prepared, controls, feather, keep_color, cfg=cfg, mode=mode)


def _named(fn: Callable, name: str) -> Callable:
  """``fn`` under ``name``: how compile logs and profiles call the jitted program."""
  def program(*args):
    return fn(*args)
  program.__name__ = program.__qualname__ = name
  return program


def make_program(cfg: ModelConfig, mesh: jax.sharding.Mesh, *, mode: str = "portrait",
                 feather: float = FEATHER, keep_color: bool = False):
  """``stylize`` jitted as one program ``(params, batch, controls)``, batch-parallel over the mesh's
  ``data`` axis: params and controls replicated, every field of the ``Batch`` and every output split
  on the batch axis, whose size must be a multiple of the mesh size."""
  batch, replicated = sharding.batch_sharding(mesh), sharding.replicated(mesh)
  fn = functools.partial(stylize, cfg=cfg, mode=mode, feather=feather, keep_color=keep_color)
  return jax.jit(_named(fn, "program"), in_shardings=(replicated, batch, replicated), out_shardings=batch)


class SplitProgram(NamedTuple):
  """``stylize`` as jitted halves, for many renders of one pair (``make_split_programs``).

  ``prepare(params, batch)`` → prepared (once per pair); ``render(params, prepared, controls, feather,
  keep_color)`` → ``stylize``'s outputs, or its two parts: ``transfer(params, prepared, controls)`` →
  region images ``[R, B, H, W, 3]`` (one per row of ``controls``, so one region can be redone alone) and
  ``composite(prepared, images, feather, keep_color)``; ``restyle[r](params, prepared, style,
  style_sizes)`` redoes region r's attention for the painting at another scale.
  """
  prepare: Callable
  transfer: Callable
  composite: Callable
  render: Callable
  restyle: Callable


def make_split_programs(cfg: ModelConfig, mesh: jax.sharding.Mesh, *, mode: str = "portrait",
                        max_feather: float = MAX_FEATHER) -> SplitProgram:
  """``prepare`` and ``render`` (and ``render``'s two parts) jitted over the mesh, as ``make_program``.

  Controls, feather (0..``max_feather``) and preserve colour are all traced: changing any of them
  reuses the compiled programs. Each program compiles once per (shape, mode); ``transfer`` also once
  per number of control rows. Prepared values are sharded on the batch axis, region images on their
  second (batch) axis; params, controls, feather and keep_color replicated.
  """
  region_count(mode)
  batch, replicated = sharding.batch_sharding(mesh), sharding.replicated(mesh)
  regions = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec(None, sharding.AXIS))
  shared = dict(cfg=cfg, mode=mode)
  jit = lambda fn, name, **kw: jax.jit(_named(fn, name), **kw)
  return SplitProgram(
      prepare=jit(functools.partial(prepare, **shared), "prepare", in_shardings=(replicated, batch),
                  out_shardings=batch),
      transfer=jit(functools.partial(transfer, cfg=cfg), "transfer",
                   in_shardings=(replicated, batch, replicated), out_shardings=regions),
      composite=jit(functools.partial(composite, mode=mode, max_feather=max_feather), "composite",
                    in_shardings=(batch, regions, replicated, replicated), out_shardings=batch),
      render=jit(functools.partial(render, **shared, max_feather=max_feather), "render",
                 in_shardings=(replicated, batch, replicated, replicated, replicated), out_shardings=batch),
      restyle=tuple(jit(functools.partial(restyle, cfg=cfg, region=r), f"restyle_{REGION_NAMES[r]}",
                        in_shardings=(replicated, batch, batch, batch), out_shardings=batch) for r in range(2)))
