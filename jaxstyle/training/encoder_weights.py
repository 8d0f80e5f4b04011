"""The trainers' side of the weights: which frozen encoder they train on, and what they export.

- ``frozen_encoder``: the VGG-19 both trainers keep frozen (the shipped ImageNet one, a rescaled copy,
  or a random one for tests).
- ``run_meta`` + ``export_weights``: the trained networks into a weights folder (``weights.update``),
  with one record per trainer under the manifest's ``meta`` — the same keys for SANet and SegNet.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import jax

from jaxstyle.nets import model as model_lib
from jaxstyle.program import profiling


def frozen_encoder(kind: str, model: model_lib.ModelConfig, seed: int) -> tuple[dict, bool]:
  """(``{"encoder": variables}``, whether it is the ImageNet VGG-19 that exports may leave out).

  ``kind``: ``"imagenet"`` (``jaxstyle.checkpoints.pretrained``), ``"imagenet_normalised"`` (the same, rescaled by
  ``normalised_vgg``; exported with the weights) or ``"random"`` (tests and tiny models: drawn from
  ``seed + 1``, so every resume gets the same encoder).
  """
  if kind == "imagenet":
    from jaxstyle.checkpoints import pretrained  # pylint: disable=g-import-not-at-top
    return {"encoder": fitting(pretrained.load_vgg19_imagenet(), model, kind)}, True
  if kind == "imagenet_normalised":
    from jaxstyle.checkpoints import pretrained  # pylint: disable=g-import-not-at-top
    vgg = fitting(pretrained.load_vgg19_imagenet(), model, kind)
    means = pretrained.VGG19_IMAGENET_MEAN_ACTIVATION
    return {"encoder": normalised_vgg(vgg, model.encoder_blocks, means)}, False
  if kind == "random":
    return {"encoder": model_lib.init_params(model, jax.random.PRNGKey(seed + 1), (32, 32))["encoder"]}, False
  raise ValueError(f"config.encoder must be 'imagenet', 'imagenet_normalised' or 'random', not {kind!r}")


def fitting(variables: dict, model: model_lib.ModelConfig, kind: str) -> dict:
  """``variables`` when they have the shapes of ``model``'s encoder; else a ``ValueError`` (one line,
  before anything compiles: a tiny model's encoder is not the VGG-19)."""
  def shapes(tree):
    return jax.tree.map(lambda x: tuple(x.shape), tree)
  if shapes(variables) != shapes(model_lib.param_shapes(model)["encoder"]):
    raise ValueError(f"config.encoder={kind!r} is the ImageNet VGG-19, whose shapes this model's encoder "
                     "does not have (a smaller model, such as 'tiny', trains on encoder='random')")
  return variables


def normalised_vgg(variables: dict, blocks, mean_activation: dict[str, float]) -> dict:
  """VGG variables rescaled so that every ``relu{b}_1`` output is divided by ``mean_activation``.

  ReLU, max-pooling and zero or reflection padding commute with positive scaling, so dividing conv
  ``l``'s bias by ``s_l`` and multiplying its kernel by ``s_in / s_l`` divides its output by ``s_l``
  exactly. Every layer of block ``b`` gets ``s_l = mean_activation["relu{b}_1"]`` (1 for the input), so
  the network computes the same function up to one scalar per block (max-pool argmaxes unchanged).
  With ``mean_activation`` the mean over all channels of ``relu{b}_1`` on real images, each block's
  features average about 1, near the scale of SANet's ``vgg_normalised`` on which its loss weights and
  learning rate were tuned. That network is Gatys et al.'s normalisation, which scales every filter to
  unit mean activation (one scalar per channel); this keeps the channels' relative sizes as ImageNet
  training left them.
  """
  params = dict(variables["params"])
  s_in = 1.0
  for b, block in enumerate(blocks, start=1):
    s = float(mean_activation[f"relu{b}_1"]) if f"relu{b}_1" in mean_activation else s_in
    for i in range(1, len(block) + 1):
      name = f"conv{b}_{i}"
      if name in params:
        p = params[name]
        params[name] = {"kernel": p["kernel"] * (s_in / s), "bias": p["bias"] / s}
      s_in = s
  return {**variables, "params": params}


def run_meta(config, *, step: int, samples: int, metrics: dict[str, float], wall_s: float,
             **extra: Any) -> dict:
  """A trainer's record in the manifest's ``meta``: the same keys whichever trainer writes it
  (``export_weights`` adds the encoder kind).

  ``samples``: images seen over the whole chain of runs the weights come from; ``metrics``: the latest
  logged losses and evaluations; ``extra``: trainer-specific keys (e.g. SANet's ``continued_from``).
  """
  return {"steps": int(step), "samples": int(samples), "metrics": metrics,
          "wall_time_s": round(wall_s, 1), "device": profiling.device_description(),
          "config": config.to_dict(), **extra}


def export_weights(directory, nets: dict, *, trainer: str, encoder: str, include_encoder: bool,
                   model_config: str, dtype: str, meta: dict) -> dict:
  """Adds ``nets`` to the weights folder ``directory`` (``weights.update``) under ``meta[trainer]``.

  SANet's transform/decoder and SegNet's decoder read the same encoder pass at inference, so they must
  be trained on the same encoder: a folder whose other trainer recorded a different ``encoder`` kind is
  refused rather than silently mixed. A folder that already holds this export (same trainer, steps and
  intact files: a finished run restarted) is left as it is.
  """
  from jaxstyle.io import weights as weights_lib# pylint: disable=g-import-not-at-top
  directory = Path(directory)
  if weights_lib.holds_export(directory, trainer, meta.get("steps"), nets):
    return weights_lib.read_manifest(directory)
  if (current := weights_lib.manifest_or_none(directory)) is not None:   # None: missing or broken
    for other, info in current.get("meta", {}).items():
      if other != trainer and isinstance(info, dict) and info.get("encoder", encoder) != encoder:
        raise weights_lib.WeightsError(
            f"{directory}: the {other} networks there were trained on encoder {info['encoder']!r}, "
            f"this {trainer} run on {encoder!r}; export to another folder")
  return weights_lib.update(directory, nets, model_config=model_config, dtype=dtype,
                            include_encoder=include_encoder, meta={trainer: {"encoder": encoder, **meta}})


def export_run(directory, trained: dict, frozen: dict, *, trainer: str, config, imagenet_encoder: bool,
               meta: dict) -> dict:
  """``export_weights`` of a run's ``trained`` networks (and its encoder unless the shipped ImageNet one)."""
  nets = {k: jax.device_get(v) for k, v in trained.items()}
  if not imagenet_encoder:
    nets["encoder"] = jax.device_get(frozen["encoder"])
  return export_weights(directory, nets, trainer=trainer, encoder=config.encoder,
                        include_encoder=not imagenet_encoder, model_config=config.model,
                        dtype=config.export_dtype, meta=meta)
