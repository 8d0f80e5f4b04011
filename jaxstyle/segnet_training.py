"""SegNet person-mask training: the decoder on top of the frozen VGG-19 content pass (``"shared"``).

Loss ``losses.segmentation_loss`` (BCE + Dice) against hand-drawn, shipped or teacher masks (soft
targets allowed); random crops with left-right flips; mIoU (``losses.iou`` at 0.5, mean over images) on
a fixed held-out split every ``eval_every`` steps. Data: the shared portraits (resident on the device,
``data.portrait_segmentation_split``) or COCO 2017 panoptic ``person`` masks through tfds.

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
import numpy as np
import optax

from jaxstyle import data as data_lib
from jaxstyle import losses
from jaxstyle import portrait
from jaxstyle import segnet as segnet_lib
from jaxstyle import training

DATA_STREAM, FLIP_STREAM = 1, 2


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


def hparams_from_config(config) -> Hparams:
  model = dataclasses.replace(portrait.MODEL_CONFIGS[config.model], dtype=config.dtype,
                              formulation=config.formulation)
  check_model(model)
  return Hparams(model=model, batch_size=config.batch_size, crop=config.crop,
                 num_steps=config.num_steps, lr=config.lr, warmup_steps=config.warmup_steps,
                 dice_weight=config.dice_weight, flip=config.flip)


def check_model(model: portrait.ModelConfig) -> None:
  if segnet_lib.SEGNET_CONFIGS[model.segnet].encoder != "shared":
    raise ValueError(f"SegNet config {model.segnet!r} has its own encoder; this trainer trains the "
                     f"decoder of the 'shared' configuration only (see the module docstring)")


def learning_rate(hp: Hparams):
  return optax.warmup_cosine_decay_schedule(0.0, hp.lr, min(hp.warmup_steps, hp.num_steps - 1),
                                            hp.num_steps, end_value=hp.lr * 0.01)


def make_optimizer(hp: Hparams) -> optax.GradientTransformation:
  return optax.adam(learning_rate(hp))


def init_trainable(hp: Hparams, rng: jax.Array) -> dict[str, Any]:
  return {"segnet": portrait.init_params(hp.model, rng, (hp.crop, hp.crop))["segnet"]}


def logits_fn(params: dict, frozen: dict, images: jax.Array, hp: Hparams) -> jax.Array:
  m = portrait.build(hp.model)
  feats = m.encoder.apply(frozen["encoder"], images)
  return portrait.person_logits({**frozen, **params}, hp.model, images, feats)


def get_pairs(data: Any, state: training.TrainState, hp: Hparams) -> tuple[jax.Array, jax.Array]:
  """(images, target masks) from a resident RGB+mask dataset (crops and flips on the device) or a placed
  host batch ``{"image", "mask"}`` (flipped here)."""
  if "pixels" in data:
    x = data_lib.sample_crops(data, jax.random.fold_in(state.rng, DATA_STREAM), state.step,
                              hp.batch_size, hp.crop, flip=hp.flip)
    x = training.shard_batch(x)
    return x[..., :3], x[..., 3]
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


@functools.partial(jax.jit, static_argnames="hp")
def predict(params: dict, frozen: dict, images: jax.Array, hp: Hparams) -> jax.Array:
  return jax.nn.sigmoid(logits_fn(params, frozen, images, hp))


def evaluate(params: dict, frozen: dict, images: np.ndarray, masks: np.ndarray, hp: Hparams,
             batch_size: int = 8) -> tuple[dict[str, float], np.ndarray]:
  """(``{"eval/miou", "eval/loss"}``, predicted masks) on the held-out images (fixed batches, the
  last one padded, so one program serves every eval)."""
  preds, n = [], len(images)
  for i in range(0, n, batch_size):
    x = images[i:i + batch_size]
    pad = batch_size - len(x)
    x = np.concatenate([x, np.zeros((pad, *x.shape[1:]), x.dtype)]) if pad else x
    preds.append(np.asarray(predict(params, frozen, x, hp))[:batch_size - pad])
  pred = np.concatenate(preds)
  iou = np.asarray(losses.iou(pred, masks))
  p = np.clip(pred, 1e-6, 1 - 1e-6)
  bce = float(np.mean(-(masks * np.log(p) + (1 - masks) * np.log(1 - p))))
  return {"eval/miou": float(iou.mean()), "eval/bce": bce}, pred


# ------------------------------------------------------------------------------------------ data


def make_data(config, *, start_step: int, mesh):
  """(train source, held-out images, held-out masks). The source is resident (portraits) or a host
  iterator of ``{"image", "mask"}`` batches (tfds)."""
  if config.source == "portraits":
    train, held_out = data_lib.portrait_segmentation_split(
        config.data_dir, negatives=config.negatives, photos_with_people=config.photos_with_people,
        holdout_fraction=config.holdout_fraction)
    kinds = {k: sum(ex.kind == k for ex in train) for k in sorted({ex.kind for ex in train})}
    logging.info("SegNet data: %d train pairs %s, %d held out", len(train), kinds, len(held_out))
    source = data_lib.load_resident([ex.image for ex in train], resize=config.resize,
                                    masks=[ex.mask for ex in train], max_aspect=config.max_aspect,
                                    num_threads=config.num_decode_threads)
    images, masks = data_lib.load_eval_pairs(held_out, config.eval_size)
    return source, images, masks
  if config.source == "tfds":
    local_batch = training.local_batch_size(config.batch_size, mesh)
    source = data_lib.tfds_person_masks(config.tfds_name, config.split, batch_size=local_batch,
                                        crop=config.crop, resize=config.resize, seed=config.seed,
                                        start_step=start_step, data_dir=config.tfds_data_dir or None)
    held = next(data_lib.tfds_person_masks(config.tfds_name, config.eval_split,
                                           batch_size=config.eval_examples, crop=config.eval_size,
                                           resize=config.eval_size, seed=0,
                                           data_dir=config.tfds_data_dir or None))
    return source, held["image"], held["mask"]
  raise ValueError(f"config.source must be 'portraits' or 'tfds', not {config.source!r}")


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
      abstract, init = training.abstract_train_state(functools.partial(init_trainable, hp),
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
      source, eval_images, eval_masks = make_data(config, start_step=start, mesh=mesh)
      if isinstance(source, data_lib.ResidentImages):
        resident = training.place_replicated(mesh, source.arrays())
        get_args = lambda step: (frozen, resident)
      else:
        get_args = lambda step: (frozen, training.place_batch(mesh, next(source)))

      def run_eval(step, state):
        metrics, pred = evaluate(state.params, frozen, eval_images, eval_masks, hp,
                                 config.eval_batch_size)
        writer.scalars(step, metrics)
        logging.info("step %d: held-out mIoU %.4f (%d images), BCE %.4f", step, metrics["eval/miou"],
                     len(eval_images), metrics["eval/bce"])
        n = config.num_samples
        writer.image(step, "eval", training.image_grid(
            zip(eval_images[:n], eval_masks[:n], pred[:n],
                eval_images[:n] * (0.25 + 0.75 * pred[:n, ..., None]))))

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
