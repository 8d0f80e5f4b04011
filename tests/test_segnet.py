import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxstyle.nets import ops
from jaxstyle.nets import segnet
from jaxstyle.nets import vgg
from jaxstyle.nets.model import TINY

TINY_BLOCKS = TINY.encoder_blocks
TINY_SKIP = TINY.segnet
TINY_PLAIN = segnet.SegNetConfig(TINY_SKIP.start, TINY_SKIP.stages)


def features(blocks, depth, hw, key=0):
  enc = vgg.VGG(blocks, depth=depth)
  x = jax.random.uniform(jax.random.key(key), (1, *hw, 3))
  return enc.apply(enc.init(jax.random.key(1), x), x)


@pytest.mark.parametrize("name, blocks, depth, expected", [
    ("shared", vgg.VGG19_BLOCKS, "relu5_1", 4_683_713),
    # + LayerNorm (2C) and a C_skip×C_x projection per skip: 263 680 + 66 304 + 16 768 + 4 288;
    # + the context's three LayerNorms (3 × 1024) and its 1536 → 512 projection (786 944).
    ("shared_skip", vgg.VGG19_BLOCKS, "relu5_1", 4_683_713 + 351_040 + 790_016),
])
def test_param_count_same_at_two_resolutions(name, blocks, depth, expected):
  counts = []
  for hw in ((32, 32), (48, 80)):
    feats = jax.eval_shape(lambda: features(blocks, depth, hw))
    dec = segnet.SegNetDecoder(segnet.SEGNET_CONFIGS[name])
    shapes = jax.eval_shape(lambda f: dec.init(jax.random.key(0), f, hw), feats)
    counts.append(sum(int(np.prod(a.shape)) for a in jax.tree.leaves(shapes["params"])))
  assert counts[0] == counts[1] == expected


@pytest.mark.parametrize("hw", [(32, 32), (37, 45)])
def test_logits_at_input_resolution(hw):
  feats = features(TINY_BLOCKS, "relu5_1", hw)
  dec = segnet.SegNetDecoder(TINY_PLAIN)
  v = dec.init(jax.random.key(0), feats, hw)
  assert dec.apply(v, feats, hw).shape == (1, *hw)


def test_decoder_unpools_with_encoder_indices():
  """Moving the encoder's max positions moves where the decoder's first stage puts values."""
  hw = (32, 32)
  feats = features(TINY_BLOCKS, "relu5_1", hw)
  dec = segnet.SegNetDecoder(segnet.SegNetConfig("relu5_1", ((4, (1,)),)))
  v = dec.init(jax.random.key(0), feats, hw)
  v = jax.tree.map(jnp.ones_like, v)
  shifted = dict(feats, pool4_indices=(feats["pool4_indices"] + 1) % 4)
  assert not np.allclose(dec.apply(v, feats, hw), dec.apply(v, shifted, hw))


def np_conv3x3(x, kernel, bias):
  """Zero-padded 3×3 convolution of ``[H, W, Cin]`` with an HWIO kernel."""
  h, w, _ = x.shape
  p = np.pad(x, ((1, 1), (1, 1), (0, 0)))
  return sum(p[i:i + h, j:j + w] @ kernel[i, j] for i in range(3) for j in range(3)) + bias


def np_unpool(x, indices, out_hw):
  h, w, c = x.shape
  up = np.zeros((2 * h, 2 * w, c), x.dtype)
  for k in range(4):
    dy, dx = divmod(k, 2)
    up[dy::2, dx::2] = np.where(indices == k, x, 0)
  return up[:out_hw[0], :out_hw[1]]


def np_layer_norm(x, p):
  return (x - x.mean(-1, keepdims=True)) / np.sqrt(x.var(-1, keepdims=True) + 1e-6) * p["scale"] + p["bias"]


