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
  assert all(any(word in name.lower() for word in q.HELD_OUT_PAINTING_WORDS) for name in q.PAINTINGS)
  assert not any(word in name.lower() for name in q.SEARCH_PAINTINGS for word in q.HELD_OUT_PAINTING_WORDS)


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
  old = q.parse_controls(controls_sheet.OLD)
  assert old != portrait.Controls()
  assert set(controls_sheet.PUBLIC_DOMAIN_PAINTINGS) <= set(q.PAINTINGS)


def test_farthest_first_spreads_from_the_start():
  vectors = {n: np.array(v, np.float64) for n, v in
             {"a": (0, 0), "b": (1, 0), "near_a": (0.1, 0), "far": (10, 0), "mid": (5, 5)}.items()}
  # From a and b: far (9 from b) first, then mid (6.4 from b, 7.1 from a and far); near_a (0.1) last.
  assert cs.farthest_first(vectors, ["a", "b"], 2) == ["far", "mid"]
  assert cs.farthest_first(vectors, ["a", "b"], 9) == ["far", "mid", "near_a"]   # runs out of names
  assert cs.farthest_first(vectors, ["a"], 0) == []


def test_training_side_paintings_leave_out_the_held_out_ones_and_their_versions():
  names = ["SOURCES.tsv", "sanet_udnie.jpg", "sanet_Starry.jpg", "titu_starry_night_crop.png",
           "sanet_wave.jpg", *q.PAINTINGS, "nnst_S5.jpg", "adain_sketch.png"]
  assert cs.training_side_paintings(names) == ["adain_sketch.png", "nnst_S5.jpg", "sanet_udnie.jpg"]
  assert set(q.SEARCH_PAINTINGS) <= set(cs.training_side_paintings(q.SEARCH_PAINTINGS))
  assert q.SEARCH_PAINTINGS[:len(q.HAND_PICKED_PAINTINGS)] == q.HAND_PICKED_PAINTINGS


def test_faces_first_gives_up_person_style_never_a_face():
  row = lambda kept, face, gain: {"background_kept": kept, "face_kept": face, "person_style_gain": gain}
  rows = [row(True, False, 0.7), row(True, True, 0.3), row(False, True, 0.6), row(True, True, 0.33)]
  assert cs.faces_first(rows) == 3
  assert cs.faces_first(rows[:1]) is None
  assert cs.faces_first([]) is None
