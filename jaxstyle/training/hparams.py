"""Hyperparameters from a config: both trainers' ``Hparams`` read by field name, one source of defaults.

The configs of ``train/configs/`` hold every default; a trainer's ``Hparams`` (a frozen dataclass, the
jitted step's static argument) declares its fields and ``from_config`` fills them from the config
fields of the same names, so no default exists twice.
"""
from __future__ import annotations

import dataclasses
import typing

from jaxstyle.nets import model as model_lib


def from_config(cls, config, *, prefix: str = "", **computed):
  """The dataclass ``cls`` with each field read from the ``config`` field of its name, but ``computed``.

  A field whose type is a dataclass is read the same way from the config group of its name
  (``Hparams.loss`` from ``config.loss``), and such a group may hold no field its dataclass lacks: a
  misspelt variant key would otherwise be dropped without a word. A field the config lacks is refused
  with its name before anything compiles. Lists become tuples (hashable).
  """
  types = typing.get_type_hints(cls)
  names = [f.name for f in dataclasses.fields(cls)]
  values = dict(computed)
  for name in names:
    if name in computed:
      continue
    if name not in config:
      raise ValueError(f"the config has no field {prefix + name!r} ({cls.__qualname__}.{name} reads it)")
    value = config[name]
    if dataclasses.is_dataclass(types[name]):
      value = from_config(types[name], value, prefix=f"{prefix}{name}.")
    values[name] = tuple(value) if isinstance(value, list) else value
  unused = sorted(set(config) - set(names)) if prefix else []   # the top level also holds run settings
  if unused:
    raise ValueError(f"config.{prefix[:-1]} has fields {cls.__qualname__} does not know: {', '.join(unused)}")
  return cls(**values)


def model_config(config) -> model_lib.ModelConfig:
  """``config.model``'s ModelConfig in ``config.dtype`` and ``config.formulation``."""
  return dataclasses.replace(model_lib.MODEL_CONFIGS[config.model], dtype=config.dtype,
                             formulation=config.formulation)
