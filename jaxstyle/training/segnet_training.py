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

``train_and_evaluate(config, workdir)`` runs it end to end (configs in ``train/configs/segnet.py``).
"""
from __future__ import annotations

import dataclasses
import functools
from typing import Any

from absl import logging
import jax
import jax.numpy as jnp
import flax.traverse_util
import numpy as np
import optax

from jaxstyle.nets import losses
from jaxstyle.nets import model as model_lib
from jaxstyle.program import portrait
from jaxstyle.program import profiling
from jaxstyle.program import sharding
from jaxstyle.training import augment
from jaxstyle.training import data as data_lib
from jaxstyle.training import encoder_weights
from jaxstyle.training import loop
from jaxstyle.training import reporting
from jaxstyle.training import hparams as hparams_lib
from jaxstyle.training import segnet_eval
from jaxstyle.training import train_inputs

DATA_STREAM, FLIP_STREAM = 1, 2
OWN, BACKGROUND, PICK, MIX = range(4)   # sub-streams of DATA_STREAM


@dataclasses.dataclass(frozen=True)
class Hparams:
  """What the jitted step depends on besides its arguments (hashable: a static argument).

  No defaults: ``hparams_from_config`` reads each field from the config field of its name (the configs
  are the one source of the values; ``augment`` field by field from ``config.augment``), except
  ``model``, which it computes.
  """
  model: model_lib.ModelConfig     # config.model with config.dtype and config.formulation
  batch_size: int                  # global
  crop: int
  num_steps: int                   # the length of the cosine schedule
  lr: float
  warmup_steps: int
  dice_weight: float
  flip: bool
  augment: augment.AugmentConfig


def hparams_from_config(config) -> Hparams:
  return hparams_lib.from_config(Hparams, config, model=hparams_lib.model_config(config))


def learning_rate(hp: Hparams):
  return optax.warmup_cosine_decay_schedule(0.0, hp.lr, min(hp.warmup_steps, hp.num_steps - 1),
                                            hp.num_steps, end_value=hp.lr * 0.01)


def make_optimizer(hp: Hparams) -> optax.GradientTransformation:
  return optax.adam(learning_rate(hp))


def init_trainable(hp: Hparams, rng: jax.Array, init_from: dict | None = None) -> dict[str, Any]:
  """Random SegNet variables, overwritten by ``init_from``'s where it has them (same shapes)."""
  params = model_lib.init_params(hp.model, rng, (hp.crop, hp.crop))["segnet"]
  if init_from is None:
    return {"segnet": params}
  flat, given = flax.traverse_util.flatten_dict(params), flax.traverse_util.flatten_dict(init_from)
  for k, v in given.items():
    if k not in flat or flat[k].shape != v.shape:
      raise ValueError(f"init_from: SegNet parameter {'/'.join(k)} {v.shape} does not fit this model")
    flat[k] = jnp.asarray(v, flat[k].dtype)
  return {"segnet": flax.traverse_util.unflatten_dict(flat)}


def logits_fn(params: dict, frozen: dict, images: jax.Array, hp: Hparams) -> jax.Array:
  m = model_lib.build(hp.model)
  feats = m.encoder.apply(frozen["encoder"], images)
  return portrait.person_logits({**frozen, **params}, hp.model, images, feats)


def get_pairs(data: Any, state: loop.TrainState, hp: Hparams) -> tuple[jax.Array, jax.Array]:
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
    return sharding.shard_batch(images), sharding.shard_batch(masks)
  images, masks = data["image"], data["mask"]
  if hp.flip:
    key = jax.random.fold_in(jax.random.fold_in(state.rng, FLIP_STREAM), state.step)
    mirror = jax.random.bernoulli(key, 0.5, (images.shape[0],))
    images = jnp.where(mirror[:, None, None, None], images[:, :, ::-1], images)
    masks = jnp.where(mirror[:, None, None], masks[:, :, ::-1], masks)
  return images, masks


@functools.partial(jax.jit, static_argnames="hp", donate_argnames="state")
def train_step(state: loop.TrainState, frozen: dict, data: dict, hp: Hparams):
  images, target = get_pairs(data, state, hp)

  def loss_fn(params):
    logits = logits_fn(params, frozen, images, hp)
    return losses.segmentation_loss(logits, target, hp.dice_weight), logits

  (loss, logits), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.params)
  updates, opt_state = make_optimizer(hp).update(grads, state.opt_state, state.params)
  params = optax.apply_updates(state.params, updates)
  metrics = {"loss": loss, "train/iou": jnp.mean(losses.iou(jax.nn.sigmoid(logits), target)),
             **loop.update_metrics(grads, state.params, updates), "lr": learning_rate(hp)(state.step)}
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
  return reporting.image_grid([pad(x.image), pad(x.mask), pad(p), pad(x.image * (0.25 + 0.75 * p[..., None]))]
                             for x, p in zip(held[:n], preds[:n]))


