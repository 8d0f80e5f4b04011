"""Input pipelines for SANet and SegNet training. TensorFlow is imported only when a tfds source is used.

Three kinds of source, all yielding images as float32 NHWC in [0, 1]:

- ``FolderPipeline``: image files under one or more folders, decoded with PIL in a thread pool, shorter side
  resized to ``resize``, a random ``crop``×``crop`` crop, batched and prefetched; infinite. Each process
  reads its own shard of the files (``files[process_index::process_count]``). Unreadable files are skipped
  and counted (``stats``), never fatal.
- ``ResidentImages``: a small dataset decoded once and kept on the accelerator; ``sample_crops`` takes the
  random crops inside the jitted train step, so PIL is out of the loop (``shared/PERF_NOTES.md``).
- tfds (``tfds_images``, ``tfds_person_masks``): COCO 2017 content images, any tfds image dataset as styles,
  COCO 2017 panoptic ``person`` masks for SegNet. TensorFlow is hidden from the GPU.

Determinism and resuming. Folder and resident batches are pure functions of ``(seed, stream, step)``:
slot ``j`` of local batch ``t`` is element ``t·B + j`` of an endless sequence of per-epoch permutations
seeded by ``(seed, stream, process, epoch)``, its crop is drawn from ``(seed, stream, process, t, j)``, and
an unreadable file is replaced by a file drawn from ``(seed, stream, process, t, j, attempt)``. A run
resumed at step ``t`` therefore sees exactly the batches an uninterrupted run would have seen. tfds
pipelines cannot be fast-forwarded cheaply; on resume they are re-seeded from ``(seed, t)``: a fresh,
equally distributed stream, not the same batches.

Segmentation data (``portrait_segmentation_split``) pairs each portrait with its best mask (hand-drawn or
shipped where ``SOURCES.tsv`` names one, else the MediaPipe teacher's soft mask), holds out a fixed ~20% of
the hand-annotated portraits for mIoU, and can add person-free photos as negatives (all-zero masks).
"""
from __future__ import annotations

import collections
import concurrent.futures
import csv
import dataclasses
import hashlib
import os
import threading
import zlib
from pathlib import Path
from typing import Iterator, Sequence

import jax
import jax.numpy as jnp
import numpy as np

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff")
REPO_ROOT = Path(__file__).resolve().parents[1]
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
      files += [os.path.join(dirpath, n) for n in names if n.lower().endswith(IMAGE_EXTENSIONS)]
  return sorted(files)


def _stream_seed(seed: int, stream: str) -> tuple[int, int]:
  return (int(seed), zlib.crc32(stream.encode()))


# ----------------------------------------------------------------------------------------------- decoding


def scaled_size(hw: tuple[int, int], shorter: int) -> tuple[int, int]:
  """(h, w) with the shorter side equal to ``shorter`` and the aspect ratio kept."""
  h, w = hw
  s = shorter / min(h, w)
  return max(shorter, round(h * s)), max(shorter, round(w * s))


def decode(path: str, resize: int | None, mode: str = "RGB") -> np.ndarray:
  """Reads an image as uint8 ``[H, W, C]`` with its shorter side resized to ``resize`` (None: as is).

  Raises on unreadable or truncated files (PIL decodes lazily: ``load`` forces the whole file).
  """
  from PIL import Image  # pylint: disable=g-import-not-at-top

  with Image.open(path) as im:
    im.load()
    im = im.convert(mode)
    if resize is not None:
      h, w = scaled_size((im.height, im.width), resize)
      if (h, w) != (im.height, im.width):
        im = im.resize((w, h), Image.BICUBIC)
    out = np.asarray(im, np.uint8)
  return out[..., None] if out.ndim == 2 else out


def center_crop(x: np.ndarray, hw: tuple[int, int]) -> np.ndarray:
  h, w = x.shape[:2]
  top, left = (h - hw[0]) // 2, (w - hw[1]) // 2
  return x[top:top + hw[0], left:left + hw[1]]


