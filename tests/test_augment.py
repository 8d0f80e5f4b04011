"""Composites keep image and mask aligned; every augmentation is a pure function of its key."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxstyle.training import augment

S = 32


def square_person(h=24, w=40, colour=(1.0, 0.0, 0.0)):
  """A stored person (RGB + mask) whose 'person' is a red square; the rest of the photo is green."""
  x = np.zeros((h, w, 4), np.float32)
  x[..., 1] = 1.0
  x[6:18, 10:22, :3] = colour
  x[6:18, 10:22, 3] = 1.0
  return jnp.asarray(x)


def test_paste_keeps_image_and_mask_aligned():
  person, background = square_person(), jnp.full((S, S, 3), 0.5)
  for seed in range(8):
    image, mask = augment.paste(person, jnp.int32(40), jnp.bool_(False), background,
                                jax.random.PRNGKey(seed), (0.5, 2.0))
    image, mask = np.asarray(image), np.asarray(mask)
    inside, outside = mask > 0.9999, mask < 1e-4
    np.testing.assert_allclose(image[inside], np.broadcast_to([1.0, 0.0, 0.0], image[inside].shape),
                               atol=1e-3)    # the person's own pixels where the mask is full
    np.testing.assert_allclose(image[outside], 0.5, atol=1e-3)   # the background elsewhere, no green
    # At soft edges the person layer mixes red and green (both without blue): blue is the background's
    # share alone, so the blend used exactly the mask that is returned.
    np.testing.assert_allclose(image[..., 2], (1 - mask) * 0.5, atol=1e-5)
  assert inside.any() and outside.any()


def test_paste_scales_the_person_within_the_range():
  person, background = square_person(), jnp.zeros((S, S, 3))
  areas = []
  for seed in range(16):
    _, mask = augment.paste(person, jnp.int32(40), jnp.bool_(False), background,
                            jax.random.PRNGKey(seed), (0.5, 2.0))
    areas.append(float(mask.sum()))
  # The square is 1/2 of the stored height: 12 px at scale 1 on a 24 px crop would be (S/2)²·scale².
  assert min(areas) >= (0.5 * S / 2) ** 2 * 0.8 - 1e-3 or min(areas) == 0
  assert max(areas) <= (2.0 * S / 2) ** 2 * 1.05
  assert len(set(np.round(areas))) > 4    # the scale varies


def test_paste_undoes_the_stored_transposition():
  """A portrait stored landscape (transposed) comes back upright: the same person transposed twice."""
  person, background = square_person(24, 40), jnp.zeros((S, S, 3))
  key = jax.random.PRNGKey(3)
  _, mask = augment.paste(person, jnp.int32(40), jnp.bool_(False), background, key, (1.0, 1.0))
  _, mask_t = augment.paste(person, jnp.int32(40), jnp.bool_(True), background, key, (1.0, 1.0))
  np.testing.assert_allclose(mask_t, mask.T, atol=1e-6)


def test_small_person_stands_on_the_bottom_edge():
  person = jnp.ones((24, 24, 4))
  _, mask = augment.paste(person, jnp.int32(24), jnp.bool_(False), jnp.zeros((S, S, 3)),
                          jax.random.PRNGKey(0), (0.5, 0.5))
  rows = np.flatnonzero(np.asarray(mask).max(axis=1) > 0.5)
  assert rows.max() == S - 1 and rows.min() >= S // 2 - 1


def test_photometric_is_deterministic_and_identity_when_off():
  image = jax.random.uniform(jax.random.PRNGKey(0), (S, S, 3))
  cfg = augment.AugmentConfig(blur_prob=1.0, jpeg_prob=1.0)
  a = augment.photometric(image, jax.random.PRNGKey(1), cfg)
  b = augment.photometric(image, jax.random.PRNGKey(1), cfg)
  c = augment.photometric(image, jax.random.PRNGKey(2), cfg)
  np.testing.assert_array_equal(a, b)
  assert not np.allclose(a, c) and not np.allclose(a, image)
  assert float(a.min()) >= 0.0 and float(a.max()) <= 1.0
  np.testing.assert_allclose(augment.photometric(image, jax.random.PRNGKey(1), augment.NO_AUGMENT),
                             image, atol=1e-6)


def test_blur_and_jpeg():
  image = jax.random.uniform(jax.random.PRNGKey(0), (S, S, 3))
  np.testing.assert_allclose(augment.blur(image, jnp.float32(0.0)), image, atol=1e-6)
  flat = jnp.full((S, S, 3), 0.3)
  np.testing.assert_allclose(augment.blur(flat, jnp.float32(2.0)), flat, atol=1e-6)
  assert float(jnp.abs(augment.blur(image, jnp.float32(2.0)) - image).mean()) > 0.05
  # Quality 100 quantises by 1/255 per coefficient: nearly lossless; quality 10 is not.
  assert float(jnp.abs(augment.jpeg_blocks(image, jnp.float32(100.0)) - image).max()) < 0.02
  assert float(jnp.abs(augment.jpeg_blocks(image, jnp.float32(10.0)) - image).mean()) > 0.05
  np.testing.assert_allclose(augment._dct_matrix() @ augment._dct_matrix().T, np.eye(8), atol=1e-6)


@pytest.mark.parametrize("paste_prob, negative_prob", [(1.0, 0.0), (0.0, 1.0), (0.0, 0.0)])
def test_mix_sources_picks_each_kind(paste_prob, negative_prob):
  b = 3
  own = jnp.concatenate([jnp.full((b, S, S, 3), 0.2), jnp.ones((b, S, S, 1))], -1)
  people = {"pixels": jnp.stack([square_person()] * 2), "widths": jnp.array([40, 40]),
            "transposed": jnp.array([False, False]), "index": jnp.array([0, 1, 0])}
  backgrounds = jnp.full((b, S, S, 3), 0.7)
  cfg = augment.AugmentConfig(paste_prob=paste_prob, negative_prob=negative_prob, brightness=0.0,
                              contrast=0.0, saturation=0.0, white_balance=0.0, blur_prob=0.0, noise=0.0,
                              jpeg_prob=0.0)
  images, masks = augment.mix_sources(own, people, backgrounds, jax.random.PRNGKey(0), cfg)
  assert images.shape == (b, S, S, 3) and masks.shape == (b, S, S)
  if negative_prob:
    np.testing.assert_allclose(images, 0.7, atol=1e-6)
    assert float(masks.max()) == 0.0
  elif paste_prob:
    assert 0.0 < float(masks.mean()) < 1.0
  else:
    np.testing.assert_allclose(images, 0.2, atol=1e-6)
    assert float(masks.min()) == 1.0
