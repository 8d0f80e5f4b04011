"""The model registry: configs build, shape-only init matches real init, weights folders load checked."""
import dataclasses
import json

import jax
import numpy as np
import pytest

from jaxstyle import model, weights


def n_params(tree):
  return sum(int(np.prod(x.shape)) for x in jax.tree.leaves(tree))


@pytest.fixture(scope="module")
def tiny_params():
  return jax.device_get(model.init_params(model.TINY, jax.random.key(0)))


def test_param_shapes_are_those_of_init_params(tiny_params):
  shapes = model.param_shapes(model.TINY)
  assert all(isinstance(s, jax.ShapeDtypeStruct) for s in jax.tree.leaves(shapes))
  assert jax.tree.map(lambda s: (s.shape, s.dtype), shapes) == \
      jax.tree.map(lambda a: (a.shape, a.dtype), tiny_params)


@pytest.mark.parametrize("name, counts", [
    # VGG-19 to relu5_1; 2 SANets + merge conv; the SANet decoder; SegNet "shared_skip".
    ("default", {"encoder": 12_944_960, "transform": 4_461_056, "decoder": 3_505_219,
                 "segnet": 5_824_769}),
    ("default_noskip", {"segnet": 4_683_713}),
    ("sanet_published", {"encoder": 12_944_960 + 12}),   # + the leading 1×1 conv0
])
def test_pinned_param_counts(name, counts):
  shapes = model.param_shapes(model.MODEL_CONFIGS[name])
  assert sorted(shapes) == sorted(model.NETWORKS)
  assert {net: n_params(shapes[net]) for net in counts} == counts


def test_every_config_is_hashable_data():
  """Configs are static arguments of jitted functions: equal configs must hash equal."""
  for name, cfg in model.MODEL_CONFIGS.items():
    assert hash(cfg) == hash(dataclasses.replace(cfg)), name


def test_unchunked_lifts_only_the_attention_limits():
  cfg = model.unchunked(model.MODEL_CONFIGS["default"])
  assert cfg.attention_chunk >= 2**62 and cfg.attention_max_scores >= 2**62
  assert dataclasses.replace(cfg, attention_chunk=4096, attention_max_scores=model.MAX_SCORES) == \
      model.MODEL_CONFIGS["default"]


def test_load_reads_what_was_saved(tmp_path, tiny_params):
  weights.save(tmp_path / "w", tiny_params, "tiny", include_encoder=True, dtype="float32")
  params, cfg = model.load(tmp_path / "w", ("decoder",), dtype="bfloat16")
  assert sorted(params) == ["decoder", "encoder"] and cfg.dtype == "bfloat16"
  np.testing.assert_array_equal(params["decoder"]["params"]["conv1_1"]["kernel"],
                                tiny_params["decoder"]["params"]["conv1_1"]["kernel"])


def test_load_says_what_is_missing_and_how_to_get_it(tmp_path, tiny_params):
  with pytest.raises(weights.WeightsError, match="no weights in .*python -m train.sanet"):
    model.load(tmp_path)
  no_segnet = {k: v for k, v in tiny_params.items() if k != "segnet"}
  weights.save(tmp_path / "w", no_segnet, "tiny", include_encoder=True)
  with pytest.raises(weights.WeightsError, match="lacks segnet.safetensors: portrait mode needs"):
    model.load(tmp_path / "w")
  model.load(tmp_path / "w", ("transform", "decoder"))   # plain mode needs no SegNet


def test_load_refuses_unknown_configs_and_wrong_shapes(tmp_path, tiny_params):
  weights.save(tmp_path / "w", tiny_params, "tiny", include_encoder=True)
  with pytest.raises(weights.WeightsError, match="unknown model config 'default_v9'"):
    model.load(tmp_path / "w", model_config="default_v9")
  with pytest.raises(weights.WeightsError, match="encoder does not fit model config 'default'"):
    model.load(tmp_path / "w", model_config="default")
  manifest = json.loads((tmp_path / "w" / weights.MANIFEST).read_text())
  assert manifest["model_config"] == "tiny"
