"""Every conv formulation equals the textbook one (pad, then a VALID ``lax.conv``) and numpy."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxstyle.nets import conv as conv_lib
from jaxstyle.nets import ops

RTOL = 1e-5


def numpy_conv(x, kernel, padding):
  """Direct-sum reference: pad with numpy, then Σ over taps of shifted products, float64."""
  p = kernel.shape[0] // 2
  mode = "reflect" if padding == "reflect" else "constant"
  xp = np.pad(x.astype(np.float64), ((0, 0), (p, p), (p, p), (0, 0)), mode=mode)
  h, w = x.shape[1:3]
  out = 0
  for i in range(kernel.shape[0]):
    for j in range(kernel.shape[1]):
      out = out + np.einsum("bhwc,cd->bhwd", xp[:, i:i + h, j:j + w], kernel[i, j].astype(np.float64))
  return out


def rel_err(a, b):
  a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
  return np.abs(a - b).max() / np.abs(b).max()


# (h, w, c, d): odd and even sizes, 2×2 (the smallest reflect allows), few and many channels.
SHAPES = [(7, 9, 3, 5), (8, 5, 16, 2), (6, 11, 16, 16), (5, 5, 9, 40), (2, 2, 8, 8), (2, 3, 8, 8),
          (3, 2, 8, 8), (1, 4, 8, 8)]


@pytest.mark.parametrize("formulation", ["xla", "same"])
@pytest.mark.parametrize("padding", ["reflect", "zero"])
@pytest.mark.parametrize("k", [1, 3, 5])
@pytest.mark.parametrize("shape", SHAPES)
def test_formulations_equal_numpy(formulation, padding, k, shape):
  h, w, c, d = shape
  p = k // 2
  if padding == "reflect" and p and min(h, w) <= p:
    pytest.skip("reflection needs more than p rows and columns")
  rng = np.random.default_rng(h * 100 + w * 10 + k)
  x = rng.standard_normal((2, h, w, c)).astype(np.float32)
  kernel = rng.standard_normal((k, k, c, d)).astype(np.float32)
  got = jax.jit(conv_lib.conv, static_argnums=(2, 3))(x, kernel, padding, formulation)
  assert got.shape == (2, h, w, d)
  assert rel_err(got, numpy_conv(x, kernel, padding)) <= RTOL


@pytest.mark.parametrize("shape", [(2, 2), (3, 5), (6, 4)])
def test_reflect_border_correction_is_the_difference_of_paddings(shape):
  rng = np.random.default_rng(0)
  x = rng.standard_normal((1, *shape, 4)).astype(np.float32)
  kernel = rng.standard_normal((3, 3, 4, 3)).astype(np.float32)
  diff = numpy_conv(x, kernel, "reflect") - numpy_conv(x, kernel, "zero")
  row_fix, col_fix = conv_lib.reflect_border_correction(jnp.asarray(x), jnp.asarray(kernel))
  want = np.zeros_like(diff)
  want[:, [0, -1]] += np.asarray(row_fix)
  want[:, :, [0, -1]] += np.asarray(col_fix)
  np.testing.assert_allclose(want, diff, rtol=1e-5, atol=1e-5)


def test_conv_module_same_params_and_outputs_for_every_formulation():
  x = jnp.asarray(np.random.default_rng(1).standard_normal((2, 9, 7, 6)), jnp.float32)
  outs, trees = {}, {}
  for formulation in ("xla", "same"):
    m = conv_lib.Conv(5, 3, padding="reflect", formulation=formulation)
    variables = m.init(jax.random.PRNGKey(0), x)
    trees[formulation] = jax.tree.map(lambda v: (v.shape, v.dtype), variables)
    outs[formulation] = m.apply(variables, x)
  assert trees["xla"] == trees["same"]
  assert trees["xla"]["params"]["kernel"] == ((3, 3, 6, 5), jnp.float32)
  for formulation in ("same",):
    assert rel_err(outs[formulation], outs["xla"]) <= RTOL


def test_gradients_agree_between_formulations():
  rng = np.random.default_rng(2)
  x = jnp.asarray(rng.standard_normal((1, 6, 5, 8)), jnp.float32)
  kernel = jnp.asarray(rng.standard_normal((3, 3, 8, 8)), jnp.float32)
  grad = lambda f: jax.grad(lambda x, k: jnp.sum(jnp.sin(conv_lib.conv(x, k, "reflect", f))),
                            argnums=(0, 1))(x, kernel)
  want = grad("xla")
  for formulation in ("same",):
    for g, w in zip(grad(formulation), want):
      assert rel_err(g, w) <= 1e-4


def test_auto_resolves_per_backend_and_bad_names_raise():
  expected = "same" if jax.default_backend() == "cpu" else "xla"
  assert conv_lib.resolve_formulation("auto") == expected
  with pytest.raises(ValueError, match="formulation"):
    conv_lib.resolve_formulation("winograd")
  with pytest.raises(ValueError, match="padding"):
    conv_lib.conv(jnp.zeros((1, 4, 4, 2)), jnp.zeros((3, 3, 2, 2)), "circular", "same")


@pytest.mark.parametrize("formulation", ["xla", "same"])
@pytest.mark.parametrize("padding", ["reflect", "zero"])
@pytest.mark.parametrize("shape", [(3, 5, 6, 4), (4, 4, 3, 7), (1, 2, 8, 8)])
def test_upsample_conv_equals_conv_of_upsample(formulation, padding, shape):
  h, w, c, d = shape
  rng = np.random.default_rng(h * 7 + w)
  x = rng.standard_normal((2, h, w, c)).astype(np.float32)
  kernel = rng.standard_normal((3, 3, c, d)).astype(np.float32)
  up = np.repeat(np.repeat(x, 2, axis=1), 2, axis=2)
  got = jax.jit(conv_lib.upsample_conv, static_argnums=(2, 3))(x, kernel, padding, formulation)
  assert got.shape == (2, 2 * h, 2 * w, d)
  assert rel_err(got, numpy_conv(up, kernel, padding)) <= RTOL


def test_conv_module_upsample_flag():
  x = jnp.asarray(np.random.default_rng(3).standard_normal((1, 5, 3, 4)), jnp.float32)
  m = conv_lib.Conv(6, 3, padding="reflect", formulation="same")
  variables = m.init(jax.random.PRNGKey(0), x)
  want = m.apply(variables, ops.upsample2x(x))
  assert rel_err(m.apply(variables, x, upsample=True), want) <= RTOL
