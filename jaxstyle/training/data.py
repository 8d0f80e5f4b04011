"""Training data that is not a stream: file lists, device-resident datasets, the SegNet portrait split.

- ``list_images``: image files (``image_io.IMAGE_SUFFIXES``) under folders, sorted; streams of random
  crops from them, and from tfds, are built on Grain in ``input_pipeline``.
- ``ResidentImages``: a small dataset decoded once (``image_io.decode_uint8``) and kept on the
  accelerator; ``sample_crops`` takes the random crops inside the jitted train step, so no host decoding
  is in the loop. Its batches are pure functions of ``(key, step)``: a resumed run sees the batches an
  uninterrupted one would have.
- ``portrait_segmentation_split`` pairs each portrait with its best mask (hand-drawn or shipped where
  ``SOURCES.tsv`` names one, else the MediaPipe teacher's soft mask), holds out a fixed ~20% of the
  hand-annotated portraits for mIoU, and can add person-free photos as negatives (all-zero masks).
"""
from __future__ import annotations

import concurrent.futures
import csv
import dataclasses
import hashlib
import os
import threading
from pathlib import Path
from typing import Any, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from jaxstyle.io import image_io

REPO_ROOT = Path(__file__).resolve().parents[2]   # jaxstyle/training/data.py → the repository
# Annotation kinds in portraits/SOURCES.tsv made by people (not a model's prediction).
HAND_ANNOTATED_KINDS = ("gt_npr_manual", "gt_celebamaskhq_labels")


def resolve_path(path: str | os.PathLike, base: str | os.PathLike | None = None) -> Path:
  """``path`` if absolute, else relative to ``base`` (itself relative to the repository root)."""
  path = Path(path).expanduser()
  if path.is_absolute():
    return path
  base = REPO_ROOT if base is None else resolve_path(base)
  return base / path


def list_images(*roots: str | os.PathLike) -> list[str]:
  """Image files under each root (recursively), sorted, so every process sees the same list."""
  files = []
  for root in roots:
    root = Path(root)
    if root.is_file():
      files.append(str(root))
      continue
    if not root.is_dir():
      raise FileNotFoundError(f"image folder {root} does not exist")
    for dirpath, _, names in os.walk(root):
      files += [os.path.join(dirpath, n) for n in names if image_io.is_image(n)]
  return sorted(files)


class DecodeStats:
  """Thread-safe counts of decoded images and of unreadable records (file names or record indices)."""

  def __init__(self):
    self._lock = threading.Lock()
    self.decoded = 0
    self.skipped = 0
    self.corrupt: set[Any] = set()

  def ok(self):
    with self._lock:
      self.decoded += 1

  def failed(self, record_id):
    with self._lock:
      self.skipped += 1
      self.corrupt.add(record_id)

  def metrics(self, prefix: str = "data") -> dict[str, int]:
    with self._lock:
      return {f"{prefix}/decoded": self.decoded, f"{prefix}/skipped_reads": self.skipped,
              f"{prefix}/corrupt_files": len(self.corrupt)}


def center_crop(x: np.ndarray, hw: tuple[int, int]) -> np.ndarray:
  h, w = x.shape[:2]
  top, left = (h - hw[0]) // 2, (w - hw[1]) // 2
  return x[top:top + hw[0], left:left + hw[1]]


# ------------------------------------------------------------------------------ device-resident dataset


@dataclasses.dataclass
class ResidentImages:
  """A small dataset decoded once into one uint8 array that lives on the device.

  Each image is resized so its shorter side is ``resize``; its longer side is center-cropped to at most
  ``max_aspect × resize`` and it is stored landscape (portrait images transposed, ``transposed`` set) at
  the top-left of a ``[N, resize, ⌈max_aspect·resize⌉, C]`` array, zero-padded on the right. ``widths``
  holds each stored width. Crops are square, so a crop of the stored image transposed back is a crop of
  the original. ``C`` is 3 (RGB) or 4 (RGB + a mask in channel 3). Order follows ``files``, minus
  unreadable files (counted in ``stats``).
  """
  pixels: np.ndarray       # uint8 [N, resize, max_w, C]
  widths: np.ndarray       # int32 [N]
  transposed: np.ndarray   # bool [N]
  files: list[str]
  stats: DecodeStats

  def arrays(self) -> dict[str, np.ndarray]:
    """The arrays ``sample_crops`` reads (put them on the device once, replicated)."""
    return {"pixels": self.pixels, "widths": self.widths, "transposed": self.transposed}

  def __len__(self) -> int:
    return len(self.pixels)


