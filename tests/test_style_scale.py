"""The painting's scale against the content's, per region: the sides styles are read at, the person's own
style in the program (its shapes, its key masks, no extra pass when the scales agree), and restyling.

Tiny random-weight model at 32–64 px.
"""
import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxstyle.app import request
from jaxstyle.app.request import Settings, UsageError
from jaxstyle.nets import model
from jaxstyle.program import buckets
from jaxstyle.program import portrait
from jaxstyle.program import profiling
from jaxstyle.program import sharding

CFG = model.MODEL_CONFIGS["tiny"]
MESH = sharding.data_mesh(jax.devices()[:1])


def test_style_sides_follow_the_scales_and_share_one_pass_when_equal():
  assert request.style_sides(Settings(size=384, style_scale_background=1.0, style_scale_person=1.0)) == \
      ((384, None), None)                                           # equal: the person reuses the pass
  assert request.style_sides(Settings(size=384, style_scale_background=0.5, style_scale_person=0.75)) == \
      ((192, 288), None)
  assert request.style_sides(Settings(size=0, style_scale_background=0.5)) == ((None, None), None)  # --size 0
  plain = Settings(size=300, mode="plain", style_scale_background=0.5, style_scale_person=1.0)
  assert request.style_sides(plain) == ((150, None), None)        # plain SANet has one region
  defaults = Settings(size=400)
  assert request.style_sides(defaults)[0][0] == round(request.STYLE_SCALES["portrait"][0] * 400)


def test_a_style_below_the_encoders_least_side_is_read_at_that_side_and_said():
  (background, person), note = request.style_sides(Settings(size=200, style_scale_background=0.1,
                                                             style_scale_person=1.0))
  assert (background, person) == (request.MIN_STYLE_SIDE, 200)
  assert "background 20 px" in note and f"{request.MIN_STYLE_SIDE} px" in note
  (background, _), note = request.style_sides(Settings(size=32, style_scale_background=0.5))
  assert background == 32 and note      # never above the content's own side


@pytest.mark.parametrize("scale", [0.0, 0.05, 2.5, float("nan")])
def test_a_scale_out_of_range_is_refused_naming_its_flag(scale):
  with pytest.raises(UsageError, match="--style-scale-person must be 0.1..2"):
    request.check_settings(Settings(style_scale_person=scale))


@pytest.fixture(scope="module")
def params():
  return model.init_params(CFG, jax.random.key(0))


def pictures(seed=0):
  rng = np.random.default_rng(seed)
  return rng.random((40, 52, 3), np.float32), rng.random((48, 30, 3), np.float32), \
      rng.random((24, 15, 3), np.float32)


