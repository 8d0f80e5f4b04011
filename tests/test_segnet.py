import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxstyle import segnet, vgg


def features(blocks, depth, hw, key=0):
  enc = vgg.VGG(blocks, depth=depth)
  x = jax.random.uniform(jax.random.key(key), (1, *hw, 3))
  return enc.apply(enc.init(jax.random.key(1), x), x)


@pytest.mark.parametrize("name, blocks, depth, expected", [
    ("shared", vgg.VGG19_BLOCKS, "relu5_1", 4_683_713),
    ("vgg16_bn", vgg.VGG16_BLOCKS, "pool5", None),
])
def test_param_count_same_at_two_resolutions(name, blocks, depth, expected):
  counts = []
  for hw in ((32, 32), (48, 80)):
    feats = jax.eval_shape(lambda: features(blocks, depth, hw))
    dec = segnet.SegNetDecoder(segnet.SEGNET_CONFIGS[name])
    shapes = jax.eval_shape(lambda f: dec.init(jax.random.key(0), f, hw), feats)
    counts.append(sum(int(np.prod(a.shape)) for a in jax.tree.leaves(shapes["params"])))
  assert counts[0] == counts[1]
  if expected is not None:
    assert counts[0] == expected


@pytest.mark.parametrize("hw", [(32, 32), (37, 45)])
def test_logits_at_input_resolution(hw):
  feats = features(vgg.TINY_BLOCKS, "relu5_1", hw)
  dec = segnet.SegNetDecoder(segnet.SEGNET_CONFIGS["tiny"])
  v = dec.init(jax.random.key(0), feats, hw)
  assert dec.apply(v, feats, hw).shape == (1, *hw)


def test_decoder_unpools_with_encoder_indices():
  """Moving the encoder's max positions moves where the decoder's first stage puts values."""
  hw = (32, 32)
  feats = features(vgg.TINY_BLOCKS, "relu5_1", hw)
  dec = segnet.SegNetDecoder(segnet.SegNetConfig("shared", "relu5_1", ((4, (1,)),), False))
  v = dec.init(jax.random.key(0), feats, hw)
  v = jax.tree.map(jnp.ones_like, v)
  shifted = dict(feats, pool4_indices=(feats["pool4_indices"] + 1) % 4)
  assert not np.allclose(dec.apply(v, feats, hw), dec.apply(v, shifted, hw))


def test_pooled_hw_ceil():
  assert segnet.pooled_hw((37, 45), 1) == (37, 45)
  assert segnet.pooled_hw((37, 45), 4) == (5, 6)
