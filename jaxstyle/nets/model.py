"""The model registry: architecture configs as data, the Flax modules they build, and their parameters.

``MODEL_CONFIGS`` names every architecture a weights folder can hold (its manifest's ``model_config``);
``build`` turns one into the four Flax modules of the portrait program; ``init_params`` draws random
float32 variables for all of them and ``param_shapes`` gives their shapes without computing anything;
``jaxstyle.checkpoints.loading`` reads a weights folder into params checked against those shapes.
"""
from __future__ import annotations

import dataclasses
import functools
from typing import Any

import jax
import jax.numpy as jnp

from jaxstyle.nets import decoder as decoder_lib
from jaxstyle.nets import segnet as segnet_lib
from jaxstyle.nets import vgg as vgg_lib
from jaxstyle.nets.sanet import MAX_SCORES, Transform

Params = dict[str, Any]   # {"encoder"|"transform"|"decoder"|"segnet": flax variables}
NETWORKS = ("encoder", "transform", "decoder", "segnet")


@dataclasses.dataclass(frozen=True)
class ModelConfig:
  """Architecture of every network in the program (hashable: a static argument of jitted code)."""
  encoder_blocks: tuple = vgg_lib.VGG19_BLOCKS
  preprocess: str = "caffe"            # caffe | torchvision | normalised (vgg.py)
  transform_channels: int = 512
  decoder_layers: tuple = decoder_lib.DECODER_LAYERS
  segnet: segnet_lib.SegNetConfig = segnet_lib.SEGNET_CONFIGS["shared"]
  # Longer sides at which SegNet also sees the content, its logits averaged with those at the
  # content's own size (multi-scale testing; ``portrait.segment``); sides ≥ the content's are skipped.
  segnet_sides: tuple = ()
  attention_chunk: int = 4096          # query rows per attention block
  attention_max_scores: int = MAX_SCORES  # and at most this many scores per image and block
  formulation: str = "auto"            # conv formulation (conv.py)
  dtype: str = "float32"               # compute dtype; params stay float32
  # Networks computed in float32 whatever ``dtype`` says (of "encoder", "transform", "decoder",
  # "segnet"): a part that bf16 makes worse keeps float32 while the rest runs on bf16 units.
  float32_networks: tuple = ()


# The smoke-test model: every layer of the real one at a few channels, so the trainers' ``runlocal``
# configs, the GPU scripts' SMOKE=1 runs and the tests exercise the whole program in seconds on a CPU.
TINY = ModelConfig(
    encoder_blocks=((4, 4), (8, 8), (8, 8), (16, 16), (16, 16)), transform_channels=16,
    decoder_layers=(("conv4_1", 8, True), ("conv3_1", 8, True), ("conv2_1", 4, True), ("conv1_1", 3, False)),
    segnet=segnet_lib.SegNetConfig("relu5_1", ((4, (8,)), (3, (8,)), (2, (4,)), (1, (4, 1))),
                                   ((4, "relu4_2"), (3, "relu3_2"), (2, "relu2_2"), (1, "relu1_2")), (1, 2)))

MODEL_CONFIGS = {
    # ImageNet VGG-19 (Caffe convention) + this project's trained decoder/transform/SegNet.
    "default": ModelConfig(segnet=segnet_lib.SEGNET_CONFIGS["shared_skip"], segnet_sides=(192, 256)),
    # The same with the SegNet decoder of weights exported before skip fusions existed.
    "default_noskip": ModelConfig(),
    # Checkpoints of the published SANet code (vgg_normalised.pth, decoder/transformer_iter_*.pth).
    "sanet_published": ModelConfig(preprocess="normalised"),
    "tiny": TINY,
}


@dataclasses.dataclass(frozen=True)
class Modules:
  encoder: vgg_lib.VGG
  transform: Transform
  decoder: decoder_lib.Decoder
  segnet: segnet_lib.SegNetDecoder


def build(cfg: ModelConfig) -> Modules:
  kw = lambda net: dict(formulation=cfg.formulation,
                        dtype=jnp.dtype("float32" if net in cfg.float32_networks else cfg.dtype))
  return Modules(
      encoder=vgg_lib.VGG(cfg.encoder_blocks, cfg.preprocess, "relu5_1", **kw("encoder")),
      transform=Transform(cfg.transform_channels, cfg.attention_chunk,
                          max_scores=cfg.attention_max_scores, **kw("transform")),
      decoder=decoder_lib.Decoder(cfg.decoder_layers, **kw("decoder")),
      segnet=segnet_lib.SegNetDecoder(cfg.segnet, **kw("segnet")),
  )


@functools.partial(jax.jit, static_argnames=("cfg", "hw"))
def init_params(cfg: ModelConfig, rng: jax.Array, hw: tuple[int, int] = (64, 64)) -> Params:
  """Random float32 variables of every network (shapes do not depend on ``hw``)."""
  m = build(cfg)
  keys = jax.random.split(rng, 4)
  x = jnp.zeros((1, *hw, 3), jnp.float32)
  encoder = m.encoder.init(keys[0], x)
  f = m.encoder.apply(encoder, x)
  return {
      "encoder": encoder,
      "transform": m.transform.init(keys[1], f["relu4_1"], f["relu4_1"], f["relu5_1"], f["relu5_1"],
                                    jnp.ones((1, 2))),
      "decoder": m.decoder.init(keys[2], f["relu4_1"]),
      "segnet": m.segnet.init(keys[3], f, hw),
  }


def param_shapes(cfg: ModelConfig) -> Params:
  """``jax.ShapeDtypeStruct`` of every variable, traced at 64² without computing anything."""
  return jax.eval_shape(functools.partial(init_params, cfg, hw=(64, 64)), jax.random.key(0))


def unchunked(cfg: ModelConfig) -> ModelConfig:
  """``cfg`` with every attention level in one block: the same arithmetic, for FLOP counting.

  XLA's cost analysis counts the body of a loop once, so a chunked attention (``lax.map`` over query
  blocks, relu4_1 from 1024² on) would count as one block's FLOPs. Lower this config, don't run it:
  at 2048² its relu4_1 scores alone are 17 GB per image in f32.
  """
  return dataclasses.replace(cfg, attention_chunk=2**62, attention_max_scores=2**62)
