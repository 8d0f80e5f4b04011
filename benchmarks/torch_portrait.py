"""PyTorch peer of the portrait program (``jaxstyle.program.portrait.stylize``), for benchmarks only.

The same graph as the JAX program, written the way a PyTorch user would: NCHW, ``nn.Conv2d`` with
explicit padding, ``max_pool2d(return_indices=True)`` / ``max_unpool2d`` for SegNet, ``torch.bmm`` +
softmax attention as in the published SANet code (or ``scaled_dot_product_attention``, ``attention=
"sdpa"``). Weights are copied from a jaxstyle params tree, so ``max_abs_errors`` can confirm that both
programs compute the same image before their speed is compared.

``Portrait(..., mode="plain")`` is the plain program (background only, no SegNet); ``identity=False``
drops SANet's identity transfer T(c, c), as the JAX program skips it when every α is 1
(``needs_identity``). ``Portrait(...).to(device, dtype)`` and ``channels_last`` memory format run it as
a GPU user would (``benchmarks/gpu_side_by_side.py``, eager and under ``torch.compile``): convolutions
and attention in ``dtype``, the input convention, feature statistics, sigmoid, blur and blend in float32,
as in the JAX program.

SegNet decodes the content encoder's pass and, for each ``ModelConfig.segnet_sides`` shorter than the
content, an antialiased downscale's own pass, as ``portrait.segment`` does.
"""
from __future__ import annotations

import math
import os
import statistics

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from jaxstyle.nets import model as model_lib
from jaxstyle.nets import segnet as segnet_lib
from jaxstyle.nets import vgg as vgg_lib
from jaxstyle.program import portrait

EPS = 1e-5


def _dtype(module: nn.Module) -> torch.dtype:
  return next(module.parameters()).dtype


def _conv_from(params: dict, pad: str) -> "PaddedConv":
  kernel = np.asarray(params["kernel"])                  # HWIO
  conv = PaddedConv(kernel.shape[2], kernel.shape[3], kernel.shape[0], pad)
  with torch.no_grad():
    conv.conv.weight.copy_(torch.from_numpy(kernel.transpose(3, 2, 0, 1).copy()))
    conv.conv.bias.copy_(torch.from_numpy(np.asarray(params["bias"]).copy()))
  return conv


class PaddedConv(nn.Module):
  """Stride-1 ``k×k`` conv with reflection or zero padding of ``k // 2``."""

  def __init__(self, cin: int, cout: int, k: int, pad: str):
    super().__init__()
    self.p = k // 2
    self.reflect = pad == "reflect"
    self.conv = nn.Conv2d(cin, cout, k, padding=0 if self.reflect else self.p)

  def forward(self, x):
    if self.reflect and self.p:
      x = F.pad(x, (self.p,) * 4, mode="reflect")
    return self.conv(x)


class VGGEncoder(nn.Module):
  """VGG to relu5_1 (Caffe convention: BGR, 0–255, mean pixel, zero padding) returning the pool indices."""

  def __init__(self, params: dict, blocks, preprocess: str):
    super().__init__()
    if preprocess != "caffe":
      raise NotImplementedError("the benchmark reference implements the default (caffe) encoder")
    pad = vgg_lib.PADDING_FOR[preprocess]
    self.blocks = blocks
    self.convs = nn.ModuleDict({name: _conv_from(params[name], pad)
                                for name in vgg_lib.layer_names(blocks)[:sum(map(len, blocks[:4])) + 1]})
    self.register_buffer("mean", torch.tensor(vgg_lib.CAFFE_MEAN_BGR).view(1, 3, 1, 1))

  def forward(self, x):
    x = (x.float().flip(1) * 255.0 - self.mean.float()).to(_dtype(self))
    out = {}
    for b, block in enumerate(self.blocks, start=1):
      if b > 1:
        out[f"pool{b - 1}_size"] = x.shape[2:]
        x, out[f"pool{b - 1}_indices"] = F.max_pool2d(x, 2, 2, ceil_mode=True, return_indices=True)
      for i in range(1, len(block) + 1):
        x = F.relu(self.convs[f"conv{b}_{i}"](x))
        out[f"relu{b}_{i}"] = x
        if b == 5:
          return out
    return out


