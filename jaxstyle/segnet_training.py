"""SegNet person-mask training: the decoder on top of the frozen VGG-19 content pass (``"shared"``).

Loss ``losses.segmentation_loss`` (BCE + Dice) against hand-drawn, shipped or teacher masks (soft
targets allowed). Data: the shared portraits (resident on the device, ``data.portrait_segmentation_split``),
each sample a portrait's own crop, a person pasted on a person-free photo at a random scale, or such a
photo alone, then photometric noise (``augment.py``, all inside the jitted step); or COCO 2017 panoptic
``person`` masks through tfds. Every ``eval_every`` steps: the **person IoU** on the held-out hand-drawn
masks through the path the CLI takes (``segnet_eval``: each portrait at its own shape, longest side
``eval_size``, SegNet → sigmoid → feather → 0.5), beside the MediaPipe teacher's on the same images.
Training may start from a weights folder's SegNet (``init_from``); parameters it lacks (e.g. new skip
fusions, which start at zero) keep their initialisation.

The ``"vgg16_bn"`` SegNet (own VGG-16 encoder with batch norm) is not trained here: it needs ImageNet
VGG-16 weights the project does not ship and batch statistics in the train state; this trainer raises
for it.

``train_and_evaluate(config, workdir)`` runs it end to end (configs in ``train/configs/segnet.py``).
"""
from __future__ import annotations

import dataclasses
import functools
import time
from pathlib import Path
from typing import Any

from absl import logging
import jax
import jax.numpy as jnp
import flax.traverse_util
import numpy as np
import optax

from jaxstyle import augment
from jaxstyle import data as data_lib
from jaxstyle import losses
from jaxstyle import portrait
from jaxstyle import segnet as segnet_lib
from jaxstyle import segnet_eval
from jaxstyle import training

DATA_STREAM, FLIP_STREAM = 1, 2
OWN, BACKGROUND, PICK, MIX = range(4)   # sub-streams of DATA_STREAM


@dataclasses.dataclass(frozen=True)
class Hparams:
  model: portrait.ModelConfig
  batch_size: int                  # global
  crop: int
  num_steps: int
  lr: float = 3e-4
  warmup_steps: int = 100
  dice_weight: float = 1.0
  flip: bool = True
  augment: augment.AugmentConfig = augment.NO_AUGMENT


def hparams_from_config(config) -> Hparams:
  model = dataclasses.replace(portrait.MODEL_CONFIGS[config.model], dtype=config.dtype,
                              formulation=config.formulation)
  check_model(model)
  aug = augment.AugmentConfig(**{k: tuple(v) if isinstance(v, (list, tuple)) else v
                                 for k, v in config.augment.to_dict().items()})
  return Hparams(model=model, batch_size=config.batch_size, crop=config.crop,
                 num_steps=config.num_steps, lr=config.lr, warmup_steps=config.warmup_steps,
                 dice_weight=config.dice_weight, flip=config.flip, augment=aug)


def check_model(model: portrait.ModelConfig) -> None:
  if segnet_lib.SEGNET_CONFIGS[model.segnet].encoder != "shared":
    raise ValueError(f"SegNet config {model.segnet!r} has its own encoder; this trainer trains the "
                     f"decoder of the 'shared' configuration only (see the module docstring)")


def learning_rate(hp: Hparams):
  return optax.warmup_cosine_decay_schedule(0.0, hp.lr, min(hp.warmup_steps, hp.num_steps - 1),
                                            hp.num_steps, end_value=hp.lr * 0.01)


def make_optimizer(hp: Hparams) -> optax.GradientTransformation:
  return optax.adam(learning_rate(hp))


def init_trainable(hp: Hparams, rng: jax.Array, init_from: dict | None = None) -> dict[str, Any]:
  """Random SegNet variables, overwritten by ``init_from``'s where it has them (same shapes)."""
  params = portrait.init_params(hp.model, rng, (hp.crop, hp.crop))["segnet"]
  if init_from is None:
    return {"segnet": params}
  flat, given = flax.traverse_util.flatten_dict(params), flax.traverse_util.flatten_dict(init_from)
  for k, v in given.items():
    if k not in flat or flat[k].shape != v.shape:
      raise ValueError(f"init_from: SegNet parameter {'/'.join(k)} {v.shape} does not fit this model")
    flat[k] = jnp.asarray(v, flat[k].dtype)
  return {"segnet": flax.traverse_util.unflatten_dict(flat)}


