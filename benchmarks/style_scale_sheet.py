"""The style at the content's scale against today's default style scales, on the public-domain held-out
pairs, as one sheet.

    python -m benchmarks.style_scale_sheet --out docs/img/quality/style_scale_old_new.jpg

Rows: ``quality.PUBLIC_DOMAIN_PORTRAITS`` × ``controls_sheet.PUBLIC_DOMAIN_PAINTINGS`` (held-out pairs,
center-cropped squares as the harness makes them); columns: content | painting | plain SANet and portrait
mode with the style read at the content's side (scale 1, before the defaults were searched) | the same
two with the style read as the CLI reads it (``request.style_sides``: ``request.STYLE_SCALES``). Each
pair is prepared by the split program (``portrait.make_split_programs``, equal to the CLI's one program:
``tests/test_split_program.py``). Measures nothing: it shows.
"""
from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path
from typing import Sequence

import numpy as np

from benchmarks import controls_sheet
from benchmarks import quality


def main(argv: Sequence[str] | None = None) -> int:
  import jax.numpy as jnp  # pylint: disable=g-import-not-at-top
  from jaxstyle.app import request  # pylint: disable=g-import-not-at-top
  from jaxstyle.checkpoints import loading  # pylint: disable=g-import-not-at-top
  from jaxstyle.io import image_io  # pylint: disable=g-import-not-at-top
  from jaxstyle.io.sheet import comparison_sheet  # pylint: disable=g-import-not-at-top
  from jaxstyle.program import portrait  # pylint: disable=g-import-not-at-top
  from jaxstyle.program import sharding  # pylint: disable=g-import-not-at-top
  ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  ap.add_argument("--data", default=str(quality.REPO.parent / "shared" / "data"))
  ap.add_argument("--weights", default=str(quality.REPO / "weights"))
  ap.add_argument("--out", default=str(quality.REPO / "out" / "style_scale_old_new.jpg"))
  ap.add_argument("--size", type=int, default=384)
  ap.add_argument("--panel", type=int, default=256, help="height of each panel in the sheet (px)")
  args = ap.parse_args(argv)
  params, cfg = loading.load(args.weights)
  program = portrait.make_split_programs(cfg, sharding.data_mesh())
  controls = jnp.asarray(portrait.Controls().as_array(), jnp.float32)
  plain_row = jnp.asarray([[1.0, 1.0, 1.0]], jnp.float32)
  new = {mode: request.style_sides(request.Settings(size=args.size, mode=mode))[0] for mode in ("plain", "portrait")}
  if any(person is not None for _, person in new.values()) or new["plain"] != new["portrait"]:
    raise SystemExit("error: the default style scales differ per region or mode; this sheet shows one side")
  image = lambda x: np.asarray(x)[0]

  def stylised(content: np.ndarray, style: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(plain SANet, portrait mode) at the default controls for one style image."""
    prepared = program.prepare(params, portrait.Batch(content[None], style[None]))
    plain = program.transfer(params, prepared, plain_row)[0]
    return image(plain), image(program.composite(prepared, program.transfer(params, prepared, controls),
                                                 portrait.FEATHER, False)["image"])

  rows = []
  with tempfile.TemporaryDirectory() as tmp:
    pairs = quality.prepare(Path(args.data), quality.PUBLIC_DOMAIN_PORTRAITS,
                            controls_sheet.PUBLIC_DOMAIN_PAINTINGS, args.size, Path(tmp))
    for p in pairs:
      content = quality.load(p.content)
      old = stylised(content, quality.load(p.style))
      side = new["portrait"][0]
      scaled = stylised(content, image_io.load_image(p.style, side))
      rows.append(comparison_sheet([
          ("content", content), ("painting", quality.load(p.style)),
          ("plain, style at scale 1", old[0]), ("portrait, style at scale 1", old[1]),
          (f"plain, style {side} px", scaled[0]), (f"portrait, style {side} px", scaled[1])],
          height=args.panel))
  Path(args.out).parent.mkdir(parents=True, exist_ok=True)
  controls_sheet.stack(rows).save(args.out, quality=88)
  print(f"wrote {args.out} ({len(rows)} pairs at {args.size}²; style read at {args.size} and {side} px)")
  return 0


if __name__ == "__main__":
  sys.exit(main())
