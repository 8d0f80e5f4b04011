"""Importers of the published PyTorch checkpoints: SANet's ``vgg_normalised.pth``, ``decoder_iter_*.pth``
and ``transformer_iter_*.pth``, and torchvision's ``vgg19``, as flax variables.

Every checkpoint is read with ``jaxstyle.checkpoints.torch_pickle`` (no torch, no code from the file); each
``import_*`` accepts a path or an already loaded state dict. A PyTorch ``nn.Sequential`` names its
convolutions by position, so ``sequential_conv_indices`` derives those positions from the VGG block
layout (``tests/test_importers_equivalence.py`` checks them against the published module definitions).
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from jaxstyle.checkpoints import torch_pickle
from jaxstyle.nets import decoder as decoder_lib
from jaxstyle.nets import vgg as vgg_lib

Variables = dict[str, Any]


class PretrainedError(RuntimeError):
  """Pretrained weights could not be obtained, verified or matched to a network."""


def layers_up_to(depth: str, blocks=vgg_lib.VGG19_BLOCKS) -> list[str]:
  """Conv layers a ``vgg.VGG(blocks, depth=depth)`` owns, e.g. conv1_1 .. conv5_1 for relu5_1."""
  names = vgg_lib.layer_names(blocks)
  if depth.startswith("relu"):
    return names[:names.index(depth.replace("relu", "conv")) + 1]
  if depth.startswith("pool"):
    block = int(depth.removeprefix("pool"))
    return [n for n in names if int(n[4:].split("_")[0]) <= block]
  raise ValueError(f"unknown VGG depth {depth!r}")


def oihw_to_hwio(w: np.ndarray) -> np.ndarray:
  """A PyTorch conv weight (out, in, h, w) as a contiguous flax kernel (h, w, in, out)."""
  return np.ascontiguousarray(np.asarray(w).transpose(2, 3, 1, 0))


def conv_params(weight: np.ndarray, bias: np.ndarray, name: str = "conv") -> dict[str, np.ndarray]:
  """A PyTorch conv's (OIHW weight, bias) as our ``Conv`` params (HWIO kernel, bias), float32.

  Refuses (``PretrainedError``) anything but a 4-D floating-point weight with a matching 1-D bias, all
  finite: a checkpoint is user input, and a NaN or a bool tensor would convert into a folder that
  stylises into a black picture.
  """
  for what, x, ndim in (("weight", weight, 4), ("bias", bias, 1)):
    if not isinstance(x, np.ndarray) or x.ndim != ndim or x.dtype.kind != "f":
      shown = f"{x.dtype} {x.shape}" if isinstance(x, np.ndarray) else type(x).__name__
      raise PretrainedError(f"{name}.{what} must be a {ndim}-D floating-point tensor, got {shown}")
    if not np.isfinite(x).all():
      raise PretrainedError(f"{name}.{what} holds NaN or infinite values")
  if bias.shape != weight.shape[:1]:
    raise PretrainedError(f"{name}.bias has shape {bias.shape}, the weight {weight.shape} needs "
                          f"({weight.shape[0]},)")
  return {"kernel": oihw_to_hwio(weight).astype(np.float32), "bias": np.asarray(bias, np.float32)}


def _state_dict(path_or_state: str | os.PathLike | Mapping) -> Mapping[str, np.ndarray]:
  """A checkpoint's state dict (read with ``torch_pickle``: no code runs), or the mapping itself."""
  if isinstance(path_or_state, Mapping):
    return path_or_state
  if not Path(path_or_state).is_file():
    raise PretrainedError(f"{path_or_state}: no such file")
  try:
    state = torch_pickle.load(path_or_state)
  except (torch_pickle.TorchFileError, torch_pickle.UnsafePickleError) as e:
    raise PretrainedError(f"{path_or_state}: {e}") from None
  if isinstance(state, Mapping) and "state_dict" in state and isinstance(state["state_dict"], Mapping):
    state = state["state_dict"]
  if not isinstance(state, Mapping):
    raise PretrainedError(f"{path_or_state} holds a {type(state).__name__}, not a state dict")
  return state


