import jax
import jax.numpy as jnp
import numpy as np

from jaxstyle.nets import decoder
from jaxstyle.nets.model import TINY


def test_param_count_pinned_and_resolution_free():
  d = decoder.Decoder()
  for hw in ((4, 4), (6, 9)):
    shapes = jax.eval_shape(d.init, jax.random.key(0), jnp.zeros((1, *hw, 512)))
    assert sum(int(np.prod(a.shape)) for a in jax.tree.leaves(shapes)) == 3_505_219


def test_output_is_8x_and_cropped_to_request():
  d = decoder.Decoder(TINY.decoder_layers)
  x = jax.random.normal(jax.random.key(0), (2, 5, 7, 16))
  v = d.init(jax.random.key(1), x)
  assert d.apply(v, x).shape == (2, 40, 56, 3)
  assert d.apply(v, x, (37, 51)).shape == (2, 37, 51, 3)

