"""SANet training (Park & Lee, CVPR 2019): the decoder and the multi-level transform; VGG-19 frozen.

For content ``c`` and style ``s`` (random crops of one size), with ``T`` the transform at weights [[1, 1]]:

    I_cs = dec(T(c, s)),  I_cc = dec(T(c, c)),  I_ss = dec(T(s, s))
    L = λc·content(vgg(I_cs), vgg(c)) + λs·style(vgg(I_cs), vgg(s))
        + λid1·(‖I_cc − c‖² + ‖I_ss − s‖²) + λid2·Σ_l (‖φ_l(I_cc) − φ_l(c)‖² + ‖φ_l(I_ss) − φ_l(s)‖²)

with the terms of ``jaxstyle/nets/losses.py``. The published code uses λid1 = 50 (pixels) and λid2 = 1
(features); the paper's text swaps them (``train/configs/sanet.py:seed_paper``). The three transfers run
as one batch of 3B through the transform and decoder, and content, style and the three outputs through
VGG as two batches, each stacked batch-major (``interleave``) so that a batch sharded over devices never
moves between them: the step's only collective is the gradient all-reduce. Adam, lr 1e-4 with the
published inverse-time decay ``lr / (1 + 5e-5·step)`` (``adjust_learning_rate``). The encoder's params
are not in the optimizer state: the step takes them as a separate, replicated argument.

Two departures for the Caffe-convention ImageNet VGG-19 (inputs 0–255, activations 10²–10³× those of the
published ``vgg_normalised``): the losses see each VGG layer divided by its mean activation
(``feature_scales``), which restores the balance the λ weights were tuned for, and the decoder's first
kernel is initialised divided by the std of real relu4_1 features (``init_trainable``), so its first
outputs are images rather than values in the thousands. The transform and decoder see raw features, as
at inference (``portrait.stylize``).

``train_and_evaluate(config, workdir)`` runs it end to end (configs in ``train/configs/sanet.py``).
"""
from __future__ import annotations

import dataclasses
import functools
from typing import Any

from absl import logging
import jax
import jax.numpy as jnp
import numpy as np
import optax

from jaxstyle.nets import losses
from jaxstyle.nets import model as model_lib
from jaxstyle.program import profiling
from jaxstyle.program import sharding
from jaxstyle.training import data as data_lib
from jaxstyle.training import encoder_weights
from jaxstyle.training import hparams as hparams_lib
from jaxstyle.training import loop
from jaxstyle.training import reporting
from jaxstyle.training import train_inputs

TRAINED = ("transform", "decoder")
# fold_in tags that separate the random streams derived from a run's key.
CONTENT_STREAM, STYLE_STREAM = 1, 2


@dataclasses.dataclass(frozen=True)
class LossWeights:
  """The λ of each loss term: ``config.loss``, field by field."""
  content: float
  style: float
  identity_pixel: float            # λid1
  identity_feature: float          # λid2


@dataclasses.dataclass(frozen=True)
class Hparams:
  """Everything the jitted step depends on besides its arguments (hashable: a static argument).

  No defaults: ``hparams_from_config`` reads each field from the config field of its name (the configs
  are the one source of the values), except ``model`` and ``feature_scales``, which it computes.
  """
  model: model_lib.ModelConfig     # config.model with config.dtype and config.formulation
  batch_size: int                  # global
  crop: int
  lr: float
  lr_decay: float
  loss: LossWeights
  # Loss-side divisors of relu1_1..relu5_1 (``pretrained.VGG19_IMAGENET_MEAN_ACTIVATION``); () = none.
  feature_scales: tuple[float, ...]


def feature_scales(encoder: str) -> tuple[float, ...]:
  """Divisors that bring the frozen encoder's loss features to O(1), as SANet's ``vgg_normalised``.

  The Caffe-convention VGG-19 sees 0–255 inputs: its relu4_1 activations average ~560, so the style and
  identity-feature losses would be ~10⁵× the (scale-free) content loss and the pixel identity term, and
  the paper's λ weights would lose their meaning. Dividing each layer by its mean activation brings the
  loss features near unit mean, about the scale of SANet's ``vgg_normalised`` (``encoder_weights.
  normalised_vgg`` does the same to the network itself). A random (test) encoder is left as is.
  """
  if encoder != "imagenet":
    return ()
  from jaxstyle.checkpoints import pretrained  # pylint: disable=g-import-not-at-top
  return tuple(pretrained.VGG19_IMAGENET_MEAN_ACTIVATION[k] for k in losses.STYLE_LAYERS)


