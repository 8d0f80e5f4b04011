"""Quality report of the shipped weights: portrait mode against plain SANet, and SegNet's mIoU.

    python scripts/quality_report.py --weights weights --data ../shared/data --out docs

Writes ``docs/quality.md`` (tables), comparison sheets of the public-domain portraits to
``docs/img/quality/`` and of every other portrait to ``out/quality/`` (third-party photos: not committed).

Measures (none uses VGG, the network the method itself is built on):
- *edge correlation*: Pearson correlation of the Sobel gradient magnitude of the luminance of content and
  output, over the pixels of a region. Person region: how much of the face/body structure survives
  (higher = kept). Background region: how much of the content's structure is left (lower = restyled).
- *palette overlap*: histogram intersection (8×8×8 RGB bins) of the output's background pixels with the
  style image's pixels (higher = the background took the style's colours).
- *SegNet mIoU*: on the held-out hand-drawn masks (``data.portrait_segmentation_split``), at 256 px,
  threshold 0.5; the MediaPipe teacher's IoU on the same images for reference.
Regions come from the reference masks in ``portraits_masks/`` (hand-drawn, CelebAMask-HQ, or the MediaPipe
teacher where a portrait has none), not from SegNet, so both modes are scored on the same pixels.
"""
from __future__ import annotations

import argparse
import csv
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from jaxstyle.checkpoints import loading
from jaxstyle.io import image_io
from jaxstyle.io import sheet
from jaxstyle.nets import losses
from jaxstyle.nets import model
from jaxstyle.program import portrait
from jaxstyle.program import sharding
from jaxstyle.training import data

PUBLIC_DOMAIN_PORTRAITS = ("skimage_astronaut.jpg", "mpl_grace_hopper.jpg")
PORTRAITS = PUBLIC_DOMAIN_PORTRAITS + (
    "celebamaskhq_0.jpg", "celebamaskhq_1.jpg", "u2net_portrait_man2.jpg", "u2net_portrait_kid2.jpg",
    "facerec_obama.jpg", "facerec_lin-manuel-miranda.png")
# Public-domain paintings: Van Gogh 1889, Hokusai c. 1831, Kandinsky 1913, Matisse 1905.
STYLES = ("titu_starry_night.jpg", "titu_wave_kanagawa.jpg", "sanet_Composition-VII.jpg",
          "adain_woman_with_hat_matisse.jpg")


MARKER = "<!-- hand-written below: kept when this report is regenerated -->"


def luminance(x: np.ndarray) -> np.ndarray:
  return x @ np.array([0.299, 0.587, 0.114], np.float32)


def sobel_magnitude(gray: np.ndarray) -> np.ndarray:
  p = np.pad(gray, 1, mode="edge")
  gx = (p[:-2, 2:] + 2 * p[1:-1, 2:] + p[2:, 2:]) - (p[:-2, :-2] + 2 * p[1:-1, :-2] + p[2:, :-2])
  gy = (p[2:, :-2] + 2 * p[2:, 1:-1] + p[2:, 2:]) - (p[:-2, :-2] + 2 * p[:-2, 1:-1] + p[:-2, 2:])
  return np.hypot(gx, gy)


def edge_correlation(a: np.ndarray, b: np.ndarray, region: np.ndarray) -> float:
  ea, eb = sobel_magnitude(luminance(a))[region], sobel_magnitude(luminance(b))[region]
  return float(np.corrcoef(ea, eb)[0, 1])


def palette_overlap(pixels: np.ndarray, style: np.ndarray, bins: int = 8) -> float:
  hist = lambda x: np.histogramdd(x.reshape(-1, 3), bins=bins, range=[(0, 1)] * 3)[0].ravel() / len(
      x.reshape(-1, 3))
  return float(np.minimum(hist(pixels), hist(style)).sum())


def reference_mask(data_dir: Path, name: str, hw: tuple[int, int]) -> tuple[np.ndarray, str]:
  rows = {r["file"]: r for r in data._read_sources(data_dir / "portraits")}  # pylint: disable=protected-access
  row = rows[name]
  if row.get("mask_file"):
    return image_io.load_mask(data_dir / "portraits_masks" / row["mask_file"], hw), row["mask_kind"]
  return image_io.load_mask(data_dir / "portraits_masks/mediapipe" / (Path(name).stem + ".png"), hw), \
      "mediapipe_teacher"


def segnet_miou(params, cfg, data_dir: Path, size: int = 256) -> tuple[float, float, int]:
  """(SegNet mIoU, MediaPipe teacher mIoU, n) on the held-out hand-drawn masks."""
  _, held_out = data.portrait_segmentation_split(data_dir)
  images, masks = data.load_eval_pairs(held_out, size)
  # The teacher's masks, square-cropped exactly like the eval pairs.
  as_teacher = [data.SegExample(ex.image, str(data_dir / "portraits_masks/mediapipe" /
                                              (Path(ex.image).stem + ".png")), "mediapipe_teacher")
                for ex in held_out]
  teacher = data.load_eval_pairs(as_teacher, size)[1]
  m = model.build(cfg)

  @jax.jit
  def predict(x):
    feats = m.encoder.apply(params["encoder"], x)
    return jax.nn.sigmoid(portrait.person_logits(params, cfg, x, feats))

  pred = np.concatenate([np.asarray(predict(images[i:i + 8])) for i in range(0, len(images), 8)])
  return (float(np.mean(losses.iou(pred, masks))), float(np.mean(losses.iou(teacher, masks))),
          len(held_out))


