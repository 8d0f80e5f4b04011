"""image_io: the bad-input table, every colour mode, EXIF orientation, resizing and atomic saving."""
import io
import os
import struct
import zlib

import numpy as np
import pytest
from PIL import Image, ImageFile

from jaxstyle.io import image_io
from jaxstyle.io.image_io import ImageError


def quadrants(h=32, w=48):
  """uint8 RGB image with four flat, distinct quadrants (robust to JPEG loss)."""
  img = np.zeros((h, w, 3), np.uint8)
  img[:h // 2, :w // 2] = (255, 0, 0)
  img[:h // 2, w // 2:] = (0, 255, 0)
  img[h // 2:, :w // 2] = (0, 0, 255)
  img[h // 2:, w // 2:] = (255, 255, 0)
  return img


def png_header_only(w, h):
  """A valid PNG signature and IHDR claiming ``w``×``h`` (no pixel data worth decoding)."""
  def chunk(kind, data):
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
  ihdr = struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0)
  return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b""))
          + chunk(b"IEND", b""))


def encoded(img: Image.Image, fmt: str) -> bytes:
  buf = io.BytesIO()
  img.save(buf, fmt)
  return buf.getvalue()


# --- bad input --------------------------------------------------------------------------------------


def _bad_files(tmp_path):
  good = Image.fromarray(quadrants(64, 64))
  jpg, png = encoded(good, "JPEG"), encoded(good, "PNG")
  files = {
      "missing": (tmp_path / "nope.png", None, "no such file"),
      "directory": (tmp_path / "adir.png", "dir", "directory"),
      "zero_bytes": (tmp_path / "empty.jpg", b"", "empty"),
      "text_as_jpg": (tmp_path / "notes.jpg", b"this is not a picture\n", "not an image"),
      "truncated_jpeg": (tmp_path / "cut.jpg", jpg[:len(jpg) // 2], "truncated"),
      "truncated_png": (tmp_path / "cut.png", png[:len(png) // 2], "truncated"),
      "bomb_pil": (tmp_path / "bomb.png", png_header_only(20_000, 20_000), "bomb"),
      "bomb_warning": (tmp_path / "warn.png", png_header_only(9_500, 9_500), "bomb"),
      "bomb_limit": (tmp_path / "big.png", png_header_only(9_000, 9_000), "exceeds the limit"),
      "too_small": (tmp_path / "tiny.png", encoded(Image.new("RGB", (8, 40)), "PNG"), "too small"),
  }
  for path, content, _ in files.values():
    if content == "dir":
      path.mkdir()
    elif content is not None:
      path.write_bytes(content)
  return files


@pytest.mark.parametrize("case", ["missing", "directory", "zero_bytes", "text_as_jpg", "truncated_jpeg",
                                  "truncated_png", "bomb_pil", "bomb_warning", "bomb_limit", "too_small"])
def test_bad_input_is_one_line_image_error(tmp_path, case):
  path, _, words = _bad_files(tmp_path)[case]
  with pytest.raises(ImageError) as info:
    image_io.load_image(path)
  message = str(info.value)
  assert words in message
  assert str(path) in message and "\n" not in message
  assert ImageFile.LOAD_TRUNCATED_IMAGES is False


@pytest.mark.parametrize("case", ["missing", "directory", "zero_bytes", "text_as_jpg", "truncated_jpeg",
                                  "truncated_png", "bomb_limit", "too_small"])
def test_training_decoder_refuses_the_same_files(tmp_path, case):
  path, content, words = _bad_files(tmp_path)[case]
  with pytest.raises(ImageError, match=words):
    image_io.decode_uint8(path, 24)
  if isinstance(content, bytes) and content:
    with pytest.raises(ImageError, match=words):
      image_io.decode_uint8(content)


def test_pixel_limit_is_a_parameter(tmp_path):
  path = tmp_path / "ok.png"
  Image.fromarray(quadrants(64, 64)).save(path)
  assert image_io.load_image(path).shape == (64, 64, 3)
  with pytest.raises(ImageError, match="exceeds the limit"):
    image_io.load_image(path, max_pixels=64 * 63)


def test_too_small_after_resize(tmp_path):
  path = tmp_path / "strip.png"
  Image.new("RGB", (800, 20)).save(path)
  assert image_io.load_image(path).shape == (20, 800, 3)
  with pytest.raises(ImageError, match="too small"):
    image_io.load_image(path, max_side=64)   # 64x2


# --- colour modes -----------------------------------------------------------------------------------


def test_rgb_png_exact(tmp_path):
  arr = np.random.default_rng(0).integers(0, 256, (20, 30, 3), dtype=np.uint8)
  Image.fromarray(arr).save(tmp_path / "a.png")
  out = image_io.load_image(tmp_path / "a.png")
  assert out.dtype == np.float32 and out.shape == (20, 30, 3)
  np.testing.assert_allclose(out, arr / 255.0, atol=1e-6)


def test_rgba_composited_on_white(tmp_path):
  rgba = np.zeros((16, 16, 4), np.uint8)
  rgba[..., 0] = 255                       # red ...
  rgba[:8, :, 3] = 0                       # ... transparent on top,
  rgba[8:, :8, 3] = 255                    # opaque bottom left,
  rgba[8:, 8:, 3] = 102                    # 40 % bottom right
  Image.fromarray(rgba, "RGBA").save(tmp_path / "a.png")
  out = image_io.load_image(tmp_path / "a.png")
  np.testing.assert_allclose(out[:8], 1.0, atol=1e-6)
  np.testing.assert_allclose(out[8:, :8], np.broadcast_to([1.0, 0.0, 0.0], (8, 8, 3)), atol=1e-6)
  np.testing.assert_allclose(out[8:, 8:], np.broadcast_to([1.0, 0.6, 0.6], (8, 8, 3)), atol=1e-6)


def test_la_composited_on_white(tmp_path):
  la = np.zeros((16, 16, 2), np.uint8)     # black ...
  la[:, 8:, 1] = 255                       # ... opaque on the right, transparent on the left
  Image.fromarray(la, "LA").save(tmp_path / "a.png")
  out = image_io.load_image(tmp_path / "a.png")
  np.testing.assert_allclose(out[:, :8], 1.0, atol=1e-6)
  np.testing.assert_allclose(out[:, 8:], 0.0, atol=1e-6)


def test_grayscale(tmp_path):
  gray = np.arange(256, dtype=np.uint8).reshape(16, 16)
  Image.fromarray(gray, "L").save(tmp_path / "g.png")
  out = image_io.load_image(tmp_path / "g.png")
  assert out.shape == (16, 16, 3)
  for c in range(3):
    np.testing.assert_allclose(out[..., c], gray / 255.0, atol=1e-6)


def test_palette_with_transparency(tmp_path):
  img = Image.new("P", (16, 16))
  img.putpalette([10, 20, 30, 200, 100, 50] + [0] * 762)
  img.paste(1, (0, 0, 16, 8))              # top half: colour 1, bottom half: colour 0
  img.save(tmp_path / "p.png")
  out = image_io.load_image(tmp_path / "p.png")
  np.testing.assert_allclose(out[0, 0], np.array([200, 100, 50]) / 255, atol=1e-6)
  np.testing.assert_allclose(out[-1, 0], np.array([10, 20, 30]) / 255, atol=1e-6)
  img.save(tmp_path / "pt.png", transparency=0)   # colour 0 transparent -> white
  out = image_io.load_image(tmp_path / "pt.png")
  np.testing.assert_allclose(out[-1, 0], 1.0, atol=1e-6)
  np.testing.assert_allclose(out[0, 0], np.array([200, 100, 50]) / 255, atol=1e-6)


def test_cmyk_jpeg(tmp_path):
  rgb = Image.new("RGB", (32, 32), (200, 60, 40))
  rgb.convert("CMYK").save(tmp_path / "c.jpg", quality=100)
  assert Image.open(tmp_path / "c.jpg").mode == "CMYK"
  out = image_io.load_image(tmp_path / "c.jpg")
  np.testing.assert_allclose(out[16, 16], np.array([200, 60, 40]) / 255, atol=3 / 255)


def test_16bit_png_scaled_not_clipped(tmp_path):
  a = np.zeros((16, 16), np.uint16)
  a[:, :4], a[:, 4:8], a[:, 8:12], a[:, 12:] = 0, 1000, 32768, 65535
  Image.fromarray(a).save(tmp_path / "g16.png")
  assert Image.open(tmp_path / "g16.png").mode.startswith("I")
  out = image_io.load_image(tmp_path / "g16.png")
  np.testing.assert_allclose(out[0, [0, 4, 8, 12], 0], [0, 1000 / 65535, 32768 / 65535, 1.0], atol=1e-6)
  np.testing.assert_allclose(out[..., 0], out[..., 2])


def test_exif_orientation_6(tmp_path):
  arr = quadrants(32, 48)                  # stored landscape: 48 wide, 32 high
  exif = Image.Exif()
  exif[0x0112] = 6                         # "rotate 90° clockwise to display"
  Image.fromarray(arr).save(tmp_path / "r.jpg", exif=exif.tobytes(), quality=100)
  out = image_io.load_image(tmp_path / "r.jpg")
  assert out.shape == (48, 32, 3)          # upright: width and height swapped
  expected = np.rot90(arr, k=-1) / 255.0   # clockwise
  inner = (slice(4, 20), slice(4, 12)), (slice(28, 44), slice(20, 28))   # away from JPEG edges
  for rows, cols in inner:
    np.testing.assert_allclose(out[rows, cols], expected[rows, cols], atol=0.06)
  np.testing.assert_allclose(out[10, 8], [0, 0, 1], atol=0.06)   # top left is the blue quadrant


def test_training_decoder_shares_load_image_decoding(tmp_path):
  arr = quadrants(32, 48)
  Image.fromarray(arr).save(tmp_path / "q.png")
  np.testing.assert_array_equal(image_io.decode_uint8(tmp_path / "q.png"), arr)
  np.testing.assert_array_equal(image_io.decode_uint8((tmp_path / "q.png").read_bytes()), arr)
  assert image_io.decode_uint8(tmp_path / "q.png", 16).shape == (16, 24, 3)       # shorter side 16
  assert image_io.decode_uint8(tmp_path / "q.png", 64).shape == (64, 96, 3)
  assert image_io.decode_uint8(tmp_path / "q.png", 64, upscale=False).shape == (32, 48, 3)
  rgba = np.zeros((32, 32, 4), np.uint8)
  rgba[..., 3] = 0                                                                 # fully transparent
  Image.fromarray(rgba, "RGBA").save(tmp_path / "t.png")
  assert (image_io.decode_uint8(tmp_path / "t.png") == 255).all()                 # on white
  exif = Image.Exif()
  exif[0x0112] = 6
  Image.fromarray(arr).save(tmp_path / "r.jpg", exif=exif.tobytes(), quality=100)
  upright = image_io.decode_uint8(tmp_path / "r.jpg")
  assert upright.shape == (48, 32, 3)
  np.testing.assert_allclose(upright / 255.0, image_io.load_image(tmp_path / "r.jpg"), atol=1 / 255)


def test_one_suffix_list():
  assert image_io.is_image("a/B.JPG") and image_io.is_image("x.webp") and image_io.is_image("x.tiff")
  assert not image_io.is_image("notes.txt") and not image_io.is_image("clip.mp4")
  assert all(s.startswith(".") and s == s.lower() for s in image_io.IMAGE_SUFFIXES)


def test_resize_longest_side_keeps_aspect(tmp_path):
  Image.fromarray(quadrants(50, 100)).save(tmp_path / "a.png")
  assert image_io.load_image(tmp_path / "a.png", max_side=40).shape == (20, 40, 3)
  up = image_io.load_image(tmp_path / "a.png", max_side=200)
  assert up.shape == (100, 200, 3) and up.min() >= 0 and up.max() <= 1
  np.testing.assert_allclose(up[20, 40], [1, 0, 0], atol=1e-3)


# --- masks ------------------------------------------------------------------------------------------


def test_load_mask_luminance_alpha_and_16bit(tmp_path):
  m = np.zeros((32, 64), np.uint8)
  m[:, 32:] = 255
  Image.fromarray(m, "L").save(tmp_path / "m.png")
  out = image_io.load_mask(tmp_path / "m.png", (16, 32))
  assert out.shape == (16, 32) and out.dtype == np.float32
  np.testing.assert_allclose(out[:, :14], 0, atol=1e-6)
  np.testing.assert_allclose(out[:, 18:], 1, atol=1e-6)

  rgba = np.zeros((32, 64, 4), np.uint8)   # black cut-out: the alpha is the mask
  rgba[:, 32:, 3] = 255
  Image.fromarray(rgba, "RGBA").save(tmp_path / "cut.png")
  np.testing.assert_allclose(image_io.load_mask(tmp_path / "cut.png", (16, 32)), out, atol=1e-6)

  Image.fromarray(m.astype(np.uint16) * 257).save(tmp_path / "m16.png")
  np.testing.assert_allclose(image_io.load_mask(tmp_path / "m16.png", (16, 32)), out, atol=1e-6)


def test_load_mask_of_another_picture(tmp_path):
  Image.new("L", (64, 64)).save(tmp_path / "sq.png")
  with pytest.raises(ImageError, match="aspect ratio"):
    image_io.load_mask(tmp_path / "sq.png", (16, 32))
  with pytest.raises(ImageError, match="no such file"):
    image_io.load_mask(tmp_path / "none.png", (16, 32))


# --- saving -----------------------------------------------------------------------------------------


def test_save_roundtrip_png_and_jpeg(tmp_path):
  arr = quadrants(32, 48) / 255.0
  p = image_io.save_image_atomic(tmp_path / "sub" / "o.png", arr)
  np.testing.assert_allclose(image_io.load_image(p), arr, atol=1e-6)
  j = image_io.save_image_atomic(tmp_path / "o.JPG", arr)
  assert Image.open(j).format == "JPEG"
  gray = image_io.save_image_atomic(tmp_path / "m.png", np.linspace(0, 1, 32 * 32).reshape(32, 32))
  assert Image.open(gray).mode == "L"
  assert sorted(os.listdir(tmp_path)) == ["m.png", "o.JPG", "sub"]   # no temp files left
  assert (os.stat(p).st_mode & 0o777) != 0o600                        # not mkstemp's private mode


def test_save_refuses_inputs_and_unknown_suffix(tmp_path):
  src = tmp_path / "in.png"
  Image.fromarray(quadrants()).save(src)
  before = src.read_bytes()
  (tmp_path / "link.png").symlink_to(src)
  for target in (src, tmp_path / "." / "in.png", tmp_path / "link.png"):
    with pytest.raises(ImageError, match="refusing to overwrite"):
      image_io.save_image_atomic(target, np.zeros((16, 16, 3)), inputs=[src])
  assert src.read_bytes() == before
  with pytest.raises(ImageError, match="suffix"):
    image_io.save_image_atomic(tmp_path / "out.xyz", np.zeros((16, 16, 3)))


def test_save_failure_keeps_old_file(tmp_path, monkeypatch):
  target = tmp_path / "o.png"
  target.write_bytes(b"old")

  def broken_save(self, fp, *args, **kwargs):
    fp.write(b"partial")
    raise OSError("disk full")
  monkeypatch.setattr(Image.Image, "save", broken_save)
  with pytest.raises(ImageError, match="disk full"):
    image_io.save_image_atomic(target, np.zeros((16, 16, 3)))
  assert target.read_bytes() == b"old"
  assert os.listdir(tmp_path) == ["o.png"]


def test_atomic_path_replaces_whole_file_or_nothing(tmp_path):
  target = tmp_path / "sub" / "clip.mp4"
  with image_io.atomic_path(target) as tmp:
    assert tmp.parent == target.parent and tmp.suffix == ".mp4" and tmp != target
    tmp.write_bytes(b"new")
    assert not target.exists()                      # nothing visible before the block ends
  assert target.read_bytes() == b"new" and os.listdir(target.parent) == ["clip.mp4"]
  umask = os.umask(0o022)
  os.umask(umask)
  assert os.stat(target).st_mode & 0o777 == 0o666 & ~umask   # a new file's mode, not mkstemp's 0600
  with pytest.raises(RuntimeError, match="interrupted"):
    with image_io.atomic_path(target) as tmp:
      tmp.write_bytes(b"partial")
      raise RuntimeError("interrupted")
  assert target.read_bytes() == b"new" and os.listdir(target.parent) == ["clip.mp4"]


# --- headers, whole files and what a killed writer leaves ------------------------------------------


@pytest.mark.parametrize("case", ["missing", "directory", "zero_bytes", "text_as_jpg", "bomb_pil",
                                  "bomb_limit", "too_small"])
def test_probe_refuses_what_the_header_shows(tmp_path, case):
  path, _, words = _bad_files(tmp_path)[case]
  with pytest.raises(ImageError, match=words):
    image_io.probe_hw(path)


def test_probe_gives_load_image_shape_without_decoding(tmp_path):
  exif = Image.Exif()
  exif[0x0112] = 6                                       # a quarter turn: sides swapped when upright
  Image.fromarray(quadrants(32, 48)).save(tmp_path / "r.jpg", exif=exif.tobytes())
  Image.fromarray(quadrants(50, 30)).save(tmp_path / "p.png")
  png = (tmp_path / "p.png").read_bytes()
  (tmp_path / "cut.png").write_bytes(png[:len(png) // 2])
  for name in ("r.jpg", "p.png"):
    for size in (None, 40, 27):
      assert image_io.probe_hw(tmp_path / name, size) == image_io.load_image(tmp_path / name, size).shape[:2]
  assert image_io.probe_hw(tmp_path / "r.jpg") == (48, 32)
  assert image_io.probe_hw(tmp_path / "cut.png") == (50, 30)     # only a decode finds the cut
  with pytest.raises(ImageError, match="too small"):
    image_io.probe_hw(tmp_path / "p.png", 20)                    # 20x12, as load_image refuses it
  with pytest.raises(ImageError, match="^record 7: not an image file"):
    image_io.probe_hw(image_io.NamedBytes(b"garbage", "record 7"))
  with pytest.raises(ImageError, match="^record 7: truncated"):
    image_io.load_image(image_io.NamedBytes(png[:len(png) // 2], "record 7"))


def test_is_complete_and_remove_partials(tmp_path):
  image_io.save_image_atomic(tmp_path / "a.png", quadrants())
  png = (tmp_path / "a.png").read_bytes()
  (tmp_path / "cut.png").write_bytes(png[:-20])
  (tmp_path / "empty.png").write_bytes(b"")
  assert image_io.is_complete(tmp_path / "a.png")
  assert not any(image_io.is_complete(tmp_path / n) for n in ("cut.png", "empty.png", "none.png"))
  # What a kill inside atomic_path leaves: its temporary file, named after the target.
  left = [tmp_path / ".a.png.k2j4_9xz.partial.png", tmp_path / ".b.png.abcdefgh.partial.png"]
  others = [tmp_path / ".c.png.abcdefgh.partial.png", tmp_path / ".a.png.abcdefgh.partial.jpg"]
  for p in left + others:
    p.write_bytes(b"half")
  with image_io.atomic_path(tmp_path / "x.png") as tmp:
    assert image_io.partial_target(tmp.name) == "x.png"
  assert image_io.remove_partials([tmp_path / "a.png", tmp_path / "b.png", tmp_path / "gone" / "d.png"]) == 2
  assert sorted(os.listdir(tmp_path)) == sorted(["a.png", "cut.png", "empty.png", "x.png"] +
                                                [p.name for p in others])
