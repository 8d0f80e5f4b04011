"""A weights folder into the params of its model: files checked, shapes checked, the encoder filled in.

``load`` is what inference and evaluation call: it reads the folder's manifest (``io/weights.py``),
takes the ImageNet VGG-19 from the cache of ``pretrained`` when the manifest says so, checks every
network against the shapes of the model config the manifest names (``nets/model.py``), and says in one
line how to get whatever is missing.
"""
from __future__ import annotations

import dataclasses
import os
from pathlib import Path
from typing import Sequence

from jaxstyle.checkpoints import cache
from jaxstyle.checkpoints import pretrained
from jaxstyle.checkpoints import shape_cache
from jaxstyle.io import assets
from jaxstyle.io import weights as weights_lib
from jaxstyle.io.cli import one_line
from jaxstyle.io.weights import WeightsError
from jaxstyle.nets.model import MODEL_CONFIGS, ModelConfig, Params

HOW_TO_GET_WEIGHTS = (
    "get weights by training them (`python -m train.sanet --config train/configs/sanet.py "
    "--workdir runs/sanet`, which exports runs/sanet/weights) or by importing the published SANet "
    "checkpoints (`python -m jaxstyle.checkpoints.pretrained convert --vgg vgg_normalised.pth --decoder "
    "decoder_iter_500000.pth --transform transformer_iter_500000.pth --out weights_sanet`), "
    "then pass --weights DIR")
NO_SEGNET = ("portrait mode needs a trained SegNet (segnet.safetensors; the published SANet checkpoints "
             "have none): use weights that include it, give your own person mask with --mask FILE, or "
             "run --mode plain")
FETCH_ENCODER = "run `python -m jaxstyle.checkpoints.pretrained fetch` (or `make setup`) once"


def imagenet_encoder() -> dict:
  """The cached ImageNet VGG-19 (never downloads here: that is the setup step's job)."""
  path = cache.root() / pretrained.CACHE_FILE
  if not path.is_file():
    raise WeightsError(f"these weights use the ImageNet VGG-19 encoder, which is not cached at {path}: "
                       f"{FETCH_ENCODER}")
  try:
    return pretrained.load_vgg19_imagenet()
  except pretrained.PretrainedError as e:   # names the file and says how to replace it
    raise WeightsError(one_line(e)) from None
  except (OSError, ValueError) as e:
    raise WeightsError(f"{path}: {one_line(e)}; delete it and {FETCH_ENCODER}") from None


def check_shapes(params: Params, name: str, directory: str | os.PathLike = "") -> None:
  """``WeightsError`` naming the first variable of ``params`` that does not fit model config ``name``
  (its shapes from ``shape_cache``: traced once, then read)."""
  weights_lib.check_shapes(params, shape_cache.shapes(name), f"model config {name!r}", directory)


def load(directory: str | os.PathLike | None = None,
         networks: Sequence[str] = ("transform", "decoder", "segnet"), *, dtype: str = "float32",
         model_config: str | None = None) -> tuple[Params, ModelConfig]:
  """Float32 params of the encoder and ``networks`` from a weights folder (``io/weights.py``; None: the
  weights shipped in the package, ``assets.weights()``), and the ``ModelConfig`` its manifest names (or
  ``model_config``) at compute ``dtype``; ``WeightsError`` with a one-line message saying how to get
  what is missing."""
  directory = assets.weights() if directory is None else Path(directory)
  if not (directory / weights_lib.MANIFEST).is_file():
    raise WeightsError(f"no weights in {directory} (no {weights_lib.MANIFEST}): {HOW_TO_GET_WEIGHTS}")
  manifest = weights_lib.read_manifest(directory)
  name = model_config or manifest.get("model_config")
  if name not in MODEL_CONFIGS:
    raise WeightsError(f"{directory}: unknown model config {name!r} "
                       f"(this version knows {', '.join(MODEL_CONFIGS)})")
  have = {f.removesuffix(".safetensors") for f in manifest.get("files", {})}
  missing = [n for n in networks if n not in have]
  if missing:
    hint = NO_SEGNET if missing == ["segnet"] else HOW_TO_GET_WEIGHTS
    raise WeightsError(f"{directory} lacks {', '.join(m + '.safetensors' for m in missing)}: {hint}")
  encoder = imagenet_encoder() if manifest["encoder"] == "imagenet_vgg19" else None   # checked by read_manifest
  params, _ = weights_lib.load(directory)
  if encoder is None and "encoder" not in params:
    raise WeightsError(f"{directory}: {weights_lib.MANIFEST} says the encoder is in a file, "
                       "but lists no encoder.safetensors")
  params = {"encoder": params["encoder"] if encoder is None else encoder, **{n: params[n] for n in networks}}
  check_shapes(params, name, directory)
  return params, dataclasses.replace(MODEL_CONFIGS[name], dtype=dtype)
