"""The person IoU metric, and that it measures the very mask the portrait program blends with."""
import dataclasses

import jax
import numpy as np
import pytest

from jaxstyle.nets import model
from jaxstyle.program import portrait
from jaxstyle.program import sharding
from jaxstyle.training import segnet_eval

from test_data import make_shared_data  # pylint: disable=g-bad-import-order

TINY = dataclasses.replace(model.MODEL_CONFIGS["tiny"], formulation="xla")


def square(hw, top, left, size):
  m = np.zeros(hw, np.float32)
  m[top:top + size[0], left:left + size[1]] = 1.0
  return m


def test_person_iou_on_hand_made_masks():
  a = square((10, 10), 2, 2, (4, 4))
  b = square((10, 10), 2, 4, (4, 4))           # overlaps a by 4×2
  assert segnet_eval.person_iou(a, b) == pytest.approx(8 / 24)
  assert segnet_eval.person_iou(a, a) == 1.0
  assert segnet_eval.person_iou(np.zeros((4, 4)), np.zeros((4, 4))) == 1.0    # nobody, found nobody
  assert segnet_eval.person_iou(np.zeros((4, 4)), square((4, 4), 0, 0, (2, 2))) == 0.0
  # Only the person class counts: an all-person mask scores the person's share of the picture.
  half = square((10, 10), 0, 0, (5, 10))
  assert segnet_eval.person_iou(np.ones((10, 10)), half) == pytest.approx(0.5)
  # Soft masks are thresholded at 0.5 (0.5 itself is background).
  assert segnet_eval.person_iou(0.5 * a, a) == 0.0
  assert segnet_eval.person_iou(0.51 * a, a) == 1.0


def test_summary():
  r = segnet_eval.summarise([0.9, 0.5, 1.0])
  assert r["person_iou"] == pytest.approx(0.8) and r["person_iou_min"] == 0.5
  assert r["per_image"] == [0.9, 0.5, 1.0]


def test_held_out_portraits_are_read_as_the_cli_reads_them(tmp_path):
  root = make_shared_data(tmp_path)
  held = segnet_eval.load_held_out(root, size=40)
  assert len(held) == 1 and held[0].name.startswith("npr_")     # round(0.2 × 6 hand-drawn)
  h = held[0]
  assert max(h.image.shape[:2]) == 40 and h.mask.shape == h.image.shape[:2] == h.teacher.shape
  teacher = segnet_eval.evaluate_teacher(held)
  assert teacher["per_image"] == [round(segnet_eval.person_iou(h.teacher, h.mask), 4)]


def test_metric_sees_the_person_mask_the_program_returns():
  params = model.init_params(TINY, jax.random.PRNGKey(0))
  rng = np.random.default_rng(0)
  content = rng.uniform(size=(1, 40, 32, 3)).astype(np.float32)
  style = rng.uniform(size=(1, 32, 32, 3)).astype(np.float32)
  program = portrait.make_program(TINY, sharding.data_mesh(), feather=0.05)
  out = program(params, portrait.Batch(content, style), portrait.Controls().as_array())
  pred = segnet_eval.predict(params, TINY, [content[0]], feather=0.05)[0]
  np.testing.assert_allclose(pred, np.asarray(out["mask"])[0], atol=1e-6)
  held = [segnet_eval.HeldOut("x", content[0], (pred > 0.5).astype(np.float32), None)]
  summary, preds = segnet_eval.evaluate(params, TINY, held, feather=0.05)
  assert summary["person_iou"] == 1.0 and np.array_equal(preds[0], pred)
