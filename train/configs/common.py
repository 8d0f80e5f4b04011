"""What both training configs share: the fields of every run, the smoke-test sizes, and the parser.

A config file is a ``default()`` plus named variants, each a dict of changes (dotted keys reach nested
fields). ``get_config(default, variants, arg)`` parses ``arg`` = ``"variant,key=value,..."`` as big_vision
``configs/common.py:parse_arg`` does: the variant's changes first, then the ``key=value`` overrides,
converted to each field's type (``+`` separates the items of a tuple field).

The configs are the only place training defaults live: each trainer's ``Hparams`` (what its jitted step
depends on) declares no defaults and is read from the config by field name (``hparams_from_config``; a
nested ``Hparams`` field such as SANet's ``loss`` from the config group of its name). A field it needs and
the config lacks stops the run at start, naming the field.
"""
from __future__ import annotations

from typing import Any, Callable, Mapping

import ml_collections

# Smoke-test sizes (``runlocal``): the tiny model on a random encoder, 20 steps in well under a minute on
# a laptop CPU. The ``xla`` conv formulation compiles 4× faster than the CPU matmul form at tiny sizes.
RUNLOCAL = {"model": "tiny", "encoder": "random", "formulation": "xla", "resize": 40, "crop": 32,
            "batch_size": 4, "num_steps": 20, "log_every": 5, "checkpoint_every": 10, "export_every": 20,
            "export_dtype": "float32"}


def base() -> ml_collections.ConfigDict:
  """The fields every training run has; each trainer's ``default()`` sets their values and adds its own."""
  return ml_collections.ConfigDict({
      "model": "default",            # key of model.MODEL_CONFIGS
      "dtype": "float32",            # compute dtype ("bfloat16" on GPUs); params stay float32
      "formulation": "auto",         # conv formulation (jaxstyle/nets/conv.py)
      # The frozen VGG-19: imagenet (the shipped weights) | imagenet_normalised | random (tests). Both
      # trainers exporting into one weights folder must use the same (encoder_weights.export_weights).
      "encoder": "imagenet",
      "seed": 0,
      "data_dir": "../shared/data",  # relative to the repository root unless absolute
      "tfds_data_dir": "",           # tfds data_dir ("" = tfds' default)
      "resize": 512,                 # shorter side before cropping
      "crop": 256,
      "max_aspect": 2.0,             # resident images: longer side kept up to max_aspect × resize
      "batch_size": 16,              # global
      "num_decode_threads": 8,
      "prefetch": 4,                 # batches a Grain iterator keeps in flight
      "lr": 1e-4,
      "num_steps": 1000,
      "num_samples": 4,              # images in the sample / evaluation sheets
      "log_every": 50, "checkpoint_every": 1000, "keep_checkpoints": 3,
      "export_every": 10_000,
      "export_dir": "",              # default: WORKDIR/weights
      "export_dtype": "float16",
  })


def get_config(default: Callable[[], ml_collections.ConfigDict], variants: Mapping[str, Mapping[str, Any]],
               arg: str | None) -> ml_collections.ConfigDict:
  variant, overrides = parse_arg(arg)
  if variant not in variants:
    raise ValueError(f"unknown variant {variant!r}; one of {sorted(variants)}")
  config = default()
  for key, value in variants[variant].items():
    *parents, leaf = key.split(".")
    field(config, parents)[leaf] = value
  for key, value in overrides.items():
    override(config, key, value)
  return config


def parse_arg(arg: str | None) -> tuple[str, dict[str, str]]:
  """``"variant,key=value,..."`` → (variant, overrides) as in big_vision ``configs/common.py``."""
  parts = [p for p in (arg or "").split(",") if p]
  variant = "default"
  if parts and "=" not in parts[0]:
    variant = parts.pop(0)
  return variant, dict(p.split("=", 1) for p in parts)


def field(config: ml_collections.ConfigDict, path: list[str]) -> ml_collections.ConfigDict:
  for p in path:
    config = config[p]
  return config


def override(config: ml_collections.ConfigDict, key: str, value: str) -> None:
  """Sets the (dotted) field ``key`` from a string, converted to the field's type."""
  *parents, leaf = key.split(".")
  config = field(config, parents)
  old = config[leaf]
  if isinstance(old, tuple):   # items converted like the field's first item (strings when it is empty)
    config[leaf] = tuple(convert(old[0] if old else "", v) for v in value.split("+") if v)
  else:
    config[leaf] = convert(old, value)


def convert(like: Any, value: str) -> Any:
  """``value`` as the type of ``like``: a bool from 1/true/yes (else false), else ``type(like)(value)``."""
  if isinstance(like, bool):
    return value.lower() in ("1", "true", "yes")
  return type(like)(value)
