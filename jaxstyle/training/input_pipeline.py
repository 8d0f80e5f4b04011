"""Input pipelines on Grain: endless, deterministic, sharded, exactly resumable batches of random crops.

    records (files, or a tfds array_record split) ─ this process's shard ─ shuffle (per epoch) ─ repeat
      ─ read + random crop (seeded by the element's index) ─ to_iter_dataset (threads) ─ batch

Every step is an index transformation of a ``grain.MapDataset``, so element ``i`` of process ``p`` is a
pure function of ``(seed, stream, p, i)``: its record comes from the epoch's permutation, its crop (and
any replacement of an unreadable record, drawn from the same shard) from a generator seeded by the
element's index. Local batch ``t`` is elements ``t·B … t·B + B − 1``. The iterator is a
``grain.DatasetIterator`` whose state is the next element's index: saved beside the train state in the
orbax checkpoint (``grain.checkpoint.CheckpointSave(it)`` / ``CheckpointRestore(it)``), a restored
iterator yields exactly the batches an uninterrupted one would have.

Sources: image files (``folder_batches``), any tfds image dataset (``tfds_image_batches``; COCO 2017
content, styles), and COCO 2017 panoptic ``person`` masks for SegNet (``tfds_person_mask_batches``). tfds
sources are read through ``tfds.data_source`` (``jaxstyle.io.datasets``), which needs the dataset
prepared in the ``array_record`` file format (``tfds build coco/2017 --file_format=array_record``);
images are decoded by ``image_io.decode_uint8``, the one decoder of the project, not by tfds or TensorFlow.
"""
from __future__ import annotations

import zlib
from typing import Any, Callable, Sequence

import grain
import jax
import numpy as np
from PIL import Image

from jaxstyle.io import datasets
from jaxstyle.io import image_io
from jaxstyle.training.data import DecodeStats

Record = Any
Reader = Callable[[Record], np.ndarray]   # a record → uint8 [H, W, C] (C = 3, or 4 with a mask)
COCO_PANOPTIC_PERSON = 0  # "person" is the first of COCO panoptic's 133 categories


def random_crop(x: np.ndarray, crop: int, rng: np.random.Generator) -> np.ndarray:
  h, w = x.shape[:2]
  if h < crop or w < crop:
    raise ValueError(f"image of {h}×{w} is smaller than the crop {crop}: resize must be ≥ crop")
  top, left = rng.integers(0, h - crop + 1), rng.integers(0, w - crop + 1)
  return x[top:top + crop, left:left + crop]


class _ReadAndCrop(grain.transforms.RandomMap):
  """Record index → ``{"image": uint8 [crop, crop, 3]}`` (plus ``"mask"`` for 4-channel readers).

  An unreadable record is counted in ``stats`` and replaced by a record of the same shard drawn from the
  element's generator, so the replacement is as deterministic as the rest.
  """

  def __init__(self, records: Sequence[Record], shard: Sequence[int], read: Reader, crop: int,
               stats: DecodeStats, max_attempts: int = 20):
    self.records, self.shard, self.read, self.crop = records, shard, read, crop
    self.stats, self.max_attempts = stats, max_attempts

  def random_map(self, element: int, rng: np.random.Generator) -> dict[str, np.ndarray]:
    index = element
    for _ in range(self.max_attempts):
      record = self.records[index]
      try:
        pixels = self.read(record)
      except (image_io.ImageError, OSError, ValueError):   # a bad record, not a bad configuration
        self.stats.failed(record if isinstance(record, str) else index)
        index = self.shard[rng.integers(len(self.shard))]
        continue
      self.stats.ok()
      x = random_crop(pixels, self.crop, rng)
      return {"image": x[..., :3]} if x.shape[-1] == 3 else {"image": x[..., :3], "mask": x[..., 3]}
    raise RuntimeError(f"{self.max_attempts} unreadable records in a row; {self.stats.metrics()}")


