"""SegNet decoder training on the tiny model: a real step, learning, mIoU, export next to SANet."""
import dataclasses
import json
import shutil

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxstyle.io import weights as weights_lib
from jaxstyle.nets import model as model_lib
from jaxstyle.program import sharding
from jaxstyle.training import augment
from jaxstyle.training import distributed
from jaxstyle.training import encoder_weights
from jaxstyle.training import loop
from jaxstyle.training import sanet_training
from jaxstyle.training import segnet_eval
from jaxstyle.training import segnet_training as sg
from train.configs import segnet as segnet_configs

from test_data import make_shared_data  # pylint: disable=g-bad-import-order
from test_input_pipeline import tiny_tfds  # pylint: disable=g-bad-import-order,unused-import   a fixture
from test_sanet_training import (  # pylint: disable=g-bad-import-order
    assert_a_missing_or_unknown_field_is_refused_by_name, assert_every_field_is_read_by_name,
    declared_defaults)


def hparams(**overrides) -> sg.Hparams:
  """The ``runlocal`` config's Hparams (tiny model, xla convs, random encoder), fields overridden."""
  config = segnet_configs.get_config("runlocal")
  config.update(overrides)
  return sg.hparams_from_config(config)


TINY = hparams().model


def disks(n=4, hw=32, seed=0):
  """Bright disks (the 'person') on darker noise: a task the tiny encoder's features can solve."""
  rng = np.random.default_rng(seed)
  yy, xx = np.mgrid[:hw, :hw]
  masks = np.stack([((yy - rng.uniform(8, 24)) ** 2 + (xx - rng.uniform(8, 24)) ** 2
                     < rng.uniform(30, 80)).astype(np.float32) for _ in range(n)])
  images = 0.3 * rng.uniform(size=(n, hw, hw, 3)) + 0.6 * masks[..., None]
  return {"image": jnp.asarray(images, jnp.float32), "mask": jnp.asarray(masks)}


def test_train_step_learns_and_keeps_the_encoder_frozen():
  hp = hparams(num_steps=40, lr=1e-2)     # runlocal: batch 4 of 32² crops, 2 warm-up steps
  frozen = encoder_weights.frozen_encoder("random", TINY, 0)[0]
  _, init = loop.abstract_train_state(lambda r: sg.init_trainable(hp, r), sg.make_optimizer(hp),
                                          jax.random.PRNGKey(0), sharding.data_mesh())
  state = init(jax.random.PRNGKey(0))
  assert set(state.params) == {"segnet"} and set(state.opt_state[0].mu) == {"segnet"}
  batch = disks()
  losses, ious = [], []
  for _ in range(30):
    state, m = sg.train_step(state, frozen, batch, hp=hp)
    losses.append(float(m["loss"]))
    ious.append(float(m["train/iou"]))
  assert all(np.isfinite(losses)) and np.isfinite(float(m["norm/grads"]))
  assert losses[-1] < 0.75 * losses[0], losses
  held = [segnet_eval.HeldOut(str(i), np.asarray(x), np.asarray(m), None)
          for i, (x, m) in enumerate(zip(batch["image"], batch["mask"]))]
  metrics, pred = sg.evaluate(state.params, frozen, held, hp, feather=0.0)
  assert len(pred) == 4 and pred[0].shape == (32, 32)
  assert 0.0 <= metrics["eval/person_iou_min"] <= metrics["eval/person_iou"] <= 1.0
  np.testing.assert_allclose(metrics["eval/person_iou"], ious[-1], atol=0.25)