def normalise_features(feats: dict, scales: tuple[float, ...]) -> dict:
  if not scales:
    return feats
  return {**feats, **{k: feats[k] / s for k, s in zip(losses.STYLE_LAYERS, scales)}}


def hparams_from_config(config) -> Hparams:
  return hparams_lib.from_config(Hparams, config, model=hparams_lib.model_config(config),
                     feature_scales=feature_scales(config.encoder))


def learning_rate(hp: Hparams):
  """The published SANet schedule: ``lr / (1 + decay · step)``, step counted from 0."""
  return lambda count: hp.lr / (1.0 + hp.lr_decay * count)


def make_optimizer(hp: Hparams) -> optax.GradientTransformation:
  return optax.adam(learning_rate(hp))


def init_trainable(hp: Hparams, rng: jax.Array, feature_scale: float = 1.0) -> dict[str, Any]:
  """Random transform and decoder; the decoder's first kernel divided by ``feature_scale``.

  LeCun-normal init keeps activation scales, so a decoder fed relu4_1 features of std σ first outputs
  images of std ~σ. With the Caffe-convention VGG-19 (inputs 0–255) σ is in the tens to hundreds and
  the first losses are ~1e11; dividing by σ (``feature_scale``, measured on real images by
  ``relu4_1_std``) starts the decoder near unit-scale outputs, as the published ``vgg_normalised``
  setup does.
  """
  params = model_lib.init_params(hp.model, rng, (hp.crop, hp.crop))
  params = {k: params[k] for k in TRAINED}
  first = hp.model.decoder_layers[0][0]
  kernel = params["decoder"]["params"][first]["kernel"]
  params["decoder"]["params"][first]["kernel"] = kernel / feature_scale
  return params


@functools.partial(jax.jit, static_argnames="hp")
def relu4_1_std(frozen: dict, images: jax.Array, hp: Hparams) -> jax.Array:
  """Standard deviation of the frozen encoder's relu4_1 features of ``images`` (see ``init_trainable``)."""
  feats = model_lib.build(hp.model).encoder.apply(frozen["encoder"], images)
  return jnp.std(feats["relu4_1"].astype(jnp.float32))


def get_images(data: Any, key: jax.Array, step: jax.Array, hp: Hparams) -> jax.Array:
  """A placed host batch as is, or random crops of a resident dataset (``data_lib.sample_crops``)."""
  if isinstance(data, dict):
    return sharding.shard_batch(data_lib.sample_crops(data, key, step, hp.batch_size, hp.crop))
  return data


def interleave(*xs: jax.Array) -> jax.Array:
  """``[B, …]`` arrays → ``[B·k, …]`` batch-major (row ``i·k + j`` is ``xs[j][i]``).

  A batch sharded over devices stays sharded: each device's rows of every input end up next to each
  other, where ``concatenate`` would move them across devices (collective permutes and gathers).
  """
  return jnp.stack(xs, axis=1).reshape(-1, *xs[0].shape[1:])


def deinterleave(x: jax.Array, k: int) -> tuple[jax.Array, ...]:
  """The inverse of ``interleave`` for ``k`` inputs."""
  x = x.reshape(-1, k, *x.shape[1:])
  return tuple(x[:, j] for j in range(k))


def split_features(feats: dict, k: int) -> tuple[dict, ...]:
  """VGG features of an ``interleave``d batch → one feature dict per input."""
  parts = {name: deinterleave(x, k) for name, x in feats.items()}
  return tuple({name: p[j] for name, p in parts.items()} for j in range(k))


def transfers(params: dict, frozen: dict, content: jax.Array, style: jax.Array, hp: Hparams):
  """((I_cs, I_cc, I_ss), loss features of (content, style, I_cs, I_cc, I_ss))."""
  m = model_lib.build(hp.model)
  encode = lambda x: m.encoder.apply(frozen["encoder"], x)
  fc, fs = split_features(encode(interleave(content, style)), 2)  # raw: what the transform sees
  # Queries from (c, c, s), keys/values from (s, c, s): I_cs, I_cc, I_ss in one batch.
  queries, keys = (fc, fc, fs), (fs, fc, fs)
  level = lambda layer, feats: interleave(*(f[layer] for f in feats))
  t = m.transform.apply(params["transform"], level("relu4_1", queries), level("relu4_1", keys),
                        level("relu5_1", queries), level("relu5_1", keys), jnp.ones((1, 2), jnp.float32))[0]
  out = m.decoder.apply(params["decoder"], t, content.shape[1:3])
  f_cs, f_cc, f_ss = split_features(encode(out), 3)
  # Only the losses see normalised features (``feature_scales``).
  loss_feats = tuple(normalise_features(f, hp.feature_scales) for f in (fc, fs, f_cs, f_cc, f_ss))
  return deinterleave(out, 3), loss_feats


