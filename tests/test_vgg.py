import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxstyle import vgg


def n_params(tree):
  return sum(int(np.prod(x.shape)) for x in jax.tree.leaves(tree))


def abstract_params(module, hw):
  return jax.eval_shape(module.init, jax.random.key(0), jnp.zeros((1, *hw, 3)))


@pytest.mark.parametrize("module, depth, expected", [
    (vgg.VGG19, "relu5_1", 12_944_960),        # conv1_1 .. conv5_1 of VGG-19
    (vgg.VGG16, "pool5", 14_714_688),          # the 13 convs of VGG-16 (Keras/torchvision count)
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
  m = vgg.VGG(vgg.TINY_BLOCKS, depth="relu5_1")
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


def naive_pool(x):
  b, h, w, c = x.shape
  hp, wp = -(-h // 2), -(-w // 2)
  vals = np.zeros((b, hp, wp, c), x.dtype)
  idx = np.zeros((b, hp, wp, c), np.int64)
  for i in range(hp):
    for j in range(wp):
      win = np.full((b, 2, 2, c), -np.inf, x.dtype)
      part = x[:, 2 * i:2 * i + 2, 2 * j:2 * j + 2]
      win[:, :part.shape[1], :part.shape[2]] = part
      flat = win.reshape(b, 4, c)
      vals[:, i, j] = flat.max(1)
      idx[:, i, j] = flat.argmax(1)
  return vals, idx


@pytest.mark.parametrize("hw", [(6, 8), (7, 5)])
def test_max_pool_indices_and_unpool_match_numpy(hw):
  x = np.random.default_rng(0).normal(size=(2, *hw, 3)).astype(np.float32)
  pooled, idx = vgg.max_pool_with_indices(jnp.asarray(x))
  want_vals, want_idx = naive_pool(x)
  np.testing.assert_array_equal(pooled, want_vals)
  np.testing.assert_array_equal(idx, want_idx)
  up = np.asarray(vgg.max_unpool(pooled, idx, hw))
  assert up.shape == x.shape
  # Every max is back at its own position; all other positions are zero.
  keep = up != 0
  np.testing.assert_array_equal(up[keep], x[keep])
  assert keep.sum() == pooled.size


def test_unknown_depth_raises():
  m = vgg.VGG(vgg.TINY_BLOCKS, depth="relu9_9")
  with pytest.raises(ValueError, match="relu9_9"):
    m.init(jax.random.key(0), jnp.zeros((1, 32, 32, 3)))
