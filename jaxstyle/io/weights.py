"""The project's weights format: a folder of safetensors files plus ``MANIFEST.json``.

    weights/
      MANIFEST.json            {"format": "jaxstyle-weights/1", "model_config": "default",
                                "encoder": "imagenet_vgg19" | "file",
                                "files": {"decoder.safetensors": {"sha256": ..., "dtype": ...}, ...},
                                "meta": {...free-form provenance...}}
      decoder.safetensors      one file per network: keys are '/'-joined flax variable paths,
      transform.safetensors    e.g. "params/conv4_1/kernel" (HWIO kernels), stored in the listed dtype
      segnet.safetensors       (float16 for shipping) and loaded as float32.
      [encoder.safetensors]    only when ``encoder == "file"`` (e.g. an imported vgg_normalised.pth);
                               otherwise the ImageNet VGG-19 comes from ``jaxstyle.checkpoints.pretrained``.

Every file's sha256 is checked before it is read; safetensors holds tensors only, so loading never runs
code. A folder is treated as hostile input all the same: the manifest must have exactly this shape, with
file names that stay inside the folder (``name.safetensors``, no path); every tensor must have the
manifest's dtype, be finite and stay within ``MAX_ABS_WEIGHT``. Anything else is one ``WeightsError``.

Folders are written whole: ``save`` and ``update`` go through ``folder_swap.replace_folder``, so a reader
or a killed writer sees the old folder or the new one, never a mix.
"""
from __future__ import annotations

import bisect
import hashlib
import json
import os
import re
import shutil
import warnings
from pathlib import Path
from typing import Any

from flax import traverse_util
import numpy as np
from safetensors.numpy import load as st_load, save as st_save

from jaxstyle.io import image_io
from jaxstyle.io.folder_swap import replace_folder

FORMAT = "jaxstyle-weights/1"
MANIFEST = "MANIFEST.json"
DTYPES = ("float16", "float32")
ENCODER_SOURCES = ("imagenet_vgg19", "file")
MAX_MANIFEST_BYTES = 1 << 20
# A plain file name: no folder part, no "..", nothing hidden.
FILE_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_-]*\.safetensors")
# No weight of these networks comes near this (shipped: |w| ≤ 0.27; the published vgg_normalised's
# conv0 scales by 255), and float16 saturates at 65504: a larger value is a broken or crafted export.
MAX_ABS_WEIGHT = 1e4
# Joins a flax variable path into a safetensors key ("params/conv4_1/kernel").
SEP = "/"


class WeightsError(Exception):
  """A weights folder is missing, incomplete, corrupt or of another format."""


def sha256_file(path: str | os.PathLike) -> str:
  h = hashlib.sha256()
  with open(path, "rb") as f:
    for block in iter(lambda: f.read(1 << 20), b""):
      h.update(block)
  return h.hexdigest()


def unflatten(flat: dict[str, np.ndarray], path: Path) -> dict:
  """Nested variables from ``SEP``-joined keys; a ``WeightsError`` when a key is also the folder of
  other keys (``a`` and ``a/b``), which would silently overwrite one of them."""
  keys = sorted(flat)
  for key in keys:
    folder = key + SEP
    i = bisect.bisect_left(keys, folder)   # keys under ``folder`` sort right after it
    if i < len(keys) and keys[i].startswith(folder):
      raise WeightsError(f"{path}: key {key[:100]!r} is both a tensor and the folder of {keys[i][:100]!r}")
  return traverse_util.unflatten_dict(flat, sep=SEP)


def save(directory: str | os.PathLike, params: dict[str, Any], model_config: str, *,
         dtype: str = "float16", include_encoder: bool = False, meta: dict | None = None) -> dict:
  """Writes ``params`` (minus the encoder unless ``include_encoder``) as the folder ``directory``,
  replacing whatever was there (as a whole), and returns the manifest."""

  def fill(new: Path) -> dict:
    files = _write_networks(new, params, dtype, include_encoder)
    manifest = {"format": FORMAT, "model_config": model_config,
                "encoder": "file" if include_encoder else "imagenet_vgg19", "files": files,
                "meta": meta or {}}
    _write_manifest(new, manifest)
    return manifest

  return replace_folder(directory, fill)


