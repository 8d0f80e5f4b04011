"""scripts/pack_images.py and scripts/pack_segdata.py: read with the project's decoder, never upscale, keep
names (the held-out split and the config's exclusions go by name), skip and list unreadable files."""
import csv
import runpy
from pathlib import Path

import numpy as np
from PIL import Image

from jaxstyle.io import image_io
from jaxstyle.training import data

SCRIPTS = Path(__file__).resolve().parents[1] / "scripts"


def random_image(path: Path, hw, mode: str = "RGB"):
  path.parent.mkdir(parents=True, exist_ok=True)
  shape = (*hw, 3) if mode == "RGB" else hw
  Image.fromarray(np.random.default_rng(len(str(path))).integers(0, 256, shape, dtype=np.uint8)).save(path)


def test_pack_images_downscales_keeps_stems_and_lists_bad_files(tmp_path):
  pack = runpy.run_path(str(SCRIPTS / "pack_images.py"))["pack"]
  src = tmp_path / "photos"
  random_image(src / "big.png", (80, 120))
  random_image(src / "sub" / "small.webp", (20, 30))
  (src / "bad.jpg").write_bytes(b"not a picture")
  (src / "notes.txt").write_text("not an image suffix")
  written, skipped = pack([src], tmp_path / "out", shorter=40, quality=90)
  assert written == 2 and len(skipped) == 1 and "bad.jpg" in skipped[0]
  out = tmp_path / "out" / "photos"
  assert sorted(p.name for p in out.iterdir()) == ["big.jpg", "small.jpg"]
  assert image_io.decode_uint8(out / "big.jpg").shape == (40, 60, 3)       # shorter side 40
  assert image_io.decode_uint8(out / "small.jpg").shape == (20, 30, 3)     # never upscaled


def test_pack_segdata_keeps_names_and_masks_follow_their_image(tmp_path):
  pack_folder = runpy.run_path(str(SCRIPTS / "pack_segdata.py"))["pack_folder"]
  src, out = tmp_path / "portraits", tmp_path / "packed" / "portraits"
  masks = [(tmp_path / "masks", tmp_path / "packed" / "masks"),
           (tmp_path / "masks" / "mediapipe", tmp_path / "packed" / "masks" / "mediapipe")]
  random_image(src / "a.png", (60, 40))
  random_image(masks[0][0] / "a.png", (60, 40), "L")
  random_image(masks[1][0] / "a.png", (60, 40), "L")
  with open(src / "SOURCES.tsv", "w", newline="") as f:
    w = csv.DictWriter(f, ["file", "mask_file", "mask_kind"], delimiter="\t")
    w.writeheader()
    w.writerow({"file": "a.png", "mask_file": "a.png", "mask_kind": "gt_npr_manual"})
  assert pack_folder(src, out, 20, 75, masks) == 1
  assert Image.open(out / "a.png").format == "JPEG"                          # JPEG data, same name
  image = image_io.decode_uint8(out / "a.png")
  assert image.shape == (30, 20, 3)
  for _, m_out in masks:
    assert np.asarray(Image.open(m_out / "a.png")).shape == (30, 20)
  assert (out / "SOURCES.tsv").read_bytes() == (src / "SOURCES.tsv").read_bytes()
  assert data.list_images(out) == [str(out / "a.png")]