def mean_variance_norm(x):
  """Per-channel spatial normalisation (unbiased variance), statistics in float32."""
  n, c = x.shape[:2]
  flat = x.float().reshape(n, c, -1)
  std = (flat.var(dim=2) + EPS).sqrt().view(n, c, 1, 1)
  return ((x.float() - flat.mean(dim=2).view(n, c, 1, 1)) / std).to(x.dtype)


ATTENTIONS = ("bmm", "sdpa")


class SANet(nn.Module):
  """Published SANet: ``out_conv(H · softmax(Fᵀ G)ᵀ) + content`` with ``torch.bmm`` (or one-head SDPA)."""

  def __init__(self, params: dict, attention: str = "bmm"):
    super().__init__()
    if attention not in ATTENTIONS:
      raise ValueError(f"attention must be one of {ATTENTIONS}, not {attention!r}")
    self.attention = attention
    self.f, self.g, self.h, self.out_conv = (_conv_from(params[k], "zero") for k in ("f", "g", "h", "out_conv"))

  def forward(self, content, style):
    f = self.f(mean_variance_norm(content))
    g = self.g(mean_variance_norm(style))
    h = self.h(style)
    b, c, hc, wc = f.shape
    if self.attention == "sdpa":   # queries F, keys G, values H as [B, 1 head, N, C], scale 1
      tokens = lambda x: x.permute(0, 2, 3, 1).reshape(x.shape[0], 1, -1, c)   # a view if channels_last
      o = F.scaled_dot_product_attention(tokens(f), tokens(g), tokens(h), scale=1.0)
      o = o.reshape(b, hc, wc, c).permute(0, 3, 1, 2)
    else:
      s = torch.softmax(torch.bmm(f.reshape(b, c, -1).permute(0, 2, 1), g.reshape(b, c, -1)), dim=-1)
      o = torch.bmm(h.reshape(b, c, -1), s.permute(0, 2, 1)).view(b, c, hc, wc)
    return self.out_conv(o) + content


class Transform(nn.Module):
  """``attend``: both SANets once; ``merge``: the merge conv over R weighted mixes (regions on the batch)."""

  def __init__(self, params: dict, attention: str = "bmm"):
    super().__init__()
    self.sanet4_1 = SANet(params["sanet4_1"], attention)
    self.sanet5_1 = SANet(params["sanet5_1"], attention)
    self.merge_conv = _conv_from(params["merge_conv"], "reflect")

  def attend(self, c4, s4, c5, s5):
    o4 = self.sanet4_1(c4, s4)
    return o4, F.interpolate(self.sanet5_1(c5, s5), size=o4.shape[2:], mode="nearest")

  def merge(self, mixed):
    r, b = mixed.shape[:2]
    out = self.merge_conv(mixed.reshape(r * b, *mixed.shape[2:]))
    return out.view(r, b, *out.shape[1:])


def weigh(o4, o5, weights):
  """``W1·o4 + W2·o5`` per row of ``weights [R, 2]``: ``[R, B, C, h, w]``."""
  weights = weights.to(o4.dtype)
  return weights[:, 0, None, None, None, None] * o4 + weights[:, 1, None, None, None, None] * o5


class Decoder(nn.Module):
  def __init__(self, params: dict, layers):
    super().__init__()
    self.layers = layers
    self.convs = nn.ModuleDict({name: _conv_from(params[name], "reflect") for name, _, _ in layers})

  def forward(self, x, out_hw):
    for i, (name, _, upsample) in enumerate(self.layers):
      x = self.convs[name](x)
      if i < len(self.layers) - 1:
        x = F.relu(x)
      if upsample:
        x = F.interpolate(x, scale_factor=2, mode="nearest")
    return x[:, :, :out_hw[0], :out_hw[1]]


