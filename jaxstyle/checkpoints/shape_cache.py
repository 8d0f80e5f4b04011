"""The variable shapes of a model config, kept as JSON in the cache folder so that loading does not trace.

``model.param_shapes`` traces every network's ``init`` (1.2 s of a 2-core CPU's second CLI run, more
than reading the weights); the shapes change only with the config and the networks' code. ``shapes``
returns them from ``<compile cache>/shapes/<config>-<key>.json`` when the file was written for this
config, this code (``nets/*.py``) and these JAX and Flax versions, else traces and writes it. The file
is data (a flat table of names and shapes, checked on reading), used only to check weights against; one
that does not parse, has another key or another form is ignored and written again. It lives in the
compile cache's folder and is on and off with it (``JAXSTYLE_COMPILE_CACHE``, ``program/compile_cache``:
this layer cannot import that one, so ``directory`` reads the variable alike; a test holds them equal).
"""
from __future__ import annotations

import functools
import hashlib
import json
import os
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import jax

from jaxstyle.checkpoints import cache
from jaxstyle.nets import model as model_lib

FORMAT = 1
FOLDER = "shapes"
SEP = "/"
COMPILE_CACHE_VARIABLE = "JAXSTYLE_COMPILE_CACHE"   # compile_cache.VARIABLE and OFF
OFF = ("0", "false", "no", "off")


def directory() -> Path | None:
  """``compile_cache.cache_dir() / "shapes"``, or None when the compile cache is off."""
  value = os.environ.get(COMPILE_CACHE_VARIABLE, "").strip()
  if value.lower() in OFF:
    return None
  return (Path(value) if value else cache.root() / "xla") / FOLDER


@functools.cache
def _nets_code() -> str:
  """sha256 of the networks' sources (the shapes' code)."""
  digest = hashlib.sha256()
  for path in sorted(Path(model_lib.__file__).parent.glob("*.py")):
    digest.update(path.name.encode() + b"\0" + path.read_bytes() + b"\0")
  return digest.hexdigest()


def key(cfg: model_lib.ModelConfig) -> str:
  import flax  # pylint: disable=g-import-not-at-top
  text = json.dumps([FORMAT, repr(cfg), jax.__version__, flax.__version__, _nets_code()])
  return hashlib.sha256(text.encode()).hexdigest()


def flatten(tree: Any, prefix: str = "") -> dict[str, list[int]]:
  """``{"encoder/params/conv1_1/kernel": [3, 3, 3, 64], …}`` of a tree of dicts of shaped values."""
  if isinstance(tree, Mapping):
    out = {}
    for k, v in tree.items():
      out.update(flatten(v, f"{prefix}{k}{SEP}"))
    return out
  return {prefix[:-1]: [int(d) for d in tree.shape]}


def unflatten(table: dict[str, list[int]]) -> dict:
  """``flatten``'s table back to nested dicts of ``jax.ShapeDtypeStruct`` (float32, as params are)."""
  tree: dict = {}
  for name, shape in table.items():
    *path, leaf = name.split(SEP)
    node = tree
    for part in path:
      node = node.setdefault(part, {})
    node[leaf] = jax.ShapeDtypeStruct(tuple(shape), jax.numpy.float32)
  return tree


def read(path: Path, want: str) -> dict | None:
  """The table in ``path`` if it is one of this format and key, else None."""
  try:
    data = json.loads(path.read_text())
  except (OSError, ValueError, RecursionError):
    return None
  table = data.get("shapes") if isinstance(data, dict) and data.get("key") == want else None
  if not isinstance(table, dict) or not all(
      isinstance(k, str) and k and isinstance(v, list) and all(isinstance(d, int) and d >= 0 for d in v)
      for k, v in table.items()):
    return None
  return table


def write(path: Path, want: str, table: dict) -> None:
  """The table into ``path`` atomically; a folder that cannot be written only costs the trace."""
  try:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name + ".", suffix=".tmp")
    with os.fdopen(fd, "w") as f:
      json.dump({"key": want, "shapes": table}, f)
    os.replace(tmp, path)
  except OSError:
    pass


def shapes(name: str) -> dict:
  """``model.param_shapes(MODEL_CONFIGS[name])`` as nested dicts of ``jax.ShapeDtypeStruct``."""
  cfg = model_lib.MODEL_CONFIGS[name]
  folder = directory()
  if folder is None:
    return model_lib.param_shapes(cfg)
  want = key(cfg)
  path = folder / f"{name}-{want[:32]}.json"
  table = read(path, want)
  if table is None:
    table = flatten(model_lib.param_shapes(cfg))
    write(path, want, table)
  return unflatten(table)