def logits_fn(params: dict, frozen: dict, images: jax.Array, hp: Hparams) -> jax.Array:
  m = portrait.build(hp.model)
  feats = m.encoder.apply(frozen["encoder"], images)
  return portrait.person_logits({**frozen, **params}, hp.model, images, feats)


def get_pairs(data: Any, state: training.TrainState, hp: Hparams) -> tuple[jax.Array, jax.Array]:
  """(images, target masks) from resident ``{"people": RGB+mask, "backgrounds": RGB}`` datasets (crops,
  flips, composites and noise on the device, ``augment.mix_sources``) or a placed host batch
  ``{"image", "mask"}`` (flipped here)."""
  if "people" in data:
    key = jax.random.fold_in(state.rng, DATA_STREAM)
    sub = lambda stream: jax.random.fold_in(jax.random.fold_in(key, stream), state.step)
    people, backgrounds = data["people"], data["backgrounds"]
    own = data_lib.sample_crops(people, jax.random.fold_in(key, OWN), state.step, hp.batch_size,
                                hp.crop, flip=hp.flip)
    bg = data_lib.sample_crops(backgrounds, jax.random.fold_in(key, BACKGROUND), state.step,
                               hp.batch_size, hp.crop, flip=hp.flip)
    index = jax.random.randint(sub(PICK), (hp.batch_size,), 0, people["pixels"].shape[0])
    images, masks = augment.mix_sources(own, {**people, "index": index}, bg[..., :3], sub(MIX), hp.augment)
    return training.shard_batch(images), training.shard_batch(masks)
  images, masks = data["image"], data["mask"]
  if hp.flip:
    key = jax.random.fold_in(jax.random.fold_in(state.rng, FLIP_STREAM), state.step)
    mirror = jax.random.bernoulli(key, 0.5, (images.shape[0],))
    images = jnp.where(mirror[:, None, None, None], images[:, :, ::-1], images)
    masks = jnp.where(mirror[:, None, None], masks[:, :, ::-1], masks)
  return images, masks


@functools.partial(jax.jit, static_argnames="hp", donate_argnames="state")
def train_step(state: training.TrainState, frozen: dict, data: dict, hp: Hparams):
  images, target = get_pairs(data, state, hp)

  def loss_fn(params):
    logits = logits_fn(params, frozen, images, hp)
    return losses.segmentation_loss(logits, target, hp.dice_weight), logits

  (loss, logits), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.params)
  updates, opt_state = make_optimizer(hp).update(grads, state.opt_state, state.params)
  params = optax.apply_updates(state.params, updates)
  metrics = {"loss": loss, "train/iou": jnp.mean(losses.iou(jax.nn.sigmoid(logits), target)),
             **training.update_metrics(grads, state.params, updates), "lr": learning_rate(hp)(state.step)}
  return state.replace(step=state.step + 1, params=params, opt_state=opt_state), metrics


def evaluate(params: dict, frozen: dict, held: list[segnet_eval.HeldOut], hp: Hparams,
             feather: float) -> tuple[dict[str, float], list[np.ndarray]]:
  """(``{"eval/person_iou", "eval/person_iou_min"}``, the masks) on the held-out portraits, through
  the CLI's path (``segnet_eval``)."""
  r, preds = segnet_eval.evaluate({**frozen, **params}, hp.model, held, feather)
  return {"eval/person_iou": r["person_iou"], "eval/person_iou_min": r["person_iou_min"]}, preds


def sample_sheet(held: list[segnet_eval.HeldOut], preds: list[np.ndarray], n: int) -> np.ndarray:
  """Rows of (image, hand-drawn mask, predicted mask, image dimmed outside the prediction), each
  held-out picture padded to the largest one's size."""
  h = max(x.image.shape[0] for x in held[:n])
  w = max(x.image.shape[1] for x in held[:n])
  pad = lambda x: np.pad(x, ((0, h - x.shape[0]), (0, w - x.shape[1])) + ((0, 0),) * (x.ndim - 2))
  return training.image_grid([pad(x.image), pad(x.mask), pad(p), pad(x.image * (0.25 + 0.75 * p[..., None]))]
                             for x, p in zip(held[:n], preds[:n]))


# ------------------------------------------------------------------------------------------ data


