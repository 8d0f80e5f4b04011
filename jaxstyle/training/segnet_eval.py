"""Person IoU of SegNet masks, measured through the path ``python -m infer.portrait`` takes.

Each held-out portrait is read by the CLI's loader (``image_io.load_image``, longest side ``size``), run
through ``portrait.segment`` (VGG-19 → SegNet → sigmoid → feather: the person mask the program returns,
whose outline its blend follows) at its own shape, and thresholded at 0.5; the hand-drawn mask is read
by the CLI's ``--mask`` loader at the same shape. The number reported is the **person** IoU (the
foreground class alone, not its mean with the background, which an all-person mask already scores
0.6–0.7 on), per image and its mean and minimum, beside the MediaPipe teacher's masks
(``portraits_masks/mediapipe``) on the same images.

    python -m jaxstyle.training.segnet_eval --weights weights --weights ../shared/runs/segnet_h200_3000
"""
from __future__ import annotations

import argparse
import dataclasses
import functools
import sys
from pathlib import Path
from typing import Sequence

import jax
import numpy as np

from jaxstyle.checkpoints import loading
from jaxstyle.io import image_io
from jaxstyle.nets import model as model_lib
from jaxstyle.program import portrait
from jaxstyle.program import precision
from jaxstyle.training import data as data_lib

CLI_SIZE = 512          # infer.portrait's default --size
CLI_FEATHER = portrait.FEATHER   # and --feather


@dataclasses.dataclass(frozen=True)
class HeldOut:
  name: str
  image: np.ndarray     # float32 [H, W, 3], as the CLI reads it
  mask: np.ndarray      # float32 [H, W], the hand-drawn mask at the same shape
  teacher: np.ndarray | None  # the MediaPipe teacher's soft mask at the same shape, if there is one


def person_iou(pred: np.ndarray, target: np.ndarray) -> float:
  """IoU of the person class of two masks (each thresholded at 0.5); 1 when both have no person."""
  p, t = np.asarray(pred) > 0.5, np.asarray(target) > 0.5
  union = np.count_nonzero(p | t)
  return float(np.count_nonzero(p & t) / union) if union else 1.0


def teacher_path(data_dir: Path, image: str) -> Path:
  return data_dir / "portraits_masks" / "mediapipe" / (Path(image).stem + ".png")


def load_held_out(data_dir: str | Path = "../shared/data", size: int = CLI_SIZE,
                  holdout_fraction: float = 0.2) -> list[HeldOut]:
  """The trainer's held-out hand-drawn portraits (``data.portrait_segmentation_split``) as the CLI reads them."""
  data_dir = data_lib.resolve_path(data_dir)
  _, held = data_lib.portrait_segmentation_split(data_dir, negatives=False,
                                                 holdout_fraction=holdout_fraction)
  out = []
  for ex in held:
    image = image_io.load_image(ex.image, size)
    teacher = teacher_path(data_dir, ex.image)
    out.append(HeldOut(Path(ex.image).name, image, image_io.load_mask(ex.mask, image.shape[:2]),
                       image_io.load_mask(teacher, image.shape[:2]) if teacher.is_file() else None))
  return out


@functools.partial(jax.jit, static_argnames=("cfg", "feather"))
def _segment(params: model_lib.Params, image: jax.Array, *, cfg: model_lib.ModelConfig,
             feather: float) -> jax.Array:
  return portrait.segment(params, cfg, image[None], feather)[0]


def predict(params: model_lib.Params, cfg: model_lib.ModelConfig, images: Sequence[np.ndarray],
            feather: float = CLI_FEATHER) -> list[np.ndarray]:
  """The CLI's mask of each image at its own shape (one compile per distinct shape)."""
  return [np.asarray(_segment(params, image, cfg=cfg, feather=feather)) for image in images]


