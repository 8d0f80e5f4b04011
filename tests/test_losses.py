import jax
import jax.numpy as jnp
import numpy as np

from jaxstyle.nets import losses
from jaxstyle.nets.vgg import STYLE_LAYERS


def feats(seed, shift=0.0):
  rng = np.random.default_rng(seed)
  return {k: jnp.asarray(rng.normal(size=(2, 4, 5, 3)) + shift, jnp.float32) for k in STYLE_LAYERS}


def test_content_loss_ignores_mean_and_scale():
  a = feats(0)
  b = {k: 3.0 * v + 2.0 for k, v in a.items()}
  assert float(losses.content_loss(a, b)) < 1e-6
  assert float(losses.content_loss(a, feats(1))) > 0.1


def test_style_loss_matches_numpy():
  a, b = feats(0), feats(1, shift=0.5)
  want = 0.0
  for k in STYLE_LAYERS:
    x, y = np.asarray(a[k]), np.asarray(b[k])
    mx, my = x.mean((1, 2)), y.mean((1, 2))
    sx = np.sqrt(x.var((1, 2), ddof=1) + 1e-5)
    sy = np.sqrt(y.var((1, 2), ddof=1) + 1e-5)
    want += ((mx - my) ** 2).mean() + ((sx - sy) ** 2).mean()
  np.testing.assert_allclose(losses.style_loss(a, b), want, rtol=1e-5)


def test_identity_losses_zero_on_perfect_reconstruction():
  img = jnp.linspace(0, 1, 2 * 8 * 8 * 3).reshape(2, 8, 8, 3)
  assert float(losses.identity_pixel_loss(img, img, img, img)) == 0.0
  f = feats(3)
  assert float(losses.identity_feature_loss(f, f, f, f)) == 0.0
  assert float(losses.identity_pixel_loss(img, img * 0.5, img, img)) > 0


def test_segmentation_loss_bce_matches_numpy_and_iou():
  rng = np.random.default_rng(0)
  logits = rng.normal(size=(2, 6, 6)).astype(np.float32)
  target = (rng.uniform(size=(2, 6, 6)) > 0.5).astype(np.float32)
  p = 1 / (1 + np.exp(-logits))
  bce = -(target * np.log(p) + (1 - target) * np.log(1 - p)).mean()
  np.testing.assert_allclose(losses.segmentation_loss(logits, target, dice_weight=0.0), bce, rtol=1e-5)
  iou = losses.iou(jnp.asarray(target), jnp.asarray(target))
  np.testing.assert_array_equal(iou, [1.0, 1.0])
  half = np.zeros((1, 2, 2)); half[0, 0] = 1
  np.testing.assert_allclose(losses.iou(jnp.ones((1, 2, 2)), jnp.asarray(half)), [0.5])
