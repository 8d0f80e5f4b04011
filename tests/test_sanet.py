import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxstyle.nets import sanet


def np_mvn(x):
  mean = x.mean(axis=(1, 2), keepdims=True)
  var = x.var(axis=(1, 2), keepdims=True, ddof=1)
  return (x - mean) / np.sqrt(var + 1e-5)


def np_softmax(x):
  e = np.exp(x - x.max(-1, keepdims=True))
  return e / e.sum(-1, keepdims=True)


@pytest.mark.parametrize("n, chunk", [(50, 4096), (50, 16), (64, 16)])
def test_attention_equals_naive_numpy(n, chunk):
  rng = np.random.default_rng(0)
  q, k, v = (rng.normal(size=(2, m, 8)).astype(np.float32) for m in (n, 37, 37))
  want = np_softmax(q @ k.transpose(0, 2, 1)) @ v
  got = sanet.attention(jnp.asarray(q), jnp.asarray(k), jnp.asarray(v), chunk=chunk)
  np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)


def test_sanet_module_equals_numpy_reference():
  rng = np.random.default_rng(1)
  c = rng.normal(size=(1, 5, 7, 8)).astype(np.float32)
  s = rng.normal(size=(1, 6, 3, 8)).astype(np.float32)
  m = sanet.SANet(channels=8, chunk=16)
  variables = m.init(jax.random.key(0), c, s)
  p = jax.tree.map(np.asarray, variables["params"])
  conv = lambda x, name: x @ p[name]["kernel"][0, 0] + p[name]["bias"]
  f = conv(np_mvn(c), "f").reshape(1, -1, 8)
  g = conv(np_mvn(s), "g").reshape(1, -1, 8)
  h = conv(s, "h").reshape(1, -1, 8)
  o = (np_softmax(f @ g.transpose(0, 2, 1)) @ h).reshape(c.shape)
  want = conv(o, "out_conv") + c
  np.testing.assert_allclose(m.apply(variables, c, s), want, rtol=1e-4, atol=1e-4)


def test_transform_odd_sizes_and_shared_attention_regions():
  key = jax.random.key(0)
  c4, s4 = jnp.ones((2, 5, 7, 8)), jnp.ones((2, 3, 3, 8))
  c5, s5 = jnp.ones((2, 3, 4, 8)), jnp.ones((2, 2, 2, 8))
  c4 = c4 * jax.random.normal(key, c4.shape)
  c5 = c5 * jax.random.normal(jax.random.key(1), c5.shape)
  t = sanet.Transform(channels=8, chunk=16)
  v = t.init(key, c4, s4, c5, s5, jnp.ones((1, 2)))
  out = t.apply(v, c4, s4, c5, s5, jnp.asarray([[1.0, 1.0], [1.0, 0.0]]))
  assert out.shape == (2, 2, 5, 7, 8)
  only4 = t.apply(v, c4, s4, c5, s5, jnp.asarray([[1.0, 0.0]]))
  np.testing.assert_allclose(out[1], only4[0], rtol=1e-5, atol=1e-5)


def test_transform_param_count_pinned():
  x = jnp.zeros((1, 4, 4, 512))
  shapes = jax.eval_shape(sanet.Transform().init, jax.random.key(0), x, x, x[:, :2, :2], x[:, :2, :2],
                          jnp.ones((1, 2)))
  # 2 SANets × 4 1×1 convs (512² + 512) + 3×3 merge conv (9·512² + 512).
  assert sum(int(np.prod(a.shape)) for a in jax.tree.leaves(shapes)) == 4_461_056


def test_sanet_with_padded_inputs_equals_unpadded_inside_the_valid_part():
  """Padding (here large junk values) never acts as a key nor enters SANet's statistics."""
  rng = np.random.default_rng(3)
  c = rng.normal(size=(2, 5, 7, 8)).astype(np.float32)
  s = rng.normal(size=(2, 6, 3, 8)).astype(np.float32)
  junk = lambda x, hw: np.pad(x, ((0, 0), (0, hw[0] - x.shape[1]), (0, hw[1] - x.shape[2]), (0, 0)),
                              constant_values=30.0)
  valid = lambda x, hw: np.broadcast_to((np.arange(hw[0])[:, None] < x.shape[1])
                                        & (np.arange(hw[1])[None] < x.shape[2]), (x.shape[0], *hw))
  m = sanet.SANet(channels=8, chunk=16)
  variables = m.init(jax.random.key(0), c, s)
  want = m.apply(variables, c, s)
  got = m.apply(variables, junk(c, (8, 8)), junk(s, (8, 8)), valid(c, (8, 8)), valid(s, (8, 8)))
  np.testing.assert_allclose(got[:, :5, :7], want, rtol=1e-5, atol=1e-5)
  unmasked = m.apply(variables, junk(c, (8, 8)), junk(s, (8, 8)))
  assert float(jnp.abs(unmasked[:, :5, :7] - want).max()) > 1e-2     # without masks it would differ