class SkipFusion(nn.Module):
  """``x + Dense(LayerNorm(skip))`` per pixel (``segnet.SkipFusion``); the norm in float32."""

  LAYER_NORM_EPS = 1e-6                  # flax.linen.LayerNorm's default

  def __init__(self, params: dict):
    super().__init__()
    kernel = np.asarray(params["proj"]["kernel"])          # [C_skip, C_x]
    self.norm = nn.LayerNorm(kernel.shape[0], eps=self.LAYER_NORM_EPS)
    self.proj = nn.Linear(*kernel.shape)
    with torch.no_grad():
      self.norm.weight.copy_(torch.from_numpy(np.asarray(params["norm"]["scale"]).copy()))
      self.norm.bias.copy_(torch.from_numpy(np.asarray(params["norm"]["bias"]).copy()))
      self.proj.weight.copy_(torch.from_numpy(kernel.T.copy()))
      self.proj.bias.copy_(torch.from_numpy(np.asarray(params["proj"]["bias"]).copy()))

  def forward(self, x, skip):
    skip = F.layer_norm(skip.float().permute(0, 2, 3, 1), self.norm.normalized_shape,
                        self.norm.weight.float(), self.norm.bias.float(), self.norm.eps)
    return x + self.proj(skip.to(x.dtype)).permute(0, 3, 1, 2)