def random_crop(x: np.ndarray, crop: int, rng: np.random.Generator) -> np.ndarray:
  h, w = x.shape[:2]
  if h < crop or w < crop:
    raise ValueError(f"image of {h}×{w} is smaller than the crop {crop}: resize must be ≥ crop")
  top, left = rng.integers(0, h - crop + 1), rng.integers(0, w - crop + 1)
  return x[top:top + crop, left:left + crop]


class DecodeStats:
  """Thread-safe counts of decoded images and of unreadable files skipped."""

  def __init__(self):
    self._lock = threading.Lock()
    self.decoded = 0
    self.skipped = 0
    self.corrupt_files: set[str] = set()

  def ok(self):
    with self._lock:
      self.decoded += 1

  def failed(self, path: str):
    with self._lock:
      self.skipped += 1
      self.corrupt_files.add(path)

  def metrics(self, prefix: str = "data") -> dict[str, int]:
    with self._lock:
      return {f"{prefix}/decoded": self.decoded, f"{prefix}/skipped_reads": self.skipped,
              f"{prefix}/corrupt_files": len(self.corrupt_files)}


# ------------------------------------------------------------------------------------ folder pipeline


class FolderPipeline:
  """Endless batches ``{"image": float32 [batch_size, crop, crop, 3]}`` of random crops from files.

  ``batch_size`` is this process's share of the global batch. Batch ``t`` (counting from 0, the first
  batch yielded being ``start_step``) is a pure function of (seed, stream, process, t) — see the module
  docstring. ``num_threads`` PIL decodes run in parallel; ``prefetch`` batches are kept in flight.
  """

  def __init__(self, files: Sequence[str], *, batch_size: int, crop: int, resize: int | None = 512,
               seed: int = 0, stream: str = "images", start_step: int = 0, num_threads: int = 8,
               prefetch: int = 2, process_index: int | None = None, process_count: int | None = None,
               max_attempts: int = 20):
    process_index = jax.process_index() if process_index is None else process_index
    process_count = jax.process_count() if process_count is None else process_count
    self.files = list(files)[process_index::process_count]
    if not self.files:
      raise ValueError(f"no image files for process {process_index}/{process_count} in stream {stream!r}")
    if resize is not None and resize < crop:
      raise ValueError(f"resize {resize} must be at least the crop {crop}")
    self.batch_size, self.crop, self.resize = batch_size, crop, resize
    self.max_attempts = max_attempts
    self.stats = DecodeStats()
    self._seed = (*_stream_seed(seed, stream), process_index)
    self._bad: set[str] = set()
    self._perms: dict[int, np.ndarray] = {}
    self._perm_lock = threading.Lock()
    self._pool = concurrent.futures.ThreadPoolExecutor(num_threads, thread_name_prefix=f"decode-{stream}")
    self._next_step = start_step
    self._queue: collections.deque = collections.deque()
    self._prefetch = max(1, prefetch)

  def _permutation(self, epoch: int) -> np.ndarray:
    with self._perm_lock:
      if epoch not in self._perms:
        self._perms = {e: p for e, p in self._perms.items() if e >= epoch - 1}
        self._perms[epoch] = np.random.default_rng((*self._seed, epoch)).permutation(len(self.files))
      return self._perms[epoch]

  def _read(self, path: str) -> np.ndarray | None:
    if path in self._bad:
      self.stats.failed(path)
      return None
    try:
      image = decode(path, self.resize)
    except Exception:  # pylint: disable=broad-except  # any unreadable file is skipped, never fatal
      self._bad.add(path)
      self.stats.failed(path)
      return None
    self.stats.ok()
    return image

  def _slot(self, step: int, j: int) -> np.ndarray:
    n = len(self.files)
    pos = step * self.batch_size + j
    index = self._permutation(pos // n)[pos % n]
    for attempt in range(self.max_attempts):
      image = self._read(self.files[index])
      if image is not None:
        return random_crop(image, self.crop, np.random.default_rng((*self._seed, step, j)))
      index = np.random.default_rng((*self._seed, step, j, attempt + 1)).integers(n)
    raise RuntimeError(f"{self.max_attempts} unreadable files in a row; skipped so far: "
                       f"{sorted(self._bad)[:10]}")

  def _submit(self):
    step = self._next_step
    self._queue.append([self._pool.submit(self._slot, step, j) for j in range(self.batch_size)])
    self._next_step += 1

  def __iter__(self) -> Iterator[dict[str, np.ndarray]]:
    return self

  def __next__(self) -> dict[str, np.ndarray]:
    while len(self._queue) < self._prefetch:
      self._submit()
    batch = np.stack([f.result() for f in self._queue.popleft()])
    self._submit()
    return {"image": batch.astype(np.float32) / 255.0}

  def close(self):
    for futures in self._queue:
      for f in futures:
        f.cancel()
    self._pool.shutdown(wait=True, cancel_futures=True)


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

  Masks are read as 8-bit grey, resized with the image (bilinear, so soft masks stay soft).
  """
  from PIL import Image  # pylint: disable=g-import-not-at-top

  max_w = int(np.ceil(max_aspect * resize))
  stats = DecodeStats()

  def read(i: int):
    try:
      image = decode(files[i], resize)
      if masks is not None:
        if masks[i] is None:
          mask = np.zeros((*image.shape[:2], 1), np.uint8)
        else:
          with Image.open(masks[i]) as m:
            m = m.convert("L").resize(image.shape[1::-1], Image.BILINEAR)
            mask = np.asarray(m, np.uint8)[..., None]
        image = np.concatenate([image, mask], axis=-1)
    except Exception:  # pylint: disable=broad-except
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
    raise ValueError(f"unreadable held-out files: {sorted(data.stats.corrupt_files)}")
  x = data.pixels.astype(np.float32) / 255.0
  x = np.where(data.transposed[:, None, None, None], x.transpose(0, 2, 1, 3), x)
  return x[..., :3], x[..., 3]


# ---------------------------------------------------------------------------------------- tfds sources


def _import_tf():
  """TensorFlow for tf.data only: imported on first use and kept off the GPU."""
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  tf.config.set_visible_devices([], "GPU")
  import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top
  return tf, tfds


def _tf_shorter_side(tf, x, size: int):
  hw = tf.cast(tf.shape(x)[:2], tf.float32)
  return tf.cast(tf.math.maximum(tf.round(hw * size / tf.reduce_min(hw)), float(size)), tf.int32)


def _tf_resize_shorter(tf, x, size: int):
  return tf.image.resize(x, _tf_shorter_side(tf, x, size), antialias=True)


def _process_split(tfds, split: str, process_index, process_count) -> str:
  process_index = jax.process_index() if process_index is None else process_index
  process_count = jax.process_count() if process_count is None else process_count
  if process_count == 1:
    return split
  return tfds.even_splits(split, n=process_count, drop_remainder=True)[process_index]


def tfds_images(name: str, split: str = "train", *, batch_size: int, crop: int, resize: int = 512,
                seed: int = 0, start_step: int = 0, image_key: str = "image", data_dir: str | None = None,
                shuffle_buffer: int = 1000, process_index: int | None = None,
                process_count: int | None = None) -> Iterator[dict[str, np.ndarray]]:
  """Endless batches ``{"image": float32 [batch_size, crop, crop, 3]}`` from a tfds image dataset.

  Greyscale images are expanded to RGB. Re-seeded from ``(seed, start_step)`` on resume.
  """
  tf, tfds = _import_tf()
  s = int(np.random.default_rng((seed, start_step)).integers(2**31))
  ds = tfds.load(name, split=_process_split(tfds, split, process_index, process_count),
                 data_dir=data_dir, shuffle_files=True,
                 read_config=tfds.ReadConfig(shuffle_seed=s))

  def prepare(ex):
    x = ex[image_key]
    x = tf.image.grayscale_to_rgb(x) if x.shape[-1] == 1 else x
    x = _tf_resize_shorter(tf, tf.cast(x, tf.float32) / 255.0, resize)
    return {"image": tf.image.random_crop(tf.clip_by_value(x, 0.0, 1.0), (crop, crop, 3), seed=s)}

  ds = ds.repeat().shuffle(shuffle_buffer, seed=s).map(prepare, num_parallel_calls=tf.data.AUTOTUNE)
  return ds.ignore_errors().batch(batch_size, drop_remainder=True).prefetch(2).as_numpy_iterator()


COCO_PANOPTIC_PERSON = 0  # "person" is the first of COCO panoptic's 133 categories


def panoptic_person_mask(tf, panoptic_image, ids, labels, person_label: int):
  """Binary person mask from a COCO panoptic PNG (segment id = R + 256·G + 256²·B)."""
  rgb = tf.cast(panoptic_image, tf.int64)
  segment = rgb[..., 0] + 256 * rgb[..., 1] + 256 * 256 * rgb[..., 2]
  ids, labels = tf.cast(ids, tf.int64), tf.cast(labels, tf.int64)
  n = tf.minimum(tf.shape(ids)[0], tf.shape(labels)[0])   # equal in COCO; mock data may differ
  person_ids = tf.boolean_mask(ids[:n], tf.equal(labels[:n], tf.constant(person_label, tf.int64)))
  hit = tf.reduce_any(tf.equal(segment[..., None], person_ids[None, None, :]), axis=-1)
  return tf.cast(hit, tf.float32)


def tfds_person_masks(name: str = "coco/2017_panoptic", split: str = "train", *, batch_size: int,
                      crop: int, resize: int = 512, seed: int = 0, start_step: int = 0,
                      person_label: int | None = None, data_dir: str | None = None,
                      shuffle_buffer: int = 1000, process_index: int | None = None,
                      process_count: int | None = None) -> Iterator[dict[str, np.ndarray]]:
  """Endless batches ``{"image": [B, crop, crop, 3], "mask": [B, crop, crop]}`` (float32) for SegNet.

  The mask is 1 on every COCO panoptic segment labelled ``person`` (nearest-neighbour resized, so it
  stays binary); image and mask share one crop.
  """
  tf, tfds = _import_tf()
  builder = tfds.builder(name, data_dir=data_dir)
  if person_label is None:
    names = builder.info.features["panoptic_objects"]["label"].names
    person_label = names.index("person") if "person" in names else COCO_PANOPTIC_PERSON
  s = int(np.random.default_rng((seed, start_step)).integers(2**31))
  ds = builder.as_dataset(split=_process_split(tfds, split, process_index, process_count),
                          shuffle_files=True, read_config=tfds.ReadConfig(shuffle_seed=s))

  def prepare(ex):
    image = tf.cast(ex["image"], tf.float32) / 255.0
    objects = ex["panoptic_objects"]
    mask = panoptic_person_mask(tf, ex["panoptic_image"], objects["id"], objects["label"], person_label)
    hw = _tf_shorter_side(tf, image, resize)
    image = tf.image.resize(image, hw, antialias=True)
    mask = tf.image.resize(mask[..., None], hw, method="nearest")   # stays binary
    both = tf.concat([tf.clip_by_value(image, 0.0, 1.0), mask], axis=-1)
    both = tf.image.random_crop(both, (crop, crop, 4), seed=s)
    return {"image": both[..., :3], "mask": both[..., 3]}

  ds = ds.repeat().shuffle(shuffle_buffer, seed=s).map(prepare, num_parallel_calls=tf.data.AUTOTUNE)
  return ds.ignore_errors().batch(batch_size, drop_remainder=True).prefetch(2).as_numpy_iterator()