def loss_terms(params: dict, frozen: dict, content: jax.Array, style: jax.Array, hp: Hparams):
  (_, i_cc, i_ss), (fc, fs, f_cs, f_cc, f_ss) = transfers(params, frozen, content, style, hp)
  terms = {
      "loss/content": losses.content_loss(f_cs, fc),
      "loss/style": losses.style_loss(f_cs, fs),
      "loss/identity_pixel": losses.identity_pixel_loss(i_cc, content, i_ss, style),
      "loss/identity_feature": losses.identity_feature_loss(f_cc, fc, f_ss, fs),
  }
  w = hp.loss
  total = (w.content * terms["loss/content"] + w.style * terms["loss/style"]
           + w.identity_pixel * terms["loss/identity_pixel"]
           + w.identity_feature * terms["loss/identity_feature"])
  return total, terms


@functools.partial(jax.jit, static_argnames="hp", donate_argnames="state")
def train_step(state: loop.TrainState, frozen: dict, data: dict, hp: Hparams):
  """One Adam step. ``data``: ``{"content", "style"}``, each a placed batch or a resident dataset."""
  content = get_images(data["content"], jax.random.fold_in(state.rng, CONTENT_STREAM), state.step, hp)
  style = get_images(data["style"], jax.random.fold_in(state.rng, STYLE_STREAM), state.step, hp)
  (loss, terms), grads = jax.value_and_grad(loss_terms, has_aux=True)(
      state.params, frozen, content, style, hp)
  updates, opt_state = make_optimizer(hp).update(grads, state.opt_state, state.params)
  params = optax.apply_updates(state.params, updates)
  metrics = {"loss": loss, **terms, **loop.update_metrics(grads, state.params, updates),
             "lr": learning_rate(hp)(state.step)}
  return state.replace(step=state.step + 1, params=params, opt_state=opt_state), metrics


@functools.partial(jax.jit, static_argnames="hp")
def sample(params: dict, frozen: dict, content: jax.Array, style: jax.Array, hp: Hparams):
  (i_cs, i_cc, i_ss), _ = transfers(params, frozen, content, style, hp)
  return i_cs, i_cc, i_ss


def sample_grid(params, frozen, content, style, hp: Hparams) -> np.ndarray:
  """One row per example: content | style | output | I_cc | I_ss (uint8)."""
  outs = jax.device_get(sample(params, frozen, content, style, hp))
  c, s = np.asarray(content), np.asarray(style)
  return reporting.image_grid(zip(c, s, *outs))


# ----------------------------------------------------------------------------- continuing weights


def prior_training(config) -> tuple[int, int]:
  """(steps, samples) the weights of ``config.init_weights`` were trained for; (0, 0) without them.

  Older manifests record steps only: their samples are steps × the batch size they record.
  """
  if not config.get("init_weights"):
    return 0, 0
  from jaxstyle.io import weights as weights_lib# pylint: disable=g-import-not-at-top
  meta = weights_lib.read_manifest(data_lib.resolve_path(config.init_weights)).get("meta", {})
  sanet = meta.get("sanet")
  if not sanet or "steps" not in sanet:
    raise ValueError(f"{config.init_weights}: its manifest records no SANet training (meta.sanet.steps)")
  steps = int(sanet["steps"])
  return steps, int(sanet.get("samples", steps * sanet.get("config", {}).get("batch_size", 0)))


def continue_from_weights(state: loop.TrainState, config, mesh) -> loop.TrainState:
  """``state`` with the decoder and transform of ``config.init_weights``, at its recorded step.

  Adam's moments stay at their initial zeros (a weights folder does not carry them; Adam's zero state
  does not depend on the params it was made for). Shapes must match the model.
  """
  from jaxstyle.io import weights as weights_lib# pylint: disable=g-import-not-at-top
  loaded, _ = weights_lib.load(data_lib.resolve_path(config.init_weights))
  missing = [k for k in TRAINED if k not in loaded]
  if missing:
    raise ValueError(f"{config.init_weights} lacks {', '.join(missing)}: nothing to continue from")
  params = {k: loaded[k] for k in TRAINED}
  want = jax.tree.map(lambda x: x.shape, state.params)
  got = jax.tree.map(lambda x: x.shape, params)
  if want != got:
    raise ValueError(f"{config.init_weights} does not fit model {config.model!r}")
  params = sharding.place_replicated(mesh, params)
  step, _ = prior_training(config)
  return state.replace(step=sharding.place_replicated(mesh, np.int32(step)), params=params)