def _write_networks(directory: Path, params: dict[str, Any], dtype: str, include_encoder: bool) -> dict:
  if dtype not in DTYPES:
    raise WeightsError(f"weights dtype must be one of {', '.join(DTYPES)}, not {dtype!r}")
  files = {}
  for name, variables in sorted(params.items()):
    if name == "encoder" and not include_encoder:
      continue
    flat = {k: np.asarray(v, np.float32).astype(dtype)
            for k, v in traverse_util.flatten_dict(variables, sep=SEP).items()}
    fname = f"{name}.safetensors"
    check_tensors(flat, dtype, directory / fname)   # never write what load would refuse
    with image_io.atomic_path(directory / fname) as tmp:
      tmp.write_bytes(st_save(flat))
    files[fname] = {"sha256": sha256_file(directory / fname), "dtype": dtype,
                    "params": int(sum(v.size for v in flat.values()))}
  return files


def _write_manifest(directory: Path, manifest: dict) -> None:
  with image_io.atomic_path(directory / MANIFEST) as tmp:
    tmp.write_text(json.dumps(manifest, indent=2) + "\n")


def _carry_over(old: Path, new: Path, names: list[str]) -> None:
  """Hard links (copies across file systems) of ``old/name`` into ``new``."""
  for name in names:
    try:
      os.link(old / name, new / name)
    except OSError:
      shutil.copy2(old / name, new / name)


def update(directory: str | os.PathLike, params: dict[str, Any], model_config: str, *,
           dtype: str = "float16", include_encoder: bool = False, meta: dict | None = None) -> dict:
  """Like ``save``, but keeps the networks, meta and other files (a model card) already in
  ``directory`` that ``params`` does not replace, so the SANet and SegNet trainers can export into one
  folder. ``meta`` is merged key by key. A kept network whose file is missing or does not match its
  sha256 (a folder broken by an older version) is dropped with a warning rather than carried on.
  """
  directory = Path(directory)

  def fill(new: Path) -> dict:
    old = manifest_or_none(directory)
    if old is None and (directory / MANIFEST).exists():
      warnings.warn(f"{directory / MANIFEST} is unreadable: the folder is rewritten from these networks")
    if old is not None and old["model_config"] != model_config:
      raise WeightsError(f"{directory} holds model config {old['model_config']!r}, not {model_config!r}")
    files = _write_networks(new, params, dtype, include_encoder)
    kept = {}
    for fname, info in (old["files"] if old else {}).items():
      if fname in files:
        continue
      if not (directory / fname).is_file() or sha256_file(directory / fname) != info["sha256"]:
        warnings.warn(f"{directory / fname} is missing or does not match its sha256: dropped")
        continue
      kept[fname] = info
    others = [p.name for p in directory.iterdir() if p.is_file() and not p.name.startswith(".")
              and p.name != MANIFEST and p.suffix != ".safetensors"] if directory.is_dir() else []
    _carry_over(directory, new, sorted(kept) + others)
    files = {**kept, **files}
    encoder = "file" if "encoder.safetensors" in files else "imagenet_vgg19"
    merged = {**(old["meta"] if old else {}), **(meta or {})}
    manifest = {"format": FORMAT, "model_config": model_config, "encoder": encoder,
                "files": dict(sorted(files.items())), "meta": merged}
    _write_manifest(new, manifest)
    return manifest

  return replace_folder(directory, fill)


# --- reading ------------------------------------------------------------------------------------------