def _convert(state: Mapping[str, np.ndarray], mapping: Mapping[str, str], what: str) -> dict:
  """``{flax path: state-dict prefix}`` -> nested params, checking every prefix has weight and bias."""
  params: dict = {}
  missing = [f"{p}.weight" for p in mapping.values() if f"{p}.weight" not in state or
             f"{p}.bias" not in state]
  if missing:
    raise PretrainedError(f"not a {what} checkpoint: missing {missing[:4]} (has "
                          f"{torch_pickle.short_repr(list(state)[:6])} ...)")
  for path, prefix in mapping.items():
    *parents, leaf = path.split("/")
    node = params
    for p in parents:
      node = node.setdefault(p, {})
    node[leaf] = conv_params(state[f"{prefix}.weight"], state[f"{prefix}.bias"], f"{what} {prefix}")
  return params


def sequential_conv_indices(blocks: Sequence[Sequence[int]], *, leading_conv: bool,
                            pad_layers: bool, pool_after_block: bool) -> dict[str, int]:
  """Index of every conv of a VGG ``nn.Sequential`` (conv, [pad], ReLU and pool modules count)."""
  index, i = {}, 0
  if leading_conv:
    index["conv0"], i = 0, 1
  for b, block in enumerate(blocks, start=1):
    if b > 1 and not pool_after_block:
      i += 1                                  # pool before the block (published vgg_normalised)
    for j in range(1, len(block) + 1):
      i += int(pad_layers)
      index[f"conv{b}_{j}"] = i
      i += 2                                  # conv, ReLU
    if pool_after_block:
      i += 1
  return index


# Published SANet encoder: conv0 = 0, conv1_1 = 2, conv1_2 = 5, conv2_1 = 9, ..., conv5_1 = 42.
VGG_NORMALISED_INDICES = sequential_conv_indices(
    vgg_lib.VGG19_BLOCKS, leading_conv=True, pad_layers=True, pool_after_block=False)
# torchvision vgg19().features: conv1_1 = 0, conv1_2 = 2, conv2_1 = 5, ..., conv5_1 = 28.
TORCHVISION_VGG19_INDICES = sequential_conv_indices(
    vgg_lib.VGG19_BLOCKS, leading_conv=False, pad_layers=False, pool_after_block=True)
# Published SANet decoder Sequential: conv indices in the order of decoder.DECODER_LAYERS.
SANET_DECODER_INDICES = dict(zip([name for name, _, _ in decoder_lib.DECODER_LAYERS],
                                 (1, 5, 8, 11, 14, 18, 21, 25, 28)))


def import_vgg_normalised(path: str | os.PathLike | Mapping, depth: str = "relu5_1") -> Variables:
  """AdaIN/SANet ``vgg_normalised.pth`` -> variables of ``vgg.VGG19(preprocess="normalised")``."""
  layers = ["conv0"] + layers_up_to(depth)
  return {"params": _convert(_state_dict(path), {n: str(VGG_NORMALISED_INDICES[n]) for n in layers},
                             "vgg_normalised")}


def import_torchvision_vgg19(path: str | os.PathLike | Mapping, depth: str = "relu5_1") -> Variables:
  """torchvision ``vgg19`` state dict -> variables of ``vgg.VGG19(preprocess="torchvision")``."""
  state = _state_dict(path)
  prefix = "features." if any(k.startswith("features.") for k in state) else ""
  mapping = {n: f"{prefix}{TORCHVISION_VGG19_INDICES[n]}" for n in layers_up_to(depth)}
  return {"params": _convert(state, mapping, "torchvision vgg19")}


def import_sanet_decoder(path: str | os.PathLike | Mapping) -> Variables:
  """Published SANet ``decoder_iter_*.pth`` -> variables of ``decoder.Decoder()``."""
  return {"params": _convert(_state_dict(path),
                             {n: str(i) for n, i in SANET_DECODER_INDICES.items()}, "SANet decoder")}


def import_sanet_transform(path: str | os.PathLike | Mapping) -> Variables:
  """Published SANet ``transformer_iter_*.pth`` -> variables of ``sanet.Transform()``."""
  mapping = {f"{s}/{c}": f"{s}.{c}" for s in ("sanet4_1", "sanet5_1")
             for c in ("f", "g", "h", "out_conv")}
  mapping["merge_conv"] = "merge_conv"
  return {"params": _convert(_state_dict(path), mapping, "SANet transformer")}