def _to_float(batch: Sequence[dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
  return {k: np.stack([ex[k] for ex in batch]).astype(np.float32) / 255.0 for k in batch[0]}


class Batches(grain.DatasetIterator):
  """Endless float32 batches in [0, 1] (``{"image": [B, crop, crop, 3]}``, plus ``"mask": [B, crop,
  crop]`` for masks); ``stats`` counts what this process decoded and skipped. Its state is grain's."""

  def __init__(self, parent: grain.DatasetIterator, stats: DecodeStats):
    super().__init__(parent)
    self.stats = stats

  def __next__(self) -> dict[str, np.ndarray]:
    return next(self._parent)

  def get_state(self) -> dict[str, Any]:
    return self._parent.get_state()

  def set_state(self, state: dict[str, Any]) -> None:
    self._parent.set_state(state)

  def close(self) -> None:
    self._parent.close()


def crop_batches(records: Sequence[Record], read: Reader, *, batch_size: int, crop: int, seed: int = 0,
                 stream: str = "images", num_threads: int = 8, prefetch: int = 2,
                 process_index: int | None = None, process_count: int | None = None) -> Batches:
  """Batches of ``batch_size`` (this process's share) random crops of ``read(records[i])``.

  This process reads records ``process_index::process_count``; ``num_threads`` threads read and crop,
  keeping ``prefetch`` batches in flight.
  """
  process_index = jax.process_index() if process_index is None else process_index
  process_count = jax.process_count() if process_count is None else process_count
  shard = range(len(records))[process_index::process_count]
  if not shard:
    raise ValueError(f"no records for process {process_index}/{process_count} in stream {stream!r}")
  seeds = np.random.default_rng((seed, zlib.crc32(stream.encode()), process_index)).integers(2**32, size=2)
  stats = DecodeStats()
  ds = (grain.MapDataset.source(shard).shuffle(seed=int(seeds[0])).repeat()
        .random_map(_ReadAndCrop(records, shard, read, crop, stats), seed=int(seeds[1])))
  options = grain.ReadOptions(num_threads=num_threads, prefetch_buffer_size=max(1, prefetch) * batch_size)
  it = ds.to_iter_dataset(options).batch(batch_size, drop_remainder=True, batch_fn=_to_float)
  return Batches(iter(it), stats)


# ------------------------------------------------------------------------------------------- sources


def _check_resize(resize: int | None, crop: int) -> None:
  if resize is not None and resize < crop:
    raise ValueError(f"resize {resize} must be at least the crop {crop}")


def folder_batches(files: Sequence[str], *, crop: int, resize: int | None = 512, **kw) -> Batches:
  """Random crops of image files (``data.list_images``), shorter side resized to ``resize`` first.

  ``kw``: ``crop_batches``'s batch_size, seed, stream, num_threads, prefetch, process_index/count.
  """
  _check_resize(resize, crop)
  return crop_batches(list(files), lambda path: image_io.decode_uint8(path, resize), crop=crop, **kw)


def tfds_image_batches(name: str, split: str = "train", *, crop: int, resize: int = 512,
                       image_key: str = "image", data_dir: str | None = None, **kw) -> Batches:
  """Random crops of a tfds image dataset's ``image_key`` (greyscale becomes RGB); ``kw`` as
  ``folder_batches``."""
  _check_resize(resize, crop)
  source = datasets.tfds_source(name, split, data_dir, [image_key])
  read = lambda ex: image_io.decode_uint8(ex[image_key], resize)
  return crop_batches(source, read, crop=crop, **kw)


def panoptic_person_mask(panoptic_rgb: np.ndarray, ids: np.ndarray, labels: np.ndarray,
                         person_label: int) -> np.ndarray:
  """Boolean person mask from a COCO panoptic PNG (segment id = R + 256·G + 256²·B)."""
  rgb = panoptic_rgb.astype(np.int64)
  segment = rgb[..., 0] + 256 * rgb[..., 1] + 256 * 256 * rgb[..., 2]
  n = min(len(ids), len(labels))   # equal in COCO
  return np.isin(segment, np.asarray(ids[:n], np.int64)[np.asarray(labels[:n]) == person_label])


def read_person_example(ex: dict, resize: int, person_label: int) -> np.ndarray:
  """uint8 ``[H, W, 4]``: the image (shorter side ``resize``) and its person mask ×255 (nearest
  neighbour resized, so it stays binary)."""
  image = image_io.decode_uint8(ex["image"], resize)
  panoptic = image_io.decode_uint8(ex["panoptic_image"], min_side=1)
  objects = ex["panoptic_objects"]
  mask = panoptic_person_mask(panoptic, objects["id"], objects["label"], person_label)
  mask = Image.fromarray(mask.astype(np.uint8) * 255).resize(image.shape[1::-1], Image.Resampling.NEAREST)
  return np.concatenate([image, np.asarray(mask)[..., None]], axis=-1)


def tfds_person_mask_batches(name: str = "coco/2017_panoptic", split: str = "train", *, crop: int,
                             resize: int = 512, person_label: int | None = None,
                             data_dir: str | None = None, **kw) -> Batches:
  """Batches ``{"image": [B, crop, crop, 3], "mask": [B, crop, crop]}`` for SegNet: the mask is 1 on
  every panoptic segment labelled ``person``; image and mask share one crop. ``kw`` as ``folder_batches``."""
  _check_resize(resize, crop)
  source = datasets.tfds_source(name, split, data_dir, ["image", "panoptic_image"])
  if person_label is None:
    names = source.dataset_info.features["panoptic_objects"]["label"].names
    person_label = names.index("person") if "person" in names else COCO_PANOPTIC_PERSON
  read = lambda ex: read_person_example(ex, resize, person_label)
  return crop_batches(source, read, crop=crop, **kw)