def check_shapes(params: dict[str, Any], expected: dict[str, Any], what: str,
                 directory: str | os.PathLike = "") -> None:
  """Raises ``WeightsError`` naming the first variable of ``params`` (per network) that ``expected``
  (the same tree of anything with a ``.shape``) lacks, or holds with another shape, or that is missing."""
  for net, variables in params.items():
    got = {SEP.join(k): np.shape(v) for k, v in traverse_util.flatten_dict(variables).items()}
    want = {SEP.join(k): v.shape for k, v in traverse_util.flatten_dict(expected[net]).items()}
    for key in sorted(want.keys() | got.keys()):
      problem = ("it lacks " + key if key not in got else f"unexpected variable {key}" if key not in want
                 else f"{key} has shape {got[key]}, expected {want[key]}" if got[key] != want[key] else "")
      if problem:
        raise WeightsError(f"{directory}: {net} does not fit {what}: {problem}")


def check_file_name(fname: Any, where: Path) -> str:
  """``fname`` if it is a plain ``NAME.safetensors`` (so ``where / fname`` stays in ``where``)."""
  if not isinstance(fname, str) or not FILE_NAME.fullmatch(fname):
    shown = repr(fname)[:80] if isinstance(fname, str) else type(fname).__name__
    raise WeightsError(f"{where}: file name {shown} in {MANIFEST} is not a plain NAME.safetensors "
                       "inside the folder")
  return fname


def check_manifest(manifest: Any, path: Path) -> dict:
  """``manifest`` if it has the shape ``save`` writes; else a ``WeightsError`` naming what is wrong."""
  if not isinstance(manifest, dict):
    raise WeightsError(f"{path}: expected a JSON object, got {type(manifest).__name__}")
  if manifest.get("format") != FORMAT:
    raise WeightsError(f"{path}: format {str(manifest.get('format'))[:80]!r}, expected {FORMAT!r}")
  for key, kind in (("model_config", str), ("encoder", str), ("files", dict), ("meta", dict)):
    if key == "meta" and key not in manifest:
      continue
    if not isinstance(manifest.get(key), kind):
      raise WeightsError(f"{path}: {key!r} must be a JSON {'string' if kind is str else 'object'}, got "
                         f"{type(manifest.get(key)).__name__}")
  if manifest["encoder"] not in ENCODER_SOURCES:
    raise WeightsError(f"{path}: unknown encoder source {manifest['encoder'][:80]!r}, expected one of "
                       f"{', '.join(ENCODER_SOURCES)}")
  for fname, info in manifest["files"].items():
    check_file_name(fname, path.parent)
    if not isinstance(info, dict):
      raise WeightsError(f"{path}: the entry of {fname} must be a JSON object")
    sha = info.get("sha256")
    if not isinstance(sha, str) or not re.fullmatch(r"[0-9a-f]{64}", sha):
      raise WeightsError(f"{path}: the entry of {fname} has no sha256 (64 hex digits)")
    if info.get("dtype") not in DTYPES:
      raise WeightsError(f"{path}: the entry of {fname} has dtype {str(info.get('dtype'))[:40]!r}, "
                         f"expected one of {', '.join(DTYPES)}")
  return manifest


def read_manifest(directory: str | os.PathLike) -> dict:
  path = Path(directory) / MANIFEST
  if not path.is_file():
    raise WeightsError(f"{directory} holds no {MANIFEST}: not a jaxstyle weights folder")
  if path.stat().st_size > MAX_MANIFEST_BYTES:
    raise WeightsError(f"{path} is {path.stat().st_size} bytes, more than a manifest's "
                       f"{MAX_MANIFEST_BYTES}: not a jaxstyle weights folder")
  try:
    manifest = json.loads(path.read_bytes())
  except (ValueError, UnicodeDecodeError, RecursionError) as e:
    what = "nested too deeply" if isinstance(e, RecursionError) else " ".join(str(e).split())[:200]
    raise WeightsError(f"{path} is not valid JSON: {what}") from None
  except OSError as e:
    raise WeightsError(f"{path}: cannot read ({e.strerror})") from None
  return check_manifest(manifest, path)


def manifest_or_none(directory: str | os.PathLike) -> dict | None:
  """The manifest of ``directory``, or None when it has none or an unreadable one."""
  try:
    return read_manifest(directory)
  except WeightsError:
    return None