def test_the_person_style_has_its_own_bucket_sizes_attention_and_key_masks(params, monkeypatch):
  c, s, small = pictures()
  hw = (buckets.content_bucket(c.shape[:2]), buckets.style_bucket(s.shape[:2]),
        buckets.style_bucket(small.shape[:2]))
  batch = buckets.bucket_batch([c], [s], 1, hw, person_styles=[small])
  assert batch.style_person.shape == (1, 32, 32, 3) and batch.style.shape == (1, 48, 48, 3)
  np.testing.assert_array_equal(batch.sizes, [[40, 52, 48, 30, 24, 15]])
  seen, attend = [], portrait.attend
  monkeypatch.setattr(portrait, "attend", lambda *a: seen.append(a[-1]) or attend(*a))
  prepared = portrait.prepare(params, batch, cfg=CFG)
  assert prepared["o4_person"].shape == prepared["o4"].shape        # the content's queries, other keys
  assert not np.allclose(prepared["o4_person"], prepared["o4"])
  # Keys (and SANet's style statistics) from each style's valid corner only: a ceil-mode halving per
  # pool, as for the content. Calls: the background's style, the identity (content keys), the person's.
  background, person = seen[0], seen[-1]
  for masks, (h, w) in ((background, (48, 30)), (person, (24, 15))):
    for level, key_mask in zip((3, 4), masks[1::2]):
      halve = lambda n, k: n if k == 0 else halve(-(-n // 2), k - 1)
      assert int(key_mask.sum()) == halve(h, level) * halve(w, level), (h, w, level)


def test_the_person_row_mixes_its_own_style_and_the_background_row_does_not(params):
  c, s, small = pictures(1)
  controls = jnp.asarray(portrait.Controls().as_array())
  one = portrait.stylize(params, portrait.Batch(c[None], s[None]), controls, cfg=CFG)
  two = portrait.stylize(params, portrait.Batch(c[None], s[None], style_person=small[None]), controls, cfg=CFG)
  np.testing.assert_allclose(two["background"], one["background"], atol=1e-6)
  assert np.abs(np.asarray(two["person"]) - np.asarray(one["person"])).max() > 1e-3
  # The same picture as the person's style is the one-style program.
  same = portrait.stylize(params, portrait.Batch(c[None], s[None], style_person=s[None]), controls, cfg=CFG)
  for k in one:
    np.testing.assert_allclose(same[k], one[k], atol=1e-5, err_msg=k)


def test_equal_scales_cost_no_extra_style_pass(params):
  c, s, small = pictures()
  controls = portrait.Controls().as_array()
  lower = lambda batch: lambda cfg: portrait.make_program(cfg, MESH).lower(params, batch, controls)
  one = profiling.counted_flops(CFG, lower(portrait.Batch(c[None], s[None])))
  two = profiling.counted_flops(CFG, lower(portrait.Batch(c[None], s[None], style_person=small[None])))
  encode_small = profiling.counted_flops(
      CFG, lambda cfg: jax.jit(lambda x: portrait.encode(params, cfg, x)).lower(small[None]))
  assert two > one + 0.9 * encode_small        # a second style: one more (smaller) VGG pass and its attention
  assert dataclasses.replace(Settings(), style_scale_background=0.8, style_scale_person=0.8).style_scales() == \
      (0.8, 0.8) and request.style_sides(Settings(size=100, style_scale_background=0.8,
                                                  style_scale_person=0.8))[0][1] is None


def test_restyle_redoes_one_regions_attention_as_prepare_would(params):
  c, s, small = pictures(2)
  split = portrait.make_split_programs(CFG, MESH)
  prepared = split.prepare(params, portrait.Batch(c[None], s[None]))
  # The person's style at another scale, then back to the background's.
  person = split.restyle[1](params, prepared, small[None], None)
  want = split.prepare(params, portrait.Batch(c[None], s[None], style_person=small[None]))
  for k in ("o4_person", "o5_person", "o4", "identity"):
    np.testing.assert_allclose(person[k], want[k], atol=1e-5, err_msg=k)
  assert sorted(portrait.without_person_style(person)) == sorted(prepared)
  background = split.restyle[0](params, prepared, small[None], None)
  want = split.prepare(params, portrait.Batch(c[None], small[None]))
  np.testing.assert_allclose(background["o5"], want["o5"], atol=1e-5)


def test_the_cli_reads_each_regions_style_at_its_scale(tiny_weights, tmp_path, monkeypatch):
  from PIL import Image  # pylint: disable=g-import-not-at-top
  from jaxstyle.app import stylize_files  # pylint: disable=g-import-not-at-top
  monkeypatch.setenv("JAXSTYLE_COMPILE_CACHE", "0")
  c, s, _ = pictures(3)
  Image.fromarray((c * 255).astype(np.uint8)).save(tmp_path / "me.png")
  Image.fromarray((s * 255).astype(np.uint8)).save(tmp_path / "wave.png")
  messages = []
  req = request.Request(content=[str(tmp_path / "me.png")], style=[str(tmp_path / "wave.png")],
                        output=str(tmp_path / "out.png"), weights=str(tiny_weights),
                        settings=Settings(size=128, style_scale_background=0.3, style_scale_person=1.0))
  assert stylize_files.run(req, log=messages.append, progress=False) == [tmp_path / "out.png"]
  assert messages[0] == "style scale: the background 38 px style is read at 64 px, the least the encoder can use"
  assert any("styles to 64x64 and 128x128 for the person" in m for m in messages), messages
  assert Image.open(tmp_path / "out.png").size == (128, 98)


def test_the_default_style_scales_are_the_committed_search_picks():
  """``request.STYLE_SCALES`` is what docs/runs/controls_search_round5*.csv picks by its rule: of the
  candidates that pass every check, the highest background style gain (the search also asks that the
  pick beat scale 1 significantly pair by pair, which only its log can show)."""
  import csv
  from pathlib import Path
  runs = Path(__file__).resolve().parents[1] / "docs" / "runs"
  with open(runs / "controls_search_round5.csv") as f:
    rows = [r for r in csv.DictReader(f) if r["step"] == "style_scale" and r["feasible"] == "True"]
  best = max(rows, key=lambda r: float(r["background_style_gain"]))
  assert request.STYLE_SCALES["portrait"] == (float(best["style_scale_background"]),
                                              float(best["style_scale_person"]))
  with open(runs / "controls_search_round5_plain.csv") as f:
    plain = max((r for r in csv.DictReader(f) if r["feasible"] == "True"),
                key=lambda r: float(r["background_style_gain"]))
  assert request.STYLE_SCALES["plain"][0] == float(plain["style_scale"])
