"""Downscales the SegNet training data (``portraits/``, ``portraits_masks/``, ``photos/`` and their
SOURCES.tsv) into a smaller copy with the same layout, e.g. to carry it to an accelerator.

    python scripts/pack_segdata.py --src ../shared/data --out .devdata/segdata --shorter 448

Every file keeps its name (the held-out split hashes file names, and the config's list of photos with
people names photos), so ``data.portrait_segmentation_split`` reads the copy as it reads the original and
SOURCES.tsv is copied unchanged. Images are stored as JPEG data whatever their suffix (PIL decodes by
content), masks as lossless PNGs at their image's new size: 12.9 MB at 448 px, small enough to travel.
"""
import argparse
import csv
import shutil
from pathlib import Path

import numpy as np

from jaxstyle.io import image_io


def pack_folder(src: Path, out: Path, shorter: int, quality: int, mask_dirs: list[tuple[Path, Path]]):
  """Packs ``src``'s listed images to ``out`` as JPEG data (under their own names); each image's masks
  in ``mask_dirs`` (src, out) follow at the image's new size."""
  with open(src / "SOURCES.tsv", newline="") as f:
    rows = list(csv.DictReader(f, delimiter="\t"))
  out.mkdir(parents=True, exist_ok=True)
  for row in rows:
    image = image_io.decode_uint8(src / row["file"], shorter, upscale=False)
    with image_io.atomic_path(out / row["file"]) as tmp, open(tmp, "wb") as f:
      image_io.to_pil(image).save(f, format="JPEG", quality=quality)
    names = [row.get("mask_file") or "", Path(row["file"]).stem + ".png"]
    for (m_src, m_out), name in zip(mask_dirs, names):
      if name and (m_src / name).is_file():
        mask = image_io.load_mask(m_src / name, image.shape[:2])
        image_io.save_image_atomic(m_out / name, np.round(mask * 255.0).astype(np.uint8))
  shutil.copyfile(src / "SOURCES.tsv", out / "SOURCES.tsv")
  return len(rows)


def main():
  ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
  ap.add_argument("--src", type=Path, default=Path("../shared/data"))
  ap.add_argument("--out", type=Path, required=True)
  ap.add_argument("--shorter", type=int, default=448, help="shorter side in px (never upscaled)")
  ap.add_argument("--quality", type=int, default=75)
  args = ap.parse_args()
  masks = [(args.src / "portraits_masks", args.out / "portraits_masks"),
           (args.src / "portraits_masks" / "mediapipe", args.out / "portraits_masks" / "mediapipe")]
  n = pack_folder(args.src / "portraits", args.out / "portraits", args.shorter, args.quality, masks)
  n += pack_folder(args.src / "photos", args.out / "photos", args.shorter, args.quality, [])
  print(f"wrote {n} images (and their masks) to {args.out}")


if __name__ == "__main__":
  main()