def holds_export(directory: str | os.PathLike, trainer: str, steps: Any, networks) -> bool:
  """Whether ``directory`` is intact (``check_folder``) and holds ``networks`` as exported by
  ``trainer`` at ``steps`` (``meta[trainer]["steps"]``): a finished run need not export again."""
  try:
    manifest = check_folder(directory)
  except WeightsError:
    return False
  info = manifest.get("meta", {}).get(trainer)
  return (isinstance(info, dict) and info.get("steps") == steps
          and all(f"{n}.safetensors" in manifest["files"] for n in networks))


def check_tensors(flat: dict[str, np.ndarray], dtype: str, path: Path) -> dict[str, np.ndarray]:
  """``flat`` if every tensor has ``dtype``, is finite and within ``MAX_ABS_WEIGHT``."""
  for key, value in flat.items():
    if value.dtype != np.dtype(dtype):
      raise WeightsError(f"{path}: {key} is {value.dtype}, the manifest says {dtype}")
    bad = int(value.size - np.count_nonzero(np.isfinite(value)))
    if bad:
      raise WeightsError(f"{path}: {key} holds {bad} NaN or infinite value(s) of {value.size}")
    if value.size and np.abs(value).max() > MAX_ABS_WEIGHT:
      raise WeightsError(f"{path}: {key} holds values up to {float(np.abs(value).max()):.4g}, beyond "
                         f"±{MAX_ABS_WEIGHT:g} (no weight of these networks is that large)")
  return flat


def read_safetensors(path: Path, dtype: str | None = None, data: bytes | None = None
                     ) -> dict[str, np.ndarray]:
  """Tensors of a safetensors file (its bytes ``data`` when already read), checked by ``check_tensors``
  when ``dtype`` is given; a ``WeightsError`` for a truncated or garbage file."""
  try:
    flat = st_load(path.read_bytes() if data is None else data)
  except OSError as e:
    raise WeightsError(f"{path}: cannot read ({e.strerror})") from None
  except Exception as e:  # safetensors raises its own SafetensorError (and ValueError) for bad files
    raise WeightsError(f"{path}: not a readable safetensors file "
                       f"({' '.join(str(e).split())[:200]})") from None
  return flat if dtype is None else check_tensors(flat, dtype, path)


def _verified_bytes(directory: Path, fname: str, info: dict) -> bytes:
  """The bytes of a listed file, read once (then hashed and parsed: nothing can change in between)."""
  path = directory / fname
  if path.is_symlink() or not path.is_file():
    raise WeightsError(f"{path} is listed in {MANIFEST} but missing (or not a plain file)")
  try:
    data = path.read_bytes()
  except OSError as e:
    raise WeightsError(f"{path}: cannot read ({e.strerror})") from None
  digest = hashlib.sha256(data).hexdigest()
  if digest != info["sha256"]:
    raise WeightsError(f"{path}: sha256 {digest} does not match the manifest ({info['sha256']})")
  return data


def check_folder(directory: str | os.PathLike) -> dict:
  """The manifest of ``directory`` when every file it lists is present with its sha256; else a
  ``WeightsError``. Cheaper than ``load``: nothing is parsed."""
  directory = Path(directory)
  manifest = read_manifest(directory)
  for fname, info in manifest["files"].items():
    _verified_bytes(directory, fname, info)
  return manifest


def load(directory: str | os.PathLike) -> tuple[dict[str, Any], dict]:
  """Reads a weights folder into float32 flax variables per network; returns (params, manifest).

  The encoder is included only when the manifest says ``"encoder": "file"``.
  """
  directory = Path(directory)
  manifest = read_manifest(directory)
  params = {}
  for fname, info in manifest["files"].items():
    flat = read_safetensors(directory / fname, info["dtype"], _verified_bytes(directory, fname, info))
    tree = unflatten({k: v.astype(np.float32) for k, v in flat.items()}, directory / fname)
    count = sum(v.size for v in flat.values())
    if info.get("params", count) != count:
      raise WeightsError(f"{directory / fname}: holds {count} values, the manifest says {info['params']}")
    params[fname.removesuffix(".safetensors")] = tree
  return params, manifest