# ------------------------------------------------------------------------------------------ init


def load_init(directory: str) -> dict | None:
  """The ``segnet`` variables of a weights folder (``config.init_from``), or None for ``""``."""
  if not directory:
    return None
  from jaxstyle.io import weights as weights_lib# pylint: disable=g-import-not-at-top
  return weights_lib.load(data_lib.resolve_path(directory))[0]["segnet"]


# ------------------------------------------------------------------------------------------ main


def eval_and_log(run: loop.Run, frozen: dict, held: list[segnet_eval.HeldOut], teacher: dict | None,
                 hp: Hparams, step: int, state: loop.TrainState) -> None:
  """Held-out person IoU (and the teacher's, for comparison) to the metrics, the log and a sheet."""
  config = run.config
  metrics, pred = evaluate(state.params, frozen, held, hp, config.eval_feather)
  run.writer.scalars(step, {**metrics, **({"eval/teacher_person_iou": teacher["person_iou"]}
                                          if teacher else {})})
  logging.info("step %d: held-out person IoU %.4f (min %.4f, %d portraits at %d px through the CLI path; "
               "MediaPipe teacher %s)", step, metrics["eval/person_iou"], metrics["eval/person_iou_min"],
               len(held), config.eval_size, f"{teacher['person_iou']:.4f}" if teacher else "n/a")
  run.writer.image(step, "eval", sample_sheet(held, pred, config.num_samples))


def write_weights(run: loop.Run, frozen: dict, imagenet_encoder: bool, step: int,
                   state: loop.TrainState) -> None:
  """``segnet`` (and a non-ImageNet encoder) into ``config.export_dir`` (default ``workdir/weights``)."""
  if jax.process_index() != 0:
    return
  config = run.config
  meta = encoder_weights.run_meta(config, step=step, samples=int(step) * config.batch_size,
                                  metrics=run.latest_metrics(), wall_s=run.elapsed_s())
  encoder_weights.export_run(config.export_dir or run.workdir / "weights",
                             {"segnet": state.params["segnet"]}, frozen, trainer="segnet", config=config,
                             imagenet_encoder=imagenet_encoder, meta=meta)


def train_and_evaluate(config, workdir: str) -> loop.TrainState:
  """Trains the SegNet decoder per ``config`` in ``workdir``, resuming from its latest checkpoint;
  returns the final state. Exports ``segnet`` into ``config.export_dir`` (default ``workdir/weights``)."""
  hp = hparams_from_config(config)
  with loop.start_run(config, workdir) as run:
    frozen, imagenet_encoder = encoder_weights.frozen_encoder(config.encoder, hp.model, config.seed)
    frozen = sharding.place_replicated(run.mesh, frozen)
    source, held = train_inputs.segnet_data(config, mesh=run.mesh)
    run.track({"train": source})
    abstract, init = loop.abstract_train_state(
        functools.partial(init_trainable, hp, init_from=load_init(config.init_from)), make_optimizer(hp),
        jax.random.PRNGKey(config.seed), run.mesh)
    state, restored = run.restore_or_init(abstract, init)
    logging.info("SegNet (%s model): step %d of %d on %s", config.model, state.step, config.num_steps,
                 profiling.device_description())
    teacher = segnet_eval.evaluate_teacher(held) if any(h.teacher is not None for h in held) else None
    if isinstance(source, dict):
      resident = sharding.place_replicated(run.mesh, {k: v.arrays() for k, v in source.items()})
      get_args = lambda step: (frozen, resident)
    else:
      get_args = lambda step: (frozen, sharding.place_batch(run.mesh, next(source)))
    run_eval = functools.partial(eval_and_log, run, frozen, held, teacher, hp)
    if not restored:
      run_eval(0, state)                 # the untrained baseline
    hooks = [loop.Hook(config.eval_every, run_eval),
             loop.Hook(config.export_every,
                           functools.partial(write_weights, run, frozen, imagenet_encoder))]
    return run.loop(state, train_step, get_args, hp=hp, hooks=hooks,
                    extra_metrics=getattr(source, "stats", None) and source.stats.metrics)
