"""Comparison sheet: one labelled row of panels, as the paper's Fig. 2.

    ┌ content ┐ ┌ style ┐ ┌ plain transfer ┐ ┌ mask ┐ ┌ person transfer ┐ ┌ combined ┐
    │         │ │       │ │                │ │      │ │                 │ │          │

Every panel is scaled to one height (aspect kept); ``[H, W]`` arrays (the mask) are shown as grayscale.
Labels use Pillow's built-in default font, so no font file is needed.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from jaxstyle.io.image_io import to_pil

BACKGROUND = (255, 255, 255)
TEXT = (0, 0, 0)


def _font(size: int) -> ImageFont.ImageFont | ImageFont.FreeTypeFont:
  try:
    return ImageFont.load_default(size=size)   # scalable when Pillow has FreeType
  except (ImportError, OSError, TypeError):
    return ImageFont.load_default()


def _fit_text(draw: ImageDraw.ImageDraw, text: str, font, width: int) -> str:
  """``text``, shortened with an ellipsis until it fits ``width`` pixels."""
  if draw.textlength(text, font=font) <= width:
    return text
  while text and draw.textlength(text + "…", font=font) > width:
    text = text[:-1]
  return text + "…" if text else ""


def _fit_height(img: Image.Image, height: int) -> Image.Image:
  if img.height == height:
    return img
  width = max(1, round(img.width * height / img.height))
  return img.resize((width, height), Image.Resampling.LANCZOS)


def comparison_sheet(panels: Sequence[tuple[str, np.ndarray | Image.Image]], *,
                     height: int | None = None, gap: int | None = None,
                     font_size: int | None = None) -> Image.Image:
  """An RGB sheet: ``panels`` (label, image) side by side, each under its label.

  ``height`` of every panel defaults to the first panel's (the content's); ``gap`` (between and around
  panels) and ``font_size`` scale with it.
  """
  if not panels:
    raise ValueError("comparison_sheet needs at least one panel")
  images = [to_pil(image).convert("RGB") for _, image in panels]
  height = height or images[0].height
  images = [_fit_height(img, height) for img in images]
  gap = max(2, height // 64) if gap is None else gap
  font = _font(font_size or min(32, max(10, height // 20)))
  ascent, descent = font.getmetrics() if hasattr(font, "getmetrics") else (11, 0)
  strip = ascent + descent + 2 * gap
  sheet = Image.new("RGB", (sum(img.width for img in images) + gap * (len(images) + 1),
                            strip + height + gap), BACKGROUND)
  draw = ImageDraw.Draw(sheet)
  x = gap
  for (label, _), img in zip(panels, images):
    text = _fit_text(draw, label, font, img.width)
    draw.text((x + (img.width - draw.textlength(text, font=font)) / 2, gap), text, fill=TEXT, font=font)
    sheet.paste(img, (x, strip))
    x += img.width + gap
  return sheet


def background_label(controls) -> str:
  """What the portrait program's background row shows: plain SANet when its controls are SANet's own
  (W = (1, 1), α = 1), otherwise the background transfer at the given controls."""
  w1, w2, alpha = controls.w1_background, controls.w2_background, controls.alpha_background
  if (w1, w2, alpha) == (1.0, 1.0, 1.0):
    return "plain transfer"
  return f"background W=({w1:g}, {w2:g}) α={alpha:g}"


def sheet_panels(content, style, out: dict, controls) -> list[tuple]:
  """The panels of one pair's sheet from one program's outputs (``portrait.stylize``).

  The "plain transfer" panel is the portrait program's background row, which *is* plain SANet at the
  default background controls (no second program); other controls are stated in its label.
  """
  if "mask" not in out:
    return [("content", content), ("style", style), ("transfer", out["image"])]
  return [("content", content), ("style", style), (background_label(controls), out["background"]),
          ("mask", out["mask"]), ("person transfer", out["person"]), ("combined", out["image"])]
