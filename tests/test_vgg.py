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


def argmax_pool(x):
  """The previous implementation (stacked window views, max + argmax): the reference."""
  h, w = x.shape[1], x.shape[2]
  if h % 2 or w % 2:
    x = jnp.pad(x, ((0, 0), (0, h % 2), (0, w % 2), (0, 0)), constant_values=-jnp.inf)
  views = jnp.stack([x[:, 0::2, 0::2], x[:, 0::2, 1::2], x[:, 1::2, 0::2], x[:, 1::2, 1::2]], axis=-1)
  return views.max(axis=-1), views.argmax(axis=-1).astype(jnp.int8)


def onehot_unpool(x, indices, out_hw):
  """The previous unpool (one-hot × value, window axes moved into place): the reference."""
  b, h, w, c = x.shape
  onehot = jax.nn.one_hot(indices, 4, dtype=x.dtype) * x[..., None]
  up = onehot.reshape(b, h, w, c, 2, 2).transpose(0, 1, 4, 2, 5, 3).reshape(b, 2 * h, 2 * w, c)
  return up[:, :out_hw[0], :out_hw[1]]


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


@pytest.mark.parametrize("dtype", [jnp.float32, jnp.bfloat16])
@pytest.mark.parametrize("hw", [(8, 8), (7, 5), (1, 1), (2, 3), (13, 16)])
@pytest.mark.parametrize("values", ["normal", "ties"])
def test_pool_and_unpool_identical_to_the_argmax_implementation(hw, values, dtype):
  """Bit for bit: pooled values, indices (first max on ties, as argmax) and the unpooled map."""
  rng = np.random.default_rng(hw[0] * 31 + hw[1])
  if values == "ties":          # ReLU-like: many zeros, and few distinct values, so windows tie often
    x = np.maximum(rng.integers(-2, 3, size=(3, *hw, 5)), 0).astype(np.float32)
  else:
    x = rng.normal(size=(3, *hw, 5)).astype(np.float32)
  x = jnp.asarray(x, dtype)
  pooled, idx = vgg.max_pool_with_indices(x)
  want_pooled, want_idx = argmax_pool(x)
  assert pooled.dtype == x.dtype and idx.dtype == jnp.int8
  np.testing.assert_array_equal(np.asarray(pooled, np.float32), np.asarray(want_pooled, np.float32))
  np.testing.assert_array_equal(idx, want_idx)
  np.testing.assert_array_equal(vgg.max_pool(x), want_pooled)
  # Unpool arbitrary values (negative ones too) with the indices, into the odd/even output size.
  y = jnp.asarray(rng.normal(size=pooled.shape), dtype)
  up = vgg.max_unpool(y, idx, hw)
  assert up.shape == x.shape and up.dtype == dtype
  np.testing.assert_array_equal(np.asarray(up, np.float32),
                                np.asarray(onehot_unpool(y, want_idx, hw), np.float32))


def test_max_pool_gradient_reaches_each_window_max():
  """The pool is differentiable (SANet's losses backpropagate through the encoder): without ties the
  gradient of the pooled sum is 1 at each window's max and 0 elsewhere, which is where unpooling puts it."""
  x = jnp.asarray(np.random.default_rng(3).normal(size=(2, 7, 6, 3)).astype(np.float32))
  grad = jax.grad(lambda x: vgg.max_pool(x).sum())(x)
  pooled, idx = vgg.max_pool_with_indices(x)
  np.testing.assert_array_equal(grad, vgg.max_unpool(jnp.ones_like(pooled), idx, x.shape[1:3]))


def test_tie_breaking_is_first_in_raster_order():
  x = jnp.asarray([[1., 1.], [1., 1.]])[None, :, :, None]
  assert int(vgg.max_pool_with_indices(x)[1][0, 0, 0, 0]) == 0
  x = jnp.asarray([[0., 2.], [2., 2.]])[None, :, :, None]
  assert int(vgg.max_pool_with_indices(x)[1][0, 0, 0, 0]) == 1
  x = jnp.asarray([[0., 1.], [3., 3.]])[None, :, :, None]
  assert int(vgg.max_pool_with_indices(x)[1][0, 0, 0, 0]) == 2


def compiled_hlo(fn, *args) -> str:
  return jax.jit(fn).lower(*args).compile().as_text()


def test_plain_program_computes_no_pool_indices():
  """The indices exist only where SegNet reads them: no int8 work and no argmax reduce without it."""
  from jaxstyle import portrait  # pylint: disable=g-import-not-at-top
  cfg = portrait.MODEL_CONFIGS["tiny"]
  params = jax.eval_shape(lambda: portrait.init_params(cfg, jax.random.key(0)))
  image = jax.ShapeDtypeStruct((1, 32, 32, 3), jnp.float32)
  controls = jax.ShapeDtypeStruct((2, 3), jnp.float32)
  run = lambda mode: lambda p, c, s, k: portrait.stylize(p, c, s, k, cfg=cfg, mode=mode)
  plain = compiled_hlo(run("plain"), params, image, image, controls)
  with_segnet = compiled_hlo(run("portrait"), params, image, image, controls)
  assert "s8[" in with_segnet                  # the check below would see index work if there were any
  assert "s8[" not in plain


def test_unknown_depth_raises():
  m = vgg.VGG(vgg.TINY_BLOCKS, depth="relu9_9")
  with pytest.raises(ValueError, match="relu9_9"):
    m.init(jax.random.key(0), jnp.zeros((1, 32, 32, 3)))