def np_upsample_bilinear(x, hw):
  """Half-pixel-centre bilinear resize of ``[h, w, C]`` up to ``hw``, edges clamped."""
  def axis(n_in, n_out):
    src = (np.arange(n_out) + 0.5) * n_in / n_out - 0.5
    i0 = np.floor(src).astype(int)
    f = src - i0
    return np.clip(i0, 0, n_in - 1), np.clip(i0 + 1, 0, n_in - 1), f
  r0, r1, fr = axis(x.shape[0], hw[0])
  c0, c1, fc = axis(x.shape[1], hw[1])
  x = x[r0] * (1 - fr)[:, None, None] + x[r1] * fr[:, None, None]
  return x[:, c0] * (1 - fc)[None, :, None] + x[:, c1] * fc[None, :, None]


def np_grid_means(x, g):
  h, w, _ = x.shape
  cells = lambda n: [((i * n) // g, max(((i + 1) * n) // g, (i * n) // g + 1)) for i in range(g)]
  return np.array([[x[r0:r1, c0:c1].mean((0, 1)) for c0, c1 in cells(w)] for r0, r1 in cells(h)])


def np_segnet(params, cfg, feats, hw):
  """A NumPy SegNet decoder: pyramid context, then per stage unpool, add LayerNorm(skip)·W + b, and
  3×3 convs with ReLU."""
  x = feats[cfg.start][0]
  if cfg.context:
    p = params["context"]
    ctx = np.concatenate([np_upsample_bilinear(np_layer_norm(np_grid_means(x, g), p[f"norm{g}"]), x.shape[:2])
                          for g in cfg.context], -1)
    x = x + ctx @ p["proj"]["kernel"] + p["proj"]["bias"]
  skips = dict(cfg.skips)
  for s, (level, widths) in enumerate(cfg.stages):
    x = np_unpool(x, feats[f"pool{level}_indices"][0], ops.pooled_hw(hw, level))
    if level in skips:
      p = params[f"skip{level}"]
      x = x + np_layer_norm(feats[skips[level]][0], p["norm"]) @ p["proj"]["kernel"] + p["proj"]["bias"]
    for i, _ in enumerate(widths):
      conv = params[f"unpool{level}_conv{i + 1}"]
      x = np_conv3x3(x, conv["kernel"], conv["bias"])
      if not (s == len(cfg.stages) - 1 and i == len(widths) - 1):
        x = np.maximum(x, 0)
  return x[..., 0]


@pytest.mark.parametrize("hw", [(32, 32), (37, 45), (80, 48)])
def test_skip_decoder_matches_numpy(hw):
  cfg = TINY_SKIP
  feats = features(TINY_BLOCKS, "relu5_1", hw)
  dec = segnet.SegNetDecoder(cfg, formulation="xla")
  v = dec.init(jax.random.key(0), feats, hw)
  # Random everything (the projections start at zero, which would hide a wrong skip).
  leaves, tree = jax.tree.flatten(v)
  keys = jax.random.split(jax.random.key(7), len(leaves))
  v = jax.tree.unflatten(tree, [0.3 * jax.random.normal(k, l.shape) for k, l in zip(keys, leaves)])
  expected = np_segnet(jax.tree.map(np.asarray, v["params"]), cfg,
                       {k: np.asarray(a, np.float64) for k, a in feats.items()}, hw)
  np.testing.assert_allclose(dec.apply(v, feats, hw)[0], expected, rtol=1e-4, atol=1e-4)


def test_zero_skips_compute_the_decoder_without_them():
  """Fresh skip fusions and context add nothing, so weights trained without them carry over unchanged."""
  hw = (32, 32)
  feats = features(TINY_BLOCKS, "relu5_1", hw)
  plain = segnet.SegNetDecoder(TINY_PLAIN)
  skip = segnet.SegNetDecoder(TINY_SKIP)
  v_plain = plain.init(jax.random.key(0), feats, hw)
  v_skip = skip.init(jax.random.key(1), feats, hw)
  merged = {"params": {**v_skip["params"], **v_plain["params"]}}
  np.testing.assert_allclose(skip.apply(merged, feats, hw), plain.apply(v_plain, feats, hw), atol=1e-6)
