"""Mean and std of the ImageNet VGG-19's relu{1..5}_1 activations on the shared data.

    python -m benchmarks.feature_scale [--data .devdata] [--size 192]

Every 8th content image and every 4th style of the packed shared data (``scripts/pack_images.py``
writes ``.devdata/{content,styles}``), center-cropped to ``--size``². The means are
``pretrained.VGG19_IMAGENET_MEAN_ACTIVATION``, by which SANet training divides its loss features.
"""
from __future__ import annotations

import argparse
from pathlib import Path

import jax
import numpy as np
from PIL import Image

from jaxstyle.checkpoints import pretrained
from jaxstyle.nets import vgg


def center_crop(path: Path, size: int) -> np.ndarray:
  im = Image.open(path).convert("RGB")
  w, h = im.size
  s = min(w, h)
  im = im.crop(((w - s) // 2, (h - s) // 2, (w - s) // 2 + s, (h - s) // 2 + s)).resize((size, size))
  return np.asarray(im, np.float32) / 255


def main(argv=None) -> None:
  ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  ap.add_argument("--data", type=Path, default=Path(".devdata"))
  ap.add_argument("--size", type=int, default=192)
  args = ap.parse_args(argv)
  files = sorted((args.data / "content").glob("*.jpg"))[::8] + sorted((args.data / "styles").glob("*.jpg"))[::4]
  x = np.stack([center_crop(f, args.size) for f in files])
  encoder = vgg.VGG19(preprocess="caffe", formulation="xla")
  feats = jax.jit(encoder.apply)(pretrained.load_vgg19_imagenet(), x)
  for layer in vgg.STYLE_LAYERS:
    a = np.asarray(feats[layer])
    print(f"{layer} mean {a.mean():.3f} std {a.std():.3f} mean per-channel std {a.std(axis=(1, 2)).mean():.3f}")
  print(f"{len(files)} images")


if __name__ == "__main__":
  main()
