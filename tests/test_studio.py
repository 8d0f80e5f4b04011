"""The studio's library (``jaxstyle.app.studio``) with tiny random weights: what each control change
recomputes, the byte budget, hostile uploads, and equality with the CLI's pictures.

The tiny model's three split programs compile once in this module (with the CLI's for the equality).
"""
import dataclasses
import struct
import zlib

import numpy as np
import pytest
from PIL import Image

from jaxstyle.app import request
from jaxstyle.app import studio as studio_lib
from jaxstyle.app import stylize_files
from jaxstyle.app.request import Request, Settings, UsageError
from jaxstyle.app.studio import ByteLRU, Upload
from jaxstyle.io.image_io import ImageError
from jaxstyle.program import portrait

SIZE = 48


@pytest.fixture(autouse=True)
def no_home_compile_cache(monkeypatch):
  monkeypatch.setenv("JAXSTYLE_COMPILE_CACHE", "0")


def write_image(path, wh, seed):
  path.parent.mkdir(parents=True, exist_ok=True)
  Image.fromarray(np.random.default_rng(seed).integers(0, 256, (wh[1], wh[0], 3), np.uint8)).save(path)
  return path


@pytest.fixture(scope="module")
def studio(tiny_weights, tmp_path_factory):
  uploads = tmp_path_factory.mktemp("uploads")
  return studio_lib.Studio(tiny_weights, forget_under=uploads, log=lambda _: None), uploads


@pytest.fixture
def files(studio, tmp_path):
  """A content and a style 'uploaded' (under the studio's upload folder, so deleted once read)."""
  _, uploads = studio
  sub = uploads / tmp_path.name
  return Upload(write_image(sub / "me.png", (40, 52), 1)), Upload(write_image(sub / "wave.png", (36, 30), 2))


def test_byte_lru_keeps_the_most_recent_within_its_budget():
  cache = ByteLRU(100)
  for i in range(5):
    assert cache.put(i, f"v{i}", 30)
    assert cache.nbytes <= 100
  assert [k for k in range(5) if k in cache] == [2, 3, 4] and cache.nbytes == 90
  assert cache.get(2) == "v2"                     # now the most recent: 3 goes next
  assert cache.put(5, "v5", 40) and 3 not in cache and 2 in cache and 4 in cache and cache.nbytes == 100
  assert not cache.put(6, "too big", 101) and 6 not in cache and cache.nbytes == 100
  cache.put(4, "smaller", 10)                      # replacing an entry re-counts it
  assert cache.nbytes == 80 and cache.get(4) == "smaller"
  cache.drop(lambda key: key >= 4)
  assert len(cache) == 1 and cache.nbytes == 30


def test_each_control_recomputes_only_what_it_changes(studio, files):
  st, _ = studio
  content, style = files
  base = Settings(size=SIZE)
  first = st.stylize("tab", content, style, None, base)
  assert first.ran == ("prepare", "transfer:background", "transfer:person", "composite")
  assert not content.path.exists() and not style.path.exists()   # uploads deleted once read
  steps = [
      (dataclasses.replace(base, controls=portrait.Controls(alpha_person=0.2)), ("transfer:person",)),
      (dataclasses.replace(base, controls=portrait.Controls(alpha_person=0.2, w2_background=0.5)),
       ("transfer:background",)),
      (dataclasses.replace(base, controls=portrait.Controls(alpha_person=0.2, w2_background=0.5),
                           feather=0.05, preserve_color=True), ()),
      (dataclasses.replace(base, controls=portrait.Controls(alpha_person=0.2, w2_background=0.5),
                           mode="plain"), ()),
      (dataclasses.replace(base, size=SIZE + 16), ("prepare", "transfer:background", "transfer:person")),
  ]
  previous = first.image
  for settings, ran in steps:
    out = st.stylize("tab", content, style, None, settings)
    assert out.ran == (*ran, "composite"), settings
    assert float(np.abs(out.image - previous).max()) > 1e-3 if out.image.shape == previous.shape else True
    previous = out.image
  assert out.image.shape[:2] == (SIZE + 16, round(40 * (SIZE + 16) / 52))
  plain = st.stylize("tab", content, style, None, dataclasses.replace(base, mode="plain"))
  assert plain.mask is None and plain.person is None
  np.testing.assert_array_equal(plain.image, plain.background)