def _fit_landscape(x: np.ndarray, max_w: int) -> tuple[np.ndarray, bool]:
  transposed = x.shape[0] > x.shape[1]
  if transposed:
    x = x.transpose(1, 0, 2)
  if x.shape[1] > max_w:
    x = center_crop(x, (x.shape[0], max_w))
  return x, transposed


def load_resident(files: Sequence[str], *, resize: int, masks: Sequence[str | None] | None = None,
                  max_aspect: float = 2.0, num_threads: int = 8) -> ResidentImages:
  """Decodes ``files`` (and optionally one mask per file, ``None`` = all background) once.

  Masks are read by ``image_io.load_mask`` (alpha or luminance, soft masks stay soft) at the image's size.
  """
  max_w = int(np.ceil(max_aspect * resize))
  stats = DecodeStats()

  def read(i: int):
    try:
      image = image_io.decode_uint8(files[i], resize)
      if masks is not None:
        mask = (np.zeros(image.shape[:2], np.float32) if masks[i] is None
                else image_io.load_mask(masks[i], image.shape[:2]))
        image = np.concatenate([image, np.round(mask * 255.0).astype(np.uint8)[..., None]], axis=-1)
    except (image_io.ImageError, OSError, ValueError):
      stats.failed(files[i])
      return None
    stats.ok()
    return _fit_landscape(image, max_w)

  with concurrent.futures.ThreadPoolExecutor(num_threads) as pool:
    decoded = list(pool.map(read, range(len(files))))
  keep = [i for i, d in enumerate(decoded) if d is not None]
  if not keep:
    raise ValueError(f"none of the {len(files)} files could be read")
  channels = decoded[keep[0]][0].shape[-1]
  pixels = np.zeros((len(keep), resize, max_w, channels), np.uint8)
  widths = np.zeros(len(keep), np.int32)
  transposed = np.zeros(len(keep), bool)
  for row, i in enumerate(keep):
    image, transposed[row] = decoded[i]
    pixels[row, :, :image.shape[1]] = image
    widths[row] = image.shape[1]
  return ResidentImages(pixels, widths, transposed, [files[i] for i in keep], stats)


