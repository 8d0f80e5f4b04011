"""SANet training on the tiny model: a real step, learning, resume, NaN stop, data parallelism, configs."""
import dataclasses
import functools
import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import typing
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxstyle.io import weights as weights_lib
from jaxstyle.nets import model as model_lib
from jaxstyle.program import sharding
from jaxstyle.training import checkpointing
from jaxstyle.training import distributed
from jaxstyle.training import encoder_weights
from jaxstyle.training import loop
from jaxstyle.training import reporting
from jaxstyle.training import sanet_training as st
from jaxstyle.training import train_inputs
from train.configs import common as config_common
from train.configs import sanet as sanet_configs


def hparams(**overrides) -> st.Hparams:
  """The ``runlocal`` config's Hparams (tiny model, xla convs, random encoder), fields overridden."""
  config = sanet_configs.get_config("runlocal")
  config.update(overrides)
  return st.hparams_from_config(config)


HP = hparams(batch_size=2)          # fixed_batch's size
TINY = HP.model


def fixed_batch(seed=0, b=2, hw=32):
  rng = np.random.default_rng(seed)
  smooth = lambda: np.kron(rng.uniform(size=(b, hw // 8, hw // 8, 3)), np.ones((1, 8, 8, 1)))
  return {"content": jnp.asarray(smooth(), jnp.float32), "style": jnp.asarray(smooth(), jnp.float32)}


def new_state(hp=HP, seed=0):
  mesh = sharding.data_mesh()
  _, init = loop.abstract_train_state(lambda r: st.init_trainable(hp, r), st.make_optimizer(hp),
                                          jax.random.PRNGKey(seed), mesh)
  return init(jax.random.PRNGKey(seed))


@pytest.fixture(scope="module")
def frozen():
  return encoder_weights.frozen_encoder("random", TINY, seed=0)[0]


def test_learning_rate_is_the_published_inverse_time_decay():
  lr = st.learning_rate(st.hparams_from_config(sanet_configs.get_config()))
  assert float(lr(0)) == pytest.approx(1e-4)
  assert float(lr(20_000)) == pytest.approx(1e-4 / (1 + 5e-5 * 20_000))


def test_train_step_trains_decoder_and_transform_only_and_loss_drops(frozen):
  state = new_state()
  assert set(state.params) == {"decoder", "transform"}
  adam = state.opt_state[0]
  assert set(adam.mu) == set(adam.nu) == {"decoder", "transform"}   # no encoder moments
  encoder_before = jax.tree.map(np.asarray, frozen)
  batch = fixed_batch()
  state, m = st.train_step(state, frozen, batch, hp=HP)
  assert int(state.step) == 1
  for k in ("loss", "loss/content", "loss/style", "loss/identity_pixel", "loss/identity_feature",
            "norm/grads", "norm/params", "norm/updates", "lr"):
    assert np.isfinite(float(m[k])), k
  w = HP.loss          # the authors' λ (runlocal keeps default's: test_configs)
  expected = (w.content * m["loss/content"] + w.style * m["loss/style"]
              + w.identity_pixel * m["loss/identity_pixel"] + w.identity_feature * m["loss/identity_feature"])
  np.testing.assert_allclose(float(m["loss"]), float(expected), rtol=1e-5)
  losses = [float(m["loss"])]
  for _ in range(29):
    state, m = st.train_step(state, frozen, batch, hp=HP)
    losses.append(float(m["loss"]))
  assert losses[-1] < 0.5 * losses[0], losses
  jax.tree.map(np.testing.assert_array_equal, encoder_before, jax.tree.map(np.asarray, frozen))


def test_bfloat16_compute_keeps_float32_params(frozen):
  hp = hparams(batch_size=2, dtype="bfloat16")
  assert hp.model == dataclasses.replace(TINY, dtype="bfloat16")
  state = new_state(hp)
  state, m = st.train_step(state, frozen, fixed_batch(), hp=hp)
  assert np.isfinite(float(m["loss"])) and float(m["norm/updates"]) > 0
  assert {x.dtype for x in jax.tree.leaves(state.params)} == {jnp.dtype(jnp.float32)}


def test_normalised_vgg_divides_each_block_by_its_mean_activation(frozen):
  means = {"relu1_1": 2.0, "relu2_1": 5.0, "relu3_1": 0.5, "relu4_1": 30.0, "relu5_1": 7.0}
  scaled = encoder_weights.normalised_vgg(frozen["encoder"], TINY.encoder_blocks, means)
  encoder = model_lib.build(TINY).encoder
  x = jnp.asarray(fixed_batch()["content"])
  raw, new = encoder.apply(frozen["encoder"], x), encoder.apply(scaled, x)
  for k, s in means.items():
    # float32 rounding grows with the layer's values (tens at relu4_1): a fixed atol fails near zero.
    want = np.asarray(raw[k]) / s
    np.testing.assert_allclose(np.asarray(new[k]), want, rtol=1e-4, atol=1e-5 * max(1.0, np.abs(want).max()))
  for b in range(1, 5):
    np.testing.assert_array_equal(new[f"pool{b}_indices"], raw[f"pool{b}_indices"])


def test_an_encoder_of_other_shapes_is_refused_before_compiling(frozen):
  assert encoder_weights.fitting(frozen["encoder"], TINY, "imagenet") is frozen["encoder"]
  vgg19_shaped = model_lib.param_shapes(model_lib.MODEL_CONFIGS["default"])["encoder"]
  with pytest.raises(ValueError, match="config.encoder='imagenet' is the ImageNet VGG-19.*encoder='random'"):
    encoder_weights.fitting(vgg19_shaped, TINY, "imagenet")


def test_sample_grid_rows(frozen):
  batch = fixed_batch()
  grid = st.sample_grid(new_state().params, frozen, np.asarray(batch["content"]),
                        np.asarray(batch["style"]), HP)
  assert grid.dtype == np.uint8 and grid.shape == (2 * 32 + 2, 5 * 32 + 4 * 2, 3)


def run_loop_from_checkpoint(workdir, frozen, batches, num_steps, stop_at=None, save_every=100):
  """run_loop over host batches; sends itself SIGTERM while fetching batch ``stop_at``."""
  mesh = sharding.data_mesh()
  abstract, init = loop.abstract_train_state(lambda r: st.init_trainable(HP, r),
                                                 st.make_optimizer(HP), jax.random.PRNGKey(0), mesh)
  ckpt = checkpointing.Checkpointer(workdir / "checkpoints", save_every=save_every, keep=2)
  state = ckpt.restore(abstract) or init(jax.random.PRNGKey(0))

  def get_args(step):
    if step == stop_at:
      os.kill(os.getpid(), signal.SIGTERM)
    return frozen, batches[step]

  writer = reporting.MetricWriter(workdir)
  try:
    with distributed.StopFlag() as stop:
      state = loop.run_loop(state, st.train_step, get_args,
                                loop.LoopConfig(num_steps=num_steps, global_batch=2, log_every=2),
                                static={"hp": HP}, checkpointer=ckpt, writer=writer, stop=stop)
  finally:
    ckpt.close()
    writer.close()
  return state


def test_sigterm_saves_and_resume_matches_an_uninterrupted_run(tmp_path, frozen):
  batches = [fixed_batch(seed=i) for i in range(6)]
  straight = run_loop_from_checkpoint(tmp_path / "straight", frozen, batches, 6)
  stopped = run_loop_from_checkpoint(tmp_path / "resumed", frozen, batches, 6, stop_at=2)
  assert int(stopped.step) == 3          # the step fetched when SIGTERM came still runs, then a save
  assert (tmp_path / "resumed" / "checkpoints" / "3").is_dir()
  resumed = run_loop_from_checkpoint(tmp_path / "resumed", frozen, batches, 6)
  assert int(resumed.step) == 6
  for a, b in zip(jax.tree.leaves(straight), jax.tree.leaves(resumed)):
    np.testing.assert_allclose(np.asarray(a), np.asarray(b), atol=1e-6, rtol=0)
  lines = [json.loads(l) for l in (tmp_path / "resumed" / "metrics.jsonl").read_text().splitlines()]
  assert any("time/compile_s" in l for l in lines) and any("time/img_per_s" in l for l in lines)


def test_the_loop_runs_at_most_one_step_ahead_of_the_device(tmp_path, frozen, monkeypatch):
  """A stop must land within two steps, whatever ``log_every`` is: the host may not queue more."""
  reported, lead = [], []
  real_add = reporting.Reporter.add
  monkeypatch.setattr(reporting.Reporter, "add",
                      lambda self, step, m: (reported.append(m), real_add(self, step, m)))

  @functools.partial(jax.jit, static_argnames="hp", donate_argnums=0)
  def step_fn(state, frozen, batch, *, hp):   # a device slower than the host, as a CPU at full size is
    state, metrics = st.train_step(state, frozen, batch, hp=hp)
    x = jnp.full((384, 384), metrics["loss"] * 1e-9)
    for _ in range(40):
      x = jnp.tanh(x @ x)
    return state, {**metrics, "slow": x[0, 0]}

  def get_args(step):   # steps dispatched and not finished, as step ``step`` is about to be dispatched
    lead.append(sum(not m["slow"].is_ready() for m in reported))
    return frozen, fixed_batch()

  mesh = sharding.data_mesh()
  _, init = loop.abstract_train_state(lambda r: st.init_trainable(HP, r), st.make_optimizer(HP),
                                      jax.random.PRNGKey(0), mesh)
  writer = reporting.MetricWriter(tmp_path)
  try:
    loop.run_loop(init(jax.random.PRNGKey(0)), step_fn, get_args,
                  loop.LoopConfig(num_steps=12, global_batch=2, log_every=100), static={"hp": HP},
                  checkpointer=None, writer=writer)
  finally:
    writer.close()
  assert len(lead) == 12 and max(lead) <= 1, lead


def test_nan_stops_training_and_names_the_step(tmp_path, frozen):
  batches = [fixed_batch(seed=i) for i in range(6)]
  batches[3] = {"content": batches[3]["content"].at[0, 0, 0, 0].set(jnp.nan),
                "style": batches[3]["style"]}
  with pytest.raises(reporting.NonFiniteError, match=r"at step 4\b"):
    run_loop_from_checkpoint(tmp_path, frozen, batches, 6, save_every=2)
  ckpt = checkpointing.Checkpointer(tmp_path / "checkpoints", save_every=2, keep=2)
  assert ckpt.latest_step() == 2          # the NaN state (step 4) was never saved
  ckpt.close()


def runlocal_config(tmp_path, **overrides):
  config = sanet_configs.get_config("runlocal")
  config.data_dir = str(tmp_path / "data")
  config.update(dict(num_steps=4, checkpoint_every=2, log_every=2, sample_every=100, export_every=100,
                     resize=36))
  config.update(overrides)
  return config


def test_train_and_evaluate_resume_is_exact(tiny_folders, tmp_path):
  straight = st.train_and_evaluate(runlocal_config(tiny_folders), str(tmp_path / "straight"))
  half = st.train_and_evaluate(runlocal_config(tiny_folders, num_steps=2), str(tmp_path / "resumed"))
  assert int(half.step) == 2
  resumed = st.train_and_evaluate(runlocal_config(tiny_folders), str(tmp_path / "resumed"))
  assert int(resumed.step) == 4
  for a, b in zip(jax.tree.leaves(straight.params), jax.tree.leaves(resumed.params)):
    np.testing.assert_allclose(np.asarray(a), np.asarray(b), atol=1e-6, rtol=0)
  # Exported inference weights (with the random encoder, which is not the ImageNet one) and samples.
  params, manifest = weights_lib.load(tmp_path / "straight" / "weights")
  assert set(params) == {"decoder", "transform", "encoder"} and manifest["encoder"] == "file"
  assert manifest["meta"]["sanet"]["steps"] == 4 and "loss" in manifest["meta"]["sanet"]["metrics"]
  np.testing.assert_allclose(params["decoder"]["params"]["conv1_1"]["kernel"],
                             straight.params["decoder"]["params"]["conv1_1"]["kernel"], atol=1e-6)
  assert list((tmp_path / "straight" / "samples").glob("samples_*.png"))
  assert list((tmp_path / "straight" / "tensorboard").glob("events.out.tfevents.*"))


def test_folder_source_resumes_from_the_grain_iterator_state_in_the_checkpoint(tiny_folders, tmp_path):
  """Host (not resident) folder streams: the resumed run must continue each iterator where it was."""
  config = lambda **kw: runlocal_config(tiny_folders, resident=False, export_every=100, **kw)
  straight = st.train_and_evaluate(config(), str(tmp_path / "straight"))
  st.train_and_evaluate(config(num_steps=2), str(tmp_path / "resumed"))
  for stream in ("content", "style"):     # saved beside the state, one JSON per process
    assert (tmp_path / "resumed" / "checkpoints" / "2" / stream / "process_0-of-1.json").is_file()
  resumed = st.train_and_evaluate(config(), str(tmp_path / "resumed"))
  # Restarted without the iterators' positions, the streams would start over from their first batch.
  ckpt = checkpointing.Checkpointer(tmp_path / "restart" / "checkpoints", save_every=2, keep=2)
  ckpt.close()
  shutil.copytree(tmp_path / "resumed" / "checkpoints" / "2", tmp_path / "restart" / "checkpoints" / "2")
  for stream in ("content", "style"):
    shutil.rmtree(tmp_path / "restart" / "checkpoints" / "2" / stream)
  restarted = st.train_and_evaluate(config(), str(tmp_path / "restart"))
  assert int(straight.step) == int(resumed.step) == int(restarted.step) == 4
  for a, b in zip(jax.tree.leaves(straight.params), jax.tree.leaves(resumed.params)):
    np.testing.assert_allclose(np.asarray(a), np.asarray(b), atol=1e-6, rtol=0)
  assert any(not np.allclose(np.asarray(a), np.asarray(b), atol=1e-6, rtol=0)
             for a, b in zip(jax.tree.leaves(straight.params), jax.tree.leaves(restarted.params)))


DATA_PARALLEL = textwrap.dedent("""
    import json
    import jax, jax.numpy as jnp, numpy as np
    jax.config.update("jax_disable_most_optimizations", True)
    from jaxstyle.training import encoder_weights
    from jaxstyle.training import sanet_training as st
    from jaxstyle.program import sharding
    from jaxstyle.training import loop
    from train.configs import sanet as sanet_configs
    assert jax.device_count() == 4
    hp = st.hparams_from_config(sanet_configs.get_config("runlocal"))   # batch 4, 32² crops
    assert (hp.batch_size, hp.crop) == (4, 32)
    frozen = encoder_weights.frozen_encoder("random", hp.model, 0)[0]
    rng = np.random.default_rng(0)
    host = {k: rng.uniform(size=(4, 32, 32, 3)).astype(np.float32) for k in ("content", "style")}
    resident = {k: {"pixels": rng.integers(0, 256, (5, 40, 60, 3), dtype=np.uint8),
                    "widths": np.array([60, 50, 40, 60, 44], np.int32),
                    "transposed": np.array([0, 1, 0, 1, 0], bool)} for k in ("content", "style")}
    out = {}
    for name, devices in (("one", jax.devices()[:1]), ("four", jax.devices())):
      mesh = sharding.data_mesh(devices)
      with jax.set_mesh(mesh):
        _, init = loop.abstract_train_state(lambda r: st.init_trainable(hp, r), st.make_optimizer(hp),
                                                jax.random.PRNGKey(0), mesh)
        fz = sharding.place_replicated(mesh, frozen)
        for kind, batch in (("host", sharding.place_batch(mesh, host)),
                            ("resident", sharding.place_replicated(mesh, resident))):
          state, m = st.train_step(init(jax.random.PRNGKey(0)), fz, batch, hp=hp)
          if name == "four" and kind == "host":
            hlo = st.train_step.lower(init(jax.random.PRNGKey(0)), fz, batch, hp=hp).compile().as_text()
            # Batch-major stacking keeps every image on its device: only the gradients are reduced.
            for op in ("all-gather", "all-to-all", "collective-permute", "reduce-scatter"):
              assert f" {op}(" not in hlo and f" {op}-start(" not in hlo, op
            assert " all-reduce(" in hlo or " all-reduce-start(" in hlo
          params = {jax.tree_util.keystr(p): np.asarray(x)
                    for p, x in jax.tree_util.tree_leaves_with_path(state.params)}
          out[name + "_" + kind] = (float(m["loss"]), float(m["norm/grads"]), params)
    for kind in ("host", "resident"):
      (l1, g1, p1), (l4, g4, p4) = out["one_" + kind], out["four_" + kind]
      np.testing.assert_allclose(l1, l4, rtol=1e-5)
      np.testing.assert_allclose(g1, g4, rtol=1e-5)
      for k in p1:
        # The key conv's bias adds q·b to a whole softmax row: its gradient is 0 up to rounding, and
        # Adam's first step turns rounding noise into ±lr. Every other parameter must agree.
        tol = 2.01 * hp.lr if k.endswith("['g']['bias']") else 1e-6
        np.testing.assert_allclose(p1[k], p4[k], rtol=1e-5, atol=tol, err_msg=kind + " " + k)
    print("OK", json.dumps({k: v[0] for k, v in out.items()}))
""")


def test_data_parallel_step_equals_single_device_step():
  env = {**os.environ, "XLA_FLAGS": "--xla_force_host_platform_device_count=4", "JAX_PLATFORMS": "cpu"}
  result = subprocess.run([sys.executable, "-c", DATA_PARALLEL], env=env, capture_output=True, text=True,
                          timeout=600, cwd=Path(__file__).resolve().parents[1])
  assert result.returncode == 0 and "OK" in result.stdout, result.stderr[-3000:]


def test_configs():
  default = sanet_configs.get_config()
  paper = sanet_configs.get_config("seed_paper")
  assert (default.loss.identity_pixel, default.loss.identity_feature) == (50.0, 1.0)
  assert (paper.loss.identity_pixel, paper.loss.identity_feature) == (1.0, 50.0)
  # The λ the step uses: the authors' correction by default, the seed paper's in seed_paper.
  assert st.hparams_from_config(default).loss == st.LossWeights(
      content=1.0, style=3.0, identity_pixel=50.0, identity_feature=1.0)
  assert st.hparams_from_config(paper).loss == st.LossWeights(
      content=1.0, style=3.0, identity_pixel=1.0, identity_feature=50.0)
  assert sanet_configs.get_config("runlocal").loss == default.loss
  assert {k: v for k, v in paper.to_dict().items() if k != "loss"} == \
      {k: v for k, v in default.to_dict().items() if k != "loss"}
  assert (default.batch_size, default.resize, default.crop, default.num_steps) == (5, 512, 256, 160_000)
  assert default.content.name == "coco/2017" and default.style.folders == ("wikiart",)
  shared = sanet_configs.get_config("shared_data,crop=128,resident=false,style.folders=styles+photos")
  assert shared.crop == 128 and shared.resident is False and shared.style.folders == ("styles", "photos")
  assert shared.content.folders == ("photos", "portraits")
  with pytest.raises(ValueError, match="unknown variant"):
    sanet_configs.get_config("nope")


def declared_defaults(cls, computed=("model",)) -> list[str]:
  """Dotted names of the fields of the dataclass ``cls`` and of its nested ones (but ``computed``) that
  declare a default."""
  hints = typing.get_type_hints(cls)
  names = []
  for f in dataclasses.fields(cls):
    if f.default is not dataclasses.MISSING or f.default_factory is not dataclasses.MISSING:
      names.append(f.name)
    if dataclasses.is_dataclass(hints[f.name]) and f.name not in computed:
      names += [f"{f.name}.{n}" for n in declared_defaults(hints[f.name])]
  return names


def field_values(hp, computed=()) -> dict[str, typing.Any]:
  """{dotted name: value} of a dataclass, nested dataclasses (but the ``computed`` fields) flattened."""
  out = {}
  for f in dataclasses.fields(hp):
    v = getattr(hp, f.name)
    if dataclasses.is_dataclass(v) and f.name not in computed:
      out.update({f"{f.name}.{k}": x for k, x in field_values(v).items()})
    else:
      out[f.name] = v
  return out


def perturbed(v):
  """Another value of ``v``'s type."""
  if isinstance(v, bool):
    return not v
  if isinstance(v, tuple):
    return tuple(perturbed(x) for x in v)
  return v + 1 if isinstance(v, int) else v * 2 + 1


def assert_every_field_is_read_by_name(get_config, hparams_from_config, computed):
  """Changing any config field an Hparams field of that (dotted) name mirrors changes that field alone."""
  base = field_values(hparams_from_config(get_config()), computed)
  assert set(computed) <= set(base)
  for name, value in base.items():
    if name in computed:
      continue
    config = get_config()
    *parents, leaf = name.split(".")
    config_common.field(config, parents)[leaf] = perturbed(value)
    assert field_values(hparams_from_config(config), computed) == {**base, name: perturbed(value)}, name


def assert_a_missing_or_unknown_field_is_refused_by_name(get_config, hparams_from_config, top, nested):
  for name in (top, nested):
    config = get_config()
    *parents, leaf = name.split(".")
    del config_common.field(config, parents)[leaf]
    with pytest.raises(ValueError, match=f"the config has no field '{name}'"):
      hparams_from_config(config)
  # A group an Hparams field mirrors holds nothing else (a misspelt variant key); the top level holds
  # the entry point's fields too, which Hparams does not read.
  config = get_config()
  group = nested.split(".")[0]
  config[group].typo = 1.0
  config.entry_point_only = 1.0
  with pytest.raises(ValueError, match=f"config.{group} has fields .* does not know: typo"):
    hparams_from_config(config)


def test_every_hparams_field_is_the_config_field_of_its_name():
  get = lambda: sanet_configs.get_config("runlocal")
  assert_every_field_is_read_by_name(get, st.hparams_from_config, computed=("model", "feature_scales"))
  assert_a_missing_or_unknown_field_is_refused_by_name(get, st.hparams_from_config, "lr_decay",
                                                       "loss.style")
  # The computed ones: the model in the config's dtype and formulation; divisors for the ImageNet VGG.
  assert hparams(dtype="bfloat16", formulation="auto").model == dataclasses.replace(
      model_lib.MODEL_CONFIGS["tiny"], dtype="bfloat16", formulation="auto")
  assert HP.feature_scales == ()
  assert hparams(encoder="imagenet").feature_scales == st.feature_scales("imagenet") != ()


def test_hparams_declare_no_default_of_their_own():
  """The configs hold every default: a second copy in Hparams could drift from them unnoticed."""
  assert declared_defaults(st.Hparams) == []


def test_continuing_from_exported_weights_keeps_params_and_step_and_counts_samples(tiny_folders, tmp_path):
  first = st.train_and_evaluate(runlocal_config(tiny_folders), str(tmp_path / "first"))
  exported = str(tmp_path / "first" / "weights")
  # Nothing left to run: the state is the exported one (float32 in runlocal), at its recorded step.
  loaded = st.train_and_evaluate(runlocal_config(tiny_folders, init_weights=exported), str(tmp_path / "zero"))
  assert int(loaded.step) == 4
  for a, b in zip(jax.tree.leaves(first.params), jax.tree.leaves(loaded.params)):
    np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
  more = st.train_and_evaluate(runlocal_config(tiny_folders, init_weights=exported, num_steps=6),
                               str(tmp_path / "more"))
  assert int(more.step) == 6
  meta = weights_lib.load(tmp_path / "more" / "weights")[1]["meta"]["sanet"]
  assert meta["steps"] == 6 and meta["samples"] == 6 * 4                        # runlocal: batch 4
  assert meta["continued_from"] == {"steps": 4, "samples": 16}
  # A manifest from before samples were recorded (the shipped weights): steps × its batch size.
  manifest = json.loads((tmp_path / "first" / "weights" / "MANIFEST.json").read_text())
  del manifest["meta"]["sanet"]["samples"]
  manifest["meta"]["sanet"]["config"]["batch_size"] = 16
  (tmp_path / "old").mkdir()
  (tmp_path / "old" / "MANIFEST.json").write_text(json.dumps(manifest))
  old = runlocal_config(tiny_folders, init_weights=str(tmp_path / "old"))
  assert st.prior_training(old) == (4, 64)
  assert st.prior_training(runlocal_config(tiny_folders)) == (0, 0)


def test_quality_held_out_images_are_excluded_from_shared_data(tiny_folders):
  shared = sanet_configs.get_config("shared_data")
  assert "skimage_astronaut" in shared.content.exclude and "titu_starry_night" in shared.style.exclude
  assert len(shared.content.exclude) == len(sanet_configs.QUALITY_HELD_OUT_PORTRAITS)
  assert len(shared.style.exclude) == len(sanet_configs.QUALITY_HELD_OUT_PAINTINGS)
  # By stem, so images re-encoded by scripts/pack_images.py (same stem, .jpg) stay excluded.
  files = ["/d/portraits/skimage_astronaut.jpg", "/p/portraits/facerec_obama.jpg", "/p/photos/dog.png"]
  assert train_inputs.without_stems(files, ("skimage_astronaut", "facerec_obama")) == ["/p/photos/dog.png"]
  config = runlocal_config(tiny_folders)
  config.content.exclude = ("0", "1")        # photos/{0,1}.png and portraits/{0,1}.png
  ds = train_inputs.image_source(config.content, config, stream="content", mesh=sharding.data_mesh())
  assert len(ds) == 5 + 3 - 4