def test_a_style_scale_slider_redoes_only_its_regions_style(studio, files, tmp_path):
  """Each region's style scale re-runs that region's style pass (``restyle``) and transfer, nothing of
  the content; the picture is the one a fresh pair at those scales gives."""
  st, uploads = studio
  content, style = files
  base = Settings(size=160)   # the style's least side is 64 px: smaller scales need a larger picture
  assert st.stylize("scales", content, style, None, base).ran[0] == "prepare"
  both = dataclasses.replace(base, style_scale_person=0.5, style_scale_background=0.5)
  steps = [(dataclasses.replace(base, style_scale_person=0.5), ("restyle:person", "transfer:person")),
           (both, ("restyle:background", "restyle:person", "transfer:background", "transfer:person")),
           (dataclasses.replace(both, style_scale_person=0.75), ("restyle:person", "transfer:person")),
           (dataclasses.replace(both, style_scale_person=0.75, controls=portrait.Controls(alpha_person=0.2)),
            ("transfer:person",))]
  for settings, ran in steps:
    out = st.stylize("scales", content, style, None, settings)
    assert out.ran == (*ran, "composite"), settings
  sub = uploads / f"{tmp_path.name}_again"
  again = [Upload(write_image(sub / "me.png", (40, 52), 1)), Upload(write_image(sub / "wave.png", (36, 30), 2))]
  fresh = st.stylize("fresh", *again, None, settings)
  assert fresh.ran[0] == "prepare"
  np.testing.assert_allclose(fresh.image, out.image, atol=1e-5)
  assert out.style.shape[:2] == (67, 80)   # the background's style, as read (its preview)


def test_the_studio_draws_what_the_cli_writes(studio, tiny_weights, tmp_path):
  """Same pair, controls, feather and preserve colour: the CLI's PNG is the studio's picture in 8 bits."""
  st, uploads = studio
  content = write_image(tmp_path / "me.png", (44, 36), 3)
  style = write_image(tmp_path / "wave.png", (30, 40), 4)
  controls = portrait.Controls(alpha_person=0.4, w1_person=0.8)
  settings = Settings(size=SIZE, controls=controls, feather=0.03, preserve_color=True)
  req = Request(content=[str(content)], style=[str(style)], output=str(tmp_path / "out.png"),
                weights=str(tiny_weights), settings=settings)
  stylize_files.run(req, log=lambda _: None, progress=False)
  cli = np.asarray(Image.open(tmp_path / "out.png"), np.float32) / 255
  out = st.stylize("cli", Upload(content), Upload(style), None, settings)
  assert content.exists()                                   # not under the upload folder: kept
  np.testing.assert_allclose(out.image, cli, atol=1 / 255 + 1e-4)


def test_memory_stays_within_the_budget_and_closed_tabs_free_theirs(tiny_weights, tmp_path):
  st = studio_lib.Studio(tiny_weights, cache_bytes=400_000, log=lambda _: None)
  style = Upload(write_image(tmp_path / "s.png", (32, 32), 0))
  for i in range(4):
    st.stylize("a", Upload(write_image(tmp_path / f"c{i}.png", (40, 48), i)), style, None, Settings(size=SIZE))
    assert st.cache.nbytes <= 400_000
  assert sum(key[0] == "pair" for key in st.cache._entries) < 4   # older pairs were evicted
  st.stylize("b", Upload(tmp_path / "c0.png"), style, None, Settings(size=SIZE))
  st.close_tab("a")
  assert {key[1] for key in st.cache._entries} == {"b"}


def png_chunk(kind, data):
  return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def test_bad_uploads_are_one_line_refusals_and_the_studio_keeps_serving(studio, files, tmp_path, monkeypatch):
  st, _ = studio
  content, style = files
  good = st.stylize("bad", content, style, None, Settings(size=SIZE))
  (tmp_path / "notes.png").write_text("not a picture")
  whole = (tmp_path / "whole.png")
  write_image(whole, (40, 40), 5)
  (tmp_path / "cut.png").write_bytes(whole.read_bytes()[:200])
  (tmp_path / "bomb.png").write_bytes(b"\x89PNG\r\n\x1a\n" + png_chunk(
      b"IHDR", struct.pack(">IIBBBBB", 100_000, 100_000, 8, 2, 0, 0, 0)) + png_chunk(b"IEND", b""))
  nan = np.full((52, 40), np.nan, np.float32)
  Image.fromarray(nan, "F").save(tmp_path / "nan.tif")
  write_image(tmp_path / "big.png", (40, 40), 6)
  cases = [("notes.png", "content", "not an image"), ("cut.png", "content", "truncated"),
           ("bomb.png", "style", "decompression bomb"), ("nan.tif", "mask", "NaN")]
  for name, role, words in cases:
    args = {"content": content, "style": style, "mask": None, role: Upload(tmp_path / name)}
    with pytest.raises(ImageError, match=words) as e:
      st.stylize("bad", args["content"], args["style"], args["mask"], Settings(size=SIZE))
    assert str(e.value).startswith(f"{name}: ") and "\n" not in str(e.value)
  monkeypatch.setattr(studio_lib, "MAX_UPLOAD_BYTES", 1000)
  with pytest.raises(ImageError, match="larger than"):
    st.stylize("bad", Upload(tmp_path / "big.png"), style, None, Settings(size=SIZE))
  with pytest.raises(UsageError, match="alpha-person"):
    st.stylize("bad", content, style, None, Settings(size=SIZE, controls=portrait.Controls(alpha_person=2)))
  with pytest.raises(UsageError, match="size"):
    st.stylize("bad", content, style, None, Settings(size=studio_lib.MAX_SIZE + 1))
  again = st.stylize("bad", content, style, None, Settings(size=SIZE))   # uploads deleted: from memory
  np.testing.assert_array_equal(again.image, good.image)
  assert again.ran == ("composite",)
  st.cache.drop(lambda key: True)
  with pytest.raises(ImageError, match="upload it again"):
    st.stylize("bad", content, style, None, Settings(size=SIZE))
  assert request.MAX_FEATHER == portrait.MAX_FEATHER