def main():
  ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
  ap.add_argument("--weights", default="weights")
  ap.add_argument("--data", type=Path, default=Path("../shared/data"))
  ap.add_argument("--out", type=Path, default=Path("docs"))
  ap.add_argument("--private-out", type=Path, default=Path("out/quality"))
  ap.add_argument("--size", type=int, default=384, help="longest side of the portraits")
  args = ap.parse_args()

  params, cfg = loading.load(args.weights)
  controls = portrait.Controls().as_array()
  mesh = sharding.data_mesh(jax.devices()[:1])
  programs = {mode: portrait.make_program(cfg, mesh, mode=mode) for mode in ("portrait", "plain")}
  public_dir, private_dir = args.out / "img/quality", args.private_out
  public_dir.mkdir(parents=True, exist_ok=True)
  private_dir.mkdir(parents=True, exist_ok=True)
  styles = {s: image_io.load_image(args.data / "styles" / s, args.size) for s in STYLES}
  rows, t0 = [], time.time()
  for name in PORTRAITS:
    content = image_io.load_image(args.data / "portraits" / name, args.size)
    region, kind = reference_mask(args.data, name, content.shape[:2])
    person = region > 0.5
    for style_name, style in styles.items():
      batch = portrait.Batch(content[None], style[None])
      out = programs["portrait"](params, batch, controls)
      plain = np.asarray(programs["plain"](params, batch, controls)["image"][0])
      out = {k: np.asarray(v[0]) for k, v in out.items()}
      for mode, img in (("portrait", out["image"]), ("plain", plain)):
        rows.append({"portrait": name, "style": style_name, "mode": mode, "mask_kind": kind,
                     "person_edge_corr": edge_correlation(content, img, person),
                     "background_edge_corr": edge_correlation(content, img, ~person),
                     "background_palette_overlap": palette_overlap(img[~person], style)})
      panels = sheet.sheet_panels(content, style, out, portrait.Controls())   # plain panel = background row
      folder = public_dir if name in PUBLIC_DOMAIN_PORTRAITS else private_dir
      image_io.save_image_atomic(folder / f"{Path(name).stem}__{Path(style_name).stem}.jpg",
                                 sheet.comparison_sheet(panels))
    print(f"{name}: done ({time.time() - t0:.0f} s)", flush=True)

  miou, teacher_miou, n = segnet_miou(params, cfg, args.data)
  with open(args.private_out / "quality.csv", "w", newline="") as f:
    w = csv.DictWriter(f, fieldnames=list(rows[0]))
    w.writeheader()
    w.writerows(rows)
  write_markdown(args.out / "quality.md", rows, miou, teacher_miou, n, args)


def write_markdown(path: Path, rows, miou, teacher_miou, n, args):
  metrics = ("person_edge_corr", "background_edge_corr", "background_palette_overlap")
  mean = lambda mode, k, style=None: np.mean([r[k] for r in rows if r["mode"] == mode and
                                              (style is None or r["style"] == style)])
  lines = [
      "# Quality report (generated by `scripts/quality_report.py`)", "",
      f"Weights: `{args.weights}`; {len(PORTRAITS)} portraits × {len(STYLES)} styles from `shared/data`, "
      f"longest side {args.size} px, default controls (`portrait.Controls()`).", "",
      "## SegNet", "",
      f"| held-out hand-drawn masks | SegNet mIoU | MediaPipe teacher mIoU |", "|---|---|---|",
      f"| {n} | {miou:.3f} | {teacher_miou:.3f} |", "",
      "## Portrait mode vs plain SANet (means over all pairs)", "",
      "| mode | person edge corr. ↑ (structure kept) | background edge corr. ↓ (restyled) | "
      "background palette overlap ↑ |", "|---|---|---|---|"]
  for mode in ("plain", "portrait"):
    lines.append(f"| {mode} | " + " | ".join(f"{mean(mode, k):.3f}" for k in metrics) + " |")
  lines += ["", "## Per style", "", "| style | mode | " + " | ".join(metrics) + " |",
            "|---|---|" + "---|" * len(metrics)]
  for style in STYLES:
    for mode in ("plain", "portrait"):
      lines.append(f"| {style} | {mode} | " + " | ".join(f"{mean(mode, k, style):.3f}" for k in metrics)
                   + " |")
  lines += ["", "## Per portrait (portrait − plain, mean over styles)", "",
            "| portrait | reference mask | Δ person edge corr. | Δ background edge corr. |", "|---|---|---|---|"]
  for name in PORTRAITS:
    kind = next(r["mask_kind"] for r in rows if r["portrait"] == name)
    d = lambda k: np.mean([r[k] for r in rows if r["portrait"] == name and r["mode"] == "portrait"]) - \
        np.mean([r[k] for r in rows if r["portrait"] == name and r["mode"] == "plain"])
    lines.append(f"| {name} | {kind} | {d('person_edge_corr'):+.3f} | {d('background_edge_corr'):+.3f} |")
  lines += ["", "Sheets (content | style | plain | mask | person transfer | combined) of the public-domain "
            "portraits are in `docs/img/quality/`; those of the third-party photos are written to "
            "`out/quality/` only.", ""]
  # A hand-written assessment below MARKER survives regeneration.
  old = path.read_text() if path.is_file() else ""
  tail = old[old.index(MARKER):] if MARKER in old else MARKER + "\n"
  path.write_text("\n".join(lines) + "\n" + tail)


if __name__ == "__main__":
  main()