# ------------------------------------------------------------------------------------------ main


def export(directory, params: dict, frozen: dict, *, config, imagenet_encoder: bool, step: int,
           metrics: dict, wall_s: float) -> dict:
  """Adds decoder + transform (and a non-ImageNet encoder) to the weights folder ``directory``,
  keeping networks other trainers wrote there (``weights.update``).

  ``steps`` and ``samples`` are cumulative over the runs a chain of ``init_weights`` continued.
  """
  prior_steps, prior_samples = prior_training(config)
  extra = ({"continued_from": {"steps": prior_steps, "samples": prior_samples}}
           if config.get("init_weights") else {})
  meta = encoder_weights.run_meta(
      config, step=step, samples=prior_samples + (int(step) - prior_steps) * config.batch_size,
      metrics=metrics, wall_s=wall_s, **extra)
  return encoder_weights.export_run(directory, {k: params[k] for k in TRAINED}, frozen, trainer="sanet",
                                    config=config, imagenet_encoder=imagenet_encoder, meta=meta)


def initial_state(run: loop.Run, hp: Hparams, frozen: dict, content: np.ndarray) -> loop.TrainState:
  """The latest checkpoint's state, else ``config.init_weights``' networks, else a new one whose
  decoder is scaled to the relu4_1 features of ``content`` (``init_trainable``)."""
  config = run.config
  scale = float(relu4_1_std(frozen, content, hp))
  abstract, init = loop.abstract_train_state(
      functools.partial(init_trainable, hp, feature_scale=scale), make_optimizer(hp),
      jax.random.PRNGKey(config.seed), run.mesh)
  state, restored = run.restore_or_init(abstract, init)
  if restored:
    return state
  if config.get("init_weights"):
    state = continue_from_weights(state, config, run.mesh)
    logging.info("continuing from %s at step %d", config.init_weights, int(state.step))
  else:
    logging.info("decoder init: relu4_1 feature std %.4g", scale)
  return state


def train_and_evaluate(config, workdir: str) -> loop.TrainState:
  """Trains SANet per ``config`` in ``workdir``, resuming from its latest checkpoint.

  Writes ``checkpoints/``, ``metrics.jsonl``, ``tensorboard/``, ``samples/*.png`` and exports the
  inference weights to ``config.export_dir`` (default ``workdir/weights``).
  """
  hp = hparams_from_config(config)
  with loop.start_run(config, workdir) as run:
    prior_steps = prior_training(config)[0]
    frozen, imagenet_encoder = encoder_weights.frozen_encoder(config.encoder, hp.model, config.seed)
    frozen = sharding.place_replicated(run.mesh, frozen)
    # Continuing from weights: other streams than the run that made them, so its batches do not repeat.
    streams = {k: f"{k}_from_{prior_steps}" if prior_steps else k for k in ("content", "style")}
    sources = run.track({k: train_inputs.image_source(config[k], config, stream=stream, mesh=run.mesh)
                         for k, stream in streams.items()})
    get_data, decode_metrics = train_inputs.data_getter(sources, run.mesh)
    fixed = train_inputs.fixed_images(config, sources, run.mesh)
    state = initial_state(run, hp, frozen, fixed["content"])
    logging.info("SANet (%s model): step %d of %d on %s", config.model, state.step, config.num_steps,
                 profiling.device_description())

    def write_samples(step, state):
      run.writer.image(step, "samples", sample_grid(state.params, frozen, fixed["content"],
                                                    fixed["style"], hp))

    def write_weights(step, state):
      if jax.process_index() == 0:
        export(config.export_dir or run.workdir / "weights", state.params, frozen, config=config,
               imagenet_encoder=imagenet_encoder, step=step, metrics=run.latest_metrics(),
               wall_s=run.elapsed_s())

    hooks = [loop.Hook(config.sample_every, write_samples),
             loop.Hook(config.export_every, write_weights)]
    return run.loop(state, train_step, lambda step: (frozen, get_data(step)), hp=hp, hooks=hooks,
                    extra_metrics=decode_metrics)