def evaluate(params: model_lib.Params, cfg: model_lib.ModelConfig, held: Sequence[HeldOut],
             feather: float = CLI_FEATHER) -> tuple[dict[str, float | list[float]], list[np.ndarray]]:
  """(``{"person_iou": mean, "person_iou_min": min, "per_image": [...]}``, the masks) of SegNet on
  ``held``."""
  preds = predict(params, cfg, [h.image for h in held], feather)
  return summarise([person_iou(p, h.mask) for p, h in zip(preds, held)]), preds


def summarise(ious: Sequence[float]) -> dict[str, float | list[float]]:
  return {"person_iou": float(np.mean(ious)), "person_iou_min": float(np.min(ious)),
          "per_image": [round(float(i), 4) for i in ious]}


def evaluate_teacher(held: Sequence[HeldOut]) -> dict[str, float | list[float]]:
  """The same numbers for the MediaPipe teacher's masks (images without one are skipped)."""
  return summarise([person_iou(h.teacher, h.mask) for h in held if h.teacher is not None])


def load_segnet(directory: str | Path, dtype: str = "float32", model_config: str | None = None):
  """(params with the encoder and ``segnet``, cfg) from a weights folder that has ``segnet.safetensors``
  (the other networks are not needed for masks); ``model_config`` overrides the manifest's."""
  return loading.load(directory, ("segnet",), dtype=dtype, model_config=model_config)


def main(argv: Sequence[str] | None = None) -> int:
  p = argparse.ArgumentParser(prog="python -m jaxstyle.training.segnet_eval", description=__doc__.split("\n\n")[0])
  p.add_argument("--weights", action="append", required=True, metavar="DIR[:MODEL_CONFIG]",
                 help="a weights folder with segnet.safetensors (repeat to compare several); a suffix "
                      "':default_noskip' reads it with another model config than its manifest names")
  p.add_argument("--data-dir", default="../shared/data")
  p.add_argument("--size", type=int, default=CLI_SIZE)
  p.add_argument("--feather", type=float, default=CLI_FEATHER)
  p.add_argument("--segnet-sides", default=None, metavar="S,S",
                 help="override the model config's extra SegNet scales ('' for the content's size only)")
  p.add_argument("--dtype", default="float32", metavar="D[,D]",
                 help=f"compute dtype(s), comma-separated, each one of {', '.join(precision.DTYPES)}: a row "
                      "per weights folder and dtype (%(default)s)")
  args = p.parse_args(argv)
  dtypes = args.dtype.split(",")
  for name in dtypes:
    if name not in precision.DTYPES:
      p.error(f"--dtype: {name!r} is not one of {', '.join(precision.DTYPES)}")
  held = load_held_out(args.data_dir, args.size)
  rows = [("MediaPipe teacher", evaluate_teacher(held))]
  for spec, dtype in [(spec, dtype) for spec in args.weights for dtype in dtypes]:
    directory, _, model_config = spec.partition(":")
    params, cfg = load_segnet(directory, precision.choose(dtype), model_config=model_config or None)
    if args.segnet_sides is not None:
      cfg = dataclasses.replace(cfg, segnet_sides=tuple(int(v) for v in args.segnet_sides.split(",") if v))
      spec += f" sides ({args.segnet_sides})"
    name = spec if dtypes == ["float32"] else f"{spec} {dtype}" + (f" ({cfg.dtype})" if dtype == "auto" else "")
    rows.append((name, evaluate(params, cfg, held, args.feather)[0]))
  print(f"person IoU at --size {args.size}, feather {args.feather}, {len(held)} held-out hand-drawn masks")
  print(f"{'masks':<48} {'mean':>6} {'min':>6}  per image ({', '.join(h.name[:12] for h in held)})")
  for name, r in rows:
    print(f"{name:<48} {r['person_iou']:6.4f} {r['person_iou_min']:6.4f}  {r['per_image']}")
  return 0


if __name__ == "__main__":
  sys.exit(main())
