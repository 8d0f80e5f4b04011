"""Old against new default controls on the public-domain held-out pairs, as one sheet.

    python -m benchmarks.controls_sheet --out docs/img/quality/controls_old_new.jpg

Rows: ``quality.PUBLIC_DOMAIN_PORTRAITS`` × ``PUBLIC_DOMAIN_PAINTINGS`` (held-out pairs, center-cropped
squares as the harness makes them); columns: content | painting | plain SANet | portrait mode at
``--old`` controls with the old edge (``old_edge``) | portrait mode at today's ``portrait.Controls()``
and edge. Each pair is prepared once by the split program (``portrait.make_split_programs``, equal to
the CLI's one program to 1e-5: ``tests/test_split_program.py``). Needs no quality extras: it measures
nothing, it shows.
"""
from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path
from typing import Sequence

import numpy as np
from PIL import Image

from benchmarks import quality

PUBLIC_DOMAIN_PAINTINGS = ("titu_starry_night.jpg", "titu_wave_kanagawa.jpg")   # van Gogh 1889, Hokusai c. 1831
OLD = "1,1,1,1,0.2,0.6"   # portrait.Controls() before benchmarks/controls_search.py (2026-12-06)
OLD_FEATHER = 0.01        # portrait.FEATHER then


def old_edge(prepared: dict, images):
  """The blend before ``portrait.blend_weight`` (2026-12-06): SegNet's probability blurred with σ =
  ``OLD_FEATHER`` × the longer side, centred on the outline."""
  from jaxstyle.program import portrait  # pylint: disable=g-import-not-at-top
  return portrait.blend(portrait.feather_mask(prepared["mask"], OLD_FEATHER), images)


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
  import jax.numpy as jnp  # pylint: disable=g-import-not-at-top
  from jaxstyle.checkpoints import loading  # pylint: disable=g-import-not-at-top
  from jaxstyle.io.sheet import comparison_sheet  # pylint: disable=g-import-not-at-top
  from jaxstyle.program import portrait  # pylint: disable=g-import-not-at-top
  from jaxstyle.program import sharding  # pylint: disable=g-import-not-at-top
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
  label = lambda c: f"W {c.w1_person:g}, {c.w2_person:g}, alpha {c.alpha_person:g}"   # the person's
  params, cfg = loading.load(args.weights)
  program = portrait.make_split_programs(cfg, sharding.data_mesh())
  image = lambda x: np.asarray(x)[0]
  with tempfile.TemporaryDirectory() as tmp:
    pairs = quality.prepare(Path(args.data), quality.PUBLIC_DOMAIN_PORTRAITS, PUBLIC_DOMAIN_PAINTINGS,
                            args.size, Path(tmp))
    rows = []
    for p in pairs:
      content, style = quality.load(p.content), quality.load(p.style)
      prepared = program.prepare(params, portrait.Batch(content[None], style[None]))
      region = lambda c: program.transfer(params, prepared, jnp.asarray(c, jnp.float32))
      today = program.composite(prepared, region(new.as_array()), portrait.FEATHER, False)["image"]
      rows.append(comparison_sheet([
          ("content", content), ("painting", style), ("plain SANet", image(region([[1.0, 1.0, 1.0]])[0])),
          (f"old: {label(old)}; edge centred", image(old_edge(prepared, region(old.as_array())))),
          (f"new: {label(new)}; edge inside", image(today))], height=args.panel))
  Path(args.out).parent.mkdir(parents=True, exist_ok=True)
  stack(rows).save(args.out, quality=88)
  print(f"wrote {args.out} ({len(rows)} pairs; old {old}, feather {OLD_FEATHER:g}, centred edge; "
        f"new {new}, feather {portrait.FEATHER:g}, edge {portrait.EDGE_INSET:g} σ inside)")
  return 0


if __name__ == "__main__":
  sys.exit(main())
