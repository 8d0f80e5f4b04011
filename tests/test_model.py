"""The model registry: configs build, shape-only init matches real init, counts are pinned."""
import dataclasses

import jax
import numpy as np
import pytest

from jaxstyle.nets import model


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
