"""What the trainers feed their steps: data sources built from a config, placed on the mesh per step.

SANet reads two image streams (content, style), SegNet one of image + mask pairs (or pastes people on
person-free photos). Each stream is either resident (decoded once, kept on the device, cropped inside
the jitted step from the step number) or a host iterator of this process's share of every batch, placed
on the mesh each step (``sharding.place_batch``) and saved in every checkpoint (``Run.track``).

host_pipelines: ``jaxstyle.training.input_pipeline`` (Grain, with its compiled ``array_record`` dependency) is
imported only for a host stream, so resident runs — the prepared GPU runs' — do not need Grain.
"""
from __future__ import annotations

import functools
from pathlib import Path
from typing import Any

from absl import logging
import jax
import jax.numpy as jnp
import numpy as np

from jaxstyle.program import sharding
from jaxstyle.training import data as data_lib
from jaxstyle.training import segnet_eval


# ------------------------------------------------------------------------------------------ SANet


def image_source(spec, config, *, stream: str, mesh) -> Any:
  """``config.resident``: the images decoded once (``data.ResidentImages``, cropped on the device);
  else a Grain iterator of this process's share of every batch (``input_pipeline.Batches``), whose
  position the checkpoints keep. ``stream`` names the random stream (content, style, samples)."""
  local = dict(batch_size=sharding.local_batch_size(config.batch_size, mesh), seed=config.seed,
               stream=stream, num_threads=config.num_decode_threads, prefetch=config.prefetch)
  if spec.source == "tfds":
    if config.resident:
      raise ValueError("resident datasets are read from folders; use source='folder'")
    from jaxstyle.training import input_pipeline  # pylint: disable=g-import-not-at-top   see host_pipelines
    return input_pipeline.tfds_image_batches(spec.name, spec.split, crop=config.crop, resize=config.resize,
                                             image_key=spec.get("image_key", "image"),
                                             data_dir=config.get("tfds_data_dir") or None, **local)
  if spec.source != "folder":
    raise ValueError(f"unknown image source {spec.source!r}: 'folder' or 'tfds'")
  files = without_stems(data_lib.list_images(*(data_lib.resolve_path(f, config.data_dir)
                                                for f in spec.folders)), spec.get("exclude", ()))
  if not config.resident:
    from jaxstyle.training import input_pipeline  # pylint: disable=g-import-not-at-top   see host_pipelines
    return input_pipeline.folder_batches(files, crop=config.crop, resize=config.resize, **local)
  ds = data_lib.load_resident(files, resize=config.resize, max_aspect=config.max_aspect,
                              num_threads=config.num_decode_threads)
  logging.info("%s: %d images resident on the device, %s (%.1f MB)", stream, len(ds),
               ds.pixels.shape, ds.pixels.nbytes / 2**20)
  return ds


def without_stems(files: list[str], exclude) -> list[str]:
  """``files`` less those whose name without suffix is in ``exclude`` (held-out images)."""
  exclude = set(exclude)
  return [f for f in files if Path(f).stem not in exclude]


def data_getter(sources: dict[str, Any], mesh):
  """(``get_data(step)`` → the step's ``data`` argument, host-side decode metrics)."""
  resident = {k: sharding.place_replicated(mesh, v.arrays()) for k, v in sources.items()
              if isinstance(v, data_lib.ResidentImages)}

  def get_data(step: int) -> dict:
    del step  # iterators are sequential (their position is checkpointed); resident crops use the step
    return {k: resident[k] if k in resident else sharding.place_batch(mesh, next(v)["image"])
            for k, v in sources.items()}

  def decode_metrics() -> dict:
    out = {}
    for k, v in sources.items():
      if hasattr(v, "stats"):
        out.update(v.stats.metrics(f"data/{k}"))
    return out

  return get_data, decode_metrics


def fixed_images(config, sources: dict[str, Any], mesh) -> dict[str, np.ndarray]:
  """``config.num_samples`` fixed content and style images for the sample grids."""
  out = {}
  for i, (k, source) in enumerate(sources.items()):
    if isinstance(source, data_lib.ResidentImages):
      key = jax.random.PRNGKey(config.seed + 1000 + i)
      crops = jax.jit(data_lib.sample_crops, static_argnums=(3, 4))
      out[k] = np.asarray(crops(source.arrays(), key, jnp.int32(0), config.num_samples, config.crop))
      continue
    extra = image_source(config[k], config, stream=f"{k}_samples", mesh=mesh)
    out[k] = next(extra)["image"][:config.num_samples]
    if hasattr(extra, "close"):
      extra.close()
  return out


# ----------------------------------------------------------------------------------------- SegNet


def segnet_data(config, *, mesh):
  """(train source, held-out portraits). The source is resident (``{"people", "backgrounds"}``
  ``ResidentImages``) or a Grain iterator of ``{"image", "mask"}`` batches (tfds). The held-out
  portraits are always the hand-drawn split of ``data_dir``, as the CLI reads them."""
  held = segnet_eval.load_held_out(config.data_dir, config.eval_size, config.holdout_fraction)
  if config.source == "portraits":
    train, _ = data_lib.portrait_segmentation_split(
        config.data_dir, negatives=config.negatives, photos_with_people=config.photos_with_people,
        holdout_fraction=config.holdout_fraction)
    kinds = {k: sum(ex.kind == k for ex in train) for k in sorted({ex.kind for ex in train})}
    logging.info("SegNet data: %d train images %s, %d held out", len(train), kinds, len(held))
    load = functools.partial(data_lib.load_resident, resize=config.resize, max_aspect=config.max_aspect,
                             num_threads=config.num_decode_threads)
    people = [ex for ex in train if ex.mask is not None]
    source = {"people": load([ex.image for ex in people], masks=[ex.mask for ex in people]),
              "backgrounds": load([ex.image for ex in train if ex.mask is None])}
    return source, held
  if config.source == "tfds":
    from jaxstyle.training import input_pipeline  # pylint: disable=g-import-not-at-top   see host_pipelines
    source = input_pipeline.tfds_person_mask_batches(
        config.tfds_name, config.split, crop=config.crop, resize=config.resize,
        data_dir=config.tfds_data_dir or None, batch_size=sharding.local_batch_size(config.batch_size, mesh),
        seed=config.seed, stream="person_masks", num_threads=config.num_decode_threads,
        prefetch=config.prefetch)
    return source, held
  raise ValueError(f"config.source must be 'portraits' or 'tfds', not {config.source!r}")