def sample_crops(arrays: dict[str, jax.Array], key: jax.Array, step: jax.Array, batch_size: int,
                 crop: int, flip: bool = False) -> jax.Array:
  """Random square crops of a ``ResidentImages`` inside jit: float32 ``[B, crop, crop, C]`` in [0, 1].

  Batch ``step`` takes elements ``step·B … step·B + B − 1`` of an endless sequence of per-epoch
  permutations (epoch ``e``'s from ``fold_in(fold_in(key, 0), e)``; ``key`` is fixed for the run); crop
  offsets and flips come from ``fold_in(fold_in(key, 1), step)``. With ``flip``, each crop is mirrored
  left-right with probability 1/2.
  """
  pixels = arrays["pixels"]
  n, height = pixels.shape[0], pixels.shape[1]
  if crop > height:
    raise ValueError(f"crop {crop} is larger than the resident images' shorter side {height}")
  pos = step.astype(jnp.int32) * batch_size + jnp.arange(batch_size, dtype=jnp.int32)
  perm_key = jax.random.fold_in(key, 0)
  index = jax.vmap(lambda p: jax.random.permutation(jax.random.fold_in(perm_key, p // n), n)[p % n])(pos)
  k_y, k_x, k_flip = jax.random.split(jax.random.fold_in(jax.random.fold_in(key, 1), step), 3)
  widths = arrays["widths"][index]
  top = jax.random.randint(k_y, (batch_size,), 0, height - crop + 1)
  left = jax.random.randint(k_x, (batch_size,), 0, jnp.maximum(widths - crop + 1, 1))

  def one(i, y, x):
    return jax.lax.dynamic_slice(pixels, (i, y, x, 0), (1, crop, crop, pixels.shape[-1]))[0]

  crops = jax.vmap(one)(index, top, left)
  swap = arrays["transposed"][index][:, None, None, None]
  crops = jnp.where(swap, crops.transpose(0, 2, 1, 3), crops)
  if flip:
    mirror = jax.random.bernoulli(k_flip, 0.5, (batch_size,))[:, None, None, None]
    crops = jnp.where(mirror, crops[:, :, ::-1], crops)
  return crops.astype(jnp.float32) / 255.0


# --------------------------------------------------------------------------------- segmentation data


@dataclasses.dataclass(frozen=True)
class SegExample:
  image: str
  mask: str | None     # None: a person-free photo (all-background target)
  kind: str            # SOURCES.tsv mask_kind, "mediapipe_teacher" or "negative"


def _read_sources(folder: Path) -> list[dict[str, str]]:
  with open(folder / "SOURCES.tsv", newline="") as f:
    return list(csv.DictReader(f, delimiter="\t"))


def holdout_order(name: str) -> str:
  """Sort key of the held-out split: a hash of the file name, stable as files are added or removed."""
  return hashlib.sha256(name.encode()).hexdigest()


def portrait_segmentation_split(data_dir: str | os.PathLike, *, portraits: str = "portraits",
                                masks: str = "portraits_masks", teacher: str = "portraits_masks/mediapipe",
                                photos: str = "photos", photos_with_people: Sequence[str] = (),
                                negatives: bool = True, holdout_fraction: float = 0.2,
                                holdout_kinds: Sequence[str] = HAND_ANNOTATED_KINDS,
                                ) -> tuple[list[SegExample], list[SegExample]]:
  """(train, held_out) examples for SegNet from the shared portraits.

  Held out: the ``round(holdout_fraction · n)`` portraits with a hand-annotated mask (``holdout_kinds``)
  whose name hashes lowest (``holdout_order``); they are not used for training in any form. Training
  targets: the mask ``SOURCES.tsv`` names (hand-drawn or a shipped model mask), else the MediaPipe soft
  mask. Negatives: photos listed in ``photos/SOURCES.tsv`` and not in ``photos_with_people`` (which the
  caller must have checked by eye), with an all-zero target.
  """
  data_dir = resolve_path(data_dir)
  portrait_dir, mask_dir, teacher_dir = data_dir / portraits, data_dir / masks, data_dir / teacher
  labelled, train = [], []
  for row in _read_sources(portrait_dir):
    image = str(portrait_dir / row["file"])
    if row.get("mask_file"):
      kind = row["mask_kind"].split()[0]  # e.g. "gt_celebamaskhq_labels (label!=0; ...)"
      ex = SegExample(image, str(mask_dir / row["mask_file"]), kind)
    else:
      ex = SegExample(image, str(teacher_dir / (Path(row["file"]).stem + ".png")), "mediapipe_teacher")
    (labelled if ex.kind in holdout_kinds else train).append(ex)
  labelled.sort(key=lambda ex: holdout_order(Path(ex.image).name))
  n_eval = round(holdout_fraction * len(labelled))
  held_out, train = labelled[:n_eval], train + labelled[n_eval:]
  if negatives:
    exclude = set(photos_with_people)
    train += [SegExample(str(data_dir / photos / row["file"]), None, "negative")
              for row in _read_sources(data_dir / photos) if row["file"] not in exclude]
  train.sort(key=lambda ex: ex.image)
  held_out.sort(key=lambda ex: ex.image)
  return train, held_out


def load_eval_pairs(examples: Sequence[SegExample], size: int) -> tuple[np.ndarray, np.ndarray]:
  """Held-out images and masks as float32 ``[N, size, size, 3]`` and ``[N, size, size]``.

  Each pair is resized (shorter side ``size``) and center-cropped to a square, so one compiled eval
  program serves every image; IoU is measured on that square.
  """
  data = load_resident([ex.image for ex in examples], resize=size, masks=[ex.mask for ex in examples],
                       max_aspect=1.0, num_threads=4)
  if len(data) != len(examples):
    raise ValueError(f"unreadable held-out files: {sorted(data.stats.corrupt)}")
  x = data.pixels.astype(np.float32) / 255.0
  x = np.where(data.transposed[:, None, None, None], x.transpose(0, 2, 1, 3), x)
  return x[..., :3], x[..., 3]
