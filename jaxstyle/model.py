"""The model registry: architecture configs as data, the Flax modules they build, and their parameters.

``MODEL_CONFIGS`` names every architecture a weights folder can hold (its manifest's ``model_config``);
``build`` turns one into the four Flax modules of the portrait program; ``init_params`` draws random
float32 variables for all of them and ``param_shapes`` gives their shapes without computing anything;
``load`` reads a weights folder (``weights.py``) into params checked against those shapes.
"""
from __future__ import annotations

import dataclasses
import functools
import os
from pathlib import Path
from typing import Any, Sequence

import jax
import jax.numpy as jnp
import numpy as np
from flax import traverse_util

from jaxstyle import decoder as decoder_lib
from jaxstyle import segnet as segnet_lib
from jaxstyle import vgg as vgg_lib
from jaxstyle.sanet import MAX_SCORES, Transform

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
  kw = dict(formulation=cfg.formulation, dtype=jnp.dtype(cfg.dtype))
  return Modules(
      encoder=vgg_lib.VGG(cfg.encoder_blocks, cfg.preprocess, "relu5_1", **kw),
      transform=Transform(cfg.transform_channels, cfg.attention_chunk,
                          max_scores=cfg.attention_max_scores, **kw),
      decoder=decoder_lib.Decoder(cfg.decoder_layers, **kw),
      segnet=segnet_lib.SegNetDecoder(cfg.segnet, **kw),
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


# --- weights folders -------------------------------------------------------------------------------

HOW_TO_GET_WEIGHTS = (
    "get weights by training them (`python -m train.sanet --config train/configs/sanet.py "
    "--workdir runs/sanet`, which exports runs/sanet/weights) or by importing the published SANet "
    "checkpoints (`python -m jaxstyle.pretrained convert --vgg vgg_normalised.pth --decoder "
    "decoder_iter_500000.pth --transform transformer_iter_500000.pth --out weights_sanet`), "
    "then pass --weights DIR")
NO_SEGNET = ("portrait mode needs a trained SegNet (segnet.safetensors; the published SANet checkpoints "
             "have none): use weights that include it, give your own person mask with --mask FILE, or "
             "run --mode plain")
FETCH_ENCODER = "run `python -m jaxstyle.pretrained fetch` (or `make setup`) once"


def imagenet_encoder() -> dict:
  """The cached ImageNet VGG-19 (never downloads here: that is the setup step's job)."""
  from jaxstyle import pretrained   # pylint: disable=g-import-not-at-top  (checkpoint tooling)
  from jaxstyle.weights import WeightsError   # pylint: disable=g-import-not-at-top
  path = pretrained.resolve_cache_dir() / pretrained.CACHE_FILE
  if not path.is_file():
    raise WeightsError(f"these weights use the ImageNet VGG-19 encoder, which is not cached at {path}: "
                       f"{FETCH_ENCODER}")
  try:
    return pretrained.load_vgg19_imagenet()
  except pretrained.PretrainedError as e:   # names the file and says how to replace it
    raise WeightsError(" ".join(str(e).split())) from None
  except (OSError, ValueError) as e:
    raise WeightsError(f"{path}: {' '.join(str(e).split())}; delete it and {FETCH_ENCODER}") from None


def check_shapes(params: Params, name: str, directory: str | os.PathLike = "") -> None:
  """Raises ``WeightsError`` naming the first variable of ``params`` that does not fit model config
  ``name`` (read from ``directory``)."""
  from jaxstyle.weights import WeightsError   # pylint: disable=g-import-not-at-top
  expected = param_shapes(MODEL_CONFIGS[name])
  for net, variables in params.items():
    got = {"/".join(k): np.shape(v) for k, v in traverse_util.flatten_dict(variables).items()}
    want = {"/".join(k): v.shape for k, v in traverse_util.flatten_dict(expected[net]).items()}
    for key in sorted(want.keys() | got.keys()):
      problem = ("it lacks " + key if key not in got else f"unexpected variable {key}" if key not in want
                 else f"{key} has shape {got[key]}, expected {want[key]}" if got[key] != want[key] else "")
      if problem:
        raise WeightsError(f"{directory}: {net} does not fit model config {name!r}: {problem}")


def load(directory: str | os.PathLike, networks: Sequence[str] = ("transform", "decoder", "segnet"), *,
         dtype: str = "float32", model_config: str | None = None) -> tuple[Params, ModelConfig]:
  """Float32 params of the encoder and ``networks`` from a weights folder (``weights.py``), and the
  ``ModelConfig`` its manifest names (or ``model_config``) at compute ``dtype``; ``WeightsError`` with
  a one-line message saying how to get what is missing."""
  from jaxstyle import weights as weights_lib   # pylint: disable=g-import-not-at-top
  directory = Path(directory)
  if not (directory / weights_lib.MANIFEST).is_file():
    raise weights_lib.WeightsError(f"no weights in {directory} (no {weights_lib.MANIFEST}): "
                                   f"{HOW_TO_GET_WEIGHTS}")
  manifest = weights_lib.read_manifest(directory)
  name = model_config or manifest.get("model_config")
  if name not in MODEL_CONFIGS:
    raise weights_lib.WeightsError(f"{directory}: unknown model config {name!r} "
                                   f"(this version knows {', '.join(MODEL_CONFIGS)})")
  have = {f.removesuffix(".safetensors") for f in manifest.get("files", {})}
  missing = [n for n in networks if n not in have]
  if missing:
    hint = NO_SEGNET if missing == ["segnet"] else HOW_TO_GET_WEIGHTS
    raise weights_lib.WeightsError(f"{directory} lacks {', '.join(m + '.safetensors' for m in missing)}: "
                                   f"{hint}")
  encoder = imagenet_encoder() if manifest["encoder"] == "imagenet_vgg19" else None   # checked by read_manifest
  params, _ = weights_lib.load(directory)
  if encoder is None and "encoder" not in params:
    raise weights_lib.WeightsError(f"{directory}: {weights_lib.MANIFEST} says the encoder is in a file, "
                                   "but lists no encoder.safetensors")
  params = {"encoder": params["encoder"] if encoder is None else encoder, **{n: params[n] for n in networks}}
  check_shapes(params, name, directory)
  return params, dataclasses.replace(MODEL_CONFIGS[name], dtype=dtype)
