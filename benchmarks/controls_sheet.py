"""Old against new default controls on the public-domain held-out pairs, as one sheet.

    python -m benchmarks.controls_sheet --out docs/img/quality/controls_old_new.jpg

Rows: ``quality.PUBLIC_DOMAIN_PORTRAITS`` × ``PUBLIC_DOMAIN_PAINTINGS`` (held-out pairs, center-cropped
squares as the harness makes them); columns: content | painting | plain SANet | portrait mode at
``--old`` | portrait mode at today's ``portrait.Controls()``. Every output goes through the CLI's path
(``quality.jaxstyle_outputs``). Needs no quality extras: it measures nothing, it shows.
"""
from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path
from typing import Sequence

from PIL import Image

from benchmarks import quality

PUBLIC_DOMAIN_PAINTINGS = ("titu_starry_night.jpg", "titu_wave_kanagawa.jpg")   # van Gogh 1889, Hokusai c. 1831
OLD = "1,1,1,1,0.2,0.6"   # portrait.Controls() before benchmarks/controls_search.py (2026-12-06)


def stack(rows: Sequence[Image.Image], gap: int = 8) -> Image.Image:
  """``rows`` one under another on white, left-aligned."""
  sheet = Image.new("RGB", (max(r.width for r in rows), sum(r.height for r in rows) + gap * (len(rows) - 1)),
                    (255, 255, 255))
  y = 0
  for row in rows:
    sheet.paste(row, (0, y))
    y += row.height + gap
  return sheet


def main(argv: Sequence[str] | None = None) -> int:
  from jaxstyle.io.sheet import comparison_sheet  # pylint: disable=g-import-not-at-top
  from jaxstyle.program import portrait  # pylint: disable=g-import-not-at-top
  ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  ap.add_argument("--data", default=str(quality.REPO.parent / "shared" / "data"))
  ap.add_argument("--weights", default=str(quality.REPO / "weights"))
  ap.add_argument("--out", default=str(quality.REPO / "out" / "controls_old_new.jpg"))
  ap.add_argument("--size", type=int, default=384)
  ap.add_argument("--panel", type=int, default=288, help="height of each panel in the sheet (px)")
  ap.add_argument("--old", default=OLD, type=quality.parse_controls, metavar="W1B,W2B,AB,W1P,W2P,AP",
                  help="the old defaults")
  args = ap.parse_args(argv)
  old, new = args.old, portrait.Controls()
  # "alpha", not "α": Pillow's built-in font has no Greek.
  label = lambda c: f"person W {c.w1_person:g}, {c.w2_person:g}, alpha {c.alpha_person:g}"
  with tempfile.TemporaryDirectory() as tmp:
    work = Path(tmp)
    pairs = quality.prepare(Path(args.data), quality.PUBLIC_DOMAIN_PORTRAITS, PUBLIC_DOMAIN_PAINTINGS,
                            args.size, work)
    log = lambda message: print(message, flush=True)
    # Separate folders: the CLI skips outputs that already exist.
    outputs = quality.jaxstyle_outputs(pairs, args.weights, work / "new", log, controls=new)
    before = quality.jaxstyle_outputs(pairs, args.weights, work / "old", log, controls=old, modes=("portrait",))
    rows = []
    for p in pairs:
      key = (p.portrait, p.painting)
      rows.append(comparison_sheet([
          ("content", quality.load(p.content)), ("painting", quality.load(p.style)),
          ("plain SANet", outputs["jaxstyle plain"][key]),
          (f"old: {label(old)}", before["jaxstyle portrait"][key]),
          (f"new: {label(new)}", outputs["jaxstyle portrait"][key])], height=args.panel))
  Path(args.out).parent.mkdir(parents=True, exist_ok=True)
  stack(rows).save(args.out, quality=88)
  print(f"wrote {args.out} ({len(rows)} pairs; old {old}, new {new})")
  return 0


if __name__ == "__main__":
  sys.exit(main())
