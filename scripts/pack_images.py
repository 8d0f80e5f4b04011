"""Downscales image folders into one small folder of JPEGs, e.g. to carry training data to an accelerator.

    python scripts/pack_images.py --out .devdata/content --shorter 320 ../shared/data/photos ../shared/data/portraits
    python scripts/pack_images.py --out .devdata/styles --shorter 320 ../shared/data/styles

Files are read as the trainers read them (``image_io.decode_uint8``: EXIF orientation applied,
transparency on white); files that do not decode are skipped and listed. Each source folder becomes a subfolder of ``--out`` and
each file keeps its stem (``photos/x.png`` → ``OUT/photos/x.jpg``): the trainers read folders recursively,
and ``train/configs/sanet.py`` excludes the quality harness's held-out images by stem.
"""
import argparse
from pathlib import Path

from jaxstyle.io import image_io


def pack(sources: list[Path], out: Path, shorter: int, quality: int) -> tuple[int, list[str]]:
  written, skipped = 0, []
  for src in sources:
    for path in sorted(p for p in src.rglob("*") if image_io.is_image(p)):
      try:
        image = image_io.decode_uint8(path, shorter, upscale=False)
        image_io.save_image_atomic(out / src.name / f"{path.stem}.jpg", image, quality=quality)
        written += 1
      except image_io.ImageError as e:
        skipped.append(str(e))
  return written, skipped


def main():
  ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
  ap.add_argument("sources", nargs="+", type=Path)
  ap.add_argument("--out", type=Path, required=True)
  ap.add_argument("--shorter", type=int, default=320, help="shorter side in px (never upscaled)")
  ap.add_argument("--quality", type=int, default=90)
  args = ap.parse_args()
  written, skipped = pack(args.sources, args.out, args.shorter, args.quality)
  print(f"wrote {written} images to {args.out}; skipped {len(skipped)}")
  for line in skipped:
    print("  skipped", line)


if __name__ == "__main__":
  main()
