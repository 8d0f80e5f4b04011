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
                               otherwise the ImageNet VGG-19 comes from ``jaxstyle.pretrained``.

Every file's sha256 is checked before it is read; safetensors holds tensors only, so loading never runs
code.
"""
from __future__ import annotations

import hashlib
import json
import os
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
from safetensors.numpy import load as st_load, save as st_save

FORMAT = "jaxstyle-weights/1"
MANIFEST = "MANIFEST.json"


class WeightsError(Exception):
  """A weights folder is missing, incomplete, corrupt or of another format."""


def sha256_file(path: str | os.PathLike) -> str:
  h = hashlib.sha256()
  with open(path, "rb") as f:
    for block in iter(lambda: f.read(1 << 20), b""):
      h.update(block)
  return h.hexdigest()


def flatten(tree: dict, prefix: str = "") -> dict[str, np.ndarray]:
  out = {}
  for k, v in tree.items():
    key = f"{prefix}{k}"
    if isinstance(v, dict):
      out.update(flatten(v, key + "/"))
    else:
      out[key] = np.asarray(v)
  return out


def unflatten(flat: dict[str, np.ndarray]) -> dict:
  tree: dict = {}
  for key, value in flat.items():
    node = tree
    *parents, leaf = key.split("/")
    for p in parents:
      node = node.setdefault(p, {})
    node[leaf] = value
  return tree


def atomic_write_bytes(path: Path, data: bytes) -> None:
  path.parent.mkdir(parents=True, exist_ok=True)
  fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
  try:
    with os.fdopen(fd, "wb") as f:
      f.write(data)
    os.chmod(tmp, 0o644)   # mkstemp makes 0600; weights folders are shared read-only
    os.replace(tmp, path)
  except BaseException:
    os.unlink(tmp)
    raise


def save(directory: str | os.PathLike, params: dict[str, Any], model_config: str, *,
         dtype: str = "float16", include_encoder: bool = False, meta: dict | None = None) -> dict:
  """Writes ``params`` (minus the encoder unless ``include_encoder``) and returns the manifest."""
  directory = Path(directory)
  files = _write_networks(directory, params, dtype, include_encoder)
  manifest = {"format": FORMAT, "model_config": model_config,
              "encoder": "file" if include_encoder else "imagenet_vgg19", "files": files,
              "meta": meta or {}}
  atomic_write_bytes(directory / MANIFEST, (json.dumps(manifest, indent=2) + "\n").encode())
  return manifest


def _write_networks(directory: Path, params: dict[str, Any], dtype: str, include_encoder: bool) -> dict:
  files = {}
  for name, variables in sorted(params.items()):
    if name == "encoder" and not include_encoder:
      continue
    flat = {k: np.asarray(v, np.float32).astype(dtype) for k, v in flatten(variables).items()}
    fname = f"{name}.safetensors"
    atomic_write_bytes(directory / fname, st_save(flat))
    files[fname] = {"sha256": sha256_file(directory / fname), "dtype": dtype,
                    "params": int(sum(v.size for v in flat.values()))}
  return files


def update(directory: str | os.PathLike, params: dict[str, Any], model_config: str, *,
           dtype: str = "float16", include_encoder: bool = False, meta: dict | None = None) -> dict:
  """Like ``save``, but keeps the networks and meta already in ``directory`` that ``params`` does not
  replace, so the SANet and SegNet trainers can export into one folder. ``meta`` is merged key by key.

  The manifest's read-modify-write holds an exclusive lock on ``directory/.lock``.
  """
  import fcntl  # pylint: disable=g-import-not-at-top

  directory = Path(directory)
  directory.mkdir(parents=True, exist_ok=True)
  with open(directory / ".lock", "w") as lock:
    fcntl.flock(lock, fcntl.LOCK_EX)
    old = read_manifest(directory) if (directory / MANIFEST).is_file() else None
    if old is not None and old["model_config"] != model_config:
      raise WeightsError(f"{directory} holds model config {old['model_config']!r}, not {model_config!r}")
    files = dict(old["files"]) if old else {}
    files.update(_write_networks(directory, params, dtype, include_encoder))
    encoder = "file" if "encoder.safetensors" in files else "imagenet_vgg19"
    meta = {**(old["meta"] if old else {}), **(meta or {})}
    manifest = {"format": FORMAT, "model_config": model_config, "encoder": encoder,
                "files": dict(sorted(files.items())), "meta": meta}
    atomic_write_bytes(directory / MANIFEST, (json.dumps(manifest, indent=2) + "\n").encode())
  return manifest


def read_manifest(directory: str | os.PathLike) -> dict:
  path = Path(directory) / MANIFEST
  if not path.is_file():
    raise WeightsError(f"{directory} holds no {MANIFEST}: not a jaxstyle weights folder")
  try:
    manifest = json.loads(path.read_text())
  except (ValueError, UnicodeDecodeError) as e:
    raise WeightsError(f"{path} is not valid JSON: {e}") from None
  if manifest.get("format") != FORMAT:
    raise WeightsError(f"{path}: format {manifest.get('format')!r}, expected {FORMAT!r}")
  return manifest


def load(directory: str | os.PathLike) -> tuple[dict[str, Any], dict]:
  """Reads a weights folder into float32 flax variables per network; returns (params, manifest).

  The encoder is included only when the manifest says ``"encoder": "file"``.
  """
  directory = Path(directory)
  manifest = read_manifest(directory)
  params = {}
  for fname, info in manifest["files"].items():
    path = directory / fname
    if not path.is_file():
      raise WeightsError(f"{path} is listed in {MANIFEST} but missing")
    data = path.read_bytes()
    digest = hashlib.sha256(data).hexdigest()
    if digest != info["sha256"]:
      raise WeightsError(f"{path}: sha256 {digest} does not match the manifest ({info['sha256']})")
    flat = {k: v.astype(np.float32) for k, v in st_load(data).items()}
    params[fname.removesuffix(".safetensors")] = unflatten(flat)
  return params, manifest