def test_train_and_evaluate_reports_miou_and_exports_next_to_sanet(tmp_path):
  root = make_shared_data(tmp_path / "data")
  weights_dir = tmp_path / "weights"
  # A SANet export already in the folder (untrained tiny nets) must survive the SegNet export.
  sanet_params = model_lib.init_params(model_lib.MODEL_CONFIGS["tiny"], jax.random.PRNGKey(0))
  encoder = encoder_weights.frozen_encoder("random", TINY, 0)[0]
  config = segnet_configs.get_config("runlocal")
  config.update(dict(data_dir=str(root), resize=16, crop=16, eval_size=32, num_steps=6, eval_every=3,
                     log_every=3, checkpoint_every=3, export_every=100, export_dir=str(weights_dir),
                     photos_with_people=("photo1.jpg",)))
  sanet_training.export(weights_dir, sanet_params, encoder, config=config, imagenet_encoder=False,
                        step=0, metrics={}, wall_s=0.0)
  state = sg.train_and_evaluate(config, str(tmp_path / "run"))
  assert int(state.step) == 6
  lines = [json.loads(l) for l in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
  ious = [l["eval/person_iou"] for l in lines if "eval/person_iou" in l]
  assert len(ious) == 3 and all(0.0 <= v <= 1.0 for v in ious)    # steps 0, 3, 6
  assert all("eval/teacher_person_iou" in l for l in lines if "eval/person_iou" in l)
  assert any("train/iou" in l for l in lines)
  assert len(list((tmp_path / "run" / "samples").glob("eval_*.png"))) == 3
  params, manifest = weights_lib.load(weights_dir)
  assert set(params) == {"decoder", "transform", "encoder", "segnet"}
  assert set(manifest["meta"]) == {"sanet", "segnet"} and manifest["meta"]["segnet"]["steps"] == 6
  np.testing.assert_allclose(params["segnet"]["params"]["unpool1_conv2"]["kernel"],
                             state.params["segnet"]["params"]["unpool1_conv2"]["kernel"], atol=1e-6)
  with pytest.raises(weights_lib.WeightsError, match="model config"):
    weights_lib.update(weights_dir, {"segnet": params["segnet"]}, model_config="default")
  # A SegNet trained on another encoder must not join these SANet networks.
  with pytest.raises(weights_lib.WeightsError, match="trained on encoder 'random'"):
    encoder_weights.export_weights(weights_dir, {"segnet": params["segnet"]}, trainer="segnet",
                            encoder="imagenet_normalised", include_encoder=False, model_config="tiny",
                            dtype="float32", meta={})


def test_configs():
  default = segnet_configs.get_config()
  assert default.source == "portraits" and default.encoder == "imagenet" and default.negatives
  coco = segnet_configs.get_config("coco_panoptic")
  assert coco.source == "tfds" and coco.tfds_name == "coco/2017_panoptic"
  changed = {k for k, v in coco.to_dict().items() if default.to_dict()[k] != v}
  assert changed == {"source", "resize", "num_steps", "eval_every", "checkpoint_every", "export_every"}
  cpu = segnet_configs.get_config("cpu_finetune")
  assert cpu.init_from == "weights" and cpu.crop == 320 and sg.hparams_from_config(cpu).augment.paste_prob > 0
  # A tuple's items, given with "+", take the type of the field's items.
  tuned = segnet_configs.get_config("runlocal,augment.scale_range=0.8+1.5,augment.jpeg_quality=30+60")
  assert tuned.augment.scale_range == (0.8, 1.5) and tuned.augment.jpeg_quality == (30, 60)
  assert [type(v) for v in (*tuned.augment.scale_range, *tuned.augment.jpeg_quality)] == [float] * 2 + [int] * 2


def test_every_hparams_field_is_the_config_field_of_its_name():
  get = lambda: segnet_configs.get_config("runlocal")
  assert_every_field_is_read_by_name(get, sg.hparams_from_config, computed=("model",))
  assert_a_missing_or_unknown_field_is_refused_by_name(get, sg.hparams_from_config, "warmup_steps",
                                                       "augment.jpeg_prob")
  assert hparams(dtype="bfloat16").model == dataclasses.replace(TINY, dtype="bfloat16")


def test_hparams_declare_no_default_of_their_own():
  """The configs hold every default, but the augmentation's: ``AugmentConfig``'s, which the config's
  ``augment`` group is made from (one copy, not two)."""
  augment_fields = [f"augment.{f.name}" for f in dataclasses.fields(augment.AugmentConfig)]
  assert declared_defaults(sg.Hparams) == augment_fields
  assert segnet_configs.get_config().augment.to_dict() == dataclasses.asdict(augment.AugmentConfig())


def test_init_from_keeps_given_parameters_and_zero_skips(tmp_path):
  hp = hparams()
  no_skips = dataclasses.replace(TINY.segnet, skips=(), context=())       # weights from before skip fusions
  plain = model_lib.init_params(dataclasses.replace(TINY, segnet=no_skips), jax.random.PRNGKey(5))["segnet"]
  params = sg.init_trainable(hp, jax.random.PRNGKey(0), init_from=plain)["segnet"]["params"]
  for name, layer in plain["params"].items():
    np.testing.assert_array_equal(params[name]["kernel"], layer["kernel"])
  assert float(jnp.abs(params["skip1"]["proj"]["kernel"]).max()) == 0.0
  with pytest.raises(ValueError, match="does not fit"):
    sg.init_trainable(hp, jax.random.PRNGKey(0), init_from={"params": {"unpool1_conv1": {
        "kernel": np.zeros((3, 3, 1, 1))}}})


def test_tfds_source_resumes_from_the_grain_iterator_state_in_the_checkpoint(tiny_tfds, tmp_path):
  name, tfds_dir = tiny_tfds
  root = make_shared_data(tmp_path / "data")      # the held-out portraits the evaluation reads

  def run(workdir, num_steps, **overrides):
    config = segnet_configs.get_config("runlocal")
    config.update(dict(source="tfds", tfds_name=name, tfds_data_dir=tfds_dir, data_dir=str(root), resize=16,
                       crop=16, eval_size=32, num_steps=num_steps, eval_every=100, log_every=2,
                       checkpoint_every=2, export_every=100, num_decode_threads=2, **overrides))
    return sg.train_and_evaluate(config, str(tmp_path / workdir))

  straight = run("straight", 4)
  with pytest.MonkeyPatch.context() as patch:      # a stop request after step 2 (the schedule depends on
    patch.setattr(distributed.StopFlag, "should_stop", lambda self, step: step >= 2)   # num_steps)
    assert int(run("resumed", 4).step) == 2
  assert (tmp_path / "resumed" / "checkpoints" / "2" / "train" / "process_0-of-1.json").is_file()
  shutil.copytree(tmp_path / "resumed" / "checkpoints", tmp_path / "restart" / "checkpoints")
  shutil.rmtree(tmp_path / "restart" / "checkpoints" / "2" / "train")
  resumed = run("resumed", 4)
  restarted = run("restart", 4)       # without the iterator's position: its stream starts over
  leaves = lambda state: [np.asarray(x) for x in jax.tree.leaves(state.params)]
  for a, b in zip(leaves(straight), leaves(resumed)):
    np.testing.assert_allclose(a, b, atol=1e-6, rtol=0)
  assert int(resumed.step) == int(restarted.step) == 4 and not all(
      np.allclose(a, b, atol=1e-6) for a, b in zip(leaves(straight), leaves(restarted)))
