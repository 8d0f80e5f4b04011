"""The shared array operations (``jaxstyle/nets/ops.py``) against NumPy and their defining properties."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from benchmarks.maxpool_ab import argmax_pool, onehot_unpool   # the argmax pool ops replaced
from jaxstyle.nets import ops


def test_resize_nearest_exact_double_is_nearest_repeat():
  x = jnp.arange(12.0).reshape(1, 2, 3, 2)
  np.testing.assert_array_equal(ops.resize_nearest(x, (4, 6)), jnp.repeat(jnp.repeat(x, 2, 1), 2, 2))


def test_masked_mean_std_equals_unpadded():
  rng = np.random.default_rng(2)
  x = rng.normal(size=(2, 6, 9, 4)).astype(np.float32)
  padded = np.pad(x, ((0, 0), (0, 3), (0, 2), (0, 0)), constant_values=50.0)
  mask = np.zeros(padded.shape[:3], bool)
  mask[:, :6, :9] = True
  for got, want in zip(ops.mean_std(jnp.asarray(padded), jnp.asarray(mask)), ops.mean_std(jnp.asarray(x))):
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)


def test_upsample2x_is_nearest():
  x = jnp.arange(4.0).reshape(1, 2, 2, 1)
  np.testing.assert_array_equal(ops.upsample2x(x)[0, :, :, 0],
                                [[0, 0, 1, 1], [0, 0, 1, 1], [2, 2, 3, 3], [2, 2, 3, 3]])


def test_pooled_hw_ceil():
  assert ops.pooled_hw((37, 45), 1) == (37, 45)
  assert ops.pooled_hw((37, 45), 4) == (5, 6)


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
  pooled, idx = ops.max_pool_with_indices(jnp.asarray(x))
  want_vals, want_idx = naive_pool(x)
  np.testing.assert_array_equal(pooled, want_vals)
  np.testing.assert_array_equal(idx, want_idx)
  up = np.asarray(ops.max_unpool(pooled, idx, hw))
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
  pooled, idx = ops.max_pool_with_indices(x)
  want_pooled, want_idx = argmax_pool(x)
  assert pooled.dtype == x.dtype and idx.dtype == jnp.int8
  np.testing.assert_array_equal(np.asarray(pooled, np.float32), np.asarray(want_pooled, np.float32))
  np.testing.assert_array_equal(idx, want_idx)
  np.testing.assert_array_equal(ops.max_pool(x), want_pooled)
  # Unpool arbitrary values (negative ones too) with the indices, into the odd/even output size.
  y = jnp.asarray(rng.normal(size=pooled.shape), dtype)
  up = ops.max_unpool(y, idx, hw)
  assert up.shape == x.shape and up.dtype == dtype
  np.testing.assert_array_equal(np.asarray(up, np.float32),
                                np.asarray(onehot_unpool(y, want_idx, hw), np.float32))


def test_max_pool_gradient_reaches_each_window_max():
  """The pool is differentiable (SANet's losses backpropagate through the encoder): without ties the
  gradient of the pooled sum is 1 at each window's max and 0 elsewhere, which is where unpooling puts it."""
  x = jnp.asarray(np.random.default_rng(3).normal(size=(2, 7, 6, 3)).astype(np.float32))
  grad = jax.grad(lambda x: ops.max_pool(x).sum())(x)
  pooled, idx = ops.max_pool_with_indices(x)
  np.testing.assert_array_equal(grad, ops.max_unpool(jnp.ones_like(pooled), idx, x.shape[1:3]))


def test_gaussian_blur_keeps_constants_and_mass():
  x = jnp.full((1, 20, 30), 0.7)
  np.testing.assert_allclose(ops.gaussian_blur(x, 2.0), x, rtol=1e-6)
  spot = jnp.zeros((1, 21, 21)).at[0, 10, 10].set(1.0)
  blurred = ops.gaussian_blur(spot, 1.5)
  np.testing.assert_allclose(float(blurred.sum()), 1.0, rtol=1e-5)
  assert float(blurred[0, 10, 10]) < 0.2


def test_preserve_color_keeps_content_chroma():
  rng = np.random.default_rng(0)
  out, content = (jnp.asarray(rng.uniform(size=(1, 4, 4, 3)), jnp.float32) for _ in range(2))
  mixed = ops.preserve_color(out, content)
  lum = lambda x: x @ jnp.asarray([0.299, 0.587, 0.114])
  np.testing.assert_allclose(lum(mixed), lum(out), atol=1e-5)
  grey = jnp.full((1, 4, 4, 3), 0.5)
  np.testing.assert_allclose(ops.preserve_color(out, grey), jnp.repeat(lum(out)[..., None], 3, -1),
                             atol=1e-5)


def test_gaussian_blur_of_a_padded_item_equals_its_own_size():
  rng = np.random.default_rng(1)
  small = rng.random((1, 13, 17)).astype(np.float32)
  padded = np.pad(small, ((0, 0), (0, 11), (0, 7)), constant_values=1.0)
  want = ops.gaussian_blur(jnp.asarray(small), 1.7)
  got = ops.gaussian_blur(jnp.asarray(padded), jnp.asarray([1.7]), jnp.asarray([[13, 17]]), max_sigma=3.0)
  np.testing.assert_allclose(got[:, :13, :17], want, rtol=1e-5, atol=1e-6)


def test_tie_breaking_is_first_in_raster_order():
  x = jnp.asarray([[1., 1.], [1., 1.]])[None, :, :, None]
  assert int(ops.max_pool_with_indices(x)[1][0, 0, 0, 0]) == 0
  x = jnp.asarray([[0., 2.], [2., 2.]])[None, :, :, None]
  assert int(ops.max_pool_with_indices(x)[1][0, 0, 0, 0]) == 1
  x = jnp.asarray([[0., 1.], [3., 3.]])[None, :, :, None]
  assert int(ops.max_pool_with_indices(x)[1][0, 0, 0, 0]) == 2


def test_gaussian_blur_equals_a_direct_sum_with_replicated_edges():
  """``blur_matrix``'s band matrices against Σ_k taps[k]·x[clip(i + k − r, 0, valid − 1)] in float64,
  per item with its own σ and valid corner (one of them a single row), padding included."""
  rng = np.random.default_rng(0)
  x = rng.random((3, 17, 23)).astype(np.float32)
  hw, sigma, radius = np.array([[17, 23], [9, 14], [1, 5]]), np.array([1.3, 2.5, 0.7]), 9
  got = ops.gaussian_blur(jnp.asarray(x), jnp.asarray(sigma), jnp.asarray(hw), max_sigma=3.0)
  taps = np.asarray(ops.gaussian_taps(jnp.asarray(sigma), radius), np.float64)
  for b, (h, w) in enumerate(hw):
    rows = sum(t * x[b][np.clip(np.arange(17) + k - radius, 0, h - 1)] for k, t in enumerate(taps[b]))
    want = sum(t * rows[:, np.clip(np.arange(23) + k - radius, 0, w - 1)] for k, t in enumerate(taps[b]))
    np.testing.assert_allclose(got[b], want, atol=1e-6)


def test_longest_side_hw_rounds_as_the_file_resize():
  """SegNet's smaller copies have the shape a file resized to that side has (``image_io``'s rounding)."""
  from jaxstyle.io import image_io
  shapes = [(h, w) for h in (1, 7, 100, 333, 640, 1024) for w in (1, 9, 127, 480, 1000)]
  for hw in shapes:
    for side in (1, 16, 192, 256, 511):
      assert ops.longest_side_hw(hw, side) == image_io.longest_side_hw(hw, side), (hw, side)
  assert ops.longest_side_hw((300, 200), 150) == (150, 100)