def test_a_clip_is_stylised_by_the_cli_code_and_a_cancelled_or_too_long_one_leaves_nothing(studio, files,
                                                                                            tmp_path):
  from clips import read_clip, write_clip
  from jaxstyle.app import studio_clip
  st, _ = studio
  st.results_dir = tmp_path / "results"
  _, style = files
  clip = write_clip(tmp_path / "me.mp4", frames=8, audio_seconds=0.3)
  clips = studio_clip.Clips(st, log=lambda _: None)
  seen = []
  out = clips.stylize("tab", Upload(clip), style, Settings(size=SIZE), on_progress=seen.append)
  frames, _, audio = read_clip(out.path)
  assert out.frames == len(frames) == 8 and frames[0].shape == (40, 48, 3) and out.path.suffix == ".mp4"
  assert len(audio) == len(read_clip(clip)[2]) > 0                         # the audio carried
  assert [p.done for p in seen] == list(range(1, 9)) and seen[-1].total == 8 and seen[-1].eta_s == 0
  assert out.flicker is not None and out.flicker[1] <= out.flicker[0]

  clips.cancel("closed tab")     # a tab without a running clip (the page's unload) leaves nothing behind
  assert not clips._cancelled   # pylint: disable=protected-access

  def cancel_at_three(p):
    if p.done == 3:
      clips.cancel("tab")
  with pytest.raises(studio_clip.Cancelled):
    clips.stylize("tab", Upload(clip), Upload(style.path, style.label()), Settings(size=SIZE),
                  on_progress=cancel_at_three)
  short = studio_clip.Clips(st, max_seconds=0.1, log=lambda _: None)
  with pytest.raises(UsageError, match="longer than the 0.1 s"):
    short.stylize("tab", Upload(clip), style, Settings(size=SIZE))
  (tmp_path / "bad.mp4").write_bytes(b"\x00\x00\x00\x18ftypmp42 not a video")
  with pytest.raises(ImageError, match="not a readable video"):
    clips.stylize("tab", Upload(tmp_path / "bad.mp4"), style, Settings(size=SIZE))
  with pytest.raises(UsageError, match="not a video file"):
    clips.stylize("tab", Upload(style.path, "wave.png"), style, Settings(size=SIZE))
  # Only the finished clip's folder is left, holding only the clip.
  assert [p.relative_to(st.results_dir).parts[1:] for p in st.results_dir.rglob("*") if p.is_file()] == [
      (out.path.name,)]


def test_live_frames_encode_the_style_once_and_smooth_the_mask_over_past_frames(studio, files, monkeypatch):
  from jaxstyle.app import studio_live
  st, _ = studio
  _, style = files
  live = studio_live.Live(st)
  encoded = []
  features = st.runner.style_features
  monkeypatch.setattr(st.runner, "style_features", lambda x: encoded.append(x.shape) or features(x))
  rng = np.random.default_rng(3)
  frames = [rng.integers(0, 256, (60, 80, 3), np.uint8) for _ in range(3)]
  outs = [live.frame("cam", f, style, Settings(size=SIZE)) for f in frames]
  assert len(encoded) == 1                                   # once per style and side, not per frame
  assert all(image.shape == (36, 48, 3) for image, _ in outs) and outs[-1][1] > 0
  state = live._tabs["cam"]
  assert len(state.blend.history) == 3 and state.blend.smooth.value <= state.blend.raw.value
  live.frame("cam", frames[0], style, Settings(size=SIZE, mode="plain"))
  assert len(encoded) == 1
  live.frame("cam", frames[0], style, Settings(size=SIZE + 16))     # another side: encoded again
  assert len(encoded) == 2
  live.close_tab("cam")
  assert "cam" not in live._tabs