def grid_means(x, grid: int):
  """Means of NCHW ``x`` over a ``grid``×``grid`` partition of H, W with ``segnet.grid_means``'s cells."""
  def cells(n):
    edges = [(i * n) // grid for i in range(grid)] + [n]
    return [(edges[i], max(edges[i + 1], edges[i] + 1)) for i in range(grid)]
  rows = [torch.stack([x[:, :, r0:r1, c0:c1].mean(dim=(2, 3)) for c0, c1 in cells(x.shape[3])], -1)
          for r0, r1 in cells(x.shape[2])]
  return torch.stack(rows, -2)                                     # N C grid grid


class PyramidContext(nn.Module):
  """``x + Dense(concat_g upsample(LayerNorm(grid_means(x, g))))`` (``segnet.PyramidContext``)."""

  def __init__(self, params: dict, grids):
    super().__init__()
    self.grids = tuple(grids)
    kernel = np.asarray(params["proj"]["kernel"])                 # [len(grids)·C, C]
    self.proj = nn.Linear(*kernel.shape)
    self.norms = nn.ModuleDict({str(g): nn.LayerNorm(kernel.shape[1], eps=SkipFusion.LAYER_NORM_EPS)
                                for g in self.grids})
    with torch.no_grad():
      self.proj.weight.copy_(torch.from_numpy(kernel.T.copy()))
      self.proj.bias.copy_(torch.from_numpy(np.asarray(params["proj"]["bias"]).copy()))
      for g in self.grids:
        self.norms[str(g)].weight.copy_(torch.from_numpy(np.asarray(params[f"norm{g}"]["scale"]).copy()))
        self.norms[str(g)].bias.copy_(torch.from_numpy(np.asarray(params[f"norm{g}"]["bias"]).copy()))

  def forward(self, x):
    pooled = []
    for g in self.grids:
      norm = self.norms[str(g)]
      m = F.layer_norm(grid_means(x.float(), g).permute(0, 2, 3, 1), norm.normalized_shape,
                       norm.weight.float(), norm.bias.float(), norm.eps).permute(0, 3, 1, 2)
      pooled.append(F.interpolate(m, size=x.shape[2:], mode="bilinear", align_corners=False))
    context = torch.cat(pooled, 1).to(x.dtype).permute(0, 2, 3, 1)
    return x + self.proj(context).permute(0, 3, 1, 2)


class SegNetDecoder(nn.Module):
  """The ``"shared"`` SegNet decoder: ``max_unpool2d`` with the content encoder's pool indices, and the
  pyramid context and encoder skip fusions of configurations that have them (``SegNetConfig.context``,
  ``.skips``)."""

  def __init__(self, params: dict, config: segnet_lib.SegNetConfig):
    super().__init__()
    self.config = config
    self.convs = nn.ModuleDict({f"unpool{level}_conv{i + 1}": _conv_from(params[f"unpool{level}_conv{i + 1}"], "zero")
                                for level, widths in config.stages for i in range(len(widths))})
    self.skips = dict(config.skips)
    grids = config.context
    self.context = PyramidContext(params["context"], grids) if grids else None
    self.fusions = nn.ModuleDict({f"skip{level}": SkipFusion(params[f"skip{level}"]) for level in self.skips})

  def forward(self, feats):
    x = feats[self.config.start]
    if self.context is not None:
      x = self.context(x)
    n_stages = len(self.config.stages)
    for s, (level, widths) in enumerate(self.config.stages):
      x = F.max_unpool2d(x, feats[f"pool{level}_indices"], 2, 2, output_size=feats[f"pool{level}_size"])
      if level in self.skips:
        x = self.fusions[f"skip{level}"](x, feats[self.skips[level]])
      for i in range(len(widths)):
        x = self.convs[f"unpool{level}_conv{i + 1}"](x)
        if not (s == n_stages - 1 and i == len(widths) - 1):
          x = F.relu(x)
    return x[:, 0]


def gaussian_blur(x, sigma: float):
  """Separable Gaussian blur of ``[B, H, W]`` with replicated borders (``ops.gaussian_blur``)."""
  radius = int(math.ceil(3 * sigma))
  if radius < 1:
    return x
  taps = np.exp(-0.5 * (np.arange(-radius, radius + 1) / sigma) ** 2)
  taps = torch.tensor(taps / taps.sum(), dtype=x.dtype, device=x.device)
  x = F.pad(x[:, None], (radius,) * 4, mode="replicate")
  x = F.conv2d(x, taps.view(1, 1, -1, 1))
  x = F.conv2d(x, taps.view(1, 1, 1, -1))
  return x[:, 0]


MODES = ("portrait", "plain")


def needs_identity(controls, mode: str = "portrait") -> bool:
  """Whether some region the program uses has α < 1 (else the JAX program skips T(c, c))."""
  regions = np.asarray(controls)[:2 if mode == "portrait" else 1]
  return bool((regions[:, 2] != 1).any())


class Portrait(nn.Module):
  """The portrait program: shared content VGG pass, SegNet mask, both regions decoded as one batch.

  α mixes each region's stylised features toward the identity transfer T(c, c) before the merge conv,
  as ``jaxstyle.program.portrait.stylize`` does; ``identity=False`` leaves it out (exact when every α is 1).
  ``mode="plain"``: the background region only, no SegNet (``stylize(..., mode="plain")``).
  """

  def __init__(self, params: dict, cfg: model_lib.ModelConfig, feather: float = portrait.FEATHER, *,
               mode: str = "portrait", identity: bool = True, attention: str = "bmm",
               inset: float = portrait.EDGE_INSET):
    super().__init__()
    if mode not in MODES:
      raise ValueError(f"mode must be one of {MODES}, not {mode!r}")
    to_np = lambda tree: {k: to_np(v) if isinstance(v, dict) else np.asarray(v) for k, v in tree.items()}
    p = to_np(params)
    self.mode, self.identity = mode, identity
    self.encoder = VGGEncoder(p["encoder"]["params"], cfg.encoder_blocks, cfg.preprocess)
    self.transform = Transform(p["transform"]["params"], attention)
    self.decoder = Decoder(p["decoder"]["params"], cfg.decoder_layers)
    if mode == "portrait":
      self.segnet = SegNetDecoder(p["segnet"]["params"], cfg.segnet)
    self.segnet_sides, self.feather, self.inset = cfg.segnet_sides, feather, inset

  def person_probability(self, content, content_feats, hw):
    """``portrait.person_probability``: SegNet logits of the content and of an antialiased downscale to
    each smaller ``segnet_sides`` (through its own VGG pass), averaged, sigmoid."""
    logits = self.segnet(content_feats).float()
    sides = [side for side in self.segnet_sides if side < max(hw)]
    for side in sides:
      scale = side / max(hw)
      small_hw = (max(1, round(hw[0] * scale)), max(1, round(hw[1] * scale)))
      small = F.interpolate(content, size=small_hw, mode="bilinear", antialias=True, align_corners=False)
      small_logits = self.segnet(self.encoder(small)).float()
      logits = logits + F.interpolate(small_logits[:, None], size=tuple(hw), mode="bilinear",
                                      align_corners=False)[:, 0]
    return torch.sigmoid(logits / (1 + len(sides)))

  def blend_weight(self, probability, sigma: float):
    """``portrait.blend_weight``: the outline (≥ 0.5) moved ``inset`` σ in by its own blur, blurred."""
    outline = (probability >= 0.5).float()
    if self.inset:
      outline = (gaussian_blur(outline, sigma) >= statistics.NormalDist().cdf(self.inset)).float()
    return gaussian_blur(outline, sigma)

  def forward(self, content, style, controls):
    """NCHW ``content``/``style`` in [0, 1], ``controls`` as ``Controls.as_array()`` → dict like JAX's."""
    hw = content.shape[2:]
    regions = 2 if self.mode == "portrait" else 1
    controls = controls[:regions].float()
    cf, sf = self.encoder(content), self.encoder(style)
    c4, c5 = cf["relu4_1"], cf["relu5_1"]
    mixed = weigh(*self.transform.attend(c4, sf["relu4_1"], c5, sf["relu5_1"]), controls[:, :2])
    if self.identity:
      identity = weigh(*self.transform.attend(c4, c4, c5, c5), torch.ones_like(controls[:1, :2]))  # T(c, c)
      alpha = controls[:, 2, None, None, None, None].to(mixed.dtype)
      mixed = alpha * mixed + (1 - alpha) * identity
    t = self.transform.merge(mixed)
    images = self.decoder(t.reshape(-1, *t.shape[2:]), hw).float().clamp(0, 1)
    images = images.view(regions, -1, *images.shape[1:])
    if self.mode == "plain":
      return {"image": images[0]}
    probability, sigma = self.person_probability(content, cf, hw), self.feather * max(hw)
    weight = self.blend_weight(probability, sigma)
    image = weight[:, None] * images[1] + (1 - weight[:, None]) * images[0]
    return {"image": image, "mask": gaussian_blur(probability, sigma), "weight": weight,
            "background": images[0], "person": images[1]}


def configure_torch(threads: int | None = None) -> None:
  """Flush denormals to zero (as XLA:CPU does) and use every core. Call before the first torch op.

  Softmax attention produces denormal floats, and x86 multiplies them ~100× slower: without this the
  published SANet's ``bmm(H, Sᵀ)`` alone takes seconds at relu4_1 of a 256² image. Worker threads
  inherit the setting only if they start after it, hence "before the first op".
  """
  torch.set_flush_denormal(True)
  torch.set_num_threads(threads or os.cpu_count() or 1)


def to_nchw(x) -> torch.Tensor:
  return torch.from_numpy(np.ascontiguousarray(np.asarray(x, np.float32).transpose(0, 3, 1, 2)))


def max_abs_errors(jax_out: dict, torch_out: dict) -> dict[str, float]:
  """Max |JAX − torch| of every output (images compared in NHWC)."""
  errs = {}
  for k, v in torch_out.items():
    t = v.detach().float().cpu().numpy()
    if t.ndim == 4:
      t = t.transpose(0, 2, 3, 1)
    errs[k] = float(np.abs(np.asarray(jax_out[k], np.float32) - t).max())
  return errs