def make_data(config, *, start_step: int, mesh):
  """(train source, held-out portraits). The source is resident (``{"people", "backgrounds"}``
  ``ResidentImages``) or a host iterator of ``{"image", "mask"}`` batches (tfds). The held-out
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
    local_batch = training.local_batch_size(config.batch_size, mesh)
    source = data_lib.tfds_person_masks(config.tfds_name, config.split, batch_size=local_batch,
                                        crop=config.crop, resize=config.resize, seed=config.seed,
                                        start_step=start_step, data_dir=config.tfds_data_dir or None)
    return source, held
  raise ValueError(f"config.source must be 'portraits' or 'tfds', not {config.source!r}")


def load_init(directory: str) -> dict | None:
  """The ``segnet`` variables of a weights folder (``config.init_from``), or None for ``""``."""
  if not directory:
    return None
  from jaxstyle import weights as weights_lib  # pylint: disable=g-import-not-at-top
  return weights_lib.load(data_lib.resolve_path(directory))[0]["segnet"]


# ------------------------------------------------------------------------------------------ main


def train_and_evaluate(config, workdir: str) -> training.TrainState:
  """Trains the SegNet decoder per ``config`` in ``workdir``, resuming from its latest checkpoint;
  returns the final state. Exports ``segnet`` into ``config.export_dir`` (default ``workdir/weights``)."""
  workdir = Path(workdir)
  t_start = time.perf_counter()
  training.quiet_orbax()
  hp = hparams_from_config(config)
  mesh = training.data_mesh()
  writer = training.MetricWriter(workdir)
  checkpointer = training.Checkpointer(workdir / "checkpoints", save_every=config.checkpoint_every,
                                       keep=config.keep_checkpoints)
  source = None
  try:
    with jax.set_mesh(mesh):
      init_from = load_init(config.init_from)
      abstract, init = training.abstract_train_state(functools.partial(init_trainable, hp,
                                                                       init_from=init_from),
                                                     make_optimizer(hp),
                                                     jax.random.PRNGKey(config.seed), mesh)
      state = checkpointer.restore(abstract)
      if state is None:
        state = init(jax.random.PRNGKey(config.seed))
      start = int(jax.device_get(state.step))
      logging.info("SegNet (%s model): step %d of %d on %s", config.model, start, config.num_steps,
                   training.device_description())
      frozen, imagenet_encoder = training.frozen_encoder(config.encoder, hp.model, config.seed)
      frozen = training.place_replicated(mesh, frozen)
      source, held = make_data(config, start_step=start, mesh=mesh)
      teacher = segnet_eval.evaluate_teacher(held) if any(h.teacher is not None for h in held) else None
      if isinstance(source, dict):
        resident = training.place_replicated(mesh, {k: v.arrays() for k, v in source.items()})
        get_args = lambda step: (frozen, resident)
      else:
        get_args = lambda step: (frozen, training.place_batch(mesh, next(source)))

      def run_eval(step, state):
        metrics, pred = evaluate(state.params, frozen, held, hp, config.eval_feather)
        writer.scalars(step, {**metrics, **({"eval/teacher_person_iou": teacher["person_iou"]}
                                            if teacher else {})})
        logging.info("step %d: held-out person IoU %.4f (min %.4f, %d portraits at %d px through the "
                     "CLI path; MediaPipe teacher %s)", step, metrics["eval/person_iou"],
                     metrics["eval/person_iou_min"], len(held), config.eval_size,
                     f"{teacher['person_iou']:.4f}" if teacher else "n/a")
        writer.image(step, "eval", sample_sheet(held, pred, config.num_samples))

      def write_weights(step, state):
        if jax.process_index() != 0:
          return
        nets = {"segnet": jax.device_get(state.params["segnet"])}
        if not imagenet_encoder:
          nets["encoder"] = jax.device_get(frozen["encoder"])
        meta = {"steps": int(step), "wall_time_s": round(time.perf_counter() - t_start, 1),
                "device": training.device_description(), "config": config.to_dict(),
                "metrics": {k: v for k, v in writer.last.items() if k.startswith(("loss", "eval"))}}
        training.export_weights(config.export_dir or workdir / "weights", nets, trainer="segnet",
                                encoder=config.encoder, include_encoder=not imagenet_encoder,
                                model_config=config.model, dtype=config.export_dtype, meta=meta)

      hooks = [training.Hook(config.eval_every, run_eval),
               training.Hook(config.export_every, write_weights)]
      loop = training.LoopConfig(num_steps=config.num_steps, global_batch=config.batch_size,
                                 log_every=config.log_every)
      if start == 0:
        run_eval(0, state)                 # the untrained baseline
      with training.StopFlag() as stop:
        state = training.run_loop(state, train_step, get_args, loop, static={"hp": hp},
                                  checkpointer=checkpointer, writer=writer, hooks=hooks, stop=stop,
                                  extra_metrics=getattr(source, "stats", None) and source.stats.metrics)
  finally:
    if hasattr(source, "close"):
      source.close()
    checkpointer.close()
    writer.close()
  return state
