import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxstyle.nets import vgg
from jaxstyle.nets.model import TINY


def n_params(tree):
  return sum(int(np.prod(x.shape)) for x in jax.tree.leaves(tree))


def abstract_params(module, hw):
  return jax.eval_shape(module.init, jax.random.key(0), jnp.zeros((1, *hw, 3)))


@pytest.mark.parametrize("module, depth, expected", [
    (vgg.VGG19, "relu5_1", 12_944_960),        # conv1_1 .. conv5_1 of VGG-19
])
def test_pinned_param_counts_same_at_two_resolutions(module, depth, expected):
  m = module(depth=depth)
  assert n_params(abstract_params(m, (64, 64))) == expected
  assert n_params(abstract_params(m, (96, 160))) == expected


def test_normalised_variant_has_leading_1x1_conv():
  p = abstract_params(vgg.VGG19(preprocess="normalised"), (32, 32))["params"]
  assert p["conv0"]["kernel"].shape == (1, 1, 3, 3)
  assert n_params(p) == 12_944_960 + 12


def test_features_shapes_odd_sizes_ceil_mode():
  m = vgg.VGG(TINY.encoder_blocks, depth="relu5_1")
  x = jnp.zeros((2, 37, 51, 3))
  out = m.apply(m.init(jax.random.key(0), x), x)
  assert out["relu1_1"].shape == (2, 37, 51, 4)
  assert out["relu2_1"].shape == (2, 19, 26, 8)
  assert out["relu3_1"].shape == (2, 10, 13, 8)
  assert out["relu4_1"].shape == (2, 5, 7, 16)
  assert out["relu5_1"].shape == (2, 3, 4, 16)
  assert out["pool4_indices"].shape == (2, 3, 4, 16)


def test_caffe_preprocess_is_bgr_255_minus_mean():
  x = jnp.asarray([[[[1.0, 0.5, 0.0]]]])
  np.testing.assert_allclose(vgg.preprocess(x, "caffe")[0, 0, 0],
                             [0 - 103.939, 127.5 - 116.779, 255 - 123.68], rtol=1e-6)


def compiled_hlo(fn, *args) -> str:
  return jax.jit(fn).lower(*args).compile().as_text()


def test_plain_program_computes_no_pool_indices():
  """The indices exist only where SegNet reads them: no int8 work and no argmax reduce without it."""
  from jaxstyle.nets import model
  from jaxstyle.program import portrait  # pylint: disable=g-import-not-at-top
  cfg = model.TINY
  params = model.param_shapes(cfg)
  image = jax.ShapeDtypeStruct((1, 32, 32, 3), jnp.float32)
  controls = jax.ShapeDtypeStruct((2, 3), jnp.float32)
  run = lambda mode: lambda p, c, s, k: portrait.stylize(p, portrait.Batch(c, s), k, cfg=cfg, mode=mode)
  plain = compiled_hlo(run("plain"), params, image, image, controls)
  with_segnet = compiled_hlo(run("portrait"), params, image, image, controls)
  assert "s8[" in with_segnet                  # the check below would see index work if there were any
  assert "s8[" not in plain


def test_unknown_depth_raises():
  m = vgg.VGG(TINY.encoder_blocks, depth="relu9_9")
  with pytest.raises(ValueError, match="relu9_9"):
    m.init(jax.random.key(0), jnp.zeros((1, 32, 32, 3)))
