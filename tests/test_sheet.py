"""The comparison sheet: layout, pixels of every panel, grayscale mask, labels inside their strip."""
import numpy as np
import pytest

from jaxstyle.io.sheet import comparison_sheet

H, W, GAP = 32, 48, 4


def panels():
  rng = np.random.default_rng(0)
  content = rng.integers(0, 256, (H, W, 3), dtype=np.uint8)
  style = rng.random((64, 64, 3)).astype(np.float32)          # other size: scaled to 32x32
  mask = np.tile(np.linspace(0, 1, W, dtype=np.float32), (H, 1))
  return [("content", content), ("style", style), ("plain transfer", content[::-1]),
          ("mask", mask), ("person transfer", content[:, ::-1]), ("combined", content)]


def panel_boxes(sheet_height, widths):
  """(x0, y0, x1, y1) of each panel: left to right, ``GAP`` apart, resting on the bottom margin."""
  boxes, x = [], GAP
  for w in widths:
    boxes.append((x, sheet_height - GAP - H, x + w, sheet_height - GAP))
    x += w + GAP
  return boxes


def test_layout_and_pixels():
  ps = panels()
  sheet = comparison_sheet(ps, gap=GAP)
  widths = [W, 32, W, W, W, W]
  assert sheet.mode == "RGB"
  assert sheet.width == sum(widths) + GAP * 7
  strip = sheet.height - H - GAP
  assert strip >= 10                                  # room for a line of text above the panels
  arr = np.asarray(sheet)
  boxes = panel_boxes(sheet.height, widths)
  crop = lambda b: arr[b[1]:b[3], b[0]:b[2]]
  np.testing.assert_array_equal(crop(boxes[0]), ps[0][1])
  np.testing.assert_array_equal(crop(boxes[2]), ps[2][1])
  np.testing.assert_array_equal(crop(boxes[4]), ps[4][1])
  mask_panel = crop(boxes[3]).astype(int)
  assert (mask_panel == mask_panel[..., :1]).all()      # grayscale: R = G = B
  np.testing.assert_allclose(mask_panel[0, :, 0], np.round(ps[3][1][0] * 255), atol=1)
  np.testing.assert_allclose(crop(boxes[1]).mean(axis=(0, 1)) / 255, ps[1][1].mean(axis=(0, 1)), atol=0.02)


def test_labels_are_drawn_in_the_strip_above_their_panel():
  ps = [(name, np.full((H, W, 3), 0.5)) for name in ("content", "a much too long label to fit", "mask")]
  sheet = comparison_sheet(ps, gap=GAP)
  arr = np.asarray(sheet).astype(int)
  strip = arr[:sheet.height - H - GAP]
  inked = (strip < 200).any(axis=(0, 2))              # columns with text in the strip
  boxes = panel_boxes(sheet.height, [W] * 3)
  for x0, _, x1, _ in boxes:
    assert inked[x0:x1].any()                         # each panel has its label ...
  inside = np.zeros_like(inked)
  for x0, _, x1, _ in boxes:
    inside[x0:x1] = True
  assert not inked[~inside].any()                     # ... and no label spills into a gap


def test_height_override_and_errors():
  sheet = comparison_sheet([("a", np.zeros((64, 32, 3))), ("b", np.zeros((16, 16)))], height=24, gap=GAP)
  assert sheet.width == 12 + 24 + 3 * GAP
  with pytest.raises(ValueError):
    comparison_sheet([])
  with pytest.raises(ValueError, match="shape"):
    comparison_sheet([("bad", np.zeros((4, 4, 2)))])


def test_plain_panel_is_the_background_row_and_says_so():
  from jaxstyle.program.portrait import Controls
  from jaxstyle.io.sheet import sheet_panels
  out = {k: np.full((H, W, 3), v, np.float32) for k, v in
         (("image", 0.1), ("background", 0.2), ("person", 0.3))}
  out["mask"] = np.zeros((H, W), np.float32)
  panel = lambda c: sheet_panels("c", "s", out, c)[2]
  assert panel(Controls())[0] == "plain transfer" and panel(Controls())[1] is out["background"]
  custom = panel(Controls(alpha_background=0.5, w2_background=0.3))
  assert custom[0] == "background W=(1, 0.3) α=0.5" and custom[1] is out["background"]
  plain = sheet_panels("c", "s", {"image": out["image"]}, Controls())
  assert [label for label, _ in plain] == ["content", "style", "transfer"]
