"""benchmarks/controls_search.py: the decision rules on hand-made numbers, and the pairs it may use."""
import numpy as np
import pytest

from benchmarks import controls_search as cs
from benchmarks import quality as q

PLAIN = {"background_structure": 0.5, "person_style_gain": 0.6}


def test_search_pairs_are_disjoint_from_the_held_out_ones():
  assert not set(q.SEARCH_PORTRAITS) & set(q.PORTRAITS)
  assert not set(q.SEARCH_PAINTINGS) & set(q.PAINTINGS)
  # Versions of a held-out painting under another name would leak it too.
  held = {"starry", "wave", "composition", "hat"}
  assert not any(word in name.lower() for name in q.SEARCH_PAINTINGS for word in held)


def test_checks_and_margin():
  m = {"background_structure": 0.46, "faces_lost": 0, "nme": 0.02, "person_style_gain": 0.36}
  assert cs.checks(m, PLAIN, reference_nme=0.025) == {"background_kept": True, "face_kept": True,
                                                      "person_styled": True}
  # NME 20% under the reference, person gain 20% over half of plain's: the margin is the smaller.
  assert cs.margin(m, PLAIN, 0.025) == pytest.approx(0.2)
  assert cs.margin({**m, "person_style_gain": 0.33}, PLAIN, 0.025) == pytest.approx(0.1)
  lost = cs.checks({**m, "faces_lost": 1}, PLAIN, 0.025)
  assert not lost["face_kept"] and lost["person_styled"]
  assert not cs.checks({**m, "background_structure": 0.44}, PLAIN, 0.025)["background_kept"]
  assert cs.margin({**m, "nme": 0.03}, PLAIN, 0.025) < 0


def test_a_change_within_the_spread_of_the_pairs_is_not_significant():
  rng = np.random.default_rng(0)
  old = rng.uniform(0.3, 0.8, 36)
  assert cs.significantly_higher(old + 0.02, old)                    # every pair gains
  noisy = 0.004 + 0.05 * (-1.0) ** np.arange(36)          # +0.004 on average, ±0.05 pair to pair
  assert not cs.significantly_higher(old + noisy, old)
  assert not cs.significantly_higher(old, old)
  assert not cs.significantly_higher(old - 0.02, old)
  assert cs.significantly_higher([np.nan, 0.5, 0.6, 0.7], [0.1, 0.4, 0.49, 0.61])   # NaN pairs dropped


def test_around_stays_in_range_and_keeps_the_centre():
  assert cs.around(1.0, (-0.25, 0.25), 0.0, 4.0) == [0.75, 1.0, 1.25]
  assert cs.around(0.0, (-0.25, 0.25), 0.0, 4.0) == [0.0, 0.25]
  assert cs.around(0.98, (0.05,), 0.0, 1.0) == [0.98, 1.0]


def test_candidate_controls_map_onto_the_program():
  c = cs.Candidate((1.0, 2.0, 1.0), (1.5, 0.5, 0.5), 0.01)
  assert c.controls().as_array().tolist() == [[1.0, 2.0, 1.0], [1.5, 0.5, 0.5]]


def test_sheet_rows_stack_and_old_defaults_differ_from_today():
  from PIL import Image
  from benchmarks import controls_sheet
  from jaxstyle.program import portrait
  rows = [Image.new("RGB", (30, 10), (0, 0, 0)), Image.new("RGB", (20, 12), (0, 0, 0))]
  sheet = controls_sheet.stack(rows, gap=4)
  assert sheet.size == (30, 26)
  assert sheet.getpixel((25, 15)) == (255, 255, 255)   # the narrower row leaves white to its right
  assert sheet.getpixel((5, 12)) == (255, 255, 255)    # the gap
  old = portrait.Controls(*map(float, controls_sheet.OLD.split(",")))
  assert old != portrait.Controls()
  assert set(controls_sheet.PUBLIC_DOMAIN_PAINTINGS) <= set(q.PAINTINGS)
