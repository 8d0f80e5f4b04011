"""Downscales image folders into one small folder of JPEGs, e.g. to carry training data to an accelerator.

    python scripts/pack_images.py --out .devdata/content --shorter 320 ../shared/data/photos ../shared/data/portraits
    python scripts/pack_images.py --out .devdata/styles --shorter 320 ../shared/data/styles

Files that do not decode are skipped and listed. Each source folder becomes a subfolder of ``--out`` and
each file keeps its stem (``photos/x.png`` → ``OUT/photos/x.jpg``): the trainers read folders recursively,
and ``train/configs/sanet.py`` excludes the quality harness's held-out images by stem.
"""
import argparse
from pathlib import Path

from PIL import Image, ImageOps

EXTS = {".jpg", ".jpeg", ".png", ".bmp", ".webp"}


def pack(sources: list[Path], out: Path, shorter: int, quality: int) -> tuple[int, list[str]]:
  written, skipped = 0, []
  for src in sources:
    (out / src.name).mkdir(parents=True, exist_ok=True)
    for path in sorted(p for p in src.rglob("*") if p.suffix.lower() in EXTS):
      try:
        with Image.open(path) as im:
          im = ImageOps.exif_transpose(im).convert("RGB")
          scale = shorter / min(im.size)
          if scale < 1:
            im = im.resize((round(im.width * scale), round(im.height * scale)), Image.LANCZOS)
          im.save(out / src.name / f"{path.stem}.jpg", quality=quality)
          written += 1
      except (OSError, ValueError) as e:
        skipped.append(f"{path}: {e}")
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
